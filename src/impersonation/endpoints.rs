//! The impersonation endpoints, and the ending of an impersonation on a
//! request (pipeline stage 4b).
//!
//! | | |
//! |---|---|
//! | `POST /_guise/impersonate` | start: `user` (or `partner`, for its primary user), `return_to`, `reason`, `accept_terms` |
//! | `POST /_guise/impersonate/stop` | back to the admin's own view, at the page they started from |
//! | `GET /_guise/admin/impersonations` | impersonations in progress |
//! | `POST /_guise/admin/impersonations/{session}/end` | end one (admins) |
//! | `GET /_guise/admin/audit` | the audit, filtered (`user`, `impersonator`, `since`, `until` in unix ms) and paged (`before`, `limit`) |
//!
//! Every state change must come from this site with the session's CSRF
//! token, and is audited; a refusal too.

use std::sync::Arc;

use http::header::SET_COOKIE;
use http::HeaderName;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use serde::Deserialize;
use serde_json::json;

use super::metrics::Metrics;
use super::{may_impersonate, may_return, may_target, Ending, ImpersonationError, State};
use crate::audit::{Audit, AuditEvent, AuditRecord};
use crate::body::{self, BodyError};
use crate::call::Call;
use crate::csrf::{self, CsrfError};
use crate::partners::Registry;
use crate::respond::{self, Format, Refuse};
use crate::session::{cookie, SessionError, SessionManager};
use crate::store::SessionKey;
use crate::subject::Subject;
use crate::users::{Directory, Role, User};

/// Where an admin goes back to when nothing better is known.
pub const ADMIN_PAGE: &str = crate::routes::ADMIN_PAGE;
/// The record kind under which terms acknowledgements are stored.
const TERMS_KIND: &str = "impersonation_terms";
/// Longest reason kept.
const MAX_REASON: usize = 500;

/// Why an endpoint refused.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Rule(#[from] ImpersonationError),
    #[error(transparent)]
    Csrf(#[from] CsrfError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error("the admin pages are for admins; {0} is not one")]
    NotAdmin(String),
    #[error("no impersonation in progress under session {0}")]
    NoSuchImpersonation(String),
    #[error("the session store is unavailable: {0}")]
    Store(String),
}

impl Refuse for EndpointError {
    fn status(&self) -> u16 {
        match self {
            EndpointError::Rule(e) => e.status(),
            EndpointError::Csrf(e) => e.status(),
            EndpointError::Body(e) => e.status(),
            EndpointError::Session(e) => e.status(),
            EndpointError::Audit(e) => e.status(),
            EndpointError::NotAdmin(_) => 403,
            EndpointError::NoSuchImpersonation(_) => 404,
            EndpointError::Store(_) => 503,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            EndpointError::Rule(e) => e.code(),
            EndpointError::Csrf(e) => e.code(),
            EndpointError::Body(e) => e.code(),
            EndpointError::Session(e) => e.code(),
            EndpointError::Audit(e) => e.code(),
            EndpointError::NotAdmin(_) => "forbidden",
            EndpointError::NoSuchImpersonation(_) => "not_found",
            EndpointError::Store(_) => "session_store_unavailable",
        }
    }
    fn title(&self) -> &'static str {
        match self {
            EndpointError::Rule(e) => e.title(),
            _ => "Impersonation refused",
        }
    }
}

/// An impersonation that ended on a request: the admin is told, and given
/// their own session back (or sent to sign in again).
#[derive(Debug)]
pub struct Ended {
    pub ending: Ending,
    pub user_name: String,
    pub return_to: String,
    /// The login page, when the admin does not come back on their own.
    pub login: Option<String>,
    pub cookie: (HeaderName, String),
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Your view as {} ended: {}.",
            self.user_name,
            self.ending.reason()
        )?;
        if self.login.is_none() {
            write!(f, " You are signed in as yourself again.")?;
        } else {
            write!(f, " Sign in again.")?;
        }
        Ok(())
    }
}

