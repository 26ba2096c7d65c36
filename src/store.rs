//! Shared state behind one trait: sessions, login-attempt counters, user
//! records changed through the admin API, one-time tokens (set-password
//! links), the impersonation audit stream, and the event channel that
//! carries revocations between gateway nodes.
//!
//! Two implementations pass the same conformance tests: [`memory`] (one
//! node, the embedded default) and [`redis`] (standalone, Sentinel or
//! Cluster). The store only ever sees a *hash* of a session token
//! ([`SessionKey`]) or of a link's secret, never the secret itself, so a
//! dump of Redis cannot be replayed as cookies or links.

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// SHA-256 of a session token, lower-case hex. What the store keys on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionKey(pub String);

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The effective user.
    pub user_id: String,
    /// Short non-secret reference (for logs, admin listings and the
    /// `x-guise-session` header); unique per session.
    pub reference: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of the last refresh of the idle timeout.
    pub last_seen: u64,
    /// Unix seconds after which the session is dead whatever its activity.
    pub absolute_expiry: u64,
    /// Token that state-changing gateway endpoints require.
    pub csrf_token: String,
    /// Client address at login, for admin listings.
    #[serde(default)]
    pub client_ip: Option<String>,
    /// Free-form fields later stages keep with the session (impersonation
    /// keeps the real actor here). Stored as-is.
    #[serde(default)]
    pub extra: std::collections::BTreeMap<String, String>,
}

/// What travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoreEvent {
    /// Evict this session from every node's cache. `reason` is what its
    /// open tabs are told (`impersonation started in another tab`), when
    /// the session did not simply end.
    SessionRevoked {
        key: SessionKey,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A user record changed: drop cached copies of the user.
    UserChanged { user_id: String },
    /// Records of `kind` changed (partners, bundles, tenants): reload them.
    RecordsChanged { kind: String },
    /// Local only, never published: the event stream was interrupted
    /// (reconnect), so events may have been missed; drop whole caches.
    Resync,
}

/// What [`Store::touch_session`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Touch {
    /// `last_seen` and the idle deadline were written.
    Written,
    /// Nothing was written: the session was refreshed recently enough (or
    /// is past its absolute expiry). Carries the stored `last_seen`, from
    /// which the caller's next refresh is due.
    Recent(u64),
    /// The session does not exist (expired, deleted or never was); nothing
    /// is created.
    Gone,
}

/// A session read by [`Store::read_session_touching`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reread {
    /// The record after the read, with the new `last_seen` if it was slid.
    pub record: SessionRecord,
    /// Whether this read wrote the slide (for counting refreshes).
    pub written: bool,
}

/// A counter bumped within a window (login attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Count within the current window, including this hit.
    pub count: u64,
    /// Time until the window ends.
    pub resets_in: Duration,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend is down or did not answer in time.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read back (corrupt or from an
    /// incompatible version).
    #[error("session store holds an unreadable value at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The store cannot be built from its configuration (a URL the Redis
    /// client refuses, such as `rediss://` without TLS support). Reported
    /// at start-up, never by an operation, so the gateway refuses to start
    /// instead of running without sessions.
    #[error("session store misconfigured: {0}")]
    Config(String),
    /// The caller passed an argument the store cannot use (an audit cursor
    /// that is not an entry id). A bug of the caller, which should have
    /// checked it: nothing was asked of the backend.
    #[error("session store refused an argument: {0}")]
    Invalid(String),
}

