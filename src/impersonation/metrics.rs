//! Impersonation metrics: starts, stops, expiries and refusals, the
//! impersonations in progress, and requests made while impersonating.
//!
//! Impersonated requests are counted here, under the route, and never as
//! the impersonated user's own: impersonation is not a login
//! (`guise_logins_total` does not move) and the session it runs in is the
//! admin's. This is the skew Unifyr warns of, where an admin's visit shows
//! up as the partner's activity.

use std::sync::Arc;

use async_trait::async_trait;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

use crate::session::SessionManager;
use crate::users::Directory;

/// The refusal codes counted from the start.
const REFUSAL_CODES: [&str; 6] = [
    "not_allowed_to_impersonate",
    "target_not_allowed",
    "no_full_licence",
    "already_impersonating",
    "csrf",
    "audit_unavailable",
];

/// The status classes of impersonated requests counted from the start.
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// The impersonation metrics of one gateway.
#[derive(Clone)]
pub struct Metrics {
    /// `start`, `stop`, `expiry`, `end` (ended by another admin or by the
    /// rules).
    pub events: IntCounterVec,
    /// Refused impersonation calls, by reason code.
    pub refusals: IntCounterVec,
    /// Impersonations in progress (set on scrape).
    pub active: IntGauge,
    /// Requests made while impersonating, by status class (the audit has
    /// each one's path).
    pub requests: IntCounterVec,
    /// `requests` of the classes counted from the start (2xx to 5xx),
    /// resolved once: every impersonated request bumps one.
    by_class: [IntCounter; 4],
}

impl Metrics {
    /// Make the metrics and register them with the gateway's registry.
    pub fn new(registry: &crate::metrics::Metrics) -> prometheus::Result<Metrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "guise_impersonated_requests_total",
                "Requests made while impersonating, by status class; never counted as the impersonated user's own.",
            ),
            &["status_class"],
        )?;
        // Exposed from the start, so dashboards and alerts see zeros.
        let by_class = CLASSES.map(|class| requests.with_label_values(&[class]));
        let m = Metrics {
            events: IntCounterVec::new(
                Opts::new(
                    "guise_impersonations_total",
                    "Impersonations started and ended, by event (start, stop, expiry, end).",
                ),
                &["event"],
            )?,
            refusals: IntCounterVec::new(
                Opts::new(
                    "guise_impersonation_refusals_total",
                    "Impersonation calls refused, by reason code.",
                ),
                &["reason"],
            )?,
            active: IntGauge::new("guise_impersonations_active", "Impersonations in progress.")?,
            requests,
            by_class,
        };
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.refusals.clone()))?;
        registry.register(Box::new(m.active.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        // Exposed from the start, so dashboards and alerts see zeros.
        for e in ["start", "stop", "expiry", "end"] {
            m.events.with_label_values(&[e]);
        }
        for code in REFUSAL_CODES {
            m.refusals.with_label_values(&[code]);
        }
        Ok(m)
    }

    /// Count one request made while impersonating, answered `status`.
    pub fn count_request(&self, status: u16) {
        match status {
            200..=599 => self.by_class[usize::from(status / 100 - 2)].inc(),
            _ => self
                .requests
                .with_label_values(&[crate::metrics::status_class(status)])
                .inc(),
        }
    }
}

/// Sets `guise_impersonations_active` when Prometheus scrapes.
pub struct ActiveGauge {
    pub sessions: Arc<SessionManager>,
    pub directory: Arc<Directory>,
    pub gauge: IntGauge,
}

#[async_trait]
impl crate::ops::ScrapeHook for ActiveGauge {
    async fn before_scrape(&self) {
        match super::endpoints::in_progress(&self.sessions, &self.directory).await {
            Ok(list) => self.gauge.set(list.len() as i64),
            // The store is down: the gauge keeps its last value, and
            // `guise_session_store_up` says why.
            Err(e) => tracing::debug!(error = %e, "impersonations not counted"),
        }
    }
}
