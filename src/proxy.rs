//! The pingora `ProxyHttp` implementation: wiring only.
//!
//! Each hook calls the module that owns the concern, in the order of the
//! request's way through the gateway (see DESIGN.md), and keeps what later
//! hooks need in [`Ctx`]. No policy lives here.

mod connections;
mod forwarded;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::ErrorType;

use crate::auth::{AuthService, Gate, Identity};
use crate::identity::{self, IdentityHeaders};
use crate::live::{Live, SharedLive};
use crate::metrics::{status_class, Metrics};
use crate::respond::{send_refusal, Refusal};
use crate::routes::check_request_path;

pub use connections::CountConnections;
pub use forwarded::set_headers as forwarded_headers;

/// Prefix of the gateway's own endpoints; never forwarded upstream.
pub const GATEWAY_PREFIX: &str = "/_guise/";

/// The gateway's data plane.
pub struct GatewayProxy {
    pub live: SharedLive,
    pub metrics: Metrics,
    pub auth: Arc<AuthService>,
}

/// Per-request state.
pub struct Ctx {
    started: Instant,
    /// The configuration this request runs under, start to end.
    live: Arc<Live>,
    /// Index of the matched route in `live.routes`.
    route: Option<usize>,
    /// Label for metrics when no configured route matched.
    label: &'static str,
    upstream_sent: Option<Instant>,
    /// Who the request runs as, once the auth stage found out.
    identity: Option<Identity>,
}

impl Ctx {
    fn route_label(&self) -> &str {
        match self.route {
            Some(i) => &self.live.routes.routes()[i].name,
            None => self.label,
        }
    }
}

#[async_trait]
impl ProxyHttp for GatewayProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            live: self.live.load_full(),
            route: None,
            label: "unmatched",
            upstream_sent: None,
            identity: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        // Before anything else: no client may speak for the gateway.
        identity::strip_client_headers(
            session.req_header_mut(),
            &ctx.live.config.identity.header_prefix,
        );

        let path = session.req_header().uri.path();
        if let Err(e) = check_request_path(path) {
            ctx.label = "rejected";
            let r = Refusal::new(400, "path_not_normal", "Bad request path", e.to_string());
            send_refusal(session, &r).await?;
            return Ok(true);
        }
        if path.starts_with(GATEWAY_PREFIX) || path == ctx.live.config.auth.login_path {
            ctx.label = "gateway";
        } else {
            let method = session.req_header().method.as_str();
            ctx.route = ctx.live.routes.find(method, path).map(|m| m.index);
        }

        let live = ctx.live.clone();
        let route = ctx.route.map(|i| &live.routes.routes()[i]);
        match self.auth.gate(session, &live, route).await? {
            Gate::Answered => Ok(true),
            Gate::Continue(identity) => {
                ctx.identity = identity;
                Ok(false)
            }
        }
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
        forwarded::set_headers(session, upstream_request)?;
        self.auth.strip_gateway_cookies(upstream_request);
        if let Some(id) = &ctx.identity {
            let signer = &ctx.live.signer;
            let signed = id
                .session
                .prepared
                .get_or_prepare(&id.user, signer, |user| {
                    IdentityHeaders::for_user(
                        &user.id,
                        &user.email,
                        &user.role_names(),
                        &id.session.record.reference,
                    )
                })
                .and_then(|p| signer.sign_prepared(upstream_request, &p, identity::unix_now()));
            if let Err(e) = signed {
                // Never forward a request whose identity cannot be stated
                // exactly: the upstream would see it as anonymous.
                tracing::error!(user = %id.user.id, error = %e, "identity headers refused");
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "identity headers could not be built",
                ));
            }
        }
        ctx.upstream_sent = Some(Instant::now());
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(sent) = ctx.upstream_sent.take() {
            self.metrics
                .upstream_response_duration
                .observe(sent.elapsed().as_secs_f64());
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let refusal = match e.etype() {
            ErrorType::HTTPStatus(code) => Some(Refusal::new(
                *code,
                "gateway_error",
                "Gateway error",
                format!("the gateway could not complete the request ({code})"),
            )),
            _ => match e.esource() {
                pingora::ErrorSource::Upstream => {
                    let (kind, refusal) = upstream_failure(e.etype());
                    self.metrics
                        .upstream_errors
                        .with_label_values(&[kind])
                        .inc();
                    tracing::warn!(route = ctx.route_label(), kind, error = %e, "upstream request failed");
                    Some(refusal)
                }
                pingora::ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                        None
                    }
                    _ => Some(Refusal::new(
                        400,
                        "bad_request",
                        "Bad request",
                        format!("the request could not be read: {}", e.etype().as_str()),
                    )),
                },
                _ => Some(Refusal::new(
                    500,
                    "internal_error",
                    "Internal gateway error",
                    "the gateway failed while handling this request; the error is in its log",
                )),
            },
        };
        let mut code = 0;
        // Once the upstream's header went out, the client already has a
        // status; the only honest signal left is closing the connection.
        if let (Some(r), None) = (refusal, session.response_written()) {
            code = r.status;
            // pingora closes the connection after a proxy failure; say so in
            // the answer, or a keep-alive client reuses it and gets a reset.
            session.set_keepalive(None);
            if let Err(err) = send_refusal(session, &r).await {
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
        let route = ctx.route_label();
        let method = session.req_header().method.as_str();
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            // Arbitrary methods would make label values unbounded.
            _ => "other",
        };
        self.metrics
            .requests
            .with_label_values(&[route, method, status_class(status)])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[route])
            .observe(ctx.started.elapsed().as_secs_f64());
    }
}

/// Metric kind and client answer for a failure at the upstream.
fn upstream_failure(t: &ErrorType) -> (&'static str, Refusal) {
    use ErrorType::*;
    match t {
        ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
        | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert => (
            "connect",
            Refusal::new(
                502,
                "upstream_unreachable",
                "Upstream unreachable",
                "the application behind the gateway could not be reached; try again shortly",
            ),
        ),
        ReadTimedout | WriteTimedout => (
            "timeout",
            Refusal::new(
                504,
                "upstream_timeout",
                "Upstream timed out",
                "the application behind the gateway did not answer in time",
            ),
        ),
        _ => (
            "other",
            Refusal::new(
                502,
                "upstream_failed",
                "Upstream failed",
                "the application behind the gateway closed or broke the connection",
            ),
        ),
    }
}
