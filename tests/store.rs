//! One conformance suite for every [`Store`]: the memory store, and the
//! Redis store on a standalone server, a three-master Cluster and through
//! Sentinel; then how the Redis store behaves while Redis is down, frozen
//! or restarted, and that it sends nothing when idle.
//!
//! Expiry is tested with real short idle times and polling with deadlines,
//! since Redis keeps its own clock.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use guise::config::RedisConfig;
use guise::store::memory::MemoryStore;
use guise::store::redis::{RedisStore, RedisTimeouts};
use guise::store::{
    Reread, SessionKey, SessionRecord, Store, StoreError, StoreEvent, StreamId, Touch,
};
use support::redis::{RedisCluster, RedisSentinel, RedisServer, SENTINEL_MASTER};
use support::{eventually, free_port};
use tokio::sync::broadcast;

const LONG: Duration = Duration::from_secs(600);
const SHORT: Duration = Duration::from_millis(300);
/// Generous: the machine is shared and has two cores.
const DEADLINE: Duration = Duration::from_secs(10);
/// What "fails fast" means for an operation while Redis is down.
const PROMPT: Duration = Duration::from_secs(2);
/// `last_seen` of every [`record`], in unix seconds.
const T0: u64 = 1_700_000_000;
/// The refresh gap touches pass: a touch writes when the stored
/// `last_seen` is at least this much older than its `now`.
const GAP: Duration = Duration::from_secs(60);

fn key(s: &str) -> SessionKey {
    SessionKey(format!("{s:0>64}"))
}

fn record(user: &str, reference: &str) -> SessionRecord {
    let mut extra = std::collections::BTreeMap::new();
    // Values that would trip naive JSON editing in Lua.
    extra.insert("real_actor".to_string(), "admin \"x\" \\ ü".to_string());
    extra.insert("last_seen".to_string(), "\"last_seen\":1".to_string());
    SessionRecord {
        user_id: user.to_string(),
        reference: reference.to_string(),
        created_at: T0,
        last_seen: T0,
        absolute_expiry: 4_000_000_000,
        csrf_token: format!("csrf-{reference}"),
        client_ip: Some("127.0.0.1".to_string()),
        extra,
    }
}

fn redis_store(cfg: RedisConfig) -> Arc<dyn Store> {
    Arc::new(RedisStore::open(&cfg, RedisTimeouts::default()).expect("store opens"))
}

fn single(url: &str) -> RedisConfig {
    RedisConfig::Single {
        url: url.to_string(),
    }
}

/// Sorted by key, for comparisons.
async fn sessions_of(s: &dyn Store, user: &str) -> Vec<(SessionKey, SessionRecord)> {
    let mut v = s.user_sessions(user).await.expect("user_sessions");
    v.sort_by(|a, b| a.0 .0.cmp(&b.0 .0));
    v
}

/// The next event that is not a probe (`UserChanged` of `probe-*`, which
/// [`wait_until_hearing`] may have sent more than once), within `DEADLINE`.
async fn next_event(rx: &mut broadcast::Receiver<StoreEvent>) -> StoreEvent {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => panic!("no event within {DEADLINE:?}"),
            Ok(Err(e)) => panic!("event stream broke: {e}"),
            Ok(Ok(StoreEvent::UserChanged { user_id })) if user_id.starts_with("probe-") => {}
            Ok(Ok(ev)) => return ev,
        }
    }
}

/// The next event that is neither a probe nor a `Resync`.
async fn next_real_event(rx: &mut broadcast::Receiver<StoreEvent>) -> StoreEvent {
    loop {
        match next_event(rx).await {
            StoreEvent::Resync => {}
            ev => return ev,
        }
    }
}

/// Publish probes from `from` until `rx` hears one: the subscription
/// behind `rx` is established from then on.
async fn wait_until_hearing(from: &dyn Store, rx: &mut broadcast::Receiver<StoreEvent>) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let probe = format!("probe-{}", rand_suffix());
    loop {
        let _ = from
            .publish(&StoreEvent::UserChanged {
                user_id: probe.clone(),
            })
            .await;
        let until = tokio::time::Instant::now() + Duration::from_millis(100);
        loop {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Ok(StoreEvent::UserChanged { user_id })) if user_id == probe => return,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("event stream closed"),
                Err(_) => break,
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriber never heard a probe"
        );
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    h.finish()
}

/// Every claim of the `Store` contract. `a` and `b` share one backend (two
/// Redis stores on one server, or the same memory store twice).
/// Wait, with the deadline, until `store` no longer has session `key`
/// (`what` says which, when it does not happen).
async fn gone(store: &Arc<dyn Store>, key: &SessionKey, what: &str) {
    eventually(DEADLINE, what, || {
        let store = store.clone();
        let key = key.clone();
        async move {
            store
                .get_session(&key)
                .await
                .unwrap()
                .is_none()
                .then_some(())
        }
    })
    .await;
}

