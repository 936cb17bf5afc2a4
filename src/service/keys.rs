//! The key service: loads and unwraps the keys at start, creates the first ones, counts DEK
//! encryptions in shared blocks and rotates a DEK before it reaches its limit.
//!
//! Keys are unwrapped once per instance, never per request. Nothing here logs key material.

pub mod admin;
mod data;
pub mod reencrypt;
mod secrets;
mod signing;
mod tenants;

use secrets::load_or_create_secret;
pub use secrets::{existing_checkpoint_key, load_checkpoint_key};

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Mutex;

use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::aead::AeadKey;
use crate::crypto::fingerprint::FingerprintRoot;
use crate::crypto::grant::{GrantVerifier, SigningKeyError};
use crate::crypto::keys::{Keyring, MasterKey};
use crate::domain::TenantId;
use crate::domain::audit::{Action, AuditEvent};
use crate::random::Csprng;
use crate::service::AuditTrail;
use crate::store::{KeyStore, StoreError};

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

/// How encryptions are counted, and how long a data key may seal.
#[derive(Debug, Clone, Copy)]
pub struct KeySettings {
    /// Encryptions after which a DEK retires and a new one takes over.
    pub encryption_limit: u64,
    /// Encryptions reserved from the shared counter at a time. Unused reservations are lost
    /// when an instance stops: over-counting is safe, under-counting is not.
    pub reservation_block: u32,
    /// Age after which the active DEK retires and a new one takes over (its cryptoperiod).
    pub max_age: chrono::TimeDelta,
}

/// How long a new grant-signing key is published before it signs, unless an operator says
/// otherwise: two housekeeping passes at their default interval, so that every instance has
/// loaded it and publishes it by then.
pub const DEFAULT_SIGNING_KEY_LEAD_SECONDS: u32 = 120;

/// The data key's cryptoperiod unless configured: a year.
pub const DEFAULT_DATA_KEY_MAX_AGE_DAYS: u32 = 365;

impl Default for KeySettings {
    fn default() -> Self {
        KeySettings {
            encryption_limit: DEFAULT_ENCRYPTION_LIMIT,
            reservation_block: 4096,
            max_age: chrono::TimeDelta::days(i64::from(DEFAULT_DATA_KEY_MAX_AGE_DAYS)),
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
    /// A sealed card number did not open under the key its row names: the row was moved,
    /// swapped or corrupted, or its key version changed. Never the master key's fault (that
    /// shows when the keys are loaded).
    #[error("a sealed card number failed its integrity check")]
    Integrity,
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
    /// A key change could not be recorded in the audit trail, so it was not made.
    #[error("the audit trail could not record the change, so it was not made")]
    AuditUnavailable,
    /// The new master key given is the current one.
    #[error("the new master key is the current one; nothing was changed")]
    SameMasterKey,
    /// Keys were made or changed while a rewrap was prepared.
    #[error(
        "keys were made or changed while the rewrap was prepared (is a vault still serving?); nothing was changed: stop every instance and run it again"
    )]
    KeysChanged,
    /// The tenant was shredded: its key is gone, and nothing is sealed for it again.
    #[error("the tenant was shredded: its keys are destroyed")]
    TenantShredded,
    /// Another rotation made the same version first.
    #[error("another rotation made that key version first; nothing was changed, run it again")]
    RotationRaced,
    /// Another grant-signing key rotation retired the signing key first.
    #[error("another rotation replaced the signing key first; nothing was changed, run it again")]
    SigningRotationRaced,
    /// A signing key rotation is pending already: a second one would leave two keys pending.
    #[error(
        "a grant-signing key rotation is pending already (its key signs from {activates_at}); \
         nothing was changed, run it again after then"
    )]
    RotationPending {
        /// When the pending key starts signing.
        activates_at: chrono::DateTime<chrono::Utc>,
    },
    /// There is no grant-signing key to rotate.
    #[error("this vault has no grant-signing key yet: the first is made when it is first served")]
    NoSigningKey,
}

/// A key could not be inserted because the stored keys were rewrapped under another master
/// key meanwhile: this instance's master key is no longer the vault's.
fn master_key_changed(e: StoreError) -> KeyError {
    match e {
        StoreError::Changed(_) => KeyError::MasterKeyMismatch,
        e => KeyError::Store(e),
    }
}

impl KeyError {
    /// Whether the database was unreachable or stalled (see `StoreError::is_unavailable`).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, KeyError::Store(e) if e.is_unavailable())
    }
}

struct Reservation {
    version: u32,
    remaining: u64,
}

/// Keys of this instance.
pub struct KeyService {
    store: Arc<dyn KeyStore>,
    master: MasterKey,
    keyring: RwLock<Keyring>,
    fingerprint_root: FingerprintRoot,
    totp_key: AeadKey,
    signing: RwLock<Vec<signing::LoadedSigningKey>>,
    verifier: RwLock<Arc<GrantVerifier>>,
    tenants: RwLock<HashMap<TenantId, Arc<tenants::TenantKeys>>>,
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
        store: Arc<dyn KeyStore>,
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
            tenants: RwLock::new(HashMap::new()),
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
        match service.active_key() {
            Err(_) => service.create_data_key(1).await?,
            // A vault from before tenant keys: its next data key seals through them, and
            // `keys reencrypt` moves the old rows there.
            Ok(key) if !key.is_tenant_bound() => {
                tracing::info!(
                    version = key.version(),
                    "the active data key predates tenant keys; rotating"
                );
                match admin::rotate_data_key(
                    service.store.as_ref(),
                    &service.master,
                    service.rng.as_ref(),
                    service.clock.as_ref(),
                    &service.audit,
                    "upgrade",
                )
                .await
                {
                    Ok(_) | Err(KeyError::RotationRaced) => service.reload().await?,
                    Err(e) => return Err(e),
                }
            }
            Ok(_) => {}
        }
        service.load_signing_keys().await?;
        Ok(service)
    }

    /// Reloads the data keys and the grant-signing keys, so that a key an operator rotated in
    /// (`strongroom keys rotate`) is used from now on in this instance too, and a retired signing
    /// key stops being published once no unexpired grant carries it; forgets the keys of tenants
    /// shredded since. Housekeeping calls it.
    pub async fn refresh(&self) -> Result<(), KeyError> {
        self.forget_shredded().await?;
        self.reload().await?;
        self.reload_signing_keys().await
    }

    /// Whether an active DEK is loaded (readiness).
    pub fn is_ready(&self) -> bool {
        self.active_key().is_ok()
    }

    /// Records a key this instance created. The key exists either way: a failed record is
    /// logged and counted by the trail, not fatal.
    async fn audit_key_created(&self, kind: &str, id: &str) {
        let mut event = AuditEvent::new(Action::KeyCreate, self.clock.now());
        event.detail = Some(kind.to_owned());
        event.subject = Some(id.to_owned());
        let _ = self.audit.record(event).await;
    }
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
