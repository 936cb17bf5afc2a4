//! Keyed PAN fingerprints: HMAC-SHA-256 under a per-tenant key derived (HKDF, RFC 5869) from a
//! root that is separate from the encryption keys. They find an existing token for a PAN
//! without decrypting anything, and without a plain hash that anyone could recompute.
//!
//! Pure: no I/O. Keys are wiped on drop and redacted in Debug.

use std::fmt;

use ring::{hkdf, hmac};
use zeroize::Zeroizing;

use crate::domain::{Pan, TenantId};

/// HKDF salt: fixes the purpose of the derived keys (RFC 5869 §3.1).
const SALT: &[u8] = b"strongroom:fingerprint:v1";

/// The root from which every tenant's fingerprint key is derived.
pub struct FingerprintRoot(Zeroizing<[u8; 32]>);

/// One tenant's fingerprint key.
pub struct FingerprintKey(Zeroizing<[u8; 32]>);

/// A PAN's fingerprint within one tenant.
#[derive(Clone, PartialEq, Eq)]
pub struct Fingerprint(pub [u8; 32]);

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

impl FingerprintRoot {
    /// The root from its unwrapped secret.
    pub fn new(secret: Zeroizing<[u8; 32]>) -> FingerprintRoot {
        FingerprintRoot(secret)
    }

    /// Derives the key of one tenant: tenants never share fingerprints, so one tenant's
    /// fingerprints say nothing about another's PANs.
    pub fn tenant_key(&self, tenant: TenantId) -> FingerprintKey {
        let mut out = Zeroizing::new([0u8; 32]);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(self.0.as_slice());
        let info = [tenant.0.as_bytes().as_slice()];
        // Expanding 32 bytes from SHA-256 HKDF cannot fail (the limit is 255 × 32).
        if let Ok(okm) = prk.expand(&info, Len32) {
            let _ = okm.fill(out.as_mut_slice());
        }
        FingerprintKey(out)
    }
}

impl FingerprintKey {
    /// The fingerprint of a PAN.
    pub fn fingerprint(&self, pan: &Pan) -> Fingerprint {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.0.as_slice());
        let tag = hmac::sign(&key, pan.expose_digits());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Fingerprint(out)
    }
}

impl fmt::Debug for FingerprintRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintRoot(<redacted>)")
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(<redacted>)")
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn same_pan_same_tenant_gives_the_same_fingerprint() {
        let root = FingerprintRoot::new(Zeroizing::new([5u8; 32]));
        let tenant = TenantId(Uuid::new_v4());
        let pan = Pan::parse("4111111111111111").unwrap();
        assert_eq!(
            root.tenant_key(tenant).fingerprint(&pan),
            root.tenant_key(tenant).fingerprint(&pan)
        );
    }

    #[test]
    fn tenants_and_roots_do_not_share_fingerprints() {
        let root = FingerprintRoot::new(Zeroizing::new([5u8; 32]));
        let other_root = FingerprintRoot::new(Zeroizing::new([6u8; 32]));
        let (a, b) = (TenantId(Uuid::new_v4()), TenantId(Uuid::new_v4()));
        let pan = Pan::parse("4111111111111111").unwrap();
        let fa = root.tenant_key(a).fingerprint(&pan);
        assert_ne!(fa, root.tenant_key(b).fingerprint(&pan));
        assert_ne!(fa, other_root.tenant_key(a).fingerprint(&pan));
    }

    #[test]
    fn a_fingerprint_is_not_a_plain_hash_of_the_pan() {
        let root = FingerprintRoot::new(Zeroizing::new([5u8; 32]));
        let pan = Pan::parse("4111111111111111").unwrap();
        let plain = ring::digest::digest(&ring::digest::SHA256, b"4111111111111111");
        assert_ne!(
            root.tenant_key(TenantId(Uuid::nil())).fingerprint(&pan).0,
            plain.as_ref()
        );
    }
}
