//! The markup a page gets before `</body>`: the tab script and, while
//! impersonating, the banner.

use std::fmt::Write as _;
use std::sync::LazyLock;

use minijinja::{context, Environment};

/// What the snippet of one page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabView<'a> {
    /// The session the page is rendered for: its 12-character non-secret
    /// reference (`SessionRecord::reference`), which the script compares
    /// with the session the cookie holds later.
    pub session_ref: &'a str,
    /// The session's CSRF token, for the banner's "Return to admin" form.
    pub csrf_token: &'a str,
    /// Whom the page shows the app as (the effective user's name): a stale
    /// tab's notice says "You were signed out as NAME in this tab".
    pub user_name: &'a str,
    /// The impersonation banner; `None` for an ordinary session.
    pub banner: Option<Banner<'a>>,
}

/// The banner of a page viewed as someone else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner<'a> {
    /// The impersonated user's name.
    pub user_name: &'a str,
    /// Their partner's name, if they are a partner user.
    pub partner_name: Option<String>,
    /// Where "Return to admin" posts (the impersonation's stop endpoint).
    pub stop_path: &'a str,
}

/// The banner host's own style. Inline and `!important`, because an inline
/// important declaration beats every rule of the app's stylesheets
/// (element-attached styles sort before layers and specificity); `all:
/// initial` first undoes whatever the app says about `guise-banner` or
/// about properties it would inherit. `tab.css` repeats it as `:host`
/// rules, which win even over the app's `!important` ones and still apply
/// where a CSP without `'unsafe-inline'` drops this attribute.
pub(super) const HOST_STYLE: &str = "all:initial!important;display:block!important;\
position:fixed!important;top:0!important;left:0!important;right:0!important;\
z-index:2147483647!important;visibility:visible!important;opacity:1!important;\
pointer-events:auto!important;transform:none!important;margin:0!important";

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // `.html`: minijinja escapes every value for HTML.
    env.add_template("snippet.html", include_str!("snippet.html"))
        .expect("tab snippet template parses");
    env
});

/// The snippet for `view`, to insert before the page's `</body>`.
///
/// Every value is HTML-escaped, and the result is plain ASCII (anything
/// else as a character reference), so it reads the same whatever charset
/// the app's page is in.
pub fn snippet(view: &TabView<'_>) -> String {
    let banner = view.banner.as_ref().map(|b| {
        context! {
            user_name => b.user_name,
            partner_name => b.partner_name.as_deref().filter(|p| !p.is_empty()),
            stop_path => b.stop_path,
        }
    });
    let rendered = TEMPLATES.get_template("snippet.html").and_then(|t| {
        t.render(context! {
            session_ref => view.session_ref,
            user_name => view.user_name,
            csrf_token => view.csrf_token,
            csrf_field => crate::csrf::FIELD,
            host_style => HOST_STYLE,
            banner => banner,
        })
    });
    match rendered {
        Ok(html) => ascii(html),
        // The template is fixed and tested; a page without the snippet
        // still works, it only loses the tab checks.
        Err(e) => {
            tracing::error!(error = %e, "the tab snippet failed to render");
            String::new()
        }
    }
}

/// `html` with every non-ASCII character as a numeric character reference.
fn ascii(html: String) -> String {
    if html.is_ascii() {
        return html;
    }
    let mut out = String::with_capacity(html.len() + 16);
    for c in html.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let _ = write!(out, "&#x{:X};", c as u32);
        }
    }
    out
}
