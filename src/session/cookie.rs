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
    with_value(req, name, str::to_string)
}

/// The session token of the request, if it carries a well-formed one.
pub fn read_token(req: &RequestHeader, name: &str) -> Option<Token> {
    with_value(req, name, Token::from_cookie).flatten()
}

/// `f` of the value of cookie `name`, borrowed from the request: this runs
/// on every request, so the value is not copied before it is needed.
fn with_value<T>(req: &RequestHeader, name: &str, f: impl FnOnce(&str) -> T) -> Option<T> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| f(c.value()))
}

/// Remove the gateway's own cookies from a request before it goes
/// upstream: the session token is guise's secret, and the app (and its
/// logs) must never see it. Other cookies pass unchanged.
pub fn strip<N: AsRef<str>>(req: &mut RequestHeader, names: &[N]) {
    let ours = |v: &http::HeaderValue| {
        let b = v.as_bytes();
        names.iter().any(|n| {
            b.windows(n.as_ref().len())
                .any(|w| w == n.as_ref().as_bytes())
        })
    };
    // Fast path: most requests carry none of our cookies by name.
    if !req.headers.get_all(http::header::COOKIE).iter().any(ours) {
        return;
    }
    let kept: Vec<String> = req
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            !pair.is_empty() && !names.iter().any(|n| n.as_ref() == name)
        })
        .map(str::to_string)
        .collect();
    req.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        // Joined back as one header, as HTTP/1.1 requires.
        let _ = req.insert_header(http::header::COOKIE, kept.join("; "));
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
    build(
        name,
        value.to_string(),
        https,
        Duration::from_secs(3600),
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
        .max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64))
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
    fn clearing_expires_the_cookie() {
        let s = clear("guise_session", false);
        assert!(s.contains("Max-Age=0"), "{s}");
    }
}
