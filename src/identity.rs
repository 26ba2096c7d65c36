//! Identity headers: what the gateway tells the upstream about who is
//! asking, and the signature that lets the upstream believe it.
//!
//! The module owns four things, one file each, and depends on nothing else
//! in the gateway but the clock, so an upstream written in Rust can verify
//! with it alone:
//! - `strip`: every client header an upstream could read as an identity
//!   header is removed before any other stage runs, so no client can assert
//!   an identity ([`strip_client_headers`]);
//! - `headers`: the model, [`IdentityHeaders`], which refuses any value that
//!   is not safe in an HTTP header;
//! - `sign`: [`Signer`] puts the headers and an HMAC-SHA256 signature
//!   (`{prefix}signature`) on the upstream request. The proxy signs many
//!   requests of one session, so a session keeps a [`PreparedIdentity`] in
//!   its [`PreparedSlot`], keyed on everything it was made from
//!   ([`PreparedFrom`]), and only the signature is made per request;
//! - `verify`: [`verify`](fn@verify) is what an upstream runs (see
//!   `docs/identity-headers.md` for other languages); [`UpstreamVerifier`]
//!   plugs it into the demo app.
//!
//! Which headers a request gets is decided from its
//! [`Subject`](crate::subject::Subject), in [`crate::subject`].
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

mod headers;
mod sign;
mod strip;
mod verify;

use std::time::Duration;

pub use headers::{IdentityError, IdentityHeaders, UnsafeReason};
pub use sign::{
    canonical_string, hex_lower, same_value, sign, PreparedFrom, PreparedIdentity, PreparedSlot,
    Signer,
};
pub use strip::{reads_as_prefixed, strip_client_headers};
pub use verify::{verify, SignedIdentity, UpstreamVerifier, Verified, VerifyError};

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
    /// The 360 layout a partner user's pages use.
    pub const LAYOUT: &str = "layout";
    /// Client tenant the request acts in.
    pub const TENANT: &str = "tenant";
    /// Marks a paired (ghost) user.
    pub const PAIRED: &str = "paired";
    /// The signature itself; never an identity header.
    pub const SIGNATURE: &str = "signature";
}

#[cfg(test)]
mod tests;
