//! End-to-end: logins, sessions, logout and the admin API through a real
//! gateway in front of the demo app (in-memory store). The app verifies
//! the identity signature on every request, so each successful call here
//! also proves the headers were signed.

mod support;

use serde_json::Value;
use support::login::*;
use support::*;

#[tokio::test]
async fn anonymous_browsers_are_sent_to_login_and_api_clients_get_401() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let r = c
        .get(f.url("/api/companies/co-100?x=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        "/login?next=%2Fapi%2Fcompanies%2Fco-100%3Fx%3D1"
    );

    let r = c.get(f.url("/api/companies/co-100")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "login_required");

    // Public routes pass without a session.
    assert_eq!(c.get(f.url("/healthz")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_json_login_sets_a_safe_cookie_and_signed_identity_reaches_the_app() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let base = f.url("");
    let alice = login(&c, &base, "Alice@Test.example", PW).await;
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(
            alice.set_cookie.contains(attr),
            "{attr}: {}",
            alice.set_cookie
        );
    }
    // Plain HTTP: no Secure and no __Host- prefix (they come with HTTPS).
    assert!(!alice.set_cookie.contains("Secure"));

    let r = get(&c, &base, &alice, "/api/echo/me").await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = get(&c, &base, &alice, "/api/echo/me").await;
    let echo: Value = r.json().await.unwrap();
    let h = &echo["headers"];
    assert_eq!(h["x-guise-user"][0], "u-alice");
    assert_eq!(h["x-guise-user-email"][0], "alice@test.example");
    assert_eq!(h["x-guise-roles"][0], "user");
    assert_eq!(h["x-guise-session"][0], alice.session);
    assert!(h["x-guise-signature"][0]
        .as_str()
        .unwrap()
        .starts_with("t="));

    // The session token is guise's secret: the app never sees it, while
    // the app's own cookies still reach it.
    assert!(h.get("cookie").is_none(), "{h}");
    let r = c
        .get(f.url("/api/echo/me"))
        .header("cookie", format!("app=1; {}", alice.cookie))
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["headers"]["cookie"], serde_json::json!(["app=1"]));

    // A client cannot add or replace identity headers of its own.
    let r = c
        .get(f.url("/api/echo/me"))
        .header("cookie", &alice.cookie)
        .header("x-guise-user", "u-super")
        .header("x-guise-roles", "super_admin")
        .send()
        .await
        .unwrap();
    let echo: Value = r.json().await.unwrap();
    assert_eq!(
        echo["headers"]["x-guise-user"],
        serde_json::json!(["u-alice"])
    );
    assert_eq!(
        echo["headers"]["x-guise-roles"],
        serde_json::json!(["user"])
    );

    let me: Value = get(&c, &base, &alice, "/_guise/session")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["id"], "u-alice");
    assert!(me["user"].get("password_hash").is_none());
}

