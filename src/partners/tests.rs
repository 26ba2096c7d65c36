//! Stage 7 as a pure function: decisions without I/O.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::*;
use crate::routes::{AnswerRecords, RecordRef};
use crate::session::Active;
use crate::store::memory::MemoryStore;
use crate::store::{SessionKey, SessionRecord};

fn settings() -> Settings {
    Settings {
        bundles: vec![Bundle {
            name: "lite".into(),
            areas: ["dashboard".to_string()].into(),
        }],
        partners: vec![
            Partner {
                id: "p-acme".into(),
                name: "Acme".into(),
                status: PartnerStatus::Active,
                companies: ["co-1".to_string()].into(),
                relationships: BTreeSet::new(),
                reports: ["rep-1".to_string()].into(),
                primary_user: None,
            },
            Partner {
                id: "p-gone".into(),
                name: "Gone".into(),
                status: PartnerStatus::Inactive,
                companies: BTreeSet::new(),
                relationships: BTreeSet::new(),
                reports: BTreeSet::new(),
                primary_user: None,
            },
        ],
        ..Settings::default()
    }
}

fn snapshot(s: &Settings) -> Arc<Snapshot> {
    Registry::new(Arc::new(MemoryStore::new()), Arc::new(s.clone())).snapshot()
}

fn subject(user: User) -> Subject {
    let active = Active {
        key: SessionKey("k".repeat(64)),
        record: Arc::new(SessionRecord {
            user_id: user.id.clone(),
            reference: "0123456789ab".into(),
            created_at: 0,
            last_seen: 0,
            absolute_expiry: u64::MAX,
            csrf_token: "t".into(),
            client_ip: None,
            extra: Default::default(),
        }),
        prepared: Arc::default(),
    };
    Subject::own(Arc::new(user), active)
}

fn partner_user(partner: &str) -> User {
    let mut u = User::new("u-anna", "Anna", "anna@acme.test");
    u.partner = Some(partner.into());
    u
}

fn route(area: Option<&str>) -> RouteSpec {
    RouteSpec {
        name: "r".into(),
        path: "/companies/{id}".into(),
        methods: Vec::new(),
        area: area.map(str::to_string),
        resource: None,
        action: None,
        export: false,
        personal_data: false,
        public: false,
        feature: None,
        records: vec![RecordRef {
            resource: "company".into(),
            from: RecordSource::Param("id".into()),
        }],
        answer: AnswerRecords::default(),
        body: Vec::new(),
    }
}

fn company(id: &str) -> NamedRecord {
    NamedRecord {
        resource: "company".into(),
        id: id.into(),
        parents: Vec::new(),
    }
}

fn decide_for(
    user: User,
    route: Option<&RouteSpec>,
    records: &[NamedRecord],
) -> Result<Access, PartnerError> {
    let s = settings();
    let req = Request {
        route,
        path: "/companies/x",
        public: route.is_some_and(|r| r.public),
    };
    decide(&snapshot(&s), &s, Some(&subject(user)), req, records)
}

#[test]
fn ordinary_users_and_anonymous_requests_are_not_partner_business() {
    let s = settings();
    let r = route(Some("companies"));
    let req = Request {
        route: Some(&r),
        path: "/companies/co-9",
        public: false,
    };
    assert!(matches!(
        decide(&snapshot(&s), &s, None, req, &[company("co-9")]),
        Ok(Access::Unrestricted)
    ));
    let bea = User::new("u-bea", "Bea", "bea@example.com");
    assert!(matches!(
        decide_for(bea, Some(&r), &[company("co-9")]),
        Ok(Access::Unrestricted)
    ));
}

