//! The master key in an HSM, through PKCS#11 (the `cryptoki` crate): a non-extractable
//! AES-256 key that wraps and unwraps the vault's keys inside the device.
//!
//! Configured as `module=PATH;token=LABEL;label=KEY-LABEL`, with the user PIN from
//! `STRONGROOM_PKCS11_PIN` (never a flag, never logged). Each wrap and unwrap is one
//! `C_Encrypt` / `C_Decrypt` with `CKM_AES_GCM`, a nonce drawn by the vault and the wrap's label
//! as associated data, so what the device wraps reads exactly as what a key in memory wraps, and
//! `keys rewrap` moves between the two.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use zeroize::Zeroizing;

use crate::crypto::CryptoError;
use crate::crypto::keys::{ExternalKek, MasterKey};

/// The variable the PIN is read from.
pub const PIN_VARIABLE: &str = "STRONGROOM_PKCS11_PIN";

/// Where the key is: the PKCS#11 module, the token's label and the key's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Spec {
    /// The module (shared library), e.g. /usr/lib/softhsm/libsofthsm2.so.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The key's label (`CKA_LABEL`).
    pub label: String,
}

impl FromStr for Pkcs11Spec {
    type Err = HsmError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (mut module, mut token, mut label) = (None, None, None);
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("module", v)) => module = Some(PathBuf::from(v)),
                Some(("token", v)) => token = Some(v.to_owned()),
                Some(("label", v)) => label = Some(v.to_owned()),
                _ => return Err(HsmError::Spec),
            }
        }
        match (module, token, label) {
            (Some(module), Some(token), Some(label)) if !token.is_empty() && !label.is_empty() => {
                Ok(Pkcs11Spec {
                    module,
                    token,
                    label,
                })
            }
            _ => Err(HsmError::Spec),
        }
    }
}

/// Why the HSM could not be used. Never carries the PIN or key material.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The spec is not `module=…;token=…;label=…`.
    #[error("the PKCS#11 key must be given as module=PATH;token=TOKEN-LABEL;label=KEY-LABEL")]
    Spec,
    /// No PIN in the environment.
    #[error("{PIN_VARIABLE} is not set (the token's user PIN)")]
    NoPin,
    /// The module failed to load or initialize.
    #[error("cannot load the PKCS#11 module {0}: {1}")]
    Module(String, String),
    /// No token has that label.
    #[error("no PKCS#11 token is labelled {0}")]
    NoToken(String),
    /// The PIN was refused, or the session could not be opened.
    #[error("cannot log in to token {0}: {1}")]
    Login(String, String),
    /// No key (or more than one) has that label.
    #[error("token {0} has {1} AES keys labelled {2}; it needs exactly one")]
    Key(String, usize, String),
    /// A key of that label exists already (keygen).
    #[error("token {0} already has a key labelled {1}: choose another label")]
    Exists(String, String),
    /// Another failure of the device.
    #[error("the HSM failed: {0}")]
    Device(String),
}

fn device(e: cryptoki::error::Error) -> HsmError {
    HsmError::Device(e.to_string())
}

/// A logged-in session on the token and the key's handle. One session, used by one call at a
/// time (PKCS#11 sessions are not for concurrent use).
pub struct Pkcs11Kek {
    session: Mutex<Session>,
    key: ObjectHandle,
    // The library stays loaded while the session lives.
    _context: Pkcs11,
}

impl Pkcs11Kek {
    /// Opens the key of `spec`, logging in with the PIN from the environment.
    pub fn open(spec: &Pkcs11Spec) -> Result<Pkcs11Kek, HsmError> {
        let (context, session) = login(spec)?;
        let keys = find_keys(&session, &spec.label)?;
        let [key] = keys.as_slice() else {
            return Err(HsmError::Key(
                spec.token.clone(),
                keys.len(),
                spec.label.clone(),
            ));
        };
        Ok(Pkcs11Kek {
            session: Mutex::new(session),
            key: *key,
            _context: context,
        })
    }

