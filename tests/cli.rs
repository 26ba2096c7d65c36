//! The `guise` binary: config checking, start-up refusals, SIGHUP reload
//! and shutdown on signals.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn guise() -> Command {
    let mut c = Command::new(guise_bin());
    c.env("GUISE_SIGNING_KEY", KEY).env_remove("RUST_LOG");
    c
}

fn write(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn good_yaml(
    http: std::net::SocketAddr,
    ops: std::net::SocketAddr,
    up: std::net::SocketAddr,
) -> String {
    format!(
        "listeners:\n  http: {http}\noperations:\n  address: {ops}\nserver:\n  grace_period_seconds: 0\n  shutdown_timeout_seconds: 1\nupstream:\n  address: {up}\nauth:\n  require_login: false\nroutes:\n  - {{ name: first, path: /api/companies }}\n"
    )
}

#[test]
fn check_config_accepts_good_files_and_lists_every_problem_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.yaml",
        &good_yaml(free_addr(), free_addr(), free_addr()),
    );
    let out = guise().arg("check-config").arg(&good).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = write(
        dir.path(),
        "bad.yaml",
        "listeners:\n  http: nowhere\nupstream:\n  address: 127.0.0.1:1\nroutes:\n  - path: relative\n",
    );
    let out = guise().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml: line 2: listeners.http:"), "{err}");
    assert!(err.contains("line 6: routes[0].path:"), "{err}");

    let typo = write(
        dir.path(),
        "typo.yaml",
        "listeners:\n  htp: 127.0.0.1:1\nupstream:\n  address: 127.0.0.1:1\n",
    );
    let out = guise().arg("check-config").arg(&typo).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "line 2: listeners.htp: unknown key `htp`; expected one of `http`, `http_proxy_protocol`, `https`"
        ),
        "{err}"
    );
}

#[test]
fn check_config_without_the_key_variable_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "g.yaml",
        &good_yaml(free_addr(), free_addr(), free_addr()),
    );
    let out = Command::new(guise_bin())
        .env_remove("GUISE_SIGNING_KEY")
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GUISE_SIGNING_KEY"));
}

#[test]
fn every_shipped_config_passes_check_config() {
    for f in ["config/guise.yaml", "config/demo.yaml"] {
        let out = guise()
            .arg("check-config")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + f)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn run_refuses_a_bad_file_a_missing_certificate_and_a_busy_port() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.yaml",
        "listeners: {}\nupstream:\n  address: 127.0.0.1:1\n",
    );
    let out = guise()
        .arg("run")
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1: listeners"));

    let https = format!(
        "listeners:\n  https:\n    address: {}\n    cert: missing-cert.pem\n    key: missing-key.pem\noperations:\n  address: {}\nupstream:\n  address: 127.0.0.1:1\n",
        free_addr(),
        free_addr()
    );
    let p = write(dir.path(), "tls.yaml", &https);
    let out = guise().arg("run").arg("--config").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing-cert.pem"), "{err}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap();
    let p = write(
        dir.path(),
        "busy.yaml",
        &good_yaml(busy_addr, free_addr(), free_addr()),
    );
    let out = guise().arg("run").arg("--config").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on {busy_addr}")),
        "{err}"
    );
    // Standard error is a pipe here, not a terminal: the log lines before
    // the refusal are plain text, without colour codes.
    assert!(err.contains("configuration loaded"), "{err}");
    assert!(
        !err.contains('\x1b'),
        "ANSI escapes in a piped log: {err:?}"
    );
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn sighup_swaps_a_good_file_keeps_the_old_on_a_bad_one_and_sigterm_stops() {
    let app = guise::demo_upstream::DemoHandle::start(free_addr()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (http, ops) = (free_addr(), free_addr());
    let yaml = good_yaml(http, ops, app.addr);
    let path = write(dir.path(), "live.yaml", &yaml);
    let mut child = Child(
        guise()
            .arg("run")
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    wait_listening(http).await;
    wait_listening(ops).await;
    let c = client();
    let metrics = || async {
        c.get(format!("http://{ops}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let first_hash = hash_of(&metrics().await);
    c.get(format!("http://{http}/api/companies"))
        .send()
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "request counted", || async {
        metrics().await.contains("route=\"first\"").then_some(())
    })
    .await;

    // A good edit: the route is renamed for new requests.
    std::fs::write(&path, yaml.replace("name: first", "name: second")).unwrap();
    signal(pid, "HUP");
    let second_hash = eventually(Duration::from_secs(10), "reload", || async {
        let h = hash_of(&metrics().await);
        (h != first_hash).then_some(h)
    })
    .await;
    c.get(format!("http://{http}/api/companies"))
        .send()
        .await
        .unwrap();
    let text = eventually(Duration::from_secs(5), "request counted", || async {
        let t = metrics().await;
        t.contains("route=\"second\"").then_some(t)
    })
    .await;
    assert_eq!(
        metric_value(&text, "guise_config_reloads_total{result=\"ok\"}"),
        1.0
    );

    // A bad edit is refused and the live config stays.
    std::fs::write(&path, yaml.replace("routes:", "routez:")).unwrap();
    signal(pid, "HUP");
    eventually(Duration::from_secs(10), "refused reload", || async {
        (metric_value(
            &metrics().await,
            "guise_config_reloads_total{result=\"error\"}",
        ) == 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(hash_of(&metrics().await), second_hash);
    assert_eq!(
        c.get(format!("http://{http}/api/companies"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // SIGTERM: a graceful exit with status 0, promptly.
    signal(pid, "TERM");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "guise did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
    app.stop();
}

fn hash_of(metrics: &str) -> String {
    let line = metrics
        .lines()
        .find(|l| l.starts_with("guise_config_info{hash=\""))
        .expect("config info exposed");
    line["guise_config_info{hash=\"".len()..]
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn guise_demo_prints_its_outbox_and_welcome_emails_land_there() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let [http, up, ops] = free_addrs(3)[..] else {
        unreachable!("three addresses asked for")
    };
    let mut child = Child(
        guise()
            .arg("demo")
            .args(["--listen", &http.to_string()])
            .args(["--upstream", &up.to_string()])
            .args(["--operations", &ops.to_string()])
            .arg("--outbox")
            .arg(&outbox)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // The banner, read on a thread so a silent demo fails by the deadline.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut banner = String::new();
    while !banner.contains("Press Ctrl-C") {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no banner; so far: {banner}"));
        banner.push_str(&line);
        banner.push('\n');
    }
    assert!(
        banner.contains(&format!("outbox:      {}", outbox.display())),
        "{banner}"
    );
    assert!(banner.contains("anna@acme.test") && banner.contains("id u-acme-anna"));

    wait_listening(http).await;
    let c = client();
    let base = format!("http://{http}");
    let ada = login::login(&c, &base, "admin@demo.test", "demo").await;
    let r = c
        .post(format!("{base}/_guise/admin/users/u-acme-anna/welcome"))
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    assert!(eml.contains("anna@acme.test") && eml.contains("/_guise/set-password?token="));
}
