//! Login interception, logout, and who a request comes from.
//!
//! [`AuthService::gate`] runs for every request after client identity
//! headers were stripped. It answers the gateway's own endpoints and the
//! app's login page, finds the session behind the cookie, and decides
//! whether an anonymous request may pass. What it finds travels on in the
//! request context as an [`Identity`].

pub mod csrf;
pub mod pages;
pub mod redirect;
mod upstream_login;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{RETRY_AFTER, SET_COOKIE};
use http::HeaderName;
use pingora::proxy::Session;
use serde_json::json;

use crate::config::{LoginMode, RouteSpec};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::respond::{self, send_refusal, send_refusal_with, Format, Refusal};
use crate::session::{cookie, Active, SessionError, SessionManager, Token};
use crate::store::Store;
use crate::users::{Directory, User};

/// The login form's double-submit CSRF cookie.
const LOGIN_CSRF_COOKIE: &str = "guise_login_csrf";

/// Largest login or admin request body read into memory.
const BODY_LIMIT: usize = 64 * 1024;

/// The user a request runs as, and the session that says so.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: Arc<User>,
    pub session: Active,
}

/// What the proxy does next.
pub enum Gate {
    /// Proxy the request upstream, as this identity (or anonymously).
    Continue(Option<Identity>),
    /// The gateway already answered.
    Answered,
}

/// Why a login failed; each maps to one answer and one metric label.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("wrong email or password")]
    BadCredentials,
    #[error("too many login attempts; try again in {} s", .0.as_secs().max(1))]
    Limited(Duration),
    #[error(transparent)]
    Store(#[from] SessionError),
}

impl LoginError {
    fn metric(&self) -> &'static str {
        match self {
            LoginError::BadCredentials => "bad_credentials",
            LoginError::Limited(_) => "limited",
            LoginError::Store(_) => "store_unavailable",
        }
    }

    fn refusal(&self) -> (Refusal, Vec<(HeaderName, String)>) {
        match self {
            LoginError::BadCredentials => (
                Refusal::new(401, "bad_credentials", "Sign-in failed", self.to_string()),
                vec![],
            ),
            LoginError::Limited(d) => (
                Refusal::new(
                    429,
                    "too_many_attempts",
                    "Too many attempts",
                    self.to_string(),
                ),
                vec![(RETRY_AFTER, d.as_secs().max(1).to_string())],
            ),
            LoginError::Store(_) => (store_unavailable(), vec![]),
        }
    }
}

fn store_unavailable() -> Refusal {
    Refusal::new(
        503,
        "session_store_unavailable",
        "Session store unavailable",
        "the gateway cannot reach its session store right now, so it cannot check who you are; try again shortly",
    )
}

/// Login, logout and session lookup for one gateway.
pub struct AuthService {
    pub sessions: Arc<SessionManager>,
    pub directory: Arc<Directory>,
    pub metrics: Metrics,
    connector: pingora::connectors::http::Connector,
    /// The session cookie's name on HTTPS (`__Host-` prefixed), made once
    /// rather than per request.
    cookie_https: String,
    /// Every cookie name of the gateway's own (session and login CSRF,
    /// plain and `__Host-`), taken off requests bound upstream.
    own_cookies: [String; 4],
}

/// Facts about the request every handler needs.
pub struct Req<'a> {
    pub https: bool,
    pub cookie_name: &'a str,
    /// Kept as an address: only logins need it as text, so most requests
    /// never format it.
    pub client_ip: Option<IpAddr>,
}

impl AuthService {
    pub fn new(sessions: Arc<SessionManager>, directory: Arc<Directory>, metrics: Metrics) -> Self {
        let base = &sessions.settings().cookie_name;
        let cookie_https = cookie::name(base, true);
        let own_cookies = [
            base.clone(),
            cookie_https.clone(),
            LOGIN_CSRF_COOKIE.to_string(),
            cookie::name(LOGIN_CSRF_COOKIE, true),
        ];
        AuthService {
            sessions,
            directory,
            metrics,
            connector: pingora::connectors::http::Connector::new(None),
            cookie_https,
            own_cookies,
        }
    }

