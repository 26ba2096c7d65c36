//! The set-password page a welcome email links to:
//! `GET /_guise/set-password?token=...` shows the form (or says at once
//! why the link no longer works), `POST /_guise/set-password` sets the
//! password and spends the link.
//!
//! The form is protected like the login form: a double-submit CSRF cookie
//! (the login form's, [`LOGIN_CSRF_COOKIE`]) plus the same-origin check.
//! The link's secret travels in a hidden field, so the form posts to an
//! address without it. A password the rules refuse, or a form that fails
//! the CSRF check, gets the form again and leaves the link working; only
//! a password actually set spends it.

use std::collections::BTreeMap;
use std::fmt;

use http::header::SET_COOKIE;
use pingora::proxy::Session;

use super::link::{self, MIN_PASSWORD_CHARS};
use super::{LinkError, Welcomes, PAGE};
use crate::auth::login::PASSWORD_SET_PARAM;
use crate::auth::{pages, LOGIN_CSRF_COOKIE};
use crate::body;
use crate::call::Call;
use crate::config::LoginMode;
use crate::csrf;
use crate::respond::{self, Refuse};
use crate::routes::GATEWAY_PREFIX;
use crate::session::cookie;
use crate::user_sync;

/// `GET /_guise/set-password?token=...`: the form, or why the link is dead.
pub async fn show(w: &Welcomes, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
    let secret = query_param(s, "token").unwrap_or_default();
    let judged = async {
        offered(call)?;
        let key = link::key_of(&secret).ok_or(LinkError::Unknown)?;
        let stored = w.sessions.store().peek_once(&key).await?;
        let now = w.sessions.clock().unix_now();
        link::judge(stored.as_deref(), now, |id| w.directory.get(id))
    }
    .await;
    match judged {
        Ok((_, user)) => form(s, call, 200, &secret, &user.email, None).await,
        Err(e) => dead(w, s, call, &e).await,
    }
}

/// `POST /_guise/set-password` from the form.
pub async fn submit(w: &Welcomes, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
    let replies = &call.live.replies;
    if let Err(e) = offered(call) {
        return dead(w, s, call, &e).await;
    }
    let body = match body::read(s).await {
        Ok(b) => b,
        Err(e) => return respond::refuse(s, replies, &e).await,
    };
    let fields: BTreeMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    let secret = field("token");
    let Some(key) = link::key_of(secret) else {
        return dead(w, s, call, &LinkError::Unknown).await;
    };
    let store = w.sessions.store();
    let now = w.sessions.clock().unix_now();

    // Said at once when the link is dead, whatever else the form holds.
    let peeked = match store.peek_once(&key).await {
        Ok(v) => v,
        Err(e) => return dead(w, s, call, &e.into()).await,
    };
    let user = match link::judge(peeked.as_deref(), now, |id| w.directory.get(id)) {
        Ok((_, user)) => user,
        Err(e) => return dead(w, s, call, &e).await,
    };

    let https = call.peer.https;
    let expected = cookie::read(s.req_header(), &csrf_cookie(https)).unwrap_or_default();
    let csrf_ok = !expected.is_empty()
        && csrf::same_origin(s.req_header(), https).is_ok()
        && csrf::check_token(&expected, Some(field(csrf::FIELD))).is_ok();
    if !csrf_ok {
        let msg = "The form expired or came from another site. Please choose your password again.";
        return form(s, call, 403, secret, &user.email, Some(msg)).await;
    }
    let (password, again) = (field("password"), field("password_confirm"));
    if let Err(msg) = link::check_new_password(password, again, &user.email) {
        return form(s, call, 400, secret, &user.email, Some(msg)).await;
    }
    // Hashed before the link is spent, so the window in which the link is
    // spent but the password not yet saved stays short.
    let plain = password.to_string();
    let hashed = tokio::task::spawn_blocking(move || crate::users::hash_password(&plain)).await;
    let Ok(Ok(hash)) = hashed else {
        let msg = "The password could not be set. Please try again.";
        return form(s, call, 500, secret, &user.email, Some(msg)).await;
    };

    // The decision: of two submissions racing, one reads the live record.
    let taken = match store.swap_once(&key, &link::spent_marker(now)).await {
        Ok(v) => v,
        Err(e) => return dead(w, s, call, &e.into()).await,
    };
    let (record, user) = match link::judge(taken.as_deref(), now, |id| w.directory.get(id)) {
        Ok(ok) => ok,
        Err(e) => return dead(w, s, call, &e).await,
    };
    let mut changed = (*user).clone();
    changed.password_hash = Some(hash);
    if let Err(e) = user_sync::save(&**store, &w.directory, changed).await {
        // The password is not set: the link works again for what is left
        // of its life.
        if let Some(old) = &taken {
            let left = record.expires_at.saturating_sub(now);
            let keep = std::time::Duration::from_secs(left) + link::REMEMBERED_AFTER_EXPIRY;
            let _ = store.put_once(&key, old, keep).await;
        }
        tracing::warn!(user = %user.id, error = %e, "password from a welcome link not saved");
        return respond::refuse(s, replies, &e).await;
    }
    // Whoever held a session with the old password (or none) is signed out.
    let revoked = match w.sessions.revoke_user(&user.id).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(user = %user.id, error = %e, "password set, but the user's sessions could not all be ended");
            0
        }
    };
    w.metrics
        .set_password_links
        .with_label_values(&["password_set"])
        .inc();
    tracing::info!(
        user = %user.id,
        issued_by = %record.issued_by,
        issued_at = record.issued_at,
        revoked,
        client = %call.peer.network(),
        "password set through a welcome link"
    );
    let login = &call.live.config.auth.login_path;
    let to = format!("{login}?{PASSWORD_SET_PARAM}=1");
    let clear = cookie::strict(&csrf_cookie(https), "", https, std::time::Duration::ZERO);
    respond::redirect(s, replies, 303, &to, &[(SET_COOKIE, clear)]).await
}

