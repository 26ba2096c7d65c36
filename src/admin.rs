//! The admin API under `/_guise/admin/`: users and their sessions.
//!
//! JSON in and out; admins only. Every state-changing call must come from
//! this site and carry the caller's session CSRF token in `x-csrf-token`.
//! Only a super admin may create, change or grant admin and super-admin
//! accounts, so an admin cannot raise their own or anyone's privileges.

use std::sync::Arc;

use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{csrf, read_body, user_json, AuthService, Identity, Req};
use crate::respond::{self, send_refusal, Refusal};
use crate::store::StoreEvent;
use crate::users::{Licence, Role, User, UserStatus};

/// Why an admin call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("sign in as an admin to use the admin API")]
    NotSignedIn,
    #[error("the admin API is for admins; {0} is not one")]
    NotAdmin(String),
    #[error("{0}")]
    Csrf(#[from] csrf::CsrfError),
    #[error("only a super admin may {0}")]
    NeedsSuperAdmin(&'static str),
    #[error("no user {0}")]
    NoUser(String),
    #[error("no session {0} of this user")]
    NoSession(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("a user with id {0} already exists")]
    Exists(String),
    #[error("no admin endpoint {0}")]
    NotFound(String),
    #[error("the session store is unavailable: {0}")]
    Store(String),
}

impl AdminError {
    fn refusal(&self) -> Refusal {
        let (status, code, title) = match self {
            AdminError::NotSignedIn => (401, "login_required", "Sign-in required"),
            AdminError::NotAdmin(_) | AdminError::NeedsSuperAdmin(_) => {
                (403, "forbidden", "Forbidden")
            }
            AdminError::Csrf(_) => (403, "csrf", "Request refused"),
            AdminError::NoUser(_) | AdminError::NoSession(_) | AdminError::NotFound(_) => {
                (404, "not_found", "Not found")
            }
            AdminError::BadRequest(_) => (400, "bad_request", "Bad request"),
            AdminError::Exists(_) => (409, "conflict", "Conflict"),
            AdminError::Store(_) => (
                503,
                "session_store_unavailable",
                "Session store unavailable",
            ),
        };
        Refusal::new(status, code, title, self.to_string())
    }
}

/// Answer one admin API request.
pub async fn handle(
    svc: &AuthService,
    s: &mut Session,
    req: &Req<'_>,
    identity: Option<&Identity>,
) -> pingora::Result<()> {
    match dispatch(svc, s, req, identity).await {
        Ok((status, body)) => respond::send_json(s, status, &body, &[]).await,
        Err(e) => {
            if let Some(i) = identity {
                tracing::info!(actor = %i.user.id, error = %e, "admin call refused");
            }
            send_refusal(s, &e.refusal()).await
        }
    }
}

async fn dispatch(
    svc: &AuthService,
    s: &mut Session,
    req: &Req<'_>,
    identity: Option<&Identity>,
) -> Result<(u16, Value), AdminError> {
    let actor = identity.ok_or(AdminError::NotSignedIn)?;
    if !(actor.user.has_role(Role::Admin) || actor.user.has_role(Role::SuperAdmin)) {
        return Err(AdminError::NotAdmin(actor.user.id.clone()));
    }
    let method = s.req_header().method.clone();
    if method != http::Method::GET && method != http::Method::HEAD {
        csrf::same_origin(s.req_header(), req.https)?;
        csrf::check_token(
            &actor.session.record.csrf_token,
            csrf::header_token(s.req_header()),
        )?;
    }
    let path = s.req_header().uri.path().to_string();
    let parts: Vec<&str> = path
        .trim_start_matches("/_guise/admin")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["users"]) => {
            let mut users: Vec<Arc<User>> = svc.directory.all();
            users.sort_by(|a, b| a.id.cmp(&b.id));
            Ok((
                200,
                json!({ "users": users.iter().map(|u| user_json(u)).collect::<Vec<_>>() }),
            ))
        }
        ("POST", ["users"]) => {
            let body = body_json(s).await?;
            create_user(svc, actor, body).await
        }
        ("GET", ["users", id]) => {
            let u = svc
                .directory
                .get(id)
                .ok_or_else(|| AdminError::NoUser(id.to_string()))?;
            Ok((200, json!({ "user": user_json(&u) })))
        }
        ("PATCH", ["users", id]) => {
            let body = body_json(s).await?;
            update_user(svc, actor, id, body).await
        }
        ("GET", ["users", id, "sessions"]) => {
            svc.directory
                .get(id)
                .ok_or_else(|| AdminError::NoUser(id.to_string()))?;
            let list = svc
                .sessions
                .list(id)
                .await
                .map_err(|e| AdminError::Store(e.to_string()))?;
            let sessions: Vec<Value> = list
                .iter()
                .map(|(_, r)| {
                    json!({
                        "session": r.reference,
                        "created_at": r.created_at,
                        "last_seen": r.last_seen,
                        "expires_at": r.absolute_expiry,
                        "client_ip": r.client_ip,
                        "current": r.reference == actor.session.record.reference,
                    })
                })
                .collect();
            Ok((200, json!({ "user": id, "sessions": sessions })))
        }
        ("DELETE", ["users", id, "sessions"]) => {
            svc.directory
                .get(id)
                .ok_or_else(|| AdminError::NoUser(id.to_string()))?;
            let n = svc
                .sessions
                .revoke_user(id)
                .await
                .map_err(|e| AdminError::Store(e.to_string()))?;
            tracing::info!(actor = %actor.user.id, user = %id, revoked = n, "all sessions of user revoked");
            Ok((200, json!({ "user": id, "revoked": n })))
        }
        ("DELETE", ["users", id, "sessions", reference]) => {
            let list = svc
                .sessions
                .list(id)
                .await
                .map_err(|e| AdminError::Store(e.to_string()))?;
            let (key, _) = list
                .into_iter()
                .find(|(_, r)| r.reference == *reference)
                .ok_or_else(|| AdminError::NoSession(reference.to_string()))?;
            svc.sessions
                .revoke(&key)
                .await
                .map_err(|e| AdminError::Store(e.to_string()))?;
            tracing::info!(actor = %actor.user.id, user = %id, session = %reference, "session revoked by admin");
            Ok((
                200,
                json!({ "user": id, "revoked": 1, "session": reference }),
            ))
        }
        _ => Err(AdminError::NotFound(format!("{method} {path}"))),
    }
}

