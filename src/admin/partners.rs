//! The admin API's partner endpoints: partners with their assigned
//! records and shared reports, permission bundles, licence seats, client
//! tenants and their paired users.
//!
//! | | |
//! |---|---|
//! | `GET /_guise/admin/partners` | every partner |
//! | `GET /_guise/admin/partners/{id}` | one partner, with its users |
//! | `PUT /_guise/admin/partners/{id}` | create or replace a partner |
//! | `POST /_guise/admin/partners/import` | a CRM export (CSV); `?skip_bad_rows=true` |
//! | `GET /_guise/admin/bundles` | the default bundle and the custom ones |
//! | `PUT /_guise/admin/bundles/{name}` | create or replace a custom bundle |
//! | `GET /_guise/admin/licences` | Full seats: used, free, total |
//! | `GET /_guise/admin/tenants` | client tenants with their quota use |
//! | `PUT /_guise/admin/tenants/{id}` | create or replace a tenant (turning partner login off revokes its paired sessions) |
//! | `GET /_guise/admin/tenants/{id}/paired` | the tenant's paired users, with their tenant roles |
//! | `PUT /_guise/admin/tenants/{id}/paired/{user}/roles` | a paired user's tenant roles (`{"roles": [...]}`) |
//!
//! A change is checked whole before it is stored (a refusal names the
//! field), saved in the store, and announced so every node rebuilds its
//! partner snapshot.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminApi, AdminError};
use crate::body;
use crate::config::Config;
use crate::partners::{
    self as rules, holds_full_seat, import, seats, Bundle, Partner, Seats, Tenant, BUNDLE, PARTNER,
    TENANT,
};
use crate::users::User;

/// `GET /_guise/admin/partners`.
pub fn list(api: &AdminApi) -> Result<(u16, Value), AdminError> {
    let snap = api.partners.snapshot();
    let partners: Vec<Value> = snap.partners().iter().map(|p| json!(**p)).collect();
    Ok((200, json!({ "partners": partners })))
}

/// `GET /_guise/admin/partners/{id}`.
pub fn get(api: &AdminApi, id: &str) -> Result<(u16, Value), AdminError> {
    let p = api
        .partners
        .snapshot()
        .partner(id)
        .ok_or_else(|| AdminError::NotFound(format!("partner {id}")))?;
    let users: Vec<Value> = api
        .directory
        .all()
        .iter()
        .filter(|u| u.partner.as_deref() == Some(id))
        .map(|u| u.public_json())
        .collect();
    Ok((200, json!({ "partner": *p, "users": users })))
}

/// `PUT /_guise/admin/partners/{id}`: the whole partner; the id in the
/// body, if given, must be the path's.
pub async fn put(
    api: &AdminApi,
    actor: &User,
    id: &str,
    raw: &[u8],
) -> Result<(u16, Value), AdminError> {
    let partner: Partner = whole_record(
        raw,
        id,
        "partner",
        "a partner (name, status, companies, relationships, reports, primary_user)",
    )?;
    check_partner(api, &partner)?;
    let existed = api.partners.snapshot().partner(id).is_some();
    api.partners
        .save(PARTNER, id, &partner)
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?;
    tracing::info!(actor = %actor.id, partner = %id, companies = partner.companies.len(), relationships = partner.relationships.len(), reports = partner.reports.len(), "partner saved");
    Ok((
        if existed { 200 } else { 201 },
        json!({ "partner": partner }),
    ))
}

/// The body of a `PUT` that replaces record `id` of `kind` whole: its `id`
/// is the path's when absent, and must be the path's when given.
fn whole_record<T: serde::de::DeserializeOwned>(
    raw: &[u8],
    id: &str,
    kind: &str,
    expected: &'static str,
) -> Result<T, AdminError> {
    let mut v: Value = body::parse_json(raw, expected)?;
    if let Some(obj) = v.as_object_mut() {
        match obj.get("id") {
            None => {
                obj.insert("id".into(), Value::String(id.to_string()));
            }
            Some(Value::String(s)) if s == id => {}
            Some(_) => {
                return Err(AdminError::Invalid(format!(
                    "id: the body names another {kind} than the path's `{id}`"
                )))
            }
        }
    }
    serde_json::from_value(v).map_err(|e| AdminError::Invalid(format!("not a {kind}: {e}")))
}

