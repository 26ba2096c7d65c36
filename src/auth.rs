//! Logins, logouts, and who a request comes from.
//!
//! - [`AuthService::identify`] turns the session cookie into a
//!   [`Subject`] (pipeline stage 4);
//! - [`policy`] holds the pure decisions: which requests need a subject,
//!   who may log in or keep a session;
//! - [`login`] answers the login page and the JSON login when guise checks
//!   passwords (`auth.mode: gateway`), [`upstream_login`] sends the app's
//!   own login form on when the app does (`auth.mode: upstream`);
//! - [`limits`] counts attempts and caps password verifications;
//! - [`logout`] ends sessions; [`app_session`] keeps the app's own session
//!   in step with guise's.
//!
//! Every refusal here is a [`LoginError`], answered through
//! [`crate::respond`].

pub mod app_session;
pub mod limits;
pub mod login;
pub mod logout;
pub mod pages;
pub mod policy;
pub mod redirect;
pub mod upstream_login;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{RETRY_AFTER, SET_COOKIE};
use http::HeaderName;
use pingora::http::RequestHeader;

use crate::body::BodyError;
use crate::config::{Auth, Provision};
use crate::csrf::CsrfError;
use crate::metrics::Metrics;
use crate::peer::Peer;
use crate::respond::Refuse;
use crate::session::{cookie, Active, SessionError, SessionManager, Token};
use crate::store::StoreEvent;
use crate::subject::Subject;
use crate::users::{Directory, Origin, User};

use limits::{Admitted, Limiter, PasswordGate};

/// The login form's double-submit CSRF cookie.
pub const LOGIN_CSRF_COOKIE: &str = "guise_login_csrf";
/// The device cookie: this browser saw a successful login of a user.
pub const DEVICE_COOKIE: &str = "guise_device";

/// Why a login or logout was refused; each maps to one answer and one
/// metric label.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong email or password")]
    BadCredentials,
    #[error("too many login attempts; try again in {} s", .0.as_secs().max(1))]
    Limited(Duration),
    #[error("the gateway is checking too many passwords at once; try again in a moment")]
    Busy,
    #[error(transparent)]
    Store(#[from] SessionError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Csrf(#[from] CsrfError),
    #[error("JSON login is only offered when the gateway checks passwords (auth.mode: gateway)")]
    NotOffered,
    #[error("the login page takes GET and POST")]
    Method,
    #[error("the application's login could not be reached; try again shortly")]
    UpstreamUnreachable,
    #[error("the application accepted the sign-in, but the gateway could not tell which user signed in; the gateway's administrator must set auth.upstream's user id source")]
    NoIdentity,
    #[error("the application's redirect names a user the sign-in form could choose, not the one who signed in; the gateway refused it (see auth.upstream.user_id_redirect_regex)")]
    Steered,
    #[error("this account may not sign in through the gateway; ask an administrator")]
    NotAllowed,
    /// The password was right, but the partner rules refuse the account
    /// (no Full licence). Said only after the password checked out, so a
    /// stranger learns nothing about which accounts exist.
    #[error(transparent)]
    Partner(#[from] crate::partners::PartnerError),
}

impl LoginError {
    /// The `guise_logins_total` label of this outcome.
    pub fn metric(&self) -> &'static str {
        match self {
            LoginError::BadCredentials => "bad_credentials",
            LoginError::Limited(_) => "limited",
            LoginError::Busy => "busy",
            LoginError::Store(_) => "store_unavailable",
            LoginError::UpstreamUnreachable => "upstream_unreachable",
            LoginError::NoIdentity => "no_identity",
            LoginError::Steered => "steered_identity",
            LoginError::NotAllowed => "not_allowed",
            LoginError::Partner(e) => e.code(),
            LoginError::Body(_)
            | LoginError::Csrf(_)
            | LoginError::NotOffered
            | LoginError::Method => "bad_request",
        }
    }
}

impl Refuse for LoginError {
    fn status(&self) -> u16 {
        match self {
            LoginError::BadCredentials => 401,
            LoginError::Limited(_) => 429,
            LoginError::Busy => 503,
            LoginError::Store(e) => e.status(),
            LoginError::Body(e) => e.status(),
            LoginError::Csrf(e) => e.status(),
            LoginError::NotOffered => 404,
            LoginError::Method => 405,
            LoginError::UpstreamUnreachable | LoginError::NoIdentity => 502,
            LoginError::Steered | LoginError::NotAllowed => 403,
            LoginError::Partner(e) => e.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            LoginError::BadCredentials => "bad_credentials",
            LoginError::Limited(_) => "too_many_attempts",
            LoginError::Busy => "login_busy",
            LoginError::Store(e) => e.code(),
            LoginError::Body(e) => e.code(),
            LoginError::Csrf(e) => e.code(),
            LoginError::NotOffered => "not_found",
            LoginError::Method => "method_not_allowed",
            LoginError::UpstreamUnreachable => "upstream_unreachable",
            LoginError::NoIdentity => "no_identity",
            LoginError::Steered => "steered_identity",
            LoginError::NotAllowed => "not_allowed",
            LoginError::Partner(e) => e.code(),
        }
    }
    fn title(&self) -> &'static str {
        match self {
            LoginError::BadCredentials => "Sign-in failed",
            LoginError::Limited(_) => "Too many attempts",
            LoginError::NoIdentity => "Sign-in not understood",
            LoginError::Csrf(e) => e.title(),
            _ => http::StatusCode::from_u16(self.status())
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Refused"),
        }
    }
    fn headers(&self) -> Vec<(HeaderName, String)> {
        match self {
            LoginError::Limited(d) => vec![(RETRY_AFTER, d.as_secs().max(1).to_string())],
            LoginError::Busy => vec![(RETRY_AFTER, "1".to_string())],
            _ => Vec::new(),
        }
    }
}

