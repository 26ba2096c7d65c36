//! Data-permission metrics: decisions by result, the caches' hits and
//! misses, lookups and their latency, refresh jobs.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

/// The data-permission metrics of one gateway. Handles of the labelled
/// counters used per request are resolved once here, not per request.
#[derive(Clone)]
pub struct Metrics {
    pub decisions: IntCounterVec,
    pub allowed: IntCounter,
    pub denied: IntCounter,
    pub unavailable: IntCounter,
    /// Records taken out of answers by the rules.
    pub filtered: IntCounter,
    pub cache: IntCounterVec,
    /// `cache` by (cache, outcome), resolved once: counted per request.
    pub facts_hit: IntCounter,
    pub facts_miss: IntCounter,
    pub decisions_hit: IntCounter,
    pub decisions_miss: IntCounter,
    pub lookups: IntCounterVec,
    pub lookup_duration: Histogram,
    pub refreshes: IntCounterVec,
    /// Policy saves that found another save made meanwhile and ran their
    /// edit again.
    pub save_conflicts: IntCounter,
}

impl Metrics {
    pub fn new(registry: &crate::metrics::Metrics) -> prometheus::Result<Metrics> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "guise_permission_decisions_total",
                "Data-permission decisions on single records (requests and lookups), by result: allowed, denied, unavailable (a lookup failed).",
            ),
            &["result"],
        )?;
        let cache = IntCounterVec::new(
            Opts::new(
                "guise_permission_cache_total",
                "Data-permission cache use, by cache (facts: a user's side of the rules; decisions; lookups) and outcome (hit, miss).",
            ),
            &["cache", "outcome"],
        )?;
        let lookups = IntCounterVec::new(
            Opts::new(
                "guise_permission_lookups_total",
                "Records fetched from the upstream for a decision, by result: found, missing, failed.",
            ),
            &["result"],
        )?;
        let lookup_duration = Histogram::with_opts(
            HistogramOpts::new(
                "guise_permission_lookup_duration_seconds",
                "Time to fetch one record from the upstream for a decision.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let refreshes = IntCounterVec::new(
            Opts::new(
                "guise_permission_refreshes_total",
                "Data-permission refresh jobs run on this node, by kind: policy (rules, groups, switches changed: every user's facts recomputed), user_data (Refresh User Data or Refresh Sharing Group). Facts also expire after permissions.refresh_minutes.",
            ),
            &["kind"],
        )?;
        let filtered = IntCounter::new(
            "guise_permission_filtered_records_total",
            "Records the data-permission rules took out of answers (lists and pages).",
        )?;
        let save_conflicts = IntCounter::new(
            "guise_permission_save_conflicts_total",
            "Policy changes that found another admin's change saved meanwhile and were applied again on top of it.",
        )?;
        registry.register(Box::new(save_conflicts.clone()))?;
        for c in [&decisions, &cache, &lookups, &refreshes] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(lookup_duration.clone()))?;
        registry.register(Box::new(filtered.clone()))?;
        for cache_name in ["facts", "decisions", "lookups"] {
            for outcome in ["hit", "miss"] {
                cache.with_label_values(&[cache_name, outcome]);
            }
        }
        for r in ["found", "missing", "failed"] {
            lookups.with_label_values(&[r]);
        }
        for k in ["policy", "user_data"] {
            refreshes.with_label_values(&[k]);
        }
        Ok(Metrics {
            facts_hit: cache.with_label_values(&["facts", "hit"]),
            facts_miss: cache.with_label_values(&["facts", "miss"]),
            decisions_hit: cache.with_label_values(&["decisions", "hit"]),
            decisions_miss: cache.with_label_values(&["decisions", "miss"]),
            allowed: decisions.with_label_values(&["allowed"]),
            denied: decisions.with_label_values(&["denied"]),
            unavailable: decisions.with_label_values(&["unavailable"]),
            decisions,
            filtered,
            cache,
            lookups,
            lookup_duration,
            refreshes,
            save_conflicts,
        })
    }

    pub fn count(&self, d: &crate::permissions::Decision) {
        match d {
            crate::permissions::Decision::Allowed(_) => self.allowed.inc(),
            crate::permissions::Decision::Denied => self.denied.inc(),
            crate::permissions::Decision::Unavailable { .. } => self.unavailable.inc(),
        }
    }
}
