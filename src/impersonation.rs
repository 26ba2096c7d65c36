//! Impersonation ("Login as Partner User"): an admin who holds
//! `can_impersonate` views the app exactly as a partner user sees it.
//!
//! The rules here are pure functions over the users, the configuration and
//! the session record; the endpoints that act on them are in
//! [`endpoints`], the privacy rules in [`privacy`].
//!
//! An impersonation is a session of its own: the admin's session is
//! replaced by one whose record names the admin as its user (so it is
//! listed, revoked and disabled with the admin's account) and carries the
//! effective user, start, expiry and return path in its extra fields. Every
//! other session of the admin is revoked at the same moment, on every node,
//! so no tab or browser goes on acting as the admin. Stopping does the
//! reverse: a new session of the admin, and back to the page they came
//! from, unless the admin may no longer impersonate (then the login page).

pub mod endpoints;
pub mod metrics;
pub mod privacy;

use std::collections::BTreeMap;

use crate::config::impersonation::Impersonation as Settings;
use crate::partners::{self, PartnerError};
use crate::respond::Refuse;
use crate::store::SessionRecord;
use crate::subject::Subject;
use crate::users::{Role, User};

/// Session extra fields an impersonation keeps.
mod field {
    pub const USER: &str = crate::subject::IMPERSONATED_USER;
    pub const STARTED: &str = "imp.started";
    pub const EXPIRES: &str = "imp.expires";
    pub const RETURN: &str = "imp.return";
    pub const REASON: &str = "imp.reason";
}

/// Why an impersonation may not start, or ended on its own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpersonationError {
    #[error("sign in first")]
    NotSignedIn,
    #[error("impersonation is turned off on this gateway")]
    Disabled,
    #[error("{0} may not impersonate: they do not hold can_impersonate")]
    NotAllowed(String),
    #[error("already viewing the app as someone else: return to your own view first")]
    AlreadyImpersonating,
    #[error("you are not viewing the app as someone else")]
    NotImpersonating,
    #[error("no user {0}")]
    NoUser(String),
    #[error("no partner {0}")]
    NoPartner(String),
    #[error("partner {0} has no primary user to enter its portal as")]
    NoPrimaryUser(String),
    #[error("{0} cannot be impersonated: {1}")]
    Target(String, &'static str),
    #[error("{0} cannot be impersonated: they do not hold a Full licence")]
    NoFullLicence(String),
    #[error("acknowledge the terms of use for impersonation first: {0}")]
    TermsNotAcknowledged(String),
    #[error("give a reason for viewing the app as this user")]
    ReasonRequired,
    #[error("{0}")]
    Invalid(String),
}

impl Refuse for ImpersonationError {
    fn status(&self) -> u16 {
        match self {
            ImpersonationError::NotSignedIn => 401,
            ImpersonationError::NoUser(_) | ImpersonationError::NoPartner(_) => 404,
            ImpersonationError::AlreadyImpersonating | ImpersonationError::NotImpersonating => 409,
            ImpersonationError::ReasonRequired | ImpersonationError::Invalid(_) => 400,
            _ => 403,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ImpersonationError::NotSignedIn => "login_required",
            ImpersonationError::Disabled => "impersonation_disabled",
            ImpersonationError::NotAllowed(_) => "not_allowed_to_impersonate",
            ImpersonationError::AlreadyImpersonating => "already_impersonating",
            ImpersonationError::NotImpersonating => "not_impersonating",
            ImpersonationError::NoUser(_) | ImpersonationError::NoPartner(_) => "not_found",
            ImpersonationError::NoPrimaryUser(_) => "no_primary_user",
            ImpersonationError::Target(..) => "target_not_allowed",
            ImpersonationError::NoFullLicence(_) => "no_full_licence",
            ImpersonationError::TermsNotAcknowledged(_) => "terms_not_acknowledged",
            ImpersonationError::ReasonRequired => "reason_required",
            ImpersonationError::Invalid(_) => "bad_request",
        }
    }
    fn title(&self) -> &'static str {
        "Impersonation refused"
    }
}

/// An impersonation in progress, as its session record says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The effective user's id.
    pub user: String,
    /// Unix seconds.
    pub started: u64,
    /// Unix seconds; the first request at or after it ends the
    /// impersonation.
    pub expires: u64,
    /// The same-origin page the admin came from.
    pub return_to: String,
    pub reason: Option<String>,
}

impl State {
    /// The impersonation `rec` carries, if any. A record that names an
    /// effective user but whose times are unreadable expires at once: a
    /// damaged record must not impersonate forever.
    pub fn of(rec: &SessionRecord) -> Option<State> {
        if rec.extra.is_empty() {
            return None;
        }
        let user = rec.extra.get(field::USER)?.clone();
        let num = |k: &str| rec.extra.get(k).and_then(|v| v.parse::<u64>().ok());
        Some(State {
            user,
            started: num(field::STARTED).unwrap_or(0),
            expires: num(field::EXPIRES).unwrap_or(0),
            return_to: rec
                .extra
                .get(field::RETURN)
                .cloned()
                .unwrap_or_else(|| "/".into()),
            reason: rec.extra.get(field::REASON).cloned(),
        })
    }

