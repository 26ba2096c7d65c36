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
//!   [`PartnerError`] that says why; [`check`] gathers its inputs from the
//!   request and leaves what needs a lookup of [`parents`] to
//!   [`Pending::finish`];
//! - [`import`] reads a CRM export (CSV) of partners and partner users.
//!
//! A partner user reaches the companies and relationships assigned to their
//! partner and everything inside them, whoever created it: a record is
//! allowed when it, or one of its parents, is assigned.

pub mod answer;
mod gauges;
pub mod import;
pub mod parents;
mod registry;
mod seats;

use std::sync::Arc;

use crate::body::{BodyError, Media};
use crate::filter::{FilterError, JsonRecord};
use crate::live::Live;
use crate::respond::Refuse;
use crate::routes::{AnswerAt, AnswerRef, Class, RecordSource, RouteSpec, RouteTable};
use crate::subject::Subject;
use crate::users::{Licence, User};

pub use crate::config::partners::{
    Bundle, ParentSpec, Partner, PartnerStatus, Settings, Tenant, TenantSettings, DEFAULT_AREAS,
};
pub use gauges::PartnerGauges;
pub use registry::{Registry, Snapshot, BUNDLE, PARTNER, TENANT};
pub use seats::{holds_full_seat, seats, Seats};

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
    #[error("the gateway cannot tell now which company or relationship this {resource} belongs to; try again shortly")]
    LookupFailed { resource: String },
    /// A change of tenant roles names roles that cannot be given at all.
    #[error("{0}")]
    BadTenantRoles(String),
    #[error("a paired user cannot change paired users' roles; leave the client account (POST /_guise/tenants/leave) first")]
    PairedSession,
    #[error("only the primary user of {0} may change its paired users' roles")]
    NotPrimaryUser(String),
    #[error(
        "{partner_user} has no paired user in {tenant} that belongs to your partner organisation"
    )]
    NotYourPaired {
        partner_user: String,
        tenant: String,
    },
    #[error("roles: partners may give only {allowed}; `{role}` is not one of them (ask the client's admin)")]
    NotPartnerAssignable { role: String, allowed: String },
    /// A checked write's body could not be read whole.
    #[error("{0}")]
    Body(BodyError),
    #[error(
        "writes here are checked for the records they name: send the body as JSON or as a form (application/x-www-form-urlencoded)"
    )]
    BodyNotJson,
    #[error("the body cannot be checked: {0}")]
    BadBody(String),
    #[error("{field} must be a record's id (a string or a number)")]
    NotAnId { field: String },
}

impl Refuse for PartnerError {
    fn status(&self) -> u16 {
        match self {
            PartnerError::NoTenant(_) => 404,
            PartnerError::SeatsFull { .. } => 409,
            PartnerError::LookupFailed { .. } => 503,
            PartnerError::BadTenantRoles(_)
            | PartnerError::BadBody(_)
            | PartnerError::NotAnId { .. } => 400,
            PartnerError::Body(e) => e.status(),
            PartnerError::BodyNotJson => 415,
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
            PartnerError::OutsideTenant(_) => "outside_tenant",
            PartnerError::TenantNeedsPairedLogin => "tenant_needs_paired_login",
            PartnerError::NotForPaired(_) => "not_for_paired_users",
            PartnerError::PartnerLoginOff(_) => "partner_login_off",
            PartnerError::NoTenant(_) => "no_tenant",
            PartnerError::NotAPartnerUser => "not_a_partner_user",
            PartnerError::SeatsFull { .. } => "seats_full",
            PartnerError::LookupFailed { .. } => "partner_lookup_failed",
            PartnerError::BadTenantRoles(_) => "bad_request",
            PartnerError::PairedSession => "paired_session",
            PartnerError::NotPrimaryUser(_) => "not_primary_user",
            PartnerError::NotYourPaired { .. } => "not_your_paired_user",
            PartnerError::NotPartnerAssignable { .. } => "role_not_partner_assignable",
            PartnerError::Body(e) => e.code(),
            PartnerError::BodyNotJson => "json_required",
            PartnerError::BadBody(_) => "bad_json",
            PartnerError::NotAnId { .. } => "bad_record_id",
        }
    }
    fn title(&self) -> &'static str {
        match self {
            PartnerError::NotAssigned { .. } | PartnerError::AreaNotInBundle { .. } => {
                "Not available to your partner account"
            }
            PartnerError::SeatsFull { .. } => "No licence free",
            _ => http::StatusCode::from_u16(self.status())
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Refused"),
        }
    }
    fn action(&self) -> Option<(String, String)> {
        match self {
            PartnerError::OutsideTenant(_) => Some((
                "/_guise/partner".into(),
                "Back to your client accounts".into(),
            )),
            PartnerError::TenantNeedsPairedLogin => {
                Some(("/_guise/partner".into(), "Your client accounts".into()))
            }
            _ => None,
        }
    }
}

