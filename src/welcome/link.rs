//! Set-password links without I/O: making one, the record the store keeps
//! for it, and the decision whether a link still works.
//!
//! The link carries a random secret (32 bytes, base64url). The store keys
//! the link on a SHA-256 of that secret, like sessions, so a store dump
//! holds no usable link. Using a link swaps its record for a spent marker
//! in one atomic step ([`crate::store::Store::swap_once`]); the marker
//! keeps the record's lifetime, so a second use is told "already used"
//! rather than "not valid".

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::LinkError;
use crate::users::User;

/// Prefix of a link's key in the store's one-time namespace.
const KEY_PREFIX: &str = "set-password:";

/// How long a link's record outlives the link itself, so that a late
/// click is told "expired" instead of "not valid".
pub const REMEMBERED_AFTER_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Length of a link's secret: 32 bytes in unpadded base64url.
const SECRET_LEN: usize = 43;

/// What the store keeps for a live link (JSON). Never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRecord {
    /// The user whose password the link sets.
    pub user: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; the link works strictly before this.
    pub expires_at: u64,
    /// The admin who sent it.
    pub issued_by: String,
    /// [`password_fingerprint`] of the user when the link was made: once
    /// the password changes (through this link or any other way), every
    /// older link stops working.
    pub password_was: String,
}

/// What replaces a record when its link is used.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spent {
    spent_at: u64,
}

/// A freshly made link.
#[derive(Debug)]
pub struct Issued {
    /// The secret for the link's address; goes into the email only.
    pub secret: String,
    /// Where the store keeps the record.
    pub key: String,
    pub record: LinkRecord,
    /// How long the store keeps the record.
    pub keep_for: Duration,
}

/// A link for `user`, sent by `by` at `now`, working for `lifetime`
/// (rounded up to whole seconds).
pub fn issue(user: &User, by: &str, now: u64, lifetime: Duration) -> Issued {
    let secret = crate::session::token::random_b64(32);
    let seconds = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    let record = LinkRecord {
        user: user.id.clone(),
        issued_at: now,
        expires_at: now.saturating_add(seconds.max(1)),
        issued_by: by.to_string(),
        password_was: password_fingerprint(user),
    };
    Issued {
        key: key_of(&secret).unwrap_or_default(),
        secret,
        keep_for: Duration::from_secs(seconds.max(1)) + REMEMBERED_AFTER_EXPIRY,
        record,
    }
}

/// The store key of a link's secret; `None` for something that is not a
/// secret we made (it need not reach the store).
pub fn key_of(secret: &str) -> Option<String> {
    let well_formed = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| format!("{KEY_PREFIX}{}", hex::encode(Sha256::digest(secret))))
}

/// A short digest of the user's password hash (or of its absence): enough
/// to notice a change, useless for guessing the password.
pub fn password_fingerprint(user: &User) -> String {
    let mut h = Sha256::new();
    h.update(b"guise-password-was:");
    h.update(user.password_hash.as_deref().unwrap_or("").as_bytes());
    hex::encode(h.finalize())[..16].to_string()
}

/// The marker a used link's record is swapped for.
pub fn spent_marker(now: u64) -> String {
    serde_json::to_string(&Spent { spent_at: now }).unwrap_or_default()
}

/// Whether the stored value of a link (`None`: nothing stored) lets its
/// user set a password at `now`; `user_of` reads the directory. Expiry is
/// decided here by the record's own deadline, not by the store's lifetime
/// of the key, which runs longer.
pub fn judge(
    stored: Option<&str>,
    now: u64,
    user_of: impl Fn(&str) -> Option<Arc<User>>,
) -> Result<(LinkRecord, Arc<User>), LinkError> {
    let stored = stored.ok_or(LinkError::Unknown)?;
    let record: LinkRecord = match serde_json::from_str(stored) {
        Ok(r) => r,
        Err(_) if serde_json::from_str::<Spent>(stored).is_ok() => return Err(LinkError::Used),
        Err(_) => return Err(LinkError::Unknown),
    };
    if now >= record.expires_at {
        return Err(LinkError::Expired);
    }
    let user = user_of(&record.user)
        .filter(|u| u.is_active())
        .ok_or(LinkError::AccountUnavailable)?;
    if password_fingerprint(&user) != record.password_was {
        return Err(LinkError::Superseded);
    }
    Ok((record, user))
}

/// The shortest password a link accepts, in characters.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest, in characters (hashing cost stays bounded).
pub const MAX_PASSWORD_CHARS: usize = 256;

/// Whether `password` (typed twice) may become `email`'s password; the
/// sentence to show if not.
pub fn check_new_password(password: &str, again: &str, email: &str) -> Result<(), &'static str> {
    let n = password.chars().count();
    if password != again {
        Err("The two passwords differ. Type the same password twice.")
    } else if password.trim().chars().count() < MIN_PASSWORD_CHARS {
        Err("Choose a password of at least 12 characters.")
    } else if n > MAX_PASSWORD_CHARS {
        Err("Choose a password of at most 256 characters.")
    } else if password.trim().eq_ignore_ascii_case(email.trim()) {
        Err("Choose a password other than your email address.")
    } else {
        Ok(())
    }
}
