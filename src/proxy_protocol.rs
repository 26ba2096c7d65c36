//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in
//! front of guise states the client's address before the connection's
//! first byte, so limits, logs and `X-Forwarded-For` see the real client
//! rather than the balancer.
//!
//! Turned on per listener. Only a peer in `server.trusted_proxies` may
//! speak it: a connection from anywhere else is refused, so no client can
//! claim another address. The header is read byte by byte up to its end and
//! no further, so the bytes after it reach HTTP (or TLS) untouched; the
//! `ppp` crate parses it. The address found becomes the connection's peer
//! address, which every later stage reads ([`crate::peer`]).

use std::net::{IpAddr, SocketAddr};
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 header's first 12 bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 header (the spec's 107 bytes).
const V1_MAX: usize = 107;
/// Longest v2 header guise reads: the fixed 16 bytes and the addresses and
/// TLVs a balancer adds (the spec allows 64 KiB; balancers send far less).
const V2_MAX: usize = 16 + 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyProtocolError {
    #[error("the peer {0} is not in server.trusted_proxies, so it may not state a client address")]
    Untrusted(IpAddr),
    #[error("the connection did not start with a PROXY protocol header")]
    Missing,
    #[error("the PROXY protocol header is malformed: {0}")]
    Malformed(String),
    #[error("the PROXY protocol header is longer than {V2_MAX} bytes")]
    TooLong,
    #[error("the PROXY protocol header did not arrive in time")]
    Timeout,
    #[error("reading the PROXY protocol header failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether `ip` is one of the trusted proxies.
pub fn trusted(ip: IpAddr, proxies: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&ip))
}

/// Read the PROXY header at the start of `s`; the client address it states
/// (`None` for a `LOCAL` or `UNKNOWN` header: the connection is the
/// balancer's own, such as a health check).
pub async fn read_header<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<SocketAddr>, ProxyProtocolError> {
    let mut buf = vec![0u8; 5];
    s.read_exact(&mut buf).await?;
    if buf == b"PROXY" {
        // v1: a text line ending in CRLF.
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(ProxyProtocolError::TooLong);
            }
            buf.push(s.read_u8().await?);
        }
    } else if V2_SIGNATURE.starts_with(&buf) {
        buf.resize(16, 0);
        s.read_exact(&mut buf[5..]).await?;
        if &buf[..12] != V2_SIGNATURE {
            return Err(ProxyProtocolError::Missing);
        }
        let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if 16 + len > V2_MAX {
            return Err(ProxyProtocolError::TooLong);
        }
        buf.resize(16 + len, 0);
        s.read_exact(&mut buf[16..]).await?;
    } else {
        return Err(ProxyProtocolError::Missing);
    }
    parse(&buf)
}

/// The client address a whole PROXY header states.
pub fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyProtocolError> {
    use ppp::v1::Addresses as V1;
    use ppp::v2::{Addresses as V2, Command};
    match ppp::HeaderResult::parse(header) {
        ppp::HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            V1::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            V1::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            V1::Unknown => None,
        }),
        ppp::HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (Command::Local, _) => None,
            (Command::Proxy, V2::IPv4(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (Command::Proxy, V2::IPv6(a)) => {
                Some(SocketAddr::from((a.source_address, a.source_port)))
            }
            (Command::Proxy, _) => None,
        }),
        ppp::HeaderResult::V1(Err(e)) => Err(ProxyProtocolError::Malformed(e.to_string())),
        ppp::HeaderResult::V2(Err(e)) => Err(ProxyProtocolError::Malformed(e.to_string())),
    }
}

/// A socket digest for the connection on `fd` whose peer is `client`.
pub fn digest_with_peer(fd: std::os::unix::io::RawFd, client: SocketAddr) -> SocketDigest {
    let digest = SocketDigest::from_raw_fd(fd);
    let _ = digest.peer_addr.set(Some(PeerAddr::Inet(client)));
    digest
}

