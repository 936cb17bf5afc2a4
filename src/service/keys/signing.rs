//! Grant-signing keys: generated once (a race between instances is decided by the database),
//! wrapped by the master key, and their verifier.

use std::sync::Arc;

use super::{EDDSA, KeyError, KeyService};
use crate::crypto::grant::{GrantVerifier, SigningKey, SigningKeyError};
use crate::store::StoredSigningKey;

impl KeyService {
    /// Loads the grant-signing keys, creating the first one if there is none.
    pub(super) async fn load_signing_keys(&self) -> Result<(), KeyError> {
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
}

pub(super) fn signing_label(kid: &str) -> String {
    format!("grant-signing:{kid}")
}
