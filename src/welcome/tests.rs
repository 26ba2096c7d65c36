use std::sync::Arc;
use std::time::Duration;

use super::link::*;
use super::LinkError;
use crate::store::memory::MemoryStore;
use crate::store::Store;
use crate::users::{User, UserStatus};

const NOW: u64 = 1_700_000_000;
const DAY: Duration = Duration::from_secs(24 * 3600);

fn anna() -> User {
    let mut u = User::new("u-anna", "Anna Acme", "anna@acme.test");
    u.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".into());
    u
}

fn directory_of(user: &User) -> impl Fn(&str) -> Option<Arc<User>> + '_ {
    move |id| (id == user.id).then(|| Arc::new(user.clone()))
}

fn stored(i: &Issued) -> String {
    serde_json::to_string(&i.record).unwrap()
}

#[test]
fn a_link_is_kept_under_a_hash_of_its_secret_and_never_the_secret() {
    let i = issue(&anna(), "u-admin", NOW, DAY);
    assert_eq!(i.secret.len(), 43);
    assert_eq!(key_of(&i.secret).as_deref(), Some(i.key.as_str()));
    assert!(!i.key.contains(&i.secret));
    assert!(!stored(&i).contains(&i.secret));
    assert!(!stored(&i).contains("argon2"), "no password hash either");
    assert_eq!(i.record.user, "u-anna");
    assert_eq!(i.record.issued_by, "u-admin");
    assert_eq!(i.record.expires_at, NOW + 24 * 3600);
    assert_eq!(i.keep_for, DAY + REMEMBERED_AFTER_EXPIRY);
    let other = issue(&anna(), "u-admin", NOW, DAY);
    assert_ne!(other.secret, i.secret, "each link has its own secret");
}

#[test]
fn a_secret_we_did_not_make_has_no_key() {
    for bad in [
        "",
        "short",
        &"a".repeat(44),
        &format!("{}!", "a".repeat(42)),
    ] {
        assert_eq!(key_of(bad), None, "{bad:?}");
    }
}

#[test]
fn a_lifetime_is_rounded_up_to_whole_seconds() {
    let i = issue(&anna(), "a", NOW, Duration::from_millis(1500));
    assert_eq!(i.record.expires_at, NOW + 2);
    let i = issue(&anna(), "a", NOW, Duration::from_millis(1));
    assert_eq!(i.record.expires_at, NOW + 1);
}

#[test]
fn a_live_link_works_until_its_deadline_and_is_expired_from_then_on() {
    let user = anna();
    let i = issue(&user, "u-admin", NOW, DAY);
    let s = stored(&i);
    let (record, who) = judge(Some(&s), NOW, directory_of(&user)).unwrap();
    assert_eq!(record, i.record);
    assert_eq!(who.id, "u-anna");
    assert!(judge(Some(&s), i.record.expires_at - 1, directory_of(&user)).is_ok());
    assert!(matches!(
        judge(Some(&s), i.record.expires_at, directory_of(&user)),
        Err(LinkError::Expired)
    ));
}

#[test]
fn a_spent_link_says_used_and_an_unknown_one_says_not_valid() {
    let user = anna();
    assert!(matches!(
        judge(Some(&spent_marker(NOW)), NOW, directory_of(&user)),
        Err(LinkError::Used)
    ));
    assert!(matches!(
        judge(None, NOW, directory_of(&user)),
        Err(LinkError::Unknown)
    ));
    assert!(matches!(
        judge(Some("{\"other\":1}"), NOW, directory_of(&user)),
        Err(LinkError::Unknown)
    ));
}

#[test]
fn a_link_stops_working_once_the_password_changed_some_other_way() {
    let mut user = anna();
    let s = stored(&issue(&user, "u-admin", NOW, DAY));
    user.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$b3RoZXI$b3RoZXI".into());
    assert!(matches!(
        judge(Some(&s), NOW, directory_of(&user)),
        Err(LinkError::Superseded)
    ));
    // A user without a password yet: the first password set ends the link.
    let mut fresh = anna();
    fresh.password_hash = None;
    let s = stored(&issue(&fresh, "u-admin", NOW, DAY));
    assert!(judge(Some(&s), NOW, directory_of(&fresh)).is_ok());
    fresh.password_hash = Some("x".into());
    assert!(matches!(
        judge(Some(&s), NOW, directory_of(&fresh)),
        Err(LinkError::Superseded)
    ));
}

#[test]
fn a_link_of_a_disabled_or_removed_user_does_not_work() {
    let mut user = anna();
    let s = stored(&issue(&user, "u-admin", NOW, DAY));
    user.status = UserStatus::Disabled;
    assert!(matches!(
        judge(Some(&s), NOW, directory_of(&user)),
        Err(LinkError::AccountUnavailable)
    ));
    assert!(matches!(
        judge(Some(&s), NOW, |_| None),
        Err(LinkError::AccountUnavailable)
    ));
}

#[tokio::test]
async fn of_two_uses_racing_exactly_one_sets_the_password() {
    let user = anna();
    let store = Arc::new(MemoryStore::new());
    let i = issue(&user, "u-admin", NOW, DAY);
    store
        .put_once(&i.key, &stored(&i), i.keep_for)
        .await
        .unwrap();
    let use_it = || {
        let (store, key) = (store.clone(), i.key.clone());
        let user = user.clone();
        tokio::spawn(async move {
            let old = store.swap_once(&key, &spent_marker(NOW)).await.unwrap();
            judge(old.as_deref(), NOW, directory_of(&user)).map(|_| ())
        })
    };
    let (a, b) = (use_it(), use_it());
    let results = [a.await.unwrap(), b.await.unwrap()];
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results.iter().any(|r| matches!(r, Err(LinkError::Used))));
}

#[test]
fn a_new_password_must_be_typed_twice_long_enough_and_not_the_email() {
    let ok = "a long enough passphrase";
    assert_eq!(check_new_password(ok, ok, "anna@acme.test"), Ok(()));
    assert!(
        check_new_password(ok, "a long enough passphrasE", "a@x.test")
            .unwrap_err()
            .contains("differ")
    );
    let short = "elevenchars";
    assert!(check_new_password(short, short, "a@x.test")
        .unwrap_err()
        .contains("at least 12"));
    let spaces = format!("  {}  ", "x".repeat(10));
    assert!(check_new_password(&spaces, &spaces, "a@x.test").is_err());
    let long = "x".repeat(257);
    assert!(check_new_password(&long, &long, "a@x.test")
        .unwrap_err()
        .contains("at most"));
    let email = "Anna.Acme@acme.test";
    assert!(check_new_password(email, email, "anna.acme@acme.test")
        .unwrap_err()
        .contains("email"));
}
