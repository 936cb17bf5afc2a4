//! Console session tokens and the CSRF tokens bound to them.
//!
//! A session token is 256 random bits carried in an `HttpOnly` cookie, so no script reads it;
//! only its SHA-256 is stored. The CSRF token is an HMAC of a fixed label under the session
//! token: the server recomputes it from the cookie, so it needs no storage and no key of its
//! own, and a page on another origin, which can make the browser send the cookie but cannot
//! read it, cannot make the token. No I/O. Tokens are wiped on drop and never printed.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::random::{self, Csprng, RandomError};

/// What the CSRF token is an HMAC of (versioned, so a change of scheme invalidates old ones).
const CSRF_LABEL: &[u8] = b"strongroom:csrf:v1";
/// Length of a token's text: 32 bytes in unpadded base64url.
const TEXT_LEN: usize = 43;

/// A console session's bearer token.
pub struct SessionToken(Zeroizing<[u8; 32]>);

impl SessionToken {
    /// A new random token.
    pub fn generate(rng: &dyn Csprng) -> Result<SessionToken, RandomError> {
        Ok(SessionToken(Zeroizing::new(random::bytes::<32>(rng)?)))
    }

    /// A token as the cookie carries it; `None` for anything not shaped like one.
    pub fn parse(text: &str) -> Option<SessionToken> {
        if text.len() != TEXT_LEN {
            return None;
        }
        let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(text).ok()?);
        let array: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(SessionToken(Zeroizing::new(array)))
    }

    /// The cookie's value. Only ever written into a `Set-Cookie` header.
    pub fn expose(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(*self.0))
    }

    /// Its stored form.
    pub fn hash(&self) -> SessionHash {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.0.as_ref());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        SessionHash(out)
    }

    /// The CSRF token a page of this session sends back in `X-CSRF-Token`.
    pub fn csrf_token(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.csrf_tag().as_ref())
    }

    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(presented.trim()) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_ref());
        ring::hmac::verify(&key, CSRF_LABEL, &tag).is_ok()
    }

    fn csrf_tag(&self) -> ring::hmac::Tag {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_ref());
        ring::hmac::sign(&key, CSRF_LABEL)
    }
}

/// The stored form of a session token: its SHA-256. Printed only by its public name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionHash(pub [u8; 32]);

impl SessionHash {
    /// A short, public name of the session for the trail: the first 8 bytes of the hash, in
    /// hex. It links a session's start and end and cannot be turned back into the token.
    pub fn public_name(&self) -> String {
        hex::encode(self.0.get(..8).unwrap_or_default())
    }
}

impl fmt::Debug for SessionHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionHash({}..)", self.public_name())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SystemRandom;

    #[test]
    fn a_token_round_trips_through_its_cookie_text_and_hashes_the_same() {
        let rng = SystemRandom::new();
        let token = SessionToken::generate(&rng).unwrap();
        let text = token.expose();
        assert_eq!(text.len(), TEXT_LEN);
        let parsed = SessionToken::parse(&text).unwrap();
        assert_eq!(parsed.hash(), token.hash());
        assert_ne!(
            SessionToken::generate(&rng).unwrap().hash(),
            token.hash(),
            "tokens are random"
        );
        assert!(!format!("{token:?}").contains(text.as_str()));
    }

    #[test]
    fn anything_not_shaped_like_a_token_is_refused() {
        for text in ["", "abc", &"A".repeat(42), &"A".repeat(44), &"*".repeat(43)] {
            assert!(SessionToken::parse(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn the_csrf_token_belongs_to_its_session_only() {
        let rng = SystemRandom::new();
        let a = SessionToken::generate(&rng).unwrap();
        let b = SessionToken::generate(&rng).unwrap();
        assert!(a.csrf_matches(&a.csrf_token()));
        assert!(!a.csrf_matches(&b.csrf_token()));
        assert!(!a.csrf_matches(""));
        assert!(!a.csrf_matches("not base64 at all!"));
        // Neither the token nor its stored hash is the CSRF token.
        assert!(!a.csrf_matches(&a.expose()));
        assert!(!a.csrf_matches(&URL_SAFE_NO_PAD.encode(a.hash().0)));
    }

    #[test]
    fn the_public_name_is_a_prefix_of_the_hash_and_all_debug_shows() {
        let hash = SessionHash([0xabu8; 32]);
        assert_eq!(hash.public_name(), "abababababababab");
        assert_eq!(format!("{hash:?}"), "SessionHash(abababababababab..)");
    }
}
