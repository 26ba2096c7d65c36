//! The user directory: who may log in, with which roles, licence and
//! attributes, and the check of their password.
//!
//! Users come from the configuration file (`users:` inline or
//! `users_file:`) and, later, from the admin API. The [`Directory`] keeps
//! them in memory behind an [`ArcSwap`], so the per-request lookups take no
//! lock and never wait on a writer; writers (rare: reloads and admin
//! changes) copy the index and swap it in whole.
//!
//! Passwords are stored only as argon2id PHC strings ([`hash_password`]).
//! [`Directory::check_password`] spends one argon2 verification on every
//! attempt, known user or not, and answers every refusal with the same
//! [`LoginRefused`], so neither timing nor message tells an attacker which
//! logins exist.

mod password;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::BufRead;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

pub use password::hash_password;

/// What can go wrong with users outside a login attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsersError {
    /// An empty password would be a password anyone can guess.
    #[error("the password is empty")]
    EmptyPassword,
    /// The password could not be read (for `guise hash-password`).
    #[error("cannot read the password: {reason}")]
    ReadPassword { reason: String },
    /// argon2 refused to hash (for example, a password too long for it).
    #[error("cannot hash the password: {reason}")]
    Hashing { reason: String },
    /// A field of the user cannot be used as it is.
    #[error("user `{id}`: `{field}` {reason}")]
    InvalidUser {
        id: String,
        field: &'static str,
        reason: String,
    },
    /// Two users with one id: lookups by id would be ambiguous.
    #[error("user id `{id}` is used twice")]
    DuplicateId { id: String },
    /// Two users with one login: a login would reach the wrong user.
    #[error("email `{email}` is the login of user `{other}` already")]
    EmailTaken { email: String, other: String },
}

/// The one answer to a failed login, whatever the cause (unknown login, no
/// password set, wrong password, disabled user): a different answer would
/// tell an attacker which logins exist or are disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("login refused: unknown login or wrong password")]
pub struct LoginRefused;

// === the user model ===

/// Whether a user may log in at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    #[default]
    Active,
    /// Kept for audit and ownership of records, but refused at login.
    Disabled,
}

/// A user's role in the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    SuperAdmin,
    Admin,
    User,
}

impl Role {
    /// The name used in YAML and in the roles identity header.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SuperAdmin => "super_admin",
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The licence a user holds; partner users need `full`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Licence {
    #[default]
    Full,
    Viewer,
    /// No licence: the user exists but reaches no licensed area.
    None,
}

/// One user, as written in the configuration file or the admin API.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Stable id; sent upstream in the user identity header.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The login name, matched case-blind; unique in the directory.
    pub email: String,
    /// `active` (default) or `disabled`.
    #[serde(default)]
    pub status: UserStatus,
    /// `super_admin`, `admin`, `user`; default `[user]`.
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// Free attributes the data-permission rules match on, such as
    /// `Business Unit: BU1`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// `full` (default), `viewer` or `none`.
    #[serde(default)]
    pub licence: Licence,
    /// Internal staff (as opposed to customer or partner users).
    #[serde(default)]
    pub internal: bool,
    /// May start impersonation (subject to the impersonation rules).
    #[serde(default)]
    pub can_impersonate: bool,
    /// argon2id PHC string from `guise hash-password`; without one the user
    /// cannot log in with a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_hash: Option<String>,
    /// Where the entry came from: the configuration file, the admin API,
    /// or the app itself (a user the app accepted at login, in upstream
    /// mode).
    #[serde(default, skip_serializing_if = "Origin::is_file")]
    pub origin: Origin,
    /// The partner organisation this user belongs to: a partner user,
    /// limited to the partner's records and to a permission bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner: Option<String>,
    /// The permission bundle of a partner user (default: the default
    /// partner bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
    /// The 360 layout a partner user's pages use (default: the configured
    /// default layout), sent upstream as `x-guise-layout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// For a paired (ghost) user: whose ghost it is and in which tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<Paired>,
}

/// What makes a user a paired (ghost) user: a partner user's stand-in
/// inside one client tenant, which uses no seat of that tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Paired {
    /// The partner user it stands in for.
    pub partner_user: String,
    /// The tenant it lives in.
    pub tenant: String,
    /// Its roles inside the tenant: the app's role names (`Partner User`,
    /// `Viewer`), sent upstream in place of the gateway roles. Kept apart
    /// from [`User::roles`] so a partner may change them (issue 11) without
    /// ever reaching a gateway role: a paired user's gateway roles are
    /// `[user]`, always. Empty only on records stored before tenant roles
    /// existed; "Login as me" gives those their hub's defaults.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The longest tenant role name: a role is a label, and the whole list
