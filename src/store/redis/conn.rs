//! Lazily opened command connections, replaced after failures.
//!
//! Nothing is opened at construction, so the gateway starts while Redis is
//! down. The first operation opens the connection; an operation that fails
//! in a way that leaves the connection suspect (I/O error, timeout, a
//! demoted master) drops it, and the next operation opens a new one, for
//! Sentinel after asking the sentinels again where the master is. There is
//! no background reconnect loop and no keep-alive: an idle gateway sends
//! Redis nothing.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, RedisFuture, ServerErrorKind, Value,
};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::RedisTimeouts;
use crate::config::RedisConfig;
use crate::store::StoreError;

/// After a failed connect, operations fail at once for this long instead
/// of each trying again: a black-holed server would otherwise make every
/// caller in a burst wait a whole connect timeout in turn.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// Where connections go, built once from the configuration.
pub(super) enum Target {
    Single(Client),
    /// `SentinelClient` needs `&mut` to resolve (it caches its connections
    /// to the sentinels); shared by command connections and the subscriber.
    Sentinel(Mutex<SentinelClient>),
    Cluster {
        client: ClusterClient,
        /// Seed nodes, for the subscriber (which talks to one node).
        seeds: Vec<Client>,
    },
}

impl Target {
    pub(super) fn from_config(cfg: &RedisConfig, t: &RedisTimeouts) -> Result<Target, StoreError> {
        let bad = |what: &str, e: redis::RedisError| StoreError::Config(format!("{what}: {e}"));
        Ok(match cfg {
            RedisConfig::Single { url } => {
                Target::Single(Client::open(url.as_str()).map_err(|e| bad(url, e))?)
            }
            RedisConfig::Sentinel { master_name, urls } => {
                let client = SentinelClient::build(
                    urls.iter().map(String::as_str).collect(),
                    master_name.clone(),
                    Some(SentinelNodeConnectionInfo::default()),
                    SentinelServerType::Master,
                )
                .map_err(|e| bad("sentinel urls", e))?;
                Target::Sentinel(Mutex::new(client))
            }
            RedisConfig::Cluster { urls } => {
                let client = ClusterClient::builder(urls.iter().map(String::as_str))
                    .connection_timeout(t.connect)
                    .response_timeout(t.response)
                    // Retries inside the cluster client would outlast our
                    // budget; one retry covers a MOVED after resharding.
                    .retries(1)
                    .min_retry_wait(10)
                    .max_retry_wait(50)
                    .build()
                    .map_err(|e| bad("cluster urls", e))?;
                let seeds = urls
                    .iter()
                    .map(|u| Client::open(u.as_str()).map_err(|e| bad(u, e)))
                    .collect::<Result<_, _>>()?;
                Target::Cluster { client, seeds }
            }
        })
    }

    /// A client for the node that takes commands and subscriptions: the
    /// server, or the master the sentinels name now, or (cluster) the
    /// `attempt`-th seed in turn, so a vanished node is skipped next time.
    pub(super) async fn node_client(&self, attempt: usize) -> redis::RedisResult<Client> {
        match self {
            Target::Single(c) => Ok(c.clone()),
            Target::Sentinel(s) => s.lock().await.async_get_client().await,
            Target::Cluster { seeds, .. } => match seeds.get(attempt % seeds.len().max(1)) {
                Some(c) => Ok(c.clone()),
                None => Err(redis::RedisError::from((
                    ErrorKind::InvalidClientConfig,
                    "no cluster seed",
                ))),
            },
        }
    }
}

/// A command connection of either shape; both multiplex concurrent
/// commands over their sockets and are cheap to clone.
#[derive(Clone)]
pub(super) enum Conn {
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Whether `e` means the connection (or, for Sentinel, the node it goes
/// to) should not be used again. Errors about the command itself (wrong
/// type, script error) leave it in place.
pub(super) fn needs_reconnect(e: &redis::RedisError) -> bool {
    match e.kind() {
        ErrorKind::Server(k) => matches!(
            k,
            ServerErrorKind::ReadOnly
                | ServerErrorKind::MasterDown
                | ServerErrorKind::ClusterDown
                | ServerErrorKind::BusyLoading
                | ServerErrorKind::TryAgain
                | ServerErrorKind::Moved
                | ServerErrorKind::Ask
        ),
        ErrorKind::UnexpectedReturnType | ErrorKind::Client | ErrorKind::Extension => false,
        _ => true,
    }
}

/// The current command connection, opened on demand.
pub(super) struct Connector {
    target: std::sync::Arc<Target>,
    timeouts: RedisTimeouts,
    /// An async mutex because opening awaits; holding it while opening
    /// makes a burst of callers share one attempt instead of each opening
    /// a connection.
    slot: Mutex<Slot>,
}

#[derive(Default)]
struct Slot {
    conn: Option<Conn>,
    /// Bumped for each new connection, so a failure seen on an old one
    /// does not drop its replacement.
    generation: u64,
    last_failure: Option<(Instant, String)>,
}

impl Connector {
    pub(super) fn new(target: std::sync::Arc<Target>, timeouts: RedisTimeouts) -> Connector {
        Connector {
            target,
            timeouts,
            slot: Mutex::new(Slot::default()),
        }
    }

    /// The connection and its generation, opening one if there is none.
    /// Bounded by the connect timeout plus one response timeout (opening
    /// runs a handshake, and Sentinel a lookup).
    pub(super) async fn get(&self) -> Result<(Conn, u64), StoreError> {
        let mut slot = self.slot.lock().await;
        if let Some(c) = &slot.conn {
            return Ok((c.clone(), slot.generation));
        }
        if let Some((at, why)) = &slot.last_failure {
            if at.elapsed() < RETRY_AFTER {
                return Err(StoreError::Unavailable(why.clone()));
            }
        }
        let budget = self.timeouts.connect + self.timeouts.response;
        let opened = match tokio::time::timeout(budget, self.open()).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("cannot connect to redis: {e}")),
            Err(_) => Err(format!(
                "cannot connect to redis: no connection within {budget:?}"
            )),
        };
        match opened {
            Ok(c) => {
                slot.generation += 1;
                slot.conn = Some(c.clone());
                slot.last_failure = None;
                tracing::info!(generation = slot.generation, "redis connection open");
                Ok((c, slot.generation))
            }
            Err(why) => {
                slot.last_failure = Some((Instant::now(), why.clone()));
                Err(StoreError::Unavailable(why))
            }
        }
    }

    /// Forget connection `generation` (if it is still the current one).
    pub(super) async fn invalidate(&self, generation: u64, why: &(dyn std::fmt::Display + Sync)) {
        let mut slot = self.slot.lock().await;
        if slot.generation == generation && slot.conn.take().is_some() {
            tracing::warn!(generation, error = %why, "redis connection dropped; reopening on next use");
        }
    }

    async fn open(&self) -> redis::RedisResult<Conn> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.response));
        match &*self.target {
            Target::Cluster { client, .. } => {
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
            other => {
                let client = other.node_client(0).await?;
                Ok(Conn::Plain(
                    client
                        .get_multiplexed_async_connection_with_config(&cfg)
                        .await?,
                ))
            }
        }
    }
}
