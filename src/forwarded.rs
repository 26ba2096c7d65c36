//! What a request bound for the upstream carries besides the client's own
//! headers: `X-Forwarded-*` naming the real client, and none of what must
//! stay between the client and the gateway (the gateway's cookies, and
//! hop-by-hop headers when guise builds a request itself).

use std::net::IpAddr;

use http::HeaderValue;
use pingora::http::RequestHeader;

use crate::session::cookie;

/// Set `X-Forwarded-For/-Proto/-Host` on the upstream request.
///
/// `client` is the client's address as the gateway established it. A
/// client-sent `X-Forwarded-For` is replaced, not appended to: nothing
/// before the gateway is trusted to have written it. `host` is the request's
/// Host, already checked by [`crate::target`]; HTTP/2 clients send
/// `:authority` instead, and an HTTP/1 upstream needs a Host, so it is
/// carried over.
pub fn set_headers(
    up: &mut RequestHeader,
    client: Option<IpAddr>,
    https: bool,
    host: Option<&HeaderValue>,
) -> pingora::Result<()> {
    match client {
        Some(ip) => up.insert_header("x-forwarded-for", ip.to_string())?,
        None => {
            up.remove_header("x-forwarded-for");
        }
    }
    up.insert_header("x-forwarded-proto", if https { "https" } else { "http" })?;
    match host {
        Some(h) => {
            up.insert_header("x-forwarded-host", h.clone())?;
            if up.headers.get(http::header::HOST).is_none() {
                up.insert_header(http::header::HOST, h.clone())?;
            }
        }
        None => {
            up.remove_header("x-forwarded-host");
        }
    }
    Ok(())
}

/// Take the gateway's own cookies off a request bound for the upstream.
pub fn strip_gateway_cookies<N: AsRef<str>>(up: &mut RequestHeader, own: &[N]) {
    cookie::strip(up, own);
}

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1),
/// which a proxy must not pass on.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Remove hop-by-hop headers, and every header `Connection` names, from a
/// request guise sends on a connection of its own (pingora's proxy path
/// does this for proxied requests).
pub fn remove_hop_by_hop(up: &mut RequestHeader) {
    let named: Vec<String> = up
        .headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        up.remove_header(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_forwarded_headers_are_replaced_not_trusted() {
        let mut up = RequestHeader::build("GET", b"/", None).unwrap();
        up.insert_header("x-forwarded-for", "6.6.6.6").unwrap();
        up.insert_header("x-forwarded-host", "evil.test").unwrap();
        set_headers(&mut up, Some([10, 0, 0, 1].into()), true, None).unwrap();
        assert_eq!(up.headers["x-forwarded-for"], "10.0.0.1");
        assert_eq!(up.headers["x-forwarded-proto"], "https");
        assert!(up.headers.get("x-forwarded-host").is_none());
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut up = RequestHeader::build("POST", b"/login", None).unwrap();
        for (k, v) in [
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-secret", "1"),
            ("accept", "*/*"),
        ] {
            up.append_header(k.to_string(), v).unwrap();
        }
        remove_hop_by_hop(&mut up);
        let left: Vec<_> = up.headers.keys().map(|k| k.as_str().to_string()).collect();
        assert_eq!(left, vec!["accept".to_string()]);
    }
}
