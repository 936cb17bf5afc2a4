//! Keyed PAN fingerprints: HMAC-SHA-256 under a per-tenant key derived (HKDF, RFC 5869) from a
//! root that is separate from the encryption keys. They find an existing token for a PAN
//! without decrypting anything, and without a plain hash that anyone could recompute.
//!
//! Pure: no I/O. Keys are wiped on drop and redacted in Debug.

use std::fmt;

use ring::{hkdf, hmac};
use zeroize::Zeroizing;

use crate::domain::{BucketId, Pan, TenantId};

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

/// HKDF salt of a fingerprint key derived from a tenant's own key.
const TENANT_SALT: &[u8] = b"strongroom:fingerprint:tenant:v1";

impl FingerprintKey {
    /// The fingerprint key of a tenant with a key of its own (see
    /// [`crate::crypto::keys::TenantKey`]): destroyed with it.
    pub(super) fn of_tenant_key(secret: &[u8; 32], tenant: TenantId) -> FingerprintKey {
        let mut out = Zeroizing::new([0u8; 32]);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, TENANT_SALT).extract(secret.as_slice());
        let info = [tenant.0.as_bytes().as_slice()];
        // Expanding 32 bytes from SHA-256 HKDF cannot fail (the limit is 255 × 32).
        if let Ok(okm) = prk.expand(&info, Len32) {
            let _ = okm.fill(out.as_mut_slice());
        }
        FingerprintKey(out)
    }

    /// The fingerprint of a PAN.
    pub fn fingerprint(&self, pan: &Pan) -> Fingerprint {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.0.as_slice());
        let tag = hmac::sign(&key, pan.expose_digits());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        Fingerprint(out)
    }

    /// The PAN's bucket: its first six, last four and length, under the same key with a label
    /// of its own, so a bucket id can never equal a fingerprint and says nothing without the
    /// key. Truncated to 128 bits: it counts, it does not authenticate.
    pub fn bucket(&self, pan: &Pan) -> BucketId {
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.0.as_slice());
        let digits = pan.expose_digits();
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(b"strongroom:bucket:v1:");
        ctx.update(digits.get(..6).unwrap_or_default());
        ctx.update(
            digits
                .get(digits.len().saturating_sub(4)..)
                .unwrap_or_default(),
        );
        ctx.update(&[u8::try_from(digits.len()).unwrap_or(u8::MAX)]);
        let tag = ctx.sign();
        let mut out = [0u8; 16];
        if let Some(first) = tag.as_ref().first_chunk::<16>() {
            out = *first;
        }
        BucketId(out)
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
    fn pans_share_a_bucket_exactly_when_first_six_last_four_and_length_match() {
        let key = FingerprintRoot::new(Zeroizing::new([5u8; 32])).tenant_key(TenantId(Uuid::nil()));
        let bucket = |p: &str| key.bucket(&Pan::parse(p).unwrap());
        // Same first six and last four, different middle.
        assert_eq!(bucket("4111111111111111"), bucket("4111110000091111"));
        assert_ne!(bucket("4111111111111111"), bucket("4111121111101111"));
        assert_ne!(bucket("4111111111111111"), bucket("5555555555554444"));
        // Same ends, another length.
        assert_ne!(bucket("4111111111111111"), bucket("4111111000000011111"));
        let other =
            FingerprintRoot::new(Zeroizing::new([5u8; 32])).tenant_key(TenantId(Uuid::new_v4()));
        assert_ne!(
            bucket("4111111111111111"),
            other.bucket(&Pan::parse("4111111111111111").unwrap())
        );
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
