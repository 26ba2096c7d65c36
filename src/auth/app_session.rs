//! Keeping the app's own session in step with guise's.
//!
//! In upstream mode the app keeps a session of its own (Django's
//! `sessionid`). Two sessions that live apart make trouble: the app's
//! logout leaves guise's session alive, and a browser whose guise session
//! ended but whose app session did not is bounced between guise's "sign in
//! first" and the app's "you are signed in already" forever. So:
//!
//! - a request to the app's `logout_path` that the app answers successfully
//!   ends guise's session too;
//! - when guise's session ends (its own logout, a revocation, expiry), the
//!   next answer to that browser expires the app's session cookies
//!   (`app_session_cookies`) with it, and the request itself goes to the
//!   app without them;
//! - a request on the login path with an app session cookie but no guise
//!   session has the app's cookies taken off and expired, so the app shows
//!   its form instead of sending the browser back.
//!
//! In any mode, a session cookie that names no live session is cleared,
//! so a dead cookie costs one store lookup, not one per request.

use http::header::SET_COOKIE;
use http::HeaderName;
use pingora::http::RequestHeader;

use crate::config::{Auth, LoginMode};
use crate::routes::Class;
use crate::session::cookie;
use crate::subject::Subject;

/// What this request needs done to keep the two sessions in step.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Take the app's session cookies off the request bound upstream.
    pub strip_app_cookies: bool,
    /// `Set-Cookie` headers every answer to this request carries.
    pub set_cookies: Vec<(HeaderName, String)>,
    /// The request is the app's logout: end guise's session when the app
    /// answers it successfully.
    pub end_on_success: bool,
}

/// `Set-Cookie` headers that expire the app's cookies `names` (at path
/// `/`, where apps keep session cookies).
pub fn expire(names: &[String], https: bool) -> Vec<(HeaderName, String)> {
    names
        .iter()
        .map(|n| {
            let mut c = ::cookie::Cookie::build((n.clone(), ""))
                .path("/")
                .secure(https)
                .build();
            c.make_removal();
            (SET_COOKIE, c.to_string())
        })
        .collect()
}

/// Decide for one request. `session_cookie` is the name guise's session
/// cookie has on this connection; `subject` what stage 4 found; `path` the
/// request path in normal form.
pub fn plan(
    auth: &Auth,
    class: Class,
    path: &str,
    req: &RequestHeader,
    session_cookie: &str,
    subject: Option<&Subject>,
    https: bool,
) -> Plan {
    let mut plan = Plan::default();
    let dead_cookie = subject.is_none() && cookie::read(req, session_cookie).is_some();
    if dead_cookie {
        plan.set_cookies
            .push((SET_COOKIE, cookie::clear(session_cookie, https)));
    }
    let LoginMode::Upstream(cfg) = &auth.mode else {
        return plan;
    };
    let carries_app_session = cfg
        .app_session_cookies
        .iter()
        .any(|n| cookie::read(req, n).is_some());
    let orphaned = subject.is_none() && (dead_cookie || class == Class::Login);
    if orphaned && carries_app_session {
        plan.strip_app_cookies = true;
        plan.set_cookies
            .extend(expire(&cfg.app_session_cookies, https));
    }
    if subject.is_some()
        && cfg
            .logout_path
            .as_deref()
            .is_some_and(|p| trim_slash(p) == trim_slash(path))
    {
        plan.end_on_success = true;
    }
    plan
}

