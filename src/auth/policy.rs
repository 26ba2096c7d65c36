//! Decisions about who may do what before any page is served, as pure
//! functions over the configuration and the request's facts, so each is
//! tested without I/O.

use http::Method;

use crate::config::Auth;
use crate::respond::Refuse;
use crate::routes::{Class, RouteSpec};
use crate::subject::Subject;
use crate::users::User;

/// A request that needs a signed-in user and has none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this page needs a signed-in user; sign in at {login} or POST credentials to /_guise/login"
)]
pub struct LoginRequired {
    /// The login page.
    pub login: String,
    /// Where the browser goes back to after login (path and query).
    pub next: String,
}

impl Refuse for LoginRequired {
    fn status(&self) -> u16 {
        401
    }
    fn code(&self) -> &'static str {
        "login_required"
    }
    fn title(&self) -> &'static str {
        "Sign-in required"
    }
    /// Browsers go to the login page, which brings them back here.
    fn redirect(&self) -> Option<String> {
        let next: String = url::form_urlencoded::byte_serialize(self.next.as_bytes()).collect();
        Some(format!("{}?next={next}", self.login))
    }
}

/// Whether a request is open to anyone: a public route, any route when
/// logins are not required, and what the gateway answers itself (its
/// endpoints check for themselves).
fn open_to_anyone(auth: &Auth, class: Class, route: Option<&RouteSpec>) -> bool {
    match class {
        Class::Route(_) | Class::Unmatched => {
            !auth.require_login || route.is_some_and(|r| r.public)
        }
        Class::Gateway | Class::Login | Class::Server => true,
    }
}

/// Whether the request can only go on once the gateway knows who is
/// asking: when the session store is down, such a request is refused (503)
/// instead of served as anonymous. Public pages and the login form keep
/// working through an outage.
pub fn needs_subject(
    auth: &Auth,
    class: Class,
    route: Option<&RouteSpec>,
    method: &Method,
) -> bool {
    match class {
        Class::Login => !matches!(*method, Method::GET | Method::HEAD),
        Class::Gateway => true,
        Class::Server => false,
        Class::Route(_) | Class::Unmatched => !open_to_anyone(auth, class, route),
    }
}

/// Pipeline stage 6: a request for a page that needs a session, without
/// one, is refused. `target` is the request's path and query, to come back
/// to after login.
pub fn require_login(
    auth: &Auth,
    class: Class,
    route: Option<&RouteSpec>,
    subject: Option<&Subject>,
    target: &str,
) -> Result<(), LoginRequired> {
    if subject.is_some() || open_to_anyone(auth, class, route) {
        return Ok(());
    }
    Err(LoginRequired {
        login: auth.login_path.clone(),
        next: target.to_string(),
    })
}

/// Whether `user`, whose password (or the app) just said yes, may start a
/// session.
pub fn may_log_in(user: &User) -> bool {
    user.is_active()
}

/// Whether a session of `user` may go on being used (the user may have
/// been disabled since login).
pub fn may_keep_session(user: &User) -> bool {
    user.is_active()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{LoginMode, PasswordChecks};
    use crate::session::Active;
    use crate::store::{SessionKey, SessionRecord};
    use crate::users::UserStatus;

    fn auth(require_login: bool) -> Auth {
        Auth {
            require_login,
            login_path: "/login".into(),
            after_login: "/".into(),
            mode: LoginMode::Gateway,
            max_attempts_per_user: 5,
            max_attempts_per_client: 30,
            max_attempts_per_user_total: 100,
            attempt_window: std::time::Duration::from_secs(300),
            device_cookie_lifetime: std::time::Duration::from_secs(86_400),
            password_checks: PasswordChecks {
                max_concurrent: 1,
                queue_timeout: std::time::Duration::from_secs(1),
            },
        }
    }

    fn route(public: bool) -> RouteSpec {
        RouteSpec {
            name: "r".into(),
            path: "/r".into(),
            methods: vec![],
            area: None,
            resource: None,
            action: None,
            export: false,
            personal_data: false,
            public,
            feature: None,
            records: Vec::new(),
            answer: Default::default(),
            body: Vec::new(),
        }
    }

    fn subject() -> Subject {
        let record = SessionRecord {
            user_id: "u".into(),
            reference: "r".into(),
            created_at: 0,
            last_seen: 0,
            absolute_expiry: u64::MAX,
            csrf_token: "c".into(),
            client_ip: None,
            extra: Default::default(),
        };
        Subject::own(
            Arc::new(User::new("u", "U", "u@x.test")),
            Active {
                key: SessionKey("k".into()),
                record: Arc::new(record),
                prepared: Arc::default(),
            },
        )
    }

    #[test]
    fn a_private_page_without_a_session_is_refused_and_sends_browsers_to_login() {
        let e = require_login(
            &auth(true),
            Class::Route(0),
            Some(&route(false)),
            None,
            "/r?x=1",
        )
        .unwrap_err();
        assert_eq!(e.status(), 401);
        assert_eq!(e.redirect().unwrap(), "/login?next=%2Fr%3Fx%3D1");
        assert!(require_login(&auth(true), Class::Unmatched, None, None, "/x").is_err());
    }

    #[test]
    fn public_routes_open_apps_and_sessions_pass() {
        let a = auth(true);
        assert!(require_login(&a, Class::Route(0), Some(&route(true)), None, "/r").is_ok());
        assert!(require_login(&auth(false), Class::Unmatched, None, None, "/x").is_ok());
        assert!(require_login(&a, Class::Unmatched, None, Some(&subject()), "/x").is_ok());
        assert!(require_login(&a, Class::Login, None, None, "/login").is_ok());
    }

    #[test]
    fn only_requests_that_need_a_user_are_refused_while_the_store_is_down() {
        let a = auth(true);
        assert!(needs_subject(&a, Class::Unmatched, None, &Method::GET));
        assert!(!needs_subject(
            &a,
            Class::Route(0),
            Some(&route(true)),
            &Method::GET
        ));
        assert!(!needs_subject(&a, Class::Login, None, &Method::GET));
        assert!(needs_subject(&a, Class::Login, None, &Method::POST));
        assert!(needs_subject(&a, Class::Gateway, None, &Method::GET));
        assert!(!needs_subject(
            &auth(false),
            Class::Unmatched,
            None,
            &Method::GET
        ));
    }

    #[test]
    fn disabled_users_may_neither_log_in_nor_keep_a_session() {
        let mut u = User::new("u", "U", "u@x.test");
        assert!(may_log_in(&u) && may_keep_session(&u));
        u.status = UserStatus::Disabled;
        assert!(!may_log_in(&u) && !may_keep_session(&u));
    }
}
