//! End-to-end: welcome emails (issue 11). A gateway runs the demo's own
//! configuration (`config/demo.yaml`) in front of the demo app; an admin
//! sends a partner user a welcome email through a real SMTP server on
//! loopback (tests/support/smtp.rs) or into an outbox folder; the test
//! reads the message that arrived, follows its link like a browser, sets a
//! password, and signs in with it. Links that are used, expired or forged
//! are asked for too, and who may send. Over STARTTLS and implicit TLS the
//! server's certificate comes from a CA made for the test and named by
//! `mail.smtp.ca_file`; a certificate of another CA, or a server without
//! STARTTLS, gets nothing.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::login::*;
use support::redis::RedisServer;
use support::smtp::{Received, SmtpServer, TestCerts, Tls};
use support::*;

/// Every demo user's password.
const DEMO_PW: &str = "demo";
/// What the partner user chooses.
const NEW_PW: &str = "a brand new passphrase";
/// The demo's own mail section, replaced by each test's.
const DEMO_MAIL: &str =
    "mail:\n  from: \"guise demo <guise@demo.test>\"\n  outbox: guise-demo-outbox\n";

/// `config/demo.yaml` with the fixture's addresses, `store` as the
/// `sessions:` section and `mail` as the `mail:` section.
fn demo_yaml(store: &str, mail: &str) -> String {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.yaml"))
        .expect("config/demo.yaml");
    assert!(demo.contains(DEMO_MAIL), "demo.yaml's mail section changed");
    let demo = demo
        .replace("http: 127.0.0.1:8080", "http: {HTTP}")
        .replace("address: 127.0.0.1:9090", "address: {OPS}")
        .replace("address: 127.0.0.1:8081", "address: {UPSTREAM}")
        .replace("sessions:\n  store: memory\n", store)
        .replace(DEMO_MAIL, mail);
    assert!(demo.contains("{UPSTREAM}"), "demo.yaml changed shape");
    // Many gateways in one test process (see support::BASE_YAML).
    format!("{demo}server:\n  grace_period_seconds: 0\n  shutdown_timeout_seconds: 1\n  work_stealing: true\n")
}

const MEMORY: &str = "sessions:\n  store: memory\n";

/// A `mail:` section sending through `smtp` without TLS (it is on
/// loopback), with `extra` lines (two-space indented) added.
fn smtp_mail(smtp: &SmtpServer, extra: &str) -> String {
    format!(
        "mail:\n  from: \"Partner Portal <portal@gw.test>\"\n  subject: Welcome to the partner portal\n{extra}  smtp:\n    host: 127.0.0.1\n    port: {}\n    security: none\n",
        smtp.addr.port()
    )
}

/// `POST /_guise/admin/users/{id}/welcome` as `who`, from this site.
async fn send_welcome(
    c: &reqwest::Client,
    f: &Fixture,
    who: &Signed,
    user: &str,
) -> reqwest::Response {
    c.post(f.url(&format!("/_guise/admin/users/{user}/welcome")))
        .header("cookie", &who.cookie)
        .header("x-csrf-token", &who.csrf)
        .header("origin", f.url(""))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
}

/// The set-password link in a message's plain-text body.
fn link_in(m: &Received) -> String {
    let text = m.part("text/plain").expect("a text/plain part");
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/_guise/set-password?token="))
        .unwrap_or_else(|| panic!("no link in {text}"))
        .to_string();
    let html = m.part("text/html").expect("a text/html part");
    assert!(
        html.contains(&format!("href=\"{link}\"")),
        "the HTML body links the same address: {html}"
    );
    link
}

/// The value of the form field `name` in a page.
fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// A browser's view of the set-password page: status, body, and the form's
/// CSRF cookie (`name=value`) when one was set.
async fn open(c: &reqwest::Client, link: &str) -> (u16, String, Option<String>) {
    let r = c
        .get(link)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let cookie = cookie_from(&r, "guise_login_csrf").map(|(c, _)| c);
    (r.status().as_u16(), r.text().await.unwrap(), cookie)
}

/// The form as a browser posts it.
struct Form<'a> {
    cookie: Option<&'a str>,
    csrf: &'a str,
    token: &'a str,
    password: &'a str,
    again: &'a str,
}

