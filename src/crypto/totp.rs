//! TOTP second factors (RFC 6238): HMAC-SHA-1, six digits, 30-second steps, one step of skew.
//!
//! Pure: the time is passed in. Which step a code matched is returned so that the caller can
//! refuse a code of that step or earlier again (RFC 6238 §5.2). Secrets zeroize on drop and never
//! print; nothing here logs.

use std::fmt;

use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

use crate::random::{self, Csprng, RandomError};

/// Seconds per step.
pub const STEP_SECONDS: u64 = 30;
/// Bytes of a secret: 160 bits, RFC 4226 §4's recommendation for HMAC-SHA-1.
pub const SECRET_BYTES: usize = 20;

/// A TOTP code as a person typed it: a one-time credential while it is fresh. Wiped on drop,
/// never printed (its `Debug` is redacted).
#[derive(Clone)]
pub struct TotpCode(Zeroizing<String>);

impl TotpCode {
    /// The code as given.
    pub fn new(code: Zeroizing<String>) -> TotpCode {
        TotpCode(code)
    }

    /// The code text, for checking.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(<redacted>)")
    }
}

/// A principal's TOTP secret.
pub struct TotpSecret(Totp);

impl TotpSecret {
    /// A fresh random secret.
    pub fn generate(rng: &dyn Csprng) -> Result<TotpSecret, RandomError> {
        let bytes = Zeroizing::new(random::bytes::<SECRET_BYTES>(rng)?);
        TotpSecret::from_bytes(bytes.as_slice()).ok_or(RandomError)
    }

    /// A secret from its raw bytes (16 bytes or more).
    pub fn from_bytes(bytes: &[u8]) -> Option<TotpSecret> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(STEP_SECONDS)
            .with_secret(Secret::new(bytes.to_vec().into_boxed_slice()))
            .build()
            .ok()
            .map(TotpSecret)
    }

    /// A secret from the base32 form [`TotpSecret::to_base32`] gives (`strongroom totp code`
    /// reads a demo person's from the dev data directory).
    pub fn from_base32(text: &str) -> Option<TotpSecret> {
        let secret = Secret::try_from_base32(text.trim()).ok()?;
        TotpSecret::from_bytes(secret.as_bytes())
    }

    /// The raw bytes, for sealing at rest.
    pub fn expose_bytes(&self) -> &[u8] {
        self.0.secret().as_bytes()
    }

    /// The base32 form authenticator apps take, shown to its owner once.
    pub fn to_base32(&self) -> Zeroizing<String> {
        Zeroizing::new(self.0.secret().to_base32())
    }

    /// An `otpauth://` URI for authenticator apps (Key Uri Format).
    pub fn otpauth_uri(&self, issuer: &str, account: &str) -> Zeroizing<String> {
        let enc = |s: &str| -> String {
            s.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        };
        Zeroizing::new(format!(
            "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECONDS}",
            enc(issuer),
            enc(account),
            self.to_base32().as_str(),
            enc(issuer)
        ))
    }

    /// The step a code is valid for at `unix_seconds` (the current step or one either side),
    /// or `None`. Codes other than six ASCII digits never match.
    pub fn matching_step(&self, code: &str, unix_seconds: u64) -> Option<u64> {
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        self.0.check(code, unix_seconds)
    }

    /// The code at `unix_seconds` (for enrolment checks and tests).
    pub fn code_at(&self, unix_seconds: u64) -> String {
        self.0.generate(unix_seconds).to_string()
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SystemRandom;

    #[test]
    fn a_typed_code_never_prints() {
        let code = TotpCode::new(Zeroizing::new("492039".to_owned()));
        assert_eq!(code.expose(), "492039");
        let shown = format!("{code:?} {:?}", Some(code.clone()));
        assert!(!shown.contains("492039"), "{shown}");
    }

    /// RFC 6238 Appendix B, SHA-1 (the eight-digit codes, of which we use the last six).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = TotpSecret::from_bytes(b"12345678901234567890").unwrap();
        for (time, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let six = &eight[2..];
            assert_eq!(secret.code_at(time), six, "t={time}");
            assert_eq!(secret.matching_step(six, time), Some(time / 30));
        }
    }

    #[test]
    fn codes_of_the_neighbouring_steps_match_and_no_others() {
        let secret = TotpSecret::generate(&SystemRandom::new()).unwrap();
        let now: u64 = 1_800_000_015;
        let step = now / 30;
        for (offset, ok) in [
            (-60i64, false),
            (-30, true),
            (0, true),
            (30, true),
            (60, false),
        ] {
            let code = secret.code_at(now.checked_add_signed(offset).unwrap());
            let matched = secret.matching_step(&code, now);
            if ok {
                assert_eq!(matched, Some(step.checked_add_signed(offset / 30).unwrap()));
            } else {
                // A code of a far step could collide with a near one by chance (1 in 10^6).
                assert!(matched.is_none() || secret.code_at(now) == code);
            }
        }
        for bad in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(secret.matching_step(bad, now), None);
        }
    }

    #[test]
    fn a_secret_round_trips_through_its_bytes_and_never_prints() {
        let secret = TotpSecret::generate(&SystemRandom::new()).unwrap();
        let again = TotpSecret::from_bytes(secret.expose_bytes()).unwrap();
        assert_eq!(secret.code_at(1000), again.code_at(1000));
        assert_eq!(secret.expose_bytes().len(), SECRET_BYTES);
        let base32 = secret.to_base32();
        assert_eq!(format!("{secret:?}"), "TotpSecret(<redacted>)");
        assert!(
            secret
                .otpauth_uri("Strongroom", "acme/alice")
                .contains(base32.as_str())
        );
        assert!(TotpSecret::from_bytes(&[0; 8]).is_none(), "too short");
    }
}
