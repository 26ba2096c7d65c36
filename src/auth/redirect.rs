//! Where a browser may be sent after login: only paths on this site.

use crate::routes::{ADMIN_PAGE, GATEWAY_PREFIX};
use crate::target::normalise;

/// `next` if it is a same-origin path, else `None`.
///
/// Refuses absolute URLs, scheme-relative `//host` and `/\host` (which
/// browsers read as another host), control characters, the gateway's own
/// endpoints, and targets not in the normal form [`crate::target`] gives
/// requests (so the redirect lands on the path that was checked). The one
/// gateway page allowed is the admin page ([`ADMIN_PAGE`]): it sends
/// browsers without a session to log in with `next` naming it, and it is a
/// page to look at (GET, admins only), unlike the other endpoints.
pub fn safe_next(next: &str) -> Option<&str> {
    let without_fragment = next.split('#').next().unwrap_or("");
    let path = without_fragment.split('?').next().unwrap_or("");
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.bytes().any(|b| b.is_ascii_control() || b == b'\\')
        && normalise(without_fragment.as_bytes()).is_ok_and(|n| n == without_fragment.as_bytes())
        && (!next.starts_with(GATEWAY_PREFIX) || path == ADMIN_PAGE);
    ok.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_paths_are_kept() {
        for p in [
            "/",
            "/dashboard",
            "/companies/co-100?tab=ctas",
            "/a#frag",
            "/_guise/admin",
            "/_guise/admin?done=ended#impersonations",
        ] {
            assert_eq!(safe_next(p), Some(p));
        }
    }

    #[test]
    fn anything_that_could_leave_the_site_is_refused() {
        for p in [
            "https://evil.test/",
            "//evil.test/",
            "/\\evil.test",
            "javascript:alert(1)",
            "evil.test",
            "/a\r\nSet-Cookie: x=1",
            "/../etc",
            "",
            "/_guise/logout",
            "/_guise/admin/users",
            "/_guise/adminx",
            "/_guise/session",
        ] {
            assert_eq!(safe_next(p), None, "{p:?}");
        }
    }
}