/// Every [`PartnerError`] code, so `guise_partner_refusals_total` shows
/// each reason from the start (at 0) rather than once it first happens.
pub const REFUSAL_CODES: [&str; 12] = [
    "partner_inactive",
    "no_full_licence",
    "area_not_in_bundle",
    "partner_unrouted",
    "record_not_assigned",
    "outside_tenant",
    "tenant_needs_paired_login",
    "not_for_paired_users",
    "partner_login_off",
    "no_tenant",
    "not_a_partner_user",
    "partner_lookup_failed",
];

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

/// The paired (ghost) user of partner user `partner_user` in `tenant`, as
/// first made: marked paired (no seat, not counted in the tenant's quota),
/// holding the gateway role `user` only, with the default tenant roles of
/// the tenant's hub. An admin or the partner's primary user may change its
/// tenant roles afterwards ([`tenant_roles_changed`]); an existing paired
/// user is reused as it is.
pub fn paired_user(partner_user: &User, tenant: &Tenant, settings: &TenantSettings) -> User {
    let mut u = User::new(
        paired_id(&partner_user.id, &tenant.id),
        format!("{} (paired)", partner_user.name),
        String::new(),
    );
    u.partner.clone_from(&partner_user.partner);
    u.origin = crate::users::Origin::Paired;
    u.paired = Some(crate::users::Paired {
        partner_user: partner_user.id.clone(),
        tenant: tenant.id.clone(),
        roles: settings.roles_for(&tenant.hub),
    });
    u
}

/// A paired user stored before tenant roles existed, brought up to date
/// on its next "Login as me": gateway role `user` only, and its hub's
/// default tenant roles if it has none. `None` when nothing changes.
pub fn paired_brought_up_to_date(
    existing: &User,
    tenant: &Tenant,
    settings: &TenantSettings,
) -> Option<User> {
    let paired = existing.paired.as_ref()?;
    if !paired.roles.is_empty() && existing.roles == [crate::users::Role::User] {
        return None;
    }
    let mut u = existing.clone();
    u.roles = vec![crate::users::Role::User];
    if let Some(p) = u.paired.as_mut().filter(|p| p.roles.is_empty()) {
        p.roles = settings.roles_for(&tenant.hub);
    }
    Some(u)
}

/// Check the tenant roles of a change (by an admin or a partner): at least
/// one, each a name the roles header can carry and, when the app's roles
/// are listed, one of them; none twice. The refusal names the field.
pub fn check_tenant_roles(settings: &TenantSettings, roles: &[String]) -> Result<(), PartnerError> {
    let bad = |at: String, why: String| Err(PartnerError::BadTenantRoles(format!("{at}: {why}")));
    if roles.is_empty() {
        return bad(
            "roles".into(),
            "give at least one role (to keep a partner out of the tenant, turn its partner login off)"
                .into(),
        );
    }
    for (i, r) in roles.iter().enumerate() {
        if let Err(why) = crate::users::check_tenant_role(r) {
            return bad(format!("roles[{i}]"), why);
        }
        if !settings.is_role(r) {
            let all = settings.roles.as_deref().unwrap_or_default().join(", ");
            return bad(
                format!("roles[{i}]"),
                format!("`{r}` is not one of the tenant roles ({all})"),
            );
        }
        if roles[..i].contains(r) {
            return bad(format!("roles[{i}]"), format!("`{r}` is given twice"));
        }
    }
    Ok(())
}

