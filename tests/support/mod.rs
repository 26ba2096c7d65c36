//! Shared fixtures for end-to-end tests: free ports, the demo upstream, a
//! gateway built from YAML and run in-process, and polling with deadlines.
#![allow(dead_code)]

pub mod django;
pub mod login;
pub mod redis;
pub mod smtp;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guise::config::Config;
use guise::demo_upstream::{DemoHandle, DemoUpstream};
use guise::identity::UpstreamVerifier;
use guise::server::{BuildOptions, Gateway, Running};

/// The `sessions:` section of a gateway on the memory store.
pub const MEMORY: &str = "sessions:\n  store: memory\n";

/// The `sessions:` section of a gateway on the Redis at `url`.
pub fn redis_store(url: &str) -> String {
    format!("sessions:\n  store: redis\n  redis:\n    url: {url}\n")
}

pub const KEY: &str = "test-signing-key-0123456789abcdef0123456789";

/// A loopback port nobody listens on right now, and that no other test in
/// this process will be handed.
///
/// Asking the kernel for port 0 and releasing it is racy: the kernel may hand
/// the same port to a parallel test, or to any outgoing connection (a Redis
/// client, an HTTP client), before the gateway binds it. Ports are therefore
/// drawn from a counter below the kernel's ephemeral range, where outgoing
/// connections never land, and every port is handed out at most once per
/// process. The window stops 10000 below the ephemeral range, so a Redis
/// Cluster node's bus port (`port + 10000`) is never handed out either.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;

    let ephemeral_low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768);
    let high = ephemeral_low.saturating_sub(10_000).min(20_000);
    if high <= LOW + 1_000 {
        // An unusual ephemeral range leaves no room: fall back to the kernel.
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
    }
    let span = high - LOW;
    // Start each test binary somewhere else in the window, so a server left
    // behind by the previous binary is unlikely to sit on the first ports.
    let start = std::process::id() % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % span) as u16;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{high}");
}

pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// `n` distinct free loopback addresses.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    (0..n).map(|_| free_addr()).collect()
}

/// Poll `f` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until something accepts TCP connections on `addr`.
pub async fn wait_listening(addr: SocketAddr) {
    eventually(
        Duration::from_secs(20),
        &format!("{addr} to listen"),
        || async move { tokio::net::TcpStream::connect(addr).await.ok().map(|_| ()) },
    )
    .await
}

/// The variable [`test_env`] holds an SMTP password in.
pub const SMTP_PASSWORD_ENV: &str = "GUISE_TEST_SMTP_PASSWORD";
/// The SMTP password [`test_env`] holds.
pub const SMTP_PASSWORD: &str = "smtp test password";

/// The env the fixtures' configs read the signing key (and an SMTP
/// password) from.
pub fn test_env(name: &str) -> Option<String> {
    match name {
        "GUISE_SIGNING_KEY" => Some(KEY.to_string()),
        SMTP_PASSWORD_ENV => Some(SMTP_PASSWORD.to_string()),
        _ => None,
    }
}

/// Password of every user in [`USERS_YAML`].
pub const PW: &str = "correct horse";
/// Its argon2id hash.
pub const PW_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$v86yVxoFlrkpUyWREyRUnw$tgfsl8zfBp0kdwDAbUVjZ8zQ3IZ//C7u1QikPh8dl0w";

