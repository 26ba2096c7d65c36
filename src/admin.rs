//! The admin API under `/_guise/admin/`: users and their sessions,
//! welcome emails (`POST users/{id}/welcome`, sent by [`crate::welcome`]),
//! and (in `admin/partners.rs`) partners, bundles and licence seats. The
//! admin page (`GET /_guise/admin`, [`page`]) offers the same actions to a
//! browser, through the same code paths.
//!
//! JSON in and out; admins only, as [`policy`] decides. Every
//! state-changing call must come from this site and carry the caller's
//! session CSRF token in `x-csrf-token`. A change is checked against the
//! directory before it is stored, so a change the directory would refuse
//! never reaches the store (where it would stop every node's directory
//! from being rebuilt).

pub mod page;
pub(crate) mod partners;
mod permissions;
pub mod policy;

use std::sync::Arc;

use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::{self, BodyError};
use crate::call::Call;
use crate::csrf::{self, CsrfError};
use crate::respond::{self, Refuse};
use crate::routes::GATEWAY_PREFIX;
use crate::session::SessionManager;
use crate::subject::Subject;
use crate::user_sync::{self, SaveError};
use crate::users::{Directory, Licence, Origin, Role, User, UserStatus};

/// Why an admin call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("sign in as an admin to use the admin API")]
    NotSignedIn,
    #[error("the admin API is for admins; {0} is not one")]
    NotAdmin(String),
    #[error(transparent)]
    Csrf(#[from] CsrfError),
    #[error("only a super admin may {0}")]
    NeedsSuperAdmin(&'static str),
    #[error("no user {0}")]
    NoUser(String),
    #[error("no session {0} of this user")]
    NoSession(String),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("a user with id {0} already exists")]
    Exists(String),
    #[error("no admin endpoint {0}")]
    NotFound(String),
    #[error("the session store is unavailable: {0}")]
    Store(String),
    #[error(transparent)]
    Partner(#[from] crate::partners::PartnerError),
    #[error(transparent)]
    Welcome(#[from] crate::welcome::WelcomeError),
}

impl From<crate::permissions::UpdateError> for AdminError {
    fn from(e: crate::permissions::UpdateError) -> AdminError {
        match e {
            crate::permissions::UpdateError::Store(e) => AdminError::Store(e.to_string()),
            contended @ crate::permissions::UpdateError::Contended(_) => {
                AdminError::Conflict(contended.to_string())
            }
        }
    }
}

impl Refuse for AdminError {
    fn status(&self) -> u16 {
        match self {
            AdminError::NotSignedIn => 401,
            AdminError::NotAdmin(_) | AdminError::NeedsSuperAdmin(_) => 403,
            AdminError::Csrf(e) => e.status(),
            AdminError::NoUser(_) | AdminError::NoSession(_) | AdminError::NotFound(_) => 404,
            AdminError::Body(e) => e.status(),
            AdminError::Invalid(_) => 400,
            AdminError::Exists(_) | AdminError::Conflict(_) => 409,
            AdminError::Store(_) => 503,
            AdminError::Partner(e) => e.status(),
            AdminError::Welcome(e) => e.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AdminError::NotSignedIn => "login_required",
            AdminError::NotAdmin(_) | AdminError::NeedsSuperAdmin(_) => "forbidden",
            AdminError::Csrf(e) => e.code(),
            AdminError::NoUser(_) | AdminError::NoSession(_) | AdminError::NotFound(_) => {
                "not_found"
            }
            AdminError::Body(e) => e.code(),
            AdminError::Invalid(_) => "bad_request",
            AdminError::Exists(_) | AdminError::Conflict(_) => "conflict",
            AdminError::Store(_) => "session_store_unavailable",
            AdminError::Partner(e) => e.code(),
            AdminError::Welcome(e) => e.code(),
        }
    }
}

/// The admin API of one gateway.
pub struct AdminApi {
    pub sessions: Arc<SessionManager>,
    pub directory: Arc<Directory>,
    pub partners: Arc<crate::partners::Registry>,
    /// Sends welcome emails (`POST users/{id}/welcome`).
    pub welcome: Arc<crate::welcome::Welcomes>,
    /// The data-permission policy, edited under `permissions/`.
    pub permissions: Arc<crate::permissions::Permissions>,
    /// Where data-permission changes are audited.
    pub audit: Arc<crate::audit::Audit>,
    /// The gateway's metrics (changes of paired users' tenant roles).
    pub metrics: crate::metrics::Metrics,
}

/// A new user: the user fields plus an optional plain `password`.
#[derive(Debug)]
pub struct NewUser {
    pub user: User,
    pub password: Option<String>,
}

impl NewUser {
    /// Parse the body of `POST /_guise/admin/users`.
    pub fn parse(body: &[u8]) -> Result<NewUser, AdminError> {
        let mut v: Value = body::parse_json(body, "a JSON object")?;
        let password = take_password(&mut v)?;
        let user: User = serde_json::from_value(v)
            .map_err(|e| AdminError::Invalid(format!("not a user: {e}")))?;
        if user.password_hash.is_some() {
            return Err(AdminError::Invalid(
                "send `password`, not `password_hash`".into(),
            ));
        }
        Ok(NewUser { user, password })
    }
}

/// Fields an admin may change; absent ones stay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    pub name: Option<String>,
    pub email: Option<String>,
    pub status: Option<UserStatus>,
    pub roles: Option<Vec<Role>>,
    pub attributes: Option<std::collections::BTreeMap<String, String>>,
    pub licence: Option<Licence>,
    pub internal: Option<bool>,
    pub can_impersonate: Option<bool>,
    pub password: Option<String>,
    /// `null` makes the user an ordinary one again.
    #[serde(default, deserialize_with = "present")]
    pub partner: Option<Option<String>>,
    /// `null`: back to the default bundle.
    #[serde(default, deserialize_with = "present")]
    pub bundle: Option<Option<String>>,
    /// `null`: back to the default layout.
    #[serde(default, deserialize_with = "present")]
    pub layout: Option<Option<String>>,
}

/// A field that is present, `null` included: `Some(None)` for `null`, so a
/// patch can clear it (absent fields stay `None` through `default`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl Patch {
    /// Parse the body of `PATCH /_guise/admin/users/{id}`.
    pub fn parse(body: &[u8]) -> Result<Patch, AdminError> {
        Ok(body::parse_json(body, "a user change (name, email, status, roles, attributes, licence, internal, can_impersonate, password, partner, bundle, layout)")?)
    }
}

