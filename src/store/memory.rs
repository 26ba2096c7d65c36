//! The one-node store: everything in a map guarded by one mutex.
//!
//! It is the embedded default, so it must behave exactly like the Redis
//! store as seen through [`Store`]: idle expiry makes entries invisible the
//! moment they pass their deadline (like a Redis key TTL), counters use a
//! fixed window that starts at the first hit (like `INCR` + `PEXPIRE`), and
//! events published here reach every subscriber of this same store (the
//! only node there is).
//!
//! Time comes from [`tokio::time::Instant`] so unit tests pause the tokio
//! clock and advance it instead of sleeping. Audit entry ids are the
//! exception: like Redis' they carry wall-clock milliseconds, because they
//! are read as times (see [`crate::audit`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::{
    Hit, Reread, SessionKey, SessionRecord, Store, StoreError, StoreEvent, StreamId, Touch,
};

/// How many events a slow subscriber may fall behind before it lags (and
/// sees `RecvError::Lagged`, on which a cache should drop everything).
const EVENT_CAPACITY: usize = 1024;

/// Dead entries are invisible at once, but only removed from the maps on
/// access or by a sweep at most this often, so a burst of writes does not
/// scan the whole map each time.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Most login-attempt counters kept at once. Counters are made by
/// anonymous clients (one per client network and per username tried), so
/// they must not grow without bound: past this many live ones, a new
/// counter is refused and the login fails closed (503) until windows end.
/// About 100 bytes each, so the cap bounds them near 100 MB.
pub const MAX_COUNTERS: usize = 1_000_000;

/// Sessions, counters, users and events of a single gateway node.
pub struct MemoryStore {
    /// A std mutex: no critical section awaits anything, and each is a few
    /// map operations, so an async mutex would only add overhead.
    state: Mutex<State>,
    events: broadcast::Sender<StoreEvent>,
}

struct State {
    sessions: HashMap<SessionKey, Entry>,
    /// user id → keys of that user's sessions; entries may be dead until
    /// the next read or sweep prunes them.
    by_user: HashMap<String, HashSet<SessionKey>>,
    counters: HashMap<String, Window>,
    users: BTreeMap<String, String>,
    /// One-time tokens: key → (value, expiry).
    once: HashMap<String, (String, Instant)>,
    records: BTreeMap<(String, String), String>,
    /// The audit ring, oldest first; ids strictly increase.
    audit: VecDeque<(StreamId, String)>,
    /// The last id handed out, so ids keep increasing even after the ring
    /// was emptied or the wall clock stepped back.
    audit_last: StreamId,
    next_sweep: Instant,
}

struct Entry {
    rec: SessionRecord,
    expires: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        now < self.expires
    }

    /// Set `last_seen` to `now` and the deadline to `idle` from `at`,
    /// unless the stored `last_seen` is within `gap` of `now` or the
    /// session is past its absolute expiry; whether it wrote. The rule of
    /// the Redis store's `TOUCH` script.
    fn slide(&mut self, now: u64, idle: Duration, gap: Duration, at: Instant) -> bool {
        let age = now.saturating_sub(self.rec.last_seen);
        if age < gap.as_secs() || self.rec.absolute_expiry <= now {
            return false;
        }
        self.rec.last_seen = now;
        self.expires = at + idle;
        true
    }
}

struct Window {
    count: u64,
    ends: Instant,
}

// === impl MemoryStore ===

impl MemoryStore {
    pub fn new() -> MemoryStore {
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        MemoryStore {
            state: Mutex::new(State {
                sessions: HashMap::new(),
                by_user: HashMap::new(),
                counters: HashMap::new(),
                users: BTreeMap::new(),
                once: HashMap::new(),
                records: BTreeMap::new(),
                audit: VecDeque::new(),
                audit_last: StreamId { ms: 0, seq: 0 },
                next_sweep: Instant::now() + SWEEP_EVERY,
            }),
            events,
        }
    }

