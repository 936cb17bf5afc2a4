//! The MAC on audit checkpoints: HMAC-SHA-256 under a key that only the master key unwraps,
//! so whoever can write the checkpoint file or the database still cannot forge a chain head.
//!
//! Pure: no I/O. The key is wiped on drop and redacted in Debug.

use std::fmt;

use ring::hmac;
use zeroize::Zeroizing;

use crate::domain::audit::Checkpoint;

/// The key that vouches for checkpoints.
pub struct CheckpointKey(Zeroizing<[u8; 32]>);

impl CheckpointKey {
    /// The key from its unwrapped secret.
    pub fn new(secret: Zeroizing<[u8; 32]>) -> CheckpointKey {
        CheckpointKey(secret)
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.0.as_slice())
    }

    /// The MAC of a checkpoint.
    pub fn sign(&self, checkpoint: &Checkpoint) -> [u8; 32] {
        let tag = hmac::sign(&self.key(), &checkpoint.canonical());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Whether `mac` vouches for `checkpoint` (constant time).
    pub fn verify(&self, checkpoint: &Checkpoint, mac: &[u8]) -> bool {
        hmac::verify(&self.key(), &checkpoint.canonical(), mac).is_ok()
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CheckpointKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            chain: Uuid::from_u128(5),
            seq: 42,
            hash: [7; 32],
            at: Utc.timestamp_opt(1_800_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn a_checkpoint_verifies_only_unchanged_and_under_its_key() {
        let key = CheckpointKey::new(Zeroizing::new([1; 32]));
        let mac = key.sign(&checkpoint());
        assert!(key.verify(&checkpoint(), &mac));
        let moved = Checkpoint {
            seq: 41,
            ..checkpoint()
        };
        assert!(!key.verify(&moved, &mac));
        let other = CheckpointKey::new(Zeroizing::new([2; 32]));
        assert!(!other.verify(&checkpoint(), &mac));
        assert!(!key.verify(&checkpoint(), &mac[..31]));
    }

    #[test]
    fn debug_shows_no_key() {
        let key = CheckpointKey::new(Zeroizing::new([0xAB; 32]));
        assert_eq!(format!("{key:?}"), "CheckpointKey(..)");
    }
}