fn check_partner(api: &AdminApi, p: &Partner) -> Result<(), AdminError> {
    if p.id.is_empty() || !p.id.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b',') {
        return Err(AdminError::Invalid(
            "id: must be visible ASCII without spaces or commas".into(),
        ));
    }
    if p.name.trim().is_empty() {
        return Err(AdminError::Invalid("name: must not be empty".into()));
    }
    for (field, ids) in [
        ("companies", &p.companies),
        ("relationships", &p.relationships),
        ("reports", &p.reports),
    ] {
        if let Some(bad) = ids
            .iter()
            .find(|i| i.is_empty() || i.chars().any(char::is_control))
        {
            return Err(AdminError::Invalid(format!(
                "{field}: `{}` is not a record id",
                bad.escape_debug()
            )));
        }
    }
    if let Some(u) = &p.primary_user {
        match api.directory.get(u) {
            Some(x) if x.partner.as_deref() == Some(p.id.as_str()) => {}
            _ => {
                return Err(AdminError::Invalid(format!(
                    "primary_user: `{u}` is not a partner user of {}",
                    p.id
                )))
            }
        }
    }
    Ok(())
}

/// `GET /_guise/admin/bundles`.
pub fn bundles(api: &AdminApi, config: &Config) -> Result<(u16, Value), AdminError> {
    let snap = api.partners.snapshot();
    let custom: Vec<Value> = snap.bundles().iter().map(|b| json!(**b)).collect();
    Ok((
        200,
        json!({
            "areas": config.partners.areas,
            "default": **snap.default_bundle(),
            "bundles": custom,
        }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleBody {
    areas: Vec<String>,
}

/// `PUT /_guise/admin/bundles/{name}`: a custom bundle, a subset of the
/// default one.
pub async fn put_bundle(
    api: &AdminApi,
    config: &Config,
    actor: &User,
    name: &str,
    raw: &[u8],
) -> Result<(u16, Value), AdminError> {
    let b: BundleBody = body::parse_json(raw, "a bundle: {\"areas\": [...]}")?;
    if name == config.partners.default_bundle {
        return Err(AdminError::Invalid(format!(
            "name: `{name}` is the default bundle, which always holds every area"
        )));
    }
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == ',') {
        return Err(AdminError::Invalid(
            "name: must be non-empty, without commas or control characters".into(),
        ));
    }
    if let Some(a) = b.areas.iter().find(|a| !config.partners.areas.contains(*a)) {
        return Err(AdminError::Invalid(format!(
            "areas: `{a}` is not one of the configured areas ({})",
            config
                .partners
                .areas
                .iter()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let bundle = Bundle {
        name: name.to_string(),
        areas: b.areas.into_iter().collect(),
    };
    let existed = api.partners.snapshot().bundle(name).is_some();
    api.partners
        .save(BUNDLE, name, &bundle)
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?;
    tracing::info!(actor = %actor.id, bundle = %name, areas = ?bundle.areas, "bundle saved");
    Ok((if existed { 200 } else { 201 }, json!({ "bundle": bundle })))
}

/// `GET /_guise/admin/licences`.
pub fn licences(api: &AdminApi, config: &Config) -> Result<(u16, Value), AdminError> {
    let users = api.directory.all();
    let full = match seats(users.iter().map(|u| &**u), config.partners.full_seats) {
        Some(Seats { used, total }) => {
            json!({ "used": used, "total": total, "free": total.saturating_sub(used) })
        }
        None => {
            let used = users.iter().filter(|u| holds_full_seat(u)).count();
            json!({ "used": used, "total": null, "free": null })
        }
    };
    Ok((200, json!({ "full": full })))
}

/// Check the partner fields of a user an admin creates or changes: the
/// partner and bundle exist, and a user newly holding Full fits in the
/// seats. `before` is the user as it was (none when new).
pub fn check_user(
    api: &AdminApi,
    config: &Config,
    user: &User,
    before: Option<&User>,
) -> Result<(), AdminError> {
    let snap = api.partners.snapshot();
    if user.paired.is_some() && before.is_none_or(|b| b.paired != user.paired) {
        return Err(AdminError::Invalid(
            "paired: paired users are made by the gateway".into(),
        ));
    }
    if let Some(p) = &user.partner {
        if snap.partner(p).is_none() {
            return Err(AdminError::Invalid(format!("partner: no partner `{p}`")));
        }
    } else if user.bundle.is_some() || user.layout.is_some() {
        return Err(AdminError::Invalid(
            "bundle: `bundle` and `layout` are for partner users: give `partner` too".into(),
        ));
    }
    if let Some(b) = &user.bundle {
        if snap.bundle(b).is_none() {
            return Err(AdminError::Invalid(format!("bundle: no bundle `{b}`")));
        }
    }
    let newly_full = holds_full_seat(user) && !before.is_some_and(holds_full_seat);
    if newly_full {
        let users = api.directory.all();
        if let Some(s) = seats(users.iter().map(|u| &**u), config.partners.full_seats) {
            s.admit_one()?;
        }
    }
    Ok(())
}

/// `POST /_guise/admin/partners/import[?skip_bad_rows=true]`: a CRM export
/// as CSV (see [`crate::partners::import`]). A file with bad rows imports
/// nothing unless told to skip them; a file that would take more Full
/// seats than are free imports nothing.
pub async fn import(
    api: &AdminApi,
    config: &Config,
    actor: &User,
    raw: &[u8],
    query: Option<&str>,
) -> Result<(u16, Value), AdminError> {
    let skip = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k == "skip_bad_rows" && matches!(&*v, "true" | "1" | "yes"));
    let snap = api.partners.snapshot();
    let users = api.directory.all();
    let by_email = |email: &str| {
        users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .map(|u| (**u).clone())
    };
    let mut plan = import::plan(
        raw,
        skip,
        &|id| snap.partner(id).map(|p| (*p).clone()),
        &by_email,
    )
    .map_err(|e| AdminError::Invalid(e.to_string()))?;
    import::check_seats(
        &plan,
        users.iter().map(|u| &**u),
        config.partners.full_seats,
    )?;
    // Check every user against the directory before anything is stored.
    for u in &mut plan.users {
        if u.layout.is_none() {
            u.layout.clone_from(&config.partners.default_layout);
        }
        api.directory
            .check_upsert(u)
            .map_err(|e| AdminError::Invalid(format!("{}: {e}", u.email)))?;
    }
    for p in &plan.partners {
        api.partners
            .save(PARTNER, &p.id, p)
            .await
            .map_err(|e| AdminError::Store(e.to_string()))?;
    }
    for u in &plan.users {
        api.save(u.clone()).await?;
    }
    let skipped: Vec<Value> = plan
        .skipped
        .iter()
        .map(|e| json!({ "line": e.line, "reason": e.reason }))
        .collect();
    tracing::info!(actor = %actor.id, partners = plan.partners.len(), users = plan.users.len(), skipped = skipped.len(), "partners imported");
    Ok((
        200,
        json!({
            "partners_saved": plan.partners.len(),
            "users_saved": plan.users.len(),
            "skipped": skipped,
        }),
    ))
}

/// `GET /_guise/admin/tenants`: every tenant with its quota use (paired
/// users are listed apart and do not count against the quota).
pub fn tenants(api: &AdminApi) -> Result<(u16, Value), AdminError> {
    let users = api.directory.all();
    let list: Vec<Value> = api
        .partners
        .snapshot()
        .tenants()
        .iter()
        .map(|t| {
            let paired = users
                .iter()
                .filter(|u| u.paired.as_ref().is_some_and(|p| p.tenant == t.id))
                .count();
            json!({
                "tenant": **t,
                "quota": { "users": t.users, "user_quota": t.user_quota, "paired_users": paired },
            })
        })
        .collect();
    Ok((200, json!({ "tenants": list })))
}

/// `GET /_guise/admin/tenants/{id}/paired`: the tenant's paired users.
pub fn paired(api: &AdminApi, id: &str) -> Result<(u16, Value), AdminError> {
    if api.partners.snapshot().tenant(id).is_none() {
        return Err(AdminError::NotFound(format!("tenant {id}")));
    }
    let users: Vec<Value> = api
        .directory
        .all()
        .iter()
        .filter(|u| u.paired.as_ref().is_some_and(|p| p.tenant == id))
        .map(|u| u.public_json())
        .collect();
    Ok((200, json!({ "tenant": id, "paired_users": users })))
}

/// The body of a change of tenant roles, from an admin or a partner.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RolesBody {
    pub roles: Vec<String>,
}

/// What a change of tenant roles body looks like, for refusals.
pub(crate) const ROLES_BODY: &str = "the tenant roles: {\"roles\": [\"Partner User\", ...]}";

/// `PUT /_guise/admin/tenants/{id}/paired/{user}/roles`: the paired user's
/// roles inside the tenant (the app's role names; any of `tenants.roles`,
/// not only those a partner may give). `user` is the paired user's id
/// (`u-anna~initech`) or the id of the partner user it stands in for. The
/// change is stored and announced like every user change, so the next
/// request of its live sessions, on any node, carries the new roles.
pub async fn put_paired_roles(
    api: &AdminApi,
    config: &Config,
    actor: &User,
    (tenant, user): (&str, &str),
    raw: &[u8],
) -> Result<(u16, Value), AdminError> {
    let b: RolesBody = body::parse_json(raw, ROLES_BODY)?;
    if api.partners.snapshot().tenant(tenant).is_none() {
        return Err(AdminError::NotFound(format!("tenant {tenant}")));
    }
    let in_tenant = |id: &str| {
        api.directory
            .get(id)
            .filter(|u| u.paired.as_ref().is_some_and(|p| p.tenant == tenant))
    };
    let target = in_tenant(user)
        .or_else(|| in_tenant(&rules::paired_id(user, tenant)))
        .ok_or_else(|| AdminError::NotFound(format!("paired user {user} in tenant {tenant}")))?;
    rules::check_tenant_roles(&config.partners.tenants, &b.roles)?;
    let before = target.paired.as_ref().map(|p| p.roles.clone());
    let changed = rules::tenant_roles_changed(&target, b.roles);
    api.save(changed.clone()).await?;
    api.metrics
        .paired_role_changes
        .with_label_values(&["admin"])
        .inc();
    let after = changed.paired.as_ref().map(|p| p.roles.clone());
    tracing::info!(actor = %actor.id, tenant = %tenant, paired = %changed.id, before = ?before, after = ?after, by = "admin", "paired user's tenant roles changed");
    Ok((200, json!({ "user": changed.public_json() })))
}

/// `PUT /_guise/admin/tenants/{id}`: the whole tenant. Turning
/// `allow_partner_login` off stops new paired logins at once and revokes
/// the tenant's live paired sessions on every node.
pub async fn put_tenant(
    api: &AdminApi,
    config: &Config,
    actor: &User,
    id: &str,
    raw: &[u8],
) -> Result<(u16, Value), AdminError> {
    let tenant: Tenant = whole_record(
        raw,
        id,
        "tenant",
        "a tenant (name, hub, user_quota, users, allow_partner_login)",
    )?;
    if tenant.id.is_empty()
        || !tenant
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(AdminError::Invalid(
            "id: must be letters, digits, `-` or `_` (it is a path segment)".into(),
        ));
    }
    if tenant.name.trim().is_empty() {
        return Err(AdminError::Invalid("name: must not be empty".into()));
    }
    config
        .partners
        .tenants
        .check_hub(&tenant.hub)
        .map_err(|why| AdminError::Invalid(format!("hub: {why}")))?;
    let before = api.partners.snapshot().tenant(id);
    api.partners
        .save(TENANT, id, &tenant)
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?;
    let mut revoked = 0;
    if !tenant.allow_partner_login {
        for u in api.directory.all() {
            if u.paired.as_ref().is_some_and(|p| p.tenant == id) {
                revoked += api
                    .sessions
                    .revoke_user(&u.id)
                    .await
                    .map_err(|e| AdminError::Store(e.to_string()))?;
            }
        }
    }
    tracing::info!(actor = %actor.id, tenant = %id, allow_partner_login = tenant.allow_partner_login, paired_sessions_revoked = revoked, "tenant saved");
    Ok((
        if before.is_some() { 200 } else { 201 },
        json!({ "tenant": tenant, "paired_sessions_revoked": revoked }),
    ))
}
