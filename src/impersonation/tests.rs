use std::sync::Arc;

use super::*;
use crate::config::impersonation::Privacy;
use crate::routes::{AnswerRecords, RouteSpec};
use crate::session::Active;
use crate::store::SessionKey;
use crate::users::{Licence, Paired, UserStatus};

fn settings() -> Settings {
    Settings {
        enabled: true,
        ..Settings::default()
    }
}

fn admin() -> User {
    let mut u = User::new("u-admin", "Ada Admin", "ada@example.com");
    u.roles = vec![Role::Admin];
    u.can_impersonate = true;
    u
}

fn partner_user() -> User {
    let mut u = User::new("u-pat", "Pat Partner", "pat@partner.test");
    u.partner = Some("p-acme".into());
    u.licence = Licence::Full;
    u
}

fn session(extra: BTreeMap<String, String>) -> Active {
    Active {
        key: SessionKey("k".repeat(64)),
        record: Arc::new(SessionRecord {
            user_id: "u-admin".into(),
            reference: "0123456789ab".into(),
            created_at: 0,
            last_seen: 0,
            absolute_expiry: u64::MAX,
            csrf_token: "t".into(),
            client_ip: None,
            extra,
        }),
        prepared: Arc::default(),
    }
}

fn state(expires: u64) -> State {
    State {
        user: "u-pat".into(),
        started: 100,
        expires,
        return_to: "/_guise/admin".into(),
        reason: Some("ticket 42".into()),
    }
}

fn impersonating(actor: User, effective: User, expires: u64) -> Subject {
    Subject::impersonating(
        Arc::new(actor),
        Arc::new(effective),
        session(state(expires).fields()),
    )
}

#[test]
fn the_state_round_trips_through_the_session_record() {
    let s = state(4000);
    let active = session(s.fields());
    assert_eq!(State::of(&active.record), Some(s));
    assert_eq!(Subject::impersonated_id(&active), Some("u-pat"));
    assert_eq!(State::of(&session(BTreeMap::new()).record), None);
}

#[test]
fn a_damaged_record_expires_at_once() {
    let mut fields = state(4000).fields();
    fields.insert(field::EXPIRES.into(), "soon".into());
    let rec = session(fields);
    assert_eq!(State::of(&rec.record).map(|s| s.expires), Some(0));
}

#[test]
fn only_holders_of_can_impersonate_may_and_only_when_it_is_on() {
    let mut plain = admin();
    plain.can_impersonate = false;
    assert_eq!(
        may_impersonate(&settings(), &plain),
        Err(ImpersonationError::NotAllowed("u-admin".into()))
    );
    assert!(may_impersonate(&settings(), &admin()).is_ok());
    assert_eq!(
        may_impersonate(&Settings::default(), &admin()),
        Err(ImpersonationError::Disabled)
    );
    let mut disabled = admin();
    disabled.status = UserStatus::Disabled;
    assert!(may_impersonate(&settings(), &disabled).is_err());
}

#[test]
fn admins_impersonators_oneself_and_disabled_users_are_refused_targets() {
    let s = settings();
    let a = admin();
    assert!(may_target(&s, &a, &partner_user()).is_ok());

    let mut sup = partner_user();
    sup.roles = vec![Role::SuperAdmin];
    let mut adm = partner_user();
    adm.roles = vec![Role::Admin];
    let mut imp = partner_user();
    imp.can_impersonate = true;
    let mut off = partner_user();
    off.status = UserStatus::Disabled;
    for (target, why) in [
        (sup, "super admin"),
        (adm, "an admin"),
        (imp, "impersonate others"),
        (off, "disabled"),
        (a.clone(), "yourself"),
    ] {
        match may_target(&s, &a, &target) {
            Err(ImpersonationError::Target(_, w)) => assert!(w.contains(why), "{w}"),
            other => panic!("{} should be refused for {why}: {other:?}", target.id),
        }
    }
}

#[test]
fn a_partner_user_without_a_full_licence_is_refused() {
    let mut viewer = partner_user();
    viewer.licence = Licence::Viewer;
    let e = may_target(&settings(), &admin(), &viewer).unwrap_err();
    assert_eq!(e.code(), "no_full_licence");
    assert_eq!(e.status(), 403);
}

#[test]
fn further_classes_are_targets_only_when_configured() {
    let ordinary = User::new("u-ord", "Ordinary", "o@example.com");
    let mut paired = partner_user();
    paired.id = "u-pat~t1".into();
    paired.paired = Some(Paired {
        tenant: "t1".into(),
        partner_user: "u-pat".into(),
        roles: Vec::new(),
    });
    let s = settings();
    assert!(may_target(&s, &admin(), &ordinary).is_err());
    assert!(may_target(&s, &admin(), &paired).is_err());
    let mut wider = settings();
    wider.targets.users = true;
    wider.targets.paired = true;
    assert!(may_target(&wider, &admin(), &ordinary).is_ok());
    assert!(may_target(&wider, &admin(), &paired).is_ok());
}

