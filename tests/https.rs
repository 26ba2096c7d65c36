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
    let gw = spawn_gateway(&path);
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

#[tokio::test]
async fn over_https_the_session_cookie_is_host_prefixed_and_secure() {
    let probe = Fixture::start_with(&session_yaml("")).await;
    let certs = guise::tls::DevCerts::generate(&["localhost"]).unwrap();
    certs.write_to(probe.dir.path()).unwrap();
    let https = free_addr();
    let yaml = probe.fill(&session_yaml("")).replace(
        &format!("  http: {}", probe.http),
        &format!("  http: {}\n  https:\n    address: {https}\n    cert: dev-cert.pem\n    key: dev-key.pem", free_addr()),
    );
    let yaml = yaml.replace(
        &format!("address: {}\n", probe.ops),
        &format!("address: {}\n", free_addr()),
    );
    let path = probe.dir.path().join("tls-session.yaml");
    std::fs::write(&path, yaml).unwrap();
    let gw = spawn_gateway(&path);
    wait_listening(https).await;
    let ca = reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap();
    let c = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", https.port());
    let r = c
        .post(format!("{base}/_guise/login"))
        .json(&serde_json::json!({"username": "alice@test.example", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(set.starts_with("__Host-guise_session="), "{set}");
    for attr in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(attr), "{attr}: {set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let echo: Value = c
        .get(format!("{base}/api/echo/x"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["x-guise-user"][0], "u-alice");
    // The plain-HTTP cookie name is not accepted over HTTPS.
    let plain = cookie.replacen("__Host-", "", 1);
    let r = c
        .get(format!("{base}/api/echo/x"))
        .header("cookie", plain)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    gw.stop();
}
