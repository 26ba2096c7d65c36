//! The admin page, `GET /_guise/admin`: partners and their users with
//! "Login as Partner User", "Send Welcome Email" and "Access portal
//! account"; every user with the grant or revoke of `can_impersonate`; the
//! impersonations in progress with "End"; the newest audit entries.
//!
//! | | |
//! |---|---|
//! | `GET /_guise/admin` | the page (admins; browsers without a session go to the login page) |
//! | `POST /_guise/admin/page/users/{id}/can-impersonate` | `value=1` grants, `value=0` revokes |
//! | `POST /_guise/admin/page/users/{id}/welcome` | send the user a welcome email |
//!
//! The page is plain HTML forms and runs no script at all, so a content
//! security policy never has to allow a script source for it (its style is
//! the shared card layout's inline one). A form cannot set the
//! `x-csrf-token` header the JSON admin API asks for, so the page's two
//! admin actions get the small form endpoints above: same origin, the
//! session's token in the `csrf_token` field, and then the very code path
//! of the API call (`AdminApi::update_user`, `AdminApi::send_welcome`),
//! so the page can do nothing the API would refuse. The other buttons post
//! to endpoints that take forms already (`/_guise/impersonate`,
//! `/_guise/admin/impersonations/{session}/end`).
//!
//! After an action the browser is sent back (303) with a *code* in the
//! query (`?done=welcome&user=u-id`), never a sentence: the page words the
//! message itself from the code and the directory, so a crafted link cannot
//! make the admin page say anything it would not say on its own.
//!
//! What each button shows is decided by `Model::build`, a pure function
//! of the facts gathered per request, with the rules of
//! [`crate::impersonation`] and [`super::policy`]: a button the viewer may
//! not use is hidden, one whose target cannot take it is shown disabled
//! with the reason as its tooltip.

use std::sync::{Arc, LazyLock};

use minijinja::Environment;
use pingora::proxy::Session;
use serde::Serialize;

use super::{policy, AdminApi, AdminError, Patch};
use crate::audit::{AuditPage, AuditQuery};
use crate::auth::policy::LoginRequired;
use crate::body;
use crate::call::Call;
use crate::config::impersonation::Impersonation as Settings;
use crate::config::{AdminPolicy, LoginMode};
use crate::csrf;
use crate::impersonation::endpoints::{Impersonations, InProgress};
use crate::impersonation::{may_impersonate, may_target};
use crate::partners::{holds_full_seat, is_partner_user, seats, Partner, PartnerStatus};
use crate::respond::{self, Refuse};
use crate::routes::{ADMIN_PAGE, GATEWAY_PREFIX};
use crate::subject::Subject;
use crate::users::{Licence, Role, User};
use crate::welcome::WelcomeError;

/// The page's own form endpoints, under [`GATEWAY_PREFIX`].
pub const ACTIONS: &str = "admin/page/";

/// Audit entries the page shows; the JSON API pages through the rest.
const AUDIT_TAIL: usize = 20;

static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // The gateway's other pages' layout, widened: one look for all of them.
    env.add_template("card.html", include_str!("../auth/card.html"))
        .expect("card layout parses");
    env.add_template("admin.html", include_str!("page.html"))
        .expect("admin page parses");
    env.add_filter("segment", segment);
    env
});

/// Everything but RFC 3986's unreserved characters: what a path segment
/// escapes so that an id stays one segment.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The template filter `segment`: `id` percent-encoded as one path
/// segment of a form's action ([`user_id`] reads it back).
pub(crate) fn segment(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, SEGMENT).to_string()
}

/// Why the admin page, or one of its actions, was refused.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// No session: browsers go to the login page, and come back here.
    #[error(transparent)]
    LoginRequired(#[from] LoginRequired),
    /// What the admin API would have refused, for the same reason.
    #[error(transparent)]
    Admin(#[from] AdminError),
}

impl Refuse for PageError {
    fn status(&self) -> u16 {
        match self {
            PageError::LoginRequired(e) => e.status(),
            PageError::Admin(e) => e.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            PageError::LoginRequired(e) => e.code(),
            PageError::Admin(e) => e.code(),
        }
    }
    fn title(&self) -> &'static str {
        match self {
            PageError::LoginRequired(e) => e.title(),
            PageError::Admin(e) => e.title(),
        }
    }
    fn redirect(&self) -> Option<String> {
        match self {
            PageError::LoginRequired(e) => e.redirect(),
            PageError::Admin(_) => None,
        }
    }
    /// An admin whose action was refused goes back to the page; anyone
    /// else has no business there.
    fn action(&self) -> Option<(String, String)> {
        match self {
            PageError::Admin(AdminError::NotAdmin(_) | AdminError::NotSignedIn)
            | PageError::LoginRequired(_) => None,
            PageError::Admin(_) => Some((ADMIN_PAGE.into(), "Back to the admin page".into())),
        }
    }
}

