//! End-to-end: the admin page `GET /_guise/admin` through a gateway running
//! the demo's configuration in front of the demo app. Who sees the page and
//! which buttons, and that each button's form, posted as a browser posts it
//! (with the token read off the page), does what it says: Login as Partner
//! User, Access portal account, grant and revoke can_impersonate, Send
//! Welcome Email, End. Forms without the token, or from another site, are
//! refused and change nothing.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::login::*;
use support::*;

const MEMORY: &str = "sessions:\n  store: memory\n";
/// The demo's own mail section (an outbox relative to the working
/// directory), replaced where a test sends mail.
const DEMO_MAIL: &str =
    "mail:\n  from: \"guise demo <guise@demo.test>\"\n  outbox: guise-demo-outbox\n";

async fn demo() -> Fixture {
    Fixture::start_with(&demo_yaml(MEMORY, "")).await
}

/// `GET /_guise/admin` as a browser, signed in as `who` (or not at all).
async fn open(c: &reqwest::Client, f: &Fixture, who: Option<&Signed>) -> reqwest::Response {
    open_at(c, f, who, "/_guise/admin").await
}

async fn open_at(
    c: &reqwest::Client,
    f: &Fixture,
    who: Option<&Signed>,
    path: &str,
) -> reqwest::Response {
    let mut req = c
        .get(f.url(path))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8");
    if let Some(who) = who {
        req = req.header("cookie", &who.cookie);
    }
    req.send().await.unwrap()
}

/// The page's HTML; panics unless it is served.
async fn page(c: &reqwest::Client, f: &Fixture, who: &Signed) -> String {
    let r = open(c, f, Some(who)).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    r.text().await.unwrap()
}

/// The CSRF token the page's forms carry.
fn token_in(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("a form with the CSRF token") + marker.len();
    html[start..].split('"').next().unwrap().to_string()
}