    /// Take guise's cookies (session, login CSRF) off a request bound for
    /// the upstream, under both their plain and `__Host-` names.
    pub fn strip_gateway_cookies(&self, req: &mut pingora::http::RequestHeader) {
        cookie::strip(req, &self.own_cookies);
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.sessions.store()
    }

    /// Decide what happens to a request (see the module doc).
    pub async fn gate(
        &self,
        s: &mut Session,
        live: &Live,
        route: Option<&RouteSpec>,
    ) -> pingora::Result<Gate> {
        let https = s.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
        let req = Req {
            https,
            cookie_name: if https {
                &self.cookie_https
            } else {
                &self.sessions.settings().cookie_name
            },
            client_ip: s.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()),
        };
        let auth = &live.config.auth;
        let path = s.req_header().uri.path().to_string();
        let method = s.req_header().method.clone();

        let public = route.is_some_and(|r| r.public);
        // Who is asking (the login page and gateway endpoints need it too).
        let identity = match self.identify(s, &req).await {
            Ok(i) => i,
            // Without the store nobody can be recognised; pages that need
            // nobody (public routes, the login form) still work.
            Err(e)
                if public
                    || !auth.require_login
                    || (path == auth.login_path && method == http::Method::GET) =>
            {
                tracing::debug!(error = %e, "serving anonymously while the session store is unavailable");
                None
            }
            Err(_) => {
                send_refusal(s, &store_unavailable()).await?;
                return Ok(Gate::Answered);
            }
        };

        // The gateway's own endpoints and the login page are rare next to
        // proxied requests, and their futures are large (the upstream login
        // holds a whole client connection): boxed, they cost an allocation
        // when used instead of a bigger future copied on every request.
        if let Some(rest) = path.strip_prefix(crate::proxy::GATEWAY_PREFIX) {
            Box::pin(self.endpoint(s, &req, live, rest, identity.as_ref())).await?;
            return Ok(Gate::Answered);
        }
        if path == auth.login_path {
            return Box::pin(self.login_path(s, &req, live, identity)).await;
        }

