//! "Login as me": a partner user enters a client tenant of the app as their
//! paired (ghost) user, and leaves it again.
//!
//! | | |
//! |---|---|
//! | `GET /_guise/partner` | the partner user's client accounts, each with "Login as me"; inside one, the way back |
//! | `POST /_guise/tenants/{id}/enter` | sign in to tenant `id` as the paired user (made on first use) |
//! | `POST /_guise/tenants/leave` | back to the partner user's own session |
//! | `PUT /_guise/partner/paired/{tenant}/{partner_user}/roles` | the partner's primary user sets a paired user's tenant roles (JSON `{"roles": [...]}`; the partner page POSTs a form with a `role` field per role) |
//!
//! Entering swaps the session: the partner user's session ends and a
//! session of the paired user starts (with a new token), so the paired
//! session is listed, revoked and audited under the paired user, and
//! turning a tenant's partner login off can find it. Leaving does the
//! reverse for the partner user the paired user stands in for; no token
//! of one session is ever kept in another. All are state changes: the
//! request must come from this site with the session's CSRF token (the
//! JSON endpoint takes it in `x-csrf-token` only, as the admin API does).
//!
//! A paired user's roles inside the tenant (the app's role names, issue
//! 11) start as its hub's defaults; the tenant's admin changes them through
//! the admin API, and the partner's primary user through this module,
//! within `tenants.partner_assignable`.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use http::header::SET_COOKIE;
use minijinja::{context, Environment};
use pingora::proxy::Session;

use crate::admin::partners::{RolesBody, ROLES_BODY};
use crate::admin::{AdminApi, AdminError};
use crate::auth::AuthService;
use crate::body::{self, BodyError};
use crate::call::Call;
use crate::csrf::{self, CsrfError};
use crate::partners::{self, PartnerError};
use crate::respond::{self, Refuse};
use crate::session::{cookie, SessionError};
use crate::subject::Subject;
use crate::users::User;

/// Why entering or leaving a tenant was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("sign in first")]
    NotSignedIn,
    #[error("you are not inside a client account")]
    NotPaired,
    #[error(transparent)]
    Partner(#[from] PartnerError),
    #[error(transparent)]
    Csrf(#[from] CsrfError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl Refuse for TenantError {
    fn status(&self) -> u16 {
        match self {
            TenantError::NotSignedIn => 401,
            TenantError::NotPaired => 409,
            TenantError::Partner(e) => e.status(),
            TenantError::Csrf(e) => e.status(),
            TenantError::Body(e) => e.status(),
            TenantError::Session(e) => e.status(),
            TenantError::Admin(e) => e.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            TenantError::NotSignedIn => "login_required",
            TenantError::NotPaired => "not_in_a_tenant",
            TenantError::Partner(e) => e.code(),
            TenantError::Csrf(e) => e.code(),
            TenantError::Body(e) => e.code(),
            TenantError::Session(e) => e.code(),
            TenantError::Admin(e) => e.code(),
        }
    }
}

static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.add_template("card.html", include_str!("auth/card.html"))
        .expect("card layout parses");
    env.add_template("partner.html", include_str!("tenants/partner.html"))
        .expect("partner page parses");
    env.add_filter("segment", crate::admin::page::segment);
    env
});

/// The gateway's parts these endpoints use.
pub struct Tenants<'a> {
    pub auth: &'a AuthService,
    pub admin: &'a AdminApi,
}