    /// The session extra fields that carry this state.
    pub fn fields(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert(field::USER.into(), self.user.clone());
        m.insert(field::STARTED.into(), self.started.to_string());
        m.insert(field::EXPIRES.into(), self.expires.to_string());
        m.insert(field::RETURN.into(), self.return_to.clone());
        if let Some(r) = &self.reason {
            m.insert(field::REASON.into(), r.clone());
        }
        m
    }
}

fn is_admin(u: &User) -> bool {
    u.has_role(Role::Admin) || u.has_role(Role::SuperAdmin)
}

/// The actor may start (and keep up) impersonating.
pub fn may_impersonate(settings: &Settings, actor: &User) -> Result<(), ImpersonationError> {
    if !settings.enabled {
        return Err(ImpersonationError::Disabled);
    }
    if !actor.is_active() || !actor.can_impersonate {
        return Err(ImpersonationError::NotAllowed(actor.id.clone()));
    }
    Ok(())
}

/// `target` may be impersonated by `actor`: a partner user with a Full
/// licence (or a user of a class the configuration adds), never an admin,
/// another impersonator, oneself or a disabled user.
pub fn may_target(
    settings: &Settings,
    actor: &User,
    target: &User,
) -> Result<(), ImpersonationError> {
    let refuse = |why| Err(ImpersonationError::Target(target.id.clone(), why));
    if target.id == actor.id {
        return refuse("that is yourself");
    }
    if target.has_role(Role::SuperAdmin) {
        return refuse("they are a super admin");
    }
    if is_admin(target) {
        return refuse("they are an admin");
    }
    if target.can_impersonate {
        return refuse("they may impersonate others themselves");
    }
    if !target.is_active() {
        return refuse("their account is disabled");
    }
    let class_allowed = if target.paired.is_some() {
        settings.targets.paired
    } else if partners::is_partner_user(target) {
        true
    } else {
        settings.targets.users
    };
    if !class_allowed {
        return refuse("only partner users (and the classes in impersonation.also_targets) may be impersonated");
    }
    match partners::may_log_in(target) {
        Ok(()) => Ok(()),
        Err(PartnerError::NoFullLicence) => {
            Err(ImpersonationError::NoFullLicence(target.id.clone()))
        }
        Err(_) => refuse("they may not sign in"),
    }
}

/// Why an impersonation ends on a request, without the admin asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The maximum duration ran out: back to the admin, and say so.
    Expired,
    /// The effective user can no longer be viewed as (disabled, removed,
    /// licence taken away): back to the admin.
    TargetGone,
    /// Impersonation was turned off on the gateway: back to the admin.
    Disabled,
    /// The admin may no longer impersonate (disabled, or `can_impersonate`
    /// taken away): no silent return, the login page.
    ActorGone,
}

impl Ending {
    /// The admin gets a session of their own back.
    pub fn restores_actor(self) -> bool {
        !matches!(self, Ending::ActorGone)
    }

    /// For the audit, the metrics and the other tabs.
    pub fn reason(self) -> &'static str {
        match self {
            Ending::Expired => "the impersonation reached its maximum duration",
            Ending::TargetGone => "the impersonated user can no longer be viewed as",
            Ending::Disabled => "impersonation was turned off on this gateway",
            Ending::ActorGone => "you may no longer impersonate",
        }
    }
}

/// Pipeline stage 4b: whether the impersonation `subject` carries may go
/// on at `now`. `None` for a session that impersonates nobody.
///
/// Runs on every request of an impersonation, so it reads the two fields
/// it needs in place rather than building a [`State`].
pub fn check(settings: &Settings, subject: &Subject, now: u64) -> Option<Result<(), Ending>> {
    let extra = &subject.session.record.extra;
    if extra.is_empty() {
        return None;
    }
    let user = extra.get(field::USER)?;
    // Unreadable: expired at once (as in `State::of`).
    let expires: u64 = extra
        .get(field::EXPIRES)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if !may_return(&subject.actor) {
        return Some(Err(Ending::ActorGone));
    }
    if !settings.enabled {
        return Some(Err(Ending::Disabled));
    }
    if subject.effective.id != *user
        || may_target(settings, &subject.actor, &subject.effective).is_err()
    {
        return Some(Err(Ending::TargetGone));
    }
    if now >= expires {
        return Some(Err(Ending::Expired));
    }
    Some(Ok(()))
}

/// The admin may come back as themselves after the impersonation ends:
/// still active and still holding `can_impersonate`. Otherwise they sign in
/// again, so a right taken away is never silently worked around.
pub fn may_return(actor: &User) -> bool {
    actor.is_active() && actor.can_impersonate
}

#[cfg(test)]
mod tests;