        if identity.is_none() && auth.require_login && !public {
            self.login_required(s, live).await?;
            return Ok(Gate::Answered);
        }
        Ok(Gate::Continue(identity))
    }

    /// Answer `/_guise/{rest}`.
    async fn endpoint(
        &self,
        s: &mut Session,
        req: &Req<'_>,
        live: &Live,
        rest: &str,
        identity: Option<&Identity>,
    ) -> pingora::Result<()> {
        let method = s.req_header().method.clone();
        match (method.as_str(), rest) {
            ("POST", "login") => self.json_login(s, req, live).await,
            ("POST", "logout") => self.logout(s, req, live, identity).await,
            ("GET", "logout") => self.sign_out_page(s, live, identity).await,
            ("GET", "session") => self.session_info(s, identity).await,
            (_, r) if r.starts_with("admin/") || r == "admin" => {
                crate::admin::handle(self, s, req, identity).await
            }
            _ => {
                let r = Refusal::new(
                    404,
                    "not_found",
                    "Not found",
                    format!(
                        "the gateway has no endpoint {method} {}{rest}",
                        crate::proxy::GATEWAY_PREFIX
                    ),
                );
                send_refusal(s, &r).await
            }
        }
    }

    /// Answer the app's login path: guise's own form in gateway mode; in
    /// upstream mode the app's page, and its form posted through guise.
    async fn login_path(
        &self,
        s: &mut Session,
        req: &Req<'_>,
        live: &Live,
        identity: Option<Identity>,
    ) -> pingora::Result<Gate> {
        let auth = &live.config.auth;
        let method = s.req_header().method.clone();
        match (&auth.mode, method.as_str()) {
            (LoginMode::Gateway, "GET" | "HEAD") => {
                self.login_page(s, req, live, identity.as_ref()).await?
            }
            (LoginMode::Gateway, "POST") => self.form_login(s, req, live).await?,
            (LoginMode::Gateway, _) => {
                let r = Refusal::new(
                    405,
                    "method_not_allowed",
                    "Method not allowed",
                    "the login page takes GET and POST",
                );
                send_refusal(s, &r).await?;
            }
            (LoginMode::Upstream(cfg), "POST") => {
                self.upstream_login(s, req, live, cfg).await?;
            }
            // The app's own login page: show it without a session.
            (LoginMode::Upstream(_), _) => return Ok(Gate::Continue(identity)),
        }
        Ok(Gate::Answered)
    }

    /// The session and user behind the request's cookie, if any.
    async fn identify(&self, s: &Session, req: &Req<'_>) -> Result<Option<Identity>, SessionError> {
        let Some(token) = cookie::read_token(s.req_header(), req.cookie_name) else {
            return Ok(None);
        };
        let Some(active) = self.sessions.resolve(&token).await? else {
            return Ok(None);
        };
        match self.directory.get(&active.record.user_id) {
            Some(user) if user.is_active() => Ok(Some(Identity {
                user,
                session: active,
            })),
            _ => {
                // The user was removed or disabled since login.
                let _ = self.sessions.revoke(&active.key).await;
                Ok(None)
            }
        }
    }

    async fn login_required(&self, s: &mut Session, live: &Live) -> pingora::Result<()> {
        let login = &live.config.auth.login_path;
        match Format::of(s.req_header()) {
            Format::Html => {
                let target = s
                    .req_header()
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".into());
                let next: String =
                    url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
                respond::redirect(s, 302, &format!("{login}?next={next}"), &[]).await
            }
            Format::Json => {
                let r = Refusal::new(
                    401,
                    "login_required",
                    "Sign-in required",
                    format!("this page needs a signed-in user; sign in at {login} or POST credentials to /_guise/login"),
                );
                send_refusal(s, &r).await
            }
        }
    }

    // === logging in ===

    /// Check a username and password, with attempt limits.
    pub async fn attempt(
        &self,
        live: &Live,
        username: &str,
        password: &str,
        client_ip: Option<IpAddr>,
    ) -> Result<Arc<User>, LoginError> {
        let auth = &live.config.auth;
        let (user_counter, client_counter) = attempt_counters(username, client_ip);
        self.check_limits(auth, &user_counter, &client_counter)
            .await?;

        let directory = self.directory.clone();
        let (u, p) = (username.trim().to_string(), password.to_string());
        // Password hashing is deliberately slow: keep it off the proxy's
        // event loop.
        let checked = tokio::task::spawn_blocking(move || directory.check_password(&u, &p))
            .await
            .map_err(|_| LoginError::BadCredentials)?;
        match checked {
            Ok(user) => {
                let _ = self.store().reset(&user_counter).await;
                Ok(user)
            }
            Err(_) => Err(LoginError::BadCredentials),
        }
    }

    async fn check_limits(
        &self,
        auth: &crate::config::Auth,
        user_counter: &str,
        client_counter: &str,
    ) -> Result<(), LoginError> {
        let store_err = |e| LoginError::Store(SessionError::StoreUnavailable(e));
        let by_user = self
            .store()
            .hit(user_counter, auth.attempt_window)
            .await
            .map_err(store_err)?;
        let by_client = self
            .store()
            .hit(client_counter, auth.attempt_window)
            .await
            .map_err(store_err)?;
        let mut wait = None;
        if by_user.count > auth.max_attempts_per_user {
            wait = Some(by_user.resets_in);
        }
        if by_client.count > auth.max_attempts_per_client {
            wait = Some(wait.map_or(by_client.resets_in, |w: Duration| {
                w.max(by_client.resets_in)
            }));
        }
        match wait {
            Some(w) => Err(LoginError::Limited(w)),
            None => Ok(()),
        }
    }

    /// Start a session and say so in the metrics and the log.
    pub async fn start_session(
        &self,
        user: &User,
        req: &Req<'_>,
        extra: BTreeMap<String, String>,
    ) -> Result<(Token, Active), LoginError> {
        let (token, active) = self
            .sessions
            .create(&user.id, req.client_ip.map(|ip| ip.to_string()), extra)
            .await?;
        self.metrics.logins.with_label_values(&["ok"]).inc();
        tracing::info!(user = %user.id, session = %active.record.reference, "login");
        Ok((token, active))
    }

    fn session_cookie(&self, req: &Req<'_>, token: &Token) -> (HeaderName, String) {
        let max_age = self.sessions.settings().absolute_lifetime;
        (
            SET_COOKIE,
            cookie::set(req.cookie_name, token, req.https, max_age),
        )
    }

    fn login_csrf_name(req: &Req<'_>) -> String {
        cookie::name(LOGIN_CSRF_COOKIE, req.https)
    }

    async fn login_page(
        &self,
        s: &mut Session,
        req: &Req<'_>,
        live: &Live,
        identity: Option<&Identity>,
    ) -> pingora::Result<()> {
        let next = query_param(s, "next").unwrap_or_default();
        let next_ok = redirect::safe_next(&next).map(str::to_string);
        if identity.is_some() {
            let to = next_ok.unwrap_or_else(|| live.config.auth.after_login.clone());
            return respond::redirect(s, 302, &to, &[]).await;
        }
        self.render_login(
            s,
            req,
            live,
            200,
            next_ok.as_deref().unwrap_or(""),
            "",
            None,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn render_login(
        &self,
        s: &mut Session,
        req: &Req<'_>,
        live: &Live,
        status: u16,
        next: &str,
        username: &str,
        error: Option<&str>,
    ) -> pingora::Result<()> {
        let csrf = crate::session::token::random_b64(24);
        let html = pages::login(&pages::LoginForm {
            action: &live.config.auth.login_path,
            csrf_token: &csrf,
            next,
            username,
            error,
        });
        let set = cookie::set_login_csrf(&Self::login_csrf_name(req), &csrf, req.https);
        respond::send_html(s, status, html, &[(SET_COOKIE, set)]).await
    }

    async fn form_login(&self, s: &mut Session, req: &Req<'_>, live: &Live) -> pingora::Result<()> {
        let body = match read_body(s).await {
            Ok(b) => b,
            Err(r) => return send_refusal(s, &r).await,
        };
        let form: BTreeMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let next = redirect::safe_next(field("next")).unwrap_or("").to_string();
        let username = field("username").to_string();

        let expected =
            cookie::read(s.req_header(), &Self::login_csrf_name(req)).unwrap_or_default();
        let csrf_ok = !expected.is_empty()
            && csrf::same_origin(s.req_header(), req.https).is_ok()
            && csrf::check_token(&expected, Some(field("csrf_token"))).is_ok();
        if !csrf_ok {
            let msg = "The form expired or came from another site. Please sign in again.";
            return self
                .render_login(s, req, live, 403, &next, &username, Some(msg))
                .await;
        }

        match self
            .attempt(live, &username, field("password"), req.client_ip)
            .await
        {
            Ok(user) => match self.start_session(&user, req, BTreeMap::new()).await {
                Ok((token, _)) => {
                    let to = if next.is_empty() {
                        live.config.auth.after_login.clone()
                    } else {
                        next
                    };
                    let clear_csrf = cookie::clear(&Self::login_csrf_name(req), req.https);
                    respond::redirect(
                        s,
                        303,
                        &to,
                        &[self.session_cookie(req, &token), (SET_COOKIE, clear_csrf)],
                    )
                    .await
                }
                Err(e) => self.login_failed(s, e).await,
            },
            Err(e @ LoginError::BadCredentials) => {
                self.metrics.logins.with_label_values(&[e.metric()]).inc();
                tracing::info!(reason = e.metric(), "login refused");
                self.render_login(
                    s,
                    req,
                    live,
                    401,
                    &next,
                    &username,
                    Some("Wrong email or password."),
                )
                .await
            }
            Err(e) => self.login_failed(s, e).await,
        }
    }

    async fn login_failed(&self, s: &mut Session, e: LoginError) -> pingora::Result<()> {
        self.metrics.logins.with_label_values(&[e.metric()]).inc();
        tracing::info!(reason = e.metric(), "login refused");
        let (r, extra) = e.refusal();
        send_refusal_with(s, &r, &extra).await
    }

    async fn json_login(&self, s: &mut Session, req: &Req<'_>, live: &Live) -> pingora::Result<()> {
        if !matches!(live.config.auth.mode, LoginMode::Gateway) {
            let r = Refusal::new(
                404,
                "not_found",
                "Not found",
                "JSON login is only offered when the gateway checks passwords (auth.mode: gateway)",
            );
            return send_refusal(s, &r).await;
        }
        // A cross-site form cannot send application/json without a CORS
        // preflight, which guise never grants: that makes this CSRF-safe.
        let is_json = s
            .req_header()
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("application/json")
            });
        if !is_json {
            let r = Refusal::new(415, "json_required", "JSON required", "send the credentials as an application/json body: {\"username\": ..., \"password\": ...}");
            return send_refusal(s, &r).await;
        }
        if let Err(e) = csrf::same_origin(s.req_header(), req.https) {
            return send_refusal(
                s,
                &Refusal::new(403, "csrf", "Request refused", e.to_string()),
            )
            .await;
        }
        let body = match read_body(s).await {
            Ok(b) => b,
            Err(r) => return send_refusal(s, &r).await,
        };
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Creds {
            username: String,
            password: String,
        }
        let creds: Creds = match serde_json::from_slice(&body) {
            Ok(c) => c,
            Err(e) => {
                let r = Refusal::new(
                    400,
                    "bad_json",
                    "Bad request",
                    format!("the body is not {{\"username\": ..., \"password\": ...}}: {e}"),
                );
                return send_refusal(s, &r).await;
            }
        };
        let result = match self
            .attempt(live, &creds.username, &creds.password, req.client_ip)
            .await
        {
            Ok(user) => self
                .start_session(&user, req, BTreeMap::new())
                .await
                .map(|(t, a)| (user, t, a)),
            Err(e) => Err(e),
        };
        match result {
            Ok((user, token, active)) => {
                let body = json!({
                    "user": user_json(&user),
                    "session": active.record.reference,
                    "csrf_token": active.record.csrf_token,
                    "expires_at": active.record.absolute_expiry,
                });
                respond::send_json(s, 200, &body, &[self.session_cookie(req, &token)]).await
            }
            Err(e) => self.login_failed(s, e).await,
        }
    }

    async fn upstream_login(
        &self,
        s: &mut Session,
        req: &Req<'_>,
        live: &Live,
        cfg: &crate::config::UpstreamLogin,
    ) -> pingora::Result<()> {
        upstream_login::handle(self, s, req, live, cfg).await
    }

    // === logging out ===

    async fn logout(
        &self,
        s: &mut Session,
        req: &Req<'_>,
        live: &Live,
        identity: Option<&Identity>,
    ) -> pingora::Result<()> {
        let browser = Format::of(s.req_header()) == Format::Html || is_form(s);
        let clear = (SET_COOKIE, cookie::clear(req.cookie_name, req.https));
        let Some(identity) = identity else {
            // Nothing to end; still clear whatever cookie the browser holds.
            return if browser {
                respond::redirect(s, 303, &live.config.auth.login_path, &[clear]).await
            } else {
                respond::send_json(
                    s,
                    200,
                    &json!({"logged_out": false, "detail": "there was no session"}),
                    &[clear],
                )
                .await
            };
        };
        if let Err(e) = csrf::same_origin(s.req_header(), req.https) {
            return send_refusal(
                s,
                &Refusal::new(403, "csrf", "Request refused", e.to_string()),
            )
            .await;
        }
        let given = match csrf::header_token(s.req_header()).map(str::to_string) {
            Some(t) => Some(t),
            None => match read_body(s).await {
                Ok(body) => url::form_urlencoded::parse(&body)
                    .find(|(k, _)| k == csrf::FIELD)
                    .map(|(_, v)| v.into_owned()),
                Err(r) => return send_refusal(s, &r).await,
            },
        };
        if let Err(e) = csrf::check_token(&identity.session.record.csrf_token, given.as_deref()) {
            return send_refusal(
                s,
                &Refusal::new(403, "csrf", "Request refused", e.to_string()),
            )
            .await;
        }
        if let Err(e) = self.sessions.revoke(&identity.session.key).await {
            tracing::warn!(error = %e, "logout could not reach the session store");
            return send_refusal(s, &store_unavailable()).await;
        }
        tracing::info!(user = %identity.user.id, session = %identity.session.record.reference, "logout");
        if browser {
            respond::redirect(s, 303, &live.config.auth.login_path, &[clear]).await
        } else {
            respond::send_json(s, 200, &json!({"logged_out": true}), &[clear]).await
        }
    }

    async fn sign_out_page(
        &self,
        s: &mut Session,
        live: &Live,
        identity: Option<&Identity>,
    ) -> pingora::Result<()> {
        match identity {
            Some(i) => {
                let html = pages::sign_out(&i.user.email, &i.session.record.csrf_token);
                respond::send_html(s, 200, html, &[]).await
            }
            None => respond::redirect(s, 302, &live.config.auth.login_path, &[]).await,
        }
    }

    async fn session_info(
        &self,
        s: &mut Session,
        identity: Option<&Identity>,
    ) -> pingora::Result<()> {
        match identity {
            Some(i) => {
                let body = json!({
                    "user": user_json(&i.user),
                    "session": i.session.record.reference,
                    "csrf_token": i.session.record.csrf_token,
                    "created_at": i.session.record.created_at,
                    "expires_at": i.session.record.absolute_expiry,
                });
                respond::send_json(s, 200, &body, &[]).await
            }
            None => {
                let r = Refusal::new(
                    401,
                    "login_required",
                    "Sign-in required",
                    "there is no session on this request",
                );
                send_refusal(s, &r).await
            }
        }
    }
}

