//! The impersonation audit: every start, stop, expiry, end and refusal of
//! an impersonation, and every request made while impersonating, as one
//! [`AuditRecord`] each, under the real actor.
//!
//! # Fail closed, never block
//!
//! The request path records before it lets a request through
//! ([`Audit::record`]) but never waits for Redis or a disk: the record goes
//! into a bounded buffer in memory, and [`AuditWriter`] (a pingora
//! background service) drains it in batches to the [`Sink`]. A write that
//! fails leaves its records at the front of the buffer and is tried again
//! after a backoff (doubling, capped), so an outage of the sink costs
//! memory, not records. Only when the buffer is full does `record` refuse,
//! and the caller then refuses the request (503): an impersonated request
//! that cannot be recorded does not happen. The same holds once the writer
//! has stopped.
//!
//! # At least once
//!
//! A batch whose write failed *after* it reached the sink (Redis appended
//! it, but its answer was lost to a timeout or a dropped connection) is
//! written again, so it can appear twice in the stream; a duplicate is the
//! same JSON, `time_ms` included, next to or near the original. Losing a
//! record would be worse than reading one twice, and the store never adds
//! a repeat of its own (see [`crate::store::Store::append_audit`]).
//! Within one writer, order is kept: a batch is only taken off the buffer
//! once written.
//!
//! # Reading
//!
//! [`Audit::read`] pages through what the sink holds, newest first, with
//! filters and a cursor (see [`AuditQuery`]). Records still in the buffer
//! are not read: normally they are written within milliseconds, and while
//! the sink is down it could not be read either.
//!
//! # Shutdown
//!
//! The writer does not stop when the shutdown signal comes, because
//! requests still draining record too; it retries faster from then on
//! (at most [`URGENT_BACKOFF`] apart). Whoever ends the process waits for
//! the buffer to empty with [`Audit::flush`] or, on a plain thread,
//! [`Audit::wait_flushed`], bounded by a timeout. Should the writer's task
//! end with records still buffered (its runtime shut down), it logs how
//! many were lost, and `record` refuses from then on.

mod query;
mod sink;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use http::HeaderName;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prometheus::{IntCounterVec, IntGauge, Opts};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::respond::Refuse;

pub use self::query::{AuditPage, AuditQuery, DEFAULT_LIMIT, MAX_LIMIT, MAX_SCAN};
pub use self::sink::Sink;

/// Most records written in one batch: one pipeline (or one `write`) of
/// this many stays well below any reply or write timeout.
pub const BATCH_MAX: usize = 256;

/// First wait after a failed write; doubled after each further failure.
pub const BACKOFF_START: Duration = Duration::from_millis(100);

/// Longest wait between attempts while the sink is down: short enough that
/// records reach the sink soon after it is back, long enough that a dead
/// Redis is not hammered.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Longest wait between attempts while someone waits for the buffer to
/// empty ([`Audit::flush`]) or the gateway is shutting down.
pub const URGENT_BACKOFF: Duration = Duration::from_millis(200);

/// How long a small batch waits for more records before it is written:
/// under load one write (a file append, a Redis round trip) then carries
/// many records instead of one each, which cost an impersonated request
/// about a fifth of its throughput when every record woke the writer.
/// Records wait in memory no longer than this, and never while a flush or
/// the shutdown hurries the writer.
pub const LINGER: Duration = Duration::from_millis(20);

/// What happened to an impersonation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditEvent {
    /// An admin started viewing the app as `user`.
    Start,
    /// The impersonator left the partner view.
    Stop,
    /// The impersonation reached its longest duration and ended.
    Expiry,
    /// Another admin ended it (`impersonator` is the one who was ended).
    End,
    /// An impersonation, or a request made during one, was refused;
    /// `reason` says why.
    Refusal,
    /// A request made while impersonating.
    Request,
    /// An admin changed the data-permission policy: `impersonator` is the
    /// acting admin, `reason` what changed.
    PermissionChange,
}

