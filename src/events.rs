//! The store's events, handed to whoever keeps state derived from the
//! store on this node (the session cache, the user directory).
//!
//! One listener per gateway subscribes to the store and feeds every event to
//! each [`EventSink`] in turn, so no sink needs to know about the others.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::store::{Store, StoreEvent};

/// Something that keeps state derived from the store.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Called once when the listener starts, before any event: a sink that
    /// loads state from the store (the user directory) does it here, after
    /// the subscription exists, so no change can fall between load and
    /// subscribe.
    async fn on_start(&self) {}

    async fn on_event(&self, ev: &StoreEvent);
}

/// Feeds the store's events to the sinks until shutdown.
pub struct EventListener {
    pub store: Arc<dyn Store>,
    pub sinks: Vec<Arc<dyn EventSink>>,
}

#[async_trait]
impl BackgroundService for EventListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut rx = self.store.subscribe();
        for s in &self.sinks {
            s.on_start().await;
        }
        loop {
            let ev = tokio::select! {
                ev = rx.recv() => ev,
                _ = shutdown.changed() => return,
            };
            let ev = match ev {
                Ok(ev) => ev,
                // Fell behind and lost events: same as an interruption.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => StoreEvent::Resync,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            for s in &self.sinks {
                s.on_event(&ev).await;
            }
        }
    }
}
