//! Expiry logic of the memory store under a paused tokio clock: no test
//! here sleeps for real.

use std::time::Duration;

use super::MemoryStore;
use crate::store::{SessionKey, SessionRecord, Store, StoreEvent, Touch};

fn key(s: &str) -> SessionKey {
    SessionKey(s.to_string())
}

fn record(user: &str, reference: &str) -> SessionRecord {
    SessionRecord {
        user_id: user.to_string(),
        reference: reference.to_string(),
        created_at: 1_700_000_000,
        last_seen: 1_700_000_000,
        absolute_expiry: 1_700_086_400,
        csrf_token: format!("csrf-{reference}"),
        client_ip: Some("127.0.0.1".to_string()),
        extra: Default::default(),
    }
}

const IDLE: Duration = Duration::from_secs(60);
/// Refresh gap of the touches: shorter than the 50 s steps below.
const GAP: Duration = Duration::from_secs(30);

async fn advance(d: Duration) {
    tokio::time::advance(d).await;
}

#[tokio::test(start_paused = true)]
async fn session_is_invisible_once_idle_time_passes() {
    let s = MemoryStore::new();
    s.put_session(&key("a"), &record("u1", "r1"), IDLE)
        .await
        .unwrap();
    advance(IDLE - Duration::from_millis(1)).await;
    assert_eq!(
        s.get_session(&key("a")).await.unwrap(),
        Some(record("u1", "r1"))
    );
    advance(Duration::from_millis(1)).await;
    assert_eq!(s.get_session(&key("a")).await.unwrap(), None);
    assert_eq!(s.session_count().await.unwrap(), 0);
}

