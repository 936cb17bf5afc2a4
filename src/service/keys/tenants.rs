//! Each tenant's key: made at the tenant's first card number, wrapped by the master key, and
//! the second input of every key that seals or fingerprints that tenant's card numbers. Loaded
//! once per instance and tenant; a shredded tenant's key is gone, and so is everything derived
//! from it (housekeeping forgets it on every instance).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{KeyError, KeyService};
use crate::crypto::CryptoError;
use crate::crypto::fingerprint::FingerprintKey;
use crate::crypto::keys::{DataKey, MasterKey, TenantKey, tenant_key_label};
use crate::domain::TenantId;
use crate::domain::audit::{Action, AuditEvent};
use crate::random;
use crate::store::{AuditedWrite, KeyStore, WrappedDataKey, WriteOutcome};

/// What this instance holds of one tenant: its fingerprint key and its key, with the data key
/// versions derived from it so far.
pub(super) struct TenantKeys {
    fingerprint: Arc<FingerprintKey>,
    key: TenantKey,
    sealers: RwLock<HashMap<u32, Arc<DataKey>>>,
}

impl KeyService {
    /// The fingerprint key of one tenant (its key is made if it has none yet).
    pub async fn fingerprint_key(&self, tenant: TenantId) -> Result<Arc<FingerprintKey>, KeyError> {
        Ok(Arc::clone(&self.tenant(tenant).await?.fingerprint))
    }

    /// The key that seals and opens `tenant`'s card numbers under `key`: `key` itself for a
    /// version made before tenant keys, otherwise the one derived from it and the tenant's key.
    pub(super) async fn sealer(
        &self,
        tenant: TenantId,
        key: &Arc<DataKey>,
    ) -> Result<Arc<DataKey>, KeyError> {
        if !key.is_tenant_bound() {
            return Ok(Arc::clone(key));
        }
        let keys = self.tenant(tenant).await?;
        if let Some(sealer) = keys
            .sealers
            .read()
            .ok()
            .and_then(|s| s.get(&key.version()).cloned())
        {
            return Ok(sealer);
        }
        let sealer = Arc::new(
            key.for_tenant(tenant, &keys.key)
                .ok_or(KeyError::Crypto(CryptoError::Malformed))?,
        );
        if let Ok(mut sealers) = keys.sealers.write() {
            sealers.insert(key.version(), Arc::clone(&sealer));
        }
        Ok(sealer)
    }

    /// The tenant's keys, loaded (or made, at its first card number) once per instance.
    async fn tenant(&self, tenant: TenantId) -> Result<Arc<TenantKeys>, KeyError> {
        if let Some(keys) = self
            .tenants
            .read()
            .ok()
            .and_then(|t| t.get(&tenant).cloned())
        {
            return Ok(keys);
        }
        let label = tenant_key_label(tenant);
        let mut stored = self.store.tenant_key(tenant).await?;
        if stored.is_none() {
            // Never wrap a new key under a master key that no longer opens the vault's keys
            // (one an operator has rewrapped away from while this instance still runs): the
            // insert holds a stored key that opens under this one (see
            // `KeyStore::insert_data_key`).
            let witness = self
                .master_key_witness()
                .await?
                .ok_or(KeyError::NoActiveKey)?;
            let secret = zeroize::Zeroizing::new(
                random::bytes::<32>(self.rng.as_ref()).map_err(CryptoError::from)?,
            );
            let wrapped = self.master.wrap(self.rng.as_ref(), &label, &secret)?;
            if self
                .store
                .insert_tenant_key(tenant, &wrapped, &witness, self.clock.now())
                .await
                .map_err(super::master_key_changed)?
            {
                self.audit_key_created("tenant_key", &tenant.0.to_string())
                    .await;
            }
            stored = self.store.tenant_key(tenant).await?;
        }
        let stored = stored.ok_or(KeyError::NoActiveKey)?;
        let wrapped = stored.wrapped.ok_or(KeyError::TenantShredded)?;
        let key = TenantKey::new(
            self.master
                .unwrap(&label, &wrapped)
                .map_err(|_| KeyError::MasterKeyMismatch)?,
        );
        let fingerprint = Arc::new(if stored.own_fingerprints {
            key.fingerprint_key(tenant)
        } else {
            self.fingerprint_root.tenant_key(tenant)
        });
        let keys = Arc::new(TenantKeys {
            fingerprint,
            key,
            sealers: RwLock::new(HashMap::new()),
        });
        if let Ok(mut tenants) = self.tenants.write() {
            tenants.insert(tenant, Arc::clone(&keys));
        }
        Ok(keys)
    }

    /// Forgets the keys of tenants shredded since (by any instance or command).
    pub(super) async fn forget_shredded(&self) -> Result<(), KeyError> {
        let shredded = self.store.shredded_tenants().await?;
        if let Ok(mut tenants) = self.tenants.write() {
            for tenant in shredded {
                tenants.remove(&tenant);
            }
        }
        Ok(())
    }

    /// Destroys the card data of tokens a tokenize in flight wrote while their tenant was
    /// shredded (they are sealed under its destroyed key: nothing opens them), each tenant's
    /// with a `tenant.shred` record (`late_tokens=<n> by=housekeeping`); returns how many.
    /// Housekeeping calls it.
    pub async fn sweep_shredded(&self) -> Result<u64, KeyError> {
        let now = self.clock.now();
        let outcome = self
            .audit
            .write_records(AuditedWrite::SweepShredded { now }, move |outcome| {
                let WriteOutcome::SweptShredded(swept) = outcome else {
                    return Vec::new();
                };
                swept
                    .iter()
                    .map(|(tenant, n)| {
                        let mut event = AuditEvent::new(Action::TenantShred, now);
                        event.tenant = Some(*tenant);
                        event.subject = Some(format!("tenant:{}", tenant.0));
                        event.detail = Some(format!("late_tokens={n} by=housekeeping"));
                        event
                    })
                    .collect()
            })
            .await
            .map_err(|_| KeyError::AuditUnavailable)?;
        Ok(match outcome {
            WriteOutcome::SweptShredded(swept) => swept.iter().map(|(_, n)| n).sum(),
            _ => 0,
        })
    }

    /// The newest stored data key, once it is seen to open under this instance's master key:
    /// what a new key's insert holds to be sure the master key is still the vault's. `None`
    /// when there is no data key yet.
    pub(super) async fn master_key_witness(&self) -> Result<Option<WrappedDataKey>, KeyError> {
        master_key_witness(self.store.as_ref(), &self.master).await
    }
}

/// The newest stored data key, once it is seen to open under `master`: what an insert of a new
/// wrapped key holds to be sure `master` is still the vault's (see
/// `KeyStore::insert_data_key`). `None` when there is no data key yet.
pub(super) async fn master_key_witness(
    store: &dyn KeyStore,
    master: &MasterKey,
) -> Result<Option<WrappedDataKey>, KeyError> {
    let Some(newest) = store.data_keys().await?.into_iter().last() else {
        return Ok(None);
    };
    master
        .unwrap(&newest.label(), &newest.wrapped)
        .map_err(|_| KeyError::MasterKeyMismatch)?;
    Ok(Some(newest))
}
