//! Memory of 100,000 sessions in one node's cache.
//!
//! Sessions are first put in a memory store directly, then looked up once
//! each through the session manager, which caches them; the growth of the
//! process's resident memory between the two steps is the cache's cost.
//!
//!     cargo bench --bench session_memory

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use guise::config::{SessionStoreConfig, Sessions};
use guise::metrics::Metrics;
use guise::session::{token, SessionManager, Token};
use guise::store::memory::MemoryStore;
use guise::store::{SessionRecord, Store};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 100_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent;
    // do the (slowish) measurement only when benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let settings = Sessions {
        store: SessionStoreConfig::Memory,
        cookie_name: "guise_session".into(),
        idle_timeout: Duration::from_secs(1800),
        absolute_lifetime: Duration::from_secs(12 * 3600),
        refresh_interval: Duration::from_secs(600),
        cache_ttl: Duration::from_secs(600),
        stale_grace: Duration::from_secs(30),
        cache_capacity: 1_000_000,
        redis_connect_timeout: Duration::from_millis(250),
        redis_response_timeout: Duration::from_millis(500),
    };
    let sessions = SessionManager::new(
        store.clone(),
        settings,
        Metrics::new(),
        Arc::new(guise::clock::SystemClock),
    );
    let now = guise::clock::unix_now();
    let tokens: Vec<Token> = rt.block_on(async {
        let mut tokens = Vec::with_capacity(N);
        for i in 0..N {
            let t = Token::generate();
            let key = t.key();
            let rec = SessionRecord {
                user_id: format!("u-{i}"),
                reference: token::reference_of(&key),
                created_at: now,
                last_seen: now,
                absolute_expiry: now + 43_200,
                csrf_token: token::random_b64(32),
                client_ip: Some("127.0.0.1".into()),
                extra: BTreeMap::new(),
            };
            store
                .put_session(&key, &rec, Duration::from_secs(1800))
                .await
                .unwrap();
            tokens.push(t);
        }
        tokens
    });
    let before = rss_bytes();
    rt.block_on(async {
        for t in &tokens {
            sessions.resolve(t).await.unwrap().unwrap();
        }
    });
    let cached = rt.block_on(sessions.cached_count());
    let after = rss_bytes();
    let grown = after.saturating_sub(before);
    println!(
        "{cached} cached sessions: resident memory grew {:.1} MiB ({} bytes per session)",
        grown as f64 / (1024.0 * 1024.0),
        grown / cached.max(1)
    );
}