async fn post_form(c: &reqwest::Client, f: &Fixture, form: &Form<'_>) -> reqwest::Response {
    let mut req = c
        .post(f.url("/_guise/set-password"))
        .header("accept", "text/html")
        .header("origin", f.url(""))
        .form(&[
            ("csrf_token", form.csrf),
            ("token", form.token),
            ("password", form.password),
            ("password_confirm", form.again),
        ]);
    if let Some(cookie) = form.cookie {
        req = req.header("cookie", cookie);
    }
    req.send().await.unwrap()
}

/// Open `link` and post `password` twice through its form.
async fn choose_password(
    c: &reqwest::Client,
    f: &Fixture,
    link: &str,
    password: &str,
) -> reqwest::Response {
    let (status, page, cookie) = open(c, link).await;
    assert_eq!(status, 200, "{page}");
    let (csrf, token) = (field(&page, "csrf_token"), field(&page, "token"));
    post_form(
        c,
        f,
        &Form {
            cookie: cookie.as_deref(),
            csrf: &csrf,
            token: &token,
            password,
            again: password,
        },
    )
    .await
}

/// A sample of `guise_welcome_emails_total`.
async fn emails(f: &Fixture, transport: &str, result: &str) -> f64 {
    f.metric(&format!(
        "guise_welcome_emails_total{{result=\"{result}\",transport=\"{transport}\"}}"
    ))
    .await
}

async fn links(f: &Fixture, result: &str) -> f64 {
    f.metric(&format!(
        "guise_set_password_links_total{{result=\"{result}\"}}"
    ))
    .await
}

async fn session_alive(c: &reqwest::Client, f: &Fixture, who: &Signed) -> bool {
    get(c, &f.url(""), who, "/_guise/session").await.status() == 200
}

#[tokio::test]
async fn a_partner_user_chooses_a_password_through_the_welcome_email_once() {
    let smtp = SmtpServer::start().await;
    let f = Fixture::start_with(&demo_yaml(MEMORY, &smtp_mail(&smtp, ""))).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    // Anna is signed in somewhere with her old password.
    let anna_before = login(&c, &base, "anna@acme.test", DEMO_PW).await;

    // The admin action answers to whom and until when, never the link.
    let r = send_welcome(&c, &f, &ada, "u-acme-anna").await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["user"], "u-acme-anna", "{answer}");
    assert_eq!(answer["sent_to"], "anna@acme.test");
    assert_eq!(answer["transport"], "smtp");
    let expires_in = answer["expires_at"].as_u64().unwrap() - answer["sent_at"].as_u64().unwrap();
    assert_eq!(expires_in, 24 * 3600, "the default lifetime is 24 h");

    // The message that arrived at the SMTP server.
    let m = smtp.message(0).await;
    assert_eq!(m.from, "portal@gw.test");
    assert_eq!(m.to, vec!["anna@acme.test".to_string()]);
    assert_eq!(
        m.header("subject").as_deref(),
        Some("Welcome to the partner portal")
    );
    assert!(m.header("to").unwrap().contains("anna@acme.test"));
    let link = link_in(&m);
    assert!(
        link.starts_with(&f.url("/_guise/set-password?token=")),
        "{link}"
    );
    let token = link.rsplit('=').next().unwrap();
    assert!(
        !answer.to_string().contains(token),
        "the answer holds no link"
    );
    let text = m.part("text/plain").unwrap();
    assert!(
        text.contains("Hello Anna Acme,") && text.contains("24 hours"),
        "{text}"
    );

    // The page: a form for Anna.
    let (status, page, cookie) = open(&c, &link).await;
    assert_eq!(status, 200);
    assert!(page.contains("Choose your password") && page.contains("anna@acme.test"));
    let cookie = cookie.expect("the form's CSRF cookie");
    let (csrf, hidden) = (field(&page, "csrf_token"), field(&page, "token"));
    assert_eq!(hidden, token);

    // A form without its CSRF cookie, or with passwords that differ, gets
    // the form again and leaves the link working.
    let mut form = Form {
        cookie: None,
        csrf: &csrf,
        token: &hidden,
        password: NEW_PW,
        again: NEW_PW,
    };
    let r = post_form(&c, &f, &form).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("came from another site"));
    form.cookie = Some(&cookie);
    form.again = "something else entirely";
    let r = post_form(&c, &f, &form).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("differ"));
    form.password = "short";
    form.again = "short";
    let r = post_form(&c, &f, &form).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("at least 12"));

    // The password is set, the link spent, and the browser sent to sign in.
    form.password = NEW_PW;
    form.again = NEW_PW;
    let r = post_form(&c, &f, &form).await;
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(to, "/login?password_set=1");
    let page = c
        .get(f.url(&to))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Your password is set"), "{page}");

    // The new password signs in; the old one no longer does, and the
    // session opened with it has ended.
    login(&c, &base, "anna@acme.test", NEW_PW).await;
    assert_eq!(
        try_login(&c, &base, "anna@acme.test", DEMO_PW)
            .await
            .status(),
        401
    );
    assert!(!session_alive(&c, &f, &anna_before).await);
    assert!(session_alive(&c, &f, &ada).await, "nobody else's session");

    // Used once: the page and the form both say so.
    let (status, page, _) = open(&c, &link).await;
    assert_eq!(status, 410);
    assert!(page.contains("already been used"), "{page}");
    assert!(
        page.contains("Go to sign-in"),
        "a way on to sign in: {page}"
    );
    let r = post_form(&c, &f, &form).await;
    assert_eq!(r.status(), 410);
    let r = c
        .get(&link)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 410);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "link_used");

    // A mail server that refuses the message: the admin is told, and it
    // counts as failed.
    smtp.refuse_recipients(true);
    let r = send_welcome(&c, &f, &ada, "u-acme-arlo").await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "mail_failed", "{v}");
    assert_eq!(smtp.messages().len(), 1);

    assert_eq!(emails(&f, "smtp", "sent").await, 1.0);
    assert_eq!(emails(&f, "smtp", "failed").await, 1.0);
    assert_eq!(links(&f, "password_set").await, 1.0);
    assert_eq!(links(&f, "used").await, 3.0);
}

