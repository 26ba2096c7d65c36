//! Partners: partner organisations and the records assigned to them,
//! Full licences and their seats, permission bundles (which areas of the
//! app a partner user reaches), client tenants and paired (ghost) users.
//!
//! From here on the gateway, not the legacy app, decides which partner user
//! reaches which area and which records:
//!
//! - [`Settings`] is the checked configuration (YAML);
//! - [`Registry`] holds what changes at run time (partners, bundles,
//!   tenants: the YAML's, overlaid with admin changes kept in the store and
//!   kept in step on every node), as one snapshot per request;
//! - [`decide`] is the pipeline's stage 7, a pure function: given the
//!   subject, the route and the records the request names (with their
//!   parents, looked up beforehand), it allows the request, with a
//!   [`PartnerKeep`] for filtering the answer, or refuses it with a
//!   [`PartnerError`] that says why;
//! - [`import`] reads a CRM export (CSV) of partners and partner users.
//!
//! A partner user reaches the companies and relationships assigned to their
//! partner and everything inside them, whoever created it: a record is
//! allowed when it, or one of its parents, is assigned.

pub mod import;
mod registry;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::respond::Refuse;
use crate::routes::RouteSpec;
use crate::subject::Subject;
use crate::users::{Licence, Role, User};

pub use registry::{Registry, Snapshot};

/// The areas of the seed's default partner bundle.
pub const DEFAULT_AREAS: [&str; 7] = [
    "dashboard",
    "timeline",
    "cockpit",
    "success_plan",
    "companies",
    "reports",
    "scorecard",
];

/// Whether a partner may use the app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartnerStatus {
    #[default]
    Active,
    Inactive,
}

/// A partner organisation: a company tagged as partner, with the
/// through-partner customers assigned to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub status: PartnerStatus,
    /// Companies assigned (the app's ids).
    #[serde(default)]
    pub companies: BTreeSet<String>,
    /// Relationships assigned.
    #[serde(default)]
    pub relationships: BTreeSet<String>,
    /// Reports shared with the partner.
    #[serde(default)]
    pub reports: BTreeSet<String>,
    /// The user an admin enters the partner's view as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_user: Option<String>,
}

/// A named set of areas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub name: String,
    pub areas: BTreeSet<String>,
}

/// A client tenant of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    #[serde(default = "default_hub")]
    pub hub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_quota: Option<u64>,
    /// The tenant's own users (paired users are not counted).
    #[serde(default)]
    pub users: u64,
    #[serde(default = "yes")]
    pub allow_partner_login: bool,
}

fn default_hub() -> String {
    "default".to_string()
}

fn yes() -> bool {
    true
}

/// Tenants and paired users, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantSettings {
    /// How a request names its tenant: the path prefix around `{tenant}`
    /// (`/t/` and `/` for `/t/{tenant}/`).
    pub path_prefix: Option<(String, String)>,
    /// Paired users' default roles by hub.
    pub hubs: BTreeMap<String, Vec<Role>>,
    /// Route features paired users may not use.
    pub refused_for_paired: BTreeSet<String>,
    pub list: Vec<Tenant>,
}

impl TenantSettings {
    /// The tenant a request path names, if tenants are configured.
    pub fn tenant_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        let (before, after) = self.path_prefix.as_ref()?;
        let rest = path.strip_prefix(before.as_str())?;
        let end = rest.find('/').unwrap_or(rest.len());
        let id = &rest[..end];
        let tail = &rest[end..];
        let ok = !id.is_empty() && (tail.starts_with(after.as_str()) || (tail.is_empty() && after == "/"));
        ok.then_some(id)
    }

    /// The home path of tenant `id`.
    pub fn home_of(&self, id: &str) -> String {
        match &self.path_prefix {
            Some((before, after)) => format!("{before}{id}{after}"),
            None => "/".to_string(),
        }
    }

    /// Paired users' default roles in a tenant of `hub`.
    pub fn roles_for(&self, hub: &str) -> Vec<Role> {
        self.hubs
            .get(hub)
            .or_else(|| self.hubs.get("default"))
            .cloned()
            .unwrap_or_else(|| vec![Role::User])
    }
}

