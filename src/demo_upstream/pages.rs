//! Server-rendered HTML pages of the legacy app.
//!
//! They mirror the areas a partner permission bundle grants (Dashboard,
//! Timeline, Cockpit, Success Plan, Scorecard, Company/Relationship 360,
//! Reports) plus the personal-data lists (Contacts, Leads), so that the
//! gateway's area checks, record filters and privacy rules have something
//! real to act on. Every page shows which identity headers arrived.
//!
//! Table rows carry `data-resource`, `data-id` and, where it applies,
//! `data-partner-id` / `data-personal` attributes so an HTML response filter
//! can find records without parsing the visible text.

use http::{Method, StatusCode};
use minijinja::Environment;
use serde_json::{json, Map, Value};

use super::data::{Cta, Record, Store};
use super::respond::{html, Identity, Response};
use super::DemoUpstream;

/// The pages reachable from the nav bar or by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Page {
    Dashboard,
    Timeline,
    Cockpit,
    SuccessPlan,
    Scorecard,
    Companies,
    Company,
    Relationship,
    Contacts,
    Leads,
    Reports,
}

/// (nav key, link, label) of the nav bar, in order.
const NAV: [(&str, &str, &str); 9] = [
    ("dashboard", "/dashboard", "Dashboard"),
    ("timeline", "/timeline", "Timeline"),
    ("cockpit", "/cockpit", "Cockpit"),
    ("success-plan", "/success-plan", "Success Plan"),
    ("scorecard", "/scorecard", "Scorecard"),
    ("companies", "/companies", "Companies"),
    ("contacts", "/contacts", "Contacts"),
    ("leads", "/leads", "Leads"),
    ("reports", "/reports", "Reports"),
];

/// Cockpit status filters: (status, link).
const CTA_STATUSES: [(&str, &str); 3] = [
    ("Open", "/cockpit?status=Open"),
    ("Work in progress", "/cockpit?status=Work+in+progress"),
    ("Closed", "/cockpit?status=Closed"),
];

/// Templates are compiled into the binary so the demo needs no files.
const TEMPLATES: [(&str, &str); 16] = [
    ("layout.html", include_str!("templates/layout.html")),
    ("dashboard.html", include_str!("templates/dashboard.html")),
    ("timeline.html", include_str!("templates/timeline.html")),
    ("cockpit.html", include_str!("templates/cockpit.html")),
    (
        "success_plan.html",
        include_str!("templates/success_plan.html"),
    ),
    ("scorecard.html", include_str!("templates/scorecard.html")),
    ("companies.html", include_str!("templates/companies.html")),
    ("company.html", include_str!("templates/company.html")),
    (
        "relationship.html",
        include_str!("templates/relationship.html"),
    ),
    ("contacts.html", include_str!("templates/contacts.html")),
    ("leads.html", include_str!("templates/leads.html")),
    ("reports.html", include_str!("templates/reports.html")),
    ("login.html", include_str!("templates/login.html")),
    ("not_found.html", include_str!("templates/not_found.html")),
    ("error.html", include_str!("templates/error.html")),
    ("tenant.html", include_str!("templates/tenant.html")),
];

/// Builds the template environment. `.html` templates auto-escape.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    for (name, source) in TEMPLATES {
        if let Err(e) = env.add_template(name, source) {
            // Only reachable by editing a template badly; the tests render
            // every page, so this is caught before it ships.
            tracing::error!(template = name, error = %e, "demo upstream template does not compile");
        }
    }
    env.add_filter("money", money);
    env
}

/// 1234567 -> "$1,234,567".
fn money(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    out.push('$');
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What every page needs besides its own data.
pub(crate) struct PageContext<'a> {
    pub identity: &'a Identity,
    pub legacy_user: Option<String>,
}

/// Renders `template` inside the layout with `data` merged into the context.
pub(crate) fn render(
    app: &DemoUpstream,
    status: StatusCode,
    template: &str,
    title: &str,
    nav: &str,
    page: &PageContext<'_>,
    data: Value,
) -> Response {
    let mut ctx = match data {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    ctx.insert("title".into(), json!(title));
    ctx.insert("nav".into(), json!(nav));
    ctx.insert(
        "nav_items".into(),
        NAV.iter()
            .map(|(key, href, label)| json!({"key": key, "href": href, "label": label}))
            .collect(),
    );
    ctx.insert(
        "identity".into(),
        page.identity
            .iter()
            .map(|(name, value)| json!({"name": name, "value": value}))
            .collect(),
    );
    ctx.insert("legacy_user".into(), json!(page.legacy_user));
    let rendered = app
        .templates
        .get_template(template)
        .and_then(|t| t.render(&ctx));
    match rendered {
        Ok(body) => html(status, body),
        Err(e) => {
            tracing::error!(template, error = %e, "demo upstream page failed to render");
            html(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "<!doctype html><title>Error</title><h1>Page failed to render</h1><pre>{}</pre>",
                    escape(&e.to_string())
                ),
            )
        }
    }
}