/// The admin page of one gateway, for one request's scheme.
pub struct AdminPage<'a> {
    pub admin: &'a AdminApi,
    pub impersonations: Impersonations<'a>,
}

impl AdminPage<'_> {
    /// `GET /_guise/admin`.
    pub async fn show(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
        let replies = &call.live.replies;
        let query = s.req_header().uri.query().unwrap_or("").to_string();
        match self.render(call, &query).await {
            Ok(html) => respond::html(s, replies, 200, html, &[]).await,
            Err(e) => respond::refuse(s, replies, &e).await,
        }
    }

    async fn render(&self, call: Call<'_>, query: &str) -> Result<String, PageError> {
        let subject = admin_viewer(call)?;
        let viewer = &subject.actor;
        let config = &call.live.config;
        let settings = &config.impersonation;
        // Only someone who may impersonate is asked to accept the terms;
        // if the store cannot say, the box is shown (ticking it twice is
        // harmless, starting without it is not possible).
        let terms_acknowledged = match &settings.terms {
            Some(terms) if may_impersonate(settings, viewer).is_ok() => self
                .impersonations
                .terms_acknowledged(viewer, terms)
                .await
                .unwrap_or(false),
            _ => false,
        };
        let in_progress = self
            .impersonations
            .in_progress()
            .await
            .map_err(|e| e.to_string());
        let tail = AuditQuery {
            limit: AUDIT_TAIL,
            ..AuditQuery::default()
        };
        let audit = self
            .impersonations
            .audit
            .read(&tail)
            .await
            .map_err(|e| e.to_string());
        let users = self.admin.directory.all();
        let explain = match ExplainForm::parse(query) {
            Some(form) => {
                let q = form.query();
                let answer = super::permissions::explain(self.admin, call, Some(&q))
                    .await
                    .map(|(_, v)| v)
                    .map_err(|e| e.to_string());
                Some((form, answer))
            }
            None => None,
        };
        let permission_resources = self
            .admin
            .permissions
            .policy()
            .resources()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let facts = Facts {
            viewer,
            csrf_token: &subject.session.record.csrf_token,
            settings,
            admin_policy: &config.admin,
            full_seats: config.partners.full_seats,
            welcome_unavailable: welcome_unavailable(call),
            users: &users,
            partners: &self.admin.partners.snapshot().partners(),
            terms_acknowledged,
            in_progress: in_progress.as_deref().map_err(String::as_str),
            audit: audit.as_ref().map_err(String::as_str),
            flash: Flash::parse(query),
            permission_resources,
            explain,
        };
        let mut html = render(&Model::build(&facts));
        // The page was rendered as the admin: like the app's pages, it must
        // learn at once when the admin is signed out in another tab.
        let record = &subject.session.record;
        let snippet = crate::tab::snippet(&crate::tab::TabView {
            session_ref: &record.reference,
            csrf_token: &record.csrf_token,
            user_name: &viewer.name,
            banner: None,
        });
        match html.rfind("</body>") {
            Some(at) => html.insert_str(at, &snippet),
            None => html.push_str(&snippet),
        }
        Ok(html)
    }

    /// `POST /_guise/admin/page/{action}`: one of the page's form actions,
    /// then back to the page.
    pub async fn post(&self, s: &mut Session, call: Call<'_>, action: &str) -> pingora::Result<()> {
        let replies = &call.live.replies;
        match self.act(s, call, action).await {
            Ok(to) => respond::redirect(s, replies, 303, &to, &[]).await,
            Err(e) => {
                if let Some(subject) = call.subject {
                    tracing::info!(actor = %subject.actor.id, action, error = %e, "admin page action refused");
                }
                respond::refuse(s, replies, &e).await
            }
        }
    }

    async fn act(
        &self,
        s: &mut Session,
        call: Call<'_>,
        action: &str,
    ) -> Result<String, PageError> {
        let subject = admin_viewer(call)?;
        csrf::same_origin(s.req_header(), call.peer.https).map_err(AdminError::from)?;
        let raw = body::read(s).await.map_err(AdminError::from)?;
        let given = csrf::header_token(s.req_header())
            .map(str::to_string)
            .or_else(|| body::form_field(&raw, csrf::FIELD));
        csrf::check_token(&subject.session.record.csrf_token, given.as_deref())
            .map_err(AdminError::from)?;
        let parts: Vec<&str> = action.split('/').collect();
        match parts.as_slice() {
            ["users", id, "can-impersonate"] if !id.is_empty() => {
                let id = &user_id(id);
                let value = match body::form_field(&raw, "value").as_deref() {
                    Some("1") => true,
                    Some("0") => false,
                    _ => {
                        return Err(AdminError::Invalid(
                            "value: must be 1 (grant can_impersonate) or 0 (revoke it)".into(),
                        )
                        .into())
                    }
                };
                let patch = Patch {
                    can_impersonate: Some(value),
                    ..Patch::default()
                };
                self.admin.update_user(call, subject, id, patch).await?;
                let done = if value { Done::Granted } else { Done::Revoked };
                Ok(done.location(id))
            }
            ["users", id, "welcome"] if !id.is_empty() => {
                let id = &user_id(id);
                self.admin
                    .send_welcome(s.req_header(), call, subject, id)
                    .await?;
                Ok(Done::Welcome.location(id))
            }
            _ => {
                Err(AdminError::NotFound(format!("POST {GATEWAY_PREFIX}{ACTIONS}{action}")).into())
            }
        }
    }
}

