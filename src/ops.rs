//! The operations listener: `/metrics`, `/healthz`, `/readyz`.
//!
//! Served on its own address so operators can scrape and probe without
//! going through the client-facing listener (and its login).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::live::SharedLive;
use crate::metrics::Metrics;

/// Something `/readyz` asks before saying the gateway can serve.
#[async_trait]
pub trait ReadyCheck: Send + Sync {
    /// Short name in the `/readyz` answer.
    fn name(&self) -> &'static str;
    /// `Err` says what is wrong.
    async fn check(&self) -> Result<(), String>;
}

/// The upstream answers a TCP connection within its connect timeout.
pub struct UpstreamReachable {
    pub live: SharedLive,
    pub metrics: Metrics,
}

#[async_trait]
impl ReadyCheck for UpstreamReachable {
    fn name(&self) -> &'static str {
        "upstream"
    }

    async fn check(&self) -> Result<(), String> {
        let live = self.live.load();
        let up = &live.config.upstream;
        let result = match tokio::time::timeout(
            up.connect_timeout,
            tokio::net::TcpStream::connect(up.address),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot connect to the upstream: {e}")),
            Err(_) => Err(format!(
                "no connection to the upstream within {} ms",
                up.connect_timeout.as_millis()
            )),
        };
        self.metrics.upstream_up.set(result.is_ok() as i64);
        result
    }
}

/// Runs the readiness checks in the background at an interval, so the
/// health metrics (`guise_upstream_up`, `guise_session_store_up`) are
/// current from the start, whether or not anyone calls `/readyz`.
pub struct Prober {
    pub checks: Vec<Arc<dyn ReadyCheck>>,
    pub interval: Duration,
}

#[async_trait]
impl pingora::services::background::BackgroundService for Prober {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        loop {
            for c in &self.checks {
                // A hung dependency must not hang the prober.
                let _ = tokio::time::timeout(Duration::from_secs(3), c.check()).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Something to bring up to date just before `/metrics` is rendered
/// (values that cost a store round trip are read on scrape, not per
/// request).
#[async_trait]
pub trait ScrapeHook: Send + Sync {
    async fn before_scrape(&self);
}

pub struct OpsApp {
    metrics: Metrics,
    checks: Vec<Arc<dyn ReadyCheck>>,
    hooks: Vec<Arc<dyn ScrapeHook>>,
}

impl OpsApp {
    pub fn new(
        metrics: Metrics,
        checks: Vec<Arc<dyn ReadyCheck>>,
        hooks: Vec<Arc<dyn ScrapeHook>>,
    ) -> Self {
        OpsApp {
            metrics,
            checks,
            hooks,
        }
    }

    async fn readiness(&self) -> (u16, Vec<u8>) {
        let mut ready = true;
        let mut results = serde_json::Map::new();
        for c in &self.checks {
            // A hung dependency must not hang the probe.
            let r = tokio::time::timeout(Duration::from_secs(3), c.check())
                .await
                .unwrap_or_else(|_| Err("no answer within 3 s".to_string()));
            ready &= r.is_ok();
            results.insert(
                c.name().to_string(),
                json!(r.err().unwrap_or_else(|| "ok".to_string())),
            );
        }
        let body = json!({ "ready": ready, "checks": results });
        (if ready { 200 } else { 503 }, body.to_string().into_bytes())
    }
}

#[async_trait]
impl ServeHttp for OpsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let (status, content_type, body) = match path.as_str() {
            "/metrics" => {
                for h in &self.hooks {
                    // A slow store must not hang the scrape.
                    let _ = tokio::time::timeout(Duration::from_secs(2), h.before_scrape()).await;
                }
                (200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render())
            }
            "/healthz" => (200, "application/json", br#"{"alive":true}"#.to_vec()),
            "/readyz" => {
                let (s, b) = self.readiness().await;
                (s, "application/json", b)
            }
            _ => (
                404,
                "application/json",
                json!({"error": "not_found", "detail": format!("no operations endpoint {path}; try /metrics, /healthz or /readyz")})
                    .to_string()
                    .into_bytes(),
            ),
        };
        Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONTENT_LENGTH, body.len())
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(body)
            .unwrap_or_default()
    }
}