/// Minimal HTML escaping for the one message rendered outside a template.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The 404 page for paths outside `/api/`.
pub(crate) fn not_found(app: &DemoUpstream, path: &str, page: &PageContext<'_>) -> Response {
    render(
        app,
        StatusCode::NOT_FOUND,
        "not_found.html",
        "Page not found",
        "",
        page,
        json!({ "path": path }),
    )
}

/// The client accounts (tenants) of the app, by id: the demo's two.
pub(crate) const TENANTS: [(&str, &str); 2] = [
    ("initech", "Initech (client account)"),
    ("umbrella", "Umbrella Logistics (client account)"),
];

/// A page inside tenant `tenant` (`/t/{tenant}/...`): its home, eSS or
/// linked records. Says whether the caller is a paired user.
pub(crate) fn tenant(
    app: &DemoUpstream,
    tenant: &str,
    rest: &str,
    page: &PageContext<'_>,
) -> Response {
    let Some((id, name)) = TENANTS.iter().find(|(id, _)| *id == tenant) else {
        return not_found(app, &format!("/t/{tenant}/{rest}"), page);
    };
    let section = match rest.trim_end_matches('/') {
        "" => "",
        "ess" => "employee self-service",
        "linked-records" => "linked records",
        _ => return not_found(app, &format!("/t/{tenant}/{rest}"), page),
    };
    let paired = page
        .identity
        .iter()
        .any(|(k, v)| k.ends_with("paired") && v == "1");
    render(
        app,
        StatusCode::OK,
        "tenant.html",
        name,
        "",
        page,
        json!({ "tenant": {"id": id, "name": name}, "paired": paired, "section": section }),
    )
}

/// 405 page for a non-GET request to a page.
pub(crate) fn method_not_allowed(
    app: &DemoUpstream,
    method: &Method,
    page: &PageContext<'_>,
) -> Response {
    let mut response = render(
        app,
        StatusCode::METHOD_NOT_ALLOWED,
        "error.html",
        "Method not allowed",
        "",
        page,
        json!({ "message": format!("{method} is not allowed on this page; use GET.") }),
    );
    response.headers_mut().insert(
        http::header::ALLOW,
        http::HeaderValue::from_static("GET, HEAD"),
    );
    response
}

/// Renders one page. `id` is the record id for the Company and Relationship
/// pages; `query` the raw query string (Cockpit's status filter).
pub(crate) fn show(
    app: &DemoUpstream,
    which: Page,
    id: Option<&str>,
    query: Option<&str>,
    page: &PageContext<'_>,
) -> Response {
    let store = app.read_store();
    let id = id.unwrap_or("");
    let (template, title, nav, data) = match which {
        Page::Dashboard => (
            "dashboard.html",
            "Dashboard".to_owned(),
            "dashboard",
            dashboard(&store),
        ),
        Page::Timeline => (
            "timeline.html",
            "Timeline".to_owned(),
            "timeline",
            json!({ "activities": activities(&store, |_| true) }),
        ),
        Page::Cockpit => {
            let status = query.and_then(|q| {
                super::respond::form_pairs(q.as_bytes())
                    .into_iter()
                    .find(|(k, _)| k == "status")
                    .map(|(_, v)| v)
            });
            let ctas = ctas(&store, |c| status.as_deref().is_none_or(|s| c.status == s));
            (
                "cockpit.html",
                "Cockpit".to_owned(),
                "cockpit",
                json!({ "ctas": ctas, "status": status, "statuses": CTA_STATUSES.map(|(label, href)| json!({"label": label, "href": href})) }),
            )
        }
        Page::SuccessPlan => (
            "success_plan.html",
            "Success Plan".to_owned(),
            "success-plan",
            success_plans(&store),
        ),
        Page::Scorecard => (
            "scorecard.html",
            "Scorecard".to_owned(),
            "scorecard",
            json!({ "companies": companies(&store) }),
        ),
        Page::Companies => (
            "companies.html",
            "Companies".to_owned(),
            "companies",
            json!({ "companies": companies(&store) }),
        ),
        Page::Company => match company_360(&store, id) {
            Some((name, data)) => ("company.html", name, "companies", data),
            None => return record_missing(app, "company", id, page),
        },
        Page::Relationship => match relationship_360(&store, id) {
            Some((name, data)) => ("relationship.html", name, "companies", data),
            None => return record_missing(app, "relationship", id, page),
        },
        Page::Contacts => (
            "contacts.html",
            "Contacts".to_owned(),
            "contacts",
            json!({ "contacts": contacts(&store, |_| true) }),
        ),
        Page::Leads => (
            "leads.html",
            "Leads".to_owned(),
            "leads",
            json!({ "leads": leads(&store) }),
        ),
        Page::Reports => (
            "reports.html",
            "Reports".to_owned(),
            "reports",
            json!({ "reports": values(store.reports.all()) }),
        ),
    };
    drop(store);
    render(app, StatusCode::OK, template, &title, nav, page, data)
}

