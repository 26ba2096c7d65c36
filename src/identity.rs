//! Identity headers: what the gateway tells the upstream about the user,
//! and the signature that lets the upstream believe it.
//!
//! The module owns three things:
//! - stripping: every client header whose name starts with the configured
//!   prefix is removed before any other stage runs, so no client can assert
//!   an identity ([`strip_client_headers`]);
//! - building and signing: [`IdentityHeaders`] collects the identity of a
//!   logged-in user, refuses any value that is not safe in an HTTP header,
//!   and [`IdentityHeaders::sign_request`] puts the headers and an
//!   HMAC-SHA256 signature (`{prefix}signature`) on the upstream request.
//!   The proxy signs many requests of one session, so it keeps a
//!   [`PreparedIdentity`] per session ([`PreparedSlot`]) and only the
//!   signature is made per request ([`Signer::sign_prepared`]);
//! - verifying: [`verify`] is what an upstream runs (in Rust; see
//!   `docs/identity-headers.md` for other languages), and [`UpstreamVerifier`]
//!   plugs it into the demo app.
//!
//! The signature covers a canonical string (see [`canonical_string`]):
//!
//! ```text
//! guise-identity-v1\n
//! {unix seconds}\n
//! {method}\n
//! {path, without the query string}\n
//! {header name}:{value}\n      one line per identity header, names lower
//!                              case and sorted, the signature header left out
//! ```
//!
//! and travels as `{prefix}signature: t={unix seconds},v1={64 lower-case hex}`.
//! The query string is not signed: the upstream may see it rewritten by
//! proxies between the gateway and itself, and identity does not depend on it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// First line of the canonical string. It names the scheme so that a key
/// shared with another use can never produce a MAC that passes here, and so a
/// later scheme can change the format without ambiguity.
pub const CANONICAL_VERSION: &str = "guise-identity-v1";

/// How far a signature's timestamp may lie from the verifier's clock, either
/// way, unless the verifier says otherwise.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(30);

/// Longest identity header value accepted. Far above any real id, email or
/// role list, far below the header limits of common servers (8 KiB).
pub const MAX_VALUE_LEN: usize = 2048;

/// Header name suffixes; the full name is the configured prefix plus these.
pub mod names {
    /// Effective user id (the impersonated user while impersonating).
    pub const USER: &str = "user";
    /// Effective user's email address.
    pub const USER_EMAIL: &str = "user-email";
    /// Effective user's roles, comma-separated, no spaces.
    pub const ROLES: &str = "roles";
    /// Short, non-secret reference to the session (see
    /// [`crate::session::token::reference_of`]).
    pub const SESSION: &str = "session";
    /// The real actor's user id while impersonating.
    pub const IMPERSONATOR: &str = "impersonator";
    /// Partner organisation of the effective user.
    pub const PARTNER: &str = "partner";
    /// Client tenant the request acts in.
    pub const TENANT: &str = "tenant";
    /// Marks a paired (ghost) user.
    pub const PAIRED: &str = "paired";
    /// The signature itself; never an identity header.
    pub const SIGNATURE: &str = "signature";
}

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

// === impl IdentityHeaders ===

/// The identity of one request, as ordered (name suffix, value) pairs, every
/// value already checked safe for an HTTP header.
///
/// Suffixes are the part after the prefix (`user`, `roles`, see [`names`]),
/// so the same identity can be signed under any configured prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityHeaders {
    pairs: Vec<(String, String)>,
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

/// Remove every header whose name starts with `prefix` (lower case). Header
/// names are stored lower-cased, so the comparison is case-blind.
pub fn strip_client_headers(req: &mut RequestHeader, prefix: &str) {
    // Nearly every request has none: look before collecting.
    if !req.headers.keys().any(|k| k.as_str().starts_with(prefix)) {
        return;
    }
    let spoofed: Vec<http::HeaderName> = req
        .headers
        .keys()
        .filter(|k| k.as_str().starts_with(prefix))
        .cloned()
        .collect();
    for name in spoofed {
        req.remove_header(&name);
    }
}

/// Seconds since the Unix epoch by the system clock (0 if the clock is set
/// before 1970, which makes every signature look stale rather than panic).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// === signing ===

/// The exact string the signature covers (see the module docs).
///
/// `headers` are (suffix, value) pairs; each line's name is `prefix` +
/// suffix, lower-cased; lines are sorted by name then value (byte order); a
/// pair whose suffix is `signature` is left out. `method` is as sent
/// (case-sensitive) and `path` is the request target's path without `?` and
/// the query. Callers must pass a method and path free of control
/// characters and values already checked (as [`IdentityHeaders`] and
/// [`verify`] do); otherwise two inputs could share one string.
pub fn canonical_string(
    prefix: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    unix_now: u64,
) -> String {
    let mut s = String::new();
    let prefix = prefix.to_ascii_lowercase();
    write_canonical(
        &mut |part| s.push_str(part),
        &prefix,
        method,
        path,
        headers,
        unix_now,
    );
    s
}