async fn conformance(a: Arc<dyn Store>, b: Arc<dyn Store>) {
    a.ping().await.expect("ping");

    // --- put / get / touch / delete ---
    let k1 = key("1");
    let r1 = record("alice", "r1");
    assert_eq!(a.get_session(&k1).await.unwrap(), None);
    a.put_session(&k1, &r1, LONG).await.unwrap();
    assert_eq!(a.get_session(&k1).await.unwrap(), Some(r1.clone()));
    assert_eq!(
        b.get_session(&k1).await.unwrap(),
        Some(r1.clone()),
        "a session is shared by every store on the backend"
    );

    assert_eq!(
        a.touch_session(&k1, T0 + 123, LONG, GAP).await.unwrap(),
        Touch::Written
    );
    let touched = a.get_session(&k1).await.unwrap().expect("still there");
    assert_eq!(touched.last_seen, T0 + 123);
    assert_eq!(
        SessionRecord {
            last_seen: r1.last_seen,
            ..touched.clone()
        },
        r1,
        "touch changes only last_seen"
    );

    let missing = key("missing");
    assert_eq!(
        a.touch_session(&missing, T0 + 123, LONG, GAP)
            .await
            .unwrap(),
        Touch::Gone
    );
    assert_eq!(
        a.get_session(&missing).await.unwrap(),
        None,
        "touch creates nothing"
    );

    assert_eq!(a.delete_session(&k1).await.unwrap(), Some(touched));
    assert_eq!(a.get_session(&k1).await.unwrap(), None);
    assert_eq!(a.delete_session(&k1).await.unwrap(), None);
    assert_eq!(
        a.touch_session(&k1, T0 + 999, LONG, GAP).await.unwrap(),
        Touch::Gone
    );
    assert_eq!(
        a.get_session(&k1).await.unwrap(),
        None,
        "touch does not resurrect a deleted session"
    );

    // --- idle expiry ---
    let k2 = key("2");
    a.put_session(&k2, &record("bob", "r2"), SHORT)
        .await
        .unwrap();
    assert!(a.get_session(&k2).await.unwrap().is_some());
    gone(&a, &k2, "idle session to expire").await;
    assert_eq!(
        a.touch_session(&k2, T0 + 999, LONG, GAP).await.unwrap(),
        Touch::Gone,
        "touch does not resurrect an expired session"
    );
    assert_eq!(a.get_session(&k2).await.unwrap(), None);

    // Touch moves the idle deadline: a long touch outlives the short idle
    // time it was created with, and a short touch shortens it again.
    let k3 = key("3");
    let started = Instant::now();
    a.put_session(&k3, &record("bob", "r3"), SHORT)
        .await
        .unwrap();
    assert_eq!(
        a.touch_session(&k3, T0 + 100, LONG, GAP).await.unwrap(),
        Touch::Written
    );
    tokio::time::sleep((SHORT * 2).saturating_sub(started.elapsed())).await;
    assert!(
        a.get_session(&k3).await.unwrap().is_some(),
        "touched session outlived its first idle time"
    );
    assert_eq!(
        a.touch_session(&k3, T0 + 200, SHORT, GAP).await.unwrap(),
        Touch::Written
    );
    gone(&a, &k3, "touched session to expire").await;

    // --- the stored last_seen decides whether a touch writes ---
    // Two stores on one backend stand for two gateway nodes serving one
    // session: whichever touches first when a refresh is due writes, and
    // the other learns when, instead of writing again.
    let k5 = key("5");
    let r5 = record("bob", "r5");
    a.put_session(&k5, &r5, LONG).await.unwrap();
    assert_eq!(
        b.touch_session(&k5, T0 + 59, LONG, GAP).await.unwrap(),
        Touch::Recent(T0),
        "within the gap of the stored last_seen nothing is written"
    );
    assert_eq!(
        b.touch_session(&k5, T0 - 5, LONG, GAP).await.unwrap(),
        Touch::Recent(T0),
        "a stored last_seen ahead of now (clock skew) is recent too"
    );
    assert_eq!(a.get_session(&k5).await.unwrap(), Some(r5.clone()));
    assert_eq!(
        a.touch_session(&k5, T0 + 60, LONG, GAP).await.unwrap(),
        Touch::Written,
        "a gap after the stored last_seen the touch is due"
    );
    assert_eq!(
        b.touch_session(&k5, T0 + 61, LONG, GAP).await.unwrap(),
        Touch::Recent(T0 + 60),
        "the other store sees the first one's write and does not repeat it"
    );
    assert_eq!(
        b.touch_session(&k5, T0 + 120, LONG, GAP).await.unwrap(),
        Touch::Written
    );
    assert_eq!(
        a.touch_session(&k5, T0 + 120, LONG, Duration::ZERO)
            .await
            .unwrap(),
        Touch::Written,
        "a zero gap always writes"
    );
    assert_eq!(
        b.get_session(&k5).await.unwrap().map(|r| r.last_seen),
        Some(T0 + 120)
    );

    // No slide past the absolute expiry, which no activity extends.
    let k6 = key("6");
    let r6 = SessionRecord {
        absolute_expiry: T0 + 100,
        ..record("bob", "r6")
    };
    a.put_session(&k6, &r6, LONG).await.unwrap();
    assert_eq!(
        a.touch_session(&k6, T0 + 100, LONG, GAP).await.unwrap(),
        Touch::Recent(T0)
    );
    assert_eq!(a.get_session(&k6).await.unwrap(), Some(r6));

    // A touch that is not due leaves the idle deadline where it was.
    let k7 = key("7");
    a.put_session(&k7, &record("bob", "r7"), SHORT)
        .await
        .unwrap();
    assert_eq!(
        a.touch_session(&k7, T0 + 1, LONG, GAP).await.unwrap(),
        Touch::Recent(T0)
    );
    gone(&a, &k7, "a session touched too early to expire").await;

    // --- the re-read that slides in the same step ---
    let k8 = key("8");
    let r8 = record("bob", "r8");
    a.put_session(&k8, &r8, LONG).await.unwrap();
    assert_eq!(
        a.read_session_touching(&k8, T0 + 30, LONG, GAP)
            .await
            .unwrap(),
        Some(Reread {
            record: r8.clone(),
            written: false
        }),
        "not due: the record as stored, nothing written"
    );
    let slid = SessionRecord {
        last_seen: T0 + 60,
        ..r8.clone()
    };
    assert_eq!(
        b.read_session_touching(&k8, T0 + 60, LONG, GAP)
            .await
            .unwrap(),
        Some(Reread {
            record: slid.clone(),
            written: true
        }),
        "due: the record with its new last_seen, and only that changed"
    );
    assert_eq!(a.get_session(&k8).await.unwrap(), Some(slid.clone()));
    assert_eq!(
        a.read_session_touching(&k8, T0 + 61, LONG, GAP)
            .await
            .unwrap(),
        Some(Reread {
            record: slid,
            written: false
        }),
        "the other store's slide counts"
    );
    assert_eq!(
        a.read_session_touching(&key("missing"), T0 + 999, LONG, GAP)
            .await
            .unwrap(),
        None,
        "a re-read creates nothing"
    );
    // It moves the idle deadline when it writes, and only then.
    let (k9, k10) = (key("9"), key("10"));
    a.put_session(&k9, &record("bob", "r9"), SHORT)
        .await
        .unwrap();
    a.put_session(&k10, &record("bob", "r10"), SHORT)
        .await
        .unwrap();
    let due = a.read_session_touching(&k9, T0 + 60, LONG, GAP).await;
    assert!(due.unwrap().is_some_and(|r| r.written));
    let early = a.read_session_touching(&k10, T0 + 59, LONG, GAP).await;
    assert!(early.unwrap().is_some_and(|r| !r.written));
    gone(&a, &k10, "the session re-read too early to expire").await;
    // k9 was put before k10, so its first deadline has passed too.
    assert!(
        a.get_session(&k9).await.unwrap().is_some(),
        "the session slid by a re-read outlived its first idle time"
    );

    // --- user index ---
    let (u1, u2, u3) = (key("u1"), key("u2"), key("u3"));
    let (ru1, ru2) = (record("carol", "ru1"), record("carol", "ru2"));
    a.put_session(&u1, &ru1, LONG).await.unwrap();
    a.put_session(&u2, &ru2, LONG).await.unwrap();
    a.put_session(&u3, &record("dave", "ru3"), LONG)
        .await
        .unwrap();
    assert_eq!(
        sessions_of(&*b, "carol").await,
        vec![(u1.clone(), ru1.clone()), (u2.clone(), ru2.clone())]
    );
    assert!(sessions_of(&*a, "nobody").await.is_empty());

    a.delete_session(&u1).await.unwrap();
    assert_eq!(
        sessions_of(&*a, "carol").await,
        vec![(u2.clone(), ru2.clone())]
    );

    let u4 = key("u4");
    a.put_session(&u4, &record("carol", "ru4"), SHORT)
        .await
        .unwrap();
    assert_eq!(sessions_of(&*a, "carol").await.len(), 2);
    eventually(DEADLINE, "expired session to leave the index", || {
        let a = a.clone();
        let want = vec![(u2.clone(), ru2.clone())];
        async move { (sessions_of(&*a, "carol").await == want).then_some(()) }
    })
    .await;

    // A key taken over by another user leaves the first user's listing.
    a.put_session(&u2, &record("erin", "ru2"), LONG)
        .await
        .unwrap();
    assert!(sessions_of(&*a, "carol").await.is_empty());
    assert_eq!(sessions_of(&*a, "erin").await.len(), 1);

    // --- session count ---
    let base = a.session_count().await.unwrap();
    let (c1, c2, c3) = (key("c1"), key("c2"), key("c3"));
    a.put_session(&c1, &record("frank", "c1"), LONG)
        .await
        .unwrap();
    a.put_session(&c2, &record("frank", "c2"), LONG)
        .await
        .unwrap();
    a.put_session(&c3, &record("frank", "c3"), SHORT)
        .await
        .unwrap();
    assert_eq!(b.session_count().await.unwrap(), base + 3);
    a.delete_session(&c1).await.unwrap();
    assert_eq!(
        a.touch_session(&c2, T0 + 100, LONG, GAP).await.unwrap(),
        Touch::Written
    );
    gone(&a, &c3, "the short session to expire").await;
    eventually(DEADLINE, "count to drop the expired session", || {
        let a = a.clone();
        async move { (a.session_count().await.unwrap() == base + 1).then_some(()) }
    })
    .await;
    assert_eq!(
        a.touch_session(&c3, T0 + 100, LONG, GAP).await.unwrap(),
        Touch::Gone
    );
    assert_eq!(
        a.session_count().await.unwrap(),
        base + 1,
        "touching a dead session does not count it"
    );

    // --- counters ---
    let window = Duration::from_secs(60);
    let h1 = a.hit("login:alice", window).await.unwrap();
    assert_eq!(h1.count, 1);
    assert!(h1.resets_in > Duration::ZERO && h1.resets_in <= window);
    let h2 = b.hit("login:alice", window).await.unwrap();
    assert_eq!(h2.count, 2);
    assert!(h2.resets_in <= h1.resets_in, "the window is fixed");
    assert_eq!(a.hit("login:bob", window).await.unwrap().count, 1);
    // Forgiving takes one hit back, never below zero, and never makes a
    // counter that was not there.
    b.forgive("login:alice").await.unwrap();
    assert_eq!(a.hit("login:alice", window).await.unwrap().count, 2);
    a.forgive("never-hit").await.unwrap();
    a.forgive("never-hit").await.unwrap();
    assert_eq!(a.hit("never-hit", window).await.unwrap().count, 1);
    a.reset("never-hit").await.unwrap();
    a.reset("login:alice").await.unwrap();
    a.reset("never-hit").await.unwrap();
    assert_eq!(a.hit("login:alice", window).await.unwrap().count, 1);

    let first = a.hit("short", SHORT).await.unwrap();
    assert_eq!(first.count, 1);
    assert!(first.resets_in <= SHORT);
    eventually(DEADLINE, "the counter's window to end", || {
        let a = a.clone();
        async move { (a.hit("short", SHORT).await.unwrap().count == 1).then_some(()) }
    })
    .await;

    // --- user records ---
    a.save_user("u-2", r#"{"id":"u-2"}"#).await.unwrap();
    a.save_user("u-1", r#"{"id":"u-1","v":1}"#).await.unwrap();
    b.save_user("u-1", r#"{"id":"u-1","v":2}"#).await.unwrap();
    let mut users = a.load_users().await.unwrap();
    users.sort();
    assert_eq!(
        users,
        vec![
            ("u-1".to_string(), r#"{"id":"u-1","v":2}"#.to_string()),
            ("u-2".to_string(), r#"{"id":"u-2"}"#.to_string()),
        ]
    );
    assert_eq!(
        b.load_user("u-1").await.unwrap().as_deref(),
        Some(r#"{"id":"u-1","v":2}"#)
    );
    assert_eq!(a.load_user("nobody").await.unwrap(), None);

    // --- one-time tokens ---
    let once = format!("set-password:{:0>64}", "ab");
    assert_eq!(a.swap_once(&once, "spent").await.unwrap(), None);
    assert_eq!(
        a.peek_once(&once).await.unwrap(),
        None,
        "swapping an unknown key stores nothing"
    );
    a.put_once(&once, r#"{"user_id":"u-1"}"#, LONG)
        .await
        .unwrap();
    assert_eq!(
        b.peek_once(&once).await.unwrap().as_deref(),
        Some(r#"{"user_id":"u-1"}"#),
        "a token is seen by every store on the backend, and peeking leaves it"
    );
    assert_eq!(
        b.swap_once(&once, "spent").await.unwrap().as_deref(),
        Some(r#"{"user_id":"u-1"}"#)
    );
    assert_eq!(
        a.swap_once(&once, "spent").await.unwrap().as_deref(),
        Some("spent"),
        "spent only once; the second use sees that it was spent"
    );
    assert_eq!(a.peek_once(&once).await.unwrap().as_deref(), Some("spent"));
    // Two swaps racing on two stores: exactly one reads the live value.
    for round in 0..20 {
        let live = format!("race-{round}");
        a.put_once(&once, &live, LONG).await.unwrap();
        let (x, y) = tokio::join!(a.swap_once(&once, "spent"), b.swap_once(&once, "spent"));
        let mut got = [x.unwrap(), y.unwrap()];
        got.sort();
        assert_eq!(
            got,
            [Some(live), Some("spent".to_string())],
            "one winner, one loser"
        );
    }
    // Putting again replaces the value and its lifetime; the spent marker
    // keeps the lifetime it replaced.
    a.put_once(&once, "first", LONG).await.unwrap();
    a.put_once(&once, "second", SHORT).await.unwrap();
    assert_eq!(a.peek_once(&once).await.unwrap().as_deref(), Some("second"));
    assert_eq!(
        b.swap_once(&once, "spent").await.unwrap().as_deref(),
        Some("second")
    );
    eventually(DEADLINE, "the spent token to expire", || {
        let a = a.clone();
        let once = once.clone();
        async move { a.peek_once(&once).await.unwrap().is_none().then_some(()) }
    })
    .await;
    assert_eq!(
        a.swap_once(&once, "spent").await.unwrap(),
        None,
        "an expired token cannot be spent"
    );

    // --- other records, by kind ---
    a.save_record("partner", "p-1", r#"{"id":"p-1"}"#)
        .await
        .unwrap();
    b.save_record("partner", "p-1", r#"{"id":"p-1","v":2}"#)
        .await
        .unwrap();
    a.save_record("tenant", "p-1", r#"{"id":"t"}"#)
        .await
        .unwrap();
    assert_eq!(
        b.load_records("partner").await.unwrap(),
        vec![("p-1".to_string(), r#"{"id":"p-1","v":2}"#.to_string())]
    );
    assert_eq!(a.load_records("bundle").await.unwrap(), vec![]);

    // --- compare-and-set of one record ---
    assert!(
        a.replace_record("policy", "p", None, "v1").await.unwrap(),
        "absent as expected: written"
    );
    assert!(
        !b.replace_record("policy", "p", None, "lost").await.unwrap(),
        "expected absent, found v1: refused"
    );
    assert!(b
        .replace_record("policy", "p", Some("v1"), "v2")
        .await
        .unwrap());
    assert!(
        !a.replace_record("policy", "p", Some("v1"), "stale")
            .await
            .unwrap(),
        "a writer that read v1 cannot overwrite v2"
    );
    assert!(
        !a.replace_record("policy", "other", Some("v2"), "x")
            .await
            .unwrap(),
        "an absent record does not match a value"
    );
    assert_eq!(
        a.load_records("policy").await.unwrap(),
        vec![("p".to_string(), "v2".to_string())],
        "refused writes leave nothing behind"
    );

    audit_conformance(&*a, &*b).await;

    // --- events between stores ---
    let mut on_b = b.subscribe();
    let mut on_a = a.subscribe();
    wait_until_hearing(&*a, &mut on_b).await;
    wait_until_hearing(&*b, &mut on_a).await;
    let ev = StoreEvent::SessionRevoked {
        key: key("gone"),
        reason: None,
    };
    a.publish(&ev).await.unwrap();
    assert_eq!(
        next_real_event(&mut on_b).await,
        ev,
        "the other node hears it"
    );
    assert_eq!(
        next_real_event(&mut on_a).await,
        ev,
        "the sender hears it too"
    );
    let ev2 = StoreEvent::UserChanged {
        user_id: "alice".to_string(),
    };
    b.publish(&ev2).await.unwrap();
    assert_eq!(next_real_event(&mut on_a).await, ev2);
}

/// Audit entries as read back, newest first.
async fn audit_entries(s: &dyn Store, before: Option<&str>, count: usize) -> Vec<(String, String)> {
    s.read_audit(before, count).await.expect("read_audit")
}

/// The audit stream's claims: order, ids, paging with `before`, trimming.
/// Runs on a fresh backend, where the stream starts empty.
async fn audit_conformance(a: &dyn Store, b: &dyn Store) {
    assert_eq!(audit_entries(a, None, 10).await, vec![], "starts empty");
    // Values JSON and Redis could both mangle if handled as anything but
    // opaque bytes.
    let first: Vec<String> = vec![
        r#"{"n":0,"s":"\"quoted\" \\ ü \n"}"#.to_string(),
        r#"{"n":1}"#.to_string(),
        r#"{"n":2}"#.to_string(),
    ];
    a.append_audit(&first, 1_000).await.unwrap();
    b.append_audit(&[r#"{"n":3}"#.to_string()], 1_000)
        .await
        .unwrap();
    a.append_audit(&[], 1_000).await.unwrap();

    let all = audit_entries(b, None, 10).await;
    let jsons: Vec<&str> = all.iter().map(|(_, j)| j.as_str()).collect();
    assert_eq!(
        jsons,
        vec![r#"{"n":3}"#, r#"{"n":2}"#, r#"{"n":1}"#, first[0].as_str()],
        "newest first, in the order appended, from either store, byte for byte"
    );
    let ids: Vec<StreamId> = all.iter().map(|(id, _)| id.parse().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "ids strictly decrease: {ids:?}"
    );

    // Paging: `before` is exclusive, and the pages add up to the whole.
    let page1 = audit_entries(a, None, 2).await;
    assert_eq!(page1, all[..2]);
    let page2 = audit_entries(a, Some(&page1[1].0), 2).await;
    assert_eq!(page2, all[2..4], "strictly older than the cursor");
    assert_eq!(audit_entries(a, Some(&page2[1].0), 2).await, vec![]);
    assert_eq!(audit_entries(a, Some("0-0"), 2).await, vec![]);
    assert_eq!(audit_entries(a, None, 0).await, vec![]);
    // A cursor between entries (not an id that exists) works as well.
    let newest: StreamId = all[0].0.parse().unwrap();
    let past_all = StreamId {
        ms: newest.ms + 1,
        seq: 0,
    };
    assert_eq!(audit_entries(a, Some(&past_all.to_string()), 10).await, all);
    for bad in ["", "12", "-", "+", "1-2-3", "x-1", "1-", "(1-0"] {
        assert!(
            matches!(
                a.read_audit(Some(bad), 10).await,
                Err(StoreError::Invalid(_))
            ),
            "cursor {bad:?} is refused"
        );
    }

    // Trimming keeps at least `max_len`, the newest. Redis trims whole
    // stream nodes (100 entries by default) as `MAXLEN ~` does, so a
    // thousand appends in batches must have dropped some.
    let batch = |round: usize| -> Vec<String> {
        (0..100)
            .map(|i| format!(r#"{{"round":{round},"i":{i}}}"#))
            .collect()
    };
    for round in 0..10 {
        a.append_audit(&batch(round), 150).await.unwrap();
    }
    let kept = audit_entries(b, None, 10_000).await;
    assert!(
        (150..1_000).contains(&kept.len()),
        "kept {} of 1004 with max_len 150",
        kept.len()
    );
    let expected: Vec<String> = (0..10).flat_map(batch).rev().take(kept.len()).collect();
    let kept_jsons: Vec<String> = kept.into_iter().map(|(_, j)| j).collect();
    assert_eq!(kept_jsons, expected, "what is kept is the newest, in order");
}

#[tokio::test]
async fn memory_store_passes_the_conformance_suite() {
    let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
    assert_eq!(s.kind(), "memory");
    conformance(s.clone(), s).await;
}

#[tokio::test]
async fn redis_store_passes_the_conformance_suite() {
    let server = RedisServer::start();
    let a = redis_store(single(&server.url()));
    let b = redis_store(single(&server.url()));
    assert_eq!(a.kind(), "redis");
    conformance(a, b).await;
}

#[tokio::test]
async fn redis_cluster_store_passes_the_conformance_suite() {
    let cluster = RedisCluster::start(3);
    let cfg = RedisConfig::Cluster {
        urls: cluster.urls(),
    };
    // The second store knows only one seed: it finds the rest itself.
    let b_cfg = RedisConfig::Cluster {
        urls: cluster.urls()[2..].to_vec(),
    };
    conformance(redis_store(cfg), redis_store(b_cfg)).await;
}

#[tokio::test]
async fn redis_cluster_store_resubscribes_on_another_node_when_its_node_dies() {
    let mut cluster = RedisCluster::start(3);
    // Seeds ordered so the subscriber starts on a node that does not serve
    // the events channel's slot (PUBLISH is routed there), and that node
    // is the one that dies.
    let owner = cluster.node_for(guise::store::redis::EVENTS_CHANNEL);
    let victim = (owner + 1) % 3;
    let mut urls = cluster.urls();
    urls.swap(0, victim);
    let store = Arc::new(
        RedisStore::open(&RedisConfig::Cluster { urls }, RedisTimeouts::default()).expect("opens"),
    );
    assert!(store.wait_subscribed(DEADLINE).await);
    let as_store: Arc<dyn Store> = store.clone();
    let mut rx = as_store.subscribe();
    wait_until_hearing(&*as_store, &mut rx).await;

    cluster.nodes[victim].kill();
    let first = next_event(&mut rx).await;
    assert_eq!(first, StoreEvent::Resync);
    assert!(store.is_subscribed());
    let ev = StoreEvent::UserChanged {
        user_id: "after-failover".to_string(),
    };
    eventually(DEADLINE, "publish to work again", || {
        let s = as_store.clone();
        let ev = ev.clone();
        async move { s.publish(&ev).await.ok() }
    })
    .await;
    assert_eq!(next_real_event(&mut rx).await, ev);
}

#[tokio::test]
async fn redis_sentinel_store_passes_the_conformance_suite() {
    let s = RedisSentinel::start();
    let cfg = RedisConfig::Sentinel {
        master_name: SENTINEL_MASTER.to_string(),
        urls: vec![s.sentinel_url()],
    };
    conformance(redis_store(cfg.clone()), redis_store(cfg)).await;
    assert!(
        s.master.command(&["DBSIZE"]) != support::redis::Reply::Int(0),
        "data went to the master the sentinel names"
    );
}

/// Run `f` and check it failed as `Unavailable` within [`PROMPT`].
async fn fails_promptly<T: std::fmt::Debug>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, StoreError>>,
) {
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"));
    let took = started.elapsed();
    assert!(
        matches!(r, Err(StoreError::Unavailable(_))),
        "{what}: expected Unavailable, got {r:?}"
    );
    assert!(took < PROMPT, "{what} took {took:?}");
}

async fn every_operation_fails_promptly(s: &dyn Store) {
    let k = key("down");
    fails_promptly("ping", s.ping()).await;
    fails_promptly("put_session", s.put_session(&k, &record("x", "x"), LONG)).await;
    fails_promptly("get_session", s.get_session(&k)).await;
    fails_promptly("touch_session", s.touch_session(&k, T0, LONG, GAP)).await;
    fails_promptly(
        "read_session_touching",
        s.read_session_touching(&k, T0, LONG, GAP),
    )
    .await;
    fails_promptly("delete_session", s.delete_session(&k)).await;
    fails_promptly("user_sessions", s.user_sessions("x")).await;
    fails_promptly("session_count", s.session_count()).await;
    fails_promptly("hit", s.hit("x", LONG)).await;
    fails_promptly("reset", s.reset("x")).await;
    fails_promptly("forgive", s.forgive("x")).await;
    fails_promptly("save_user", s.save_user("x", "{}")).await;
    fails_promptly("load_users", s.load_users()).await;
    fails_promptly("load_user", s.load_user("x")).await;
    fails_promptly("put_once", s.put_once("x", "v", LONG)).await;
    fails_promptly("swap_once", s.swap_once("x", "spent")).await;
    fails_promptly("peek_once", s.peek_once("x")).await;
    fails_promptly("save_record", s.save_record("k", "x", "{}")).await;
    fails_promptly("load_records", s.load_records("k")).await;
    fails_promptly("replace_record", s.replace_record("k", "x", None, "{}")).await;
    fails_promptly("publish", s.publish(&StoreEvent::Resync)).await;
    fails_promptly("append_audit", s.append_audit(&["{}".to_string()], 10)).await;
    fails_promptly("read_audit", s.read_audit(None, 10)).await;
}

async fn wait_until_up(s: &dyn Store) {
    eventually(DEADLINE, "store to reach redis", || async move {
        s.ping().await.ok()
    })
    .await;
}

#[tokio::test]
async fn redis_store_opens_while_redis_is_down_and_recovers_when_it_starts() {
    let port = free_port();
    let store = RedisStore::open(
        &single(&format!("redis://127.0.0.1:{port}")),
        RedisTimeouts::default(),
    )
    .expect("opens without redis");
    let errors = store.error_counter();
    let store: Arc<dyn Store> = Arc::new(store);
    let mut rx = store.subscribe();

    every_operation_fails_promptly(&*store).await;
    assert!(errors.get() >= 12, "failures are counted");

    let _server = RedisServer::start_on(port);
    wait_until_up(&*store).await;
    let k = key("after");
    store
        .put_session(&k, &record("x", "x"), LONG)
        .await
        .unwrap();
    assert!(store.get_session(&k).await.unwrap().is_some());

    // Events may have been missed while nobody was subscribed.
    let first = next_event(&mut rx).await;
    assert_eq!(first, StoreEvent::Resync);
    let other = redis_store(single(&format!("redis://127.0.0.1:{port}")));
    wait_until_hearing(&*other, &mut rx).await;
    let ev = StoreEvent::UserChanged {
        user_id: "u".to_string(),
    };
    other.publish(&ev).await.unwrap();
    assert_eq!(next_real_event(&mut rx).await, ev);
}

#[tokio::test]
async fn redis_store_recovers_after_redis_restarts_on_the_same_port() {
    let mut server = RedisServer::start();
    let port = server.port();
    let store = Arc::new(
        RedisStore::open(&single(&server.url()), RedisTimeouts::default()).expect("opens"),
    );
    assert!(store.wait_subscribed(DEADLINE).await);
    let as_store: Arc<dyn Store> = store.clone();
    let mut rx = as_store.subscribe();
    let k = key("before");
    as_store
        .put_session(&k, &record("x", "x"), LONG)
        .await
        .unwrap();

    server.kill();
    every_operation_fails_promptly(&*as_store).await;
    eventually(DEADLINE, "subscription to notice", || {
        let s = store.clone();
        async move { (!s.is_subscribed()).then_some(()) }
    })
    .await;

    let _server = RedisServer::start_on(port);
    // The same store object, never recreated.
    wait_until_up(&*as_store).await;
    as_store
        .put_session(&k, &record("y", "y"), LONG)
        .await
        .unwrap();
    assert_eq!(
        as_store.get_session(&k).await.unwrap().map(|r| r.user_id),
        Some("y".to_string())
    );

    let first = next_event(&mut rx).await;
    assert_eq!(first, StoreEvent::Resync, "Resync comes first");
    let ev = StoreEvent::SessionRevoked {
        key: key("r"),
        reason: Some("impersonation started".into()),
    };
    wait_until_hearing(&*as_store, &mut rx).await;
    as_store.publish(&ev).await.unwrap();
    assert_eq!(next_real_event(&mut rx).await, ev);
}

#[tokio::test]
async fn redis_store_hides_a_restart_that_happened_while_it_was_idle() {
    let mut server = RedisServer::start();
    let port = server.port();
    let store = redis_store(single(&server.url()));
    store
        .put_session(&key("idle"), &record("x", "x"), LONG)
        .await
        .unwrap();
    server.kill();
    let _server = RedisServer::start_on(port);
    // The old connection is dead but nobody noticed yet: the first
    // operation finds out and repeats itself on a new connection.
    assert_eq!(store.get_session(&key("idle")).await.unwrap(), None);
    assert_eq!(store.hit("once", LONG).await.unwrap().count, 1);
}

#[tokio::test]
async fn redis_store_never_repeats_an_audit_append_after_a_restart_it_did_not_see() {
    let mut server = RedisServer::start();
    let port = server.port();
    let store = redis_store(single(&server.url()));
    store.ping().await.unwrap();
    server.kill();
    let _server = RedisServer::start_on(port);
    // Unlike every other operation (see the test above), the append is not
    // sent again on a new connection: a batch that reached Redis before
    // the connection died would be appended twice. It fails, and the
    // caller's next attempt goes through, once.
    let entry = vec![r#"{"once":true}"#.to_string()];
    assert!(matches!(
        store.append_audit(&entry, 10).await,
        Err(StoreError::Unavailable(_))
    ));
    store.append_audit(&entry, 10).await.unwrap();
    let stored = store.read_audit(None, 10).await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(
        support::redis::command(port, &["XLEN", "guise:audit"]).unwrap(),
        support::redis::Reply::Int(1)
    );
}

#[tokio::test]
async fn redis_store_answers_unavailable_when_redis_stops_answering() {
    let server = RedisServer::start();
    let store = redis_store(single(&server.url()));
    let k = key("frozen");
    store
        .put_session(&k, &record("x", "x"), LONG)
        .await
        .unwrap();

    server.freeze();
    // Thaw even if an assertion fails, so the server can be killed.
    struct Thaw<'a>(&'a RedisServer);
    impl Drop for Thaw<'_> {
        fn drop(&mut self) {
            self.0.thaw();
        }
    }
    let thaw = Thaw(&server);
    fails_promptly("get_session", store.get_session(&k)).await;
    fails_promptly("hit", store.hit("x", LONG)).await;
    drop(thaw);

    wait_until_up(&*store).await;
    assert!(store.get_session(&k).await.unwrap().is_some());
}

/// The commands `server` ran since its `before` command counts, by name
/// and sorted, leaving out the `INFO` that reads the counts.
fn sent_since(
    server: &RedisServer,
    before: &std::collections::HashMap<String, u64>,
) -> Vec<(String, u64)> {
    let mut delta: Vec<(String, u64)> = server
        .commandstats()
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect();
    delta.sort();
    delta
}

#[tokio::test]
async fn redis_store_sends_nothing_beyond_the_commands_it_is_asked_for() {
    let server = RedisServer::start();
    let store = Arc::new(
        RedisStore::open(&single(&server.url()), RedisTimeouts::default()).expect("opens"),
    );
    assert!(store.wait_subscribed(DEADLINE).await);
    let k = key("quiet");
    store
        .put_session(&k, &record("x", "x"), LONG)
        .await
        .unwrap();

    let before = server.commandstats();
    for _ in 0..25 {
        store.get_session(&k).await.unwrap();
    }
    // Absence takes watching: for 1.5 s, long enough for any keep-alive
    // or poll to show up, nothing more may arrive; the first extra
    // command fails the test at once.
    let asked = vec![("get".to_string(), 25)];
    let watch_until = Instant::now() + Duration::from_millis(1500);
    loop {
        assert_eq!(sent_since(&server, &before), asked);
        if Instant::now() >= watch_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn redis_store_writes_a_slide_and_the_active_set_only_when_one_is_due() {
    let server = RedisServer::start();
    let store = redis_store(single(&server.url()));
    let k = key("slide");
    store
        .put_session(&k, &record("x", "x"), LONG)
        .await
        .unwrap();
    let counts = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(k, n)| (k.to_string(), *n))
            .collect::<Vec<_>>()
    };

    // The first use of a script loads it (`NOSCRIPT`, `SCRIPT LOAD`).
    store.touch_session(&k, T0, LONG, GAP).await.unwrap();

    // Not due (ten nodes re-reading within the gap): one script each,
    // reading and nothing else.
    let before = server.commandstats();
    for i in 0..10 {
        let r = store.read_session_touching(&k, T0 + i, LONG, GAP).await;
        assert!(!r.unwrap().expect("live").written);
        let t = store.touch_session(&k, T0 + i, LONG, GAP).await.unwrap();
        assert_eq!(t, Touch::Recent(T0));
    }
    assert_eq!(
        sent_since(&server, &before),
        counts(&[("evalsha", 20), ("get", 20)])
    );

    // Due: the script writes, and the active set is updated once.
    let before = server.commandstats();
    let r = store.read_session_touching(&k, T0 + 60, LONG, GAP).await;
    assert!(r.unwrap().expect("live").written);
    assert_eq!(
        sent_since(&server, &before),
        counts(&[
            ("evalsha", 2),
            ("get", 1),
            ("set", 1),
            ("zadd", 1),
            ("zremrangebyscore", 1)
        ])
    );
}

#[tokio::test]
async fn redis_store_outlives_the_runtime_that_opened_it() {
    let server = RedisServer::start();
    let url = server.url();
    // Open and use it on a runtime that is then shut down, like a pingora
    // service's runtime at reload.
    let store = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = redis_store(single(&url));
        rt.block_on(async {
            store
                .put_session(&key("rt"), &record("x", "x"), LONG)
                .await
                .unwrap();
        });
        drop(rt);
        store
    })
    .join()
    .expect("thread");
    assert!(store.get_session(&key("rt")).await.unwrap().is_some());
}

#[tokio::test]
async fn redis_store_prunes_dead_entries_from_the_user_index() {
    let server = RedisServer::start();
    let store = redis_store(single(&server.url()));
    store
        .put_session(&key("p1"), &record("gail", "p1"), LONG)
        .await
        .unwrap();
    store
        .put_session(&key("p2"), &record("gail", "p2"), SHORT)
        .await
        .unwrap();
    let index = "guise:user-sessions:{gail}";
    let members = |s: &RedisServer| match s.command(&["ZRANGE", index, "0", "-1"]) {
        support::redis::Reply::Array(Some(a)) => a.len(),
        other => panic!("ZRANGE: {other:?}"),
    };
    assert_eq!(members(&server), 2);
    eventually(DEADLINE, "short session to expire", || {
        let s = store.clone();
        async move { (s.user_sessions("gail").await.unwrap().len() == 1).then_some(()) }
    })
    .await;
    assert_eq!(members(&server), 1, "dead entry removed from redis");
    let ttl = server.command(&["TTL", index]);
    assert!(
        matches!(ttl, support::redis::Reply::Int(n) if n > 0),
        "the index expires by itself: {ttl:?}"
    );
}
