//! Building responses and reading request bodies, shared by every handler.
//!
//! All responses use one boxed body type so that a handler can answer with a
//! small buffered body or with a generated stream (`/api/large`) alike.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Display;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_DISPOSITION, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

/// Response body of every handler.
pub(crate) type Body = BoxBody<Bytes, Infallible>;
/// Response of every handler.
pub(crate) type Response = http::Response<Body>;

/// Prefix of the identity headers the gateway adds to proxied requests.
pub(crate) const IDENTITY_PREFIX: &str = "x-guise-";

/// The `x-guise-*` headers of a request, by lower-case name. Several values of
/// one header are joined with ", ".
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Identity(BTreeMap<String, String>);

impl Identity {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            if !name.as_str().starts_with(IDENTITY_PREFIX) {
                continue;
            }
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            seen.entry(name.as_str().to_owned())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        Identity(seen)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    }

    /// Value of the `x-demo-identity-seen` response header.
    pub fn seen_header(&self) -> HeaderValue {
        if self.0.is_empty() {
            return HeaderValue::from_static("none");
        }
        let names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        // Header names are always valid header values.
        HeaderValue::from_str(&names.join(", ")).unwrap_or(HeaderValue::from_static("invalid"))
    }
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn with_type(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON document as the response body.
pub(crate) fn json(status: StatusCode, value: &Value) -> Response {
    // Serialising a `Value` cannot fail.
    let body = serde_json::to_vec(value).unwrap_or_default();
    with_type(status, "application/json", full(body))
}

/// The API's success shape: `{"data": ..., "identity": {...}}`.
pub(crate) fn api_data(status: StatusCode, data: Value, identity: &Identity) -> Response {
    json(
        status,
        &json!({ "data": data, "identity": identity.to_json() }),
    )
}

/// The API's error shape: `{"error": ..., "detail": ..., "identity": {...}}`.
pub(crate) fn api_error(
    status: StatusCode,
    error: &str,
    detail: impl Display,
    identity: &Identity,
) -> Response {
    json(
        status,
        &json!({
            "error": error,
            "detail": detail.to_string(),
            "identity": identity.to_json(),
        }),
    )
}

/// 405 with the `Allow` header listing what is accepted.
pub(crate) fn api_method_not_allowed(
    method: &http::Method,
    allow: &'static str,
    identity: &Identity,
) -> Response {
    let mut response = api_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        format!("{method} is not allowed here; allowed: {allow}"),
        identity,
    );
    response
        .headers_mut()
        .insert(http::header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 204 with an empty body (DELETE).
pub(crate) fn no_content() -> Response {
    let mut response = http::Response::new(full(""));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

pub(crate) fn html(status: StatusCode, page: String) -> Response {
    with_type(status, "text/html; charset=utf-8", full(page))
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response {
    with_type(status, "text/plain; charset=utf-8", full(body))
}

/// A CSV download named `filename`.
pub(crate) fn csv_download(filename: &str, body: String) -> Response {
    let mut response = with_type(StatusCode::OK, "text/csv; charset=utf-8", full(body));
    let disposition = format!("attachment; filename=\"{filename}\"");
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        response.headers_mut().insert(CONTENT_DISPOSITION, value);
    }
    response
}

/// Why a request body could not be read.
#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge(usize),
    Read(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        }
    }
}

impl Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge(limit) => write!(f, "request body is larger than {limit} bytes"),
            BodyError::Read(e) => write!(f, "could not read the request body: {e}"),
        }
    }
}

/// Reads the whole request body, refusing more than `limit` bytes.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Err(e) => Err(BodyError::Read(e.to_string())),
    }
}

/// Decoded `key=value` pairs of a query string or form body, in order.
pub(crate) fn form_pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// Quotes one CSV field when it needs it (RFC 4180).
fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Renders rows of JSON objects as CSV with the given columns. Nulls become
/// empty fields; nested values are written as JSON.
pub(crate) fn csv_from_values(columns: &[&str], rows: &[Value]) -> String {
    let mut out = String::new();
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, column);
    }
    out.push_str("\r\n");
    for row in rows {
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let cell = match row.get(column) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            csv_field(&mut out, &cell);
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_keeps_only_guise_headers_and_joins_repeats() {
        let mut headers = HeaderMap::new();
        headers.append("x-guise-user", HeaderValue::from_static("alice"));
        headers.append("x-guise-role", HeaderValue::from_static("a"));
        headers.append("x-guise-role", HeaderValue::from_static("b"));
        headers.append("x-other", HeaderValue::from_static("no"));
        let identity = Identity::from_headers(&headers);
        assert_eq!(
            identity.to_json(),
            json!({"x-guise-role": "a, b", "x-guise-user": "alice"})
        );
        assert_eq!(identity.seen_header(), "x-guise-role, x-guise-user");
        assert_eq!(Identity::default().seen_header(), "none");
    }

    #[test]
    fn csv_quotes_fields_that_need_it() {
        let rows = vec![json!({"a": "x,y", "b": "say \"hi\"", "c": null, "d": 5})];
        assert_eq!(
            csv_from_values(&["a", "b", "c", "d"], &rows),
            "a,b,c,d\r\n\"x,y\",\"say \"\"hi\"\"\",,5\r\n"
        );
    }
}
