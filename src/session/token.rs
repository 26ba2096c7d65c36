//! Session tokens: the secret in the cookie, and what is derived from it.

use std::fmt;

use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::SessionKey;

/// The secret a browser holds: 256 random bits, base64url. `Debug` never
/// prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A fresh token from the OS random source.
    pub fn generate() -> Token {
        Token(random_b64(32))
    }

    /// Wrap a token read from a cookie.
    pub fn from_cookie(value: &str) -> Option<Token> {
        // 32 bytes in unpadded base64url are 43 characters; anything else
        // was not made by us and need not reach the store.
        (value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Token(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the store keys the session on: a SHA-256 of the token, so a
    /// leaked store dump holds no usable cookie.
    pub fn key(&self) -> SessionKey {
        SessionKey(crate::identity::hex_lower(&Sha256::digest(
            self.0.as_bytes(),
        )))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<secret>)")
    }
}

/// The short, non-secret name of a session (logs, admin listings,
/// `x-guise-session`). Derived from the key with a separate label, so it
/// reveals nothing that could find the key.
pub fn reference_of(key: &SessionKey) -> String {
    let mut h = Sha256::new();
    h.update(b"guise-session-ref:");
    h.update(key.0.as_bytes());
    hex::encode(h.finalize())[..12].to_string()
}

/// `n` random bytes, base64url without padding.
pub fn random_b64(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_well_formed_and_never_printed() {
        let a = Token::generate();
        let b = Token::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 43);
        assert!(Token::from_cookie(a.as_str()).is_some());
        assert!(!format!("{a:?}").contains(a.as_str()));
    }

    #[test]
    fn malformed_cookie_values_are_not_tokens() {
        for v in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}!", "a".repeat(42)),
        ] {
            assert!(Token::from_cookie(v).is_none(), "{v}");
        }
    }

    #[test]
    fn the_key_and_reference_do_not_contain_the_token() {
        let t = Token::generate();
        let key = t.key();
        assert_eq!(key.0.len(), 64);
        assert!(!key.0.contains(t.as_str()));
        let r = reference_of(&key);
        assert_eq!(r.len(), 12);
        assert!(!key.0.starts_with(&r));
    }
}
