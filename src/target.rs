//! The request target and Host, checked and put in normal form before any
//! decision is made on them.
//!
//! Routing, the public check and the identity signature must be decided on
//! exactly the bytes the upstream will receive, and the upstream must not
//! read those bytes as a different path than the gateway did. So every
//! request target is either refused with the reason, or rewritten into the
//! one spelling both sides agree on:
//! - only an origin-form path (`/...`) passes, plus `*` for `OPTIONS` and an
//!   absolute URL that names this gateway, which is rewritten to its path;
//! - percent-escapes of unreserved characters (`%61` for `a`) are decoded
//!   and the others upper-cased, since servers decode them before routing;
//! - escapes a server could decode into a separator or a second escape
//!   (`%2F`, `%5C`, `%25`), NUL and other controls, `;` path parameters
//!   (which Java containers strip before routing), raw bytes outside ASCII,
//!   dot segments and empty segments are refused.
//!
//! The Host is checked too: well-formed, one of `allowed_hosts` when that
//! list is set (others get 421), so `X-Forwarded-Host` and same-origin
//! checks only ever see a validated host.

use pingora::http::RequestHeader;

use crate::respond::Refuse;

/// Why a request target or Host was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the request target must be a path starting with `/` (or `*` for OPTIONS, or an absolute URL naming this site)")]
    NotAPath,
    #[error("the `*` request target is only for OPTIONS")]
    AsteriskNotOptions,
    #[error("the absolute URL in the request names `{0}`, not this site")]
    OtherAuthority(String),
    #[error("the request path holds {0}; send it percent-encoded")]
    BadByte(&'static str),
    #[error("the request path holds a malformed percent-escape (`%` must be followed by two hex digits)")]
    BadEscape,
    #[error("the request path is not in normal form: it contains {0}; send the path without it")]
    NotNormal(&'static str),
    #[error(
        "the request query holds a raw byte that is not visible ASCII; send it percent-encoded"
    )]
    BadQuery,
    #[error("the Host header is missing, repeated or malformed")]
    BadHost,
    #[error("this gateway does not serve the host `{0}`")]
    HostNotServed(String),
}

impl Refuse for TargetError {
    fn status(&self) -> u16 {
        match self {
            TargetError::HostNotServed(_) => 421,
            _ => 400,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            TargetError::NotAPath
            | TargetError::AsteriskNotOptions
            | TargetError::OtherAuthority(_) => "bad_request_target",
            TargetError::BadByte(_)
            | TargetError::BadEscape
            | TargetError::NotNormal(_)
            | TargetError::BadQuery => "path_not_normal",
            TargetError::BadHost => "bad_host",
            TargetError::HostNotServed(_) => "misdirected_request",
        }
    }
    fn title(&self) -> &'static str {
        match self {
            TargetError::HostNotServed(_) => "Misdirected request",
            _ => "Bad request",
        }
    }
}

/// What kind of target passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// An origin-form path (possibly rewritten to normal form).
    Path,
    /// `OPTIONS *`: about the server, not a resource.
    Asterisk,
}

/// Check the target and Host of `req`, rewriting the target into normal
/// origin form when it was spelled otherwise (see the module docs).
/// `allowed_hosts` are lower-case; empty allows any well-formed host.
pub fn check(req: &mut RequestHeader, allowed_hosts: &[String]) -> Result<Target, TargetError> {
    let host = host_of(req)?;
    if let Some(h) = &host {
        if !host_allowed(h, allowed_hosts) {
            return Err(TargetError::HostNotServed(h.clone()));
        }
    }
    let raw = req.raw_path();
    if raw == b"*" {
        return if req.method == http::Method::OPTIONS {
            Ok(Target::Asterisk)
        } else {
            Err(TargetError::AsteriskNotOptions)
        };
    }
    let (origin, from_absolute) = match raw.first() {
        Some(b'/') => (raw.to_vec(), false),
        _ => (
            absolute_to_origin(raw, host.as_deref(), allowed_hosts)?,
            true,
        ),
    };
    let normal = normalise(&origin)?;
    if from_absolute || normal != req.raw_path() {
        req.set_raw_path(&normal)
            .map_err(|_| TargetError::NotNormal("characters the URI parser refuses"))?;
    }
    Ok(Target::Path)
}

