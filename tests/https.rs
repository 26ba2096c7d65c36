//! End-to-end: HTTPS on rustls with HTTP/2 by ALPN.

mod support;

use serde_json::Value;
use support::*;

#[tokio::test]
async fn https_serves_http2_to_a_client_trusting_the_test_ca() {
    let probe = Fixture::start().await;
    let certs = guise::tls::DevCerts::generate(&["localhost", "127.0.0.1"]).unwrap();
    certs.write_to(probe.dir.path()).unwrap();
    let https = free_addr();
    let yaml = BASE_YAML.replace(
        "  http: {HTTP}",
        &format!("  http: {{HTTP}}\n  https:\n    address: {https}\n    cert: dev-cert.pem\n    key: dev-key.pem"),
    );
    // Reuse the probe's temp dir (it holds the certs) for a second gateway.
    let dir = probe.dir.path().to_path_buf();
    let upstream = probe.upstream_addr;
    let http = free_addr();
    let ops = free_addr();
    let filled = yaml
        .replace("{HTTP}", &http.to_string())
        .replace("{OPS}", &ops.to_string())
        .replace("{UPSTREAM}", &upstream.to_string());
    let path = dir.join("tls.yaml");
    std::fs::write(&path, filled).unwrap();
    let config = guise::config::Config::load(&path, &test_env).unwrap();
    let gw = guise::server::Gateway::build(
        config,
        guise::server::BuildOptions {
            config_path: None,
            reload_on_sighup: false,
            env: std::sync::Arc::new(test_env),
        },
    )
    .unwrap()
    .spawn();
    wait_listening(https).await;

    let ca = reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let r = c
        .get(format!("https://localhost:{}/api/echo/tls", https.port()))
        .header("x-guise-user", "spoof")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");
    assert!(echo["headers"]["host"][0]
        .as_str()
        .unwrap()
        .starts_with("localhost:"));
    assert!(echo["headers"].get("x-guise-user").is_none());

    // POST with a body over h2 reaches the HTTP/1 upstream intact.
    let r = c
        .post(format!("https://localhost:{}/api/echo/tls", https.port()))
        .body("over h2")
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["body"], "over h2");

    // A client that does not trust the CA is refused at the handshake.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("https://localhost:{}/", https.port()))
        .send()
        .await
        .is_err());
    gw.stop();
}