/// Login, logout and session lookup for one gateway.
pub struct AuthService {
    pub sessions: Arc<SessionManager>,
    pub directory: Arc<Directory>,
    pub metrics: Metrics,
    limiter: Limiter,
    passwords: PasswordGate,
    /// Connections of guise's own to the app (the upstream login).
    connector: pingora::connectors::http::Connector,
    /// The session cookie's name on HTTPS (`__Host-` prefixed), made once
    /// rather than per request.
    cookie_https: String,
    /// Every cookie name of the gateway's own (session, login CSRF and
    /// device, plain and `__Host-`), taken off requests bound upstream.
    own_cookies: [String; 6],
}

impl AuthService {
    pub fn new(
        sessions: Arc<SessionManager>,
        directory: Arc<Directory>,
        metrics: Metrics,
        auth: &Auth,
    ) -> Self {
        let base = &sessions.settings().cookie_name;
        let cookie_https = cookie::name(base, true);
        let own_cookies = [
            base.clone(),
            cookie_https.clone(),
            LOGIN_CSRF_COOKIE.to_string(),
            cookie::name(LOGIN_CSRF_COOKIE, true),
            DEVICE_COOKIE.to_string(),
            cookie::name(DEVICE_COOKIE, true),
        ];
        AuthService {
            limiter: Limiter::new(
                sessions.store().clone(),
                metrics.clone(),
                sessions.clock_handle(),
            ),
            passwords: PasswordGate::new(auth.password_checks, metrics.clone()),
            sessions,
            directory,
            metrics,
            connector: pingora::connectors::http::Connector::new(None),
            cookie_https,
            own_cookies,
        }
    }

    /// Every cookie name of the gateway's own, to strip from requests
    /// bound upstream.
    pub fn own_cookies(&self) -> &[String] {
        &self.own_cookies
    }

    /// The session cookie's name for a request over HTTPS or not.
    pub fn cookie_name(&self, https: bool) -> &str {
        if https {
            &self.cookie_https
        } else {
            &self.sessions.settings().cookie_name
        }
    }

    /// Pipeline stage 4: the subject behind the request's session cookie,
    /// if any. A session whose user was removed, or may no longer keep a
    /// session ([`policy::may_keep_session`]), is ended on the spot.
    pub async fn identify(
        &self,
        req: &RequestHeader,
        peer: &Peer,
    ) -> Result<Option<Subject>, SessionError> {
        let Some(token) = cookie::read_token(req, self.cookie_name(peer.https)) else {
            return Ok(None);
        };
        let Some(active) = self.sessions.resolve(&token).await? else {
            return Ok(None);
        };
        let user = match self.directory.get(&active.record.user_id) {
            Some(user) => Some(user),
            // Another node may have just added this user (a user the app
            // owns, at first login) and its event not reached this node yet:
            // read the record rather than end a good session.
            None => self.load_stored_user(&active.record.user_id).await,
        };
        match user {
            Some(user) if policy::may_keep_session(&user) => {
                // An impersonation: the session's user is the admin, and the
                // request runs as the user it names. One who cannot be found
                // leaves the admin as the subject, and stage 4b ends the
                // impersonation (it never runs as the admin silently).
                let effective = match Subject::impersonated_id(&active) {
                    Some(id) => match self.directory.get(id) {
                        Some(u) => Some(u),
                        None => self.load_stored_user(id).await,
                    },
                    None => None,
                };
                Ok(Some(match effective {
                    Some(e) => Subject::impersonating(user, e, active),
                    None => Subject::own(user, active),
                }))
            }
            _ => {
                let _ = self.sessions.revoke(&active.key).await;
                Ok(None)
            }
        }
    }

    /// A user saved in the store that this node's directory lacks, put in
    /// the directory. A record the directory refuses stays out.
    async fn load_stored_user(&self, id: &str) -> Option<Arc<User>> {
        let json = self.sessions.store().load_user(id).await.ok()??;
        let user: User = serde_json::from_str(&json).ok()?;
        self.directory.upsert(user).ok()?;
        self.directory.get(id)
    }