impl Refuse for Ended {
    fn status(&self) -> u16 {
        if self.login.is_some() {
            401
        } else {
            409
        }
    }
    fn code(&self) -> &'static str {
        match self.ending {
            Ending::Expired => "impersonation_expired",
            _ => "impersonation_ended",
        }
    }
    fn title(&self) -> &'static str {
        "Impersonation ended"
    }
    fn headers(&self) -> Vec<(HeaderName, String)> {
        vec![self.cookie.clone()]
    }
    fn redirect(&self) -> Option<String> {
        self.login.clone()
    }
    fn action(&self) -> Option<(String, String)> {
        Some((self.return_to.clone(), "Back to where you started".into()))
    }
}

/// What the start call is given, as a form or as JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartForm {
    user: Option<String>,
    partner: Option<String>,
    return_to: Option<String>,
    reason: Option<String>,
    #[serde(default)]
    accept_terms: bool,
    /// The CSRF token, when a form carries it.
    csrf_token: Option<String>,
}

impl StartForm {
    fn parse(req: &RequestHeader, body: &[u8]) -> Result<StartForm, EndpointError> {
        if body::is_json(req) {
            return Ok(body::parse_json(
                body,
                "an impersonation (user or partner, return_to, reason, accept_terms)",
            )?);
        }
        let field = |n| body::form_field(body, n).filter(|v| !v.is_empty());
        Ok(StartForm {
            user: field("user"),
            partner: field("partner"),
            return_to: field("return_to"),
            reason: field("reason"),
            accept_terms: field("accept_terms").is_some_and(|v| v != "0" && v != "false"),
            csrf_token: field(csrf::FIELD),
        })
    }
}

/// The parts of the gateway the endpoints use.
pub struct Impersonations<'a> {
    pub sessions: &'a SessionManager,
    pub directory: &'a Directory,
    pub partners: &'a Registry,
    pub audit: &'a Audit,
    pub metrics: &'a Metrics,
    /// The session cookie's name on this request's scheme.
    pub cookie_name: &'a str,
}

