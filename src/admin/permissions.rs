//! The admin API's data-permission endpoints (see [`crate::permissions`]).
//!
//! | | |
//! |---|---|
//! | `GET /_guise/admin/permissions` | the policy in force |
//! | `PUT /_guise/admin/permissions/resources/{name}` | create or replace a resource (attributes, relations, rules, lookup, html) |
//! | `PUT /_guise/admin/permissions/resources/{name}/everyone` | `{"everyone": true, "confirm": true}`: the switch; turning it on deletes the rules and wants `confirm` |
//! | `PUT /_guise/admin/permissions/resources/{name}/rules/{rule}` | create or replace a sharing rule |
//! | `DELETE /_guise/admin/permissions/resources/{name}/rules/{rule}` | delete a rule |
//! | `DELETE /_guise/admin/permissions/resources/{name}/attributes/{attribute}` | refused while a rule uses it |
//! | `POST /_guise/admin/permissions/user-attributes` | `{"name": "Region"}`; user attributes cannot be deleted |
//! | `PUT /_guise/admin/permissions/groups/{name}` | create or replace a sharing group |
//! | `DELETE /_guise/admin/permissions/groups/{name}` | refused while a rule names it |
//! | `GET /_guise/admin/permissions/groups/{name}/members` | who is in it now, and why |
//! | `DELETE /_guise/admin/permissions/groups/{name}/members/{user}` | remove a member added by hand |
//! | `POST /_guise/admin/permissions/refresh-user-data` | "Refresh User Data" on every node |
//! | `POST /_guise/admin/permissions/groups/refresh` | "Refresh Sharing Group" on every node |
//! | `GET /_guise/admin/permissions/explain?user=&resource=&action=&record=` | the decision and what granted it |
//!
//! Every change is checked whole (a refusal names the field), saved for
//! every node, and audited with the acting admin.

use serde::Deserialize;
use serde_json::{json, Value};

use super::{AdminApi, AdminError};
use crate::audit::{AuditEvent, AuditRecord};
use crate::body;
use crate::call::Call;
use crate::permissions::{
    request, Action, Decision, GroupSpec, PolicySpec, ResourceSpec, RuleSpec, Viewer,
};
use crate::users::User;

fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `GET /_guise/admin/permissions`.
pub fn get(api: &AdminApi) -> Result<(u16, Value), AdminError> {
    let policy = api.permissions.policy();
    let spec = policy.spec();
    let resources: Vec<Value> = spec
        .resources
        .iter()
        .map(|r| {
            let mut v = json!(r);
            v["everyone"] = json!(r.everyone());
            v
        })
        .collect();
    Ok((
        200,
        json!({
            "epoch": policy.epoch,
            "user_attributes": spec.user_attributes,
            "resources": resources,
            "groups": spec.groups,
        }),
    ))
}

/// Apply `edit` to the policy as stored, check the result, save it for
/// every node and audit the change `edit` names as `actor`'s. Should
/// another admin save first, `edit` runs again on their policy (see
/// [`crate::permissions::Permissions::update`]), so it must only read what
/// it was given.
async fn save<T>(
    api: &AdminApi,
    actor: &User,
    mut edit: impl FnMut(&mut PolicySpec) -> Result<(T, String), AdminError>,
) -> Result<T, AdminError> {
    let (out, what) = api
        .permissions
        .update(|spec| {
            let done = edit(spec)?;
            spec.check()
                .map_err(|e| AdminError::Invalid(e.to_string()))?;
            Ok::<_, AdminError>(done)
        })
        .await?;
    tracing::info!(actor = %actor.id, change = %what, "data permissions changed");
    let audited = api.audit.record(AuditRecord {
        time_ms: unix_now_ms(),
        event: AuditEvent::PermissionChange,
        impersonator: actor.id.clone(),
        user: None,
        method: String::new(),
        path: String::new(),
        status: None,
        reason: Some(what),
        session: None,
    });
    if let Err(e) = audited {
        // The change is made and logged; the audit's own metric and log
        // say it is behind.
        tracing::warn!(error = %e, "a data-permission change could not be audited");
    }
    Ok(out)
}

/// Put `item` in place of the entry `same` finds, or add it: whether it
/// was added.
fn upsert<T>(list: &mut Vec<T>, item: T, same: impl Fn(&T) -> bool) -> bool {
    match list.iter_mut().find(|x| same(x)) {
        Some(old) => {
            *old = item;
            false
        }
        None => {
            list.push(item);
            true
        }
    }
}

fn resource_mut<'a>(
    spec: &'a mut PolicySpec,
    name: &str,
) -> Result<&'a mut ResourceSpec, AdminError> {
    spec.resources
        .iter_mut()
        .find(|r| r.name == name)
        .ok_or_else(|| AdminError::NotFound(format!("resource {name}")))
}

