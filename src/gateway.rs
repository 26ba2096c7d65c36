//! The gateway's own endpoints (pipeline stage 5): everything under
//! [`GATEWAY_PREFIX`], the app's login path when guise answers it, and
//! `OPTIONS *`. This module owns their routing; the handlers live with the
//! concern they serve ([`crate::auth`], [`crate::admin`],
//! [`crate::welcome`]).
//!
//! | | |
//! |---|---|
//! | `POST /_guise/login` | JSON login |
//! | `POST /_guise/logout` | end the session (CSRF-safe) |
//! | `GET /_guise/logout` | sign-out confirmation page |
//! | `GET /_guise/session` | who am I, and my CSRF token |
//! | `GET /_guise/events` | server-sent events of the session's identity changes, for open tabs ([`crate::tab`]) |
//! | `GET /_guise/tab.js`, `/_guise/tab.css` | the script and style injected into pages |
//! | `POST /_guise/impersonate`, `POST /_guise/impersonate/stop` | impersonation ([`crate::impersonation`]) |
//! | `GET /_guise/admin/impersonations`, `POST /_guise/admin/impersonations/{session}/end` | impersonations in progress |
//! | `GET /_guise/admin/audit` | the impersonation audit |
//! | `GET /_guise/admin`, `POST /_guise/admin/page/...` | the admin page and its form actions ([`crate::admin::page`]) |
//! | `/_guise/admin/...` | the admin API |
//! | `GET /_guise/partner`, `POST /_guise/tenants/{id}/enter`, `POST /_guise/tenants/leave` | "Login as me" ([`crate::tenants`]) |
//! | `PUT /_guise/partner/paired/{tenant}/{partner_user}/roles` | the partner's primary user sets a paired user's tenant roles ([`crate::tenants`]) |
//! | `GET/POST /_guise/set-password` | a welcome email's set-password page ([`crate::welcome`]) |
//! | `GET/POST {auth.login_path}` | login form (gateway mode), the app's form posted through guise (upstream mode) |

use std::sync::Arc;

use http::header::ALLOW;
use pingora::proxy::Session;
use serde_json::json;

use crate::admin::page::{self, AdminPage};
use crate::admin::AdminApi;
use crate::audit::Audit;
use crate::auth::{login, logout, upstream_login, AuthService, LoginError};
use crate::call::Call;
use crate::config::LoginMode;
use crate::impersonation::{self, endpoints::Impersonations};
use crate::respond::{self, Refuse};
use crate::routes::{Class, GATEWAY_PREFIX};
use crate::tab;
use crate::tenants::Tenants;
use crate::welcome::{self, Welcomes};

/// What the pipeline does after this stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// The gateway answered; nothing goes upstream.
    Answered,
    /// Go on to the upstream (the app's own login page in upstream mode).
    Proxy,
}

/// A path under `/_guise/` that names no endpoint.
#[derive(Debug, thiserror::Error)]
#[error("the gateway has no endpoint {method} {path}")]
pub struct NoEndpoint {
    method: String,
    path: String,
}

impl Refuse for NoEndpoint {
    fn status(&self) -> u16 {
        404
    }
    fn code(&self) -> &'static str {
        "not_found"
    }
}

/// `GET /_guise/session` without a session.
#[derive(Debug, thiserror::Error)]
#[error("there is no session on this request")]
pub struct NoSession;

impl Refuse for NoSession {
    fn status(&self) -> u16 {
        401
    }
    fn code(&self) -> &'static str {
        "login_required"
    }
    fn title(&self) -> &'static str {
        "Sign-in required"
    }
}

/// The gateway's endpoints, built once per gateway.
pub struct Endpoints {
    pub auth: Arc<AuthService>,
    pub admin: AdminApi,
    /// Partners, bundles and tenants as this node knows them now.
    pub partners: Arc<crate::partners::Registry>,
    /// Welcome emails' set-password links.
    pub welcome: Arc<Welcomes>,
    /// The impersonation audit.
    pub audit: Arc<Audit>,
    /// Impersonation metrics.
    pub impersonation: impersonation::metrics::Metrics,
    /// The data-permission policy in force and its caches.
    pub permissions: Arc<crate::permissions::Permissions>,
}

