//! Headers a hostile client sends to speak for the gateway or to reach
//! past it: identity headers under other spellings (class 1), the session
//! cookie hidden or forwarded (10), the Host and forged forwarding headers
//! (13), and what the upstream login sends on (9).

use serde_json::Value;

use crate::common::*;
use crate::support::login::*;
use crate::support::*;
use crate::wire::*;

/// Identity headers as some upstream would read them, each a raw line.
const SPOOFS: &[&[u8]] = &[
    b"X_Guise_User: u-super",
    b"x-guise_user: u-super",
    b"x.guise.user: u-super",
    b"X-GUISE-ROLES: super_admin",
    b"x-guise-user: u-super",
    b"X-Guise-User: u-admin",
    b"x~guise~roles: super_admin",
    b"X_GUISE_SIGNATURE: t=1,v1=00",
    b"x-guise-user-email: super@test.example",
    b"X-Guise-Session: forged",
    b"x-GUISE_acting_user: u-super",
];

fn assert_no_identity(echo: &Value, what: &str) {
    let leaked: Vec<String> = echoed_names(echo)
        .into_iter()
        .filter(|n| reads_as_identity(n))
        .collect();
    assert!(leaked.is_empty(), "{what}: the upstream got {leaked:?}");
}

#[tokio::test]
async fn identity_headers_under_other_spellings_never_reach_the_upstream_anonymously() {
    let f = Fixture::start_with(&open_yaml("")).await;
    let h = host(&f);
    // All at once, and each on its own.
    let all = exchange(f.http, &request("GET", b"/api/echo/all", &h, SPOOFS)).await;
    assert_eq!(all.status, 200, "{}", all.text());
    assert_no_identity(&all.json(), "all spellings at once");
    for spoof in SPOOFS {
        let what = String::from_utf8_lossy(spoof);
        let a = exchange(f.http, &request("GET", b"/api/echo/one", &h, &[spoof])).await;
        assert_eq!(a.status, 200, "{what}: {}", a.text());
        assert_no_identity(&a.json(), &what);
    }
    // Also on a public route of a gateway that requires login.
    let f = Fixture::start_with(&session_yaml("")).await;
    let a = exchange(f.http, &request("GET", b"/healthz", &host(&f), SPOOFS)).await;
    assert_eq!(a.status, 200, "{}", a.text());
}

#[tokio::test]
async fn a_signed_in_request_carries_only_the_gateways_own_signed_identity_headers() {
    let f = Fixture::start_with(&open_yaml("")).await;
    let alice = login(&client(), &f.url(""), "alice@test.example", PW).await;
    let cookie = format!("Cookie: {}", alice.cookie);
    let mut lines: Vec<&[u8]> = SPOOFS.to_vec();
    lines.push(cookie.as_bytes());
    let a = exchange(f.http, &request("GET", b"/api/echo/me", &host(&f), &lines)).await;
    // The app verifies the signature: 200 means the headers are the
    // gateway's own.
    assert_eq!(a.status, 200, "{}", a.text());
    let echo = a.json();
    for name in echoed_names(&echo).iter().filter(|n| reads_as_identity(n)) {
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
            "a client spelling reached the upstream: {name}"
        );
        assert_eq!(echoed(&echo, name).len(), 1, "{name} twice: {echo}");
    }
    assert_eq!(echoed(&echo, "x-guise-user"), ["u-alice"]);
    assert_eq!(echoed(&echo, "x-guise-roles"), ["user"]);
    assert_eq!(echoed(&echo, "x-guise-user-email"), ["alice@test.example"]);
    assert_eq!(echoed(&echo, "x-guise-session"), [alice.session.as_str()]);
    assert!(echoed(&echo, "x-guise-acting-user").is_empty(), "{echo}");
    assert!(echoed(&echo, "x-guise-signature")[0].starts_with("t="));
}