/// One step of an impersonation, as written to the sink (one JSON object,
/// `None` fields left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it happened, unix milliseconds by the recording node's clock.
    pub time_ms: u64,
    pub event: AuditEvent,
    /// The real actor: the admin's user id, whatever identity the request
    /// carried.
    pub impersonator: String,
    /// The effective user (the one impersonated), once there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The request that caused the step.
    pub method: String,
    /// Its path, without the query string (which may carry personal data).
    pub path: String,
    /// The status the request was answered with, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why: the reason an impersonator gave at the start, or the reason
    /// for a refusal or an end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The session's short, non-secret reference (never its token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

impl AuditRecord {
    /// A record of `event` by `impersonator`, now, for the request
    /// `method path`; the optional fields are left empty for the caller.
    pub fn new(
        event: AuditEvent,
        impersonator: impl Into<String>,
        method: impl Into<String>,
        path: impl Into<String>,
    ) -> AuditRecord {
        AuditRecord {
            time_ms: unix_ms(),
            event,
            impersonator: impersonator.into(),
            user: None,
            method: method.into(),
            path: path.into(),
            status: None,
            reason: None,
            session: None,
        }
    }
}

/// Unix milliseconds by the system clock (0 before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A request made while impersonating, borrowed from the request: what
/// [`Audit::record_request`] writes as an [`AuditRecord`] of event
/// `request` (no `reason`).
pub struct RequestRecord<'a> {
    pub time_ms: u64,
    pub impersonator: &'a str,
    pub user: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub session: &'a str,
}

impl RequestRecord<'_> {
    /// The JSON serde writes for the equivalent [`AuditRecord`]: the same
    /// fields in the same order, strings escaped as serde_json does.
    fn to_json(&self) -> String {
        let strings = self.impersonator.len()
            + self.user.len()
            + self.method.len()
            + self.path.len()
            + self.session.len();
        let mut out = String::with_capacity(strings + 128);
        out.push_str("{\"time_ms\":");
        push_u64(&mut out, self.time_ms);
        out.push_str(",\"event\":\"request\",\"impersonator\":");
        push_json_str(&mut out, self.impersonator);
        out.push_str(",\"user\":");
        push_json_str(&mut out, self.user);
        out.push_str(",\"method\":");
        push_json_str(&mut out, self.method);
        out.push_str(",\"path\":");
        push_json_str(&mut out, self.path);
        out.push_str(",\"status\":");
        push_u64(&mut out, u64::from(self.status));
        out.push_str(",\"session\":");
        push_json_str(&mut out, self.session);
        out.push('}');
        out
    }
}

/// `n` in decimal, without the formatting machinery.
fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in &digits[i..] {
        out.push(char::from(*d));
    }
}

/// `s` as a JSON string, escaped as serde_json escapes: `"`, `\\` and the
/// control characters, nothing else.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Why the audit refused to record or to be read.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The buffer is full (the sink has been failing for a while) or the
    /// writer has stopped: the caller refuses the request it was about to
    /// record.
    #[error("the impersonation audit cannot record this request: {0}; it is refused so that nothing happens unrecorded")]
    Unavailable(String),
    /// The sink could not be read.
    #[error("the impersonation audit cannot be read: {0}")]
    Unreadable(String),
    /// A query the audit cannot answer; says which parameter and why.
    #[error("bad audit query: {0}")]
    BadQuery(String),
}

impl Refuse for AuditError {
    fn status(&self) -> u16 {
        match self {
            AuditError::Unavailable(_) | AuditError::Unreadable(_) => 503,
            AuditError::BadQuery(_) => 400,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AuditError::Unavailable(_) | AuditError::Unreadable(_) => "audit_unavailable",
            AuditError::BadQuery(_) => "bad_audit_query",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            AuditError::Unavailable(_) | AuditError::Unreadable(_) => "Audit unavailable",
            AuditError::BadQuery(_) => "Bad audit query",
        }
    }

    fn headers(&self) -> Vec<(HeaderName, String)> {
        match self {
            // The writer retries at most BACKOFF_CAP apart.
            AuditError::Unavailable(_) | AuditError::Unreadable(_) => {
                vec![(http::header::RETRY_AFTER, BACKOFF_CAP.as_secs().to_string())]
            }
            AuditError::BadQuery(_) => Vec::new(),
        }
    }
}

