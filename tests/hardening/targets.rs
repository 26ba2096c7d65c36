//! Request targets that are not a path (class 2), paths an upstream would
//! read as another path (3), and signed-in paths that cannot be signed
//! (14). The gateway routes, checks and signs exactly the path the
//! upstream receives, or refuses it with the reason.

use crate::common::*;
use crate::support::login::*;
use crate::support::*;
use crate::wire::*;

#[tokio::test]
async fn a_target_that_is_not_a_path_is_refused_as_bad_request_target() {
    let f = Fixture::start_with(&open_yaml("")).await;
    let h = host(&f);
    let here = format!("ftp://{h}/api/echo/x");
    let targets: Vec<&[u8]> = vec![
        b"api/echo/x",
        b"echo",
        b"x:y",
        b"%2Fapi/echo/x",
        b"?x=1",
        here.as_bytes(),
        b"mailto:a@b",
    ];
    for t in targets {
        let what = String::from_utf8_lossy(t).into_owned();
        for method in ["GET", "POST", "OPTIONS"] {
            let a = exchange(f.http, &request(method, t, &h, &[])).await;
            refused(&a, 400, "bad_request_target", &format!("{method} {what}"));
        }
    }
}

#[tokio::test]
async fn the_asterisk_is_only_for_options_which_gets_204_with_allow() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let h = host(&f);
    let a = exchange(f.http, &request("OPTIONS", b"*", &h, &[])).await;
    assert_eq!(a.status, 204, "{}", a.text());
    let allow = a.header("allow").expect("Allow on OPTIONS *");
    for m in ["GET", "POST", "OPTIONS"] {
        assert!(allow.contains(m), "{allow}");
    }
    for method in ["GET", "POST", "DELETE", "HEAD", "PROPFIND"] {
        let a = exchange(f.http, &request(method, b"*", &h, &[])).await;
        assert_eq!(a.status, 400, "{method} *");
        if method != "HEAD" {
            refused(&a, 400, "bad_request_target", &format!("{method} *"));
        }
    }
}

#[tokio::test]
async fn an_absolute_url_naming_this_gateway_is_served_as_its_origin_form_path() {
    let f = Fixture::start_with(&open_yaml("")).await;
    let h = host(&f);
    for (target, path, query) in [
        (
            format!("http://{h}/api/echo/abs?q=1"),
            "/api/echo/abs",
            "q=1",
        ),
        (format!("HTTP://{h}/%61pi/echo/x"), "/api/echo/x", ""),
        (
            format!("https://{h}/api/echo/s?a=%41"),
            "/api/echo/s",
            "a=%41",
        ),
    ] {
        let a = exchange(f.http, &request("GET", target.as_bytes(), &h, &[])).await;
        assert_eq!(a.status, 200, "{target}: {}", a.text());
        let echo = a.json();
        assert_eq!(echo["path"], path, "{target}");
        assert_eq!(echo["query"], query, "{target}");
        // Origin form at the upstream, not the absolute URL.
        let uri = echo["uri"].as_str().unwrap();
        assert!(uri.starts_with('/'), "{target}: the app got {uri}");
    }
    // The path part is checked like any other.
    let a = exchange(
        f.http,
        &request(
            "GET",
            format!("http://{h}/api/echo/%2e%2e/x").as_bytes(),
            &h,
            &[],
        ),
    )
    .await;
    refused(&a, 400, "path_not_normal", "absolute URL with ..");

    // A signed-in absolute-URL request is signed for the path it becomes
    // (the app checks the signature over the path it receives).
    let alice = login(&client(), &f.url(""), "alice@test.example", PW).await;
    let cookie = format!("Cookie: {}", alice.cookie);
    let target = format!("http://{h}/api/%65cho/signed");
    let a = exchange(
        f.http,
        &request("GET", target.as_bytes(), &h, &[cookie.as_bytes()]),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let echo = a.json();
    assert_eq!(echo["path"], "/api/echo/signed");
    assert_eq!(echoed(&echo, "x-guise-user"), ["u-alice"]);
}

#[tokio::test]
async fn an_absolute_url_naming_another_host_is_refused() {
    let f = Fixture::start_with(&open_yaml("")).await;
    let h = host(&f);
    let port = f.http.port();
    let other_port = format!("http://127.0.0.1:{}/api/echo/x", port + 1);
    let userinfo = format!("http://{h}@evil.test/api/echo/x");
    let userinfo2 = format!("http://evil.test@{h}/api/echo/x");
    let by_name = format!("http://localhost:{port}/api/echo/x");
    for target in [
        "http://evil.test/api/echo/x",
        "https://evil.test/",
        "http://evil.test",
        other_port.as_str(),
        userinfo.as_str(),
        userinfo2.as_str(),
        by_name.as_str(),
        "http:///api/echo/x",
    ] {
        let a = exchange(f.http, &request("GET", target.as_bytes(), &h, &[])).await;
        // Either stage refuses it: pingora (bare) or the target check.
        if a.body.is_empty() {
            assert_refused_early(&a, target);
        } else {
            refused(&a, 400, "bad_request_target", target);
        }
        // The app never saw it: nothing but refusals, no echo.
        assert!(!a.text().contains("\"headers\""), "{target}: {}", a.text());
    }
}

#[tokio::test]
async fn the_upstream_receives_exactly_the_normalised_path_the_gateway_routed_and_signed() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let alice = login(&client(), &f.url(""), "alice@test.example", PW).await;
    let cookie = format!("Cookie: {}", alice.cookie);
    let h = host(&f);
    for (target, path, query) in [
        ("/api/echo/%61b%7Ec%2d%5F", "/api/echo/ab~c-_", ""),
        ("/api/echo/caf%c3%a9", "/api/echo/caf%C3%A9", ""),
        ("/api/%65%63%68%6F/x", "/api/echo/x", ""),
        (
            "/api/echo/a%20b?x=%41&y=%2F",
            "/api/echo/a%20b",
            "x=%41&y=%2F",
        ),
        (
            "/api/echo/a|b^c[0]!$&'()*+,=:@",
            "/api/echo/a|b^c[0]!$&'()*+,=:@",
            "",
        ),
        ("/api/echo/x/", "/api/echo/x/", ""),
        // pingora escapes a raw space in the request line before any
        // stage runs; the signature covers the escaped path the app gets.
        ("/api/echo/a b", "/api/echo/a%20b", ""),
    ] {
        let a = exchange(
            f.http,
            &request("GET", target.as_bytes(), &h, &[cookie.as_bytes()]),
        )
        .await;
        // 200 from the app: the signature was made over the path it got.
        assert_eq!(a.status, 200, "{target}: {}", a.text());
        let echo = a.json();
        assert_eq!(echo["path"], path, "{target}");
        assert_eq!(echo["query"], query, "{target}");
        assert_eq!(echoed(&echo, "x-guise-user"), ["u-alice"], "{target}");
    }
}

