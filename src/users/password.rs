//! argon2id hashing, and the verification that costs the same whether or
//! not the login exists.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params, ARGON2ID_IDENT};

use super::UsersError;

/// An argon2id hash of a random, discarded password, with the parameters
/// [`hash_password`] uses (`Params::DEFAULT`: m=19456 KiB, t=2, p=1). An
/// unknown login is verified against it so that it costs what a known one
/// costs. A constant rather than computed at start-up: the first refused
/// login would otherwise pay for hashing too and stand out. A test keeps its
/// parameters equal to those of new hashes.
pub(super) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$U9pm0HrHcqIBDGmjbRhkKA$4zj6fPHGZh929vCnjcc+v5qKhUlNy1uI+29FK9+OT64";

/// argon2id, version 0x13, OWASP's minimum parameters (the crate default).
fn hasher() -> Argon2<'static> {
    Argon2::default()
}

/// Hash `plain` for a user's `password_hash`: argon2id with a fresh random
/// salt from the operating system, as a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
pub fn hash_password(plain: &str) -> Result<String, UsersError> {
    if plain.is_empty() {
        return Err(UsersError::EmptyPassword);
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    hasher()
        .hash_password(plain.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hashing {
            reason: e.to_string(),
        })
}

/// Whether `password` matches `stored`. Runs one argon2 verification in
/// every case: against [`DUMMY_HASH`] when there is no stored hash (or it
/// does not parse), and then answers `false`.
pub(super) fn verify(stored: Option<&str>, password: &str) -> bool {
    match stored.and_then(|s| PasswordHash::new(s).ok()) {
        Some(hash) => hasher().verify_password(password.as_bytes(), &hash).is_ok(),
        None => {
            if let Ok(dummy) = PasswordHash::new(DUMMY_HASH) {
                // The outcome is irrelevant; the work is the point.
                let _ = hasher().verify_password(password.as_bytes(), &dummy);
            }
            false
        }
    }
}

/// Whether `phc` is an argon2id PHC string this module can verify.
pub(super) fn check_phc(phc: &str) -> Result<(), &'static str> {
    let hash = PasswordHash::new(phc)
        .map_err(|_| "is not a PHC string; make one with `guise hash-password`")?;
    if hash.algorithm != ARGON2ID_IDENT {
        return Err("must be an argon2id hash; make one with `guise hash-password`");
    }
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err("lacks its salt or hash output");
    }
    Params::try_from(&hash).map_err(|_| "has argon2 parameters out of range")?;
    Ok(())
}

/// The parameters of a PHC string, for the test that keeps the dummy hash's
/// cost equal to that of real hashes.
#[cfg(test)]
pub(super) fn params_of(phc: &str) -> Option<Params> {
    PasswordHash::new(phc)
        .ok()
        .and_then(|h| Params::try_from(&h).ok())
}
