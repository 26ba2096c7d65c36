//! End-to-end: data permissions decided by the gateway in front of the demo
//! app, as Gainsight's Data Permissions document shows them on Account 100
//! (co-100): its relationships "Product A" (rel-1, BU1), "Spark" (rel-2,
//! BU2) and "Spark Pilot" (rel-3), their CTAs, the C360 page, Cockpit and
//! search. Rules are changed through the admin API and the effect is read
//! back over real HTTP, on one node and across two nodes over Redis.

mod support;

use serde_json::{json, Value};
use support::login::*;
use support::*;

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

/// Ids of the relationships `who` sees in Account 100's JSON list.
async fn account_100(c: &reqwest::Client, f: &Fixture, who: &Signed) -> Vec<String> {
    let r = get(c, &f.url(""), who, "/api/relationships?company_id=co-100").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    ids(&v["data"])
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Ids of the elements of `resource` on the page at `path`.
async fn page_ids(
    c: &reqwest::Client,
    f: &Fixture,
    who: &Signed,
    path: &str,
    resource: &str,
) -> Vec<String> {
    let r = c
        .get(f.url(path))
        .header("cookie", &who.cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let html = r.text().await.unwrap();
    let marker = format!("data-resource=\"{resource}\" data-id=\"");
    html.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &html[i + marker.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// The seed's walk-through on Account 100: with the demo's rules, BU1 sees
/// Product A and BU2 Spark; Everyone on shows all; Everyone off with no
/// rule shows nothing; the rule "Business Unit = BU1 → Name = Product A"
/// shows Product A to BU1 only; the same through the group UseGroupforBU1.
#[tokio::test]
async fn the_seed_example_on_account_100() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let bea = login(&c, &base, "bu1@demo.test", DEMO_PW).await;
    let ben = login(&c, &base, "bu2@demo.test", DEMO_PW).await;
    let sam = login(&c, &base, "super@demo.test", DEMO_PW).await;
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;

    // The demo's policy: BU1 (through UseGroupforBU1) sees Product A, BU2
    // sees Spark; the super admin sees everything.
    assert_eq!(account_100(&c, &f, &bea).await, s(&["rel-1"]));
    assert_eq!(account_100(&c, &f, &ben).await, s(&["rel-2", "rel-3"]));
    assert_eq!(
        account_100(&c, &f, &sam).await,
        s(&["rel-1", "rel-2", "rel-3"])
    );
    // The C360 page's Relationship section and its CTAs, Cockpit and the
    // relationship types list.
    assert_eq!(
        page_ids(&c, &f, &bea, "/companies/co-100", "relationship").await,
        s(&["rel-1"])
    );
    assert_eq!(
        page_ids(&c, &f, &bea, "/companies/co-100", "cta").await,
        s(&["cta-1", "cta-4"])
    );
    let cockpit = page_ids(&c, &f, &ben, "/cockpit", "cta").await;
    assert!(
        cockpit.contains(&"cta-2".to_string()) && !cockpit.contains(&"cta-1".to_string()),
        "{cockpit:?}"
    );
    let r = get(&c, &base, &bea, "/api/relationship-types").await;
    let v: Value = r.json().await.unwrap();
    let names: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Product A"]);
    // Global search goes through the same list.
    let r = get(&c, &base, &ben, "/api/relationships?q=account").await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(ids(&v["data"]), s(&["rel-2", "rel-3"]));

    // Everyone on deletes the rules: asked for explicitly, naming them.
    let everyone = "/_guise/admin/permissions/resources/relationship_type/everyone";
    let r = admin(&c, &f, &ada, "PUT", everyone, json!({"everyone": true})).await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("Business Unit Permission 1")
            && detail.contains("Business Unit Permission 2"),
        "{detail}"
    );
    let r = admin(
        &c,
        &f,
        &ada,
        "PUT",
        everyone,
        json!({"everyone": true, "confirm": true}),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["deleted_rules"],
        json!(["Business Unit Permission 1", "Business Unit Permission 2"])
    );
    // With no rules, everyone sees Account 100's relationships.
    assert_eq!(
        account_100(&c, &f, &bea).await,
        s(&["rel-1", "rel-2", "rel-3"])
    );
    assert_eq!(
        account_100(&c, &f, &ben).await,
        s(&["rel-1", "rel-2", "rel-3"])
    );

    // Everyone off and no rule: nobody does (but the super admin).
    let r = admin(&c, &f, &ada, "PUT", everyone, json!({"everyone": false})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["note"].as_str().unwrap().contains("nobody"), "{v}");
    assert!(account_100(&c, &f, &bea).await.is_empty());
    assert!(account_100(&c, &f, &ben).await.is_empty());
    assert!(page_ids(&c, &f, &bea, "/companies/co-100", "relationship")
        .await
        .is_empty());
    assert_eq!(account_100(&c, &f, &sam).await.len(), 3);

    // "Business Unit = BU1 → Name = Product A": BU1 users only.
    let rule =
        "/_guise/admin/permissions/resources/relationship_type/rules/Business%20Unit%20Permission";
    let r = admin(
        &c,
        &f,
        &ada,
        "PUT",
        rule,
        json!({
            "action": "read",
            "criteria": [{"attribute": "Business Unit", "operator": "=", "value": "BU1"}],
            "advice": [{"attribute": "Name", "operator": "=", "value": "Product A"}]
        }),
    )
    .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    assert_eq!(account_100(&c, &f, &bea).await, s(&["rel-1"]));
    assert!(account_100(&c, &f, &ben).await.is_empty());
    assert_eq!(
        page_ids(&c, &f, &bea, "/companies/co-100", "relationship").await,
        s(&["rel-1"])
    );

    // The same through the sharing group.
    let r = admin(
        &c,
        &f,
        &ada,
        "PUT",
        rule,
        json!({
            "action": "read",
            "criteria": [{"attribute": "User Group", "operator": "in", "value": "UseGroupforBU1"}],
            "advice": [{"attribute": "Name", "operator": "=", "value": "Product A", "case_sensitive": false}]
        }),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(account_100(&c, &f, &bea).await, s(&["rel-1"]));
    assert!(account_100(&c, &f, &ben).await.is_empty());
    let r = get(
        &c,
        &base,
        &ada,
        "/_guise/admin/permissions/explain?user=u-bu1&resource=relationship&record=rel-1",
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["allowed"], true, "{v}");
    assert_eq!(v["granted_by"]["rule"], "Business Unit Permission");
    assert_eq!(v["granted_by"]["resource"], "relationship_type");
    assert_eq!(v["granted_by"]["groups"], json!(["UseGroupforBU1"]));

    // Every change is audited with the acting admin.
    let path = f.dir.path().join("guise-demo-audit.jsonl");
    let changes = eventually(
        std::time::Duration::from_secs(5),
        "the changes audited",
        || async {
            let audit = std::fs::read_to_string(&path).unwrap_or_default();
            let changes: Vec<Value> = audit
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|v| v["event"] == "permission_change")
                .collect();
            (changes.len() >= 4).then_some(changes)
        },
    )
    .await;
    assert!(
        changes.iter().all(|v| v["impersonator"] == "u-admin"),
        "{changes:?}"
    );
    assert!(
        changes[0]["reason"]
            .as_str()
            .unwrap()
            .contains("relationship_type"),
        "{changes:?}"
    );
}

/// A record the request names is decided before it goes upstream; a
/// single record read from the answer is refused when unreadable; writes
/// need a WRITE grant; a refusal names resource and action, never a rule.
#[tokio::test]
async fn single_records_writes_and_refusals() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let bea = login(&c, &base, "bu1@demo.test", DEMO_PW).await;
    let ben = login(&c, &base, "bu2@demo.test", DEMO_PW).await;
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;

    // By path (a lookup of the relationship, then its type's rules).
    assert_eq!(
        get(&c, &base, &bea, "/api/relationships/rel-1")
            .await
            .status(),
        200
    );
    let r = get(&c, &base, &bea, "/api/relationships/rel-2").await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "permission_denied");
    assert_eq!(v["detail"], "no rule grants READ on this relationship");
    assert_eq!(
        get(&c, &base, &ben, "/api/relationships/rel-2")
            .await
            .status(),
        200
    );
    // The R360 page.
    let r = c
        .get(f.url("/relationships/rel-2"))
        .header("cookie", &bea.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // By query: every value of a repeated parameter is decided.
    let r = get(
        &c,
        &base,
        &bea,
        "/api/ctas?relationship_id=rel-1&relationship_id=rel-2",
    )
    .await;
    assert_eq!(r.status(), 403);
    // A single record judged on the answer.
    assert_eq!(get(&c, &base, &bea, "/api/ctas/cta-1").await.status(), 200);
    assert_eq!(get(&c, &base, &bea, "/api/ctas/cta-4").await.status(), 200);
    let r = get(&c, &base, &bea, "/api/ctas/cta-2").await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["detail"], "no rule grants READ on this cta");

    // Writes: only READ rules so far.
    let patch = |who: &Signed, path: &str| {
        c.patch(f.url(path))
            .header("cookie", &who.cookie)
            .json(&json!({"status": "Active"}))
            .send()
    };
    let r = patch(&bea, "/api/relationships/rel-1").await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["detail"], "no rule grants WRITE on this relationship");
    // A write rule for BU1 on Product A: WRITE implies READ.
    let r = admin(
        &c,
        &f,
        &ada,
        "PUT",
        "/_guise/admin/permissions/resources/relationship_type/rules/BU1%20writes",
        json!({
            "action": "write",
            "criteria": [{"attribute": "Business Unit", "operator": "=", "value": "BU1"}],
            "advice": [{"attribute": "Name", "operator": "in", "values": ["Product A", "Spark"]}]
        }),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        patch(&bea, "/api/relationships/rel-1")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        patch(&bea, "/api/relationships/rel-2")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        get(&c, &base, &bea, "/api/relationships/rel-2")
            .await
            .status(),
        200
    );
    assert_eq!(
        patch(&ben, "/api/relationships/rel-2")
            .await
            .unwrap()
            .status(),
        403
    );
    // A write is decided on the record its route names, looked up: a
    // company-level CTA is written under "Company-level CTAs"; Ben's BU2
    // has no write rule for Product A, so cta-1 is refused him.
    let r = patch(&bea, "/api/ctas/cta-4").await.unwrap();
    assert_eq!(r.status(), 200);
    let r = patch(&ben, "/api/ctas/cta-1").await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["detail"], "no rule grants WRITE on this cta");
    // A write naming no record (a create) needs a grant on every record.
    let r = c
        .post(f.url("/api/ctas"))
        .header("cookie", &bea.cookie)
        .json(&json!({"title": "New", "company_id": "co-100"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Metrics: decisions by result, cache use, lookups.
    assert!(
        f.metric("guise_permission_decisions_total{result=\"denied\"}")
            .await
            >= 4.0
    );
    assert!(
        f.metric("guise_permission_decisions_total{result=\"allowed\"}")
            .await
            >= 3.0
    );
    assert!(
        f.metric("guise_permission_lookups_total{result=\"found\"}")
            .await
            >= 1.0
    );
    assert!(f.metric("guise_permission_filtered_records_total").await >= 0.0);
    let text = f.metrics_text().await;
    assert!(text.contains("guise_permission_lookup_duration_seconds_count"));
    assert!(text.contains("guise_permission_cache_total{cache=\"decisions\",outcome=\"hit\"}"));
}

/// A lookup that fails refuses the request with a reason (fail closed),
/// and the next request after the upstream recovers is decided again.
#[tokio::test]
async fn a_failed_lookup_refuses_with_a_reason() {
    let yaml = demo_yaml(MEMORY, "").replace(
        "lookup: { path: \"/api/relationships/{id}\", pointer: /data }",
        "lookup: { path: \"/api/status/503?id={id}\", pointer: /data }",
    );
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    let base = f.url("");
    let bea = login(&c, &base, "bu1@demo.test", DEMO_PW).await;
    let r = get(&c, &base, &bea, "/api/relationships/rel-1").await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "permission_lookup_failed");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("relationship record"),
        "{v}"
    );
    assert_eq!(
        f.metric("guise_permission_lookups_total{result=\"failed\"}")
            .await,
        1.0
    );
    // Not cached: the next request looks up again.
    assert_eq!(
        get(&c, &base, &bea, "/api/relationships/rel-1")
            .await
            .status(),
        503
    );
    assert_eq!(
        f.metric("guise_permission_lookups_total{result=\"failed\"}")
            .await,
        2.0
    );
}

