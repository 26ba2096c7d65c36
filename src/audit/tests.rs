use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;
use crate::config::impersonation::AuditSettings;
use crate::respond::Refuse;
use crate::store::memory::MemoryStore;
use crate::store::Store;

/// Generous: the machine is shared and has two cores.
const DEADLINE: Duration = Duration::from_secs(10);

fn rec(i: u64, impersonator: &str, user: &str) -> AuditRecord {
    AuditRecord {
        time_ms: 1_000_000 + i * 1_000,
        event: AuditEvent::Request,
        impersonator: impersonator.to_string(),
        user: Some(user.to_string()),
        method: "GET".to_string(),
        path: format!("/{i}"),
        status: Some(200),
        reason: None,
        session: Some("s-1".to_string()),
    }
}

/// Run the writer on this runtime; sending `true` on the returned sender
/// is the shutdown signal.
fn spawn_writer(w: AuditWriter) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(async move { w.start(rx).await });
    (tx, task)
}

/// Poll `f` until it answers, failing after [`DEADLINE`].
async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn memory_sink() -> (Arc<MemoryStore>, Sink) {
    let store = Arc::new(MemoryStore::new());
    (store.clone(), Sink::Store(store, 1_000_000))
}

fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn paths(page: &AuditPage) -> Vec<String> {
    page.entries.iter().map(|(_, r)| r.path.clone()).collect()
}

fn expect_paths(is: &[u64]) -> Vec<String> {
    is.iter().map(|i| format!("/{i}")).collect()
}

// === records ===

#[test]
fn a_record_is_one_json_object_without_its_empty_fields() {
    let r = rec(7, "u-admin", "u-alice");
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(
        json,
        r#"{"time_ms":1007000,"event":"request","impersonator":"u-admin","user":"u-alice","method":"GET","path":"/7","status":200,"session":"s-1"}"#
    );
    assert_eq!(serde_json::from_str::<AuditRecord>(&json).unwrap(), r);

    let bare = AuditRecord::new(AuditEvent::Expiry, "u-admin", "GET", "/x");
    let v: serde_json::Value = serde_json::to_value(&bare).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["event", "impersonator", "method", "path", "time_ms"],
        "no nulls for what is not there"
    );
    assert!(bare.time_ms > 1_600_000_000_000, "now, in milliseconds");

    let names: Vec<String> = [
        AuditEvent::Start,
        AuditEvent::Stop,
        AuditEvent::Expiry,
        AuditEvent::End,
        AuditEvent::Refusal,
        AuditEvent::Request,
    ]
    .iter()
    .map(|e| serde_json::to_string(e).unwrap())
    .collect();
    assert_eq!(
        names,
        [
            "\"start\"",
            "\"stop\"",
            "\"expiry\"",
            "\"end\"",
            "\"refusal\"",
            "\"request\""
        ]
    );
}

#[test]
fn a_page_answers_as_entries_with_their_ids_and_a_next_cursor() {
    let page = AuditPage {
        entries: vec![("17-0".to_string(), rec(1, "u-admin", "u-bob"))],
        next: Some("17-0".to_string()),
    };
    let v = page.to_json();
    assert_eq!(v["next"], "17-0");
    assert_eq!(v["entries"][0]["id"], "17-0");
    assert_eq!(v["entries"][0]["user"], "u-bob");
    assert_eq!(v["entries"][0]["event"], "request");
    assert_eq!(
        AuditPage::default().to_json()["next"],
        serde_json::Value::Null
    );
}

// === the buffer and the writer ===

#[tokio::test]
async fn a_full_buffer_refuses_new_records_with_a_503_audit_unavailable() {
    let (_store, sink) = memory_sink();
    // The writer exists but does not run: nothing drains the buffer.
    let (audit, _writer) = Audit::new(sink, 2);
    assert!(audit.accepting());
    audit.record(rec(1, "u-admin", "u-a")).unwrap();
    audit.record(rec(2, "u-admin", "u-a")).unwrap();
    assert!(!audit.accepting(), "a third would not be taken");
    let err = audit.record(rec(3, "u-admin", "u-a")).unwrap_err();
    assert!(matches!(err, AuditError::Unavailable(_)), "{err:?}");
    assert_eq!(err.status(), 503);
    assert_eq!(err.code(), "audit_unavailable");
    assert!(err.to_string().contains("2 records are waiting"), "{err}");
    assert_eq!(audit.metrics().get("refused"), 1);
    assert_eq!(audit.metrics().buffered.get(), 2);
    assert_eq!(audit.buffered(), 2);
}

