//! The welcome email: a subject, and a plain-text and an HTML body rendered
//! with minijinja. The HTML template escapes everything it is given (the
//! user's name is whatever an admin typed), the plain-text one nothing.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::Message;
use minijinja::{context, Environment};

use super::MailError;

/// What one welcome email says.
#[derive(Debug, Clone, Copy)]
pub struct Welcome<'a> {
    /// The user's display name.
    pub name: &'a str,
    /// The user's address, also their sign-in name.
    pub email: &'a str,
    /// The set-password link.
    pub link: &'a str,
    /// The site the account is for (the link's host).
    pub site: &'a str,
    /// How long the link works.
    pub lifetime: Duration,
}

/// The templates, built per message: welcome emails are rare, and a
/// template error then is an answer, not a panic at start-up.
fn templates() -> Result<Environment<'static>, minijinja::Error> {
    let mut env = Environment::new();
    // minijinja escapes templates by their name: `.html` for HTML, `.txt`
    // not at all.
    env.add_template("welcome.txt", include_str!("welcome.txt"))?;
    env.add_template("welcome.html", include_str!("welcome.html"))?;
    Ok(env)
}

/// The plain-text and HTML bodies of `w`.
pub fn render(w: &Welcome<'_>, subject: &str) -> Result<(String, String), MailError> {
    let compose = |e: minijinja::Error| MailError::Compose(e.to_string());
    let env = templates().map_err(compose)?;
    // minijinja's HTML escaping writes `/` as `&#x2f;`: right in an
    // attribute, but some mail clients show or break such a link. A link
    // without a character HTML gives meaning to goes in as it is (ours
    // always: an origin, a path and a base64url secret); any other is
    // escaped.
    let plain_link = !w.link.contains(['<', '>', '"', '\'', '&']);
    let link = if plain_link {
        minijinja::Value::from_safe_string(w.link.to_string())
    } else {
        minijinja::Value::from(w.link)
    };
    let ctx = context! {
        name => w.name,
        email => w.email,
        link => link,
        site => w.site,
        lifetime => human(w.lifetime),
        subject => subject,
    };
    let text = env
        .get_template("welcome.txt")
        .and_then(|t| t.render(&ctx))
        .map_err(compose)?;
    let html = env
        .get_template("welcome.html")
        .and_then(|t| t.render(&ctx))
        .map_err(compose)?;
    Ok((text, html))
}

/// The whole message from `from` to the user.
pub fn message(from: &Mailbox, subject: &str, w: &Welcome<'_>) -> Result<Message, MailError> {
    let address = w
        .email
        .parse()
        .map_err(|_| MailError::Address(w.email.to_string()))?;
    // A display name with line breaks or the like is left out rather than
    // trusted in a header; lettre encodes what remains.
    let name = (!w.name.trim().is_empty() && !w.name.chars().any(char::is_control))
        .then(|| w.name.to_string());
    let to = Mailbox::new(name, address);
    let (text, html) = render(w, subject)?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| MailError::Compose(e.to_string()))
}

/// `24 hours`, `30 minutes`, `1 hour 30 minutes`, `45 seconds`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs().max(1);
    let unit = |n: u64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m) {
        (0, 0) => unit(s, "second"),
        (0, m) => unit(m, "minute"),
        (h, 0) if h % 24 == 0 && h > 24 => unit(h / 24, "day"),
        (h, 0) => unit(h, "hour"),
        (h, m) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome(name: &'static str) -> Welcome<'static> {
        Welcome {
            name,
            email: "anna@acme.test",
            link: "https://gw.example/_guise/set-password?token=abc_-1",
            site: "gw.example",
            lifetime: Duration::from_secs(24 * 3600),
        }
    }

    #[test]
    fn the_html_body_escapes_the_users_name_and_the_text_body_keeps_it() {
        let (text, html) = render(&welcome("<b>Anna</b> & \"Co\""), "Set your password").unwrap();
        assert!(
            html.contains("&lt;b&gt;Anna&lt;&#x2f;b&gt; &amp; &quot;Co&quot;"),
            "{html}"
        );
        assert!(!html.contains("<b>Anna"));
        assert!(text.contains("Hello <b>Anna</b> & \"Co\","), "{text}");
        assert!(html.contains("href=\"https://gw.example/_guise/set-password?token=abc_-1\""));
        for body in [&text, &html] {
            assert!(body.contains("https://gw.example/_guise/set-password?token=abc_-1"));
            assert!(body.contains("24 hours"));
            assert!(body.contains("anna@acme.test"));
        }
    }

    #[test]
    fn a_link_with_characters_html_gives_meaning_to_is_escaped() {
        let mut w = welcome("Anna");
        w.link = "https://gw.example/\"><script>x</script>";
        let (_, html) = render(&w, "s").unwrap();
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn the_message_goes_to_the_user_with_both_bodies() {
        let from: Mailbox = "Guise <guise@gw.example>".parse().unwrap();
        let m = message(&from, "Set your password", &welcome("Anna Acme")).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("To: \"Anna Acme\" <anna@acme.test>"), "{raw}");
        assert!(raw.contains("From: Guise <guise@gw.example>"), "{raw}");
        assert!(raw.contains("Subject: Set your password"));
        assert!(raw.contains("multipart/alternative"));
        assert!(raw.contains("text/plain") && raw.contains("text/html"));
        assert_eq!(m.envelope().to().len(), 1);
    }

    #[test]
    fn a_name_that_could_break_a_header_is_left_out_and_a_bad_address_refused() {
        let from: Mailbox = "guise@gw.example".parse().unwrap();
        let m = message(&from, "s", &welcome("Anna\r\nBcc: evil@x.test")).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        let head = raw.split("\r\n\r\n").next().unwrap();
        assert!(head.contains("To: anna@acme.test"), "{raw}");
        assert!(!head.contains("Bcc:"), "{head}");
        let mut w = welcome("Anna");
        w.email = "not an address";
        assert!(matches!(
            message(&from, "s", &w),
            Err(MailError::Address(_))
        ));
    }

    #[test]
    fn lifetimes_read_as_people_say_them() {
        let h = |s: u64| human(Duration::from_secs(s));
        assert_eq!(h(24 * 3600), "24 hours");
        assert_eq!(h(3600), "1 hour");
        assert_eq!(h(90 * 60), "1 hour 30 minutes");
        assert_eq!(h(15 * 60), "15 minutes");
        assert_eq!(h(2), "2 seconds");
        assert_eq!(h(0), "1 second");
        assert_eq!(h(7 * 24 * 3600), "7 days");
    }
}
