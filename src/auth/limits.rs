//! Login-attempt limits, device cookies, and the cap on concurrent password
//! verifications.
//!
//! # The policy
//!
//! Every login attempt is counted, in this order, and refused (429 with
//! `Retry-After`) as soon as one count is over its limit:
//!
//! 1. **per client network** (an IPv4 address, or an IPv6 /64):
//!    `max_attempts_per_client` attempts per window. A successful login is
//!    taken back, so people behind one address who sign in successfully
//!    never use it up.
//! 2. **per username and client network**: `max_attempts_per_user`. Only
//!    the network that fails is slowed; the user signs in from elsewhere.
//! 3. **per username from all networks**: `max_attempts_per_user_total`,
//!    counted only for browsers that hold no valid *device cookie* of that
//!    user. A device cookie is set at every successful login; it proves the
//!    browser signed in as that user before. So a botnet guessing one
//!    user's password is slowed for the whole account, while the user's own
//!    browsers are exempt: strangers failing in a user's name cannot lock
//!    the user out (OWASP's "device cookies").
//!
//! Step 1 is checked before anything is created per username, and
//! usernames are counted by a fixed-size digest, so an anonymous client can
//! neither create counters beyond its own network's limit nor make them
//! large. Counters live in the store, so every node shares them.
//!
//! # Password verifications
//!
//! argon2 takes tens of milliseconds and about 19 MiB each. At most
//! `password_checks.max_concurrent` run at once; a login waits for a turn
//! at most `queue_timeout`, then gets 503 with `Retry-After`, so a burst of
//! logins costs bounded memory and leaves the proxy's threads free.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::LoginError;
use crate::clock::Clock;
use crate::config::{Auth, PasswordChecks};
use crate::metrics::Metrics;
use crate::peer::Peer;
use crate::session::SessionError;
use crate::store::{Store, StoreError};

/// The counters an admitted attempt was counted on, to take back or reset
/// when it succeeds.
#[derive(Debug, Clone)]
pub struct Admitted {
    network: String,
    user_network: String,
}

/// Counts login attempts in the store.
pub struct Limiter {
    store: Arc<dyn Store>,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
}

impl Limiter {
    pub fn new(store: Arc<dyn Store>, metrics: Metrics, clock: Arc<dyn Clock>) -> Limiter {
        Limiter {
            store,
            metrics,
            clock,
        }
    }

    /// Count an attempt by `username` from `peer` (see the module docs).
    pub async fn admit(
        &self,
        auth: &Auth,
        key: &[u8],
        username: &str,
        peer: &Peer,
        device: Option<&str>,
    ) -> Result<Admitted, LoginError> {
        let window = auth.attempt_window;
        let network = format!("login:net:{}", peer.network());
        self.count(&network, window, auth.max_attempts_per_client, "network")
            .await?;
        let user = username_digest(username);
        let user_network = format!("login:user-net:{user}:{}", peer.network());
        self.count(
            &user_network,
            window,
            auth.max_attempts_per_user,
            "user_network",
        )
        .await?;
        let vouched =
            device.is_some_and(|d| device_vouches(key, d, username, self.clock.unix_now()));
        if !vouched {
            self.count(
                &format!("login:user:{user}"),
                window,
                auth.max_attempts_per_user_total,
                "user",
            )
            .await?;
        }
        Ok(Admitted {
            network,
            user_network,
        })
    }

    async fn count(
        &self,
        counter: &str,
        window: Duration,
        limit: u64,
        scope: &'static str,
    ) -> Result<(), LoginError> {
        let hit = self.store.hit(counter, window).await.map_err(store_error)?;
        if hit.count > limit {
            self.metrics.login_limited.with_label_values(&[scope]).inc();
            return Err(LoginError::Limited(hit.resets_in));
        }
        Ok(())
    }

    /// The attempt was a successful login: it does not count against the
    /// client network, and the user's failures from there are forgiven.
    /// Failing to reach the store here only leaves the counts higher.
    pub async fn succeeded(&self, a: &Admitted) {
        let _ = self.store.forgive(&a.network).await;
        let _ = self.store.reset(&a.user_network).await;
    }
}

fn store_error(e: StoreError) -> LoginError {
    LoginError::Store(SessionError::StoreUnavailable(e))
}

/// A fixed-size name for a username in counter keys: 32 hex digits of the
/// SHA-256 of the trimmed, lower-cased name (logins are case-blind). A
/// username of any length makes a key of the same size, and the store
/// never holds the name itself.
pub fn username_digest(username: &str) -> String {
    let digest = Sha256::digest(username.trim().to_lowercase().as_bytes());
    hex::encode(&digest[..16])
}

