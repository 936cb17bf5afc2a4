//! Grant JWTs: signing with Ed25519 (EdDSA) and verifying with the algorithm pinned to the key
//! that the `kid` names.
//!
//! Pure: the time is passed in. Verification trusts nothing in the header but the `kid`, used
//! only to pick one of our own keys: `alg` must equal that key's algorithm (so `none`, HMAC
//! "keyed with the public key" and every other confusion fails), and the header may carry
//! nothing but `alg`, `typ` and `kid` (`jku`, `jwk`, `x5u`, `x5c`, `crit`… are refused, never
//! fetched). Errors say only "invalid" or "expired". Private keys zeroize and never print.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The `typ` of a grant (RFC 8725 §3.11: explicit typing, so no other JWT passes as one).
pub const GRANT_TYP: &str = "strongroom-grant+jwt";
/// The issuer of every grant.
pub const ISSUER: &str = "urn:strongroom";
/// The audience of every grant: the detokenize endpoint.
pub const AUDIENCE: &str = "urn:strongroom:detokenize";
/// Longest JWT accepted; ours are well under 2 KiB even with 100 tokens.
pub const MAX_JWT_BYTES: usize = 8 * 1024;

/// The claims of a grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantClaims {
    /// The issuer, [`ISSUER`].
    pub iss: String,
    /// The audience, [`AUDIENCE`].
    pub aud: String,
    /// The grantee's principal id.
    pub sub: Uuid,
    /// The grantee's tenant.
    pub tenant: Uuid,
    /// The grant's id.
    pub jti: Uuid,
    /// When it was issued (seconds since the epoch).
    pub iat: i64,
    /// Not valid before.
    pub nbf: i64,
    /// Not valid from.
    pub exp: i64,
    /// The tokens it covers (empty with `any_token`).
    pub tokens: Vec<String>,
    /// Whether it covers every token of the tenant.
    pub any_token: bool,
    /// The purpose it was granted for.
    pub purpose: String,
    /// Detokenize calls it allows.
    pub max_uses: u32,
    /// The access request that minted it.
    pub request_id: Uuid,
}

/// Why a presented JWT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantTokenError {
    /// Malformed, not ours, tampered with, or not a grant.
    #[error("the grant is not valid")]
    Invalid,
    /// Valid, but outside its `nbf`–`exp` window.
    #[error("the grant is not valid at this time")]
    Expired,
}

/// Why a signing key could not be made or loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SigningKeyError {
    /// The system random number generator failed.
    #[error("could not generate a signing key")]
    Generate,
    /// The stored key is not an Ed25519 PKCS#8 document.
    #[error("a stored signing key is malformed")]
    Malformed,
    /// Signing failed.
    #[error("signing failed")]
    Sign,
}

/// A grant-signing key: Ed25519, named by a `kid`.
pub struct SigningKey {
    kid: String,
    pkcs8: Zeroizing<Vec<u8>>,
    public: Vec<u8>,
    encoding: EncodingKey,
}

impl SigningKey {
    /// A fresh key with a random `kid`, from the operating system's CSPRNG.
    pub fn generate() -> Result<SigningKey, SigningKeyError> {
        let rng = ring::rand::SystemRandom::new();
        let document =
            Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SigningKeyError::Generate)?;
        let kid = format!("grant-{}", Uuid::new_v4().simple());
        SigningKey::from_pkcs8(kid, Zeroizing::new(document.as_ref().to_vec()))
    }

    /// A key from its PKCS#8 document.
    pub fn from_pkcs8(
        kid: String,
        pkcs8: Zeroizing<Vec<u8>>,
    ) -> Result<SigningKey, SigningKeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| SigningKeyError::Malformed)?;
        let public = pair.public_key().as_ref().to_vec();
        let encoding = EncodingKey::from_ed_der(&pkcs8);
        Ok(SigningKey {
            kid,
            pkcs8,
            public,
            encoding,
        })
    }

    /// Its `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key's PKCS#8 document, for wrapping at rest.
    pub fn expose_pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The raw 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    /// Signs grant claims. Ed25519 is deterministic: the same claims give the same JWT, which
    /// is why the JWT need not be stored.
    pub fn sign(&self, claims: &GrantClaims) -> Result<GrantJwt, SigningKeyError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(GRANT_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map(|jwt| GrantJwt(Zeroizing::new(jwt)))
            .map_err(|_| SigningKeyError::Sign)
    }

    /// The public half, for verifying and publishing.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey::ed25519(self.kid.clone(), &self.public)
    }
}

