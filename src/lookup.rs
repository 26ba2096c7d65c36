//! Reading one record from the upstream, for a decision the request's own
//! path cannot settle: the data-permission rules on a record's attributes
//! (stage 8), or the company or relationship a partner user's CTA sits in
//! (stage 7).
//!
//! The request goes out as the gateway's own signed service identity, not
//! as the user: the user may not be allowed to read the record (that is
//! what is being decided), and the app must answer the same for everyone.
//! Answers are bounded ([`LIMIT`]); callers cache what they read.

use bytes::BytesMut;
use pingora::http::RequestHeader;

use crate::identity::IdentityHeaders;
use crate::live::Live;

/// What a key escapes to sit in one path segment: everything but the
/// unreserved characters (RFC 3986), so `rel-2` stays `rel-2` and `a/b` or
/// `..` cannot reach another path.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// The largest record a lookup reads.
pub const LIMIT: usize = 1024 * 1024;

/// What the upstream said of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// The record: a JSON object.
    Found(serde_json::Value),
    /// 404 or 410: there is no such record.
    Missing,
    /// No usable answer (connection, status, not JSON, no object at the
    /// pointer); already logged. Callers fail closed on it.
    Failed,
}

/// Lookups of this node, with their own upstream connections (kept apart
/// from the data plane's pool so a slow lookup never holds a client's).
pub struct Lookup {
    connector: pingora::connectors::http::Connector,
    /// The user id the lookups are signed with.
    service: &'static str,
}

impl Lookup {
    /// Lookups signed as `service` (a user id the app should let read
    /// every record).
    pub fn new(service: &'static str) -> Lookup {
        Lookup {
            connector: pingora::connectors::http::Connector::new(None),
            service,
        }
    }

    /// The record `key` at upstream path `template` (`{id}` standing for
    /// the key, escaped to one path segment), found at JSON pointer
    /// `pointer` of the answer (empty: the whole answer).
    pub async fn record(
        &self,
        live: &Live,
        template: &str,
        pointer: &str,
        key: &str,
        unix_now: u64,
    ) -> Fetched {
        let encoded = percent_encoding::utf8_percent_encode(key, SEGMENT).to_string();
        let path = template.replace("{id}", &encoded);
        match self.exchange(live, &path, unix_now).await {
            Ok((404 | 410, _)) => Fetched::Missing,
            Ok((status, body)) if (200..300).contains(&status) => {
                let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    tracing::warn!(path, "a lookup's answer is not JSON");
                    return Fetched::Failed;
                };
                let record = if pointer.is_empty() {
                    Some(&mut doc)
                } else {
                    doc.pointer_mut(pointer)
                };
                match record {
                    Some(r) if r.is_object() => Fetched::Found(r.take()),
                    _ => {
                        tracing::warn!(path, pointer, "a lookup's answer holds no record there");
                        Fetched::Failed
                    }
                }
            }
            Ok((status, _)) => {
                tracing::warn!(path, status, "a lookup was refused by the upstream");
                Fetched::Failed
            }
            Err(e) => {
                tracing::warn!(path, error = %e, "a lookup failed");
                Fetched::Failed
            }
        }
    }

    /// GET `path` from the upstream as the service identity.
    async fn exchange(
        &self,
        live: &Live,
        path: &str,
        unix_now: u64,
    ) -> pingora::Result<(u16, bytes::Bytes)> {
        let internal = |e: &dyn std::fmt::Display| {
            pingora::Error::explain(pingora::ErrorType::InternalError, e.to_string())
        };
        let mut req = RequestHeader::build("GET", path.as_bytes(), None)?;
        req.insert_header(http::header::HOST, live.config.upstream.authority.as_str())?;
        req.insert_header(http::header::ACCEPT, "application/json")?;
        let identity = IdentityHeaders::for_user(self.service, "", &["service"], "lookup")
            .map_err(|e| internal(&e))?;
        live.signer
            .sign_request(&mut req, &identity, unix_now)
            .map_err(|e| internal(&e))?;
        let peer = live.peer.clone();
        let (mut http, _) = self.connector.get_http_session(&peer).await?;
        http.write_request_header(Box::new(req)).await?;
        http.finish_request_body().await?;
        http.read_response_header().await?;
        let status = http.response_header().map_or(502, |h| h.status.as_u16());
        let mut body = BytesMut::new();
        while let Some(chunk) = http.read_response_body().await? {
            if body.len() + chunk.len() > LIMIT {
                return Err(pingora::Error::explain(
                    pingora::ErrorType::InvalidHTTPHeader,
                    "a looked-up record is too large",
                ));
            }
            body.extend_from_slice(&chunk);
        }
        self.connector.release_http_session(http, &peer, None).await;
        Ok((status, body.freeze()))
    }
}

/// The text of a JSON scalar, as a record key or attribute value: strings
/// as they are, numbers and booleans as written; anything else has none.
pub fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
