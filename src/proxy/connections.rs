//! Client connections: how many are open, a cap on them, and a deadline
//! for each request header.
//!
//! `ProxyHttp` has no per-connection hook, but pingora hands every accepted
//! connection to `ServerApp::process_new`. [`GuardConnections`] wraps that
//! call: it wraps the stream in a [`Guarded`] stream, which counts the
//! connection while it lives (an exact gauge, whatever the keep-alive loop
//! does) and refuses it when the cap is reached.
//!
//! pingora only bounds each *read* of a request header (60 s), so a client
//! sending one byte a minute holds a connection forever (slowloris). The
//! guarded stream gives the *whole* header a deadline: it starts at the
//! connection's start, or at the first byte of each later request, and ends
//! when the blank line that closes the header has been read. A client still
//! inside its header at the deadline gets its reads failed, and pingora
//! closes the connection. pingora serves the later requests of an HTTP/1
//! keep-alive connection inside that one `process_new` call, so the end of
//! each request is signalled by [`request_done`] from the proxy's logging
//! hook. HTTP/2 connections frame their headers and are left to pingora's
//! own limits.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use std::os::unix::io::AsRawFd;

use pingora::apps::ServerApp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::{SslDigest, TlsRef};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::proxy_protocol::{self, ProxyProtocolError};

/// What the guard enforces.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Most connections open at once.
    pub max_open: usize,
    /// Time for a whole request header.
    pub header_timeout: Duration,
}

/// Wraps the proxy app with the connection cap, gauge and header deadline.
pub struct GuardConnections<A> {
    inner: Arc<A>,
    limits: ConnectionLimits,
    open: IntGauge,
    refused: IntCounter,
    timeouts: IntCounter,
    /// Told when the listeners have closed (shutdown).
    drain: Option<Arc<crate::drain::Drain>>,
    /// Plain-HTTP connections start with a PROXY protocol header from one
    /// of these proxies.
    proxy_protocol: Option<Arc<Vec<ipnet::IpNet>>>,
}

impl<A> GuardConnections<A> {
    /// Tell `drain` when the listeners close.
    pub fn with_drain(mut self, drain: Arc<crate::drain::Drain>) -> Self {
        self.drain = Some(drain);
        self
    }

    /// [`Self::with_proxy_protocol`] when `on`.
    pub fn with_proxy_protocol_if(self, on: bool, trusted: Arc<Vec<ipnet::IpNet>>) -> Self {
        if on {
            self.with_proxy_protocol(trusted)
        } else {
            self
        }
    }

    /// Read a PROXY protocol header from `trusted` peers on every plain
    /// HTTP connection (TLS listeners read it before their handshake).
    pub fn with_proxy_protocol(mut self, trusted: Arc<Vec<ipnet::IpNet>>) -> Self {
        self.proxy_protocol = Some(trusted);
        self
    }

