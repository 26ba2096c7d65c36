//! `/_guise/tab.js` and `/_guise/tab.css`: the tab script and the banner's
//! stylesheet, compiled into the binary.
//!
//! External files rather than inline code, so that an app whose Content
//! Security Policy allows `script-src 'self'` (and `style-src 'self'`)
//! but no inline code still runs them. `Cache-Control: no-cache` with an
//! `ETag`: the browser asks again on every page (a 304 costs a few bytes),
//! so a new gateway version's script is in use at once and never mixed
//! with an old page's snippet for long.

use std::sync::LazyLock;

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use sha2::{Digest, Sha256};

use super::TabError;
use crate::respond::{self, Replies};

/// The names [`asset`] serves, under `/_guise/`.
pub const ASSET_NAMES: [&str; 2] = ["tab.js", "tab.css"];

pub(super) struct Asset {
    pub(super) body: &'static str,
    pub(super) content_type: &'static str,
    pub(super) etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Asset {
        let digest = Sha256::digest(body.as_bytes());
        Asset {
            body,
            content_type,
            etag: format!("\"{}\"", &hex::encode(digest)[..20]),
        }
    }

    pub(super) fn named(name: &str) -> Option<&'static Asset> {
        static JS: LazyLock<Asset> =
            LazyLock::new(|| Asset::new(include_str!("tab.js"), "text/javascript; charset=utf-8"));
        static CSS: LazyLock<Asset> =
            LazyLock::new(|| Asset::new(include_str!("tab.css"), "text/css; charset=utf-8"));
        match name {
            "tab.js" => Some(&JS),
            "tab.css" => Some(&CSS),
            _ => None,
        }
    }
}

/// Answer `GET`/`HEAD /_guise/{name}` for a tab asset (`tab.js`,
/// `tab.css`); any other name is a 404. Needs no session: the files are
/// the same for everyone and say nothing about anyone.
pub async fn asset(s: &mut Session, replies: &Replies, name: &str) -> pingora::Result<()> {
    let Some(a) = Asset::named(name) else {
        return respond::refuse(s, replies, &TabError::NoAsset(name.to_string())).await;
    };
    let unchanged = if_none_match(s, &a.etag);
    let mut h = ResponseHeader::build(if unchanged { 304 } else { 200 }, Some(8))?;
    h.insert_header(http::header::CACHE_CONTROL, "no-cache")?;
    h.insert_header(http::header::ETAG, a.etag.as_str())?;
    if !unchanged {
        h.insert_header(http::header::CONTENT_TYPE, a.content_type)?;
        return respond::send(s, replies, h, Bytes::from_static(a.body.as_bytes())).await;
    }
    // A 304 has no body, and no length that is not the 200's: written here
    // rather than through `respond::send`, which sets one.
    let https = s.digest().and_then(|d| d.ssl_digest.as_ref()).is_some();
    replies.protect(&mut h, https)?;
    if s.is_process_shutting_down() {
        s.set_keepalive(None);
    }
    s.write_response_header(Box::new(h), true).await
}

/// The request's `If-None-Match` names `etag` (weakly, as RFC 9110 asks for
/// this header), or is `*`.
fn if_none_match(s: &Session, etag: &str) -> bool {
    s.req_header()
        .headers
        .get_all(http::header::IF_NONE_MATCH)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}