#[tokio::test]
async fn records_wait_while_the_file_cannot_be_written_and_land_in_order_once_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("later");
    let path = later.join("audit.jsonl");
    let (audit, writer) = Audit::new(Sink::File(path.clone()), 100);
    let (_shutdown, _task) = spawn_writer(writer);
    for i in 0..3 {
        audit.record(rec(i, "u-admin", "u-a")).unwrap();
    }
    eventually("a failed write", || {
        (audit.metrics().get("retried") >= 3).then_some(())
    })
    .await;
    assert_eq!(audit.buffered(), 3, "kept, not dropped");
    assert!(
        audit.accepting(),
        "a failing sink does not refuse while there is room"
    );
    assert!(!audit.flush(Duration::from_millis(50)).await);
    audit.record(rec(3, "u-admin", "u-a")).unwrap();

    std::fs::create_dir(&later).unwrap();
    assert!(
        audit.flush(DEADLINE).await,
        "written once the directory exists"
    );
    let lines = file_lines(&path);
    let got: Vec<AuditRecord> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let want: Vec<AuditRecord> = (0..4).map(|i| rec(i, "u-admin", "u-a")).collect();
    assert_eq!(got, want, "each once, in the order recorded");
    assert_eq!(audit.metrics().get("written"), 4);
    assert_eq!(audit.metrics().buffered.get(), 0);
    assert_eq!(audit.metrics().get("refused"), 0);
}

#[tokio::test]
async fn the_audit_file_is_private_appended_to_and_a_torn_last_line_is_closed_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (audit, writer) = Audit::new(Sink::File(path.clone()), 100);
    let (_shutdown, _task) = spawn_writer(writer);
    audit.record(rec(1, "u-admin", "u-a")).unwrap();
    assert!(audit.flush(DEADLINE).await);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "created readable by the gateway only");

    // An earlier run died half way through a line.
    let mut torn = std::fs::read_to_string(&path).unwrap();
    torn.push_str(r#"{"time_ms":1,"ev"#);
    std::fs::write(&path, torn).unwrap();
    audit.record(rec(2, "u-admin", "u-a")).unwrap();
    assert!(audit.flush(DEADLINE).await);
    let lines = file_lines(&path);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        serde_json::from_str::<AuditRecord>(&lines[2]).unwrap(),
        rec(2, "u-admin", "u-a"),
        "the new record is a line of its own"
    );
    let page = audit.read(&AuditQuery::default()).await.unwrap();
    assert_eq!(
        page.entries
            .iter()
            .map(|(id, _)| id.as_str())
            .collect::<Vec<_>>(),
        ["3", "1"],
        "the torn line is skipped, but counted as a line"
    );
}