/// The Host the request names, lower-cased: the `Host` header, or the
/// HTTP/2 `:authority`. `None` for an HTTP/1.0 request without one; an
/// HTTP/1.1 request must name one (RFC 9112 §3.2), absolute-form or not.
fn host_of(req: &RequestHeader) -> Result<Option<String>, TargetError> {
    let mut hosts = req.headers.get_all(http::header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(TargetError::BadHost),
        (Some(h), None) => h.as_bytes(),
        (None, _) => match req.uri.authority() {
            Some(a) => a.as_str().as_bytes(),
            None if req.version == http::Version::HTTP_11 => return Err(TargetError::BadHost),
            None => return Ok(None),
        },
    };
    check_host(host)?;
    Ok(Some(String::from_utf8_lossy(host).to_ascii_lowercase()))
}

/// A `host` or `host:port` as a Host header may carry it: a DNS name or
/// IPv4 address (letters, digits, `-`, `.`), or a bracketed IPv6 address,
/// and a decimal port.
pub fn check_host(host: &[u8]) -> Result<(), TargetError> {
    let bad = Err(TargetError::BadHost);
    let (name, port) = if host.first() == Some(&b'[') {
        let Some(end) = host.iter().position(|b| *b == b']') else {
            return bad;
        };
        let inner = &host[1..end];
        if inner.is_empty()
            || !inner
                .iter()
                .all(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
        {
            return bad;
        }
        match &host[end + 1..] {
            [] => (&host[..=end], None),
            [b':', port @ ..] => (&host[..=end], Some(port)),
            _ => return bad,
        }
    } else {
        match host.iter().position(|b| *b == b':') {
            Some(i) => (&host[..i], Some(&host[i + 1..])),
            None => (host, None),
        }
    };
    let name_ok = name.first() == Some(&b'[')
        || (!name.is_empty()
            && name.len() <= 253
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'.'));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    if name_ok && port_ok {
        Ok(())
    } else {
        bad
    }
}

fn host_allowed(host: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let bare = strip_port(host);
    allowed.iter().any(|a| a == host || a == bare)
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.split(':').next().unwrap_or(host)
}

/// `http(s)://authority/path?query` naming this gateway, as `/path?query`.
fn absolute_to_origin(
    raw: &[u8],
    host: Option<&str>,
    allowed: &[String],
) -> Result<Vec<u8>, TargetError> {
    let lower: Vec<u8> = raw.iter().take(8).map(u8::to_ascii_lowercase).collect();
    let rest = if lower.starts_with(b"http://") {
        &raw[7..]
    } else if lower.starts_with(b"https://") {
        &raw[8..]
    } else {
        return Err(TargetError::NotAPath);
    };
    let end = rest
        .iter()
        .position(|b| *b == b'/' || *b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..end];
    let shown = String::from_utf8_lossy(authority).to_ascii_lowercase();
    if authority.contains(&b'@') || check_host(authority).is_err() {
        return Err(TargetError::OtherAuthority(shown));
    }
    // The URL must name the host the request is for (RFC 9112 §3.2.2 lets
    // it override Host; guise refuses the disagreement instead).
    let named_here = match host {
        Some(h) => h == shown,
        None => host_allowed(&shown, allowed) && !allowed.is_empty(),
    };
    if !named_here || !host_allowed(&shown, allowed) {
        return Err(TargetError::OtherAuthority(shown));
    }
    let mut origin = rest[end..].to_vec();
    if origin.first() != Some(&b'/') {
        origin.insert(0, b'/');
    }
    Ok(origin)
}