/// Targets an upstream could read as another path, and a word the refusal
/// must give as the reason.
const NOT_NORMAL: &[(&[u8], &str)] = &[
    (b"/api/echo/a;jsessionid=1", "`;` path parameter"),
    (b"/healthz;/../api/echo/x", "`;` path parameter"),
    (b"/api/echo/a%3Bb", "%3B"),
    (b"/api/echo/a%2Fb", "%2F"),
    (b"/api/echo/a%2fb", "%2F"),
    (b"/api/echo/a%5Cb", "%5C"),
    (b"/api/echo/a%5cb", "%5C"),
    (b"/api/echo/a\\b", "backslash"),
    (b"/api/echo/%252e%252e/x", "%25"),
    (b"/api/echo/%2541", "%25"),
    (b"/api/echo/a%00b", "control"),
    (b"/api/echo/a%0d%0aX-Injected:%201", "control"),
    (b"/api/echo/a%7Fb", "control"),
    (b"/api/echo/caf\xc3\xa9", "outside ASCII"),
    (b"/api/echo/../../_guise/session", "`..`"),
    (b"/api/echo/%2e%2e/x", "`..`"),
    (b"/api/echo/.%2E/x", "`..`"),
    (b"/api/echo/%2E/x", "`.`"),
    (b"/healthz/..", "`..`"),
    (b"/api/echo//x", "empty segment"),
    (b"//evil.test/x", "empty segment"),
    (b"/api/echo/a%zz", "percent-escape"),
    (b"/api/echo/a%4", "percent-escape"),
    (b"/api/echo/a%", "percent-escape"),
    (b"/api/echo/a\"b", "percent-encoded"),
    (b"/api/echo/a{b}", "percent-encoded"),
    (b"/api/echo/x?q=\xc3\xa9", "query"),
    (b"/api/echo/a\x7fb", "control"),
    (b"/api/echo/a\x01b", "control"),
];

