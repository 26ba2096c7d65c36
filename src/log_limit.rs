//! Quiet logs under faults: repeated warnings and errors are rate-limited.
//!
//! When the upstream goes away under load, every failing request would log
//! a line, and a ten-second outage wrote hundreds of thousands of lines;
//! clients that send an IP address as SNI, or close TLS without
//! `close_notify`, log one line per connection. Metrics already count all
//! of these, and a flood of identical lines hides everything else.
//!
//! [`RepeatLimit`] is a per-layer filter: for each WARN or ERROR call site
//! (one `tracing::warn!` in the code, or one `log` call in a dependency),
//! the first event of each interval is written and the rest are counted.
//! [`RepeatLimit::summarise`] (run once per interval) writes one line per
//! call site that was held back, with the count. INFO and below pass
//! untouched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::{Level, Metadata};
use tracing_subscriber::layer::{Context, Filter};

/// Per call site: when its current interval started, and how many events
/// were held back in it.
struct Site {
    since: Instant,
    held: u64,
    target: String,
    place: String,
}

/// The filter (see the module docs). Cheap to clone: the counts are shared.
#[derive(Clone)]
pub struct RepeatLimit {
    interval: Duration,
    sites: Arc<Mutex<HashMap<Identifier, Site>>>,
}

impl RepeatLimit {
    pub fn new(interval: Duration) -> RepeatLimit {
        RepeatLimit {
            interval,
            sites: Arc::default(),
        }
    }

    /// Whether an event at `meta` is written now.
    pub fn admit(&self, meta: &Metadata<'_>) -> bool {
        if *meta.level() > Level::WARN || !meta.is_event() {
            return true;
        }
        let now = Instant::now();
        let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let site = sites.entry(meta.callsite()).or_insert_with(|| Site {
            // A new site's first event is always written.
            since: now - self.interval,
            held: 0,
            target: meta.target().to_string(),
            place: match (meta.file(), meta.line()) {
                (Some(f), Some(l)) => format!("{f}:{l}"),
                _ => meta.name().to_string(),
            },
        });
        if now.duration_since(site.since) >= self.interval {
            site.since = now;
            true
        } else {
            site.held += 1;
            false
        }
    }

    /// Write one line per call site that held events back since the last
    /// call, and forget the counts. Returns how many lines were held back.
    pub fn summarise(&self) -> u64 {
        let held: Vec<(String, String, u64)> = {
            let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
            sites
                .values_mut()
                .filter(|s| s.held > 0)
                .map(|s| {
                    (
                        s.target.clone(),
                        s.place.clone(),
                        std::mem::take(&mut s.held),
                    )
                })
                .collect()
        };
        let mut total = 0;
        for (target, place, n) in held {
            total += n;
            tracing::warn!(
                target: "guise::log_limit",
                suppressed = n,
                from = %target,
                at = %place,
                "repeated log lines held back in the last interval (metrics count each one)"
            );
        }
        total
    }

    /// Summarise every interval, on a thread of its own, for the life of
    /// the process.
    pub fn summarise_every_interval(&self) {
        let me = self.clone();
        let _ = std::thread::Builder::new()
            .name("guise-log-limit".into())
            .spawn(move || loop {
                std::thread::sleep(me.interval);
                me.summarise();
            });
    }
}

impl<S> Filter<S> for RepeatLimit {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        self.admit(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        if *meta.level() > Level::WARN {
            tracing::subscriber::Interest::always()
        } else {
            // Asked per event: the answer changes with time.
            tracing::subscriber::Interest::sometimes()
        }
    }
}

/// Filter directives added before the operator's `logging.level`: pingora
/// logs a line for every client that fails its TLS handshake or breaks a
/// connection, which the request metrics already show, so those sources
/// start at `error` and still pass through [`RepeatLimit`]. An operator's
/// own directive for one of these targets replaces the default.
pub fn default_directives(level: &str) -> String {
    let defaults = [
        ("pingora_core::services::listening", "error"),
        ("pingora_core::protocols", "error"),
        ("pingora_proxy", "error"),
        ("rustls", "error"),
    ];
    let mut out: Vec<String> = defaults
        .iter()
        .filter(|(target, _)| !level.contains(target))
        .map(|(t, l)| format!("{t}={l}"))
        .collect();
    out.push(level.to_string());
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    /// A writer whose lines a test can read.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flood_of_one_warning_writes_one_line_and_a_summary_with_the_count() {
        let out = Lines::default();
        let limit = RepeatLimit::new(Duration::from_secs(3600));
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(limit.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            for i in 0..10_000 {
                tracing::warn!(i, "upstream request failed");
            }
            tracing::info!("an ordinary line");
            tracing::info!("another ordinary line");
            assert_eq!(limit.summarise(), 9_999);
            assert_eq!(limit.summarise(), 0, "counts start again");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("upstream request failed").count(), 1, "{text}");
        assert_eq!(
            text.matches("ordinary line").count(),
            2,
            "INFO is not limited"
        );
        assert!(text.contains("suppressed=9999"), "{text}");
        assert_eq!(text.lines().count(), 4, "{text}");
    }

    #[test]
    fn the_operators_directive_for_a_noisy_source_wins() {
        assert_eq!(
            default_directives("info"),
            "pingora_core::services::listening=error,pingora_core::protocols=error,pingora_proxy=error,rustls=error,info"
        );
        let d = default_directives("info,rustls=warn");
        assert!(
            !d.contains("rustls=error") && d.ends_with("rustls=warn"),
            "{d}"
        );
    }

    use tracing_subscriber::Layer;
}
