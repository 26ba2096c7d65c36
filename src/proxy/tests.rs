//! Cost guards for the per-request path that a functional test would not
//! notice.

use crate::partners::Registry;
use std::path::Path;
use std::sync::Arc;

use pingora::proxy::ProxyHttp;

use super::*;
use crate::admin::AdminApi;
use crate::auth::AuthService;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::session::SessionManager;
use crate::store::memory::MemoryStore;
use crate::users::Directory;

const YAML: &str = "\
listeners:
  http: 127.0.0.1:1
upstream:
  address: 127.0.0.1:2
identity:
  signing_key_env: GUISE_TEST_KEY
";

/// pingora boxes `request_filter`'s future on every request, so each of
/// its bytes is copied once per request. The rare gateway handlers (login
/// forms, admin, the upstream login with its client connection, about
/// 12 KiB) are boxed inside it so that it stays small; this fails if one of
/// them is awaited inline again.
#[tokio::test]
async fn the_pipelines_future_stays_small() {
    let env = |name: &str| (name == "GUISE_TEST_KEY").then(|| "k".repeat(32));
    let config = Config::parse(YAML, "test.yaml", Path::new("."), &env).expect("config");
    let metrics = Metrics::new();
    let store: Arc<dyn crate::store::Store> = Arc::new(MemoryStore::new());
    let partners = Registry::new(store.clone(), Arc::new(config.partners.clone()));
    let store_for_permissions = store.clone();
    let sessions = SessionManager::new(
        store,
        config.sessions.clone(),
        metrics.clone(),
        Arc::new(SystemClock),
    );
    let directory = Arc::new(Directory::new());
    let auth = Arc::new(AuthService::new(
        sessions.clone(),
        directory.clone(),
        metrics.clone(),
        &config.auth,
    ));
    let welcome = Arc::new(crate::welcome::Welcomes {
        sessions: sessions.clone(),
        directory: directory.clone(),
        metrics: metrics.clone(),
    });
    let impersonation = impersonation::metrics::Metrics::new(&metrics).expect("metrics");
    let permissions = permissions::Permissions::new(
        store_for_permissions,
        Arc::new(config.permissions.clone()),
        permissions::metrics::Metrics::new(&metrics).expect("metrics"),
    );
    let audit = Arc::new(
        crate::audit::Audit::new(
            crate::audit::Sink::File(std::env::temp_dir().join("guise-proxy-test-audit.jsonl")),
            1,
        )
        .0,
    );
    let proxy = GatewayProxy {
        live: Live::build(config).expect("live").shared(),
        metrics: metrics.clone(),
        endpoints: Arc::new(Endpoints {
            auth,
            admin: AdminApi {
                sessions,
                directory,
                partners: partners.clone(),
                welcome: welcome.clone(),
                permissions: permissions.clone(),
                audit: audit.clone(),
                metrics: metrics.clone(),
            },
            partners,
            welcome,
            audit,
            impersonation,
            permissions,
        }),
        clock: Arc::new(SystemClock),
        drain: Drain::new(),
    };

    let (client, _server) = tokio::io::duplex(1024);
    let mut session = Session::new_h1(Box::new(client));
    let mut ctx = proxy.new_ctx();
    let fut = proxy.request_filter(&mut session, &mut ctx);
    let size = size_of_val(&*fut);
    drop(fut);
    assert!(
        size <= 4096,
        "request_filter's future is {size} bytes; box the handler that made it grow"
    );
}
