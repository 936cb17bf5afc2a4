//! Grant-signing keys: the first one generated once (a race between instances is decided by the
//! database), each wrapped by the master key; which one signs at a moment, and the verifier of
//! every published one. Reloaded at each housekeeping pass, so a rotation reaches running
//! instances without a restart (see `docs/keys.md`).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{EDDSA, KeyError, KeyService};
use crate::crypto::grant::{GrantVerifier, SigningKey, SigningKeyError};
use crate::domain::SigningKeyPhase;
use crate::store::StoredSigningKey;

/// A signing key this instance holds, with when it signs.
#[derive(Clone)]
pub(super) struct LoadedSigningKey {
    key: Arc<SigningKey>,
    activates_at: Option<DateTime<Utc>>,
    retired_at: Option<DateTime<Utc>>,
}

impl KeyService {
    /// Loads the grant-signing keys, creating the first one if there is none.
    pub(super) async fn load_signing_keys(&self) -> Result<(), KeyError> {
        if self.store.signing_keys(self.clock.now()).await?.is_empty() {
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
                activates_at: None,
                retired_at: None,
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
        self.reload_signing_keys().await
    }

    /// Loads every published signing key (pending, active, or retired with unexpired grants)
    /// and rebuilds the verifier over them; keys already held are kept, not unwrapped again.
    pub(super) async fn reload_signing_keys(&self) -> Result<(), KeyError> {
        let held: Vec<LoadedSigningKey> =
            self.signing.read().map(|k| k.clone()).unwrap_or_default();
        let mut keys = Vec::new();
        for stored in self.store.signing_keys(self.clock.now()).await? {
            if stored.algorithm != EDDSA {
                return Err(KeyError::Signing(SigningKeyError::Malformed));
            }
            let key = match held.iter().find(|k| k.key.kid() == stored.kid) {
                Some(k) => Arc::clone(&k.key),
                None => {
                    let pkcs8 = self
                        .master
                        .unwrap_bytes(&signing_label(&stored.kid), &stored.wrapped)
                        .map_err(|_| KeyError::MasterKeyMismatch)?;
                    Arc::new(SigningKey::from_pkcs8(stored.kid, pkcs8)?)
                }
            };
            keys.push(LoadedSigningKey {
                key,
                activates_at: stored.activates_at,
                retired_at: stored.retired_at,
            });
        }
        let verifier = GrantVerifier::new(keys.iter().map(|k| k.key.verifying_key()));
        // The verifier first: a key is published before this instance can sign with it.
        if let Ok(mut v) = self.verifier.write() {
            *v = Arc::new(verifier);
        }
        if let Ok(mut s) = self.signing.write() {
            *s = keys;
        }
        Ok(())
    }

    /// The key that signs new grants now: the newest whose activation has come and which has
    /// not retired. A pending key takes over at its `activates_at` by this instance's clock,
    /// without waiting for a reload.
    pub fn signing_key(&self) -> Result<Arc<SigningKey>, KeyError> {
        let now = self.clock.now();
        self.signing
            .read()
            .ok()
            .and_then(|keys| {
                keys.iter()
                    .rev()
                    .find(|k| {
                        SigningKeyPhase::at(k.activates_at, k.retired_at, now)
                            == SigningKeyPhase::Active
                    })
                    .map(|k| Arc::clone(&k.key))
            })
            .ok_or(KeyError::Signing(SigningKeyError::Malformed))
    }

    /// The published signing key named `kid`, to sign a grant again for its grantee: a retired
    /// key too, while a grant it signed is unexpired.
    pub fn signing_key_by_kid(&self, kid: &str) -> Result<Arc<SigningKey>, KeyError> {
        self.signing
            .read()
            .ok()
            .and_then(|keys| {
                keys.iter()
                    .find(|k| k.key.kid() == kid)
                    .map(|k| Arc::clone(&k.key))
            })
            .ok_or(KeyError::Signing(SigningKeyError::Malformed))
    }

    /// The verifier of presented grants, over every published key.
    pub fn grant_verifier(&self) -> Arc<GrantVerifier> {
        self.verifier
            .read()
            .map(|v| Arc::clone(&v))
            .unwrap_or_default()
    }
}

/// The associated data a signing key is wrapped under.
pub(super) fn signing_label(kid: &str) -> String {
    format!("grant-signing:{kid}")
}