    /// The client address the PROXY header of a plain connection states,
    /// put on the stream as its peer; `Err` drops the connection.
    async fn read_proxy_header(&self, stream: &mut Stream) -> Result<(), ProxyProtocolError> {
        let Some(trusted) = &self.proxy_protocol else {
            return Ok(());
        };
        if stream.get_ssl_digest().is_some() {
            return Ok(());
        }
        let peer = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().cloned())
            .and_then(|a| a.as_inet().map(|a| a.ip()));
        let client =
            proxy_protocol::accept(stream, peer, trusted, self.limits.header_timeout).await?;
        let fd = stream
            .as_any()
            .downcast_ref::<L4Stream>()
            .map(|s| s.as_raw_fd());
        if let (Some(client), Some(fd)) = (client, fd) {
            stream.set_socket_digest(proxy_protocol::digest_with_peer(fd, client));
        }
        Ok(())
    }

    pub fn new(
        inner: A,
        limits: ConnectionLimits,
        open: IntGauge,
        refused: IntCounter,
        timeouts: IntCounter,
    ) -> Self {
        GuardConnections {
            inner: Arc::new(inner),
            limits,
            open,
            refused,
            timeouts,
            drain: None,
            proxy_protocol: None,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for GuardConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let stream = match stream.as_any().downcast_ref::<Guarded>() {
            // A connection coming back for its next request (pingora 0.9
            // keeps HTTP/1 keep-alive inside one call; see `request_done`).
            Some(g) => {
                g.phase.store(IDLE, Ordering::Release);
                stream
            }
            None => {
                if self.open.get() >= self.limits.max_open as i64 {
                    self.refused.inc();
                    // Dropping the stream closes the connection.
                    return None;
                }
                let mut stream = stream;
                if let Err(e) = self.read_proxy_header(&mut stream).await {
                    tracing::debug!(error = %e, "PROXY protocol header refused; connection dropped");
                    self.refused.inc();
                    return None;
                }
                Box::new(Guarded::new(stream, self))
            }
        };
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
        if let Some(d) = &self.drain {
            d.listeners_closed();
        }
    }
}

/// A request on `session` is over. If its HTTP/1 connection stays open for
/// another, the next header's deadline is armed here: what is left of this
/// request's body is read first (pingora drains it before reuse anyway, and
/// a leftover body byte must not start the next header's clock), then the
/// stream waits for the next request's first byte, which starts it.
/// Without this, only a connection's first request had a header deadline.
pub async fn request_done(session: &mut ServerSession) {
    let guarded = |s: &ServerSession| {
        s.stream()
            .is_some_and(|st| st.as_any().downcast_ref::<Guarded>().is_some())
    };
    if session.get_keepalive().is_none() || !guarded(session) {
        return;
    }
    if !session.is_body_done() && session.drain_request_body().await.is_err() {
        // The connection is not reused after a failed drain.
        return;
    }
    if let Some(g) = session
        .stream()
        .and_then(|st| st.as_any().downcast_ref::<Guarded>())
    {
        g.phase.store(IDLE, Ordering::Release);
    }
}

/// Waiting for a request's first byte (no deadline: pingora's keep-alive
/// timeout applies).
const IDLE: u8 = 0;
/// Inside a request header: the deadline runs.
const HEADER: u8 = 1;
/// The header is complete: body and response, no deadline.
const DONE: u8 = 2;

/// A client stream with a header deadline, counted while open.
pub struct Guarded {
    inner: Stream,
    /// Reset to [`IDLE`] by `process_new` before each later request.
    phase: AtomicU8,
    deadline: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
    /// The last bytes read, to find a header's end split across reads.
    tail: [u8; 3],
    timeouts: IntCounter,
    open: IntGauge,
}

impl Guarded {
    fn new<A>(inner: Stream, guard: &GuardConnections<A>) -> Guarded {
        guard.open.inc();
        // HTTP/2 frames its headers: no byte scanning there.
        let h2 = inner.selected_alpn_proto() == Some(ALPN::H2);
        let timeout = guard.limits.header_timeout;
        Guarded {
            inner,
            phase: AtomicU8::new(if h2 { DONE } else { HEADER }),
            deadline: (!h2).then(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout))),
            timeout,
            tail: [0; 3],
            timeouts: guard.timeouts.clone(),
            open: guard.open.clone(),
        }
    }

    /// Track the header's progress over `bytes` just read.
    fn saw(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let phase = self.phase.load(Ordering::Acquire);
        if phase == IDLE {
            self.phase.store(HEADER, Ordering::Release);
            self.deadline = Some(Box::pin(tokio::time::sleep_until(
                Instant::now() + self.timeout,
            )));
            self.tail = [0; 3];
        } else if phase == DONE {
            return;
        }
        if header_ends(&self.tail, bytes) {
            self.phase.store(DONE, Ordering::Release);
            self.deadline = None;
        }
        let n = bytes.len().min(3);
        self.tail.rotate_left(n);
        self.tail[3 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    }
}