/// Users for session tests: a super admin, an admin, two plain users and a
/// disabled one (`{HASH}` is filled with [`PW_HASH`]).
pub const USERS_YAML: &str = "\
users:
  - { id: u-super, name: Super, email: super@test.example, roles: [super_admin], password_hash: \"{HASH}\" }
  - { id: u-admin, name: Admin, email: admin@test.example, roles: [admin], can_impersonate: true, password_hash: \"{HASH}\" }
  - { id: u-alice, name: Alice, email: alice@test.example, attributes: { Business Unit: BU1 }, password_hash: \"{HASH}\" }
  - { id: u-bob, name: Bob, email: bob@test.example, password_hash: \"{HASH}\" }
  - { id: u-off, name: Off, email: off@test.example, status: disabled, password_hash: \"{HASH}\" }
";

/// A gateway that asks for a login: [`BASE_YAML`] without the
/// `require_login: false`, plus [`USERS_YAML`] and a public route.
pub fn session_yaml(extra: &str) -> String {
    let base = BASE_YAML
        .replace("auth:\n  require_login: false\n", "")
        .replace(
            "routes:\n",
            "routes:\n  - { name: health, path: /healthz, public: true }\n",
        );
    format!("{base}{USERS_YAML}{extra}")
}

/// A gateway in front of the demo app, each on free loopback ports.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub http: SocketAddr,
    pub ops: SocketAddr,
    pub upstream_addr: SocketAddr,
    pub upstream: Option<DemoHandle>,
    pub gateway: Option<Running>,
}

/// What the fixture fills in: `{HTTP}`, `{OPS}`, `{UPSTREAM}`, `{DIR}`.
pub const BASE_YAML: &str = "\
listeners:
  http: {HTTP}
operations:
  address: {OPS}
server:
  grace_period_seconds: 0
  shutdown_timeout_seconds: 1
  # Every test binary starts and stops many gateways in one process, which
  # pingora's no-steal runtime (the default) does not survive
  # (cloudflare/pingora#981); the binary's default is covered by tests/cli.rs.
  work_stealing: true
upstream:
  address: {UPSTREAM}
  connect_timeout_ms: 500
  read_timeout_ms: 5000
auth:
  require_login: false
routes:
  - { name: company, path: \"/api/companies/{id}\", area: companies, resource: company }
  - { name: echo, path: \"/api/echo/{*rest}\" }
";

impl Fixture {
    pub async fn start() -> Fixture {
        Fixture::start_with(BASE_YAML).await
    }

    /// Start the demo upstream and a gateway configured by `yaml`.
    pub async fn start_with(yaml: &str) -> Fixture {
        // The app verifies that identity headers are signed by this gateway.
        let app = DemoUpstream::new().with_identity_check(Arc::new(UpstreamVerifier::new(
            KEY.as_bytes().to_vec(),
            "x-guise-",
        )));
        let upstream = DemoHandle::start_app(free_addr(), app).expect("demo upstream starts");
        let upstream_addr = upstream.addr;
        let dir = tempfile::tempdir().expect("temp dir");
        let [http, ops] = free_addrs(2)[..] else {
            unreachable!("two addresses asked for")
        };
        let config_path = dir.path().join("guise.yaml");
        let mut f = Fixture {
            dir,
            config_path,
            http,
            ops,
            upstream_addr,
            upstream: Some(upstream),
            gateway: None,
        };
        f.write_config(yaml);
        let config = Config::load(&f.config_path, &test_env).expect("fixture config is valid");
        let gw = Gateway::build(
            config,
            BuildOptions {
                config_path: Some(f.config_path.clone()),
                reload_on_sighup: false,
                env: Arc::new(test_env),
            },
        )
        .expect("gateway builds");
        f.gateway = Some(gw.spawn());
        wait_listening(http).await;
        wait_listening(ops).await;
        f
    }

    /// Write `yaml` (with placeholders filled) as the config file.
    pub fn write_config(&self, yaml: &str) {
        std::fs::write(&self.config_path, self.fill(yaml)).expect("write config");
    }

    pub fn fill(&self, yaml: &str) -> String {
        yaml.replace("{HTTP}", &self.http.to_string())
            .replace("{OPS}", &self.ops.to_string())
            .replace("{UPSTREAM}", &self.upstream_addr.to_string())
            .replace("{DIR}", &self.dir.path().display().to_string())
            .replace("{HASH}", PW_HASH)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://{}{}", self.ops, path)
    }

    pub fn running(&self) -> &Running {
        self.gateway.as_ref().expect("gateway running")
    }

    /// The whole /metrics page.
    pub async fn metrics_text(&self) -> String {
        client()
            .get(self.ops_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of one sample line of /metrics (`name{labels}`), 0 if absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics_text().await, sample)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.stop();
        }
        if let Some(u) = self.upstream.take() {
            u.stop();
        }
    }
}

pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A plain HTTP client that never follows redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// Build a gateway from the YAML file at `path` and run it (no reload).
pub fn spawn_gateway(path: &Path) -> Running {
    let config = Config::load(path, &test_env).expect("config is valid");
    Gateway::build(
        config,
        BuildOptions {
            config_path: None,
            reload_on_sighup: false,
            env: Arc::new(test_env),
        },
    )
    .expect("gateway builds")
    .spawn()
}

/// Path of the built `guise` binary.
pub fn guise_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_guise"))
}

/// Two gateways running the demo configuration on one fresh Redis: the
/// multi-node tests' setup. Keep the server for as long as the nodes.
pub async fn demo_nodes_on_redis() -> (redis::RedisServer, Fixture, Fixture) {
    let redis = redis::RedisServer::start();
    let yaml = demo_yaml(&redis_store(&redis.url()), "");
    let a = Fixture::start_with(&yaml).await;
    let b = Fixture::start_with(&yaml).await;
    (redis, a, b)
}

/// `config/demo.yaml` with the fixture's addresses, `store` as the
/// `sessions:` section and `extra` appended.
pub fn demo_yaml(store: &str, extra: &str) -> String {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.yaml"))
        .expect("config/demo.yaml");
    let demo = demo
        .replace("http: 127.0.0.1:8080", "http: {HTTP}")
        .replace("address: 127.0.0.1:9090", "address: {OPS}")
        .replace("address: 127.0.0.1:8081", "address: {UPSTREAM}")
        .replace("sessions:\n  store: memory\n", store);
    assert!(
        demo.contains("{UPSTREAM}") && demo.contains(store),
        "demo.yaml changed shape"
    );
    // Many gateways in one test process (see support::BASE_YAML).
    format!("{demo}server:\n  grace_period_seconds: 0\n  shutdown_timeout_seconds: 1\n  work_stealing: true\n{extra}")
}
