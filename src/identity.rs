//! Identity headers: what the gateway tells the upstream about the user.
//!
//! The upstream trusts these headers only because no client can send them:
//! every client header whose name starts with the configured prefix is
//! removed before any other stage runs.

use pingora::http::RequestHeader;

/// Remove every header whose name starts with `prefix` (lower case). Header
/// names are stored lower-cased, so the comparison is case-blind.
pub fn strip_client_headers(req: &mut RequestHeader, prefix: &str) {
    let spoofed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with(prefix))
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
    fn every_prefixed_header_is_removed_whatever_its_case() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header("X-Guise-User", "admin").unwrap();
        r.append_header("x-guise-user", "second").unwrap();
        r.append_header("X-GUISE-ROLES", "super_admin").unwrap();
        r.append_header("x-guisex", "kept: no dash after prefix")
            .unwrap();
        r.append_header("accept", "*/*").unwrap();
        strip_client_headers(&mut r, "x-guise-");
        assert!(r.headers.get("x-guise-user").is_none());
        assert!(r.headers.get("x-guise-roles").is_none());
        assert!(r.headers.get("x-guisex").is_some());
        assert!(r.headers.get("accept").is_some());
    }
}
