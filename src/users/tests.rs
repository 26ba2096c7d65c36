use std::time::{Duration, Instant};

use super::*;

/// A real-cost hash (`hash_password`), made once for the whole test binary:
/// argon2 at the default cost takes about a second in a debug build.
fn hash_of_secret() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("correct horse").unwrap())
}

/// A hash at the lowest argon2id cost: verification follows the parameters
/// stored in the hash, so tests of login logic stay fast with it.
fn cheap_hash(plain: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon
        .hash_password(plain.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn ada() -> User {
    let mut u = User::new("u-1", "Ada Lovelace", "Ada@Example.com");
    u.password_hash = Some(cheap_hash("correct horse"));
    u
}

fn directory() -> Directory {
    let mut disabled = User::new("u-2", "Dis Abled", "dis@example.com");
    disabled.status = UserStatus::Disabled;
    disabled.password_hash = Some(cheap_hash("correct horse"));
    let no_password = User::new("u-3", "No Password", "nopw@example.com");
    Directory::from_users([ada(), disabled, no_password]).unwrap()
}

// === passwords ===

#[test]
fn a_hash_is_argon2id_phc_with_a_fresh_salt_and_verifies() {
    let hash = hash_of_secret();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(password::check_phc(hash).is_ok());
    assert!(password::verify(Some(hash), "correct horse"));
    assert!(!password::verify(Some(hash), "correct horse "));
    assert_ne!(
        hash_password("correct horse").unwrap(),
        hash,
        "salt is random"
    );
}

#[test]
fn an_empty_password_is_not_hashed() {
    assert_eq!(hash_password(""), Err(UsersError::EmptyPassword));
}

#[test]
fn the_dummy_hash_parses_and_costs_what_a_new_hash_costs() {
    assert!(password::check_phc(password::DUMMY_HASH).is_ok());
    assert_eq!(
        password::params_of(password::DUMMY_HASH),
        password::params_of(hash_of_secret())
    );
}

#[test]
fn the_right_password_logs_in_whatever_the_case_of_the_email() {
    let d = directory();
    for login in ["ada@example.com", "ADA@EXAMPLE.COM", " Ada@Example.com "] {
        let user = d.check_password(login, "correct horse").unwrap();
        assert_eq!(user.id, "u-1", "{login}");
    }
}

#[test]
fn unknown_login_wrong_password_no_password_and_disabled_get_one_answer() {
    let d = directory();
    let answers = [
        d.check_password("nobody@example.com", "correct horse"),
        d.check_password("ada@example.com", "wrong"),
        d.check_password("nopw@example.com", ""),
        d.check_password("dis@example.com", "correct horse"),
    ];
    for a in &answers {
        assert_eq!(a.as_ref().map(|u| u.id.clone()), Err(&LoginRefused));
    }
    assert_eq!(
        LoginRefused.to_string(),
        "login refused: unknown login or wrong password"
    );
}

#[test]
fn a_disabled_user_is_refused_even_with_the_right_password() {
    let d = directory();
    assert_eq!(
        d.check_password("dis@example.com", "correct horse")
            .map(|_| ()),
        Err(LoginRefused)
    );
}

/// Median time of `f` over three runs.
fn median(mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..3)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[1]
}

#[test]
fn an_unknown_login_spends_an_argon2_verification_like_a_known_one() {
    // Not a speed target: skipping argon2 would make the unknown login about
    // a thousand times faster, so a loose factor of 4 either way tells the
    // two apart on a noisy machine. Both sides use the default cost.
    let mut real_cost = ada();
    real_cost.password_hash = Some(hash_of_secret().to_string());
    let d = Directory::from_users([real_cost]).unwrap();
    let unknown = median(|| {
        let _ = d.check_password("nobody@example.com", "guess");
    });
    let wrong = median(|| {
        let _ = d.check_password("ada@example.com", "guess");
    });
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.25..4.0).contains(&ratio),
        "unknown login {unknown:?} vs wrong password {wrong:?}"
    );
}

#[test]
fn a_password_line_loses_only_its_line_ending() {
    let mut input = "  pass word \r\nsecond line\n".as_bytes();
    assert_eq!(read_password_line(&mut input).unwrap(), "  pass word ");
    assert_eq!(read_password_line(&mut "last".as_bytes()).unwrap(), "last");
    assert_eq!(
        read_password_line(&mut "\n".as_bytes()),
        Err(UsersError::EmptyPassword)
    );
    assert_eq!(
        read_password_line(&mut "".as_bytes()),
        Err(UsersError::EmptyPassword)
    );
}