#[tokio::test]
async fn order_is_kept_across_many_batches() {
    let (store, sink) = memory_sink();
    let (audit, writer) = Audit::new(sink, 5_000);
    let (_shutdown, _task) = spawn_writer(writer);
    let n = (BATCH_MAX * 4 + 7) as u64;
    for i in 0..n {
        audit.record(rec(i, "u-admin", "u-a")).unwrap();
    }
    assert!(audit.flush(DEADLINE).await);
    let stored = store.read_audit(None, 10_000).await.unwrap();
    let got: Vec<String> = stored
        .iter()
        .rev()
        .map(|(_, j)| serde_json::from_str::<AuditRecord>(j).unwrap().path)
        .collect();
    assert_eq!(got, (0..n).map(|i| format!("/{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_writer_keeps_writing_after_the_shutdown_signal() {
    let (store, sink) = memory_sink();
    let (audit, writer) = Audit::new(sink, 10);
    let (shutdown, task) = spawn_writer(writer);
    shutdown.send(true).unwrap();
    // A request still draining records after the signal.
    audit.record(rec(1, "u-admin", "u-a")).unwrap();
    assert!(audit.flush(DEADLINE).await);
    assert_eq!(store.read_audit(None, 10).await.unwrap().len(), 1);
    assert!(!task.is_finished());
    // The sender gone is a shutdown signal too, and no busy loop.
    drop(shutdown);
    audit.record(rec(2, "u-admin", "u-a")).unwrap();
    assert!(audit.flush(DEADLINE).await);
    assert!(audit.accepting());
}

#[tokio::test]
async fn once_the_writer_has_stopped_records_are_refused() {
    let (_store, sink) = memory_sink();
    let (audit, writer) = Audit::new(sink, 10);
    let (_shutdown, task) = spawn_writer(writer);
    audit.record(rec(1, "u-admin", "u-a")).unwrap();
    assert!(audit.flush(DEADLINE).await);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(!audit.accepting());
    let err = audit.record(rec(2, "u-admin", "u-a")).unwrap_err();
    assert!(err.to_string().contains("writer has stopped"), "{err}");
    assert_eq!(err.code(), "audit_unavailable");
}

#[tokio::test]
async fn metrics_are_registered_with_the_gateway_once() {
    let (_store, sink) = memory_sink();
    let (audit, _writer) = Audit::new(sink, 1);
    let m = Metrics::new();
    audit.register_metrics(&m).unwrap();
    assert!(audit.register_metrics(&m).is_err(), "names are unique");
    audit.record(rec(1, "u-admin", "u-a")).unwrap();
    let _ = audit.record(rec(2, "u-admin", "u-a"));
    let text = String::from_utf8(m.render()).unwrap();
    for line in [
        "guise_audit_records_total{outcome=\"written\"} 0",
        "guise_audit_records_total{outcome=\"retried\"} 0",
        "guise_audit_records_total{outcome=\"refused\"} 1",
        "guise_audit_buffered 1",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn the_sink_follows_the_settings() {
    let settings = AuditSettings::default();
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let dir = Path::new("/etc/guise");
    match Sink::from_settings(&settings, memory.clone(), dir) {
        Sink::File(p) => assert_eq!(p, dir.join("guise-audit.jsonl")),
        other => panic!("memory store: {other:?}"),
    }
    let with_file = AuditSettings {
        file: Some("/var/log/audit.jsonl".into()),
        ..AuditSettings::default()
    };
    match Sink::from_settings(&with_file, memory, dir) {
        Sink::File(p) => assert_eq!(p, Path::new("/var/log/audit.jsonl")),
        other => panic!("a file named: {other:?}"),
    }
    // Opening does not connect, so no server is needed to see the choice.
    let redis: Arc<dyn Store> = Arc::new(
        crate::store::redis::RedisStore::open(
            &crate::config::RedisConfig::Single {
                url: "redis://127.0.0.1:1".to_string(),
            },
            Default::default(),
        )
        .unwrap(),
    );
    match Sink::from_settings(&settings, redis, dir) {
        Sink::Store(s, max_len) => {
            assert_eq!(s.kind(), "redis");
            assert_eq!(max_len, settings.stream_max_len);
        }
        other => panic!("redis store: {other:?}"),
    }
}

// === reading ===

/// Thirty records, one a second: every third by `u-boss`, users `u-0` to
/// `u-4` in turn. Written through `audit`, then read back every way.
async fn filters_and_paging(audit: &Audit) {
    for i in 0..30 {
        let by = if i % 3 == 0 { "u-boss" } else { "u-admin" };
        audit.record(rec(i, by, &format!("u-{}", i % 5))).unwrap();
    }
    assert!(audit.flush(DEADLINE).await);
    let read = |q: AuditQuery| async move { audit.read(&q).await.unwrap() };

    let all = read(AuditQuery::default()).await;
    let newest_first: Vec<u64> = (0..30).rev().collect();
    assert_eq!(paths(&all), expect_paths(&newest_first));
    assert_eq!(all.next, None);

    // Pages of seven add up to the whole, each entry once.
    let mut q = AuditQuery {
        limit: 7,
        ..AuditQuery::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = read(q.clone()).await;
        assert!(page.entries.len() <= 7);
        seen.extend(page.entries.iter().cloned());
        pages += 1;
        match page.next {
            Some(next) => q.before = Some(next),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(seen, all.entries);

    let by_user = AuditQuery {
        user: Some("u-1".to_string()),
        ..AuditQuery::default()
    };
    assert_eq!(
        paths(&read(by_user.clone()).await),
        expect_paths(&[26, 21, 16, 11, 6, 1])
    );
    let boss_and_user = AuditQuery {
        impersonator: Some("u-boss".to_string()),
        ..by_user.clone()
    };
    assert_eq!(
        paths(&read(boss_and_user).await),
        expect_paths(&[21, 6]),
        "every filter must match"
    );
    let window = AuditQuery {
        since_ms: Some(1_010_000),
        until_ms: Some(1_012_000),
        ..AuditQuery::default()
    };
    assert_eq!(
        paths(&read(window).await),
        expect_paths(&[12, 11, 10]),
        "both ends included"
    );

    // A filtered query pages too.
    let mut q = AuditQuery {
        limit: 2,
        ..by_user
    };
    let mut got = Vec::new();
    for _ in 0..5 {
        let page = read(q.clone()).await;
        got.extend(paths(&page));
        match page.next {
            Some(next) => q.before = Some(next),
            None => break,
        }
    }
    assert_eq!(got, expect_paths(&[26, 21, 16, 11, 6, 1]));
}

#[tokio::test]
async fn the_stream_is_read_newest_first_with_filters_and_pages() {
    let (_store, sink) = memory_sink();
    let (audit, writer) = Audit::new(sink, 100);
    let (_shutdown, _task) = spawn_writer(writer);
    filters_and_paging(&audit).await;
    let line_cursor = AuditQuery {
        before: Some("12".to_string()),
        ..AuditQuery::default()
    };
    let err = audit.read(&line_cursor).await.unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
}

#[tokio::test]
async fn the_file_is_read_newest_first_with_filters_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, writer) = Audit::new(Sink::File(dir.path().join("a.jsonl")), 100);
    let (_shutdown, _task) = spawn_writer(writer);
    filters_and_paging(&audit).await;
    let stream_cursor = AuditQuery {
        before: Some("12-0".to_string()),
        ..AuditQuery::default()
    };
    let err = audit.read(&stream_cursor).await.unwrap_err();
    assert_eq!(err.status(), 400, "{err}");
}

#[tokio::test]
async fn an_audit_file_not_yet_written_reads_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, _writer) = Audit::new(Sink::File(dir.path().join("none.jsonl")), 1);
    assert_eq!(
        audit.read(&AuditQuery::default()).await.unwrap(),
        AuditPage::default()
    );
}

#[tokio::test]
async fn a_read_looks_at_a_bounded_number_of_entries_and_says_where_to_go_on() {
    let (store, sink) = memory_sink();
    let (audit, _writer) = Audit::new(sink, 1);
    let old = serde_json::to_string(&rec(0, "u-admin", "u-old")).unwrap();
    store.append_audit(&[old], 1_000_000).await.unwrap();
    let other = serde_json::to_string(&rec(1, "u-admin", "u-new")).unwrap();
    let batch = vec![other; 1_000];
    for _ in 0..(MAX_SCAN / 1_000 + 1) {
        store.append_audit(&batch, 1_000_000).await.unwrap();
    }
    // Not a record: skipped, not an error.
    store
        .append_audit(&["not json".to_string()], 1_000_000)
        .await
        .unwrap();

    let mut q = AuditQuery {
        user: Some("u-old".to_string()),
        ..AuditQuery::default()
    };
    let first = audit.read(&q).await.unwrap();
    assert!(first.entries.is_empty());
    let next = first.next.expect("a cursor to go on from");
    q.before = Some(next);
    let second = audit.read(&q).await.unwrap();
    assert_eq!(paths(&second), expect_paths(&[0]));
    assert_eq!(second.next, None);
}

#[tokio::test]
async fn a_since_filter_stops_reading_at_entries_written_well_before_it() {
    let (store, sink) = memory_sink();
    let (audit, _writer) = Audit::new(sink, 1);
    let now = unix_ms();
    // A node whose clock runs a minute ahead of the store's: its record is
    // found by a `since` later than the entry's id.
    let mut ahead = rec(0, "u-admin", "u-a");
    ahead.time_ms = now + 60_000;
    let filler = serde_json::to_string(&rec(1, "u-admin", "u-b")).unwrap();
    store
        .append_audit(&vec![filler; MAX_SCAN + 10], 1_000_000)
        .await
        .unwrap();
    store
        .append_audit(&[serde_json::to_string(&ahead).unwrap()], 1_000_000)
        .await
        .unwrap();
    let since = |ms| AuditQuery {
        since_ms: Some(ms),
        ..AuditQuery::default()
    };

    let found = audit.read(&since(now + 30_000)).await.unwrap();
    assert_eq!(found.entries.len(), 1);
    assert_eq!(found.entries[0].1, ahead);
    assert!(found.next.is_some(), "more entries within the clock slack");

    // Entries written more than the slack before `since` end the read: no
    // scan up to the bound, no cursor to a page that could hold nothing.
    let none = audit.read(&since(now + 3_600_000)).await.unwrap();
    assert_eq!(none, AuditPage::default());
}

// === queries ===

#[test]
fn a_query_string_sets_each_filter_and_empty_values_are_not_given() {
    let q =
        AuditQuery::parse("user=u%201&impersonator=u-admin&since=5&until=10&before=17-3&limit=20")
            .unwrap();
    assert_eq!(
        q,
        AuditQuery {
            user: Some("u 1".to_string()),
            impersonator: Some("u-admin".to_string()),
            since_ms: Some(5),
            until_ms: Some(10),
            before: Some("17-3".to_string()),
            limit: 20,
        }
    );
    assert_eq!(
        AuditQuery::parse("user=&impersonator=&since=&until=&before=&limit=").unwrap(),
        AuditQuery::default()
    );
    assert_eq!(AuditQuery::parse("").unwrap().limit, DEFAULT_LIMIT);
    assert_eq!(
        AuditQuery::parse("before=42").unwrap().before.as_deref(),
        Some("42"),
        "a line of the audit file"
    );
}

#[test]
fn a_bad_query_is_refused_with_400_naming_the_parameter() {
    for (query, says) in [
        ("users=u-1", "unknown parameter `users`"),
        ("user=a&user=b", "`user` is given twice"),
        (
            "since=yesterday",
            "`since` must be a time in unix milliseconds",
        ),
        ("until=+5", "`until` must be a time"),
        ("since=-1", "`since` must be"),
        ("since=10&until=5", "`since` (10) is after `until` (5)"),
        ("limit=0", "`limit` must be a number from 1 to 500"),
        ("limit=501", "`limit` must be a number from 1 to 500"),
        ("limit=ten", "`limit` must be"),
        ("before=abc", "`before` must be the id of an entry"),
        ("before=1-2-3", "`before` must be"),
    ] {
        let err = AuditQuery::parse(query).unwrap_err();
        assert!(matches!(err, AuditError::BadQuery(_)), "{query}: {err:?}");
        assert_eq!(err.status(), 400, "{query}");
        assert_eq!(err.code(), "bad_audit_query");
        assert!(err.to_string().contains(says), "{query}: {err}");
    }
}

#[test]
fn request_json_is_the_records_json() {
    let awkward = "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{1}i\u{1f}j\u{7f}k é 🦀 </script>";
    for (text, status, time_ms) in [
        ("plain", 200u16, 0u64),
        (awkward, 0, u64::MAX),
        ("", 599, 1_764_300_000_123),
    ] {
        let rec = RequestRecord {
            time_ms,
            impersonator: text,
            user: "u-bench",
            method: "GET",
            path: text,
            status,
            session: text,
        };
        let owned = AuditRecord {
            time_ms,
            event: AuditEvent::Request,
            impersonator: text.into(),
            user: Some("u-bench".into()),
            method: "GET".into(),
            path: text.into(),
            status: Some(status),
            reason: None,
            session: Some(text.into()),
        };
        assert_eq!(rec.to_json(), serde_json::to_string(&owned).unwrap());
    }
}