#[test]
fn check_lets_a_live_impersonation_go_on_and_ends_an_expired_one() {
    let s = settings();
    let subject = impersonating(admin(), partner_user(), 4000);
    assert_eq!(check(&s, &subject, 3999), Some(Ok(())));
    assert_eq!(check(&s, &subject, 4000), Some(Err(Ending::Expired)));
    let own = Subject::own(Arc::new(admin()), session(BTreeMap::new()));
    assert_eq!(check(&s, &own, 4000), None);
}

#[test]
fn check_ends_without_return_when_the_admin_lost_the_right() {
    let mut lost = admin();
    lost.can_impersonate = false;
    let subject = impersonating(lost, partner_user(), 4000);
    let ending = check(&settings(), &subject, 10).unwrap().unwrap_err();
    assert_eq!(ending, Ending::ActorGone);
    assert!(!ending.restores_actor());

    let mut disabled = admin();
    disabled.status = UserStatus::Disabled;
    let subject = impersonating(disabled, partner_user(), 4000);
    assert_eq!(
        check(&settings(), &subject, 10),
        Some(Err(Ending::ActorGone))
    );
}

#[test]
fn check_returns_the_admin_when_the_target_goes_or_the_switch_is_turned_off() {
    let mut gone = partner_user();
    gone.status = UserStatus::Disabled;
    let subject = impersonating(admin(), gone, 4000);
    let ending = check(&settings(), &subject, 10).unwrap().unwrap_err();
    assert_eq!(ending, Ending::TargetGone);
    assert!(ending.restores_actor());

    // The user named in the session could not be found: the subject is the
    // admin alone, which must not be served as the admin.
    let missing = Subject::own(Arc::new(admin()), session(state(4000).fields()));
    assert_eq!(
        check(&settings(), &missing, 10),
        Some(Err(Ending::TargetGone))
    );

    let subject = impersonating(admin(), partner_user(), 4000);
    assert_eq!(
        check(&Settings::default(), &subject, 10),
        Some(Err(Ending::Disabled))
    );
}

fn route(personal: bool, export: bool, answer: AnswerRecords) -> RouteSpec {
    RouteSpec {
        name: "contacts".into(),
        path: "/contacts".into(),
        methods: vec![],
        area: None,
        resource: Some("contact".into()),
        action: None,
        export,
        personal_data: personal,
        public: false,
        feature: None,
        records: vec![],
        answer,
        body: Vec::new(),
    }
}

fn list_shape() -> AnswerRecords {
    AnswerRecords {
        json_list: Some(("/data".into(), vec![], vec!["/total".into()])),
        ..AnswerRecords::default()
    }
}

fn record_shape() -> AnswerRecords {
    AnswerRecords {
        json_record: Some(("".into(), vec![])),
        ..AnswerRecords::default()
    }
}

fn gdpr() -> Privacy {
    Privacy {
        hide_contacts_and_leads: true,
        hidden_fields: vec![],
        disable_contacts_and_leads_export: true,
        exempt_internal: true,
    }
}

#[test]
fn privacy_hides_lists_refuses_records_pages_and_exports_for_impersonators() {
    let p = gdpr();
    let imp = impersonating(admin(), partner_user(), 4000);
    let rules = privacy::decide(&p, Some(&imp), Some(&route(true, false, list_shape()))).unwrap();
    assert!(rules.hide_list && rules.no_downloads);
    let e = privacy::decide(&p, Some(&imp), Some(&route(true, false, record_shape()))).unwrap_err();
    assert_eq!(e.status(), 404);
    let e = privacy::decide(
        &p,
        Some(&imp),
        Some(&route(true, false, AnswerRecords::default())),
    )
    .unwrap_err();
    assert_eq!((e.status(), e.code()), (403, "hidden_while_impersonating"));
    let e = privacy::decide(&p, Some(&imp), Some(&route(false, true, list_shape()))).unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (403, "export_blocked_while_impersonating")
    );
}