#[tokio::test]
async fn the_json_login_refuses_forms_and_other_sites() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let r = c
        .post(f.url("/_guise/login"))
        .form(&[("username", "alice@test.example"), ("password", PW)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = c
        .post(f.url("/_guise/login"))
        .header("origin", "https://evil.test")
        .json(&serde_json::json!({"username": "alice@test.example", "password": PW}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let r = c
        .post(f.url("/_guise/login"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn wrong_password_unknown_user_and_disabled_user_get_the_same_answer() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let base = f.url("");
    let mut answers = Vec::new();
    for (user, pw) in [
        ("alice@test.example", "nope"),
        ("nobody@test.example", PW),
        ("off@test.example", PW),
    ] {
        let r = try_login(&c, &base, user, pw).await;
        assert!(r.headers().get("set-cookie").is_none());
        answers.push((r.status(), r.text().await.unwrap()));
    }
    assert_eq!(answers[0].0, 401);
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(
        f.metric("guise_logins_total{result=\"bad_credentials\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn attempts_are_limited_per_username_with_retry_after() {
    let f = Fixture::start_with(&session_yaml(
        "auth:\n  max_attempts_per_user: 3\n  attempt_window_seconds: 60\n",
    ))
    .await;
    let c = client();
    let base = f.url("");
    for _ in 0..3 {
        assert_eq!(
            try_login(&c, &base, "bob@test.example", "wrong")
                .await
                .status(),
            401
        );
    }
    // Even the right password is refused while limited.
    let r = try_login(&c, &base, "bob@test.example", PW).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another user from the same client is not affected by bob's limit.
    login(&c, &base, "alice@test.example", PW).await;
    assert!(f.metric("guise_logins_total{result=\"limited\"}").await >= 1.0);
}

#[tokio::test]
async fn attempts_are_limited_per_client_address() {
    let f = Fixture::start_with(&session_yaml("auth:\n  max_attempts_per_client: 4\n")).await;
    let c = client();
    let base = f.url("");
    for i in 0..4 {
        let r = try_login(&c, &base, &format!("guess{i}@test.example"), "x").await;
        assert_eq!(r.status(), 401);
    }
    assert_eq!(
        try_login(&c, &base, "alice@test.example", PW)
            .await
            .status(),
        429
    );
}

#[tokio::test]
async fn every_login_gets_a_fresh_token() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let base = f.url("");
    let first = login(&c, &base, "alice@test.example", PW).await;
    // Logging in again while presenting the old cookie does not reuse it.
    let r = c
        .post(f.url("/_guise/login"))
        .header("cookie", &first.cookie)
        .json(&serde_json::json!({"username": "alice@test.example", "password": PW}))
        .send()
        .await
        .unwrap();
    let (second, _) = cookie_from(&r, "guise_session").unwrap();
    assert_ne!(first.cookie, second);
    // A planted, never-issued token is worth nothing.
    let planted = format!("guise_session={}", "A".repeat(43));
    let r = c
        .get(f.url("/api/echo/x"))
        .header("cookie", planted)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_login_form_has_csrf_protection_and_only_redirects_on_site() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let page = c
        .get(f.url("/login?next=/api/echo/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let (csrf_cookie, set) = cookie_from(&page, "guise_login_csrf").unwrap();
    assert!(
        set.contains("SameSite=Strict") && set.contains("HttpOnly"),
        "{set}"
    );
    let html = page.text().await.unwrap();
    let token = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    // The asked-for page rides along in the form (HTML-escaped).
    let next = html
        .split("name=\"next\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(next.replace("&#x2f;", "/"), "/api/echo/after");

    let post = |form: Vec<(&'static str, String)>, cookie: Option<String>| {
        let mut rb = c.post(f.url("/login")).form(&form);
        if let Some(ck) = cookie {
            rb = rb.header("cookie", ck);
        }
        rb.send()
    };
    let good = |next: &str| {
        vec![
            ("username", "alice@test.example".to_string()),
            ("password", PW.to_string()),
            ("csrf_token", token.clone()),
            ("next", next.to_string()),
        ]
    };
    // No CSRF cookie (as from another site's form): refused.
    let r = post(good("/api/echo/after"), None).await.unwrap();
    assert_eq!(r.status(), 403);
    // Wrong token: refused.
    let mut bad = good("/");
    bad[2].1 = "forged".into();
    assert_eq!(
        post(bad, Some(csrf_cookie.clone())).await.unwrap().status(),
        403
    );

    // Right token: 303 to the asked-for same-origin page.
    let r = post(good("/api/echo/after"), Some(csrf_cookie.clone()))
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/api/echo/after");
    assert!(cookie_from(&r, "guise_session").is_some());

    // An off-site `next` is ignored: the browser goes to the default page.
    for evil in ["https://evil.test/", "//evil.test/x", "/\\evil.test"] {
        let r = post(good(evil), Some(csrf_cookie.clone())).await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/", "{evil}");
    }

    // A wrong password shows the form again with a message, 401.
    let mut wrong = good("/");
    wrong[1].1 = "bad".into();
    let r = post(wrong, Some(csrf_cookie)).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Wrong email or password"));
}

#[tokio::test]
async fn logout_needs_the_csrf_token_and_ends_the_session() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let base = f.url("");
    let bob = login(&c, &base, "bob@test.example", PW).await;

    let r = c
        .post(f.url("/_guise/logout"))
        .header("cookie", &bob.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "logout without token must be refused");
    let r = c
        .post(f.url("/_guise/logout"))
        .header("cookie", &bob.cookie)
        .header("x-csrf-token", &bob.csrf)
        .header("origin", "http://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "cross-site logout must be refused");
    assert_eq!(get(&c, &base, &bob, "/api/echo/x").await.status(), 200);

    let r = c
        .post(f.url("/_guise/logout"))
        .header("cookie", &bob.cookie)
        .header("x-csrf-token", &bob.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (cleared, full) = cookie_from(&r, "guise_session").unwrap();
    assert_eq!(cleared, "guise_session=");
    assert!(full.contains("Max-Age=0"));
    assert_eq!(get(&c, &base, &bob, "/api/echo/x").await.status(), 401);
}

#[tokio::test]
async fn admins_list_and_revoke_sessions_and_others_cannot() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let base = f.url("");
    let admin = login(&c, &base, "admin@test.example", PW).await;
    let alice1 = login(&c, &base, "alice@test.example", PW).await;
    let alice2 = login(&c, &base, "alice@test.example", PW).await;
    let alice3 = login(&c, &base, "alice@test.example", PW).await;

    // Not an admin: 403.
    let r = get(&c, &base, &alice1, "/_guise/admin/users/u-alice/sessions").await;
    assert_eq!(r.status(), 403);

    let r = get(&c, &base, &admin, "/_guise/admin/users/u-alice/sessions").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let refs: Vec<&str> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session"].as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), 3);
    assert!(refs.contains(&alice2.session.as_str()));

    let del = |path: String, csrf: Option<&str>| {
        let mut rb = c
            .delete(format!("{base}{path}"))
            .header("cookie", &admin.cookie);
        if let Some(t) = csrf {
            rb = rb.header("x-csrf-token", t);
        }
        rb.send()
    };
    // Without the admin's CSRF token: refused.
    let r = del(
        format!("/_guise/admin/users/u-alice/sessions/{}", alice2.session),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 403);

    let r = del(
        format!("/_guise/admin/users/u-alice/sessions/{}", alice2.session),
        Some(&admin.csrf),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(&c, &base, &alice2, "/api/echo/x").await.status(), 401);
    assert_eq!(get(&c, &base, &alice1, "/api/echo/x").await.status(), 200);

    // "Log out everywhere".
    let r = del(
        "/_guise/admin/users/u-alice/sessions".into(),
        Some(&admin.csrf),
    )
    .await
    .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["revoked"], 2);
    for s in [&alice1, &alice3] {
        assert_eq!(get(&c, &base, s, "/api/echo/x").await.status(), 401);
    }
    assert_eq!(get(&c, &base, &admin, "/api/echo/x").await.status(), 200);
}

#[tokio::test]
async fn admins_manage_users_but_only_super_admins_make_admins() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let base = f.url("");
    let admin = login(&c, &base, "admin@test.example", PW).await;
    let post = |who: &Signed, body: Value| {
        c.post(format!("{base}/_guise/admin/users"))
            .header("cookie", &who.cookie)
            .header("x-csrf-token", &who.csrf)
            .json(&body)
            .send()
    };
    let r = post(&admin, serde_json::json!({"id": "u-new", "name": "New", "email": "new@test.example", "password": "fresh pass", "attributes": {"Business Unit": "BU2"}})).await.unwrap();
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let newbie = login(&c, &base, "new@test.example", "fresh pass").await;
    let echo: Value = get(&c, &base, &newbie, "/api/echo/x")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["x-guise-user"][0], "u-new");
    assert_eq!(echo["headers"]["x-guise-user-email"][0], "new@test.example");

    // An edit shows in the identity headers of the next request of a
    // session that already had its headers prepared.
    let r = c
        .patch(format!("{base}/_guise/admin/users/u-new"))
        .header("cookie", &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .json(&serde_json::json!({"email": "renamed@test.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let echo: Value = get(&c, &base, &newbie, "/api/echo/x")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        echo["headers"]["x-guise-user-email"][0],
        "renamed@test.example"
    );

    let r = post(&admin, serde_json::json!({"id": "u-boss", "name": "Boss", "email": "boss@test.example", "roles": ["admin"]})).await.unwrap();
    assert_eq!(r.status(), 403);
    let sup = login(&c, &base, "super@test.example", PW).await;
    let r = post(&sup, serde_json::json!({"id": "u-boss", "name": "Boss", "email": "boss@test.example", "roles": ["admin"]})).await.unwrap();
    assert_eq!(r.status(), 201);

    // Disabling a user ends their sessions at once.
    let r = c
        .patch(format!("{base}/_guise/admin/users/u-new"))
        .header("cookie", &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .json(&serde_json::json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sessions_revoked"], 1);
    assert_eq!(get(&c, &base, &newbie, "/api/echo/x").await.status(), 401);
    assert_eq!(
        try_login(&c, &base, "new@test.example", "fresh pass")
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn upstream_mode_lets_the_app_check_the_password() {
    let yaml = session_yaml(
        "auth:\n  mode: upstream\n  upstream:\n    user_id_header: x-legacy-user-id\n    app_cookies: drop\n",
    )
    .replace("  - { id: u-bob,", "  - { id: legacy-user, name: Legacy, email: legacy@test.example }\n  - { id: u-bob,");
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    // The app's own login page is shown to anonymous users.
    let r = c
        .get(f.url("/login"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = c
        .post(f.url("/login"))
        .form(&[("username", "legacy-user"), ("password", "legacy")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the app's answer passes through");
    assert_eq!(r.headers()["location"], "/dashboard");
    let (cookie, _) = cookie_from(&r, "guise_session").expect("guise session");
    assert!(
        cookie_from(&r, "legacy_session").is_none(),
        "app cookie dropped"
    );
    let echo: Value = c
        .get(f.url("/api/echo/x"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["headers"]["x-guise-user"][0], "legacy-user");
    assert_eq!(
        echo["headers"]["x-guise-user-email"][0],
        "legacy@test.example"
    );

    let r = c
        .post(f.url("/login"))
        .form(&[("username", "legacy-user"), ("password", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(cookie_from(&r, "guise_session").is_none());
}

#[tokio::test]
async fn the_demo_app_refuses_identity_headers_that_guise_did_not_sign() {
    let f = Fixture::start_with(&session_yaml("")).await;
    // Straight to the app, bypassing the gateway, with forged headers.
    let r = client()
        .get(format!("http://{}/api/companies/co-100", f.upstream_addr))
        .header("x-guise-user", "u-super")
        .header("x-guise-signature", "t=1,v1=00")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