/// The one writer of the canonical string: hands its pieces, in order, to
/// `out`. [`canonical_string`] collects them; [`Signer`] feeds them straight
/// into the MAC without building the string. `prefix` is lower case.
fn write_canonical(
    out: &mut dyn FnMut(&str),
    prefix: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    unix_now: u64,
) {
    write_head(out, method, path, unix_now);
    out(&canonical_lines(prefix, headers));
}

/// The request part of the canonical string: version, time, method, path.
fn write_head(out: &mut dyn FnMut(&str), method: &str, path: &str, unix_now: u64) {
    let t = unix_now.to_string();
    for part in [CANONICAL_VERSION, "\n", &t, "\n", method, "\n", path, "\n"] {
        out(part);
    }
}

/// The header part of the canonical string: one `name:value` line per
/// header, sorted, the signature left out. It does not depend on the
/// request, so a [`PreparedIdentity`] writes it once.
fn canonical_lines(prefix: &str, headers: &[(String, String)]) -> String {
    let mut lines: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(suffix, _)| !suffix.eq_ignore_ascii_case(names::SIGNATURE))
        .map(|(suffix, value)| (suffix.as_str(), value.as_str()))
        .collect();
    // Every name has the same prefix, so sorting the lower-cased suffixes
    // sorts the names.
    lines.sort_by(|a, b| {
        a.0.bytes()
            .map(|c| c.to_ascii_lowercase())
            .cmp(b.0.bytes().map(|c| c.to_ascii_lowercase()))
    });
    let mut out = String::new();
    for (suffix, value) in lines {
        out.push_str(prefix);
        out.extend(suffix.chars().map(|c| c.to_ascii_lowercase()));
        out.push(':');
        out.push_str(value);
        out.push('\n');
    }
    out
}

/// The signature header's value, `t={unix_now},v1={hex HMAC-SHA256}`, over
/// [`canonical_string`] of the same arguments, keyed by `key`.
pub fn sign(
    key: &[u8],
    prefix: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    unix_now: u64,
) -> String {
    Signer::new(key, prefix).signature(method, path, headers, unix_now)
}

/// Lower-case hex of a 32-byte digest. `hex::encode` collects chars one by
/// one into a `String`; on the per-request path that was a tenth of the
/// signing cost, so encode into a buffer instead.
pub fn hex_lower(digest: &[u8]) -> String {
    let mut buf = [0u8; 64];
    let n = digest.len() * 2;
    if n > buf.len() {
        return hex::encode(digest);
    }
    match hex::encode_to_slice(digest, &mut buf[..n]) {
        // Hex digits are ASCII, so this never takes the error arm.
        Ok(()) => match std::str::from_utf8(&buf[..n]) {
            Ok(text) => text.to_owned(),
            Err(_) => hex::encode(digest),
        },
        Err(_) => hex::encode(digest),
    }
}

#[cfg(test)]
#[test]
fn hex_lower_matches_hex_encode() {
    for d in [
        &[][..],
        &[0u8, 1, 0xab, 0xff][..],
        &[7u8; 32][..],
        &[9u8; 40][..],
    ] {
        assert_eq!(hex_lower(d), hex::encode(d));
    }
}

// === impl Signer ===

