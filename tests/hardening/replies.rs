//! Every answer the gateway writes itself (class 12) carries
//! `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and a
//! `Referrer-Policy`, and over HTTPS `Strict-Transport-Security` unless
//! `http.hsts.enabled` is off.

use serde_json::json;

use crate::common::*;
use crate::support::login::*;
use crate::support::*;
use crate::wire::*;

fn assert_protected(a: &Answer, what: &str) {
    assert_eq!(
        a.header("x-frame-options"),
        Some("DENY"),
        "{what}: {:?}",
        a.headers
    );
    assert_eq!(
        a.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert!(
        a.header("referrer-policy").is_some(),
        "{what}: {:?}",
        a.headers
    );
    assert!(
        a.header("strict-transport-security").is_none(),
        "{what}: HSTS over plain HTTP"
    );
}

#[tokio::test]
async fn every_answer_the_gateway_writes_itself_carries_the_protective_headers() {
    let f = Fixture::start_with(&session_yaml(
        "http:\n  allowed_hosts: [\"127.0.0.1\"]\nauth:\n  max_attempts_per_user: 1\n",
    ))
    .await;
    let h = host(&f);
    let alice = login(&client(), &f.url(""), "alice@test.example", PW).await;
    let cookie = format!("Cookie: {}", alice.cookie);
    let csrf = format!("X-CSRF-Token: {}", alice.csrf);
    let html: &[u8] = b"Accept: text/html";
    let json_type: &[u8] = b"Content-Type: application/json";
    let wrong = json!({"username": "bob@test.example", "password": "x"}).to_string();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("login page", request("GET", b"/login", &h, &[html]), 200),
        (
            "login page, HEAD",
            request("HEAD", b"/login", &h, &[html]),
            200,
        ),
        (
            "redirect to login",
            request("GET", b"/api/echo/x", &h, &[html]),
            302,
        ),
        (
            "login required",
            request("GET", b"/api/echo/x", &h, &[]),
            401,
        ),
        ("no endpoint", request("GET", b"/_guise/nope", &h, &[]), 404),
        (
            "no endpoint, HTML",
            request("GET", b"/_guise/nope", &h, &[html]),
            404,
        ),
        (
            "no session",
            request("GET", b"/_guise/session", &h, &[]),
            401,
        ),
        (
            "sign-out page, anonymous",
            request("GET", b"/_guise/logout", &h, &[html]),
            302,
        ),
        (
            "path not normal",
            request("GET", b"/api/echo/a%2Fb", &h, &[]),
            400,
        ),
        ("not a path", request("GET", b"api", &h, &[html]), 400),
        ("OPTIONS *", request("OPTIONS", b"*", &h, &[]), 204),
        (
            "misdirected",
            request("GET", b"/api/echo/x", "evil.test", &[]),
            421,
        ),
        ("bad host", request("GET", b"/api/echo/x", "a b", &[]), 400),
        (
            "bad JSON",
            with_body("POST", b"/_guise/login", &h, &[json_type], Some(b"{")),
            400,
        ),
        (
            "wrong password",
            with_body(
                "POST",
                b"/_guise/login",
                &h,
                &[json_type],
                Some(wrong.as_bytes()),
            ),
            401,
        ),
        (
            "limited",
            with_body(
                "POST",
                b"/_guise/login",
                &h,
                &[json_type],
                Some(wrong.as_bytes()),
            ),
            429,
        ),
        (
            "form without CSRF",
            with_body(
                "POST",
                b"/login",
                &h,
                &[b"Content-Type: application/x-www-form-urlencoded"],
                Some(b"username=a&password=b"),
            ),
            403,
        ),
        ("method on login", request("PUT", b"/login", &h, &[]), 405),
        (
            "JSON not sent as JSON",
            with_body("POST", b"/_guise/login", &h, &[], Some(b"x")),
            415,
        ),
        (
            "sign-out page",
            request("GET", b"/_guise/logout", &h, &[cookie.as_bytes(), html]),
            200,
        ),
        (
            "who am I",
            request("GET", b"/_guise/session", &h, &[cookie.as_bytes()]),
            200,
        ),
        (
            "signed in, login page",
            request("GET", b"/login", &h, &[cookie.as_bytes(), html]),
            302,
        ),
        (
            "admin API, not an admin",
            request("GET", b"/_guise/admin/users", &h, &[cookie.as_bytes()]),
            403,
        ),
        (
            "signed in, path not normal",
            request("GET", b"/api/echo/caf\xc3\xa9", &h, &[cookie.as_bytes()]),
            400,
        ),
        (
            "logout",
            request(
                "POST",
                b"/_guise/logout",
                &h,
                &[cookie.as_bytes(), csrf.as_bytes()],
            ),
            200,
        ),
    ];
    for (what, bytes, status) in cases {
        let a = exchange(f.http, &bytes).await;
        assert_eq!(a.status, status, "{what}: {}", a.text());
        assert_protected(&a, what);
    }

    // The login form's answers (success redirects, 303; a wrong password
    // shows the form again, 401).
    let page = client().get(f.url("/login")).send().await.unwrap();
    let (csrf_cookie, _) = cookie_from(&page, "guise_login_csrf").unwrap();
    let text = page.text().await.unwrap();
    let token = text
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let csrf_line = format!("Cookie: {csrf_cookie}");
    for (pw, status) in [(PW, 303), ("bad", 401)] {
        let form = format!(
            "username=alice%40test.example&password={}&csrf_token={token}",
            pw.replace(' ', "+")
        );
        let a = exchange(
            f.http,
            &with_body(
                "POST",
                b"/login",
                &h,
                &[
                    b"Content-Type: application/x-www-form-urlencoded",
                    csrf_line.as_bytes(),
                ],
                Some(form.as_bytes()),
            ),
        )
        .await;
        assert_eq!(a.status, status, "form with {pw}: {}", a.text());
        assert_protected(&a, "login form answer");
    }
}