fn record_missing(app: &DemoUpstream, noun: &str, id: &str, page: &PageContext<'_>) -> Response {
    render(
        app,
        StatusCode::NOT_FOUND,
        "error.html",
        &format!("No such {noun}"),
        "",
        page,
        json!({ "message": format!("There is no {noun} with id {id}.") }),
    )
}

fn values<T: Record>(records: &[T]) -> Vec<Value> {
    records
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect()
}

/// Serialises a record and adds display fields to it.
fn with(record: &impl serde::Serialize, extra: Value) -> Value {
    let mut value = serde_json::to_value(record).unwrap_or(Value::Null);
    if let (Value::Object(map), Value::Object(extra)) = (&mut value, extra) {
        map.extend(extra);
    }
    value
}

fn companies(store: &Store) -> Vec<Value> {
    store
        .companies
        .all()
        .iter()
        .map(|c| {
            with(
                c,
                json!({
                    "partner_name": store.partner_name(c.partner_id.as_deref()),
                    "health_band": health_band(c.health_score),
                }),
            )
        })
        .collect()
}

fn health_band(score: u8) -> &'static str {
    match score {
        70.. => "good",
        45..=69 => "fair",
        _ => "poor",
    }
}

fn ctas(store: &Store, keep: impl Fn(&Cta) -> bool) -> Vec<Value> {
    store
        .ctas
        .all()
        .iter()
        .filter(|c| keep(c))
        .map(|c| {
            let relationship_name = c
                .relationship_id
                .as_deref()
                .and_then(|r| store.relationships.get(r))
                .map(|r| r.name.clone());
            with(
                c,
                json!({
                    "company_name": store.company_name(&c.company_id),
                    "relationship_name": relationship_name,
                    "status_class": status_class(&c.status),
                }),
            )
        })
        .collect()
}

fn status_class(status: &str) -> &'static str {
    match status {
        "Closed" => "closed",
        "Work in progress" => "progress",
        _ => "open",
    }
}

fn activities(store: &Store, keep: impl Fn(&super::data::Activity) -> bool) -> Vec<Value> {
    let mut list: Vec<&super::data::Activity> =
        store.activities.all().iter().filter(|a| keep(a)).collect();
    list.sort_by(|a, b| b.date.cmp(&a.date));
    list.into_iter()
        .map(|a| {
            with(
                a,
                json!({ "company_name": store.company_name(&a.company_id) }),
            )
        })
        .collect()
}

fn contacts(store: &Store, keep: impl Fn(&super::data::Contact) -> bool) -> Vec<Value> {
    store
        .contacts
        .all()
        .iter()
        .filter(|c| keep(c))
        .map(|c| {
            let partner_id = store
                .companies
                .get(&c.company_id)
                .and_then(|co| co.partner_id.clone());
            with(
                c,
                json!({
                    "company_name": store.company_name(&c.company_id),
                    "partner_id": partner_id,
                }),
            )
        })
        .collect()
}

fn leads(store: &Store) -> Vec<Value> {
    store
        .leads
        .all()
        .iter()
        .map(|l| {
            with(
                l,
                json!({ "partner_name": store.partner_name(l.partner_id.as_deref()) }),
            )
        })
        .collect()
}

fn dashboard(store: &Store) -> Value {
    let total_arr: u64 = store.companies.all().iter().map(|c| c.arr).sum();
    let open = store
        .ctas
        .all()
        .iter()
        .filter(|c| c.status != "Closed")
        .count();
    let by_type: Vec<Value> = store
        .relationship_types
        .all()
        .iter()
        .map(|t| {
            let count = store
                .relationships
                .all()
                .iter()
                .filter(|r| r.relationship_type == t.name)
                .count();
            json!({ "name": t.name, "count": count })
        })
        .collect();
    let by_partner: Vec<Value> = store
        .partners
        .all()
        .iter()
        .map(|p| {
            let count = store
                .companies
                .all()
                .iter()
                .filter(|c| c.partner_id.as_deref() == Some(p.id.as_str()))
                .count();
            json!({ "id": p.id, "name": p.name, "count": count })
        })
        .collect();
    let mut recent = activities(store, |_| true);
    recent.truncate(5);
    let mut urgent = ctas(store, |c| c.status != "Closed" && c.priority == "High");
    urgent.truncate(5);
    json!({
        "company_count": store.companies.all().len(),
        "relationship_count": store.relationships.all().len(),
        "open_cta_count": open,
        "total_arr": total_arr,
        "by_type": by_type,
        "by_partner": by_partner,
        "recent": recent,
        "urgent": urgent,
    })
}

