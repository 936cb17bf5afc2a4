//! The Luhn (mod 10) check digit algorithm, ISO/IEC 7812-1 Annex B.
//!
//! No I/O. Works on ASCII digit bytes; callers guarantee the input holds digits only.

/// The Luhn checksum (0–9) of a string of ASCII digits; the string is valid when it is 0.
///
/// Bytes that are not ASCII digits contribute as if they were 0; callers validate first.
pub fn checksum(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b.wrapping_sub(b'0') % 10);
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    // The sum of at most 19 digits of value ≤ 9 fits easily; the modulo keeps it below 10.
    u8::try_from(sum % 10).unwrap_or(0)
}

/// Whether a string of ASCII digits passes the Luhn check.
pub fn is_valid(digits: &[u8]) -> bool {
    !digits.is_empty() && checksum(digits) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_test_card_numbers_pass() {
        for pan in [
            "4111111111111111",
            "5555555555554444",
            "378282246310005",
            "6011111111111117",
            "4012888888881881",
            "3530111333300000",
            "4222222222222",
        ] {
            assert!(is_valid(pan.as_bytes()), "{pan} should pass Luhn");
        }
    }

    #[test]
    fn a_changed_digit_fails() {
        assert!(!is_valid(b"4111111111111112"));
        assert!(!is_valid(b"4111111111111121"));
    }

    #[test]
    fn empty_input_is_not_valid() {
        assert!(!is_valid(b""));
    }

    proptest! {
        #[test]
        fn changing_any_single_digit_breaks_a_valid_number(
            body in proptest::collection::vec(0u8..10, 11..18),
            pos in any::<prop::sample::Index>(),
            delta in 1u8..10,
        ) {
            let mut digits: Vec<u8> = body.iter().map(|d| b'0' + d).collect();
            digits.push(b'0');
            let check = (10 - checksum(&digits)) % 10;
            let last = digits.len() - 1;
            digits[last] = b'0' + check;
            prop_assert!(is_valid(&digits));
            let i = pos.index(digits.len());
            digits[i] = b'0' + (digits[i] - b'0' + delta) % 10;
            prop_assert!(!is_valid(&digits));
        }
    }
}