impl Impersonations<'_> {
    /// `POST /_guise/impersonate`.
    pub async fn start(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
        let replies = &call.live.replies;
        let html = Format::of(s.req_header()) == Format::Html && !body::is_json(s.req_header());
        match self.try_start(s, call).await {
            Ok((active_user, expires, cookies)) => {
                if html {
                    // The partner's view starts at the app's front page.
                    respond::redirect(s, replies, 303, "/", &cookies).await
                } else {
                    let body = json!({
                        "user": active_user.public_json(),
                        "expires_at": expires,
                    });
                    respond::json(s, replies, 200, &body, &cookies).await
                }
            }
            Err(e) => {
                self.refused(call, s.req_header(), &e);
                respond::refuse(s, replies, &e).await
            }
        }
    }

    async fn try_start(
        &self,
        s: &mut Session,
        call: Call<'_>,
    ) -> Result<(Arc<User>, u64, Vec<(HeaderName, String)>), EndpointError> {
        let subject = call.subject.ok_or(ImpersonationError::NotSignedIn)?;
        let method = s.req_header().method.to_string();
        let path = s.req_header().uri.path().to_string();
        csrf::same_origin(s.req_header(), call.peer.https)?;
        let raw = body::read(s).await?;
        let form = StartForm::parse(s.req_header(), &raw)?;
        let given = csrf::header_token(s.req_header()).map(str::to_string);
        let given = given.or(form.csrf_token.clone());
        csrf::check_token(&subject.session.record.csrf_token, given.as_deref())?;

        let settings = &call.live.config.impersonation;
        if subject.is_impersonating() || State::of(&subject.session.record).is_some() {
            return Err(ImpersonationError::AlreadyImpersonating.into());
        }
        let actor = &subject.actor;
        may_impersonate(settings, actor)?;
        let target_id = match (&form.user, &form.partner) {
            (Some(u), _) => u.clone(),
            (None, Some(p)) => {
                let snap = self.partners.snapshot();
                let partner = snap
                    .partner(p)
                    .ok_or_else(|| ImpersonationError::NoPartner(p.clone()))?;
                partner
                    .primary_user
                    .clone()
                    .ok_or_else(|| ImpersonationError::NoPrimaryUser(p.clone()))?
            }
            (None, None) => {
                return Err(ImpersonationError::Invalid(
                    "name the user to view the app as (`user`), or a partner (`partner`)".into(),
                )
                .into())
            }
        };
        let target = self
            .directory
            .get(&target_id)
            .ok_or_else(|| ImpersonationError::NoUser(target_id.clone()))?;
        may_target(settings, actor, &target)?;
        if let Some(terms) = &settings.terms {
            self.check_terms(actor, terms, form.accept_terms).await?;
        }
        let reason = form
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| r.chars().take(MAX_REASON).collect::<String>());
        if settings.require_reason && reason.is_none() {
            return Err(ImpersonationError::ReasonRequired.into());
        }
        let return_to = return_path(form.return_to.as_deref(), s.req_header());

        // Nothing of the impersonation may go unrecorded: a full audit
        // buffer refuses before any session changes.
        if !self.audit.accepting() {
            return Err(
                crate::audit::AuditError::Unavailable("the audit buffer is full".into()).into(),
            );
        }
        let now = self.sessions.clock().unix_now();
        let state = State {
            user: target.id.clone(),
            started: now,
            expires: now + settings.max_duration.as_secs(),
            return_to,
            reason: reason.clone(),
        };
        let ip = call.peer.ip.map(|ip| ip.to_string());
        let (token, active) = self.sessions.create(&actor.id, ip, state.fields()).await?;
        // Every other session of the admin ends now, on every node: other
        // tabs of this browser (told through their event stream), other
        // browsers and devices.
        let why = format!(
            "{} started viewing the app as {} in another tab",
            actor.name, target.name
        );
        let mut revoked = 0;
        for (key, _) in self.sessions.list(&actor.id).await? {
            if key != active.key
                && self
                    .sessions
                    .revoke_because(&key, Some(&why))
                    .await?
                    .is_some()
            {
                revoked += 1;
            }
        }
        self.write(AuditRecord {
            time_ms: crate::audit::unix_ms(),
            event: AuditEvent::Start,
            impersonator: actor.id.clone(),
            user: Some(target.id.clone()),
            method: method.clone(),
            path: path.clone(),
            status: None,
            reason,
            session: Some(active.record.reference.clone()),
        });
        self.metrics.events.with_label_values(&["start"]).inc();
        tracing::info!(impersonator = %actor.id, user = %target.id, session = %active.record.reference, other_sessions_revoked = revoked, "impersonation started");
        // The cookie outlives the impersonation, so that the request after
        // its end still reaches the gateway as this session and is told,
        // and the admin gets their own session back.
        let https = call.peer.https;
        let lifetime = self.sessions.settings().absolute_lifetime;
        let cookie = (
            SET_COOKIE,
            cookie::set(self.cookie_name, &token, https, lifetime),
        );
        Ok((target, state.expires, vec![cookie]))
    }

    /// Whether `actor` has acknowledged this text of the terms. The admin
    /// page asks, so that it shows the "I accept" box only to those who
    /// still have to tick it.
    pub async fn terms_acknowledged(
        &self,
        actor: &User,
        terms: &str,
    ) -> Result<bool, EndpointError> {
        let digest = terms_digest(terms);
        let records = self
            .sessions
            .store()
            .load_records(TERMS_KIND)
            .await
            .map_err(|e| EndpointError::Store(e.to_string()))?;
        Ok(records.iter().any(|(id, json)| {
            id == &actor.id
                && serde_json::from_str::<serde_json::Value>(json)
                    .is_ok_and(|v| v["terms"] == digest.as_str())
        }))
    }

    /// Terms are acknowledged once per text: changed terms are asked for
    /// again.
    async fn check_terms(
        &self,
        actor: &User,
        terms: &str,
        accept: bool,
    ) -> Result<(), EndpointError> {
        if self.terms_acknowledged(actor, terms).await? {
            return Ok(());
        }
        if !accept {
            return Err(ImpersonationError::TermsNotAcknowledged(terms.to_string()).into());
        }
        let digest = terms_digest(terms);
        let store = self.sessions.store();
        let now = self.sessions.clock().unix_now();
        let record = json!({ "terms": digest, "acknowledged_at": now }).to_string();
        store
            .save_record(TERMS_KIND, &actor.id, &record)
            .await
            .map_err(|e| EndpointError::Store(e.to_string()))?;
        tracing::info!(user = %actor.id, "impersonation terms acknowledged");
        Ok(())
    }

    /// `POST /_guise/impersonate/stop`: the banner's "Return to admin".
    pub async fn stop(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
        let replies = &call.live.replies;
        let html = Format::of(s.req_header()) == Format::Html && !body::is_json(s.req_header());
        match self.try_stop(s, call).await {
            Ok((to, restored, cookies)) => {
                if html {
                    respond::redirect(s, replies, 303, &to, &cookies).await
                } else {
                    let body = json!({ "restored": restored, "location": to });
                    respond::json(s, replies, 200, &body, &cookies).await
                }
            }
            Err(e) => {
                self.refused(call, s.req_header(), &e);
                respond::refuse(s, replies, &e).await
            }
        }
    }

    async fn try_stop(
        &self,
        s: &mut Session,
        call: Call<'_>,
    ) -> Result<(String, bool, Vec<(HeaderName, String)>), EndpointError> {
        let subject = call.subject.ok_or(ImpersonationError::NotSignedIn)?;
        csrf::same_origin(s.req_header(), call.peer.https)?;
        let given = csrf::given_token(s).await?;
        csrf::check_token(&subject.session.record.csrf_token, given.as_deref())?;
        let state =
            State::of(&subject.session.record).ok_or(ImpersonationError::NotImpersonating)?;
        let (restored, cookie) = self
            .finish(
                call,
                s.req_header(),
                subject,
                &state,
                AuditEvent::Stop,
                None,
            )
            .await?;
        let to = match restored {
            true => state.return_to.clone(),
            false => login_redirect(call, &state.return_to),
        };
        Ok((to, restored, vec![cookie]))
    }

    /// End the impersonation of `subject`'s session: its tabs are told, and
    /// the admin gets a session of their own back if they still may.
    /// Whether they did, and the cookie that says so.
    async fn finish(
        &self,
        call: Call<'_>,
        req: &RequestHeader,
        subject: &Subject,
        state: &State,
        event: AuditEvent,
        ending: Option<Ending>,
    ) -> Result<(bool, (HeaderName, String)), EndpointError> {
        let actor = &subject.actor;
        let method = req.method.to_string();
        let path = req.uri.path().to_string();
        let why = match ending {
            Some(e) => format!(
                "the view as {} ended: {}",
                subject.effective.name,
                e.reason()
            ),
            None => format!("{} returned to their own view", actor.name),
        };
        self.sessions
            .revoke_because(&subject.session.key, Some(&why))
            .await?;
        let restore = may_return(actor) && ending.is_none_or(Ending::restores_actor);
        let https = call.peer.https;
        let cookie = if restore {
            let ip = call.peer.ip.map(|ip| ip.to_string());
            let (token, _) = self
                .sessions
                .create(&actor.id, ip, Default::default())
                .await?;
            let lifetime = self.sessions.settings().absolute_lifetime;
            (
                SET_COOKIE,
                cookie::set(self.cookie_name, &token, https, lifetime),
            )
        } else {
            (SET_COOKIE, cookie::clear(self.cookie_name, https))
        };
        self.write(AuditRecord {
            time_ms: crate::audit::unix_ms(),
            event,
            impersonator: actor.id.clone(),
            user: Some(state.user.clone()),
            method: method.clone(),
            path: path.clone(),
            status: None,
            reason: Some(why),
            session: Some(subject.session.record.reference.clone()),
        });
        let label = match event {
            AuditEvent::Expiry => "expiry",
            AuditEvent::End => "end",
            _ => "stop",
        };
        self.metrics.events.with_label_values(&[label]).inc();
        tracing::info!(impersonator = %actor.id, user = %state.user, event = label, restored = restore, "impersonation ended");
        Ok((restore, cookie))
    }

    /// Pipeline stage 4b: the impersonation of `subject` ended by itself
    /// (`ending`). The request is not served: neither as the partner user
    /// (the impersonation is over) nor silently as the admin (it was meant
    /// for the partner's view).
    pub async fn end_on_request(
        &self,
        call: Call<'_>,
        req: &RequestHeader,
        subject: &Subject,
        ending: Ending,
    ) -> Result<Ended, EndpointError> {
        let state =
            State::of(&subject.session.record).ok_or(ImpersonationError::NotImpersonating)?;
        let event = match ending {
            Ending::Expired => AuditEvent::Expiry,
            _ => AuditEvent::End,
        };
        let (restored, cookie) = self
            .finish(call, req, subject, &state, event, Some(ending))
            .await?;
        Ok(Ended {
            ending,
            user_name: subject.effective.name.clone(),
            return_to: state.return_to.clone(),
            login: (!restored).then(|| login_redirect(call, &state.return_to)),
            cookie,
        })
    }

    /// `GET /_guise/admin/impersonations`: every impersonation in progress.
    pub async fn list(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
        let replies = &call.live.replies;
        let result = async {
            admin_only(call)?;
            self.in_progress().await
        }
        .await;
        match result {
            Ok(list) => {
                let items: Vec<_> = list.iter().map(InProgress::json).collect();
                respond::json(s, replies, 200, &json!({ "impersonations": items }), &[]).await
            }
            Err(e) => respond::refuse(s, replies, &e).await,
        }
    }

    /// Impersonations in progress (see [`in_progress`]).
    pub async fn in_progress(&self) -> Result<Vec<InProgress>, EndpointError> {
        Ok(in_progress(self.sessions, self.directory).await?)
    }

    /// `GET /_guise/admin/audit?user=&impersonator=&since=&until=&before=&limit=`:
    /// the audit, newest first, a page at a time.
    pub async fn audit(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
        let replies = &call.live.replies;
        let query = s.req_header().uri.query().unwrap_or("").to_string();
        let result = async {
            admin_only(call)?;
            let q = crate::audit::AuditQuery::parse(&query)?;
            Ok::<_, EndpointError>(self.audit.read(&q).await?)
        }
        .await;
        match result {
            Ok(page) => respond::json(s, replies, 200, &page.to_json(), &[]).await,
            Err(e) => respond::refuse(s, replies, &e).await,
        }
    }

    /// `POST /_guise/admin/impersonations/{session}/end`.
    pub async fn end(
        &self,
        s: &mut Session,
        call: Call<'_>,
        reference: &str,
    ) -> pingora::Result<()> {
        let replies = &call.live.replies;
        let html = Format::of(s.req_header()) == Format::Html && !body::is_json(s.req_header());
        match self.try_end(s, call, reference).await {
            Ok(()) if html => {
                // The admin page's End button: back to it, saying so.
                let to = format!("{ADMIN_PAGE}?done=ended#impersonations");
                respond::redirect(s, replies, 303, &to, &[]).await
            }
            Ok(()) => respond::json(s, replies, 200, &json!({ "ended": reference }), &[]).await,
            Err(e) => respond::refuse(s, replies, &e).await,
        }
    }

    async fn try_end(
        &self,
        s: &mut Session,
        call: Call<'_>,
        reference: &str,
    ) -> Result<(), EndpointError> {
        let subject = admin_only(call)?;
        let method = s.req_header().method.to_string();
        let path = s.req_header().uri.path().to_string();
        csrf::same_origin(s.req_header(), call.peer.https)?;
        let given = csrf::given_token(s).await?;
        csrf::check_token(&subject.session.record.csrf_token, given.as_deref())?;
        let found = self
            .in_progress()
            .await?
            .into_iter()
            .find(|i| i.reference == reference)
            .ok_or_else(|| EndpointError::NoSuchImpersonation(reference.to_string()))?;
        if found.impersonator.has_role(Role::SuperAdmin)
            && !subject.actor.has_role(Role::SuperAdmin)
        {
            return Err(EndpointError::NotAdmin(subject.actor.id.clone()));
        }
        let why = format!("{} ended this impersonation", subject.actor.name);
        self.sessions.revoke_because(&found.key, Some(&why)).await?;
        self.write(AuditRecord {
            time_ms: crate::audit::unix_ms(),
            event: AuditEvent::End,
            impersonator: found.impersonator.id.clone(),
            user: Some(found.state.user.clone()),
            method: method.clone(),
            path: path.clone(),
            status: None,
            reason: Some(why),
            session: Some(found.reference.clone()),
        });
        self.metrics.events.with_label_values(&["end"]).inc();
        Ok(())
    }

    /// Record a refusal of an impersonation call.
    fn refused(&self, call: Call<'_>, req: &RequestHeader, e: &EndpointError) {
        self.metrics.refusals.with_label_values(&[e.code()]).inc();
        let Some(subject) = call.subject else {
            return;
        };
        self.write(AuditRecord {
            time_ms: crate::audit::unix_ms(),
            event: AuditEvent::Refusal,
            impersonator: subject.actor.id.clone(),
            user: None,
            method: req.method.to_string(),
            path: req.uri.path().to_string(),
            status: Some(e.status()),
            reason: Some(e.to_string()),
            session: Some(subject.session.record.reference.clone()),
        });
    }

    /// Append to the audit. A full buffer was checked for before the
    /// state change; a record refused now is logged loudly, since the
    /// change it records has happened.
    fn write(&self, rec: AuditRecord) {
        if let Err(e) = self.audit.record(rec.clone()) {
            tracing::error!(error = %e, event = ?rec.event, impersonator = %rec.impersonator, "audit record refused");
        }
    }
}

