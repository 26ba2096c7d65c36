//! `X-Forwarded-*` headers, so the upstream sees the real client.

use pingora::prelude::*;

/// Set `X-Forwarded-For/-Proto/-Host` on the upstream request.
///
/// guise is the edge: a client-sent `X-Forwarded-For` is replaced, not
/// appended to, because nothing before guise is trusted to have written it.
pub fn set_headers(session: &Session, up: &mut RequestHeader) -> Result<()> {
    if let Some(ip) = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
    {
        up.insert_header("x-forwarded-for", ip.to_string())?;
    } else {
        up.remove_header("x-forwarded-for");
    }
    let tls = session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some();
    up.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;

    // HTTP/2 clients send `:authority` instead of `Host`; an HTTP/1 upstream
    // needs a Host header, so carry the authority over.
    let host = session
        .req_header()
        .headers
        .get(http::header::HOST)
        .cloned()
        .or_else(|| {
            session
                .req_header()
                .uri
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        });
    match host {
        Some(h) => {
            up.insert_header("x-forwarded-host", h.clone())?;
            if up.headers.get(http::header::HOST).is_none() {
                up.insert_header(http::header::HOST, h)?;
            }
        }
        None => {
            up.remove_header("x-forwarded-host");
        }
    }
    Ok(())
}
