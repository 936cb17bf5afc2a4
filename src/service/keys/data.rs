//! Data-encryption keys: sealing and opening PANs under the active DEK, counting encryptions
//! in blocks reserved in the database, and rotating at the limit.

use std::sync::Arc;

use super::{KeyError, KeyService, Reservation};
use crate::crypto::CryptoError;
use crate::crypto::keys::{DataKey, Keyring, SealedPan, tenant_bound_dek_label};
use crate::domain::{Pan, TenantId, Token};
use crate::random;
use crate::store::WrappedDataKey;

impl KeyService {
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
        let sealer = self.sealer(tenant, &key).await?;
        Ok(sealer.seal_pan(self.rng.as_ref(), tenant, token, pan)?)
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
        // A version no key has, or a ciphertext that does not authenticate for this tenant,
        // token and version: the row is not what was sealed.
        let key = key.ok_or(KeyError::Integrity)?;
        let sealer = self.sealer(tenant, &key).await?;
        sealer
            .open_pan(tenant, token, sealed)
            .map_err(|_| KeyError::Integrity)
    }

    /// Takes `count` encryptions from this instance's block of the active DEK, reserving a new
    /// block from the shared counter when it runs out and rotating when the DEK is spent.
    pub(super) async fn reserve(&self, count: u32) -> Result<Arc<DataKey>, KeyError> {
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
    pub(super) async fn create_data_key(&self, version: u32) -> Result<(), KeyError> {
        let secret = zeroize::Zeroizing::new(
            random::bytes::<32>(self.rng.as_ref()).map_err(CryptoError::from)?,
        );
        let wrapped =
            self.master
                .wrap(self.rng.as_ref(), &tenant_bound_dek_label(version), &secret)?;
        // The first key has nothing to vouch for the master key; every later one is made only
        // while the newest stored key still opens under it (see `KeyStore::insert_data_key`).
        let witness = self.master_key_witness().await?;
        let inserted = self
            .store
            .insert_data_key(
                &WrappedDataKey {
                    version,
                    wrapped,
                    tenant_bound: true,
                },
                witness.as_ref(),
                self.clock.now(),
            )
            .await
            .map_err(super::master_key_changed)?;
        if inserted {
            tracing::info!(version, "created data-encryption key");
            self.audit_key_created("data_encryption_key", &version.to_string())
                .await;
        }
        self.reload().await
    }

    /// Retires the active data key once it is older than its cryptoperiod
    /// ([`super::KeySettings::max_age`]): a new one is made (recorded as `key.rotate`, by age).
    /// Instances racing to do it make one key between them. Returns the new version, if any.
    pub async fn rotate_if_aged(&self) -> Result<Option<u32>, KeyError> {
        let active = self.active_key()?.version();
        let Some(created) = self.store.data_key_created(active).await? else {
            return Ok(None);
        };
        if self.clock.now() - created < self.settings.max_age {
            return Ok(None);
        }
        tracing::info!(
            version = active,
            "data-encryption key reached its age; rotating"
        );
        let rotated = super::admin::rotate_data_key(
            self.store.as_ref(),
            &self.master,
            self.rng.as_ref(),
            self.clock.as_ref(),
            &self.audit,
            "age",
        )
        .await;
        let version = match rotated {
            Ok((version, _)) => Some(version),
            Err(KeyError::RotationRaced) => None,
            Err(e) => return Err(e),
        };
        self.reload().await?;
        Ok(version)
    }

    /// Reloads and unwraps every DEK from the store.
    pub(super) async fn reload(&self) -> Result<(), KeyError> {
        let wrapped = self.store.data_keys().await?;
        let mut keys = Vec::with_capacity(wrapped.len());
        for key in wrapped {
            let secret = self
                .master
                .unwrap(&key.label(), &key.wrapped)
                .map_err(|_| KeyError::MasterKeyMismatch)?;
            keys.push(if key.tenant_bound {
                DataKey::new_tenant_bound(key.version, &secret)
            } else {
                DataKey::new(key.version, &secret)
            });
        }
        let mut keyring = self.keyring.write().map_err(|_| KeyError::NoActiveKey)?;
        *keyring = Keyring::new(keys);
        Ok(())
    }

    pub(super) fn active_key(&self) -> Result<Arc<DataKey>, KeyError> {
        self.keyring
            .read()
            .ok()
            .and_then(|k| k.active())
            .ok_or(KeyError::NoActiveKey)
    }

    pub(super) fn key_of_version(&self, version: u32) -> Option<Arc<DataKey>> {
        self.keyring.read().ok().and_then(|k| k.get(version))
    }
}
