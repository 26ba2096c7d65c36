//! The shared store: Redis standalone, Sentinel-managed or Cluster.
//!
//! # Key layout
//!
//! | key                              | type   | holds                                         |
//! |----------------------------------|--------|-----------------------------------------------|
//! | `guise:session:{<key>}`          | string | JSON [`SessionRecord`], `PX` = idle timeout   |
//! | `guise:user-sessions:{<user>}`   | zset   | session keys of a user, scored by the unix second after which the entry is useless; expires with its last entry |
//! | `guise:active-sessions`          | zset   | every session key, scored by its idle deadline (unix ms) |
//! | `guise:limit:{<counter>}`        | string | fixed-window counter, `PX` = window           |
//! | `guise:users`                    | hash   | user id → JSON user record                    |
//! | `guise:records:<kind>`           | hash   | id → JSON record (partners, bundles, tenants)  |
//! | `guise:once:{<key>}`             | string | a one-time token's value, `PX` = how long it is remembered; spent by `SET XX KEEPTTL GET` |
//! | `guise:audit`                    | stream | impersonation audit entries, field `r` = JSON record, `MAXLEN ~` |
//! | channel `guise:events`           | pubsub | JSON [`StoreEvent`]                           |
//!
//! Every command and every Lua script touches exactly one key, so all of
//! this works on Redis Cluster, where multi-key commands must stay within
//! one slot; the `{...}` hash tags keep that true should a future command
//! combine keys of one session, user or counter. An operation on several
//! keys (a new session updates three) sends one command per key,
//! concurrently, so it costs one round trip of latency but is not atomic:
//! a failure half way leaves at worst an index entry without a session
//! (pruned on read) or a session missing from the count (gone after its
//! idle timeout). The audit stream is one key, so on a Cluster it lives
//! on one shard (about 300 bytes an entry: 30 MB at the default length).
//!
//! `user_sessions` assumes the session layer refuses a session after its
//! `absolute_expiry`: index entries are kept until then (or until the idle
//! deadline at the last `put_session`, whichever is later).
//!
//! # Failure and recovery
//!
//! Nothing connects at construction (the gateway starts while Redis is
//! down). Commands go over one lazily opened connection (see `conn.rs`); an
//! operation fails with [`StoreError::Unavailable`] within
//! `connect + 2 × response` of [`RedisTimeouts`] however dead Redis is, and
//! a broken connection is replaced on the next operation. The subscriber
//! loop (see `subscriber.rs`) re-subscribes on its own and sends
//! [`StoreEvent::Resync`] before the first event after an interruption.
//! In the steady state nothing is sent but the commands callers make.
//!
//! All Redis I/O runs on the store's own runtime thread (see `runtime.rs`),
//! so the store works from any runtime, and outlives any of them.

mod conn;
mod runtime;
mod scripts;
mod subscriber;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use prometheus::IntCounter;
use redis::RedisError;
use tokio::sync::{broadcast, watch};

use self::conn::{needs_reconnect, Conn, Connector, Target};
use self::runtime::StoreRuntime;
use self::scripts::Scripts;
use self::subscriber::Subscriber;
use super::memory::MemoryStore;
use super::{
    Hit, Reread, SessionKey, SessionRecord, Store, StoreError, StoreEvent, StreamId, Touch,
};
use crate::config::{RedisConfig, SessionStoreConfig};

/// The pub/sub channel events travel on.
pub const EVENTS_CHANNEL: &str = "guise:events";
const ACTIVE_KEY: &str = "guise:active-sessions";
const USERS_KEY: &str = "guise:users";
/// The impersonation audit stream.
pub const AUDIT_KEY: &str = "guise:audit";
/// The one field of an audit stream entry: the record as JSON.
const AUDIT_FIELD: &str = "r";

/// How many events a slow subscriber may fall behind before it lags (and
/// sees `RecvError::Lagged`, on which a cache should drop everything).
const EVENT_CAPACITY: usize = 1024;

fn session_key(key: &str) -> String {
    format!("guise:session:{{{key}}}")
}

