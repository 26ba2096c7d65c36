//! `auth.mode: upstream`: the app checks the password, guise keeps the
//! session.
//!
//! The login POST is sent to the app by guise itself (not streamed through
//! the proxy) so the whole answer can be read, the user found, and guise's
//! cookie added before the browser sees the answer. Then:
//!
//! 1. **Did the app accept?** Its status must be one of `success_status`,
//!    and, when `success_cookie` is set, the answer must set that cookie.
//!    Otherwise the app's own answer (its error page) passes through.
//! 2. **Who is it?** From the submitted username, a header or a JSON
//!    pointer of the answer, its redirect, or a "who am I" request sent to
//!    the app with the app's new session cookies. A success that names
//!    nobody is its own outcome (`no_identity`): a clear page, never a
//!    loop and never "wrong password".
//! 3. **Can the client have steered it?** Apps redirect to the `next` the
//!    client posted, so an id read from the redirect must equal the
//!    submitted username, unless no submitted value appears in the
//!    redirect at all.
//! 4. **Which directory entry?** A listed user keeps its roles; a user the
//!    app owns gets an entry on first login (`provision`), kept in the
//!    store and marked as coming from the app. A user disabled in guise is
//!    refused even though the app accepted them.
//!
//! Whenever guise does not start a session after the app accepted, the
//! app's session cookies are expired in the same answer, so the browser is
//! never left signed in to the app alone (the cause of redirect loops).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, COOKIE, EXPECT, LOCATION, SET_COOKIE, TRANSFER_ENCODING};
use http::HeaderName;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;

use super::{app_session, policy, AuthService, LoginError};
use crate::body;
use crate::call::Call;
use crate::config::{AppCookies, UpstreamLogin, UserIdSource, WhoamiRead};
use crate::forwarded;
use crate::respond;
use crate::users::User;

/// Largest answer read from the app (login or "who am I").
const RESPONSE_LIMIT: usize = 1024 * 1024;
/// Most interim (1xx) answers skipped before the app's final one.
const INTERIM_LIMIT: usize = 8;

/// What the client submitted: the form's fields and the login URL's query.
struct Submitted {
    username: String,
    values: Vec<String>,
}

impl Submitted {
    fn read(body: &[u8], query: Option<&str>, fields: &[String]) -> Submitted {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let username = fields
            .iter()
            .find_map(|f| form.iter().find(|(k, v)| k == f && !v.trim().is_empty()))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        // Passwords are not echoed into redirects; leaving them out keeps a
        // password that happens to contain an id from looking like a steer.
        let mut values: Vec<String> = form
            .into_iter()
            .filter(|(k, _)| !k.to_ascii_lowercase().contains("pass"))
            .map(|(_, v)| v)
            .collect();
        if let Some(q) = query {
            values.extend(url::form_urlencoded::parse(q.as_bytes()).map(|(_, v)| v.into_owned()));
        }
        Submitted { username, values }
    }
}

/// `POST {login_path}` in upstream mode.
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
    let submitted = Submitted::read(&body, s.req_header().uri.query(), &cfg.username_fields);
    let auth = &call.live.config.auth;
    let key = &call.live.config.identity.signing_key;
    let device = svc.device_cookie(s.req_header(), &call.peer);
    let admitted = match svc
        .admit(
            auth,
            key,
            &submitted.username,
            &call.peer,
            device.as_deref(),
        )
        .await
    {
        Ok(a) => a,
        Err(e) => {
            svc.login_refused(&e);
            return respond::refuse(s, replies, &e).await;
        }
    };

    let request = login_request(svc, s, call, body.len())?;
    let (head, answer) = match exchange(svc, call, request, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "upstream login failed");
            let e = LoginError::UpstreamUnreachable;
            svc.login_refused(&e);
            return respond::refuse(s, replies, &e).await;
        }
    };

    if !accepted(cfg, &head) {
        // The app said no: its own page says why.
        svc.login_refused(&LoginError::BadCredentials);
        return pass_through(s, head, answer, cfg, Vec::new()).await;
    }

    let found = match identify(svc, s, call, cfg, &submitted, &head, &answer).await {
        Ok(Some(id)) => match svc.user_from_app(&id, cfg.provision.as_ref()).await {
            Some(user) if policy::may_log_in(&user) => match crate::partners::may_log_in(&user) {
                Ok(()) => Ok(user),
                Err(e) => Err(e.into()),
            },
            _ => Err(LoginError::NotAllowed),
        },
        Ok(None) => Err(LoginError::NoIdentity),
        Err(e) => Err(e),
    };
    let started = match found {
        Ok(user) => svc
            .start_session(&user, &admitted, &call.peer, BTreeMap::new())
            .await
            .map(|(token, _)| (user, token)),
        Err(e) => Err(e),
    };
    match started {
        Ok((user, token)) => {
            let cookies =
                svc.session_cookies(auth, key, &call.peer, &user_name(&user, &submitted), &token);
            pass_through(s, head, answer, cfg, cookies).await
        }
        Err(e) => {
            svc.login_refused(&e);
            tracing::warn!(
                reason = e.metric(),
                status = head.status.as_u16(),
                "the app accepted a login the gateway did not take"
            );
            // The app did sign the browser in: undo that, or the browser
            // would hold an app session without a gateway one.
            let clear = app_session::expire(&cfg.app_session_cookies, call.peer.https);
            respond::refuse_with(s, replies, &e, &clear).await
        }
    }
}