    /// Whether the key can be read out of the device (it must not: `CKA_EXTRACTABLE` false,
    /// `CKA_SENSITIVE` true, and asking for its value refused), as the device itself answers.
    pub fn is_extractable(&self) -> Result<bool, HsmError> {
        let session = self
            .session
            .lock()
            .map_err(|_| HsmError::Device("lock".into()))?;
        // The value itself, asked for outright: a device that hands it over has lost it.
        let value = session.get_attributes(self.key, &[AttributeType::Value]);
        if value.is_ok_and(|v| {
            v.iter()
                .any(|a| matches!(a, Attribute::Value(bytes) if !bytes.is_empty()))
        }) {
            return Ok(true);
        }
        let attributes = session
            .get_attributes(
                self.key,
                &[AttributeType::Extractable, AttributeType::Sensitive],
            )
            .map_err(device)?;
        let mut extractable = true;
        let mut sensitive = false;
        for attribute in attributes {
            match attribute {
                Attribute::Extractable(v) => extractable = v,
                Attribute::Sensitive(v) => sensitive = v,
                _ => {}
            }
        }
        Ok(extractable || !sensitive)
    }

    /// The master key this device holds.
    pub fn master_key(self) -> Result<MasterKey, HsmError> {
        MasterKey::external(Arc::new(self)).map_err(|e| HsmError::Device(e.to_string()))
    }
}

/// Makes a new non-extractable AES-256 key labelled `spec.label` in the token
/// (`strongroom keygen --pkcs11`); refuses a label already used.
pub fn generate(spec: &Pkcs11Spec) -> Result<(), HsmError> {
    let (_context, session) = login(spec)?;
    if !find_keys(&session, &spec.label)?.is_empty() {
        return Err(HsmError::Exists(spec.token.clone(), spec.label.clone()));
    }
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                // Encrypt and decrypt only: no signing, wrapping or deriving with it.
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Sign(false),
                Attribute::Verify(false),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
                Attribute::Label(spec.label.as_bytes().to_vec()),
            ],
        )
        .map_err(device)?;
    Ok(())
}

fn login(spec: &Pkcs11Spec) -> Result<(Pkcs11, Session), HsmError> {
    let pin = Zeroizing::new(std::env::var(PIN_VARIABLE).unwrap_or_default());
    if pin.is_empty() {
        return Err(HsmError::NoPin);
    }
    let module = spec.module.display().to_string();
    let context =
        Pkcs11::new(&spec.module).map_err(|e| HsmError::Module(module.clone(), e.to_string()))?;
    context
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| HsmError::Module(module, e.to_string()))?;
    let slot = context
        .get_slots_with_token()
        .map_err(device)?
        .into_iter()
        .find(|slot| {
            context
                .get_token_info(*slot)
                .is_ok_and(|info| info.label().trim() == spec.token)
        })
        .ok_or_else(|| HsmError::NoToken(spec.token.clone()))?;
    let session = context
        .open_rw_session(slot)
        .map_err(|e| HsmError::Login(spec.token.clone(), e.to_string()))?;
    session
        .login(UserType::User, Some(&AuthPin::new(pin.as_str().into())))
        .map_err(|e| HsmError::Login(spec.token.clone(), e.to_string()))?;
    Ok((context, session))
}

fn find_keys(session: &Session, label: &str) -> Result<Vec<ObjectHandle>, HsmError> {
    session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::AES),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .map_err(device)
}

impl ExternalKek for Pkcs11Kek {
    fn extractable(&self) -> Option<bool> {
        self.is_extractable().ok()
    }

    fn seal(&self, nonce: &[u8; 12], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut iv = *nonce;
        let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(|_| CryptoError::Encrypt)?;
        let session = self.session.lock().map_err(|_| CryptoError::Encrypt)?;
        session
            .encrypt(&Mechanism::AesGcm(params), self.key, plaintext)
            .map_err(|_| CryptoError::Encrypt)
    }

    fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let mut iv = *nonce;
        let params = GcmParams::new(&mut iv, aad, 128.into()).map_err(|_| CryptoError::Decrypt)?;
        let session = self.session.lock().map_err(|_| CryptoError::Decrypt)?;
        session
            .decrypt(&Mechanism::AesGcm(params), self.key, sealed)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_module_token_and_label() {
        let spec: Pkcs11Spec = "module=/usr/lib/softhsm/libsofthsm2.so; token=vault; label=master"
            .parse()
            .unwrap();
        assert_eq!(spec.token, "vault");
        assert_eq!(spec.label, "master");
        for bad in [
            "",
            "module=/x;token=t",
            "module=/x;token=;label=k",
            "pin=1234;module=/x;token=t;label=k",
        ] {
            assert!(bad.parse::<Pkcs11Spec>().is_err(), "{bad}");
        }
    }
}