    /// The directory entry for a user the app accepted at login: the one
    /// listed (which keeps its roles), or a new one made from `provision`,
    /// saved in the store and announced to the other nodes. `None` when
    /// provisioning is off or the id cannot be an entry.
    pub async fn user_from_app(
        &self,
        id: &str,
        provision: Option<&Provision>,
    ) -> Option<Arc<User>> {
        if let Some(user) = self.directory.get(id) {
            return Some(user);
        }
        if let Some(user) = self.load_stored_user(id).await {
            return Some(user);
        }
        let provision = provision?;
        let mut user = User::new(id, id, "");
        if id.contains('@') {
            user.email = id.to_string();
        }
        user.roles = provision.roles.clone();
        user.attributes = provision.attributes.clone();
        user.origin = Origin::App;
        if let Err(e) = self.directory.check_upsert(&user) {
            tracing::warn!(user = %id, error = %e, "the app accepted a user the directory cannot hold");
            return None;
        }
        let json = serde_json::to_string(&user).ok()?;
        let store = self.sessions.store();
        if let Err(e) = store.save_user(id, &json).await {
            tracing::warn!(user = %id, error = %e, "cannot save a user the app accepted");
            return None;
        }
        self.directory.upsert(user).ok()?;
        let _ = store
            .publish(&StoreEvent::UserChanged {
                user_id: id.to_string(),
            })
            .await;
        tracing::info!(user = %id, "user the app accepted added to the directory");
        self.directory.get(id)
    }

    /// Count an attempt for `username` from `peer` against the limits, in
    /// the order [`limits`] documents; `device` is the request's device
    /// cookie, if any.
    pub async fn admit(
        &self,
        auth: &Auth,
        key: &[u8],
        username: &str,
        peer: &Peer,
        device: Option<&str>,
    ) -> Result<Admitted, LoginError> {
        self.limiter.admit(auth, key, username, peer, device).await
    }

    /// Check a username and password under the attempt limits and the cap
    /// on concurrent verifications.
    pub async fn attempt(
        &self,
        auth: &Auth,
        key: &[u8],
        username: &str,
        password: &str,
        peer: &Peer,
        device: Option<&str>,
    ) -> Result<(Arc<User>, Admitted), LoginError> {
        let admitted = self.admit(auth, key, username, peer, device).await?;
        let directory = self.directory.clone();
        let (u, p) = (username.trim().to_string(), password.to_string());
        // Password hashing is deliberately slow and memory-hungry: off the
        // proxy's event loop, and only so many at once.
        let checked = self
            .passwords
            .run(move || directory.check_password(&u, &p))
            .await?;
        match checked {
            Ok(user) if policy::may_log_in(&user) => {
                crate::partners::may_log_in(&user)?;
                Ok((user, admitted))
            }
            _ => Err(LoginError::BadCredentials),
        }
    }

    /// A login succeeded: take it off the counters, start a session, and
    /// say so in the metrics and the log.
    pub async fn start_session(
        &self,
        user: &User,
        admitted: &Admitted,
        peer: &Peer,
        extra: BTreeMap<String, String>,
    ) -> Result<(Token, Active), LoginError> {
        self.limiter.succeeded(admitted).await;
        let (token, active) = self
            .sessions
            .create(&user.id, peer.ip.map(|ip| ip.to_string()), extra)
            .await?;
        self.metrics.logins.with_label_values(&["ok"]).inc();
        tracing::info!(user = %user.id, session = %active.record.reference, client = %peer.network(), "login");
        Ok((token, active))
    }

    /// Count and log a refused login.
    pub fn login_refused(&self, e: &LoginError) {
        self.metrics.logins.with_label_values(&[e.metric()]).inc();
        tracing::info!(reason = e.metric(), "login refused");
    }

    /// `Set-Cookie` headers for a new session: the session cookie and the
    /// device cookie that vouches for this browser next time.
    pub fn session_cookies(
        &self,
        auth: &Auth,
        key: &[u8],
        peer: &Peer,
        username: &str,
        token: &Token,
    ) -> Vec<(HeaderName, String)> {
        let max_age = self.sessions.settings().absolute_lifetime;
        let now = self.sessions.clock().unix_now();
        vec![
            (
                SET_COOKIE,
                cookie::set(self.cookie_name(peer.https), token, peer.https, max_age),
            ),
            (
                SET_COOKIE,
                cookie::strict(
                    &cookie::name(DEVICE_COOKIE, peer.https),
                    &limits::device_cookie(
                        key,
                        username,
                        now + auth.device_cookie_lifetime.as_secs(),
                    ),
                    peer.https,
                    auth.device_cookie_lifetime,
                ),
            ),
        ]
    }

    /// The device cookie the request carries, if any.
    pub fn device_cookie(&self, req: &RequestHeader, peer: &Peer) -> Option<String> {
        cookie::read(req, &cookie::name(DEVICE_COOKIE, peer.https))
    }
}