/// The audit's metrics; registered with the gateway's by
/// [`Audit::register_metrics`].
#[derive(Clone)]
pub struct AuditMetrics {
    /// `guise_audit_records_total{outcome}`: `written`, `retried` (once
    /// per record per failed attempt), `refused` (buffer full or writer
    /// stopped).
    pub records: IntCounterVec,
    /// `guise_audit_buffered`: records waiting to be written.
    pub buffered: IntGauge,
}

impl AuditMetrics {
    fn new() -> AuditMetrics {
        let records = IntCounterVec::new(
            Opts::new(
                "guise_audit_records_total",
                "Impersonation audit records, by outcome: written to the sink, retried after a failed write (per record and attempt), refused because the buffer was full.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for outcome in ["written", "retried", "refused"] {
            records.with_label_values(&[outcome]);
        }
        let buffered = IntGauge::new(
            "guise_audit_buffered",
            "Impersonation audit records held in memory, waiting to be written.",
        )
        .expect("valid metric");
        AuditMetrics { records, buffered }
    }

    fn count(&self, outcome: &str, n: usize) {
        self.records
            .with_label_values(&[outcome])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// The count of `outcome` so far (for tests and logs).
    pub fn get(&self, outcome: &str) -> u64 {
        self.records.with_label_values(&[outcome]).get()
    }
}

/// What the handle and the writer share.
struct Inner {
    sink: Sink,
    capacity: usize,
    /// A std mutex: every critical section is a few queue operations and
    /// awaits nothing, and `record` must not wait on an async lock.
    queue: Mutex<Queue>,
    /// Records arrived: the writer has something to do.
    wake: Notify,
    /// Someone waits for the buffer to empty: cut the backoff short.
    kick: Notify,
    /// The writer finished an attempt (or stopped).
    progress: Notify,
    /// How many are waiting in [`Audit::flush`] or [`Audit::wait_flushed`].
    hurry: AtomicUsize,
    metrics: AuditMetrics,
}

struct Queue {
    /// JSON of each record, oldest first. The writer's batch stays here
    /// until written, so `capacity` bounds everything held and a failed
    /// batch keeps its place at the front.
    records: VecDeque<String>,
    /// The writer has stopped: nothing will be written any more.
    closed: bool,
}

impl Inner {
    /// Every critical section leaves the queue consistent before it can
    /// panic, so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Copies of the oldest records, at most [`BATCH_MAX`].
    fn peek(&self) -> Vec<String> {
        self.lock()
            .records
            .iter()
            .take(BATCH_MAX)
            .cloned()
            .collect()
    }

    /// The oldest `n` records were written: drop them.
    fn commit(&self, n: usize) {
        let mut q = self.lock();
        let n = n.min(q.records.len());
        q.records.drain(..n);
        self.metrics.buffered.set(q.records.len() as i64);
    }

    fn close(&self) -> usize {
        let mut q = self.lock();
        q.closed = true;
        q.records.len()
    }

    fn hurried(&self) -> Hurry<'_> {
        self.hurry.fetch_add(1, Ordering::AcqRel);
        self.kick.notify_one();
        Hurry(self)
    }
}

/// One waiter for the buffer to empty, counted out when dropped.
struct Hurry<'a>(&'a Inner);

