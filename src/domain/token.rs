//! Tokens: the format-preserving or opaque values that stand in for a PAN.
//!
//! No I/O. Randomness comes from the caller's CSPRNG; a token is never derived from the PAN.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::luhn;
use super::pan::Pan;
use crate::random::{self, Csprng, RandomError};

/// How a token looks. The names are the ones VGS and Basis Theory users expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFormat {
    /// Same length; first six and last four digits kept, the middle random.
    #[default]
    SixFour,
    /// Same length; last four kept, the rest random.
    LastFour,
    /// Same length, every digit random.
    LengthPreserving,
    /// `tok_` followed by 26 random base32 characters.
    Opaque,
}

/// Every numeric token keeps at least this many random digits, so that a token narrows its PAN
/// down to no fewer than a million candidates.
pub const MIN_RANDOM_DIGITS: usize = 6;
const OPAQUE_PREFIX: &str = "tok_";
const OPAQUE_LEN: usize = 26;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why a format cannot tokenize a PAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// `six_four` keeps ten digits, so a PAN shorter than 16 would keep fewer than six random.
    #[error("six_four needs a card number of at least 16 digits")]
    PanTooShortForSixFour,
}

impl TokenFormat {
    /// All formats, in the order the API documents them.
    pub const ALL: [TokenFormat; 4] = [
        TokenFormat::SixFour,
        TokenFormat::LastFour,
        TokenFormat::LengthPreserving,
        TokenFormat::Opaque,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFormat::SixFour => "six_four",
            TokenFormat::LastFour => "last_four",
            TokenFormat::LengthPreserving => "length_preserving",
            TokenFormat::Opaque => "opaque",
        }
    }

    /// Whether this format may tokenize `pan`.
    pub fn check(self, pan: &Pan) -> Result<(), FormatError> {
        match self {
            TokenFormat::SixFour if pan.len() < 10 + MIN_RANDOM_DIGITS => {
                Err(FormatError::PanTooShortForSixFour)
            }
            _ => Ok(()),
        }
    }

    /// Draws a fresh random token for `pan`. Call [`TokenFormat::check`] first.
    pub fn generate(self, pan: &Pan, rng: &dyn Csprng) -> Result<Token, RandomError> {
        match self {
            TokenFormat::Opaque => {
                let mut bytes = [0u8; OPAQUE_LEN];
                rng.fill(&mut bytes)?;
                let mut value = String::with_capacity(OPAQUE_PREFIX.len() + OPAQUE_LEN);
                value.push_str(OPAQUE_PREFIX);
                // 256 is a multiple of 32, so masking the low five bits is unbiased.
                value.extend(
                    bytes
                        .iter()
                        .filter_map(|b| BASE32.get(usize::from(b & 31)))
                        .map(|&c| char::from(c)),
                );
                Ok(Token(value))
            }
            TokenFormat::SixFour => numeric(pan, 6, 4, rng),
            TokenFormat::LastFour => numeric(pan, 0, 4, rng),
            TokenFormat::LengthPreserving => numeric(pan, 0, 0, rng),
        }
    }
}

impl fmt::Display for TokenFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenFormat {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TokenFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or(())
    }
}

/// A numeric token keeping `head` leading and `tail` trailing PAN digits. The last random digit is
/// drawn among the nine values that make the whole token fail Luhn, so a token can never be
/// mistaken for a card number, and therefore never equals its (Luhn-valid) PAN.
fn numeric(pan: &Pan, head: usize, tail: usize, rng: &dyn Csprng) -> Result<Token, RandomError> {
    let digits = pan.expose_digits();
    let len = digits.len();
    let random_end = len.saturating_sub(tail);
    let mut out: Vec<u8> = Vec::with_capacity(len);
    for (i, &d) in digits.iter().enumerate() {
        if i < head || i >= random_end {
            out.push(d);
        } else {
            out.push(b'0' + random::below(rng, 10)?);
        }
    }
    let adjust = random_end.saturating_sub(1);
    let failing: Vec<u8> = (b'0'..=b'9')
        .filter(|&candidate| {
            if let Some(slot) = out.get_mut(adjust) {
                *slot = candidate;
            }
            !luhn::is_valid(&out)
        })
        .collect();
    let pick = random::below(rng, u8::try_from(failing.len()).unwrap_or(9))?;
    if let (Some(slot), Some(&digit)) = (out.get_mut(adjust), failing.get(usize::from(pick))) {
        *slot = digit;
    }
    // Only ASCII digits were pushed.
    Ok(Token(String::from_utf8(out).unwrap_or_default()))
}

/// A token value. Numeric tokens always fail Luhn; opaque tokens are `tok_` + 26 base32 chars.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Token(String);

