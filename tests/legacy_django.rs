//! End-to-end: guise in front of a real, unchanged third-party app, the
//! Django admin, as a new user would put it there.
//!
//! Upstream mode (Django checks passwords with its own form, CSRF and
//! `sessionid`; guise keeps its session in step): login by username and by
//! "who am I", users Django owns, the `next` escalation refused, each
//! side's logout and an admin's revocation ending the other's session,
//! static assets through a public route, an admin form POST through guise.
//! Gateway mode: guise checks passwords and Django takes the signed identity
//! through the recipe in `docs/django/guise_django.py`.

mod support;

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use support::django::{csrf_field, Django, PASSWORD};
use support::*;

/// A gateway in front of `django` with this `auth:` block (and its users).
struct Gateway {
    _dir: tempfile::TempDir,
    http: SocketAddr,
    ops: SocketAddr,
    _running: guise::server::Running,
}

impl Gateway {
    async fn start(django: SocketAddr, http: SocketAddr, tail: &str) -> Gateway {
        let ops = free_addr();
        let yaml = format!(
            "\
listeners:
  http: {http}
operations:
  address: {ops}
server:
  grace_period_seconds: 0
  shutdown_timeout_seconds: 1
  work_stealing: true
upstream:
  address: {django}
  connect_timeout_ms: 1000
  read_timeout_ms: 20000
routes:
  - {{ name: static, path: \"/static/{{*rest}}\", public: true }}
{tail}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guise.yaml");
        std::fs::write(&path, yaml.replace("{HASH}", PW_HASH)).unwrap();
        let running = spawn_gateway(Path::new(&path));
        wait_listening(http).await;
        Gateway {
            _dir: dir,
            http,
            ops,
            _running: running,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    async fn metric(&self, sample: &str) -> f64 {
        let text = client()
            .get(format!("http://{}/metrics", self.ops))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, sample)
    }
}

/// Upstream mode as the configuration reference recommends for Django,
/// with `user_id` saying how guise learns who signed in.
fn upstream_auth(user_id: &str) -> String {
    format!(
        "\
auth:
  mode: upstream
  login_path: /admin/login/
  after_login: /admin/
  upstream:
    success_status: [302]
    success_cookie: sessionid
{user_id}
    app_session_cookies: [sessionid]
    logout_path: /admin/logout/
users:
  - {{ id: admin, name: Django Admin, email: admin@legacy.test, roles: [admin] }}
"
    )
}

const BY_USERNAME: &str = "    user_id_from_username: true";
const BY_WHOAMI: &str =
    "    whoami: { path: /admin/, body_regex: \"Welcome,\\\\s*<strong>(?P<id>[^<]+)</strong>\" }";

/// A browser: keeps cookies, does not follow redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Sign in through Django's own form, as a browser does: fetch the form
/// (and its CSRF cookie), post it back.
async fn sign_in(
    c: &reqwest::Client,
    g: &Gateway,
    user: &str,
    password: &str,
    next: &str,
) -> reqwest::Response {
    let q = format!("?next={}", url_escape(next));
    let form = c
        .get(g.url(&format!("/admin/login/{q}")))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 200, "Django's login form through guise");
    let token = csrf_field(&form.text().await.unwrap());
    c.post(g.url(&format!("/admin/login/{q}")))
        .header("accept", "text/html")
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", user),
            ("password", password),
            ("next", next),
        ])
        .send()
        .await
        .unwrap()
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn set_cookie<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
}

fn expires(r: &reqwest::Response, name: &str) -> bool {
    set_cookie(r, name).is_some_and(|c| c.contains("Max-Age=0"))
}

async fn session(c: &reqwest::Client, g: &Gateway) -> (u16, Value) {
    let r = c
        .get(g.url("/_guise/session"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn start(user_id: &str) -> Option<(Django, Gateway)> {
    let http = free_addr();
    let django = Django::start(None, &[format!("http://{http}")]).await?;
    let g = Gateway::start(django.addr, http, &upstream_auth(user_id)).await;
    Some((django, g))
}

#[tokio::test]
async fn djangos_own_form_signs_in_through_guise_and_guise_knows_the_user_by_username() {
    let Some((_django, g)) = start(BY_USERNAME).await else {
        return;
    };
    let c = browser();
    // An anonymous browser is sent to Django's login page; its static
    // assets are public.
    let r = c
        .get(g.url("/admin/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/admin/login/?next=%2Fadmin%2F");
    let css = c
        .get(g.url("/static/admin/css/base.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), 200, "static assets through the public route");

    // A wrong password: Django's own page says so, guise starts nothing.
    let r = sign_in(&c, &g, "admin", "wrong", "/admin/").await;
    assert_eq!(r.status(), 200);
    assert!(set_cookie(&r, "guise_session").is_none());
    assert_eq!(
        g.metric("guise_logins_total{result=\"bad_credentials\"}")
            .await,
        1.0
    );

    let r = sign_in(&c, &g, "admin", PASSWORD, "/admin/").await;
    assert_eq!(r.status(), 302, "Django's answer passes through");
    assert_eq!(r.headers()["location"], "/admin/");
    assert!(
        set_cookie(&r, "guise_session").is_some(),
        "guise's session starts"
    );
    assert!(
        set_cookie(&r, "sessionid").is_some(),
        "Django keeps its own"
    );
    let page = c.get(g.url("/admin/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Site administration"));
    let (status, me) = session(&c, &g).await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["id"], "admin");
    assert_eq!(
        me["user"]["roles"],
        serde_json::json!(["admin"]),
        "a listed user keeps its roles"
    );
    assert_eq!(g.metric("guise_logins_total{result=\"ok\"}").await, 1.0);

    // An admin form POST through guise, with Django's CSRF.
    let add = c.get(g.url("/admin/auth/group/add/")).send().await.unwrap();
    let token = csrf_field(&add.text().await.unwrap());
    let r = c
        .post(g.url("/admin/auth/group/add/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("name", "Editors"),
            ("_save", "Save"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "{:?}", r.text().await);
    let list = c.get(g.url("/admin/auth/group/")).send().await.unwrap();
    assert!(list.text().await.unwrap().contains("Editors"));
}

#[tokio::test]
async fn a_user_django_owns_gets_a_directory_entry_marked_as_the_apps() {
    let Some((_django, g)) = start(BY_WHOAMI).await else {
        return;
    };
    let clerk = browser();
    let r = sign_in(&clerk, &g, "clerk", PASSWORD, "/admin/").await;
    assert_eq!(r.status(), 302);
    let (status, me) = session(&clerk, &g).await;
    assert_eq!(status, 200, "not signed out on the next request");
    assert_eq!(me["user"]["id"], "clerk", "named by the who-am-I request");
    assert_eq!(me["user"]["roles"], serde_json::json!(["user"]));
    // Still signed in a request later (the entry is in the directory).
    assert_eq!(
        clerk.get(g.url("/admin/")).send().await.unwrap().status(),
        200
    );

    let admin = browser();
    assert_eq!(
        sign_in(&admin, &g, "admin", PASSWORD, "/admin/")
            .await
            .status(),
        302
    );
    let (_, me) = session(&admin, &g).await;
    let csrf = me["csrf_token"].as_str().unwrap().to_string();
    let entry: Value = admin
        .get(g.url("/_guise/admin/users/clerk"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entry["user"]["origin"], "app", "{entry}");

    // Disabled in guise: Django would accept clerk, guise does not.
    let r = admin
        .patch(g.url("/_guise/admin/users/clerk"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again = browser();
    let r = sign_in(&again, &g, "clerk", PASSWORD, "/admin/").await;
    assert_eq!(r.status(), 403);
    assert!(set_cookie(&r, "guise_session").is_none());
    assert!(
        expires(&r, "sessionid"),
        "Django's session is not left behind"
    );
    assert_eq!(
        g.metric("guise_logins_total{result=\"not_allowed\"}").await,
        1.0
    );
}

#[tokio::test]
async fn a_next_naming_another_user_does_not_become_that_user() {
    let regex = "    user_id_redirect_regex: \"^/admin/auth/user/(?P<id>[^/]+)/\"";
    let Some((_django, g)) = start(regex).await else {
        return;
    };
    // clerk posts next=/admin/auth/user/admin/...; Django redirects there.
    let c = browser();
    let r = sign_in(&c, &g, "clerk", PASSWORD, "/admin/auth/user/admin/change/").await;
    assert_eq!(r.status(), 403, "{:?}", r.headers());
    assert!(
        set_cookie(&r, "guise_session").is_none(),
        "no session as admin"
    );
    assert!(expires(&r, "sessionid"));
    let (status, _) = session(&c, &g).await;
    assert_eq!(status, 401);
    assert_eq!(
        g.metric("guise_logins_total{result=\"steered_identity\"}")
            .await,
        1.0
    );

    // The same redirect naming the user who signed in is fine.
    let r = sign_in(&c, &g, "clerk", PASSWORD, "/admin/auth/user/clerk/change/").await;
    assert_eq!(r.status(), 302);
    let (_, me) = session(&c, &g).await;
    assert_eq!(me["user"]["id"], "clerk");
}

#[tokio::test]
async fn a_success_that_names_nobody_is_said_plainly_and_leaves_no_app_session() {
    let nobody = "    whoami: { path: /admin/, body_regex: \"No such text (?P<id>x)\" }";
    let Some((_django, g)) = start(nobody).await else {
        return;
    };
    let c = browser();
    let r = sign_in(&c, &g, "admin", PASSWORD, "/admin/").await;
    assert_eq!(r.status(), 502);
    assert!(expires(&r, "sessionid"));
    assert!(set_cookie(&r, "guise_session").is_none());
    assert_eq!(
        g.metric("guise_logins_total{result=\"no_identity\"}").await,
        1.0
    );
    assert_eq!(
        g.metric("guise_logins_total{result=\"bad_credentials\"}")
            .await,
        0.0
    );
    // No loop: the login page is the form again.
    let r = c.get(g.url("/admin/login/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn djangos_logout_ends_guises_session() {
    let Some((_django, g)) = start(BY_USERNAME).await else {
        return;
    };
    let c = browser();
    assert_eq!(
        sign_in(&c, &g, "admin", PASSWORD, "/admin/").await.status(),
        302
    );
    let page = c
        .get(g.url("/admin/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let token = csrf_field(&page);
    let r = c
        .post(g.url("/admin/logout/"))
        .form(&[("csrfmiddlewaretoken", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "Django's logged-out page");
    assert!(expires(&r, "guise_session"));
    let (status, _) = session(&c, &g).await;
    assert_eq!(status, 401, "guise's session ended with Django's");
}

#[tokio::test]
async fn guises_logout_and_an_admins_revocation_end_djangos_session_without_a_loop() {
    let Some((django, g)) = start(BY_USERNAME).await else {
        return;
    };
    // guise's own logout expires Django's cookie.
    let c = browser();
    assert_eq!(
        sign_in(&c, &g, "clerk", PASSWORD, "/admin/").await.status(),
        302
    );
    let (_, me) = session(&c, &g).await;
    let r = c
        .post(g.url("/_guise/logout"))
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(expires(&r, "sessionid"));
    let r = c.get(g.url("/admin/login/")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the form, not a redirect back");

    // An admin revokes clerk's sessions: clerk's next answer expires
    // Django's cookie too, and the login page is the form.
    assert_eq!(
        sign_in(&c, &g, "clerk", PASSWORD, "/admin/").await.status(),
        302
    );
    let admin = browser();
    assert_eq!(
        sign_in(&admin, &g, "admin", PASSWORD, "/admin/")
            .await
            .status(),
        302
    );
    let (_, me) = session(&admin, &g).await;
    let r = admin
        .delete(g.url("/_guise/admin/users/clerk/sessions"))
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(g.url("/admin/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with("/admin/login/"));
    assert!(expires(&r, "sessionid") && expires(&r, "guise_session"));
    let r = c
        .get(g.url("/admin/login/?next=/admin/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A browser that holds only a Django session (signed in to Django
    // directly) gets the form at the login page, with that cookie expired.
    let direct = browser();
    let base = format!("http://{}", django.addr);
    let form = direct
        .get(format!("{base}/admin/login/"))
        .send()
        .await
        .unwrap();
    let token = csrf_field(&form.text().await.unwrap());
    let r = direct
        .post(format!("{base}/admin/login/"))
        .form(&[
            ("csrfmiddlewaretoken", token.as_str()),
            ("username", "clerk"),
            ("password", PASSWORD),
            ("next", "/admin/"),
        ])
        .send()
        .await
        .unwrap();
    let sessionid = set_cookie(&r, "sessionid")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = client()
        .get(g.url("/admin/login/"))
        .header("cookie", &sessionid)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "Django saw no session: the form, not a redirect"
    );
    assert!(expires(&r, "sessionid"));
}

#[tokio::test]
async fn in_gateway_mode_django_takes_the_signed_identity_and_refuses_forged_headers() {
    let http = free_addr();
    let Some(django) = Django::start(Some(KEY), &[format!("http://{http}")]).await else {
        return;
    };
    let users = "users:\n  - { id: u-admin, name: Admin, email: admin@test.example, roles: [admin], password_hash: \"{HASH}\" }\n  - { id: u-bob, name: Bob, email: bob@test.example, password_hash: \"{HASH}\" }\n";
    let g = Gateway::start(django.addr, http, users).await;
    let c = browser();
    let r = login::try_login(&c, &format!("http://{http}"), "admin@test.example", PW).await;
    assert_eq!(r.status(), 200);
    let page = c.get(g.url("/admin/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("<strong>u-admin</strong>"),
        "Django knows the gateway's user"
    );
    // A path with an escape is signed as sent and verified by the recipe
    // (Django sees it decoded): a 404 from Django, not a 401.
    let r = c
        .get(g.url("/admin/no%20such%C3%A9/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // An ordinary user is no Django staff.
    let bob = browser();
    login::try_login(&bob, &format!("http://{http}"), "bob@test.example", PW).await;
    let r = bob.get(g.url("/admin/")).send().await.unwrap();
    assert_eq!(r.status(), 302, "sent to Django's login: not staff");

    // Straight to Django, bypassing the gateway, with a made-up identity.
    let r = client()
        .get(format!("http://{}/admin/", django.addr))
        .header("x-guise-user", "u-admin")
        .header("x-guise-roles", "super_admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("identity refused"));
}
