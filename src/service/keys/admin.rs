//! An operator's key commands: data key and grant-signing key rotation. Each change commits in
//! one transaction with its record, in the command's own audit chain, and names no key
//! material.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};

use super::signing::signing_label;
use super::{EDDSA, KeyError};
use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::grant::SigningKey;
use crate::crypto::keys::{MasterKey, tenant_bound_dek_label, tenant_key_label};
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::random::{self, Csprng};
use crate::service::AuditTrail;
use crate::store::{
    AuditedWrite, KeyDestruction, KeyStore, Rewrap, Shredded, SigningKeyRotation, StoredSigningKey,
    WrappedDataKey, WriteOutcome,
};

/// The key commands, over the store, under the master key.
pub struct KeyAdmin {
    store: Arc<dyn KeyStore>,
    master: MasterKey,
    rng: Arc<dyn Csprng>,
    clock: Arc<dyn Clock>,
    trail: AuditTrail,
}

impl KeyAdmin {
    /// Key commands over `store`, recorded in `trail`.
    pub fn new(
        store: Arc<dyn KeyStore>,
        master: MasterKey,
        rng: Arc<dyn Csprng>,
        clock: Arc<dyn Clock>,
        trail: AuditTrail,
    ) -> KeyAdmin {
        KeyAdmin {
            store,
            master,
            rng,
            clock,
            trail,
        }
    }

    /// Makes a new data key the active one; every older one retires (it opens what it
    /// sealed, never seals again). Returns the new version and the ones retired. Refuses a
    /// master key that does not open the stored keys, so a rotation never wraps a key under
    /// the wrong master key.
    pub async fn rotate_data_key(&self) -> Result<(u32, Vec<u32>), KeyError> {
        rotate_data_key(
            self.store.as_ref(),
            &self.master,
            self.rng.as_ref(),
            self.clock.as_ref(),
            &self.trail,
            "operator",
        )
        .await
    }

    /// Commits `write` with the records `finish` makes of its outcome, in the command's chain,
    /// and checkpoints the chain at once.
    async fn commit(
        &self,
        write: AuditedWrite,
        finish: impl FnOnce(&WriteOutcome) -> Vec<AuditEvent> + Send + 'static,
    ) -> Result<WriteOutcome, KeyError> {
        let outcome = self
            .trail
            .write_records(write, finish)
            .await
            .map_err(|_| KeyError::AuditUnavailable)?;
        self.trail.checkpoint().await;
        Ok(outcome)
    }

    /// Destroys retired data key `version` once no live row is sealed under it (re-encrypt
    /// first): its wrapped key is deleted, so nothing it sealed opens again. The newest key is
    /// never destroyed. A refusal changes nothing and is recorded too, with its reason.
    pub async fn destroy_data_key(&self, version: u32) -> Result<KeyDestruction, KeyError> {
        let now = self.clock.now();
        let outcome = self
            .commit(
                AuditedWrite::DestroyDataKey {
                    version,
                    retired_before: now - DESTROY_GRACE,
                    now,
                },
                move |outcome| {
                    let mut event = AuditEvent::new(Action::KeyDestroy, now);
                    event.subject = Some(format!("data_key:{version}"));
                    event.detail = Some("by=operator".to_owned());
                    match outcome {
                        WriteOutcome::DataKeyDestroyed(KeyDestruction::Destroyed) => {}
                        WriteOutcome::DataKeyDestroyed(refused) => {
                            event.outcome = Outcome::Denied;
                            event.code = Some(
                                match refused {
                                    KeyDestruction::RowsRemain(_) => "rows_remain",
                                    KeyDestruction::StillActive => "key_active",
                                    KeyDestruction::RecentlyRetired(_) => "key_recently_retired",
                                    _ => "not_found",
                                }
                                .to_owned(),
                            );
                        }
                        _ => return Vec::new(),
                    }
                    vec![event]
                },
            )
            .await?;
        match outcome {
            WriteOutcome::DataKeyDestroyed(destruction) => Ok(destruction),
            _ => Err(KeyError::AuditUnavailable),
        }
    }

