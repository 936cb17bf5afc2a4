//! The key hierarchy: a master key (KEK) wraps versioned data-encryption keys (DEKs) and the
//! fingerprint root; DEKs encrypt PANs bound to their tenant, token and key version.
//!
//! A master key's text says who made it: plain base64 from `strongroom keygen`, or
//! [`DEV_KEY_PREFIX`] and base64 from `strongroom dev`. Parsing refuses a key that
//! [`key_strength`] judges weak, in either form.
//!
//! Pure: no I/O. Where the wrapped keys live and how encryptions are counted is the key
//! service's business. Every type here zeroizes on drop and redacts in Debug.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::CryptoError;
use super::aead::AeadKey;
use super::key_strength::{self, Weakness};
use crate::domain::{Pan, TenantId, Token};
use crate::random::{self, Csprng, RandomError};

/// Why a master key was refused. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterKeyError {
    /// Not set at all.
    #[error("STRONGROOM_MASTER_KEY is not set (generate one with `strongroom keygen`)")]
    Missing,
    /// Not standard base64.
    #[error("STRONGROOM_MASTER_KEY is not valid base64 (generate one with `strongroom keygen`)")]
    NotBase64,
    /// Decodes to something other than 32 bytes.
    #[error("STRONGROOM_MASTER_KEY must decode to exactly 32 bytes (an AES-256 key)")]
    WrongLength,
    /// Decodes to 32 bytes that no random generator would produce.
    #[error(
        "STRONGROOM_MASTER_KEY is not a random key: {0}; generate one with `strongroom keygen`"
    )]
    Weak(Weakness),
    /// A key that `strongroom dev` made, where a production key is needed.
    #[error(
        "STRONGROOM_MASTER_KEY is a development key made by `strongroom dev`; generate a production key with `strongroom keygen`"
    )]
    Development,
    /// The key is to be in an HSM, and the HSM could not be used.
    #[error("{0}")]
    Hsm(String),
    /// Both a key and an HSM key were configured.
    #[error("both STRONGROOM_MASTER_KEY and STRONGROOM_MASTER_KEY_PKCS11 are set: keep one")]
    Both,
    /// The key file (`STRONGROOM_MASTER_KEY_FILE`) could not be used: the reason, naming the
    /// file, never its content.
    #[error("{0}")]
    File(String),
}

impl MasterKeyError {
    /// The refusal of a key that came from `source` (another variable, a file) rather than
    /// `STRONGROOM_MASTER_KEY`, which the messages name.
    pub fn describe_as(&self, source: &str) -> String {
        self.to_string().replace("STRONGROOM_MASTER_KEY", source)
    }
}

/// Where a master key came from, as its text says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeyKind {
    /// Plain base64, as `strongroom keygen` prints it.
    Production,
    /// Base64 after [`DEV_KEY_PREFIX`], as `strongroom dev` writes it to its data directory.
    Development,
}

/// What `strongroom dev` puts before the base64 of its master key, so that the key is
/// recognised (and refused by `serve` and `migrate`) if it is ever copied into a production
/// environment. Someone who strips it makes the key look like any other: the prefix guards
/// against accidents, not against intent.
pub const DEV_KEY_PREFIX: &str = "strongroom-dev-key:";

