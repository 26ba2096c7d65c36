//! The pingora `ProxyHttp` implementation: wiring only.
//!
//! [`GatewayProxy::request_filter`] is the request's way through the
//! gateway, one stage per line, each a call into the module that owns it;
//! what later stages and hooks need is kept in [`Ctx`]. No policy lives
//! here: a stage decides, and its refusal is answered by
//! [`crate::respond::refuse`].

mod connections;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::ErrorType;

use crate::auth::app_session::{self, Plan};
use crate::auth::policy;
use crate::body;
use crate::call::Call;
use crate::clock::Clock;
use crate::drain::{Drain, InFlight};
use crate::forwarded;
use crate::gateway::{Endpoints, Flow};
use crate::identity;
use crate::impersonation::{self, privacy};
use crate::live::{Live, SharedLive};
use crate::metrics::Metrics;
use crate::partners::answer::{self, AnswerFilter};
use crate::partners::{self, Access};
use crate::peer::Peer;
use crate::permissions;
use crate::respond::{self, Refuse};
use crate::routes::{Class, RouteSpec};
use crate::subject::Subject;
use crate::tab;
use crate::target::{self, Target};

pub use connections::{ConnectionLimits, GuardConnections};

/// The gateway's data plane.
pub struct GatewayProxy {
    pub live: SharedLive,
    pub metrics: Metrics,
    pub endpoints: Arc<Endpoints>,
    pub clock: Arc<dyn Clock>,
    /// Counts requests in flight for the drain at shutdown.
    pub drain: Arc<Drain>,
}

/// Per-request state.
pub struct Ctx {
    started: Instant,
    /// The configuration this request runs under, start to end.
    live: Arc<Live>,
    /// The client's connection.
    peer: Peer,
    /// What the request is (stage 3).
    class: Class,
    /// Metrics label while no route is known.
    label: &'static str,
    /// Who the request runs as (stage 4).
    subject: Option<Subject>,
    /// Keeping the app's session in step with guise's (stage 4).
    app: Plan,
    /// What the partner rules let the answer show (stage 7).
    access: Access,
    /// A GET or HEAD: its answer shows records to filter (a write's answer
    /// is the record written, which stage 7 already checked).
    reading: bool,
    /// The filter the answer's body runs through, picked at its header.
    /// (Boxed, as `private` and `tab`: most requests have none, and the
    /// context is moved with the request's future, so its size is copied
    /// on every request.)
    answer: Option<Box<AnswerFilter>>,
    /// What the privacy rules do to an impersonator's request (stage 7b).
    privacy: privacy::Rules,
    /// The privacy filter the answer's body runs through after the
    /// partner filter.
    private: Option<Box<privacy::PrivacyFilter>>,
    /// Whom the data-permission rules filter this request's answer for
    /// (stage 8); `None` when they restrict nothing here.
    viewer: Option<permissions::Viewer>,
    /// The data-permission filter the answer's body runs through last.
    permitted: Option<Box<permissions::answer::PermissionFilter>>,
    /// Injects the tab script (and the impersonation banner) into a page.
    tab: Option<Box<tab::Injector>>,
    /// Why the answer could not be filtered, for `fail_to_proxy` to say.
    answer_failed: Option<Box<dyn Refuse>>,
    upstream_sent: Option<Instant>,
    /// Counted in flight until the request is done.
    _in_flight: InFlight,
}

impl Ctx {
    fn route(&self) -> Option<&RouteSpec> {
        match self.class {
            Class::Route(i) => self.live.routes.routes().get(i),
            _ => None,
        }
    }

    /// The route's answer filters, when the partner rules apply to this
    /// request and the route has any.
    fn answer_filters(&self) -> Option<&crate::routes::AnswerFilters> {
        match (&self.access, self.class) {
            (Access::Partner(_), Class::Route(i)) if self.reading => {
                self.live.routes.answer(i).filter(|f| !f.is_empty())
            }
            _ => None,
        }
    }

    fn route_label(&self) -> &str {
        match self.route() {
            Some(r) => &r.name,
            None => self.label,
        }
    }
}