    /// Wraps every key and secret again under `new` (data keys, the vault's secrets, the
    /// grant-signing keys, every tenant key not destroyed), in one transaction with its
    /// `key.rewrap` record: afterwards the current master key opens nothing. Refuses a master
    /// key that does not open everything stored, and `new` equal to it. Every serving instance
    /// must be stopped first: one still running holds the old key, and a key it made meanwhile
    /// fails the rewrap (nothing is changed; run it again once they are stopped).
    pub async fn rewrap(&self, new: &MasterKey) -> Result<RewrapCounts, KeyError> {
        if new.fingerprint() == self.master.fingerprint() {
            return Err(KeyError::SameMasterKey);
        }
        let read = self.store.wrapped_keys().await?;
        let mut rewrap = read.clone();
        let rng = self.rng.as_ref();
        let old = &self.master;
        rewrap_each(old, &mut rewrap, |label, secret| {
            Ok(match secret {
                Secret::Key(key) => new.wrap(rng, label, &key)?,
                Secret::Bytes(bytes) => new.wrap_bytes(rng, label, &bytes)?,
            })
        })?;
        let counts = RewrapCounts {
            data_keys: rewrap.data_keys.len(),
            secrets: rewrap.secrets.len(),
            signing_keys: rewrap.signing_keys.len(),
            tenant_keys: rewrap.tenant_keys.len(),
        };
        let mut event = AuditEvent::new(Action::KeyRewrap, self.clock.now());
        event.subject = Some(format!("master_key:{}", new.fingerprint()));
        event.detail = Some(format!(
            "from={} from_kind={} to_kind={} data_keys={} secrets={} signing_keys={} \
             tenant_keys={} by=operator",
            old.fingerprint(),
            old.kind_name(),
            new.kind_name(),
            counts.data_keys,
            counts.secrets,
            counts.signing_keys,
            counts.tenant_keys
        ));
        let written = self
            .trail
            .write_change(
                AuditedWrite::Rewrap(Box::new(rewrap)),
                event,
                |outcome, _| matches!(outcome, WriteOutcome::Rewrapped),
            )
            .await;
        match written {
            Ok(WriteOutcome::Rewrapped) => Ok(counts),
            // The transaction fails as a whole when a key was made or changed meanwhile.
            _ if !same_keys(&read, &self.store.wrapped_keys().await?) => Err(KeyError::KeysChanged),
            _ => Err(KeyError::AuditUnavailable),
        }
    }

    /// Destroys a tenant's keys and with them its card data, in one transaction with its
    /// `tenant.shred` record: its tokens answer `410 token_destroyed` from then on, its
    /// unexpired grants are revoked, its principals disabled and its pending requests expired.
    /// Other tenants are untouched; the audit trail keeps the tenant's records. `None`: there
    /// is no such tenant, or it was shredded already (recorded as refused).
    pub async fn shred_tenant(&self, name: &str) -> Result<Option<Shredded>, KeyError> {
        let now = self.clock.now();
        let outcome = self
            .commit(
                AuditedWrite::ShredTenant {
                    name: name.to_owned(),
                    now,
                },
                move |outcome| {
                    let mut event = AuditEvent::new(Action::TenantShred, now);
                    match outcome {
                        WriteOutcome::TenantShredded(Some(shredded)) => {
                            // The tenant by id: a name typed on a command line is not
                            // recorded (it could be anything).
                            event.tenant = Some(shredded.tenant);
                            event.subject = Some(format!("tenant:{}", shredded.tenant.0));
                            event.detail = Some(format!(
                                "tokens={} grants={} principals={} requests={} by=operator",
                                shredded.tokens,
                                shredded.grants,
                                shredded.principals,
                                shredded.requests
                            ));
                        }
                        WriteOutcome::TenantShredded(None) => {
                            event.outcome = Outcome::Denied;
                            event.code = Some("not_found".to_owned());
                        }
                        _ => return Vec::new(),
                    }
                    vec![event]
                },
            )
            .await?;
        match outcome {
            WriteOutcome::TenantShredded(shredded) => Ok(shredded),
            _ => Err(KeyError::AuditUnavailable),
        }
    }