async fn body_json(s: &mut Session) -> Result<Value, AdminError> {
    let body = read_body(s)
        .await
        .map_err(|r| AdminError::BadRequest(r.detail))?;
    serde_json::from_slice(&body)
        .map_err(|e| AdminError::BadRequest(format!("the body is not JSON: {e}")))
}

fn is_privileged(roles: &[Role]) -> bool {
    roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::SuperAdmin))
}

/// A new user: the user fields plus an optional plain `password`.
async fn create_user(
    svc: &AuthService,
    actor: &Identity,
    mut body: Value,
) -> Result<(u16, Value), AdminError> {
    let password = take_password(&mut body)?;
    let mut user: User = serde_json::from_value(body)
        .map_err(|e| AdminError::BadRequest(format!("not a user: {e}")))?;
    if user.password_hash.is_some() {
        return Err(AdminError::BadRequest(
            "send `password`, not `password_hash`".into(),
        ));
    }
    if svc.directory.get(&user.id).is_some() {
        return Err(AdminError::Exists(user.id));
    }
    if is_privileged(&user.roles) && !actor.user.has_role(Role::SuperAdmin) {
        return Err(AdminError::NeedsSuperAdmin("create admin accounts"));
    }
    if let Some(p) = password {
        user.password_hash = Some(hash(p).await?);
    }
    save(svc, user.clone()).await?;
    tracing::info!(actor = %actor.user.id, user = %user.id, "user created");
    Ok((201, json!({ "user": user_json(&user) })))
}