#[tokio::test(start_paused = true)]
async fn touch_extends_idle_time_and_sets_last_seen() {
    let s = MemoryStore::new();
    s.put_session(&key("a"), &record("u1", "r1"), IDLE)
        .await
        .unwrap();
    advance(Duration::from_secs(50)).await;
    assert_eq!(
        s.touch_session(&key("a"), 1_700_000_050, IDLE, GAP)
            .await
            .unwrap(),
        Touch::Written
    );
    advance(Duration::from_secs(50)).await;
    let got = s.get_session(&key("a")).await.unwrap().expect("still live");
    assert_eq!(got.last_seen, 1_700_000_050);
    advance(Duration::from_secs(10)).await;
    assert_eq!(s.get_session(&key("a")).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_touch_within_the_gap_of_the_stored_last_seen_leaves_the_deadline_alone() {
    let s = MemoryStore::new();
    s.put_session(&key("a"), &record("u1", "r1"), IDLE)
        .await
        .unwrap();
    advance(Duration::from_secs(50)).await;
    // Stored last_seen 1_700_000_000; "now" 20 s later is within the gap.
    assert_eq!(
        s.touch_session(&key("a"), 1_700_000_020, IDLE, GAP)
            .await
            .unwrap(),
        Touch::Recent(1_700_000_000)
    );
    let r = s
        .read_session_touching(&key("a"), 1_700_000_020, IDLE, GAP)
        .await
        .unwrap()
        .expect("live");
    assert!(!r.written);
    advance(Duration::from_secs(10)).await;
    assert_eq!(
        s.get_session(&key("a")).await.unwrap(),
        None,
        "the first idle deadline still holds"
    );
}

#[tokio::test(start_paused = true)]
async fn a_re_read_that_is_due_slides_the_deadline() {
    let s = MemoryStore::new();
    s.put_session(&key("a"), &record("u1", "r1"), IDLE)
        .await
        .unwrap();
    advance(Duration::from_secs(50)).await;
    let r = s
        .read_session_touching(&key("a"), 1_700_000_050, IDLE, GAP)
        .await
        .unwrap()
        .expect("live");
    assert!(r.written);
    assert_eq!(r.record.last_seen, 1_700_000_050);
    advance(Duration::from_secs(50)).await;
    assert!(s.get_session(&key("a")).await.unwrap().is_some());
    advance(Duration::from_secs(10)).await;
    assert_eq!(s.get_session(&key("a")).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn touch_does_not_resurrect_an_expired_or_deleted_session() {
    let s = MemoryStore::new();
    s.put_session(&key("a"), &record("u1", "r1"), IDLE)
        .await
        .unwrap();
    s.put_session(&key("b"), &record("u1", "r2"), IDLE)
        .await
        .unwrap();
    advance(IDLE).await;
    assert_eq!(
        s.touch_session(&key("a"), 1_700_000_999, IDLE, GAP)
            .await
            .unwrap(),
        Touch::Gone
    );
    assert_eq!(s.get_session(&key("a")).await.unwrap(), None);

    s.put_session(&key("c"), &record("u1", "r3"), IDLE)
        .await
        .unwrap();
    assert_eq!(
        s.delete_session(&key("c")).await.unwrap(),
        Some(record("u1", "r3"))
    );
    assert_eq!(
        s.touch_session(&key("c"), 1_700_000_999, IDLE, GAP)
            .await
            .unwrap(),
        Touch::Gone
    );
    assert_eq!(s.get_session(&key("c")).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn delete_of_an_expired_session_returns_nothing() {
    let s = MemoryStore::new();
    s.put_session(&key("a"), &record("u1", "r1"), IDLE)
        .await
        .unwrap();
    advance(IDLE).await;
    assert_eq!(s.delete_session(&key("a")).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn user_index_lists_live_sessions_and_prunes_dead_ones() {
    let s = MemoryStore::new();
    s.put_session(&key("a"), &record("u1", "r1"), IDLE)
        .await
        .unwrap();
    s.put_session(&key("b"), &record("u1", "r2"), IDLE * 2)
        .await
        .unwrap();
    s.put_session(&key("c"), &record("u2", "r3"), IDLE)
        .await
        .unwrap();

    let mut listed = s.user_sessions("u1").await.unwrap();
    listed.sort_by(|x, y| x.0 .0.cmp(&y.0 .0));
    assert_eq!(
        listed,
        vec![
            (key("a"), record("u1", "r1")),
            (key("b"), record("u1", "r2"))
        ]
    );

    advance(IDLE).await;
    assert_eq!(
        s.user_sessions("u1").await.unwrap(),
        vec![(key("b"), record("u1", "r2"))]
    );
    assert!(
        !s.lock().by_user["u1"].contains(&key("a")),
        "dead entry pruned from the index"
    );
    assert!(s.user_sessions("u2").await.unwrap().is_empty());
    assert!(!s.lock().by_user.contains_key("u2"), "empty index dropped");
    assert!(s.user_sessions("nobody").await.unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn putting_a_key_for_another_user_moves_it_between_indexes() {
    let s = MemoryStore::new();
    s.put_session(&key("a"), &record("u1", "r1"), IDLE)
        .await
        .unwrap();
    s.put_session(&key("a"), &record("u2", "r1"), IDLE)
        .await
        .unwrap();
    assert!(s.user_sessions("u1").await.unwrap().is_empty());
    assert_eq!(s.user_sessions("u2").await.unwrap().len(), 1);
    assert_eq!(s.session_count().await.unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn session_count_counts_only_live_sessions() {
    let s = MemoryStore::new();
    for (i, idle) in [IDLE, IDLE * 2, IDLE * 3].into_iter().enumerate() {
        s.put_session(&key(&format!("k{i}")), &record("u", &format!("r{i}")), idle)
            .await
            .unwrap();
    }
    assert_eq!(s.session_count().await.unwrap(), 3);
    advance(IDLE).await;
    assert_eq!(s.session_count().await.unwrap(), 2);
    s.delete_session(&key("k1")).await.unwrap();
    assert_eq!(s.session_count().await.unwrap(), 1);
    advance(IDLE * 2).await;
    assert_eq!(s.session_count().await.unwrap(), 0);
    assert!(s.lock().by_user.is_empty(), "sweep emptied the index");
}

#[tokio::test(start_paused = true)]
async fn sweep_removes_dead_sessions_without_anyone_reading_them() {
    let s = MemoryStore::new();
    s.put_session(&key("a"), &record("u1", "r1"), IDLE)
        .await
        .unwrap();
    advance(super::SWEEP_EVERY.max(IDLE)).await;
    // Any write after the sweep interval triggers the sweep.
    s.put_session(&key("b"), &record("u2", "r2"), IDLE)
        .await
        .unwrap();
    let st = s.lock();
    assert!(!st.sessions.contains_key(&key("a")));
    assert!(!st.by_user.contains_key("u1"));
}

#[tokio::test(start_paused = true)]
async fn hits_count_within_a_fixed_window_that_starts_at_the_first_hit() {
    let s = MemoryStore::new();
    let window = Duration::from_secs(30);
    let h1 = s.hit("login:alice", window).await.unwrap();
    assert_eq!(h1.count, 1);
    assert_eq!(h1.resets_in, window);

    advance(Duration::from_secs(10)).await;
    let h2 = s.hit("login:alice", window).await.unwrap();
    assert_eq!(h2.count, 2);
    assert_eq!(h2.resets_in, Duration::from_secs(20), "window is fixed");
    assert_eq!(s.hit("login:bob", window).await.unwrap().count, 1);

    advance(Duration::from_secs(20)).await;
    let h3 = s.hit("login:alice", window).await.unwrap();
    assert_eq!(h3.count, 1, "a new window starts after the old one ends");
    assert_eq!(h3.resets_in, window);
}

#[tokio::test(start_paused = true)]
async fn reset_forgets_a_counter() {
    let s = MemoryStore::new();
    let window = Duration::from_secs(30);
    s.hit("c", window).await.unwrap();
    s.hit("c", window).await.unwrap();
    s.reset("c").await.unwrap();
    s.reset("never-hit").await.unwrap();
    assert_eq!(s.hit("c", window).await.unwrap().count, 1);
}

#[tokio::test]
async fn users_are_saved_and_loaded_by_id() {
    let s = MemoryStore::new();
    s.save_user("u2", r#"{"id":"u2"}"#).await.unwrap();
    s.save_user("u1", r#"{"id":"u1","v":1}"#).await.unwrap();
    s.save_user("u1", r#"{"id":"u1","v":2}"#).await.unwrap();
    assert_eq!(
        s.load_users().await.unwrap(),
        vec![
            ("u1".to_string(), r#"{"id":"u1","v":2}"#.to_string()),
            ("u2".to_string(), r#"{"id":"u2"}"#.to_string()),
        ]
    );
}

#[tokio::test]
async fn published_events_reach_every_subscriber() {
    let s = MemoryStore::new();
    s.publish(&StoreEvent::Resync).await.unwrap(); // nobody listening: fine
    let mut a = s.subscribe();
    let mut b = s.subscribe();
    let ev = StoreEvent::SessionRevoked {
        key: key("a"),
        reason: None,
    };
    s.publish(&ev).await.unwrap();
    assert_eq!(a.recv().await.unwrap(), ev);
    assert_eq!(b.recv().await.unwrap(), ev);
}

#[tokio::test(start_paused = true)]
async fn a_one_time_token_is_spent_once_and_dies_at_its_deadline() {
    let s = MemoryStore::new();
    let ttl = Duration::from_secs(3600);
    assert_eq!(s.swap_once("k", "spent").await.unwrap(), None);
    assert_eq!(
        s.peek_once("k").await.unwrap(),
        None,
        "an unknown key stays unknown"
    );
    s.put_once("k", "v", ttl).await.unwrap();
    assert_eq!(s.peek_once("k").await.unwrap().as_deref(), Some("v"));
    assert_eq!(
        s.swap_once("k", "spent").await.unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(
        s.swap_once("k", "spent").await.unwrap().as_deref(),
        Some("spent"),
        "the second use reads the spent marker"
    );
    assert_eq!(s.peek_once("k").await.unwrap().as_deref(), Some("spent"));
    // The spent marker keeps the key's deadline.
    advance(ttl).await;
    assert_eq!(s.peek_once("k").await.unwrap(), None);

    s.put_once("k2", "v2", ttl).await.unwrap();
    advance(ttl - Duration::from_millis(1)).await;
    assert_eq!(s.peek_once("k2").await.unwrap().as_deref(), Some("v2"));
    advance(Duration::from_millis(1)).await;
    assert_eq!(s.peek_once("k2").await.unwrap(), None);
    assert_eq!(
        s.swap_once("k2", "spent").await.unwrap(),
        None,
        "dead at its deadline"
    );

    // Dead tokens leave the map at the next sweep, not only when read.
    s.put_once("k3", "v3", Duration::from_secs(1))
        .await
        .unwrap();
    advance(Duration::from_secs(11)).await;
    s.put_once("k4", "v4", ttl).await.unwrap();
    assert_eq!(s.lock().once.len(), 1);
}