/// Cookie header lines in which a bad cookie sits beside the session
/// cookie (`TOK` is replaced with the token).
const BAD_NEIGHBOURS: &[&[u8]] = &[
    b"Cookie: junk=\xff\xfe; guise_session=TOK",
    b"Cookie: caf\xc3\xa9=cr\xc3\xa8me; guise_session=TOK; app=1",
    b"Cookie: =novalue; guise_session=short; guise_session=TOK",
    b"Cookie: \"quoted; guise_session=TOK",
    b"Cookie: ;;;; guise_session=TOK;;",
    b"Cookie: noequals; guise_session=TOK",
    b"Cookie: guise_session=; guise_session=TOK",
    b"Cookie: guise_session=\x80\x81; guise_session=TOK",
    b"Cookie: a\x80=\x81\r\nCookie: guise_session=TOK",
    b"Cookie: a=1,b=2; guise_session=TOK",
];

/// `line` with every `TOK` replaced by `tok`.
fn with_token(line: &[u8], tok: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.windows(3).position(|w| w == b"TOK") {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(tok.as_bytes());
        rest = &rest[i + 3..];
    }
    out.extend_from_slice(rest);
    out
}

#[tokio::test]
async fn a_malformed_or_non_ascii_cookie_never_hides_the_session_cookie() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let alice = login(&client(), &f.url(""), "alice@test.example", PW).await;
    let tok = token_of(&alice.cookie).to_string();
    for line in BAD_NEIGHBOURS {
        let what = String::from_utf8_lossy(line).into_owned();
        let bytes = with_token(line, &tok);
        let a = exchange(
            f.http,
            &request("GET", b"/api/echo/c", &host(&f), &[&bytes]),
        )
        .await;
        assert_eq!(a.status, 200, "{what}: {}", a.text());
        let echo = a.json();
        assert_eq!(echoed(&echo, "x-guise-user"), ["u-alice"], "{what}");
        assert!(!a.text().contains(&tok), "{what}: token forwarded: {echo}");
    }
}

