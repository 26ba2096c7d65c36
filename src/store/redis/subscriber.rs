//! The subscriber loop: one pub/sub connection on `guise:events`, fed into
//! the store's broadcast channel, re-opened whenever it ends.
//!
//! Events published while the subscription was down are lost for good
//! (Redis pub/sub keeps nothing), so each time a subscription is
//! established after a failed attempt or a lost connection, the loop first
//! sends [`StoreEvent::Resync`], telling caches to drop everything, and only
//! then the events that follow. The very first subscription sends no
//! `Resync` when it succeeds at the first attempt: nothing can have been
//! cached from a Redis the node never reached.
//!
//! The loop sends nothing on its own (no keep-alive): a killed or
//! restarted Redis closes the socket, which ends the message stream. A
//! silently vanished peer (network partition) is only noticed when the
//! kernel gives up on the socket; that is the trade-off for a steady state
//! without periodic commands.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};

use super::conn::Target;
use super::{RedisTimeouts, EVENTS_CHANNEL};
use crate::store::StoreEvent;

/// First pause after a failed attempt; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between attempts: how long a restarted Redis may wait for
/// this node's subscription to come back, at most.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

pub(super) struct Subscriber {
    pub(super) target: Arc<Target>,
    pub(super) timeouts: RedisTimeouts,
    pub(super) events: broadcast::Sender<StoreEvent>,
    /// `true` while a subscription is established.
    pub(super) subscribed: watch::Sender<bool>,
}

impl Subscriber {
    /// Runs until the store's runtime stops.
    pub(super) async fn run(self) {
        let mut interrupted = false;
        let mut backoff = MIN_BACKOFF;
        let mut attempt = 0usize;
        loop {
            match self.subscribe(attempt).await {
                Ok(mut stream) => {
                    backoff = MIN_BACKOFF;
                    self.subscribed.send_replace(true);
                    if interrupted {
                        tracing::info!("redis event subscription re-established; resyncing caches");
                        let _ = self.events.send(StoreEvent::Resync);
                    }
                    while let Some(msg) = stream.next().await {
                        self.forward(&msg);
                    }
                    self.subscribed.send_replace(false);
                    tracing::warn!("redis event subscription lost; reconnecting");
                    interrupted = true;
                    // Try the next node first (cluster), then the same
                    // schedule as after a failed attempt.
                    attempt = attempt.wrapping_add(1);
                }
                Err(e) => {
                    tracing::debug!(error = %e, ?backoff, "redis event subscription failed");
                    interrupted = true;
                    attempt = attempt.wrapping_add(1);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn subscribe(&self, attempt: usize) -> Result<redis::aio::PubSubStream, String> {
        let budget = self.timeouts.connect + self.timeouts.response;
        let open = async {
            let client = self.target.node_client(attempt).await?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(EVENTS_CHANNEL).await?;
            redis::RedisResult::Ok(pubsub.into_on_message())
        };
        match tokio::time::timeout(budget, open).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no subscription within {budget:?}")),
        }
    }

    fn forward(&self, msg: &redis::Msg) {
        let payload: Vec<u8> = match msg.get_payload() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable message on {EVENTS_CHANNEL}");
                return;
            }
        };
        match serde_json::from_slice::<StoreEvent>(&payload) {
            // No receiver is fine: nobody has anything to evict.
            Ok(ev) => {
                let _ = self.events.send(ev);
            }
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unknown event on {EVENTS_CHANNEL}");
            }
        }
    }
}