/// The caller, if an admin acting as themselves. While impersonating, a
/// request runs as the partner user, who is no admin: the page is out of
/// reach until they return, as the admin API is.
fn admin_viewer(call: Call<'_>) -> Result<&Subject, PageError> {
    let subject = call.subject.ok_or_else(|| LoginRequired {
        login: call.live.config.auth.login_path.clone(),
        next: ADMIN_PAGE.into(),
    })?;
    if subject.is_impersonating() {
        return Err(AdminError::NotAdmin(subject.effective.id.clone()).into());
    }
    policy::may_use_api(&subject.effective)?;
    Ok(subject)
}

/// A user id from a path segment: the page percent-encodes ids in its
/// form actions (an id may hold any visible ASCII, such as `@` or `+`).
fn user_id(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// Why no welcome email can be sent from this gateway at all, if so (the
/// same refusals [`crate::welcome::Welcomes::send`] would give).
fn welcome_unavailable(call: Call<'_>) -> Option<String> {
    let live = call.live;
    if live.config.mail.is_none() || live.mailer.is_none() {
        return Some(WelcomeError::NoMail.to_string());
    }
    if !matches!(live.config.auth.mode, LoginMode::Gateway) {
        return Some(WelcomeError::PasswordsUpstream.to_string());
    }
    None
}

// === the flash message ===

/// What an action did, as the page's address after the action says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Done {
    Welcome,
    Granted,
    Revoked,
    /// Said by the End endpoint (see [`crate::impersonation::endpoints`]).
    Ended,
}

impl Done {
    fn code(self) -> &'static str {
        match self {
            Done::Welcome => "welcome",
            Done::Granted => "granted",
            Done::Revoked => "revoked",
            Done::Ended => "ended",
        }
    }

    fn of(code: &str) -> Option<Done> {
        [Done::Welcome, Done::Granted, Done::Revoked, Done::Ended]
            .into_iter()
            .find(|d| d.code() == code)
    }

    /// The section the page opens at afterwards.
    fn section(self) -> &'static str {
        match self {
            Done::Welcome => "partners",
            Done::Granted | Done::Revoked => "users",
            Done::Ended => "impersonations",
        }
    }

    /// The page's address after the action on user `id`.
    fn location(self, id: &str) -> String {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("done", self.code())
            .append_pair("user", id)
            .finish();
        format!("{ADMIN_PAGE}?{query}#{}", self.section())
    }
}

/// The flash the page's query asks for: a known code and, for some, a
/// user id. Anything else in the query is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Flash {
    done: Done,
    user: Option<String>,
}