#[tokio::test]
async fn only_admins_send_welcome_emails_and_only_from_this_site() {
    let smtp = SmtpServer::start().await;
    let f = Fixture::start_with(&demo_yaml(MEMORY, &smtp_mail(&smtp, ""))).await;
    let c = client();
    let base = f.url("");
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let anna = login(&c, &base, "anna@acme.test", DEMO_PW).await;
    let url = f.url("/_guise/admin/users/u-acme-arlo/welcome");

    // A partner user is no admin.
    let r = send_welcome(&c, &f, &anna, "u-acme-arlo").await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "forbidden");
    // Nobody signed in.
    let r = c
        .post(&url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // An admin without the session's CSRF token, or with another's.
    let r = c
        .post(&url)
        .header("cookie", &ada.cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "csrf");
    let r = c
        .post(&url)
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &anna.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // From another site.
    let r = c
        .post(&url)
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .header("origin", "https://evil.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // An admin account is a super admin's to manage; an unknown user is not found.
    assert_eq!(send_welcome(&c, &f, &ada, "u-super").await.status(), 403);
    assert_eq!(send_welcome(&c, &f, &ada, "u-nobody").await.status(), 404);
    // A disabled account gets no link.
    let r = c
        .patch(f.url("/_guise/admin/users/u-acme-arlo"))
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = send_welcome(&c, &f, &ada, "u-acme-arlo").await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "user_disabled");
    assert!(smtp.messages().is_empty(), "nothing was sent");
    assert_eq!(emails(&f, "smtp", "sent").await, 0.0);

    // Links nobody sent.
    for link in [
        "/_guise/set-password",
        "/_guise/set-password?token=forged",
        &format!("/_guise/set-password?token={}", "A".repeat(43)),
    ] {
        let (status, page, _) = open(&c, &f.url(link)).await;
        assert_eq!(status, 400, "{link}");
        assert!(page.contains("not valid"), "{page}");
    }
}

