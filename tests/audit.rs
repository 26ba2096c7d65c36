//! The impersonation audit over a real `redis-server`: records made while
//! Redis is down wait in the buffer and reach the stream once Redis is
//! back on the same port; a full buffer refuses.

mod support;

use std::sync::Arc;
use std::time::Duration;

use guise::audit::{Audit, AuditEvent, AuditQuery, AuditRecord, AuditWriter, Sink};
use guise::config::RedisConfig;
use guise::respond::Refuse;
use guise::store::redis::{RedisStore, RedisTimeouts, AUDIT_KEY};
use guise::store::Store;
use pingora::services::background::BackgroundService;
use support::eventually;
use support::redis::{RedisServer, Reply};
use tokio::sync::watch;

/// Generous: the machine is shared and has two cores.
const DEADLINE: Duration = Duration::from_secs(15);

fn rec(i: u64) -> AuditRecord {
    let mut r = AuditRecord::new(AuditEvent::Request, "u-admin", "GET", format!("/api/{i}"));
    r.user = Some("u-partner".to_string());
    r.session = Some("s-ref".to_string());
    r
}

fn store_on(port: u16) -> Arc<dyn Store> {
    Arc::new(
        RedisStore::open(
            &RedisConfig::Single {
                url: format!("redis://127.0.0.1:{port}"),
            },
            RedisTimeouts::default(),
        )
        .expect("store opens"),
    )
}

/// Run the writer; keep the sender to keep the shutdown signal off.
fn spawn_writer(w: AuditWriter) -> watch::Sender<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move { w.start(rx).await });
    tx
}

/// The paths in the stream, oldest first, as Redis itself reports them.
fn stream_paths(server: &RedisServer) -> Vec<String> {
    let Reply::Array(Some(entries)) = server.command(&["XRANGE", AUDIT_KEY, "-", "+"]) else {
        panic!("XRANGE");
    };
    entries
        .iter()
        .map(|e| {
            let Reply::Array(Some(parts)) = e else {
                panic!("entry {e:?}")
            };
            let Reply::Array(Some(fields)) = &parts[1] else {
                panic!("fields {parts:?}")
            };
            assert_eq!(fields[0].text(), Some("r"), "one field, `r`");
            let r: AuditRecord = serde_json::from_str(fields[1].text().unwrap()).unwrap();
            r.path
        })
        .collect()
}

#[tokio::test]
async fn records_made_while_redis_is_down_reach_the_stream_when_it_is_back() {
    let mut server = RedisServer::start();
    let port = server.port();
    let store = store_on(port);
    let (audit, writer) = Audit::new(Sink::Store(store, 1_000), 100);
    let _shutdown = spawn_writer(writer);

    audit.record(rec(0)).unwrap();
    assert!(audit.flush(DEADLINE).await);
    assert_eq!(stream_paths(&server), ["/api/0"]);

    server.kill();
    for i in 1..=5 {
        audit.record(rec(i)).unwrap();
    }
    eventually(DEADLINE, "a failed write", || {
        let audit = audit.clone();
        async move { (audit.metrics().get("retried") >= 5).then_some(()) }
    })
    .await;
    assert_eq!(audit.buffered(), 5, "kept while Redis is down");
    assert!(audit.accepting());
    let err = audit.read(&AuditQuery::default()).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (503, "audit_unavailable"),
        "{err}"
    );

    // A new, empty Redis on the same port: the store reconnects by itself.
    let server = RedisServer::start_on(port);
    assert!(audit.flush(DEADLINE).await, "written once Redis is back");
    let want: Vec<String> = (1..=5).map(|i| format!("/api/{i}")).collect();
    assert_eq!(stream_paths(&server), want, "each once, in order");
    assert_eq!(audit.metrics().get("written"), 6);

    let page = audit.read(&AuditQuery::default()).await.unwrap();
    let newest_first: Vec<String> = page.entries.iter().map(|(_, r)| r.path.clone()).collect();
    assert_eq!(newest_first, want.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(page.entries[0].1.user.as_deref(), Some("u-partner"));
}

#[tokio::test]
async fn a_tiny_buffer_refuses_once_full_while_redis_is_down_and_accepts_again_after() {
    let mut server = RedisServer::start();
    let port = server.port();
    let (audit, writer) = Audit::new(Sink::Store(store_on(port), 1_000), 3);
    let _shutdown = spawn_writer(writer);
    server.kill();

    for i in 0..3 {
        audit.record(rec(i)).unwrap();
    }
    assert!(!audit.accepting());
    let err = audit.record(rec(3)).unwrap_err();
    assert_eq!((err.status(), err.code()), (503, "audit_unavailable"));
    assert_eq!(audit.metrics().get("refused"), 1);

    let server = RedisServer::start_on(port);
    assert!(audit.flush(DEADLINE).await);
    assert!(audit.accepting());
    audit.record(rec(4)).unwrap();
    assert!(audit.flush(DEADLINE).await);
    assert_eq!(
        stream_paths(&server),
        ["/api/0", "/api/1", "/api/2", "/api/4"],
        "the refused record is not there; the others are, in order"
    );
}
