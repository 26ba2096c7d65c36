//! What a request bound for the upstream carries besides the client's own
//! headers: `X-Forwarded-*` naming the real client, and none of what must
//! stay between the client and the gateway (the gateway's cookies, and
//! hop-by-hop headers when guise builds a request itself).

use std::net::IpAddr;

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use crate::identity::reads_as_prefixed;
use crate::session::cookie;

/// Prefixes and names of headers an upstream reads as facts only its proxy
/// states: who the client is and which host, scheme, port and path prefix
/// it asked for (`X-Forwarded-*`, RFC 7239 `Forwarded`, `X-Real-IP`), and
/// the request's "original" path (`X-Original-URL`, `X-Rewrite-URL`, which
/// IIS and some PHP frameworks route on instead of the request line).
const PROXY_FACT_PREFIXES: [&str; 1] = ["x-forwarded-"];
const PROXY_FACT_NAMES: [&str; 4] = ["forwarded", "x-real-ip", "x-original-url", "x-rewrite-url"];

/// Whether some upstream would read a header named `name` as one of the
/// proxy's facts, in any spelling it folds to one (`X_Forwarded_Host` is
/// `HTTP_X_FORWARDED_HOST` to WSGI, Rack and PHP alike; see
/// [`crate::identity::reads_as_prefixed`]).
pub fn is_proxy_fact(name: &[u8]) -> bool {
    PROXY_FACT_PREFIXES
        .iter()
        .any(|p| reads_as_prefixed(name, p.as_bytes()))
        || PROXY_FACT_NAMES
            .iter()
            .any(|p| name.len() == p.len() && reads_as_prefixed(name, p.as_bytes()))
}

/// Remove every client-sent header that [`is_proxy_fact`]: nothing before
/// the gateway is trusted to have written one.
fn remove_proxy_facts(up: &mut RequestHeader) {
    // Nearly every request has none: look before collecting.
    if !up
        .headers
        .keys()
        .any(|k| is_proxy_fact(k.as_str().as_bytes()))
    {
        return;
    }
    let forged: Vec<HeaderName> = up
        .headers
        .keys()
        .filter(|k| is_proxy_fact(k.as_str().as_bytes()))
        .cloned()
        .collect();
    for name in forged {
        up.remove_header(&name);
    }
}

/// Set `X-Forwarded-For/-Proto/-Host` on the upstream request.
///
/// `client` is the client's address as the gateway established it. Every
/// client-sent header an upstream reads as a proxy's fact is removed first
/// ([`is_proxy_fact`]): a client-sent `X-Forwarded-For` is replaced, not
/// appended to, and a forged `Forwarded: host=`, `X-Real-IP` or
/// `X_Forwarded_Host` cannot contradict what the gateway states. `host` is the request's
/// Host, already checked by [`crate::target`]; HTTP/2 clients send
/// `:authority` instead, and an HTTP/1 upstream needs a Host, so it is
/// carried over.
pub fn set_headers(
    up: &mut RequestHeader,
    client: Option<IpAddr>,
    https: bool,
    host: Option<&HeaderValue>,
) -> pingora::Result<()> {
    remove_proxy_facts(up);
    match client {
        Some(ip) => up.insert_header("x-forwarded-for", ip_value(ip))?,
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

/// `ip` as a header value, as `Display` writes it; an IPv4 address (nearly
/// every client) without the formatting machinery, since every request
/// carries one.
fn ip_value(ip: IpAddr) -> HeaderValue {
    let text = match ip {
        IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                if octet >= 100 {
                    s.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    s.push(char::from(b'0' + octet / 10 % 10));
                }
                s.push(char::from(b'0' + octet % 10));
            }
            s
        }
        IpAddr::V6(v6) => v6.to_string(),
    };
    // Digits, dots, colons and hex: always a valid value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
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
    fn client_addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.20.30.40",
            "255.255.255.255",
            "192.168.100.9",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip).to_str().unwrap(), ip.to_string());
        }
    }

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
    fn forged_proxy_facts_are_removed_in_every_spelling_and_the_rest_kept() {
        let mut up = RequestHeader::build("GET", b"/", None).unwrap();
        for (k, v) in [
            ("forwarded", "for=6.6.6.6;host=evil.test"),
            ("x-real-ip", "6.6.6.6"),
            ("x_forwarded_host", "evil.test"),
            ("x-forwarded_proto", "https"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/admin"),
            ("x.original.url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded-by", "kept"),
            ("x-real-ip-note", "kept"),
            ("accept", "*/*"),
        ] {
            up.append_header(k.to_string(), v).unwrap();
        }
        set_headers(&mut up, Some([10, 0, 0, 1].into()), false, None).unwrap();
        let mut left: Vec<_> = up.headers.keys().map(|k| k.as_str().to_string()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "accept",
                "forwarded-by",
                "x-forwarded-for",
                "x-forwarded-proto",
                "x-real-ip-note"
            ]
        );
        assert_eq!(up.headers["x-forwarded-for"], "10.0.0.1");
        assert_eq!(up.headers["x-forwarded-proto"], "http");
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
