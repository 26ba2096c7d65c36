use super::*;
use crate::audit::{AuditEvent, AuditRecord};
use crate::impersonation::State;
use crate::store::SessionKey;
use crate::users::{Role, UserStatus};

fn user(id: &str, name: &str) -> User {
    User::new(id, name, format!("{id}@x.test"))
}

/// The demo's people, in miniature.
fn people() -> Vec<Arc<User>> {
    let mut sam = user("u-super", "Sam Super");
    sam.roles = vec![Role::SuperAdmin];
    let mut ada = user("u-admin", "Ada Admin");
    ada.roles = vec![Role::Admin];
    ada.can_impersonate = true;
    let bea = user("u-bu1", "Bea One");
    let mut anna = user("u-acme-anna", "Anna Acme");
    anna.partner = Some("p-acme".into());
    let mut vera = user("u-acme-vera", "Vera Acme");
    vera.partner = Some("p-acme".into());
    vera.licence = Licence::Viewer;
    let mut otto = user("u-acme-otto", "Otto Acme");
    otto.partner = Some("p-acme".into());
    otto.status = UserStatus::Disabled;
    let mut gia = user("u-globex-gia", "Gia Globex");
    gia.partner = Some("p-globex".into());
    let mut v: Vec<Arc<User>> = [sam, ada, bea, anna, vera, otto, gia]
        .into_iter()
        .map(Arc::new)
        .collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    v
}

fn partner(id: &str, name: &str, primary: Option<&str>) -> Arc<Partner> {
    Arc::new(Partner {
        id: id.into(),
        name: name.into(),
        status: PartnerStatus::Active,
        companies: Default::default(),
        relationships: Default::default(),
        reports: Default::default(),
        primary_user: primary.map(str::to_string),
    })
}

fn partners() -> Vec<Arc<Partner>> {
    vec![
        partner("p-acme", "Acme Partners", Some("u-acme-anna")),
        partner("p-globex", "Globex Channel", None),
    ]
}

fn settings() -> Settings {
    Settings {
        enabled: true,
        ..Settings::default()
    }
}

const CLOSED: AdminPolicy = AdminPolicy {
    admins_may_grant_impersonation: false,
};
const OPEN: AdminPolicy = AdminPolicy {
    admins_may_grant_impersonation: true,
};

/// Everything the page needs besides the viewer, settings and policy.
struct World {
    users: Vec<Arc<User>>,
    partners: Vec<Arc<Partner>>,
    in_progress: Vec<InProgress>,
    audit: AuditPage,
}

impl World {
    fn new() -> World {
        World {
            users: people(),
            partners: partners(),
            in_progress: Vec::new(),
            audit: AuditPage::default(),
        }
    }

    fn user(&self, id: &str) -> &User {
        self.users.iter().find(|u| u.id == id).expect("known user")
    }

    fn page(&self, viewer: &str, settings: &Settings, policy: &AdminPolicy, query: &str) -> String {
        render(&Model::build(&Facts {
            viewer: self.user(viewer),
            csrf_token: "tok-123",
            settings,
            admin_policy: policy,
            full_seats: Some(20),
            welcome_unavailable: None,
            users: &self.users,
            partners: &self.partners,
            terms_acknowledged: false,
            in_progress: Ok(&self.in_progress),
            audit: Ok(&self.audit),
            flash: Flash::parse(query),
            permission_resources: Vec::new(),
            explain: None,
        }))
    }
}

