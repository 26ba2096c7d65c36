//! Raw HTTP/1.1 over a loopback socket: the exact bytes a hostile client
//! writes, and the answer parsed by hand (no client library to normalise
//! either side).
//!
//! Every exchange must end in a status line: a connection the gateway
//! drops without one is how a panic in a pingora task shows, so
//! [`exchange`] fails the test on it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long one exchange may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// A parsed HTTP/1.1 answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// Header names lower-cased, in order, repeated ones kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; fails the test with the body if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text()))
    }
}

/// A request: `METHOD target HTTP/1.1`, `Host`, the raw header lines
/// given, and `Connection: close` unless a header line names Connection.
pub fn request(method: &str, target: &[u8], host: &str, headers: &[&[u8]]) -> Vec<u8> {
    with_body(method, target, host, headers, None)
}

/// [`request`] with a body and its `Content-Length`.
pub fn with_body(
    method: &str,
    target: &[u8],
    host: &str,
    headers: &[&[u8]],
    body: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if !host.is_empty() {
        out.extend_from_slice(format!("Host: {host}\r\n").as_bytes());
    }
    let mut connection = false;
    for h in headers {
        connection |= h.len() >= 11 && h[..11].eq_ignore_ascii_case(b"connection:");
        out.extend_from_slice(h);
        out.extend_from_slice(b"\r\n");
    }
    if !connection {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if let Some(b) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Send `bytes` on a fresh connection to `addr` and read the answer.
pub async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let s = TcpStream::connect(addr).await.expect("connect to gateway");
    exchange_on(s, bytes).await
}

/// [`exchange`] from the loopback address `local` (any 127.x.y.z), so the
/// gateway sees a client of its own.
pub async fn exchange_from(local: IpAddr, addr: SocketAddr, bytes: &[u8]) -> Answer {
    exchange_on(connect_from(local, addr).await, bytes).await
}

/// A connection to `addr` from `local`.
pub async fn connect_from(local: IpAddr, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(local, 0))
        .unwrap_or_else(|e| panic!("bind {local}: {e}"));
    sock.connect(addr).await.expect("connect to gateway")
}

/// Send `bytes` on `s` and read one answer.
pub async fn exchange_on(mut s: TcpStream, bytes: &[u8]) -> Answer {
    s.write_all(bytes).await.expect("write request");
    read_answer_to(&mut s, bytes.starts_with(b"HEAD "))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no complete answer (a dropped connection is how a panic shows): {e}; request {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )
        })
}

/// Read one whole answer from `s`.
pub async fn read_answer(s: &mut TcpStream) -> Result<Answer, String> {
    read_answer_to(s, false).await
}

/// Read one whole answer from `s`, to a HEAD request (no body) or not.
pub async fn read_answer_to(s: &mut TcpStream, head: bool) -> Result<Answer, String> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(a) = parse(&buf, false, head)? {
            return Ok(a);
        }
        let n = tokio::time::timeout(DEADLINE, s.read(&mut chunk))
            .await
            .map_err(|_| format!("timed out after {:?}", String::from_utf8_lossy(&buf)))?
            .map_err(|e| format!("{e} after {:?}", String::from_utf8_lossy(&buf)))?;
        if n == 0 {
            return parse(&buf, true, head)?.ok_or_else(|| {
                format!(
                    "connection closed after {:?}",
                    String::from_utf8_lossy(&buf)
                )
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read from `s` until the gateway closes it (EOF or reset), within
/// `within`; what was read before the close, or `Err` if it stayed open.
pub async fn closed_within(
    s: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) => {
                return Err(format!(
                    "still open after {within:?}; read {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(buf),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// [`exchange`] that reports a missing answer instead of failing.
pub async fn try_exchange(addr: SocketAddr, bytes: &[u8]) -> Result<Answer, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.write_all(bytes).await.map_err(|e| e.to_string())?;
    read_answer(&mut s).await
}

fn parse(buf: &[u8], eof: bool, head_only: bool) -> Result<Option<Answer>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not a status line: {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    // An interim answer (100 Continue, 103 Early Hints) precedes the final one.
    if (100..200).contains(&status) && status != 101 {
        return parse(rest, eof, head_only);
    }
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if head_only || status == 204 || status == 304 || status == 101 {
        Some(Vec::new())
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("bad length {len}"))?;
        (rest.len() >= len).then(|| rest[..len].to_vec())
    } else {
        eof.then(|| rest.to_vec())
    };
    Ok(body.map(|body| Answer {
        status,
        headers,
        body,
    }))
}

/// A chunked body, once its last chunk has arrived.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if rest.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
