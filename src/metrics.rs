//! The gateway's Prometheus metrics.
//!
//! Each gateway owns its own `Registry` (never the process-global one), so
//! several gateways can run in one test process and every name is ours:
//! `guise_` prefix, units in the name, `_total` on counters.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 0.5 ms to 30 s: a gateway hop is sub-millisecond,
/// a slow legacy page can take seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Handles to every metric; cheap to clone (each is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_response_duration: Histogram,
    pub upstream_errors: IntCounterVec,
    pub open_connections: IntGauge,
    pub upstream_up: IntGauge,
    pub store_up: IntGauge,
    pub config_info: IntGaugeVec,
    pub config_reloads: IntCounterVec,
    pub config_loaded: Gauge,
    pub logins: IntCounterVec,
    pub sessions_active: IntGauge,
    pub session_cache: IntCounterVec,
    /// Idle-deadline slides this node wrote to the store; with several
    /// nodes, the sum over nodes is the store's write rate for them.
    pub session_refreshes: IntCounter,
    pub redis_errors: IntCounter,
    pub revocations: IntCounterVec,
    pub login_limited: IntCounterVec,
    pub password_checks_running: IntGauge,
    pub password_checks_waiting: IntGauge,
    pub password_checks_rejected: IntCounter,
    pub header_timeouts: IntCounter,
    pub connections_refused: IntCounter,
    pub user_records_skipped: IntCounter,
    pub requests_refused: IntCounterVec,
    /// Partner users' requests refused, by reason.
    pub partner_refusals: IntCounterVec,
    /// Seats of each licence, used and free (set on scrape).
    pub licence_seats: IntGaugeVec,
    /// "Login as me" into a client tenant, by result.
    pub paired_logins: IntCounterVec,
    /// Changes of paired users' tenant roles, by who made them (`admin`,
    /// `partner`).
    pub paired_role_changes: IntCounterVec,
    /// Users of each tenant, by kind (`own`: the app's, `paired`), and
    /// its quota (set on scrape).
    pub tenant_users: IntGaugeVec,
    pub tenant_user_quota: IntGaugeVec,
    /// Welcome emails, by transport and result.
    pub welcome_emails: IntCounterVec,
    /// Uses of set-password links, by result.
    pub set_password_links: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "guise_http_requests_total",
                "Requests answered, by route, method and status class.",
            ),
            &["route", "method", "status_class"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "guise_http_request_duration_seconds",
                "Time from request start to the end of the response, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let upstream_response_duration = Histogram::with_opts(
            HistogramOpts::new(
                "guise_upstream_response_duration_seconds",
                "Time from sending the request upstream to its response header.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "guise_upstream_errors_total",
                "Requests that failed at the upstream, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let open_connections = IntGauge::new(
            "guise_open_connections",
            "Client connections currently open.",
        )
        .expect("valid metric");
        let upstream_up = IntGauge::new(
            "guise_upstream_up",
            "1 when the last probe reached the upstream (probed in the background every operations.probe_interval_ms).",
        )
        .expect("valid metric");
        let store_up = IntGauge::new(
            "guise_session_store_up",
            "1 when the last probe reached the session store.",
        )
        .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new("guise_build_info", "Always 1; the labels name the build."),
            &["version"],
        )
        .expect("valid metric");
        let config_info = IntGaugeVec::new(
            Opts::new(
                "guise_config_info",
                "1 for the live configuration, by file hash.",
            ),
            &["hash"],
        )
        .expect("valid metric");
        let config_reloads = IntCounterVec::new(
            Opts::new(
                "guise_config_reloads_total",
                "Configuration reloads, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let config_loaded = Gauge::new(
            "guise_config_loaded_timestamp_seconds",
            "Unix time the live configuration was loaded.",
        )
        .expect("valid metric");

        let logins = IntCounterVec::new(
            Opts::new("guise_logins_total", "Login attempts, by result."),
            &["result"],
        )
        .expect("valid metric");
        let sessions_active = IntGauge::new(
            "guise_sessions_active",
            "Live sessions in the store (read when /metrics is scraped).",
        )
        .expect("valid metric");
        let session_cache = IntCounterVec::new(
            Opts::new(
                "guise_session_cache_requests_total",
                "Session lookups in this node's cache, by result (hit, miss).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let session_refreshes = IntCounter::new(
            "guise_session_refreshes_total",
            "Sessions whose idle deadline this node slid in the store (a refresh another node had just made is not repeated or counted).",
        )
        .expect("valid metric");
        let redis_errors = IntCounter::new(
            "guise_redis_errors_total",
            "Session store operations that failed because Redis was unreachable or too slow.",
        )
        .expect("valid metric");
        let revocations = IntCounterVec::new(
            Opts::new(
                "guise_session_revocations_total",
                "Session revocations, by direction (sent by this node, received from any node).",
            ),
            &["direction"],
        )
        .expect("valid metric");
        let login_limited = IntCounterVec::new(
            Opts::new(
                "guise_login_limited_total",
                "Login attempts refused by a limit, by the counter that was over (network, user_network, user).",
            ),
            &["scope"],
        )
        .expect("valid metric");
        let password_checks_running = IntGauge::new(
            "guise_password_checks_running",
            "Password verifications running now.",
        )
        .expect("valid metric");
        let password_checks_waiting = IntGauge::new(
            "guise_password_checks_waiting",
            "Logins waiting for a turn to verify a password.",
        )
        .expect("valid metric");
        let password_checks_rejected = IntCounter::new(
            "guise_password_checks_rejected_total",
            "Logins answered 503 because no password check was free within the queue timeout.",
        )
        .expect("valid metric");
        let header_timeouts = IntCounter::new(
            "guise_request_header_timeouts_total",
            "Client connections closed because a request header took longer than server.header_timeout_ms.",
        )
        .expect("valid metric");
        let connections_refused = IntCounter::new(
            "guise_connections_refused_total",
            "Client connections closed at once because server.max_client_connections were open.",
        )
        .expect("valid metric");
        let user_records_skipped = IntCounter::new(
            "guise_user_records_skipped_total",
            "Stored user records left out of a directory rebuild because the directory refused them.",
        )
        .expect("valid metric");
        let requests_refused = IntCounterVec::new(
            Opts::new(
                "guise_requests_refused_total",
                "Requests the gateway refused before proxying, by reason code.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let partner_refusals = IntCounterVec::new(
            Opts::new(
                "guise_partner_refusals_total",
                "Requests of partner users refused by the partner rules, by reason code.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let licence_seats = IntGaugeVec::new(
            Opts::new(
                "guise_licence_seats",
                "Seats of each licence with a seat limit: used and free.",
            ),
            &["licence", "state"],
        )
        .expect("valid metric");
        let paired_logins = IntCounterVec::new(
            Opts::new(
                "guise_paired_logins_total",
                "\"Login as me\" into a client tenant as a paired user, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let paired_role_changes = IntCounterVec::new(
            Opts::new(
                "guise_paired_role_changes_total",
                "Changes of paired users' roles inside their tenant, by who made them (admin, partner).",
            ),
            &["by"],
        )
        .expect("valid metric");
        // Both series from the start, at 0.
        for by in ["admin", "partner"] {
            paired_role_changes.with_label_values(&[by]);
        }
        let welcome_emails = IntCounterVec::new(
            Opts::new(
                "guise_welcome_emails_total",
                "Welcome emails (set-password links) an admin sent, by transport (smtp, outbox) and result (sent, failed).",
            ),
            &["transport", "result"],
        )
        .expect("valid metric");
        let set_password_links = IntCounterVec::new(
            Opts::new(
                "guise_set_password_links_total",
                "Set-password links opened or used, by result (password_set, expired, used, superseded, invalid, account_unavailable).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let tenant_users = IntGaugeVec::new(
            Opts::new(
                "guise_tenant_users",
                "Users of each client tenant: own (counted against the quota) and paired (not counted).",
            ),
            &["tenant", "kind"],
        )
        .expect("valid metric");
        let tenant_user_quota = IntGaugeVec::new(
            Opts::new(
                "guise_tenant_user_quota",
                "The user quota of each client tenant that has one.",
            ),
            &["tenant"],
        )
        .expect("valid metric");
        for result in [
            "password_set",
            "expired",
            "used",
            "superseded",
            "invalid",
            "account_unavailable",
        ] {
            set_password_links.with_label_values(&[result]);
        }
        for transport in ["smtp", "outbox"] {
            for result in ["sent", "failed"] {
                welcome_emails.with_label_values(&[transport, result]);
            }
        }
        for result in [
            "ok",
            "bad_credentials",
            "limited",
            "busy",
            "store_unavailable",
            "upstream_unreachable",
            "bad_request",
            "no_identity",
            "steered_identity",
            "not_allowed",
        ] {
            logins.with_label_values(&[result]);
        }
        for scope in ["network", "user_network", "user"] {
            login_limited.with_label_values(&[scope]);
        }
        for result in ["hit", "miss"] {
            session_cache.with_label_values(&[result]);
        }
        for d in ["sent", "received"] {
            revocations.with_label_values(&[d]);
        }

        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for result in ["ok", "error"] {
            config_reloads.with_label_values(&[result]);
        }
        for kind in ["connect", "timeout", "other"] {
            upstream_errors.with_label_values(&[kind]);
        }

        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(requests.clone()),
            Box::new(request_duration.clone()),
            Box::new(upstream_response_duration.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(open_connections.clone()),
            Box::new(upstream_up.clone()),
            Box::new(store_up.clone()),
            Box::new(build_info),
            Box::new(config_info.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_loaded.clone()),
            Box::new(logins.clone()),
            Box::new(sessions_active.clone()),
            Box::new(session_cache.clone()),
            Box::new(session_refreshes.clone()),
            Box::new(redis_errors.clone()),
            Box::new(revocations.clone()),
            Box::new(login_limited.clone()),
            Box::new(password_checks_running.clone()),
            Box::new(password_checks_waiting.clone()),
            Box::new(password_checks_rejected.clone()),
            Box::new(header_timeouts.clone()),
            Box::new(connections_refused.clone()),
            Box::new(user_records_skipped.clone()),
            Box::new(requests_refused.clone()),
            Box::new(partner_refusals.clone()),
            Box::new(licence_seats.clone()),
            Box::new(paired_logins.clone()),
            Box::new(paired_role_changes.clone()),
            Box::new(tenant_users.clone()),
            Box::new(tenant_user_quota.clone()),
            Box::new(welcome_emails.clone()),
            Box::new(set_password_links.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            requests,
            request_duration,
            upstream_response_duration,
            upstream_errors,
            open_connections,
            upstream_up,
            store_up,
            config_info,
            config_reloads,
            config_loaded,
            logins,
            sessions_active,
            session_cache,
            session_refreshes,
            redis_errors,
            revocations,
            login_limited,
            password_checks_running,
            password_checks_waiting,
            password_checks_rejected,
            header_timeouts,
            connections_refused,
            user_records_skipped,
            requests_refused,
            partner_refusals,
            licence_seats,
            paired_logins,
            paired_role_changes,
            tenant_users,
            tenant_user_quota,
            welcome_emails,
            set_password_links,
        }
    }

    /// Register a further collector (used by the session and login stages).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(c)
    }

    /// Mark `hash` as the live configuration, loaded now.
    pub fn set_live_config(&self, hash: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.config_loaded.set(now);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8 * 1024);
        let encoder = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed metrics.
        let _ = encoder.encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The route labels of requests without a route (see `crate::proxy`):
/// each has a [`RequestHandles`] slot after the routes'.
pub const UNROUTED_LABELS: [&str; 4] = ["unmatched", "rejected", "gateway", "gateway_events"];

/// The methods `guise_http_requests_total` names; any other is `other`
/// (arbitrary methods would make label values unbounded).
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

/// The status classes [`status_class`] gives, in its order.
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// The method's label, from `METHODS`.
pub fn method_label(method: &str) -> &'static str {
    METHODS[method_index(method)]
}

fn method_index(method: &str) -> usize {
    METHODS[..7]
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1)
}

fn status_index(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100 - 1),
        _ => STATUS_CLASSES.len() - 1,
    }
}

/// The per-request metrics (`guise_http_requests_total`,
/// `guise_http_request_duration_seconds`) of one route label, resolved once.
///
/// `with_label_values` hashes the label values and takes the vector's lock
/// on every call; every request made two of them. A route's handles are
/// looked up on its first request and kept here (in [`crate::live::Live`],
/// one slot per route and per fixed label), so later requests only bump an
/// atomic. Handles are made on first use, never up front: the exposition
/// shows exactly the series that were counted, as before.
pub struct RequestHandles {
    slots: Box<[OnceLock<LabelHandles>]>,
}

struct LabelHandles {
    duration: Histogram,
    requests: [[OnceLock<IntCounter>; STATUS_CLASSES.len()]; METHODS.len()],
}

impl RequestHandles {
    /// Room for `slots` labels (a route table's routes plus the fixed
    /// labels of requests without a route).
    pub fn new(slots: usize) -> RequestHandles {
        RequestHandles {
            slots: (0..slots).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Count one answered request labelled `label` (kept in `slot`), with
    /// `method`, answered `status` after `seconds`. A slot out of range
    /// falls back to a plain lookup.
    pub fn observe(
        &self,
        metrics: &Metrics,
        slot: usize,
        label: &str,
        method: &str,
        status: u16,
        seconds: f64,
    ) {
        let (m, c) = (method_index(method), status_index(status));
        let Some(cell) = self.slots.get(slot) else {
            metrics
                .requests
                .with_label_values(&[label, METHODS[m], STATUS_CLASSES[c]])
                .inc();
            metrics
                .request_duration
                .with_label_values(&[label])
                .observe(seconds);
            return;
        };
        let handles = cell.get_or_init(|| LabelHandles {
            duration: metrics.request_duration.with_label_values(&[label]),
            requests: Default::default(),
        });
        handles.requests[m][c]
            .get_or_init(|| {
                metrics
                    .requests
                    .with_label_values(&[label, METHODS[m], STATUS_CLASSES[c]])
            })
            .inc();
        handles.duration.observe(seconds);
    }
}

/// `2xx`, `4xx`, ...; `0` (no response written) is reported as `none`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exposed_name_is_prefixed_and_counters_end_in_total() {
        let m = Metrics::new();
        m.requests.with_label_values(&["r", "GET", "2xx"]).inc();
        let text = String::from_utf8(m.render()).unwrap();
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("guise_"), "{name}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
        }
        assert!(text.contains("guise_build_info{version="));
    }

    #[test]
    fn resolved_handles_count_the_same_series_as_lookups() {
        let m = Metrics::new();
        let h = RequestHandles::new(2);
        for _ in 0..3 {
            h.observe(&m, 0, "company", "GET", 200, 0.001);
        }
        h.observe(&m, 0, "company", "BREW", 0, 0.001);
        h.observe(&m, 1, "unmatched", "POST", 404, 0.001);
        // Out of range: looked up by name instead.
        h.observe(&m, 7, "gateway", "HEAD", 503, 0.001);
        let get = |l: [&str; 3]| m.requests.with_label_values(&l).get();
        assert_eq!(get(["company", "GET", "2xx"]), 3);
        assert_eq!(get(["company", "other", "none"]), 1);
        assert_eq!(get(["unmatched", "POST", "4xx"]), 1);
        assert_eq!(get(["gateway", "HEAD", "5xx"]), 1);
        let n = m.request_duration.with_label_values(&["company"]);
        assert_eq!(n.get_sample_count(), 4);
        for (i, s) in [100, 200, 300, 400, 500, 599, 0, 600, 99]
            .iter()
            .enumerate()
        {
            assert_eq!(
                STATUS_CLASSES[status_index(*s)],
                status_class(*s),
                "case {i}"
            );
        }
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("get"), "other");
    }
}