#[tokio::test]
async fn an_expired_link_says_so() {
    let smtp = SmtpServer::start().await;
    // 0.001 h: 3.6 s, rounded up to 4.
    let mail = smtp_mail(&smtp, "  link_lifetime_hours: 0.001\n");
    let f = Fixture::start_with(&demo_yaml(MEMORY, &mail)).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let r = send_welcome(&c, &f, &ada, "u-acme-anna").await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["link_lifetime_seconds"], 4, "{answer}");
    let link = link_in(&smtp.message(0).await);
    let text = smtp.message(0).await.part("text/plain").unwrap();
    assert!(text.contains("expires in 4 seconds"), "{text}");

    // The form is shown while the link lives, and kept for the post.
    let (status, page, cookie) = open(&c, &link).await;
    assert_eq!(status, 200, "{page}");
    let (csrf, token) = (field(&page, "csrf_token"), field(&page, "token"));

    let page = eventually(Duration::from_secs(20), "the link to expire", || async {
        let (status, page, _) = open(&c, &link).await;
        (status == 410).then_some(page)
    })
    .await;
    assert!(page.contains("has expired"), "{page}");
    // A form filled in too late is refused, and nothing changes.
    let r = post_form(
        &c,
        &f,
        &Form {
            cookie: cookie.as_deref(),
            csrf: &csrf,
            token: &token,
            password: NEW_PW,
            again: NEW_PW,
        },
    )
    .await;
    assert_eq!(r.status(), 410);
    assert!(r.text().await.unwrap().contains("has expired"));
    login(&c, &f.url(""), "anna@acme.test", DEMO_PW).await;
    assert!(links(&f, "expired").await >= 2.0);
}

#[tokio::test]
async fn the_outbox_gets_each_welcome_email_as_a_private_eml_file() {
    let f = Fixture::start_with(&demo_yaml(
        MEMORY,
        "mail:\n  from: portal@gw.test\n  outbox: {DIR}/outbox\n  base_url: https://partners.gw.test\n",
    ))
    .await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let r = send_welcome(&c, &f, &ada, "u-globex-gia").await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["transport"], "outbox", "{answer}");
    assert_eq!(answer["sent_to"], "gia@globex.test");

    let outbox = f.dir.path().join("outbox");
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];
    assert_eq!(file.extension().unwrap(), "eml");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the file holds a live link");
    let m = Received {
        from: String::new(),
        to: Vec::new(),
        auth: None,
        data: std::fs::read_to_string(file).unwrap(),
        tls: false,
    };
    assert!(m.header("to").unwrap().contains("gia@globex.test"));
    assert_eq!(m.header("subject").as_deref(), Some("Set your password"));
    // The link points at the configured public address; the same path and
    // token work on this gateway.
    let link = link_in(&m);
    assert!(
        link.starts_with("https://partners.gw.test/_guise/set-password?token="),
        "{link}"
    );
    let local = link.replace("https://partners.gw.test", &f.url(""));
    let r = choose_password(&c, &f, &local, NEW_PW).await;
    assert_eq!(r.status(), 303);
    login(&c, &f.url(""), "gia@globex.test", NEW_PW).await;
    assert_eq!(emails(&f, "outbox", "sent").await, 1.0);
}

#[tokio::test]
async fn smtp_credentials_come_from_the_environment() {
    let smtp = SmtpServer::with_credentials("portal", SMTP_PASSWORD).await;
    let mail = smtp_mail(&smtp, "").replace(
        "    security: none\n",
        &format!(
            "    security: none\n    username: portal\n    password_env: {SMTP_PASSWORD_ENV}\n"
        ),
    );
    let f = Fixture::start_with(&demo_yaml(MEMORY, &mail)).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    assert_eq!(
        send_welcome(&c, &f, &ada, "u-acme-anna").await.status(),
        200
    );
    let m = smtp.message(0).await;
    assert_eq!(
        m.auth,
        Some(("portal".to_string(), SMTP_PASSWORD.to_string()))
    );
}

/// A `mail:` section sending through `smtp` at `host` with `security`
/// (`starttls` or `tls`), trusting the CA in `ca_file` only, as `portal`
/// with the password from the environment.
fn tls_mail(smtp: &SmtpServer, host: &str, security: &str, ca_file: &Path) -> String {
    format!(
        "mail:\n  from: \"Partner Portal <portal@gw.test>\"\n  smtp:\n    host: {host}\n    port: {}\n    security: {security}\n    ca_file: {}\n    username: portal\n    password_env: {SMTP_PASSWORD_ENV}\n",
        smtp.addr.port(),
        ca_file.display()
    )
}