impl Flash {
    fn parse(query: &str) -> Option<Flash> {
        let mut done = None;
        let mut user = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "done" => done = Done::of(&v),
                "user" => user = Some(v.into_owned()),
                _ => {}
            }
        }
        Some(Flash { done: done?, user })
    }

    /// The sentence, from the code and the directory only: a user id the
    /// directory does not know is not repeated.
    fn message(&self, users: &[Arc<User>]) -> String {
        let user = self
            .user
            .as_deref()
            .and_then(|id| users.iter().find(|u| u.id == id));
        match (self.done, user) {
            (Done::Welcome, Some(u)) => format!("Welcome email sent to {} <{}>.", u.name, u.email),
            (Done::Welcome, None) => "Welcome email sent.".into(),
            (Done::Granted, Some(u)) => format!("{} may now impersonate partner users.", u.name),
            (Done::Revoked, Some(u)) => format!("{} may no longer impersonate.", u.name),
            (Done::Granted | Done::Revoked, None) => "can_impersonate changed.".into(),
            (Done::Ended, _) => "The impersonation was ended; that admin is signed out.".into(),
        }
    }
}

// === the page's model ===

/// What the page is built from, gathered per request.
struct Facts<'a> {
    viewer: &'a User,
    csrf_token: &'a str,
    settings: &'a Settings,
    admin_policy: &'a AdminPolicy,
    /// `licences.full`, if limited.
    full_seats: Option<u64>,
    welcome_unavailable: Option<String>,
    /// Every user, by id.
    users: &'a [Arc<User>],
    /// Every partner, by id.
    partners: &'a [Arc<Partner>],
    terms_acknowledged: bool,
    /// Impersonations in progress, or why they could not be listed.
    in_progress: Result<&'a [InProgress], &'a str>,
    /// The newest audit entries, or why they could not be read.
    audit: Result<&'a AuditPage, &'a str>,
    flash: Option<Flash>,
    /// The data-permission resources, for the explain form.
    permission_resources: Vec<String>,
    /// The explain form as asked, and its answer (the explain endpoint's
    /// JSON) or why there is none.
    explain: Option<(ExplainForm, Result<serde_json::Value, String>)>,
}

/// The explain form's fields, as the admin filled them in.
#[derive(Debug, Clone, Default, Serialize)]
struct ExplainForm {
    user: String,
    resource: String,
    action: String,
    record: String,
}

impl ExplainForm {
    /// The form's fields from the page's query (`explain_user=…`), if the
    /// form was sent.
    fn parse(query: &str) -> Option<ExplainForm> {
        let mut f = ExplainForm::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "explain_user" => f.user = v.into_owned(),
                "explain_resource" => f.resource = v.into_owned(),
                "explain_action" => f.action = v.into_owned(),
                "explain_record" => f.record = v.into_owned(),
                _ => {}
            }
        }
        (!f.user.is_empty() || !f.resource.is_empty()).then_some(f)
    }

    /// The same question as the explain endpoint's query.
    fn query(&self) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("user", &self.user)
            .append_pair("resource", &self.resource)
            .append_pair("action", &self.action)
            .append_pair("record", &self.record)
            .finish()
    }
}

/// The explain answer as the page words it.
#[derive(Debug, Serialize)]
struct ExplainView {
    allowed: bool,
    text: String,
}