#[test]
fn a_partner_user_reaches_assigned_records_in_bundle_areas_only() {
    let r = route(Some("companies"));
    let Ok(Access::Partner(keep)) =
        decide_for(partner_user("p-acme"), Some(&r), &[company("co-1")])
    else {
        panic!("an assigned company is allowed")
    };
    assert!(keep.assigned("company", "co-1") && !keep.assigned("company", "co-2"));
    assert!(keep.assigned("report", "rep-1") && keep.assigned("partner", "p-acme"));
    assert_eq!(
        decide_for(partner_user("p-acme"), Some(&r), &[company("co-2")]).unwrap_err(),
        PartnerError::NotAssigned {
            resource: "company".into()
        }
    );
    // A record inside an assigned one is allowed through its parent.
    let cta = NamedRecord {
        resource: "cta".into(),
        id: "cta-9".into(),
        parents: vec![("company".into(), "co-1".into())],
    };
    assert!(decide_for(partner_user("p-acme"), Some(&r), &[cta]).is_ok());

    let mut arlo = partner_user("p-acme");
    arlo.bundle = Some("lite".into());
    assert_eq!(
        decide_for(arlo, Some(&r), &[company("co-1")]).unwrap_err(),
        PartnerError::AreaNotInBundle {
            area: "companies".into(),
            bundle: "lite".into()
        }
    );
    // A bundle that no longer exists falls back to the default one.
    let mut lost = partner_user("p-acme");
    lost.bundle = Some("deleted".into());
    assert!(decide_for(lost, Some(&r), &[company("co-1")]).is_ok());
}

#[test]
fn unrouted_paths_inactive_partners_and_missing_licences_are_refused() {
    assert_eq!(
        decide_for(partner_user("p-acme"), None, &[]).unwrap_err(),
        PartnerError::Unrouted
    );
    assert_eq!(
        decide_for(partner_user("p-acme"), Some(&route(None)), &[]).unwrap_err(),
        PartnerError::Unrouted
    );
    let r = route(Some("companies"));
    assert_eq!(
        decide_for(partner_user("p-gone"), Some(&r), &[]).unwrap_err(),
        PartnerError::PartnerInactive("p-gone".into())
    );
    assert_eq!(
        decide_for(partner_user("p-nobody"), Some(&r), &[]).unwrap_err(),
        PartnerError::NoPartner("p-nobody".into())
    );
    let mut viewer = partner_user("p-acme");
    viewer.licence = Licence::Viewer;
    assert_eq!(
        may_log_in(&viewer).unwrap_err(),
        PartnerError::NoFullLicence
    );
    assert_eq!(
        decide_for(viewer, Some(&r), &[]).unwrap_err(),
        PartnerError::NoFullLicence
    );
    let mut public = route(None);
    public.public = true;
    assert!(matches!(
        decide_for(partner_user("p-gone"), Some(&public), &[]),
        Ok(Access::Unrestricted)
    ));
}

#[test]
fn records_come_from_path_and_every_value_of_a_query_parameter() {
    let mut r = route(Some("companies"));
    r.path = "/api/ctas".into();
    r.records = vec![RecordRef {
        resource: "company".into(),
        from: RecordSource::Query("company_id".into()),
    }];
    let table = RouteTable::compile(std::slice::from_ref(&r)).unwrap();
    let found = named_records(
        &table,
        0,
        &r,
        "/api/ctas",
        Some("company_id=co-1&x=2&company_id=co%2D2"),
    );
    let ids: Vec<&str> = found.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["co-1", "co-2"]);

    let p = route(Some("companies"));
    let table = RouteTable::compile(std::slice::from_ref(&p)).unwrap();
    let found = named_records(&table, 0, &p, "/companies/co-7", None);
    assert_eq!(found, vec![company("co-7")]);
}

/// A route naming a CTA by its own id, with `partners.parents` for CTAs.
fn cta_setup(area: &str) -> (Settings, RouteSpec, RouteTable) {
    let mut s = settings();
    s.parents = vec![ParentSpec {
        resource: "cta".into(),
        path: "/api/ctas/{id}".into(),
        pointer: "/data".into(),
        refs: vec![("company".into(), "/company_id".into())],
    }];
    let mut r = route(Some(area));
    r.path = "/api/ctas/{id}".into();
    r.records = vec![RecordRef {
        resource: "cta".into(),
        from: RecordSource::Param("id".into()),
    }];
    let table = RouteTable::compile(std::slice::from_ref(&r)).unwrap();
    (s, r, table)
}