/// The origin-form target `/path?query` in normal form (see the module
/// docs), or why it cannot be.
pub fn normalise(target: &[u8]) -> Result<Vec<u8>, TargetError> {
    let split = target
        .iter()
        .position(|b| *b == b'?')
        .unwrap_or(target.len());
    let (path, query) = target.split_at(split);
    let mut out = Vec::with_capacity(target.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        match b {
            b'%' => {
                let hex = path.get(i + 1..i + 3).ok_or(TargetError::BadEscape)?;
                let v = decode_hex(hex).ok_or(TargetError::BadEscape)?;
                match v {
                    b'/' => return Err(TargetError::NotNormal("an encoded slash (%2F)")),
                    b'\\' => return Err(TargetError::NotNormal("an encoded backslash (%5C)")),
                    b'%' => return Err(TargetError::NotNormal("a double encoding (%25)")),
                    b';' => return Err(TargetError::NotNormal("an encoded `;` (%3B)")),
                    0x00..=0x1f | 0x7f => {
                        return Err(TargetError::NotNormal("an encoded control character"))
                    }
                    v if is_unreserved(v) => out.push(v),
                    v => {
                        out.push(b'%');
                        out.extend_from_slice(format!("{v:02X}").as_bytes());
                    }
                }
                i += 3;
                continue;
            }
            b';' => {
                return Err(TargetError::NotNormal(
                    "a `;` path parameter, which some servers strip before routing",
                ))
            }
            b'\\' => return Err(TargetError::NotNormal("a backslash")),
            0x00..=0x20 | 0x7f => return Err(TargetError::BadByte("a control character or space")),
            0x80.. => return Err(TargetError::BadByte("a byte outside ASCII")),
            b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'#' => {
                return Err(TargetError::BadByte(
                    "a character that must be percent-encoded",
                ))
            }
            _ => out.push(b),
        }
        i += 1;
    }
    check_segments(&out)?;
    if query
        .iter()
        .any(|b| !(0x21..0x7f).contains(b) || *b == b'#')
    {
        return Err(TargetError::BadQuery);
    }
    out.extend_from_slice(query);
    Ok(out)
}

