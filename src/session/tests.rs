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
