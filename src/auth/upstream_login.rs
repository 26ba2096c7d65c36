//! `auth.mode: upstream`: the app checks the password, guise keeps the
//! session.
//!
//! The login POST is sent to the app by guise itself (not streamed through
//! the proxy) so the whole answer can be read, the user id taken from it,
//! and guise's cookie added before the browser sees the answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, LOCATION, SET_COOKIE, TRANSFER_ENCODING};
use pingora::http::ResponseHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;

use super::{policy, AuthService, LoginError};
use crate::body;
use crate::call::Call;
use crate::config::{AppCookies, UpstreamLogin, UserIdSource};
use crate::forwarded;
use crate::respond;
use crate::users::User;

/// Largest login answer read from the app.
const RESPONSE_LIMIT: usize = 1024 * 1024;
/// Most interim (1xx) answers skipped before the app's final one.
const INTERIM_LIMIT: usize = 8;

/// `POST {login_path}` in upstream mode: send the form to the app, and
/// start a session if the app's answer names an accepted user.
pub async fn handle(
    svc: &AuthService,
    s: &mut Session,
    call: Call<'_>,
    cfg: &UpstreamLogin,
) -> pingora::Result<()> {
    let replies = &call.live.replies;
    let body = match body::read(s).await {
        Ok(b) => b,
        Err(e) => return respond::refuse(s, replies, &e).await,
    };
    let username = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "username" || k == "email")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let auth = &call.live.config.auth;
    let key = &call.live.config.identity.signing_key;
    let device = svc.device_cookie(s.req_header(), &call.peer);
    let admitted = match svc
        .admit(auth, key, &username, &call.peer, device.as_deref())
        .await
    {
        Ok(a) => a,
        Err(e) => {
            svc.login_refused(&e);
            return respond::refuse(s, replies, &e).await;
        }
    };

    let (head, answer) = match forward(svc, s, call, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "upstream login failed");
            let e = LoginError::UpstreamUnreachable;
            svc.login_refused(&e);
            return respond::refuse(s, replies, &e).await;
        }
    };

    let accepted = cfg.success_status.contains(&head.status.as_u16());
    let user_id = accepted
        .then(|| user_id(&cfg.user_id, &head, &answer))
        .flatten();
    let mut out = head.clone();
    out.remove_header(&TRANSFER_ENCODING);
    out.insert_header(CONTENT_LENGTH, answer.len().to_string())?;
    if cfg.app_cookies == AppCookies::Drop {
        out.remove_header(&SET_COOKIE);
    }
    match user_id {
        Some(id) => {
            let user = svc
                .directory
                .get(&id)
                .unwrap_or_else(|| Arc::new(User::new(id.clone(), id.clone(), String::new())));
            if !policy::may_log_in(&user) {
                let e = LoginError::BadCredentials;
                svc.login_refused(&e);
                return respond::refuse(s, replies, &e).await;
            }
            match svc
                .start_session(&user, &admitted, &call.peer, BTreeMap::new())
                .await
            {
                Ok((token, _)) => {
                    for (k, v) in svc.session_cookies(auth, key, &call.peer, &username, &token) {
                        out.append_header(k, v)?;
                    }
                }
                Err(e) => {
                    svc.login_refused(&e);
                    return respond::refuse(s, replies, &e).await;
                }
            }
        }
        None => {
            svc.metrics
                .logins
                .with_label_values(&["bad_credentials"])
                .inc();
            tracing::info!(status = head.status.as_u16(), "upstream refused the login");
        }
    }
    s.write_response_header(Box::new(out), false).await?;
    s.write_response_body(Some(answer), true).await
}

/// Send the login request to the app and read its whole answer. The
/// request gets the same hygiene as a proxied one: identity headers were
/// stripped by the pipeline; guise's cookies and hop-by-hop headers are
/// taken off here, and `X-Forwarded-*` name the client. `Expect` goes too:
/// guise already holds the whole body and sends it at once.
async fn forward(
    svc: &AuthService,
    s: &Session,
    call: Call<'_>,
    body: Bytes,
) -> pingora::Result<(ResponseHeader, Bytes)> {
    let mut up = s.req_header().clone();
    forwarded::remove_hop_by_hop(&mut up);
    forwarded::strip_gateway_cookies(&mut up, svc.own_cookies());
    up.remove_header(&EXPECT);
    up.insert_header(CONTENT_LENGTH, body.len().to_string())?;
    let host = s.req_header().headers.get(http::header::HOST).cloned();
    forwarded::set_headers(&mut up, call.peer.ip, call.peer.https, host.as_ref())?;
    let peer = call.live.peer.clone();
    let (mut http, _reused) = svc.connector.get_http_session(&peer).await?;
    http.write_request_header(Box::new(up)).await?;
    http.write_request_body(body, true).await?;
    http.finish_request_body().await?;
    let head = final_header(&mut http).await?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = http.read_response_body().await? {
        if buf.len() + chunk.len() > RESPONSE_LIMIT {
            return Err(pingora::Error::explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "login answer too large",
            ));
        }
        buf.extend_from_slice(&chunk);
    }
    svc.connector.release_http_session(http, &peer, None).await;
    Ok((head, buf.freeze()))
}

