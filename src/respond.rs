//! Answers the gateway writes itself: refusals, pages, JSON and redirects.
//!
//! Every module's error type implements [`Refuse`]: its status, a stable
//! code and a title, with its `Display` as the sentence that says what was
//! refused and why. [`refuse`] is the one place such an error becomes an
//! HTTP response, as HTML for browsers and JSON for API clients, so no call
//! site picks a status by hand and every stage reports the same way.
//!
//! Every answer written here carries the same protective headers
//! ([`Replies`]): no framing, no content sniffing, no referrer to other
//! sites, and HSTS over HTTPS when configured.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use serde::Serialize;

/// An error a person gets to see: every module's refusals implement it.
pub trait Refuse: std::fmt::Display + Send + Sync {
    /// HTTP status of the answer.
    fn status(&self) -> u16;
    /// Short, stable, machine-readable reason (`upstream_unreachable`).
    fn code(&self) -> &'static str;
    /// Human title for the HTML page; by default the status's reason phrase.
    fn title(&self) -> &'static str {
        http::StatusCode::from_u16(self.status())
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Refused")
    }
    /// Headers the answer needs (`Retry-After`, a cookie to clear).
    fn headers(&self) -> Vec<(HeaderName, String)> {
        Vec::new()
    }
    /// Where a browser is sent instead of being shown the refusal (the
    /// login page for a request that needs a session).
    fn redirect(&self) -> Option<String> {
        None
    }
    /// A link for the HTML page (back to the login form, say).
    fn action(&self) -> Option<(String, String)> {
        None
    }
}

