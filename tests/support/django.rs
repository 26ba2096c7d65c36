//! The Django admin as a real, unchanged third-party legacy app.
//!
//! The first use in a test process makes (or reuses) a virtualenv with
//! Django under `target/legacy-venv`, creates a project with
//! `django-admin startproject`, migrates it and creates two users, once.
//! Each test then runs its own copy of that project with `runserver` on a
//! free loopback port. Where Python is missing the tests say so and skip;
//! any other failure to set Django up fails the test.
//!
//! The project's settings take the gateway's signed identity (the recipe in
//! `docs/django/guise_django.py`) only when started in gateway mode;
//! otherwise it is the stock admin with its own login, CSRF and `sessionid`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use super::{free_addr, wait_listening};

/// Password of both Django users (`admin`, a superuser, and `clerk`, staff).
pub const PASSWORD: &str = "legacy-pass-1";

/// A running Django admin.
pub struct Django {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Django {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Prepared {
    python: PathBuf,
    /// `target/legacy-django`, made anew by each test process.
    template: PathBuf,
}

static PREPARED: OnceLock<Result<Prepared, String>> = OnceLock::new();

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

const SETTINGS: &str = r#"

# --- added by guise's test support ---
import os
ALLOWED_HOSTS = ["*"]
CSRF_TRUSTED_ORIGINS = os.environ.get("LEGACY_TRUSTED_ORIGINS", "").split()
if os.environ.get("GUISE_SIGNING_KEY"):
    # Gateway mode: the recipe in docs/django/guise_django.py.
    MIDDLEWARE.insert(
        MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
        "guise_django.GuiseIdentityMiddleware",
    )
    AUTHENTICATION_BACKENDS = ["guise_django.GuiseBackend"]
    GUISE_SIGNING_KEY = os.environ["GUISE_SIGNING_KEY"]
"#;

const USERS: &str = r#"
from django.contrib.auth.models import User
User.objects.create_superuser("admin", "admin@legacy.test", "legacy-pass-1")
u = User.objects.create_user("clerk", "clerk@legacy.test", "legacy-pass-1")
u.is_staff = True
u.save()
"#;

fn prepare() -> Result<Prepared, String> {
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let venv = target.join("legacy-venv");
    let python = venv.join("bin/python");
    if !python.exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "python3 -m venv",
        )?;
    }
    let has_django = Command::new(&python)
        .args(["-c", "import django"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_django {
        run(
            Command::new(venv.join("bin/pip")).args(["install", "-q", "django>=5,<6"]),
            "pip install django",
        )?;
    }
    let template = target.join("legacy-django");
    let _ = std::fs::remove_dir_all(&template);
    std::fs::create_dir_all(&template).map_err(|e| e.to_string())?;
    run(
        Command::new(venv.join("bin/django-admin"))
            .args(["startproject", "legacy"])
            .arg(&template),
        "django-admin startproject",
    )?;
    let settings = template.join("legacy/settings.py");
    let mut text = std::fs::read_to_string(&settings).map_err(|e| e.to_string())?;
    text.push_str(SETTINGS);
    std::fs::write(&settings, text).map_err(|e| e.to_string())?;
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/django/guise_django.py");
    std::fs::copy(&recipe, template.join("guise_django.py")).map_err(|e| e.to_string())?;
    let manage = |args: &[&str]| {
        let mut c = Command::new(&python);
        c.arg("manage.py").args(args).current_dir(&template);
        c
    };
    run(&mut manage(&["migrate", "--noinput"]), "manage.py migrate")?;
    run(
        &mut manage(&["shell", "-c", USERS]),
        "creating Django users",
    )?;
    Ok(Prepared { python, template })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Whether this machine can run Python at all.
fn python_present() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Django {
    /// A fresh copy of the Django admin on a free port; `None` (with a
    /// message) where Python is missing. `signing_key` puts it in gateway
    /// mode; `origins` are trusted for CSRF (the gateway's).
    pub async fn start(signing_key: Option<&str>, origins: &[String]) -> Option<Django> {
        if !python_present() {
            eprintln!("SKIPPED: python3 is missing, so the Django legacy app cannot run here");
            return None;
        }
        let prepared = PREPARED
            .get_or_init(prepare)
            .as_ref()
            .unwrap_or_else(|e| panic!("setting up Django failed: {e}"));
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&prepared.template, dir.path());
        let addr = free_addr();
        let mut cmd = Command::new(&prepared.python);
        cmd.arg("manage.py")
            .args(["runserver", &addr.to_string(), "--noreload"])
            .current_dir(dir.path())
            .env("LEGACY_TRUSTED_ORIGINS", origins.join(" "))
            .env_remove("GUISE_SIGNING_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(key) = signing_key {
            cmd.env("GUISE_SIGNING_KEY", key);
        }
        let child = cmd.spawn().expect("runserver starts");
        wait_listening(addr).await;
        Some(Django {
            child,
            addr,
            _dir: dir,
        })
    }
}

/// The value of the hidden `csrfmiddlewaretoken` field of a Django form.
pub fn csrf_field(html: &str) -> String {
    let re = regex::Regex::new(r#"name="csrfmiddlewaretoken" value="([^"]+)""#).unwrap();
    re.captures(html)
        .unwrap_or_else(|| panic!("no CSRF field in:\n{html}"))[1]
        .to_string()
}