/// The key-encryption key. It only ever wraps and unwraps other keys: in this process's memory,
/// or inside an HSM that never lets it out ([`ExternalKek`]).
pub struct MasterKey(Kek, [u8; FINGERPRINT_LEN], &'static str);

/// Where the master key does its work.
enum Kek {
    /// In memory (from the environment or rebuilt from shares); wiped on drop.
    Memory(Box<AeadKey>),
    /// Inside a device: every wrap and unwrap is a call to it.
    External(std::sync::Arc<dyn ExternalKek>),
}

/// An AES-256-GCM key held by a device (an HSM through PKCS#11) that seals and opens with
/// the nonce and associated data it is given and never reveals the key. Its output is the
/// ciphertext followed by the 16-byte tag, as AES-GCM everywhere, so what it wraps reads the
/// same as what a key in memory wraps.
pub trait ExternalKek: Send + Sync {
    /// Encrypts `plaintext` under `nonce` and `aad`: ciphertext ‖ tag.
    fn seal(&self, nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Whether the device would let the key out, as it reports it (`None`: cannot tell).
    fn extractable(&self) -> Option<bool> {
        None
    }
    /// Decrypts ciphertext ‖ tag; fails on a wrong key, nonce, associated data or a changed byte.
    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

/// Bytes of a master key's fingerprint (shown as hex).
const FINGERPRINT_LEN: usize = 6;

impl MasterKey {
    /// Parses either form: plain base64 (`strongroom keygen`) or [`DEV_KEY_PREFIX`] and base64
    /// (`strongroom dev`), and says which it was. Refuses a key that is not 32 bytes or that
    /// [`key_strength::weakness`] judges weak, whatever its form.
    pub fn from_text(text: &str) -> Result<(MasterKey, MasterKeyKind), MasterKeyError> {
        let text = text.trim();
        let (kind, encoded) = match text.strip_prefix(DEV_KEY_PREFIX) {
            Some(rest) => (MasterKeyKind::Development, rest),
            None => (MasterKeyKind::Production, text),
        };
        let decoded = Zeroizing::new(
            STANDARD
                .decode(encoded)
                .map_err(|_| MasterKeyError::NotBase64)?,
        );
        let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(
            decoded
                .as_slice()
                .try_into()
                .map_err(|_| MasterKeyError::WrongLength)?,
        );
        Ok((
            MasterKey::from_bytes(&bytes)?.with_origin("environment"),
            kind,
        ))
    }

    /// A master key from its 32 bytes (as custodians' shares rebuild it); refuses one that
    /// [`key_strength::weakness`] judges weak.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<MasterKey, MasterKeyError> {
        if let Some(weakness) = key_strength::weakness(bytes) {
            return Err(MasterKeyError::Weak(weakness));
        }
        // A keyed digest of the key under a fixed label, cut to 48 bits: enough to tell two
        // keys apart on an operator's screen, nothing to learn the key from.
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes.as_slice()),
            b"strongroom:master-key-fingerprint:v1",
        );
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        for (to, from) in fingerprint.iter_mut().zip(tag.as_ref()) {
            *to = *from;
        }
        Ok(MasterKey(
            Kek::Memory(Box::new(AeadKey::new(bytes))),
            fingerprint,
            "memory",
        ))
    }

    /// A master key held by a device. Its fingerprint is the device's own MAC (GMAC under a
    /// fixed nonce that no wrap draws, as 2^-96 odds go) of a fixed label, cut to 48 bits.
    pub fn external(kek: std::sync::Arc<dyn ExternalKek>) -> Result<MasterKey, CryptoError> {
        let tag = kek.seal(
            b"strongroomfp",
            b"strongroom:master-key-fingerprint:v1",
            &[],
        )?;
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        for (to, from) in fingerprint.iter_mut().zip(&tag) {
            *to = *from;
        }
        Ok(MasterKey(Kek::External(kek), fingerprint, "pkcs11"))
    }

    /// Whether the key is held by a device rather than in memory.
    pub fn is_external(&self) -> bool {
        matches!(self.0, Kek::External(_))
    }

    /// Where the key came from, for records: `environment`, `shares`, `pkcs11` (or `memory`
    /// when not said).
    pub fn kind_name(&self) -> &'static str {
        self.2
    }

    /// The same key, said to come from `origin` (custodians' `shares`, say).
    pub fn with_origin(mut self, origin: &'static str) -> MasterKey {
        self.2 = origin;
        self
    }

    /// For a key in a device: whether the device would let it out.
    pub fn extractable(&self) -> Option<bool> {
        match &self.0 {
            Kek::Memory(_) => None,
            Kek::External(kek) => kek.extractable(),
        }
    }

    fn seal(&self, rng: &dyn Csprng, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        match &self.0 {
            Kek::Memory(key) => key.seal(rng, aad, plaintext),
            Kek::External(kek) => {
                let nonce: [u8; 12] = random::bytes(rng)?;
                let mut sealed = nonce.to_vec();
                sealed.extend_from_slice(&kek.seal(&nonce, aad, plaintext)?);
                Ok(sealed)
            }
        }
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match &self.0 {
            Kek::Memory(key) => key.open(aad, sealed),
            Kek::External(kek) => {
                let (nonce, rest) = sealed.split_at_checked(12).ok_or(CryptoError::Malformed)?;
                if rest.len() < 16 {
                    return Err(CryptoError::Malformed);
                }
                let nonce: [u8; 12] = nonce.try_into().map_err(|_| CryptoError::Malformed)?;
                kek.open(&nonce, aad, rest)
            }
        }
    }

    /// The 32 bytes of a production key in its base64 form, checked as [`MasterKey::from_base64`]
    /// checks it: only to split them into custodians' shares (`crypto::shares`).
    pub fn production_bytes(text: &str) -> Result<Zeroizing<[u8; 32]>, MasterKeyError> {
        MasterKey::from_base64(text)?;
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| MasterKeyError::NotBase64)?,
        );
        decoded
            .as_slice()
            .try_into()
            .map(Zeroizing::new)
            .map_err(|_| MasterKeyError::WrongLength)
    }

    /// Parses a production key, the base64 form that `strongroom keygen` prints; refuses a
    /// development key with [`MasterKeyError::Development`].
    pub fn from_base64(text: &str) -> Result<MasterKey, MasterKeyError> {
        match MasterKey::from_text(text)? {
            (key, MasterKeyKind::Production) => Ok(key),
            (_, MasterKeyKind::Development) => Err(MasterKeyError::Development),
        }
    }

    /// A fresh random master key in its base64 form. It always passes the strength check that
    /// parsing applies: a draw that fails it (probability about 3e-17) is drawn again, and a
    /// generator that keeps producing weak keys is broken and reported as failed.
    pub fn generate_base64(rng: &dyn Csprng) -> Result<Zeroizing<String>, RandomError> {
        for _ in 0..4 {
            let bytes = Zeroizing::new(random::bytes::<32>(rng)?);
            if key_strength::weakness(&bytes).is_none() {
                return Ok(Zeroizing::new(STANDARD.encode(*bytes)));
            }
        }
        Err(RandomError)
    }

    /// A fresh random master key for `strongroom dev`, marked as one: [`DEV_KEY_PREFIX`] and
    /// base64.
    pub fn generate_dev_text(rng: &dyn Csprng) -> Result<Zeroizing<String>, RandomError> {
        let base64 = MasterKey::generate_base64(rng)?;
        let mut text = Zeroizing::new(String::with_capacity(DEV_KEY_PREFIX.len() + base64.len()));
        text.push_str(DEV_KEY_PREFIX);
        text.push_str(&base64);
        Ok(text)
    }

    /// A short fingerprint (12 hex digits) that tells this key from another without revealing
    /// it: the first 48 bits of HMAC-SHA-256 keyed with it over a fixed label.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.1)
    }

    /// Wraps a 256-bit secret; `label` names what it is (and is bound as associated data, so a
    /// wrapped DEK cannot be passed off as the fingerprint root or as another version).
    pub fn wrap(
        &self,
        rng: &dyn Csprng,
        label: &str,
        secret: &[u8; 32],
    ) -> Result<Vec<u8>, CryptoError> {
        self.seal(rng, &wrap_aad(label), secret)
    }

    /// Unwraps a secret wrapped under the same `label`. Fails if the master key is not the one
    /// that wrapped it.
    pub fn unwrap(&self, label: &str, wrapped: &[u8]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
        let plain = self.open(&wrap_aad(label), wrapped)?;
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed)?;
        Ok(Zeroizing::new(bytes))
    }
}

