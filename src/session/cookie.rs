//! The session cookie: HttpOnly and SameSite=Lax always; on HTTPS also
//! `Secure` and the `__Host-` prefix, which pins it to this host and path
//! `/` so a sibling subdomain cannot plant or read it.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use pingora::http::RequestHeader;

use super::token::Token;

/// The cookie name for a request arriving over HTTPS or not.
pub fn name(base: &str, https: bool) -> String {
    if https {
        format!("__Host-{base}")
    } else {
        base.to_string()
    }
}

/// The value of cookie `name` in the request, if any (every `Cookie`
/// header is read; the first match wins).
pub fn read(req: &RequestHeader, name: &str) -> Option<String> {
    pairs(req).find(|(n, _)| n == name).map(|(_, v)| v)
}

/// The session token of the request: the first cookie named `name` whose
/// value is a well-formed token, so a malformed copy planted in front of it
/// does not hide it.
pub fn read_token(req: &RequestHeader, name: &str) -> Option<Token> {
    // Read as [`pairs`] reads (same split, same trim, same order), but
    // borrowing: a header that is UTF-8 (every real one) is parsed in place
    // and no pair is copied. Runs on every request.
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .find_map(|v| {
            let text = String::from_utf8_lossy(v.as_bytes());
            Cookie::split_parse(text.as_ref())
                .filter_map(Result::ok)
                .filter(|c| c.name() == name)
                .find_map(|c| Token::from_cookie(c.value()))
        })
}

/// Every `(name, value)` cookie of the request, tolerantly: a header that
/// is not UTF-8 is read with replacement characters and a pair that does
/// not parse is skipped, so one bad cookie never hides another. Names and
/// values are trimmed as the `cookie` crate does; values are not decoded.
pub fn pairs(req: &RequestHeader) -> impl Iterator<Item = (String, String)> + '_ {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| {
            let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
            Cookie::split_parse(text)
                .filter_map(Result::ok)
                .map(|c| (c.name().to_string(), c.value().to_string()))
                .collect::<Vec<_>>()
        })
}

/// Whether one `name=value` piece of a Cookie header has a name in
/// `names` (case-blind), read exactly as [`pairs`] reads names: the bytes
/// up to the first `=`, decoded as UTF-8 with replacement, trimmed of every
/// white space the `cookie` crate trims (Unicode's too, such as U+00A0). A
/// narrower trim here would let a cookie guise reads as its session slip
/// through to the app.
fn named(piece: &[u8], names: &[impl AsRef<str>]) -> bool {
    let raw = piece.split(|b| *b == b'=').next().unwrap_or(piece);
    let name = String::from_utf8_lossy(raw);
    let name = name.trim();
    names.iter().any(|n| name.eq_ignore_ascii_case(n.as_ref()))
}

/// Remove the gateway's own cookies from a request before it goes
/// upstream: the session token is guise's secret, and the app (and its
/// logs) must never see it. A piece is dropped when its name, read exactly
/// as [`pairs`] reads names (and compared case-blind), is one of `names`,
/// so no spacing makes guise recognise a cookie it then forwards. Other
/// cookies pass unchanged, byte for byte.
pub fn strip<N: AsRef<str>>(req: &mut RequestHeader, names: &[N]) {
    let ours = |piece: &[u8]| named(piece, names);
    let all: Vec<&[u8]> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    // Fast path: most requests carry none of our cookies.
    if !all.iter().any(|v| v.split(|b| *b == b';').any(ours)) {
        return;
    }
    let kept: Vec<&[u8]> = all
        .iter()
        .flat_map(|v| v.split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|piece| !piece.is_empty() && !ours(piece))
        .collect();
    let joined = kept.join(&b"; "[..]);
    req.remove_header(&http::header::COOKIE);
    if !joined.is_empty() {
        // Joined back as one header, as HTTP/1.1 requires. Bytes that came
        // in a header value are valid in one.
        if let Ok(v) = http::HeaderValue::from_bytes(&joined) {
            let _ = req.insert_header(http::header::COOKIE, v);
        }
    }
}

/// `Set-Cookie` value for a fresh session.
pub fn set(name: &str, token: &Token, https: bool, max_age: Duration) -> String {
    build(
        name,
        token.as_str().to_string(),
        https,
        max_age,
        SameSite::Lax,
        "/",
    )
}

/// `Set-Cookie` value that removes the cookie.
pub fn clear(name: &str, https: bool) -> String {
    build(
        name,
        String::new(),
        https,
        Duration::ZERO,
        SameSite::Lax,
        "/",
    )
}

/// A short-lived cookie for the login form's CSRF token (double submit):
/// strict, so no other site's form can carry it.
pub fn set_login_csrf(name: &str, value: &str, https: bool) -> String {
    strict(name, value, https, Duration::from_secs(3600))
}