#[test]
fn a_record_reached_by_its_own_id_waits_for_its_parents() {
    let (s, _, table) = cta_setup("dashboard");
    let registry = Registry::new(Arc::new(MemoryStore::new()), Arc::new(s.clone()));
    let uri: http::Uri = "/api/ctas/cta-11".parse().unwrap();
    let anna = subject(partner_user("p-acme"));
    let step = check(&registry, &s, &table, Class::Route(0), Some(&anna), &uri);
    let Ok(Step::Parents(pending)) = step else {
        panic!("a CTA named by its id needs its parents")
    };
    assert_eq!(pending.records.len(), 1);
    assert_eq!(pending.records[0].resource, "cta");
    assert_eq!(pending.records[0].id, "cta-11");

    // The lookup's answer decides: inside an assigned company or not.
    let mut records = pending.records.clone();
    records[0].parents = vec![("company".into(), "co-1".into())];
    let req = pending.req;
    let snap = pending.snap.clone();
    assert!(matches!(
        decide(&snap, &s, Some(&anna), req, &records),
        Ok(Access::Partner(_))
    ));
    records[0].parents = vec![("company".into(), "co-2".into())];
    assert_eq!(
        decide(&snap, &s, Some(&anna), req, &records).unwrap_err(),
        PartnerError::NotAssigned {
            resource: "cta".into()
        }
    );
    // A record the app does not have has no parents: refused alike.
    records[0].parents.clear();
    assert!(decide(&snap, &s, Some(&anna), req, &records).is_err());

    // Internal users never wait for a lookup.
    let bea = subject(User::new("u-bea", "Bea", "bea@example.com"));
    let step = check(&registry, &s, &table, Class::Route(0), Some(&bea), &uri);
    assert!(matches!(step, Ok(Step::Done(Access::Unrestricted))));
}

#[test]
fn what_needs_no_lookup_is_refused_before_one() {
    // The route's area is outside Anna's bundle: refused at once, and the
    // app is not asked where the CTA sits.
    let (s, _, table) = cta_setup("cockpit");
    let registry = Registry::new(Arc::new(MemoryStore::new()), Arc::new(s.clone()));
    let uri: http::Uri = "/api/ctas/cta-11".parse().unwrap();
    let mut anna = partner_user("p-acme");
    anna.bundle = Some("lite".into());
    let anna = subject(anna);
    let step = check(&registry, &s, &table, Class::Route(0), Some(&anna), &uri);
    assert!(matches!(step, Err(PartnerError::AreaNotInBundle { .. })));
    // So is a partner user of an inactive partner.
    let gone = subject(partner_user("p-gone"));
    let step = check(&registry, &s, &table, Class::Route(0), Some(&gone), &uri);
    assert!(matches!(step, Err(PartnerError::PartnerInactive(_))));
}

#[test]
fn every_request_refusal_code_is_listed_for_the_metric() {
    let all = [
        PartnerError::PartnerInactive("p".into()),
        PartnerError::NoPartner("p".into()),
        PartnerError::NoFullLicence,
        PartnerError::AreaNotInBundle {
            area: "a".into(),
            bundle: "b".into(),
        },
        PartnerError::Unrouted,
        PartnerError::NotAssigned {
            resource: "r".into(),
        },
        PartnerError::OutsideTenant("t".into()),
        PartnerError::TenantNeedsPairedLogin,
        PartnerError::NotForPaired("f".into()),
        PartnerError::PartnerLoginOff("t".into()),
        PartnerError::NoTenant("t".into()),
        PartnerError::NotAPartnerUser,
        PartnerError::LookupFailed {
            resource: "cta".into(),
        },
    ];
    for e in &all {
        assert!(
            REFUSAL_CODES.contains(&e.code()),
            "{} is not in REFUSAL_CODES",
            e.code()
        );
    }
}