// === the directory ===

#[test]
fn users_are_found_by_id_and_by_case_blind_email() {
    let d = directory();
    assert_eq!(d.get("u-1").unwrap().email, "Ada@Example.com");
    assert!(d.get("U-1").is_none(), "ids are exact");
    assert_eq!(d.by_login("ADA@example.COM").unwrap().id, "u-1");
    assert!(d.by_login("nobody@example.com").is_none());
    let ids: Vec<String> = d.all().iter().map(|u| u.id.clone()).collect();
    assert_eq!(ids, ["u-1", "u-2", "u-3"]);
    let source: &dyn UserSource = &d;
    assert_eq!(source.user_by_login("ada@example.com").unwrap().id, "u-1");
}

#[test]
fn upsert_replaces_by_id_and_moves_the_login() {
    let d = directory();
    let mut moved = ada();
    moved.email = "ada@lovelace.example".into();
    let previous = d.upsert(moved).unwrap().unwrap();
    assert_eq!(previous.email, "Ada@Example.com");
    assert!(d.by_login("ada@example.com").is_none());
    assert_eq!(d.by_login("ADA@lovelace.example").unwrap().id, "u-1");
    assert_eq!(d.len(), 3);
    assert!(d
        .upsert(User::new("u-9", "New", "new@example.com"))
        .unwrap()
        .is_none());
    assert_eq!(d.len(), 4);
    assert_eq!(d.remove("u-9").unwrap().id, "u-9");
    assert!(d.by_login("new@example.com").is_none());
}

#[test]
fn a_login_of_another_user_is_refused_and_changes_nothing() {
    let d = directory();
    let err = d
        .upsert(User::new("u-9", "Thief", "ADA@example.com"))
        .unwrap_err();
    assert_eq!(
        err,
        UsersError::EmailTaken {
            email: "ADA@example.com".into(),
            other: "u-1".into()
        }
    );
    assert!(d.get("u-9").is_none());
}

#[test]
fn duplicate_ids_and_unusable_fields_are_refused() {
    let twice = Directory::from_users([ada(), User::new("u-1", "Other", "o@example.com")]);
    assert_eq!(
        twice.unwrap_err(),
        UsersError::DuplicateId { id: "u-1".into() }
    );
    let d = Directory::new();
    for (user, field) in [
        (User::new("", "Empty", "e@example.com"), "id"),
        (User::new("a,b", "Comma", "c@example.com"), "id"),
        (User::new("u\r\nx", "Crlf", "c@example.com"), "id"),
        (User::new("u-5", "No at", "example.com"), "email"),
        (User::new("u-5", "Spaced", "a b@example.com"), "email"),
    ] {
        match d.upsert(user.clone()) {
            Err(UsersError::InvalidUser { field: f, .. }) => assert_eq!(f, field, "{user:?}"),
            other => panic!("{user:?}: {other:?}"),
        }
    }
    let mut bcrypt = User::new("u-6", "Bcrypt", "b@example.com");
    bcrypt.password_hash =
        Some("$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".into());
    assert!(matches!(
        d.upsert(bcrypt),
        Err(UsersError::InvalidUser {
            field: "password_hash",
            ..
        })
    ));
    assert!(d.is_empty());
}

#[test]
fn replace_all_swaps_every_user_or_none() {
    let d = directory();
    let bad = d.replace_all([
        User::new("x", "X", "x@example.com"),
        User::new("x", "Y", "y@example.com"),
    ]);
    assert!(bad.is_err());
    assert_eq!(d.len(), 3, "unchanged after a refused replacement");
    d.replace_all([User::new("x", "X", "x@example.com")])
        .unwrap();
    assert_eq!(d.len(), 1);
    assert!(d.by_login("ada@example.com").is_none());
}

// === serde ===