/// A refusal as rendered: what the JSON body says and the HTML page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
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
    /// The rendered form of `r`.
    pub fn of(r: &dyn Refuse) -> Refusal {
        Refusal {
            status: r.status(),
            error: r.code(),
            title: r.title(),
            detail: r.to_string(),
            action: r.action(),
        }
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

/// Headers every answer of the gateway's own carries, made once per
/// configuration.
#[derive(Debug, Clone, Default)]
pub struct Replies {
    /// `Strict-Transport-Security` for HTTPS answers, if configured.
    pub hsts: Option<HeaderValue>,
}

impl Replies {
    /// Put the protective headers on `h`, an answer of the gateway's own
    /// that is not written through [`send`] (a stream, a 304).
    pub(crate) fn protect(&self, h: &mut ResponseHeader, https: bool) -> pingora::Result<()> {
        h.insert_header(http::header::X_FRAME_OPTIONS, "DENY")?;
        h.insert_header(
            http::header::CONTENT_SECURITY_POLICY,
            "frame-ancestors 'none'",
        )?;
        h.insert_header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")?;
        h.insert_header(http::header::REFERRER_POLICY, "same-origin")?;
        if let (true, Some(v)) = (https, &self.hsts) {
            h.insert_header(http::header::STRICT_TRANSPORT_SECURITY, v.clone())?;
        }
        Ok(())
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

/// Headers to add to a gateway answer (e.g. `Set-Cookie`).
pub type Extra<'a> = &'a [(HeaderName, String)];

/// Replace the upstream's answer header `resp` with refusal `r`; the body
/// to send in place of the upstream's (a response filter refusing an
/// answer at its header).
pub fn replace_answer(
    resp: &mut ResponseHeader,
    r: &dyn Refuse,
    format: Format,
) -> pingora::Result<Bytes> {
    let (body, content_type) = render(&Refusal::of(r), format);
    let mut fresh = ResponseHeader::build(r.status(), Some(4))?;
    fresh.insert_header(http::header::CONTENT_TYPE, content_type)?;
    fresh.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    fresh.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    *resp = fresh;
    Ok(body)
}

/// Answer `r`: a redirect for browsers when it names one, else its status
/// with the reason as HTML or JSON by `Accept`.
pub async fn refuse(s: &mut Session, replies: &Replies, r: &dyn Refuse) -> pingora::Result<()> {
    refuse_with(s, replies, r, &[]).await
}

/// [`refuse`] with further headers (a refusal that also clears a cookie).
pub async fn refuse_with(
    s: &mut Session,
    replies: &Replies,
    r: &dyn Refuse,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    let format = Format::of(s.req_header());
    let mut all = r.headers();
    all.extend_from_slice(extra);
    if let (Format::Html, Some(to)) = (format, r.redirect()) {
        return redirect(s, replies, 302, &to, &all).await;
    }
    let (body, content_type) = render(&Refusal::of(r), format);
    typed(s, replies, r.status(), content_type, body, &all).await
}

/// Answer with a JSON document.
pub async fn json(
    s: &mut Session,
    replies: &Replies,
    status: u16,
    value: &serde_json::Value,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    let body = Bytes::from(value.to_string());
    typed(s, replies, status, "application/json", body, extra).await
}

/// Answer with an HTML page.
pub async fn html(
    s: &mut Session,
    replies: &Replies,
    status: u16,
    page: String,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    let body = Bytes::from(page);
    typed(s, replies, status, "text/html; charset=utf-8", body, extra).await
}

/// Redirect (303 after a form post, 302 otherwise). Callers pass only
/// same-origin paths (see [`crate::auth::redirect::safe_next`]).
pub async fn redirect(
    s: &mut Session,
    replies: &Replies,
    status: u16,
    location: &str,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    let mut all = vec![(http::header::LOCATION, location.to_string())];
    all.extend_from_slice(extra);
    typed(
        s,
        replies,
        status,
        "text/plain; charset=utf-8",
        Bytes::new(),
        &all,
    )
    .await
}

/// An empty answer with `status` and these headers.
pub async fn empty(
    s: &mut Session,
    replies: &Replies,
    status: u16,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    typed(
        s,
        replies,
        status,
        "text/plain; charset=utf-8",
        Bytes::new(),
        extra,
    )
    .await
}

async fn typed(
    s: &mut Session,
    replies: &Replies,
    status: u16,
    content_type: &str,
    body: Bytes,
    extra: Extra<'_>,
) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(status, Some(9 + extra.len()))?;
    h.insert_header(http::header::CONTENT_TYPE, content_type)?;
    h.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    for (k, v) in extra {
        h.append_header(k.clone(), v.as_str())?;
    }
    send(s, replies, h, body).await
}

/// Write a whole response the gateway built itself, with the protective
/// headers and its length.
pub async fn send(
    s: &mut Session,
    replies: &Replies,
    mut h: ResponseHeader,
    body: Bytes,
) -> pingora::Result<()> {
    let https = s.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
    replies.protect(&mut h, https)?;
    // Shutting down: say the connection closes (see `crate::drain`).
    if s.is_process_shutting_down() {
        s.set_keepalive(None);
    }
    h.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    let head_only = s.req_header().method == http::Method::HEAD;
    s.write_response_header(Box::new(h), head_only).await?;
    if !head_only {
        s.write_response_body(Some(body), true).await?;
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

    #[derive(Debug, thiserror::Error)]
    #[error("down")]
    struct Down;

    impl Refuse for Down {
        fn status(&self) -> u16 {
            502
        }
        fn code(&self) -> &'static str {
            "upstream_unreachable"
        }
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
        let mut r = Refusal::of(&Down);
        r.detail = "<script>x</script>".into();
        let (body, ct) = render(&r, Format::Html);
        let s = String::from_utf8(body.to_vec()).unwrap();
        assert!(ct.starts_with("text/html"));
        assert!(s.contains("&lt;script&gt;"));
        assert!(!s.contains("<script>x"));
    }

    #[test]
    fn json_names_status_error_and_detail_and_the_title_defaults_to_the_reason() {
        let r = Refusal::of(&Down);
        assert_eq!(r.title, "Bad Gateway");
        let (body, _) = render(&r, Format::Json);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], 502);
        assert_eq!(v["error"], "upstream_unreachable");
        assert_eq!(v["detail"], "down");
    }

    #[test]
    fn every_answer_is_protected_and_hsts_goes_only_over_https() {
        let replies = Replies {
            hsts: Some(HeaderValue::from_static("max-age=60")),
        };
        let mut h = ResponseHeader::build(200, None).unwrap();
        replies.protect(&mut h, false).unwrap();
        assert_eq!(h.headers["x-frame-options"], "DENY");
        assert_eq!(h.headers["x-content-type-options"], "nosniff");
        assert_eq!(h.headers["referrer-policy"], "same-origin");
        assert!(h.headers.get("strict-transport-security").is_none());
        replies.protect(&mut h, true).unwrap();
        assert_eq!(h.headers["strict-transport-security"], "max-age=60");
    }
}