fn check_segments(path: &[u8]) -> Result<(), TargetError> {
    if path.windows(2).any(|w| w == b"//") {
        return Err(TargetError::NotNormal("an empty segment (`//`)"));
    }
    if path
        .split(|b| *b == b'/')
        .any(|seg| seg == b"." || seg == b"..")
    {
        return Err(TargetError::NotNormal("a `.` or `..` segment"));
    }
    Ok(())
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn decode_hex(hex: &[u8]) -> Option<u8> {
    let digit = |c: u8| (c as char).to_digit(16);
    match hex {
        [h, l] => Some((digit(*h)? * 16 + digit(*l)?) as u8),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &[u8], host: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build(method, target, None).unwrap();
        if let Some(h) = host {
            r.insert_header("host", h).unwrap();
        }
        r
    }

    fn normal(t: &str) -> Result<String, TargetError> {
        normalise(t.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn plain_paths_pass_unchanged() {
        for t in [
            "/",
            "/api/companies/co-100",
            "/a%20b?x=1&y=%zz",
            "/files/v1.2/x",
            "/a|b^c[0]",
            "/caf%C3%A9",
        ] {
            assert_eq!(normal(t).as_deref(), Ok(t), "{t}");
        }
    }

    #[test]
    fn escapes_of_unreserved_characters_are_decoded_and_others_upper_cased() {
        assert_eq!(normal("/%61dmin").unwrap(), "/admin");
        assert_eq!(normal("/a%7eb%2D").unwrap(), "/a~b-");
        assert_eq!(normal("/caf%c3%a9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn paths_an_upstream_would_read_as_another_path_are_refused() {
        for t in [
            "/public/../api",
            "/public/%2e%2e/api",
            "/public/%2E./api",
            "/a//b",
            "/./a",
            "/a%2Fb",
            "/a%2fb",
            "/a%5cb",
            "/a\\b",
            "/public;x=1/../admin",
            "/admin;jsessionid=1",
            "/a%3Bb",
            "/a%252e%252e/b",
            "/a%00b",
            "/a%0d%0ab",
            "/a%",
            "/a%4",
            "/a%zz",
        ] {
            assert!(normal(t).is_err(), "{t}");
        }
    }

    #[test]
    fn raw_bytes_outside_visible_ascii_are_refused_in_path_and_query() {
        assert!(normalise(b"/caf\xc3\xa9").is_err());
        assert!(normalise(b"/a\x01b").is_err());
        assert!(normalise(b"/a?q=\xff").is_err());
        assert!(normalise(b"/a\"b").is_err());
    }

    #[test]
    fn only_options_may_name_the_asterisk() {
        assert_eq!(
            check(&mut req("OPTIONS", b"*", Some("gw.test")), &[]),
            Ok(Target::Asterisk)
        );
        assert_eq!(
            check(&mut req("GET", b"*", Some("gw.test")), &[]),
            Err(TargetError::AsteriskNotOptions)
        );
    }

    #[test]
    fn an_absolute_url_naming_this_host_becomes_its_path() {
        let mut r = req("GET", b"http://gw.test/%61pi/x?q=1", Some("gw.test"));
        assert_eq!(check(&mut r, &[]), Ok(Target::Path));
        assert_eq!(r.raw_path(), b"/api/x?q=1");
        assert_eq!(r.uri.path(), "/api/x");

        let mut other = req("GET", b"http://evil.test/admin", Some("gw.test"));
        assert!(matches!(
            check(&mut other, &[]),
            Err(TargetError::OtherAuthority(_))
        ));
        let mut userinfo = req("GET", b"http://gw.test@evil.test/", Some("gw.test"));
        assert!(check(&mut userinfo, &[]).is_err());
        let mut scheme = req("GET", b"ftp://gw.test/", Some("gw.test"));
        assert_eq!(check(&mut scheme, &[]), Err(TargetError::NotAPath));
    }

    #[test]
    fn hosts_are_checked_and_limited_to_the_allowed_ones() {
        let allowed = vec!["gw.test".to_string(), "127.0.0.1:8080".to_string()];
        assert!(check(&mut req("GET", b"/", Some("GW.test:8443")), &allowed).is_ok());
        assert!(check(&mut req("GET", b"/", Some("127.0.0.1:8080")), &allowed).is_ok());
        assert_eq!(
            check(&mut req("GET", b"/", Some("evil.test")), &allowed),
            Err(TargetError::HostNotServed("evil.test".into()))
        );
        for bad in ["a b", "x/y", "h:p", "[zz]", "a:123456", ""] {
            assert_eq!(
                check(&mut req("GET", b"/", Some(bad)), &[]),
                Err(TargetError::BadHost),
                "{bad:?}"
            );
        }
        assert!(check_host(b"[::1]:8080").is_ok());
        let mut two = req("GET", b"/", Some("a.test"));
        two.append_header("host", "b.test").unwrap();
        assert_eq!(check(&mut two, &[]), Err(TargetError::BadHost));
    }

    #[test]
    fn http_1_1_must_name_a_host_and_http_1_0_may_not() {
        let mut none = req("GET", b"/", None);
        none.set_version(http::Version::HTTP_11);
        assert_eq!(check(&mut none, &[]), Err(TargetError::BadHost));
        let mut absolute = req("GET", b"http://gw.test/", None);
        absolute.set_version(http::Version::HTTP_11);
        let allowed = vec!["gw.test".to_string()];
        assert_eq!(check(&mut absolute, &allowed), Err(TargetError::BadHost));
        let mut old = req("GET", b"/", None);
        old.set_version(http::Version::HTTP_10);
        assert_eq!(check(&mut old, &[]), Ok(Target::Path));
    }

    #[test]
    fn a_rewritten_target_is_what_the_request_carries_afterwards() {
        let mut r = req("GET", b"/%61pi/companies", Some("gw.test"));
        check(&mut r, &[]).unwrap();
        assert_eq!(r.uri.path(), "/api/companies");
        assert_eq!(r.raw_path(), b"/api/companies");
    }
}
