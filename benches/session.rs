//! The per-request cost of being signed in: a cached session lookup plus
//! building and signing the identity headers. Target: under 2 µs together.
//! The last case is the path the proxy takes: the identity prepared once
//! per session, signed and put on the request per request.
//!
//!     cargo bench --bench session

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use guise::clock::SystemClock;
use guise::config::{SessionStoreConfig, Sessions};
use guise::identity::{IdentityHeaders, Signer};
use guise::metrics::Metrics;
use guise::session::SessionManager;
use guise::store::memory::MemoryStore;
use guise::subject::Subject;
use guise::users::User;
use pingora::http::RequestHeader;

pub fn settings() -> Sessions {
    Sessions {
        store: SessionStoreConfig::Memory,
        cookie_name: "guise_session".into(),
        idle_timeout: Duration::from_secs(1800),
        absolute_lifetime: Duration::from_secs(12 * 3600),
        refresh_interval: Duration::from_secs(60),
        cache_ttl: Duration::from_secs(300),
        stale_grace: Duration::from_secs(30),
        cache_capacity: 1_000_000,
        redis_connect_timeout: Duration::from_millis(250),
        redis_response_timeout: Duration::from_millis(500),
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sessions = SessionManager::new(
        Arc::new(MemoryStore::new()),
        settings(),
        Metrics::new(),
        Arc::new(SystemClock),
    );
    let (token, _) = rt
        .block_on(sessions.create("u-alice", None, BTreeMap::new()))
        .unwrap();
    let signer = Signer::new(b"bench-signing-key-0123456789abcdef0123456789", "x-guise-");

    c.bench_function("cached session lookup", |b| {
        b.to_async(&rt)
            .iter(|| async { sessions.resolve(&token).await.unwrap().unwrap() })
    });

    c.bench_function("identity headers: build and sign", |b| {
        b.iter(|| {
            let h = IdentityHeaders::for_user(
                "u-alice",
                "alice@test.example",
                &["user"],
                "0123456789ab",
            )
            .unwrap();
            signer
                .signed_headers(&h, "GET", "/api/companies/co-100", 1_800_000_000)
                .unwrap()
        })
    });

    c.bench_function("cached session lookup + signed identity headers", |b| {
        b.to_async(&rt).iter(|| async {
            let active = sessions.resolve(&token).await.unwrap().unwrap();
            let h = IdentityHeaders::for_user(
                &active.record.user_id,
                "alice@test.example",
                &["user"],
                &active.record.reference,
            )
            .unwrap();
            signer
                .signed_headers(&h, "GET", "/api/companies/co-100", 1_800_000_000)
                .unwrap()
        })
    });

    // What the proxy does per request since sessions keep their identity
    // prepared: look the session up, take its prepared identity, sign the
    // request and put the headers on it. The request is cloned outside the
    // measurement (pingora hands the hook its own copy).
    let user: Arc<User> = Arc::new(
        serde_json::from_value(serde_json::json!({
            "id": "u-alice", "name": "Alice", "email": "alice@test.example"
        }))
        .unwrap(),
    );
    let request = RequestHeader::build("GET", b"/api/companies/co-100", None).unwrap();
    let prepared = signer
        .prepare(
            &IdentityHeaders::for_user("u-alice", "alice@test.example", &["user"], "0123456789ab")
                .unwrap(),
        )
        .unwrap();
    c.bench_function("prepared identity signed onto the request", |b| {
        b.iter_batched(
            || request.clone(),
            |mut req| {
                signer
                    .sign_prepared(&mut req, &prepared, 1_800_000_000)
                    .unwrap();
                req
            },
            BatchSize::SmallInput,
        )
    });
    c.bench_function(
        "cached session lookup + subject's prepared identity signed onto the request",
        |b| {
            b.to_async(&rt).iter_batched(
                || request.clone(),
                |mut req| async {
                    let active = sessions.resolve(&token).await.unwrap().unwrap();
                    let subject = Subject::own(user.clone(), active);
                    subject.sign_onto(&mut req, &signer, 1_800_000_000).unwrap();
                    req
                },
                BatchSize::SmallInput,
            )
        },
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