type HmacSha256 = Hmac<Sha256>;

/// The MAC of a device cookie for `username` until `expires` (unix s),
/// keyed by a key derived from the gateway's signing key for this use only.
fn device_mac(key: &[u8], username: &str, expires: u64) -> String {
    #[allow(clippy::expect_used)]
    let mut derive = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    derive.update(b"guise-device-cookie-v1");
    let derived = derive.finalize().into_bytes();
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(&derived).expect("HMAC accepts keys of any length");
    mac.update(username_digest(username).as_bytes());
    mac.update(b"\n");
    mac.update(expires.to_string().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The device cookie's value for `username`, valid until `expires`:
/// `{expires}.{mac}`. It names no user; it verifies only for the one it was
/// made for.
pub fn device_cookie(key: &[u8], username: &str, expires: u64) -> String {
    format!("{expires}.{}", device_mac(key, username, expires))
}

/// Whether `value` is an unexpired device cookie made for `username`.
pub fn device_vouches(key: &[u8], value: &str, username: &str, now: u64) -> bool {
    let Some((expires, mac)) = value.split_once('.') else {
        return false;
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return false;
    };
    use subtle::ConstantTimeEq;
    expires > now
        && bool::from(
            device_mac(key, username, expires)
                .as_bytes()
                .ct_eq(mac.as_bytes()),
        )
}

/// The cap on password verifications running at once.
pub struct PasswordGate {
    permits: Arc<Semaphore>,
    queue_timeout: Duration,
    metrics: Metrics,
}

impl PasswordGate {
    pub fn new(settings: PasswordChecks, metrics: Metrics) -> PasswordGate {
        PasswordGate {
            permits: Arc::new(Semaphore::new(settings.max_concurrent)),
            queue_timeout: settings.queue_timeout,
            metrics,
        }
    }

    /// Run `check` on the blocking pool once a turn is free; [`LoginError::Busy`]
    /// when none frees up within the queue timeout.
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LoginError> {
        let waiting = &self.metrics.password_checks_waiting;
        waiting.inc();
        let permit =
            tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned()).await;
        waiting.dec();
        let permit = match permit {
            Ok(Ok(p)) => p,
            _ => {
                self.metrics.password_checks_rejected.inc();
                return Err(LoginError::Busy);
            }
        };
        self.metrics.password_checks_running.inc();
        let running = self.metrics.password_checks_running.clone();
        let result = tokio::task::spawn_blocking(move || {
            let out = check();
            // Released when the verification is done, even if the login
            // that asked for it was cancelled meanwhile.
            drop(permit);
            running.dec();
            out
        })
        .await;
        result.map_err(|_| LoginError::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"limits-test-key-0123456789abcdef";

    #[test]
    fn usernames_are_counted_by_a_fixed_size_case_blind_digest() {
        assert_eq!(
            username_digest(" Ada@X.test"),
            username_digest("ada@x.test")
        );
        assert_eq!(username_digest(&"x".repeat(60_000)).len(), 32);
        assert_ne!(username_digest("a"), username_digest("b"));
    }

    #[test]
    fn a_device_cookie_vouches_only_for_its_user_and_until_it_expires() {
        let v = device_cookie(KEY, "Ada@x.test", 1_000);
        assert!(device_vouches(KEY, &v, "ada@x.test", 999));
        assert!(!device_vouches(KEY, &v, "ada@x.test", 1_000));
        assert!(!device_vouches(KEY, &v, "bob@x.test", 999));
        assert!(!device_vouches(
            b"another-key-0123456789abcdef0123",
            &v,
            "ada@x.test",
            999
        ));
        let forged = v.replacen("1000", "9999", 1);
        assert!(!device_vouches(KEY, &forged, "ada@x.test", 999));
        for junk in ["", ".", "x.y", "1000", "1000."] {
            assert!(!device_vouches(KEY, junk, "ada@x.test", 0), "{junk:?}");
        }
    }

    #[tokio::test]
    async fn the_gate_turns_away_checks_that_wait_too_long() {
        let gate = Arc::new(PasswordGate::new(
            PasswordChecks {
                max_concurrent: 1,
                queue_timeout: Duration::from_millis(50),
            },
            Metrics::new(),
        ));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.run(move || rx.recv().is_ok()).await })
        };
        // Wait until the first check holds the only turn.
        while gate.permits.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(gate.run(|| true).await, Err(LoginError::Busy)));
        tx.send(()).unwrap();
        assert!(busy.await.unwrap().unwrap());
        assert!(gate.run(|| true).await.unwrap());
    }
}