/// The opening tag of the element carrying `attr="value"`.
fn tag<'a>(html: &'a str, attr: &str, value: &str) -> Option<&'a str> {
    let at = html.find(&format!("{attr}=\"{value}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    Some(&html[start..=end])
}

#[test]
fn an_impersonating_admin_gets_login_as_for_full_licence_partner_users_and_disabled_buttons_with_the_reason_for_the_rest(
) {
    let w = World::new();
    let html = w.page("u-admin", &settings(), &CLOSED, "");
    let gia = tag(&html, "data-login-as", "u-globex-gia").expect("a button for Gia");
    assert!(!gia.contains("disabled"), "{gia}");
    assert!(gia.contains("type=\"submit\""), "{gia}");
    let vera = tag(&html, "data-login-as", "u-acme-vera").expect("a button for Vera");
    assert!(vera.contains("disabled"), "{vera}");
    assert!(
        vera.contains("Full licence"),
        "the reason is the tooltip: {vera}"
    );
    let otto = tag(&html, "data-login-as", "u-acme-otto").expect("a button for Otto");
    assert!(
        otto.contains("disabled") && otto.contains("disabled"),
        "{otto}"
    );
    assert!(otto.contains("their account is disabled"), "{otto}");
    // Only partner users are listed under partners.
    assert!(tag(&html, "data-login-as", "u-bu1").is_none());
    assert!(tag(&html, "data-login-as", "u-admin").is_none());
    // Access portal account: Acme's primary user; Globex has none.
    let acme = tag(&html, "data-access-portal", "p-acme").unwrap();
    assert!(!acme.contains("disabled"), "{acme}");
    let globex = tag(&html, "data-access-portal", "p-globex").unwrap();
    assert!(
        globex.contains("disabled") && globex.contains("no primary user"),
        "{globex}"
    );
    // Every start form carries the token and comes back to the page.
    assert!(html.contains("name=\"csrf_token\" value=\"tok-123\""));
    assert!(html.contains("name=\"return_to\" value=\"/_guise/admin\""));
    assert!(html.contains("name=\"user\" value=\"u-globex-gia\""));
    assert!(html.contains("name=\"partner\" value=\"p-acme\""));
    // Neither a reason nor terms are asked for unless configured.
    assert!(!html.contains("name=\"reason\""));
    assert!(!html.contains("accept_terms"));
    // Welcome emails for every partner user; a disabled one's is off.
    assert!(!tag(&html, "data-welcome", "u-acme-anna")
        .unwrap()
        .contains("disabled"));
    assert!(tag(&html, "data-welcome", "u-acme-otto")
        .unwrap()
        .contains("disabled"));
    // Ada holds can_impersonate, but granting is for super admins here.
    assert!(!html.contains("data-grant=") && !html.contains("data-revoke="));
    assert!(html.contains("data-grant-unavailable"));
    // Seats: the Full holders (paired and viewer users excepted).
    assert!(html.contains("Full licences in use: 6 of 20"), "{html}");
}

#[test]
fn login_as_is_hidden_from_admins_without_can_impersonate_and_when_impersonation_is_off() {
    let w = World::new();
    let html = w.page("u-super", &settings(), &CLOSED, "");
    assert!(!html.contains("data-login-as") && !html.contains("data-access-portal"));
    assert!(html.contains("do not hold can_impersonate"), "{html}");
    let html = w.page("u-admin", &Settings::default(), &CLOSED, "");
    assert!(!html.contains("data-login-as") && !html.contains("data-access-portal"));
    assert!(html.contains("impersonation is turned off"), "{html}");
}

#[test]
fn a_super_admin_grants_and_revokes_and_an_admin_only_when_configured_and_never_on_admin_accounts()
{
    let w = World::new();
    let html = w.page("u-super", &settings(), &CLOSED, "");
    let grant = tag(&html, "data-grant", "u-bu1").expect("grant for Bea");
    assert!(!grant.contains("disabled"), "{grant}");
    let revoke = tag(&html, "data-revoke", "u-admin").expect("revoke for Ada");
    assert!(!revoke.contains("disabled"), "{revoke}");
    assert!(html.contains("action=\"/_guise/admin/page/users/u-bu1/can-impersonate\""));
    assert!(html.contains("name=\"value\" value=\"1\""));
    assert!(html.contains("name=\"value\" value=\"0\""));

    let html = w.page("u-admin", &settings(), &OPEN, "");
    assert!(!tag(&html, "data-grant", "u-bu1")
        .unwrap()
        .contains("disabled"));
    let sam = tag(&html, "data-grant", "u-super").expect("shown for Sam, off");
    assert!(
        sam.contains("disabled") && sam.contains("only a super admin"),
        "{sam}"
    );
}

#[test]
fn reason_and_terms_are_asked_for_when_configured_until_the_terms_are_accepted() {
    let w = World::new();
    let s = Settings {
        require_reason: true,
        terms: Some("We may view <partner> accounts.".into()),
        ..settings()
    };
    let html = w.page("u-admin", &s, &CLOSED, "");
    assert!(html.contains("name=\"reason\" required"));
    assert!(html.contains("name=\"accept_terms\" value=\"1\" required"));
    assert!(
        html.contains("We may view &lt;partner&gt; accounts."),
        "{html}"
    );
    // The macro sees the page's token: every form that posts carries it
    // (the explain form only reads, with GET).
    let forms = html.matches("method=\"post\"").count();
    assert_eq!(html.matches("name=\"csrf_token\"").count(), forms);

    let html = render(&Model::build(&Facts {
        viewer: w.user("u-admin"),
        csrf_token: "tok",
        settings: &s,
        admin_policy: &CLOSED,
        full_seats: None,
        welcome_unavailable: Some("no mail".into()),
        users: &w.users,
        partners: &w.partners,
        terms_acknowledged: true,
        in_progress: Ok(&[]),
        audit: Ok(&AuditPage::default()),
        flash: None,
        permission_resources: Vec::new(),
        explain: None,
    }));
    assert!(!html.contains("accept_terms") && !html.contains("data-terms"));
    assert!(html.contains("name=\"reason\" required"));
    assert!(tag(&html, "data-welcome", "u-acme-anna")
        .unwrap()
        .contains("title=\"no mail\""));
    assert!(html.contains("Full licences in use: 6."), "{html}");
}

#[test]
fn impersonations_in_progress_and_the_audit_are_listed_with_end_buttons() {
    let mut w = World::new();
    let mut sam = (*w.user("u-super")).clone();
    sam.can_impersonate = true;
    let row = |imp: User, reference: &str| InProgress {
        key: SessionKey(format!("k-{reference}")),
        reference: reference.into(),
        impersonator: Arc::new(imp),
        user: None,
        state: State {
            user: "u-globex-gia".into(),
            started: 1_700_000_000,
            expires: 1_700_003_600,
            return_to: ADMIN_PAGE.into(),
            reason: Some("ticket <9>".into()),
        },
    };
    w.in_progress = vec![
        row((*w.user("u-admin")).clone(), "ref-ada"),
        row(sam, "ref-sam"),
    ];
    let mut rec = AuditRecord::new(AuditEvent::Start, "u-admin", "POST", "/_guise/impersonate");
    rec.time_ms = 1_700_000_000_123;
    rec.user = Some("u-globex-gia".into());
    w.audit = AuditPage {
        entries: vec![("1".into(), rec)],
        next: None,
    };
    let html = w.page("u-admin", &settings(), &CLOSED, "");
    assert!(!tag(&html, "data-end", "ref-ada")
        .unwrap()
        .contains("disabled"));
    let sams = tag(&html, "data-end", "ref-sam").unwrap();
    assert!(
        sams.contains("disabled") && sams.contains("super admin"),
        "{sams}"
    );
    assert!(html.contains("action=\"/_guise/admin/impersonations/ref-ada/end\""));
    assert!(html.contains("2023-11-14 22:13:20 UTC"), "{html}");
    assert!(html.contains("datetime=\"2023-11-14T23:13:20Z\""));
    assert!(html.contains("ticket &lt;9&gt;"));
    assert!(html.contains("data-audit-event=\"start\""));
    assert!(html.contains("POST &#x2f;_guise&#x2f;impersonate"));

    // A store that cannot answer is said, not fatal.
    let html = render(&Model::build(&Facts {
        viewer: w.user("u-admin"),
        csrf_token: "tok",
        settings: &settings(),
        admin_policy: &CLOSED,
        full_seats: None,
        welcome_unavailable: None,
        users: &w.users,
        partners: &w.partners,
        terms_acknowledged: false,
        in_progress: Err("redis is down"),
        audit: Err("the audit is down"),
        flash: None,
        permission_resources: Vec::new(),
        explain: None,
    }));
    assert!(html.contains("redis is down") && html.contains("the audit is down"));
}

#[test]
fn the_flash_is_worded_by_the_page_and_never_repeats_the_query() {
    let w = World::new();
    let html = w.page(
        "u-super",
        &settings(),
        &CLOSED,
        "done=welcome&user=u-acme-anna",
    );
    assert!(
        html.contains("Welcome email sent to Anna Acme &lt;u-acme-anna@x.test&gt;."),
        "{html}"
    );
    let html = w.page("u-super", &settings(), &CLOSED, "done=granted&user=u-bu1");
    assert!(html.contains("Bea One may now impersonate partner users."));
    // An unknown user is not repeated; an unknown code shows nothing.
    let html = w.page(
        "u-super",
        &settings(),
        &CLOSED,
        "done=granted&user=%3Cscript%3Ealert(1)%3C/script%3E",
    );
    assert!(html.contains("can_impersonate changed."));
    assert!(!html.contains("alert(1)"));
    let html = w.page("u-super", &settings(), &CLOSED, "done=You+were+hacked");
    assert!(!html.contains("data-flash") && !html.contains("hacked"));
    assert_eq!(
        Done::Granted.location("u-a+b@c"),
        "/_guise/admin?done=granted&user=u-a%2Bb%40c#users"
    );
}

#[test]
fn names_and_emails_are_escaped() {
    let mut w = World::new();
    let mut evil = user("u-evil", "<img src=x onerror=alert(1)>");
    evil.partner = Some("p-acme".into());
    w.users.push(Arc::new(evil));
    let html = w.page("u-admin", &settings(), &CLOSED, "");
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!html.contains("<script"), "no script of any kind");
}