/// Commands that carry the password or the mail.
const SENDING: [&str; 4] = ["AUTH", "MAIL", "RCPT", "DATA"];

/// An admin sends Anna a welcome email through a server that speaks TLS as
/// `mode` says, with a certificate of the configured CA: it arrives
/// encrypted, authenticated with the password from the environment, and
/// its link sets her password.
async fn a_welcome_email_arrives_encrypted(mode: Tls, host: &str, security: &str) {
    let certs = TestCerts::generate();
    let smtp = SmtpServer::builder()
        .credentials("portal", SMTP_PASSWORD)
        .tls(mode, &certs)
        .start()
        .await;
    let mail = tls_mail(&smtp, host, security, &certs.ca_file);
    let f = Fixture::start_with(&demo_yaml(MEMORY, &mail)).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let r = send_welcome(&c, &f, &ada, "u-acme-anna").await;
    let status = r.status();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["transport"], "smtp");

    let m = smtp.message(0).await;
    assert!(m.tls, "the message came over TLS");
    assert_eq!(
        m.auth,
        Some(("portal".to_string(), SMTP_PASSWORD.to_string()))
    );
    assert_eq!(m.to, vec!["anna@acme.test".to_string()]);
    // In clear at most the first EHLO and the STARTTLS; the client greets
    // again once encrypted.
    let commands = smtp.commands();
    let clear: Vec<&str> = commands
        .iter()
        .filter(|(_, tls)| !tls)
        .map(|(verb, _)| verb.as_str())
        .collect();
    match mode {
        Tls::Starttls => assert_eq!(clear, ["EHLO", "STARTTLS"], "{commands:?}"),
        _ => assert!(clear.is_empty(), "{commands:?}"),
    }
    assert_eq!(commands.iter().find(|(_, tls)| *tls).unwrap().0, "EHLO");

    let r = choose_password(&c, &f, &link_in(&m), NEW_PW).await;
    assert_eq!(r.status(), 303);
    login(&c, &f.url(""), "anna@acme.test", NEW_PW).await;
    assert_eq!(emails(&f, "smtp", "sent").await, 1.0);
}

#[tokio::test]
async fn a_welcome_email_goes_over_starttls_to_a_server_the_configured_ca_signed() {
    // By name: the certificate is checked for the DNS name `localhost`.
    a_welcome_email_arrives_encrypted(Tls::Starttls, "localhost", "starttls").await;
}

#[tokio::test]
async fn a_welcome_email_goes_over_implicit_tls_to_a_server_the_configured_ca_signed() {
    // By address: the certificate is checked for the IP address.
    a_welcome_email_arrives_encrypted(Tls::Implicit, "127.0.0.1", "tls").await;
}