impl MasterKey {
    /// Wraps a secret of any length, such as a PKCS#8 signing key, under `label`.
    pub fn wrap_bytes(
        &self,
        rng: &dyn Csprng,
        label: &str,
        secret: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        self.seal(rng, &wrap_aad(label), secret)
    }

    /// Unwraps a secret wrapped by [`MasterKey::wrap_bytes`] under the same `label`.
    pub fn unwrap_bytes(
        &self,
        label: &str,
        wrapped: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.open(&wrap_aad(label), wrapped)
    }
}

fn wrap_aad(label: &str) -> Vec<u8> {
    let mut aad = b"strongroom:wrap:v1:".to_vec();
    aad.extend_from_slice(label.as_bytes());
    aad
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

/// The wrap label of a DEK version made before tenant keys (it seals directly).
pub fn dek_label(version: u32) -> String {
    format!("dek:{version}")
}

/// The wrap label of a DEK version that seals through tenant keys. A label of its own binds
/// the kind to the wrap: a binary from before tenant keys, which unwraps every DEK as
/// `dek:<version>`, cannot open such a key and so never seals under it directly.
pub fn tenant_bound_dek_label(version: u32) -> String {
    format!("dek-tb:{version}")
}

/// A data-encryption key of one version.
///
/// A tenant-bound version ([`DataKey::new_tenant_bound`]) seals nothing itself: each tenant's
/// card numbers are sealed under a key derived from it and that tenant's [`TenantKey`]
/// ([`DataKey::for_tenant`]), so destroying a tenant key leaves its rows unopenable even to
/// someone holding every data key.
pub struct DataKey {
    version: u32,
    key: Sealer,
}

// One per key version in a keyring: the size difference costs nothing worth a box on the path
// that seals.
#[allow(clippy::large_enum_variant)]
enum Sealer {
    /// Seals directly (versions made before tenant keys).
    Direct(AeadKey),
    /// Derives a key per tenant from this secret.
    TenantBound(Zeroizing<[u8; 32]>),
}

/// HKDF salt of a tenant's key under a tenant-bound data key version (RFC 5869 §3.1).
const TENANT_DEK_SALT: &[u8] = b"strongroom:tenant-dek:v1";

/// One tenant's key: wrapped by the master key, it is the second input of every key that
/// seals or fingerprints that tenant's card numbers. `strongroom tenant shred` destroys it.
pub struct TenantKey(Zeroizing<[u8; 32]>);

impl TenantKey {
    /// The tenant key from its unwrapped secret.
    pub fn new(secret: Zeroizing<[u8; 32]>) -> TenantKey {
        TenantKey(secret)
    }

    /// The tenant's fingerprint key, derived from this key alone.
    pub fn fingerprint_key(&self, tenant: TenantId) -> super::fingerprint::FingerprintKey {
        super::fingerprint::FingerprintKey::of_tenant_key(&self.0, tenant)
    }
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TenantKey(<redacted>)")
    }
}

