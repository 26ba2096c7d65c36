//! Draining on shutdown: what SIGTERM does.
//!
//! Operators expect SIGTERM to stop new work at once and let the work in
//! flight finish. pingora alone does neither well: after its fixed grace
//! period it shuts the runtimes down, which cancels every request still
//! running, whatever `shutdown_timeout_seconds` says. So guise counts the
//! requests in flight ([`Drain::start_request`]) and handles the signal
//! itself ([`TermSignals`]):
//!
//! 1. SIGTERM: `/readyz` answers 503 at once, and for
//!    `server.grace_period_seconds` (default 0) the listeners stay open, so
//!    a load balancer that polls readiness can stop sending first;
//! 2. the listeners close; a request that started before answers with
//!    `Connection: close`, and idle keep-alive connections are closed;
//! 3. once no request is in flight, or `server.shutdown_timeout_seconds`
//!    has passed, the process exits (status 0). Only what is still running
//!    at the timeout is cut.
//!
//! SIGINT stops at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};

/// Requests in flight, and whether the gateway is shutting down.
#[derive(Debug, Default)]
pub struct Drain {
    in_flight: AtomicUsize,
    draining: AtomicBool,
    listeners_closed: AtomicBool,
}

/// One request in flight; counted out when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Drain>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drain {
    pub fn new() -> Arc<Drain> {
        Arc::default()
    }

    /// Count a request in until the returned guard is dropped.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether SIGTERM arrived.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The listeners stopped accepting (pingora called the app's cleanup).
    pub fn listeners_closed(&self) {
        self.listeners_closed.store(true, Ordering::Release);
    }

    /// Wait, on this thread, until the listeners are closed and no request
    /// is in flight, or `timeout` passes; whether it drained.
    pub fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.listeners_closed.load(Ordering::Acquire) && self.in_flight() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Something to finish before the process exits: the process ends with
/// `exit`, which runs no destructors, so buffered work (the impersonation
/// audit) would be lost.
pub trait BeforeExit: Send + Sync {
    /// Finish within `timeout`.
    fn before_exit(&self, timeout: Duration);
}

/// How long each [`BeforeExit`] gets.
pub const BEFORE_EXIT_TIMEOUT: Duration = Duration::from_secs(3);

/// Run every [`BeforeExit`].
pub fn finish(before_exit: &[Arc<dyn BeforeExit>]) {
    for b in before_exit {
        b.before_exit(BEFORE_EXIT_TIMEOUT);
    }
}

/// The binary's signal handling (see the module docs).
pub struct TermSignals {
    pub drain: Arc<Drain>,
    /// Listeners stay open this long after SIGTERM.
    pub grace: Duration,
    /// In-flight requests get this long once the listeners closed.
    pub timeout: Duration,
    /// Finished before the process exits.
    pub before_exit: Vec<Arc<dyn BeforeExit>>,
}

#[async_trait]
impl ShutdownSignalWatch for TermSignals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for SIGTERM and SIGINT; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping at once");
                return ShutdownSignal::FastShutdown;
            }
            _ = term.recv() => {}
        }
        self.drain.draining.store(true, Ordering::Release);
        tracing::info!(
            in_flight = self.drain.in_flight(),
            grace_seconds = self.grace.as_secs(),
            "SIGTERM: draining; /readyz now answers 503"
        );
        if !self.grace.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(self.grace) => {}
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
        let drain = self.drain.clone();
        let timeout = self.timeout;
        let before_exit = self.before_exit.clone();
        // pingora closes the listeners when this returns, then waits (its
        // grace period is set to our timeout) before cancelling what runs;
        // this thread ends the process as soon as nothing runs any more.
        let spawned = std::thread::Builder::new()
            .name("guise-drain".into())
            .spawn(move || {
                let started = Instant::now();
                let drained = drain.wait_drained(timeout);
                if drained {
                    tracing::info!(
                        after_ms = started.elapsed().as_millis() as u64,
                        "drained: every request in flight finished; exiting"
                    );
                } else {
                    tracing::warn!(
                        in_flight = drain.in_flight(),
                        "shutdown_timeout_seconds passed with requests still in flight; cutting them"
                    );
                }
                finish(&before_exit);
                std::process::exit(0)
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the drain watcher; pingora's own shutdown applies");
        }
        ShutdownSignal::GracefulTerminate
    }
}

/// `/readyz` fails while draining, so load balancers stop sending.
pub struct NotDraining(pub Arc<Drain>);

#[async_trait]
impl crate::ops::ReadyCheck for NotDraining {
    fn name(&self) -> &'static str {
        "draining"
    }

    async fn check(&self) -> Result<(), String> {
        if self.0.is_draining() {
            Err("the gateway is shutting down".to_string())
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_while_their_guard_lives() {
        let d = Drain::new();
        let a = d.start_request();
        let b = d.start_request();
        assert_eq!(d.in_flight(), 2);
        drop(a);
        assert_eq!(d.in_flight(), 1);
        assert!(
            !d.wait_drained(Duration::from_millis(30)),
            "listeners still open"
        );
        d.listeners_closed();
        assert!(!d.wait_drained(Duration::from_millis(30)), "one in flight");
        drop(b);
        assert!(d.wait_drained(Duration::from_millis(30)));
    }
}
