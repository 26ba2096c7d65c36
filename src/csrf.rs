//! Cross-site request forgery checks for the gateway's state-changing
//! endpoints.
//!
//! Two independent checks, both required: the browser's own origin signals
//! (`Origin`, `Sec-Fetch-Site`) must not name another site, and the request
//! must carry a token that only pages of this site can read.

use pingora::http::RequestHeader;
use subtle::ConstantTimeEq;

use crate::respond::Refuse;

/// Header API clients send the session's CSRF token in.
pub const HEADER: &str = "x-csrf-token";
/// Form field browsers send it in.
pub const FIELD: &str = "csrf_token";

/// Why a state-changing request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrfError {
    #[error("the request came from another site ({0}); state-changing gateway endpoints only accept requests from this site")]
    CrossSite(String),
    #[error("the request carries no CSRF token; send the session's token in the `x-csrf-token` header or the `csrf_token` form field")]
    Missing,
    #[error("the CSRF token does not match this session; reload the page and try again")]
    Mismatch,
}

impl Refuse for CsrfError {
    fn status(&self) -> u16 {
        403
    }
    fn code(&self) -> &'static str {
        "csrf"
    }
    fn title(&self) -> &'static str {
        "Request refused"
    }
}

/// The browser's origin signals do not point at another site. Requests
/// without them (non-browser clients) pass; the token check still applies.
pub fn same_origin(req: &RequestHeader, https: bool) -> Result<(), CsrfError> {
    let header = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Err(CsrfError::CrossSite(format!("Sec-Fetch-Site: {site}")));
        }
    }
    if let Some(origin) = header("origin") {
        let host = header("host")
            .map(str::to_string)
            .or_else(|| req.uri.authority().map(|a| a.to_string()))
            .unwrap_or_default();
        let scheme = if https { "https" } else { "http" };
        if origin != format!("{scheme}://{host}") {
            return Err(CsrfError::CrossSite(format!("Origin: {origin}")));
        }
    }
    Ok(())
}

/// `given` equals `expected`, compared in constant time.
pub fn check_token(expected: &str, given: Option<&str>) -> Result<(), CsrfError> {
    let given = given.filter(|g| !g.is_empty()).ok_or(CsrfError::Missing)?;
    if expected.as_bytes().ct_eq(given.as_bytes()).into() {
        Ok(())
    } else {
        Err(CsrfError::Mismatch)
    }
}

/// The token a request carries: its `x-csrf-token` header, else the
/// `csrf_token` field of its form (the body is read for it).
pub async fn given_token(
    s: &mut pingora::proxy::Session,
) -> Result<Option<String>, crate::body::BodyError> {
    match header_token(s.req_header()) {
        Some(t) => Ok(Some(t.to_string())),
        None => Ok(crate::body::form_field(&crate::body::read(s).await?, FIELD)),
    }
}

/// The token a request carries in its header, if any.
pub fn header_token(req: &RequestHeader) -> Option<&str> {
    req.headers.get(HEADER).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/_guise/logout", None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn another_sites_origin_is_refused() {
        let r = req(&[("host", "app.test"), ("origin", "https://evil.test")]);
        assert!(matches!(
            same_origin(&r, true),
            Err(CsrfError::CrossSite(_))
        ));
        let r = req(&[("host", "app.test"), ("sec-fetch-site", "cross-site")]);
        assert!(same_origin(&r, true).is_err());
    }

    #[test]
    fn this_sites_origin_and_clients_without_origin_pass() {
        let r = req(&[
            ("host", "app.test"),
            ("origin", "https://app.test"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert!(same_origin(&r, true).is_ok());
        assert!(same_origin(&req(&[("host", "app.test")]), true).is_ok());
        // Same host but plain http when we serve https: another origin.
        let r = req(&[("host", "app.test"), ("origin", "http://app.test")]);
        assert!(same_origin(&r, true).is_err());
    }

    #[test]
    fn tokens_must_be_present_and_equal() {
        assert_eq!(check_token("abc", None), Err(CsrfError::Missing));
        assert_eq!(check_token("abc", Some("")), Err(CsrfError::Missing));
        assert_eq!(check_token("abc", Some("abd")), Err(CsrfError::Mismatch));
        assert_eq!(check_token("abc", Some("abc")), Ok(()));
    }
}