fn records_key(kind: &str) -> String {
    format!("guise:records:{kind}")
}

fn index_key(user_id: &str) -> String {
    format!("guise:user-sessions:{{{user_id}}}")
}

fn limit_key(counter: &str) -> String {
    format!("guise:limit:{{{counter}}}")
}

fn once_key(key: &str) -> String {
    format!("guise:once:{{{key}}}")
}

/// How long the store waits for Redis. A request that needs Redis waits at
/// most `connect + 2 × response` before it is answered with "unavailable",
/// so these stay well below any client's patience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedisTimeouts {
    /// Opening a TCP connection (per node for Sentinel and Cluster).
    pub connect: Duration,
    /// Waiting for one reply.
    pub response: Duration,
}

impl Default for RedisTimeouts {
    /// 250 ms to connect, 500 ms per reply: Redis answers in well under a
    /// millisecond on a LAN, so anything slower is a failure to report,
    /// not a wait worth making.
    fn default() -> Self {
        RedisTimeouts {
            connect: Duration::from_millis(250),
            response: Duration::from_millis(500),
        }
    }
}

/// Build the store `cfg` names, with default timeouts and a Redis error
/// counter nobody reads. Synchronous and contacts nothing: a Redis store
/// connects on first use and in the background.
pub fn open_store(cfg: &SessionStoreConfig) -> Result<Arc<dyn Store>, StoreError> {
    open_store_with(cfg, RedisTimeouts::default(), None)
}

/// [`open_store`] with explicit timeouts and the counter failed Redis
/// operations are counted in (the gateway passes its `redis_errors`
/// metric). Both are ignored for the memory store.
pub fn open_store_with(
    cfg: &SessionStoreConfig,
    timeouts: RedisTimeouts,
    redis_errors: Option<IntCounter>,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match cfg {
        SessionStoreConfig::Memory => Arc::new(MemoryStore::new()),
        SessionStoreConfig::Redis(r) => {
            let store = RedisStore::open(r, timeouts)?;
            Arc::new(match redis_errors {
                Some(c) => store.with_error_counter(c),
                None => store,
            })
        }
    })
}

/// What tasks on the store's runtime share.
struct Shared {
    connector: Connector,
    scripts: Scripts,
}

/// The Redis-backed [`Store`].
pub struct RedisStore {
    shared: Arc<Shared>,
    events: broadcast::Sender<StoreEvent>,
    subscribed: watch::Receiver<bool>,
    errors: IntCounter,
    /// Longest an operation may take, from its start to its answer.
    budget: Duration,
    /// Last field: dropped after everything above, it stops the subscriber
    /// loop and closes every connection.
    runtime: StoreRuntime,
}

/// Whether [`RedisStore::exec`] may send an operation a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Once more on a fresh connection after "connection dropped".
    OnDrop,
    /// Never: the operation is not idempotent enough to risk it.
    Never,
}

/// Why an operation's body failed: Redis itself, or what Redis returned.
enum OpError {
    Redis(RedisError),
    Store(StoreError),
}

impl From<RedisError> for OpError {
    fn from(e: RedisError) -> Self {
        OpError::Redis(e)
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        OpError::Store(e)
    }
}

// === impl RedisStore ===

impl RedisStore {
    /// Build the store and start its subscriber loop. Does not wait for
    /// Redis, and succeeds while it is down; fails only for a
    /// configuration the Redis client refuses, or if the store's thread
    /// cannot be started.
    pub fn open(cfg: &RedisConfig, timeouts: RedisTimeouts) -> Result<RedisStore, StoreError> {
        let target = Arc::new(Target::from_config(cfg, &timeouts)?);
        let runtime = StoreRuntime::start("guise-redis").map_err(|e| {
            StoreError::Unavailable(format!("cannot start the redis store's thread: {e}"))
        })?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (subscribed_tx, subscribed) = watch::channel(false);
        runtime.spawn(
            Subscriber {
                target: target.clone(),
                timeouts,
                events: events.clone(),
                subscribed: subscribed_tx,
            }
            .run(),
        );
        let errors = IntCounter::new(
            "guise_redis_errors_total",
            "Redis operations that failed: Redis down, too slow or refusing.",
        )
        .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(RedisStore {
            shared: Arc::new(Shared {
                connector: Connector::new(target, timeouts),
                scripts: Scripts::new(),
            }),
            events,
            subscribed,
            errors,
            budget: timeouts.connect + timeouts.response * 2,
            runtime,
        })
    }