/// Check that `peer` may speak the protocol, read the header from `s` within
/// `timeout`, and return the client address it states.
pub async fn accept<S: AsyncRead + Unpin>(
    s: &mut S,
    peer: Option<IpAddr>,
    proxies: &[IpNet],
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyProtocolError> {
    match peer {
        Some(ip) if trusted(ip, proxies) => {}
        Some(ip) => return Err(ProxyProtocolError::Untrusted(ip)),
        None => return Err(ProxyProtocolError::Missing),
    }
    tokio::time::timeout(timeout, read_header(s))
        .await
        .map_err(|_| ProxyProtocolError::Timeout)?
}

/// Reads the PROXY header before the TLS handshake of an HTTPS listener.
pub struct BeforeTls {
    pub trusted_proxies: Arc<Vec<IpNet>>,
    pub timeout: Duration,
}

#[async_trait]
impl PreTlsProcess for BeforeTls {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned())
            .and_then(|a| a.as_inet().map(|a| a.ip()));
        match accept(stream, peer, &self.trusted_proxies, self.timeout).await {
            Ok(Some(client)) => {
                let fd = stream.as_raw_fd();
                stream.set_socket_digest(digest_with_peer(fd, client));
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, "PROXY protocol header refused; connection dropped");
                Err(pingora::Error::explain(
                    pingora::ErrorType::ConnectError,
                    e.to_string(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyProtocolError>, Vec<u8>) {
        let mut cursor = std::io::Cursor::new(bytes.to_vec());
        let r = read_header(&mut cursor).await;
        let pos = cursor.position() as usize;
        (r, bytes[pos..].to_vec())
    }

    #[tokio::test]
    async fn a_v1_header_names_the_client_and_leaves_the_request_untouched() {
        let (r, rest) =
            read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n").await;
        assert_eq!(r.unwrap(), Some("203.0.113.7:51234".parse().unwrap()));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");
        let (r, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n").await;
        assert_eq!(r.unwrap(), Some("[2001:db8::7]:51234".parse().unwrap()));
        let (r, rest) = read(b"PROXY UNKNOWN\r\nX").await;
        assert_eq!(r.unwrap(), None);
        assert_eq!(rest, b"X");
    }

    #[tokio::test]
    async fn a_v2_header_names_the_client_and_leaves_the_request_untouched() {
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (
                "198.51.100.9:40000".parse::<SocketAddr>().unwrap(),
                "10.0.0.1:443".parse::<SocketAddr>().unwrap(),
            ),
        )
        .build()
        .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (r, rest) = read(&bytes).await;
        assert_eq!(r.unwrap(), Some("198.51.100.9:40000".parse().unwrap()));
        assert_eq!(
            rest, b"\x16\x03\x01",
            "the TLS hello is left for the handshake"
        );
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP4 not-an-ip 10.0.0.1 1 2\r\n",
            b"\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x00",
        ] {
            assert!(
                read(bad).await.0.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY ".to_vec(), vec![b'x'; 200]].concat();
        assert!(matches!(
            read(&long).await.0,
            Err(ProxyProtocolError::TooLong)
        ));
    }

    #[tokio::test]
    async fn only_trusted_peers_may_speak_it() {
        let proxies: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut s = std::io::Cursor::new(b"PROXY TCP4 1.2.3.4 10.0.0.1 1 2\r\n".to_vec());
        let r = accept(
            &mut s,
            Some("192.0.2.1".parse().unwrap()),
            &proxies,
            Duration::from_secs(1),
        )
        .await;
        assert!(matches!(r, Err(ProxyProtocolError::Untrusted(_))));
        let r = accept(
            &mut s,
            Some("10.1.2.3".parse().unwrap()),
            &proxies,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(r.unwrap(), Some("1.2.3.4:1".parse().unwrap()));
        assert!(trusted("::ffff:10.0.0.5".parse().unwrap(), &proxies));
    }
}
