//! Who a request runs as: the [`Subject`].
//!
//! A subject names two users and the session that joins them: the *actor*,
//! the person at the keyboard, and the *effective* user, whom the request
//! runs as. They are the same user for an ordinary session; they differ
//! while an admin views the app as a partner user (impersonation), and the
//! upstream is told both. Later stages (partners, permissions) read the
//! effective user; the audit names the actor.
//!
//! The identity headers the upstream receives are made from the subject
//! here, once per session and source values (see
//! [`crate::identity::PreparedFrom`]), and signed per request.

use std::any::Any;
use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::identity::{names, same_value, IdentityError, IdentityHeaders, PreparedFrom, Signer};
use crate::session::Active;
use crate::users::User;

/// The session extra field that names the effective user while an admin
/// impersonates (see [`crate::impersonation`]); the session's own user is
/// the admin.
pub const IMPERSONATED_USER: &str = "imp.user";

/// Who a request runs as, and the session that says so.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The person acting: the signed-in user, or the admin while
    /// impersonating.
    pub actor: Arc<User>,
    /// Whom the request runs as: the actor, or the impersonated user.
    pub effective: Arc<User>,
    /// The session behind the request's cookie.
    pub session: Active,
}

impl Subject {
    /// An ordinary session: the user acts as themselves.
    pub fn own(user: Arc<User>, session: Active) -> Subject {
        Subject {
            actor: user.clone(),
            effective: user,
            session,
        }
    }

    /// The actor viewing the app as `effective` (impersonation).
    pub fn impersonating(actor: Arc<User>, effective: Arc<User>, session: Active) -> Subject {
        Subject {
            actor,
            effective,
            session,
        }
    }

    /// The user id the session impersonates, if any.
    pub fn impersonated_id(session: &Active) -> Option<&str> {
        session
            .record
            .extra
            .get(IMPERSONATED_USER)
            .map(String::as_str)
    }

    /// Whether the actor is acting as someone else.
    pub fn is_impersonating(&self) -> bool {
        self.actor.id != self.effective.id
    }

    /// Put the identity headers and their signature on `req`, signed over
    /// the method and path it carries now.
    pub fn sign_onto(
        &self,
        req: &mut RequestHeader,
        signer: &Signer,
        unix_now: u64,
    ) -> Result<(), IdentityError> {
        let prepared = self.session.prepared.get_or_prepare(self, signer)?;
        signer.sign_prepared(req, &prepared, unix_now)
    }
}

/// The identity headers come from the effective user, the actor (when they
/// differ) and the session's reference, which is fixed for the slot's life.
impl PreparedFrom for Subject {
    fn sources(&self) -> Vec<Arc<dyn Any + Send + Sync>> {
        vec![self.effective.clone(), self.actor.clone()]
    }

    fn is_from(&self, held: &[Arc<dyn Any + Send + Sync>]) -> bool {
        matches!(held, [e, a] if same_value(e, &self.effective) && same_value(a, &self.actor))
    }