/// `PUT resources/{name}`.
pub async fn put_resource(
    api: &AdminApi,
    actor: &User,
    name: &str,
    raw: &[u8],
) -> Result<(u16, Value), AdminError> {
    let mut r: ResourceSpec = body::parse_json(
        raw,
        "a resource (name, attributes, relations, rules, everyone, lookup, html)",
    )?;
    if r.name.is_empty() {
        r.name = name.to_string();
    }
    if r.name != name {
        return Err(AdminError::Invalid(format!(
            "name: `{}` is not the path's `{name}`",
            r.name
        )));
    }
    let created = save(api, actor, |spec| {
        if let Some(old) = spec.resources.iter().find(|o| o.name == name) {
            // Attributes in use by the new rules are checked by the spec; a
            // dropped attribute still used there is refused with the rules.
            for a in &old.attributes {
                let used = r.rules_using(&a.name);
                if r.attribute(&a.name).is_none() && !used.is_empty() {
                    return Err(AdminError::Conflict(format!(
                        "attribute `{}` is used by rule(s) {}; change them first",
                        a.name,
                        used.join(", ")
                    )));
                }
            }
        }
        let created = upsert(&mut spec.resources, r.clone(), |x| x.name == name);
        Ok((created, format!("resource {name} saved")))
    })
    .await?;
    Ok((if created { 201 } else { 200 }, json!({ "resource": r })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Everyone {
    everyone: bool,
    #[serde(default)]
    confirm: bool,
}

/// `PUT resources/{name}/everyone`.
pub async fn put_everyone(
    api: &AdminApi,
    actor: &User,
    name: &str,
    raw: &[u8],
) -> Result<(u16, Value), AdminError> {
    let e: Everyone = body::parse_json(raw, "`{\"everyone\": true|false, \"confirm\": true}`")?;
    let deleted = save(api, actor, |spec| {
        let r = resource_mut(spec, name)?;
        let deleted: Vec<String> = r.rules.iter().map(|r| r.name.clone()).collect();
        if e.everyone && !deleted.is_empty() && !e.confirm {
            return Err(AdminError::Conflict(format!(
                "Everyone gets READ/WRITE deletes the rules of {name}: {}; send \"confirm\": true to go ahead",
                deleted.join(", ")
            )));
        }
        if e.everyone {
            r.rules.clear();
        }
        r.everyone = Some(e.everyone);
        let what = if e.everyone {
            format!(
                "Everyone gets READ/WRITE on {name} turned on; rules deleted: [{}]",
                deleted.join(", ")
            )
        } else {
            format!("Everyone gets READ/WRITE on {name} turned off")
        };
        Ok((deleted, what))
    })
    .await?;
    let note = (!e.everyone && deleted.is_empty())
        .then_some("no rule grants access to this resource: nobody but super admins reaches its records until a rule is added");
    Ok((
        200,
        json!({ "resource": name, "everyone": e.everyone, "deleted_rules": if e.everyone { deleted } else { Vec::new() }, "note": note }),
    ))
}

/// `PUT resources/{name}/rules/{rule}`.
pub async fn put_rule(
    api: &AdminApi,
    actor: &User,
    name: &str,
    rule_name: &str,
    raw: &[u8],
) -> Result<(u16, Value), AdminError> {
    let mut rule: RuleSpec =
        body::parse_json(raw, "a sharing rule (name, action, criteria, advice)")?;
    if rule.name.is_empty() {
        rule.name = rule_name.to_string();
    }
    if rule.name != rule_name {
        return Err(AdminError::Invalid(format!(
            "name: `{}` is not the path's `{rule_name}`",
            rule.name
        )));
    }
    let created = save(api, actor, |spec| {
        let r = resource_mut(spec, name)?;
        if r.everyone == Some(true) || (r.everyone.is_none() && r.rules.is_empty()) {
            return Err(AdminError::Conflict(format!(
                "{name} gives everyone READ/WRITE; turn that off (PUT …/everyone) before adding rules"
            )));
        }
        let created = upsert(&mut r.rules, rule.clone(), |x| x.name == rule_name);
        Ok((created, format!("rule `{rule_name}` on {name} saved")))
    })
    .await?;
    Ok((
        if created { 201 } else { 200 },
        json!({ "resource": name, "rule": rule }),
    ))
}

/// `DELETE resources/{name}/rules/{rule}`.
pub async fn delete_rule(
    api: &AdminApi,
    actor: &User,
    name: &str,
    rule_name: &str,
) -> Result<(u16, Value), AdminError> {
    save(api, actor, |spec| {
        let r = resource_mut(spec, name)?;
        let before = r.rules.len();
        r.rules.retain(|x| x.name != rule_name);
        if r.rules.len() == before {
            return Err(AdminError::NotFound(format!("rule {rule_name} of {name}")));
        }
        // Deleting the last rule keeps the switch off: nobody has access.
        r.everyone = Some(false);
        Ok(((), format!("rule `{rule_name}` on {name} deleted")))
    })
    .await?;
    Ok((200, json!({ "resource": name, "deleted": rule_name })))
}

/// `DELETE resources/{name}/attributes/{attribute}`.
pub async fn delete_attribute(
    api: &AdminApi,
    actor: &User,
    name: &str,
    attribute: &str,
) -> Result<(u16, Value), AdminError> {
    save(api, actor, |spec| {
        let relations_using: Vec<String> = spec
            .resources
            .iter()
            .filter(|r| r.name == name)
            .flat_map(|r| {
                r.relations
                    .iter()
                    .filter(|rel| rel.via == attribute)
                    .map(|rel| rel.resource.clone())
            })
            .collect();
        let r = resource_mut(spec, name)?;
        if r.attribute(attribute).is_none() {
            return Err(AdminError::NotFound(format!(
                "attribute {attribute} of {name}"
            )));
        }
        let used = r.rules_using(attribute);
        if !used.is_empty() {
            return Err(AdminError::Conflict(format!(
                "attribute `{attribute}` is used by rule(s) {}; change or delete them first",
                used.join(", ")
            )));
        }
        if !relations_using.is_empty() {
            return Err(AdminError::Conflict(format!(
                "attribute `{attribute}` links {name} to {}; remove that relation first",
                relations_using.join(", ")
            )));
        }
        r.attributes.retain(|a| a.name != attribute);
        if r.key.as_deref() == Some(attribute) {
            r.key = None;
        }
        Ok(((), format!("attribute `{attribute}` of {name} deleted")))
    })
    .await?;
    Ok((200, json!({ "resource": name, "deleted": attribute })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserAttribute {
    name: String,
}

/// `POST user-attributes`.
pub async fn add_user_attribute(
    api: &AdminApi,
    actor: &User,
    raw: &[u8],
) -> Result<(u16, Value), AdminError> {
    let a: NewUserAttribute = body::parse_json(raw, "`{\"name\": \"Region\"}`")?;
    let known = api.permissions.spec().user_attributes;
    if known.contains(&a.name) {
        return Ok((200, json!({ "user_attributes": known })));
    }
    let list = save(api, actor, |spec| {
        if !spec.user_attributes.contains(&a.name) {
            spec.user_attributes.push(a.name.clone());
        }
        Ok((
            spec.user_attributes.clone(),
            format!("user attribute `{}` added", a.name),
        ))
    })
    .await?;
    Ok((201, json!({ "user_attributes": list })))
}

/// `PUT groups/{name}`.
pub async fn put_group(
    api: &AdminApi,
    actor: &User,
    name: &str,
    raw: &[u8],
) -> Result<(u16, Value), AdminError> {
    let mut g: GroupSpec = body::parse_json(raw, "a sharing group (name, criteria, members)")?;
    if g.name.is_empty() {
        g.name = name.to_string();
    }
    if g.name != name {
        return Err(AdminError::Invalid(format!(
            "name: `{}` is not the path's `{name}`",
            g.name
        )));
    }
    let created = save(api, actor, |spec| {
        let created = upsert(&mut spec.groups, g.clone(), |x| x.name == name);
        Ok((created, format!("sharing group {name} saved")))
    })
    .await?;
    Ok((if created { 201 } else { 200 }, json!({ "group": g })))
}

/// Rules (as `resource/rule`) whose criteria name group `name`.
fn rules_naming_group(spec: &PolicySpec, name: &str) -> Vec<String> {
    spec.resources
        .iter()
        .flat_map(|r| {
            r.rules
                .iter()
                .filter(|rule| {
                    rule.criteria.iter().any(|c| {
                        c.attribute == crate::permissions::spec::USER_GROUP
                            && c.values.iter().any(|v| v == name)
                    })
                })
                .map(move |rule| format!("{}/{}", r.name, rule.name))
        })
        .collect()
}

/// `DELETE groups/{name}`.
pub async fn delete_group(
    api: &AdminApi,
    actor: &User,
    name: &str,
) -> Result<(u16, Value), AdminError> {
    save(api, actor, |spec| {
        if !spec.groups.iter().any(|g| g.name == name) {
            return Err(AdminError::NotFound(format!("sharing group {name}")));
        }
        let used = rules_naming_group(spec, name);
        if !used.is_empty() {
            return Err(AdminError::Conflict(format!(
                "sharing group {name} is named by rule(s) {}; change them first",
                used.join(", ")
            )));
        }
        spec.groups.retain(|g| g.name != name);
        Ok(((), format!("sharing group {name} deleted")))
    })
    .await?;
    Ok((200, json!({ "deleted": name })))
}

/// `GET groups/{name}/members`: each member with `by`: `criteria` or
/// `hand`.
pub fn members(api: &AdminApi, name: &str) -> Result<(u16, Value), AdminError> {
    let policy = api.permissions.policy();
    let group = policy
        .spec()
        .groups
        .iter()
        .find(|g| g.name == name)
        .cloned()
        .ok_or_else(|| AdminError::NotFound(format!("sharing group {name}")))?;
    let members: Vec<Value> = api
        .directory
        .all()
        .iter()
        .filter_map(|u| {
            let by_criteria = policy.matches_group_criteria(name, u);
            let by_hand = group.members.contains(&u.id);
            (by_criteria || by_hand).then(|| {
                json!({ "user": u.id, "name": u.name, "by": if by_criteria { "criteria" } else { "hand" } })
            })
        })
        .collect();
    Ok((200, json!({ "group": name, "members": members })))
}

/// `DELETE groups/{name}/members/{user}`.
pub async fn remove_member(
    api: &AdminApi,
    actor: &User,
    name: &str,
    user_id: &str,
) -> Result<(u16, Value), AdminError> {
    let user = api.user(user_id)?;
    let policy = api.permissions.policy();
    if policy.matches_group_criteria(name, &user) {
        return Err(AdminError::Conflict(format!(
            "{user_id} meets the criteria of sharing group {name}, so removing them by hand would not stick: the next refresh adds them back; change the criteria or the user's attributes instead"
        )));
    }
    save(api, actor, |spec| {
        let g = spec
            .groups
            .iter_mut()
            .find(|g| g.name == name)
            .ok_or_else(|| AdminError::NotFound(format!("sharing group {name}")))?;
        let before = g.members.len();
        g.members.retain(|m| m != user_id);
        if g.members.len() == before {
            return Err(AdminError::NotFound(format!(
                "{user_id} in sharing group {name}"
            )));
        }
        Ok(((), format!("{user_id} removed from sharing group {name}")))
    })
    .await?;
    Ok((200, json!({ "group": name, "removed": user_id })))
}

/// `POST refresh-user-data` and `POST groups/refresh`.
pub async fn refresh(api: &AdminApi, actor: &User, what: &str) -> Result<(u16, Value), AdminError> {
    api.permissions
        .refresh_user_data()
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?;
    tracing::info!(actor = %actor.id, what, "data-permission refresh");
    Ok((200, json!({ "refreshed": what })))
}

/// `GET explain?user=&resource=&action=&record=`.
pub async fn explain(
    api: &AdminApi,
    call: Call<'_>,
    query: Option<&str>,
) -> Result<(u16, Value), AdminError> {
    let q: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let need = |k: &str| {
        q.get(k).filter(|v| !v.is_empty()).cloned().ok_or_else(|| {
            AdminError::Invalid(format!(
                "{k}: missing (explain?user=&resource=&action=&record=)"
            ))
        })
    };
    let user = api.user(&need("user")?)?;
    let resource_name = need("resource")?;
    let action = match q.get("action").map(String::as_str) {
        None | Some("") => Action::Read,
        Some(a) => Action::parse(a)
            .ok_or_else(|| AdminError::Invalid(format!("action: `{a}` is not read or write")))?,
    };
    let record = q.get("record").cloned().unwrap_or_default();
    let policy = api.permissions.policy();
    let resource = policy.resource(&resource_name).ok_or_else(|| {
        AdminError::Invalid(format!("resource: `{resource_name}` is not a resource"))
    })?;
    // Explained from the user's record as it is now, not the cached facts.
    let facts = std::sync::Arc::new(policy.facts(&user));
    let viewer = Viewer {
        permissions: api.permissions.clone(),
        policy: policy.clone(),
        facts: facts.clone(),
    };
    let decision = if facts.super_admin {
        Decision::Allowed(crate::permissions::Grant::SuperAdmin)
    } else if record.is_empty() {
        policy.decide_any_record(&facts, resource, action)
    } else {
        request::decide_fresh(
            &viewer,
            call.live,
            resource,
            action,
            &record,
            unix_now_ms() / 1000,
        )
        .await
    };
    let (result, grant) = match decision {
        Decision::Allowed(g) => ("allowed", Some(policy.describe(g))),
        Decision::Denied => ("denied", None),
        Decision::Unavailable { .. } => ("unavailable", None),
    };
    Ok((
        200,
        json!({
            "user": user.id,
            "resource": resource_name,
            "action": action.as_str(),
            "record": if record.is_empty() { Value::Null } else { json!(record) },
            "allowed": decision.allowed(),
            "result": result,
            "granted_by": grant,
            "reason": if decision.allowed() { Value::Null } else if result == "unavailable" { json!("a record the decision needs could not be looked up") } else { json!("no rule grants it") },
            "user_groups": facts.groups,
            "epoch": policy.epoch,
        }),
    ))
}