#[tokio::test]
async fn the_session_cookie_is_never_forwarded_whatever_its_spacing_and_other_cookies_arrive_intact(
) {
    let f = Fixture::start_with(&open_yaml("")).await;
    let alice = login(&client(), &f.url(""), "alice@test.example", PW).await;
    let tok = token_of(&alice.cookie).to_string();
    let spellings = [
        format!("guise_session={tok}"),
        format!(" guise_session = {tok} "),
        format!("guise_session\t={tok}"),
        format!("\tguise_session\t=\t{tok}\t"),
        format!("GUISE_SESSION={tok}"),
        format!("Guise_Session={tok}"),
        "guise_session =x".to_string(),
        "guise_session=".to_string(),
        format!("__Host-guise_session={tok}"),
        "__HOST-GUISE_SESSION=x".to_string(),
        "guise_device=123.abc".to_string(),
        "guise_login_csrf=x".to_string(),
        "__Host-guise_device=x".to_string(),
    ];
    for spelled in &spellings {
        let line = format!("Cookie: app=1;{spelled};other=2");
        let a = exchange(
            f.http,
            &request("GET", b"/api/echo/c", &host(&f), &[line.as_bytes()]),
        )
        .await;
        assert_eq!(a.status, 200, "{spelled:?}: {}", a.text());
        let echo = a.json();
        assert_eq!(echoed(&echo, "cookie"), ["app=1; other=2"], "{spelled:?}");
        assert!(!a.text().contains(&tok), "{spelled:?}: {echo}");
    }
    // Several Cookie headers, non-ASCII neighbours: the others pass, the
    // session cookie does not.
    let a = exchange(
        f.http,
        &request(
            "GET",
            b"/api/echo/c",
            &host(&f),
            &[
                b"Cookie: a=1",
                format!("Cookie: n=\u{e9}t\u{e9}; {}; b=2", alice.cookie).as_bytes(),
                b"Cookie: c=\xff",
            ],
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let echo = a.json();
    assert_eq!(echoed(&echo, "x-guise-user"), ["u-alice"]);
    assert_eq!(
        echoed(&echo, "cookie"),
        ["a=1; n=\u{e9}t\u{e9}; b=2; c=\u{fffd}"]
    );
    assert!(!a.text().contains(&tok));
}

fn hosts_yaml() -> String {
    open_yaml("http:\n  allowed_hosts: [gw.test]\n")
}

#[tokio::test]
async fn a_host_not_in_allowed_hosts_gets_421_and_forwarded_host_is_the_validated_one() {
    let f = Fixture::start_with(&hosts_yaml()).await;
    for evil in [
        "evil.test",
        "EVIL.test:80",
        "gw.test.evil.test",
        "127.0.0.1",
    ] {
        let a = exchange(f.http, &request("GET", b"/api/echo/h", evil, &[])).await;
        let detail = refused(&a, 421, "misdirected_request", evil);
        assert!(
            detail.contains(&evil.to_ascii_lowercase()),
            "{evil}: {detail}"
        );
    }
    for (good, spoof) in [
        ("gw.test", &b"X-Forwarded-Host: evil.test"[..]),
        ("GW.test", b"x-forwarded-host: evil.test"),
        ("gw.test:8080", b"X-Forwarded-For: 6.6.6.6"),
    ] {
        let a = exchange(f.http, &request("GET", b"/api/echo/h", good, &[spoof])).await;
        assert_eq!(a.status, 200, "{good}: {}", a.text());
        let echo = a.json();
        assert_eq!(echoed(&echo, "x-forwarded-host"), [good], "{good}");
        assert_eq!(echoed(&echo, "x-forwarded-for"), ["127.0.0.1"], "{good}");
    }
    // An absolute URL must name the same, allowed, host (pingora refuses
    // the disagreement before the pipeline, with a bare 400).
    let a = exchange(
        f.http,
        &request("GET", b"http://evil.test/api/echo/h", "gw.test", &[]),
    )
    .await;
    assert_eq!(a.status, 400, "absolute URL naming evil.test: {}", a.text());
    // Naming evil.test in both: 421 like any other request for it.
    let a = exchange(
        f.http,
        &request("GET", b"http://evil.test/api/echo/h", "evil.test", &[]),
    )
    .await;
    refused(
        &a,
        421,
        "misdirected_request",
        "absolute URL and Host naming evil.test",
    );
    let a = exchange(
        f.http,
        &request("GET", b"http://gw.test/api/echo/h", "gw.test", &[]),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
}

#[tokio::test]
async fn a_malformed_or_repeated_host_is_refused_with_400() {
    for yaml in [hosts_yaml(), open_yaml("")] {
        let f = Fixture::start_with(&yaml).await;
        let bad: &[&[u8]] = &[
            b"GET /api/echo/h HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
            b"GET /api/echo/h HTTP/1.1\r\nHost: gw.test\r\nHost: evil.test\r\nConnection: close\r\n\r\n",
            b"GET /api/echo/h HTTP/1.1\r\nHost: gw.test\r\nHOST: gw.test\r\nConnection: close\r\n\r\n",
            b"GET /api/echo/h HTTP/1.1\r\nHost: gw.test@evil.test\r\nConnection: close\r\n\r\n",
            b"GET /api/echo/h HTTP/1.1\r\nHost: gw.test/evil\r\nConnection: close\r\n\r\n",
            b"GET /api/echo/h HTTP/1.1\r\nHost: gw.test:x\r\nConnection: close\r\n\r\n",
            b"GET /api/echo/h HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n",
            b"GET /api/echo/h HTTP/1.1\r\nHost: gw\xc3\xa9.test\r\nConnection: close\r\n\r\n",
            b"GET /api/echo/h HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
        ];
        for req in bad {
            let what = String::from_utf8_lossy(req).into_owned();
            let a = exchange(f.http, req).await;
            assert_eq!(a.status, 400, "{what}: {}", a.text());
        }
    }
}

/// Upstream-login mode with the echo endpoint as the app's login, so the
/// answer the client gets shows what guise sent the app.
fn echo_login_yaml() -> String {
    session_yaml(
        "auth:\n  mode: upstream\n  login_path: /api/echo/login\n  upstream:\n    user_id_json_pointer: /method\n",
    )
}

#[tokio::test]
async fn the_upstream_login_carries_no_gateway_cookie_no_identity_and_no_hop_by_hop_header() {
    let f = Fixture::start_with(&echo_login_yaml()).await;
    let h = host(&f);
    let form = b"username=someone%40test.example&password=x";
    let form_type: &[u8] = b"Content-Type: application/x-www-form-urlencoded";
    // A first login makes a real session token of this gateway.
    let first = exchange(
        f.http,
        &with_body("POST", b"/api/echo/login", &h, &[form_type], Some(form)),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let set = first
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with("guise_session="))
        .map(|(_, v)| v.split(';').next().unwrap_or("").to_string())
        .expect("a guise session from the upstream login");
    let tok = token_of(&set).to_string();

    let cookie = format!(
        "Cookie: app=1; {set}; guise_device=1.ab; guise_login_csrf=x; __Host-guise_session=y; GUISE_SESSION ={tok}; other=2"
    );
    let variants: Vec<Vec<&[u8]>> = vec![
        vec![
            b"Connection: keep-alive, X-Secret",
            b"X-Secret: 1",
            b"Keep-Alive: timeout=5",
            b"TE: trailers",
            b"Proxy-Connection: keep-alive",
            b"Proxy-Authorization: Basic eDp5",
            b"X_Guise_User: u-super",
            b"x-guise-roles: super_admin",
        ],
        vec![
            b"Connection: Upgrade, x-other-secret",
            b"Upgrade: websocket",
            b"X-Other-Secret: 2",
        ],
        vec![
            b"Connection: close,  X-Secret ,",
            b"x-secret: 3",
            b"Trailer: x",
        ],
    ];
    for extra in variants {
        let mut lines = vec![form_type, cookie.as_bytes()];
        lines.extend(extra.iter().copied());
        let what = format!(
            "{:?}",
            extra
                .iter()
                .map(|l| String::from_utf8_lossy(l))
                .collect::<Vec<_>>()
        );
        let a = exchange(
            f.http,
            &with_body("POST", b"/api/echo/login", &h, &lines, Some(form)),
        )
        .await;
        assert_eq!(a.status, 200, "{what}: {}", a.text());
        let echo = a.json();
        assert_eq!(echo["path"], "/api/echo/login", "{what}");
        assert_eq!(
            echo["body"],
            String::from_utf8_lossy(form).into_owned(),
            "{what}"
        );
        assert_eq!(echoed(&echo, "cookie"), ["app=1; other=2"], "{what}");
        assert!(!a.text().contains(&tok), "{what}: token forwarded: {echo}");
        for hop in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "upgrade",
            "proxy-connection",
            "proxy-authorization",
            "x-secret",
            "x-other-secret",
        ] {
            // pingora's own connection may say `keep-alive`/`close` for
            // itself; nothing the client sent may pass.
            let got = echoed(&echo, hop);
            let own = hop == "connection" && got.iter().all(|v| v == "keep-alive" || v == "close");
            assert!(
                got.is_empty() || own,
                "{what}: {hop} reached the app: {got:?}"
            );
        }
        assert_no_identity(&echo, &what);
        assert_eq!(echoed(&echo, "x-forwarded-for"), ["127.0.0.1"], "{what}");
    }
}

#[tokio::test]
async fn the_upstream_login_survives_expect_100_continue_and_forwards_no_expect() {
    let f = Fixture::start_with(&echo_login_yaml()).await;
    let h = host(&f);
    let form = b"username=someone%40test.example&password=x";
    for expect in [&b"Expect: 100-continue"[..], b"expect: 100-CONTINUE"] {
        let what = String::from_utf8_lossy(expect).into_owned();
        let a = exchange(
            f.http,
            &with_body(
                "POST",
                b"/api/echo/login",
                &h,
                &[b"Content-Type: application/x-www-form-urlencoded", expect],
                Some(form),
            ),
        )
        .await;
        assert_eq!(a.status, 200, "{what}: {}", a.text());
        let echo = a.json();
        assert!(echoed(&echo, "expect").is_empty(), "{what}: {echo}");
        assert_eq!(echo["body"], String::from_utf8_lossy(form).into_owned());
    }
    // A chunked form is read whole and sent on with its length.
    let a = exchange(
        f.http,
        b"POST /api/echo/login HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\na\r\nusername=a\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let echo = a.json();
    assert!(echoed(&echo, "transfer-encoding").is_empty(), "{echo}");
    assert_eq!(echoed(&echo, "content-length"), ["10"]);
}

#[tokio::test]
async fn a_json_login_with_expect_100_continue_is_answered() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let body = serde_json::json!({"username": "alice@test.example", "password": PW}).to_string();
    let a = exchange(
        f.http,
        &with_body(
            "POST",
            b"/_guise/login",
            &host(&f),
            &[b"Content-Type: application/json", b"Expect: 100-continue"],
            Some(body.as_bytes()),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
}

/// Headers an upstream reads as facts its proxy established (who the
/// client is, which host and scheme, which path), each as a client would
/// forge it, spelled as some upstream reads it.
const FORGED_PROXY_FACTS: &[&[u8]] = &[
    b"Forwarded: for=6.6.6.6;host=evil.test;proto=https",
    b"X-Real-IP: 6.6.6.6",
    b"X_Forwarded_For: 6.6.6.6",
    b"x_forwarded_host: evil.test",
    b"X-Forwarded_Proto: https",
    b"X-Forwarded-Port: 443",
    b"X-Forwarded-Prefix: /_guise",
    b"X-Forwarded-Server: evil.test",
    b"X-Original-URL: /_guise/admin/users",
    b"X-Rewrite-URL: /_guise/admin/users",
];

/// Which client-sent forwarding headers reached the upstream: any header
/// name an upstream would fold to one of the proxy's.
fn forged_at_upstream(echo: &Value) -> Vec<String> {
    let fold = |n: &str| -> String {
        n.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect()
    };
    echoed_names(echo)
        .into_iter()
        .filter(|n| {
            let f = fold(n);
            let own = ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"];
            (f.starts_with("x-forwarded-") && !own.contains(&n.as_str()))
                || ["forwarded", "x-real-ip", "x-original-url", "x-rewrite-url"]
                    .contains(&f.as_str())
        })
        .collect()
}

#[tokio::test]
async fn proxied_requests_carry_no_forged_forwarding_header_and_no_hop_by_hop_header() {
    let f = Fixture::start_with(&open_yaml("http:\n  allowed_hosts: [gw.test]\n")).await;
    let mut lines: Vec<&[u8]> = FORGED_PROXY_FACTS.to_vec();
    lines.extend_from_slice(&[
        b"Connection: close, X-Secret",
        b"X-Secret: 1",
        b"Keep-Alive: timeout=5",
        b"TE: trailers",
        b"Proxy-Authorization: Basic eDp5",
    ]);
    let a = exchange(f.http, &request("GET", b"/api/echo/fwd", "gw.test", &lines)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let echo = a.json();
    assert!(forged_at_upstream(&echo).is_empty(), "{echo}");
    assert_eq!(echoed(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed(&echo, "x-forwarded-host"), ["gw.test"]);
    assert_eq!(echoed(&echo, "x-forwarded-proto"), ["http"]);
    for hop in ["x-secret", "keep-alive", "te", "proxy-authorization"] {
        assert!(echoed(&echo, hop).is_empty(), "{hop}: {echo}");
    }
    // The upstream login sends the same facts only.
    let f = Fixture::start_with(&echo_login_yaml()).await;
    let mut lines: Vec<&[u8]> = FORGED_PROXY_FACTS.to_vec();
    lines.push(b"Content-Type: application/x-www-form-urlencoded");
    let a = exchange(
        f.http,
        &with_body(
            "POST",
            b"/api/echo/login",
            &host(&f),
            &lines,
            Some(b"username=x"),
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let echo = a.json();
    assert!(forged_at_upstream(&echo).is_empty(), "{echo}");
    assert_eq!(echoed(&echo, "x-forwarded-for"), ["127.0.0.1"]);
}

#[tokio::test]
async fn an_http_1_1_request_without_host_is_refused_and_http_1_0_is_served_without_one() {
    for yaml in [hosts_yaml(), open_yaml("")] {
        let f = Fixture::start_with(&yaml).await;
        for req in [
            &b"GET /api/echo/h HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
            b"GET http://gw.test/api/echo/h HTTP/1.1\r\nConnection: close\r\n\r\n",
        ] {
            let what = String::from_utf8_lossy(req).into_owned();
            let a = exchange(f.http, req).await;
            refused(&a, 400, "bad_host", &what);
        }
        // HTTP/1.0 may leave the Host out: the upstream then gets none
        // and no X-Forwarded-Host either.
        let a = exchange(f.http, b"GET /api/echo/h HTTP/1.0\r\n\r\n").await;
        assert_eq!(a.status, 200, "{}", a.text());
        let echo = a.json();
        assert!(echoed(&echo, "x-forwarded-host").is_empty(), "{echo}");
    }
}