/// The name the device cookie vouches for: what the user typed.
fn user_name(user: &User, submitted: &Submitted) -> String {
    if submitted.username.is_empty() {
        user.id.clone()
    } else {
        submitted.username.clone()
    }
}

/// Whether the app's answer counts as accepting the login.
fn accepted(cfg: &UpstreamLogin, head: &ResponseHeader) -> bool {
    if !cfg.success_status.contains(&head.status.as_u16()) {
        return false;
    }
    match &cfg.success_cookie {
        None => true,
        Some(name) => {
            set_cookies(head).any(|(n, v, removal)| n == *name && !v.is_empty() && !removal)
        }
    }
}

/// `(name, value, removes it)` of every cookie the answer sets.
fn set_cookies(head: &ResponseHeader) -> impl Iterator<Item = (String, String, bool)> + '_ {
    head.headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| cookie::Cookie::parse(v.to_string()).ok())
        .map(|c| {
            let removal = c.max_age().is_some_and(|a| a.is_zero() || a.is_negative())
                || c.expires_datetime()
                    .is_some_and(|t| t < time::OffsetDateTime::now_utc());
            (c.name().to_string(), c.value().to_string(), removal)
        })
}

/// Who the accepted login was, as the configured source says.
async fn identify(
    svc: &AuthService,
    s: &Session,
    call: Call<'_>,
    cfg: &UpstreamLogin,
    submitted: &Submitted,
    head: &ResponseHeader,
    answer: &[u8],
) -> Result<Option<String>, LoginError> {
    let id = match &cfg.user_id {
        UserIdSource::Username => Some(submitted.username.clone()),
        UserIdSource::Header(name) => header_id(head, name),
        UserIdSource::JsonPointer(ptr) => json_id(answer, ptr),
        UserIdSource::RedirectRegex(re) => {
            let Some(location) = head.headers.get(LOCATION).and_then(|v| v.to_str().ok()) else {
                return Ok(None);
            };
            let Some(id) = re
                .captures(location)
                .and_then(|c| c.name("id"))
                .map(|m| m.as_str().to_string())
            else {
                return Ok(None);
            };
            if steered(&id, submitted) {
                return Err(LoginError::Steered);
            }
            Some(id)
        }
        UserIdSource::Whoami(w) => {
            let cookies: Vec<String> = set_cookies(head)
                .filter(|(_, v, removal)| !v.is_empty() && !removal)
                .map(|(n, v, _)| format!("{n}={v}"))
                .collect();
            if cookies.is_empty() {
                return Ok(None);
            }
            let req = whoami_request(s, call, &w.path, &cookies.join("; "))
                .map_err(|_| LoginError::UpstreamUnreachable)?;
            match exchange(svc, call, req, Bytes::new()).await {
                Ok((h, b)) if h.status.is_success() => match &w.read {
                    WhoamiRead::Header(name) => header_id(&h, name),
                    WhoamiRead::JsonPointer(ptr) => json_id(&b, ptr),
                    WhoamiRead::BodyRegex(re) => {
                        let text = String::from_utf8_lossy(&b);
                        re.captures(&text)
                            .and_then(|c| c.name("id"))
                            .map(|m| html_unescape(m.as_str()))
                    }
                },
                Ok((h, _)) => {
                    tracing::warn!(status = h.status.as_u16(), path = %w.path, "the app's who-am-I answer was not a success");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the app's who-am-I request failed");
                    return Err(LoginError::UpstreamUnreachable);
                }
            }
        }
    };
    Ok(id.and_then(|id| fits(&id)))
}

