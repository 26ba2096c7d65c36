//! Facts about the client's connection that several stages need: whether
//! it came over TLS, and the client's address. Read once per request.

use std::net::IpAddr;

use pingora::proxy::Session;

/// The client side of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The connection is TLS (cookies get `Secure` and `__Host-`).
    pub https: bool,
    /// The client's address; `None` for a Unix socket.
    pub ip: Option<IpAddr>,
}

impl Peer {
    /// The peer of `s`'s connection.
    pub fn of(s: &Session) -> Peer {
        Peer {
            https: s.digest().and_then(|d| d.ssl_digest.as_ref()).is_some(),
            ip: s.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