/// A `SameSite=Strict` cookie (login CSRF, device cookie); a zero
/// `max_age` removes it with the same attributes it was set with.
pub fn strict(name: &str, value: &str, https: bool, max_age: Duration) -> String {
    build(
        name,
        value.to_string(),
        https,
        max_age,
        SameSite::Strict,
        "/",
    )
}

fn build(
    name: &str,
    value: String,
    https: bool,
    max_age: Duration,
    same_site: SameSite,
    path: &'static str,
) -> String {
    let mut c = Cookie::build((name.to_string(), value))
        .path(path)
        .http_only(true)
        .same_site(same_site)
        .secure(https)
        .max_age(time::Duration::seconds(max_age.as_secs() as i64))
        .build();
    if max_age.is_zero() {
        c.make_removal();
        c.set_path(path);
    }
    c.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_cookies_are_host_prefixed_secure_httponly_lax() {
        let t = Token::generate();
        let n = name("guise_session", true);
        let s = set(&n, &t, true, Duration::from_secs(60));
        assert!(s.starts_with("__Host-guise_session="), "{s}");
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/", "Max-Age=60"] {
            assert!(s.contains(attr), "{attr} missing in {s}");
        }
        assert!(
            !s.contains("Domain"),
            "__Host- cookies must not have a Domain"
        );
    }

    #[test]
    fn plain_http_cookies_are_not_marked_secure() {
        let s = set(
            "guise_session",
            &Token::generate(),
            false,
            Duration::from_secs(60),
        );
        assert!(!s.contains("Secure"));
        assert!(s.contains("HttpOnly"));
    }

    #[test]
    fn the_token_is_read_among_other_cookies() {
        let t = Token::generate();
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header("cookie", "a=1; b=2").unwrap();
        r.append_header("cookie", format!("guise_session={}; c=3", t.as_str()))
            .unwrap();
        assert_eq!(read_token(&r, "guise_session"), Some(t));
        assert_eq!(read_token(&r, "__Host-guise_session"), None);
    }

    #[test]
    fn the_gateways_cookies_never_reach_the_upstream_and_others_do() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header("cookie", "app=1; guise_session=secret")
            .unwrap();
        r.append_header("cookie", "__Host-guise_session=secret2; other=2")
            .unwrap();
        strip(
            &mut r,
            &["guise_session", "__Host-guise_session", "guise_login_csrf"],
        );
        let all: Vec<_> = r.headers.get_all("cookie").iter().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0], "app=1; other=2");

        let mut only = RequestHeader::build("GET", b"/", None).unwrap();
        only.append_header("cookie", "guise_session=secret")
            .unwrap();
        strip(&mut only, &["guise_session"]);
        assert!(only.headers.get("cookie").is_none());

        // A cookie whose name merely contains ours is kept.
        let mut similar = RequestHeader::build("GET", b"/", None).unwrap();
        similar
            .append_header("cookie", "my_guise_session=1")
            .unwrap();
        strip(&mut similar, &["guise_session"]);
        assert_eq!(similar.headers["cookie"], "my_guise_session=1");
    }

    #[test]
    fn a_bad_cookie_never_hides_the_session_cookie() {
        let t = Token::generate();
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        let mut bytes = b"junk=\xff\xfe; =novalue; guise_session=short; ".to_vec();
        bytes.extend_from_slice(format!("guise_session={}", t.as_str()).as_bytes());
        r.append_header("cookie", http::HeaderValue::from_bytes(&bytes).unwrap())
            .unwrap();
        assert_eq!(read_token(&r, "guise_session"), Some(t));
    }

    #[test]
    fn a_recognised_session_cookie_is_stripped_whatever_its_spacing() {
        for spelled in [
            "guise_session=tok",
            " guise_session = tok ",
            "guise_session\t=tok",
            "GUISE_SESSION=tok",
            "\u{a0}guise_session=tok",
            "guise_session\u{3000}=tok",
        ] {
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            r.append_header("cookie", format!("app=1;{spelled};other=2"))
                .unwrap();
            strip(&mut r, &["guise_session"]);
            assert_eq!(r.headers["cookie"], "app=1; other=2", "{spelled:?}");
        }
    }

    #[test]
    fn stripping_keeps_other_cookies_byte_for_byte() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header(
            "cookie",
            http::HeaderValue::from_bytes(b"n=\xe9t\xe9; guise_session=x").unwrap(),
        )
        .unwrap();
        strip(&mut r, &["guise_session"]);
        assert_eq!(r.headers["cookie"].as_bytes(), b"n=\xe9t\xe9");
    }

    #[test]
    fn clearing_expires_the_cookie() {
        let s = clear("guise_session", false);
        assert!(s.contains("Max-Age=0"), "{s}");
    }

    #[test]
    fn a_strict_cookie_is_cleared_as_strict() {
        let set = set_login_csrf("guise_login_csrf", "v", true);
        let gone = strict("guise_login_csrf", "", true, Duration::ZERO);
        assert!(set.contains("SameSite=Strict") && gone.contains("SameSite=Strict"));
        assert!(gone.contains("Max-Age=0"), "{gone}");
    }
}
