//! End-to-end: partner users through a gateway running the demo's own
//! configuration (`config/demo.yaml`) in front of the demo app, over the
//! memory store and over Redis. Every refusal the partner rules give is
//! asked for here, and what a partner user may do is checked to still work.

mod support;

use serde_json::{json, Value};
use support::login::*;
use support::redis::RedisServer;
use support::*;

async fn get_as(
    c: &reqwest::Client,
    f: &Fixture,
    who: &Signed,
    path: &str,
    accept: &str,
) -> reqwest::Response {
    c.get(f.url(path))
        .header("cookie", &who.cookie)
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

async fn status(c: &reqwest::Client, f: &Fixture, who: &Signed, path: &str) -> u16 {
    get(c, &f.url(""), who, path).await.status().as_u16()
}

/// A refusal's status, error code and detail.
async fn refusal(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    (
        status,
        v["error"].as_str().unwrap_or_default().to_string(),
        v["detail"].as_str().unwrap_or_default().to_string(),
    )
}

/// A refusal with `status` and error code `code` whose detail says `says`.
async fn refused(r: reqwest::Response, status: u16, code: &str, says: &str) {
    let (got, error, detail) = refusal(r).await;
    assert_eq!((got, error.as_str()), (status, code), "{detail}");
    assert!(detail.contains(says), "{detail:?} should say {says:?}");
}

/// What a partner user reaches and what they are refused, by the rules of
/// the demo's configuration.
async fn partner_rules_hold(f: &Fixture) {
    let c = client();
    let base = f.url("");
    let anna = login(&c, &base, "anna@acme.test", DEMO_PW).await;

    // An assigned company, and the partner's identity signed for the app.
    let r = get(&c, &base, &anna, "/api/companies/co-106").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["id"], "co-106");
    assert_eq!(v["identity"]["x-guise-partner"], "p-acme", "{v}");
    assert_eq!(v["identity"]["x-guise-layout"], "partner-360", "{v}");

    // Another partner's customer: refused, naming the resource only.
    let r = get(&c, &base, &anna, "/api/companies/co-109").await;
    refused(
        r,
        403,
        "record_not_assigned",
        "this company is not assigned to your partner",
    )
    .await;
    // A company that does not exist is refused in the same words: the
    // answer does not tell what exists.
    let r = get(&c, &base, &anna, "/api/companies/co-999").await;
    refused(
        r,
        403,
        "record_not_assigned",
        "this company is not assigned",
    )
    .await;
    // Browsers get the refusal as a page.
    let r = get_as(&c, f, &anna, "/companies/co-109", "text/html").await;
    assert_eq!(r.status(), 403);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("this company is not assigned"));
    assert_eq!(status(&c, f, &anna, "/companies/co-107").await, 200);
    assert_eq!(status(&c, f, &anna, "/relationships/rel-7").await, 200);
    assert_eq!(status(&c, f, &anna, "/relationships/rel-10").await, 403);

    // Records named in the query, every value of a repeated parameter.
    assert_eq!(
        status(&c, f, &anna, "/api/ctas?company_id=co-106").await,
        200
    );
    assert_eq!(
        status(&c, f, &anna, "/api/ctas?company_id=co-109").await,
        403
    );
    assert_eq!(
        status(
            &c,
            f,
            &anna,
            "/api/ctas?company_id=co-106&company_id=co-109"
        )
        .await,
        403
    );
    assert_eq!(
        status(&c, f, &anna, "/api/ctas?company_id=co%2D109").await,
        403
    );

    // Reports: only those shared with the partner, downloads included.
    assert_eq!(status(&c, f, &anna, "/api/reports/rep-1").await, 200);
    let r = get(&c, &base, &anna, "/api/reports/rep-3/export").await;
    refused(r, 403, "record_not_assigned", "this report is not assigned").await;
    assert_eq!(status(&c, f, &anna, "/api/reports/rep-2").await, 403);

    // Areas outside the bundle: contacts and leads are outside Anna's
    // custom bundle; the Cockpit is outside Arlo's.
    let r = get(&c, &base, &anna, "/contacts").await;
    refused(
        r,
        403,
        "area_not_in_bundle",
        "the contacts area is not in your permission bundle",
    )
    .await;
    assert_eq!(status(&c, f, &anna, "/cockpit").await, 200);
    // The app's pages lead partner users to their client accounts.
    let page = get_as(&c, f, &anna, "/dashboard", "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("href=\"/_guise/partner\""), "{page}");
    // Totals over every customer are not hers to see: the tiles and the
    // counts by relationship type are gone; her rows stay.
    assert!(
        !page.contains("Total ARR") && !page.contains("Relationships by type"),
        "{page}"
    );
    assert!(page.contains("High-priority CTAs"), "{page}");
    let arlo = login(&c, &base, "arlo@acme.test", DEMO_PW).await;
    let r = get(&c, &base, &arlo, "/cockpit").await;
    refused(r, 403, "area_not_in_bundle", "(no-cockpit)").await;
    assert_eq!(status(&c, f, &arlo, "/dashboard").await, 200);
    // A path no route names is outside every area.
    let r = get(&c, &base, &anna, "/api/echo/x").await;
    refused(r, 403, "partner_unrouted", "not part of the areas").await;

    // Without a Full licence: the right password says why; a wrong one
    // says no more than for a stranger.
    let r = try_login(&c, &base, "vera@acme.test", DEMO_PW).await;
    refused(r, 403, "no_full_licence", "Full licence").await;
    let wrong = try_login(&c, &base, "vera@acme.test", "nope").await;
    let stranger = try_login(&c, &base, "nobody@acme.test", "nope").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(stranger.status(), 401);
    assert_eq!(wrong.text().await.unwrap(), stranger.text().await.unwrap());

    // Lists, search and pages show only Acme's customers.
    let ids = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_string())
            .collect()
    };
    let v: Value = get(&c, &base, &anna, "/api/companies")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&v), ["co-106", "co-107", "co-108"]);
    let v: Value = get(&c, &base, &anna, "/api/companies?q=o")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        !ids(&v).is_empty()
            && ids(&v)
                .iter()
                .all(|i| ["co-106", "co-107", "co-108"].contains(&i.as_str())),
        "{v}"
    );
    let v: Value = get(&c, &base, &anna, "/api/ctas")
        .await
        .json()
        .await
        .unwrap();
    let ctas = v["data"].as_array().unwrap();
    assert!(!ctas.is_empty());
    assert!(
        ctas.iter()
            .all(|c| ["co-106", "co-107", "co-108"].contains(&c["company_id"].as_str().unwrap())),
        "{v}"
    );
    let v: Value = get(&c, &base, &anna, "/api/reports")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&v), ["rep-1"]);
    let v: Value = get(&c, &base, &anna, "/api/relationships")
        .await
        .json()
        .await
        .unwrap();
    // Acme's relationships are rel-7, rel-8 and rel-9; the demo's data
    // permissions then narrow them: Anna is in BU1, which sees Product A
    // (rel-7, rel-9) and not Spark (rel-8).
    assert_eq!(ids(&v), ["rel-7", "rel-9"]);
    assert_eq!(status(&c, f, &anna, "/api/relationships/rel-8").await, 403);
    for page in [
        "/companies",
        "/scorecard",
        "/cockpit",
        "/timeline",
        "/dashboard",
        "/reports",
        "/success-plan",
    ] {
        let html = get_as(&c, f, &anna, page, "text/html")
            .await
            .text()
            .await
            .unwrap();
        for other in ["co-109", "co-110", "co-111", "co-100", "p-globex"] {
            assert!(
                !html.contains(&format!("data-id=\"{other}\""))
                    && !html.contains(&format!("data-company-id=\"{other}\"")),
                "{page} shows {other}"
            );
        }
        assert!(
            html.contains("co-106") || page == "/reports",
            "{page} lost Acme's records"
        );
    }
    let html = get_as(&c, f, &anna, "/reports", "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-id=\"rep-1\"") && !html.contains("data-id=\"rep-2\""));
    // A single record read from the answer: Acme's CTA is shown; Globex's
    // is refused (or, had its status line gone out already, cut off):
    // never shown.
    let v: Value = get(&c, &base, &anna, "/api/ctas/cta-8")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["company_id"], "co-106");
    let r = get(&c, &base, &anna, "/api/ctas/cta-11").await;
    match r.status().as_u16() {
        403 => {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["error"], "record_not_assigned", "{v}");
            assert_eq!(
                v["detail"],
                "this cta is not assigned to your partner organisation"
            );
        }
        _ => {
            let got = r.text().await;
            assert!(
                got.is_err(),
                "an unassigned CTA reached the client: {got:?}"
            );
        }
    }

    // A write names the CTA by its own id only: the gateway looks up the
    // company it sits in before the app sees the request. Globex's CTA is
    // refused, by PATCH and by DELETE, and stays as it was.
    let write = |method: reqwest::Method, path: &str| {
        c.request(method, f.url(path))
            .header("cookie", &anna.cookie)
            .header("accept", "application/json")
            .json(&json!({"status": "Closed"}))
            .send()
    };
    let r = write(reqwest::Method::PATCH, "/api/ctas/cta-11")
        .await
        .unwrap();
    refused(r, 403, "record_not_assigned", "this cta is not assigned").await;
    let r = write(reqwest::Method::DELETE, "/api/ctas/cta-11")
        .await
        .unwrap();
    refused(r, 403, "record_not_assigned", "this cta is not assigned").await;
    // A CTA the app does not have: the same words.
    let r = write(reqwest::Method::PATCH, "/api/ctas/cta-999")
        .await
        .unwrap();
    refused(r, 403, "record_not_assigned", "this cta is not assigned").await;
    // Acme's own CTA passes the partner rules; the data-permission rules,
    // which grant her no CTA writes, decide next.
    let r = write(reqwest::Method::PATCH, "/api/ctas/cta-8")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["detail"], "no rule grants WRITE on this cta", "{v}");
    // What the body names is checked too (the routes' `body` refs): her
    // own CTA cannot be moved into Globex's company, nor a new one be
    // put there, whatever the data-permission rules would say.
    let send = |method: reqwest::Method, path: &str, body: Value| {
        c.request(method, f.url(path))
            .header("cookie", &anna.cookie)
            .header("accept", "application/json")
            .json(&body)
            .send()
    };
    let r = send(
        reqwest::Method::PATCH,
        "/api/ctas/cta-8",
        json!({"company_id": "co-101"}),
    )
    .await
    .unwrap();
    refused(
        r,
        403,
        "record_not_assigned",
        "this company is not assigned",
    )
    .await;
    let r = send(
        reqwest::Method::POST,
        "/api/ctas",
        json!({"name": "x", "company_id": "co-106", "relationship_id": "rel-1"}),
    )
    .await
    .unwrap();
    refused(
        r,
        403,
        "record_not_assigned",
        "this relationship is not assigned",
    )
    .await;

    let sam = login(&c, &base, "super@demo.test", DEMO_PW).await;
    let v: Value = get(&c, &base, &sam, "/api/ctas/cta-11")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["status"], "Open", "Globex's CTA was written: {v}");

    // Internal users are not partner users: the rules leave them alone.
    let bea = login(&c, &base, "bu1@demo.test", DEMO_PW).await;
    assert_eq!(status(&c, f, &bea, "/api/companies/co-109").await, 200);
    let v: Value = get(&c, &base, &bea, "/api/companies")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&v).len(), 12);
    let html = get_as(&c, f, &bea, "/companies", "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-id=\"co-109\""));
    assert_eq!(status(&c, f, &bea, "/contacts").await, 200);
    let page = get_as(&c, f, &bea, "/dashboard", "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("/_guise/partner"));
    assert!(page.contains("Total ARR") && page.contains("Relationships by type"));

    let refusals = f
        .metric("guise_partner_refusals_total{reason=\"record_not_assigned\"}")
        .await;
    assert!(refusals >= 6.0, "{refusals}");
    assert!(
        f.metric("guise_partner_refusals_total{reason=\"area_not_in_bundle\"}")
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn partner_users_reach_only_their_partners_records_and_areas() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    partner_rules_hold(&f).await;
}

#[tokio::test]
async fn partner_users_reach_only_their_partners_records_and_areas_over_redis() {
    let redis = RedisServer::start();
    let f = Fixture::start_with(&demo_yaml(&redis_store(&redis.url()), "")).await;
    partner_rules_hold(&f).await;
}

/// A record reached by its own id whose parents cannot be looked up is
/// refused with a reason (503), never let through; the app answering
/// again is enough for the next request.
#[tokio::test]
async fn a_failed_parent_lookup_refuses_with_a_reason() {
    let yaml = demo_yaml(MEMORY, "").replace(
        "lookup: { path: \"/api/ctas/{id}\", pointer: /data }\n      refs:",
        "lookup: { path: \"/api/status/503?id={id}\", pointer: /data }\n      refs:",
    );
    assert!(
        yaml.contains("/api/status/503?id={id}"),
        "demo.yaml changed shape"
    );
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    let base = f.url("");
    let anna = login(&c, &base, "anna@acme.test", DEMO_PW).await;
    let r = get(&c, &base, &anna, "/api/ctas/cta-8").await;
    refused(
        r,
        503,
        "partner_lookup_failed",
        "which company or relationship this cta belongs to",
    )
    .await;
    assert_eq!(
        f.metric("guise_partner_refusals_total{reason=\"partner_lookup_failed\"}")
            .await,
        1.0
    );
    // Lists name no record by its own id: no lookup, filtered as before.
    assert_eq!(status(&c, &f, &anna, "/api/ctas").await, 200);
    // Internal users are not held up by partner lookups.
    let bea = login(&c, &base, "bu1@demo.test", DEMO_PW).await;
    assert_eq!(status(&c, &f, &bea, "/api/ctas/cta-1").await, 200);
}

/// An admin API call as `who`.
async fn admin(
    c: &reqwest::Client,
    f: &Fixture,
    who: &Signed,
    method: &str,
    path: &str,
    body: Value,
) -> reqwest::Response {
    admin_call(c, &f.url(""), who, method, path, body).await
}

/// The partner's own call (`/_guise/partner`) that sets paired user
/// `user`'s roles in `tenant`, as `who` on node `f`.
async fn partner_roles(
    c: &reqwest::Client,
    f: &Fixture,
    who: &Signed,
    tenant: &str,
    user: &str,
    roles: Value,
) -> reqwest::Response {
    let path = partner_path(tenant, user);
    admin(c, f, who, "PUT", &path, json!({ "roles": roles })).await
}

fn partner_path(tenant: &str, user: &str) -> String {
    format!("/_guise/partner/paired/{tenant}/{user}/roles")
}

#[tokio::test]
async fn admins_assign_records_and_bundles_and_every_node_follows() {
    let (_redis, a, b) = demo_nodes_on_redis().await;
    let c = client();
    let ada = login(&c, &a.url(""), "admin@demo.test", DEMO_PW).await;
    let anna_b = login(&c, &b.url(""), "anna@acme.test", DEMO_PW).await;
    assert_eq!(status(&c, &b, &anna_b, "/api/companies/co-109").await, 403);

    // Only admins.
    let r = admin(
        &c,
        &b,
        &anna_b,
        "PUT",
        "/_guise/admin/partners/p-acme",
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 403);

    // A bad change names the field and stores nothing.
    let r = admin(
        &c,
        &a,
        &ada,
        "PUT",
        "/_guise/admin/partners/p-acme",
        json!({"name": "", "companies": ["co-106"]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().starts_with("name:"), "{v}");
    let r = admin(
        &c,
        &a,
        &ada,
        "PUT",
        "/_guise/admin/partners/p-acme",
        json!({"id": "p-globex", "name": "Acme"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = admin(
        &c,
        &a,
        &ada,
        "PUT",
        "/_guise/admin/partners/p-acme",
        json!({"name": "Acme", "compnies": []}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(status(&c, &b, &anna_b, "/api/companies/co-106").await, 200);

    // Assign Globex's Cyberdyne to Acme on node A: node B lets Anna in.
    let r = admin(
        &c,
        &a,
        &ada,
        "PUT",
        "/_guise/admin/partners/p-acme",
        json!({"name": "Acme Partners", "companies": ["co-106", "co-107", "co-108", "co-109"], "reports": ["rep-1"], "primary_user": "u-acme-anna"}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    eventually(
        std::time::Duration::from_secs(5),
        "node B sees the new assignment",
        || async { (status(&c, &b, &anna_b, "/api/companies/co-109").await == 200).then_some(()) },
    )
    .await;
    let v: Value = get(&c, &a.url(""), &ada, "/_guise/admin/partners/p-acme")
        .await
        .json()
        .await
        .unwrap();
    assert!(v["partner"]["companies"]
        .as_array()
        .unwrap()
        .contains(&json!("co-109")));
    assert!(v["users"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["id"] == "u-acme-anna"));

    // A custom bundle: only configured areas; Anna moved into it loses
    // the Cockpit on the other node.
    let r = admin(
        &c,
        &a,
        &ada,
        "PUT",
        "/_guise/admin/bundles/lite",
        json!({"areas": ["dashboard", "warp-drive"]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("`warp-drive` is not one of the configured areas"));
    let r = admin(
        &c,
        &a,
        &ada,
        "PUT",
        "/_guise/admin/bundles/lite",
        json!({"areas": ["dashboard", "companies"]}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = admin(
        &c,
        &a,
        &ada,
        "PATCH",
        "/_guise/admin/users/u-acme-anna",
        json!({"bundle": "nope"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = admin(
        &c,
        &a,
        &ada,
        "PATCH",
        "/_guise/admin/users/u-acme-anna",
        json!({"bundle": "lite"}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    eventually(
        std::time::Duration::from_secs(5),
        "node B applies Anna's bundle",
        || async { (status(&c, &b, &anna_b, "/cockpit").await == 403).then_some(()) },
    )
    .await;
    assert_eq!(status(&c, &b, &anna_b, "/dashboard").await, 200);
}

#[tokio::test]
async fn full_seats_are_counted_and_refused_past_the_limit() {
    // The demo's users hold 7 Full seats (every user but Vera and the
    // viewer); with 7 seats none is free.
    let yaml = demo_yaml(MEMORY, "").replace("licences:\n  full: 20\n", "licences:\n  full: 7\n");
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    assert_eq!(
        f.metric("guise_licence_seats{licence=\"full\",state=\"used\"}")
            .await,
        7.0
    );
    assert_eq!(
        f.metric("guise_licence_seats{licence=\"full\",state=\"free\"}")
            .await,
        0.0
    );
    let v: Value = get(&c, &f.url(""), &ada, "/_guise/admin/licences")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["full"], json!({"used": 7, "total": 7, "free": 0}));

    let r = admin(
        &c,
        &f,
        &ada,
        "PATCH",
        "/_guise/admin/users/u-acme-vera",
        json!({"licence": "full"}),
    )
    .await;
    refused(
        r,
        409,
        "seats_full",
        "all 7 Full licences are in use (7 of 7)",
    )
    .await;
    // Vera still cannot sign in.
    let r = try_login(&c, &f.url(""), "vera@acme.test", DEMO_PW).await;
    assert_eq!(r.status(), 403);

    // Freeing a seat lets her have it, and she signs in.
    let r = admin(
        &c,
        &f,
        &ada,
        "PATCH",
        "/_guise/admin/users/u-bu2",
        json!({"licence": "viewer"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = admin(
        &c,
        &f,
        &ada,
        "PATCH",
        "/_guise/admin/users/u-acme-vera",
        json!({"licence": "full"}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    login(&c, &f.url(""), "vera@acme.test", DEMO_PW).await;
    assert_eq!(
        f.metric("guise_licence_seats{licence=\"full\",state=\"used\"}")
            .await,
        7.0
    );
}

/// A CRM export: two good rows, then bad ones of every kind.
const EXPORT: &str = "partner_id,partner_name,user_name,user_email,company_ids\n\
p-north,North Partners,Nora North,nora@north.test,co-101;co-102\n\
p-north,North Partners,Ned North,ned@north.test,co-103\n\
p-north,North Partners,,nobody@north.test,\n\
p-bad id,Bad,Bo Bad,bo@bad.test,\n\
p-south,South,Sam South,not-an-address,\n";

#[tokio::test]
async fn a_crm_export_imports_through_the_admin_api_with_every_bad_row_named() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let post = |query: &'static str, body: &'static str| {
        c.post(f.url(&format!("/_guise/admin/partners/import{query}")))
            .header("cookie", &ada.cookie)
            .header("x-csrf-token", &ada.csrf)
            .header("origin", f.url(""))
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    // Bad rows: each named by line and reason, and nothing imported.
    let r = post("", EXPORT).await.unwrap();
    assert_eq!(r.status(), 400);
    let detail = r.json::<Value>().await.unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.starts_with("3 bad row(s), nothing imported"),
        "{detail}"
    );
    assert!(detail.contains("line 4: user_name is empty"), "{detail}");
    assert!(detail.contains("line 5: partner_id must be"), "{detail}");
    assert!(
        detail.contains("line 6: `not-an-address` is not an email address"),
        "{detail}"
    );
    assert_eq!(
        status(&c, &f, &ada, "/_guise/admin/partners/p-north").await,
        404
    );

    // Skipping them imports the good rows, and says what was skipped.
    let r = post("?skip_bad_rows=true", EXPORT).await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["partners_saved"].as_u64(), v["users_saved"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(v["skipped"].as_array().unwrap().len(), 3);
    let v: Value = get(&c, &f.url(""), &ada, "/_guise/admin/partners/p-north")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["partner"]["companies"],
        json!(["co-101", "co-102", "co-103"])
    );
    let users = v["users"].as_array().unwrap();
    assert_eq!(users.len(), 2, "{v}");
    assert!(
        users
            .iter()
            .all(|u| u["partner"] == "p-north" && u["layout"] == "partner-360"),
        "{v}"
    );

    // The same file again changes nothing.
    let v: Value = post("?skip_bad_rows=true", EXPORT)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (v["partners_saved"].as_u64(), v["users_saved"].as_u64()),
        (Some(0), Some(0))
    );

    // An export that would take more Full seats than are free: nothing.
    let many: String =
        std::iter::once("partner_id,partner_name,user_name,user_email,company_ids\n".to_string())
            .chain((0..20).map(|i| format!("p-big,Big,User {i},u{i}@big.test,co-104\n")))
            .collect();
    let r = c
        .post(f.url("/_guise/admin/partners/import"))
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .header("origin", f.url(""))
        .body(many)
        .send()
        .await
        .unwrap();
    refused(r, 409, "seats_full", "Full licences are in use").await;
    assert_eq!(
        status(&c, &f, &ada, "/_guise/admin/partners/p-big").await,
        404
    );
}

#[tokio::test]
async fn guise_import_partners_writes_to_redis_and_running_gateways_follow() {
    let redis = RedisServer::start();
    let f = Fixture::start_with(&demo_yaml(&redis_store(&redis.url()), "")).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let csv = f.dir.path().join("export.csv");
    std::fs::write(&csv, EXPORT).unwrap();
    let import = |skip: bool| {
        let mut cmd = std::process::Command::new(guise_bin());
        cmd.args(["import", "partners"])
            .arg(&csv)
            .arg("--config")
            .arg(&f.config_path);
        if skip {
            cmd.arg("--skip-bad-rows");
        }
        cmd.env("GUISE_SIGNING_KEY", KEY).output().unwrap()
    };
    let out = import(false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("3 bad row(s), nothing imported") && err.contains("line 6:"),
        "{err}"
    );

    let out = import(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("1 partner(s) and 2 user(s) saved, 3 row(s) skipped"),
        "{said}"
    );
    eventually(
        std::time::Duration::from_secs(5),
        "the gateway sees the imported partner",
        || async {
            let r = get(&c, &f.url(""), &ada, "/_guise/admin/partners/p-north").await;
            let v: Value = r.json().await.ok()?;
            (v["users"].as_array()?.len() == 2).then_some(())
        },
    )
    .await;
    let said = String::from_utf8_lossy(&import(true).stdout).to_string();
    assert!(said.contains("0 partner(s) and 0 user(s) saved"), "{said}");
}

/// POST a form to the gateway with `who`'s cookie, CSRF token and origin.
async fn post_form(
    c: &reqwest::Client,
    f: &Fixture,
    who: &Signed,
    path: &str,
    csrf: Option<&str>,
) -> reqwest::Response {
    let mut form = Vec::new();
    if let Some(t) = csrf {
        form.push(("csrf_token", t.to_string()));
    }
    c.post(f.url(path))
        .header("cookie", &who.cookie)
        .header("origin", f.url(""))
        .header("accept", "text/html")
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// The session a 303 of enter/leave started, with its CSRF token.
async fn switched(c: &reqwest::Client, f: &Fixture, r: &reqwest::Response) -> Signed {
    let (cookie, set_cookie) = cookie_from(r, "guise_session").expect("a new session cookie");
    let v: Value = c
        .get(f.url("/_guise/session"))
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
        csrf: v["csrf_token"].as_str().unwrap().to_string(),
        session: v["session"].as_str().unwrap().to_string(),
    }
}

/// "Login as me" on node `a`, an admin turning the tenant's partner login
/// off on node `b` (the same node over the memory store).
async fn login_as_me_holds(a: &Fixture, b: &Fixture) {
    let c = client();
    let anna = login(&c, &a.url(""), "anna@acme.test", DEMO_PW).await;

    // The partner's page lists the client accounts.
    let r = get_as(&c, a, &anna, "/_guise/partner", "text/html").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Initech (client account)")
            && page.contains("/_guise/tenants/umbrella/enter"),
        "{page}"
    );
    assert!(page.contains("Login as me"));
    // Not as herself: client accounts are entered as the paired user.
    let r = get(&c, &a.url(""), &anna, "/t/initech/").await;
    refused(r, 403, "tenant_needs_paired_login", "Login as me").await;
    // Entering is CSRF-safe.
    let r = post_form(&c, a, &anna, "/_guise/tenants/initech/enter", None).await;
    assert_eq!(r.status(), 403);
    let r = post_form(
        &c,
        a,
        &anna,
        "/_guise/tenants/nowhere/enter",
        Some(&anna.csrf),
    )
    .await;
    assert_eq!(r.status(), 404);

    let r = post_form(
        &c,
        a,
        &anna,
        "/_guise/tenants/initech/enter",
        Some(&anna.csrf),
    )
    .await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(r.headers()["location"], "/t/initech/");
    let ghost = switched(&c, a, &r).await;
    // The partner session ended with the switch.
    assert_eq!(status(&c, a, &anna, "/api/companies/co-106").await, 401);

    // Inside: the paired identity, signed.
    let r = get_as(&c, a, &ghost, "/t/initech/", "text/html").await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("paired user"), "{page}");
    for (h, v) in [
        ("x-guise-user", "u-acme-anna~initech"),
        ("x-guise-tenant", "initech"),
        ("x-guise-paired", "1"),
        ("x-guise-partner", "p-acme"),
    ] {
        assert!(
            page.contains(h) && page.contains(v),
            "{h}: {v} not shown in {page}"
        );
    }
    // The roles the app sees are the tenant's, from Initech's hub
    // (`default`), not the gateway role `user`.
    assert_eq!(roles_seen(&page), "Partner User", "{page}");
    // Features not for paired users, and nothing outside the tenant.
    let r = get(&c, &a.url(""), &ghost, "/t/initech/ess").await;
    refused(
        r,
        403,
        "not_for_paired_users",
        "paired users cannot use ess",
    )
    .await;
    assert_eq!(
        status(&c, a, &ghost, "/t/initech/linked-records").await,
        403
    );
    let r = get(&c, &a.url(""), &ghost, "/t/umbrella/").await;
    refused(r, 403, "outside_tenant", "initech").await;
    assert_eq!(status(&c, a, &ghost, "/api/companies/co-106").await, 403);

    // Quota: the paired user is listed apart and not counted.
    let ada = login(&c, &b.url(""), "admin@demo.test", DEMO_PW).await;
    let v: Value = get(&c, &b.url(""), &ada, "/_guise/admin/tenants")
        .await
        .json()
        .await
        .unwrap();
    let initech = v["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"]["id"] == "initech")
        .unwrap()
        .clone();
    assert_eq!(
        initech["quota"],
        json!({"users": 12, "user_quota": 25, "paired_users": 1}),
        "{v}"
    );
    assert_eq!(
        a.metric("guise_tenant_users{kind=\"paired\",tenant=\"initech\"}")
            .await,
        1.0
    );
    assert_eq!(
        a.metric("guise_paired_logins_total{result=\"ok\"}").await,
        1.0
    );

    // Leaving brings Anna back as herself; entering again reuses the ghost.
    let r = post_form(&c, a, &ghost, "/_guise/tenants/leave", Some(&ghost.csrf)).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/_guise/partner");
    let anna = switched(&c, a, &r).await;
    assert_eq!(status(&c, a, &anna, "/api/companies/co-106").await, 200);
    assert_eq!(status(&c, a, &ghost, "/t/initech/").await, 401);
    let r = post_form(
        &c,
        a,
        &anna,
        "/_guise/tenants/initech/enter",
        Some(&anna.csrf),
    )
    .await;
    let ghost = switched(&c, a, &r).await;
    let v: Value = get(&c, &b.url(""), &ada, "/_guise/admin/tenants/initech/paired")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["paired_users"].as_array().unwrap().len(), 1, "{v}");

    // Turning partner login off on the other node: the live paired session
    // ends, and a new "Login as me" is refused.
    let r = admin(&c, b, &ada, "PUT", "/_guise/admin/tenants/initech", json!({"name": "Initech (client account)", "user_quota": 25, "users": 12, "allow_partner_login": false})).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["paired_sessions_revoked"], 1);
    eventually(
        std::time::Duration::from_secs(5),
        "the paired session ends on node A",
        || async { (status(&c, a, &ghost, "/t/initech/").await != 200).then_some(()) },
    )
    .await;
    let anna = login(&c, &a.url(""), "anna@acme.test", DEMO_PW).await;
    let r = c
        .post(a.url("/_guise/tenants/initech/enter"))
        .header("cookie", &anna.cookie)
        .header("origin", a.url(""))
        .header("x-csrf-token", &anna.csrf)
        .send()
        .await
        .unwrap();
    refused(r, 403, "partner_login_off", "does not allow partner logins").await;
}

/// The `x-guise-roles` value the demo app received, as its page shows it.
fn roles_seen(page: &str) -> String {
    let at = "<th>x-guise-roles</th><td><code>";
    let start = page.find(at).map(|i| i + at.len()).expect("roles shown");
    let len = page[start..].find("</code>").expect("roles end");
    page[start..start + len].to_string()
}

/// The roles the app receives for `who`'s next request in `tenant`.
async fn tenant_roles_upstream(
    c: &reqwest::Client,
    f: &Fixture,
    who: &Signed,
    tenant: &str,
) -> String {
    let r = get_as(c, f, who, &format!("/t/{tenant}/"), "text/html").await;
    assert_eq!(r.status(), 200);
    roles_seen(&r.text().await.unwrap())
}

#[tokio::test]
async fn paired_users_hold_tenant_roles_that_admins_and_the_partners_primary_user_change_on_every_node(
) {
    let (_redis, a, b) = demo_nodes_on_redis().await;
    let c = client();
    let enter = |f: &Fixture, who: Signed, tenant: &'static str| {
        let c = c.clone();
        let url = f.url(&format!("/_guise/tenants/{tenant}/enter"));
        let origin = f.url("");
        async move {
            let r = c
                .post(url)
                .header("cookie", &who.cookie)
                .header("origin", origin)
                .header("x-csrf-token", &who.csrf)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303, "{:?}", r.text().await);
            r
        }
    };
    // Anna in Initech (hub `default`), Arlo in Umbrella (hub `emea`), on A.
    let anna = login(&c, &a.url(""), "anna@acme.test", DEMO_PW).await;
    let r = enter(&a, anna, "initech").await;
    let anna_ghost = switched(&c, &a, &r).await;
    let arlo = login(&c, &a.url(""), "arlo@acme.test", DEMO_PW).await;
    let r = enter(&a, arlo, "umbrella").await;
    let arlo_ghost = switched(&c, &a, &r).await;
    assert_eq!(
        tenant_roles_upstream(&c, &a, &anna_ghost, "initech").await,
        "Partner User"
    );
    assert_eq!(
        tenant_roles_upstream(&c, &a, &arlo_ghost, "umbrella").await,
        "Partner User,Viewer"
    );

    // The admin API lists them; their gateway role is `user`, whatever
    // the admin tries.
    let ada = login(&c, &b.url(""), "admin@demo.test", DEMO_PW).await;
    let v: Value = get(&c, &b.url(""), &ada, "/_guise/admin/tenants/initech/paired")
        .await
        .json()
        .await
        .unwrap();
    let listed = &v["paired_users"][0];
    assert_eq!(listed["id"], "u-acme-anna~initech", "{v}");
    assert_eq!(listed["paired"]["roles"], json!(["Partner User"]), "{v}");
    assert_eq!(listed["roles"], json!(["user"]), "{v}");
    // Not even a super admin, who may grant admin roles to anyone else.
    let sam = login(&c, &b.url(""), "super@demo.test", DEMO_PW).await;
    for roles in [json!(["admin"]), json!(["user", "super_admin"])] {
        let r = admin(
            &c,
            &b,
            &sam,
            "PATCH",
            "/_guise/admin/users/u-acme-anna~initech",
            json!({ "roles": roles }),
        )
        .await;
        let (status, _, detail) = refusal(r).await;
        assert_eq!(status, 400, "{detail}");
        assert!(
            detail.contains("`roles`") && detail.contains("gateway role `user` only"),
            "{detail}"
        );
    }

    // Bad roles name the field and change nothing.
    let roles_path = "/_guise/admin/tenants/initech/paired/u-acme-anna~initech/roles";
    for (body, field) in [
        (
            json!({"roles": ["Root"]}),
            "roles[0]: `Root` is not one of the tenant roles",
        ),
        (
            json!({"roles": ["Viewer", "Viewer"]}),
            "roles[1]: `Viewer` is given twice",
        ),
        (json!({"roles": ["Bad,Role"]}), "roles[0]:"),
        (json!({"roles": []}), "roles: give at least one role"),
    ] {
        let (status, code, detail) =
            refusal(admin(&c, &b, &ada, "PUT", roles_path, body).await).await;
        assert_eq!((status, code.as_str()), (400, "bad_request"), "{detail}");
        assert!(
            detail.starts_with(field),
            "{detail:?} should start with {field:?}"
        );
    }
    let r = admin(
        &c,
        &b,
        &ada,
        "PUT",
        roles_path,
        json!({"rolez": ["Viewer"]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = admin(
        &c,
        &b,
        &ada,
        "PUT",
        "/_guise/admin/tenants/umbrella/paired/u-acme-anna/roles",
        json!({"roles": ["Viewer"]}),
    )
    .await;
    assert_eq!(r.status(), 404, "Anna has no paired user in Umbrella");

    // An admin gives any tenant role, here one partners may not give;
    // Anna's live paired session on the other node carries it next.
    let r = admin(
        &c,
        &b,
        &ada,
        "PUT",
        roles_path,
        json!({"roles": ["Account Admin", "Viewer"]}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    eventually(
        std::time::Duration::from_secs(5),
        "node A sends Anna's new tenant roles",
        || async {
            (tenant_roles_upstream(&c, &a, &anna_ghost, "initech").await == "Account Admin,Viewer")
                .then_some(())
        },
    )
    .await;
    // The partner id works in place of the paired user's.
    let r = admin(
        &c,
        &b,
        &ada,
        "PUT",
        "/_guise/admin/tenants/initech/paired/u-acme-anna/roles",
        json!({"roles": ["Account Admin"]}),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let v: Value = get(
        &c,
        &b.url(""),
        &ada,
        "/_guise/admin/users/u-acme-anna~initech",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(
        v["user"]["paired"]["roles"],
        json!(["Account Admin"]),
        "{v}"
    );
    assert_eq!(v["user"]["roles"], json!(["user"]), "{v}");

    // The partner's primary user: Anna, signed in as herself on B.
    let anna = login(&c, &b.url(""), "anna@acme.test", DEMO_PW).await;
    // CSRF-safe like every change.
    let r = c
        .put(b.url(&partner_path("initech", "u-acme-anna")))
        .header("cookie", &anna.cookie)
        .json(&json!({"roles": ["Viewer"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refusal(r).await.1, "csrf");
    let r = partner_roles(&c, &b, &anna, "initech", "u-acme-anna", json!(["Viewer"])).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    eventually(
        std::time::Duration::from_secs(5),
        "node A sends the roles Anna gave",
        || async {
            (tenant_roles_upstream(&c, &a, &anna_ghost, "initech").await == "Viewer").then_some(())
        },
    )
    .await;
    // Her partner's other paired users too.
    let r = partner_roles(
        &c,
        &b,
        &anna,
        "umbrella",
        "u-acme-arlo",
        json!(["Partner User"]),
    )
    .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    eventually(
        std::time::Duration::from_secs(5),
        "node A sends the roles Anna gave Arlo",
        || async {
            (tenant_roles_upstream(&c, &a, &arlo_ghost, "umbrella").await == "Partner User")
                .then_some(())
        },
    )
    .await;
    // The partner page shows them to her, with a form per paired user.
    let page = get_as(&c, &b, &anna, "/_guise/partner", "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("data-paired=\"u-acme-anna~initech\"")
            && page.contains("data-paired=\"u-acme-arlo~umbrella\"")
            && page.contains("action=\"/_guise/partner/paired/initech/u-acme-anna/roles\""),
        "{page}"
    );
    let r = c
        .post(b.url(&partner_path("initech", "u-acme-anna")))
        .header("cookie", &anna.cookie)
        .header("origin", b.url(""))
        .header("accept", "text/html")
        .form(&[
            ("csrf_token", anna.csrf.as_str()),
            ("role", "Partner User"),
            ("role", "Viewer"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    assert_eq!(r.headers()["location"], "/_guise/partner");
    eventually(
        std::time::Duration::from_secs(5),
        "node A sends the roles of Anna's form",
        || async {
            (tenant_roles_upstream(&c, &a, &anna_ghost, "initech").await == "Partner User,Viewer")
                .then_some(())
        },
    )
    .await;
    // Only within `partner_assignable`; bad names still name the field.
    let r = partner_roles(
        &c,
        &b,
        &anna,
        "initech",
        "u-acme-anna",
        json!(["Viewer", "Account Admin"]),
    )
    .await;
    refused(
        r,
        403,
        "role_not_partner_assignable",
        "`Account Admin` is not one of them",
    )
    .await;
    let r = partner_roles(&c, &b, &anna, "initech", "u-acme-anna", json!(["admin"])).await;
    let (status, _, detail) = refusal(r).await;
    assert_eq!(status, 400, "{detail}");
    assert!(
        detail.starts_with("roles[0]: `admin` is not one of the tenant roles"),
        "{detail}"
    );
    // A paired user nobody made yet: the same refusal as another partner's.
    let r = partner_roles(&c, &b, &anna, "umbrella", "u-acme-anna", json!(["Viewer"])).await;
    assert_eq!(refusal(r).await.1, "not_your_paired_user");

    // Arlo is not Acme's primary user; Gia is Globex's, not Acme's; a
    // paired session changes nothing.
    let arlo = login(&c, &b.url(""), "arlo@acme.test", DEMO_PW).await;
    let r = partner_roles(&c, &b, &arlo, "umbrella", "u-acme-arlo", json!(["Viewer"])).await;
    refused(
        r,
        403,
        "not_primary_user",
        "only the primary user of p-acme",
    )
    .await;
    let gia = login(&c, &b.url(""), "gia@globex.test", DEMO_PW).await;
    let r = partner_roles(&c, &b, &gia, "initech", "u-acme-anna", json!(["Viewer"])).await;
    refused(
        r,
        403,
        "not_your_paired_user",
        "belongs to your partner organisation",
    )
    .await;
    let r = partner_roles(
        &c,
        &a,
        &anna_ghost,
        "initech",
        "u-acme-anna",
        json!(["Partner User"]),
    )
    .await;
    let (status, code, _) = refusal(r).await;
    assert_eq!((status, code.as_str()), (403, "paired_session"));
    // Internal users are no partner.
    let bea = login(&c, &b.url(""), "bu1@demo.test", DEMO_PW).await;
    let r = partner_roles(&c, &b, &bea, "initech", "u-acme-anna", json!(["Viewer"])).await;
    assert_eq!(refusal(r).await.1, "not_a_partner_user");

    // Arlo's page offers no roles to change.
    let page = get_as(&c, &b, &arlo, "/_guise/partner", "text/html")
        .await
        .text()
        .await
        .unwrap();
    assert!(!page.contains("data-paired"), "{page}");

    // Nothing refused was stored; each change was counted where made.
    assert_eq!(
        tenant_roles_upstream(&c, &a, &anna_ghost, "initech").await,
        "Partner User,Viewer"
    );
    assert_eq!(
        b.metric("guise_paired_role_changes_total{by=\"admin\"}")
            .await,
        2.0
    );
    assert_eq!(
        b.metric("guise_paired_role_changes_total{by=\"partner\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn login_as_me_enters_a_tenant_as_the_paired_user_and_leaves_it() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    login_as_me_holds(&f, &f).await;
}

#[tokio::test]
async fn turning_partner_login_off_ends_paired_sessions_on_every_node() {
    let (_redis, a, b) = demo_nodes_on_redis().await;
    login_as_me_holds(&a, &b).await;
}

#[tokio::test]
async fn answers_that_cannot_be_filtered_are_refused_never_passed_on() {
    // A JSON list rule on a route the app answers with bytes, and a limit
    // smaller than the companies list.
    let yaml = demo_yaml(MEMORY, "")
        .replace(
            "  - { name: health, path: /healthz, public: true }",
            "  - { name: health, path: /healthz, public: true }\n  - { name: large, path: /api/large, area: companies, json_list: { pointer: /data, refs: [{ resource: company, field: /id }] } }\n  - { name: echo, path: \"/api/echo/{*rest}\", area: companies, json_list: { pointer: /headers/accept, refs: [{ resource: company, field: /id }] } }",
        )
        .replace("  default_layout: partner-360\n", "  default_layout: partner-360\n  answer_max_bytes: 1024\n");
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    let base = f.url("");
    let anna = login(&c, &base, "anna@acme.test", DEMO_PW).await;
    let r = get(&c, &base, &anna, "/api/large?bytes=100").await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "filter_malformed", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("application/octet-stream"),
        "{v}"
    );
    let r = get(&c, &base, &anna, "/api/companies").await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "filter_too_large", "{v}");
    // Browsers get the refusal as a page.
    let r = get_as(&c, &f, &anna, "/api/companies", "text/html").await;
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("too large to filter"));
    // Filtered answers are asked for plain and whole: no compression, and
    // no byte range that could start inside a record the filter removes.
    let r = c
        .get(f.url("/api/echo/x"))
        .header("cookie", &anna.cookie)
        .header("accept", "application/json")
        .header("accept-encoding", "gzip")
        .header("range", "bytes=10-200")
        .header("if-range", "\"etag\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let seen = v["headers"].as_object().unwrap();
    for h in ["range", "if-range", "accept-encoding"] {
        assert!(!seen.contains_key(h), "{h} reached the app: {v}");
    }
    // A write's answer is the record written, not a list to filter.
    let r = c
        .post(f.url("/api/echo/x"))
        .header("cookie", &anna.cookie)
        .header("accept", "application/json")
        .header("range", "bytes=10-200")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["range"][0], "bytes=10-200", "{v}");

    // Nobody else is filtered: an internal user gets the whole list.
    let bea = login(&c, &base, "bu1@demo.test", DEMO_PW).await;
    assert_eq!(status(&c, &f, &bea, "/api/companies").await, 200);
    assert!(
        f.metric("guise_requests_refused_total{reason=\"filter_too_large\"}")
            .await
            >= 0.0
    );
}

/// One response read off `conn`: its head (lower-cased) and body, framed
/// by its Content-Length or chunked encoding. Panics on a close-delimited
/// answer, which leaves the connection unusable for another request.
async fn read_framed(conn: &mut tokio::net::TcpStream) -> (String, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    async fn more(
        conn: &mut tokio::net::TcpStream,
        buf: &mut Vec<u8>,
        deadline: tokio::time::Instant,
    ) {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout_at(deadline, conn.read(&mut chunk))
            .await
            .expect("response within the deadline")
            .unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        more(conn, &mut buf, deadline).await;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let chunked = head.contains("\r\ntransfer-encoding: chunked");
    assert!(
        length.is_some() || chunked,
        "neither a length nor chunked: the answer is close-delimited\n{head}"
    );
    let body = if let Some(n) = length {
        while buf.len() < head_end + n {
            more(conn, &mut buf, deadline).await;
        }
        buf[head_end..head_end + n].to_vec()
    } else {
        while !buf[head_end..].ends_with(b"0\r\n\r\n") {
            more(conn, &mut buf, deadline).await;
        }
        buf[head_end..].to_vec()
    };
    (head, body)
}

#[tokio::test]
async fn a_filtered_answer_keeps_the_client_connection_alive() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let anna = login(&c, &f.url(""), "anna@acme.test", DEMO_PW).await;
    let addr = f.url("").trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // The companies list is filtered down to the partner's (its length
    // changes), and each answer must say where it ends so the next
    // request can follow on the same connection.
    for round in 0..3 {
        use tokio::io::AsyncWriteExt;
        let req = format!(
            "GET /api/companies HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nAccept: application/json\r\n\r\n",
            anna.cookie
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        let (head, body) = read_framed(&mut conn).await;
        assert!(head.starts_with("http/1.1 200"), "round {round}: {head}");
        assert!(!head.contains("connection: close"), "round {round}: {head}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("co-106"), "round {round}: {text}");
        assert!(!text.contains("co-109"), "round {round}: {text}");
    }
}

/// The demo's configuration plus a route whose writes name a company and
/// a relationship in their JSON body (`routes[].body`), on the demo app's
/// echo endpoint, which answers with the body it received.
fn body_checked_yaml() -> String {
    let route = "  - name: echo-write\n    path: \"/api/echo/{*rest}\"\n    area: companies\n    body: { refs: [{ resource: company, field: /company_id }, { resource: relationship, field: /link/relationship_id }] }\n";
    let yaml = demo_yaml(MEMORY, "");
    assert!(yaml.contains("\nroutes:\n"), "demo.yaml changed shape");
    yaml.replacen("\nroutes:\n", &format!("\nroutes:\n{route}"), 1)
}

/// A partner user's write names only its partner's records in its body,
/// not only in its path: a create cannot put a record into another
/// partner's company, an update cannot move one there. What passes
/// reaches the app byte for byte; internal users and reads are not held.
#[tokio::test]
async fn a_partner_users_write_names_only_its_partners_records_in_its_body() {
    let f = Fixture::start_with(&body_checked_yaml()).await;
    let c = client();
    let anna = login(&c, &f.url(""), "anna@acme.test", DEMO_PW).await;
    let post = |body: String, content_type: &'static str| {
        c.post(f.url("/api/echo/ctas"))
            .header("cookie", &anna.cookie)
            .header("accept", "application/json")
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    const JSON: &str = "application/json";

    // Her partner's company, and a relationship of it: the app gets the
    // body exactly as sent.
    let sent = r#"{"name":"Renewal call","company_id":"co-106","link":{"relationship_id":"rel-7"},"n":1.50}"#;
    let r = post(sent.into(), JSON).await.unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["body"], sent, "{echo}");
    assert_eq!(echo["body_length"], sent.len());
    // Any JSON media type is read (a merge patch is JSON too).
    let r = post(sent.into(), "application/merge-patch+json")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post(
        r#"{"company_id":"co-101"}"#.into(),
        "application/merge-patch+json",
    )
    .await
    .unwrap();
    refused(
        r,
        403,
        "record_not_assigned",
        "is not assigned to your partner",
    )
    .await;
    // Fields left out or null name nothing.
    for sent in [r#"{"name":"x"}"#, r#"{"company_id":null}"#, "[]"] {
        let r = post(sent.into(), JSON).await.unwrap();
        assert_eq!(r.status(), 200, "{sent}");
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["body"], sent);
    }

    // Another partner's company, or an assigned company with another
    // partner's relationship: refused before the app sees anything.
    for sent in [
        r#"{"name":"x","company_id":"co-101"}"#,
        r#"{"company_id":"co-106","link":{"relationship_id":"rel-1"}}"#,
        r#"{"company_id":"co-999"}"#,
        r#"{"company_id":101}"#,
    ] {
        let r = post(sent.into(), JSON).await.unwrap();
        refused(
            r,
            403,
            "record_not_assigned",
            "is not assigned to your partner",
        )
        .await;
    }
    // Bodies the gateway cannot read as the app might: a named key twice
    // (either copy may win), a list or object where an id belongs, not
    // JSON, not sent as JSON, too large.
    let r = post(
        r#"{"company_id":"co-106","company_id":"co-101"}"#.into(),
        JSON,
    )
    .await
    .unwrap();
    refused(r, 400, "bad_json", "appears twice").await;
    let r = post(r#"{"company_id":"co-106","link":{"relationship_id":"rel-7"},"link":{"relationship_id":"rel-1"}}"#.into(), JSON)
        .await
        .unwrap();
    refused(r, 400, "bad_json", "appears twice").await;
    for sent in [
        r#"{"company_id":["co-101"]}"#,
        r#"{"company_id":{"id":"co-101"}}"#,
        r#"{"company_id":true}"#,
    ] {
        let r = post(sent.into(), JSON).await.unwrap();
        refused(r, 400, "bad_record_id", "/company_id must be a record's id").await;
    }
    let r = post(r#"{"company_id":"co-106""#.into(), JSON)
        .await
        .unwrap();
    refused(r, 400, "bad_json", "truncated").await;
    // What an HTML form posts is read too: its `company_id` field is the
    // ref `/company_id`, and every value of a field given twice counts.
    const FORM: &str = "application/x-www-form-urlencoded";
    for sent in [
        "name=Renewal+call&company_id=co-106",
        "company_id=&name=x",
        "name=x",
    ] {
        let r = post(sent.into(), FORM).await.unwrap();
        assert_eq!(r.status(), 200, "{sent}");
        let echo: Value = r.json().await.unwrap();
        assert_eq!(echo["body"], sent);
    }
    for sent in [
        "company_id=co-101",
        "company_id=co-106&company_id=co-101",
        "company%5Fid=co-101",
    ] {
        let r = post(sent.into(), FORM).await.unwrap();
        refused(
            r,
            403,
            "record_not_assigned",
            "is not assigned to your partner",
        )
        .await;
    }
    // Nothing else is read: multipart, text.
    for media in ["multipart/form-data; boundary=x", "text/plain"] {
        let r = post(r#"{"company_id":"co-101"}"#.into(), media)
            .await
            .unwrap();
        refused(
            r,
            415,
            "json_required",
            "send the body as JSON or as a form",
        )
        .await;
    }
    let big = format!(
        r#"{{"company_id":"co-106","pad":"{}"}}"#,
        "a".repeat(70 * 1024)
    );
    let r = post(big, JSON).await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(
        f.metric("guise_partner_refusals_total{reason=\"record_not_assigned\"}")
            .await
            >= 4.0
    );

    // Reads are not held for a body; internal users are not partner users.
    let r = c
        .get(f.url("/api/echo/ctas"))
        .header("cookie", &anna.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bea = login(&c, &f.url(""), "bu1@demo.test", DEMO_PW).await;
    let sent = r#"{"company_id":"co-101"}"#;
    let r = c
        .post(f.url("/api/echo/ctas"))
        .header("cookie", &bea.cookie)
        .header("content-type", JSON)
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["body"], sent);
}

/// A checked body sent in chunks reaches the app whole, and the client's
/// connection carries on: the body was read once, by the gateway, and
/// the app got exactly that.
#[tokio::test]
async fn a_checked_chunked_body_reaches_the_app_and_the_connection_goes_on() {
    use tokio::io::AsyncWriteExt;
    let f = Fixture::start_with(&body_checked_yaml()).await;
    let c = client();
    let anna = login(&c, &f.url(""), "anna@acme.test", DEMO_PW).await;
    let addr = f.url("").trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = |framing: &str| {
        format!(
            "POST /api/echo/ctas HTTP/1.1\r\nHost: {addr}\r\nCookie: {}\r\nContent-Type: application/json\r\n{framing}\r\n",
            anna.cookie
        )
    };
    // Assigned, in three chunks.
    let req = format!(
        "{}b\r\n{{\"company_i\r\n9\r\nd\":\"co-10\r\n3\r\n7\"}}\r\n0\r\n\r\n",
        head("Transfer-Encoding: chunked\r\n")
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let (head_in, body) = read_framed(&mut conn).await;
    assert!(head_in.starts_with("http/1.1 200"), "{head_in}");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains(r#"{\"company_id\":\"co-107\"}"#), "{text}");

    // Not assigned, in chunks: refused, and the connection still serves.
    let req = format!(
        "{}a\r\n{{\"company_\r\nd\r\nid\":\"co-101\"}}\r\n0\r\n\r\n",
        head("Transfer-Encoding: chunked\r\n")
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let (head_in, body) = read_framed(&mut conn).await;
    assert!(head_in.starts_with("http/1.1 403"), "{head_in}");
    assert!(String::from_utf8_lossy(&body).contains("record_not_assigned"));

    let sent = r#"{"company_id":"co-108"}"#;
    let req = format!(
        "{}{sent}",
        head(&format!("Content-Length: {}\r\n", sent.len()))
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let (head_in, body) = read_framed(&mut conn).await;
    assert!(head_in.starts_with("http/1.1 200"), "{head_in}");
    assert!(String::from_utf8_lossy(&body).contains("co-108"));

    // A client that waits for `100 Continue` gets it before sending the
    // body (the gateway reads the body itself), and the app is not asked
    // to expect anything more.
    let req = head(&format!(
        "Content-Length: {}\r\nExpect: 100-continue\r\n",
        sent.len()
    ));
    conn.write_all(req.as_bytes()).await.unwrap();
    let continued = read_exactly(&mut conn, b"HTTP/1.1 100 Continue\r\n\r\n".len()).await;
    assert_eq!(continued, b"HTTP/1.1 100 Continue\r\n\r\n");
    conn.write_all(sent.as_bytes()).await.unwrap();
    let (head_in, body) = read_framed(&mut conn).await;
    assert!(head_in.starts_with("http/1.1 200"), "{head_in}");
    let echo: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(echo["body"], sent);
    assert!(echo["headers"].get("expect").is_none(), "{echo}");
}

/// Exactly `n` bytes from `conn`, within a deadline.
async fn read_exactly(conn: &mut tokio::net::TcpStream, n: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; n];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        conn.read_exact(&mut buf),
    )
    .await
    .expect("an answer within the deadline")
    .unwrap();
    buf
}