/// must fit one identity header.
pub const TENANT_ROLE_MAX_LEN: usize = 64;

/// Whether `name` can be a tenant role: it travels as one item of the
/// comma-separated roles header, so it is printable ASCII (inner spaces
/// allowed, as in `Partner User`), without commas or edge spaces, and
/// short. Returns why not.
pub fn check_tenant_role(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a role name must not be empty".into());
    }
    if name.len() > TENANT_ROLE_MAX_LEN {
        return Err(format!(
            "`{}` is longer than {TENANT_ROLE_MAX_LEN} bytes",
            name.escape_debug()
        ));
    }
    if !name.bytes().all(|b| (0x20..0x7f).contains(&b)) || name.contains(',') {
        return Err(format!(
            "`{}` must be printable ASCII without commas (it is an item of the roles header)",
            name.escape_debug()
        ));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(format!(
            "`{name}` must not start or end with a space (HTTP would strip it)"
        ));
    }
    Ok(())
}

/// Where a directory entry came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Written in the configuration file.
    #[default]
    File,
    /// Made through the admin API.
    Admin,
    /// Made at the first login of a user the app accepted (upstream mode).
    App,
    /// A paired (ghost) user, made when a partner user first used "Login
    /// as me" in a client tenant.
    Paired,
}

impl Origin {
    fn is_file(&self) -> bool {
        *self == Origin::File
    }
}

fn default_roles() -> Vec<Role> {
    vec![Role::User]
}

/// Shows every field but the password hash, so users can be logged and
/// printed in test failures without leaking hashes to offline cracking.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("email", &self.email)
            .field("status", &self.status)
            .field("roles", &self.roles)
            .field("attributes", &self.attributes)
            .field("licence", &self.licence)
            .field("internal", &self.internal)
            .field("can_impersonate", &self.can_impersonate)
            .field("partner", &self.partner)
            .field("bundle", &self.bundle)
            .field("layout", &self.layout)
            .field("paired", &self.paired)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl User {
    /// A user with the defaults: active, role `user`, licence `full`, no
    /// attributes, no flags, no password.
    pub fn new(id: impl Into<String>, name: impl Into<String>, email: impl Into<String>) -> Self {
        User {
            id: id.into(),
            name: name.into(),
            email: email.into(),
            status: UserStatus::Active,
            roles: default_roles(),
            attributes: BTreeMap::new(),
            licence: Licence::Full,
            internal: false,
            can_impersonate: false,
            password_hash: None,
            origin: Origin::File,
            partner: None,
            bundle: None,
            layout: None,
            paired: None,
        }
    }

    /// Whether the user may log in at all.
    pub fn is_active(&self) -> bool {
        self.status == UserStatus::Active
    }

    /// Whether the user holds `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The roles as the identity header lists them.
    pub fn role_names(&self) -> Vec<&'static str> {
        self.roles.iter().map(|r| r.as_str()).collect()
    }

    /// The user as the gateway's JSON answers show it: never the password
    /// hash.
    pub fn public_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            m.remove("password_hash");
        }
        v
    }

    /// The key this user is found under at login: the email, lower-cased.
    pub fn login_key(&self) -> String {
        login_key(&self.email)
    }

    /// Check what the directory relies on: id and email travel in identity
    /// headers (visible ASCII; no commas in the id), the email is a login,
    /// and the hash is an argon2id PHC string the login check can verify.
    pub fn check(&self) -> Result<(), UsersError> {
        let invalid = |field, reason: &str| UsersError::InvalidUser {
            id: self.id.clone(),
            field,
            reason: reason.to_string(),
        };
        if self.id.is_empty() || !header_safe(&self.id) || self.id.contains(',') {
            return Err(invalid(
                "id",
                "must be non-empty visible ASCII without spaces or commas",
            ));
        }
        // A user the app owns may have no address on record (the app signs
        // them in; guise's own form, which asks for the email, never does).
        let no_address_allowed =
            matches!(self.origin, Origin::App | Origin::Paired) && self.email.is_empty();
        if !no_address_allowed && (!header_safe(&self.email) || !self.email.contains('@')) {
            return Err(invalid(
                "email",
                "must be an address (visible ASCII, with `@`)",
            ));
        }
        if let Some(hash) = &self.password_hash {
            password::check_phc(hash).map_err(|reason| invalid("password_hash", reason))?;
        }
        if let Some(paired) = &self.paired {
            // A partner may change a paired user's roles: were they gateway
            // roles, a partner could make a gateway admin.
            if self.roles != [Role::User] {
                return Err(invalid(
                    "roles",
                    "a paired user holds the gateway role `user` only; its roles in the tenant are `paired.roles`",
                ));
            }
            for r in &paired.roles {
                check_tenant_role(r).map_err(|why| invalid("paired.roles", &why))?;
            }
        }
        Ok(())
    }
}

