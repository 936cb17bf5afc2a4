//! The key service: loads and unwraps the keys at start, creates the first ones, counts DEK
//! encryptions in shared blocks and rotates a DEK before it reaches its limit.
//!
//! Keys are unwrapped once per instance, never per request. Nothing here logs key material.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::aead::AeadKey;
use crate::crypto::checkpoint::CheckpointKey;
use crate::crypto::fingerprint::{FingerprintKey, FingerprintRoot};
use crate::crypto::grant::{GrantVerifier, SigningKey, SigningKeyError};
use crate::crypto::keys::{DataKey, Keyring, MasterKey, SealedPan, dek_label};
use crate::crypto::totp::TotpSecret;
use crate::domain::audit::{Action, AuditEvent};
use crate::domain::{Pan, PrincipalId, TenantId, Token};
use crate::random::{self, Csprng};
use crate::service::AuditTrail;
use crate::store::{Store, StoreError, StoredSigningKey, WrappedDataKey};

/// Name of the fingerprint root in `vault_secrets`.
const FINGERPRINT_ROOT: &str = "fingerprint-root";
/// Name of the key that seals TOTP secrets in `vault_secrets`.
const TOTP_KEY: &str = "totp-key";
/// The name of the wrapped secret that MACs audit checkpoints.
const CHECKPOINT_KEY: &str = "audit-checkpoint-key";
/// The only grant-signing algorithm.
const EDDSA: &str = "EdDSA";

/// NIST SP 800-38D §8.3 caps random-nonce GCM at 2^32 messages per key; we retire at 2^30.
pub const DEFAULT_ENCRYPTION_LIMIT: u64 = 1 << 30;

/// How encryptions are counted.
#[derive(Debug, Clone, Copy)]
pub struct KeySettings {
    /// Encryptions after which a DEK retires and a new one takes over.
    pub encryption_limit: u64,
    /// Encryptions reserved from the shared counter at a time. Unused reservations are lost
    /// when an instance stops: over-counting is safe, under-counting is not.
    pub reservation_block: u32,
}

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            encryption_limit: DEFAULT_ENCRYPTION_LIMIT,
            reservation_block: 4096,
        }
    }
}

/// Why keys could not be loaded or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A wrapped key does not open under this master key.
    #[error("the master key does not match the one that wrapped the stored keys")]
    MasterKeyMismatch,
    /// A cryptographic operation failed.
    #[error("cryptographic operation failed: {0}")]
    Crypto(#[from] CryptoError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No DEK could be reserved even after rotating.
    #[error("no data-encryption key is available")]
    NoActiveKey,
    /// The vault has never been served: it has no audit checkpoint key to check against.
    #[error(
        "this database has no audit checkpoint key yet: no vault has written checkpoints to it"
    )]
    NoCheckpointKey,
    /// A grant-signing key could not be made, loaded or used.
    #[error(transparent)]
    Signing(#[from] SigningKeyError),
}

struct Reservation {
    version: u32,
    remaining: u64,
}

/// Keys of this instance.
pub struct KeyService {
    store: Arc<dyn Store>,
    master: MasterKey,
    keyring: RwLock<Keyring>,
    fingerprint_root: FingerprintRoot,
    totp_key: AeadKey,
    signing: RwLock<Vec<Arc<SigningKey>>>,
    verifier: RwLock<Arc<GrantVerifier>>,
    tenant_keys: RwLock<HashMap<TenantId, Arc<FingerprintKey>>>,
    reservation: Mutex<Reservation>,
    rng: Arc<dyn Csprng>,
    clock: Arc<dyn Clock>,
    settings: KeySettings,
    audit: AuditTrail,
}

