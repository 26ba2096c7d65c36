//! Who may do what in the admin API, as pure functions over the acting
//! user, the target and the configuration.
//!
//! - Only admins and super admins use the API at all.
//! - Accounts that hold admin rights (admins and super admins) are managed
//!   by super admins only, sessions included; an admin may still see and
//!   end their own sessions. So an admin can neither raise privileges nor
//!   sign a super admin out.
//! - Granting or revoking `can_impersonate` is a super admin's right, unless
//!   `admin.admins_may_grant_impersonation` hands it to admins too.

use super::AdminError;
use crate::config::AdminPolicy;
use crate::users::{Role, User};

fn is_super(u: &User) -> bool {
    u.has_role(Role::SuperAdmin)
}

/// Whether `roles` hold admin rights.
pub fn is_privileged(roles: &[Role]) -> bool {
    roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::SuperAdmin))
}

/// The actor may use the admin API.
pub fn may_use_api(actor: &User) -> Result<(), AdminError> {
    if is_privileged(&actor.roles) {
        Ok(())
    } else {
        Err(AdminError::NotAdmin(actor.id.clone()))
    }
}

/// The actor may change `target`'s account.
pub fn may_change(actor: &User, target: &User) -> Result<(), AdminError> {
    if is_privileged(&target.roles) && !is_super(actor) {
        return Err(AdminError::NeedsSuperAdmin("change admin accounts"));
    }
    Ok(())
}

/// The actor may give an account these roles.
pub fn may_grant_roles(actor: &User, roles: &[Role]) -> Result<(), AdminError> {
    if is_privileged(roles) && !is_super(actor) {
        return Err(AdminError::NeedsSuperAdmin("grant admin roles"));
    }
    Ok(())
}

/// The actor may list or end `target`'s sessions.
pub fn may_manage_sessions(actor: &User, target: &User) -> Result<(), AdminError> {
    if actor.id != target.id && is_privileged(&target.roles) && !is_super(actor) {
        return Err(AdminError::NeedsSuperAdmin(
            "see or end the sessions of admin accounts",
        ));
    }
    Ok(())
}

/// The actor may grant or revoke `can_impersonate`.
pub fn may_grant_impersonation(actor: &User, policy: &AdminPolicy) -> Result<(), AdminError> {
    if is_super(actor) || policy.admins_may_grant_impersonation {
        Ok(())
    } else {
        Err(AdminError::NeedsSuperAdmin(
            "grant or revoke can_impersonate (or set admin.admins_may_grant_impersonation)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, roles: &[Role]) -> User {
        let mut u = User::new(id, id, format!("{id}@x.test"));
        u.roles = roles.to_vec();
        u
    }

    #[test]
    fn an_admin_may_not_touch_a_super_admins_sessions_but_may_their_own() {
        let admin = user("a", &[Role::Admin]);
        let other_admin = user("b", &[Role::Admin]);
        let sup = user("s", &[Role::SuperAdmin]);
        let plain = user("u", &[Role::User]);
        assert!(may_manage_sessions(&admin, &sup).is_err());
        assert!(may_manage_sessions(&admin, &other_admin).is_err());
        assert!(may_manage_sessions(&admin, &admin).is_ok());
        assert!(may_manage_sessions(&admin, &plain).is_ok());
        assert!(may_manage_sessions(&sup, &admin).is_ok());
    }

    #[test]
    fn granting_impersonation_is_for_super_admins_unless_configured() {
        let admin = user("a", &[Role::Admin]);
        let sup = user("s", &[Role::SuperAdmin]);
        let closed = AdminPolicy {
            admins_may_grant_impersonation: false,
        };
        let open = AdminPolicy {
            admins_may_grant_impersonation: true,
        };
        assert!(may_grant_impersonation(&admin, &closed).is_err());
        assert!(may_grant_impersonation(&admin, &open).is_ok());
        assert!(may_grant_impersonation(&sup, &closed).is_ok());
    }

    #[test]
    fn only_super_admins_make_or_change_admins() {
        let admin = user("a", &[Role::Admin]);
        let sup = user("s", &[Role::SuperAdmin]);
        assert!(may_use_api(&user("u", &[Role::User])).is_err());
        assert!(may_grant_roles(&admin, &[Role::Admin]).is_err());
        assert!(may_grant_roles(&admin, &[Role::User]).is_ok());
        assert!(may_change(&admin, &sup).is_err());
        assert!(may_change(&sup, &admin).is_ok());
    }
}