/// Targets pingora refuses (a bare 400) before the gateway's pipeline
/// sees them: bytes that are not UTF-8, and absolute URLs whose authority
/// disagrees with the Host. Refused all the same, never forwarded.
const REFUSED_BY_PINGORA: &[&[u8]] = &[
    b"/api/echo/\xff",
    b"/api/echo/caf\xe9",
    b"/api/echo/\xc3",
    b"/api/echo/x?q=\xff",
    b"/api/echo/a<b>",
    b"/api/echo/a`b",
    b"http://evil.test/api/echo/x",
    b"http:/api/echo/x",
];

/// A 400 written by pingora itself before any stage ran.
fn assert_refused_early(a: &Answer, what: &str) {
    assert_eq!(a.status, 400, "{what}: {}", a.text());
    assert!(a.body.is_empty(), "{what}: {}", a.text());
}

#[tokio::test]
async fn paths_an_upstream_would_read_differently_are_refused_with_the_reason() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let h = host(&f);
    for (target, why) in NOT_NORMAL {
        let what = String::from_utf8_lossy(target).into_owned();
        // Anonymous, on a public-looking and a private path alike.
        let a = exchange(f.http, &request("GET", target, &h, &[])).await;
        let detail = refused(&a, 400, "path_not_normal", &what);
        assert!(detail.contains(why), "{what}: the detail says {detail:?}");
        // HTML for browsers says the same.
        let a = exchange(f.http, &request("GET", target, &h, &[b"Accept: text/html"])).await;
        assert_eq!(a.status, 400, "{what}");
        assert!(a
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/html"));
    }
    for target in REFUSED_BY_PINGORA {
        let what = String::from_utf8_lossy(target).into_owned();
        let a = exchange(f.http, &request("GET", target, &h, &[])).await;
        assert_refused_early(&a, &what);
    }
}

#[tokio::test]
async fn a_signed_in_path_that_cannot_be_signed_gets_400_saying_why_never_500() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let alice = login(&client(), &f.url(""), "alice@test.example", PW).await;
    let cookie = format!("Cookie: {}", alice.cookie);
    let h = host(&f);
    for (target, why) in NOT_NORMAL {
        let what = String::from_utf8_lossy(target).into_owned();
        for method in ["GET", "POST", "PROPFIND"] {
            let a = exchange(f.http, &request(method, target, &h, &[cookie.as_bytes()])).await;
            let detail = refused(&a, 400, "path_not_normal", &format!("{method} {what}"));
            assert!(detail.contains(why), "{what}: the detail says {detail:?}");
        }
    }
    for target in REFUSED_BY_PINGORA {
        let what = String::from_utf8_lossy(target).into_owned();
        let a = exchange(f.http, &request("GET", target, &h, &[cookie.as_bytes()])).await;
        assert_refused_early(&a, &what);
    }
    // The session is still good afterwards.
    let a = exchange(
        f.http,
        &request("GET", b"/api/echo/ok", &h, &[cookie.as_bytes()]),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
}

#[tokio::test]
async fn escapes_of_unreserved_characters_cannot_dodge_a_private_route() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let h = host(&f);
    for target in [
        &b"/api/companies/%63o-100"[..],
        b"/%61pi/companies/co-100",
        b"/api/%63%6F%6D%70%61%6E%69%65%73/co-100",
        b"/api/companies/co-100/",
        b"/api/companies/%63o-100/",
    ] {
        let what = String::from_utf8_lossy(target).into_owned();
        let a = exchange(f.http, &request("GET", target, &h, &[])).await;
        refused(&a, 401, "login_required", &what);
    }
    // They were classified as the route, not as unmatched paths.
    eventually(std::time::Duration::from_secs(5), "refusals counted under the route", || async {
        let n = f
            .metric("guise_http_requests_total{method=\"GET\",route=\"company\",status_class=\"4xx\"}")
            .await;
        (n == 5.0).then_some(())
    })
    .await;
    // Signed in, they reach the app as the route's own path and are
    // counted under the route's name.
    let alice = login(&client(), &f.url(""), "alice@test.example", PW).await;
    let cookie = format!("Cookie: {}", alice.cookie);
    let before = f
        .metric("guise_http_requests_total{method=\"GET\",route=\"company\",status_class=\"2xx\"}")
        .await;
    for target in [
        &b"/api/companies/%63o-100"[..],
        b"/%61pi/companies/co-100",
        b"/api/companies/co-100/",
    ] {
        let what = String::from_utf8_lossy(target).into_owned();
        let a = exchange(f.http, &request("GET", target, &h, &[cookie.as_bytes()])).await;
        assert_eq!(a.status, 200, "{what}: {}", a.text());
    }
    let after = eventually(std::time::Duration::from_secs(5), "route metric", || async {
        let n = f
            .metric("guise_http_requests_total{method=\"GET\",route=\"company\",status_class=\"2xx\"}")
            .await;
        (n >= before + 3.0).then_some(n)
    })
    .await;
    assert!(after >= before + 3.0);
}

