//! End-to-end in a real browser: Debian's headless Chromium, driven through
//! chromedriver (WebDriver) with fantoccini, signs in through the gateway's
//! login form in front of the demo app, and signs out again.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`scripts/deps.sh
//! test` installs them). Screenshots of the pages are left in
//! `target/screenshots/` for a person to look at.

mod support;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long any one step may take to show up in the browser.
const STEP: Duration = Duration::from_secs(15);

/// A chromedriver on a loopback port, killed when dropped.
struct Driver {
    child: Child,
    addr: SocketAddr,
    _profile: tempfile::TempDir,
    profile_path: PathBuf,
    /// The browser session, for Drop to end if the test did not.
    session: std::sync::Mutex<Option<String>>,
}

impl Driver {
    /// Start chromedriver on a free loopback port and wait until it says
    /// it is ready.
    async fn start() -> Driver {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: run `scripts/deps.sh test` (Debian packages chromium, chromium-driver)"
            );
        }
        let profile = tempfile::tempdir().expect("temp profile dir");
        let profile_path = profile.path().to_path_buf();
        let addr = free_addr();
        // Its own process group, so that Drop can end it and the browsers it
        // started in one go, whatever state a failed test left them in.
        let child = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={}", addr.port()))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            addr,
            _profile: profile,
            profile_path,
            session: Default::default(),
        };
        let status = format!("http://{addr}/status");
        let c = client();
        eventually(Duration::from_secs(20), "chromedriver to be ready", || {
            let (c, status) = (c.clone(), status.clone());
            async move {
                let v: serde_json::Value = c.get(&status).send().await.ok()?.json().await.ok()?;
                (v["value"]["ready"] == true).then_some(())
            }
        })
        .await;
        driver
    }

    /// A new headless Chromium session with a fresh profile.
    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", self.profile_path.display()),
                ],
            }),
        );
        let mut connector = HttpConnector::new();
        connector.enforce_http(true);
        let browser = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://{}", self.addr))
            .await
            .expect("chromium session starts");
        *self.session.lock().unwrap() = browser.session_id().await.ok().flatten();
        browser
            .set_window_size(1280, 900)
            .await
            .expect("window size");
        browser
    }
}

