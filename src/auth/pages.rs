//! The gateway's own pages: the login form, the sign-out confirmation, and
//! the set-password form a welcome email links to.

use std::sync::LazyLock;

use minijinja::{context, Environment};

static PAGES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Both pages extend one card layout, so they look alike.
    env.add_template("card.html", include_str!("card.html"))
        .expect("card layout parses");
    env.add_template("login.html", include_str!("login.html"))
        .expect("login template parses");
    env.add_template("signed_out.html", include_str!("signed_out.html"))
        .expect("sign-out template parses");
    env.add_template("set_password.html", include_str!("set_password.html"))
        .expect("set-password template parses");
    env
});

/// What the login form shows.
pub struct LoginForm<'a> {
    pub action: &'a str,
    pub csrf_token: &'a str,
    pub next: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// Good news to show above the form (a password was just set).
    pub notice: Option<&'a str>,
}

pub fn login(form: &LoginForm<'_>) -> String {
    render(
        "login.html",
        context! {
            app_name => "Sign in to continue to the application",
            action => form.action,
            csrf_token => form.csrf_token,
            next => form.next,
            username => form.username,
            error => form.error,
            notice => form.notice,
        },
    )
}

/// What the set-password form shows.
pub struct SetPasswordForm<'a> {
    pub action: &'a str,
    pub csrf_token: &'a str,
    /// The link's secret, carried in a hidden field so the form's own
    /// address holds none.
    pub token: &'a str,
    pub email: &'a str,
    pub min_length: usize,
    pub error: Option<&'a str>,
}

pub fn set_password(form: &SetPasswordForm<'_>) -> String {
    render(
        "set_password.html",
        context! {
            action => form.action,
            csrf_token => form.csrf_token,
            token => form.token,
            email => form.email,
            min_length => form.min_length,
            error => form.error,
        },
    )
}

pub fn sign_out(email: &str, csrf_token: &str) -> String {
    render(
        "signed_out.html",
        context! { email => email, csrf_token => csrf_token },
    )
}

fn render(name: &str, ctx: minijinja::Value) -> String {
    PAGES
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| format!("page {name} failed to render: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_form_escapes_what_the_user_typed() {
        let html = login(&LoginForm {
            action: "/login",
            csrf_token: "tok",
            next: "/x\"><script>",
            username: "<b>me</b>",
            error: Some("Wrong email or password."),
            notice: None,
        });
        assert!(html.contains("name=\"csrf_token\" value=\"tok\""));
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;b&gt;me&lt;"));
        assert!(!html.contains("<b>me"));
        assert!(html.contains("Wrong email or password."));
    }

    #[test]
    fn the_set_password_form_carries_the_token_hidden_and_escapes_the_email() {
        let html = set_password(&SetPasswordForm {
            action: "/_guise/set-password",
            csrf_token: "tok",
            token: "secret_-1",
            email: "<i>a</i>@x.test",
            min_length: 12,
            error: Some("The passwords differ."),
        });
        assert!(html.contains("name=\"token\" value=\"secret_-1\""));
        assert!(html.contains("name=\"csrf_token\" value=\"tok\""));
        // minijinja writes `/` as `&#x2f;`, which the browser reads back.
        assert!(html.contains("action=\"&#x2f;_guise&#x2f;set-password\""));
        assert!(!html.contains("<i>a"));
        assert!(html.contains("minlength=\"12\""));
        assert!(html.contains("The passwords differ."));
    }
}
