//! Login abuse: a flood of failed logins with huge usernames from many
//! addresses (class 5), more logins at once than password checks allowed
//! (6), and strangers failing logins in a user's name (7).

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::common::*;
use crate::support::login::*;
use crate::support::*;
use crate::wire::*;

/// A JSON login's raw bytes.
fn json_login(h: &str, username: &str, password: &str) -> Vec<u8> {
    let body = json!({"username": username, "password": password}).to_string();
    with_body(
        "POST",
        b"/_guise/login",
        h,
        &[b"Content-Type: application/json"],
        Some(body.as_bytes()),
    )
}

#[tokio::test]
async fn a_flood_of_failed_logins_with_huge_usernames_from_many_addresses_is_refused_never_500() {
    let f = Fixture::start_with(&session_yaml(
        "auth:\n  max_attempts_per_client: 2\n  password_checks: { max_concurrent: 2, queue_timeout_ms: 100 }\n",
    ))
    .await;
    let h = host(&f);
    // Usernames that fill the 64 KiB body limit, each different.
    let huge = |i: usize| format!("{i}-{}", "u".repeat(64 * 1024 - 64));
    let mut statuses = std::collections::BTreeMap::new();
    for round in 0..3u16 {
        let attempts = (0..60u16).map(|n| {
            let (f, h) = (&f, &h);
            async move {
                let ip = client_ip(50, n);
                let bytes = json_login(h, &huge(usize::from(round * 100 + n)), "wrong");
                exchange_from(ip, f.http, &bytes).await
            }
        });
        for a in join_all(attempts).await {
            assert!(
                [401, 429, 503].contains(&a.status),
                "a failed login got {}: {}",
                a.status,
                a.text()
            );
            if a.status != 401 {
                assert!(a.header("retry-after").is_some(), "{}", a.status);
            }
            *statuses.entry(a.status).or_insert(0) += 1;
        }
    }
    // The third round from each address is over its limit of two.
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 60,
        "{statuses:?}"
    );
    // One byte over the body limit is refused as too large.
    let over = format!(
        "{{\"username\":\"{}\",\"password\":\"x\"}}",
        "u".repeat(64 * 1024)
    );
    let a = exchange_from(
        client_ip(50, 999),
        f.http,
        &with_body(
            "POST",
            b"/_guise/login",
            &h,
            &[b"Content-Type: application/json"],
            Some(over.as_bytes()),
        ),
    )
    .await;
    refused(&a, 413, "body_too_large", "a body over the limit");
    // The gateway keeps serving: pages, and logins from a fresh address.
    let c = client_from(client_ip(50, 1000));
    login(&c, &f.url(""), "alice@test.example", PW).await;
    assert_eq!(c.get(f.url("/healthz")).send().await.unwrap().status(), 200);
    assert!(
        f.metric("guise_logins_total{result=\"limited\"}").await >= 60.0,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn logins_beyond_the_password_check_cap_get_503_with_retry_after_and_later_ones_work() {
    let f = Fixture::start_with(&session_yaml(
        "auth:\n  password_checks: { max_concurrent: 1, queue_timeout_ms: 50 }\n",
    ))
    .await;
    let h = host(&f);
    // Bursts from distinct addresses (so no attempt limit is reached)
    // until one is turned away; bounded by a deadline.
    let next_ip = std::cell::Cell::new(0u16);
    eventually(
        Duration::from_secs(60),
        "a 503 from the password cap",
        || {
            let burst: Vec<_> = (0..24)
                .map(|_| {
                    next_ip.set(next_ip.get() + 1);
                    (client_ip(60, next_ip.get()), next_ip.get())
                })
                .collect();
            let (f, h) = (&f, &h);
            async move {
                let logins = burst.into_iter().map(|(ip, n)| async move {
                    // Right and wrong passwords alike take a verification.
                    let (user, pw) = if n % 2 == 0 {
                        ("alice@test.example", PW)
                    } else {
                        ("bob@test.example", "wrong")
                    };
                    exchange_from(ip, f.http, &json_login(h, user, pw)).await
                });
                let mut busy = false;
                for a in join_all(logins).await {
                    assert!(
                        [200, 401, 503].contains(&a.status),
                        "{}: {}",
                        a.status,
                        a.text()
                    );
                    if a.status == 503 {
                        busy = true;
                        assert_eq!(a.json()["error"], "login_busy");
                        let retry: u64 = a
                            .header("retry-after")
                            .expect("Retry-After on 503")
                            .parse()
                            .unwrap();
                        assert!(retry >= 1);
                    }
                }
                busy.then_some(())
            }
        },
    )
    .await;
    assert!(f.metric("guise_password_checks_rejected_total").await >= 1.0);
    // Once the burst is over, a login works again.
    let c = client_from(client_ip(61, 1));
    eventually(
        Duration::from_secs(10),
        "a login after the burst",
        || async {
            let r = try_login(&c, &f.url(""), "alice@test.example", PW).await;
            (r.status() == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn failing_logins_in_a_users_name_lock_out_only_the_failing_address() {
    let f = Fixture::start_with(&session_yaml(
        "auth:\n  max_attempts_per_user: 3\n  max_attempts_per_client: 1000\n",
    ))
    .await;
    let base = f.url("");
    let stranger = client_from(client_ip(70, 1));
    for _ in 0..3 {
        let r = try_login(&stranger, &base, "bob@test.example", "guess").await;
        assert_eq!(r.status(), 401);
    }
    // Case and spacing do not make a new name to count under.
    for name in ["bob@test.example", "BOB@test.example", " bob@test.example "] {
        let r = try_login(&stranger, &base, name, PW).await;
        assert_eq!(r.status(), 429, "{name}");
        assert!(r.headers().get("retry-after").is_some());
    }
    // Bob, elsewhere, signs in; so does another user from the stranger's
    // address.
    let bob = client_from(client_ip(70, 2));
    login(&bob, &base, "bob@test.example", PW).await;
    login(&stranger, &base, "alice@test.example", PW).await;
    // Many strangers, each under the per-address limit, do not lock him out
    // either while the total limit is far away.
    for n in 10..20 {
        let c = client_from(client_ip(70, n));
        let r = try_login(&c, &base, "bob@test.example", "guess").await;
        assert_eq!(r.status(), 401);
    }
    login(
        &client_from(client_ip(70, 3)),
        &base,
        "bob@test.example",
        PW,
    )
    .await;
}

#[tokio::test]
async fn over_the_total_limit_a_browser_with_the_users_device_cookie_still_signs_in() {
    let f = Fixture::start_with(&session_yaml(
        "auth:\n  max_attempts_per_user: 100\n  max_attempts_per_user_total: 5\n",
    ))
    .await;
    let base = f.url("");
    // Bob's own browser signed in before: it holds his device cookie.
    let browser = client_from(client_ip(80, 1));
    let r = try_login(&browser, &base, "bob@test.example", PW).await;
    assert_eq!(r.status(), 200);
    let (device, set) = cookie_from(&r, "guise_device").expect("device cookie on login");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    // Alice's browser holds hers.
    let r = try_login(
        &client_from(client_ip(80, 2)),
        &base,
        "alice@test.example",
        PW,
    )
    .await;
    let (alice_device, _) = cookie_from(&r, "guise_device").unwrap();

    // A botnet fails in Bob's name from many addresses until the account
    // is limited.
    let mut limited = false;
    for n in 10..40 {
        let r = try_login(
            &client_from(client_ip(80, n)),
            &base,
            "bob@test.example",
            "guess",
        )
        .await;
        assert!([401, 429].contains(&r.status().as_u16()), "{}", r.status());
        if r.status() == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the per-user total limit never applied");

    let with_cookie = |c: &reqwest::Client, cookie: &str| {
        c.post(format!("{base}/_guise/login"))
            .header("cookie", cookie)
            .json(&json!({"username": "bob@test.example", "password": PW}))
            .send()
    };
    // A fresh client with the right password: limited.
    let fresh = client_from(client_ip(80, 100));
    assert_eq!(
        try_login(&fresh, &base, "bob@test.example", PW)
            .await
            .status(),
        429
    );
    // Someone else's device cookie, or a forged one, vouches for nothing.
    let other = client_from(client_ip(80, 101));
    assert_eq!(
        with_cookie(&other, &alice_device).await.unwrap().status(),
        429
    );
    let forged = format!("guise_device=9999999999.{}", "0".repeat(32));
    assert_eq!(with_cookie(&other, &forged).await.unwrap().status(), 429);
    // Bob's browser: signs in, with the name as he typed it before or not.
    let r = with_cookie(&browser, &device).await.unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = browser
        .post(format!("{base}/_guise/login"))
        .header("cookie", &device)
        .json(&json!({"username": "Bob@Test.Example", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The device cookie never reaches the app.
    let (session, _) = cookie_from(&r, "guise_session").expect("a session");
    let echo: serde_json::Value = browser
        .get(f.url("/api/echo/x"))
        .header("cookie", format!("{session}; {device}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed(&echo, "x-guise-user"), ["u-bob"], "{echo}");
    assert!(echoed(&echo, "cookie").is_empty(), "{echo}");
}
