//! Behind a load balancer (issue 10): the client address and scheme come
//! from trusted proxies only, by `X-Forwarded-For`/`-Proto` or by the PROXY
//! protocol, and an untrusted peer cannot choose its own.

use std::net::IpAddr;

use serde_json::json;

use crate::common::*;
use crate::support::*;
use crate::wire::*;

/// The load balancer's address on loopback.
const LB: &str = "127.0.0.2";
/// A client that talks to the gateway directly.
const STRANGER: &str = "127.0.0.3";

fn lb() -> IpAddr {
    LB.parse().unwrap()
}

fn stranger() -> IpAddr {
    STRANGER.parse().unwrap()
}

fn echo(forwarded: &[&[u8]]) -> Vec<u8> {
    request("GET", b"/api/echo/who", "gw.test", forwarded)
}

#[tokio::test]
async fn forwarded_for_is_believed_from_a_trusted_proxy_only() {
    let f = Fixture::start_with(&with_server(
        &open_yaml(""),
        &format!("  trusted_proxies: [{LB}/32]\n"),
    ))
    .await;
    // Through the balancer: the rightmost hop it did not add itself.
    let a = exchange_from(
        lb(),
        f.http,
        &echo(&[
            b"X-Forwarded-For: 6.6.6.6, 203.0.113.9",
            b"X-Forwarded-Proto: https",
        ]),
    )
    .await;
    let v = a.json();
    assert_eq!(echoed(&v, "x-forwarded-for"), ["203.0.113.9"], "{v}");
    assert_eq!(echoed(&v, "x-forwarded-proto"), ["https"]);

    // Straight in, claiming the same: the TCP peer it is.
    let a = exchange_from(
        stranger(),
        f.http,
        &echo(&[b"X-Forwarded-For: 203.0.113.9", b"X-Forwarded-Proto: https"]),
    )
    .await;
    let v = a.json();
    assert_eq!(echoed(&v, "x-forwarded-for"), [STRANGER], "{v}");
    assert_eq!(echoed(&v, "x-forwarded-proto"), ["http"]);
}

#[tokio::test]
async fn behind_a_balancer_login_limits_count_each_real_client() {
    let yaml = with_server(
        &session_yaml("auth:\n  max_attempts_per_client: 3\n"),
        &format!("  trusted_proxies: [{LB}/32]\n"),
    );
    let f = Fixture::start_with(&yaml).await;
    let login = |client: &str, password: &str| {
        let body = json!({"username": "alice@test.example", "password": password}).to_string();
        let xff = format!("X-Forwarded-For: {client}");
        with_body(
            "POST",
            b"/_guise/login",
            "gw.test",
            &[b"Content-Type: application/json", xff.as_bytes()],
            Some(body.as_bytes()),
        )
    };
    // Client A fails until limited.
    let mut last = 0;
    for _ in 0..4 {
        last = exchange_from(lb(), f.http, &login("198.51.100.1", "wrong"))
            .await
            .status;
    }
    assert_eq!(last, 429, "client A is over its limit");
    // Client B, through the same balancer, is not.
    let b = exchange_from(lb(), f.http, &login("198.51.100.2", PW)).await;
    assert_eq!(b.status, 200, "{}", b.text());
    // And successful logins do not use up a client's count.
    for _ in 0..5 {
        let ok = exchange_from(lb(), f.http, &login("198.51.100.3", PW)).await;
        assert_eq!(ok.status, 200, "{}", ok.text());
    }
}

#[tokio::test]
async fn the_proxy_protocol_names_the_client_for_trusted_balancers_only() {
    let yaml = with_server(&open_yaml(""), &format!("  trusted_proxies: [{LB}/32]\n")).replace(
        "  http: {HTTP}\n",
        "  http: {HTTP}\n  http_proxy_protocol: true\n",
    );
    let f = Fixture::start_with(&yaml).await;

    // v1, from the balancer.
    let mut bytes = b"PROXY TCP4 198.51.100.7 10.0.0.1 51234 80\r\n".to_vec();
    bytes.extend(echo(&[b"X-Forwarded-For: 6.6.6.6"]));
    let v = exchange_from(lb(), f.http, &bytes).await.json();
    assert_eq!(echoed(&v, "x-forwarded-for"), ["198.51.100.7"], "{v}");

    // v2, from the balancer.
    let header = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        (
            "[2001:db8::42]:40000"
                .parse::<std::net::SocketAddr>()
                .unwrap(),
            "[2001:db8::1]:80".parse::<std::net::SocketAddr>().unwrap(),
        ),
    )
    .build()
    .unwrap();
    let mut bytes = header;
    bytes.extend(echo(&[]));
    let v = exchange_from(lb(), f.http, &bytes).await.json();
    assert_eq!(echoed(&v, "x-forwarded-for"), ["2001:db8::42"], "{v}");

    // A stranger speaking it, or the balancer forgetting it: closed with no
    // answer, so no request runs under a made-up address.
    for (from, bytes) in [
        (
            stranger(),
            b"PROXY TCP4 203.0.113.1 10.0.0.1 1 80\r\n".to_vec(),
        ),
        (lb(), echo(&[])),
    ] {
        let mut s = connect_from(from, f.http).await;
        use tokio::io::AsyncWriteExt;
        s.write_all(&bytes).await.unwrap();
        let got = closed_within(&mut s, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        assert!(
            got.is_empty(),
            "answered: {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    assert!(f.metric("guise_connections_refused_total").await >= 2.0);
}
