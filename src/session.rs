//! Sessions: creating them at login, finding them per request through a
//! per-node cache, and ending them everywhere at once.
//!
//! The store (Redis or memory) is the truth; each node keeps a moka cache in
//! front of it so that a request with a cached session sends no command to
//! the store. Three things keep the cache honest:
//! - revocations are published by the store and evicted on every node
//!   (and remembered as tombstones, so a lookup racing a revocation cannot
//!   put the session back);
//! - after the event stream was interrupted, the whole cache is dropped;
//! - every entry is re-read from the store after `cache_ttl` at the latest,
//!   in case a message was lost anyway.
//!
//! Sliding expiry is written to the store at most once per
//! `refresh_interval` per session, not per request and not per node: the
//! stored `last_seen` says when it was last written, and the re-read a
//! node makes anyway slides it when due (see [`SessionManager::resolve`]). While the store is unreachable, a
//! cached session keeps working for `stale_grace` past its cache life, then
//! requests get 503.

pub mod cookie;
pub mod token;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::config::Sessions as Settings;
use crate::events::EventSink;
use crate::identity::PreparedSlot;
use crate::metrics::Metrics;
use crate::store::{SessionKey, SessionRecord, Store, StoreError, StoreEvent};

pub use token::Token;

/// Why a session could not be created, found or ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the gateway cannot reach its session store right now, so it cannot check who you are; try again shortly")]
    StoreUnavailable(#[source] StoreError),
}

impl crate::respond::Refuse for SessionError {
    fn status(&self) -> u16 {
        503
    }
    fn code(&self) -> &'static str {
        "session_store_unavailable"
    }
    fn title(&self) -> &'static str {
        "Session store unavailable"
    }
    fn headers(&self) -> Vec<(http::HeaderName, String)> {
        vec![(http::header::RETRY_AFTER, "1".to_string())]
    }
}

/// A session found for a request.
#[derive(Debug, Clone)]
pub struct Active {
    pub key: SessionKey,
    pub record: Arc<SessionRecord>,
    /// The identity headers of this session's subject, prepared once and
    /// shared by its requests while its cache entry lives on this node.
    pub prepared: Arc<PreparedSlot>,
}

struct Cached {
    record: Arc<SessionRecord>,
    prepared: Arc<PreparedSlot>,
    /// When this node last read the record from the store.
    fetched: tokio::time::Instant,
    /// Unix seconds from which this node's next refresh is due: the stored
    /// `last_seen` as of its last read (whichever node wrote it), or the
    /// time a request of this node claimed the refresh.
    refreshed: AtomicU64,
}

/// Sessions of one gateway node.
pub struct SessionManager {
    store: Arc<dyn Store>,
    cache: moka::future::Cache<SessionKey, Arc<Cached>>,
    /// Recently revoked keys: a store read that raced the revocation must
    /// not re-insert the session.
    tombstones: moka::sync::Cache<SessionKey, ()>,
    settings: Settings,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
    /// Resolved once: a labelled lookup per request costs a hash and a lock.
    hits: prometheus::IntCounter,
    misses: prometheus::IntCounter,
    refreshes: prometheus::IntCounter,
}