/// What the admin API refuses, and how it names the problem.
#[tokio::test]
async fn the_admin_api_checks_every_change() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let bea = login(&c, &base, "bu1@demo.test", DEMO_PW).await;

    // Admins only.
    let r = admin(
        &c,
        &f,
        &bea,
        "POST",
        "/_guise/admin/permissions/refresh-user-data",
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 403);
    // A bad operator names the field.
    let r = admin(
        &c,
        &f,
        &ada,
        "PUT",
        "/_guise/admin/permissions/resources/relationship_type/rules/x",
        json!({"action": "read", "advice": [{"attribute": "Name", "operator": "like", "value": "P%"}]}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .starts_with("resources[0].rules[2].advice[0].operator:"),
        "{v}"
    );
    // An unknown action is refused by the body's shape.
    let r = admin(
        &c,
        &f,
        &ada,
        "PUT",
        "/_guise/admin/permissions/resources/relationship_type/rules/x",
        json!({"action": "delete"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    // A resource attribute in use cannot be deleted; the rules are named.
    let r = admin(
        &c,
        &f,
        &ada,
        "DELETE",
        "/_guise/admin/permissions/resources/relationship_type/attributes/Name",
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("Business Unit Permission 1"),
        "{v}"
    );
    // User attributes stay once added.
    let r = admin(
        &c,
        &f,
        &ada,
        "POST",
        "/_guise/admin/permissions/user-attributes",
        json!({"name": "Region"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    let r = admin(
        &c,
        &f,
        &ada,
        "DELETE",
        "/_guise/admin/permissions/user-attributes/Region",
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 409);
    // Sharing-group names: letters and digits only.
    let r = admin(
        &c,
        &f,
        &ada,
        "PUT",
        "/_guise/admin/permissions/groups/BU%201",
        json!({"criteria": []}),
    )
    .await;
    assert_eq!(r.status(), 400);
    // A group a rule names cannot be deleted.
    let r = admin(
        &c,
        &f,
        &ada,
        "DELETE",
        "/_guise/admin/permissions/groups/UseGroupforBU1",
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 409);
    // Members: Bea and Vic by criteria (and Ada, Anna: BU1 too); removing
    // one by hand would not stick.
    let r = get(
        &c,
        &base,
        &ada,
        "/_guise/admin/permissions/groups/UseGroupforBU1/members",
    )
    .await;
    let v: Value = r.json().await.unwrap();
    let members: Vec<&str> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user"].as_str().unwrap())
        .collect();
    assert!(
        members.contains(&"u-bu1") && members.contains(&"u-viewer") && !members.contains(&"u-bu2"),
        "{v}"
    );
    let r = admin(
        &c,
        &f,
        &ada,
        "DELETE",
        "/_guise/admin/permissions/groups/UseGroupforBU1/members/u-bu1",
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["detail"].as_str().unwrap().contains("would not stick"),
        "{v}"
    );
    // Explain says when nothing grants it.
    let r = get(
        &c,
        &base,
        &ada,
        "/_guise/admin/permissions/explain?user=u-bu1&resource=relationship&record=rel-2",
    )
    .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["allowed"], false);
    assert_eq!(v["reason"], "no rule grants it");
    // The policy as it stands, with its epoch.
    let r = get(&c, &base, &ada, "/_guise/admin/permissions").await;
    let v: Value = r.json().await.unwrap();
    assert!(v["user_attributes"]
        .as_array()
        .unwrap()
        .contains(&json!("Region")));
    assert!(v["epoch"].as_u64().unwrap() >= 2);
}

/// A change made on one node holds on the other at once: rules through
/// the policy epoch, users through their facts.
#[tokio::test]
async fn changes_take_effect_on_every_node_at_once() {
    let (_redis, a, b) = demo_nodes_on_redis().await;
    let c = client();
    let ada = login(&c, &a.url(""), "admin@demo.test", DEMO_PW).await;
    let bea_b = login(&c, &b.url(""), "bu1@demo.test", DEMO_PW).await;
    let ben_b = login(&c, &b.url(""), "bu2@demo.test", DEMO_PW).await;
    assert_eq!(account_100(&c, &b, &bea_b).await, s(&["rel-1"]));
    // Cached on B: the decision on rel-1 for Bea.
    assert_eq!(
        get(&c, &b.url(""), &bea_b, "/api/relationships/rel-1")
            .await
            .status(),
        200
    );

    // Node A deletes the rule that lets BU1 see Product A.
    let r = admin(
        &c,
        &a,
        &ada,
        "DELETE",
        "/_guise/admin/permissions/resources/relationship_type/rules/Business%20Unit%20Permission%201",
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 200);
    eventually(
        std::time::Duration::from_secs(5),
        "node B drops the rule",
        || async { account_100(&c, &b, &bea_b).await.is_empty().then_some(()) },
    )
    .await;
    // The cached decision went with the old epoch.
    assert_eq!(
        get(&c, &b.url(""), &bea_b, "/api/relationships/rel-1")
            .await
            .status(),
        403
    );

    // Ben moves to BU1 (a user change on A): B recomputes his facts.
    assert_eq!(account_100(&c, &b, &ben_b).await, s(&["rel-2", "rel-3"]));
    let r = admin(
        &c,
        &a,
        &ada,
        "PATCH",
        "/_guise/admin/users/u-bu2",
        json!({"attributes": {"Business Unit": "BU1"}}),
    )
    .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    eventually(
        std::time::Duration::from_secs(5),
        "node B sees Ben's new unit",
        || async { account_100(&c, &b, &ben_b).await.is_empty().then_some(()) },
    )
    .await;
    // "Refresh User Data" reaches every node too.
    let r = admin(
        &c,
        &a,
        &ada,
        "POST",
        "/_guise/admin/permissions/refresh-user-data",
        json!({}),
    )
    .await;
    assert_eq!(r.status(), 200);
    eventually(
        std::time::Duration::from_secs(5),
        "node B refreshes",
        || async {
            (b.metric("guise_permission_refreshes_total{kind=\"user_data\"}")
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
}

/// Admins saving at the same moment on two nodes each keep their change:
/// a save that finds another made meanwhile applies its edit again on top
/// of it instead of writing over it (the policy is one stored record).
#[tokio::test]
async fn concurrent_changes_on_two_nodes_are_all_kept() {
    let (_redis, a, b) = demo_nodes_on_redis().await;
    let c = client();
    let ada_a = login(&c, &a.url(""), "admin@demo.test", DEMO_PW).await;
    let ada_b = login(&c, &b.url(""), "admin@demo.test", DEMO_PW).await;
    const RULES: usize = 16;
    let saves = (0..RULES).map(|i| {
        let (f, who) = if i % 2 == 0 { (&a, &ada_a) } else { (&b, &ada_b) };
        let c = c.clone();
        async move {
            let r = admin(
                &c,
                f,
                who,
                "PUT",
                &format!("/_guise/admin/permissions/resources/relationship_type/rules/Concurrent{i}"),
                json!({
                    "action": "read",
                    "criteria": [{"attribute": "Business Unit", "operator": "=", "value": format!("BU{i}")}],
                    "advice": [{"attribute": "Name", "operator": "=", "value": "Product A"}]
                }),
            )
            .await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    for (status, body) in futures_util::future::join_all(saves).await {
        assert_eq!(status, 201, "{body}");
    }
    for (f, who) in [(&a, &ada_a), (&b, &ada_b)] {
        eventually(
            std::time::Duration::from_secs(5),
            "every node holds every rule",
            || async {
                let v: Value = get(&c, &f.url(""), who, "/_guise/admin/permissions")
                    .await
                    .json()
                    .await
                    .ok()?;
                let names: Vec<String> = v["resources"]
                    .as_array()?
                    .iter()
                    .filter(|r| r["name"] == "relationship_type")
                    .flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default())
                    .filter_map(|rule| rule["name"].as_str().map(str::to_string))
                    .filter(|n| n.starts_with("Concurrent"))
                    .collect();
                (names.len() == RULES).then_some(())
            },
        )
        .await;
    }
}

/// The admin page's explain form asks the same question as the endpoint
/// and words the answer.
#[tokio::test]
async fn the_admin_page_explains_a_decision() {
    let f = Fixture::start_with(&demo_yaml(MEMORY, "")).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let page = |q: &'static str| {
        c.get(f.url(&format!("/_guise/admin?{q}")))
            .header("cookie", &ada.cookie)
            .header("accept", "text/html")
            .send()
    };
    let html = page(
        "explain_user=u-bu1&explain_resource=relationship&explain_action=read&explain_record=rel-1",
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(html.contains("data-explain=\"allowed\""), "{html}");
    assert!(
        html.contains("Business Unit Permission 1") && html.contains("UseGroupforBU1"),
        "{html}"
    );
    let html = page("explain_user=u-bu1&explain_resource=relationship&explain_record=rel-2")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-explain=\"denied\"") && html.contains("no rule grants it"));
    let html = page("explain_user=nobody&explain_resource=relationship")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("no user nobody"), "{html}");
}
