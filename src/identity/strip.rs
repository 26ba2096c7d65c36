//! Taking every client-sent identity header off a request.
//!
//! The upstream must never see an identity header the gateway did not sign.
//! Stripping the exact prefix is not enough: many servers (WSGI, Rack,
//! PHP-CGI, some Java containers) hand headers to the app as
//! `HTTP_X_GUISE_USER`, turning `-` into `_`, so a client that sends
//! `X_Guise_User` or `x-guise_user` would be read as `x-guise-user`. So a
//! header is removed when its name, lower-cased and with every separator
//! (anything but a letter or digit) read as `-`, starts with the prefix read
//! the same way.

use pingora::http::RequestHeader;

/// Whether a header named `name` could be read by some upstream as one
/// whose name starts with `prefix` (see the module docs).
pub fn reads_as_prefixed(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name.iter().zip(prefix).all(|(n, p)| fold(*n) == fold(*p))
}

/// A header-name byte as the most lenient upstream reads it.
fn fold(b: u8) -> u8 {
    if b.is_ascii_alphanumeric() {
        b.to_ascii_lowercase()
    } else {
        b'-'
    }
}

/// Remove every header of `req` that [`reads_as_prefixed`] `prefix`.
pub fn strip_client_headers(req: &mut RequestHeader, prefix: &str) {
    let prefix = prefix.as_bytes();
    // Nearly every request has none: look before collecting.
    if !req
        .headers
        .keys()
        .any(|k| reads_as_prefixed(k.as_str().as_bytes(), prefix))
    {
        return;
    }
    let spoofed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| reads_as_prefixed(k.as_str().as_bytes(), prefix))
        .cloned()
        .collect();
    for name in spoofed {
        req.remove_header(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_an_upstream_reads_as_the_prefix_is_caught() {
        for name in [
            "x-guise-user",
            "x_guise_user",
            "x-guise_user",
            "x.guise.user",
            "x_guise-signature",
            "x-guise-",
            "x~guise~roles",
        ] {
            assert!(reads_as_prefixed(name.as_bytes(), b"x-guise-"), "{name}");
        }
        for name in [
            "x-guise",
            "x-guisey-user",
            "xguise-user",
            "accept",
            "x-other",
        ] {
            assert!(!reads_as_prefixed(name.as_bytes(), b"x-guise-"), "{name}");
        }
    }

    #[test]
    fn stripping_removes_every_value_of_every_spelling_and_keeps_the_rest() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in [
            ("X-Guise-User", "a"),
            ("x_guise_user", "b"),
            ("X_GUISE_ROLES", "super_admin"),
            ("x-guise-user", "c"),
            ("x-keep", "1"),
        ] {
            r.append_header(k.to_string(), v).unwrap();
        }
        strip_client_headers(&mut r, "x-guise-");
        let left: Vec<_> = r.headers.keys().map(|k| k.as_str().to_string()).collect();
        assert_eq!(left, vec!["x-keep".to_string()]);
    }
}