/// The attempt counters a login by `username` from `client_ip` counts
/// against: one per username (case-blind), one per client address.
fn attempt_counters(username: &str, client_ip: Option<IpAddr>) -> (String, String) {
    let client = match client_ip {
        Some(ip) => format!("login:client:{ip}"),
        None => "login:client:unknown".to_string(),
    };
    (
        format!("login:user:{}", username.trim().to_lowercase()),
        client,
    )
}

fn is_form(s: &Session) -> bool {
    s.req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn query_param(s: &Session, name: &str) -> Option<String> {
    let q = s.req_header().uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The whole request body, up to `BODY_LIMIT` (64 KiB).
pub async fn read_body(s: &mut Session) -> Result<Bytes, Refusal> {
    let mut buf = BytesMut::new();
    loop {
        match s.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > BODY_LIMIT {
                    return Err(Refusal::new(
                        413,
                        "body_too_large",
                        "Request too large",
                        format!("the body is larger than {BODY_LIMIT} bytes"),
                    ));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                return Err(Refusal::new(
                    400,
                    "bad_body",
                    "Bad request",
                    format!("the request body could not be read: {}", e.etype().as_str()),
                ))
            }
        }
    }
}

/// A user as the gateway's JSON answers show it: never the password hash.
pub fn user_json(u: &User) -> serde_json::Value {
    let mut v = serde_json::to_value(u).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.remove("password_hash");
    }
    v
}

#[cfg(test)]
mod tests;