impl KeyService {
    /// Loads every key, creating the first DEK and the fingerprint root if the vault is new.
    /// Safe when several instances start at once on one database.
    pub async fn load(
        store: Arc<dyn Store>,
        master: MasterKey,
        rng: Arc<dyn Csprng>,
        clock: Arc<dyn Clock>,
        settings: KeySettings,
        audit: AuditTrail,
    ) -> Result<KeyService, KeyError> {
        let root = load_or_create_secret(
            store.as_ref(),
            &master,
            rng.as_ref(),
            clock.as_ref(),
            FINGERPRINT_ROOT,
        )
        .await?;
        let totp_key = load_or_create_secret(
            store.as_ref(),
            &master,
            rng.as_ref(),
            clock.as_ref(),
            TOTP_KEY,
        )
        .await?;
        let service = KeyService {
            store,
            master,
            keyring: RwLock::new(Keyring::default()),
            fingerprint_root: FingerprintRoot::new(root),
            totp_key: AeadKey::new(&totp_key),
            signing: RwLock::new(Vec::new()),
            verifier: RwLock::new(Arc::new(GrantVerifier::default())),
            tenant_keys: RwLock::new(HashMap::new()),
            reservation: Mutex::new(Reservation {
                version: 0,
                remaining: 0,
            }),
            rng,
            clock,
            settings,
            audit,
        };
        service.reload().await?;
        if service.active_key().is_err() {
            service.create_data_key(1).await?;
        }
        service.load_signing_keys().await?;
        Ok(service)
    }

    /// Loads the grant-signing keys, creating the first one if there is none.
    async fn load_signing_keys(&self) -> Result<(), KeyError> {
        if self.store.signing_keys().await?.is_empty() {
            let key = SigningKey::generate()?;
            let wrapped = self.master.wrap_bytes(
                self.rng.as_ref(),
                &signing_label(key.kid()),
                key.expose_pkcs8(),
            )?;
            let stored = StoredSigningKey {
                kid: key.kid().to_owned(),
                algorithm: EDDSA.to_owned(),
                wrapped,
                public_key: key.public_key().to_vec(),
            };
            if self
                .store
                .insert_signing_key(&stored, self.clock.now())
                .await?
            {
                tracing::info!(kid = key.kid(), "created grant-signing key");
                self.audit_key_created("grant_signing_key", key.kid()).await;
            }
        }
        let mut keys = Vec::new();
        for stored in self.store.signing_keys().await? {
            if stored.algorithm != EDDSA {
                return Err(KeyError::Signing(SigningKeyError::Malformed));
            }
            let pkcs8 = self
                .master
                .unwrap_bytes(&signing_label(&stored.kid), &stored.wrapped)
                .map_err(|_| KeyError::MasterKeyMismatch)?;
            keys.push(Arc::new(SigningKey::from_pkcs8(stored.kid, pkcs8)?));
        }
        let verifier = GrantVerifier::new(keys.iter().map(|k| k.verifying_key()));
        if let Ok(mut v) = self.verifier.write() {
            *v = Arc::new(verifier);
        }
        // The newest key signs new grants; every unretired key verifies.
        if let Ok(mut s) = self.signing.write() {
            *s = keys;
        }
        Ok(())
    }

    /// The key that signs new grants.
    pub fn signing_key(&self) -> Result<Arc<SigningKey>, KeyError> {
        self.signing
            .read()
            .ok()
            .and_then(|k| k.last().cloned())
            .ok_or(KeyError::Signing(SigningKeyError::Malformed))
    }

    /// The signing key named `kid`, to sign a grant again for its grantee.
    pub fn signing_key_by_kid(&self, kid: &str) -> Result<Arc<SigningKey>, KeyError> {
        self.signing
            .read()
            .ok()
            .and_then(|k| k.iter().find(|k| k.kid() == kid).cloned())
            .ok_or(KeyError::Signing(SigningKeyError::Malformed))
    }

    /// The verifier of presented grants, over every published key.
    pub fn grant_verifier(&self) -> Arc<GrantVerifier> {
        self.verifier
            .read()
            .map(|v| Arc::clone(&v))
            .unwrap_or_default()
    }