/// The checked `licences`, `partners`, `tenants` and `resources` sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Seats of the Full licence; `None`: unlimited.
    pub full_seats: Option<u64>,
    /// Areas partner bundles draw from.
    pub areas: BTreeSet<String>,
    /// The bundle every partner user has unless given another.
    pub default_bundle: String,
    pub default_layout: Option<String>,
    pub bundles: Vec<Bundle>,
    pub partners: Vec<Partner>,
    /// Partner users may use paths no route names.
    pub unrouted_allowed: bool,
    /// Tenants for paired users (none configurable yet: paired users and
    /// "Login as me" come next).
    pub tenants: TenantSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            full_seats: None,
            areas: DEFAULT_AREAS.iter().map(|a| a.to_string()).collect(),
            default_bundle: "partner-default".to_string(),
            default_layout: None,
            bundles: Vec::new(),
            partners: Vec::new(),
            unrouted_allowed: false,
            tenants: TenantSettings::default(),
        }
    }
}

/// Why a partner user (or a paired user) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartnerError {
    #[error("your partner organisation {0} is not active")]
    PartnerInactive(String),
    #[error("your partner organisation {0} is not known to the gateway")]
    NoPartner(String),
    #[error("partner users sign in with a Full licence, and this account has none; ask your administrator for one")]
    NoFullLicence,
    #[error("the {area} area is not in your permission bundle ({bundle})")]
    AreaNotInBundle { area: String, bundle: String },
    #[error("this page is not part of the areas partner users reach")]
    Unrouted,
    #[error("this {resource} is not assigned to your partner organisation")]
    NotAssigned { resource: String },
    #[error("this {resource} could not be checked against your partner's assignments: {reason}")]
    LookupFailed { resource: String, reason: String },
    #[error("you are signed in to the client account {0}; leave it (POST /_guise/tenants/leave) to go elsewhere")]
    OutsideTenant(String),
    #[error("client accounts are entered with \"Login as me\" (/_guise/partner)")]
    TenantNeedsPairedLogin,
    #[error("paired users cannot use {0}: a paired user is a ghost of a partner user and does not exist in the account")]
    NotForPaired(String),
    #[error("the client account {0} does not allow partner logins")]
    PartnerLoginOff(String),
    #[error("no client account {0}")]
    NoTenant(String),
    #[error("only partner users enter client accounts")]
    NotAPartnerUser,
    #[error("all {total} Full licences are in use ({used} of {total}); free one before assigning another")]
    SeatsFull { used: u64, total: u64 },
}

impl Refuse for PartnerError {
    fn status(&self) -> u16 {
        match self {
            PartnerError::NoTenant(_) => 404,
            PartnerError::SeatsFull { .. } => 409,
            PartnerError::LookupFailed { .. } => 502,
            _ => 403,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            PartnerError::PartnerInactive(_) | PartnerError::NoPartner(_) => "partner_inactive",
            PartnerError::NoFullLicence => "no_full_licence",
            PartnerError::AreaNotInBundle { .. } => "area_not_in_bundle",
            PartnerError::Unrouted => "partner_unrouted",
            PartnerError::NotAssigned { .. } => "record_not_assigned",
            PartnerError::LookupFailed { .. } => "record_lookup_failed",
            PartnerError::OutsideTenant(_) => "outside_tenant",
            PartnerError::TenantNeedsPairedLogin => "tenant_needs_paired_login",
            PartnerError::NotForPaired(_) => "not_for_paired_users",
            PartnerError::PartnerLoginOff(_) => "partner_login_off",
            PartnerError::NoTenant(_) => "no_tenant",
            PartnerError::NotAPartnerUser => "not_a_partner_user",
            PartnerError::SeatsFull { .. } => "seats_full",
        }
    }
    fn title(&self) -> &'static str {
        match self {
            PartnerError::NotAssigned { .. } | PartnerError::AreaNotInBundle { .. } => "Not available to your partner account",
            PartnerError::SeatsFull { .. } => "No licence free",
            _ => http::StatusCode::from_u16(self.status())
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Refused"),
        }
    }
    fn action(&self) -> Option<(String, String)> {
        match self {
            PartnerError::OutsideTenant(_) => Some(("/_guise/partner".into(), "Back to your client accounts".into())),
            PartnerError::TenantNeedsPairedLogin => Some(("/_guise/partner".into(), "Your client accounts".into())),
            _ => None,
        }
    }
}

impl PartnerError {
    /// The `guise_partner_refusals_total` label.
    pub fn metric(&self) -> &'static str {
        self.code()
    }
}

/// Whether `user` is a partner user (and not a paired ghost).
pub fn is_partner_user(user: &User) -> bool {
    user.partner.is_some() && user.paired.is_none()
}