impl AdminApi {
    /// Answer one admin API request.
    pub async fn handle(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
        let replies = &call.live.replies;
        match self.dispatch(s, call).await {
            Ok((status, body)) => respond::json(s, replies, status, &body, &[]).await,
            Err(e) => {
                if let Some(subject) = call.subject {
                    tracing::info!(actor = %subject.actor.id, error = %e, "admin call refused");
                }
                respond::refuse(s, replies, &e).await
            }
        }
    }

    async fn dispatch(&self, s: &mut Session, call: Call<'_>) -> Result<(u16, Value), AdminError> {
        let subject = call.subject.ok_or(AdminError::NotSignedIn)?;
        // While impersonating, the request runs as the impersonated user,
        // who is no admin: the admin API is out of reach until they return.
        let actor = &subject.effective;
        policy::may_use_api(actor)?;
        let method = s.req_header().method.clone();
        if method != http::Method::GET && method != http::Method::HEAD {
            csrf::same_origin(s.req_header(), call.peer.https)?;
            csrf::check_token(
                &subject.session.record.csrf_token,
                csrf::header_token(s.req_header()),
            )?;
        }
        let path = s.req_header().uri.path().to_string();
        let rest = path
            .strip_prefix(GATEWAY_PREFIX)
            .and_then(|p| p.strip_prefix("admin"))
            .unwrap_or("");
        // Segments are decoded: names may hold spaces (`Business Unit
        // Permission 1`), sent as `%20`.
        let decoded: Vec<String> = rest
            .split('/')
            .filter(|p| !p.is_empty())
            .map(|p| {
                percent_encoding::percent_decode_str(p)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
        match (method.as_str(), parts.as_slice()) {
            ("GET", ["users"]) => {
                let users = self.directory.all();
                Ok((
                    200,
                    json!({ "users": users.iter().map(|u| u.public_json()).collect::<Vec<_>>() }),
                ))
            }
            ("POST", ["users"]) => {
                let new = NewUser::parse(&body::read(s).await?)?;
                self.create_user(call, subject, new).await
            }
            ("GET", ["users", id]) => {
                let u = self.user(id)?;
                Ok((200, json!({ "user": u.public_json() })))
            }
            ("PATCH", ["users", id]) => {
                let patch = Patch::parse(&body::read(s).await?)?;
                self.update_user(call, subject, id, patch).await
            }
            ("GET", ["users", id, "sessions"]) => {
                policy::may_manage_sessions(actor, &*self.user(id)?)?;
                let list = self.sessions.list(id).await.map_err(store)?;
                let sessions: Vec<Value> = list
                    .iter()
                    .map(|(_, r)| {
                        json!({
                            "session": r.reference,
                            "created_at": r.created_at,
                            "last_seen": r.last_seen,
                            "expires_at": r.absolute_expiry,
                            "client_ip": r.client_ip,
                            "current": r.reference == subject.session.record.reference,
                        })
                    })
                    .collect();
                Ok((200, json!({ "user": id, "sessions": sessions })))
            }
            ("POST", ["users", id, "welcome"]) => {
                let sent = self.send_welcome(s.req_header(), call, subject, id).await?;
                Ok((200, sent))
            }
            ("DELETE", ["users", id, "sessions"]) => {
                policy::may_manage_sessions(actor, &*self.user(id)?)?;
                let n = self.sessions.revoke_user(id).await.map_err(store)?;
                tracing::info!(actor = %actor.id, user = %id, revoked = n, "all sessions of user revoked");
                Ok((200, json!({ "user": id, "revoked": n })))
            }
            ("DELETE", ["users", id, "sessions", reference]) => {
                policy::may_manage_sessions(actor, &*self.user(id)?)?;
                let list = self.sessions.list(id).await.map_err(store)?;
                let (key, _) = list
                    .into_iter()
                    .find(|(_, r)| r.reference == *reference)
                    .ok_or_else(|| AdminError::NoSession(reference.to_string()))?;
                self.sessions.revoke(&key).await.map_err(store)?;
                tracing::info!(actor = %actor.id, user = %id, session = %reference, "session revoked by admin");
                Ok((
                    200,
                    json!({ "user": id, "revoked": 1, "session": reference }),
                ))
            }
            ("GET", ["partners"]) => partners::list(self),
            ("POST", ["partners", "import"]) => {
                let raw = body::read(s).await?;
                let query = s.req_header().uri.query().map(str::to_string);
                partners::import(self, &call.live.config, actor, &raw, query.as_deref()).await
            }
            ("GET", ["partners", id]) => partners::get(self, id),
            ("PUT", ["partners", id]) => {
                partners::put(self, actor, id, &body::read(s).await?).await
            }
            ("GET", ["bundles"]) => partners::bundles(self, &call.live.config),
            ("PUT", ["bundles", name]) => {
                let raw = body::read(s).await?;
                partners::put_bundle(self, &call.live.config, actor, name, &raw).await
            }
            ("GET", ["licences"]) => partners::licences(self, &call.live.config),
            ("GET", ["tenants"]) => partners::tenants(self),
            ("GET", ["tenants", id, "paired"]) => partners::paired(self, id),
            ("PUT", ["tenants", id]) => {
                let raw = body::read(s).await?;
                partners::put_tenant(self, &call.live.config, actor, id, &raw).await
            }
            ("PUT", ["tenants", tenant, "paired", user, "roles"]) => {
                let raw = body::read(s).await?;
                let at = (*tenant, *user);
                partners::put_paired_roles(self, &call.live.config, actor, at, &raw).await
            }
            ("GET", ["permissions"]) => permissions::get(self),
            ("GET", ["permissions", "explain"]) => {
                let query = s.req_header().uri.query().map(str::to_string);
                permissions::explain(self, call, query.as_deref()).await
            }
            ("PUT", ["permissions", "resources", name]) => {
                let raw = body::read(s).await?;
                permissions::put_resource(self, actor, name, &raw).await
            }
            ("PUT", ["permissions", "resources", name, "everyone"]) => {
                let raw = body::read(s).await?;
                permissions::put_everyone(self, actor, name, &raw).await
            }
            ("PUT", ["permissions", "resources", name, "rules", rule]) => {
                let raw = body::read(s).await?;
                permissions::put_rule(self, actor, name, rule, &raw).await
            }
            ("DELETE", ["permissions", "resources", name, "rules", rule]) => {
                permissions::delete_rule(self, actor, name, rule).await
            }
            ("DELETE", ["permissions", "resources", name, "attributes", attribute]) => {
                permissions::delete_attribute(self, actor, name, attribute).await
            }
            ("POST", ["permissions", "user-attributes"]) => {
                let raw = body::read(s).await?;
                permissions::add_user_attribute(self, actor, &raw).await
            }
            ("DELETE", ["permissions", "user-attributes", name]) => Err(AdminError::Conflict(
                format!("user attribute `{name}` cannot be deleted once added"),
            )),
            ("POST", ["permissions", "refresh-user-data"]) => {
                permissions::refresh(self, actor, "user data").await
            }
            ("POST", ["permissions", "groups", "refresh"]) => {
                permissions::refresh(self, actor, "sharing groups").await
            }
            ("PUT", ["permissions", "groups", name]) => {
                let raw = body::read(s).await?;
                permissions::put_group(self, actor, name, &raw).await
            }
            ("DELETE", ["permissions", "groups", name]) => {
                permissions::delete_group(self, actor, name).await
            }
            ("GET", ["permissions", "groups", name, "members"]) => permissions::members(self, name),
            ("DELETE", ["permissions", "groups", name, "members", user]) => {
                permissions::remove_member(self, actor, name, user).await
            }
            _ => Err(AdminError::NotFound(format!("{method} {path}"))),
        }
    }

    fn user(&self, id: &str) -> Result<Arc<User>, AdminError> {
        self.directory
            .get(id)
            .ok_or_else(|| AdminError::NoUser(id.to_string()))
    }

    async fn create_user(
        &self,
        call: Call<'_>,
        subject: &Subject,
        new: NewUser,
    ) -> Result<(u16, Value), AdminError> {
        let actor = &subject.effective;
        let mut user = new.user;
        if self.directory.get(&user.id).is_some() {
            return Err(AdminError::Exists(user.id));
        }
        policy::may_grant_roles(actor, &user.roles)?;
        if user.can_impersonate {
            policy::may_grant_impersonation(actor, &call.live.config.admin)?;
        }
        if user.partner.is_some() && user.layout.is_none() {
            user.layout
                .clone_from(&call.live.config.partners.default_layout);
        }
        partners::check_user(self, &call.live.config, &user, None)?;
        if let Some(p) = new.password {
            user.password_hash = Some(hash(p).await?);
        }
        user.origin = Origin::Admin;
        self.save(user.clone()).await?;
        tracing::info!(actor = %actor.id, user = %user.id, "user created");
        Ok((201, json!({ "user": user.public_json() })))
    }

    /// Send `id` a welcome email, as `subject` asked on `req`: the one path
    /// the API's `POST users/{id}/welcome` and the admin page's button
    /// share, so both apply the same checks.
    async fn send_welcome(
        &self,
        req: &pingora::http::RequestHeader,
        call: Call<'_>,
        subject: &Subject,
        id: &str,
    ) -> Result<Value, AdminError> {
        let target = self.user(id)?;
        policy::may_change(&subject.effective, &target)?;
        let origin = origin_of(req, call.peer.https);
        Ok(self
            .welcome
            .send(call.live, subject, &target, &origin)
            .await?)
    }

    async fn update_user(
        &self,
        call: Call<'_>,
        subject: &Subject,
        id: &str,
        p: Patch,
    ) -> Result<(u16, Value), AdminError> {
        let actor = &subject.effective;
        let old = self.user(id)?;
        policy::may_change(actor, &old)?;
        if let Some(roles) = &p.roles {
            policy::may_grant_roles(actor, roles)?;
        }
        if p.can_impersonate.is_some_and(|v| v != old.can_impersonate) {
            policy::may_grant_impersonation(actor, &call.live.config.admin)?;
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
        if let Some(v) = p.partner {
            if v.is_some() && u.partner.is_none() && u.layout.is_none() {
                u.layout
                    .clone_from(&call.live.config.partners.default_layout);
            }
            if v.is_none() {
                u.bundle = None;
                u.layout = None;
            }
            u.partner = v;
        }
        if let Some(v) = p.bundle {
            u.bundle = v;
        }
        if let Some(v) = p.layout {
            u.layout = v;
        }
        partners::check_user(self, &call.live.config, &u, Some(&old))?;
        let password_changed = p.password.is_some();
        if let Some(pw) = p.password {
            u.password_hash = Some(hash(pw).await?);
        }
        self.save(u.clone()).await?;
        // A disabled user, or one whose password changed, is signed out
        // everywhere at once.
        let mut revoked = 0;
        if !u.is_active() || password_changed {
            revoked = self.sessions.revoke_user(&u.id).await.map_err(store)?;
        }
        tracing::info!(actor = %actor.id, user = %u.id, revoked, "user changed");
        Ok((
            200,
            json!({ "user": u.public_json(), "sessions_revoked": revoked }),
        ))
    }

    /// Save a changed user the one way every change is saved
    /// ([`user_sync::save`]: checked, stored, in this node's directory,
    /// announced to the others).
    pub(crate) async fn save(&self, user: User) -> Result<(), AdminError> {
        user_sync::save(&**self.sessions.store(), &self.directory, user)
            .await
            .map_err(|e| match e {
                SaveError::Refused(why) => AdminError::Invalid(why),
                SaveError::Store(e) => store_err(e),
            })
    }
}

/// `scheme://host` the admin's request came to: where the links of
/// welcome emails point unless `mail.base_url` says otherwise. The Host is
/// the admin's own browser's (the call passed the same-origin and token
/// checks), and `http.allowed_hosts` limits it where set.
fn origin_of(req: &pingora::http::RequestHeader, https: bool) -> String {
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}")
}

fn store(e: crate::session::SessionError) -> AdminError {
    AdminError::Store(e.to_string())
}

fn store_err(e: crate::store::StoreError) -> AdminError {
    AdminError::Store(e.to_string())
}

fn take_password(body: &mut Value) -> Result<Option<String>, AdminError> {
    match body.as_object_mut().and_then(|m| m.remove("password")) {
        None => Ok(None),
        Some(Value::String(p)) if !p.is_empty() => Ok(Some(p)),
        Some(_) => Err(AdminError::Invalid(
            "`password` must be a non-empty string".into(),
        )),
    }
}

async fn hash(password: String) -> Result<String, AdminError> {
    tokio::task::spawn_blocking(move || crate::users::hash_password(&password))
        .await
        .map_err(|e| AdminError::Invalid(e.to_string()))?
        .map_err(|e| AdminError::Invalid(e.to_string()))
}