    /// Seals a principal's TOTP secret for storage, bound to the principal.
    pub fn seal_totp(
        &self,
        principal: PrincipalId,
        secret: &TotpSecret,
    ) -> Result<Vec<u8>, KeyError> {
        Ok(self.totp_key.seal(
            self.rng.as_ref(),
            &totp_aad(principal),
            secret.expose_bytes(),
        )?)
    }

    /// Opens a principal's sealed TOTP secret.
    pub fn open_totp(&self, principal: PrincipalId, sealed: &[u8]) -> Result<TotpSecret, KeyError> {
        let bytes = self.totp_key.open(&totp_aad(principal), sealed)?;
        TotpSecret::from_bytes(&bytes).ok_or(KeyError::Crypto(CryptoError::Malformed))
    }

    /// Whether an active DEK is loaded (readiness).
    pub fn is_ready(&self) -> bool {
        self.active_key().is_ok()
    }

    /// The version new PANs are sealed under right now.
    pub fn active_version(&self) -> Option<u32> {
        self.active_key().ok().map(|k| k.version())
    }

    /// Seals a PAN for one row, counting the encryption against the active DEK.
    pub async fn seal_pan(
        &self,
        tenant: TenantId,
        token: &Token,
        pan: &Pan,
    ) -> Result<SealedPan, KeyError> {
        let key = self.reserve(1).await?;
        Ok(key.seal_pan(self.rng.as_ref(), tenant, token, pan)?)
    }

    /// Opens a PAN sealed for this row, loading newer DEKs if another instance rotated.
    pub async fn open_pan(
        &self,
        tenant: TenantId,
        token: &Token,
        sealed: &SealedPan,
    ) -> Result<Pan, KeyError> {
        let mut key = self.key_of_version(sealed.version);
        if key.is_none() {
            self.reload().await?;
            key = self.key_of_version(sealed.version);
        }
        let key = key.ok_or(KeyError::Crypto(CryptoError::Decrypt))?;
        Ok(key.open_pan(tenant, token, sealed)?)
    }

    /// The fingerprint key of one tenant, derived once per instance.
    pub fn fingerprint_key(&self, tenant: TenantId) -> Arc<FingerprintKey> {
        if let Some(key) = self
            .tenant_keys
            .read()
            .ok()
            .and_then(|m| m.get(&tenant).cloned())
        {
            return key;
        }
        let key = Arc::new(self.fingerprint_root.tenant_key(tenant));
        if let Ok(mut keys) = self.tenant_keys.write() {
            keys.insert(tenant, Arc::clone(&key));
        }
        key
    }

    /// Takes `count` encryptions from this instance's block of the active DEK, reserving a new
    /// block from the shared counter when it runs out and rotating when the DEK is spent.
    async fn reserve(&self, count: u32) -> Result<Arc<DataKey>, KeyError> {
        let mut reservation = self.reservation.lock().await;
        let active = self.active_key()?;
        if reservation.version == active.version() && reservation.remaining >= u64::from(count) {
            reservation.remaining -= u64::from(count);
            return Ok(active);
        }
        let block = self.settings.reservation_block.max(count);
        // Bounded: each round either reserves or moves to a newer version.
        for _ in 0..8 {
            let active = self.active_key()?;
            let now = self.clock.now();
            if self
                .store
                .reserve_encryptions(active.version(), block, self.settings.encryption_limit, now)
                .await?
            {
                *reservation = Reservation {
                    version: active.version(),
                    remaining: u64::from(block - count),
                };
                return Ok(active);
            }
            tracing::info!(
                version = active.version(),
                "data-encryption key reached its limit; rotating"
            );
            self.create_data_key(active.version() + 1).await?;
        }
        Err(KeyError::NoActiveKey)
    }

    /// Adds DEK `version` (another instance may win the race; either way it is then loaded).
    async fn create_data_key(&self, version: u32) -> Result<(), KeyError> {
        let secret = zeroize::Zeroizing::new(
            random::bytes::<32>(self.rng.as_ref()).map_err(CryptoError::from)?,
        );
        let wrapped = self
            .master
            .wrap(self.rng.as_ref(), &dek_label(version), &secret)?;
        if self
            .store
            .insert_data_key(&WrappedDataKey { version, wrapped }, self.clock.now())
            .await?
        {
            tracing::info!(version, "created data-encryption key");
            self.audit_key_created("data_encryption_key", &version.to_string())
                .await;
        }
        self.reload().await
    }

