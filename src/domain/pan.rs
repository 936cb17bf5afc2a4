//! The primary account number (PAN) and its masked form.
//!
//! No I/O. A `Pan` can never be printed: it has no `Display`, its `Debug` is redacted and its
//! digits are wiped from memory when it is dropped. `MaskedPan` is the only type that
//! serializes card digits, and it never shows more than the first six and last four.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::luhn;

/// Shortest PAN accepted (ISO/IEC 7812-1 allows 8, but no scheme issues fewer than 12).
pub const MIN_LEN: usize = 12;
/// Longest PAN accepted (ISO/IEC 7812-1).
pub const MAX_LEN: usize = 19;

/// Why a submitted value is not a PAN. Variants carry no input: errors never echo a card number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PanError {
    /// Nothing but separators, or nothing at all.
    #[error("the card number is empty")]
    Empty,
    /// A character other than an ASCII digit, a space or a hyphen.
    #[error("the card number may contain only the digits 0-9, spaces and hyphens")]
    InvalidCharacter,
    /// Fewer than 12 digits.
    #[error("the card number has fewer than 12 digits")]
    TooShort,
    /// More than 19 digits.
    #[error("the card number has more than 19 digits")]
    TooLong,
    /// The digits do not pass the Luhn check.
    #[error("the card number fails the Luhn check")]
    LuhnCheckFailed,
}

/// A validated card number: 12–19 ASCII digits that pass the Luhn check.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Pan {
    digits: Vec<u8>,
}

impl Pan {
    /// Parses a card number as a merchant submits it: spaces and hyphens are separators and are
    /// stripped; anything else that is not an ASCII digit (letters, Unicode digits, punctuation)
    /// is refused.
    pub fn parse(input: &str) -> Result<Pan, PanError> {
        let mut digits = Vec::with_capacity(MAX_LEN);
        for byte in input.bytes() {
            match byte {
                b'0'..=b'9' => {
                    if digits.len() == MAX_LEN {
                        digits.zeroize();
                        return Err(PanError::TooLong);
                    }
                    digits.push(byte);
                }
                b' ' | b'-' => {}
                _ => {
                    digits.zeroize();
                    return Err(PanError::InvalidCharacter);
                }
            }
        }
        // Wrap first so that every early return below wipes the digits.
        let pan = Pan { digits };
        if pan.digits.is_empty() {
            return Err(PanError::Empty);
        }
        if pan.digits.len() < MIN_LEN {
            return Err(PanError::TooShort);
        }
        if !luhn::is_valid(&pan.digits) {
            return Err(PanError::LuhnCheckFailed);
        }
        Ok(pan)
    }

    /// Rebuilds a PAN from decrypted bytes, applying the same rules as [`Pan::parse`].
    pub fn from_digits(bytes: &[u8]) -> Result<Pan, PanError> {
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(PanError::InvalidCharacter);
        }
        std::str::from_utf8(bytes)
            .map_err(|_| PanError::InvalidCharacter)
            .and_then(Pan::parse)
    }

    /// The number of digits.
    pub fn len(&self) -> usize {
        self.digits.len()
    }

    /// Always false: a `Pan` has at least 12 digits. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.digits.is_empty()
    }

    /// The digits as ASCII bytes, for encryption and fingerprinting only.
    pub fn expose_digits(&self) -> &[u8] {
        &self.digits
    }

    /// The masked form for display and lookups.
    pub fn masked(&self) -> MaskedPan {
        MaskedPan::of_digits(&self.digits)
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pan(<redacted>)")
    }
}

/// A card number with all but at most the first six and last four digits replaced by `*`.
///
/// PCI DSS 3.4.1 allows showing at most the BIN and the last four. Shorter PANs show only the
/// last four so that at least six digits stay hidden whatever the length.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct MaskedPan(String);