/// Visible ASCII only: what an identity header value can carry unchanged.
fn header_safe(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// Logins are emails compared case-blind (as `validate` in the config does)
/// and without surrounding blanks a browser's autofill may add.
fn login_key(login: &str) -> String {
    login.trim().to_lowercase()
}

// === the directory ===

/// Read access to users, so later parts (partners, paired users) can wrap
/// or extend the directory without the callers knowing.
pub trait UserSource: Send + Sync {
    /// The user with this id.
    fn user(&self, id: &str) -> Option<Arc<User>>;
    /// The user who logs in with this login (email, case-blind).
    fn user_by_login(&self, login: &str) -> Option<Arc<User>>;
}

/// One consistent snapshot: both maps always describe the same users.
#[derive(Default, Clone)]
struct Index {
    by_id: HashMap<String, Arc<User>>,
    by_login: HashMap<String, Arc<User>>,
}

impl Index {
    fn build(users: impl IntoIterator<Item = User>) -> Result<Index, UsersError> {
        let mut index = Index::default();
        for user in users {
            if index.by_id.contains_key(&user.id) {
                return Err(UsersError::DuplicateId { id: user.id });
            }
            index.put(user)?;
        }
        Ok(index)
    }

    /// Insert or replace by id; the login must not belong to another id.
    fn put(&mut self, user: User) -> Result<Option<Arc<User>>, UsersError> {
        user.check()?;
        let key = user.login_key();
        if let Some(other) = self.by_login.get(&key) {
            if other.id != user.id {
                return Err(UsersError::EmailTaken {
                    email: user.email,
                    other: other.id.clone(),
                });
            }
        }
        let user = Arc::new(user);
        let previous = self.by_id.insert(user.id.clone(), Arc::clone(&user));
        if let Some(old) = &previous {
            self.by_login.remove(&old.login_key());
        }
        // Users without an address are found by id only.
        if !key.is_empty() {
            self.by_login.insert(key, user);
        }
        Ok(previous)
    }
}

/// The users known to this node, cheap to read from many threads.
pub struct Directory {
    index: ArcSwap<Index>,
    /// Serialises writers so two concurrent changes cannot both copy the
    /// same snapshot and lose one. Readers never take it; it is never held
    /// across an `.await` (all methods are synchronous).
    writer: Mutex<()>,
}

impl Default for Directory {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Directory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Directory")
            .field("users", &self.len())
            .finish()
    }
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Directory {
            index: ArcSwap::from_pointee(Index::default()),
            writer: Mutex::new(()),
        }
    }

    /// A directory of `users`; refuses duplicate ids or logins and users
    /// that fail [`User::check`].
    pub fn from_users(users: impl IntoIterator<Item = User>) -> Result<Self, UsersError> {
        Ok(Directory {
            index: ArcSwap::from_pointee(Index::build(users)?),
            writer: Mutex::new(()),
        })
    }

    /// The user with this id.
    pub fn get(&self, id: &str) -> Option<Arc<User>> {
        self.index.load().by_id.get(id).cloned()
    }

    /// The user who logs in with `login` (email, case-blind, trimmed).
    pub fn by_login(&self, login: &str) -> Option<Arc<User>> {
        self.index.load().by_login.get(&login_key(login)).cloned()
    }

    /// Every user, sorted by id.
    pub fn all(&self) -> Vec<Arc<User>> {
        let mut all: Vec<Arc<User>> = self.index.load().by_id.values().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.index.load().by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add `user`, or replace the user with its id; returns the one
    /// replaced. Refuses a user failing [`User::check`] or whose login
    /// belongs to another user.
    pub fn upsert(&self, user: User) -> Result<Option<Arc<User>>, UsersError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Index::clone(&self.index.load());
        let previous = next.put(user)?;
        self.index.store(Arc::new(next));
        Ok(previous)
    }

    /// Whether [`Self::upsert`] would take `user`, without changing
    /// anything: callers that persist a change check it first, so a change
    /// the directory refuses is never stored.
    pub fn check_upsert(&self, user: &User) -> Result<(), UsersError> {
        user.check()?;
        if user.email.is_empty() {
            return Ok(());
        }
        match self.index.load().by_login.get(&user.login_key()) {
            Some(other) if other.id != user.id => Err(UsersError::EmailTaken {
                email: user.email.clone(),
                other: other.id.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Replace every user at once, leaving out each user the directory
    /// refuses (failing [`User::check`], or an id or login taken by an
    /// earlier user) instead of refusing the whole set; returns what was
    /// refused and why. Each item lists the versions of one user in order
    /// of preference (a stored edit, then the file's original): the first
    /// the directory takes is kept. For rebuilding from stored records,
    /// where one bad record must not stop every later change.
    pub fn replace_all_lenient(
        &self,
        users: impl IntoIterator<Item = Vec<User>>,
    ) -> Vec<(String, UsersError)> {
        let mut next = Index::default();
        let mut refused = Vec::new();
        for versions in users {
            for user in versions {
                let id = user.id.clone();
                let put = if next.by_id.contains_key(&id) {
                    Err(UsersError::DuplicateId { id: id.clone() })
                } else {
                    next.put(user)
                };
                match put {
                    Ok(_) => break,
                    Err(e) => refused.push((id, e)),
                }
            }
        }
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.index.store(Arc::new(next));
        refused
    }

    /// Remove the user with this id; returns it.
    pub fn remove(&self, id: &str) -> Option<Arc<User>> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = Index::clone(&self.index.load());
        let removed = next.by_id.remove(id)?;
        next.by_login.remove(&removed.login_key());
        self.index.store(Arc::new(next));
        Some(removed)
    }

    /// Replace every user at once (a reload): readers see the old set or the
    /// new one, never a mix. On error nothing changes.
    pub fn replace_all(&self, users: impl IntoIterator<Item = User>) -> Result<(), UsersError> {
        let next = Index::build(users)?;
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        self.index.store(Arc::new(next));
        Ok(())
    }

    /// The user whose login and password these are, if active.
    ///
    /// Exactly one argon2 verification runs on every call: against the
    /// user's hash, or against a fixed dummy hash with the same parameters
    /// when the login is unknown or has no password. A disabled user's
    /// password is verified too, then refused. Every refusal is the same
    /// [`LoginRefused`]. Blocks for the verification (tens of ms): call it
    /// from `spawn_blocking` in async code. The password is never logged.
    pub fn check_password(&self, login: &str, password: &str) -> Result<Arc<User>, LoginRefused> {
        let user = self.by_login(login);
        let stored = user.as_ref().and_then(|u| u.password_hash.as_deref());
        let matched = password::verify(stored, password);
        let has_hash = stored.is_some();
        match user {
            Some(user) if matched && user.is_active() => Ok(user),
            Some(user) => {
                let reason = if !has_hash {
                    "no password set"
                } else if !matched {
                    "wrong password"
                } else {
                    "user disabled"
                };
                tracing::debug!(user_id = %user.id, reason, "login refused");
                Err(LoginRefused)
            }
            None => {
                tracing::debug!(reason = "unknown login", "login refused");
                Err(LoginRefused)
            }
        }
    }
}

impl UserSource for Directory {
    fn user(&self, id: &str) -> Option<Arc<User>> {
        self.get(id)
    }

    fn user_by_login(&self, login: &str) -> Option<Arc<User>> {
        self.by_login(login)
    }
}

/// Read one password line from `input` (for `guise hash-password`): the
/// line ending (`\n` or `\r\n`) is dropped, anything else, spaces included,
/// is part of the password.
pub fn read_password_line(input: &mut impl BufRead) -> Result<String, UsersError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| UsersError::ReadPassword {
            reason: e.to_string(),
        })?;
    let plain = line
        .strip_suffix('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .unwrap_or(&line);
    if plain.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    Ok(plain.to_string())
}

#[cfg(test)]
mod tests;
