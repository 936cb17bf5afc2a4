//! Cryptography: AEAD, the key hierarchy, PAN fingerprints API keys and console sessions.
//!
//! Pure: no I/O, no clock. Nothing here logs, and no error carries key material or plaintext.

pub mod aead;
pub mod api_key;
pub mod checkpoint;
pub mod fingerprint;
pub mod grant;
pub mod key_strength;
pub mod keys;
pub mod session;
pub mod shares;
pub mod totp;

use crate::random::RandomError;

/// Why a cryptographic operation failed. Deliberately coarse: which check failed is not the
/// caller's business, and none of these carry data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Authentication failed: wrong key, wrong associated data, or changed bytes.
    #[error("decryption failed")]
    Decrypt,
    /// The sealed bytes are too short or otherwise not of our format.
    #[error("sealed data is malformed")]
    Malformed,
    /// Encryption refused the input (longer than AES-GCM allows).
    #[error("encryption failed")]
    Encrypt,
}

impl From<RandomError> for CryptoError {
    fn from(_: RandomError) -> Self {
        CryptoError::Random
    }
}
