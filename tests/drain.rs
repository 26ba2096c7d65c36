//! End-to-end: SIGTERM drains the real binary. Requests in flight finish
//! and say `Connection: close`, `/readyz` fails at once, new connections are
//! refused once the listeners close, and the process exits as soon as the
//! last request is done, well before `shutdown_timeout_seconds`.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long the upstream takes to answer.
const SLOW: Duration = Duration::from_millis(1500);

/// An upstream that counts the requests it received and answers each after
/// [`SLOW`], so a test knows when requests are in flight at the gateway.
async fn slow_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    counter.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(SLOW).await;
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\ndone";
                    if s.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Send one GET on `s` and read its whole answer (status line and headers
/// lower-cased, and the body), by its content length.
async fn exchange(s: &mut TcpStream, path: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: drain.test\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned();
                return (status, head, body);
            }
        }
        let n = s.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "connection closed before the answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn sigterm_lets_requests_in_flight_finish_with_connection_close_then_exits() {
    let (upstream, seen) = slow_upstream().await;
    let addrs = free_addrs(2);
    let (http, ops) = (addrs[0], addrs[1]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("guise.yaml");
    std::fs::write(
        &config,
        format!(
            "listeners:\n  http: {http}\noperations:\n  address: {ops}\nserver:\n  grace_period_seconds: 1\n  shutdown_timeout_seconds: 20\nupstream:\n  address: {upstream}\nauth:\n  require_login: false\nlogging:\n  level: info\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(guise_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("GUISE_SIGNING_KEY", KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_listening(http).await;
    wait_listening(ops).await;

    // Four slow requests, each on a keep-alive connection of its own.
    let mut flights = Vec::new();
    for _ in 0..4 {
        flights.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(http).await.unwrap();
            exchange(&mut s, "/slow").await
        }));
    }
    eventually(Duration::from_secs(10), "four requests in flight", || {
        let seen = seen.clone();
        async move { (seen.load(Ordering::SeqCst) == 4).then_some(()) }
    })
    .await;

    let signalled = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // Readiness fails at once, while the listeners are still open (grace).
    eventually(
        Duration::from_secs(2),
        "/readyz to say draining",
        || async {
            let r = client()
                .get(format!("http://{ops}/readyz"))
                .send()
                .await
                .ok()?;
            (r.status() == 503).then_some(())
        },
    )
    .await;

    // Every request in flight is answered, and told the connection closes.
    for f in flights {
        let (status, head, body) = f.await.unwrap();
        assert_eq!(status, 200, "{head}");
        assert_eq!(body, "done");
        assert!(head.contains("connection: close"), "{head}");
    }

    // Once the listeners closed, new connections are refused, and the
    // process ends on its own well before the 20 s timeout.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not exit after draining"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
    let took = signalled.elapsed();
    assert!(
        took >= SLOW / 2,
        "exited before the requests finished: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "drain took {took:?}");
    assert!(TcpStream::connect(http).await.is_err(), "still accepting");
    let mut log = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("drained"), "{log}");
}