/// The opening tag of the element carrying `attr="value"`.
fn tag<'a>(html: &'a str, attr: &str, value: &str) -> Option<&'a str> {
    let at = html.find(&format!("{attr}=\"{value}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    Some(&html[start..=end])
}

/// A usable button (not disabled) carrying `attr="value"`.
fn enabled(html: &str, attr: &str, value: &str) -> bool {
    tag(html, attr, value).is_some_and(|t| !t.contains("disabled"))
}

/// Post `fields` to `path` as a browser posts a form of this site.
async fn post_form(
    c: &reqwest::Client,
    f: &Fixture,
    who: &Signed,
    path: &str,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    c.post(f.url(path))
        .header("cookie", &who.cookie)
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .header("origin", f.url(""))
        .form(fields)
        .send()
        .await
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .expect("a Location header")
        .to_str()
        .unwrap()
        .to_string()
}

/// Who a cookie signs in as, by `/_guise/session`: status and body.
async fn whoami(c: &reqwest::Client, f: &Fixture, cookie: &str) -> (u16, Value) {
    let r = c
        .get(f.url("/_guise/session"))
        .header("cookie", cookie)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The user `id` as the admin API shows it to `who`.
async fn api_user(c: &reqwest::Client, f: &Fixture, who: &Signed, id: &str) -> Value {
    get(c, &f.url(""), who, &format!("/_guise/admin/users/{id}"))
        .await
        .json::<Value>()
        .await
        .unwrap()["user"]
        .clone()
}

#[tokio::test]
async fn the_page_lists_partners_and_their_users_with_the_buttons_each_viewer_may_use() {
    let f = demo().await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let r = open(&c, &f, Some(&ada)).await;
    assert_eq!(r.status(), 200);
    // A page of the gateway's own: not framed, not cached, no script.
    assert_eq!(
        r.headers()["content-security-policy"],
        "frame-ancestors 'none'"
    );
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    // The page's forms need no script; the only one is the tab script
    // every page rendered as a signed-in user carries (it tells this tab
    // when the admin is signed out elsewhere).
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(html.contains("<script src=\"/_guise/tab.js\""), "{html}");
    for id in ["partners", "users", "impersonations", "audit"] {
        assert!(html.contains(&format!("<section id=\"{id}\"")), "{id}");
    }
    assert!(html.contains("Acme Partners") && html.contains("Globex Channel"));
    assert!(tag(&html, "data-partner", "p-acme").is_some());

    // Ada holds can_impersonate: Login as Partner User for every partner
    // user with a Full licence; Vera (Viewer) has the button disabled, with
    // the reason as its tooltip.
    for id in ["u-acme-anna", "u-acme-arlo", "u-globex-gia"] {
        assert!(enabled(&html, "data-login-as", id), "{id}");
        assert!(enabled(&html, "data-welcome", id), "{id}");
    }
    let vera = tag(&html, "data-login-as", "u-acme-vera").expect("Vera is listed");
    assert!(
        vera.contains("disabled") && vera.contains("Full licence"),
        "{vera}"
    );
    // Only partner users are offered; admins and internal staff are not.
    for id in ["u-admin", "u-super", "u-bu1"] {
        assert!(tag(&html, "data-login-as", id).is_none(), "{id}");
    }
    assert!(enabled(&html, "data-access-portal", "p-acme"));
    assert!(enabled(&html, "data-access-portal", "p-globex"));
    // Every user is listed with roles; granting is for super admins here.
    assert!(tag(&html, "data-user", "u-bu2").is_some());
    assert!(html.contains("<span class=\"badge\">super_admin</span>"));
    assert!(!html.contains("data-grant=\"") && !html.contains("data-revoke=\""));
    // Nobody is impersonating yet.
    assert!(!html.contains("data-end=\""));
    assert!(html.contains("href=\"/_guise/admin/audit\""));

    // Sam, a super admin without can_impersonate: no impersonation
    // buttons, and the page says why; grant and revoke for every user.
    let sam = login(&c, &f.url(""), "super@demo.test", DEMO_PW).await;
    let html = page(&c, &f, &sam).await;
    assert!(!html.contains("data-login-as=") && !html.contains("data-access-portal="));
    assert!(html.contains("do not hold can_impersonate"), "{html}");
    assert!(enabled(&html, "data-grant", "u-bu1"));
    assert!(enabled(&html, "data-revoke", "u-admin"));
    assert!(enabled(&html, "data-welcome", "u-globex-gia"));
}

#[tokio::test]
async fn an_anonymous_browser_is_sent_to_the_login_page_and_an_api_client_told_401() {
    let f = demo().await;
    let c = client();
    let r = open(&c, &f, None).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/login?next=%2F_guise%2Fadmin");
    let r = c
        .get(f.url("/_guise/admin"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "login_required");
    // The actions too.
    let r = c
        .post(f.url("/_guise/admin/page/users/u-bu1/can-impersonate"))
        .header("accept", "application/json")
        .form(&[("value", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn partner_users_staff_and_impersonating_admins_are_refused() {
    let f = demo().await;
    let c = client();
    let base = f.url("");
    for email in ["anna@acme.test", "bu1@demo.test"] {
        let who = login(&c, &base, email, DEMO_PW).await;
        let r = open(&c, &f, Some(&who)).await;
        assert_eq!(r.status(), 403, "{email}");
        let html = r.text().await.unwrap();
        assert!(html.contains("is not one"), "{email}: {html}");
        assert!(!html.contains("data-login-as"));
    }
    // Ada while viewing the app as Gia is Gia: no admin page.
    let ada = login(&c, &base, "admin@demo.test", DEMO_PW).await;
    let r = c
        .post(f.url("/_guise/impersonate"))
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .json(&json!({"user": "u-globex-gia"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (gia, _) = cookie_from(&r, "guise_session").unwrap();
    let r = c
        .get(f.url("/_guise/admin"))
        .header("cookie", &gia)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "forbidden", "{v}");
}

#[tokio::test]
async fn login_as_partner_user_from_the_page_starts_the_impersonation_and_returns_to_the_page() {
    let f = demo().await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let html = page(&c, &f, &ada).await;
    let token = token_in(&html);
    assert_eq!(token, ada.csrf);

    let r = post_form(
        &c,
        &f,
        &ada,
        "/_guise/impersonate",
        &[
            ("csrf_token", &token),
            ("user", "u-globex-gia"),
            ("return_to", "/_guise/admin"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/");
    let (gia, _) = cookie_from(&r, "guise_session").expect("a new session cookie");
    let (status, me) = whoami(&c, &f, &gia).await;
    assert_eq!(status, 200);
    assert_eq!(me["user"]["id"], "u-globex-gia");
    assert_eq!(me["impersonator"]["id"], "u-admin");
    assert_eq!(
        whoami(&c, &f, &ada.cookie).await.0,
        401,
        "Ada's session ended"
    );

    // Return to admin: back on the page the form named.
    let r = c
        .post(f.url("/_guise/impersonate/stop"))
        .header("cookie", &gia)
        .header("accept", "text/html")
        .header("origin", f.url(""))
        .form(&[("csrf_token", me["csrf_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/_guise/admin");
    let (back, _) = cookie_from(&r, "guise_session").unwrap();
    let r = c
        .get(f.url("/_guise/admin"))
        .header("cookie", &back)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The start and the stop show in the audit tail once written.
    let back_signed = Signed {
        cookie: back.clone(),
        csrf: String::new(),
        session: String::new(),
        set_cookie: String::new(),
    };
    eventually(Duration::from_secs(10), "the audit tail", || async {
        let html = page(&c, &f, &back_signed).await;
        (html.contains("data-audit-event=\"start\"") && html.contains("data-audit-event=\"stop\""))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn access_portal_account_enters_as_the_partners_primary_user() {
    let f = demo().await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let token = token_in(&page(&c, &f, &ada).await);
    let r = post_form(
        &c,
        &f,
        &ada,
        "/_guise/impersonate",
        &[
            ("csrf_token", &token),
            ("partner", "p-acme"),
            ("return_to", "/_guise/admin"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let (anna, _) = cookie_from(&r, "guise_session").unwrap();
    assert_eq!(whoami(&c, &f, &anna).await.1["user"]["id"], "u-acme-anna");
}

#[tokio::test]
async fn reason_and_terms_show_on_the_page_when_configured_and_the_form_carries_them() {
    let yaml = demo_yaml(MEMORY, "").replace(
        "  max_minutes: 60\n",
        "  max_minutes: 60\n  require_reason: true\n  require_terms_ack: true\n  terms: \"We view partner accounts to support them.\"\n",
    );
    assert!(yaml.contains("require_reason"), "demo.yaml changed shape");
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let html = page(&c, &f, &ada).await;
    assert!(html.contains("We view partner accounts to support them."));
    assert!(html.contains("name=\"reason\" required"));
    assert!(html.contains("name=\"accept_terms\" value=\"1\" required"));
    let token = token_in(&html);

    // Without ticking the box: refused, and nothing changes.
    let r = post_form(
        &c,
        &f,
        &ada,
        "/_guise/impersonate",
        &[
            ("csrf_token", &token),
            ("user", "u-globex-gia"),
            ("reason", "ticket 12"),
        ],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("acknowledge the terms"));

    let r = post_form(
        &c,
        &f,
        &ada,
        "/_guise/impersonate",
        &[
            ("csrf_token", &token),
            ("user", "u-globex-gia"),
            ("return_to", "/_guise/admin"),
            ("reason", "ticket 12"),
            ("accept_terms", "1"),
        ],
    )
    .await;
    assert_eq!(r.status(), 303);
    let (gia, _) = cookie_from(&r, "guise_session").unwrap();
    let (_, me) = whoami(&c, &f, &gia).await;
    assert_eq!(me["impersonator"]["id"], "u-admin");

    // Back as herself, Ada has accepted these terms: no box any more, but
    // the reason is still asked for each time.
    let r = c
        .post(f.url("/_guise/impersonate/stop"))
        .header("cookie", &gia)
        .header("x-csrf-token", me["csrf_token"].as_str().unwrap())
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let (back, _) = cookie_from(&r, "guise_session").unwrap();
    let html = open(
        &c,
        &f,
        Some(&Signed {
            cookie: back,
            csrf: String::new(),
            session: String::new(),
            set_cookie: String::new(),
        }),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(!html.contains("accept_terms"), "{html}");
    assert!(html.contains("name=\"reason\" required"));
}

#[tokio::test]
async fn a_super_admin_grants_and_revokes_can_impersonate_from_the_page() {
    let f = demo().await;
    let c = client();
    let sam = login(&c, &f.url(""), "super@demo.test", DEMO_PW).await;
    let token = token_in(&page(&c, &f, &sam).await);
    let path = "/_guise/admin/page/users/u-bu1/can-impersonate";

    let r = post_form(
        &c,
        &f,
        &sam,
        path,
        &[("csrf_token", &token), ("value", "1")],
    )
    .await;
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert_eq!(to, "/_guise/admin?done=granted&user=u-bu1#users");
    assert_eq!(
        api_user(&c, &f, &sam, "u-bu1").await["can_impersonate"],
        true
    );
    let html = open_at(&c, &f, Some(&sam), to.split('#').next().unwrap())
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Bea One may now impersonate partner users."),
        "{html}"
    );
    assert!(enabled(&html, "data-revoke", "u-bu1"));

    let r = post_form(
        &c,
        &f,
        &sam,
        path,
        &[("csrf_token", &token), ("value", "0")],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        api_user(&c, &f, &sam, "u-bu1").await["can_impersonate"],
        false
    );

    // Not a value the form sends: refused, with a way back to the page.
    let r = post_form(
        &c,
        &f,
        &sam,
        path,
        &[("csrf_token", &token), ("value", "yes")],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Back to the admin page"));
    // An unknown user or action.
    let r = post_form(
        &c,
        &f,
        &sam,
        "/_guise/admin/page/users/u-nobody/can-impersonate",
        &[("csrf_token", &token), ("value", "1")],
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = post_form(
        &c,
        &f,
        &sam,
        "/_guise/admin/page/users/u-bu1/delete",
        &[("csrf_token", &token)],
    )
    .await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_plain_admin_may_grant_only_when_the_configuration_allows_it() {
    // The demo leaves granting to super admins.
    let f = demo().await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let token = token_in(&page(&c, &f, &ada).await);
    let path = "/_guise/admin/page/users/u-bu1/can-impersonate";
    let r = post_form(
        &c,
        &f,
        &ada,
        path,
        &[("csrf_token", &token), ("value", "1")],
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("only a super admin"));
    assert_eq!(
        api_user(&c, &f, &ada, "u-bu1").await["can_impersonate"],
        false
    );
    drop(f);

    let f = Fixture::start_with(&demo_yaml(
        MEMORY,
        "admin:\n  admins_may_grant_impersonation: true\n",
    ))
    .await;
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let html = page(&c, &f, &ada).await;
    assert!(enabled(&html, "data-grant", "u-bu1"));
    // Admin accounts stay a super admin's to change.
    let sam = tag(&html, "data-grant", "u-super").expect("shown, disabled");
    assert!(sam.contains("disabled"), "{sam}");
    let token = token_in(&html);
    let r = post_form(
        &c,
        &f,
        &ada,
        path,
        &[("csrf_token", &token), ("value", "1")],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        api_user(&c, &f, &ada, "u-bu1").await["can_impersonate"],
        true
    );
    let r = post_form(
        &c,
        &f,
        &ada,
        "/_guise/admin/page/users/u-super/can-impersonate",
        &[("csrf_token", &token), ("value", "1")],
    )
    .await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn the_end_button_ends_an_impersonation_in_progress() {
    let f = demo().await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let r = c
        .post(f.url("/_guise/impersonate"))
        .header("cookie", &ada.cookie)
        .header("x-csrf-token", &ada.csrf)
        .json(&json!({"user": "u-globex-gia", "reason": "ticket <4711>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (gia, _) = cookie_from(&r, "guise_session").unwrap();
    let reference = whoami(&c, &f, &gia).await.1["session"]
        .as_str()
        .unwrap()
        .to_string();

    let sam = login(&c, &f.url(""), "super@demo.test", DEMO_PW).await;
    let html = page(&c, &f, &sam).await;
    assert!(enabled(&html, "data-end", &reference), "{html}");
    let row = &html[html.find("data-impersonation=").unwrap()..];
    assert!(row.contains("Ada Admin") && row.contains("Gia Globex"));
    assert!(row.contains("ticket &lt;4711&gt;"), "the reason, escaped");
    assert!(row.contains(" UTC</time>"));

    let r = post_form(
        &c,
        &f,
        &sam,
        &format!("/_guise/admin/impersonations/{reference}/end"),
        &[("csrf_token", &token_in(&html))],
    )
    .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/_guise/admin?done=ended#impersonations");
    assert_eq!(whoami(&c, &f, &gia).await.0, 401, "Gia's view is over");
    let html = open_at(&c, &f, Some(&sam), "/_guise/admin?done=ended")
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("data-end=\""));
    assert!(html.contains("The impersonation was ended"));
}

#[tokio::test]
async fn send_welcome_email_from_the_page_writes_the_message() {
    let yaml = demo_yaml(MEMORY, "").replace(
        DEMO_MAIL,
        "mail:\n  from: portal@gw.test\n  outbox: {DIR}/outbox\n",
    );
    assert!(
        yaml.contains("{DIR}/outbox"),
        "demo.yaml's mail section changed"
    );
    let f = Fixture::start_with(&yaml).await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let token = token_in(&page(&c, &f, &ada).await);
    let r = post_form(
        &c,
        &f,
        &ada,
        "/_guise/admin/page/users/u-globex-gia/welcome",
        &[("csrf_token", &token)],
    )
    .await;
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert_eq!(to, "/_guise/admin?done=welcome&user=u-globex-gia#partners");
    let files: Vec<_> = std::fs::read_dir(f.dir.path().join("outbox"))
        .expect("the outbox exists")
        .collect();
    assert_eq!(files.len(), 1);
    let eml = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    assert!(eml.contains("gia@globex.test"), "{eml}");
    let html = open_at(&c, &f, Some(&ada), to.split('#').next().unwrap())
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Welcome email sent to Gia Globex &lt;gia@globex.test&gt;."));
}

#[tokio::test]
async fn forms_without_the_token_or_from_another_site_are_refused_and_change_nothing() {
    let f = demo().await;
    let c = client();
    let ada = login(&c, &f.url(""), "admin@demo.test", DEMO_PW).await;
    let sam = login(&c, &f.url(""), "super@demo.test", DEMO_PW).await;
    let grant = "/_guise/admin/page/users/u-bu1/can-impersonate";
    let welcome = "/_guise/admin/page/users/u-globex-gia/welcome";
    for (who, path, fields) in [
        (&sam, grant, vec![("value", "1")]),
        (
            &sam,
            grant,
            vec![("value", "1"), ("csrf_token", "not-the-token")],
        ),
        (&ada, welcome, vec![]),
        (&ada, "/_guise/impersonate", vec![("user", "u-globex-gia")]),
    ] {
        let r = post_form(&c, &f, who, path, &fields).await;
        assert_eq!(r.status(), 403, "{path} {fields:?}");
        assert!(r.text().await.unwrap().contains("CSRF"), "{path}");
    }
    // The right token from another site.
    let r = c
        .post(f.url(grant))
        .header("cookie", &sam.cookie)
        .header("accept", "application/json")
        .header("origin", "https://evil.test")
        .form(&[("csrf_token", sam.csrf.as_str()), ("value", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "csrf");
    let r = c
        .post(f.url(grant))
        .header("cookie", &sam.cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf_token", sam.csrf.as_str()), ("value", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    assert_eq!(
        api_user(&c, &f, &sam, "u-bu1").await["can_impersonate"],
        false
    );
    assert_eq!(
        whoami(&c, &f, &ada.cookie).await.0,
        200,
        "Ada is still herself"
    );
    assert!(!f.dir.path().join("guise-demo-outbox").exists());
}