    /// Count failed operations in `counter` (e.g. the gateway's
    /// `guise_redis_errors_total`) instead of the store's own.
    pub fn with_error_counter(mut self, counter: IntCounter) -> RedisStore {
        self.errors = counter;
        self
    }

    /// The counter failed operations are counted in; one increment per
    /// operation that returned [`StoreError::Unavailable`].
    pub fn error_counter(&self) -> IntCounter {
        self.errors.clone()
    }

    /// Whether the event subscription is established right now.
    pub fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }

    /// Wait up to `timeout` for the event subscription; `true` once it is
    /// established. For start-up readiness and tests: an event published
    /// before this node subscribed never reaches it.
    pub async fn wait_subscribed(&self, timeout: Duration) -> bool {
        let mut rx = self.subscribed.clone();
        let established = tokio::time::timeout(timeout, rx.wait_for(|s| *s))
            .await
            .is_ok_and(|r| r.is_ok());
        established
    }

    /// Run `body` with a connection on the store's runtime, bounded by the
    /// operation budget. Failures become [`StoreError::Unavailable`]
    /// (counted) and drop a connection that can no longer be trusted.
    ///
    /// A connection whose server went away while it sat idle (Redis was
    /// restarted) is only found out by the next command, which fails with
    /// "connection dropped"; that attempt is made once more on a fresh
    /// connection, so a restart costs callers nothing once Redis is back.
    /// The repeat is harmless for every operation: all are idempotent but
    /// `hit` (a login attempt counted twice, in the rare case the first
    /// reached Redis before the connection died), `publish` (an event
    /// delivered twice: one more cache eviction) and `swap_once` (a token
    /// whose first swap spent it but whose answer was lost reads as
    /// already used: the link fails closed, and an admin sends another).
    /// `append_audit` is the exception (see [`RedisStore::exec_once`]).
    async fn exec<T, F, Fut>(&self, op: &'static str, body: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Shared>, Conn) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, OpError>> + Send + 'static,
        T: Send + 'static,
    {
        self.run(op, Repeat::OnDrop, body).await
    }

    /// [`RedisStore::exec`] without the repeat: a dropped connection fails
    /// the operation. For appends to the audit stream, where a repeat of a
    /// batch that did reach Redis would record every entry twice; the
    /// audit writer retries on its own, after a backoff.
    async fn exec_once<T, F, Fut>(&self, op: &'static str, body: F) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Shared>, Conn) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, OpError>> + Send + 'static,
        T: Send + 'static,
    {
        self.run(op, Repeat::Never, body).await
    }

    async fn run<T, F, Fut>(
        &self,
        op: &'static str,
        repeat: Repeat,
        body: F,
    ) -> Result<T, StoreError>
    where
        F: FnOnce(Arc<Shared>, Conn) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, OpError>> + Send + 'static,
        T: Send + 'static,
    {
        let shared = self.shared.clone();
        let budget = self.budget;
        let task = self.runtime.spawn(async move {
            let deadline = tokio::time::Instant::now() + budget;
            let out_of_time =
                || StoreError::Unavailable(format!("redis {op}: no answer within {budget:?}"));
            let mut retried = repeat == Repeat::Never;
            loop {
                // Bounded by itself (connect + response), which leaves at
                // least one response timeout for the commands the first
                // time round.
                let (conn, generation) = tokio::time::timeout_at(deadline, shared.connector.get())
                    .await
                    .map_err(|_| out_of_time())??;
                let attempt = body.clone();
                match tokio::time::timeout_at(deadline, attempt(shared.clone(), conn)).await {
                    Ok(Ok(v)) => return Ok(v),
                    Ok(Err(OpError::Store(e))) => return Err(e),
                    Ok(Err(OpError::Redis(e))) => {
                        if needs_reconnect(&e) {
                            shared.connector.invalidate(generation, &e).await;
                        }
                        if !retried && e.is_connection_dropped() {
                            retried = true;
                            continue;
                        }
                        return Err(StoreError::Unavailable(format!("redis {op} failed: {e}")));
                    }
                    Err(_) => {
                        let why = out_of_time();
                        shared.connector.invalidate(generation, &why).await;
                        return Err(why);
                    }
                }
            }
        });
        let result = match task.await {
            Ok(r) => r,
            Err(e) => Err(StoreError::Unavailable(format!(
                "redis store stopped during {op}: {e}"
            ))),
        };
        if matches!(result, Err(StoreError::Unavailable(_))) {
            self.errors.inc();
        }
        result
    }
}

/// What the `TOUCH` script did (see `scripts.rs`), with the record when
/// it was asked for.
enum Slid {
    Written {
        json: Option<String>,
    },
    Recent {
        last_seen: u64,
        json: Option<String>,
    },
    Gone,
}

impl RedisStore {
    /// Run the `TOUCH` script on one session and, only when it wrote,
    /// move the session's deadline in the active set: a refresh that was
    /// not due sends one script and nothing else. The two are separate
    /// round trips because the active set is another key (another slot on
    /// a Cluster); they are no longer sent together as when every touch
    /// wrote, since the second now depends on the first. Should the active
    /// set update fail after the write, the session is missing from the
    /// count until its next slide: the count only feeds a gauge.
    async fn slide(
        &self,
        op: &'static str,
        key: &SessionKey,
        now: u64,
        idle: Duration,
        refresh_gap: Duration,
        with_record: bool,
    ) -> Result<Slid, StoreError> {
        let member = key.0.clone();
        let skey = session_key(&key.0);
        let idle_ms = millis(idle);
        let gap_s = refresh_gap.as_secs();
        self.exec(op, move |sh, mut c| async move {
            let mut touch = sh.scripts.touch.key(&skey);
            touch
                .arg(now)
                .arg(idle_ms)
                .arg(gap_s)
                .arg(u8::from(with_record));
            let (code, last_seen, json): (i64, u64, Option<String>) =
                touch.invoke_async(&mut c).await?;
            match code {
                1 => {
                    let now_ms = unix_ms();
                    let mut active = sh.scripts.active_add.key(ACTIVE_KEY);
                    active
                        .arg(now_ms)
                        .arg(now_ms.saturating_add(idle_ms))
                        .arg(&member);
                    active.invoke_async::<()>(&mut c).await?;
                    Ok(Slid::Written { json })
                }
                2 => Ok(Slid::Recent { last_seen, json }),
                0 => Ok(Slid::Gone),
                _ => Err(StoreError::Corrupt {
                    key: skey,
                    reason: "no `last_seen` field".to_string(),
                }
                .into()),
            }
        })
        .await
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Redis refuses `PX 0`; a zero idle time means "expire at once", which
/// one millisecond is as good as.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn parse_record(key: &str, json: &str) -> Result<SessionRecord, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.exec("PING", |_, mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await?;
            Ok(())
        })
        .await
    }

    async fn put_session(
        &self,
        key: &SessionKey,
        rec: &SessionRecord,
        idle: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(rec).map_err(|e| StoreError::Corrupt {
            key: session_key(&key.0),
            reason: e.to_string(),
        })?;
        let member = key.0.clone();
        let skey = session_key(&key.0);
        let ikey = index_key(&rec.user_id);
        let idle_ms = millis(idle);
        let now_ms = unix_ms();
        let deadline_ms = now_ms.saturating_add(idle_ms);
        let keep_until = rec.absolute_expiry.max(deadline_ms.div_ceil(1000));
        self.exec("put_session", move |sh, conn| async move {
            let (mut c1, mut c2, mut c3) = (conn.clone(), conn.clone(), conn);
            let mut set = redis::cmd("SET");
            set.arg(&skey).arg(&json).arg("PX").arg(idle_ms);
            let mut index = sh.scripts.index_add.key(&ikey);
            index.arg(&member).arg(keep_until).arg(now_ms / 1000);
            let mut active = sh.scripts.active_add.key(ACTIVE_KEY);
            active.arg(now_ms).arg(deadline_ms).arg(&member);
            let (a, b, c) = tokio::join!(
                set.query_async::<()>(&mut c1),
                index.invoke_async::<()>(&mut c2),
                active.invoke_async::<()>(&mut c3),
            );
            a?;
            b?;
            c?;
            Ok(())
        })
        .await
    }

    async fn get_session(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        let skey = session_key(&key.0);
        self.exec("get_session", move |_, mut c| async move {
            let json: Option<String> = redis::cmd("GET").arg(&skey).query_async(&mut c).await?;
            Ok(match json {
                Some(j) => Some(parse_record(&skey, &j)?),
                None => None,
            })
        })
        .await
    }

    async fn touch_session(
        &self,
        key: &SessionKey,
        now: u64,
        idle: Duration,
        refresh_gap: Duration,
    ) -> Result<Touch, StoreError> {
        let slid = self
            .slide("touch_session", key, now, idle, refresh_gap, false)
            .await?;
        Ok(match slid {
            Slid::Gone => Touch::Gone,
            Slid::Written { .. } => Touch::Written,
            Slid::Recent { last_seen, .. } => Touch::Recent(last_seen),
        })
    }

    async fn read_session_touching(
        &self,
        key: &SessionKey,
        now: u64,
        idle: Duration,
        refresh_gap: Duration,
    ) -> Result<Option<Reread>, StoreError> {
        let slid = self
            .slide("read_session_touching", key, now, idle, refresh_gap, true)
            .await?;
        let skey = session_key(&key.0);
        let (json, written) = match slid {
            Slid::Gone => return Ok(None),
            Slid::Written { json, .. } => (json, true),
            Slid::Recent { json, .. } => (json, false),
        };
        let json = json.ok_or_else(|| StoreError::Corrupt {
            key: skey.clone(),
            reason: "the touch script returned no record".to_string(),
        })?;
        Ok(Some(Reread {
            record: parse_record(&skey, &json)?,
            written,
        }))
    }

    async fn delete_session(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError> {
        let member = key.0.clone();
        let skey = session_key(&key.0);
        self.exec("delete_session", move |_, conn| async move {
            let (mut c1, mut c2) = (conn.clone(), conn);
            let json: Option<String> = redis::cmd("GETDEL").arg(&skey).query_async(&mut c1).await?;
            // The key is gone either way; an unreadable value cannot name
            // its user, so its index entry is left for `user_sessions` to
            // prune, and the caller learns only that nothing readable was
            // there.
            let rec = json.and_then(|j| match parse_record(&skey, &j) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "deleted an unreadable session");
                    None
                }
            });
            let mut unindex = redis::cmd("ZREM");
            if let Some(r) = &rec {
                unindex.arg(index_key(&r.user_id)).arg(&member);
            }
            let mut uncount = redis::cmd("ZREM");
            uncount.arg(ACTIVE_KEY).arg(&member);
            let (a, b) = tokio::join!(
                async {
                    match rec {
                        Some(_) => unindex.query_async::<()>(&mut c1).await,
                        None => Ok(()),
                    }
                },
                uncount.query_async::<()>(&mut c2),
            );
            a?;
            b?;
            Ok(rec)
        })
        .await
    }

    async fn user_sessions(
        &self,
        user_id: &str,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let user = user_id.to_string();
        let ikey = index_key(user_id);
        self.exec("user_sessions", move |_, mut conn| async move {
            let members: Vec<String> = redis::cmd("ZRANGE")
                .arg(&ikey)
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await?;
            // Sessions live in different slots: one GET each, all at once.
            let gets = members.iter().map(|m| {
                let mut c = conn.clone();
                let k = session_key(m);
                async move {
                    let v: Option<String> = redis::cmd("GET").arg(&k).query_async(&mut c).await?;
                    Ok::<_, RedisError>((k, v))
                }
            });
            let values = futures_util::future::join_all(gets).await;
            let mut live = Vec::new();
            let mut dead = Vec::new();
            for (member, got) in members.into_iter().zip(values) {
                match got? {
                    (k, Some(json)) => {
                        let rec = parse_record(&k, &json)?;
                        // A key re-used by another user since.
                        if rec.user_id == user {
                            live.push((SessionKey(member), rec));
                        } else {
                            dead.push(member);
                        }
                    }
                    (_, None) => dead.push(member),
                }
            }
            if !dead.is_empty() {
                redis::cmd("ZREM")
                    .arg(&ikey)
                    .arg(&dead)
                    .query_async::<()>(&mut conn)
                    .await?;
            }
            Ok(live)
        })
        .await
    }

    async fn session_count(&self) -> Result<u64, StoreError> {
        let now_ms = unix_ms();
        self.exec("session_count", move |sh, mut c| async move {
            let mut count = sh.scripts.count.key(ACTIVE_KEY);
            count.arg(now_ms);
            Ok(count.invoke_async::<u64>(&mut c).await?)
        })
        .await
    }

    async fn hit(&self, counter: &str, window: Duration) -> Result<Hit, StoreError> {
        let key = limit_key(counter);
        let window_ms = millis(window);
        self.exec("hit", move |sh, mut c| async move {
            let mut hit = sh.scripts.hit.key(&key);
            hit.arg(window_ms);
            let (count, left_ms): (u64, i64) = hit.invoke_async(&mut c).await?;
            Ok(Hit {
                count,
                resets_in: Duration::from_millis(u64::try_from(left_ms).unwrap_or(0)),
            })
        })
        .await
    }

    async fn reset(&self, counter: &str) -> Result<(), StoreError> {
        let key = limit_key(counter);
        self.exec("reset", move |_, mut c| async move {
            redis::cmd("DEL")
                .arg(&key)
                .query_async::<()>(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn forgive(&self, counter: &str) -> Result<(), StoreError> {
        let key = limit_key(counter);
        self.exec("forgive", move |sh, mut c| async move {
            sh.scripts
                .forgive
                .key(&key)
                .invoke_async::<i64>(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn save_user(&self, user_id: &str, json: &str) -> Result<(), StoreError> {
        let (user, json) = (user_id.to_string(), json.to_string());
        self.exec("save_user", move |_, mut c| async move {
            redis::cmd("HSET")
                .arg(USERS_KEY)
                .arg(&user)
                .arg(&json)
                .query_async::<()>(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn load_users(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.exec("load_users", |_, mut c| async move {
            let all: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(USERS_KEY)
                .query_async(&mut c)
                .await?;
            Ok(all.into_iter().collect())
        })
        .await
    }

    async fn load_user(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        let user = user_id.to_string();
        self.exec("load_user", move |_, mut c| async move {
            let json: Option<String> = redis::cmd("HGET")
                .arg(USERS_KEY)
                .arg(&user)
                .query_async(&mut c)
                .await?;
            Ok(json)
        })
        .await
    }

    async fn put_once(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let (key, value) = (once_key(key), value.to_string());
        let ttl_ms = millis(ttl);
        self.exec("put_once", move |_, mut c| async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn swap_once(&self, key: &str, spent: &str) -> Result<Option<String>, StoreError> {
        let (key, spent) = (once_key(key), spent.to_string());
        self.exec("swap_once", move |_, mut c| async move {
            // One command, so of two nodes swapping the same key at once
            // exactly one reads the live value. `XX`: a key that is not
            // there stays not there; `KEEPTTL`: the spent marker dies when
            // the value would have (`GET` needs Redis 6.2).
            let old: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&spent)
                .arg("XX")
                .arg("KEEPTTL")
                .arg("GET")
                .query_async(&mut c)
                .await?;
            Ok(old)
        })
        .await
    }

    async fn peek_once(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = once_key(key);
        self.exec("peek_once", move |_, mut c| async move {
            let v: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut c).await?;
            Ok(v)
        })
        .await
    }

    async fn save_record(&self, kind: &str, id: &str, json: &str) -> Result<(), StoreError> {
        let (key, id, json) = (records_key(kind), id.to_string(), json.to_string());
        self.exec("save_record", move |_, mut c| async move {
            redis::cmd("HSET")
                .arg(&key)
                .arg(&id)
                .arg(&json)
                .query_async::<()>(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    async fn replace_record(
        &self,
        kind: &str,
        id: &str,
        expected: Option<&str>,
        json: &str,
    ) -> Result<bool, StoreError> {
        let (key, id, json) = (records_key(kind), id.to_string(), json.to_string());
        let expected = expected.map(str::to_string);
        self.exec("replace_record", move |sh, mut c| async move {
            let mut replace = sh.scripts.replace_field.key(&key);
            replace
                .arg(&id)
                .arg(u8::from(expected.is_some()))
                .arg(expected.as_deref().unwrap_or(""))
                .arg(&json);
            let done: u8 = replace.invoke_async(&mut c).await?;
            Ok(done == 1)
        })
        .await
    }

    async fn load_records(&self, kind: &str) -> Result<Vec<(String, String)>, StoreError> {
        let key = records_key(kind);
        self.exec("load_records", move |_, mut c| async move {
            let all: std::collections::BTreeMap<String, String> =
                redis::cmd("HGETALL").arg(&key).query_async(&mut c).await?;
            Ok(all.into_iter().collect())
        })
        .await
    }

    async fn append_audit(&self, entries: &[String], max_len: u64) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        // MULTI/EXEC in one pipeline: one round trip, and Redis applies the
        // whole batch or none of it, so a retry after a failure never
        // leaves half a batch behind. Every command names the one key, so
        // a Cluster routes the pipeline to its shard.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for json in entries {
            pipe.cmd("XADD")
                .arg(AUDIT_KEY)
                .arg("MAXLEN")
                .arg("~")
                .arg(max_len)
                .arg("*")
                .arg(AUDIT_FIELD)
                .arg(json)
                .ignore();
        }
        self.exec_once("append_audit", move |_, mut c| async move {
            pipe.query_async::<()>(&mut c).await?;
            Ok(())
        })
        .await
    }

    async fn read_audit(
        &self,
        before: Option<&str>,
        count: usize,
    ) -> Result<Vec<(String, String)>, StoreError> {
        // Parsed and written back, so Redis only ever sees a well-formed id
        // (it would read `-`, `+` or a bare millisecond as other bounds).
        let end = match before.map(str::parse::<StreamId>).transpose()? {
            // Nothing is older than the very first id; Redis would refuse
            // the empty interval instead of answering it.
            Some(StreamId { ms: 0, seq: 0 }) => return Ok(Vec::new()),
            Some(id) => format!("({id}"),
            None => "+".to_string(),
        };
        if count == 0 {
            return Ok(Vec::new());
        }
        self.exec("read_audit", move |_, mut c| async move {
            let entries: Vec<(String, std::collections::HashMap<String, String>)> =
                redis::cmd("XREVRANGE")
                    .arg(AUDIT_KEY)
                    .arg(&end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut c)
                    .await?;
            // An entry someone else added without our field reads as "",
            // which is no JSON: the reader skips it and pages on, where an
            // error would make every older entry unreachable.
            Ok(entries
                .into_iter()
                .map(|(id, mut fields)| {
                    let json = fields.remove(AUDIT_FIELD).unwrap_or_default();
                    (id, json)
                })
                .collect())
        })
        .await
    }

    async fn publish(&self, event: &StoreEvent) -> Result<(), StoreError> {
        let json = serde_json::to_string(event).map_err(|e| StoreError::Corrupt {
            key: EVENTS_CHANNEL.to_string(),
            reason: e.to_string(),
        })?;
        self.exec("publish", move |_, mut c| async move {
            redis::cmd("PUBLISH")
                .arg(EVENTS_CHANNEL)
                .arg(&json)
                .query_async::<()>(&mut c)
                .await?;
            Ok(())
        })
        .await
    }

    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
}