/// The "who am I" request: a GET of `path` with the app's new session
/// `cookies` and the client's Host, like a browser's next request.
fn whoami_request(
    s: &Session,
    call: Call<'_>,
    path: &str,
    cookies: &str,
) -> pingora::Result<RequestHeader> {
    let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
    req.insert_header(COOKIE, cookies)?;
    req.insert_header(http::header::ACCEPT, "application/json, text/html;q=0.9")?;
    let host = s.req_header().headers.get(http::header::HOST);
    forwarded::set_headers(&mut req, call.peer.ip, call.peer.https, host)?;
    Ok(req)
}

/// Whether the client could have chosen the id read from a redirect: it
/// is not the submitted username, and a value the client submitted (a
/// `next`, say) holds it, as sent or percent-encoded.
fn steered(id: &str, submitted: &Submitted) -> bool {
    if id.eq_ignore_ascii_case(&submitted.username) {
        return false;
    }
    let decoded = percent_decode(id);
    submitted
        .values
        .iter()
        .any(|v| v.contains(id) || v.contains(&decoded) || percent_decode(v).contains(&decoded))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The few entities an HTML page writes a name with.
fn html_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

fn header_id(head: &ResponseHeader, name: &HeaderName) -> Option<String> {
    head.headers.get(name)?.to_str().ok().map(str::to_string)
}

fn json_id(body: &[u8], ptr: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match v.pointer(ptr)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The id, trimmed, if it can travel in an identity header: visible ASCII,
/// no commas (the rule the directory applies to its own ids).
fn fits(id: &str) -> Option<String> {
    let id = id.trim();
    let ok = !id.is_empty() && id.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',');
    ok.then(|| id.to_string())
}

/// The login request for the app, with the hygiene of a proxied one:
/// identity headers were stripped by the pipeline; guise's cookies and
/// hop-by-hop headers are taken off here, and `X-Forwarded-*` name the
/// client. `Expect` goes too: guise already holds the whole body and sends
/// it at once.
fn login_request(
    svc: &AuthService,
    s: &Session,
    call: Call<'_>,
    len: usize,
) -> pingora::Result<RequestHeader> {
    let mut up = s.req_header().clone();
    forwarded::remove_hop_by_hop(&mut up);
    forwarded::strip_gateway_cookies(&mut up, svc.own_cookies());
    up.remove_header(&EXPECT);
    up.insert_header(CONTENT_LENGTH, len.to_string())?;
    let host = s.req_header().headers.get(http::header::HOST).cloned();
    forwarded::set_headers(&mut up, call.peer.ip, call.peer.https, host.as_ref())?;
    Ok(up)
}

/// Send `req` with `body` to the app and read its whole answer.
async fn exchange(
    svc: &AuthService,
    call: Call<'_>,
    req: RequestHeader,
    body: Bytes,
) -> pingora::Result<(ResponseHeader, Bytes)> {
    let peer = call.live.peer.clone();
    let (mut http, _reused) = svc.connector.get_http_session(&peer).await?;
    http.write_request_header(Box::new(req)).await?;
    if !body.is_empty() {
        http.write_request_body(body, true).await?;
    }
    http.finish_request_body().await?;
    let head = final_header(&mut http).await?;
    let mut buf = BytesMut::new();
    while let Some(chunk) = http.read_response_body().await? {
        if buf.len() + chunk.len() > RESPONSE_LIMIT {
            return Err(pingora::Error::explain(
                pingora::ErrorType::InvalidHTTPHeader,
                "answer from the app too large",
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

/// Hand the app's answer to the browser, with `extra` cookies.
async fn pass_through(
    s: &mut Session,
    head: ResponseHeader,
    answer: Bytes,
    cfg: &UpstreamLogin,
    extra: Vec<(HeaderName, String)>,
) -> pingora::Result<()> {
    let mut out = head;
    out.remove_header(&TRANSFER_ENCODING);
    out.insert_header(CONTENT_LENGTH, answer.len().to_string())?;
    if cfg.app_cookies == AppCookies::Drop {
        out.remove_header(&SET_COOKIE);
    }
    for (k, v) in extra {
        out.append_header(k, v)?;
    }
    s.write_response_header(Box::new(out), false).await?;
    s.write_response_body(Some(answer), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: u16, headers: &[(&str, &str)]) -> ResponseHeader {
        let mut h = ResponseHeader::build(status, None).unwrap();
        for (k, v) in headers {
            h.append_header(k.to_string(), *v).unwrap();
        }
        h
    }

    fn cfg(success_cookie: Option<&str>) -> UpstreamLogin {
        UpstreamLogin {
            success_status: vec![302],
            success_cookie: success_cookie.map(str::to_string),
            username_fields: vec!["username".into()],
            user_id: UserIdSource::Username,
            app_cookies: AppCookies::Pass,
            app_session_cookies: vec!["sessionid".into()],
            logout_path: None,
            provision: None,
        }
    }

    fn submitted(username: &str, values: &[&str]) -> Submitted {
        Submitted {
            username: username.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn success_needs_the_status_and_the_session_cookie_when_named() {
        let ok = head(
            302,
            &[
                ("set-cookie", "sessionid=abc; Path=/"),
                ("location", "/admin/"),
            ],
        );
        assert!(accepted(&cfg(Some("sessionid")), &ok));
        // Django answers a wrong password with 200 and the form again.
        assert!(!accepted(&cfg(Some("sessionid")), &head(200, &[])));
        let no_cookie = head(302, &[("location", "/admin/")]);
        assert!(!accepted(&cfg(Some("sessionid")), &no_cookie));
        assert!(accepted(&cfg(None), &no_cookie));
        let cleared = head(302, &[("set-cookie", "sessionid=; Max-Age=0; Path=/")]);
        assert!(!accepted(&cfg(Some("sessionid")), &cleared));
    }

    #[test]
    fn the_submitted_username_comes_from_the_first_named_field() {
        let s = Submitted::read(
            b"email=&username=+ada+&next=%2Fx",
            Some("next=/y"),
            &["email".into(), "username".into()],
        );
        assert_eq!(s.username, "ada");
        assert!(s.values.contains(&"/x".to_string()) && s.values.contains(&"/y".to_string()));
    }

    #[test]
    fn a_redirect_id_the_client_could_choose_is_refused() {
        // Alice posts next=/users/u-admin/; the app redirects there.
        let s = submitted("alice", &["alice", "/users/u-admin/"]);
        assert!(steered("u-admin", &s));
        // Percent-encoded by the app on the way, or by the client.
        let s = submitted("alice", &["alice", "/users/u admin/"]);
        assert!(steered("u%20admin", &s));
        let s = submitted("alice", &["alice", "%2Fusers%2Fu-admin%2F"]);
        assert!(steered("u-admin", &s));
        // The id is the username: nothing to steer.
        let s = submitted("alice", &["alice", "/users/alice/"]);
        assert!(!steered("alice", &s));
        // Nothing submitted holds the id: the app chose it.
        let s = submitted("alice@x.test", &["alice@x.test", "1", "/home"]);
        assert!(!steered("u-7", &s));
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
        let req = RequestHeader::build("GET", b"/login", None).unwrap();
        http.write_request_header(Box::new(req)).await.unwrap();
        http.finish_request_body().await.unwrap();
        let head = final_header(&mut http).await.unwrap();
        assert_eq!(head.status.as_u16(), 200);
        assert_eq!(http.read_response_body().await.unwrap().unwrap(), "ok");
        app.await.unwrap();
    }

    #[test]
    fn ids_come_from_a_header_or_json_and_must_fit_a_header() {
        let h = head(302, &[("x-user", "u-7")]);
        assert_eq!(
            header_id(&h, &HeaderName::from_static("x-user")).as_deref(),
            Some("u-7")
        );
        assert_eq!(
            json_id(br#"{"user":{"id":42}}"#, "/user/id").as_deref(),
            Some("42")
        );
        assert_eq!(json_id(b"not json", "/id"), None);
        assert_eq!(fits(" u-7 ").as_deref(), Some("u-7"));
        for bad in ["", " ", "a,b", "jos\u{e9}", "a b"] {
            assert_eq!(fits(bad), None, "{bad:?}");
        }
        assert_eq!(html_unescape("o&#x27;brien &amp; co"), "o'brien & co");
    }
}
