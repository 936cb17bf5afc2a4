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
use crate::crypto::keys::{MasterKey, dek_label};
use crate::domain::audit::{Action, AuditEvent};
use crate::random::{self, Csprng};
use crate::service::AuditTrail;
use crate::store::{
    AuditedWrite, KeyStore, SigningKeyRotation, StoredSigningKey, WrappedDataKey, WriteOutcome,
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
        let write = AuditedWrite::RotateSigningKey {
            key: StoredSigningKey {
                kid: key.kid().to_owned(),
                algorithm: EDDSA.to_owned(),
                wrapped,
                public_key: key.public_key().to_vec(),
                activates_at: Some(activates_at),
                retired_at: None,
            },
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
            _ => Err(KeyError::RotationRaced),
        }
    }
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
            .unwrap(&dek_label(key.version), &key.wrapped)
            .map_err(|_| KeyError::MasterKeyMismatch)?;
    }
    let version = stored.iter().map(|k| k.version).max().unwrap_or(0) + 1;
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

/// `at` to the whole second: the moment a key activates is printed, recorded and stored alike.
/// Down, not up, so that a lead of 0 signs at once; a lead shorter by under a second does not
/// matter against the housekeeping interval it covers.
fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::seconds(1)).unwrap_or(at)
}