/// An impersonation in progress.
pub struct InProgress {
    pub key: SessionKey,
    pub reference: String,
    pub impersonator: Arc<User>,
    pub user: Option<Arc<User>>,
    pub state: State,
}

impl InProgress {
    fn json(&self) -> serde_json::Value {
        json!({
            "session": self.reference,
            "impersonator": self.impersonator.public_json(),
            "user": self.user.as_ref().map(|u| u.public_json()),
            "user_id": self.state.user,
            "started_at": self.state.started,
            "expires_at": self.state.expires,
            "return_to": self.state.return_to,
            "reason": self.state.reason,
        })
    }
}

/// Impersonations in progress, newest first: the sessions that carry one,
/// of every user who may impersonate. Few users hold the right, so the
/// store is asked about each of them rather than keeping an index.
pub async fn in_progress(
    sessions: &SessionManager,
    directory: &Directory,
) -> Result<Vec<InProgress>, SessionError> {
    let mut out = Vec::new();
    for actor in directory.all().into_iter().filter(|u| u.can_impersonate) {
        for (key, rec) in sessions.list(&actor.id).await? {
            if let Some(state) = State::of(&rec) {
                out.push(InProgress {
                    key,
                    reference: rec.reference.clone(),
                    impersonator: actor.clone(),
                    user: directory.get(&state.user),
                    state,
                });
            }
        }
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.state.started));
    Ok(out)
}

