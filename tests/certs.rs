//! `guise gen-cert` output against strict verifiers outside Rust: OpenSSL's
//! `verify -x509_strict -purpose sslserver`, and Python's `ssl` with
//! `VERIFY_X509_STRICT` (the default from Python 3.13) in a real handshake
//! with a gateway serving the certificate. webpki and the extension-by-
//! extension checks are unit tests in `src/tls.rs`.
//!
//! Each tool is optional on a developer's machine: a test whose tool is
//! missing says so and passes.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

/// Run `guise gen-cert --out <dir>/<sub> [--name n]...` and return the
/// folder, after checking the three files and the key's mode.
fn gen_cert(dir: &Path, sub: &str, names: &[&str]) -> PathBuf {
    let out = dir.join(sub);
    let mut cmd = Command::new(guise_bin());
    cmd.arg("gen-cert").arg("--out").arg(&out);
    for n in names {
        cmd.args(["--name", n]);
    }
    let run = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for f in ["dev-ca.pem", "dev-cert.pem", "dev-key.pem"] {
        assert!(stdout.contains(f), "{stdout}");
        assert!(out.join(f).is_file(), "{f}");
    }
    let mode = std::fs::metadata(out.join("dev-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    out
}

/// Whether `tool` runs here; when it does not, say the test is skipped.
fn have(tool: &str, probe: &[&str]) -> bool {
    match Command::new(tool).args(probe).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            println!(
                "SKIPPED: `{tool} {}` failed: {}",
                probe.join(" "),
                String::from_utf8_lossy(&o.stderr)
            );
            false
        }
        Err(e) => {
            println!("SKIPPED: {tool} is not available ({e})");
            false
        }
    }
}

/// `openssl verify` of the leaf (alone, not the chain file) against the CA
/// as the only trust anchor; `check` adds `-verify_hostname`/`-verify_ip`.
fn openssl_verify(certs: &Path, check: &[&str]) -> (bool, String) {
    let chain = std::fs::read_to_string(certs.join("dev-cert.pem")).unwrap();
    let end = "-----END CERTIFICATE-----\n";
    let leaf_end = chain.find(end).expect("a PEM certificate") + end.len();
    let leaf = certs.join("leaf.pem");
    std::fs::write(&leaf, &chain[..leaf_end]).unwrap();
    let run = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
        .arg(certs.join("dev-ca.pem"))
        .args(check)
        .arg(&leaf)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    (
        run.status.success() && out.trim_end().ends_with(": OK"),
        out,
    )
}

#[test]
fn openssl_strict_verify_accepts_gen_cert_output_for_its_names() {
    if !have("openssl", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();

    // The documented default names.
    let certs = gen_cert(dir.path(), "default", &[]);
    for check in [
        &[][..],
        &["-verify_hostname", "localhost"],
        &["-verify_ip", "127.0.0.1"],
        &["-verify_ip", "::1"],
    ] {
        let (ok, out) = openssl_verify(&certs, check);
        assert!(ok, "{check:?}: {out}");
    }
    let (ok, out) = openssl_verify(&certs, &["-verify_hostname", "example.com"]);
    assert!(!ok && out.contains("mismatch"), "{out}");

    // `--name` replaces the defaults.
    let certs = gen_cert(dir.path(), "named", &["app.guise.test", "10.1.2.3"]);
    for check in [
        &["-verify_hostname", "app.guise.test"][..],
        &["-verify_ip", "10.1.2.3"],
    ] {
        let (ok, out) = openssl_verify(&certs, check);
        assert!(ok, "{check:?}: {out}");
    }
    let (ok, out) = openssl_verify(&certs, &["-verify_hostname", "localhost"]);
    assert!(!ok && out.contains("mismatch"), "{out}");
}

/// Handshakes with `ssl.create_default_context(cafile=...)` plus
/// `VERIFY_X509_STRICT`, one per server name in argv, and prints one line
/// each: `<name> OK <status line>` or `<name> REFUSED <reason>`.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
cafile, port = sys.argv[1], int(sys.argv[2])
for name in sys.argv[3:]:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as tls:
                host = f"[{name}]" if ":" in name else name
                tls.sendall(f"GET /api/echo/python HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
                reply = b""
                while chunk := tls.recv(65536):
                    reply += chunk
        print(name, "OK", reply.split(b"\r\n", 1)[0].decode(), flush=True)
    except ssl.SSLCertVerificationError as e:
        print(name, "REFUSED", e.verify_message, flush=True)
"#;

#[tokio::test]
async fn python_strict_default_context_completes_a_handshake_with_the_gateway() {
    if !have("python3", &["-c", "import ssl; ssl.VERIFY_X509_STRICT"]) {
        return;
    }
    let certs_dir = tempfile::tempdir().unwrap();
    let certs = gen_cert(certs_dir.path(), "certs", &[]);
    let https = free_addr();
    let yaml = BASE_YAML.replace(
        "  http: {HTTP}",
        &format!(
            "  http: {{HTTP}}\n  https:\n    address: {https}\n    cert: {}\n    key: {}",
            certs.join("dev-cert.pem").display(),
            certs.join("dev-key.pem").display()
        ),
    );
    let _gateway = Fixture::start_with(&yaml).await;
    wait_listening(https).await;

    let run = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(PYTHON_CLIENT)
        .arg(certs.join("dev-ca.pem"))
        .arg(https.port().to_string())
        .args(["localhost", "127.0.0.1", "example.com"])
        .kill_on_drop(true)
        .output();
    let run = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("python3 finishes within a minute")
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "localhost OK HTTP/1.1 200 OK", "{out}");
    assert_eq!(lines[1], "127.0.0.1 OK HTTP/1.1 200 OK", "{out}");
    assert!(
        lines[2].starts_with("example.com REFUSED") && lines[2].contains("mismatch"),
        "{out}"
    );
}
