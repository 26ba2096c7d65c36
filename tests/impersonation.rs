//! End-to-end: an admin views the app as a partner user ("Login as Partner
//! User") through a gateway running the demo's configuration in front of
//! the demo app, and comes back. Who may impersonate whom, the revocation
//! of the admin's other sessions, what the upstream is told, the return,
//! expiry, privacy and the metrics are checked over real HTTP.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::login::*;
use support::redis::RedisServer;
use support::*;

/// The demo configuration with `impersonation.max_minutes` replaced.
fn with_max_minutes(yaml: String, minutes: &str) -> String {
    yaml.replace(
        "  max_minutes: 60\n",
        &format!("  max_minutes: {minutes}\n"),
    )
}

/// `POST /_guise/impersonate` as `who` with a JSON body.
async fn impersonate(
    c: &reqwest::Client,
    base: &str,
    who: &Signed,
    body: Value,
) -> reqwest::Response {
    c.post(format!("{base}/_guise/impersonate"))
        .header("cookie", &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The signed-in state a response's cookie gives, read back from
/// `/_guise/session`.
async fn signed_from(c: &reqwest::Client, base: &str, r: &reqwest::Response) -> Signed {
    let (cookie, set_cookie) = cookie_from(r, "guise_session").expect("a session cookie is set");
    let v: Value = c
        .get(format!("{base}/_guise/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Signed {
        cookie,
        set_cookie,
        csrf: v["csrf_token"].as_str().expect("signed in").to_string(),
        session: v["session"].as_str().unwrap().to_string(),
    }
}

async fn whoami(c: &reqwest::Client, base: &str, who: &Signed) -> (u16, Value) {
    let r = get(c, base, who, "/_guise/session").await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn stop(c: &reqwest::Client, base: &str, who: &Signed) -> reqwest::Response {
    c.post(format!("{base}/_guise/impersonate/stop"))
        .header("cookie", &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

async fn refused_with(r: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(r.status(), status);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], code, "{v}");
    v["detail"].as_str().unwrap_or_default().to_string()
}

/// Start, every other session of the admin ended, the app told both
/// users, and back to the starting page as the admin.
async fn start_and_stop(f: &Fixture) {
    let c = client();
    let base = f.url("");
    let other_browser = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    assert_eq!(whoami(&c, &base, &other_browser).await.0, 200);

    let r = impersonate(
        &c,
        &base,
        &ada,
        json!({"user": "u-globex-gia", "return_to": "/companies?sort=arr", "reason": "ticket 4711"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let gia = signed_from(&c, &base, &r).await;
    assert_ne!(gia.cookie, ada.cookie, "a new token, never the admin's");
    let (_, me) = whoami(&c, &base, &gia).await;
    assert_eq!(me["user"]["id"], "u-globex-gia");
    assert_eq!(me["impersonator"]["id"], "u-admin");

    // The admin's own session and the one in the other browser are over.
    assert_eq!(whoami(&c, &base, &ada).await.0, 401);
    assert_eq!(whoami(&c, &base, &other_browser).await.0, 401);

    // The app is told the partner user and the admin, signed together, and
    // the partner rules apply as to Gia herself.
    let r = get(&c, &base, &gia, "/api/companies/co-109").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["identity"]["x-guise-user"], "u-globex-gia", "{v}");
    assert_eq!(v["identity"]["x-guise-impersonator"], "u-admin", "{v}");
    assert_eq!(v["identity"]["x-guise-partner"], "p-globex", "{v}");
    assert_eq!(
        get(&c, &base, &gia, "/api/companies/co-106").await.status(),
        403
    );

    // No impersonation inside an impersonation.
    let r = impersonate(&c, &base, &gia, json!({"user": "u-acme-anna"})).await;
    refused_with(r, 409, "already_impersonating").await;

    // Back as the admin, without a password, at the page they came from.
    let r = stop(&c, &base, &gia).await;
    assert_eq!(r.status(), 200);
    let back = signed_from(&c, &base, &r).await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["restored"], true);
    assert_eq!(v["location"], "/companies?sort=arr");
    let (_, me) = whoami(&c, &base, &back).await;
    assert_eq!(me["user"]["id"], "u-admin");
    assert!(me.get("impersonator").is_none(), "{me}");
    assert_eq!(
        whoami(&c, &base, &gia).await.0,
        401,
        "the impersonation session ended"
    );

    // The audit has every step under the admin, newest first.
    let v: Value = eventually(Duration::from_secs(5), "the audit is written", || async {
        let v: Value = get(&c, &base, &back, "/_guise/admin/audit?impersonator=u-admin")
            .await
            .json()
            .await
            .unwrap();
        let events: Vec<&str> = v["entries"]
            .as_array()?
            .iter()
            .filter_map(|e| e["event"].as_str())
            .collect();
        (events.contains(&"stop") && events.last() == Some(&"start")).then_some(v.clone())
    })
    .await;
    let entries = v["entries"].as_array().unwrap();
    let start = entries.last().unwrap();
    assert_eq!(start["user"], "u-globex-gia");
    assert_eq!(start["reason"], "ticket 4711");
    assert_eq!(start["method"], "POST");
    assert_eq!(start["path"], "/_guise/impersonate");
    let request = entries
        .iter()
        .find(|e| e["event"] == "request" && e["path"] == "/api/companies/co-106")
        .expect("the refused request is audited too");
    assert_eq!(request["status"], 403);
    assert_eq!(request["session"], gia.session.as_str());
    let refused = entries
        .iter()
        .find(|e| e["event"] == "refusal")
        .expect("refusal audited");
    assert_eq!(refused["status"], 409);
    // Filters: a user nobody impersonated has no entries.
    let v: Value = get(&c, &base, &back, "/_guise/admin/audit?user=u-acme-anna")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["entries"], json!([]), "{v}");
    let r = get(&c, &base, &back, "/_guise/admin/audit?colour=red").await;
    assert_eq!(r.status(), 400);
    // Only admins read it.
    let anna = login(&c, &base, "anna@acme.test", DEMO_PW).await;
    assert_eq!(
        get(&c, &base, &anna, "/_guise/admin/audit").await.status(),
        403
    );

    // The metrics name the impersonation, never a login of Gia's.
    let m = f.metrics_text().await;
    assert_eq!(
        metric_value(&m, "guise_impersonations_total{event=\"start\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&m, "guise_impersonations_total{event=\"stop\"}"),
        1.0
    );
    assert!(
        metric_value(
            &m,
            "guise_impersonated_requests_total{status_class=\"2xx\"}"
        ) >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn an_admin_views_the_app_as_a_partner_user_and_comes_back() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    start_and_stop(&f).await;
}

#[tokio::test]
async fn an_admin_views_the_app_as_a_partner_user_and_comes_back_over_redis() {
    let redis = RedisServer::start();
    let f = Fixture::start_with(&demo_yaml(&redis_store(&redis.url()), "")).await;
    start_and_stop(&f).await;
}

#[tokio::test]
async fn every_refused_target_and_caller_gets_a_reason() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    for (target, status, code) in [
        ("u-super", 403, "target_not_allowed"),
        ("u-admin", 403, "target_not_allowed"),
        ("u-acme-vera", 403, "no_full_licence"),
        ("u-bu1", 403, "target_not_allowed"),
        ("u-nobody", 404, "not_found"),
    ] {
        let r = impersonate(&c, &base, &ada, json!({"user": target})).await;
        refused_with(r, status, code).await;
    }
    // An admin without can_impersonate, and a partner user, may not.
    let sam = login(&c, &base, "super@demo.test", DEMO_PW).await;
    let r = impersonate(&c, &base, &sam, json!({"user": "u-acme-anna"})).await;
    refused_with(r, 403, "not_allowed_to_impersonate").await;
    let anna = login(&c, &base, "anna@acme.test", DEMO_PW).await;
    let r = impersonate(&c, &base, &anna, json!({"user": "u-acme-arlo"})).await;
    refused_with(r, 403, "not_allowed_to_impersonate").await;

    // Without the CSRF token, or from another site: refused, nothing changes.
    let r = c
        .post(f.url("/_guise/impersonate"))
        .header("cookie", &ada.cookie)
        .json(&json!({"user": "u-acme-anna"}))
        .send()
        .await
        .unwrap();
    refused_with(r, 403, "csrf").await;
    let r = c
        .post(f.url("/_guise/impersonate"))
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .header("origin", "https://evil.test")
        .json(&json!({"user": "u-acme-anna"}))
        .send()
        .await
        .unwrap();
    refused_with(r, 403, "csrf").await;
    assert_eq!(
        whoami(&c, &base, &ada).await.0,
        200,
        "the admin is still signed in"
    );

    // Anonymous callers.
    let r = c
        .post(f.url("/_guise/impersonate"))
        .json(&json!({"user": "u-acme-anna"}))
        .send()
        .await
        .unwrap();
    refused_with(r, 401, "login_required").await;
    // Stop without an impersonation.
    let r = stop(&c, &base, &ada).await;
    refused_with(r, 409, "not_impersonating").await;

    let m = f.metrics_text().await;
    assert_eq!(
        metric_value(
            &m,
            "guise_impersonation_refusals_total{reason=\"target_not_allowed\"}"
        ),
        3.0
    );
    assert_eq!(
        metric_value(&m, "guise_impersonations_total{event=\"start\"}"),
        0.0
    );
}

#[tokio::test]
async fn access_portal_account_enters_as_the_partners_primary_user() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = impersonate(&c, &base, &ada, json!({"partner": "p-acme"})).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let anna = signed_from(&c, &base, &r).await;
    assert_eq!(
        whoami(&c, &base, &anna).await.1["user"]["id"],
        "u-acme-anna"
    );
}

#[tokio::test]
async fn a_browser_form_post_goes_to_the_partner_view_and_back_to_the_start() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = c
        .post(f.url("/_guise/impersonate"))
        .header("cookie", &ada.cookie)
        .header("accept", "text/html")
        .header("referer", f.url("/companies/co-109"))
        .form(&[("user", "u-globex-gia"), ("csrf_token", ada.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let gia = signed_from(&c, &base, &r).await;
    let r = c
        .post(f.url("/_guise/impersonate/stop"))
        .header("cookie", &gia.cookie)
        .header("accept", "text/html")
        .form(&[("csrf_token", gia.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/companies/co-109",
        "the Referer it started from"
    );
    let back = signed_from(&c, &base, &r).await;
    assert_eq!(whoami(&c, &base, &back).await.1["user"]["id"], "u-admin");
}

#[tokio::test]
async fn the_maximum_duration_ends_the_impersonation_on_the_next_request_and_says_so() {
    let f = Fixture::start_with(&with_max_minutes(demo_yaml(MEMORY, ""), "0.05")).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = impersonate(
        &c,
        &base,
        &ada,
        json!({"user": "u-globex-gia", "return_to": "/reports"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let gia = signed_from(&c, &base, &r).await;
    assert_eq!(
        get(&c, &base, &gia, "/api/companies/co-109").await.status(),
        200
    );

    // Three seconds later the next request is not served as either user.
    let r = eventually(
        Duration::from_secs(10),
        "the impersonation expires",
        || async {
            let r = get(&c, &base, &gia, "/api/companies/co-109").await;
            (r.status() == 409).then_some(r)
        },
    )
    .await;
    let back = signed_from(&c, &base, &r).await;
    let detail = refused_with(r, 409, "impersonation_expired").await;
    assert!(detail.contains("maximum duration"), "{detail}");
    assert!(detail.contains("signed in as yourself again"), "{detail}");
    assert_eq!(whoami(&c, &base, &back).await.1["user"]["id"], "u-admin");
    assert_eq!(whoami(&c, &base, &gia).await.0, 401);
    assert_eq!(
        f.metric("guise_impersonations_total{event=\"expiry\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn an_admin_who_lost_the_right_meanwhile_goes_to_the_login_page() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = impersonate(&c, &base, &ada, json!({"user": "u-globex-gia"})).await;
    let gia = signed_from(&c, &base, &r).await;

    let sam = login(&c, &base, "super@demo.test", DEMO_PW).await;
    let r = c
        .patch(f.url("/_guise/admin/users/u-admin"))
        .header("cookie", &sam.cookie)
        .header("x-csrf-token", &sam.csrf)
        .json(&json!({"can_impersonate": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // No silent return: the next request ends the impersonation and the
    // admin signs in again; a browser is sent to the login page.
    let r = eventually(
        Duration::from_secs(5),
        "the change reaches the session",
        || async {
            let r = get(&c, &base, &gia, "/api/companies/co-109").await;
            (r.status() == 401).then_some(r)
        },
    )
    .await;
    let cleared = cookie_from(&r, "guise_session").expect("cookie cleared").1;
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let detail = refused_with(r, 401, "impersonation_ended").await;
    assert!(detail.contains("you may no longer impersonate"), "{detail}");
    assert_eq!(whoami(&c, &base, &gia).await.0, 401);
    assert_eq!(
        f.metric("guise_impersonations_total{event=\"end\"}").await,
        1.0
    );
}

#[tokio::test]
async fn an_admin_disabled_meanwhile_is_not_served_as_the_partner_user_either() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = impersonate(&c, &base, &ada, json!({"user": "u-globex-gia"})).await;
    let gia = signed_from(&c, &base, &r).await;
    let sam = login(&c, &base, "super@demo.test", DEMO_PW).await;
    let r = c
        .patch(f.url("/_guise/admin/users/u-admin"))
        .header("cookie", &sam.cookie)
        .header("x-csrf-token", &sam.csrf)
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status = get(&c, &base, &gia, "/api/companies/co-109").await.status();
    assert_eq!(status, 401);
}

#[tokio::test]
async fn contacts_and_leads_stay_hidden_from_an_impersonator_and_exports_are_blocked() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    // Gia herself sees her partner's contacts.
    let own = login(&c, &base, "gia@globex.test", DEMO_PW).await;
    let v: Value = get(&c, &base, &own, "/api/contacts")
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["ct-10", "ct-11", "ct-12"], "{v}");
    assert_eq!(
        get(&c, &base, &own, "/api/contacts/ct-10").await.status(),
        200
    );

    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = impersonate(&c, &base, &ada, json!({"user": "u-globex-gia"})).await;
    let gia = signed_from(&c, &base, &r).await;
    // The list comes without its records.
    let r = get(&c, &base, &gia, "/api/contacts").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"], json!([]), "{v}");
    // A single record is not found; a page is a notice.
    let r = get(&c, &base, &gia, "/api/contacts/ct-10").await;
    refused_with(r, 404, "hidden_while_impersonating").await;
    let r = c
        .get(f.url("/contacts"))
        .header("cookie", &gia.cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("hidden while viewing the app as another user"),
        "{page}"
    );
    assert!(!page.contains("Jules Ferreira"));
    // Exports are refused with the reason.
    let r = get(&c, &base, &gia, "/api/contacts/export").await;
    let detail = refused_with(r, 403, "export_blocked_while_impersonating").await;
    assert!(detail.contains("exports are disabled"), "{detail}");
}

#[tokio::test]
async fn an_admin_lists_impersonations_in_progress_and_ends_one() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = impersonate(
        &c,
        &base,
        &ada,
        json!({"user": "u-globex-gia", "reason": "ticket 9"}),
    )
    .await;
    let gia = signed_from(&c, &base, &r).await;

    let sam = login(&c, &base, "super@demo.test", DEMO_PW).await;
    let v: Value = get(&c, &base, &sam, "/_guise/admin/impersonations")
        .await
        .json()
        .await
        .unwrap();
    let list = v["impersonations"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    assert_eq!(list[0]["impersonator"]["id"], "u-admin");
    assert_eq!(list[0]["user"]["id"], "u-globex-gia");
    assert_eq!(list[0]["reason"], "ticket 9");
    let reference = list[0]["session"].as_str().unwrap().to_string();
    assert_eq!(reference, gia.session);
    assert_eq!(f.metric("guise_impersonations_active").await, 1.0);

    // The impersonator cannot list them: they are not an admin as Gia.
    let r = get(&c, &base, &gia, "/_guise/admin/impersonations").await;
    assert_eq!(r.status(), 403);

    let r = c
        .post(f.url(&format!("/_guise/admin/impersonations/{reference}/end")))
        .header("cookie", &sam.cookie)
        .header("x-csrf-token", &sam.csrf)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(whoami(&c, &base, &gia).await.0, 401);
    assert_eq!(f.metric("guise_impersonations_active").await, 0.0);
}

#[tokio::test]
async fn starting_on_one_node_signs_the_admin_out_on_another_at_once() {
    let (_redis, a, b) = demo_nodes_on_redis().await;
    let c = client();
    let on_a = login(&c, &a.url(""), "admin@demo.test", DEMO_PW).await;
    // Cached on node A.
    assert_eq!(whoami(&c, &a.url(""), &on_a).await.0, 200);
    let on_b = login(&c, &b.url(""), "admin@demo.test", DEMO_PW).await;
    let r = impersonate(&c, &b.url(""), &on_b, json!({"user": "u-globex-gia"})).await;
    assert_eq!(r.status(), 200);
    let gia = signed_from(&c, &b.url(""), &r).await;
    eventually(
        Duration::from_secs(2),
        "node A drops the admin's session",
        || async { (whoami(&c, &a.url(""), &on_a).await.0 == 401).then_some(()) },
    )
    .await;
    // The impersonation session works on node A too.
    let (_, me) = whoami(&c, &a.url(""), &gia).await;
    assert_eq!(me["impersonator"]["id"], "u-admin");
}

/// Redis goes away in the middle of an impersonation: requests go on from
/// the session cache while the audit buffers their records, and are refused
/// (503) once the buffer is full, never served unaudited. When Redis is
/// back, the buffered records reach the stream and requests are served
/// again.
#[tokio::test]
async fn with_redis_gone_impersonated_requests_are_buffered_then_refused_never_unaudited() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    let extra = "";
    let yaml = demo_yaml(&redis_store(&redis.url()), extra).replace(
        "  audit:\n    file: guise-demo-audit.jsonl\n",
        "  audit:\n    buffer: 3\n",
    );
    assert!(yaml.contains("buffer: 3"), "demo.yaml changed shape");
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = impersonate(&c, &base, &ada, json!({"user": "u-globex-gia"})).await;
    let gia = signed_from(&c, &base, &r).await;
    assert_eq!(
        get(&c, &base, &gia, "/api/companies/co-109").await.status(),
        200
    );

    // Everything so far is written (the writer lets records gather for a
    // moment first), so the buffer is empty when Redis goes.
    eventually(
        Duration::from_secs(5),
        "the audit buffer empties",
        || async { (f.metric("guise_audit_buffered").await == 0.0).then_some(()) },
    )
    .await;
    redis.kill();
    // Served from the session cache while the buffer takes the records;
    // then refused.
    let mut served = 0;
    let refusal = loop {
        let r = get(&c, &base, &gia, "/api/companies/co-110").await;
        match r.status().as_u16() {
            200 => served += 1,
            503 => break r,
            other => panic!("unexpected {other}"),
        }
        assert!(served <= 3, "more requests served than the buffer holds");
    };
    let v: Value = refusal.json().await.unwrap();
    assert_eq!(v["error"], "audit_unavailable", "{v}");
    assert!(served >= 1, "the session cache serves while Redis is away");
    assert!(f.metric("guise_audit_buffered").await >= 1.0);

    // Redis comes back empty (the sessions went with it): the buffered
    // records are written, and the admin reads them after signing in.
    let _redis = RedisServer::start_on(port);
    let sam = eventually(Duration::from_secs(15), "sign-in works again", || async {
        let r = try_login(&c, &base, "super@demo.test", DEMO_PW).await;
        if r.status() != 200 {
            return None;
        }
        let (cookie, set_cookie) = cookie_from(&r, "guise_session")?;
        let v: Value = r.json().await.ok()?;
        Some(Signed {
            cookie,
            set_cookie,
            csrf: v["csrf_token"].as_str()?.to_string(),
            session: v["session"].as_str()?.to_string(),
        })
    })
    .await;
    eventually(
        Duration::from_secs(10),
        "the buffered records are written",
        || async {
            let v: Value = get(
                &c,
                &base,
                &sam,
                "/_guise/admin/audit?user=u-globex-gia&limit=100",
            )
            .await
            .json()
            .await
            .ok()?;
            let ok = v["entries"]
                .as_array()?
                .iter()
                .filter(|e| e["path"] == "/api/companies/co-110" && e["status"] == 200)
                .count();
            (ok == served).then_some(())
        },
    )
    .await;
    assert_eq!(f.metric("guise_audit_buffered").await, 0.0);
}

/// GET `path` as a browser navigation would.
async fn navigate(c: &reqwest::Client, base: &str, who: &Signed, path: &str) -> reqwest::Response {
    c.get(format!("{base}{path}"))
        .header("cookie", &who.cookie)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pages_carry_the_tab_script_and_impersonated_pages_the_banner() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = navigate(&c, &base, &ada, "/companies").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-length").is_none());
    let page = r.text().await.unwrap();
    let script = format!("data-session=\"{}\"", ada.session);
    assert!(
        page.contains("/_guise/tab.js") && page.contains(&script),
        "{page}"
    );
    assert!(!page.contains("data-guise-banner"));
    assert!(
        page.trim_end().ends_with("</html>"),
        "the snippet goes inside the body"
    );

    let r = impersonate(&c, &base, &ada, json!({"user": "u-globex-gia"})).await;
    let gia = signed_from(&c, &base, &r).await;
    let page = navigate(&c, &base, &gia, "/companies")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-guise-banner"), "{page}");
    assert!(
        page.contains("Viewing as <strong>Gia Globex</strong> (Globex Channel)"),
        "{page}"
    );
    // (minijinja writes `/` as `&#x2f;` in attributes.)
    assert!(
        page.contains("&#x2f;_guise&#x2f;impersonate&#x2f;stop"),
        "{page}"
    );
    assert!(page.contains("data-guise-stop"));
    assert!(
        page.contains(&gia.csrf.replace('/', "&#x2f;")),
        "the stop form carries the session's token"
    );
    // Partner filtering still applies to the page the banner is put into.
    assert!(!page.contains("co-106"));
    // JSON answers are left alone.
    let v: Value = get(&c, &base, &gia, "/api/companies")
        .await
        .json()
        .await
        .unwrap();
    assert!(v["data"].is_array());
    // The script itself is served by the gateway.
    let js = c.get(f.url("/_guise/tab.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
}

/// Reads server-sent events off a streaming response, one at a time.
struct Events {
    resp: reqwest::Response,
    buf: String,
}

impl Events {
    /// The next event's name and data.
    async fn next(&mut self) -> (String, String) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim());
                    }
                }
                if block.lines().all(|l| l.starts_with(':') || l.is_empty()) {
                    continue;
                }
                return (name, data);
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.resp.chunk())
                .await
                .expect("an event within 5 s")
                .expect("the stream reads")
                .expect("the stream is still open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

async fn events(c: &reqwest::Client, base: &str, who: &Signed) -> Events {
    let resp = c
        .get(format!("{base}/_guise/events?session={}", who.session))
        .header("cookie", &who.cookie)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    Events {
        resp,
        buf: String::new(),
    }
}

/// A tab of the admin listens on node A; the impersonation starts on node
/// B: the tab is told at once, with the reason, through Redis.
#[tokio::test]
async fn open_tabs_are_told_across_nodes_when_the_admin_is_signed_out() {
    let (_redis, a, b) = demo_nodes_on_redis().await;
    let c = client();
    let ada = login(&c, &a.url(""), "admin@demo.test", DEMO_PW).await;
    let mut tab = events(&c, &a.url(""), &ada).await;
    let (name, data) = tab.next().await;
    assert_eq!(name, "hello");
    assert!(data.contains(&ada.session), "{data}");

    let r = impersonate(&c, &b.url(""), &ada, json!({"user": "u-globex-gia"})).await;
    assert_eq!(r.status(), 200);
    let gia = signed_from(&c, &b.url(""), &r).await;
    let (name, data) = tab.next().await;
    assert_eq!(name, "ended");
    assert!(
        data.contains("Ada Admin started viewing the app as Gia Globex in another tab"),
        "{data}"
    );

    // The impersonation's own tabs are told when it stops.
    let mut tab = events(&c, &a.url(""), &gia).await;
    assert_eq!(tab.next().await.0, "hello");
    assert_eq!(stop(&c, &b.url(""), &gia).await.status(), 200);
    let (name, data) = tab.next().await;
    assert_eq!(name, "ended");
    assert!(data.contains("returned to their own view"), "{data}");
}

#[tokio::test]
async fn terms_are_acknowledged_once_and_a_reason_is_asked_for_each_time() {
    let yaml = demo_yaml(MEMORY, "").replace(
        "  max_minutes: 60\n",
        "  max_minutes: 60\n  require_reason: true\n  require_terms_ack: true\n  terms: \"We may access partner accounts to support them.\"\n",
    );
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = impersonate(
        &c,
        &base,
        &ada,
        json!({"user": "u-globex-gia", "reason": "ticket 1"}),
    )
    .await;
    let detail = refused_with(r, 403, "terms_not_acknowledged").await;
    assert!(
        detail.contains("We may access partner accounts"),
        "{detail}"
    );
    let r = impersonate(
        &c,
        &base,
        &ada,
        json!({"user": "u-globex-gia", "accept_terms": true}),
    )
    .await;
    refused_with(r, 400, "reason_required").await;
    let r = impersonate(
        &c,
        &base,
        &ada,
        json!({"user": "u-globex-gia", "accept_terms": true, "reason": "ticket 1"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let gia = signed_from(&c, &base, &r).await;
    let r = stop(&c, &base, &gia).await;
    let back = signed_from(&c, &base, &r).await;
    // Acknowledged once: the next start needs only the reason.
    let r = impersonate(
        &c,
        &base,
        &back,
        json!({"user": "u-globex-gia", "reason": "ticket 2"}),
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn hidden_fields_leave_the_records_but_not_their_personal_fields() {
    let yaml = demo_yaml(MEMORY, "").replace(
        "    hide_contacts_and_leads: true\n",
        "    hide_contacts_and_leads: true\n    hidden_fields: [/email, /phone]\n",
    );
    assert!(yaml.contains("hidden_fields"), "demo.yaml changed shape");
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = impersonate(&c, &base, &ada, json!({"user": "u-globex-gia"})).await;
    let gia = signed_from(&c, &base, &r).await;
    let v: Value = get(&c, &base, &gia, "/api/contacts")
        .await
        .json()
        .await
        .unwrap();
    let items = v["data"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{v}");
    for item in items {
        assert!(
            item.get("email").is_none() && item.get("phone").is_none(),
            "{item}"
        );
        assert!(item["name"].is_string());
    }
    let v: Value = get(&c, &base, &gia, "/api/contacts/ct-10")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["name"], "Jules Ferreira", "{v}");
    assert!(v["data"].get("email").is_none(), "{v}");
}
