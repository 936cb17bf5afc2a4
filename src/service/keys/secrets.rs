//! Secrets wrapped by the master key: the fingerprint root, the TOTP sealing key, and the audit
//! checkpoint key.

use super::{CHECKPOINT_KEY, KeyError, KeyService};
use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::checkpoint::CheckpointKey;
use crate::crypto::keys::MasterKey;
use crate::crypto::totp::TotpSecret;
use crate::domain::PrincipalId;
use crate::random::{self, Csprng};
use crate::store::KeyStore;

impl KeyService {
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
}

/// The key that MACs audit checkpoints, created with the vault.
pub async fn load_checkpoint_key(
    store: &dyn KeyStore,
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
    store: &dyn KeyStore,
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
pub(super) async fn load_or_create_secret(
    store: &dyn KeyStore,
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

fn totp_aad(principal: PrincipalId) -> Vec<u8> {
    let mut aad = b"strongroom:totp:v1".to_vec();
    aad.extend_from_slice(principal.0.as_bytes());
    aad
}