// === tenant roles of paired users ===

fn tenant_settings() -> TenantSettings {
    TenantSettings {
        hubs: [
            ("default".to_string(), vec!["Partner User".to_string()]),
            (
                "emea".to_string(),
                vec!["Partner User".to_string(), "Viewer".to_string()],
            ),
        ]
        .into(),
        roles: Some(vec![
            "Partner User".into(),
            "Viewer".into(),
            "Account Admin".into(),
        ]),
        partner_assignable: ["Partner User".to_string(), "Viewer".to_string()].into(),
        list: vec![
            Tenant {
                id: "initech".into(),
                name: "Initech".into(),
                hub: "emea".into(),
                user_quota: None,
                users: 0,
                allow_partner_login: true,
            },
            Tenant {
                id: "closed".into(),
                name: "Closed".into(),
                hub: "default".into(),
                user_quota: None,
                users: 0,
                allow_partner_login: false,
            },
        ],
        ..TenantSettings::default()
    }
}

/// Acme with Anna as primary user, and Globex with Gia.
fn partner_settings() -> Settings {
    let mut s = settings();
    s.partners[0].primary_user = Some("u-anna".into());
    s.partners.push(Partner {
        id: "p-globex".into(),
        name: "Globex".into(),
        status: PartnerStatus::Active,
        companies: BTreeSet::new(),
        relationships: BTreeSet::new(),
        reports: BTreeSet::new(),
        primary_user: Some("u-gia".into()),
    });
    s.tenants = tenant_settings();
    s
}

fn arlo() -> User {
    let mut u = partner_user("p-acme");
    u.id = "u-arlo".into();
    u
}

fn gia() -> User {
    let mut u = partner_user("p-globex");
    u.id = "u-gia".into();
    u
}

fn ghost_of(u: &User, tenant: &str) -> User {
    let s = tenant_settings();
    let t = s.list.iter().find(|t| t.id == tenant).unwrap();
    paired_user(u, t, &s)
}

fn names(roles: &[&str]) -> Vec<String> {
    roles.iter().map(|r| r.to_string()).collect()
}

#[test]
fn a_paired_user_gets_its_hubs_tenant_roles_and_the_gateway_role_user_only() {
    let mut anna = partner_user("p-acme");
    anna.roles = vec![crate::users::Role::Admin];
    let ghost = ghost_of(&anna, "initech");
    assert_eq!(ghost.roles, [crate::users::Role::User]);
    assert_eq!(ghost.paired.unwrap().roles, ["Partner User", "Viewer"]);
    assert_eq!(
        ghost_of(&anna, "closed").paired.unwrap().roles,
        ["Partner User"]
    );
}

#[test]
fn a_paired_user_stored_before_tenant_roles_is_brought_up_to_date_once() {
    let s = tenant_settings();
    let anna = partner_user("p-acme");
    let mut old = ghost_of(&anna, "initech");
    old.paired.as_mut().unwrap().roles.clear();
    old.roles = vec![crate::users::Role::Admin];
    let updated = paired_brought_up_to_date(&old, &s.list[0], &s).unwrap();
    assert_eq!(updated.roles, [crate::users::Role::User]);
    assert_eq!(
        updated.paired.as_ref().unwrap().roles,
        ["Partner User", "Viewer"]
    );
    assert!(paired_brought_up_to_date(&updated, &s.list[0], &s).is_none());
    // Roles someone chose are kept.
    let mut chosen = updated.clone();
    chosen.paired.as_mut().unwrap().roles = names(&["Account Admin"]);
    assert!(paired_brought_up_to_date(&chosen, &s.list[0], &s).is_none());
}