/// A signed grant: a bearer credential that reveals card data to its holder. Wiped on drop,
/// never printed (its `Debug` is redacted); only its grantee's answer carries it.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantJwt(Zeroizing<String>);

impl GrantJwt {
    /// The JWT text, for the grantee's answer.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for GrantJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GrantJwt(<redacted>)")
    }
}

impl std::ops::Deref for GrantJwt {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.kid)
    }
}

/// A public key that verifies grants, with its algorithm pinned.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    algorithm: Algorithm,
    public: Vec<u8>,
    decoding: DecodingKey,
}

impl VerifyingKey {
    /// An Ed25519 public key.
    pub fn ed25519(kid: String, public: &[u8]) -> VerifyingKey {
        VerifyingKey {
            kid,
            algorithm: Algorithm::EdDSA,
            public: public.to_vec(),
            decoding: DecodingKey::from_ed_der(public),
        }
    }

    /// Its `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JWK (RFC 8037 §2) of this key: public parts only.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(&self.public),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        })
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({}, {:?})", self.kid, self.algorithm)
    }
}

/// Verifies grants against a set of our public keys.
#[derive(Debug, Clone, Default)]
pub struct GrantVerifier {
    keys: HashMap<String, VerifyingKey>,
}

impl GrantVerifier {
    /// A verifier over `keys`.
    pub fn new(keys: impl IntoIterator<Item = VerifyingKey>) -> GrantVerifier {
        GrantVerifier {
            keys: keys.into_iter().map(|k| (k.kid.clone(), k)).collect(),
        }
    }

    /// The JWKS document of every key.
    pub fn jwks(&self) -> Value {
        let mut keys: Vec<&VerifyingKey> = self.keys.values().collect();
        keys.sort_by(|a, b| a.kid.cmp(&b.kid));
        json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
    }

