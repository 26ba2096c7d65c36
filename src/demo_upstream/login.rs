//! The legacy app's own login, for the gateway's "upstream login" mode: the
//! gateway can forward a login form here and learn the user from the answer
//! (the `x-legacy-user-id` header) instead of checking passwords itself.

use std::collections::HashMap;
use std::sync::Mutex;

use http::header::{HeaderValue, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method, Request, StatusCode};
use hyper::body::Incoming;
use rand::RngCore;
use serde_json::json;

use super::pages::{self, PageContext};
use super::respond::{form_pairs, full, read_body, Response};
use super::DemoUpstream;

/// Name of the legacy app's session cookie.
pub(crate) const SESSION_COOKIE: &str = "legacy_session";
/// Header naming the user on a successful login answer.
pub(crate) const USER_HEADER: &str = "x-legacy-user-id";
/// The legacy app's users; all share [`PASSWORD`].
const USERS: [&str; 2] = ["legacy-admin", "legacy-user"];
const PASSWORD: &str = "legacy";
/// Largest login form accepted.
const FORM_LIMIT: usize = 64 * 1024;
/// Sessions kept before the table is reset; a demo app needs no eviction
/// policy, only a bound on memory.
const MAX_SESSIONS: usize = 10_000;

/// Legacy sessions: cookie token -> username.
#[derive(Debug, Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, String>>);

impl Sessions {
    fn start(&self, user: &str) -> String {
        let mut bytes = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SESSIONS {
            map.clear();
        }
        map.insert(token.clone(), user.to_owned());
        token
    }

    fn end(&self, token: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }

    /// The legacy user whose session cookie the request carries, if any.
    pub fn user(&self, headers: &HeaderMap) -> Option<String> {
        let token = session_token(headers)?;
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&token)
            .cloned()
    }
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_owned())
}

fn form(
    app: &DemoUpstream,
    status: StatusCode,
    page: &PageContext<'_>,
    username: Option<&str>,
    error: Option<&str>,
) -> Response {
    pages::render(
        app,
        status,
        "login.html",
        "Sign in to the legacy app",
        "",
        page,
        json!({ "username": username, "error": error }),
    )
}

/// `GET /login` shows the form; `POST /login` checks it.
pub(crate) async fn login(
    app: &DemoUpstream,
    req: Request<Incoming>,
    page: &PageContext<'_>,
) -> Response {
    match *req.method() {
        Method::GET | Method::HEAD => form(app, StatusCode::OK, page, None, None),
        Method::POST => submit(app, req, page).await,
        _ => pages::method_not_allowed(app, req.method(), page),
    }
}

async fn submit(app: &DemoUpstream, req: Request<Incoming>, page: &PageContext<'_>) -> Response {
    let body = match read_body(req.into_body(), FORM_LIMIT).await {
        Ok(body) => body,
        Err(e) => return form(app, e.status(), page, None, Some(&e.to_string())),
    };
    let fields = form_pairs(&body);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let username = field("username").unwrap_or("").trim();
    let password = field("password").unwrap_or("");
    if !USERS.contains(&username) || password != PASSWORD {
        tracing::info!(username, "legacy login refused");
        return form(
            app,
            StatusCode::UNAUTHORIZED,
            page,
            Some(username),
            Some("Unknown user or wrong password."),
        );
    }
    let token = app.sessions.start(username);
    let mut response = redirect("/dashboard");
    let headers = response.headers_mut();
    // Both values are built from ASCII constants and hex.
    if let Ok(user) = HeaderValue::from_str(username) {
        headers.insert(USER_HEADER, user);
    }
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax"
    )) {
        headers.insert(SET_COOKIE, cookie);
    }
    response
}

/// `POST /logout`: ends the legacy session and clears its cookie.
pub(crate) fn logout(
    app: &DemoUpstream,
    req: &Request<Incoming>,
    page: &PageContext<'_>,
) -> Response {
    if req.method() != Method::POST {
        return pages::method_not_allowed(app, req.method(), page);
    }
    if let Some(token) = session_token(req.headers()) {
        app.sessions.end(&token);
    }
    let mut response = redirect("/login");
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("legacy_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
    response
}

fn redirect(to: &'static str) -> Response {
    let mut response = http::Response::new(full(""));
    *response.status_mut() = StatusCode::FOUND;
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    response
}

#[cfg(test)]
mod tests {
    use super::super::tests::{client, start};

    #[tokio::test]
    async fn legacy_login_sets_cookie_and_user_header() {
        let handle = start();
        let http = client();
        let base = handle.base_url();

        let refused = http
            .post(format!("{base}/login"))
            .form(&[("username", "legacy-admin"), ("password", "wrong")])
            .send()
            .await
            .expect("post");
        assert_eq!(refused.status(), 401);
        assert!(refused.headers().get("set-cookie").is_none());
        let text = refused.text().await.expect("body");
        assert!(text.contains("Unknown user or wrong password."));
        assert!(text.contains("<form class=\"login\""));

        let accepted = http
            .post(format!("{base}/login"))
            .form(&[("username", "legacy-user"), ("password", "legacy")])
            .send()
            .await
            .expect("post");
        assert_eq!(accepted.status(), 302);
        assert_eq!(accepted.headers()["location"], "/dashboard");
        assert_eq!(accepted.headers()["x-legacy-user-id"], "legacy-user");
        let cookie = accepted.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(cookie.starts_with("legacy_session="), "{cookie}");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        let pair = cookie.split(';').next().expect("pair").to_owned();

        let dashboard = http
            .get(format!("{base}/dashboard"))
            .header("cookie", &pair)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert!(dashboard.contains("Legacy login: <b>legacy-user</b>"));

        let out = http
            .post(format!("{base}/logout"))
            .header("cookie", &pair)
            .send()
            .await
            .expect("post");
        assert_eq!(out.status(), 302);
        assert_eq!(out.headers()["location"], "/login");
        assert!(out.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0"));
        let after = http
            .get(format!("{base}/dashboard"))
            .header("cookie", &pair)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert!(!after.contains("legacy-user</b>"));
        handle.stop();
    }
}