    fn headers(&self) -> Result<IdentityHeaders, IdentityError> {
        let user = &self.effective;
        let mut h = IdentityHeaders::new();
        h.push(names::USER, &user.id)?;
        // A user the app owns may have no address on record; an empty
        // header would tell the app nothing.
        if !user.email.is_empty() {
            h.push(names::USER_EMAIL, &user.email)?;
        }
        // A paired user acts inside one client tenant of the app: the app
        // is told its roles there (the app's names), not the gateway role
        // `user` every paired user holds.
        match &user.paired {
            Some(paired) => h.push_list(names::ROLES, &paired.roles)?,
            None => h.push_list(names::ROLES, &user.role_names())?,
        };
        h.push(names::SESSION, &self.session.record.reference)?;
        if self.is_impersonating() {
            h.push(names::IMPERSONATOR, &self.actor.id)?;
        }
        // Partner users: the app may narrow its own pages further and pick
        // the partner 360 layout; the gateway has already enforced both.
        if let Some(partner) = &user.partner {
            h.push(names::PARTNER, partner)?;
            if let Some(layout) = &user.layout {
                h.push(names::LAYOUT, layout)?;
            }
        }
        if let Some(paired) = &user.paired {
            h.push(names::TENANT, &paired.tenant)?;
            h.push(names::PAIRED, "1")?;
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{verify, Verified, DEFAULT_MAX_SKEW};
    use crate::store::{SessionKey, SessionRecord};

    const KEY: &[u8] = b"subject-test-key-0123456789abcdef";

    fn session() -> Active {
        Active {
            key: SessionKey("k".repeat(64)),
            record: Arc::new(SessionRecord {
                user_id: "u-ada".into(),
                reference: "0123456789ab".into(),
                created_at: 0,
                last_seen: 0,
                absolute_expiry: u64::MAX,
                csrf_token: "t".into(),
                client_ip: None,
                extra: Default::default(),
            }),
            prepared: Arc::default(),
        }
    }

    fn signed(s: &Subject) -> Vec<(String, String)> {
        let signer = Signer::new(KEY, "x-guise-");
        let mut req = RequestHeader::build("GET", b"/api/x", None).unwrap();
        s.sign_onto(&mut req, &signer, 1_800_000_000).unwrap();
        let Ok(Verified::Signed(id)) = verify(
            KEY,
            "x-guise-",
            "GET",
            "/api/x",
            &req.headers,
            1_800_000_000,
            DEFAULT_MAX_SKEW,
        ) else {
            panic!("signature does not verify")
        };
        id.headers().to_vec()
    }

    #[test]
    fn an_own_session_names_the_user_and_no_impersonator() {
        let ada = Arc::new(User::new("u-ada", "Ada", "ada@example.com"));
        let h = signed(&Subject::own(ada, session()));
        assert!(h.contains(&("user".into(), "u-ada".into())));
        assert!(h.contains(&("session".into(), "0123456789ab".into())));
        assert!(!h.iter().any(|(k, _)| k == "impersonator"));
    }

    #[test]
    fn impersonation_names_both_and_the_signature_covers_both() {
        let admin = Arc::new(User::new("u-admin", "Admin", "admin@example.com"));
        let anna = Arc::new(User::new("u-anna", "Anna", "anna@acme.test"));
        let s = Subject {
            actor: admin,
            effective: anna,
            session: session(),
        };
        assert!(s.is_impersonating());
        let h = signed(&s);
        assert!(h.contains(&("user".into(), "u-anna".into())));
        assert!(h.contains(&("impersonator".into(), "u-admin".into())));
    }

    #[test]
    fn the_prepared_headers_follow_every_source() {
        let ada = Arc::new(User::new("u-ada", "Ada", "ada@example.com"));
        let s = Subject::own(ada.clone(), session());
        assert_eq!(signed(&s).len(), 4);
        // The same session, now impersonating: the actor changed, so the
        // slot must not serve the headers it holds.
        let anna = Arc::new(User::new("u-anna", "Anna", "anna@acme.test"));
        let mut moved = s.clone();
        moved.effective = anna;
        assert!(signed(&moved).contains(&("impersonator".into(), "u-ada".into())));
        // An edited user is a new value.
        let mut edited = (*ada).clone();
        edited.email = "ada@new.example".into();
        let again = Subject::own(Arc::new(edited), s.session.clone());
        assert!(signed(&again).contains(&("user-email".into(), "ada@new.example".into())));
    }

    #[test]
    fn a_partner_user_is_sent_with_partner_and_layout_signed() {
        let mut anna = User::new("u-anna", "Anna", "anna@acme.test");
        anna.partner = Some("p-acme".into());
        anna.layout = Some("partner-360".into());
        let h = signed(&Subject::own(Arc::new(anna), session()));
        assert!(h.contains(&("partner".into(), "p-acme".into())), "{h:?}");
        assert!(
            h.contains(&("layout".into(), "partner-360".into())),
            "{h:?}"
        );
        assert!(!h.iter().any(|(k, _)| k == "paired" || k == "tenant"));
        let plain = signed(&Subject::own(
            Arc::new(User::new("u-ada", "Ada", "ada@example.com")),
            session(),
        ));
        assert!(!plain.iter().any(|(k, _)| k == "partner" || k == "layout"));
    }

    #[test]
    fn a_paired_user_is_sent_with_its_tenant_roles_signed_and_nobody_else_is() {
        let mut ghost = User::new("u-anna~initech", "Anna (paired)", "");
        ghost.partner = Some("p-acme".into());
        ghost.paired = Some(crate::users::Paired {
            partner_user: "u-anna".into(),
            tenant: "initech".into(),
            roles: vec!["Partner User".into(), "Viewer".into()],
        });
        let h = signed(&Subject::own(Arc::new(ghost), session()));
        assert!(
            h.contains(&("roles".into(), "Partner User,Viewer".into())),
            "{h:?}"
        );
        assert!(h.contains(&("tenant".into(), "initech".into())), "{h:?}");
        assert!(h.contains(&("paired".into(), "1".into())), "{h:?}");
        let mut ada = User::new("u-ada", "Ada", "ada@example.com");
        ada.roles = vec![crate::users::Role::Admin, crate::users::Role::User];
        let plain = signed(&Subject::own(Arc::new(ada), session()));
        assert!(plain.contains(&("roles".into(), "admin,user".into())));
        assert_eq!(plain.len(), 4, "{plain:?}");
    }
}