    /// Makes a new grant-signing key that signs from `lead` after now; the key signing until
    /// then retires at that moment and stays published while a grant it signed is unexpired.
    /// In between, every instance loads and publishes the new key at a housekeeping pass, so no
    /// instance meets a grant signed by a key it does not know. Refuses a master key that does
    /// not open the stored signing keys, and a rotation while another one's key is pending.
    pub async fn rotate_signing_key(&self, lead: TimeDelta) -> Result<SigningKeyRotated, KeyError> {
        let now = self.clock.now();
        let stored = self.store.signing_keys(now).await?;
        if stored.is_empty() {
            return Err(KeyError::NoSigningKey);
        }
        for key in &stored {
            self.master
                .unwrap_bytes(&signing_label(&key.kid), &key.wrapped)
                .map_err(|_| KeyError::MasterKeyMismatch)?;
        }
        let key = SigningKey::generate()?;
        let activates_at = whole_second(now + lead.max(TimeDelta::zero()));
        let wrapped = self.master.wrap_bytes(
            self.rng.as_ref(),
            &signing_label(key.kid()),
            key.expose_pkcs8(),
        )?;
        // The newest data key, seen to open under this master key, vouches for it in the
        // rotation's transaction (see `KeyStore::insert_data_key`).
        let witness = super::tenants::master_key_witness(self.store.as_ref(), &self.master).await?;
        let write = AuditedWrite::RotateSigningKey {
            key: StoredSigningKey {
                kid: key.kid().to_owned(),
                algorithm: EDDSA.to_owned(),
                wrapped,
                public_key: key.public_key().to_vec(),
                activates_at: Some(activates_at),
                retired_at: None,
            },
            witness,
            now,
        };
        let mut event = AuditEvent::new(Action::KeyRotate, now);
        event.subject = Some(format!("signing_key:{}", key.kid()));
        event.detail = Some(format!(
            "activates_at={} by=operator",
            activates_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
        let outcome = self
            .trail
            .write_change(write, event, |outcome, event| match outcome {
                WriteOutcome::SigningKeyRotated(SigningKeyRotation::Rotated { retired }) => {
                    let rest = event.detail.take().unwrap_or_default();
                    event.detail = Some(format!("retired={retired} {rest}"));
                    true
                }
                _ => false,
            })
            .await
            .map_err(|_| KeyError::AuditUnavailable)?;
        match outcome {
            WriteOutcome::SigningKeyRotated(SigningKeyRotation::Rotated { retired }) => {
                Ok(SigningKeyRotated {
                    kid: key.kid().to_owned(),
                    activates_at,
                    retired,
                })
            }
            WriteOutcome::SigningKeyRotated(SigningKeyRotation::Pending {
                activates_at, ..
            }) => Err(KeyError::RotationPending { activates_at }),
            _ => Err(KeyError::SigningRotationRaced),
        }
    }
}

/// A secret as unwrapped: a 256-bit key, or the bytes of a signing key.
enum Secret {
    Key(zeroize::Zeroizing<[u8; 32]>),
    Bytes(zeroize::Zeroizing<Vec<u8>>),
}

/// Unwraps every key and secret of `keys` under `master` (each under its own label) and
/// stores what `wrap` makes of it as its new wrapping. Fails at the first that does not open.
fn rewrap_each(
    master: &MasterKey,
    keys: &mut Rewrap,
    mut wrap: impl FnMut(&str, Secret) -> Result<Vec<u8>, KeyError>,
) -> Result<(), KeyError> {
    let mismatch = |_| KeyError::MasterKeyMismatch;
    for (key, anew) in &mut keys.data_keys {
        let label = key.label();
        let secret = master.unwrap(&label, &key.wrapped).map_err(mismatch)?;
        *anew = wrap(&label, Secret::Key(secret))?;
    }
    for (name, wrapped, anew) in &mut keys.secrets {
        let secret = master.unwrap(name, wrapped).map_err(mismatch)?;
        *anew = wrap(name, Secret::Key(secret))?;
    }
    for (kid, wrapped, anew) in &mut keys.signing_keys {
        let label = super::signing::signing_label(kid);
        let secret = master.unwrap_bytes(&label, wrapped).map_err(mismatch)?;
        *anew = wrap(&label, Secret::Bytes(secret))?;
    }
    for (tenant, wrapped, anew) in &mut keys.tenant_keys {
        let label = tenant_key_label(*tenant);
        let secret = master.unwrap(&label, wrapped).map_err(mismatch)?;
        *anew = wrap(&label, Secret::Key(secret))?;
    }
    Ok(())
}

/// Whether `master` opens every wrapped key and secret stored: data keys, the vault's secrets,
/// signing keys and tenant keys (`keys status`).
pub async fn opens_every_key(store: &dyn KeyStore, master: &MasterKey) -> Result<bool, KeyError> {
    let mut keys = store.wrapped_keys().await?;
    Ok(rewrap_each(master, &mut keys, |_, _| Ok(Vec::new())).is_ok())
}

/// How long after it retires a data key may be destroyed: two housekeeping passes at their
/// default interval, by which every serving instance has reloaded its keyring and stopped
/// sealing under it.
pub const DESTROY_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(2);

/// How many wrapped keys and secrets a rewrap replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapCounts {
    /// Data keys.
    pub data_keys: usize,
    /// The vault's other secrets.
    pub secrets: usize,
    /// Grant-signing keys.
    pub signing_keys: usize,
    /// Tenant keys (not destroyed).
    pub tenant_keys: usize,
}

/// Whether two reads of the wrapped keys found the same rows, wrapped the same.
fn same_keys(a: &Rewrap, b: &Rewrap) -> bool {
    a.data_keys == b.data_keys
        && a.secrets == b.secrets
        && a.signing_keys == b.signing_keys
        && a.tenant_keys == b.tenant_keys
}

/// A grant-signing key rotation done: the new key, when it signs, and the key it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRotated {
    /// The new key's `kid`.
    pub kid: String,
    /// When it starts signing (and the old key retires).
    pub activates_at: DateTime<Utc>,
    /// The `kid` of the key it replaces.
    pub retired: String,
}

