//! Admin writes the directory refuses, over two Redis-backed nodes (class
//! 4), and what an admin (not a super admin) may not do (8).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::login::*;
use crate::support::redis::RedisServer;
use crate::support::*;

fn redis_yaml(url: &str) -> String {
    session_yaml(&format!(
        "sessions:\n  store: redis\n  redis:\n    url: {url}\n"
    ))
}

/// An admin API call by `who` with their CSRF token.
async fn call(
    c: &reqwest::Client,
    f: &Fixture,
    who: &Signed,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = c
        .request(method, f.url(path))
        .header("cookie", &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .header("accept", "application/json");
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn user_on(c: &reqwest::Client, f: &Fixture, who: &Signed, id: &str) -> (u16, Value) {
    call(
        c,
        f,
        who,
        reqwest::Method::GET,
        &format!("/_guise/admin/users/{id}"),
        None,
    )
    .await
}

/// Wait until `f`'s directory holds user `id` with `email`.
async fn wait_for_user(c: &reqwest::Client, f: &Fixture, who: &Signed, id: &str, email: &str) {
    eventually(
        Duration::from_secs(5),
        &format!("{id} as {email}"),
        || async {
            let (status, v) = user_on(c, f, who, id).await;
            (status == 200 && v["user"]["email"] == email).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_change_the_directory_refuses_is_answered_400_never_stored_and_later_changes_reach_every_node(
) {
    let redis = RedisServer::start();
    let yaml = redis_yaml(&redis.url());
    let a = Fixture::start_with(&yaml).await;
    let b = Fixture::start_with(&yaml).await;
    let c = client();
    let sup_a = login(&c, &a.url(""), "super@test.example", PW).await;
    let sup_b = login(&c, &b.url(""), "super@test.example", PW).await;
    let patch = reqwest::Method::PATCH;
    let post = reqwest::Method::POST;

    // Another user's email, however spelled, or no email at all.
    for email in [
        "alice@test.example",
        "ALICE@Test.Example",
        " alice@test.example ",
        "not-an-address",
        "bob @test.example",
        "",
    ] {
        let (status, v) = call(
            &c,
            &a,
            &sup_a,
            patch.clone(),
            "/_guise/admin/users/u-bob",
            Some(json!({"email": email})),
        )
        .await;
        assert_eq!(status, 400, "{email:?}: {v}");
        assert_eq!(v["error"], "bad_request", "{email:?}: {v}");
    }
    let (_, v) = call(
        &c,
        &a,
        &sup_a,
        patch.clone(),
        "/_guise/admin/users/u-bob",
        Some(json!({"email": "alice@test.example"})),
    )
    .await;
    assert!(
        v["detail"].as_str().unwrap().contains("alice@test.example"),
        "{v}"
    );
    // A new user whose email is taken, or whose id cannot travel in a header.
    for (id, email) in [
        ("u-dup", "alice@test.example"),
        ("u-dup2", "Bob@Test.example"),
        ("u bad", "bad@test.example"),
        ("u,bad", "bad2@test.example"),
    ] {
        let (status, v) = call(
            &c,
            &a,
            &sup_a,
            post.clone(),
            "/_guise/admin/users",
            Some(json!({"id": id, "name": "X", "email": email, "password": "some pass"})),
        )
        .await;
        assert_eq!(status, 400, "{id} {email}: {v}");
    }
    // An id that exists: a conflict, not an overwrite.
    let (status, _) = call(
        &c,
        &a,
        &sup_a,
        post.clone(),
        "/_guise/admin/users",
        Some(json!({"id": "u-alice", "name": "Eve", "email": "eve@test.example"})),
    )
    .await;
    assert_eq!(status, 409);

    // Nothing of it was stored.
    let stored = format!("{:?}", redis.command(&["HGETALL", "guise:users"]));
    for never in ["u-dup", "u bad", "u,bad", "Eve", "not-an-address"] {
        assert!(!stored.contains(never), "{never} stored: {stored}");
    }
    assert!(!stored.contains("u-bob"), "{stored}");
    for (f, who) in [(&a, &sup_a), (&b, &sup_b)] {
        let (_, v) = user_on(&c, f, who, "u-bob").await;
        assert_eq!(v["user"]["email"], "bob@test.example");
        assert_eq!(user_on(&c, f, who, "u-dup").await.0, 404);
        let (_, v) = user_on(&c, f, who, "u-alice").await;
        assert_eq!(v["user"]["name"], "Alice");
    }

    // A valid change afterwards reaches both nodes' directories, from
    // either node.
    let (status, v) = call(
        &c,
        &a,
        &sup_a,
        patch.clone(),
        "/_guise/admin/users/u-bob",
        Some(json!({"email": "bobby@test.example"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(&c, &b, &sup_b, post.clone(), "/_guise/admin/users", Some(json!({"id": "u-carol", "name": "Carol", "email": "carol@test.example", "password": "carol pass"}))).await;
    assert_eq!(status, 201, "{v}");
    // (Polled through the admin API: failed logins would count against
    // the attempt limits, which the nodes share through Redis.)
    for (f, who) in [(&a, &sup_a), (&b, &sup_b)] {
        wait_for_user(&c, f, who, "u-bob", "bobby@test.example").await;
        wait_for_user(&c, f, who, "u-carol", "carol@test.example").await;
        login(&c, &f.url(""), "bobby@test.example", PW).await;
        login(&c, &f.url(""), "carol@test.example", "carol pass").await;
        login(&c, &f.url(""), "alice@test.example", PW).await;
        assert_eq!(
            try_login(&c, &f.url(""), "bob@test.example", PW)
                .await
                .status(),
            401
        );
    }
    // A node started now builds its directory from the store alike (the
    // session lives in Redis, so it is good there too).
    let fresh = Fixture::start_with(&yaml).await;
    wait_for_user(&c, &fresh, &sup_a, "u-bob", "bobby@test.example").await;
    wait_for_user(&c, &fresh, &sup_a, "u-carol", "carol@test.example").await;
    login(&c, &fresh.url(""), "alice@test.example", PW).await;
    assert!(a.metric("guise_user_records_skipped_total").await == 0.0);
}

#[tokio::test]
async fn an_admin_may_not_list_or_revoke_a_super_admins_sessions() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let base = f.url("");
    let admin = login(&c, &base, "admin@test.example", PW).await;
    let sup = login(&c, &base, "super@test.example", PW).await;
    let get = reqwest::Method::GET;
    let delete = reqwest::Method::DELETE;
    let one = format!("/_guise/admin/users/u-super/sessions/{}", sup.session);
    for (method, path) in [
        (get.clone(), "/_guise/admin/users/u-super/sessions"),
        (get.clone(), "/_guise/admin/users/u-super/sessions/"),
        (get.clone(), "/_guise/admin/users/u-%73uper/sessions"),
        (delete.clone(), "/_guise/admin/users/u-super/sessions"),
        (delete.clone(), "/_guise/admin/users/u-%73uper/sessions/"),
        (delete.clone(), one.as_str()),
    ] {
        let (status, v) = call(&c, &f, &admin, method.clone(), path, None).await;
        assert_eq!(status, 403, "{method} {path}: {v}");
        assert_eq!(v["error"], "forbidden", "{method} {path}: {v}");
        assert!(!v.to_string().contains(&sup.session), "{v}");
    }
    // The super admin's session lives on.
    assert_eq!(get_json_status(&c, &base, &sup).await, 200);
    // The admin may still see their own sessions, the super admin theirs
    // and the admin's.
    let (status, _) = call(
        &c,
        &f,
        &admin,
        get.clone(),
        "/_guise/admin/users/u-admin/sessions",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = call(
        &c,
        &f,
        &sup,
        get.clone(),
        "/_guise/admin/users/u-admin/sessions",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &c,
        &f,
        &sup,
        delete,
        "/_guise/admin/users/u-admin/sessions",
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(get_json_status(&c, &base, &admin).await, 401);
}

async fn get_json_status(c: &reqwest::Client, base: &str, who: &Signed) -> u16 {
    get(c, base, who, "/api/echo/alive").await.status().as_u16()
}

#[tokio::test]
async fn granting_or_revoking_can_impersonate_is_a_super_admins_right_by_default() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let c = client();
    let base = f.url("");
    let admin = login(&c, &base, "admin@test.example", PW).await;
    let sup = login(&c, &base, "super@test.example", PW).await;
    let patch = reqwest::Method::PATCH;
    let post = reqwest::Method::POST;
    for body in [
        json!({"can_impersonate": true}),
        json!({"can_impersonate": true, "name": "Bobbed"}),
    ] {
        let (status, v) = call(
            &c,
            &f,
            &admin,
            patch.clone(),
            "/_guise/admin/users/u-bob",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 403, "{body}: {v}");
    }
    let (_, v) = user_on(&c, &f, &admin, "u-bob").await;
    assert_eq!(v["user"]["can_impersonate"], false, "{v}");
    assert_eq!(v["user"]["name"], "Bob", "{v}");
    let (status, v) = call(&c, &f, &admin, post.clone(), "/_guise/admin/users", Some(json!({"id": "u-imp", "name": "Imp", "email": "imp@test.example", "can_impersonate": true}))).await;
    assert_eq!(status, 403, "{v}");
    assert_eq!(user_on(&c, &f, &admin, "u-imp").await.0, 404);
    // Leaving it as it is stays allowed.
    let (status, v) = call(
        &c,
        &f,
        &admin,
        patch.clone(),
        "/_guise/admin/users/u-bob",
        Some(json!({"can_impersonate": false, "name": "Robert"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");

    // The super admin grants it; the admin may not take it back.
    let (status, v) = call(
        &c,
        &f,
        &sup,
        patch.clone(),
        "/_guise/admin/users/u-bob",
        Some(json!({"can_impersonate": true})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &c,
        &f,
        &admin,
        patch.clone(),
        "/_guise/admin/users/u-bob",
        Some(json!({"can_impersonate": false})),
    )
    .await;
    assert_eq!(status, 403, "{v}");
    let (_, v) = user_on(&c, &f, &admin, "u-bob").await;
    assert_eq!(v["user"]["can_impersonate"], true, "{v}");
}

#[tokio::test]
async fn admins_may_grant_can_impersonate_when_the_configuration_says_so() {
    let f = Fixture::start_with(&session_yaml(
        "admin:\n  admins_may_grant_impersonation: true\n",
    ))
    .await;
    let c = client();
    let admin = login(&c, &f.url(""), "admin@test.example", PW).await;
    let (status, v) = call(
        &c,
        &f,
        &admin,
        reqwest::Method::PATCH,
        "/_guise/admin/users/u-bob",
        Some(json!({"can_impersonate": true})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["user"]["can_impersonate"], true, "{v}");
    let (status, v) = call(&c, &f, &admin, reqwest::Method::POST, "/_guise/admin/users", Some(json!({"id": "u-imp", "name": "Imp", "email": "imp@test.example", "can_impersonate": true}))).await;
    assert_eq!(status, 201, "{v}");
    // Still no admin rights by this route, nor the super admin's sessions.
    let (status, _) = call(
        &c,
        &f,
        &admin,
        reqwest::Method::PATCH,
        "/_guise/admin/users/u-bob",
        Some(json!({"roles": ["admin"]})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &c,
        &f,
        &admin,
        reqwest::Method::GET,
        "/_guise/admin/users/u-super/sessions",
        None,
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_bad_stored_record_is_skipped_and_counted_and_later_changes_still_reach_every_node() {
    let redis = RedisServer::start();
    let yaml = redis_yaml(&redis.url());
    let a = Fixture::start_with(&yaml).await;
    let b = Fixture::start_with(&yaml).await;
    let c = client();
    // Records the directory refuses, as an older version or a race between
    // two nodes could have left them: a user claiming Alice's email, an
    // edit of Bob claiming it too, an id no header can carry, and junk.
    for (id, record) in [
        (
            "u-evil",
            json!({"id": "u-evil", "name": "Evil", "email": "alice@test.example"}).to_string(),
        ),
        (
            "u-bob",
            json!({"id": "u-bob", "name": "Bob", "email": "ALICE@test.example"}).to_string(),
        ),
        (
            "u bad",
            json!({"id": "u bad", "name": "Bad", "email": "bad@test.example"}).to_string(),
        ),
        ("u-junk", "not json".to_string()),
    ] {
        redis.command(&["HSET", "guise:users", id, &record]);
    }
    let sup_a = login(&c, &a.url(""), "super@test.example", PW).await;
    let (status, v) = call(&c, &a, &sup_a, reqwest::Method::POST, "/_guise/admin/users", Some(json!({"id": "u-dave", "name": "Dave", "email": "dave@test.example", "password": "dave pass"}))).await;
    assert_eq!(status, 201, "{v}");
    let sup_b = login(&c, &b.url(""), "super@test.example", PW).await;
    for (f, who) in [(&a, &sup_a), (&b, &sup_b)] {
        wait_for_user(&c, f, who, "u-dave", "dave@test.example").await;
        eventually(Duration::from_secs(5), "bad records counted", || async {
            (f.metric("guise_user_records_skipped_total").await >= 3.0).then_some(())
        })
        .await;
        // Alice keeps her email; Bob falls back to the file's version.
        login(&c, &f.url(""), "dave@test.example", "dave pass").await;
        login(&c, &f.url(""), "alice@test.example", PW).await;
        login(&c, &f.url(""), "bob@test.example", PW).await;
        assert_eq!(user_on(&c, f, who, "u-evil").await.0, 404);
    }
    // A node started now skips them alike and carries on.
    let fresh = Fixture::start_with(&yaml).await;
    wait_for_user(&c, &fresh, &sup_a, "u-dave", "dave@test.example").await;
    login(&c, &fresh.url(""), "alice@test.example", PW).await;
}