/// Whether partner user `actor` may change the tenant roles of `target`,
/// the paired user of `partner_user` in `tenant` (`None`: there is none);
/// the target when so. Only the primary user of an active partner (the
/// partner's admin), for their own partner's paired users, in a tenant
/// that allows partner logins: a tenant that shut its partner out is not
/// reached through its roles either. Which roles they may give is
/// [`partner_may_give`]'s to say.
pub fn may_change_paired<'a>(
    snap: &Snapshot,
    actor: &User,
    target: Option<&'a User>,
    (tenant, partner_user): (&str, &str),
) -> Result<&'a User, PartnerError> {
    if actor.paired.is_some() {
        return Err(PartnerError::PairedSession);
    }
    if !is_partner_user(actor) {
        return Err(PartnerError::NotAPartnerUser);
    }
    may_log_in(actor)?;
    let partner_id = actor.partner.as_deref().unwrap_or_default();
    let partner = snap
        .partner(partner_id)
        .ok_or_else(|| PartnerError::NoPartner(partner_id.to_string()))?;
    if partner.status != PartnerStatus::Active {
        return Err(PartnerError::PartnerInactive(partner.id.clone()));
    }
    if partner.primary_user.as_deref() != Some(actor.id.as_str()) {
        return Err(PartnerError::NotPrimaryUser(partner.id.clone()));
    }
    // Another partner's paired user and one that does not exist get the
    // same answer: a partner learns nothing about other partners.
    let target = target
        .filter(|t| {
            t.partner.as_deref() == Some(partner_id)
                && t.paired
                    .as_ref()
                    .is_some_and(|p| p.tenant == tenant && p.partner_user == partner_user)
        })
        .ok_or_else(|| PartnerError::NotYourPaired {
            partner_user: partner_user.to_string(),
            tenant: tenant.to_string(),
        })?;
    match snap.tenant(tenant) {
        Some(t) if t.allow_partner_login => Ok(target),
        Some(_) => Err(PartnerError::PartnerLoginOff(tenant.to_string())),
        None => Err(PartnerError::NoTenant(tenant.to_string())),
    }
}

/// Whether a partner may give `roles` (already checked with
/// [`check_tenant_roles`]): only those of `tenants.partner_assignable`.
pub fn partner_may_give(settings: &TenantSettings, roles: &[String]) -> Result<(), PartnerError> {
    match roles
        .iter()
        .find(|r| !settings.partner_assignable.contains(*r))
    {
        None => Ok(()),
        Some(role) => Err(PartnerError::NotPartnerAssignable {
            role: role.clone(),
            allowed: settings
                .partner_assignable
                .iter()
                .map(|r| format!("`{r}`"))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// `target` with `roles` as its tenant roles (and the gateway role `user`
/// only, whatever it held): the one way a change of tenant roles is made.
pub fn tenant_roles_changed(target: &User, roles: Vec<String>) -> User {
    let mut u = target.clone();
    u.roles = vec![crate::users::Role::User];
    if let Some(p) = u.paired.as_mut() {
        p.roles = roles;
    }
    u
}

/// The id of a paired user: stable, so "Login as me" finds it again.
pub fn paired_id(partner_user: &str, tenant: &str) -> String {
    format!("{partner_user}~{tenant}")
}

/// Whether partner user `user` may enter tenant `id` now.
pub fn may_enter(snap: &Snapshot, user: &User, id: &str) -> Result<Arc<Tenant>, PartnerError> {
    if !is_partner_user(user) {
        return Err(PartnerError::NotAPartnerUser);
    }
    may_log_in(user)?;
    let partner_id = user.partner.as_deref().unwrap_or_default();
    let partner = snap
        .partner(partner_id)
        .ok_or_else(|| PartnerError::NoPartner(partner_id.to_string()))?;
    if partner.status != PartnerStatus::Active {
        return Err(PartnerError::PartnerInactive(partner.id.clone()));
    }
    let tenant = snap
        .tenant(id)
        .ok_or_else(|| PartnerError::NoTenant(id.to_string()))?;
    if !tenant.allow_partner_login {
        return Err(PartnerError::PartnerLoginOff(tenant.id.clone()));
    }
    Ok(tenant)
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
        self.assigned(&r.resource, &r.id)
            || r.parents.iter().any(|(res, id)| self.assigned(res, id))
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

/// The records request `path?query` names under route `index`: path
/// parameters and query parameters, as the route's `records` say. A query
/// parameter given more than once names every value (the app may read
/// any of them), so each is checked.
pub fn named_records(
    table: &RouteTable,
    index: usize,
    route: &RouteSpec,
    path: &str,
    query: Option<&str>,
) -> Vec<NamedRecord> {
    let mut out = Vec::new();
    for r in &route.records {
        let mut push = |id: String| {
            out.push(NamedRecord {
                resource: r.resource.clone(),
                id,
                parents: Vec::new(),
            })
        };
        match &r.from {
            RecordSource::Param(name) => {
                if let Some(id) = table.param(index, path, name) {
                    push(id);
                }
            }
            RecordSource::Query(name) => {
                for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
                    if k == name.as_str() {
                        push(v.into_owned());
                    }
                }
            }
        }
    }
    out
}

/// What stage 7 still has to do after its synchronous part.
pub enum Step<'a> {
    /// Decided.
    Done(Access),
    /// Records named by their own id need their parents looked up first:
    /// [`Pending::finish`] does it. Kept apart so that the common request
    /// never builds the lookup's future.
    Parents(Pending<'a>),
}

/// A decision that waits for lookups of parents.
pub struct Pending<'a> {
    snap: Arc<Snapshot>,
    settings: &'a Settings,
    subject: Option<&'a Subject>,
    req: Request<'a>,
    records: Vec<NamedRecord>,
}

impl Pending<'_> {
    /// Look up the parents of the records that need them, and decide.
    pub async fn finish(
        mut self,
        registry: &Registry,
        live: &Live,
        unix_now: u64,
    ) -> Result<Access, PartnerError> {
        let ttl = self.settings.lookup_ttl;
        for r in &mut self.records {
            if let Some(spec) = parent_spec(self.settings, &r.resource) {
                let found = registry
                    .parents
                    .of(live, spec, &r.id, ttl, unix_now)
                    .await?;
                r.parents = found.to_vec();
            }
        }
        decide(
            &self.snap,
            self.settings,
            self.subject,
            self.req,
            &self.records,
        )
    }
}

/// How records of `resource` are placed inside assigned ones, if they are.
fn parent_spec<'s>(settings: &'s Settings, resource: &str) -> Option<&'s ParentSpec> {
    settings.parents.iter().find(|p| p.resource == resource)
}