fn trim_slash(p: &str) -> &str {
    if p.len() > 1 {
        p.strip_suffix('/').unwrap_or(p)
    } else {
        p
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::{AppCookies, PasswordChecks, UpstreamLogin, UserIdSource};
    use crate::session::Active;
    use crate::store::{SessionKey, SessionRecord};
    use crate::users::User;

    fn auth(upstream: bool) -> Auth {
        let mode = if upstream {
            LoginMode::Upstream(Box::new(UpstreamLogin {
                success_status: vec![302],
                success_cookie: Some("sessionid".into()),
                username_fields: vec!["username".into()],
                user_id: UserIdSource::Username,
                app_cookies: AppCookies::Pass,
                app_session_cookies: vec!["sessionid".into()],
                logout_path: Some("/admin/logout/".into()),
                provision: None,
            }))
        } else {
            LoginMode::Gateway
        };
        Auth {
            require_login: true,
            login_path: "/admin/login/".into(),
            after_login: "/".into(),
            mode,
            max_attempts_per_user: 5,
            max_attempts_per_client: 30,
            max_attempts_per_user_total: 100,
            attempt_window: Duration::from_secs(300),
            device_cookie_lifetime: Duration::from_secs(86_400),
            password_checks: PasswordChecks {
                max_concurrent: 1,
                queue_timeout: Duration::from_secs(1),
            },
        }
    }

    fn req(cookies: &str) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        if !cookies.is_empty() {
            r.insert_header("cookie", cookies).unwrap();
        }
        r
    }

    fn subject() -> Subject {
        Subject::own(
            Arc::new(User::new("u", "U", "")),
            Active {
                key: SessionKey("k".into()),
                record: Arc::new(SessionRecord {
                    user_id: "u".into(),
                    reference: "r".into(),
                    created_at: 0,
                    last_seen: 0,
                    absolute_expiry: u64::MAX,
                    csrf_token: "c".into(),
                    client_ip: None,
                    extra: Default::default(),
                }),
                prepared: Arc::default(),
            },
        )
    }

    #[test]
    fn a_dead_guise_cookie_takes_the_apps_session_with_it() {
        let p = plan(
            &auth(true),
            Class::Unmatched,
            "/admin/",
            &req("guise_session=dead; sessionid=abc"),
            "guise_session",
            None,
            false,
        );
        assert!(p.strip_app_cookies);
        let set: Vec<&str> = p.set_cookies.iter().map(|(_, v)| v.as_str()).collect();
        assert!(set
            .iter()
            .any(|c| c.starts_with("guise_session=") && c.contains("Max-Age=0")));
        assert!(set
            .iter()
            .any(|c| c.starts_with("sessionid=") && c.contains("Max-Age=0")));
    }

    #[test]
    fn the_login_page_with_only_an_app_session_gets_the_form_not_a_loop() {
        let p = plan(
            &auth(true),
            Class::Login,
            "/admin/login/",
            &req("sessionid=abc"),
            "guise_session",
            None,
            false,
        );
        assert!(p.strip_app_cookies);
        assert_eq!(p.set_cookies.len(), 1);
        // No app cookie: nothing to do.
        let p = plan(
            &auth(true),
            Class::Login,
            "/admin/login/",
            &req(""),
            "guise_session",
            None,
            false,
        );
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn the_apps_logout_ends_guises_session_and_live_sessions_are_left_alone() {
        let s = subject();
        let p = plan(
            &auth(true),
            Class::Unmatched,
            "/admin/logout",
            &req("guise_session=x; sessionid=abc"),
            "guise_session",
            Some(&s),
            false,
        );
        assert!(p.end_on_success && !p.strip_app_cookies && p.set_cookies.is_empty());
        let p = plan(
            &auth(true),
            Class::Unmatched,
            "/admin/",
            &req("guise_session=x; sessionid=abc"),
            "guise_session",
            Some(&s),
            false,
        );
        assert_eq!(p, Plan::default());
    }

    #[test]
    fn gateway_mode_only_clears_a_dead_guise_cookie() {
        let p = plan(
            &auth(false),
            Class::Unmatched,
            "/x",
            &req("guise_session=dead; sessionid=abc"),
            "guise_session",
            None,
            true,
        );
        assert!(!p.strip_app_cookies);
        assert_eq!(p.set_cookies.len(), 1);
        assert!(p.set_cookies[0].1.contains("Secure"));
    }
}