impl MaskedPan {
    fn of_digits(digits: &[u8]) -> MaskedPan {
        let len = digits.len();
        let shown_head = if len >= 16 { 6 } else { 0 };
        let masked = digits
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                if i < shown_head || i + 4 >= len {
                    char::from(d)
                } else {
                    '*'
                }
            })
            .collect();
        MaskedPan(masked)
    }

    /// Rebuilds a masked PAN read back from storage.
    pub fn from_stored(masked: String) -> MaskedPan {
        MaskedPan(masked)
    }

    /// The masked text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A Luhn-valid number of `len` digits built from `body`.
    pub(crate) fn valid_pan_digits(body: &[u8], len: usize) -> String {
        let mut digits: Vec<u8> = body.iter().take(len - 1).map(|d| b'0' + d % 10).collect();
        digits.push(b'0');
        let check = (10 - luhn::checksum(&digits)) % 10;
        let last = digits.len() - 1;
        digits[last] = b'0' + check;
        String::from_utf8(digits).unwrap()
    }

    #[test]
    fn spaces_and_hyphens_are_stripped() {
        let pan = Pan::parse("4111 1111-1111 1111").unwrap();
        assert_eq!(pan.expose_digits(), b"4111111111111111");
    }

    #[test]
    fn unicode_digits_are_refused() {
        // Arabic-Indic and full-width digits are digits to Unicode, not to a card network.
        assert_eq!(
            Pan::parse("٤١١١١١١١١١١١١١١١"),
            Err(PanError::InvalidCharacter)
        );
        assert_eq!(
            Pan::parse("４１１１１１１１１１１１１１１１"),
            Err(PanError::InvalidCharacter)
        );
    }

    #[test]
    fn other_separators_are_refused() {
        for input in [
            "4111.1111.1111.1111",
            "4111_1111_1111_1111",
            "4111\t1111111111111",
            "4111\u{a0}1111111111111",
            "4111/1111/1111/1111",
            "+4111111111111111",
        ] {
            assert_eq!(
                Pan::parse(input),
                Err(PanError::InvalidCharacter),
                "{input:?}"
            );
        }
    }

    #[test]
    fn letters_are_refused() {
        assert_eq!(
            Pan::parse("4111x11111111111"),
            Err(PanError::InvalidCharacter)
        );
    }

    #[test]
    fn empty_and_separator_only_input_is_empty() {
        assert_eq!(Pan::parse(""), Err(PanError::Empty));
        assert_eq!(Pan::parse(" - - "), Err(PanError::Empty));
    }

    #[test]
    fn lengths_outside_12_to_19_are_refused() {
        assert_eq!(Pan::parse("42424242424"), Err(PanError::TooShort));
        assert_eq!(Pan::parse("41111111111111111111"), Err(PanError::TooLong));
        assert!(Pan::parse(&valid_pan_digits(&[4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 12)).is_ok());
        let nineteen = valid_pan_digits(&[6; 19], 19);
        assert!(Pan::parse(&nineteen).is_ok());
    }

    #[test]
    fn luhn_failure_is_refused() {
        assert_eq!(
            Pan::parse("4111111111111112"),
            Err(PanError::LuhnCheckFailed)
        );
    }

    #[test]
    fn debug_never_prints_digits() {
        let pan = Pan::parse("4111111111111111").unwrap();
        let printed = format!("{pan:?}");
        assert!(!printed.contains("4111"));
        assert!(!printed.contains('1'));
    }

    #[test]
    fn masks_sixteen_digits_as_bin_and_last_four() {
        let pan = Pan::parse("4111111111111111").unwrap();
        assert_eq!(pan.masked().as_str(), "411111******1111");
    }

    #[test]
    fn masks_short_pans_to_last_four_only() {
        let pan = Pan::parse("378282246310005").unwrap();
        assert_eq!(pan.masked().as_str(), "***********0005");
    }

    proptest! {
        #[test]
        fn masking_never_shows_more_than_six_and_four(
            body in proptest::collection::vec(0u8..10, 19),
            len in MIN_LEN..=MAX_LEN,
        ) {
            let text = valid_pan_digits(&body, len);
            let pan = Pan::parse(&text).unwrap();
            let masked = pan.masked();
            let shown = masked.as_str().chars().filter(|c| *c != '*').count();
            prop_assert_eq!(masked.as_str().len(), len);
            prop_assert!(shown <= 10);
            prop_assert!(len - shown >= 6, "at least six digits stay hidden");
            prop_assert!(masked.as_str().ends_with(&text[len - 4..]));
        }

        #[test]
        fn any_valid_number_round_trips_through_separators(
            body in proptest::collection::vec(0u8..10, 19),
            len in MIN_LEN..=MAX_LEN,
        ) {
            let text = valid_pan_digits(&body, len);
            let spaced: String = text
                .chars()
                .enumerate()
                .flat_map(|(i, c)| if i > 0 && i % 4 == 0 { vec!['-', c] } else { vec![c] })
                .collect();
            let pan = Pan::parse(&spaced).unwrap();
            prop_assert_eq!(pan.expose_digits(), text.as_bytes());
        }

        #[test]
        fn arbitrary_text_never_panics(input in ".{0,40}") {
            let _ = Pan::parse(&input);
        }
    }
}
