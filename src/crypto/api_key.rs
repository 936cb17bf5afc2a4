//! API keys: high-entropy bearer secrets shown once; only their SHA-256 is stored.
//!
//! A key has 256 random bits, so a fast hash is the right comparison (a password hash would
//! only slow the hot path; SPEC "Where we aim"). No I/O. Keys are wiped on drop.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::random::{self, Csprng, RandomError};

/// Every key starts with this, so secret scanners can spot a leaked one.
pub const PREFIX: &str = "sr_";
/// Longest bearer value considered; longer ones are refused before hashing.
pub const MAX_LEN: usize = 128;

/// A freshly generated API key, to be shown once.
pub struct ApiKey(Zeroizing<String>);

/// The stored form of a key.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyHash(pub [u8; 32]);

impl ApiKey {
    /// A new random key.
    pub fn generate(rng: &dyn Csprng) -> Result<ApiKey, RandomError> {
        let bytes = Zeroizing::new(random::bytes::<32>(rng)?);
        let mut text = String::with_capacity(PREFIX.len() + 43);
        text.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(*bytes, &mut text);
        Ok(ApiKey(Zeroizing::new(text)))
    }

    /// The key text, to show to its owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its stored form.
    pub fn hash(&self) -> KeyHash {
        hash(&self.0)
    }
}

/// The stored form of a presented bearer value.
pub fn hash(presented: &str) -> KeyHash {
    let digest = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    KeyHash(out)
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SystemRandom;

    #[test]
    fn keys_are_prefixed_unique_and_hash_consistently() {
        let rng = SystemRandom::new();
        let a = ApiKey::generate(&rng).unwrap();
        let b = ApiKey::generate(&rng).unwrap();
        assert!(a.expose().starts_with(PREFIX));
        assert_eq!(a.expose().len(), 46);
        assert_ne!(a.expose(), b.expose());
        assert_eq!(a.hash(), hash(a.expose()));
        assert_ne!(a.hash(), b.hash());
        assert!(!format!("{a:?}").contains(a.expose()));
    }
}