impl Token {
    /// Accepts a token as a caller names it (in a path or a list). Anything that is not shaped
    /// like one of our tokens — including a Luhn-valid card number — is refused, and the caller
    /// answers it as it answers an unknown token.
    pub fn parse(input: &str) -> Option<Token> {
        let bytes = input.as_bytes();
        let numeric = (12..=19).contains(&bytes.len())
            && bytes.iter().all(u8::is_ascii_digit)
            && !luhn::is_valid(bytes);
        let opaque = input.strip_prefix(OPAQUE_PREFIX).is_some_and(|rest| {
            rest.len() == OPAQUE_LEN && rest.bytes().all(|b| BASE32.contains(&b))
        });
        (numeric || opaque).then(|| Token(input.to_owned()))
    }

    /// Rebuilds a token read back from storage.
    pub fn from_stored(value: String) -> Token {
        Token(value)
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Tokens are not secret; printing them is what makes logs useful.
        write!(f, "Token({})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::pan::tests::valid_pan_digits;
    use crate::random::SystemRandom;
    use crate::random::testing::Cycle;
    use proptest::prelude::*;

    fn pan(s: &str) -> Pan {
        Pan::parse(s).unwrap()
    }

    #[test]
    fn six_four_keeps_bin_and_last_four() {
        let rng = SystemRandom::new();
        let p = pan("4111111111111111");
        let token = TokenFormat::SixFour.generate(&p, &rng).unwrap();
        assert_eq!(token.as_str().len(), 16);
        assert!(token.as_str().starts_with("411111"));
        assert!(token.as_str().ends_with("1111"));
        assert!(!luhn::is_valid(token.as_str().as_bytes()));
    }

    #[test]
    fn six_four_is_refused_below_sixteen_digits() {
        assert_eq!(
            TokenFormat::SixFour.check(&pan("378282246310005")),
            Err(FormatError::PanTooShortForSixFour)
        );
        assert!(TokenFormat::LastFour.check(&pan("378282246310005")).is_ok());
    }

    #[test]
    fn last_four_keeps_only_the_last_four() {
        let rng = Cycle::new(&[3]);
        let token = TokenFormat::LastFour
            .generate(&pan("5555555555554444"), &rng)
            .unwrap();
        assert!(token.as_str().ends_with("4444"));
        assert_eq!(
            &token.as_str()[..11],
            "33333333333",
            "random digits come from the RNG"
        );
        assert!(!luhn::is_valid(token.as_str().as_bytes()));
    }

    #[test]
    fn opaque_tokens_are_prefixed_base32() {
        let rng = SystemRandom::new();
        let token = TokenFormat::Opaque
            .generate(&pan("4111111111111111"), &rng)
            .unwrap();
        assert!(token.as_str().starts_with("tok_"));
        assert_eq!(token.as_str().len(), 30);
        assert_eq!(Token::parse(token.as_str()), Some(token));
    }

    #[test]
    fn a_card_number_is_never_accepted_as_a_token() {
        assert_eq!(Token::parse("4111111111111111"), None);
        assert_eq!(Token::parse("tok_short"), None);
        assert_eq!(Token::parse("TOK_AAAAAAAAAAAAAAAAAAAAAAAAAA"), None);
        assert!(Token::parse("4111111111111112").is_some());
    }

    #[test]
    fn format_names_round_trip() {
        for f in TokenFormat::ALL {
            assert_eq!(f.as_str().parse::<TokenFormat>(), Ok(f));
        }
        assert!("SixFour".parse::<TokenFormat>().is_err());
    }

    proptest! {
        #[test]
        fn every_numeric_token_fails_luhn_and_differs_from_its_pan(
            body in proptest::collection::vec(0u8..10, 19),
            len in 12usize..=19,
            // Bytes that rejection sampling accepts for every bound used (10 and 9 keep bytes
            // below 250 and 252): a cycle made only of rejected bytes would spin for ever.
            seed in proptest::collection::vec(0u8..250, 1..64),
            format in prop::sample::select(vec![
                TokenFormat::SixFour, TokenFormat::LastFour, TokenFormat::LengthPreserving,
            ]),
        ) {
            let text = valid_pan_digits(&body, len);
            let p = pan(&text);
            prop_assume!(format.check(&p).is_ok());
            let rng = Cycle::new(&seed);
            let token = format.generate(&p, &rng).unwrap();
            let t = token.as_str();
            prop_assert_eq!(t.len(), len);
            prop_assert!(t.bytes().all(|b| b.is_ascii_digit()));
            prop_assert!(!luhn::is_valid(t.as_bytes()));
            prop_assert_ne!(t, text.as_str());
            prop_assert!(Token::parse(t).is_some());
            match format {
                TokenFormat::SixFour => {
                    prop_assert_eq!(&t[..6], &text[..6]);
                    prop_assert_eq!(&t[len - 4..], &text[len - 4..]);
                }
                TokenFormat::LastFour => prop_assert_eq!(&t[len - 4..], &text[len - 4..]),
                _ => {}
            }
        }
    }
}
