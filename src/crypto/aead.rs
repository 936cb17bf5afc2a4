//! AES-256-GCM with a fresh random 96-bit nonce per message and caller-chosen associated data.
//!
//! Sealed format: `nonce (12) || ciphertext || tag (16)`. No I/O. Opening never slices untrusted
//! input unchecked and returns plaintext in a buffer that is wiped on drop.

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::CryptoError;
use crate::random::{self, Csprng};

/// Bytes of nonce: 96 bits, the size NIST SP 800-38D §8.2 recommends for random nonces.
pub const NONCE_LEN: usize = 12;
/// Bytes of authentication tag.
pub const TAG_LEN: usize = 16;

/// An AES-256-GCM key. The cipher state (round keys) is zeroized on drop by `aes-gcm`.
pub struct AeadKey(Aes256Gcm);

impl AeadKey {
    /// A key from 32 secret bytes.
    pub fn new(secret: &[u8; 32]) -> AeadKey {
        AeadKey(Aes256Gcm::new(&(*secret).into()))
    }

    /// Encrypts `plaintext`, binding `aad`, under a fresh random nonce.
    pub fn seal(
        &self,
        rng: &dyn Csprng,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let nonce_bytes: [u8; NONCE_LEN] = random::bytes(rng)?;
        let nonce = Nonce::from(nonce_bytes);
        let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
        sealed.extend_from_slice(&nonce_bytes);
        let ciphertext = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts what [`AeadKey::seal`] produced with the same `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let (nonce_bytes, ciphertext) = sealed
            .split_at_checked(NONCE_LEN)
            .ok_or(CryptoError::Malformed)?;
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Malformed);
        }
        let nonce_array: [u8; NONCE_LEN] =
            nonce_bytes.try_into().map_err(|_| CryptoError::Malformed)?;
        let nonce = Nonce::from(nonce_array);
        let mut buffer = Zeroizing::new(ciphertext.to_vec());
        self.0
            .decrypt_in_place(&nonce, aad, &mut *buffer)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(buffer)
    }
}

impl std::fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AeadKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SystemRandom;
    use crate::random::testing::Cycle;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// NIST GCM test vectors (gcmEncryptExtIV256.rsp, the AES-GCM spec's test cases 14–16).
    #[test]
    fn matches_nist_vectors() {
        // Test case 16: key feffe9..., IV cafebabefacedbaddecaf888, with AAD.
        let key: [u8; 32] = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
            .try_into()
            .unwrap();
        let iv = hex("cafebabefacedbaddecaf888");
        let pt = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let ct = hex(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        );
        let tag = hex("76fc6ece0f4e1768cddf8853bb2d551b");

        let rng = Cycle::new(&iv);
        let key = AeadKey::new(&key);
        let sealed = key.seal(&rng, &aad, &pt).unwrap();
        assert_eq!(&sealed[..12], iv.as_slice());
        assert_eq!(&sealed[12..12 + ct.len()], ct.as_slice());
        assert_eq!(&sealed[12 + ct.len()..], tag.as_slice());
        assert_eq!(key.open(&aad, &sealed).unwrap().as_slice(), pt.as_slice());

        // Test case 13: all-zero key, empty plaintext: only the tag.
        let zero = AeadKey::new(&[0u8; 32]);
        let rng = Cycle::new(&[0]);
        let sealed = zero.seal(&rng, b"", b"").unwrap();
        assert_eq!(
            &sealed[12..],
            hex("530f8afbc74536b9a963b4f1c4cb738b").as_slice()
        );
    }

    #[test]
    fn nonces_are_fresh_for_every_message() {
        let rng = SystemRandom::new();
        let key = AeadKey::new(&[7u8; 32]);
        let a = key.seal(&rng, b"aad", b"same").unwrap();
        let b = key.seal(&rng, b"aad", b"same").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_key_wrong_aad_and_changed_bytes_fail() {
        let rng = SystemRandom::new();
        let key = AeadKey::new(&[1u8; 32]);
        let sealed = key
            .seal(&rng, b"tenant-a|token-1", b"4111111111111111")
            .unwrap();
        assert_eq!(
            AeadKey::new(&[2u8; 32])
                .open(b"tenant-a|token-1", &sealed)
                .unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            key.open(b"tenant-a|token-2", &sealed).unwrap_err(),
            CryptoError::Decrypt
        );
        for i in 0..sealed.len() {
            let mut changed = sealed.clone();
            changed[i] ^= 0x01;
            assert!(key.open(b"tenant-a|token-1", &changed).is_err(), "byte {i}");
        }
    }

    #[test]
    fn truncated_input_is_malformed_not_a_panic() {
        let key = AeadKey::new(&[1u8; 32]);
        for len in 0..NONCE_LEN + TAG_LEN {
            assert_eq!(
                key.open(b"", &vec![0u8; len]).unwrap_err(),
                CryptoError::Malformed
            );
        }
    }
}
