//! Slow and surplus clients (class 11): a request header that takes longer
//! than `server.header_timeout_ms` ends the connection, connections beyond
//! `server.max_client_connections` are closed at once, both are counted,
//! and the gateway serves on afterwards.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::common::*;
use crate::support::*;
use crate::wire::*;

/// Long enough for any deadline under test to pass, short of pingora's own.
const CLOSE_WITHIN: Duration = Duration::from_secs(8);

/// Write `bytes` one at a time, one every 50 ms, until the gateway stops
/// taking them; the slow client is the attack itself.
fn trickle(mut w: tokio::net::tcp::OwnedWriteHalf, bytes: Vec<u8>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        for b in bytes {
            pace.tick().await;
            if w.write_all(&[b]).await.is_err() {
                return;
            }
        }
    })
}

fn assert_not_served(read: &[u8], what: &str) {
    assert!(
        !read.starts_with(b"HTTP/1.1 2"),
        "{what}: served: {:?}",
        String::from_utf8_lossy(read)
    );
}

#[tokio::test]
async fn a_client_trickling_its_header_is_disconnected_and_counted() {
    let f = Fixture::start_with(&with_server(&open_yaml(""), "  header_timeout_ms: 300\n")).await;
    let h = host(&f);
    let slow_header = format!(
        "GET /api/echo/slow HTTP/1.1\r\nHost: {h}\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(400)
    );

    // Byte by byte from the first byte.
    let (mut r, w) = TcpStream::connect(f.http).await.unwrap().into_split();
    let writer = trickle(w, slow_header.clone().into_bytes());
    let read = closed_within(&mut r, CLOSE_WITHIN)
        .await
        .expect("trickling client disconnected");
    assert_not_served(&read, "byte by byte");
    writer.abort();

    // The request line at once, then nothing.
    let mut s = TcpStream::connect(f.http).await.unwrap();
    s.write_all(format!("GET /api/echo/x HTTP/1.1\r\nHost: {h}\r\n").as_bytes())
        .await
        .unwrap();
    let read = closed_within(&mut s, CLOSE_WITHIN)
        .await
        .expect("stalled header disconnected");
    assert_not_served(&read, "stalled");

    // Connected, and not a byte.
    let mut s = TcpStream::connect(f.http).await.unwrap();
    let read = closed_within(&mut s, CLOSE_WITHIN)
        .await
        .expect("silent client disconnected");
    assert_not_served(&read, "silent");

    // A keep-alive connection: the first request is served, the second
    // one trickles.
    let mut s = TcpStream::connect(f.http).await.unwrap();
    s.write_all(format!("GET /api/echo/first HTTP/1.1\r\nHost: {h}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let first = read_answer(&mut s).await.expect("first request answered");
    assert_eq!(first.status, 200);
    let (mut r, w) = s.into_split();
    let writer = trickle(w, slow_header.clone().into_bytes());
    let read = closed_within(&mut r, CLOSE_WITHIN)
        .await
        .expect("second, trickled request disconnected");
    assert_not_served(&read, "keep-alive");
    writer.abort();

    // The same after a POST whose body holds blank lines: the body must
    // neither start nor end the next header's clock.
    let mut s = TcpStream::connect(f.http).await.unwrap();
    let post = format!(
        "POST /api/echo/post HTTP/1.1\r\nHost: {h}\r\nContent-Length: 8\r\n\r\n\r\n\r\n\r\n\r\n"
    );
    s.write_all(post.as_bytes()).await.unwrap();
    let first = read_answer(&mut s).await.expect("POST answered");
    assert_eq!(first.status, 200, "{}", first.text());
    let (mut r, w) = s.into_split();
    let writer = trickle(w, slow_header.into_bytes());
    let read = closed_within(&mut r, CLOSE_WITHIN)
        .await
        .expect("trickled request after a POST disconnected");
    assert_not_served(&read, "after a POST");
    writer.abort();

    eventually(
        Duration::from_secs(5),
        "header timeouts counted",
        || async { (f.metric("guise_request_header_timeouts_total").await >= 5.0).then_some(()) },
    )
    .await;
    // A prompt client is served as ever.
    let a = exchange(f.http, &request("GET", b"/api/echo/after", &h, &[])).await;
    assert_eq!(a.status, 200, "{}", a.text());
}

#[tokio::test]
async fn a_connection_over_the_cap_is_closed_at_once_and_counted() {
    let f = Fixture::start_with(&with_server(
        &open_yaml(""),
        "  max_client_connections: 2\n",
    ))
    .await;
    let h = host(&f);
    let mut first = TcpStream::connect(f.http).await.unwrap();
    let second = TcpStream::connect(f.http).await.unwrap();
    eventually(Duration::from_secs(5), "two open connections", || async {
        (f.metric("guise_open_connections").await == 2.0).then_some(())
    })
    .await;

    for i in 0..3 {
        let mut third = TcpStream::connect(f.http).await.unwrap();
        // The request may or may not be written before the close.
        let _ = third
            .write_all(request("GET", b"/api/echo/third", &h, &[]).as_slice())
            .await;
        let read = closed_within(&mut third, CLOSE_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("connection {i} over the cap: {e}"));
        assert!(
            !read.starts_with(b"HTTP/"),
            "over the cap yet answered: {:?}",
            String::from_utf8_lossy(&read)
        );
    }
    eventually(Duration::from_secs(5), "refusals counted", || async {
        (f.metric("guise_connections_refused_total").await >= 3.0).then_some(())
    })
    .await;

    // The connections within the cap are served.
    first
        .write_all(&request(
            "GET",
            b"/api/echo/first",
            &h,
            &[b"Connection: keep-alive"],
        ))
        .await
        .unwrap();
    let a = read_answer(&mut first)
        .await
        .expect("answer within the cap");
    assert_eq!(a.status, 200, "{}", a.text());

    // Once they close, new clients are served again.
    drop(first);
    drop(second);
    let a = eventually(
        Duration::from_secs(10),
        "service after the cap frees",
        || async {
            try_exchange(f.http, &request("GET", b"/api/echo/later", &h, &[]))
                .await
                .ok()
        },
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
}