    /// Whether a key of this `kid` is known.
    pub fn knows(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// Verifies a presented grant at `now` (seconds since the epoch) and returns its claims.
    pub fn verify(&self, jwt: &str, now: i64) -> Result<GrantClaims, GrantTokenError> {
        if jwt.is_empty() || jwt.len() > MAX_JWT_BYTES {
            return Err(GrantTokenError::Invalid);
        }
        // Parsing the header fails for any `alg` jsonwebtoken does not know, `none` included
        // in every casing.
        let header = jsonwebtoken::decode_header(jwt).map_err(|_| GrantTokenError::Invalid)?;
        let only_ours = header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(GRANT_TYP))
            && header.cty.is_none()
            && header.jku.is_none()
            && header.jwk.is_none()
            && header.x5u.is_none()
            && header.x5c.is_none()
            && header.x5t.is_none()
            && header.x5t_s256.is_none()
            && header.crit.is_none()
            && header.enc.is_none()
            && header.zip.is_none()
            && header.url.is_none()
            && header.nonce.is_none()
            && header.extras.inner().is_empty();
        if !only_ours {
            return Err(GrantTokenError::Invalid);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(GrantTokenError::Invalid)?;
        if header.alg != key.algorithm {
            return Err(GrantTokenError::Invalid);
        }
        let mut validation = Validation::new(key.algorithm);
        // Time is checked below against the vault's clock, without leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<GrantClaims>(jwt, &key.decoding, &validation)
            .map_err(|_| GrantTokenError::Invalid)?
            .claims;
        if now < claims.nbf || now >= claims.exp {
            return Err(GrantTokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> GrantClaims {
        GrantClaims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: Uuid::new_v4(),
            tenant: Uuid::new_v4(),
            jti: Uuid::new_v4(),
            iat: now,
            nbf: now,
            exp: now + 60,
            tokens: vec!["tok_a".into()],
            any_token: false,
            purpose: "dispute".into(),
            max_uses: 1,
            request_id: Uuid::new_v4(),
        }
    }

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    /// Signs arbitrary header and payload JSON with `key`, as an attacker holding it could.
    fn sign_raw(key: &SigningKey, header: &Value, payload: &Value) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let pair = Ed25519KeyPair::from_pkcs8(key.expose_pkcs8()).unwrap();
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()))
        )
    }

    const NOW: i64 = 1_900_000_000;

    #[test]
    fn a_signed_grant_never_prints() {
        let key = SigningKey::generate().unwrap();
        let jwt = key.sign(&claims(NOW)).unwrap();
        let shown = format!("{jwt:?} {:?}", Some(jwt.clone()));
        assert!(
            !shown.contains(jwt.as_str()) && !shown.contains("eyJ"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn a_signed_grant_verifies_inside_its_window_only() {
        let key = SigningKey::generate().unwrap();
        let verifier = GrantVerifier::new([key.verifying_key()]);
        let c = claims(NOW);
        let jwt = key.sign(&c).unwrap();
        assert_eq!(verifier.verify(&jwt, NOW).unwrap(), c);
        assert_eq!(verifier.verify(&jwt, NOW + 59).unwrap(), c);
        assert_eq!(
            verifier.verify(&jwt, NOW + 60),
            Err(GrantTokenError::Expired)
        );
        assert_eq!(
            verifier.verify(&jwt, NOW - 1),
            Err(GrantTokenError::Expired)
        );
        assert_eq!(*key.sign(&c).unwrap(), *jwt, "Ed25519 is deterministic");
    }

    #[test]
    fn a_key_round_trips_through_pkcs8_and_publishes_only_its_public_half() {
        let key = SigningKey::generate().unwrap();
        let again = SigningKey::from_pkcs8(
            key.kid().into(),
            Zeroizing::new(key.expose_pkcs8().to_vec()),
        )
        .unwrap();
        let jwt = again.sign(&claims(NOW)).unwrap();
        assert!(
            GrantVerifier::new([key.verifying_key()])
                .verify(&jwt, NOW)
                .is_ok()
        );
        let jwks = GrantVerifier::new([key.verifying_key()]).jwks();
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["kid"], key.kid());
        assert!(jwk.get("d").is_none());
        assert_eq!(
            format!("{key:?}"),
            format!("SigningKey({}, <redacted>)", key.kid())
        );
    }

    #[test]
    fn headers_other_than_alg_typ_and_kid_are_refused_even_when_signed_by_us() {
        let key = SigningKey::generate().unwrap();
        let verifier = GrantVerifier::new([key.verifying_key()]);
        let payload = serde_json::to_value(claims(NOW)).unwrap();
        let good = json!({"alg": "EdDSA", "typ": GRANT_TYP, "kid": key.kid()});
        assert!(
            verifier
                .verify(&sign_raw(&key, &good, &payload), NOW)
                .is_ok()
        );
        for (name, value) in [
            ("jku", json!("https://evil.example/jwks.json")),
            ("x5u", json!("https://evil.example/cert.pem")),
            ("jwk", key.verifying_key().jwk()),
            ("crit", json!(["exp"])),
            ("b64", json!(false)),
        ] {
            let mut header = good.clone();
            header[name] = value;
            assert_eq!(
                verifier.verify(&sign_raw(&key, &header, &payload), NOW),
                Err(GrantTokenError::Invalid),
                "{name}"
            );
        }
        for typ in [json!("JWT"), json!(null), json!("at+jwt")] {
            let mut header = good.clone();
            header["typ"] = typ.clone();
            assert_eq!(
                verifier.verify(&sign_raw(&key, &header, &payload), NOW),
                Err(GrantTokenError::Invalid),
                "typ {typ}"
            );
        }
    }

    #[test]
    fn wrong_issuer_audience_or_missing_claims_are_invalid_even_when_signed_by_us() {
        let key = SigningKey::generate().unwrap();
        let verifier = GrantVerifier::new([key.verifying_key()]);
        let header = json!({"alg": "EdDSA", "typ": GRANT_TYP, "kid": key.kid()});
        let base = serde_json::to_value(claims(NOW)).unwrap();
        for (field, value) in [
            ("iss", json!("urn:someone-else")),
            ("aud", json!("urn:strongroom:other")),
            ("aud", json!(["urn:other"])),
            ("exp", Value::Null),
            ("sub", json!("not-a-uuid")),
            ("extra", json!(1)),
        ] {
            let mut payload = base.clone();
            if value.is_null() {
                payload.as_object_mut().unwrap().remove(field);
            } else {
                payload[field] = value;
            }
            assert_eq!(
                verifier.verify(&sign_raw(&key, &header, &payload), NOW),
                Err(GrantTokenError::Invalid),
                "{field}"
            );
        }
    }

    #[test]
    fn forgeries_are_invalid() {
        let key = SigningKey::generate().unwrap();
        let verifier = GrantVerifier::new([key.verifying_key()]);
        let jwt = key.sign(&claims(NOW)).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let payload = parts[1];

        for alg in ["none", "None", "NONE", "nOnE"] {
            let header = b64(&json!({"alg": alg, "typ": GRANT_TYP, "kid": key.kid()}));
            for forged in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}"),
            ] {
                assert_eq!(
                    verifier.verify(&forged, NOW),
                    Err(GrantTokenError::Invalid),
                    "{alg}"
                );
            }
        }
        // HS256 keyed with the published public key (raw, and as its base64url text).
        for secret in [
            key.public_key().to_vec(),
            URL_SAFE_NO_PAD.encode(key.public_key()).into_bytes(),
        ] {
            let mut header = Header::new(Algorithm::HS256);
            header.typ = Some(GRANT_TYP.into());
            header.kid = Some(key.kid().into());
            let forged =
                jsonwebtoken::encode(&header, &claims(NOW), &EncodingKey::from_secret(&secret))
                    .unwrap();
            assert_eq!(verifier.verify(&forged, NOW), Err(GrantTokenError::Invalid));
        }
        // Our kid, another key.
        let other = SigningKey::generate().unwrap();
        let header = json!({"alg": "EdDSA", "typ": GRANT_TYP, "kid": key.kid()});
        let forged = sign_raw(&other, &header, &serde_json::to_value(claims(NOW)).unwrap());
        assert_eq!(verifier.verify(&forged, NOW), Err(GrantTokenError::Invalid));
        // An unknown kid.
        assert_eq!(
            verifier.verify(&other.sign(&claims(NOW)).unwrap(), NOW),
            Err(GrantTokenError::Invalid)
        );
        // A changed payload under the original signature.
        let mut changed = claims(NOW);
        changed.max_uses = 1000;
        let changed = b64(&serde_json::to_value(&changed).unwrap());
        let forged = format!("{}.{changed}.{}", parts[0], parts[2]);
        assert_eq!(verifier.verify(&forged, NOW), Err(GrantTokenError::Invalid));
        // A truncated signature, and garbage.
        let truncated = &jwt[..jwt.len() - 4];
        assert_eq!(
            verifier.verify(truncated, NOW),
            Err(GrantTokenError::Invalid)
        );
        for junk in ["", "a.b", "a.b.c.d", "....", &"x".repeat(MAX_JWT_BYTES + 1)] {
            assert_eq!(verifier.verify(junk, NOW), Err(GrantTokenError::Invalid));
        }
    }
}
