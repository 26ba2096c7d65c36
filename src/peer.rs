//! Facts about the client's connection that several stages need: whether
//! it came over TLS, and the client's address. Read once per request.
//!
//! Behind a load balancer the TCP peer is the balancer. When that peer is
//! in `server.trusted_proxies`, the client is read from what it forwarded:
//! the PROXY protocol header (already applied to the connection's peer
//! address, see [`crate::proxy_protocol`]), then `X-Forwarded-For`, taking
//! the rightmost entry that is not itself a trusted proxy (entries to its
//! left were written by whoever the client was, and prove nothing), and
//! `X-Forwarded-Proto`. From any other peer these headers are ignored, so a
//! client cannot choose its own address.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use crate::proxy_protocol::trusted;

/// The client side of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The connection is TLS (cookies get `Secure` and `__Host-`).
    pub https: bool,
    /// The client's address; `None` for a Unix socket.
    pub ip: Option<IpAddr>,
}

impl Peer {
    /// The client of `s`'s request, through `proxies` (see the module docs).
    pub fn of(s: &Session, proxies: &[IpNet]) -> Peer {
        let tls = s.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
        let ip = s.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip());
        Peer::forwarded(s.req_header(), ip, tls, proxies)
    }

    /// The client a request from `peer` speaks for, over TLS or not.
    pub fn forwarded(
        req: &RequestHeader,
        peer: Option<IpAddr>,
        tls: bool,
        proxies: &[IpNet],
    ) -> Peer {
        let Some(peer) = peer.filter(|ip| !proxies.is_empty() && trusted(*ip, proxies)) else {
            return Peer {
                https: tls,
                ip: peer,
            };
        };
        let mut client = peer;
        let entries: Vec<&str> = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        for entry in entries.iter().rev() {
            // An entry that is no address ends the chain: the hop that
            // wrote it is the last one known.
            let Some(ip) = parse_hop(entry.trim()) else {
                break;
            };
            client = ip;
            if !trusted(ip, proxies) {
                break;
            }
        }
        let https = tls
            || req
                .headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
        Peer {
            https,
            ip: Some(client),
        }
    }

    /// The network this client counts in for login limits: its IPv4
    /// address, or the /64 of its IPv6 address (one host usually holds a
    /// whole /64, so counting single IPv6 addresses would let one client
    /// count as billions).
    pub fn network(&self) -> String {
        match self.ip {
            Some(IpAddr::V4(v4)) => v4.to_string(),
            Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            None => "local".to_string(),
        }
    }
}

/// An `X-Forwarded-For` entry: an address, with or without a port.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(peer: &str, xff: &[&str], proto: Option<&str>) -> Peer {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for v in xff {
            req.append_header("x-forwarded-for", *v).unwrap();
        }
        if let Some(p) = proto {
            req.insert_header("x-forwarded-proto", p).unwrap();
        }
        let proxies: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:f::/48".parse().unwrap(),
        ];
        Peer::forwarded(&req, Some(peer.parse().unwrap()), false, &proxies)
    }

    #[test]
    fn behind_trusted_proxies_the_client_is_the_rightmost_untrusted_hop() {
        let p = through(
            "10.0.0.2",
            &["6.6.6.6, 203.0.113.7, 10.0.0.9"],
            Some("https"),
        );
        assert_eq!(p.ip, Some("203.0.113.7".parse().unwrap()));
        assert!(p.https);
        let p = through("10.0.0.2", &["6.6.6.6", "203.0.113.7:4242"], None);
        assert_eq!(p.ip, Some("203.0.113.7".parse().unwrap()));
        assert!(!p.https);
        // Every hop trusted: the leftmost one.
        let p = through("10.0.0.2", &["10.1.1.1, 10.2.2.2"], None);
        assert_eq!(p.ip, Some("10.1.1.1".parse().unwrap()));
        // Garbage ends the chain at the last known hop.
        let p = through("10.0.0.2", &["6.6.6.6, junk, 10.3.3.3"], None);
        assert_eq!(p.ip, Some("10.3.3.3".parse().unwrap()));
        // No header: the balancer itself.
        let p = through("2001:db8:f::1", &[], None);
        assert_eq!(p.ip, Some("2001:db8:f::1".parse().unwrap()));
    }

    #[test]
    fn an_untrusted_peer_cannot_choose_its_address_or_scheme() {
        let p = through("192.0.2.50", &["203.0.113.7"], Some("https"));
        assert_eq!(p.ip, Some("192.0.2.50".parse().unwrap()));
        assert!(!p.https);
    }

    fn peer(ip: &str) -> Peer {
        Peer {
            https: false,
            ip: Some(ip.parse().unwrap()),
        }
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(peer("10.1.2.3").network(), "10.1.2.3");
        assert_eq!(
            peer("2001:db8:1:2:aaaa::1").network(),
            peer("2001:db8:1:2:ffff::9").network()
        );
        assert_ne!(
            peer("2001:db8:1:2::1").network(),
            peer("2001:db8:1:3::1").network()
        );
        assert_eq!(peer("::ffff:10.1.2.3").network(), "10.1.2.3");
    }
}