/// The tab script for `subject`'s pages, with the banner while
/// impersonating.
fn tab_snippet(endpoints: &Endpoints, subject: &Subject) -> String {
    let record = &subject.session.record;
    let effective = &subject.effective;
    let partner_name = effective.partner.as_deref().map(|p| {
        endpoints
            .partners
            .snapshot()
            .partner(p)
            .map_or_else(|| p.to_string(), |p| p.name.clone())
    });
    let banner = subject.is_impersonating().then(|| tab::Banner {
        user_name: &effective.name,
        partner_name,
        stop_path: "/_guise/impersonate/stop",
    });
    tab::snippet(&tab::TabView {
        session_ref: &record.reference,
        csrf_token: &record.csrf_token,
        user_name: &effective.name,
        banner,
    })
}

/// An internal failure while building the upstream request.
#[derive(Debug, thiserror::Error)]
#[error("the gateway failed while handling this request; the error is in its log")]
struct Internal;

impl Refuse for Internal {
    fn status(&self) -> u16 {
        500
    }
    fn code(&self) -> &'static str {
        "internal_error"
    }
}

impl GatewayProxy {
    /// Answer a refusal from one of the stages.
    async fn refuse(&self, s: &mut Session, ctx: &mut Ctx, e: &dyn Refuse) -> Result<bool> {
        self.metrics
            .requests_refused
            .with_label_values(&[e.code()])
            .inc();
        respond::refuse_with(s, &ctx.live.replies, e, &ctx.app.set_cookies).await?;
        Ok(true)
    }