impl ExplainView {
    fn of(v: &serde_json::Value) -> ExplainView {
        let allowed = v["allowed"].as_bool().unwrap_or(false);
        let g = &v["granted_by"];
        let text = if allowed {
            match g["by"].as_str() {
                Some("super_admin") => {
                    "Allowed: super admins have access to everything.".to_string()
                }
                Some("everyone") => format!(
                    "Allowed: Everyone gets READ/WRITE on {}.",
                    g["resource"].as_str().unwrap_or("")
                ),
                _ => {
                    let groups: Vec<&str> = g["groups"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                        .unwrap_or_default();
                    let through = if groups.is_empty() {
                        String::new()
                    } else {
                        format!(" through sharing group {}", groups.join(", "))
                    };
                    format!(
                        "Allowed by rule \u{201c}{}\u{201d} on {}{through}.",
                        g["rule"].as_str().unwrap_or(""),
                        g["resource"].as_str().unwrap_or("")
                    )
                }
            }
        } else {
            format!(
                "Not allowed: {}.",
                v["reason"].as_str().unwrap_or("no rule grants it")
            )
        };
        ExplainView { allowed, text }
    }
}

/// A button: shown enabled, or disabled with the reason (`off`) as its
/// tooltip. A button the viewer may never use is not in the model at all.
#[derive(Debug, Serialize)]
struct Button {
    off: Option<String>,
}

impl Button {
    fn of<E: std::fmt::Display>(r: Result<(), E>) -> Button {
        Button {
            off: r.err().map(|e| e.to_string()),
        }
    }
}

#[derive(Debug, Serialize)]
struct Model {
    viewer_name: String,
    viewer_roles: Vec<&'static str>,
    csrf_token: String,
    flash: Option<String>,
    /// "Login as Partner User" is offered to the viewer.
    impersonate: bool,
    /// Why it is not, when not.
    impersonate_unavailable: Option<String>,
    reason_required: bool,
    /// The terms to accept with each start, when still to be accepted.
    terms: Option<String>,
    max_minutes: u64,
    seats: Seats,
    partners: Vec<PartnerRow>,
    /// Grant and revoke are offered to the viewer.
    grant: bool,
    grant_unavailable: Option<String>,
    users: Vec<UserRow>,
    impersonations_error: Option<String>,
    impersonations: Vec<ImpersonationRow>,
    audit_error: Option<String>,
    audit: Vec<AuditRow>,
    permission_resources: Vec<String>,
    explain_form: ExplainForm,
    explain: Option<ExplainView>,
    explain_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Seats {
    used: u64,
    total: Option<u64>,
}

#[derive(Debug, Serialize)]
struct PartnerRow {
    id: String,
    name: String,
    active: bool,
    full_seats: usize,
    primary: Option<String>,
    portal: Option<Button>,
    users: Vec<PartnerUserRow>,
}

#[derive(Debug, Serialize)]
struct PartnerUserRow {
    id: String,
    name: String,
    email: String,
    licence: &'static str,
    active: bool,
    login_as: Option<Button>,
    welcome: Button,
}

#[derive(Debug, Serialize)]
struct UserRow {
    id: String,
    name: String,
    email: String,
    roles: Vec<&'static str>,
    partner: Option<String>,
    /// For a paired user: the client account it lives in and its roles
    /// there, the roles the app receives (its gateway role is always
    /// `user`, which alone would say nothing of what it may do).
    paired: Option<PairedRow>,
    active: bool,
    can_impersonate: bool,
    grant: Option<Button>,
}

#[derive(Debug, Serialize)]
struct PairedRow {
    tenant: String,
    roles: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ImpersonationRow {
    session: String,
    impersonator: String,
    impersonator_id: String,
    user: String,
    user_id: String,
    since: Time,
    expires: Time,
    reason: Option<String>,
    end: Button,
}

#[derive(Debug, Serialize)]
struct AuditRow {
    time: Time,
    event: String,
    impersonator: String,
    user: Option<String>,
    request: String,
    status: Option<u16>,
    reason: Option<String>,
}

/// A moment as the page shows it (UTC) and as `<time datetime>` says it.
#[derive(Debug, Serialize)]
struct Time {
    text: String,
    iso: String,
}

impl Time {
    fn of(unix_secs: u64) -> Time {
        let t = i64::try_from(unix_secs)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok());
        match t {
            Some(t) => {
                let (date, hms) = (
                    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day()),
                    format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
                );
                Time {
                    text: format!("{date} {hms} UTC"),
                    iso: format!("{date}T{hms}Z"),
                }
            }
            None => Time {
                text: unix_secs.to_string(),
                iso: String::new(),
            },
        }
    }
}

fn licence_name(l: Licence) -> &'static str {
    match l {
        Licence::Full => "Full",
        Licence::Viewer => "Viewer",
        Licence::None => "none",
    }
}

// === impl Model ===