/// The app's final answer header, past any interim (1xx) ones such as
/// `100 Continue` or `103 Early Hints`: pingora panics when asked for a body
/// after an interim header.
async fn final_header(http: &mut HttpSession) -> pingora::Result<ResponseHeader> {
    let bad =
        |why: &'static str| pingora::Error::explain(pingora::ErrorType::InvalidHTTPHeader, why);
    for _ in 0..=INTERIM_LIMIT {
        http.read_response_header().await?;
        let head = http
            .response_header()
            .cloned()
            .ok_or_else(|| bad("no response header"))?;
        match head.status.as_u16() {
            101 => return Err(bad("the app switched protocols on a login")),
            100..=199 => continue,
            _ => return Ok(head),
        }
    }
    Err(bad("too many interim answers to a login"))
}

/// The user id the app's answer names, as configured.
fn user_id(source: &UserIdSource, head: &ResponseHeader, body: &[u8]) -> Option<String> {
    let id = match source {
        UserIdSource::Header(name) => head.headers.get(name)?.to_str().ok()?.to_string(),
        UserIdSource::JsonPointer(ptr) => {
            let v: serde_json::Value = serde_json::from_slice(body).ok()?;
            match v.pointer(ptr)? {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return None,
            }
        }
        UserIdSource::RedirectRegex(re) => {
            let loc = head.headers.get(LOCATION)?.to_str().ok()?;
            re.captures(loc)?.name("id")?.as_str().to_string()
        }
    };
    let id = id.trim().to_string();
    // The id travels in an identity header: visible ASCII, no commas (the
    // same rule the directory applies to its own ids).
    let fits = !id.is_empty() && id.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',');
    fits.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &[(&str, &str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(302, None).unwrap();
        for (k, v) in headers {
            h.insert_header(k.to_string(), *v).unwrap();
        }
        h
    }

    #[test]
    fn the_user_id_comes_from_a_header_a_json_pointer_or_the_redirect() {
        let h = head(&[("x-user", "u-7"), ("location", "/users/u-9/home")]);
        let by_header = UserIdSource::Header(http::HeaderName::from_static("x-user"));
        assert_eq!(user_id(&by_header, &h, b""), Some("u-7".into()));
        let by_json = UserIdSource::JsonPointer("/user/id".into());
        assert_eq!(
            user_id(&by_json, &h, br#"{"user":{"id":42}}"#),
            Some("42".into())
        );
        let by_redirect =
            UserIdSource::RedirectRegex(regex::Regex::new("^/users/(?P<id>[^/]+)/").unwrap());
        assert_eq!(user_id(&by_redirect, &h, b""), Some("u-9".into()));
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_to_the_final_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
                  HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            )
            .await
            .unwrap();
        });
        let connector = pingora::connectors::http::Connector::new(None);
        let peer = pingora::upstreams::peer::HttpPeer::new(addr, false, String::new());
        let (mut http, _) = connector.get_http_session(&peer).await.unwrap();
        let req = pingora::http::RequestHeader::build("GET", b"/login", None).unwrap();
        http.write_request_header(Box::new(req)).await.unwrap();
        http.finish_request_body().await.unwrap();
        let head = final_header(&mut http).await.unwrap();
        assert_eq!(head.status.as_u16(), 200);
        assert_eq!(http.read_response_body().await.unwrap().unwrap(), "ok");
        app.await.unwrap();
    }

    #[test]
    fn a_missing_or_empty_id_means_no_login() {
        let h = head(&[("x-user", " ")]);
        let by_header = UserIdSource::Header(http::HeaderName::from_static("x-user"));
        assert_eq!(user_id(&by_header, &h, b""), None);
        let by_json = UserIdSource::JsonPointer("/nope".into());
        assert_eq!(user_id(&by_json, &h, b"not json"), None);
        let by_json = UserIdSource::JsonPointer("/id".into());
        assert_eq!(
            user_id(&by_json, &h, "{\"id\":\"jos\u{e9}\"}".as_bytes()),
            None
        );
        assert_eq!(user_id(&by_json, &h, br#"{"id":"a,b"}"#), None);
    }
}
