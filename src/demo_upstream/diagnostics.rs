//! Endpoints that exist for the gateway's tests rather than for the demo
//! story: echo what arrived, stream a large body, answer slowly, answer with
//! any status. They let a test see exactly what the gateway forwarded and how
//! it copes with big, slow or failing upstream answers.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Request, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use serde_json::json;

use super::respond::{api_data, api_error, form_pairs, json, read_body, Identity, Response};

/// Largest body `/api/echo` reads back.
const ECHO_BODY_LIMIT: usize = 64 * 1024 * 1024;
/// Default and largest size of `/api/large`.
const LARGE_DEFAULT: u64 = 5 * 1024 * 1024;
const LARGE_MAX: u64 = 256 * 1024 * 1024;
/// Size of each chunk `/api/large` produces.
const CHUNK: usize = 64 * 1024;
/// `/api/large` byte `i` is `i % PERIOD`; a prime so chunk edges show up.
const PERIOD: u64 = 251;
/// Longest wait `/api/slow` accepts.
const SLOW_MAX_MS: u64 = 30_000;

fn query_value(uri: &Uri, key: &str) -> Option<String> {
    form_pairs(uri.query().unwrap_or("").as_bytes())
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Parses a numeric query parameter, with a default and an upper bound.
fn bounded_param(uri: &Uri, key: &str, default: u64, max: u64) -> Result<u64, String> {
    let Some(raw) = query_value(uri, key) else {
        return Ok(default);
    };
    match raw.parse::<u64>() {
        Ok(n) if n <= max => Ok(n),
        Ok(n) => Err(format!("{key}={n} is more than the maximum {max}")),
        Err(_) => Err(format!("{key}={raw:?} is not a non-negative integer")),
    }
}

/// `ANY /api/echo[/...]`: everything the app received, as JSON.
pub(crate) async fn echo(req: Request<Incoming>, identity: &Identity) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, ECHO_BODY_LIMIT).await {
        Ok(body) => body,
        Err(e) => return api_error(e.status(), "bad request", e, identity),
    };
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    json(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query().unwrap_or(""),
            "uri": parts.uri.to_string(),
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
            "body_length": body.len(),
            "identity": identity.to_json(),
        }),
    )
}

/// `GET /api/large?bytes=N`: N deterministic bytes, streamed.
pub(crate) fn large(uri: &Uri, identity: &Identity) -> Response {
    let size = match bounded_param(uri, "bytes", LARGE_DEFAULT, LARGE_MAX) {
        Ok(size) => size,
        Err(detail) => return api_error(StatusCode::BAD_REQUEST, "bad request", detail, identity),
    };
    let mut response = http::Response::new(PatternBody::new(size).boxed());
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    response
}

/// `GET /api/slow?ms=N`: answers after N milliseconds.
pub(crate) async fn slow(uri: &Uri, identity: &Identity) -> Response {
    let ms = match bounded_param(uri, "ms", 1000, SLOW_MAX_MS) {
        Ok(ms) => ms,
        Err(detail) => return api_error(StatusCode::BAD_REQUEST, "bad request", detail, identity),
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    api_data(StatusCode::OK, json!({ "waited_ms": ms }), identity)
}

/// `GET /api/status/{code}`: answers with that status.
pub(crate) fn status(code: &str, identity: &Identity) -> Response {
    let status = match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
        Some(c) => StatusCode::from_u16(c).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        None => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad request",
                format!("status `{code}` is not a number from 200 to 599"),
                identity,
            )
        }
    };
    if matches!(status.as_u16(), 204 | 304) {
        // These statuses never carry a body.
        let mut response = super::respond::no_content();
        *response.status_mut() = status;
        return response;
    }
    let reason = status.canonical_reason().unwrap_or("");
    api_data(
        status,
        json!({ "status": status.as_u16(), "reason": reason }),
        identity,
    )
}

/// The repeating pattern, long enough that any chunk is one slice of it.
fn pattern() -> &'static Bytes {
    static PATTERN: OnceLock<Bytes> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let len = CHUNK + PERIOD as usize;
        Bytes::from(
            (0..len)
                .map(|i| (i as u64 % PERIOD) as u8)
                .collect::<Vec<u8>>(),
        )
    })
}

/// A body of `len` bytes where byte `i` is `i % 251`, produced in 64 KiB
/// chunks that share one static buffer, so serving 256 MiB allocates nothing.
struct PatternBody {
    sent: u64,
    len: u64,
}

impl PatternBody {
    fn new(len: u64) -> Self {
        PatternBody { sent: 0, len }
    }
}

impl hyper::body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let remaining = self.len - self.sent;
        if remaining == 0 {
            return Poll::Ready(None);
        }
        let take = remaining.min(CHUNK as u64) as usize;
        let start = (self.sent % PERIOD) as usize;
        self.sent += take as u64;
        Poll::Ready(Some(Ok(Frame::data(pattern().slice(start..start + take)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.sent)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{client, start};
    use futures_util::StreamExt;
    use serde_json::Value;

    #[tokio::test]
    async fn echo_returns_method_headers_query_and_body() {
        let handle = start();
        let response = client()
            .post(format!("{}/api/echo/a/b?x=1&y=two", handle.base_url()))
            .header("x-test", "one")
            .header("x-guise-user", "alice")
            .body("héllo body")
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 200);
        let echo: Value = response.json().await.expect("json");
        assert_eq!(echo["method"], "POST");
        assert_eq!(echo["path"], "/api/echo/a/b");
        assert_eq!(echo["query"], "x=1&y=two");
        assert_eq!(echo["headers"]["x-test"], serde_json::json!(["one"]));
        assert_eq!(echo["body"], "héllo body");
        assert_eq!(echo["body_length"], "héllo body".len());
        assert_eq!(echo["identity"]["x-guise-user"], "alice");

        let bare: Value = client()
            .get(format!("{}/api/echo", handle.base_url()))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(bare["body_length"], 0);
        handle.stop();
    }

    #[tokio::test]
    async fn large_streams_exactly_the_requested_bytes() {
        let handle = start();
        let size: u64 = 3 * 1024 * 1024 + 17;
        let response = client()
            .get(format!("{}/api/large?bytes={size}", handle.base_url()))
            .send()
            .await
            .expect("get");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-length"],
            size.to_string().as_str()
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/octet-stream"
        );
        let mut stream = response.bytes_stream();
        let mut offset: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.expect("chunk");
            for byte in chunk.iter() {
                assert_eq!(*byte, (offset % 251) as u8, "byte {offset}");
                offset += 1;
            }
        }
        assert_eq!(offset, size);

        let too_big = client()
            .get(format!(
                "{}/api/large?bytes=999999999999",
                handle.base_url()
            ))
            .send()
            .await
            .expect("get");
        assert_eq!(too_big.status(), 400);
        handle.stop();
    }

    #[tokio::test]
    async fn slow_and_status_answer_as_asked() {
        let handle = start();
        let slow: Value = client()
            .get(format!("{}/api/slow?ms=20", handle.base_url()))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        assert_eq!(slow["data"]["waited_ms"], 20);
        for code in [200u16, 204, 404, 418, 503] {
            let response = client()
                .get(format!("{}/api/status/{code}", handle.base_url()))
                .send()
                .await
                .expect("get");
            assert_eq!(response.status().as_u16(), code);
        }
        let bad = client()
            .get(format!("{}/api/status/abc", handle.base_url()))
            .send()
            .await
            .expect("get");
        assert_eq!(bad.status(), 400);
        handle.stop();
    }
}
