//! An operator's key commands. Each change commits in one transaction with its record, in the
//! command's own audit chain, and names no key material.

use std::sync::Arc;

use super::KeyError;
use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::keys::{MasterKey, dek_label};
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::random::{self, Csprng};
use crate::service::AuditTrail;
use crate::store::{AuditedWrite, KeyDestruction, KeyStore, WrappedDataKey, WriteOutcome};

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

    /// Destroys retired data key `version` once no live row is sealed under it (re-encrypt
    /// first): its wrapped key is deleted, so nothing it sealed opens again. The newest key is
    /// never destroyed. A refusal changes nothing and is recorded too, with its reason.
    pub async fn destroy_data_key(&self, version: u32) -> Result<KeyDestruction, KeyError> {
        let now = self.clock.now();
        let outcome = self
            .trail
            .write_records(
                AuditedWrite::DestroyDataKey { version, now },
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
            .await
            .map_err(|_| KeyError::AuditUnavailable)?;
        self.trail.checkpoint().await;
        match outcome {
            WriteOutcome::DataKeyDestroyed(destruction) => Ok(destruction),
            _ => Err(KeyError::AuditUnavailable),
        }
    }
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
            .unwrap(&dek_label(key.version), &key.wrapped)
            .map_err(|_| KeyError::MasterKeyMismatch)?;
    }
    // Destroyed versions count too: a version number is never used twice.
    let version = store.newest_data_key_version().await? + 1;
    let secret = zeroize::Zeroizing::new(random::bytes::<32>(rng).map_err(CryptoError::from)?);
    let wrapped = master.wrap(rng, &dek_label(version), &secret)?;
    let write = AuditedWrite::RotateDataKey {
        key: WrappedDataKey { version, wrapped },
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
