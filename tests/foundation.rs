//! End-to-end: the gateway proxies the real demo app over real HTTP.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use support::*;

#[tokio::test]
async fn get_and_post_keep_method_path_query_and_body() {
    let f = Fixture::start().await;
    let c = client();

    let r = c.get(f.url("/api/companies/co-100")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["data"]["name"].is_string(), "{v}");

    let body = "x".repeat(300_000) + "é";
    let r = c
        .post(f.url("/api/echo/a/b?x=1&y=two"))
        .header("content-type", "text/plain")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/api/echo/a/b");
    assert_eq!(echo["query"], "x=1&y=two");
    assert_eq!(echo["body_length"], body.len());
    assert_eq!(echo["body"], body);
}

#[tokio::test]
async fn writes_through_the_gateway_are_kept_by_the_app() {
    let f = Fixture::start().await;
    let c = client();
    let r = c
        .post(f.url("/api/companies"))
        .json(&serde_json::json!({"name": "Through Gateway Inc", "industry": "Testing", "arr": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["data"]["id"]
        .to_string()
        .trim_matches('"')
        .to_string();
    let r = c
        .get(f.url(&format!("/api/companies/{id}")))
        .send()
        .await
        .unwrap();
    let got: Value = r.json().await.unwrap();
    assert_eq!(got["data"]["name"], "Through Gateway Inc");
}

#[tokio::test]
async fn a_large_response_streams_through_intact() {
    let f = Fixture::start().await;
    let size: usize = 48 * 1024 * 1024;
    let r = client()
        .get(f.url(&format!("/api/large?bytes={size}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stream = r.bytes_stream();
    let (mut n, mut chunks) = (0usize, 0usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for (i, b) in chunk.iter().enumerate() {
            assert_eq!(*b, ((n + i) % 251) as u8, "byte {} differs", n + i);
        }
        n += chunk.len();
        chunks += 1;
    }
    assert_eq!(n, size);
    // Arrived in pieces, not as one buffered blob.
    assert!(chunks > 10, "only {chunks} chunks");
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_the_upstream() {
    let f = Fixture::start().await;
    let r = client()
        .get(f.url("/api/echo/whoami"))
        .header("X-Guise-User", "admin")
        .header("x-guise-roles", "super_admin")
        .header("X-GUISE-Signature", "forged")
        .header("x-other", "kept")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-demo-identity-seen"], "none");
    let echo: Value = r.json().await.unwrap();
    let headers = echo["headers"].as_object().unwrap();
    assert!(
        headers.keys().all(|k| !k.starts_with("x-guise-")),
        "identity header leaked: {headers:?}"
    );
    assert_eq!(headers["x-other"][0], "kept");
}

#[tokio::test]
async fn forwarded_headers_name_the_client() {
    let f = Fixture::start().await;
    let r = client()
        .get(f.url("/api/echo/fwd"))
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    let h = &echo["headers"];
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(h["x-forwarded-proto"][0], "http");
    assert_eq!(h["x-forwarded-host"][0], f.http.to_string());
}

#[tokio::test]
async fn a_path_that_normalises_elsewhere_is_refused_with_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = Fixture::start().await;
    // reqwest would normalise `..` itself, so speak HTTP/1.1 by hand.
    for path in [
        "/api/echo/../companies/co-100",
        "/api/echo/%2e%2e/companies/co-100",
    ] {
        let mut s = tokio::net::TcpStream::connect(f.http).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 400"), "{path}: {out}");
        assert!(out.contains("path_not_normal"), "{out}");
    }
}

#[tokio::test]
async fn upstream_down_gives_502_in_the_clients_format_and_recovers() {
    let mut f = Fixture::start().await;
    let c = client();
    assert_eq!(
        c.get(f.url("/api/companies/co-100"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready = c.get(f.ops_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    f.upstream.take().unwrap().stop();

    let r = c
        .get(f.url("/api/companies/co-100"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // The gateway closes the connection after a proxy failure and says so.
    assert_eq!(r.headers()["connection"], "close");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "upstream_unreachable");

    let r = c
        .get(f.url("/dashboard"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("Upstream unreachable"));

    let ready = c.get(f.ops_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(
        f.metric("guise_upstream_errors_total{kind=\"connect\"}")
            .await
            >= 2.0
    );
    assert_eq!(f.metric("guise_upstream_up").await, 0.0);

    // The app comes back on the same port: the gateway recovers by itself.
    f.upstream = Some(guise::demo_upstream::DemoHandle::start(f.upstream_addr).unwrap());
    eventually(Duration::from_secs(10), "recovery", || {
        let c = c.clone();
        let url = f.url("/api/companies/co-100");
        async move {
            let r = c.get(url).send().await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    assert_eq!(
        c.get(f.ops_url("/readyz")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn metrics_are_exposed_and_count_requests() {
    let f = Fixture::start().await;
    let c = client();
    let before = f
        .metric("guise_http_requests_total{method=\"GET\",route=\"company\",status_class=\"2xx\"}")
        .await;
    for _ in 0..3 {
        c.get(f.url("/api/companies/co-100")).send().await.unwrap();
    }
    // Counted in the logging phase, just after the response went out.
    let sample = "guise_http_requests_total{method=\"GET\",route=\"company\",status_class=\"2xx\"}";
    let text = eventually(Duration::from_secs(5), "3 counted requests", || async {
        let r = c.get(f.ops_url("/metrics")).send().await.unwrap();
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = r.text().await.unwrap();
        (metric_value(&text, sample) - before == 3.0).then_some(text)
    })
    .await;
    assert!(
        metric_value(
            &text,
            "guise_http_request_duration_seconds_count{route=\"company\"}"
        ) >= 3.0
    );
    assert!(metric_value(&text, "guise_upstream_response_duration_seconds_count") >= 3.0);
    assert!(text.contains("guise_build_info{version=\""));
    assert!(text.contains("guise_open_connections"));
    assert!(text.contains("guise_config_info{hash=\""));

    let health: Value = c
        .get(f.ops_url("/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["alive"], true);
}

#[tokio::test]
async fn open_connections_follow_clients() {
    let f = Fixture::start().await;
    let base = f.metric("guise_open_connections").await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(tokio::net::TcpStream::connect(f.http).await.unwrap());
    }
    eventually(
        Duration::from_secs(5),
        "3 more open connections",
        || async { (f.metric("guise_open_connections").await >= base + 3.0).then_some(()) },
    )
    .await;
    drop(conns);
    eventually(
        Duration::from_secs(5),
        "connections counted out",
        || async { (f.metric("guise_open_connections").await <= base).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn dashboard_queries_only_use_exposed_metrics() {
    // A tenant, so the tenant gauges have a series.
    let f = Fixture::start_with(&format!(
        "{BASE_YAML}tenants:\n  path_prefix: \"/t/{{tenant}}/\"\n  list:\n    - {{ id: t1, name: T1, user_quota: 5 }}\n"
    ))
    .await;
    // Touch every labelled family so it is exposed.
    client()
        .get(f.url("/api/companies/co-100"))
        .send()
        .await
        .unwrap();
    client().get(f.ops_url("/readyz")).send().await.unwrap();
    let text = f.metrics_text().await;
    let exposed: std::collections::HashSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();

    let dash = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dashboards/guise-overview.json"
    ))
    .unwrap();
    let json: Value = serde_json::from_str(&dash).unwrap();
    let mut exprs = Vec::new();
    collect_exprs(&json, &mut exprs);
    assert!(!exprs.is_empty(), "dashboard has no queries");
    let mut used = 0;
    for expr in &exprs {
        for name in metric_names(expr) {
            used += 1;
            assert!(
                exposed.contains(&name),
                "dashboard uses `{name}` which /metrics does not expose (in `{expr}`)"
            );
        }
    }
    assert!(used > 5);
}

fn collect_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if (k == "expr" || k == "query") && v.is_string() {
                    out.push(v.as_str().unwrap().to_string());
                } else {
                    collect_exprs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

/// Every `guise_...` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("guise_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn health_metrics_are_current_without_anyone_asking_readyz() {
    let yaml = BASE_YAML.replace(
        "operations:\n  address: {OPS}\n",
        "operations:\n  address: {OPS}\n  probe_interval_ms: 100\n",
    );
    let mut f = Fixture::start_with(&yaml).await;
    let gauge = |f: &Fixture, name: &'static str, want: f64| {
        let url = f.ops_url("/metrics");
        async move {
            let text = client().get(url).send().await.ok()?.text().await.ok()?;
            (metric_value(&text, name) == want).then_some(())
        }
    };
    eventually(Duration::from_secs(5), "upstream up from the start", || {
        gauge(&f, "guise_upstream_up", 1.0)
    })
    .await;
    eventually(Duration::from_secs(5), "store up from the start", || {
        gauge(&f, "guise_session_store_up", 1.0)
    })
    .await;
    f.upstream.take().unwrap().stop();
    eventually(Duration::from_secs(5), "upstream down noticed", || {
        gauge(&f, "guise_upstream_up", 0.0)
    })
    .await;
    f.upstream = Some(guise::demo_upstream::DemoHandle::start(f.upstream_addr).unwrap());
    eventually(Duration::from_secs(10), "upstream back noticed", || {
        gauge(&f, "guise_upstream_up", 1.0)
    })
    .await;
}

#[tokio::test]
async fn pipelined_requests_are_all_answered_in_order() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = Fixture::start().await;
    let mut s = tokio::net::TcpStream::connect(f.http).await.unwrap();
    // Three requests in one write, before reading any answer.
    let mut bytes = Vec::new();
    for (i, last) in [(1, false), (2, false), (3, true)] {
        let close = if last { "Connection: close\r\n" } else { "" };
        bytes.extend_from_slice(
            format!("GET /api/echo/p{i} HTTP/1.1\r\nHost: x\r\n{close}\r\n").as_bytes(),
        );
    }
    s.write_all(&bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("all answers within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    let (p1, p2, p3) = (
        text.find("/api/echo/p1").unwrap(),
        text.find("/api/echo/p2").unwrap(),
        text.find("/api/echo/p3").unwrap(),
    );
    assert!(p1 < p2 && p2 < p3, "answers out of order: {text}");
}