#[test]
fn privacy_leaves_own_sessions_exempt_staff_and_untagged_routes_alone() {
    let p = gdpr();
    let own = Subject::own(Arc::new(partner_user()), session(BTreeMap::new()));
    let tagged = route(true, true, list_shape());
    assert!(privacy::decide(&p, Some(&own), Some(&tagged))
        .unwrap()
        .is_empty());
    let mut staff = admin();
    staff.internal = true;
    let exempt = impersonating(staff.clone(), partner_user(), 4000);
    assert!(privacy::decide(&p, Some(&exempt), Some(&tagged))
        .unwrap()
        .is_empty());
    let strict = Privacy {
        exempt_internal: false,
        ..gdpr()
    };
    assert!(privacy::decide(&strict, Some(&exempt), Some(&tagged)).is_err());
    let imp = impersonating(admin(), partner_user(), 4000);
    let plain = route(false, false, list_shape());
    assert!(privacy::decide(&p, Some(&imp), Some(&plain))
        .unwrap()
        .is_empty());
}

#[test]
fn hidden_fields_redact_records_instead_of_refusing_them() {
    let p = Privacy {
        hidden_fields: vec!["/email".into()],
        ..gdpr()
    };
    let imp = impersonating(admin(), partner_user(), 4000);
    let rules = privacy::decide(&p, Some(&imp), Some(&route(true, false, record_shape()))).unwrap();
    assert!(rules.hide_list);
}

#[test]
fn the_return_path_is_same_origin_only() {
    let req = |referer: Option<&str>| {
        let mut r =
            pingora::http::RequestHeader::build("POST", b"/_guise/impersonate", None).unwrap();
        r.insert_header("host", "gw.test:8080").unwrap();
        if let Some(v) = referer {
            r.insert_header("referer", v).unwrap();
        }
        r
    };
    use endpoints::return_path;
    assert_eq!(
        return_path(Some("/companies/c-1?tab=x"), &req(None)),
        "/companies/c-1?tab=x"
    );
    assert_eq!(
        return_path(Some("/_guise/admin?tab=users"), &req(None)),
        "/_guise/admin?tab=users"
    );
    for bad in [
        "https://evil.test/",
        "//evil.test/",
        "/\\evil",
        "/_guise/logout",
    ] {
        assert_eq!(return_path(Some(bad), &req(None)), "/_guise/admin", "{bad}");
    }
    assert_eq!(
        return_path(None, &req(Some("http://gw.test:8080/reports/7?x=1"))),
        "/reports/7?x=1"
    );
    assert_eq!(
        return_path(None, &req(Some("http://evil.test:8080/reports/7"))),
        "/_guise/admin"
    );
}

#[test]
fn a_personal_data_download_is_refused_at_its_header() {
    let rules = privacy::Rules {
        hide_list: false,
        no_downloads: true,
    };
    let route = route(true, false, AnswerRecords::default());
    let mut resp = pingora::http::ResponseHeader::build(200, None).unwrap();
    resp.insert_header("content-type", "text/csv").unwrap();
    resp.insert_header("content-disposition", "attachment; filename=contacts.csv")
        .unwrap();
    let filter = privacy::start(
        &rules,
        &gdpr(),
        &route,
        &mut resp,
        crate::filter::Limit(1 << 20),
        crate::respond::Format::Json,
    )
    .unwrap()
    .expect("a filter");
    assert!(filter.refused());
    assert_eq!(resp.status.as_u16(), 403);

    // The same answer shown inline is left alone when only downloads are
    // blocked.
    let mut inline = pingora::http::ResponseHeader::build(200, None).unwrap();
    inline.insert_header("content-type", "text/html").unwrap();
    let none = privacy::start(
        &rules,
        &gdpr(),
        &route,
        &mut inline,
        crate::filter::Limit(1 << 20),
        crate::respond::Format::Html,
    )
    .unwrap();
    assert!(none.is_none());
}

#[test]
fn a_hidden_list_comes_empty_with_its_count_corrected() {
    let rules = privacy::Rules {
        hide_list: true,
        no_downloads: false,
    };
    let route = route(true, false, list_shape());
    let mut resp = pingora::http::ResponseHeader::build(200, None).unwrap();
    resp.insert_header("content-type", "application/json")
        .unwrap();
    resp.insert_header("content-length", "64").unwrap();
    let mut filter = privacy::start(
        &rules,
        &gdpr(),
        &route,
        &mut resp,
        crate::filter::Limit(1 << 20),
        crate::respond::Format::Json,
    )
    .unwrap()
    .expect("a filter");
    assert!(resp.headers.get("content-length").is_none());
    let mut body = Some(bytes::Bytes::from_static(
        br#"{"data":[{"id":"a"},{"id":"b"}],"total":2}"#,
    ));
    filter.chunk(&mut body, false).unwrap();
    assert!(body.is_none(), "held until the end");
    filter.chunk(&mut body, true).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body.unwrap()).unwrap();
    assert_eq!(v, serde_json::json!({"data": [], "total": 0}));
}