impl Tenants<'_> {
    /// `GET /_guise/partner`.
    pub async fn page(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
        let replies = &call.live.replies;
        match self.render(call) {
            Ok(html) => respond::html(s, replies, 200, html, &[]).await,
            Err(e) => respond::refuse(s, replies, &e).await,
        }
    }

    fn render(&self, call: Call<'_>) -> Result<String, TenantError> {
        let subject = call.subject.ok_or(TenantError::NotSignedIn)?;
        let user = &subject.effective;
        let snap = self.admin.partners.snapshot();
        let partner_name = user
            .partner
            .as_deref()
            .and_then(|p| snap.partner(p))
            .map(|p| p.name.clone())
            .unwrap_or_default();
        let csrf_token = &subject.session.record.csrf_token;
        let settings = &call.live.config.partners.tenants;
        let ctx = if let Some(paired) = &user.paired {
            let name = snap
                .tenant(&paired.tenant)
                .map_or_else(|| paired.tenant.clone(), |t| t.name.clone());
            context! {
                paired => true,
                tenant_name => name,
                tenant_home => settings.home_of(&paired.tenant),
                user_name => user.name,
                partner_name => partner_name,
                csrf_token => csrf_token,
            }
        } else {
            if !partners::is_partner_user(user) {
                return Err(PartnerError::NotAPartnerUser.into());
            }
            let tenants: Vec<minijinja::Value> = snap
                .tenants()
                .iter()
                .map(|t| context! { id => t.id, name => t.name, allowed => t.allow_partner_login })
                .collect();
            // The partner's admin (its primary user) sees and changes the
            // tenant roles of the partner's paired users.
            let primary = user
                .partner
                .as_deref()
                .and_then(|p| snap.partner(p))
                .is_some_and(|p| p.primary_user.as_deref() == Some(user.id.as_str()));
            let paired_users: Vec<minijinja::Value> = if primary {
                self.auth
                    .directory
                    .all()
                    .iter()
                    .filter(|u| u.partner == user.partner)
                    .filter_map(|u| {
                        let p = u.paired.as_ref()?;
                        let tenant = snap
                            .tenant(&p.tenant)
                            .map_or_else(|| p.tenant.clone(), |t| t.name.clone());
                        Some(context! {
                            tenant_id => p.tenant,
                            tenant_name => tenant,
                            partner_user => p.partner_user,
                            name => u.name,
                            roles => p.roles,
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            context! {
                paired => false,
                tenants => tenants,
                primary => primary,
                paired_users => paired_users,
                assignable => settings.partner_assignable,
                user_name => user.name,
                partner_name => partner_name,
                csrf_token => csrf_token,
            }
        };
        Ok(PAGES
            .get_template("partner.html")
            .and_then(|t| t.render(ctx))
            .unwrap_or_else(|e| format!("the partner page failed to render: {e}")))
    }

    /// `POST /_guise/tenants/{id}/enter`.
    pub async fn enter(&self, s: &mut Session, call: Call<'_>, id: &str) -> pingora::Result<()> {
        let replies = &call.live.replies;
        let result = self.try_enter(s, call, id).await;
        let outcome = if result.is_ok() { "ok" } else { "refused" };
        self.auth
            .metrics
            .paired_logins
            .with_label_values(&[outcome])
            .inc();
        match result {
            Ok((to, cookies)) => respond::redirect(s, replies, 303, &to, &cookies).await,
            Err(e) => respond::refuse(s, replies, &e).await,
        }
    }

    async fn try_enter(
        &self,
        s: &mut Session,
        call: Call<'_>,
        id: &str,
    ) -> Result<(String, Vec<(http::HeaderName, String)>), TenantError> {
        let subject = call.subject.ok_or(TenantError::NotSignedIn)?;
        check_csrf(s, call, subject).await?;
        let user = &subject.effective;
        let snap = self.admin.partners.snapshot();
        let tenant = partners::may_enter(&snap, user, id)?;
        let settings = &call.live.config.partners.tenants;
        let paired = match self.auth.directory.get(&partners::paired_id(&user.id, id)) {
            Some(existing) => {
                match partners::paired_brought_up_to_date(&existing, &tenant, settings) {
                    Some(updated) => {
                        self.admin.save(updated.clone()).await?;
                        tracing::info!(paired = %updated.id, tenant = %id, "paired user given tenant roles (stored before they existed)");
                        Arc::new(updated)
                    }
                    None => existing,
                }
            }
            None => {
                let made = partners::paired_user(user, &tenant, settings);
                self.admin.save(made.clone()).await?;
                tracing::info!(partner_user = %user.id, tenant = %id, paired = %made.id, "paired user made");
                Arc::new(made)
            }
        };
        let cookies = self.switch(call, subject, &paired).await?;
        tracing::info!(partner_user = %user.id, tenant = %id, paired = %paired.id, "login as me: entered a client account");
        Ok((settings.home_of(id), cookies))
    }

    /// `POST /_guise/tenants/leave`.
    pub async fn leave(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
        let replies = &call.live.replies;
        match self.try_leave(s, call).await {
            Ok(cookies) => respond::redirect(s, replies, 303, "/_guise/partner", &cookies).await,
            Err(e) => respond::refuse(s, replies, &e).await,
        }
    }

    async fn try_leave(
        &self,
        s: &mut Session,
        call: Call<'_>,
    ) -> Result<Vec<(http::HeaderName, String)>, TenantError> {
        let subject = call.subject.ok_or(TenantError::NotSignedIn)?;
        check_csrf(s, call, subject).await?;
        let paired = subject
            .effective
            .paired
            .as_ref()
            .ok_or(TenantError::NotPaired)?;
        // The partner user must still be one who may sign in: leaving is
        // no way around a licence taken away in the meantime.
        let back = self
            .auth
            .directory
            .get(&paired.partner_user)
            .filter(|u| crate::auth::policy::may_log_in(u))
            .ok_or(PartnerError::NotAPartnerUser)?;
        partners::may_log_in(&back)?;
        let cookies = self.switch(call, subject, &back).await?;
        tracing::info!(partner_user = %back.id, tenant = %paired.tenant, "login as me: left the client account");
        Ok(cookies)
    }

    /// `PUT /_guise/partner/paired/{tenant}/{partner_user}/roles`.
    pub async fn set_paired_roles(
        &self,
        s: &mut Session,
        call: Call<'_>,
        tenant: &str,
        partner_user: &str,
    ) -> pingora::Result<()> {
        let replies = &call.live.replies;
        let form = body::is_form(s.req_header());
        match self
            .try_set_paired_roles(s, call, tenant, partner_user)
            .await
        {
            Ok(_) if form => respond::redirect(s, replies, 303, "/_guise/partner", &[]).await,
            Ok(v) => respond::json(s, replies, 200, &v, &[]).await,
            Err(e) => {
                if let Some(subject) = call.subject {
                    tracing::info!(actor = %subject.actor.id, tenant = %tenant, partner_user = %partner_user, error = %e, "paired user's tenant roles: change refused");
                }
                respond::refuse(s, replies, &e).await
            }
        }
    }

    /// Who may (the partner's primary user, [`partners::may_change_paired`])
    /// first, then what the roles are (400 naming the field), then whether
    /// a partner may give them (403): a caller who may not change the
    /// paired user learns nothing about the tenant's roles.
    async fn try_set_paired_roles(
        &self,
        s: &mut Session,
        call: Call<'_>,
        tenant: &str,
        partner_user: &str,
    ) -> Result<serde_json::Value, TenantError> {
        let subject = call.subject.ok_or(TenantError::NotSignedIn)?;
        csrf::same_origin(s.req_header(), call.peer.https)?;
        let b = if body::is_form(s.req_header()) {
            // The partner page's form: a `role` field per role ticked.
            let raw = body::read(s).await?;
            let token = body::form_field(&raw, csrf::FIELD);
            csrf::check_token(&subject.session.record.csrf_token, token.as_deref())?;
            RolesBody {
                roles: url::form_urlencoded::parse(&raw)
                    .filter(|(k, _)| k == "role")
                    .map(|(_, v)| v.into_owned())
                    .collect(),
            }
        } else {
            csrf::check_token(
                &subject.session.record.csrf_token,
                csrf::header_token(s.req_header()),
            )?;
            body::parse_json(&body::read(s).await?, ROLES_BODY)?
        };
        let settings = &call.live.config.partners.tenants;
        let snap = self.admin.partners.snapshot();
        let actor = &subject.effective;
        let found = self
            .auth
            .directory
            .get(&partners::paired_id(partner_user, tenant));
        let target =
            partners::may_change_paired(&snap, actor, found.as_deref(), (tenant, partner_user))?;
        partners::check_tenant_roles(settings, &b.roles)?;
        partners::partner_may_give(settings, &b.roles)?;
        let before = target.paired.as_ref().map(|p| p.roles.clone());
        let changed = partners::tenant_roles_changed(target, b.roles);
        self.admin.save(changed.clone()).await?;
        self.admin
            .metrics
            .paired_role_changes
            .with_label_values(&["partner"])
            .inc();
        let after = changed.paired.as_ref().map(|p| p.roles.clone());
        tracing::info!(actor = %subject.actor.id, partner_user = %actor.id, tenant = %tenant, paired = %changed.id, before = ?before, after = ?after, by = "partner", "paired user's tenant roles changed");
        Ok(serde_json::json!({ "user": changed.public_json() }))
    }

    /// End `subject`'s session and start one of `to`; the cookie that
    /// carries the new one.
    async fn switch(
        &self,
        call: Call<'_>,
        subject: &Subject,
        to: &User,
    ) -> Result<Vec<(http::HeaderName, String)>, TenantError> {
        let sessions = &self.auth.sessions;
        let ip = call.peer.ip.map(|ip| ip.to_string());
        let (token, active) = sessions.create(&to.id, ip, BTreeMap::new()).await?;
        sessions.revoke(&subject.session.key).await?;
        tracing::debug!(from = %subject.session.record.reference, to = %active.record.reference, "session switched");
        let https = call.peer.https;
        let max_age = sessions.settings().absolute_lifetime;
        Ok(vec![(
            SET_COOKIE,
            cookie::set(self.auth.cookie_name(https), &token, https, max_age),
        )])
    }
}

/// Same-origin, and the session's CSRF token in the form (or header).
async fn check_csrf(s: &mut Session, call: Call<'_>, subject: &Subject) -> Result<(), TenantError> {
    csrf::same_origin(s.req_header(), call.peer.https)?;
    let given = csrf::given_token(s).await?;
    csrf::check_token(&subject.session.record.csrf_token, given.as_deref())?;
    Ok(())
}