#[tokio::test]
async fn a_public_route_is_public_with_a_trailing_slash_and_cannot_be_borrowed() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let h = host(&f);
    for target in [
        &b"/healthz"[..],
        b"/healthz/",
        b"/%68ealthz",
        b"/%68ealthz/",
    ] {
        let what = String::from_utf8_lossy(target).into_owned();
        let a = exchange(f.http, &request("GET", target, &h, &[])).await;
        assert_eq!(a.status, 200, "{what}: {}", a.text());
    }
    // Paths that start like the public route but lead elsewhere.
    for target in [
        &b"/healthz/..%2Fapi%2Fecho%2Fx"[..],
        b"/healthz/../api/echo/x",
        b"/healthz/%2e%2e/api/echo/x",
        b"/healthz;/api/echo/x",
        b"/healthz%3B/api/echo/x",
        b"/healthz%00/../api/echo/x",
        b"/healthz%2F..%2Fapi%2Fecho%2Fx",
        b"/healthz%252F..%252Fapi",
    ] {
        let what = String::from_utf8_lossy(target).into_owned();
        let a = exchange(f.http, &request("GET", target, &h, &[])).await;
        refused(&a, 400, "path_not_normal", &what);
    }
    for target in [&b"/healthz/x"[..], b"/healthzx", b"/healthz//"] {
        let what = String::from_utf8_lossy(target).into_owned();
        let a = exchange(f.http, &request("GET", target, &h, &[])).await;
        assert!(
            a.status == 401 || a.status == 400,
            "{what} is not the public route: {} {}",
            a.status,
            a.text()
        );
    }
}

#[tokio::test]
async fn malformed_requests_are_answered_with_a_status_line_never_dropped() {
    let f = Fixture::start_with(&open_yaml("")).await;
    let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let long_path = format!("/api/echo/{}", "a".repeat(70_000));
    let nested = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    let nested_login = format!(
        "POST /_guise/login HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{nested}",
        nested.len()
    );
    let requests: Vec<Vec<u8>> = vec![
        format!("GET /api/echo/x HTTP/1.1\r\nHost: gw.test\r\n{many}\r\n").into_bytes(),
        request("GET", long_path.as_bytes(), "gw.test", &[]),
        b"GET /api/echo/x HTTP/2.0\r\nHost: gw.test\r\n\r\n".to_vec(),
        b"GET /api/echo/x HTTP/1.2\r\nHost: gw.test\r\n\r\n".to_vec(),
        b"GET /api/echo/x\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"G\x00T /api/echo/x HTTP/1.1\r\nHost: gw.test\r\n\r\n".to_vec(),
        b"GET /api/echo/x HTTP/1.1\r\nHost: gw.test\r\nX-Guise-User : u-super\r\n\r\n".to_vec(),
        b"GET /api/echo/x HTTP/1.1\r\nHost: gw.test\r\nX-A: a\r\n X-Guise-User: u-super\r\n\r\n".to_vec(),
        b"GET /api/echo/x HTTP/1.1\r\nHost: gw.test\r\nX-Guise-User\x00: u\r\n\r\n".to_vec(),
        b"POST /api/echo/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"POST /api/echo/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 99999999999999999999\r\n\r\n".to_vec(),
        b"POST /api/echo/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 1, 2\r\n\r\nab".to_vec(),
        b"POST /api/echo/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
        b"POST /api/echo/x HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(),
        b"POST /_guise/login HTTP/1.1\r\nHost: gw.test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(),
        nested_login.into_bytes(),
        b"CONNECT gw.test:443 HTTP/1.1\r\nHost: gw.test:443\r\n\r\n".to_vec(),
    ];
    for bytes in requests {
        let what = String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).into_owned();
        let a = exchange(f.http, &bytes).await;
        assert!(
            (400..500).contains(&a.status),
            "{what}: {} {}",
            a.status,
            a.text()
        );
    }
    // And the gateway serves on.
    let a = exchange(f.http, &request("GET", b"/api/echo/ok", "gw.test", &[])).await;
    assert_eq!(a.status, 200, "{}", a.text());
}