/// Whether `tail` (earlier bytes) followed by `bytes` holds the blank line
/// that ends a header (`\r\n\r\n`, or `\n\n`, which parsers also accept).
fn header_ends(tail: &[u8; 3], bytes: &[u8]) -> bool {
    let head = bytes.len().min(3);
    let mut joined = [0u8; 6];
    joined[..3].copy_from_slice(tail);
    joined[3..3 + head].copy_from_slice(&bytes[..head]);
    let seam = &joined[..3 + head];
    let ends =
        |w: &[u8]| w.windows(4).any(|x| x == b"\r\n\r\n") || w.windows(2).any(|x| x == b"\n\n");
    ends(seam) || ends(bytes)
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl fmt::Debug for Guarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .field("phase", &self.phase.load(Ordering::Relaxed))
            .finish()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.phase.load(Ordering::Acquire) == HEADER {
            if let Some(d) = this.deadline.as_mut() {
                if d.as_mut().poll(cx).is_ready() {
                    this.deadline = None;
                    this.phase.store(DONE, Ordering::Release);
                    this.timeouts.inc();
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request header took longer than server.header_timeout_ms",
                    )));
                }
            }
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let filled = buf.filled();
            let new = filled[before..].to_vec();
            this.saw(&new);
        }
        polled
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for Guarded {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for Guarded {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for Guarded {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.inner.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for Guarded {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for Guarded {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for Guarded {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest)
    }
}

#[async_trait]
impl Peek for Guarded {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_end_is_found_across_reads_and_in_either_line_ending() {
        assert!(header_ends(&[0; 3], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(header_ends(b"a\r\n", b"\r\nbody"));
        assert!(header_ends(b"\r\n\r", b"\n"));
        assert!(header_ends(&[0, 0, b'\n'], b"\n"));
        assert!(!header_ends(&[0; 3], b"GET / HTTP/1.1\r\nHost: a\r\n"));
        assert!(!header_ends(b"\r\n\r", b"x"));
    }

    fn guard() -> GuardConnections<()> {
        GuardConnections::new(
            (),
            ConnectionLimits {
                max_open: 8,
                header_timeout: Duration::from_millis(300),
            },
            IntGauge::new("open", "open").unwrap(),
            IntCounter::new("refused", "refused").unwrap(),
            IntCounter::new("timeouts", "timeouts").unwrap(),
        )
    }

    fn phase(s: &ServerSession) -> u8 {
        let g = s.stream().unwrap().as_any().downcast_ref::<Guarded>();
        g.unwrap().phase.load(Ordering::Acquire)
    }

    #[tokio::test]
    async fn after_a_keep_alive_request_the_next_header_is_timed_from_its_first_byte() {
        use tokio::io::AsyncWriteExt;
        let guard = guard();
        let (mut client, server) = tokio::io::duplex(4096);
        let stream: Stream = Box::new(Guarded::new(Box::new(server), &guard));
        let mut session = ServerSession::new_http1(stream);
        // A POST whose body the gateway never read (say, refused at once).
        client
            .write_all(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap();
        assert!(session.read_request().await.unwrap());
        assert_eq!(phase(&session), DONE);
        session.set_keepalive(Some(60));
        request_done(&mut session).await;
        // The body was read, and the next byte starts a new deadline.
        assert!(session.is_body_done());
        assert_eq!(phase(&session), IDLE);

        // A connection that closes after this request keeps no deadline.
        let (mut client, server) = tokio::io::duplex(4096);
        let stream: Stream = Box::new(Guarded::new(Box::new(server), &guard));
        let mut session = ServerSession::new_http1(stream);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .unwrap();
        assert!(session.read_request().await.unwrap());
        session.set_keepalive(None);
        request_done(&mut session).await;
        assert_eq!(phase(&session), DONE);
        assert_eq!(guard.open.get(), 2);
    }
}