/// Stage 7 of the pipeline, from what the earlier stages found: the
/// request's class and subject.
pub fn check<'a>(
    registry: &Registry,
    settings: &'a Settings,
    table: &'a RouteTable,
    class: Class,
    subject: Option<&'a Subject>,
    uri: &'a http::Uri,
) -> Result<Step<'a>, PartnerError> {
    // Most requests are not a partner's: no snapshot, no record parsing.
    let concerned =
        subject.is_some_and(|s| s.effective.partner.is_some() || s.effective.paired.is_some());
    if !concerned {
        return Ok(Step::Done(Access::Unrestricted));
    }
    let snap = registry.snapshot();
    let path = uri.path();
    let (route, records) = match class {
        Class::Route(i) => match table.routes().get(i) {
            Some(r) => (Some(r), named_records(table, i, r, path, uri.query())),
            None => (None, Vec::new()),
        },
        _ => (None, Vec::new()),
    };
    let req = Request {
        route,
        path,
        // The app's login page (upstream mode) is for everyone.
        public: route.map_or(class == Class::Login, |r| r.public),
    };
    if !records
        .iter()
        .any(|r| parent_spec(settings, &r.resource).is_some())
    {
        return decide(&snap, settings, subject, req, &records).map(Step::Done);
    }
    // Refuse what needs no lookup first (licence, bundle, records named
    // directly), so a refused request costs the app nothing.
    let direct: Vec<NamedRecord> = records
        .iter()
        .filter(|r| parent_spec(settings, &r.resource).is_none())
        .cloned()
        .collect();
    match decide(&snap, settings, subject, req, &direct)? {
        // Rules that do not look at records (paired users, public pages).
        Access::Unrestricted => Ok(Step::Done(Access::Unrestricted)),
        Access::Partner(_) => Ok(Step::Parents(Pending {
            snap,
            settings,
            subject,
            req,
            records,
        })),
    }
}

/// A partner user's write on a route whose `body` names records (see
/// [`BodyCheck::decide`]).
pub struct BodyCheck<'a> {
    keep: &'a PartnerKeep,
    refs: &'a [AnswerRef],
    reader: &'a JsonRecord,
}