    /// Reloads and unwraps every DEK from the store.
    async fn reload(&self) -> Result<(), KeyError> {
        let wrapped = self.store.data_keys().await?;
        let mut keys = Vec::with_capacity(wrapped.len());
        for key in wrapped {
            let secret = self
                .master
                .unwrap(&dek_label(key.version), &key.wrapped)
                .map_err(|_| KeyError::MasterKeyMismatch)?;
            keys.push(DataKey::new(key.version, &secret));
        }
        let mut keyring = self.keyring.write().map_err(|_| KeyError::NoActiveKey)?;
        *keyring = Keyring::new(keys);
        Ok(())
    }

    /// Records a key this instance created. The key exists either way: a failed record is
    /// logged and counted by the trail, not fatal.
    async fn audit_key_created(&self, kind: &str, id: &str) {
        let mut event = AuditEvent::new(Action::KeyCreate, self.clock.now());
        event.detail = Some(kind.to_owned());
        event.subject = Some(id.to_owned());
        let _ = self.audit.record(event).await;
    }

    fn active_key(&self) -> Result<Arc<DataKey>, KeyError> {
        self.keyring
            .read()
            .ok()
            .and_then(|k| k.active())
            .ok_or(KeyError::NoActiveKey)
    }

    fn key_of_version(&self, version: u32) -> Option<Arc<DataKey>> {
        self.keyring.read().ok().and_then(|k| k.get(version))
    }
}

/// The key that MACs audit checkpoints, created with the vault.
pub async fn load_checkpoint_key(
    store: &dyn Store,
    master: &MasterKey,
    rng: &dyn Csprng,
    clock: &dyn Clock,
) -> Result<CheckpointKey, KeyError> {
    load_or_create_secret(store, master, rng, clock, CHECKPOINT_KEY)
        .await
        .map(CheckpointKey::new)
}

/// The checkpoint key, only if the vault already has one: checking a trail must never create a
/// key (a wrong master key — a development one, say — would otherwise wrap the vault's key).
pub async fn existing_checkpoint_key(
    store: &dyn Store,
    master: &MasterKey,
) -> Result<CheckpointKey, KeyError> {
    let wrapped = store
        .secret(CHECKPOINT_KEY)
        .await?
        .ok_or(KeyError::NoCheckpointKey)?;
    master
        .unwrap(CHECKPOINT_KEY, &wrapped)
        .map(CheckpointKey::new)
        .map_err(|_| KeyError::MasterKeyMismatch)
}

/// Reads a wrapped 256-bit secret from the store, creating it first if the vault is new.
/// Safe when several instances start at once: the first insert wins and all read it back.
async fn load_or_create_secret(
    store: &dyn Store,
    master: &MasterKey,
    rng: &dyn Csprng,
    clock: &dyn Clock,
    name: &str,
) -> Result<zeroize::Zeroizing<[u8; 32]>, KeyError> {
    if store.secret(name).await?.is_none() {
        let secret = zeroize::Zeroizing::new(random::bytes::<32>(rng).map_err(CryptoError::from)?);
        let wrapped = master.wrap(rng, name, &secret)?;
        store.insert_secret(name, &wrapped, clock.now()).await?;
    }
    let wrapped = store.secret(name).await?.ok_or(KeyError::NoActiveKey)?;
    master
        .unwrap(name, &wrapped)
        .map_err(|_| KeyError::MasterKeyMismatch)
}

fn signing_label(kid: &str) -> String {
    format!("grant-signing:{kid}")
}

fn totp_aad(principal: PrincipalId) -> Vec<u8> {
    let mut aad = b"strongroom:totp:v1".to_vec();
    aad.extend_from_slice(principal.0.as_bytes());
    aad
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
