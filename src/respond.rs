//! Answers the gateway writes itself: refusals and errors, as HTML for
//! browsers and JSON for API clients.
//!
//! The one place where a refusal becomes an HTTP response, so every stage
//! reports the same way: a status, a short title, and a sentence that says
//! what was refused and why.

use std::sync::LazyLock;

use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use serde::Serialize;

/// A response the gateway answers with instead of the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    #[serde(rename = "status")]
    pub status: u16,
    /// Short, stable, machine-readable reason (`upstream_unreachable`).
    pub error: &'static str,
    /// Human title (`Upstream unreachable`).
    #[serde(skip)]
    pub title: &'static str,
    /// What was refused and why, for a person.
    pub detail: String,
    /// A link for the HTML page (e.g. back to the login form).
    #[serde(skip)]
    pub action: Option<(String, String)>,
}

impl Refusal {
    pub fn new(
        status: u16,
        error: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Refusal {
            status,
            error,
            title,
            detail: detail.into(),
            action: None,
        }
    }

    pub fn with_action(mut self, href: impl Into<String>, label: impl Into<String>) -> Self {
        self.action = Some((href.into(), label.into()));
        self
    }
}

/// How the client wants to be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

impl Format {
    /// Browsers always list `text/html` in `Accept`; anything else (API
    /// clients, curl's `*/*`) gets JSON, which a program can read.
    pub fn of(req: &RequestHeader) -> Format {
        let accept = req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.contains("text/html") {
            Format::Html
        } else {
            Format::Json
        }
    }
}

static TEMPLATES: LazyLock<minijinja::Environment<'static>> = LazyLock::new(|| {
    let mut env = minijinja::Environment::new();
    env.add_template("refusal.html", include_str!("respond/refusal.html"))
        .expect("refusal template parses");
    env
});

/// The body and content type of `r` in `format`.
pub fn render(r: &Refusal, format: Format) -> (Bytes, &'static str) {
    match format {
        Format::Json => (
            Bytes::from(serde_json::to_vec(r).unwrap_or_default()),
            "application/json",
        ),
        Format::Html => {
            let (href, label) = r.action.clone().unwrap_or_default();
            let html = TEMPLATES
                .get_template("refusal.html")
                .and_then(|t| {
                    t.render(minijinja::context! {
                        status => r.status,
                        title => r.title,
                        detail => &r.detail,
                        action_href => href,
                        action_label => label,
                    })
                })
                .unwrap_or_else(|_| format!("{} {}", r.status, r.title));
            (Bytes::from(html), "text/html; charset=utf-8")
        }
    }
}

/// Write `r` to the client, keeping the connection alive.
pub async fn send_refusal(session: &mut Session, r: &Refusal) -> pingora::Result<()> {
    send_refusal_with(session, r, &[]).await
}

/// Headers to add to a gateway answer (e.g. `Set-Cookie`, `Retry-After`).
pub type Extra<'a> = &'a [(http::HeaderName, String)];

/// Write `r` with extra headers (a refusal that also clears a cookie, or
/// says when to retry).
pub async fn send_refusal_with(
    session: &mut Session,
    r: &Refusal,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    let format = Format::of(session.req_header());
    let (body, content_type) = render(r, format);
    let mut h = ResponseHeader::build(r.status, Some(4 + extra.len()))?;
    h.insert_header(http::header::CONTENT_TYPE, content_type)?;
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (k, v) in extra {
        h.append_header(k.clone(), v.as_str())?;
    }
    send(session, h, body).await
}

/// Answer with a JSON document.
pub async fn send_json(
    session: &mut Session,
    status: u16,
    value: &serde_json::Value,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    send_typed(
        session,
        status,
        "application/json",
        Bytes::from(value.to_string()),
        extra,
    )
    .await
}

/// Answer with an HTML page.
pub async fn send_html(
    session: &mut Session,
    status: u16,
    html: String,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    send_typed(
        session,
        status,
        "text/html; charset=utf-8",
        Bytes::from(html),
        extra,
    )
    .await
}

/// Redirect (303 after a form post, 302 otherwise) to a same-origin path.
pub async fn redirect(
    session: &mut Session,
    status: u16,
    location: &str,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    let mut all = vec![(http::header::LOCATION, location.to_string())];
    all.extend_from_slice(extra);
    send_typed(
        session,
        status,
        "text/plain; charset=utf-8",
        Bytes::new(),
        &all,
    )
    .await
}

async fn send_typed(
    session: &mut Session,
    status: u16,
    content_type: &str,
    body: Bytes,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(status, Some(3 + extra.len()))?;
    h.insert_header(http::header::CONTENT_TYPE, content_type)?;
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (k, v) in extra {
        h.append_header(k.clone(), v.as_str())?;
    }
    send(session, h, body).await
}

/// Write a whole response the gateway built itself.
pub async fn send(
    session: &mut Session,
    mut h: ResponseHeader,
    body: Bytes,
) -> pingora::Result<()> {
    h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    let head_only = session.req_header().method == http::Method::HEAD;
    session
        .write_response_header(Box::new(h), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(accept: &str) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.insert_header("accept", accept).unwrap();
        r
    }

    #[test]
    fn browsers_get_html_and_everyone_else_json() {
        assert_eq!(
            Format::of(&req("text/html,application/xhtml+xml,*/*;q=0.8")),
            Format::Html
        );
        assert_eq!(Format::of(&req("application/json")), Format::Json);
        assert_eq!(Format::of(&req("*/*")), Format::Json);
    }

    #[test]
    fn html_escapes_the_detail() {
        let r = Refusal::new(400, "bad", "Bad", "<script>x</script>");
        let (body, ct) = render(&r, Format::Html);
        let s = String::from_utf8(body.to_vec()).unwrap();
        assert!(ct.starts_with("text/html"));
        assert!(s.contains("&lt;script&gt;"));
        assert!(!s.contains("<script>x"));
    }

    #[test]
    fn json_names_status_error_and_detail() {
        let r = Refusal::new(502, "upstream_unreachable", "Upstream unreachable", "down");
        let (body, _) = render(&r, Format::Json);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], 502);
        assert_eq!(v["error"], "upstream_unreachable");
        assert_eq!(v["detail"], "down");
    }
}