/// The id of an audit stream entry, `<unix ms>-<sequence>` as Redis Streams
/// make them: ordered by time, then by sequence within a millisecond.
///
/// Parsed strictly (two decimal numbers and a dash), so a cursor from a
/// client is checked before any store sees it; Redis itself would also take
/// `-`, `+` or a bare millisecond, which mean other things in a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl std::str::FromStr for StreamId {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<StreamId, StoreError> {
        let bad = || StoreError::Invalid(format!("`{s}` is not an audit entry id (<ms>-<seq>)"));
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let number = |n: &str| {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            n.parse::<u64>().map_err(|_| bad())
        };
        Ok(StreamId {
            ms: number(ms)?,
            seq: number(seq)?,
        })
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend, for logs and `/readyz` (`memory`, `redis`, ...).
    fn kind(&self) -> &'static str;

    /// Answer if the backend is reachable.
    async fn ping(&self) -> Result<(), StoreError>;

    // === sessions ===

    /// Store a new session, expiring after `idle` unless touched, and add it
    /// to the user's index.
    async fn put_session(
        &self,
        key: &SessionKey,
        rec: &SessionRecord,
        idle: Duration,
    ) -> Result<(), StoreError>;

    /// The session, if it exists and has not expired.
    async fn get_session(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError>;

    /// Slide the session's idle deadline: set `last_seen` to `now` and the
    /// idle timeout to `idle` from now, unless the stored `last_seen` is
    /// already within `refresh_gap` of `now` (or the session is past its
    /// `absolute_expiry`, which no refresh can help). Atomic per session.
    ///
    /// The stored `last_seen`, not each node's memory, decides whether a
    /// refresh is due: of several nodes serving one session without sticky
    /// balancing, only the first to find it due writes, and the others
    /// learn from [`Touch::Recent`] when it was written, so the session is
    /// written about once per `refresh_gap` however many nodes serve it.
    /// A stored `last_seen` ahead of `now` (another node's clock is ahead)
    /// counts as recent; a zero `refresh_gap` always writes.
    async fn touch_session(
        &self,
        key: &SessionKey,
        now: u64,
        idle: Duration,
        refresh_gap: Duration,
    ) -> Result<Touch, StoreError>;

    /// The session as [`Store::get_session`] reads it, slid in the same
    /// step as [`Store::touch_session`] would slide it: one round trip for
    /// the re-read a node makes of a cached session anyway. The record is
    /// returned as it is after the step (with the new `last_seen` when it
    /// was written).
    ///
    /// Only for reads made because the session is being used (a request
    /// carries it); reads that must not keep a session alive (an open
    /// tab's keep-alive check) use [`Store::get_session`].
    async fn read_session_touching(
        &self,
        key: &SessionKey,
        now: u64,
        idle: Duration,
        refresh_gap: Duration,
    ) -> Result<Option<Reread>, StoreError>;

    /// Delete the session and drop it from its user's index; the record it
    /// had, if any. Does not publish anything.
    async fn delete_session(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError>;

    /// Every live session of `user_id` (expired index entries are pruned).
    async fn user_sessions(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError>;

    /// Number of live sessions (for the active-sessions gauge; may be
    /// approximate within the idle timeout).
    async fn session_count(&self) -> Result<u64, StoreError>;

    // === login-attempt counters ===

    /// Count one hit on `counter` within a fixed `window` that starts at
    /// the first hit.
    async fn hit(&self, counter: &str, window: Duration) -> Result<Hit, StoreError>;

    /// Forget `counter` (after a successful login).
    async fn reset(&self, counter: &str) -> Result<(), StoreError>;

    /// Take back one hit on `counter`, if it has any left in its window (an
    /// attempt that turned out to be a successful login does not count).
    async fn forgive(&self, counter: &str) -> Result<(), StoreError>;

    // === user records changed through the admin API ===

    /// Save a user record (JSON) under its id; survives restarts on Redis.
    async fn save_user(&self, user_id: &str, json: &str) -> Result<(), StoreError>;

    /// Every saved user record, id → JSON.
    async fn load_users(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// The saved record of one user, if any (a node that has not yet heard
    /// of a user another node just added reads it here).
    async fn load_user(&self, user_id: &str) -> Result<Option<String>, StoreError>;

    // === one-time tokens ===

    /// Keep `value` under `key` for `ttl`, replacing what was there. For
    /// secrets that work once (set-password links): callers pass a hash of
    /// the secret as `key`, never the secret.
    async fn put_once(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Replace the value under `key` with `spent`, keeping the key's
    /// remaining lifetime, and return what was there. `None` when the key
    /// is not there (never put, or its lifetime is over); nothing is stored
    /// then. Atomic: of two nodes swapping the same key at once, exactly
    /// one reads the value that was put, the other reads `spent`; so a
    /// spent token can be told apart from an unknown one until it dies.
    async fn swap_once(&self, key: &str, spent: &str) -> Result<Option<String>, StoreError>;

    /// The value under `key` without spending it, if the key is there: a
    /// link's page says at once that the link is dead rather than after
    /// the form is filled in. Decisions are made on [`Store::swap_once`],
    /// never on this.
    async fn peek_once(&self, key: &str) -> Result<Option<String>, StoreError>;

    // === other records changed through the admin API (partners, ...) ===

    /// Save a record (JSON) of `kind` (`partner`, `bundle`, `tenant`) under
    /// its id; survives restarts on Redis.
    async fn save_record(&self, kind: &str, id: &str, json: &str) -> Result<(), StoreError>;

    /// Every saved record of `kind`, id → JSON.
    async fn load_records(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// Save a record only if it still holds `expected` (`None`: only if
    /// there is none), atomically: `false`, and nothing written, when
    /// another writer got there first. Read-modify-write edits of one
    /// shared record (the data-permission policy) use it so that two
    /// admins saving at once never silently lose one change.
    async fn replace_record(
        &self,
        kind: &str,
        id: &str,
        expected: Option<&str>,
        json: &str,
    ) -> Result<bool, StoreError>;

    // === the impersonation audit stream ===

    /// Append `entries` (one JSON document each) to the audit stream, in
    /// order, keeping about the newest `max_len`: at least that many, as
    /// Redis' `MAXLEN ~`, which trims only whole stream nodes because exact
    /// trimming costs a node rewrite per append. One round trip, all or
    /// nothing.
    ///
    /// Never repeated by the store itself, unlike the other operations: a
    /// batch whose answer was lost fails, though Redis may have appended
    /// it, and a caller that tries again may append it twice. The audit
    /// writer does try again, so the stream is at-least-once.
    async fn append_audit(&self, entries: &[String], max_len: u64) -> Result<(), StoreError>;

    /// Up to `count` audit entries, newest first, as (id, JSON): from the
    /// newest, or strictly older than `before` (an id an earlier answer
    /// gave, in the form of [`StreamId`]; anything else is
    /// [`StoreError::Invalid`]). An entry without the record field (added
    /// by hand) reads as an empty string.
    async fn read_audit(
        &self,
        before: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, String)>, StoreError>;

    // === events between nodes ===

    /// Send `event` to every node, this one included.
    async fn publish(&self, event: &StoreEvent) -> Result<(), StoreError>;

    /// Receive every published event, plus [`StoreEvent::Resync`] whenever
    /// the stream was interrupted and events may have been lost.
    fn subscribe(&self) -> broadcast::Receiver<StoreEvent>;
}
