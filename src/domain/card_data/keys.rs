//! Whether a JSON key names sensitive authentication data (PCI DSS 3.3.1): card verification
//! codes, PINs and PIN blocks, track and magnetic-stripe data. Such data must never be
//! stored, even encrypted, so a body carrying one of these keys is refused outright.
//!
//! No I/O. Nothing here logs.

/// Spellings distinctive enough to refuse wherever they appear in a key, once it is reduced
/// to lowercase letters and digits (`card_cvv`, `cvcNumber`, `PINBlock`, `trackData2`).
const DISTINCTIVE: &[&str] = &[
    "cvv",
    "cvc",
    "cav2",
    "securitycode",
    "verificationvalue",
    "cardverificationcode",
    "pinblock",
    "pincode",
    "pinnumber",
    "trackdata",
    "track1",
    "track2",
    "track3",
    "magstripe",
    "magneticstripe",
];

/// Short tokens that are sensitive only as a whole word: `pin` but not `shipping` or
/// `pinned`, `cid` but not `decided` or `incident`.
const WHOLE_WORDS: &[&str] = &["cid", "cvn", "cvd", "cv2", "csc", "pin", "cvv2", "cvc2"];

/// Whether a JSON key names sensitive authentication data.
///
/// The key is split into words at camelCase humps, letter–digit boundaries and every
/// character that is not a letter or digit (`cardPIN_block2` → `card pin block 2`), then
/// lowercased. It names sensitive data when the words run together contain a distinctive
/// spelling (`cvv`, `pinblock`, `trackdata`, …), or when a word — alone or with the digits
/// after it (`cv` `2`) — or the whole key run together is a short token such as `pin` or
/// `cid`.
pub fn names_sensitive_data(key: &str) -> bool {
    let words = words(key);
    let joined: String = words.concat();
    // A key that is nothing but a short token, however punctuated (`P.I.N.`), counts too.
    if DISTINCTIVE.iter().any(|d| joined.contains(d)) || WHOLE_WORDS.contains(&joined.as_str()) {
        return true;
    }
    let mut previous: Option<&str> = None;
    for word in &words {
        let with_digits = previous
            .filter(|_| word.bytes().all(|b| b.is_ascii_digit()))
            .map(|p| format!("{p}{word}"));
        if WHOLE_WORDS.contains(&word.as_str())
            || with_digits.is_some_and(|w| WHOLE_WORDS.contains(&w.as_str()))
        {
            return true;
        }
        previous = Some(word);
    }
    false
}

/// The character as ASCII if it is a fullwidth form of an ASCII character (`ＣＶＶ`).
fn fold_fullwidth(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// What kind of character, for finding word boundaries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Upper,
    Lower,
    Digit,
}

fn kind(c: char) -> Option<Kind> {
    if c.is_numeric() {
        Some(Kind::Digit)
    } else if c.is_uppercase() {
        Some(Kind::Upper)
    } else if c.is_alphanumeric() {
        Some(Kind::Lower)
    } else {
        None
    }
}

/// The key's words, lowercased.
fn words(key: &str) -> Vec<String> {
    let chars: Vec<(char, Option<Kind>)> = key
        .chars()
        .map(fold_fullwidth)
        .map(|c| (c, kind(c)))
        .collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous: Option<Kind> = None;
    for (i, &(c, k)) in chars.iter().enumerate() {
        let Some(k) = k else {
            words.extend((!word.is_empty()).then(|| std::mem::take(&mut word)));
            previous = None;
            continue;
        };
        let next = chars.get(i + 1).and_then(|&(_, k)| k);
        let boundary = match (previous, k) {
            (None, _) => false,
            (Some(Kind::Digit), Kind::Digit) => false,
            (Some(Kind::Digit), _) | (Some(_), Kind::Digit) => true,
            (Some(Kind::Lower), Kind::Upper) => true,
            // The last capital of an acronym starts the next word: `PINBlock` → `PIN Block`.
            (Some(Kind::Upper), Kind::Upper) => next == Some(Kind::Lower),
            (Some(_), Kind::Lower) => false,
        };
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        word.extend(c.to_lowercase());
        previous = Some(k);
    }
    words.extend((!word.is_empty()).then_some(word));
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_naming_sensitive_authentication_data_are_refused() {
        for key in [
            "card_cvv",
            "cvv_code",
            "cvcNumber",
            "cv2",
            "cvn",
            "card_pin",
            "pinCode",
            "PINBlock",
            "trackData2",
            "Track-2",
            "CardVerificationValue",
            "security_code",
            "CVV2",
            "CID",
            "magStripe",
            "cvv",
            "cvc2",
            "cav2",
            "csc",
            "cvd",
            "pin",
            "PIN",
            "pin_block",
            "pin-number",
            "track1",
            "track_3",
            "track data",
            "magnetic_stripe",
            "cardSecurityCode",
            "verification.value",
            "ＣＶＶ",
            "Cv_2",
            "p_i_n",
            "C.I.D.",
        ] {
            assert!(names_sensitive_data(key), "not refused: {key:?}");
        }
    }

    #[test]
    fn ordinary_keys_pass() {
        for key in [
            "shipping",
            "pinned",
            "spinner",
            "tracking_number",
            "trackingId",
            "opinion",
            "customer_id",
            "decided",
            "incident",
            "order_id",
            "stripe_customer",
            "cvs_store",
            "pink",
            "pinyin",
            "",
            "__",
            "note",
        ] {
            assert!(!names_sensitive_data(key), "refused: {key:?}");
        }
    }

    #[test]
    fn keys_split_at_humps_digits_and_punctuation() {
        assert_eq!(words("cardPIN_block2"), ["card", "pin", "block", "2"]);
        assert_eq!(words("PINBlock"), ["pin", "block"]);
        assert_eq!(words("trackData2"), ["track", "data", "2"]);
        assert_eq!(words("a--b  c"), ["a", "b", "c"]);
    }
}
