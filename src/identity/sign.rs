//! Signing identity headers: the canonical string, the HMAC, and the
//! per-session preparation that leaves only the signature to each request.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use sha2::Sha256;

use super::headers::{IdentityError, IdentityHeaders};
use super::strip::strip_client_headers;
use super::{names, CANONICAL_VERSION};

pub(super) type HmacSha256 = Hmac<Sha256>;

/// The exact string the signature covers (see the module docs).
///
/// `headers` are (suffix, value) pairs; each line's name is `prefix` +
/// suffix, lower-cased; lines are sorted by name then value (byte order); a
/// pair whose suffix is `signature` is left out. `method` is as sent
/// (case-sensitive) and `path` is the request target's path without `?` and
/// the query. Callers must pass a method and path free of control
/// characters and values already checked (as [`IdentityHeaders`] and
/// [`verify`](fn@super::verify) do); otherwise two inputs could share one string.
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

    /// The lower-case header prefix this signer names headers with.
    pub fn prefix(&self) -> &str {
        &self.prefix
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
        // `t=<unix>,v1=<hex>` written by hand: one allocation, no
        // formatting machinery (this runs for every signed request).
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(2 + 20 + 4 + 2 * tag.len());
        out.push_str("t=");
        let mut digits = [0u8; 20];
        let (mut n, mut i) = (unix_now, digits.len());
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend(digits[i..].iter().map(|d| char::from(*d)));
        out.push_str(",v1=");
        for b in tag.iter() {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
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
        let value = HeaderValue::from_maybe_shared(Bytes::from(signature)).map_err(|e| {
            IdentityError::Rejected {
                header: name.as_str().to_string(),
                reason: e.to_string(),
            }
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

/// What a [`PreparedIdentity`] is made from: the shared values (users,
/// and later partner or impersonation records) whose fields become header
/// values. A slot compares them by address with what it holds, so an edited
/// user (the directory holds a new `Arc`) or any other changed source makes
/// a fresh preparation. The session's own reference needs no entry: a slot
/// lives and dies with its session.
pub trait PreparedFrom {
    /// The sources, kept by the slot while it holds their preparation (which
    /// also keeps an address from being reused by another value meanwhile).
    fn sources(&self) -> Vec<Arc<dyn Any + Send + Sync>>;
    /// Whether `held` (an earlier [`Self::sources`]) are these sources,
    /// compare each with [`same_value`]. Runs per request: no allocation.
    fn is_from(&self, held: &[Arc<dyn Any + Send + Sync>]) -> bool;
    /// The headers these sources give.
    fn headers(&self) -> Result<IdentityHeaders, IdentityError>;
}

/// `held` is the very value `now` points to (not an equal copy).
pub fn same_value<T: Any + Send + Sync>(held: &Arc<dyn Any + Send + Sync>, now: &Arc<T>) -> bool {
    std::ptr::eq(
        Arc::as_ptr(held) as *const (),
        Arc::as_ptr(now) as *const (),
    )
}

/// Where a holder (a session) keeps its [`PreparedIdentity`], with the
/// sources it was made from (see [`PreparedFrom`]). A request whose sources
/// differ, or whose signer has another prefix, makes a fresh one.
#[derive(Default)]
pub struct PreparedSlot {
    held: ArcSwapOption<Held>,
}

struct Held {
    sources: Vec<Arc<dyn Any + Send + Sync>>,
    prepared: Arc<PreparedIdentity>,
}

impl fmt::Debug for PreparedSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreparedSlot").finish_non_exhaustive()
    }
}

impl PreparedSlot {
    /// The prepared identity of `from` under `signer`: the one held if it
    /// was made from these very sources with this prefix, else made now.
    pub fn get_or_prepare(
        &self,
        from: &impl PreparedFrom,
        signer: &Signer,
    ) -> Result<Arc<PreparedIdentity>, IdentityError> {
        if let Some(held) = &*self.held.load() {
            if held.prepared.prefix == signer.prefix && from.is_from(&held.sources) {
                return Ok(held.prepared.clone());
            }
        }
        let prepared = Arc::new(signer.prepare(&from.headers()?)?);
        self.held.store(Some(Arc::new(Held {
            sources: from.sources(),
            prepared: prepared.clone(),
        })));
        Ok(prepared)
    }
}

pub(super) fn mac(key: &[u8], canonical: &str) -> HmacSha256 {
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
pub(super) fn tags_match(mac: HmacSha256, tag: &[u8]) -> bool {
    mac.verify_slice(tag).is_ok()
}

/// Method and path go into the canonical string one per line, so they must
/// hold no line breaks, controls or spaces (none is valid in a request line).
pub(super) fn check_request_line(method: &str, path: &str) -> Result<(), &'static str> {
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
