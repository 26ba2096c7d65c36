//! Request bodies the gateway reads itself (login forms, JSON calls to its
//! endpoints): bounded in size, and parsed into typed requests with an
//! error that says what was wrong.

use bytes::{Bytes, BytesMut};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use serde::de::DeserializeOwned;

use crate::respond::Refuse;

/// Largest body of a gateway endpoint read into memory.
pub const LIMIT: usize = 64 * 1024;

/// Why a body was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("the body is larger than {LIMIT} bytes")]
    TooLarge,
    #[error("the request body could not be read: {0}")]
    Unreadable(&'static str),
    #[error("send the body as application/json: {0}")]
    NotJson(&'static str),
    #[error("the body is not {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
}

impl Refuse for BodyError {
    fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge => 413,
            BodyError::NotJson(_) => 415,
            BodyError::Unreadable(_) | BodyError::Malformed { .. } => 400,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            BodyError::TooLarge => "body_too_large",
            BodyError::NotJson(_) => "json_required",
            BodyError::Unreadable(_) => "bad_body",
            BodyError::Malformed { .. } => "bad_json",
        }
    }
}

/// The whole request body, up to [`LIMIT`].
///
/// A client that sent `Expect: 100-continue` waits for the go-ahead
/// before it sends the body (curl for a second, others longer): it gets
/// `100 Continue` first. The expectation is then met, so it is taken off
/// the request, which may still go upstream with the body read here.
pub async fn read(s: &mut Session) -> Result<Bytes, BodyError> {
    if expects_continue(s.req_header()) {
        s.write_continue_response()
            .await
            .map_err(|e| BodyError::Unreadable(e.etype().as_str()))?;
        s.req_header_mut().remove_header(&http::header::EXPECT);
    }
    let mut buf = BytesMut::new();
    loop {
        match s.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > LIMIT {
                    return Err(BodyError::TooLarge);
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(BodyError::Unreadable(e.etype().as_str())),
        }
    }
}

/// Whether the client waits for `100 Continue` before sending its body.
fn expects_continue(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Whether the request says its body is JSON. A cross-site form cannot send
/// `application/json` without a CORS preflight, which guise never grants, so
/// JSON endpoints that require it are safe from form-based CSRF.
pub fn is_json(req: &RequestHeader) -> bool {
    media_type(req).is_some_and(|m| m.eq_ignore_ascii_case("application/json"))
}

/// How a body is encoded, as far as the gateway reads bodies it checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/json` or a `+json` type (see [`is_any_json`]).
    Json,
    /// `application/x-www-form-urlencoded`: what an HTML form posts.
    Form,
    /// Anything else (multipart, text, none given).
    Other,
}

/// The encoding a request gives for its body.
pub fn media(req: &RequestHeader) -> Media {
    if is_any_json(req) {
        Media::Json
    } else if is_form(req) {
        Media::Form
    } else {
        Media::Other
    }
}

/// Whether the body is JSON in any of its media types: `application/json`
/// and the `+json` ones (`application/merge-patch+json` for a PATCH,
/// `application/vnd.api+json`). For reading a body, not for CSRF: see
/// [`is_json`].
pub fn is_any_json(req: &RequestHeader) -> bool {
    media_type(req).is_some_and(|m| {
        m.eq_ignore_ascii_case("application/json")
            || (m.len() > 5
                && m.get(m.len() - 5..)
                    .is_some_and(|s| s.eq_ignore_ascii_case("+json"))
                && m.get(..12)
                    .is_some_and(|s| s.eq_ignore_ascii_case("application/")))
    })
}

/// Whether the body is an HTML form.
pub fn is_form(req: &RequestHeader) -> bool {
    media_type(req).is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

fn media_type(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim())
}

/// Parse `body` as the JSON request `what` describes (in the error, as the
/// client should have sent it).
pub fn parse_json<T: DeserializeOwned>(body: &[u8], what: &'static str) -> Result<T, BodyError> {
    serde_json::from_slice(body).map_err(|e| BodyError::Malformed {
        what,
        reason: e.to_string(),
    })
}

/// The value of form field `name` in an urlencoded body.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(ct: &str) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/", None).unwrap();
        r.insert_header("content-type", ct).unwrap();
        r
    }

    #[test]
    fn json_is_told_by_its_media_type_whatever_the_parameters() {
        assert!(is_json(&req("application/json")));
        assert!(is_json(&req("Application/JSON; charset=utf-8")));
        assert!(!is_json(&req("text/plain")));
        assert!(!is_json(&req("application/json-seq")));
        assert!(is_form(&req("application/x-www-form-urlencoded")));
    }

    #[test]
    fn any_json_takes_the_plus_json_types_too() {
        assert!(is_any_json(&req("application/json")));
        assert!(is_any_json(&req("application/merge-patch+json")));
        assert!(is_any_json(&req("Application/VND.API+JSON; charset=utf-8")));
        assert!(!is_any_json(&req("text/plain")));
        assert!(!is_any_json(&req("text/x+json")));
        assert!(!is_any_json(&req("application/json-seq")));
        assert!(!is_any_json(&req("+json")));
        assert!(!is_json(&req("application/merge-patch+json")));
    }

    #[test]
    fn a_malformed_body_says_what_was_expected() {
        #[derive(serde::Deserialize, Debug)]
        struct X {
            #[allow(dead_code)]
            a: u8,
        }
        let e = parse_json::<X>(b"{\"a\":\"no\"}", "{\"a\": <number>}").unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e
            .to_string()
            .starts_with("the body is not {\"a\": <number>}"));
    }
}
