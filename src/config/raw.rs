//! The YAML format, as serde reads it.
//!
//! These types mirror the file one to one and refuse unknown keys, so a typo
//! is an error rather than a silently ignored setting. They are never used
//! past `validate`: the rest of guise sees only the checked [`super::Config`].

use serde::{Deserialize, Deserializer};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the gateway accepts client traffic.
    pub listeners: RawListeners,
    /// The operations listener: metrics and health.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub operations: RawOperations,
    /// Process-level settings of the data plane.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub server: RawServer,
    /// The application guise stands in front of.
    pub upstream: RawUpstream,
    /// Identity headers sent to the upstream.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub identity: RawIdentity,
    /// Where sessions live.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub sessions: RawSessions,
    /// Path patterns with tags that later stages (bundles, permissions,
    /// privacy) act on.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub routes: Vec<RawRoute>,
    /// Log format and level.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub logging: RawLogging,
    /// Login interception, limits and logout.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub auth: RawAuth,
    /// Which hosts the gateway answers for, and headers on its answers.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub http: RawHttp,
    /// What admins may do beyond managing ordinary users.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub admin: RawAdmin,
    /// Admins viewing the app as partner users, privacy meanwhile, audit.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub impersonation: RawImpersonation,
    /// Welcome emails: how they are sent and where their links point.
    /// Without it the gateway sends no mail.
    pub mail: Option<RawMail>,
    /// Seats of each licence.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub licences: RawLicences,
    /// Partner organisations, their assigned records, permission bundles.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub partners: RawPartners,
    /// Data permissions: resources, sharing rules, user attributes and
    /// sharing groups.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub permissions: super::permissions::RawPermissions,
    /// Client tenants of the app, where partner users may "Login as me".
    #[serde(default, deserialize_with = "empty_is_default")]
    pub tenants: RawTenants,
    /// Users defined in this file.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub users: Vec<crate::users::User>,
    /// A YAML file with a list of further users (relative to this file).
    pub users_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListeners {
    /// Plain HTTP listener, `host:port`.
    pub http: Option<String>,
    /// The plain HTTP listener expects a PROXY protocol header (v1 or v2)
    /// from a trusted proxy on every connection.
    #[serde(default)]
    pub http_proxy_protocol: bool,
    /// HTTPS listener on rustls.
    pub https: Option<RawHttps>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttps {
    /// `host:port` to listen on.
    pub address: String,
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// Offer HTTP/2 by ALPN.
    #[serde(default = "yes")]
    pub http2: bool,
    /// Expect a PROXY protocol header (v1 or v2) from a trusted proxy before
    /// the TLS handshake.
    #[serde(default)]
    pub proxy_protocol: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOperations {
    /// `host:port` of `/metrics`, `/healthz`, `/readyz`.
    #[serde(default = "default_operations_address")]
    pub address: String,
    /// Milliseconds between background probes of the upstream and the
    /// session store.
    #[serde(default = "probe_interval_ms")]
    pub probe_interval_ms: u64,
}

impl Default for RawOperations {
    fn default() -> Self {
        RawOperations {
            address: default_operations_address(),
            probe_interval_ms: probe_interval_ms(),
        }
    }
}

fn probe_interval_ms() -> u64 {
    2_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Worker threads of the proxy service.
    #[serde(default = "one")]
    pub threads: usize,
    /// Seconds after SIGTERM during which `/readyz` already answers 503
    /// but the listeners still accept (for load balancers that poll
    /// readiness).
    #[serde(default)]
    pub grace_period_seconds: u64,
    /// Seconds that requests in flight get to finish once the listeners
    /// closed; the process exits as soon as they are done.
    #[serde(default = "thirty")]
    pub shutdown_timeout_seconds: u64,
    /// Idle upstream connections kept for reuse.
    #[serde(default = "pool")]
    pub upstream_keepalive_pool_size: usize,
    /// Requests served on one client connection before it is closed
    /// (none: unlimited).
    #[serde(default)]
    pub keepalive_request_limit: Option<u32>,
    /// Let idle worker threads steal tasks from busy ones (off: each
    /// connection stays on the thread it was given).
    #[serde(default)]
    pub work_stealing: bool,
    /// Milliseconds a client has to send a whole request header, from its
    /// first byte; a slower client is disconnected.
    #[serde(default = "header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Most client connections open at once; further ones are closed at
    /// once.
    #[serde(default = "max_client_connections")]
    pub max_client_connections: usize,
    /// Load balancers and proxies (CIDRs) whose `X-Forwarded-For`,
    /// `X-Forwarded-Proto` and PROXY protocol headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            threads: one(),
            grace_period_seconds: 0,
            shutdown_timeout_seconds: thirty(),
            upstream_keepalive_pool_size: pool(),
            keepalive_request_limit: None,
            work_stealing: false,
            header_timeout_ms: header_timeout_ms(),
            max_client_connections: max_client_connections(),
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    /// `host:port` of the application.
    pub address: String,
    /// Speak TLS to the application.
    #[serde(default)]
    pub tls: bool,
    /// Server name for TLS (defaults to the host part of `address`).
    pub sni: Option<String>,
    /// Check the application's certificate (only turn off for local tests).
    #[serde(default = "yes")]
    pub verify_certificate: bool,
    /// Milliseconds to establish a TCP (and TLS) connection.
    #[serde(default = "connect_ms")]
    pub connect_timeout_ms: u64,
    /// Milliseconds to wait for each read from the application.
    #[serde(default = "io_ms")]
    pub read_timeout_ms: u64,
    /// Milliseconds to wait for each write to the application.
    #[serde(default = "io_ms")]
    pub write_timeout_ms: u64,
    /// Seconds an idle pooled connection is kept.
    #[serde(default = "idle_s")]
    pub idle_timeout_seconds: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// Prefix of every identity header; client headers with it are removed.
    #[serde(default = "default_prefix")]
    pub header_prefix: String,
    /// Name of the environment variable that holds the signing key.
    #[serde(default = "default_key_env")]
    pub signing_key_env: String,
}

impl Default for RawIdentity {
    fn default() -> Self {
        RawIdentity {
            header_prefix: default_prefix(),
            signing_key_env: default_key_env(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSessions {
    /// `memory` (one node) or `redis`.
    #[serde(default)]
    pub store: StoreKind,
    /// Redis connection, required when `store: redis`.
    pub redis: Option<RawRedis>,
    /// Cookie name; on HTTPS the `__Host-` prefix is added.
    #[serde(default = "default_cookie")]
    pub cookie_name: String,
    /// A session unused this long ends.
    #[serde(default = "idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// A session ends this long after login, however active.
    #[serde(default = "absolute_lifetime")]
    pub absolute_lifetime_seconds: u64,
    /// Sliding expiry is refreshed in the store at most this often per
    /// session, whichever node serves it: a node slides the deadline only
    /// when the stored `last_seen` is this old.
    #[serde(default = "refresh_interval")]
    pub refresh_interval_seconds: u64,
    /// A cached session is re-read from the store after this long (the
    /// safety net should a revocation message be lost).
    #[serde(default = "cache_ttl")]
    pub cache_ttl_seconds: u64,
    /// While the store is unreachable, cached sessions keep working this
    /// much longer; then requests get 503.
    #[serde(default = "stale_grace")]
    pub stale_grace_seconds: u64,
    /// Most sessions kept in each node's cache.
    #[serde(default = "cache_capacity")]
    pub cache_capacity: u64,
    /// Milliseconds to connect to Redis.
    #[serde(default = "redis_connect_ms")]
    pub redis_connect_timeout_ms: u64,
    /// Milliseconds to wait for a Redis answer.
    #[serde(default = "redis_response_ms")]
    pub redis_response_timeout_ms: u64,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

/// Exactly one of `url`, `sentinel` or `cluster`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `redis://host:port/db` of a standalone server.
    pub url: Option<String>,
    /// A Sentinel-managed primary.
    pub sentinel: Option<RawSentinel>,
    /// Seed nodes of a Redis Cluster.
    pub cluster: Option<RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSentinel {
    /// Name of the monitored primary.
    pub master_name: String,
    /// `redis://host:port` of each sentinel.
    pub urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// `redis://host:port` of some cluster nodes.
    pub urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// Label in metrics and logs (defaults to the path pattern).
    pub name: Option<String>,
    /// Path pattern: literal segments, `{param}` and a trailing `{*rest}`.
    pub path: String,
    /// Methods this route applies to (all when empty).
    #[serde(default, deserialize_with = "empty_is_default")]
    pub methods: Vec<String>,
    /// Area of the app (what permission bundles grant).
    pub area: Option<String>,
    /// Resource the route reads or writes (what data permissions govern).
    pub resource: Option<String>,
    /// `read` or `write` (defaults by method).
    pub action: Option<String>,
    /// The route exports data (CSV and the like).
    #[serde(default)]
    pub export: bool,
    /// The route returns personal data (contacts, leads).
    #[serde(default)]
    pub personal_data: bool,
    /// Reachable without a session.
    #[serde(default)]
    pub public: bool,
    /// A feature of the app the route belongs to (`ess`, `linked_records`),
    /// for features refused to paired users.
    pub feature: Option<String>,
    /// Where the request names its records: path or query parameters.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub records: Vec<RawRecordRef>,
    /// The JSON answer is a list of records to filter.
    pub json_list: Option<RawJsonList>,
    /// The JSON answer is one record to check.
    pub json_record: Option<RawJsonRecord>,
    /// The HTML answer holds records to filter, found by CSS selectors.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub html: Vec<RawHtmlRule>,
    /// A write's JSON body names records: partner users may name only
    /// their partner's.
    pub body: Option<RawBody>,
}

/// Where a write's JSON body names records.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBody {
    /// Each a `resource` and a `field` (a JSON pointer within the body).
    pub refs: Vec<RawRef>,
}

/// A record named by the request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecordRef {
    /// The record's resource (`company`, `relationship`, `report`, ...).
    pub resource: String,
    /// A path parameter of the route's pattern holding the id.
    pub param: Option<String>,
    /// A query parameter holding the id.
    pub query: Option<String>,
}

/// Where a record in a JSON item (or an HTML element) names a record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRef {
    pub resource: String,
    /// JSON pointer within the item (`/company_id`).
    pub field: Option<String>,
    /// HTML attribute of the element (`data-company-id`).
    pub attribute: Option<String>,
    /// Path pattern of the element's own `href` (`/companies/{id}`).
    pub href: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonList {
    /// JSON pointer to the array (`/data`).
    pub pointer: String,
    /// What names each item's records; an item is kept if any is allowed.
    pub refs: Vec<RawRef>,
    /// JSON pointers to counts that must drop with the items removed.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub counts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonRecord {
    /// JSON pointer to the record (`/data`).
    pub pointer: String,
    pub refs: Vec<RawRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHtmlRule {
    /// CSS selector of the elements that show one record each.
    pub selector: String,
    #[serde(default)]
    pub refs: Vec<RawRef>,
    /// The elements sum up every customer's records (totals, counts by
    /// type): partner users never see them, as the gateway cannot recount
    /// them. Such a rule names no refs.
    #[serde(default)]
    pub aggregate: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLicences {
    /// Seats of the Full licence, counted across every user holding it
    /// (unlimited when absent).
    pub full: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartners {
    /// Area names partner bundles draw from (default: the seed's set).
    pub areas: Option<Vec<String>>,
    /// The bundle every new partner user gets: all of `areas`.
    pub default_bundle: Option<String>,
    /// The 360 layout name new partner users get (`x-guise-layout`).
    pub default_layout: Option<String>,
    /// Custom bundles: subsets of the default one.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub bundles: Vec<RawBundle>,
    /// Partner organisations.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub organisations: Vec<RawPartner>,
    /// Partner users on a path no route names: `deny` (default) or
    /// `allow`.
    pub unrouted: Option<String>,
    /// The largest JSON answer filtered for partner users (default 8 MiB).
    pub answer_max_bytes: Option<usize>,
    /// Records inside a company or relationship that a request reaches by
    /// their own id (a CTA): how to look up where they sit.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub parents: Vec<RawParent>,
    /// How long a looked-up record's parents are kept, in seconds
    /// (default 5; 0: looked up on every request).
    pub lookup_seconds: Option<f64>,
}

/// A resource whose records sit inside assigned ones.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParent {
    /// The resource routes name in `records` (`cta`).
    pub resource: String,
    /// Where one record is read from the upstream.
    pub lookup: super::permissions::LookupSpec,
    /// The fields of that record that name its parents.
    pub refs: Vec<RawParentRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParentRef {
    /// `company` or `relationship`.
    pub resource: String,
    /// JSON pointer within the record (`/company_id`).
    pub field: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenants {
    /// How a request names its tenant: a path prefix with `{tenant}`
    /// (`/t/{tenant}/`).
    pub path_prefix: Option<String>,
    /// Default tenant roles of paired users (the app's role names), by
    /// the tenant's hub; `default` serves hubs not listed.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub hubs: std::collections::BTreeMap<String, Vec<String>>,
    /// The app's tenant roles; when given, hubs and every change use only
    /// these (default: any role name).
    pub roles: Option<Vec<String>>,
    /// The tenant roles a partner's primary user may give their paired
    /// users (default: every role some hub gives by default).
    pub partner_assignable: Option<Vec<String>>,
    /// Route features paired users may not use (`ess`, `linked_records`).
    #[serde(default, deserialize_with = "empty_is_default")]
    pub refused_for_paired: Vec<String>,
    /// The tenants.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub list: Vec<RawTenant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub id: String,
    pub name: String,
    /// Its hub, which decides paired users' default roles.
    #[serde(default = "default_hub")]
    pub hub: String,
    /// Users the tenant may have (paired users are not counted).
    pub user_quota: Option<u64>,
    /// Users it has now (the app's own; guise counts paired ones apart).
    #[serde(default)]
    pub users: u64,
    /// Partner users may "Login as me" here (default true).
    #[serde(default = "yes")]
    pub allow_partner_login: bool,
}

fn default_hub() -> String {
    "default".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBundle {
    pub name: String,
    pub areas: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPartner {
    pub id: String,
    pub name: String,
    /// `active` (default) or `inactive`.
    #[serde(default)]
    pub status: super::partners::PartnerStatus,
    /// Companies assigned (the app's ids).
    #[serde(default, deserialize_with = "empty_is_default")]
    pub companies: Vec<String>,
    /// Relationships assigned.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub relationships: Vec<String>,
    /// Reports shared with the partner.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub reports: Vec<String>,
    /// The user an admin enters the partner's view as ("Access portal
    /// account").
    pub primary_user: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter such as `info` or `guise=debug,info`.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for RawLogging {
    fn default() -> Self {
        RawLogging {
            format: LogFormat::Text,
            level: default_level(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What the file should hold at `pattern`, in the file's own terms, for
/// messages about a value of the wrong shape. `pattern` is a YAML path with
/// its indices left out (`routes[].methods`).
///
/// serde-saphyr reports a wrong shape as "expected a mapping" and knows
/// nothing of the Rust types behind it; serde's own wording would name them
/// (`struct RawUpstream`), which means nothing to whoever edits the file.
/// So the mappings, lists and word choices of the format say here what they
/// need; a scalar's error already says its type (a number, `true` or
/// `false`). Kept next to the types so a new section gets its line.
pub(super) fn expected_at(pattern: &str) -> Option<&'static str> {
    Some(match pattern {
        "" => "a mapping with `listeners` and `upstream`",
        "listeners" => "a mapping with `http` and/or `https`",
        "listeners.https" => "a mapping with `address`, `cert` and `key`",
        "operations" => "a mapping with `address`",
        "server" => "a mapping of server settings such as `threads`",
        "upstream" => "a mapping with `address`",
        "identity" => "a mapping with `header_prefix` and/or `signing_key_env`",
        "sessions" => "a mapping of session settings such as `store`",
        "sessions.store" => "`memory` or `redis`",
        "sessions.redis" => "a mapping with one of `url`, `sentinel` or `cluster`",
        "sessions.redis.sentinel" => "a mapping with `master_name` and `urls`",
        "sessions.redis.cluster" => "a mapping with `urls`",
        "sessions.redis.sentinel.urls" | "sessions.redis.cluster.urls" => {
            "a sequence of redis:// URLs"
        }
        "routes" => "a sequence of routes, each a mapping with `path`",
        "routes[]" => "a route: a mapping with `path`",
        "routes[].methods" => "a sequence of HTTP methods, such as `[GET, POST]`",
        "logging" => "a mapping with `format` and/or `level`",
        "logging.format" => "`text` or `json`",
        "auth" => "a mapping of login settings such as `mode`",
        "auth.mode" => "`gateway` or `upstream`",
        "auth.upstream" => {
            "a mapping with one of `user_id_header`, `user_id_json_pointer` or `user_id_redirect_regex`"
        }
        "auth.upstream.success_status" => "a sequence of HTTP statuses, such as `[200, 302]`",
        "auth.upstream.app_cookies" => "`pass` or `drop`",
        "auth.password_checks" => "a mapping with `max_concurrent` and/or `queue_timeout_ms`",
        "http" => "a mapping with `allowed_hosts` and/or `hsts`",
        "http.allowed_hosts" => "a sequence of host names",
        "http.hsts" => "a mapping with `enabled`, `max_age_seconds` and/or `include_subdomains`",
        "admin" => "a mapping with `admins_may_grant_impersonation`",
        "impersonation" => "a mapping of impersonation settings such as `enabled`",
        "impersonation.also_targets" => "a sequence of user classes: `users`, `paired`",
        "impersonation.privacy" => "a mapping such as `hide_contacts_and_leads: true`",
        "impersonation.privacy.hidden_fields" => "a sequence of JSON pointers, such as `[/email, /phone]`",
        "permissions" => "a mapping with `resources`, `user_attributes` and/or `groups`",
        "permissions.resources" => "a sequence of resources, each a mapping with a `name`",
        "impersonation.audit" => "a mapping with `stream_max_len`, `file` and/or `buffer`",
        "mail" => "a mapping with `from` and one of `smtp` or `outbox`",
        "mail.smtp" => "a mapping with `host`",
        "mail.smtp.security" => "`starttls`, `tls` or `none`",
        "licences" => "a mapping with `full` (the number of Full seats)",
        "partners" => "a mapping of partner settings such as `organisations` and `bundles`",
        "partners.organisations" => "a sequence of partners, each a mapping with `id` and `name`",
        "partners.organisations[]" => "a partner: a mapping with `id` and `name`",
        "partners.organisations[].status" => "`active` or `inactive`",
        "partners.bundles" => "a sequence of bundles, each a mapping with `name` and `areas`",
        "partners.bundles[]" => "a bundle: a mapping with `name` and `areas`",
        "routes[].records" => "a sequence of records, each a mapping with `resource` and `param` or `query`",
        "routes[].json_list" => "a mapping with `pointer` and `refs`",
        "routes[].json_record" => "a mapping with `pointer` and `refs`",
        "routes[].html" => "a sequence of rules, each a mapping with `selector` and `refs`",
        "routes[].body" => "a mapping with `refs`, each a mapping with `resource` and `field`",
        "tenants" => "a mapping of tenant settings such as `list` and `path_prefix`",
        "tenants.list" => "a sequence of tenants, each a mapping with `id` and `name`",
        "tenants.list[]" => "a tenant: a mapping with `id` and `name`",
        "tenants.hubs" => "a mapping of hub names to role lists, such as `default: [Partner User]`",
        "tenants.roles" | "tenants.partner_assignable" => {
            "a sequence of tenant role names, such as `[Partner User, Viewer]`"
        }
        "users" | "users_file" => "a sequence of users, each a mapping with `id`, `name` and `email`",
        "users[]" | "users_file[]" => "a user: a mapping with `id`, `name` and `email`",
        "users[].status" | "users_file[].status" => "`active` or `disabled`",
        "users[].roles" | "users_file[].roles" => {
            "a sequence of roles: `super_admin`, `admin`, `user`"
        }
        "users[].roles[]" | "users_file[].roles[]" => "`super_admin`, `admin` or `user`",
        "users[].licence" | "users_file[].licence" => "`full`, `viewer` or `none`",
        "users[].attributes" | "users_file[].attributes" => {
            "a mapping of attribute names to values, such as `Region: EMEA`"
        }
        _ => return None,
    })
}

/// A section or list written with nothing under it (`routes:` with every
/// entry commented out) means its defaults, as it did before serde-saphyr:
/// that reads it as null, which a struct or a list refuses, and a file
/// that worked would be refused on the next reload.
fn empty_is_default<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(de)?.unwrap_or_default())
}

fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn thirty() -> u64 {
    30
}
fn pool() -> usize {
    128
}
fn header_timeout_ms() -> u64 {
    10_000
}
fn max_client_connections() -> usize {
    10_000
}
fn connect_ms() -> u64 {
    2_000
}
fn io_ms() -> u64 {
    30_000
}
fn idle_s() -> u64 {
    60
}
fn default_prefix() -> String {
    "x-guise-".to_string()
}
fn default_key_env() -> String {
    "GUISE_SIGNING_KEY".to_string()
}
fn default_level() -> String {
    "info".to_string()
}
fn default_operations_address() -> String {
    "127.0.0.1:9090".to_string()
}

impl Default for RawSessions {
    fn default() -> Self {
        RawSessions {
            store: StoreKind::Memory,
            redis: None,
            cookie_name: default_cookie(),
            idle_timeout_seconds: idle_timeout(),
            absolute_lifetime_seconds: absolute_lifetime(),
            refresh_interval_seconds: refresh_interval(),
            cache_ttl_seconds: cache_ttl(),
            stale_grace_seconds: stale_grace(),
            cache_capacity: cache_capacity(),
            redis_connect_timeout_ms: redis_connect_ms(),
            redis_response_timeout_ms: redis_response_ms(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Ask for a login everywhere except on `public` routes and the login
    /// page itself. Turn off only for an app with no private pages.
    #[serde(default = "yes")]
    pub require_login: bool,
    /// Path of the legacy app's login page, which guise intercepts.
    #[serde(default = "default_login_path")]
    pub login_path: String,
    /// Where a browser goes after login when it asked for nothing else.
    #[serde(default = "default_after_login")]
    pub after_login: String,
    /// `gateway` (guise checks passwords) or `upstream` (the app does).
    #[serde(default)]
    pub mode: AuthMode,
    /// How to read the app's answer in `upstream` mode.
    pub upstream: Option<RawUpstreamLogin>,
    /// Failed logins allowed per username from one client network (an
    /// IPv4 address or an IPv6 /64) within the window.
    #[serde(default = "user_attempts")]
    pub max_attempts_per_user: u64,
    /// Login attempts allowed per client network within the window;
    /// successful logins do not count.
    #[serde(default = "client_attempts")]
    pub max_attempts_per_client: u64,
    /// Login attempts allowed per username from all networks within the
    /// window, for browsers without a device cookie of that user. A browser
    /// where the user signed in before is exempt, so strangers failing in
    /// a user's name cannot lock the user out.
    #[serde(default = "user_total_attempts")]
    pub max_attempts_per_user_total: u64,
    /// Window of the attempt limits.
    #[serde(default = "attempt_window")]
    pub attempt_window_seconds: u64,
    /// Days a device cookie (set at each successful login) vouches for a
    /// browser.
    #[serde(default = "device_cookie_days")]
    pub device_cookie_days: u64,
    /// Password verifications running at once, and how long a login waits
    /// for one before it gets 503 (restart to change).
    #[serde(default, deserialize_with = "empty_is_default")]
    pub password_checks: RawPasswordChecks,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPasswordChecks {
    /// Verifications at once (each holds about 19 MiB for argon2).
    #[serde(default = "password_concurrency")]
    pub max_concurrent: usize,
    /// Milliseconds a login waits in the queue before 503.
    #[serde(default = "password_queue_ms")]
    pub queue_timeout_ms: u64,
}

impl Default for RawPasswordChecks {
    fn default() -> Self {
        RawPasswordChecks {
            max_concurrent: password_concurrency(),
            queue_timeout_ms: password_queue_ms(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Hosts (with or without port) clients may name in `Host`; others get
    /// 421. Empty: any well-formed host.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub allowed_hosts: Vec<String>,
    /// `Strict-Transport-Security` on HTTPS answers.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub hsts: RawHsts,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHsts {
    /// Send it at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `max-age` in seconds.
    #[serde(default = "hsts_max_age")]
    pub max_age_seconds: u64,
    /// Add `includeSubDomains`.
    #[serde(default)]
    pub include_subdomains: bool,
}

impl Default for RawHsts {
    fn default() -> Self {
        RawHsts {
            enabled: true,
            max_age_seconds: hsts_max_age(),
            include_subdomains: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    /// Let admins (not only super admins) grant and revoke
    /// `can_impersonate`.
    #[serde(default)]
    pub admins_may_grant_impersonation: bool,
}

/// Impersonation ("Login as Partner User").
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImpersonation {
    /// The global switch.
    #[serde(default)]
    pub enabled: bool,
    /// Longest an impersonation lasts, in minutes; fractions allowed.
    #[serde(default = "sixty")]
    pub max_minutes: f64,
    /// Further user classes that may be impersonated: `users`, `paired`.
    #[serde(default, deserialize_with = "empty_is_default")]
    pub also_targets: Vec<String>,
    /// Impersonators acknowledge `terms` once before their first start.
    #[serde(default)]
    pub require_terms_ack: bool,
    /// The operator's terms of use for impersonation.
    pub terms: Option<String>,
    /// A reason is asked for each time.
    #[serde(default)]
    pub require_reason: bool,
    #[serde(default, deserialize_with = "empty_is_default")]
    pub privacy: RawPrivacy,
    #[serde(default, deserialize_with = "empty_is_default")]
    pub audit: RawAudit,
}

impl Default for RawImpersonation {
    fn default() -> Self {
        RawImpersonation {
            enabled: false,
            max_minutes: sixty(),
            also_targets: Vec::new(),
            require_terms_ack: false,
            terms: None,
            require_reason: false,
            privacy: RawPrivacy::default(),
            audit: RawAudit::default(),
        }
    }
}

fn sixty() -> f64 {
    60.0
}

/// Privacy while impersonating.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    #[serde(default)]
    pub hide_contacts_and_leads: bool,
    /// Hide only these fields (JSON pointers within a record).
    #[serde(default, deserialize_with = "empty_is_default")]
    pub hidden_fields: Vec<String>,
    #[serde(default)]
    pub disable_contacts_and_leads_export: bool,
    /// Users flagged `internal` are exempt (off unless set: privacy is the
    /// default).
    #[serde(default)]
    pub exempt_internal_staff: bool,
}

/// Where the impersonation audit goes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    /// Most entries the Redis Stream keeps.
    #[serde(default = "audit_max_len")]
    pub stream_max_len: u64,
    /// A JSON-lines file (relative to this file) instead of the store.
    pub file: Option<String>,
    /// Records held in memory while the audit cannot be written.
    #[serde(default = "audit_buffer")]
    pub buffer: usize,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            stream_max_len: audit_max_len(),
            file: None,
            buffer: audit_buffer(),
        }
    }
}

fn audit_max_len() -> u64 {
    100_000
}

fn audit_buffer() -> usize {
    10_000
}

/// Welcome emails. Exactly one of `smtp` or `outbox`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    /// The sender: `guise@example.com` or `Example <guise@example.com>`.
    pub from: String,
    /// Send through this SMTP server.
    pub smtp: Option<RawSmtp>,
    /// Write each message as an `.eml` file into this folder (relative to
    /// this file) instead of sending it.
    pub outbox: Option<String>,
    /// The public origin links point at, such as
    /// `https://gateway.example.com` (default: the scheme and Host of the
    /// admin's request).
    pub base_url: Option<String>,
    /// Hours a set-password link works; fractions allowed.
    #[serde(default = "link_lifetime_hours")]
    pub link_lifetime_hours: f64,
    /// The subject line of the welcome email.
    #[serde(default = "welcome_subject")]
    pub subject: String,
}

/// An SMTP server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    /// Host name or address of the server.
    pub host: String,
    /// Port (default by `security`: 587, 465, 25).
    pub port: Option<u16>,
    /// `starttls`, `tls` (TLS from the first byte) or `none` (loopback
    /// test servers only).
    #[serde(default)]
    pub security: SmtpSecurity,
    /// User name to authenticate with, together with `password_env`.
    pub username: Option<String>,
    /// Name of the environment variable that holds the password.
    pub password_env: Option<String>,
    /// PEM file (relative to this file) of the CA certificates the
    /// server's certificate must chain to, instead of the system's roots:
    /// for a relay whose certificate a private CA signed.
    pub ca_file: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded by STARTTLS, which must succeed.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No TLS at all: only for a test server on loopback.
    None,
}

fn link_lifetime_hours() -> f64 {
    24.0
}
fn welcome_subject() -> String {
    "Set your password".to_string()
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            require_login: true,
            login_path: default_login_path(),
            after_login: default_after_login(),
            mode: AuthMode::Gateway,
            upstream: None,
            max_attempts_per_user: user_attempts(),
            max_attempts_per_client: client_attempts(),
            max_attempts_per_user_total: user_total_attempts(),
            attempt_window_seconds: attempt_window(),
            device_cookie_days: device_cookie_days(),
            password_checks: RawPasswordChecks::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Gateway,
    Upstream,
}

/// How guise reads the app's answer to its own login form. Exactly one of
/// `user_id_from_username`, `user_id_header`, `user_id_json_pointer`,
/// `user_id_redirect_regex` or `whoami` says how guise learns who logged in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamLogin {
    /// Statuses that may mean the app accepted the login.
    #[serde(default = "success_statuses")]
    pub success_status: Vec<u16>,
    /// A cookie the app sets only on a successful login (its session
    /// cookie); when given, an answer without it is a refusal whatever its
    /// status.
    pub success_cookie: Option<String>,
    /// Form fields that hold the username, tried in order.
    #[serde(default = "username_fields")]
    pub username_fields: Vec<String>,
    /// The user id is the submitted username, once the answer counts as a
    /// success.
    #[serde(default)]
    pub user_id_from_username: bool,
    /// Response header holding the user id.
    pub user_id_header: Option<String>,
    /// JSON pointer (RFC 6901) into the response body holding the user id.
    pub user_id_json_pointer: Option<String>,
    /// Regex over the `Location` target with a capture group `id`.
    pub user_id_redirect_regex: Option<String>,
    /// A request guise sends to the app, with the app's new session
    /// cookies, to ask who is signed in.
    pub whoami: Option<RawWhoami>,
    /// The app's own cookies from the login answer: `pass` them to the
    /// browser, or `drop` them (guise's session is the only one).
    #[serde(default)]
    pub app_cookies: AppCookies,
    /// The app's session cookies: guise expires them when its own session
    /// ends (logout, revocation), and never lets them outlive it.
    #[serde(default)]
    pub app_session_cookies: Vec<String>,
    /// The app's logout path: when a request to it succeeds, guise ends its
    /// own session too.
    pub logout_path: Option<String>,
    /// Users the app accepts who are not in guise's configuration.
    #[serde(default)]
    pub provision: RawProvision,
}

/// The "who am I" request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWhoami {
    /// Path (and query) on the app, e.g. `/admin/` or `/api/me`.
    pub path: String,
    /// Exactly one of: a response header holding the id,
    pub header: Option<String>,
    /// a JSON pointer into the response body,
    pub json_pointer: Option<String>,
    /// or a regex over the response body with a capture group `id`.
    pub body_regex: Option<String>,
}

/// Directory entries for users the app owns.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvision {
    /// Make a directory entry on a user's first login (off: only users in
    /// this file or made through the admin API may sign in).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Roles a new entry gets.
    #[serde(default = "default_provision_roles")]
    pub roles: Vec<crate::users::Role>,
    /// Attributes a new entry gets.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Default for RawProvision {
    fn default() -> Self {
        RawProvision {
            enabled: true,
            roles: default_provision_roles(),
            attributes: Default::default(),
        }
    }
}

fn default_provision_roles() -> Vec<crate::users::Role> {
    vec![crate::users::Role::User]
}

fn username_fields() -> Vec<String> {
    vec!["username".into(), "email".into()]
}

#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AppCookies {
    #[default]
    Pass,
    Drop,
}

fn default_cookie() -> String {
    "guise_session".to_string()
}
fn idle_timeout() -> u64 {
    1800
}
fn absolute_lifetime() -> u64 {
    12 * 3600
}
fn refresh_interval() -> u64 {
    60
}
fn cache_ttl() -> u64 {
    30
}
fn stale_grace() -> u64 {
    30
}
fn cache_capacity() -> u64 {
    200_000
}
fn redis_connect_ms() -> u64 {
    250
}
fn redis_response_ms() -> u64 {
    500
}
fn default_login_path() -> String {
    "/login".to_string()
}
fn default_after_login() -> String {
    "/".to_string()
}
fn user_attempts() -> u64 {
    5
}
fn client_attempts() -> u64 {
    30
}
fn user_total_attempts() -> u64 {
    100
}
fn device_cookie_days() -> u64 {
    30
}
fn password_concurrency() -> usize {
    4
}
fn password_queue_ms() -> u64 {
    2_000
}
fn hsts_max_age() -> u64 {
    31_536_000
}
fn attempt_window() -> u64 {
    300
}
fn success_statuses() -> Vec<u16> {
    vec![200, 302, 303]
}
