//! The store's own small tokio runtime on a dedicated thread.
//!
//! redis-rs spawns a driver task for every connection onto the runtime that
//! opened it, and the subscriber loop and reconnects are tasks too. pingora
//! runs each service in its own runtime and tests run several gateways in
//! one process, so any caller's runtime may stop while the store lives on;
//! tasks on it would die with it and leave the store with a dead
//! connection. All Redis I/O therefore happens here, and callers only await
//! a `JoinHandle`, which works from any runtime.

use std::future::Future;
use std::thread::JoinHandle;

use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Longest the store's thread waits for blocking tasks at shutdown.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

/// A current-thread runtime driven by its own std thread, stopped (every
/// task cancelled, every connection closed) when this is dropped.
pub(super) struct StoreRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StoreRuntime {
    pub(super) fn start(name: &str) -> std::io::Result<StoreRuntime> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // Returns when the sender is dropped, too.
                let _ = rt.block_on(stopped);
                // Shut down here, on this thread and outside any async
                // context, which is where tokio allows it. Bounded: a
                // blocking DNS lookup still running must not hold up the
                // caller that dropped the store.
                rt.shutdown_timeout(SHUTDOWN_WAIT);
            })?;
        Ok(StoreRuntime {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Run `fut` on the store's runtime.
    pub(super) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(fut)
    }
}

impl Drop for StoreRuntime {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            // Joining makes shutdown deterministic (connections are closed
            // when the store is gone). Never join ourselves: that would
            // dead-lock if the last handle were dropped on this thread.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}