/// A data key rotation, by an operator or by the vault when the active key reaches its age:
/// the next version is made and wrapped, and inserted with every older active one retired, in
/// one transaction with its `key.rotate` record (`why` goes in its detail).
pub(super) async fn rotate_data_key(
    store: &dyn KeyStore,
    master: &MasterKey,
    rng: &dyn Csprng,
    clock: &dyn Clock,
    trail: &AuditTrail,
    why: &'static str,
) -> Result<(u32, Vec<u32>), KeyError> {
    let stored = store.data_keys().await?;
    for key in &stored {
        master
            .unwrap(&key.label(), &key.wrapped)
            .map_err(|_| KeyError::MasterKeyMismatch)?;
    }
    // Destroyed versions count too: a version number is never used twice.
    let version = store.newest_data_key_version().await? + 1;
    let secret = zeroize::Zeroizing::new(random::bytes::<32>(rng).map_err(CryptoError::from)?);
    let wrapped = master.wrap(rng, &tenant_bound_dek_label(version), &secret)?;
    let write = AuditedWrite::RotateDataKey {
        key: WrappedDataKey {
            version,
            wrapped,
            tenant_bound: true,
        },
        witness: stored.into_iter().last(),
        now: clock.now(),
    };
    let mut event = AuditEvent::new(Action::KeyRotate, clock.now());
    event.subject = Some(format!("data_key:{version}"));
    event.detail = Some(format!("by={why}"));
    let outcome = trail
        .write_change(write, event, |outcome, event| match outcome {
            WriteOutcome::DataKeyRotated(Some(retired)) => {
                let retired: Vec<String> = retired.iter().map(u32::to_string).collect();
                let by = event.detail.take().unwrap_or_default();
                event.detail = Some(format!("retired={} {by}", retired.join(",")));
                true
            }
            _ => false,
        })
        .await
        .map_err(|_| KeyError::AuditUnavailable)?;
    match outcome {
        WriteOutcome::DataKeyRotated(Some(retired)) => Ok((version, retired)),
        _ => Err(KeyError::RotationRaced),
    }
}

/// `at` to the whole second: the moment a key activates is printed, recorded and stored alike.
/// Down, not up, so that a lead of 0 signs at once; a lead shorter by under a second does not
/// matter against the housekeeping interval it covers.
fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::seconds(1)).unwrap_or(at)
}