#[test]
fn a_user_with_every_field_round_trips_through_yaml() {
    let yaml = r#"
id: u-7
name: Grace Hopper
email: grace@example.com
status: disabled
roles: [super_admin, admin, user]
attributes:
  Business Unit: BU1
  Region: EMEA
licence: viewer
internal: true
can_impersonate: true
password_hash: $argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaA
"#;
    let user: User = serde_saphyr::from_str(yaml).unwrap();
    assert_eq!(user.status, UserStatus::Disabled);
    assert_eq!(user.roles, [Role::SuperAdmin, Role::Admin, Role::User]);
    assert_eq!(user.attributes["Business Unit"], "BU1");
    assert_eq!(user.licence, Licence::Viewer);
    assert!(user.internal && user.can_impersonate);
    let again: User = serde_saphyr::from_str(&serde_saphyr::to_string(&user).unwrap()).unwrap();
    assert_eq!(again, user);
    assert_eq!(
        serde_saphyr::to_string(&Licence::None).unwrap().trim(),
        "none"
    );
}

#[test]
fn a_user_written_with_only_required_fields_gets_the_defaults() {
    let user: User =
        serde_saphyr::from_str("id: u-8\nname: Min\nemail: min@example.com\n").unwrap();
    assert_eq!(user, User::new("u-8", "Min", "min@example.com"));
    assert!(user.is_active());
    assert_eq!(user.roles, [Role::User]);
    assert_eq!(user.licence, Licence::Full);
    assert!(user.attributes.is_empty() && !user.internal && !user.can_impersonate);
    assert!(user.password_hash.is_none());
}

#[test]
fn an_unknown_key_or_value_is_refused() {
    let unknown = "id: u\nname: n\nemail: e@x\npassword: hunter2\n";
    let err = serde_saphyr::from_str::<User>(unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `password`"), "{err}");
    let bad_role = "id: u\nname: n\nemail: e@x\nroles: [root]\n";
    assert!(serde_saphyr::from_str::<User>(bad_role).is_err());
    let bad_licence = "id: u\nname: n\nemail: e@x\nlicence: Full\n";
    assert!(serde_saphyr::from_str::<User>(bad_licence).is_err());
}

#[test]
fn debug_never_shows_the_password_hash() {
    let user = ada();
    let shown = format!("{user:?} {:#?}", user);
    assert!(!shown.contains("argon2"), "{shown}");
    let hash = user.password_hash.as_deref().unwrap();
    assert!(!shown.contains(hash), "{shown}");
    assert!(shown.contains("<redacted>"));
    assert!(format!("{:?}", directory()).contains("users: 3"));
}

#[test]
fn roles_print_as_in_the_file() {
    assert_eq!(ada().role_names(), ["user"]);
    assert_eq!(Role::SuperAdmin.to_string(), "super_admin");
}

fn paired(roles: &[&str]) -> User {
    let mut u = User::new("u-anna~initech", "Anna (paired)", "");
    u.origin = Origin::Paired;
    u.partner = Some("p-acme".into());
    u.paired = Some(Paired {
        partner_user: "u-anna".into(),
        tenant: "initech".into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    });
    u
}

#[test]
fn a_paired_user_never_holds_a_gateway_role_beyond_user() {
    assert!(paired(&["Partner User"]).check().is_ok());
    for roles in [
        vec![Role::Admin],
        vec![Role::User, Role::SuperAdmin],
        vec![],
    ] {
        let mut u = paired(&["Partner User"]);
        u.roles = roles;
        let err = u.check().unwrap_err();
        assert!(
            matches!(&err, UsersError::InvalidUser { field: "roles", .. }),
            "{err}"
        );
    }
}

#[test]
fn tenant_roles_are_items_the_roles_header_can_carry() {
    for ok in [
        "Partner User",
        "Viewer",
        "a",
        &"x".repeat(TENANT_ROLE_MAX_LEN),
    ] {
        assert!(check_tenant_role(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        " Viewer",
        "Viewer ",
        "A,B",
        "Zuschauer\u{e4}",
        "line\nbreak",
        &"x".repeat(TENANT_ROLE_MAX_LEN + 1),
    ] {
        assert!(check_tenant_role(bad).is_err(), "{bad:?}");
        let err = paired(&[bad]).check().unwrap_err();
        assert!(
            matches!(
                &err,
                UsersError::InvalidUser {
                    field: "paired.roles",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[test]
fn a_paired_user_stored_before_tenant_roles_still_loads() {
    let old = r#"{"id":"u-anna~initech","name":"Anna (paired)","email":"","origin":"paired","partner":"p-acme","paired":{"partner_user":"u-anna","tenant":"initech"}}"#;
    let u: User = serde_json::from_str(old).unwrap();
    assert_eq!(u.paired.unwrap().roles, Vec::<String>::new());
}