impl Endpoints {
    /// The impersonation endpoints, for a request on this scheme.
    pub fn impersonations(&self, https: bool) -> Impersonations<'_> {
        Impersonations {
            sessions: &self.auth.sessions,
            directory: &self.auth.directory,
            partners: &self.partners,
            audit: &self.audit,
            metrics: &self.impersonation,
            cookie_name: self.auth.cookie_name(https),
        }
    }

    /// The admin page, for a request on this scheme.
    fn admin_page(&self, https: bool) -> AdminPage<'_> {
        AdminPage {
            admin: &self.admin,
            impersonations: self.impersonations(https),
        }
    }

    fn tenants(&self) -> Tenants<'_> {
        Tenants {
            auth: &self.auth,
            admin: &self.admin,
        }
    }

    /// Answer a request of class `class`, or say it goes upstream.
    pub async fn answer(
        &self,
        s: &mut Session,
        call: Call<'_>,
        class: Class,
    ) -> pingora::Result<Flow> {
        match class {
            Class::Gateway => self.endpoint(s, call).await.map(|()| Flow::Answered),
            Class::Login => self.login_path(s, call).await,
            Class::Server => {
                let allow = (
                    ALLOW,
                    "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".to_string(),
                );
                respond::empty(s, &call.live.replies, 204, &[allow]).await?;
                Ok(Flow::Answered)
            }
            Class::Route(_) | Class::Unmatched => Ok(Flow::Proxy),
        }
    }

    async fn endpoint(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
        let method = s.req_header().method.clone();
        let path = s.req_header().uri.path().to_string();
        let rest = path.strip_prefix(GATEWAY_PREFIX).unwrap_or("");
        let auth = &self.auth;
        match (method.as_str(), rest) {
            ("POST", "login") => login::json(auth, s, call).await,
            ("POST", "logout") => logout::logout(auth, s, call).await,
            ("GET" | "HEAD", "logout") => logout::page(s, call).await,
            ("GET" | "HEAD", "session") => session_info(s, call).await,
            ("GET" | "HEAD", "tab.js" | "tab.css") => tab::asset(s, &call.live.replies, rest).await,
            ("GET", "events") => tab::events(s, call, &self.auth.sessions).await,
            ("POST", "impersonate") => self.impersonations(call.peer.https).start(s, call).await,
            ("POST", "impersonate/stop") => {
                self.impersonations(call.peer.https).stop(s, call).await
            }
            ("GET" | "HEAD", "admin/audit") => {
                self.impersonations(call.peer.https).audit(s, call).await
            }
            ("GET" | "HEAD", "admin/impersonations") => {
                self.impersonations(call.peer.https).list(s, call).await
            }
            ("POST", r) if r.starts_with("admin/impersonations/") && r.ends_with("/end") => {
                let reference = &r["admin/impersonations/".len()..r.len() - "/end".len()];
                if reference.is_empty() || reference.contains('/') {
                    let e = NoEndpoint {
                        method: method.to_string(),
                        path: path.clone(),
                    };
                    return respond::refuse(s, &call.live.replies, &e).await;
                }
                self.impersonations(call.peer.https)
                    .end(s, call, reference)
                    .await
            }
            ("GET" | "HEAD", "admin") => self.admin_page(call.peer.https).show(s, call).await,
            ("POST", r) if r.starts_with(page::ACTIONS) => {
                let action = &r[page::ACTIONS.len()..];
                self.admin_page(call.peer.https).post(s, call, action).await
            }
            (_, r) if r == "admin" || r.starts_with("admin/") => self.admin.handle(s, call).await,
            ("GET" | "HEAD", "partner") => self.tenants().page(s, call).await,
            ("POST", "tenants/leave") => self.tenants().leave(s, call).await,
            ("POST", r) if r.starts_with("tenants/") && r.ends_with("/enter") => {
                let id = &r["tenants/".len()..r.len() - "/enter".len()];
                if id.is_empty() || id.contains('/') {
                    let e = NoEndpoint {
                        method: method.to_string(),
                        path: path.clone(),
                    };
                    return respond::refuse(s, &call.live.replies, &e).await;
                }
                self.tenants().enter(s, call, id).await
            }
            ("PUT" | "POST", r) if r.starts_with("partner/paired/") && r.ends_with("/roles") => {
                let middle = &r["partner/paired/".len()..r.len() - "/roles".len()];
                let decode = |p: &str| {
                    percent_encoding::percent_decode_str(p)
                        .decode_utf8_lossy()
                        .into_owned()
                };
                match middle.split_once('/') {
                    Some((tenant, user))
                        if !tenant.is_empty() && !user.is_empty() && !user.contains('/') =>
                    {
                        let (tenant, user) = (decode(tenant), decode(user));
                        self.tenants()
                            .set_paired_roles(s, call, &tenant, &user)
                            .await
                    }
                    _ => {
                        let e = NoEndpoint {
                            method: method.to_string(),
                            path: path.clone(),
                        };
                        respond::refuse(s, &call.live.replies, &e).await
                    }
                }
            }
            ("GET" | "HEAD", welcome::PAGE) => welcome::page::show(&self.welcome, s, call).await,
            ("POST", welcome::PAGE) => welcome::page::submit(&self.welcome, s, call).await,
            _ => {
                let e = NoEndpoint {
                    method: method.to_string(),
                    path,
                };
                respond::refuse(s, &call.live.replies, &e).await
            }
        }
    }

    /// The app's login path: guise's own form in gateway mode; in upstream
    /// mode the app's page, and its form posted through guise.
    async fn login_path(&self, s: &mut Session, call: Call<'_>) -> pingora::Result<Flow> {
        let method = s.req_header().method.clone();
        match (&call.live.config.auth.mode, method.as_str()) {
            (LoginMode::Gateway, "GET" | "HEAD") => login::page(&self.auth, s, call).await?,
            (LoginMode::Gateway, "POST") => login::form(&self.auth, s, call).await?,
            (LoginMode::Gateway, _) => login::refuse(s, call, &LoginError::Method).await?,
            (LoginMode::Upstream(cfg), "POST") => {
                upstream_login::handle(&self.auth, s, call, cfg).await?
            }
            // The app's own login page: shown without a session.
            (LoginMode::Upstream(_), _) => return Ok(Flow::Proxy),
        }
        Ok(Flow::Answered)
    }
}

/// `GET /_guise/session`: who is signed in, and the CSRF token pages need
/// for the gateway's state-changing endpoints.
async fn session_info(s: &mut Session, call: Call<'_>) -> pingora::Result<()> {
    let replies = &call.live.replies;
    match call.subject {
        Some(subject) => {
            let record = &subject.session.record;
            let mut body = json!({
                "user": subject.effective.public_json(),
                "session": record.reference,
                "csrf_token": record.csrf_token,
                "created_at": record.created_at,
                "expires_at": record.absolute_expiry,
            });
            if subject.is_impersonating() {
                body["impersonator"] = subject.actor.public_json();
            }
            respond::json(s, replies, 200, &body, &[]).await
        }
        None => respond::refuse(s, replies, &NoSession).await,
    }
}