#[test]
fn tenant_roles_are_refused_naming_the_field() {
    let s = tenant_settings();
    assert!(check_tenant_roles(&s, &names(&["Account Admin", "Viewer"])).is_ok());
    for (roles, says) in [
        (names(&[]), "roles: give at least one role"),
        (
            names(&["Root"]),
            "roles[0]: `Root` is not one of the tenant roles",
        ),
        (
            names(&["Viewer", "Viewer"]),
            "roles[1]: `Viewer` is given twice",
        ),
        (names(&["Viewer", " Viewer"]), "roles[1]:"),
        (names(&["admin"]), "roles[0]: `admin` is not one"),
    ] {
        let e = check_tenant_roles(&s, &roles).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().starts_with(says), "{e} for {roles:?}");
    }
    // Without the app's roles listed, any header-safe name goes.
    let open = TenantSettings::default();
    assert!(check_tenant_roles(&open, &names(&["Whatever It Is"])).is_ok());
    assert!(check_tenant_roles(&open, &names(&["A,B"])).is_err());
}

#[test]
fn only_the_primary_user_changes_their_own_partners_paired_users() {
    let s = partner_settings();
    let snap = snapshot(&s);
    let anna = {
        let mut u = partner_user("p-acme");
        u.name = "Anna".into();
        u
    };
    let anna_ghost = ghost_of(&anna, "initech");
    let arlo_ghost = ghost_of(&arlo(), "initech");
    let at = ("initech", "u-anna");
    assert!(may_change_paired(&snap, &anna, Some(&anna_ghost), at).is_ok());
    assert!(may_change_paired(&snap, &anna, Some(&arlo_ghost), ("initech", "u-arlo")).is_ok());
    let refused = |actor: &User, target: Option<&User>, at| {
        may_change_paired(&snap, actor, target, at)
            .unwrap_err()
            .code()
    };
    assert_eq!(
        refused(&arlo(), Some(&arlo_ghost), ("initech", "u-arlo")),
        "not_primary_user"
    );
    assert_eq!(
        refused(&gia(), Some(&anna_ghost), at),
        "not_your_paired_user"
    );
    // The path must name the target: not Anna's ghost under Arlo's name.
    assert_eq!(
        refused(&anna, Some(&anna_ghost), ("initech", "u-arlo")),
        "not_your_paired_user"
    );
    assert_eq!(refused(&anna, None, at), "not_your_paired_user");
    assert_eq!(
        refused(&anna_ghost, Some(&anna_ghost), at),
        "paired_session"
    );
    let internal = User::new("u-bea", "Bea", "bea@x.test");
    assert_eq!(
        refused(&internal, Some(&anna_ghost), at),
        "not_a_partner_user"
    );
    let mut viewer = anna.clone();
    viewer.licence = Licence::Viewer;
    assert_eq!(refused(&viewer, Some(&anna_ghost), at), "no_full_licence");
    let closed = ghost_of(&anna, "closed");
    assert_eq!(
        refused(&anna, Some(&closed), ("closed", "u-anna")),
        "partner_login_off"
    );
    for e in [
        PartnerError::PairedSession,
        PartnerError::NotPrimaryUser("p".into()),
    ] {
        assert_eq!(e.status(), 403);
    }
}

#[test]
fn partners_give_only_the_assignable_roles() {
    let s = tenant_settings();
    assert!(partner_may_give(&s, &names(&["Viewer", "Partner User"])).is_ok());
    let e = partner_may_give(&s, &names(&["Viewer", "Account Admin"])).unwrap_err();
    assert_eq!((e.status(), e.code()), (403, "role_not_partner_assignable"));
    assert!(
        e.to_string()
            .contains("only `Partner User`, `Viewer`; `Account Admin` is not one of them"),
        "{e}"
    );
}

#[test]
fn a_change_of_tenant_roles_keeps_the_gateway_role_user_only() {
    let mut ghost = ghost_of(&partner_user("p-acme"), "initech");
    ghost.roles = vec![crate::users::Role::Admin];
    let changed = tenant_roles_changed(&ghost, names(&["Viewer"]));
    assert_eq!(changed.roles, [crate::users::Role::User]);
    assert_eq!(changed.paired.unwrap().roles, ["Viewer"]);
}