/// Fields an admin may change; absent ones stay.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    name: Option<String>,
    email: Option<String>,
    status: Option<UserStatus>,
    roles: Option<Vec<Role>>,
    attributes: Option<std::collections::BTreeMap<String, String>>,
    licence: Option<Licence>,
    internal: Option<bool>,
    can_impersonate: Option<bool>,
    password: Option<String>,
}

async fn update_user(
    svc: &AuthService,
    actor: &Identity,
    id: &str,
    body: Value,
) -> Result<(u16, Value), AdminError> {
    let old = svc
        .directory
        .get(id)
        .ok_or_else(|| AdminError::NoUser(id.to_string()))?;
    let p: Patch = serde_json::from_value(body)
        .map_err(|e| AdminError::BadRequest(format!("not a user change: {e}")))?;
    let super_admin = actor.user.has_role(Role::SuperAdmin);
    if is_privileged(&old.roles) && !super_admin {
        return Err(AdminError::NeedsSuperAdmin("change admin accounts"));
    }
    if p.roles.as_deref().is_some_and(is_privileged) && !super_admin {
        return Err(AdminError::NeedsSuperAdmin("grant admin roles"));
    }
    let mut u = (*old).clone();
    if let Some(v) = p.name {
        u.name = v;
    }
    if let Some(v) = p.email {
        u.email = v;
    }
    if let Some(v) = p.status {
        u.status = v;
    }
    if let Some(v) = p.roles {
        u.roles = v;
    }
    if let Some(v) = p.attributes {
        u.attributes = v;
    }
    if let Some(v) = p.licence {
        u.licence = v;
    }
    if let Some(v) = p.internal {
        u.internal = v;
    }
    if let Some(v) = p.can_impersonate {
        u.can_impersonate = v;
    }
    let password_changed = p.password.is_some();
    if let Some(pw) = p.password {
        u.password_hash = Some(hash(pw).await?);
    }
    save(svc, u.clone()).await?;
    // A disabled user, or one whose password changed, is signed out
    // everywhere at once.
    let mut revoked = 0;
    if !u.is_active() || password_changed {
        revoked = svc
            .sessions
            .revoke_user(&u.id)
            .await
            .map_err(|e| AdminError::Store(e.to_string()))?;
    }
    tracing::info!(actor = %actor.user.id, user = %u.id, revoked, "user changed");
    Ok((
        200,
        json!({ "user": user_json(&u), "sessions_revoked": revoked }),
    ))
}

fn take_password(body: &mut Value) -> Result<Option<String>, AdminError> {
    match body.as_object_mut().and_then(|m| m.remove("password")) {
        None => Ok(None),
        Some(Value::String(p)) if !p.is_empty() => Ok(Some(p)),
        Some(_) => Err(AdminError::BadRequest(
            "`password` must be a non-empty string".into(),
        )),
    }
}

async fn hash(password: String) -> Result<String, AdminError> {
    tokio::task::spawn_blocking(move || crate::users::hash_password(&password))
        .await
        .map_err(|e| AdminError::BadRequest(e.to_string()))?
        .map_err(|e| AdminError::BadRequest(e.to_string()))
}

/// Put the user in this node's directory, persist it in the store, and
/// tell the other nodes.
async fn save(svc: &AuthService, user: User) -> Result<(), AdminError> {
    user.check()
        .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let json = serde_json::to_string(&user).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let store = svc.sessions.store();
    store
        .save_user(&user.id, &json)
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?;
    let id = user.id.clone();
    svc.directory
        .upsert(user)
        .map_err(|e| AdminError::BadRequest(e.to_string()))?;
    store
        .publish(&StoreEvent::UserChanged { user_id: id })
        .await
        .map_err(|e| AdminError::Store(e.to_string()))?;
    Ok(())
}
