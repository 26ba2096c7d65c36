//! Ending a session: `POST /_guise/logout`, and the confirmation page
//! `GET /_guise/logout` that posts to it.
//!
//! Logout changes state, so it is CSRF-safe: the browser's origin signals
//! must name this site and the request must carry the session's CSRF token
//! (header `x-csrf-token` or form field `csrf_token`).

use http::header::SET_COOKIE;
use pingora::proxy::Session;
use serde_json::json;

use super::{app_session, pages, AuthService, LoginError};
use crate::body;
use crate::call::Call;
use crate::config::LoginMode;
use crate::csrf;
use crate::respond::{self, Format};
use crate::session::cookie;

/// `POST /_guise/logout`.
pub async fn logout(svc: &AuthService, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
    let replies = &call.live.replies;
    let login = &call.live.config.auth.login_path;
    let https = call.peer.https;
    let browser = Format::of(s.req_header()) == Format::Html || body::is_form(s.req_header());
    let mut clear = vec![(SET_COOKIE, cookie::clear(svc.cookie_name(https), https))];
    // The app's own session ends with guise's.
    if let LoginMode::Upstream(cfg) = &call.live.config.auth.mode {
        clear.extend(app_session::expire(&cfg.app_session_cookies, https));
    }
    let Some(subject) = call.subject else {
        // Nothing to end; still clear whatever cookie the browser holds.
        return if browser {
            respond::redirect(s, replies, 303, login, &clear).await
        } else {
            let v = json!({"logged_out": false, "detail": "there was no session"});
            respond::json(s, replies, 200, &v, &clear).await
        };
    };
    if let Err(e) = end(svc, s, call).await {
        return respond::refuse(s, replies, &e).await;
    }
    tracing::info!(user = %subject.actor.id, session = %subject.session.record.reference, "logout");
    if browser {
        respond::redirect(s, replies, 303, login, &clear).await
    } else {
        respond::json(s, replies, 200, &json!({"logged_out": true}), &clear).await
    }
}

/// Check the CSRF signals and revoke the session.
async fn end(svc: &AuthService, s: &mut Session, call: Call<'_>) -> Result<(), LoginError> {
    let Some(subject) = call.subject else {
        return Ok(());
    };
    csrf::same_origin(s.req_header(), call.peer.https)?;
    let given = csrf::given_token(s).await?;
    csrf::check_token(&subject.session.record.csrf_token, given.as_deref())?;
    svc.sessions.revoke(&subject.session.key).await?;
    Ok(())
}

/// `GET /_guise/logout`: a page whose button posts the logout.
pub async fn page(s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
    let replies = &call.live.replies;
    match call.subject {
        Some(subject) => {
            let html = pages::sign_out(&subject.actor.email, &subject.session.record.csrf_token);
            respond::html(s, replies, 200, html, &[]).await
        }
        None => respond::redirect(s, replies, 302, &call.live.config.auth.login_path, &[]).await,
    }
}