/// The body check a request needs, if any: a write (not GET or HEAD) by
/// a partner user, on a route whose `body` names records. The path and
/// query were checked before this; the body is where a create names the
/// company it belongs to, and where an update can move a record.
pub fn body_check<'a>(
    access: &'a Access,
    table: &'a RouteTable,
    class: Class,
    reading: bool,
) -> Option<BodyCheck<'a>> {
    let (Access::Partner(keep), Class::Route(i), false) = (access, class, reading) else {
        return None;
    };
    Some(BodyCheck {
        keep,
        refs: &table.routes().get(i)?.body,
        reader: table.body(i)?,
    })
}

impl BodyCheck<'_> {
    /// Whether `body`, encoded as `media` says, names only records
    /// assigned to the partner. Every record it names must be, not just
    /// one: a CTA put in an assigned company but another partner's
    /// relationship would land in that partner's data. A field the body
    /// leaves out (or sets to null, or to an empty form value) names
    /// nothing, and so does an empty body.
    ///
    /// JSON is read at the refs' pointers; refused are a key on a ref's
    /// path given twice (the app might read either copy) and an object,
    /// array or boolean where an id belongs. A form (what an HTML form
    /// posts) is read at the refs whose pointer is one key (`/company_id`
    /// is the form field `company_id`), and every value of a field given
    /// more than once must be assigned, as the app may read any of them.
    /// Other encodings (multipart, text) are refused: the gateway cannot
    /// see what they name.
    pub fn decide(&self, media: Media, body: &[u8]) -> Result<(), PartnerError> {
        if body.is_empty() {
            return Ok(());
        }
        match media {
            Media::Json => self.decide_json(body),
            Media::Form => self.decide_form(body),
            Media::Other => Err(PartnerError::BodyNotJson),
        }
    }

    fn decide_json(&self, body: &[u8]) -> Result<(), PartnerError> {
        // Two reads, on purpose: guise's reader refuses a key on a ref's
        // path given twice, which serde_json's `Value` silently resolves;
        // `Value` then reads the ids and is the stricter parser (nesting
        // depth, number range), as the app's own may be. A body is at
        // most 64 KiB and only partner users' writes come here.
        let any = |_: &str, _: &str| true;
        self.reader.check(body, &any).map_err(|e| match e {
            FilterError::Malformed { reason } => PartnerError::BadBody(reason),
            other => PartnerError::BadBody(other.to_string()),
        })?;
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|_| PartnerError::BadBody("the body is not JSON".into()))?;
        for r in self.refs {
            let AnswerAt::Field(field) = &r.at else {
                continue;
            };
            let id = match value.pointer(field) {
                None | Some(serde_json::Value::Null) => continue,
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                Some(_) => {
                    return Err(PartnerError::NotAnId {
                        field: field.clone(),
                    })
                }
            };
            self.assigned(r, &id)?;
        }
        Ok(())
    }

    fn decide_form(&self, body: &[u8]) -> Result<(), PartnerError> {
        for r in self.refs {
            let Some(name) = form_field(&r.at) else {
                continue;
            };
            for (key, value) in url::form_urlencoded::parse(body) {
                if key == name && !value.is_empty() {
                    self.assigned(r, &value)?;
                }
            }
        }
        Ok(())
    }

    fn assigned(&self, r: &AnswerRef, id: &str) -> Result<(), PartnerError> {
        if self.keep.assigned(&r.resource, id) {
            Ok(())
        } else {
            Err(PartnerError::NotAssigned {
                resource: r.resource.clone(),
            })
        }
    }
}

/// The form field a body ref names: its pointer's one key, unescaped
/// (`/company_id` is `company_id`). A deeper pointer has no form field.
fn form_field(at: &AnswerAt) -> Option<String> {
    let AnswerAt::Field(pointer) = at else {
        return None;
    };
    let key = pointer.strip_prefix('/')?;
    if key.contains('/') {
        return None;
    }
    Some(key.replace("~1", "/").replace("~0", "~"))
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
        // Turning partner login off stops paired sessions at once, on
        // every node, before their revocation has reached it.
        match snap.tenant(&paired.tenant) {
            Some(t) if t.allow_partner_login => {}
            Some(_) => return Err(PartnerError::PartnerLoginOff(paired.tenant.clone())),
            None => return Err(PartnerError::NoTenant(paired.tenant.clone())),
        }
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