impl Drop for Hurry<'_> {
    fn drop(&mut self) {
        self.0.hurry.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The handle the request path records through; cheap to clone.
#[derive(Clone)]
pub struct Audit {
    inner: Arc<Inner>,
}

/// Drains the buffer into the sink; run it as a pingora background service
/// (`background_service("audit", writer)`). Until it runs, records only
/// accumulate, and `record` refuses once the buffer is full.
pub struct AuditWriter {
    inner: Arc<Inner>,
}

// === impl Audit ===

impl Audit {
    /// An audit writing to `sink` that holds at most `buffer` records
    /// (`AuditSettings::buffer`; at least 1) while they wait, and the
    /// writer that drains it.
    pub fn new(sink: Sink, buffer: usize) -> (Audit, AuditWriter) {
        let inner = Arc::new(Inner {
            sink,
            capacity: buffer.max(1),
            queue: Mutex::new(Queue {
                records: VecDeque::new(),
                closed: false,
            }),
            wake: Notify::new(),
            kick: Notify::new(),
            progress: Notify::new(),
            hurry: AtomicUsize::new(0),
            metrics: AuditMetrics::new(),
        });
        (
            Audit {
                inner: inner.clone(),
            },
            AuditWriter { inner },
        )
    }

    /// Register the audit's metrics with the gateway's registry; once per
    /// registry (a second audit on the same one is refused by name).
    pub fn register_metrics(&self, metrics: &Metrics) -> prometheus::Result<()> {
        metrics.register(Box::new(self.inner.metrics.records.clone()))?;
        metrics.register(Box::new(self.inner.metrics.buffered.clone()))
    }

    /// The audit's metric handles.
    pub fn metrics(&self) -> &AuditMetrics {
        &self.inner.metrics
    }

    /// Where records go.
    pub fn sink(&self) -> &Sink {
        &self.inner.sink
    }

    /// Take `rec` for writing. Never waits: it only appends to the buffer
    /// in memory. [`AuditError::Unavailable`] when the buffer is full or
    /// the writer has stopped; the caller then refuses what it was about
    /// to do.
    pub fn record(&self, rec: AuditRecord) -> Result<(), AuditError> {
        let json = serde_json::to_string(&rec)
            .map_err(|e| AuditError::Unavailable(format!("the record has no JSON form: {e}")))?;
        self.push(json).map_err(|why| {
            self.refused(rec.event, &rec.impersonator, rec.user.as_deref(), &why);
            AuditError::Unavailable(why)
        })
    }

    /// Record a request made while impersonating: the [`AuditRecord`] of
    /// event `request` with these fields, written as JSON straight from
    /// borrowed parts. Every impersonated request makes one, so it skips
    /// the owned record and serde (the same JSON, see
    /// `request_json_is_the_records_json`). Refuses as [`Self::record`].
    pub fn record_request(&self, rec: &RequestRecord<'_>) -> Result<(), AuditError> {
        self.push(rec.to_json()).map_err(|why| {
            self.refused(AuditEvent::Request, rec.impersonator, Some(rec.user), &why);
            AuditError::Unavailable(why)
        })
    }

    /// Append one record's JSON to the buffer, or say why not.
    fn push(&self, json: String) -> Result<(), String> {
        let mut q = self.inner.lock();
        if q.closed {
            Err("the audit writer has stopped".to_string())
        } else if q.records.len() >= self.inner.capacity {
            Err(format!(
                "{} records are waiting for {} and the buffer holds no more",
                q.records.len(),
                self.inner.sink
            ))
        } else {
            q.records.push_back(json);
            self.inner.metrics.buffered.set(q.records.len() as i64);
            // Only the first record wakes the writer: while records are
            // waiting it is busy with them, and looks again after each
            // write (a wake per record cost every request a cross-thread
            // wake-up).
            if q.records.len() == 1 {
                self.inner.wake.notify_one();
            }
            Ok(())
        }
    }

    fn refused(&self, event: AuditEvent, impersonator: &str, user: Option<&str>, why: &str) {
        self.inner.metrics.count("refused", 1);
        tracing::warn!(
            event = ?event,
            impersonator = %impersonator,
            user = user.unwrap_or(""),
            reason = %why,
            "audit record refused"
        );
    }

    /// Whether a record would be taken now (the buffer has room and the
    /// writer runs): lets a caller refuse before doing any work.
    pub fn accepting(&self) -> bool {
        let q = self.inner.lock();
        !q.closed && q.records.len() < self.inner.capacity
    }

    /// Records waiting to be written.
    pub fn buffered(&self) -> usize {
        self.inner.lock().records.len()
    }

    /// Wait until every buffered record is written, or `timeout` passes;
    /// whether the buffer emptied. The writer retries at once and at most
    /// [`URGENT_BACKOFF`] apart meanwhile. For shutdown and tests.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let _hurry = self.inner.hurried();
        loop {
            let progress = self.inner.progress.notified();
            tokio::pin!(progress);
            // Registered before the check, so a write that ends between
            // the check and the wait still wakes us.
            progress.as_mut().enable();
            {
                let q = self.inner.lock();
                if q.records.is_empty() {
                    return true;
                }
                if q.closed {
                    return false;
                }
            }
            if tokio::time::timeout_at(deadline, progress).await.is_err() {
                return self.inner.lock().records.is_empty();
            }
        }
    }

    /// [`Audit::flush`] for a thread outside any runtime (the drain
    /// thread that ends the process): polls every 10 ms.
    pub fn wait_flushed(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let _hurry = self.inner.hurried();
        loop {
            {
                let q = self.inner.lock();
                if q.records.is_empty() {
                    return true;
                }
                if q.closed {
                    return false;
                }
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// One page of what the sink holds, newest first (see [`AuditQuery`]).
    /// Records still in the buffer are not included.
    pub async fn read(&self, q: &AuditQuery) -> Result<AuditPage, AuditError> {
        self.inner.sink.read(q).await
    }
}

// === impl AuditWriter ===

/// Closes the audit when the writer's task ends, however it ends (its
/// runtime dropped it at shutdown, or it panicked): from then on `record`
/// refuses rather than take records nobody will write.
struct Stopped(Arc<Inner>);

impl Drop for Stopped {
    fn drop(&mut self) {
        let left = self.0.close();
        self.0.progress.notify_waiters();
        if left > 0 {
            tracing::error!(
                unwritten = left,
                sink = %self.0.sink,
                "the audit writer stopped with records still buffered; they are lost"
            );
        }
    }
}

impl AuditWriter {
    async fn run(&self, mut shutdown: ShutdownWatch) {
        let inner = &self.inner;
        let _stopped = Stopped(inner.clone());
        let mut backoff = BACKOFF_START;
        let mut shutting_down = *shutdown.borrow();
        // Failed attempts since the last success, for the logs.
        let mut failures: u64 = 0;
        let mut lingered = false;
        loop {
            let batch = inner.peek();
            if batch.is_empty() {
                tokio::select! {
                    _ = inner.wake.notified() => {}
                    _ = shutdown.changed(), if !shutting_down => {
                        shutting_down = true;
                    }
                }
                continue;
            }
            let hurried = shutting_down || inner.hurry.load(Ordering::Acquire) > 0;
            if batch.len() < BATCH_MAX && !hurried && !lingered {
                lingered = true;
                tokio::select! {
                    _ = tokio::time::sleep(LINGER) => {}
                    _ = inner.kick.notified() => {}
                    _ = shutdown.changed(), if !shutting_down => {
                        shutting_down = true;
                    }
                }
                continue;
            }
            lingered = false;
            let n = batch.len();
            match inner.sink.write(batch).await {
                Ok(()) => {
                    inner.commit(n);
                    inner.metrics.count("written", n);
                    if failures > 0 {
                        tracing::info!(
                            sink = %inner.sink,
                            failed_attempts = failures,
                            buffered = inner.lock().records.len(),
                            "audit sink writable again"
                        );
                    }
                    failures = 0;
                    backoff = BACKOFF_START;
                    inner.progress.notify_waiters();
                }
                Err(e) => {
                    inner.metrics.count("retried", n);
                    failures += 1;
                    let buffered = inner.lock().records.len();
                    tracing::warn!(
                        sink = %inner.sink,
                        error = %e,
                        buffered,
                        capacity = inner.capacity,
                        retry_in_ms = backoff.as_millis() as u64,
                        "audit records not written; kept and retried"
                    );
                    inner.progress.notify_waiters();
                    let urgent = shutting_down || inner.hurry.load(Ordering::Acquire) > 0;
                    let wait = if urgent {
                        backoff.min(URGENT_BACKOFF)
                    } else {
                        backoff
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = inner.kick.notified() => {}
                        _ = shutdown.changed(), if !shutting_down => {
                            shutting_down = true;
                            tracing::info!(
                                buffered = inner.lock().records.len(),
                                "shutting down: audit writes retried at once"
                            );
                        }
                    }
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for AuditWriter {
    /// Runs until its runtime stops it: records made while requests drain
    /// after the shutdown signal are written too (see the module docs).
    async fn start(&self, shutdown: ShutdownWatch) {
        self.run(shutdown).await
    }
}

#[cfg(test)]
mod tests;

/// The process exits without running destructors: what is buffered is
/// written first, within the time given.
impl crate::drain::BeforeExit for Audit {
    fn before_exit(&self, timeout: Duration) {
        let left = self.buffered();
        if left > 0 && !self.wait_flushed(timeout) {
            tracing::error!(
                unwritten = self.buffered(),
                "exiting with impersonation audit records that could not be written"
            );
        }
    }
}
