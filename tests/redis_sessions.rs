//! End-to-end: sessions kept in a real Redis (standalone and Cluster), two
//! gateway nodes sharing it, revocation between nodes, Redis going away
//! and coming back, the zero-commands steady state, and the sliding idle
//! deadline written once per interval however many nodes serve a session.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guise::clock::{Clock, SystemClock};
use guise::config::{RedisConfig, SessionStoreConfig, Sessions};
use guise::metrics::Metrics;
use guise::session::SessionManager;
use guise::store::redis::{RedisStore, RedisTimeouts};

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::login::*;
use support::redis::{RedisCluster, RedisServer};
use support::*;

fn redis_yaml(url: &str, extra: &str) -> String {
    session_yaml(&format!(
        "sessions:\n  store: redis\n  redis:\n    url: {url}\n{extra}"
    ))
}

fn token_of(cookie: &str) -> &str {
    cookie.split_once('=').unwrap().1
}

#[tokio::test]
async fn redis_keeps_the_session_under_a_hash_of_the_token_with_its_idle_timeout() {
    let redis = RedisServer::start();
    let f = Fixture::start_with(&redis_yaml(&redis.url(), "  idle_timeout_seconds: 600\n")).await;
    let c = client();
    let base = f.url("");
    let alice = login(&c, &base, "alice@test.example", PW).await;
    let token = token_of(&alice.cookie);
    let key = hex::encode(Sha256::digest(token.as_bytes()));

    let keys = redis.command(&["KEYS", "*"]);
    let listing = format!("{keys:?}");
    assert!(
        !listing.contains(token),
        "the raw token is stored: {listing}"
    );
    let ttl = redis.command(&["PTTL", &format!("guise:session:{{{key}}}")]);
    let ttl_ms: i64 = format!("{ttl:?}")
        .chars()
        .filter(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap();
    assert!((590_000..=600_000).contains(&ttl_ms), "ttl {ttl_ms}");
    assert_eq!(get(&c, &base, &alice, "/api/echo/x").await.status(), 200);
}

#[tokio::test]
async fn a_cached_session_sends_no_command_to_redis() {
    let redis = RedisServer::start();
    let f = Fixture::start_with(&redis_yaml(&redis.url(), "")).await;
    let c = client();
    let base = f.url("");
    let alice = login(&c, &base, "alice@test.example", PW).await;
    // Warm: the first request after login is already cached on this node.
    assert_eq!(get(&c, &base, &alice, "/api/echo/warm").await.status(), 200);

    let before = redis.commandstats();
    // The measurement sees commands at all: the login above sent some.
    assert!(
        before.iter().any(|(k, n)| k != "info" && *n > 0),
        "{before:?}"
    );
    for i in 0..300 {
        let r = get(&c, &base, &alice, &format!("/api/echo/{i}")).await;
        assert_eq!(r.status(), 200);
    }
    let after = redis.commandstats();
    let mut sent = Vec::new();
    for (cmd, n) in &after {
        // `info` is our own INFO commandstats call; `ping` is the background
        // health probe (operations.probe_interval_ms), on its own clock and
        // never on a request's way.
        if cmd != "info" && cmd != "ping" && *n != before.get(cmd).copied().unwrap_or(0) {
            sent.push(format!(
                "{cmd}: {} -> {n}",
                before.get(cmd).copied().unwrap_or(0)
            ));
        }
    }
    assert!(
        sent.is_empty(),
        "300 cached requests sent Redis commands: {sent:?}"
    );
    assert!(
        f.metric("guise_session_cache_requests_total{result=\"hit\"}")
            .await
            >= 300.0
    );
}

#[tokio::test]
async fn two_nodes_share_sessions_and_a_logout_on_one_is_refused_on_the_other_within_100ms() {
    let redis = RedisServer::start();
    let a = Fixture::start_with(&redis_yaml(&redis.url(), "")).await;
    let b = Fixture::start_with(&redis_yaml(&redis.url(), "")).await;
    let c = client();
    let (base_a, base_b) = (a.url(""), b.url(""));

    let mut lags = Vec::new();
    for _ in 0..25 {
        let s = login(&c, &base_a, "bob@test.example", PW).await;
        // Logged in on A, works on B (and is now cached there).
        assert_eq!(get(&c, &base_b, &s, "/api/echo/b").await.status(), 200);
        let r = c
            .post(format!("{base_a}/_guise/logout"))
            .header("cookie", &s.cookie)
            .header("x-csrf-token", &s.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let t0 = Instant::now();
        loop {
            if get(&c, &base_b, &s, "/api/echo/b").await.status() == 401 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "B still accepts a revoked session"
            );
        }
        lags.push(t0.elapsed());
    }
    lags.sort();
    let p99 = lags[(lags.len() * 99 / 100).min(lags.len() - 1)];
    eprintln!(
        "revocation A->B over {} logouts: p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        lags[lags.len() / 2],
        p99,
        lags[lags.len() - 1]
    );
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
    assert!(
        b.metric("guise_session_revocations_total{direction=\"received\"}")
            .await
            >= 25.0
    );
}

#[tokio::test]
async fn an_admin_revocation_on_one_node_ends_the_session_on_the_other() {
    let redis = RedisServer::start();
    let a = Fixture::start_with(&redis_yaml(&redis.url(), "")).await;
    let b = Fixture::start_with(&redis_yaml(&redis.url(), "")).await;
    let c = client();
    let (base_a, base_b) = (a.url(""), b.url(""));
    let admin = login(&c, &base_a, "admin@test.example", PW).await;
    let alice = login(&c, &base_b, "alice@test.example", PW).await;
    assert_eq!(get(&c, &base_b, &alice, "/api/echo/x").await.status(), 200);
    let r = c
        .delete(format!("{base_a}/_guise/admin/users/u-alice/sessions"))
        .header("cookie", &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(2), "revocation on B", || async {
        (get(&c, &base_b, &alice, "/api/echo/x").await.status() == 401).then_some(())
    })
    .await;
}

#[tokio::test]
async fn users_created_through_the_admin_api_survive_a_restart_and_reach_other_nodes() {
    let redis = RedisServer::start();
    let yaml = redis_yaml(&redis.url(), "");
    let a = Fixture::start_with(&yaml).await;
    let b = Fixture::start_with(&yaml).await;
    let c = client();
    let admin = login(&c, &a.url(""), "admin@test.example", PW).await;
    let r = c
        .post(a.url("/_guise/admin/users"))
        .header("cookie", &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .json(&serde_json::json!({"id": "u-kept", "name": "Kept", "email": "kept@test.example", "password": "kept pass"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Node B learns of the user over pub/sub.
    eventually(Duration::from_secs(5), "user on node B", || async {
        (try_login(&c, &b.url(""), "kept@test.example", "kept pass")
            .await
            .status()
            == 200)
            .then_some(())
    })
    .await;
    drop(a);
    drop(b);
    // A fresh gateway on the same Redis still knows the user.
    let fresh = Fixture::start_with(&yaml).await;
    eventually(Duration::from_secs(5), "user after restart", || async {
        (try_login(&c, &fresh.url(""), "kept@test.example", "kept pass")
            .await
            .status()
            == 200)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn redis_down_serves_cached_sessions_for_the_bound_then_503_and_recovers() {
    let mut redis = RedisServer::start();
    let port = redis.port();
    let f = Fixture::start_with(&redis_yaml(
        &redis.url(),
        "  cache_ttl_seconds: 1\n  stale_grace_seconds: 2\n  redis_connect_timeout_ms: 100\n  redis_response_timeout_ms: 200\n",
    ))
    .await;
    let c = client();
    let base = f.url("");
    let alice = login(&c, &base, "alice@test.example", PW).await;
    assert_eq!(get(&c, &base, &alice, "/api/echo/x").await.status(), 200);

    redis.kill();
    let down = Instant::now();
    // Cached: still served while within cache_ttl + stale_grace (3 s).
    assert_eq!(get(&c, &base, &alice, "/api/echo/x").await.status(), 200);
    // Then a clear 503.
    let r = eventually(
        Duration::from_secs(10),
        "503 after the staleness bound",
        || async {
            let r = get(&c, &base, &alice, "/api/echo/x").await;
            (r.status() == 503).then_some(r)
        },
    )
    .await;
    assert!(
        down.elapsed() >= Duration::from_secs(1),
        "stale sessions were dropped too early"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "session_store_unavailable");
    // Public pages still work, with or without the now-unverifiable cookie.
    assert_eq!(c.get(f.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(get(&c, &base, &alice, "/healthz").await.status(), 200);
    // Logins get 503 too, promptly.
    let t0 = Instant::now();
    let r = try_login(&c, &base, "bob@test.example", PW).await;
    assert_eq!(r.status(), 503);
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_eq!(
        client()
            .get(f.ops_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    assert!(f.metric("guise_redis_errors_total").await >= 1.0);
    assert!(
        f.metric("guise_logins_total{result=\"store_unavailable\"}")
            .await
            >= 1.0
    );

    // Redis returns (empty: it kept nothing on disk): guise recovers alone.
    let _redis = RedisServer::start_on(port);
    let bob = eventually(
        Duration::from_secs(15),
        "login after Redis is back",
        || async {
            let r = try_login(&c, &base, "bob@test.example", PW).await;
            if r.status() != 200 {
                return None;
            }
            cookie_from(&r, "guise_session").map(|(cookie, _)| cookie)
        },
    )
    .await;
    let r = c
        .get(f.url("/api/echo/x"))
        .header("cookie", bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        client()
            .get(f.ops_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn sessions_work_on_a_redis_cluster() {
    let cluster = RedisCluster::start(3);
    let urls = cluster
        .urls()
        .iter()
        .map(|u| format!("      - {u}\n"))
        .collect::<String>();
    let yaml = session_yaml(&format!(
        "sessions:\n  store: redis\n  redis:\n    cluster:\n      urls:\n{urls}"
    ));
    let a = Fixture::start_with(&yaml).await;
    let b = Fixture::start_with(&yaml).await;
    let c = client();
    let admin = login(&c, &a.url(""), "admin@test.example", PW).await;
    let mut people = Vec::new();
    for who in ["alice@test.example", "bob@test.example"] {
        let s = login(&c, &a.url(""), who, PW).await;
        assert_eq!(get(&c, &b.url(""), &s, "/api/echo/x").await.status(), 200);
        people.push(s);
    }
    let list: Value = get(
        &c,
        &a.url(""),
        &admin,
        "/_guise/admin/users/u-alice/sessions",
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(list["sessions"].as_array().unwrap().len(), 1);
    let r = c
        .delete(a.url("/_guise/admin/users/u-alice/sessions"))
        .header("cookie", &admin.cookie)
        .header("x-csrf-token", &admin.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(
        Duration::from_secs(3),
        "revocation through the cluster",
        || async {
            (get(&c, &b.url(""), &people[0], "/api/echo/x")
                .await
                .status()
                == 401)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        get(&c, &b.url(""), &people[1], "/api/echo/x")
            .await
            .status(),
        200
    );
}

/// Session settings for nodes built directly on a [`SessionManager`].
fn session_settings(url: &str, idle: u64, refresh: u64, cache_ttl: u64) -> Sessions {
    Sessions {
        store: SessionStoreConfig::Redis(RedisConfig::Single {
            url: url.to_string(),
        }),
        cookie_name: "guise_session".into(),
        idle_timeout: Duration::from_secs(idle),
        absolute_lifetime: Duration::from_secs(3600),
        refresh_interval: Duration::from_secs(refresh),
        cache_ttl: Duration::from_secs(cache_ttl),
        stale_grace: Duration::from_secs(1),
        cache_capacity: 1000,
        redis_connect_timeout: Duration::from_millis(250),
        redis_response_timeout: Duration::from_millis(500),
    }
}

/// A node: a session manager with its own Redis store (its own
/// connections) and metrics, on the shared `clock`.
fn node(settings: &Sessions, clock: Arc<dyn Clock>) -> (Arc<SessionManager>, Metrics) {
    let SessionStoreConfig::Redis(cfg) = &settings.store else {
        unreachable!("redis settings")
    };
    let store = RedisStore::open(cfg, RedisTimeouts::default()).expect("store opens");
    let metrics = Metrics::new();
    let m = SessionManager::new(Arc::new(store), settings.clone(), metrics.clone(), clock);
    (m, metrics)
}

/// Wall-clock seconds and the monotonic instant, moved only by hand: the
/// nodes' decisions (cache age, refresh due) follow it, while Redis keeps
/// its own clock for TTLs.
#[derive(Debug)]
struct HandClock {
    unix_at_start: u64,
    start: tokio::time::Instant,
    offset_s: AtomicU64,
}

impl HandClock {
    fn now() -> HandClock {
        HandClock {
            unix_at_start: guise::clock::unix_now(),
            start: tokio::time::Instant::now(),
            offset_s: AtomicU64::new(0),
        }
    }

    fn advance(&self, secs: u64) {
        self.offset_s.fetch_add(secs, Ordering::Relaxed);
    }
}

impl Clock for HandClock {
    fn unix_now(&self) -> u64 {
        self.unix_at_start + self.offset_s.load(Ordering::Relaxed)
    }

    fn instant(&self) -> tokio::time::Instant {
        self.start + Duration::from_secs(self.offset_s.load(Ordering::Relaxed))
    }
}

#[tokio::test]
async fn two_nodes_serving_one_session_write_it_once_per_refresh_interval_between_them() {
    let redis = RedisServer::start();
    // The defaults: idle 600 s, refresh 60 s, cache_ttl 30 s.
    let settings = session_settings(&redis.url(), 600, 60, 30);
    let clock = Arc::new(HandClock::now());
    let (a, a_metrics) = node(&settings, clock.clone());
    let (b, b_metrics) = node(&settings, clock.clone());
    let (token, active) = a.create("u-1", None, Default::default()).await.unwrap();
    // B's first read (which also loads the script into Redis).
    assert!(b.resolve(&token).await.unwrap().is_some());

    let session_commands = || {
        let stats = redis.commandstats();
        ["evalsha", "get", "set", "zadd"].map(|c| stats.get(c).copied().unwrap_or(0))
    };
    let before = session_commands();
    // Both nodes serve the session every 10 s for two refresh intervals.
    for _ in 0..12 {
        clock.advance(10);
        assert!(a.resolve(&token).await.unwrap().is_some());
        assert!(b.resolve(&token).await.unwrap().is_some());
    }
    let after = session_commands();
    let delta: Vec<u64> = after.iter().zip(before).map(|(n, m)| n - m).collect();
    // Each node re-reads every cache_ttl (at 30, 60, 90 and 120 s): 8
    // scripts that GET the record; two of them were due and wrote it
    // (SET), each followed by one active-set script (ZADD). Before the
    // stored last_seen decided, both nodes wrote at 60 and 120 s.
    assert_eq!(
        delta,
        vec![8 + 2, 8, 2, 2],
        "EVALSHA, GET, SET, ZADD over 120 s"
    );
    assert_eq!(
        a_metrics.session_refreshes.get() + b_metrics.session_refreshes.get(),
        2
    );
    let stored = a.store().get_session(&active.key).await.unwrap().unwrap();
    assert_eq!(stored.last_seen, clock.unix_now());
}

#[tokio::test]
async fn on_redis_a_session_used_only_through_the_other_node_stays_alive_and_an_idle_one_expires() {
    let redis = RedisServer::start();
    // Real time, shortened: idle 4 s, refresh 1 s, cache_ttl 1 s.
    let settings = session_settings(&redis.url(), 4, 1, 1);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (a, _) = node(&settings, clock.clone());
    let (b, _) = node(&settings, clock);
    let (used, _) = a.create("u-1", None, Default::default()).await.unwrap();
    let (idle, idle_active) = a.create("u-2", None, Default::default()).await.unwrap();
    let started = Instant::now();
    // Poll until the idle session is gone from Redis (its 4 s TTL, never
    // slid), using the other one through B all the while. `get_session`
    // does not slide what it reads.
    eventually(
        Duration::from_secs(20),
        "the idle session to expire",
        || {
            let (a, b, used, key) = (a.clone(), b.clone(), used.clone(), idle_active.key.clone());
            async move {
                assert!(
                    b.resolve(&used).await.unwrap().is_some(),
                    "a session in use through B expired after {:?}",
                    started.elapsed()
                );
                a.store()
                    .get_session(&key)
                    .await
                    .unwrap()
                    .is_none()
                    .then_some(())
            }
        },
    )
    .await;
    // The used session was created first, so its first deadline is past.
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        a.resolve(&used).await.unwrap().is_some(),
        "B's use kept the session alive for A"
    );
    assert!(a.resolve(&idle).await.unwrap().is_none());
}
