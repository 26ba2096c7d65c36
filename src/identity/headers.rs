//! The identity headers of one request as a checked list of (name suffix,
//! value) pairs, and the rules every value obeys.

use std::fmt;

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;

use super::sign::Signer;
use super::{names, MAX_VALUE_LEN};

/// Why an identity header could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The value would be unsafe or altered on the way to the upstream. The
    /// value itself is not repeated: it may carry CR/LF meant for a log.
    #[error("identity header `{header}` refused: {reason}")]
    UnsafeValue {
        header: String,
        reason: UnsafeReason,
    },
    /// The name suffix is not lower-case letters, digits and dashes, or is
    /// the signature header's.
    #[error("identity header name `{name}` refused: {reason}")]
    BadName { name: String, reason: &'static str },
    /// The same header was given twice; the upstream would see two values.
    #[error("identity header `{header}` given twice")]
    Duplicate { header: String },
    /// The request's method or path holds bytes that would make the
    /// canonical string ambiguous.
    #[error("request line refused for signing: {reason}")]
    UnsafeRequestLine { reason: &'static str },
    /// pingora refused the header (should not happen after the checks).
    #[error("identity header `{header}` not accepted by the request: {reason}")]
    Rejected { header: String, reason: String },
}

/// Why a header value is unsafe. Positions are byte offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafeReason {
    /// CR, LF, NUL, DEL or another control character (tab excepted).
    ControlCharacter { at: usize },
    /// A byte outside ASCII. HTTP treats such bytes as opaque and servers
    /// decode them differently, so the upstream might not see what was signed.
    NonAscii { at: usize },
    /// Leading or trailing space or tab: HTTP parsers strip it, so the
    /// upstream would see a different value than the one signed.
    EdgeWhitespace,
    /// Longer than [`MAX_VALUE_LEN`].
    TooLong { len: usize },
    /// An item of a comma-separated list is empty or contains a comma.
    ListItem,
}

impl fmt::Display for UnsafeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsafeReason::ControlCharacter { at } => {
                write!(f, "control character (CR, LF, NUL, DEL, ...) at byte {at}")
            }
            UnsafeReason::NonAscii { at } => write!(
                f,
                "non-ASCII byte at {at}; only visible ASCII, space and tab are allowed"
            ),
            UnsafeReason::EdgeWhitespace => {
                f.write_str("leading or trailing whitespace would be stripped in transit")
            }
            UnsafeReason::TooLong { len } => {
                write!(f, "{len} bytes, more than the {MAX_VALUE_LEN} allowed")
            }
            UnsafeReason::ListItem => f.write_str("a list item is empty or contains a comma"),
        }
    }
}

// === impl IdentityHeaders ===

/// The identity of one request, as ordered (name suffix, value) pairs, every
/// value already checked safe for an HTTP header.
///
/// Suffixes are the part after the prefix (`user`, `roles`, see [`names`]),
/// so the same identity can be signed under any configured prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    pub(super) pairs: Vec<(String, String)>,
}

impl IdentityHeaders {
    /// No headers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The headers every logged-in request carries: user id, email, roles
    /// (joined with `,`) and session reference.
    pub fn for_user<R: AsRef<str>>(
        user: &str,
        email: &str,
        roles: &[R],
        session: &str,
    ) -> Result<Self, IdentityError> {
        let mut h = Self::new();
        h.push(names::USER, user)?;
        h.push(names::USER_EMAIL, email)?;
        h.push_list(names::ROLES, roles)?;
        h.push(names::SESSION, session)?;
        Ok(h)
    }

    /// Add one header. Refuses a bad suffix, a repeated suffix and any value
    /// that is not visible ASCII plus inner spaces and tabs.
    pub fn push(&mut self, suffix: &str, value: &str) -> Result<&mut Self, IdentityError> {
        check_suffix(suffix)?;
        if self.pairs.iter().any(|(n, _)| n == suffix) {
            return Err(IdentityError::Duplicate {
                header: suffix.to_string(),
            });
        }
        check_value(value).map_err(|reason| IdentityError::UnsafeValue {
            header: suffix.to_string(),
            reason,
        })?;
        self.pairs.push((suffix.to_string(), value.to_string()));
        Ok(self)
    }

    /// Add a comma-separated list header; an item that is empty or holds a
    /// comma is refused, since the upstream could not split it back.
    pub fn push_list<R: AsRef<str>>(
        &mut self,
        suffix: &str,
        items: &[R],
    ) -> Result<&mut Self, IdentityError> {
        if items
            .iter()
            .any(|i| i.as_ref().is_empty() || i.as_ref().contains(','))
        {
            return Err(IdentityError::UnsafeValue {
                header: suffix.to_string(),
                reason: UnsafeReason::ListItem,
            });
        }
        let joined = items
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",");
        self.push(suffix, &joined)
    }

    /// The (suffix, value) pairs, in the order they were added.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value under `suffix`, if any.
    pub fn get(&self, suffix: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == suffix)
            .map(|(_, v)| v.as_str())
    }

    /// The headers to put on the upstream request, signature last, for a
    /// request with this `method` and `path` (no query string). Prefer a
    /// [`Signer`] kept for the key when signing many requests.
    pub fn signed_headers(
        &self,
        key: &[u8],
        prefix: &str,
        method: &str,
        path: &str,
        unix_now: u64,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, IdentityError> {
        Signer::new(key, prefix).signed_headers(self, method, path, unix_now)
    }

    /// Replace every `prefix` header of `req` with these headers and their
    /// signature. Signs the method and path `req` carries now, so call it
    /// after any stage that rewrites the path.
    pub fn sign_request(
        &self,
        req: &mut RequestHeader,
        key: &[u8],
        prefix: &str,
        unix_now: u64,
    ) -> Result<(), IdentityError> {
        Signer::new(key, prefix).sign_request(req, self, unix_now)
    }
}

/// Visible ASCII, inner spaces and tabs; nothing HTTP would strip or split.
pub(super) fn check_value(value: &str) -> Result<(), UnsafeReason> {
    if value.len() > MAX_VALUE_LEN {
        return Err(UnsafeReason::TooLong { len: value.len() });
    }
    for (at, b) in value.bytes().enumerate() {
        match b {
            b'\t' | 0x20..=0x7e => {}
            0x80.. => return Err(UnsafeReason::NonAscii { at }),
            _ => return Err(UnsafeReason::ControlCharacter { at }),
        }
    }
    let edge = |b: u8| b == b' ' || b == b'\t';
    let bytes = value.as_bytes();
    if bytes.first().copied().is_some_and(edge) || bytes.last().copied().is_some_and(edge) {
        return Err(UnsafeReason::EdgeWhitespace);
    }
    Ok(())
}

pub(super) fn check_suffix(suffix: &str) -> Result<(), IdentityError> {
    let bad = |reason| IdentityError::BadName {
        name: suffix.to_string(),
        reason,
    };
    if suffix.is_empty()
        || !suffix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("use lower-case letters, digits and dashes"));
    }
    if suffix == names::SIGNATURE {
        return Err(bad("the signature header is added by signing"));
    }
    Ok(())
}