impl Drop for Driver {
    /// End a session a failed test left open (chromedriver then closes and
    /// reaps its Chromium) and ask chromedriver to quit; then make sure: kill
    /// its process group, which holds the Chromium processes it started too.
    fn drop(&mut self) {
        if let Some(id) = self.session.lock().map(|mut s| s.take()).ok().flatten() {
            let _ = raw_request(self.addr, "DELETE", &format!("/session/{id}"));
        }
        let _ = raw_request(self.addr, "GET", "/shutdown");
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bodiless request to chromedriver, sent by hand so it works from `Drop`.
fn raw_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    Ok(())
}

/// The path and query of the page the browser shows.
async fn location(browser: &Client) -> String {
    let url = browser.current_url().await.expect("current url");
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// Wait until the browser shows `path_and_query`.
async fn wait_for_location(browser: &Client, path_and_query: &str) {
    let deadline = Instant::now() + STEP;
    loop {
        let now = location(browser).await;
        if now == path_and_query {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "browser stayed at {now}, expected {path_and_query}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Wait for an element matching `css` and return its visible text.
async fn text_of(browser: &Client, css: &str) -> String {
    let found = browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css(css))
        .await;
    match found {
        Ok(el) => el.text().await.expect("element text"),
        Err(e) => panic!("no {css} on {}: {e}", location(browser).await),
    }
}

/// Fill in the gateway's login form and submit it.
async fn sign_in(browser: &Client, email: &str, password: &str) {
    let username = browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("form input#username"))
        .await
        .expect("login form shows an email field");
    username.clear().await.unwrap();
    username.send_keys(email).await.unwrap();
    let pw = browser.find(Locator::Css("input#password")).await.unwrap();
    pw.clear().await.unwrap();
    pw.send_keys(password).await.unwrap();
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Save a PNG of what the browser shows to `target/screenshots/<name>`.
async fn screenshot(browser: &Client, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(dir.join(name), png).expect("write screenshot");
}

#[tokio::test]
async fn a_person_signs_in_with_the_form_and_lands_on_the_page_they_asked_for() {
    let f = Fixture::start_with(&session_yaml("")).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    // Asking for a page without a session leads to the gateway's login form.
    browser.goto(&f.url("/dashboard")).await.unwrap();
    wait_for_location(&browser, "/login?next=%2Fdashboard").await;
    let heading = text_of(&browser, "main h1").await;
    assert_eq!(heading, "Sign in");
    let next = browser
        .find(Locator::Css("input[name=next]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(next.as_deref(), Some("/dashboard"));
    screenshot(&browser, "login.png").await;

    // A wrong password: the form again, with the reason, still bound for
    // the page asked for.
    sign_in(&browser, "alice@test.example", "not the password").await;
    let alert = text_of(&browser, "main .error[role=alert]").await;
    assert!(
        alert.contains("Wrong email or password"),
        "alert says {alert:?}"
    );
    assert_eq!(location(&browser).await, "/login");
    let next = browser
        .find(Locator::Css("input[name=next]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap();
    assert_eq!(next.as_deref(), Some("/dashboard"));
    screenshot(&browser, "login-error.png").await;

    // The right password: the page asked for, rendered by the app with the
    // identity the gateway vouched for.
    sign_in(&browser, "alice@test.example", PW).await;
    let panel = text_of(&browser, "#guise-identity").await;
    wait_for_location(&browser, "/dashboard").await;
    assert_eq!(text_of(&browser, "main > h1").await, "Dashboard");
    assert!(
        panel
            .to_lowercase()
            .contains("identity received from gateway"),
        "identity panel: {panel:?}"
    );
    let user = browser
        .find(Locator::XPath(
            "//section[@id='guise-identity']//tr[th='x-guise-user']/td",
        ))
        .await
        .expect("an x-guise-user row in the identity panel")
        .text()
        .await
        .unwrap();
    assert_eq!(user, "u-alice");
    screenshot(&browser, "dashboard.png").await;

    // The session cookie is there, but page scripts cannot read it, though
    // they can read the page's other cookies.
    let cookie = browser
        .get_named_cookie("guise_session")
        .await
        .expect("browser holds the session cookie");
    assert_eq!(cookie.http_only(), Some(true));
    let script_sees = browser
        .execute(
            "document.cookie = 'probe=1; path=/'; return document.cookie",
            vec![],
        )
        .await
        .unwrap();
    let script_sees = script_sees.as_str().expect("document.cookie is a string");
    assert!(script_sees.contains("probe=1"), "{script_sees:?}");
    assert!(
        !script_sees.contains("guise_session"),
        "document.cookie = {script_sees:?}"
    );

    // Signing out: a confirmation page, then the login form; the app's pages
    // need a login again.
    browser.goto(&f.url("/_guise/logout")).await.unwrap();
    let button = browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("form[action='/_guise/logout'] button"))
        .await
        .expect("sign-out confirmation");
    assert_eq!(button.text().await.unwrap(), "Sign out");
    let page = text_of(&browser, "main").await;
    assert!(
        page.contains("alice@test.example"),
        "sign-out page: {page:?}"
    );
    screenshot(&browser, "sign-out.png").await;
    button.click().await.unwrap();
    wait_for_location(&browser, "/login").await;
    text_of(&browser, "form input#username").await;
    browser.goto(&f.url("/dashboard")).await.unwrap();
    wait_for_location(&browser, "/login?next=%2Fdashboard").await;
    text_of(&browser, "form input#username").await;

    browser.close().await.expect("browser closes");
    driver.session.lock().unwrap().take();
}

/// A partner user in the demo's own configuration: the companies page
/// shows only the partner's customers, and "Login as me" enters a client
/// account as the paired user.
#[tokio::test]
async fn a_partner_user_sees_their_customers_and_enters_a_client_account() {
    let f = Fixture::start_with(&demo_yaml("sessions:\n  store: memory\n", "")).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    browser.goto(&f.url("/companies")).await.unwrap();
    sign_in(&browser, "anna@acme.test", "demo").await;
    wait_for_location(&browser, "/companies").await;
    text_of(&browser, "tr[data-resource=company]").await;
    let page = browser.source().await.unwrap();
    assert!(page.contains("Wayne Hospitality"), "{page}");
    for other in ["Cyberdyne", "Hooli", "Account 100", "Northwind"] {
        assert!(
            !page.contains(other),
            "{other} shown to Acme's partner user"
        );
    }
    screenshot(&browser, "partner-companies.png").await;

    browser
        .find(Locator::Css("a[href='/_guise/partner']"))
        .await
        .expect("a link to the client accounts")
        .click()
        .await
        .unwrap();
    wait_for_location(&browser, "/_guise/partner").await;
    screenshot(&browser, "partner-accounts.png").await;
    browser
        .find(Locator::Css("li[data-tenant=initech] button"))
        .await
        .expect("Login as me for Initech")
        .click()
        .await
        .unwrap();
    wait_for_location(&browser, "/t/initech/").await;
    let identity = text_of(&browser, "#guise-identity").await;
    assert!(
        identity.contains("u-acme-anna~initech") && identity.contains("x-guise-paired"),
        "{identity}"
    );
    screenshot(&browser, "paired-user.png").await;

    browser.close().await.expect("browser closes");
    driver.session.lock().unwrap().take();
}

/// Tab A and tab B are on the admin page; the admin clicks "Login as
/// Partner User" for Gia in B. A says it was signed out as the admin within
/// two seconds, with no click, then reloads into the right state (the admin
/// page is no longer Ada's to see); B shows Gia's view with the banner. `a`
/// and `b` may be two gateway nodes over one Redis (the browser keeps one
/// cookie per host, whatever the port).
async fn two_tabs(a: &Fixture, b: &Fixture, shots: &str) {
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(&a.url("/_guise/admin")).await.unwrap();
    sign_in(&browser, "admin@demo.test", "demo").await;
    wait_for_location(&browser, "/_guise/admin").await;
    assert_eq!(text_of(&browser, "main h1").await, "Administration");
    let tab_a = browser.window().await.unwrap();

    let tab_b = browser.new_window(true).await.unwrap().handle;
    browser.switch_to_window(tab_b.clone()).await.unwrap();
    browser.goto(&b.url("/_guise/admin")).await.unwrap();
    assert_eq!(text_of(&browser, "main h1").await, "Administration");
    let button = browser
        .find(Locator::Css("[data-login-as='u-globex-gia']"))
        .await
        .expect("Login as Partner User for Gia");
    button.click().await.unwrap();
    // The form's answer sends B to the app's front page, as Gia.
    wait_for_location(&browser, "/").await;
    let started = Instant::now();

    browser.switch_to_window(tab_a.clone()).await.unwrap();
    let notice = loop {
        if let Ok(el) = browser.find(Locator::Css("[data-guise-notice]")).await {
            if let Ok(Some(text)) = el.attr("data-guise-notice").await {
                break text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "tab A showed no sign-out notice within two seconds"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        notice.contains("signed out as Ada Admin") && notice.contains("Gia Globex"),
        "{notice}"
    );
    screenshot(&browser, &format!("{shots}-tab-a-notice.png")).await;
    // Then A reloads: the admin page is not Gia's to see.
    let deadline = Instant::now() + STEP;
    while browser
        .find(Locator::Css("[data-guise-notice]"))
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "tab A did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = browser.source().await.unwrap();
    assert!(
        !page.contains("Administration"),
        "the admin page, still as Ada"
    );

    browser.switch_to_window(tab_b).await.unwrap();
    browser.goto(&b.url("/companies")).await.unwrap();
    let banner = browser
        .wait()
        .at_most(STEP)
        .for_element(Locator::Css("[data-guise-banner]"))
        .await
        .expect("tab B shows the banner");
    assert!(banner.is_displayed().await.unwrap());
    let identity = text_of(&browser, "#guise-identity").await;
    assert!(
        identity.contains("u-globex-gia") && identity.contains("x-guise-impersonator"),
        "{identity}"
    );
    assert!(!browser
        .source()
        .await
        .unwrap()
        .contains("Wayne Hospitality"));
    screenshot(&browser, &format!("{shots}-tab-b-partner-view.png")).await;

    browser.close().await.expect("browser closes");
    driver.session.lock().unwrap().take();
}

#[tokio::test]
async fn starting_an_impersonation_signs_the_admins_other_tab_out_at_once() {
    let f = Fixture::start_with(&demo_yaml("sessions:\n  store: memory\n", "")).await;
    two_tabs(&f, &f, "impersonation").await;
}

#[tokio::test]
async fn the_other_tab_is_told_through_redis_when_it_is_served_by_another_node() {
    let redis = redis::RedisServer::start();
    let store = format!(
        "sessions:\n  store: redis\n  redis:\n    url: {}\n",
        redis.url()
    );
    let yaml = demo_yaml(&store, "");
    let a = Fixture::start_with(&yaml).await;
    let b = Fixture::start_with(&yaml).await;
    two_tabs(&a, &b, "impersonation-two-nodes").await;
}

/// The admin page in the demo's own configuration: Ada signs in, is brought
/// back to the page, and "Login as Partner User" for Gia shows her the app
/// as Gia. The page runs no script, so this is its forms as a browser
/// posts them.
#[tokio::test]
async fn an_admin_logs_in_as_a_partner_user_from_the_admin_page() {
    let f = Fixture::start_with(&demo_yaml("sessions:\n  store: memory\n", "")).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    // Without a session, the page sends the browser to log in and back.
    browser.goto(&f.url("/_guise/admin")).await.unwrap();
    wait_for_location(&browser, "/login?next=%2F_guise%2Fadmin").await;
    sign_in(&browser, "admin@demo.test", "demo").await;
    wait_for_location(&browser, "/_guise/admin").await;
    assert_eq!(text_of(&browser, "main h1").await, "Administration");
    let partners = text_of(&browser, "section#partners").await;
    for shown in ["Acme Partners", "Globex Channel", "Gia Globex", "Vera Acme"] {
        assert!(partners.contains(shown), "{shown} in {partners:?}");
    }
    // Vera holds no Full licence: her button is there, disabled, saying why.
    let vera = browser
        .find(Locator::Css("button[data-login-as='u-acme-vera']"))
        .await
        .expect("Vera's button");
    assert_eq!(
        vera.attr("disabled").await.unwrap().as_deref(),
        Some("true")
    );
    let why = vera.attr("title").await.unwrap().unwrap_or_default();
    assert!(why.contains("Full licence"), "{why:?}");
    // The whole page in one picture: a window as tall as the page.
    let height = browser
        .execute("return document.documentElement.scrollHeight", vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(900);
    browser
        .set_window_size(1280, u32::try_from(height).unwrap_or(900) + 200)
        .await
        .unwrap();
    screenshot(&browser, "admin-page.png").await;
    browser.set_window_size(1280, 900).await.unwrap();

    browser
        .find(Locator::Css("button[data-login-as='u-globex-gia']"))
        .await
        .expect("Login as Partner User for Gia")
        .click()
        .await
        .unwrap();
    wait_for_location(&browser, "/").await;
    let identity = text_of(&browser, "#guise-identity").await;
    assert!(identity.contains("u-globex-gia"), "{identity}");
    screenshot(&browser, "admin-as-gia.png").await;

    // The gateway says so too: Gia, with Ada as the impersonator.
    browser.goto(&f.url("/_guise/session")).await.unwrap();
    let body = text_of(&browser, "body").await;
    let me: serde_json::Value = serde_json::from_str(&body).expect("/_guise/session is JSON");
    assert_eq!(me["user"]["id"], "u-globex-gia", "{me}");
    assert_eq!(me["impersonator"]["id"], "u-admin", "{me}");

    browser.close().await.expect("browser closes");
    driver.session.lock().unwrap().take();
}

/// Account 100's C360 page in a real browser: BU1 sees the Product A
/// relationship and its CTA, not Spark's; the page still renders whole.
#[tokio::test]
async fn a_bu1_user_sees_only_product_a_on_account_100() {
    let f = Fixture::start_with(&demo_yaml("sessions:\n  store: memory\n", "")).await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;

    browser.goto(&f.url("/companies/co-100")).await.unwrap();
    sign_in(&browser, "bu1@demo.test", "demo").await;
    wait_for_location(&browser, "/companies/co-100").await;
    text_of(&browser, "tr[data-resource=relationship]").await;
    let rows = browser
        .find_all(Locator::Css("tr[data-resource=relationship]"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "one relationship row");
    let page = browser.source().await.unwrap();
    assert!(page.contains("Account 100 - Product A"), "{page}");
    assert!(!page.contains("Account 100 - Spark"), "Spark shown to BU1");
    assert!(
        !page.contains("Spark onboarding kickoff"),
        "a Spark CTA shown to BU1"
    );
    assert!(
        page.contains("Account 100 executive business review"),
        "the company-level CTA"
    );
    screenshot(&browser, "permissions-bu1-account-100.png").await;

    browser.close().await.expect("browser closes");
    driver.session.lock().unwrap().take();
}