impl Model {
    fn build(f: &Facts<'_>) -> Model {
        let viewer = f.viewer;
        let may_impersonate = may_impersonate(f.settings, viewer);
        let impersonate = may_impersonate.is_ok();
        let login_as =
            |target: &User| impersonate.then(|| Button::of(may_target(f.settings, viewer, target)));
        let welcome = |target: &User| match (&f.welcome_unavailable, target.is_active()) {
            (Some(why), _) => Button {
                off: Some(why.clone()),
            },
            (None, false) => Button::of(Err(WelcomeError::Disabled(target.id.clone()))),
            (None, true) => Button::of(policy::may_change(viewer, target)),
        };
        let by_id = |id: &str| f.users.iter().find(|u| u.id == id);

        let partners = f
            .partners
            .iter()
            .map(|p| {
                let members: Vec<&Arc<User>> = f
                    .users
                    .iter()
                    .filter(|u| is_partner_user(u) && u.partner.as_deref() == Some(p.id.as_str()))
                    .collect();
                let primary = p.primary_user.as_deref().and_then(by_id);
                let portal = impersonate.then(|| match primary {
                    Some(u) => Button::of(may_target(f.settings, viewer, u)),
                    None => Button {
                        off: Some(format!(
                            "{} has no primary user to enter its portal as",
                            p.name
                        )),
                    },
                });
                PartnerRow {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    active: p.status == PartnerStatus::Active,
                    full_seats: members.iter().filter(|u| holds_full_seat(u)).count(),
                    primary: primary.map(|u| u.name.clone()),
                    portal,
                    users: members
                        .iter()
                        .map(|u| PartnerUserRow {
                            id: u.id.clone(),
                            name: u.name.clone(),
                            email: u.email.clone(),
                            licence: licence_name(u.licence),
                            active: u.is_active(),
                            login_as: login_as(u),
                            welcome: welcome(u),
                        })
                        .collect(),
                }
            })
            .collect();

        let may_grant = policy::may_grant_impersonation(viewer, f.admin_policy);
        let grant = may_grant.is_ok();
        let users = f
            .users
            .iter()
            .map(|u| UserRow {
                id: u.id.clone(),
                name: u.name.clone(),
                email: u.email.clone(),
                roles: u.role_names(),
                partner: u.partner.clone(),
                paired: u.paired.as_ref().map(|p| PairedRow {
                    tenant: p.tenant.clone(),
                    roles: p.roles.clone(),
                }),
                active: u.is_active(),
                can_impersonate: u.can_impersonate,
                grant: grant.then(|| Button::of(policy::may_change(viewer, u))),
            })
            .collect();

        let impersonations = f
            .in_progress
            .unwrap_or_default()
            .iter()
            .map(|i| ImpersonationRow {
                session: i.reference.clone(),
                impersonator: i.impersonator.name.clone(),
                impersonator_id: i.impersonator.id.clone(),
                user: i
                    .user
                    .as_ref()
                    .map_or_else(|| i.state.user.clone(), |u| u.name.clone()),
                user_id: i.state.user.clone(),
                since: Time::of(i.state.started),
                expires: Time::of(i.state.expires),
                reason: i.state.reason.clone(),
                // As the End endpoint decides: a super admin's
                // impersonation is ended by super admins only.
                end: Button::of(
                    if i.impersonator.has_role(Role::SuperAdmin)
                        && !viewer.has_role(Role::SuperAdmin)
                    {
                        Err("only a super admin may end a super admin's impersonation")
                    } else {
                        Ok(())
                    },
                ),
            })
            .collect();

        let audit = f
            .audit
            .map(|page| {
                page.entries
                    .iter()
                    .map(|(_, r)| AuditRow {
                        time: Time::of(r.time_ms / 1000),
                        event: serde_json::to_value(r.event)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default(),
                        impersonator: r.impersonator.clone(),
                        user: r.user.clone(),
                        request: format!("{} {}", r.method, r.path),
                        status: r.status,
                        reason: r.reason.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();

        let all: Vec<&User> = f.users.iter().map(|u| &**u).collect();
        let used_seats = seats(all.iter().copied(), f.full_seats).map_or_else(
            || Seats {
                used: all.iter().filter(|u| holds_full_seat(u)).count() as u64,
                total: None,
            },
            |s| Seats {
                used: s.used,
                total: Some(s.total),
            },
        );

        Model {
            viewer_name: viewer.name.clone(),
            viewer_roles: viewer.role_names(),
            csrf_token: f.csrf_token.to_string(),
            flash: f.flash.as_ref().map(|fl| fl.message(f.users)),
            impersonate,
            impersonate_unavailable: may_impersonate.err().map(|e| e.to_string()),
            reason_required: f.settings.require_reason,
            terms: f.settings.terms.clone().filter(|_| !f.terms_acknowledged),
            max_minutes: f.settings.max_duration.as_secs() / 60,
            seats: used_seats,
            partners,
            grant,
            grant_unavailable: may_grant.err().map(|e| e.to_string()),
            users,
            impersonations_error: f.in_progress.err().map(str::to_string),
            impersonations,
            audit_error: f.audit.err().map(str::to_string),
            audit,
            permission_resources: f.permission_resources.clone(),
            explain_form: f
                .explain
                .as_ref()
                .map(|(form, _)| form.clone())
                .unwrap_or_default(),
            explain: f
                .explain
                .as_ref()
                .and_then(|(_, a)| a.as_ref().ok())
                .map(ExplainView::of),
            explain_error: f
                .explain
                .as_ref()
                .and_then(|(_, a)| a.as_ref().err().cloned()),
        }
    }
}

fn render(model: &Model) -> String {
    PAGES
        .get_template("admin.html")
        .and_then(|t| t.render(model))
        .unwrap_or_else(|e| format!("the admin page failed to render: {e}"))
}

#[cfg(test)]
mod tests;