fn success_plans(store: &Store) -> Value {
    let plans: Vec<Value> = store
        .companies
        .all()
        .iter()
        .filter_map(|company| {
            let objectives = ctas(store, |c| c.company_id == company.id);
            if objectives.is_empty() {
                return None;
            }
            let done = objectives
                .iter()
                .filter(|c| c["status"] == "Closed")
                .count();
            let percent = done * 100 / objectives.len();
            Some(json!({
                "company": with(company, json!({})),
                "objectives": objectives,
                "done": done,
                "percent": percent,
            }))
        })
        .collect();
    json!({ "plans": plans })
}

fn company_360(store: &Store, id: &str) -> Option<(String, Value)> {
    let company = store.companies.get(id)?;
    let relationships: Vec<Value> = store
        .relationships
        .all()
        .iter()
        .filter(|r| r.company_id == id)
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    let data = json!({
        "company": with(company, json!({
            "partner_name": store.partner_name(company.partner_id.as_deref()),
            "health_band": health_band(company.health_score),
        })),
        "relationships": relationships,
        "ctas": ctas(store, |c| c.company_id == id),
        "contacts": contacts(store, |c| c.company_id == id),
        "activities": activities(store, |a| a.company_id == id),
    });
    Some((format!("{} — 360", company.name), data))
}

fn relationship_360(store: &Store, id: &str) -> Option<(String, Value)> {
    let relationship = store.relationships.get(id)?;
    let data = json!({
        "relationship": with(relationship, json!({
            "company_name": store.company_name(&relationship.company_id),
            "partner_name": store.partner_name(relationship.partner_id.as_deref()),
        })),
        "ctas": ctas(store, |c| c.relationship_id.as_deref() == Some(id)),
        "activities": activities(store, |a| a.relationship_id.as_deref() == Some(id)),
    });
    Some((format!("{} — Relationship 360", relationship.name), data))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{client, start};
    use super::money;

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(0), "$0");
        assert_eq!(money(999), "$999");
        assert_eq!(money(1_200_000), "$1,200,000");
    }

    #[tokio::test]
    async fn every_page_renders_with_the_identity_panel() {
        let handle = start();
        let http = client();
        let pages = [
            "/",
            "/dashboard",
            "/timeline",
            "/cockpit",
            "/cockpit?status=Open",
            "/success-plan",
            "/scorecard",
            "/companies",
            "/companies/co-100",
            "/companies/co-107",
            "/relationships/rel-1",
            "/contacts",
            "/leads",
            "/reports",
            "/login",
        ];
        for path in pages {
            let response = http
                .get(format!("{}{path}", handle.base_url()))
                .send()
                .await
                .expect("get");
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["x-demo-identity-seen"], "none");
            let text = response.text().await.expect("body");
            assert!(text.contains("Identity received from gateway"), "{path}");
            assert!(
                text.contains("none — this request did not come through guise"),
                "{path}"
            );
            assert!(!text.contains("Page failed to render"), "{path}");
        }
        handle.stop();
    }

    #[tokio::test]
    async fn company_360_shows_relationships_and_escapes_identity() {
        let handle = start();
        let response = client()
            .get(format!("{}/companies/co-100", handle.base_url()))
            .header("x-guise-user", "<script>alert(1)</script>")
            .send()
            .await
            .expect("get");
        assert_eq!(response.headers()["x-demo-identity-seen"], "x-guise-user");
        let text = response.text().await.expect("body");
        assert!(text.contains("Account 100"));
        assert!(text.contains("Product A"));
        assert!(text.contains("Spark"));
        assert!(text.contains("data-resource=\"relationship\" data-id=\"rel-1\""));
        assert!(!text.contains("<script>alert(1)</script>"));
        assert!(text.contains("&lt;script&gt;"));

        let missing = client()
            .get(format!("{}/companies/co-999", handle.base_url()))
            .send()
            .await
            .expect("get");
        assert_eq!(missing.status(), 404);
        let unknown = client()
            .get(format!("{}/no/such/page", handle.base_url()))
            .send()
            .await
            .expect("get");
        assert_eq!(unknown.status(), 404);
        assert!(unknown.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html"));
        handle.stop();
    }
}
