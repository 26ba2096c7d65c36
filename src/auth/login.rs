//! `auth.mode: gateway`: guise shows the login form and checks passwords.
//!
//! Two ways in: the form at `auth.login_path` (double-submit CSRF cookie
//! plus same-origin check), and `POST /_guise/login` with a JSON body for
//! API clients (CSRF-safe because a cross-site form cannot send JSON).

use std::collections::BTreeMap;

use http::header::SET_COOKIE;
use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::json;

use super::{pages, redirect, AuthService, LoginError, LOGIN_CSRF_COOKIE};
use crate::body::{self, BodyError};
use crate::call::Call;
use crate::config::LoginMode;
use crate::csrf;
use crate::respond::{self, Refuse};
use crate::session::cookie;

/// The JSON login's body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    /// Parse a JSON login body.
    pub fn parse(body: &[u8]) -> Result<Credentials, BodyError> {
        body::parse_json(body, "{\"username\": ..., \"password\": ...}")
    }
}

fn login_csrf_name(https: bool) -> String {
    cookie::name(LOGIN_CSRF_COOKIE, https)
}

/// `GET {login_path}`: the form, or straight on for a signed-in browser.
pub async fn page(svc: &AuthService, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
    let _ = svc;
    let next = query_param(s, "next").unwrap_or_default();
    let next = redirect::safe_next(&next).map(str::to_string);
    let replies = &call.live.replies;
    if call.subject.is_some() {
        let to = next.unwrap_or_else(|| call.live.config.auth.after_login.clone());
        return respond::redirect(s, replies, 302, &to, &[]).await;
    }
    // A set-password link sends the browser here once the password is set.
    let notice = query_param(s, PASSWORD_SET_PARAM)
        .is_some()
        .then_some("Your password is set. Sign in with it.");
    let next = next.as_deref().unwrap_or("");
    render_with(s, call, 200, next, "", None, notice).await
}

/// The query parameter that makes the login page confirm a new password.
pub const PASSWORD_SET_PARAM: &str = "password_set";

async fn render(
    s: &mut Session,
    call: Call<'_>,
    status: u16,
    next: &str,
    username: &str,
    error: Option<&str>,
) -> pingora::Result<()> {
    render_with(s, call, status, next, username, error, None).await
}

async fn render_with(
    s: &mut Session,
    call: Call<'_>,
    status: u16,
    next: &str,
    username: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> pingora::Result<()> {
    let csrf = crate::session::token::random_b64(24);
    let html = pages::login(&pages::LoginForm {
        action: &call.live.config.auth.login_path,
        csrf_token: &csrf,
        next,
        username,
        error,
        notice,
    });
    let https = call.peer.https;
    let set = cookie::set_login_csrf(&login_csrf_name(https), &csrf, https);
    respond::html(s, &call.live.replies, status, html, &[(SET_COOKIE, set)]).await
}

/// `POST {login_path}` from the form.
pub async fn form(svc: &AuthService, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
    let replies = &call.live.replies;
    let body = match body::read(s).await {
        Ok(b) => b,
        Err(e) => return respond::refuse(s, replies, &e).await,
    };
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let next = redirect::safe_next(field("next")).unwrap_or("").to_string();
    let username = field("username").to_string();
    let https = call.peer.https;

    let expected = cookie::read(s.req_header(), &login_csrf_name(https)).unwrap_or_default();
    let csrf_ok = !expected.is_empty()
        && csrf::same_origin(s.req_header(), https).is_ok()
        && csrf::check_token(&expected, Some(field("csrf_token"))).is_ok();
    if !csrf_ok {
        let msg = "The form expired or came from another site. Please sign in again.";
        return render(s, call, 403, &next, &username, Some(msg)).await;
    }

    let auth = &call.live.config.auth;
    let key = &call.live.config.identity.signing_key;
    let device = svc.device_cookie(s.req_header(), &call.peer);
    let attempt = svc
        .attempt(
            auth,
            key,
            &username,
            field("password"),
            &call.peer,
            device.as_deref(),
        )
        .await;
    let started = match attempt {
        Ok((user, admitted)) => svc
            .start_session(&user, &admitted, &call.peer, BTreeMap::new())
            .await
            .map(|(token, _)| (user, token)),
        Err(e) => Err(e),
    };
    match started {
        Ok((user, token)) => {
            let to = if next.is_empty() {
                auth.after_login.clone()
            } else {
                next
            };
            let mut headers = svc.session_cookies(auth, key, &call.peer, &user.email, &token);
            headers.push((
                SET_COOKIE,
                cookie::strict(
                    &login_csrf_name(https),
                    "",
                    https,
                    std::time::Duration::ZERO,
                ),
            ));
            respond::redirect(s, replies, 303, &to, &headers).await
        }
        Err(e @ LoginError::BadCredentials) => {
            svc.login_refused(&e);
            render(
                s,
                call,
                401,
                &next,
                &username,
                Some("Wrong email or password."),
            )
            .await
        }
        Err(e) => {
            svc.login_refused(&e);
            respond::refuse(s, replies, &e).await
        }
    }
}

/// `POST /_guise/login` with `{"username", "password"}`.
pub async fn json(svc: &AuthService, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
    let replies = &call.live.replies;
    match json_login(svc, s, call).await {
        Ok(body) => {
            let (value, headers) = body;
            respond::json(s, replies, 200, &value, &headers).await
        }
        Err(e) => {
            svc.login_refused(&e);
            respond::refuse(s, replies, &e).await
        }
    }
}

type Answer = (serde_json::Value, Vec<(http::HeaderName, String)>);

async fn json_login(
    svc: &AuthService,
    s: &mut Session,
    call: Call<'_>,
) -> Result<Answer, LoginError> {
    let auth = &call.live.config.auth;
    if !matches!(auth.mode, LoginMode::Gateway) {
        return Err(LoginError::NotOffered);
    }
    if !body::is_json(s.req_header()) {
        return Err(BodyError::NotJson(
            "{\"username\": ..., \"password\": ...}; a form cannot be posted here from another site",
        )
        .into());
    }
    csrf::same_origin(s.req_header(), call.peer.https)?;
    let creds = Credentials::parse(&body::read(s).await?)?;
    let key = &call.live.config.identity.signing_key;
    let device = svc.device_cookie(s.req_header(), &call.peer);
    let (user, admitted) = svc
        .attempt(
            auth,
            key,
            &creds.username,
            &creds.password,
            &call.peer,
            device.as_deref(),
        )
        .await?;
    let (token, active) = svc
        .start_session(&user, &admitted, &call.peer, BTreeMap::new())
        .await?;
    let value = json!({
        "user": user.public_json(),
        "session": active.record.reference,
        "csrf_token": active.record.csrf_token,
        "expires_at": active.record.absolute_expiry,
    });
    Ok((
        value,
        svc.session_cookies(auth, key, &call.peer, &user.email, &token),
    ))
}

/// A refusal of the login page itself (a method it does not take).
pub async fn refuse(s: &mut Session, call: Call<'_>, e: &dyn Refuse) -> pingora::Result<()> {
    respond::refuse(s, &call.live.replies, e).await
}

fn query_param(s: &Session, name: &str) -> Option<String> {
    let q = s.req_header().uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