/// The wrap label of a tenant's key.
pub fn tenant_key_label(tenant: TenantId) -> String {
    format!("tenant:{}", tenant.0)
}

/// A PAN encrypted under a DEK: the version that sealed it and `nonce || ciphertext || tag`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedPan {
    /// The DEK version that sealed it.
    pub version: u32,
    /// The sealed bytes.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for SealedPan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SealedPan(v{}, {} bytes)",
            self.version,
            self.bytes.len()
        )
    }
}

impl DataKey {
    /// A DEK from its unwrapped secret, sealing directly (a version made before tenant keys).
    pub fn new(version: u32, secret: &[u8; 32]) -> DataKey {
        DataKey {
            version,
            key: Sealer::Direct(AeadKey::new(secret)),
        }
    }

    /// A tenant-bound DEK from its unwrapped secret: it seals through [`DataKey::for_tenant`].
    pub fn new_tenant_bound(version: u32, secret: &[u8; 32]) -> DataKey {
        DataKey {
            version,
            key: Sealer::TenantBound(Zeroizing::new(*secret)),
        }
    }

    /// Whether it seals through a tenant's key.
    pub fn is_tenant_bound(&self) -> bool {
        matches!(self.key, Sealer::TenantBound(_))
    }

    /// The key of this version for one tenant: HKDF-SHA-256 over this key's secret and the
    /// tenant's key, the tenant and the version as info. `None` for a direct key (it seals
    /// for every tenant itself).
    pub fn for_tenant(&self, tenant: TenantId, tenant_key: &TenantKey) -> Option<DataKey> {
        let Sealer::TenantBound(secret) = &self.key else {
            return None;
        };
        let mut ikm = Zeroizing::new(Vec::with_capacity(64));
        ikm.extend_from_slice(secret.as_slice());
        ikm.extend_from_slice(tenant_key.0.as_slice());
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, TENANT_DEK_SALT).extract(&ikm);
        let version = self.version.to_be_bytes();
        let info = [tenant.0.as_bytes().as_slice(), version.as_slice()];
        let mut derived = Zeroizing::new([0u8; 32]);
        // Expanding 32 bytes from SHA-256 HKDF cannot fail (the limit is 255 × 32).
        prk.expand(&info, Len32)
            .and_then(|okm| okm.fill(derived.as_mut_slice()))
            .ok()?;
        Some(DataKey::new(self.version, &derived))
    }

    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Encrypts a PAN for one row: the associated data binds tenant, token and key version, so
    /// the ciphertext moved to any other row fails to open.
    pub fn seal_pan(
        &self,
        rng: &dyn Csprng,
        tenant: TenantId,
        token: &Token,
        pan: &Pan,
    ) -> Result<SealedPan, CryptoError> {
        // A tenant-bound version seals only through `for_tenant`.
        let Sealer::Direct(key) = &self.key else {
            return Err(CryptoError::Encrypt);
        };
        let bytes = key.seal(
            rng,
            &pan_aad(tenant, token, self.version),
            pan.expose_digits(),
        )?;
        Ok(SealedPan {
            version: self.version,
            bytes,
        })
    }

    /// Decrypts a PAN sealed for this exact row.
    pub fn open_pan(
        &self,
        tenant: TenantId,
        token: &Token,
        sealed: &SealedPan,
    ) -> Result<Pan, CryptoError> {
        let Sealer::Direct(key) = &self.key else {
            return Err(CryptoError::Decrypt);
        };
        if sealed.version != self.version {
            return Err(CryptoError::Decrypt);
        }
        let digits = key.open(&pan_aad(tenant, token, self.version), &sealed.bytes)?;
        Pan::from_digits(&digits).map_err(|_| CryptoError::Malformed)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey(v{}, <redacted>)", self.version)
    }
}