#[tokio::test]
async fn an_upstream_failure_answer_carries_the_protective_headers() {
    let closed = free_addr();
    let yaml = open_yaml("").replace("{UPSTREAM}", &closed.to_string());
    let f = Fixture::start_with(&yaml).await;
    for accept in [&b"Accept: text/html"[..], b"Accept: application/json"] {
        let a = exchange(
            f.http,
            &request("GET", b"/api/echo/x", &host(&f), &[accept]),
        )
        .await;
        assert_eq!(a.status, 502, "{}", a.text());
        assert_protected(&a, "502");
    }
}

/// A gateway in front of the demo app with an HTTPS listener (dev
/// certificates for `localhost`), and a client that trusts them.
async fn https_gateway(extra: &str) -> (Fixture, String, reqwest::Client, tempfile::TempDir) {
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = guise::tls::DevCerts::generate(&["localhost"]).unwrap();
    certs.write_to(certs_dir.path()).unwrap();
    let https = free_addr();
    let yaml = session_yaml(extra).replace(
        "  http: {HTTP}\n",
        &format!(
            "  http: {{HTTP}}\n  https:\n    address: {https}\n    cert: {0}/dev-cert.pem\n    key: {0}/dev-key.pem\n",
            certs_dir.path().display()
        ),
    );
    let f = Fixture::start_with(&yaml).await;
    wait_listening(https).await;
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certs.ca_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    (
        f,
        format!("https://localhost:{}", https.port()),
        c,
        certs_dir,
    )
}

async fn https_answers(base: &str, c: &reqwest::Client) -> Vec<(String, reqwest::Response)> {
    let mut out = Vec::new();
    for (what, path, accept) in [
        ("login page", "/login", "text/html"),
        ("redirect", "/api/echo/x", "text/html"),
        ("login required", "/api/echo/x", "application/json"),
        ("no endpoint", "/_guise/nope", "application/json"),
        ("path not normal", "/api/echo/a%2Fb", "application/json"),
        ("sign-out page", "/_guise/logout", "text/html"),
    ] {
        let r = c
            .get(format!("{base}{path}"))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        out.push((what.to_string(), r));
    }
    let r = c
        .post(format!("{base}/_guise/login"))
        .json(&json!({"username": "alice@test.example", "password": PW}))
        .send()
        .await
        .unwrap();
    out.push(("login".to_string(), r));
    out
}

#[tokio::test]
async fn over_https_the_gateways_answers_carry_hsts_unless_it_is_turned_off() {
    let (_f, base, c, _certs) = https_gateway("").await;
    for (what, r) in https_answers(&base, &c).await {
        let hsts = r
            .headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_string());
        assert!(
            hsts.as_deref().is_some_and(|v| v.starts_with("max-age=")),
            "{what}: {hsts:?}"
        );
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{what}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{what}");
        assert!(r.headers().get("referrer-policy").is_some(), "{what}");
    }

    let (_f, base, c, _certs) = https_gateway("http:\n  hsts: { enabled: false }\n").await;
    for (what, r) in https_answers(&base, &c).await {
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "{what}"
        );
        assert_eq!(r.headers()["x-frame-options"], "DENY", "{what}");
    }
}
