//! Access requests and grants: their states and the free text people attach to them.
//!
//! No I/O. Nothing here logs; free text is checked for shape and card numbers, never echoed.

mod records;

pub use records::{
    AccessRequestRecord, Decision, ExpiredRequest, GrantDraft, GrantRecord, NewAccessRequest,
};

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

/// A request as its approval rule sees it, under the lock that serialises decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionState {
    /// Who asked: they never decide their own request.
    pub requester: uuid::Uuid,
    /// Its stored status.
    pub status: RequestStatus,
    /// When a pending request lapses.
    pub expires_at: chrono::DateTime<chrono::Utc>,
    /// Distinct approvals recorded so far.
    pub approvals: usize,
    /// Approvals it needs.
    pub approvals_required: u32,
    /// Whether this approver has decided it already.
    pub decided_by_approver: bool,
}

/// What one approver's decision does to a request: the approval rule, in one place. The store
/// locks the request, loads its state, asks this, and writes what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The approver asked for it: refused, nothing written.
    SelfApproval,
    /// Approved or denied already: refused, nothing written.
    Closed(RequestStatus),
    /// It lapsed before this decision: mark it expired (if it is still stored as pending).
    Expire,
    /// This approver decided it already: refused, nothing written.
    AlreadyDecided,
    /// Record the denial and close the request as denied.
    Deny,
    /// Record the approval; more are needed.
    RecordApproval,
    /// Record the approval, which reaches the count: mint the grant, mark it approved.
    Approve,
}

/// Why an approver's decision was refused: one vocabulary from the rule, through the store and
/// the service, to the API's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionRefusal {
    /// The approver asked for it: nobody decides their own request.
    SelfApproval,
    /// This approver decided it already.
    AlreadyDecided,
    /// Approved or denied already.
    Closed(RequestStatus),
    /// It lapsed before this decision.
    Expired,
}

impl Transition {
    /// The refusal this step is, if it is one (nothing of the decision is recorded; an
    /// expiry is, when the request is still stored as pending).
    pub fn refusal(self) -> Option<DecisionRefusal> {
        match self {
            Transition::SelfApproval => Some(DecisionRefusal::SelfApproval),
            Transition::Closed(status) => Some(DecisionRefusal::Closed(status)),
            Transition::Expire => Some(DecisionRefusal::Expired),
            Transition::AlreadyDecided => Some(DecisionRefusal::AlreadyDecided),
            Transition::Deny | Transition::RecordApproval | Transition::Approve => None,
        }
    }
}

/// Decides what `approver`'s decision (`approve` or not, at `at`) does to a request.
pub fn transition(
    state: &DecisionState,
    approver: uuid::Uuid,
    approve: bool,
    at: chrono::DateTime<chrono::Utc>,
) -> Transition {
    if state.requester == approver {
        return Transition::SelfApproval;
    }
    match state.status {
        RequestStatus::Pending if state.expires_at <= at => return Transition::Expire,
        RequestStatus::Pending => {}
        RequestStatus::Expired => return Transition::Expire,
        closed => return Transition::Closed(closed),
    }
    if state.decided_by_approver {
        return Transition::AlreadyDecided;
    }
    if !approve {
        return Transition::Deny;
    }
    let required = usize::try_from(state.approvals_required).unwrap_or(usize::MAX);
    if state.approvals + 1 >= required {
        Transition::Approve
    } else {
        Transition::RecordApproval
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

/// Free text a person gave — a request's reason, a decision's comment — as checked by
/// [`check_text`]. Typed from the API to the store, so unchecked text cannot reach either.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Reason(String);

impl Reason {
    /// The text, if it passes [`check_text`].
    pub fn parse(text: &str) -> Result<Reason, TextError> {
        check_text(text).map(|()| Reason(text.to_owned()))
    }

    /// Text read back from the store, where only checked text was ever written.
    pub fn from_stored(text: String) -> Reason {
        Reason(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    use chrono::{DateTime, TimeDelta, Utc};
    use proptest::prelude::*;
    use uuid::Uuid;

    fn pending(approvals: usize, required: u32) -> (DecisionState, DateTime<Utc>) {
        let now = DateTime::from_timestamp(1_900_000_000, 0).unwrap();
        (
            DecisionState {
                requester: Uuid::from_u128(1),
                status: RequestStatus::Pending,
                expires_at: now + TimeDelta::hours(1),
                approvals,
                approvals_required: required,
                decided_by_approver: false,
            },
            now,
        )
    }

    #[test]
    fn exactly_the_refusing_steps_are_refusals_and_nothing_is_recorded_for_them() {
        let (mut state, now) = pending(0, 2);
        let approver = Uuid::from_u128(2);
        assert_eq!(transition(&state, approver, true, now).refusal(), None);
        assert_eq!(transition(&state, approver, false, now).refusal(), None);
        assert_eq!(
            transition(&state, state.requester, true, now).refusal(),
            Some(DecisionRefusal::SelfApproval)
        );
        state.decided_by_approver = true;
        assert_eq!(
            transition(&state, approver, true, now).refusal(),
            Some(DecisionRefusal::AlreadyDecided)
        );
        assert_eq!(
            transition(&state, approver, true, state.expires_at).refusal(),
            Some(DecisionRefusal::Expired)
        );
        state.status = RequestStatus::Denied;
        assert_eq!(
            transition(&state, approver, true, now).refusal(),
            Some(DecisionRefusal::Closed(RequestStatus::Denied))
        );
    }

    #[test]
    fn the_requester_never_decides_and_closed_requests_stay_closed() {
        let (mut state, now) = pending(0, 1);
        assert_eq!(
            transition(&state, Uuid::from_u128(1), true, now),
            Transition::SelfApproval
        );
        for closed in [RequestStatus::Approved, RequestStatus::Denied] {
            state.status = closed;
            assert_eq!(
                transition(&state, Uuid::from_u128(2), true, now),
                Transition::Closed(closed)
            );
        }
        state.status = RequestStatus::Expired;
        assert_eq!(
            transition(&state, Uuid::from_u128(2), true, now),
            Transition::Expire
        );
    }

    #[test]
    fn a_lapsed_pending_request_expires_instead_of_being_decided() {
        let (state, now) = pending(0, 1);
        let later = state.expires_at;
        assert_eq!(
            transition(&state, Uuid::from_u128(2), true, now),
            Transition::Approve
        );
        assert_eq!(
            transition(&state, Uuid::from_u128(2), true, later),
            Transition::Expire
        );
    }

    #[test]
    fn an_approver_counts_once_and_a_denial_closes() {
        let (mut state, now) = pending(1, 3);
        assert_eq!(
            transition(&state, Uuid::from_u128(2), true, now),
            Transition::RecordApproval
        );
        assert_eq!(
            transition(&state, Uuid::from_u128(2), false, now),
            Transition::Deny
        );
        state.decided_by_approver = true;
        assert_eq!(
            transition(&state, Uuid::from_u128(2), true, now),
            Transition::AlreadyDecided
        );
    }

    proptest! {
        #[test]
        fn approval_mints_exactly_when_the_count_is_reached(
            approvals in 0usize..10, required in 0u32..10,
        ) {
            let (state, now) = pending(approvals, required);
            let t = transition(&state, Uuid::from_u128(2), true, now);
            let reached = approvals + 1 >= usize::try_from(required).unwrap();
            prop_assert_eq!(t == Transition::Approve, reached);
            prop_assert_eq!(t == Transition::RecordApproval, !reached);
        }
    }

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