struct Len32;

impl ring::hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// Associated data of a sealed PAN. Every variable-length part is length-prefixed so that no
/// two different rows can produce the same bytes.
fn pan_aad(tenant: TenantId, token: &Token, version: u32) -> Vec<u8> {
    let token = token.as_str().as_bytes();
    let mut aad = Vec::with_capacity(64 + token.len());
    aad.extend_from_slice(b"strongroom:pan:v1");
    aad.extend_from_slice(tenant.0.as_bytes());
    aad.extend_from_slice(&version.to_be_bytes());
    aad.extend_from_slice(&u16::try_from(token.len()).unwrap_or(u16::MAX).to_be_bytes());
    aad.extend_from_slice(token);
    aad
}

/// The unwrapped DEKs of this instance, by version. The highest version encrypts; all decrypt.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    keys: BTreeMap<u32, Arc<DataKey>>,
}

impl Keyring {
    /// A keyring holding `keys`.
    pub fn new(keys: impl IntoIterator<Item = DataKey>) -> Keyring {
        Keyring {
            keys: keys.into_iter().map(|k| (k.version, Arc::new(k))).collect(),
        }
    }

    /// The key that encrypts new PANs: the newest.
    pub fn active(&self) -> Option<Arc<DataKey>> {
        self.keys.values().next_back().cloned()
    }