/// Who may log in, for the partner rules: a partner user needs a Full
/// licence (checked once the password is known to be right, so a stranger
/// learns nothing).
pub fn may_log_in(user: &User) -> Result<(), PartnerError> {
    if is_partner_user(user) && user.licence != Licence::Full {
        return Err(PartnerError::NoFullLicence);
    }
    Ok(())
}

/// A record the request names, with the parents a lookup found (empty when
/// none was needed or none is configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRecord {
    pub resource: String,
    pub id: String,
    pub parents: Vec<(String, String)>,
}

/// What stage 7 lets a request do.
#[derive(Debug, Clone)]
pub enum Access {
    /// Not a partner or paired user: the partner rules do not apply.
    Unrestricted,
    /// A partner user (or a paired one): answers are filtered to what
    /// `keep` allows.
    Partner(PartnerKeep),
}

/// The records a partner user may see, for filtering answers.
#[derive(Debug, Clone)]
pub struct PartnerKeep {
    pub partner: Arc<Partner>,
}

impl PartnerKeep {
    /// Whether the record `resource`/`id` is assigned to the partner
    /// (the partner's own record counts as assigned).
    pub fn assigned(&self, resource: &str, id: &str) -> bool {
        let p = &self.partner;
        match resource {
            "company" => p.companies.contains(id),
            "relationship" => p.relationships.contains(id),
            "report" => p.reports.contains(id),
            "partner" => p.id == id,
            _ => false,
        }
    }

    /// Whether a named record, or one of its parents, is assigned.
    pub fn allows(&self, r: &NamedRecord) -> bool {
        self.assigned(&r.resource, &r.id) || r.parents.iter().any(|(res, id)| self.assigned(res, id))
    }
}

/// Facts about the request stage 7 decides on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The route, if one matched.
    pub route: Option<&'a RouteSpec>,
    /// The request path (normal form).
    pub path: &'a str,
    /// Whether the request goes upstream (gateway endpoints never reach
    /// stage 7).
    pub public: bool,
}

/// Stage 7: may this subject make this request, and what may its answer
/// show? `records` are the records the request names, with parents.
pub fn decide(
    snap: &Snapshot,
    settings: &Settings,
    subject: Option<&Subject>,
    req: Request<'_>,
    records: &[NamedRecord],
) -> Result<Access, PartnerError> {
    let Some(subject) = subject else {
        return Ok(Access::Unrestricted);
    };
    let user = &subject.effective;
    let tenant = settings.tenants.tenant_of(req.path);
    if let Some(paired) = &user.paired {
        // A paired session lives in its tenant only.
        if tenant != Some(paired.tenant.as_str()) {
            return Err(PartnerError::OutsideTenant(paired.tenant.clone()));
        }
        if let Some(feature) = req.route.and_then(|r| r.feature.as_ref()) {
            if settings.tenants.refused_for_paired.contains(feature) {
                return Err(PartnerError::NotForPaired(feature.clone()));
            }
        }
        return Ok(Access::Unrestricted);
    }
    let Some(partner_id) = &user.partner else {
        return Ok(Access::Unrestricted);
    };
    if req.public {
        return Ok(Access::Unrestricted);
    }
    let partner = snap
        .partner(partner_id)
        .ok_or_else(|| PartnerError::NoPartner(partner_id.clone()))?;
    if partner.status != PartnerStatus::Active {
        return Err(PartnerError::PartnerInactive(partner.id.clone()));
    }
    if user.licence != Licence::Full {
        return Err(PartnerError::NoFullLicence);
    }
    if tenant.is_some() {
        return Err(PartnerError::TenantNeedsPairedLogin);
    }
    let Some(route) = req.route else {
        return if settings.unrouted_allowed {
            Ok(Access::Partner(PartnerKeep { partner }))
        } else {
            Err(PartnerError::Unrouted)
        };
    };
    if let Some(area) = &route.area {
        let bundle = snap.bundle_of(user, settings);
        if !bundle.areas.contains(area) {
            return Err(PartnerError::AreaNotInBundle {
                area: area.clone(),
                bundle: bundle.name.clone(),
            });
        }
    } else if !settings.unrouted_allowed {
        return Err(PartnerError::Unrouted);
    }
    let keep = PartnerKeep { partner };
    if let Some(r) = records.iter().find(|r| !keep.allows(r)) {
        return Err(PartnerError::NotAssigned {
            resource: r.resource.clone(),
        });
    }
    Ok(Access::Partner(keep))
}

#[cfg(test)]
mod tests;