/// Links set gateway passwords, which only count when guise checks them.
fn offered(call: Call<'_>) -> Result<(), LinkError> {
    match call.live.config.auth.mode {
        LoginMode::Gateway => Ok(()),
        LoginMode::Upstream(_) => Err(LinkError::NotOffered),
    }
}

fn csrf_cookie(https: bool) -> String {
    cookie::name(LOGIN_CSRF_COOKIE, https)
}

/// The form, with a fresh CSRF token in the page and its cookie.
async fn form(
    s: &mut Session,
    call: Call<'_>,
    status: u16,
    secret: &str,
    email: &str,
    error: Option<&str>,
) -> pingora::Result<()> {
    let csrf = crate::session::token::random_b64(24);
    let action = format!("{GATEWAY_PREFIX}{PAGE}");
    let html = pages::set_password(&pages::SetPasswordForm {
        action: &action,
        csrf_token: &csrf,
        token: secret,
        email,
        min_length: MIN_PASSWORD_CHARS,
        error,
    });
    let https = call.peer.https;
    let set = cookie::set_login_csrf(&csrf_cookie(https), &csrf, https);
    respond::html(s, &call.live.replies, status, html, &[(SET_COOKIE, set)]).await
}

/// A dead link: counted, and answered with a way on to the login page.
async fn dead(w: &Welcomes, s: &mut Session, call: Call<'_>, e: &LinkError) -> pingora::Result<()> {
    w.metrics
        .set_password_links
        .with_label_values(&[e.metric()])
        .inc();
    let login = call.live.config.auth.login_path.clone();
    respond::refuse(s, &call.live.replies, &Dead { why: e, login }).await
}

/// A [`LinkError`] with the login page as the way on.
struct Dead<'a> {
    why: &'a LinkError,
    login: String,
}

impl fmt::Display for Dead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.why.fmt(f)
    }
}

impl Refuse for Dead<'_> {
    fn status(&self) -> u16 {
        self.why.status()
    }
    fn code(&self) -> &'static str {
        self.why.code()
    }
    fn title(&self) -> &'static str {
        self.why.title()
    }
    fn action(&self) -> Option<(String, String)> {
        Some((self.login.clone(), "Go to sign-in".to_string()))
    }
}

fn query_param(s: &Session, name: &str) -> Option<String> {
    let q = s.req_header().uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}
