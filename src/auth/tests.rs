//! Cost guards for the per-request path that a functional test would not
//! notice.

use std::path::Path;
use std::sync::Arc;

use crate::config::Config;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::session::SessionManager;
use crate::store::memory::MemoryStore;
use crate::users::Directory;

use super::AuthService;

const YAML: &str = "\
listeners:
  http: 127.0.0.1:1
upstream:
  address: 127.0.0.1:2
identity:
  signing_key_env: GUISE_TEST_KEY
";

/// Every request's `request_filter` future holds `gate`'s, and pingora
/// boxes it per request: each byte is copied once per request. The rare
/// handlers (login forms, admin, the upstream login with its client
/// connection, about 12 KiB) are boxed inside `gate` so that it stays
/// small; this fails if one of them is awaited inline again.
#[tokio::test]
async fn gate_future_stays_small() {
    let env = |name: &str| (name == "GUISE_TEST_KEY").then(|| "k".repeat(32));
    let config = Config::parse(YAML, "test.yaml", Path::new("."), &env).expect("config");
    let sessions = SessionManager::new(
        Arc::new(MemoryStore::new()),
        config.sessions.clone(),
        Metrics::new(),
    );
    let auth = AuthService::new(sessions, Arc::new(Directory::new()), Metrics::new());
    let live = Live::build(config).expect("live");

    let (client, _server) = tokio::io::duplex(1024);
    let mut session = pingora::proxy::Session::new_h1(Box::new(client));
    let gate = auth.gate(&mut session, &live, None);
    let size = std::mem::size_of_val(&gate);
    drop(gate);
    assert!(
        size <= 4096,
        "gate's future is {size} bytes; box the handler that made it grow"
    );
}