impl SessionManager {
    pub fn new(
        store: Arc<dyn Store>,
        settings: Settings,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
    ) -> Arc<Self> {
        let cache = moka::future::Cache::builder()
            .max_capacity(settings.cache_capacity)
            .time_to_live(settings.cache_ttl + settings.stale_grace)
            .build();
        let tombstones = moka::sync::Cache::builder()
            .max_capacity(100_000)
            .time_to_live(settings.cache_ttl + settings.stale_grace)
            .build();
        let hits = metrics.session_cache.with_label_values(&["hit"]);
        let misses = metrics.session_cache.with_label_values(&["miss"]);
        let refreshes = metrics.session_refreshes.clone();
        Arc::new(SessionManager {
            store,
            cache,
            tombstones,
            settings,
            metrics,
            clock,
            hits,
            misses,
            refreshes,
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The clock sessions expire by.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The same clock, to share with other parts of the gateway.
    pub fn clock_handle(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The store counts its own Redis errors (`guise_redis_errors_total`).
    fn store_err(&self, e: StoreError) -> SessionError {
        SessionError::StoreUnavailable(e)
    }

    /// Start a session for `user_id` under a fresh token (never reusing one
    /// the client brought: no fixation).
    pub async fn create(
        &self,
        user_id: &str,
        client_ip: Option<String>,
        extra: BTreeMap<String, String>,
    ) -> Result<(Token, Active), SessionError> {
        let token = Token::generate();
        let key = token.key();
        let now = self.clock.unix_now();
        let record = SessionRecord {
            user_id: user_id.to_string(),
            reference: token::reference_of(&key),
            created_at: now,
            last_seen: now,
            absolute_expiry: now + self.settings.absolute_lifetime.as_secs(),
            csrf_token: token::random_b64(32),
            client_ip,
            extra,
        };
        self.store
            .put_session(&key, &record, self.settings.idle_timeout)
            .await
            .map_err(|e| self.store_err(e))?;
        let record = Arc::new(record);
        let c = self.cache_insert(&key, record.clone(), now).await;
        Ok((
            token,
            Active {
                key,
                record,
                prepared: c.prepared.clone(),
            },
        ))
    }

    async fn cache_insert(
        &self,
        key: &SessionKey,
        record: Arc<SessionRecord>,
        refreshed: u64,
    ) -> Arc<Cached> {
        let c = Arc::new(Cached {
            record,
            prepared: Arc::default(),
            fetched: self.clock.instant(),
            refreshed: AtomicU64::new(refreshed),
        });
        if !self.tombstones.contains_key(key) {
            self.cache.insert(key.clone(), c.clone()).await;
        }
        c
    }

    /// The live session for `token`, if any.
    ///
    /// A cached entry younger than `cache_ttl` is served without asking
    /// the store, unless the idle deadline is due for a refresh; otherwise
    /// the session is re-read with [`Store::read_session_touching`], which
    /// slides the idle deadline in the same round trip when the *stored*
    /// `last_seen` is a `refresh_interval` old. So a node makes one round
    /// trip per session per `cache_ttl` (or per `refresh_interval`, if that
    /// is shorter), and the store writes about once per `refresh_interval`
    /// per session however many nodes serve it.
    pub async fn resolve(&self, token: &Token) -> Result<Option<Active>, SessionError> {
        let key = token.key();
        if self.tombstones.contains_key(&key) {
            return Ok(None);
        }
        let now = self.clock.unix_now();
        let cached = self.cache.get(&key).await;
        match &cached {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        }
        // The `refreshed` this request claimed for its re-read, to give
        // back should the store not answer.
        let mut claimed = None;
        if let Some(c) = &cached {
            if c.record.absolute_expiry <= now {
                self.cache.invalidate(&key).await;
                return Ok(None);
            }
            let refreshed = c.refreshed.load(Ordering::Relaxed);
            let last = c.record.last_seen.max(refreshed);
            let idle_ok = now < last + self.settings.idle_timeout.as_secs();
            if idle_ok && self.age(c) < self.settings.cache_ttl {
                let due = now >= refreshed + self.settings.refresh_interval.as_secs();
                // Only one request per interval makes the early re-read;
                // the others are served from the cache meanwhile.
                if !due
                    || c.refreshed
                        .compare_exchange(refreshed, now, Ordering::AcqRel, Ordering::Relaxed)
                        .is_err()
                {
                    return Ok(Some(Self::active(key, c)));
                }
                claimed = Some(refreshed);
            }
        }
        // Not cached, too old, idle as far as this node knows (another
        // node may have refreshed it), or due for a refresh: ask the store,
        // which slides the idle deadline if nobody did so recently.
        let read = self
            .store
            .read_session_touching(
                &key,
                now,
                self.settings.idle_timeout,
                self.settings.refresh_interval,
            )
            .await;
        match read {
            Ok(Some(r)) if r.record.absolute_expiry > now => {
                if r.written {
                    self.refreshes.inc();
                }
                // Whoever wrote last, this node or another: the next
                // refresh is due an interval after the stored `last_seen`.
                let refreshed = r.record.last_seen;
                let c = self.cache_insert(&key, Arc::new(r.record), refreshed).await;
                Ok(Some(Self::active(key, &c)))
            }
            Ok(_) => {
                self.cache.invalidate(&key).await;
                Ok(None)
            }
            Err(e) => {
                let err = self.store_err(e);
                match cached {
                    // Within the staleness bound a cached session still
                    // serves; moka drops entries past it on its own. A
                    // refresh that failed is tried again by a later
                    // request.
                    Some(c)
                        if self.age(&c) < self.settings.cache_ttl + self.settings.stale_grace =>
                    {
                        if let Some(refreshed) = claimed {
                            c.refreshed.store(refreshed, Ordering::Relaxed);
                        }
                        tracing::debug!(error = %err, "session store unavailable; serving cached session");
                        Ok(Some(Self::active(key, &c)))
                    }
                    _ => Err(err),
                }
            }
        }
    }

    fn active(key: SessionKey, c: &Cached) -> Active {
        Active {
            key,
            record: c.record.clone(),
            prepared: c.prepared.clone(),
        }
    }

    /// How long ago this node read the entry from the store.
    fn age(&self, c: &Cached) -> std::time::Duration {
        self.clock.instant().duration_since(c.fetched)
    }

    /// End one session on every node.
    pub async fn revoke(&self, key: &SessionKey) -> Result<Option<SessionRecord>, SessionError> {
        self.revoke_because(key, None).await
    }

    /// End one session on every node, telling its open tabs `reason`.
    pub async fn revoke_because(
        &self,
        key: &SessionKey,
        reason: Option<&str>,
    ) -> Result<Option<SessionRecord>, SessionError> {
        self.forget(key).await;
        let old = self
            .store
            .delete_session(key)
            .await
            .map_err(|e| self.store_err(e))?;
        self.store
            .publish(&StoreEvent::SessionRevoked {
                key: key.clone(),
                reason: reason.map(str::to_string),
            })
            .await
            .map_err(|e| self.store_err(e))?;
        self.metrics.revocations.with_label_values(&["sent"]).inc();
        if let Some(rec) = &old {
            tracing::info!(user = %rec.user_id, session = %rec.reference, "session revoked");
        }
        Ok(old)
    }

    /// End every session of `user_id` ("log out everywhere"); how many.
    pub async fn revoke_user(&self, user_id: &str) -> Result<usize, SessionError> {
        let sessions = self.list(user_id).await?;
        let mut n = 0;
        for (key, _) in sessions {
            if self.revoke(&key).await?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Live sessions of `user_id`.
    pub async fn list(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, SessionError> {
        self.store
            .user_sessions(user_id)
            .await
            .map_err(|e| self.store_err(e))
    }

    async fn forget(&self, key: &SessionKey) {
        self.tombstones.insert(key.clone(), ());
        self.cache.invalidate(key).await;
    }

    /// Apply an event from the store's channel to this node's cache.
    pub async fn on_event(&self, ev: &StoreEvent) {
        match ev {
            StoreEvent::SessionRevoked { key, .. } => {
                self.metrics
                    .revocations
                    .with_label_values(&["received"])
                    .inc();
                self.forget(key).await;
            }
            StoreEvent::Resync => {
                tracing::info!("session event stream was interrupted; dropping the session cache");
                self.cache.invalidate_all();
            }
            StoreEvent::UserChanged { .. } | StoreEvent::RecordsChanged { .. } => {}
        }
    }

    /// Sessions in this node's cache (for tests and the memory benchmark).
    pub async fn cached_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.entry_count()
    }

    /// Update the active-sessions gauge from the store.
    pub async fn update_gauge(&self) {
        match self.store.session_count().await {
            Ok(n) => self.metrics.sessions_active.set(n as i64),
            Err(e) => {
                let _ = self.store_err(e);
            }
        }
    }
}

#[async_trait]
impl EventSink for SessionManager {
    async fn on_event(&self, ev: &StoreEvent) {
        SessionManager::on_event(self, ev).await
    }
}

#[async_trait]
impl crate::ops::ScrapeHook for SessionManager {
    async fn before_scrape(&self) {
        self.update_gauge().await
    }
}

/// `/readyz`: the session store answers (and `guise_session_store_up`
/// says so).
pub struct StoreReady(pub Arc<dyn Store>, pub prometheus::IntGauge);

#[async_trait]
impl crate::ops::ReadyCheck for StoreReady {
    fn name(&self) -> &'static str {
        "session_store"
    }

    async fn check(&self) -> Result<(), String> {
        let r = self.0.ping().await.map_err(|e| e.to_string());
        self.1.set(r.is_ok() as i64);
        r
    }
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.store.kind())
            .finish()
    }
}

#[cfg(test)]
mod tests;