    /// The key of one version, to decrypt.
    pub fn get(&self, version: u32) -> Option<Arc<DataKey>> {
        self.keys.get(&version).cloned()
    }

    /// How many versions are loaded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is loaded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SystemRandom;
    use uuid::Uuid;

    fn token(s: &str) -> Token {
        Token::parse(s).unwrap()
    }

    /// A stand-in device: AES-256-GCM over known bytes, sealing with the nonce it is given.
    struct Device(AeadKey);

    /// Hands out one given nonce, as the device is told which to use.
    struct Given([u8; 12]);

    impl Csprng for Given {
        fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
            buf.copy_from_slice(self.0.get(..buf.len()).ok_or(RandomError)?);
            Ok(())
        }
    }

    impl ExternalKek for Device {
        fn seal(
            &self,
            nonce: &[u8; 12],
            aad: &[u8],
            plaintext: &[u8],
        ) -> Result<Vec<u8>, CryptoError> {
            let sealed = self.0.seal(&Given(*nonce), aad, plaintext)?;
            Ok(sealed[12..].to_vec())
        }

        fn open(
            &self,
            nonce: &[u8; 12],
            aad: &[u8],
            sealed: &[u8],
        ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
            let mut whole = nonce.to_vec();
            whole.extend_from_slice(sealed);
            self.0.open(aad, &whole)
        }
    }

    #[test]
    fn a_device_s_wraps_read_as_a_key_in_memory_s_and_back() {
        let rng = SystemRandom::new();
        let bytes = random::bytes::<32>(&rng).unwrap();
        let memory = MasterKey::from_bytes(&bytes).unwrap();
        let device =
            MasterKey::external(std::sync::Arc::new(Device(AeadKey::new(&bytes)))).unwrap();
        assert!(device.is_external() && !memory.is_external());
        let secret = random::bytes::<32>(&rng).unwrap();
        let by_device = device.wrap(&rng, "dek:1", &secret).unwrap();
        assert_eq!(*memory.unwrap("dek:1", &by_device).unwrap(), secret);
        let by_memory = memory.wrap(&rng, "dek:1", &secret).unwrap();
        assert_eq!(*device.unwrap("dek:1", &by_memory).unwrap(), secret);
        // The label binds as in memory: another label, or a cut blob, does not open.
        assert!(device.unwrap("dek:2", &by_memory).is_err());
        assert!(device.unwrap("dek:1", &by_memory[..20]).is_err());
        // Nonces are drawn per wrap.
        assert_ne!(device.wrap(&rng, "dek:1", &secret).unwrap(), by_device);
        assert_eq!(device.fingerprint().len(), 12);
    }

    #[test]
    fn a_master_key_s_fingerprint_is_stable_tells_keys_apart_and_is_not_the_key() {
        let rng = SystemRandom::new();
        let text = MasterKey::generate_base64(&rng).unwrap();
        let key = MasterKey::from_base64(&text).unwrap();
        let again = MasterKey::from_base64(&text).unwrap();
        let other = MasterKey::from_base64(&MasterKey::generate_base64(&rng).unwrap()).unwrap();
        assert_eq!(key.fingerprint(), again.fingerprint());
        assert_ne!(key.fingerprint(), other.fingerprint());
        assert_eq!(key.fingerprint().len(), 12);
        let raw = hex::encode(STANDARD.decode(text.as_bytes()).unwrap());
        assert!(!raw.contains(&key.fingerprint()));
    }

    #[test]
    fn master_key_parsing_never_echoes_the_key() {
        let rng = SystemRandom::new();
        let text = MasterKey::generate_base64(&rng).unwrap();
        assert!(MasterKey::from_base64(&text).is_ok());
        let err = MasterKey::from_base64("c2hvcnQ=").unwrap_err();
        assert_eq!(err, MasterKeyError::WrongLength);
        assert!(!err.to_string().contains("c2hvcnQ"));
        assert_eq!(
            MasterKey::from_base64("not base64!").unwrap_err(),
            MasterKeyError::NotBase64
        );
        let key = MasterKey::from_base64(&text).unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(<redacted>)");
    }

    #[test]
    fn a_dev_key_parses_as_development_and_is_refused_where_a_production_key_is_needed() {
        let rng = SystemRandom::new();
        let dev = MasterKey::generate_dev_text(&rng).unwrap();
        assert!(dev.starts_with(DEV_KEY_PREFIX));
        let (_, kind) = MasterKey::from_text(&dev).unwrap();
        assert_eq!(kind, MasterKeyKind::Development);
        let err = MasterKey::from_base64(&dev).unwrap_err();
        assert_eq!(err, MasterKeyError::Development);
        let message = err.to_string();
        assert!(message.contains("strongroom keygen"), "{message}");
        assert!(!message.contains(&dev[DEV_KEY_PREFIX.len()..]), "{message}");

        // The same bytes without the mark are a production key: the mark is all that tells.
        let bare = &dev[DEV_KEY_PREFIX.len()..];
        assert_eq!(
            MasterKey::from_text(bare).unwrap().1,
            MasterKeyKind::Production
        );
        // A keygen key, and one with surrounding whitespace, is a production key.
        let prod = MasterKey::generate_base64(&rng).unwrap();
        assert_eq!(
            MasterKey::from_text(&format!(" {}\n", prod.as_str()))
                .unwrap()
                .1,
            MasterKeyKind::Production
        );
    }

    #[test]
    fn a_generator_stuck_on_one_value_fails_instead_of_making_a_weak_key() {
        struct Stuck;
        impl Csprng for Stuck {
            fn fill(&self, buf: &mut [u8]) -> Result<(), RandomError> {
                buf.fill(0);
                Ok(())
            }
        }
        assert!(MasterKey::generate_base64(&Stuck).is_err());
        assert!(MasterKey::generate_dev_text(&Stuck).is_err());
    }

    #[test]
    fn weak_keys_are_refused_in_either_form_without_echoing_them() {
        let cases: [([u8; 32], Weakness); 4] = [
            ([0x00; 32], Weakness::Repeats),
            ([0x41; 32], Weakness::Repeats),
            (*b"0123456789abcdef0123456789abcdef", Weakness::Repeats),
            (
                core::array::from_fn(|i| u8::try_from(i).unwrap()),
                Weakness::Sequence,
            ),
        ];
        for (bytes, weakness) in cases {
            let text = STANDARD.encode(bytes);
            for form in [text.clone(), format!("{DEV_KEY_PREFIX}{text}")] {
                let err = MasterKey::from_text(&form).unwrap_err();
                assert_eq!(err, MasterKeyError::Weak(weakness), "{form}");
                let message = err.to_string();
                assert!(message.contains("not a random key"), "{message}");
                assert!(!message.contains(&text), "{message}");
            }
        }
    }

    #[test]
    fn wrapped_keys_need_the_same_master_key_and_label() {
        let rng = SystemRandom::new();
        let kek = MasterKey::from_base64(&MasterKey::generate_base64(&rng).unwrap()).unwrap();
        let other = MasterKey::from_base64(&MasterKey::generate_base64(&rng).unwrap()).unwrap();
        let secret = [9u8; 32];
        let wrapped = kek.wrap(&rng, &dek_label(1), &secret).unwrap();
        assert_eq!(*kek.unwrap(&dek_label(1), &wrapped).unwrap(), secret);
        assert_eq!(
            other.unwrap(&dek_label(1), &wrapped).unwrap_err(),
            CryptoError::Decrypt
        );
        assert_eq!(
            kek.unwrap(&dek_label(2), &wrapped).unwrap_err(),
            CryptoError::Decrypt
        );
        // A tenant-bound key's label differs from a direct one's of the same version: a binary
        // that knows only `dek:<v>` cannot open it, so cannot seal under it directly.
        let bound = kek.wrap(&rng, &tenant_bound_dek_label(1), &secret).unwrap();
        assert!(kek.unwrap(&dek_label(1), &bound).is_err());
        assert_eq!(
            *kek.unwrap(&tenant_bound_dek_label(1), &bound).unwrap(),
            secret
        );
    }

    #[test]
    fn a_tenant_bound_key_seals_only_through_a_tenant_key_and_each_tenant_key_opens_only_its_own() {
        let rng = SystemRandom::new();
        let dek = DataKey::new_tenant_bound(4, &[7u8; 32]);
        let tenant = TenantId(Uuid::new_v4());
        let pan = Pan::parse("4111111111111111").unwrap();
        let t = token("4111119876541111");
        assert!(dek.is_tenant_bound());
        assert!(
            dek.seal_pan(&rng, tenant, &t, &pan).is_err(),
            "never sealed under the bare data key"
        );
        let (key_1, key_2) = (
            TenantKey::new(Zeroizing::new([1u8; 32])),
            TenantKey::new(Zeroizing::new([2u8; 32])),
        );
        let sealer = dek.for_tenant(tenant, &key_1).unwrap();
        assert_eq!(sealer.version(), 4);
        let sealed = sealer.seal_pan(&rng, tenant, &t, &pan).unwrap();
        let again = dek.for_tenant(tenant, &key_1).unwrap();
        assert_eq!(again.open_pan(tenant, &t, &sealed).unwrap(), pan);
        assert!(
            dek.for_tenant(tenant, &key_2)
                .unwrap()
                .open_pan(tenant, &t, &sealed)
                .is_err(),
            "another tenant key (a shredded one replaced) opens nothing"
        );
        assert!(dek.open_pan(tenant, &t, &sealed).is_err());
        assert!(
            DataKey::new(4, &[7u8; 32])
                .for_tenant(tenant, &key_1)
                .is_none(),
            "a direct key seals for every tenant itself"
        );
        // Fingerprints under a tenant's own key differ by key, and from the vault-wide root's.
        let p = Pan::parse("4111111111111111").unwrap();
        assert!(
            key_1.fingerprint_key(tenant).fingerprint(&p)
                != key_2.fingerprint_key(tenant).fingerprint(&p)
        );
        assert!(format!("{key_1:?}").contains("redacted"));
    }

    #[test]
    fn a_ciphertext_moved_to_another_row_fails_to_open() {
        let rng = SystemRandom::new();
        let dek = DataKey::new(1, &[3u8; 32]);
        let tenant_a = TenantId(Uuid::new_v4());
        let tenant_b = TenantId(Uuid::new_v4());
        let pan = Pan::parse("4111111111111111").unwrap();
        let t1 = token("4111119876541111");
        let t2 = token("4111118765431111");
        let sealed = dek.seal_pan(&rng, tenant_a, &t1, &pan).unwrap();
        assert_eq!(dek.open_pan(tenant_a, &t1, &sealed).unwrap(), pan);
        assert!(
            dek.open_pan(tenant_a, &t2, &sealed).is_err(),
            "another token's row"
        );
        assert!(
            dek.open_pan(tenant_b, &t1, &sealed).is_err(),
            "another tenant's row"
        );
        let relabelled = SealedPan {
            version: 2,
            bytes: sealed.bytes.clone(),
        };
        assert!(
            DataKey::new(2, &[3u8; 32])
                .open_pan(tenant_a, &t1, &relabelled)
                .is_err(),
            "another key version"
        );
    }

    #[test]
    fn the_newest_key_is_active_and_old_ones_still_decrypt() {
        let ring = Keyring::new([
            DataKey::new(1, &[1; 32]),
            DataKey::new(3, &[3; 32]),
            DataKey::new(2, &[2; 32]),
        ]);
        assert_eq!(ring.active().unwrap().version(), 3);
        assert_eq!(ring.get(1).unwrap().version(), 1);
        assert!(ring.get(4).is_none());
    }
}