    /// Every critical section leaves the maps consistent before it can
    /// panic, so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

// === impl State ===

impl State {
    /// Remove a session and its index entry; the entry as it was.
    fn remove(&mut self, key: &SessionKey) -> Option<Entry> {
        let entry = self.sessions.remove(key)?;
        if let Some(keys) = self.by_user.get_mut(&entry.rec.user_id) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_user.remove(&entry.rec.user_id);
            }
        }
        Some(entry)
    }

    /// The live session under `key`; a dead one is removed on the way.
    fn live(&mut self, key: &SessionKey, now: Instant) -> Option<&mut Entry> {
        if self.sessions.get(key).is_some_and(|e| !e.live(now)) {
            self.remove(key);
        }
        self.sessions.get_mut(key)
    }

    /// The next audit entry id, made as Redis makes them: the wall clock's
    /// millisecond, or the last id's with the next sequence number when the
    /// clock has not moved past it.
    fn next_audit_id(&mut self) -> StreamId {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let last = self.audit_last;
        let id = if now_ms > last.ms {
            StreamId { ms: now_ms, seq: 0 }
        } else {
            StreamId {
                ms: last.ms,
                seq: last.seq.saturating_add(1),
            }
        };
        self.audit_last = id;
        id
    }

    fn sweep_if_due(&mut self, now: Instant) {
        if now >= self.next_sweep {
            self.sweep(now);
        }
    }

    /// Drop every dead session (with its index entry) and ended counter.
    fn sweep(&mut self, now: Instant) {
        let dead: Vec<SessionKey> = self
            .sessions
            .iter()
            .filter(|(_, e)| !e.live(now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &dead {
            self.remove(key);
        }
        self.counters.retain(|_, w| now < w.ends);
        self.once.retain(|_, (_, ends)| now < *ends);
        self.next_sweep = now + SWEEP_EVERY;
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn put_session(
        &self,
        key: &SessionKey,
        rec: &SessionRecord,
        idle: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut st = self.lock();
        st.sweep_if_due(now);
        // A key re-used for another user must leave the old user's index.
        st.remove(key);
        st.by_user
            .entry(rec.user_id.clone())
            .or_default()
            .insert(key.clone());
        st.sessions.insert(
            key.clone(),
            Entry {
                rec: rec.clone(),
                expires: now + idle,
            },
        );
        Ok(())
    }

    async fn get_session(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        let now = Instant::now();
        Ok(self.lock().live(key, now).map(|e| e.rec.clone()))
    }

    async fn touch_session(
        &self,
        key: &SessionKey,
        now: u64,
        idle: Duration,
        refresh_gap: Duration,
    ) -> Result<Touch, StoreError> {
        let at = Instant::now();
        let mut st = self.lock();
        Ok(match st.live(key, at) {
            Some(e) => match e.slide(now, idle, refresh_gap, at) {
                true => Touch::Written,
                false => Touch::Recent(e.rec.last_seen),
            },
            None => Touch::Gone,
        })
    }

    async fn read_session_touching(
        &self,
        key: &SessionKey,
        now: u64,
        idle: Duration,
        refresh_gap: Duration,
    ) -> Result<Option<Reread>, StoreError> {
        let at = Instant::now();
        let mut st = self.lock();
        Ok(st.live(key, at).map(|e| {
            let written = e.slide(now, idle, refresh_gap, at);
            Reread {
                record: e.rec.clone(),
                written,
            }
        }))
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        let now = Instant::now();
        let entry = self.lock().remove(key);
        Ok(entry.filter(|e| e.live(now)).map(|e| e.rec))
    }

    async fn user_sessions(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let now = Instant::now();
        let mut st = self.lock();
        let keys: Vec<SessionKey> = match st.by_user.get(user_id) {
            Some(keys) => keys.iter().cloned().collect(),
            None => return Ok(Vec::new()),
        };
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // `live` prunes the index entry of a dead session.
            if let Some(e) = st.live(&key, now) {
                out.push((key, e.rec.clone()));
            }
        }
        Ok(out)
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        let now = Instant::now();
        let mut st = self.lock();
        st.sweep(now);
        Ok(st.sessions.len() as u64)
    }

    async fn hit(&self, counter: &str, window: Duration) -> Result<Hit, StoreError> {
        let now = Instant::now();
        let mut st = self.lock();
        st.sweep_if_due(now);
        if st.counters.len() >= MAX_COUNTERS && !st.counters.contains_key(counter) {
            st.sweep(now);
            if st.counters.len() >= MAX_COUNTERS {
                return Err(StoreError::Unavailable(format!(
                    "{MAX_COUNTERS} login-attempt counters are live; refusing to count more until windows end"
                )));
            }
        }
        let w = st
            .counters
            .entry(counter.to_string())
            .and_modify(|w| {
                if now >= w.ends {
                    *w = Window {
                        count: 0,
                        ends: now + window,
                    };
                }
            })
            .or_insert(Window {
                count: 0,
                ends: now + window,
            });
        w.count += 1;
        Ok(Hit {
            count: w.count,
            resets_in: w.ends - now,
        })
    }

    async fn reset(&self, counter: &str) -> Result<(), StoreError> {
        self.lock().counters.remove(counter);
        Ok(())
    }

    async fn forgive(&self, counter: &str) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(w) = st.counters.get_mut(counter) {
            if now < w.ends {
                w.count = w.count.saturating_sub(1);
            }
        }
        Ok(())
    }

    async fn save_user(&self, user_id: &str, json: &str) -> Result<(), StoreError> {
        self.lock()
            .users
            .insert(user_id.to_string(), json.to_string());
        Ok(())
    }

    async fn load_users(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .lock()
            .users
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn load_user(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.lock().users.get(user_id).cloned())
    }

    async fn put_once(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut st = self.lock();
        st.sweep_if_due(now);
        st.once
            .insert(key.to_string(), (value.to_string(), now + ttl));
        Ok(())
    }

    async fn swap_once(&self, key: &str, spent: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let mut st = self.lock();
        Ok(match st.once.get_mut(key) {
            Some((value, ends)) if now < *ends => Some(std::mem::replace(value, spent.to_string())),
            _ => None,
        })
    }

    async fn peek_once(&self, key: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        let st = self.lock();
        Ok(st
            .once
            .get(key)
            .filter(|(_, ends)| now < *ends)
            .map(|(v, _)| v.clone()))
    }

    async fn save_record(&self, kind: &str, id: &str, json: &str) -> Result<(), StoreError> {
        self.lock()
            .records
            .insert((kind.to_string(), id.to_string()), json.to_string());
        Ok(())
    }

    async fn replace_record(
        &self,
        kind: &str,
        id: &str,
        expected: Option<&str>,
        json: &str,
    ) -> Result<bool, StoreError> {
        let mut st = self.lock();
        let key = (kind.to_string(), id.to_string());
        if st.records.get(&key).map(String::as_str) != expected {
            return Ok(false);
        }
        st.records.insert(key, json.to_string());
        Ok(true)
    }

    async fn load_records(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .lock()
            .records
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, id), json)| (id.clone(), json.clone()))
            .collect())
    }

    async fn append_audit(&self, entries: &[String], max_len: u64) -> Result<(), StoreError> {
        let mut st = self.lock();
        for json in entries {
            let id = st.next_audit_id();
            st.audit.push_back((id, json.clone()));
        }
        // Trimmed exactly: a ring of `max_len`, which keeps the promise of
        // "at least `max_len`" that Redis' approximate trimming makes.
        let keep = usize::try_from(max_len).unwrap_or(usize::MAX);
        let excess = st.audit.len().saturating_sub(keep);
        st.audit.drain(..excess);
        Ok(())
    }

    async fn read_audit(
        &self,
        before: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let before: Option<StreamId> = before.map(str::parse).transpose()?;
        let st = self.lock();
        // Ids increase along the ring, so those older than `before` are a
        // prefix of it: find where it ends, then walk back.
        let end = match before {
            Some(b) => st.audit.partition_point(|(id, _)| *id < b),
            None => st.audit.len(),
        };
        Ok(st
            .audit
            .range(..end)
            .rev()
            .take(count)
            .map(|(id, json)| (id.to_string(), json.clone()))
            .collect())
    }

    async fn publish(&self, event: &StoreEvent) -> Result<(), StoreError> {
        // No subscriber is not an error: nobody has anything to evict.
        let _ = self.events.send(event.clone());
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests;