#[test]
fn ids_in_form_actions_are_one_segment_and_decoded_back() {
    assert_eq!(segment("u-a+b@c/d"), "u-a%2Bb%40c%2Fd");
    assert_eq!(user_id(&segment("u-a+b@c")), "u-a+b@c");
    assert_eq!(user_id("u-plain"), "u-plain");
}

#[test]
fn paired_users_show_their_client_account_and_the_roles_the_app_receives_there() {
    let mut w = World::new();
    let mut ghost = user("u-acme-anna~initech", "Anna Acme (paired)");
    ghost.partner = Some("p-acme".into());
    ghost.paired = Some(crate::users::Paired {
        partner_user: "u-acme-anna".into(),
        tenant: "initech".into(),
        roles: vec!["Partner User".into(), "Viewer".into()],
    });
    let mut old = user("u-acme-otto~initech", "Otto Acme (paired)");
    old.partner = Some("p-acme".into());
    old.paired = Some(crate::users::Paired {
        partner_user: "u-acme-otto".into(),
        tenant: "initech".into(),
        roles: Vec::new(),
    });
    w.users.push(Arc::new(ghost));
    w.users.push(Arc::new(old));
    let html = w.page("u-admin", &settings(), &CLOSED, "");
    let cell = |id: &str| {
        let at = html
            .find(&format!("data-tenant-roles=\"{id}\""))
            .unwrap_or_else(|| panic!("tenant roles of {id} shown"));
        let end = at + html[at..].find("</div>").expect("cell ends");
        html[at..end].to_string()
    };
    let anna = cell("u-acme-anna~initech");
    assert!(anna.contains("in initech:"), "{anna}");
    assert!(
        anna.contains(
            r#"<span class="badge">Partner User</span><span class="badge">Viewer</span>"#
        ),
        "{anna}"
    );
    assert!(cell("u-acme-otto~initech").contains("defaults at next login"));
    // Users who are not paired have no tenant roles.
    assert!(!html.contains("data-tenant-roles=\"u-acme-anna\""));
}