/// What an acknowledgement records of the terms: their hash, so changed
/// terms are asked for again.
fn terms_digest(terms: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(terms.as_bytes()))
}

/// The caller, if an admin.
fn admin_only(call: Call<'_>) -> Result<&Subject, EndpointError> {
    let subject = call.subject.ok_or(ImpersonationError::NotSignedIn)?;
    let a = &subject.actor;
    if subject.is_impersonating() || !(a.has_role(Role::Admin) || a.has_role(Role::SuperAdmin)) {
        return Err(EndpointError::NotAdmin(a.id.clone()));
    }
    Ok(subject)
}

/// The login page, coming back to `next` after.
fn login_redirect(call: Call<'_>, next: &str) -> String {
    let next: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    format!("{}?next={next}", call.live.config.auth.login_path)
}

/// Where the admin goes back to: the `return_to` they gave, else the page
/// the request came from (its `Referer`, when on this site), else the
/// admin page. Only same-origin paths: the app's pages, or the admin page.
pub fn return_path(given: Option<&str>, req: &RequestHeader) -> String {
    let acceptable = |p: &str| {
        crate::auth::redirect::safe_next(p).is_some()
            || p == ADMIN_PAGE
            || p.strip_prefix(ADMIN_PAGE)
                .is_some_and(|rest| rest.starts_with('?') || rest.starts_with('#'))
                && !p.bytes().any(|b| b.is_ascii_control() || b == b'\\')
    };
    if let Some(p) = given.filter(|p| acceptable(p)) {
        return p.to_string();
    }
    let referer = req
        .headers
        .get(http::header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok());
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok());
    if let (Some(r), Some(host)) = (referer, host) {
        let authority = match r.port() {
            Some(p) => format!("{}:{p}", r.host_str().unwrap_or("")),
            None => r.host_str().unwrap_or("").to_string(),
        };
        if authority.eq_ignore_ascii_case(host) {
            let path = match r.query() {
                Some(q) => format!("{}?{q}", r.path()),
                None => r.path().to_string(),
            };
            if acceptable(&path) {
                return path;
            }
        }
    }
    ADMIN_PAGE.to_string()
}
