//! Verifying identity headers, as an upstream does.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::headers::{check_value, UnsafeReason};
use super::sign::{canonical_string, check_request_line, mac, tags_match};
use super::{names, DEFAULT_MAX_SKEW};

/// Why a request's identity headers were not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Identity headers arrived without a signature.
    #[error("identity headers without a signature")]
    MissingSignature,
    /// The signature header is not `t=<digits>,v1=<64 hex>`.
    #[error("malformed signature header: {reason}")]
    MalformedSignature { reason: &'static str },
    /// The signature does not match method, path and identity headers.
    #[error("identity signature does not match")]
    BadSignature,
    /// Authentic, but older than the allowed skew: a replay or a slow clock.
    #[error("identity signature is {age_secs} s old, more than the {max_skew_secs} s allowed")]
    Stale { age_secs: u64, max_skew_secs: u64 },
    /// Authentic, but dated in the future beyond the allowed skew.
    #[error(
        "identity signature is dated {ahead_secs} s ahead, more than the {max_skew_secs} s allowed"
    )]
    Future { ahead_secs: u64, max_skew_secs: u64 },
    /// An identity header or the signature arrived more than once.
    #[error("header `{header}` arrived more than once")]
    Duplicate { header: String },
    /// An identity header's value is not visible ASCII.
    #[error("identity header `{header}` refused: {reason}")]
    UnsafeValue {
        header: String,
        reason: UnsafeReason,
    },
    /// The method or path holds control characters or spaces.
    #[error("request line refused: {reason}")]
    UnsafeRequestLine { reason: &'static str },
}

// === verifying ===

/// What a verified request asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// No identity headers and no signature: an anonymous request.
    Anonymous,
    /// Identity headers whose signature matched within the allowed skew.
    Signed(SignedIdentity),
}

/// The identity headers of a request whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIdentity {
    /// The signature's timestamp (Unix seconds).
    pub timestamp: u64,
    /// (suffix, value), sorted by suffix.
    headers: Vec<(String, String)>,
}

impl SignedIdentity {
    /// The value under `suffix` (such as [`names::USER`]).
    pub fn get(&self, suffix: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == suffix)
            .map(|(_, v)| v.as_str())
    }

    /// The effective user id, if the request carries one.
    pub fn user(&self) -> Option<&str> {
        self.get(names::USER)
    }

    /// Every identity header as (suffix, value), sorted by suffix.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

/// Check the identity headers of a request as an upstream would.
///
/// Every header whose name starts with `prefix` (case-blind) other than
/// `{prefix}signature` is an identity header, and all of them must be
/// covered by the signature: an extra one fails it as surely as a changed
/// one. No identity headers and no signature is [`Verified::Anonymous`]; a
/// signature is checked whenever present. `path` is without the query.
pub fn verify(
    key: &[u8],
    prefix: &str,
    method: &str,
    path: &str,
    headers: &HeaderMap,
    unix_now: u64,
    max_skew: Duration,
) -> Result<Verified, VerifyError> {
    let mut identity: Vec<(String, String)> = Vec::new();
    let mut signature: Option<&HeaderValue> = None;
    for name in headers.keys() {
        let full = name.as_str();
        let Some(suffix) = strip_prefix_ignore_case(full, prefix) else {
            continue;
        };
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            continue;
        };
        if values.next().is_some() {
            return Err(VerifyError::Duplicate {
                header: full.to_string(),
            });
        }
        if suffix == names::SIGNATURE {
            signature = Some(value);
            continue;
        }
        let unsafe_value = |reason| VerifyError::UnsafeValue {
            header: full.to_string(),
            reason,
        };
        let text = header_text(value).map_err(unsafe_value)?;
        check_value(text).map_err(unsafe_value)?;
        identity.push((suffix.to_string(), text.to_string()));
    }
    let Some(signature) = signature else {
        return if identity.is_empty() {
            Ok(Verified::Anonymous)
        } else {
            Err(VerifyError::MissingSignature)
        };
    };
    check_request_line(method, path).map_err(|reason| VerifyError::UnsafeRequestLine { reason })?;
    let (timestamp, tag) = parse_signature(signature)?;
    let canonical = canonical_string(prefix, method, path, &identity, timestamp);
    if !tags_match(mac(key, &canonical), &tag) {
        return Err(VerifyError::BadSignature);
    }
    let max_skew_secs = max_skew.as_secs();
    if timestamp < unix_now && unix_now - timestamp > max_skew_secs {
        return Err(VerifyError::Stale {
            age_secs: unix_now - timestamp,
            max_skew_secs,
        });
    }
    if timestamp > unix_now && timestamp - unix_now > max_skew_secs {
        return Err(VerifyError::Future {
            ahead_secs: timestamp - unix_now,
            max_skew_secs,
        });
    }
    identity.sort();
    Ok(Verified::Signed(SignedIdentity {
        timestamp,
        headers: identity,
    }))
}