/// Signs identity headers with one key and prefix, prepared once.
///
/// Signing runs on every proxied request of a signed-in user, so the work
/// that does not depend on the request is done here, not per request: the
/// HMAC key schedule, the lower-cased prefix and the full header names. The
/// canonical string is fed to the MAC piece by piece rather than built.
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
    prefix: String,
    /// Full header names for the known suffixes, signature included, with
    /// the same name as pingora's insert takes it (made once: from a
    /// `HeaderName` it would copy the name on every insert).
    names: Vec<(&'static str, HeaderName, Bytes)>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(key: &[u8], prefix: &str) -> Signer {
        let prefix = prefix.to_ascii_lowercase();
        let names = [
            names::USER,
            names::USER_EMAIL,
            names::ROLES,
            names::SESSION,
            names::IMPERSONATOR,
            names::PARTNER,
            names::TENANT,
            names::PAIRED,
            names::SIGNATURE,
        ]
        .into_iter()
        .filter_map(|suffix| {
            let full = format!("{prefix}{suffix}");
            HeaderName::from_bytes(full.as_bytes())
                .ok()
                .map(|n| (suffix, n, Bytes::from(full)))
        })
        .collect();
        Signer {
            mac: mac(key, ""),
            prefix,
            names,
        }
    }

    /// The signature header's value for these (suffix, value) pairs; equal
    /// to [`sign`] with the same key and prefix.
    pub fn signature(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        unix_now: u64,
    ) -> String {
        self.signature_over(
            method,
            path,
            &canonical_lines(&self.prefix, headers),
            unix_now,
        )
    }

    /// The signature header's value over the request line and the header
    /// lines of the canonical string (from [`canonical_lines`]).
    fn signature_over(&self, method: &str, path: &str, lines: &str, unix_now: u64) -> String {
        let mut mac = self.mac.clone();
        write_head(
            &mut |part| mac.update(part.as_bytes()),
            method,
            path,
            unix_now,
        );
        mac.update(lines.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("t={unix_now},v1={}", hex_lower(&tag))
    }

    fn name(&self, suffix: &str) -> Result<HeaderName, IdentityError> {
        if let Some((_, n, _)) = self.names.iter().find(|(s, _, _)| *s == suffix) {
            return Ok(n.clone());
        }
        let full = format!("{}{suffix}", self.prefix);
        HeaderName::from_bytes(full.as_bytes()).map_err(|e| IdentityError::Rejected {
            header: full.clone(),
            reason: e.to_string(),
        })
    }

    /// The headers to put on the upstream request, signature last.
    pub fn signed_headers(
        &self,
        identity: &IdentityHeaders,
        method: &str,
        path: &str,
        unix_now: u64,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, IdentityError> {
        let prepared = self.prepare(identity)?;
        let signature = self.signature_header(method, path, &prepared, unix_now)?;
        Ok(prepared
            .headers
            .into_iter()
            .chain(std::iter::once(signature))
            .map(|(name, _, value)| (name, value))
            .collect())
    }

    /// Replace every prefixed header of `req` with `identity` and its
    /// signature, over the method and path `req` carries now.
    pub fn sign_request(
        &self,
        req: &mut RequestHeader,
        identity: &IdentityHeaders,
        unix_now: u64,
    ) -> Result<(), IdentityError> {
        self.sign_prepared(req, &self.prepare(identity)?, unix_now)
    }

    /// Do for `identity` the work that does not depend on the request:
    /// header names and values made, canonical lines written.
    pub fn prepare(&self, identity: &IdentityHeaders) -> Result<PreparedIdentity, IdentityError> {
        let mut headers = Vec::with_capacity(identity.pairs.len());
        for (suffix, value) in &identity.pairs {
            let name = self.name(suffix)?;
            let value = HeaderValue::from_str(value).map_err(|e| IdentityError::Rejected {
                header: name.as_str().to_string(),
                reason: e.to_string(),
            })?;
            let wire = self.wire_name(&name);
            headers.push((name, wire, value));
        }
        Ok(PreparedIdentity {
            prefix: self.prefix.clone(),
            lines: canonical_lines(&self.prefix, &identity.pairs),
            headers,
        })
    }

    /// Replace every prefixed header of `req` with the prepared identity and
    /// its signature, over the method and path `req` carries now.
    pub fn sign_prepared(
        &self,
        req: &mut RequestHeader,
        prepared: &PreparedIdentity,
        unix_now: u64,
    ) -> Result<(), IdentityError> {
        if prepared.prefix != self.prefix {
            // Its header names would not be this signer's.
            return Err(IdentityError::Rejected {
                header: format!("{}{}", self.prefix, names::SIGNATURE),
                reason: format!(
                    "identity prepared for prefix `{}`, signing with `{}`",
                    prepared.prefix, self.prefix
                ),
            });
        }
        let signature =
            self.signature_header(req.method.as_str(), req.uri.path(), prepared, unix_now)?;
        strip_client_headers(req, &self.prefix);
        for (name, wire, value) in prepared.headers.iter().chain(std::iter::once(&signature)) {
            req.insert_header(wire.clone(), value.clone())
                .map_err(|e| IdentityError::Rejected {
                    header: name.as_str().to_string(),
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// The signature header of `prepared` for a request with this `method`
    /// and `path`, as (name, name as pingora takes it, value).
    fn signature_header(
        &self,
        method: &str,
        path: &str,
        prepared: &PreparedIdentity,
        unix_now: u64,
    ) -> Result<(HeaderName, Bytes, HeaderValue), IdentityError> {
        check_request_line(method, path)
            .map_err(|reason| IdentityError::UnsafeRequestLine { reason })?;
        let name = self.name(names::SIGNATURE)?;
        let signature = self.signature_over(method, path, &prepared.lines, unix_now);
        // Visible ASCII by construction (`t=`, digits, `,v1=`, hex).
        let value = HeaderValue::from_str(&signature).map_err(|e| IdentityError::Rejected {
            header: name.as_str().to_string(),
            reason: e.to_string(),
        })?;
        let wire = self.wire_name(&name);
        Ok((name, wire, value))
    }

    /// `name` as pingora's insert takes it: prepared for the known names.
    fn wire_name(&self, name: &HeaderName) -> Bytes {
        match self.names.iter().find(|(_, n, _)| n == name) {
            Some((_, _, wire)) => wire.clone(),
            None => Bytes::copy_from_slice(name.as_str().as_bytes()),
        }
    }
}

/// Identity headers made ready for signing many requests: names and values
/// made and checked, canonical lines written. Only the signature is left
/// for each request ([`Signer::sign_prepared`]). A session's requests share
/// one through a [`PreparedSlot`].
#[derive(Debug)]
pub struct PreparedIdentity {
    /// The prefix of the signer that made it; its header names carry it.
    prefix: String,
    /// The header lines of the canonical string.
    lines: String,
    /// (name, name as pingora takes it, value), in the order they were
    /// added.
    headers: Vec<(HeaderName, Bytes, HeaderValue)>,
}

/// Where a holder (a session) keeps its [`PreparedIdentity`], with the
/// source value it was made from. A request whose source is another value
/// (the user was edited: the directory holds a new `Arc`) or whose signer
/// has another prefix makes a fresh one.
///
/// Whatever the headers are made from must be covered by that check or be
/// fixed for the holder's life: the session's own reference is (one slot
/// per session), the user through the source. A stage that adds headers
/// from elsewhere (an impersonation started mid-session, say) must make
/// that part of the source, or its headers would go stale.
pub struct PreparedSlot<S> {
    held: ArcSwapOption<(Arc<S>, Arc<PreparedIdentity>)>,
}

impl<S> Default for PreparedSlot<S> {
    fn default() -> Self {
        PreparedSlot {
            held: ArcSwapOption::empty(),
        }
    }
}

impl<S> fmt::Debug for PreparedSlot<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedSlot").finish_non_exhaustive()
    }
}

impl<S> PreparedSlot<S> {
    /// The prepared identity of `source` under `signer`: the one held if it
    /// was made from this very `source` (pointer equality, which the held
    /// `Arc` keeps from being reused), else `headers(source)` prepared now.
    pub fn get_or_prepare(
        &self,
        source: &Arc<S>,
        signer: &Signer,
        headers: impl FnOnce(&S) -> Result<IdentityHeaders, IdentityError>,
    ) -> Result<Arc<PreparedIdentity>, IdentityError> {
        if let Some(held) = &*self.held.load() {
            if Arc::ptr_eq(&held.0, source) && held.1.prefix == signer.prefix {
                return Ok(held.1.clone());
            }
        }
        let prepared = Arc::new(signer.prepare(&headers(source)?)?);
        self.held
            .store(Some(Arc::new((source.clone(), prepared.clone()))));
        Ok(prepared)
    }
}

fn mac(key: &[u8], canonical: &str) -> HmacSha256 {
    // HMAC hashes long keys and pads short ones, so `new_from_slice` never
    // returns `InvalidLength` for it (hmac 0.12 always answers `Ok`).
    #[allow(clippy::expect_used)]
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(canonical.as_bytes());
    mac
}

/// Compare a received tag with the expected MAC in constant time. This is
/// the only place tags are compared: `==` on bytes stops at the first
/// difference and tells an attacker, byte by byte, how close a guess is.
fn tags_match(mac: HmacSha256, tag: &[u8]) -> bool {
    mac.verify_slice(tag).is_ok()
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

/// Visible ASCII, inner spaces and tabs; nothing HTTP would strip or split.
fn check_value(value: &str) -> Result<(), UnsafeReason> {
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

fn check_suffix(suffix: &str) -> Result<(), IdentityError> {
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

/// Method and path go into the canonical string one per line, so they must
/// hold no line breaks, controls or spaces (none is valid in a request line).
fn check_request_line(method: &str, path: &str) -> Result<(), &'static str> {
    let visible = |s: &str| s.bytes().all(|b| (0x21..0x7f).contains(&b));
    if method.is_empty() || !visible(method) {
        return Err("method must be visible ASCII");
    }
    if !visible(path) {
        return Err("path must be visible ASCII without spaces");
    }
    if path.contains('?') {
        return Err("path must not include the query string");
    }
    Ok(())
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

impl crate::demo_upstream::IdentityCheck for UpstreamVerifier {
    fn check(&self, method: &str, path: &str, headers: &HeaderMap) -> Result<(), String> {
        self.verify_at(method, path, headers, unix_now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
