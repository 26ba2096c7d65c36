//! Configuration: a YAML file read into [`raw`] serde types, then checked
//! into the typed [`Config`] the rest of guise uses.
//!
//! Every problem found is collected with its YAML path and line so one run of
//! `guise check-config` shows them all; a file with any problem is refused
//! whole (the gateway never starts on half a configuration).

pub mod impersonation;
mod lines;
mod mail;
pub mod partners;
pub mod permissions;
pub mod raw;
mod validate;
mod yaml;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use mail::{Mail, MailTransport, Smtp, SmtpCa, SmtpCredentials};
pub use raw::{AppCookies, LogFormat, SmtpSecurity, StoreKind};

use crate::routes::RouteSpec;
use crate::users::User;

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Listeners,
    pub operations_address: SocketAddr,
    /// How often the upstream and the store are probed in the background.
    pub probe_interval: Duration,
    pub server: ServerSettings,
    pub upstream: Upstream,
    pub identity: Identity,
    pub sessions: Sessions,
    pub routes: Vec<RouteSpec>,
    pub logging: Logging,
    pub auth: Auth,
    pub http: HttpPolicy,
    pub admin: AdminPolicy,
    /// Who may view the app as whom, privacy meanwhile, and the audit.
    pub impersonation: impersonation::Impersonation,
    /// Welcome emails; `None`: the gateway sends no mail.
    pub mail: Option<Mail>,
    /// Partners, licences, bundles, tenants and resource lookups.
    pub partners: partners::Settings,
    pub permissions: permissions::Settings,
    /// Users from the file (inline and `users_file`), in file order.
    pub users: Vec<User>,
    /// SHA-256 of the file's bytes (hex, first 16 chars): names the live
    /// configuration in metrics and logs.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub http: Option<SocketAddr>,
    /// The HTTP listener reads a PROXY protocol header first.
    pub http_proxy_protocol: bool,
    pub https: Option<Https>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Https {
    pub address: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub http2: bool,
    /// A PROXY protocol header comes before the TLS handshake.
    pub proxy_protocol: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub threads: usize,
    pub grace_period: Duration,
    pub shutdown_timeout: Duration,
    pub upstream_keepalive_pool_size: usize,
    pub keepalive_request_limit: Option<u32>,
    /// pingora's work-stealing runtime. Off by default: with it off each
    /// worker thread runs its own single-threaded runtime and a connection
    /// stays on one thread, which measured about a fifth more requests per
    /// core (bench/run.sh); on, a thread stuck in a slow task can be helped.
    /// Off allows one gateway per process (see
    /// [`crate::server::StartError::SecondNoStealRuntime`]).
    pub work_stealing: bool,
    /// Time a client has for a whole request header, from its first byte.
    pub header_timeout: Duration,
    /// Most client connections open at once.
    pub max_client_connections: usize,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Hosts the gateway answers for and headers on its own answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPolicy {
    /// Lower-case `host` or `host:port` entries; empty allows any.
    pub allowed_hosts: Vec<String>,
    /// The `Strict-Transport-Security` value for HTTPS answers, if any.
    pub hsts: Option<String>,
}

/// What admins may do beyond managing ordinary users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPolicy {
    pub admins_may_grant_impersonation: bool,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub address: SocketAddr,
    /// As written, for the `Host`-less cases and messages.
    pub authority: String,
    pub tls: bool,
    pub sni: String,
    pub verify_certificate: bool,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

/// How identity reaches the upstream.
#[derive(Clone)]
pub struct Identity {
    /// Lower-case prefix; every client header starting with it is removed.
    pub header_prefix: String,
    pub signing_key_env: String,
    /// The key itself, read from the environment. Never printed: `Debug`
    /// shows only its length.
    pub signing_key: Vec<u8>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("header_prefix", &self.header_prefix)
            .field("signing_key_env", &self.signing_key_env)
            .field(
                "signing_key",
                &format_args!("<{} bytes>", self.signing_key.len()),
            )
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sessions {
    pub store: SessionStoreConfig,
    /// Name on plain HTTP; `__Host-` is prefixed on HTTPS.
    pub cookie_name: String,
    pub idle_timeout: Duration,
    pub absolute_lifetime: Duration,
    pub refresh_interval: Duration,
    pub cache_ttl: Duration,
    pub stale_grace: Duration,
    pub cache_capacity: u64,
    pub redis_connect_timeout: Duration,
    pub redis_response_timeout: Duration,
}

/// Login interception and its limits.
#[derive(Debug, Clone)]
pub struct Auth {
    pub require_login: bool,
    pub login_path: String,
    pub after_login: String,
    pub mode: LoginMode,
    /// Failures per username from one client network.
    pub max_attempts_per_user: u64,
    /// Attempts per client network (successes are taken back).
    pub max_attempts_per_client: u64,
    /// Attempts per username from browsers without its device cookie.
    pub max_attempts_per_user_total: u64,
    pub attempt_window: Duration,
    pub device_cookie_lifetime: Duration,
    pub password_checks: PasswordChecks,
}

/// The cap on concurrent password verifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordChecks {
    pub max_concurrent: usize,
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum LoginMode {
    /// guise answers the login page and checks passwords itself.
    Gateway,
    /// The app checks passwords; guise reads its answer. Boxed: the
    /// settings are large and the config is cloned.
    Upstream(Box<UpstreamLogin>),
}

/// How guise reads the app's answer to its own login form.
#[derive(Debug, Clone)]
pub struct UpstreamLogin {
    pub success_status: Vec<u16>,
    /// The answer must also set this (non-empty) cookie to count.
    pub success_cookie: Option<String>,
    pub username_fields: Vec<String>,
    pub user_id: UserIdSource,
    pub app_cookies: AppCookies,
    /// The app's session cookies, expired with guise's session.
    pub app_session_cookies: Vec<String>,
    /// Where the app logs out; guise ends its own session with it.
    pub logout_path: Option<String>,
    /// `None`: users the app accepts must be in the directory already.
    pub provision: Option<Provision>,
}

/// The directory entry a user the app owns gets on first login.
#[derive(Debug, Clone)]
pub struct Provision {
    pub roles: Vec<crate::users::Role>,
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// Where guise learns who the app accepted.
#[derive(Debug, Clone)]
pub enum UserIdSource {
    /// The username submitted in the form.
    Username,
    Header(http::HeaderName),
    JsonPointer(String),
    /// Over the answer's `Location`. The client can steer a redirect (apps
    /// follow the `next` it posts), so an id read here must equal the
    /// submitted username unless no submitted value appears in the
    /// `Location`.
    RedirectRegex(regex::Regex),
    /// Ask the app, with its new session cookies.
    Whoami(Whoami),
}

/// The "who am I" request and where its answer names the user.
#[derive(Debug, Clone)]
pub struct Whoami {
    pub path: String,
    pub read: WhoamiRead,
}

#[derive(Debug, Clone)]
pub enum WhoamiRead {
    Header(http::HeaderName),
    JsonPointer(String),
    BodyRegex(regex::Regex),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStoreConfig {
    Memory,
    Redis(RedisConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisConfig {
    Single {
        url: String,
    },
    Sentinel {
        master_name: String,
        urls: Vec<String>,
    },
    Cluster {
        urls: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    pub format: LogFormat,
    pub level: String,
}

/// One thing wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// YAML path such as `routes[2].path`; empty for the whole file.
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.path.is_empty()) {
            (Some(l), false) => write!(f, "line {l}: {}: {}", self.path, self.message),
            (Some(l), true) => write!(f, "line {l}: {}", self.message),
            (None, false) => write!(f, "{}: {}", self.path, self.message),
            (None, true) => write!(f, "{}", self.message),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} has {} problem(s):\n{}", issues.len(), render(file, issues))]
    Invalid {
        file: String,
        issues: Vec<ConfigIssue>,
    },
}

fn render(file: &str, issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(|i| format!("  {file}: {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    /// The individual problems (empty for a read error).
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Invalid { issues, .. } => issues,
            ConfigError::Read { .. } => &[],
        }
    }
}

/// Where secrets named in the file are looked up. A trait so tests can pass
/// a map instead of changing the process environment.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Config {
    /// Read and check a file. Relative certificate paths are taken relative
    /// to the file's folder, so a config works from any working directory.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let source = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&source, &file, base, env)
    }

    /// Check `source`; `file` names it in messages, `base` anchors relative paths.
    pub fn parse(
        source: &str,
        file: &str,
        base: &Path,
        env: &dyn Env,
    ) -> Result<Config, ConfigError> {
        validate::parse(source, base, env).map_err(|issues| ConfigError::Invalid {
            file: file.to_string(),
            issues,
        })
    }

    /// Settings that only take effect at start-up; a reload that changes
    /// them is refused and names them.
    pub fn fixed_settings_changed(&self, new: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.listeners.http != new.listeners.http {
            changed.push("listeners.http");
        }
        if self.listeners.https != new.listeners.https {
            changed.push("listeners.https");
        }
        if self.listeners.http_proxy_protocol != new.listeners.http_proxy_protocol {
            changed.push("listeners.http_proxy_protocol");
        }
        if self.operations_address != new.operations_address {
            changed.push("operations.address");
        }
        if self.server != new.server {
            changed.push("server");
        }
        if self.sessions != new.sessions {
            changed.push("sessions");
        }
        if self.logging != new.logging {
            changed.push("logging");
        }
        if self.auth.password_checks != new.auth.password_checks {
            changed.push("auth.password_checks");
        }
        changed
    }
}

#[cfg(test)]
mod tests;