/// `t=<decimal>,v1=<64 hex>` into (timestamp, tag bytes).
fn parse_signature(value: &HeaderValue) -> Result<(u64, Vec<u8>), VerifyError> {
    let malformed = |reason| VerifyError::MalformedSignature { reason };
    let text = value.to_str().map_err(|_| malformed("not visible ASCII"))?;
    let (t, v1) = text
        .split_once(',')
        .ok_or(malformed("expected `t=<unix seconds>,v1=<hex>`"))?;
    let t = t
        .strip_prefix("t=")
        .ok_or(malformed("expected `t=` first"))?;
    let v1 = v1
        .strip_prefix("v1=")
        .ok_or(malformed("expected `v1=` after the timestamp"))?;
    if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("timestamp is not a decimal number"));
    }
    let timestamp = t
        .parse::<u64>()
        .map_err(|_| malformed("timestamp out of range"))?;
    if v1.len() != 64 {
        return Err(malformed("v1 must be 64 hex digits"));
    }
    let tag = hex::decode(v1).map_err(|_| malformed("v1 must be 64 hex digits"))?;
    Ok((timestamp, tag))
}

/// `name` without `prefix` (compared case-blind), if it has it.
fn strip_prefix_ignore_case<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
}

/// A received value as text; bytes above ASCII are refused, not decoded.
fn header_text(value: &HeaderValue) -> Result<&str, UnsafeReason> {
    value.to_str().map_err(|_| {
        let at = value
            .as_bytes()
            .iter()
            .position(|b| !(*b == b'\t' || (0x20..0x7f).contains(b)))
            .unwrap_or(0);
        if value.as_bytes().get(at).is_some_and(|b| *b >= 0x80) {
            UnsafeReason::NonAscii { at }
        } else {
            UnsafeReason::ControlCharacter { at }
        }
    })
}

// === impl UpstreamVerifier ===

/// The upstream's side: refuses requests whose identity headers are not
/// signed by the gateway or are too old. Requests with no identity headers
/// pass (anonymous pages).
#[derive(Clone)]
pub struct UpstreamVerifier {
    key: Vec<u8>,
    prefix: String,
    max_skew: Duration,
}

impl fmt::Debug for UpstreamVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamVerifier")
            .field("key", &format_args!("<{} bytes>", self.key.len()))
            .field("prefix", &self.prefix)
            .field("max_skew", &self.max_skew)
            .finish()
    }
}

impl UpstreamVerifier {
    /// A verifier with the default skew ([`DEFAULT_MAX_SKEW`]).
    pub fn new(key: impl Into<Vec<u8>>, prefix: &str) -> Self {
        Self {
            key: key.into(),
            prefix: prefix.to_ascii_lowercase(),
            max_skew: DEFAULT_MAX_SKEW,
        }
    }

    /// The same verifier allowing `max_skew` either way.
    pub fn with_max_skew(mut self, max_skew: Duration) -> Self {
        self.max_skew = max_skew;
        self
    }

    /// [`verify`] with this verifier's key, prefix and skew, at `unix_now`.
    pub fn verify_at(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
        unix_now: u64,
    ) -> Result<Verified, VerifyError> {
        verify(
            &self.key,
            &self.prefix,
            method,
            path,
            headers,
            unix_now,
            self.max_skew,
        )
    }
}

impl UpstreamVerifier {
    /// [`Self::verify_at`] now, by the system clock.
    pub fn verify_now(
        &self,
        method: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Verified, VerifyError> {
        self.verify_at(method, path, headers, crate::clock::unix_now())
    }
}
