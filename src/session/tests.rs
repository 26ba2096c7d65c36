use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::TokioClock;
use crate::config::{SessionStoreConfig, Sessions};
use crate::store::memory::MemoryStore;

fn settings(absolute: u64, cache_ttl: u64) -> Sessions {
    Sessions {
        store: SessionStoreConfig::Memory,
        cookie_name: "guise_session".into(),
        idle_timeout: Duration::from_secs(600),
        absolute_lifetime: Duration::from_secs(absolute),
        refresh_interval: Duration::from_secs(60),
        cache_ttl: Duration::from_secs(cache_ttl),
        stale_grace: Duration::from_secs(1),
        cache_capacity: 1000,
        redis_connect_timeout: Duration::from_millis(100),
        redis_response_timeout: Duration::from_millis(100),
    }
}

fn manager(absolute: u64, cache_ttl: u64) -> (Arc<SessionManager>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let m = SessionManager::new(
        store.clone(),
        settings(absolute, cache_ttl),
        Metrics::new(),
        Arc::new(TokioClock::starting_at(1_800_000_000)),
    );
    (m, store)
}

#[tokio::test]
async fn a_created_session_resolves_and_its_record_is_stored_under_the_hash() {
    let (m, store) = manager(3600, 30);
    let (token, active) = m
        .create("u-1", Some("10.0.0.1".into()), BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(active.key, token.key());
    let stored = store.get_session(&token.key()).await.unwrap().unwrap();
    assert_eq!(stored.user_id, "u-1");
    assert_eq!(stored.reference, active.record.reference);
    let found = m.resolve(&token).await.unwrap().unwrap();
    assert_eq!(found.record.user_id, "u-1");
    assert!(m.resolve(&Token::generate()).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_at_its_absolute_lifetime_however_active() {
    let (m, _) = manager(120, 30);
    let (token, _) = m.create("u-1", None, BTreeMap::new()).await.unwrap();
    // Used every 50 s, so never idle, and refreshed in the store.
    for _ in 0..2 {
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(m.resolve(&token).await.unwrap().is_some());
    }
    tokio::time::advance(Duration::from_secs(21)).await;
    assert!(
        m.resolve(&token).await.unwrap().is_none(),
        "session outlived its absolute lifetime"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_ends_after_the_idle_timeout_and_a_used_one_does_not() {
    let (m, _) = manager(7200, 30);
    let (idle, _) = m.create("u-1", None, BTreeMap::new()).await.unwrap();
    let (used, _) = m.create("u-2", None, BTreeMap::new()).await.unwrap();
    // The idle timeout is 600 s; the used session is seen every 100 s.
    for _ in 0..7 {
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(m.resolve(&used).await.unwrap().is_some());
    }
    assert!(
        m.resolve(&idle).await.unwrap().is_none(),
        "idle session lives"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cached_session_is_read_again_from_the_store_after_the_cache_ttl() {
    let (m, store) = manager(3600, 30);
    let (token, active) = m.create("u-1", None, BTreeMap::new()).await.unwrap();
    // Deleted behind this node's back, with no event: the cache serves it
    // until its entry is older than the cache TTL, then asks the store.
    store.delete_session(&active.key).await.unwrap();
    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(m.resolve(&token).await.unwrap().is_some());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(m.resolve(&token).await.unwrap().is_none());
}

#[tokio::test]
async fn a_revoked_session_is_gone_from_cache_and_store_and_the_event_is_published() {
    let (m, store) = manager(3600, 30);
    let mut events = store.subscribe();
    let (token, active) = m.create("u-1", None, BTreeMap::new()).await.unwrap();
    m.resolve(&token).await.unwrap().unwrap();
    m.revoke(&active.key).await.unwrap();
    assert!(m.resolve(&token).await.unwrap().is_none());
    assert!(store.get_session(&active.key).await.unwrap().is_none());
    let ev = tokio::time::timeout(Duration::from_secs(1), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        StoreEvent::SessionRevoked {
            reason: None,
            key: active.key.clone()
        }
    );
}

#[tokio::test]
async fn a_revocation_received_from_another_node_evicts_the_cached_copy() {
    let (m, store) = manager(3600, 300);
    let (token, active) = m.create("u-1", None, BTreeMap::new()).await.unwrap();
    m.resolve(&token).await.unwrap().unwrap();
    // Another node deleted it: the store no longer has it, but this node's
    // cache would serve it until told.
    store.delete_session(&active.key).await.unwrap();
    assert!(
        m.resolve(&token).await.unwrap().is_some(),
        "served from cache"
    );
    m.on_event(&StoreEvent::SessionRevoked {
        reason: None,
        key: active.key.clone(),
    })
    .await;
    assert!(m.resolve(&token).await.unwrap().is_none());
}

#[tokio::test]
async fn a_resync_drops_the_whole_cache() {
    let (m, store) = manager(3600, 300);
    let (t1, a1) = m.create("u-1", None, BTreeMap::new()).await.unwrap();
    let (t2, _) = m.create("u-2", None, BTreeMap::new()).await.unwrap();
    store.delete_session(&a1.key).await.unwrap();
    m.on_event(&StoreEvent::Resync).await;
    assert!(
        m.resolve(&t1).await.unwrap().is_none(),
        "re-read from the store after resync"
    );
    assert!(m.resolve(&t2).await.unwrap().is_some());
}

#[tokio::test]
async fn users_sessions_are_listed_and_revoked_together() {
    let (m, _) = manager(3600, 30);
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(m.create("u-1", None, BTreeMap::new()).await.unwrap().0);
    }
    let (other, _) = m.create("u-2", None, BTreeMap::new()).await.unwrap();
    assert_eq!(m.list("u-1").await.unwrap().len(), 3);
    assert_eq!(m.revoke_user("u-1").await.unwrap(), 3);
    for t in &tokens {
        assert!(m.resolve(t).await.unwrap().is_none());
    }
    assert!(m.resolve(&other).await.unwrap().is_some());
}

/// Two nodes on one store, sharing a clock: what a gateway cluster
/// without sticky balancing looks like to one session.
fn two_nodes() -> (Arc<SessionManager>, Arc<SessionManager>, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let clock: Arc<dyn Clock> = Arc::new(TokioClock::starting_at(1_800_000_000));
    let node = || {
        SessionManager::new(
            store.clone(),
            settings(7200, 30),
            Metrics::new(),
            clock.clone(),
        )
    };
    (node(), node(), store)
}

fn refreshes(m: &SessionManager) -> u64 {
    m.metrics.session_refreshes.get()
}

#[tokio::test(start_paused = true)]
async fn two_nodes_serving_one_session_refresh_it_once_per_interval_between_them() {
    let (a, b, store) = two_nodes();
    let (token, active) = a.create("u-1", None, BTreeMap::new()).await.unwrap();
    assert!(b.resolve(&token).await.unwrap().is_some());
    // Both nodes serve the session every 10 s for six refresh intervals.
    for _ in 0..36 {
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(a.resolve(&token).await.unwrap().is_some());
        assert!(b.resolve(&token).await.unwrap().is_some());
    }
    assert_eq!(
        refreshes(&a) + refreshes(&b),
        6,
        "one write per refresh interval, not one per node"
    );
    let stored = store.get_session(&active.key).await.unwrap().unwrap();
    assert_eq!(stored.last_seen, 1_800_000_360);
}

#[tokio::test(start_paused = true)]
async fn a_refresh_is_due_an_interval_after_the_other_nodes_write_not_this_nodes() {
    let (a, b, _) = two_nodes();
    let (token, _) = a.create("u-1", None, BTreeMap::new()).await.unwrap();
    // B reads the session 50 s in; A then refreshes it at 60 s.
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(b.resolve(&token).await.unwrap().is_some());
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(a.resolve(&token).await.unwrap().is_some());
    assert_eq!((refreshes(&a), refreshes(&b)), (1, 0));
    // At 110 s B's own read is a minute old, but A wrote 50 s ago: B
    // re-reads (its cache entry is past cache_ttl) and writes nothing.
    tokio::time::advance(Duration::from_secs(50)).await;
    assert!(b.resolve(&token).await.unwrap().is_some());
    assert_eq!((refreshes(&a), refreshes(&b)), (1, 0));
    // From 120 s the next write is due, whoever makes it.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(b.resolve(&token).await.unwrap().is_some());
    assert!(a.resolve(&token).await.unwrap().is_some());
    assert_eq!((refreshes(&a), refreshes(&b)), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_session_used_only_through_another_node_stays_alive_and_an_idle_one_expires() {
    let (a, b, _) = two_nodes();
    let (used, _) = a.create("u-1", None, BTreeMap::new()).await.unwrap();
    let (idle, _) = a.create("u-2", None, BTreeMap::new()).await.unwrap();
    // Twice the 600 s idle timeout, the first session only ever through B.
    for _ in 0..24 {
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(b.resolve(&used).await.unwrap().is_some());
    }
    assert!(
        a.resolve(&used).await.unwrap().is_some(),
        "B's use kept it alive for A"
    );
    assert!(a.resolve(&idle).await.unwrap().is_none());
    assert!(b.resolve(&idle).await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_node_whose_cache_outlives_the_interval_still_refreshes_once_per_interval() {
    // cache_ttl longer than refresh_interval: the refresh, not the cache
    // TTL, decides when the one node re-reads.
    let store = Arc::new(MemoryStore::new());
    let m = SessionManager::new(
        store.clone(),
        settings(7200, 300),
        Metrics::new(),
        Arc::new(TokioClock::starting_at(1_800_000_000)),
    );
    let (token, active) = m.create("u-1", None, BTreeMap::new()).await.unwrap();
    for _ in 0..30 {
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(m.resolve(&token).await.unwrap().is_some());
    }
    assert_eq!(refreshes(&m), 5);
    let stored = store.get_session(&active.key).await.unwrap().unwrap();
    assert_eq!(stored.last_seen, 1_800_000_300);
}
