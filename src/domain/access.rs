//! Access requests and grants: their states and the free text people attach to them.
//!
//! No I/O. Nothing here logs; free text is checked for shape and card numbers, never echoed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::card_data::contains_card_number;

/// Longest reason or comment, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Where an access request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    /// Waiting for approvals.
    Pending,
    /// Enough approvals: a grant was minted.
    Approved,
    /// An approver refused it.
    Denied,
    /// Nobody decided in time.
    Expired,
}

impl RequestStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved => "approved",
            RequestStatus::Denied => "denied",
            RequestStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RequestStatus {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            RequestStatus::Pending,
            RequestStatus::Approved,
            RequestStatus::Denied,
            RequestStatus::Expired,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
        .ok_or(())
    }
}

/// Why free text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty or blank where text is required.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_TEXT_CHARS`].
    #[error("must be at most 1000 characters")]
    TooLong,
    /// Control characters other than line breaks and tabs.
    #[error("must not contain control characters")]
    Control,
    /// A card number in the text: reasons and comments are stored and shown to others.
    #[error("must not contain a card number")]
    CardNumber,
}

/// A reason or comment, checked: 1–1000 characters, no control characters but line breaks and
/// tabs, and no card number.
pub fn check_text(text: &str) -> Result<(), TextError> {
    if text.trim().is_empty() {
        return Err(TextError::Empty);
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(TextError::TooLong);
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r'))
    {
        return Err(TextError::Control);
    }
    if contains_card_number(text) {
        return Err(TextError::CardNumber);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in ["pending", "approved", "denied", "expired"] {
            assert_eq!(s.parse::<RequestStatus>().unwrap().as_str(), s);
        }
        assert!("open".parse::<RequestStatus>().is_err());
    }

    #[test]
    fn text_is_checked_for_shape_and_card_numbers() {
        assert_eq!(check_text("chargeback CB-1234 for order 55"), Ok(()));
        assert_eq!(check_text("  "), Err(TextError::Empty));
        assert_eq!(check_text(&"x".repeat(1001)), Err(TextError::TooLong));
        assert_eq!(check_text("a\u{0}b"), Err(TextError::Control));
        assert_eq!(
            check_text("customer says 4111 1111 1111 1111 is theirs"),
            Err(TextError::CardNumber)
        );
        assert_eq!(
            check_text("card 4111.1111.1111.1111, exp 12/25"),
            Err(TextError::CardNumber)
        );
    }
}