    /// Pick the partner and privacy filters of an answer from its header
    /// (which they may rewrite into a refusal). Runs in
    /// `upstream_response_filter`: pingora chooses the body's framing
    /// after that hook and before `response_filter`, so a length removed
    /// any later leaves the answer close-delimited and the client's
    /// connection unusable for its next request.
    fn start_answer_filters(
        &self,
        session: &Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(filters), Access::Partner(keep)) = (ctx.answer_filters(), &ctx.access) {
            let limit = crate::filter::Limit(ctx.live.config.partners.answer_max_bytes);
            let format = respond::Format::of(session.req_header());
            let resource = ctx.route().and_then(|r| r.resource.clone());
            ctx.answer = answer::start(
                filters,
                keep,
                upstream_response,
                limit,
                format,
                resource.as_deref(),
            )?
            .map(Box::new);
            if let Some(AnswerFilter::Refused { code, .. }) = ctx.answer.as_deref() {
                self.metrics
                    .requests_refused
                    .with_label_values(&[code])
                    .inc();
            }
        }
        if let (false, Some(route)) = (ctx.privacy.is_empty(), ctx.route()) {
            let limit = crate::filter::Limit(ctx.live.config.partners.answer_max_bytes);
            let format = respond::Format::of(session.req_header());
            let privacy = &ctx.live.config.impersonation.privacy;
            ctx.private = privacy::start(
                &ctx.privacy,
                privacy,
                route,
                upstream_response,
                limit,
                format,
            )?
            .map(Box::new);
            if ctx.private.as_ref().is_some_and(|p| p.refused()) {
                self.metrics
                    .requests_refused
                    .with_label_values(&["hidden_while_impersonating"])
                    .inc();
            }
        }
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            live: self.live.load_full(),
            peer: Peer {
                https: false,
                ip: None,
            },
            class: Class::Unmatched,
            label: "unmatched",
            subject: None,
            app: Plan::default(),
            access: Access::Unrestricted,
            reading: false,
            answer: None,
            privacy: privacy::Rules::default(),
            private: None,
            viewer: None,
            permitted: None,
            tab: None,
            answer_failed: None,
            upstream_sent: None,
            _in_flight: self.drain.start_request(),
        }
    }

    /// No downstream modules: pingora's default adds a (disabled)
    /// compression module that would run on every request.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let live = ctx.live.clone();
        // HTTP/1.1 pipelining: requests a client sends ahead are answered in
        // order on the same connection (pingora serves them one after the
        // other) instead of being dropped with the connection.
        session.set_pipelining_enabled(true);
        ctx.peer = Peer::of(session, &live.config.server.trusted_proxies);

        // 1. No client may speak for the gateway.
        identity::strip_client_headers(session.req_header_mut(), live.signer.prefix());

        // 2. The target is a path the upstream reads as the gateway does.
        let target = target::check(session.req_header_mut(), &live.config.http.allowed_hosts);
        let target = match target {
            Ok(t) => t,
            Err(e) => {
                ctx.label = "rejected";
                return self.refuse(session, ctx, &e).await;
            }
        };

        // 3. What the request is, decided once.
        let req = session.req_header();
        ctx.class = match target {
            Target::Asterisk => Class::Server,
            Target::Path => live.routes.classify(
                req.method.as_str(),
                req.uri.path(),
                &live.config.auth.login_path,
            ),
        };
        if matches!(ctx.class, Class::Gateway | Class::Login | Class::Server) {
            // The event stream lasts as long as its tab: its own label keeps
            // it out of the gateway endpoints' durations.
            ctx.label = if req.uri.path() == "/_guise/events" {
                "gateway_events"
            } else {
                "gateway"
            };
        }

        // 4. Who is asking.
        let auth = &live.config.auth;
        match self.endpoints.auth.identify(req, &ctx.peer).await {
            Ok(subject) => ctx.subject = subject,
            Err(e) if policy::needs_subject(auth, ctx.class, ctx.route(), &req.method) => {
                return self.refuse(session, ctx, &e).await;
            }
            // Nobody can be recognised, but this request needs nobody.
            Err(e) => {
                tracing::debug!(error = %e, "serving anonymously while the session store is unavailable")
            }
        }
        // 4b. An impersonation goes on only while its rules hold; one that
        // ended is answered here, never served as either user. Nothing an
        // impersonator does goes unaudited: a full audit buffer refuses.
        let settings = &live.config.impersonation;
        let now = self.clock.unix_now();
        let ending = ctx
            .subject
            .as_ref()
            .and_then(|s| impersonation::check(settings, s, now)?.err());
        if let Some((ending, subject)) = ending.zip(ctx.subject.clone()) {
            let call = Call {
                live: &live,
                peer: ctx.peer,
                subject: Some(&subject),
            };
            // Rare, and its future is large: boxed, as stage 5's.
            let ended = Box::pin(
                self.endpoints
                    .impersonations(call.peer.https)
                    .end_on_request(call, session.req_header(), &subject, ending),
            )
            .await;
            return match ended {
                Ok(e) => self.refuse(session, ctx, &e).await,
                Err(e) => self.refuse(session, ctx, &e).await,
            };
        }
        let proxied = matches!(ctx.class, Class::Route(_) | Class::Unmatched);
        let impersonating = ctx.subject.as_ref().is_some_and(|s| s.is_impersonating());
        if proxied && impersonating && !self.endpoints.audit.accepting() {
            return self
                .refuse(
                    session,
                    ctx,
                    &crate::audit::AuditError::Unavailable(
                        "the impersonation audit cannot be written".into(),
                    ),
                )
                .await;
        }
        let req = session.req_header();
        let cookie_name = self.endpoints.auth.cookie_name(ctx.peer.https);
        ctx.app = app_session::plan(
            auth,
            ctx.class,
            req.uri.path(),
            req,
            cookie_name,
            ctx.subject.as_ref(),
            ctx.peer.https,
        );

        // 5. The gateway's own endpoints. Rare next to proxied requests, and
        // their futures are large (the upstream login holds a whole client
        // connection): boxed, they cost an allocation when used instead of
        // a bigger future copied on every request.
        if !matches!(ctx.class, Class::Route(_) | Class::Unmatched) {
            let call = Call {
                live: &live,
                peer: ctx.peer,
                subject: ctx.subject.as_ref(),
            };
            let flow = Box::pin(self.endpoints.answer(session, call, ctx.class)).await?;
            if flow == Flow::Answered {
                return Ok(true);
            }
        }

        // 6. A page that needs a session gets one, or the login page.
        let target = session
            .req_header()
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str());
        let required =
            policy::require_login(auth, ctx.class, ctx.route(), ctx.subject.as_ref(), target);
        if let Err(e) = required {
            return self.refuse(session, ctx, &e).await;
        }

        // 7. Partner users: their licence, bundle and assigned records.
        let step = partners::check(
            &self.endpoints.partners,
            &live.config.partners,
            &live.routes,
            ctx.class,
            ctx.subject.as_ref(),
            &session.req_header().uri,
        );
        let decided = match step {
            Ok(partners::Step::Done(access)) => Ok(access),
            // A record reached by its own id (rare, cached after the
            // first): boxed, as stage 5's.
            Ok(partners::Step::Parents(pending)) => {
                let now = self.clock.unix_now();
                Box::pin(pending.finish(&self.endpoints.partners, &live, now)).await
            }
            Err(e) => Err(e),
        };
        match decided {
            Ok(access) => {
                ctx.access = access;
                let method = &session.req_header().method;
                ctx.reading = method == http::Method::GET || method == http::Method::HEAD;
            }
            Err(e) => {
                self.metrics
                    .partner_refusals
                    .with_label_values(&[e.code()])
                    .inc();
                return self.refuse(session, ctx, &e).await;
            }
        }

        // 7a. A partner user's write names only its partner's records in
        // its body as well. The body is read whole (bounded) and kept, so
        // pingora sends the upstream what was read; rare next to reads,
        // and its future is large: boxed, as stage 5's.
        let check = partners::body_check(&ctx.access, &live.routes, ctx.class, ctx.reading);
        if let Some(check) = check {
            let media = body::media(session.req_header());
            session.enable_retry_buffering();
            let read = Box::pin(body::read(session)).await;
            let decided = read
                .map_err(partners::PartnerError::Body)
                .and_then(|b| check.decide(media, &b));
            if let Err(e) = decided {
                self.metrics
                    .partner_refusals
                    .with_label_values(&[e.code()])
                    .inc();
                return self.refuse(session, ctx, &e).await;
            }
        }

        // 7b. Impersonators: contacts and leads hidden, exports blocked.
        let privacy_settings = &live.config.impersonation.privacy;
        match privacy::decide(privacy_settings, ctx.subject.as_ref(), ctx.route()) {
            Ok(rules) => ctx.privacy = rules,
            Err(e) => return self.refuse(session, ctx, &e).await,
        }

        // 8. Data permissions: a record the request names is decided now,
        // lists and pages are filtered on the way back. Skipped whole
        // while the policy restricts nothing.
        if proxied && !self.endpoints.permissions.is_open() {
            let route = match ctx.class {
                Class::Route(i) => Some(i),
                _ => None,
            };
            let step = permissions::request::check(
                &self.endpoints.permissions,
                &live,
                route,
                ctx.subject.as_ref(),
                session.req_header(),
            );
            let decided = match step {
                Ok(permissions::request::Step::Done(access)) => Ok(access),
                // Lookups are rare (cached after the first) and their
                // future is large: boxed, as stage 5's.
                Ok(permissions::request::Step::Lookups(pending)) => {
                    let now = self.clock.unix_now();
                    Box::pin(permissions::request::finish(pending, &live, now)).await
                }
                Err(e) => Err(e),
            };
            match decided {
                Ok(permissions::Access::Open) => {}
                Ok(permissions::Access::Restricted(viewer)) => ctx.viewer = Some(viewer),
                Err(e) => return self.refuse(session, ctx, &e).await,
            }
        }
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        Ok(Box::new(ctx.live.peer.clone()))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let host = session.req_header().headers.get(http::header::HOST);
        forwarded::set_headers(upstream_request, ctx.peer.ip, ctx.peer.https, host)?;
        forwarded::strip_gateway_cookies(upstream_request, self.endpoints.auth.own_cookies());
        if ctx.app.strip_app_cookies {
            if let crate::config::LoginMode::Upstream(cfg) = &ctx.live.config.auth.mode {
                forwarded::strip_gateway_cookies(upstream_request, &cfg.app_session_cookies);
            }
        }
        // An answer the partner rules filter must come plain and whole: a
        // byte range could start inside a record the filter would remove.
        let permission_filtered = ctx.viewer.is_some() && ctx.reading;
        if ctx.answer_filters().is_some() || ctx.privacy.hide_list || permission_filtered {
            upstream_request.remove_header(&http::header::ACCEPT_ENCODING);
            upstream_request.remove_header(&http::header::RANGE);
            upstream_request.remove_header(&http::header::IF_RANGE);
        }
        // A page a signed-in user navigates to gets the tab script.
        if ctx.subject.is_some() && tab::is_navigation(session.req_header()) {
            tab::prepare_request(upstream_request);
        }
        if let Some(subject) = &ctx.subject {
            let signed =
                subject.sign_onto(upstream_request, &ctx.live.signer, self.clock.unix_now());
            if let Err(e) = signed {
                // Never forward a request whose identity cannot be stated
                // exactly: the upstream would see it as anonymous. The
                // target check makes every path signable, so this is a
                // value in the user's record.
                tracing::error!(user = %subject.effective.id, error = %e, "identity headers refused");
                return Err(Error::explain(
                    InternalError,
                    "identity headers could not be built",
                ));
            }
        }
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            self.metrics
                .upstream_response_duration
                .observe(sent.elapsed().as_secs_f64());
        }
        self.start_answer_filters(session, upstream_response, ctx)?;
        // A refusal written in place of the app's answer gets no snippet.
        let mut replaced = matches!(ctx.answer.as_deref(), Some(AnswerFilter::Refused { .. }))
            || ctx.private.as_ref().is_some_and(|p| p.refused());
        // The data-permission rules filter lists and pages, after the
        // partner and privacy filters (an answer they replaced is theirs).
        if let (Some(viewer), true, false) = (&ctx.viewer, ctx.reading, replaced) {
            let route = match ctx.class {
                Class::Route(i) => ctx
                    .live
                    .routes
                    .routes()
                    .get(i)
                    .map(|r| (i, r.resource.as_deref(), &r.answer)),
                _ => None,
            };
            let limit = crate::filter::Limit(ctx.live.config.partners.answer_max_bytes);
            let format = respond::Format::of(session.req_header());
            ctx.permitted = permissions::answer::start(
                viewer,
                route,
                &self.endpoints.permissions.filters,
                upstream_response,
                limit,
                format,
            )?
            .map(Box::new);
            if ctx.permitted.as_ref().is_some_and(|p| p.refused()) {
                self.metrics
                    .requests_refused
                    .with_label_values(&["filter_malformed"])
                    .inc();
                replaced = true;
            }
        }
        // Pages of signed-in users get the tab script, and the banner while
        // impersonating. Decided here: pingora picks the body's framing
        // after this hook, so the length removed here makes it chunked.
        if let (Some(subject), false) = (&ctx.subject, replaced) {
            if !ctx.app.end_on_success
                && tab::wants_injection(session.req_header(), upstream_response)
            {
                tab::prepare_response(upstream_response);
                let snippet = tab_snippet(&self.endpoints, subject);
                ctx.tab = Some(Box::new(tab::Injector::new(snippet)));
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Shutting down: this connection will not be reused, and the client
        // must hear so rather than find out on its next request.
        if session.is_process_shutting_down() {
            session.set_keepalive(None);
        }
        if ctx.app.end_on_success && upstream_response.status.as_u16() < 400 {
            if let Some(subject) = &ctx.subject {
                // The app logged the user out: so does guise.
                match self
                    .endpoints
                    .auth
                    .sessions
                    .revoke(&subject.session.key)
                    .await
                {
                    Ok(_) => {
                        tracing::info!(user = %subject.actor.id, session = %subject.session.record.reference, "logout through the app");
                        let name = self.endpoints.auth.cookie_name(ctx.peer.https);
                        ctx.app.set_cookies.push((
                            http::header::SET_COOKIE,
                            crate::session::cookie::clear(name, ctx.peer.https),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not end the session after the app's logout")
                    }
                }
            }
        }
        for (k, v) in &ctx.app.set_cookies {
            upstream_response.append_header(k.clone(), v.as_str())?;
        }
        Ok(())
    }

    /// Partner users' answers keep only their records (see
    /// [`crate::partners::answer`]). A failure here cuts the response off:
    /// its status line has gone out, and the body must not.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<std::time::Duration>> {
        let mut failed: Option<Box<dyn Refuse>> = None;
        if let Some(filter) = ctx.answer.as_mut() {
            if let Err(e) = filter.chunk(body, end_of_stream) {
                failed = Some(Box::new(e));
            }
        }
        if let (None, Some(filter)) = (&failed, ctx.private.as_mut()) {
            if let Err(e) = filter.chunk(body, end_of_stream) {
                failed = Some(Box::new(e));
            }
        }
        if let (None, Some(filter)) = (&failed, ctx.permitted.as_mut()) {
            if let Err(e) = filter.chunk(body, end_of_stream) {
                failed = Some(Box::new(e));
            }
        }
        if let Some(e) = failed {
            *body = None;
            ctx.answer = None;
            ctx.private = None;
            ctx.permitted = None;
            self.metrics
                .requests_refused
                .with_label_values(&[e.code()])
                .inc();
            tracing::warn!(route = ctx.route_label(), error = %e, "answer could not be filtered");
            ctx.answer_failed = Some(e);
            return Err(Error::explain(
                InternalError,
                "answer could not be filtered",
            ));
        }
        if let Some(injector) = ctx.tab.as_mut() {
            if let Err(e) = injector.chunk(body, end_of_stream) {
                // The page goes on without the snippet rather than broken.
                tracing::warn!(route = ctx.route_label(), error = %e, "the tab script could not be added");
                ctx.tab = None;
            }
        }
        Ok(None)
    }

    /// pingora's own line per failed request: `fail_to_proxy` logs the
    /// failure instead, once, through the repeat limit.
    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        true
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let failure = ProxyFailure::of(e);
        if let ProxyFailure::Upstream(kind) = &failure {
            self.metrics
                .upstream_errors
                .with_label_values(&[kind.metric()])
                .inc();
            tracing::warn!(route = ctx.route_label(), kind = kind.metric(), error = %e, "upstream request failed");
        }
        let mut code = 0;
        let refusal: Option<&dyn Refuse> = match &ctx.answer_failed {
            Some(e) => Some(e.as_ref()),
            None => failure.refusal(),
        };
        // Once the upstream's header went out, the client already has a
        // status; the only honest signal left is closing the connection.
        if let (Some(r), None) = (refusal, session.response_written()) {
            code = r.status();
            // pingora closes the connection after a proxy failure; say so in
            // the answer, or a keep-alive client reuses it and gets a reset.
            session.set_keepalive(None);
            if let Err(err) = respond::refuse(session, &ctx.live.replies, r).await {
                tracing::debug!(error = %err, "could not send error response");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let slot = match ctx.class {
            Class::Route(i) => i,
            _ => {
                let routes = ctx.live.routes.routes().len();
                routes
                    + crate::metrics::UNROUTED_LABELS
                        .iter()
                        .position(|l| *l == ctx.label)
                        .unwrap_or(usize::MAX - routes)
            }
        };
        ctx.live.request_metrics.observe(
            &self.metrics,
            slot,
            ctx.route_label(),
            session.req_header().method.as_str(),
            status,
            ctx.started.elapsed().as_secs_f64(),
        );
        if let Some(subject) = ctx.subject.as_ref().filter(|s| s.is_impersonating()) {
            self.endpoints.impersonation.count_request(status);
            let req = session.req_header();
            let rec = crate::audit::RequestRecord {
                time_ms: crate::audit::unix_ms(),
                impersonator: &subject.actor.id,
                user: &subject.effective.id,
                method: req.method.as_str(),
                path: req.uri.path(),
                status,
                session: &subject.session.record.reference,
            };
            if let Err(e) = self.endpoints.audit.record_request(&rec) {
                // Checked at the request's start; the buffer filled since.
                tracing::error!(error = %e, "an impersonated request could not be audited");
            }
        }
        // The next request on this connection gets its own header deadline.
        connections::request_done(session).await;
    }
}

/// Why proxying failed, as the client is told.
#[derive(Debug, thiserror::Error)]
enum ProxyFailure {
    #[error(transparent)]
    Upstream(UpstreamFailure),
    #[error("the gateway could not complete the request ({0})")]
    Status(u16),
    #[error("the request could not be read: {0}")]
    BadRequest(&'static str),
    /// The client went away; nobody to answer.
    #[error("the client closed the connection")]
    ClientGone,
    #[error(transparent)]
    Internal(Internal),
}

/// A failure at the upstream, by kind.
#[derive(Debug, thiserror::Error)]
enum UpstreamFailure {
    #[error("the application behind the gateway could not be reached; try again shortly")]
    Connect,
    #[error("the application behind the gateway did not answer in time")]
    Timeout,
    #[error("the application behind the gateway closed or broke the connection")]
    Broken,
}

impl UpstreamFailure {
    fn metric(&self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "connect",
            UpstreamFailure::Timeout => "timeout",
            UpstreamFailure::Broken => "other",
        }
    }
}

impl Refuse for UpstreamFailure {
    fn status(&self) -> u16 {
        match self {
            UpstreamFailure::Timeout => 504,
            UpstreamFailure::Connect | UpstreamFailure::Broken => 502,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "upstream_unreachable",
            UpstreamFailure::Timeout => "upstream_timeout",
            UpstreamFailure::Broken => "upstream_failed",
        }
    }
    fn title(&self) -> &'static str {
        match self {
            UpstreamFailure::Connect => "Upstream unreachable",
            UpstreamFailure::Timeout => "Upstream timed out",
            UpstreamFailure::Broken => "Upstream failed",
        }
    }
}

impl Refuse for ProxyFailure {
    fn status(&self) -> u16 {
        match self {
            ProxyFailure::Upstream(u) => u.status(),
            ProxyFailure::Status(code) => *code,
            ProxyFailure::BadRequest(_) => 400,
            ProxyFailure::ClientGone => 499,
            ProxyFailure::Internal(i) => i.status(),
        }
    }
    fn code(&self) -> &'static str {
        match self {
            ProxyFailure::Upstream(u) => u.code(),
            ProxyFailure::Status(_) => "gateway_error",
            ProxyFailure::BadRequest(_) => "bad_request",
            ProxyFailure::ClientGone => "client_gone",
            ProxyFailure::Internal(i) => i.code(),
        }
    }
    fn title(&self) -> &'static str {
        match self {
            ProxyFailure::Upstream(u) => u.title(),
            ProxyFailure::Status(_) => "Gateway error",
            ProxyFailure::BadRequest(_) => "Bad request",
            ProxyFailure::ClientGone => "Client closed request",
            ProxyFailure::Internal(_) => "Internal gateway error",
        }
    }
}

impl ProxyFailure {
    fn of(e: &Error) -> ProxyFailure {
        use ErrorType::*;
        if let HTTPStatus(code) = e.etype() {
            return ProxyFailure::Status(*code);
        }
        match e.esource() {
            ErrorSource::Upstream => ProxyFailure::Upstream(match e.etype() {
                ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
                | ConnectProxyFailure | TLSHandshakeFailure | TLSHandshakeTimedout
                | InvalidCert => UpstreamFailure::Connect,
                ReadTimedout | WriteTimedout => UpstreamFailure::Timeout,
                _ => UpstreamFailure::Broken,
            }),
            ErrorSource::Downstream => match e.etype() {
                WriteError | ReadError | ConnectionClosed => ProxyFailure::ClientGone,
                t => ProxyFailure::BadRequest(t.as_str()),
            },
            _ => ProxyFailure::Internal(Internal),
        }
    }

    /// What the client is answered, if anyone is left to answer.
    fn refusal(&self) -> Option<&dyn Refuse> {
        match self {
            ProxyFailure::ClientGone => None,
            other => Some(other),
        }
    }
}

#[cfg(test)]
mod tests;