#[tokio::test]
async fn a_server_with_a_certificate_of_another_ca_gets_nothing_and_the_admin_is_told_why() {
    let trusted = TestCerts::generate();
    // Another CA of the same name (as a regenerated development CA would
    // be), and a certificate that names an issuer nobody trusts.
    let (other_ca, self_signed) = (TestCerts::generate(), TestCerts::self_signed());
    for (mode, security, certs, rustls_says) in [
        (Tls::Starttls, "starttls", &other_ca, "BadSignature"),
        (Tls::Implicit, "tls", &self_signed, "UnknownIssuer"),
        (Tls::Starttls, "starttls", &self_signed, "UnknownIssuer"),
        (Tls::Implicit, "tls", &other_ca, "BadSignature"),
    ] {
        let smtp = SmtpServer::builder()
            .credentials("portal", SMTP_PASSWORD)
            .tls(mode, certs)
            .start()
            .await;
        let mail = tls_mail(&smtp, "127.0.0.1", security, &trusted.ca_file);
        let f = Fixture::start_with(&demo_yaml(MEMORY, &mail)).await;
        let c = client();
        let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
        let why = format!(
            "no secure connection to the mail server 127.0.0.1:{}, so nothing was sent: its certificate is not signed by a CA in {} (mail.smtp.ca_file)",
            smtp.addr.port(),
            trusted.ca_file.display()
        );

        // The API says why.
        let r = send_welcome(&c, &f, &ada, "u-acme-anna").await;
        assert_eq!(r.status(), 502, "{security}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "mail_not_secured", "{security}: {v}");
        let detail = v["detail"].as_str().unwrap();
        assert!(detail.starts_with(&why), "{security}: {detail}");
        assert!(detail.contains(rustls_says), "{security}: {detail}");

        // So does the admin page's Send Welcome Email button.
        let r = c
            .post(f.url("/_guise/admin/page/users/u-acme-anna/welcome"))
            .header("cookie", &ada.cookie)
            .header("origin", f.url(""))
            .header("accept", "text/html")
            .form(&[("csrf_token", ada.csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502, "{security}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("its certificate is not signed by a CA in")
                && page.contains("smtp-ca.pem"),
            "{security}: {page}"
        );

        assert!(smtp.messages().is_empty(), "{security}: nothing arrived");
        let commands = smtp.commands();
        assert!(
            !commands
                .iter()
                .any(|(verb, _)| SENDING.contains(&verb.as_str())),
            "{security}: neither the password nor the mail was sent: {commands:?}"
        );
        assert_eq!(emails(&f, "smtp", "failed").await, 2.0, "{security}");
    }
}

#[tokio::test]
async fn starttls_to_a_server_that_does_not_offer_it_sends_nothing_in_clear() {
    let certs = TestCerts::generate();
    // A plain server that would take the password and the message.
    let smtp = SmtpServer::with_credentials("portal", SMTP_PASSWORD).await;
    let mail = tls_mail(&smtp, "127.0.0.1", "starttls", &certs.ca_file);
    let f = Fixture::start_with(&demo_yaml(MEMORY, &mail)).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let r = send_welcome(&c, &f, &ada, "u-acme-anna").await;
    assert_eq!(r.status(), 502);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "mail_not_secured", "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("the server does not offer STARTTLS"),
        "{v}"
    );
    assert!(smtp.messages().is_empty());
    let commands = smtp.commands();
    assert!(
        commands
            .iter()
            .all(|(verb, _)| verb == "EHLO" || verb == "QUIT"),
        "the client gave up after EHLO: {commands:?}"
    );
}

#[tokio::test]
async fn a_link_sent_by_one_node_works_once_on_any_node_over_redis() {
    let redis = RedisServer::start();
    let smtp = SmtpServer::start().await;
    let store = format!(
        "sessions:\n  store: redis\n  redis:\n    url: {}\n",
        redis.url()
    );
    let yaml = demo_yaml(&store, &smtp_mail(&smtp, ""));
    let a = Fixture::start_with(&yaml).await;
    let b = Fixture::start_with(&yaml).await;
    let c = client();
    let ada = login(&c, &a.url(""), "admin@demo.test", DEMO_PW).await;
    assert_eq!(
        send_welcome(&c, &a, &ada, "u-acme-anna").await.status(),
        200
    );
    let link = link_in(&smtp.message(0).await);
    let on = |f: &Fixture| link.replace(&a.url(""), &f.url(""));

    // The same filled-in form posted to both nodes at once: one sets the
    // password, the other is told the link was used.
    let mut forms = Vec::new();
    for f in [&a, &b] {
        let (status, page, cookie) = open(&c, &on(f)).await;
        assert_eq!(status, 200);
        forms.push((cookie, field(&page, "csrf_token"), field(&page, "token")));
    }
    let form = |i: usize| {
        let (cookie, csrf, token) = &forms[i];
        Form {
            cookie: cookie.as_deref(),
            csrf,
            token,
            password: NEW_PW,
            again: NEW_PW,
        }
    };
    let (fa, fb) = (form(0), form(1));
    let (ra, rb) = tokio::join!(post_form(&c, &a, &fa), post_form(&c, &b, &fb));
    let mut statuses = [ra.status().as_u16(), rb.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [303, 410], "exactly one use succeeds");

    // Every node follows (the change is announced over the store).
    for f in [&a, &b] {
        eventually(
            Duration::from_secs(10),
            "the new password on every node",
            || async {
                let r = try_login(&c, &f.url(""), "anna@acme.test", NEW_PW).await;
                (r.status() == 200).then_some(())
            },
        )
        .await;
        assert_eq!(
            try_login(&c, &f.url(""), "anna@acme.test", DEMO_PW)
                .await
                .status(),
            401
        );
    }
}
