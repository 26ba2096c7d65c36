//! Counting open client connections.
//!
//! `ProxyHttp` has no per-connection hook, but pingora hands each accepted
//! connection to one `ServerApp::process_new` call that returns only when the
//! connection is done (keep-alive requests loop inside it), so wrapping that
//! call gives an exact gauge.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;

pub struct CountConnections<A> {
    inner: Arc<A>,
    gauge: IntGauge,
}

impl<A> CountConnections<A> {
    pub fn new(inner: A, gauge: IntGauge) -> Self {
        CountConnections {
            inner: Arc::new(inner),
            gauge,
        }
    }
}

/// Decrements on drop, so a cancelled connection task is counted out too.
struct Open(IntGauge);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CountConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        session: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.gauge.inc();
        let _open = Open(self.gauge.clone());
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
