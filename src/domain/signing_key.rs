//! When a grant-signing key signs: one rule over its activation and retirement times, obeyed by
//! the instances that sign grants and shown by `strongroom keys status`.
//!
//! No I/O, no clock of its own (the moment is passed in). Nothing here logs.

use chrono::{DateTime, Utc};

/// Where a grant-signing key stands at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKeyPhase {
    /// Made by a rotation and published, not signing yet: every instance loads and publishes
    /// its public key before any instance signs with it.
    Pending,
    /// Signs new grants.
    Active,
    /// Signs no new grant; still verifies (and is published) while a grant it signed is
    /// unexpired.
    Retired,
}

impl SigningKeyPhase {
    /// The phase at `now` of a key that activates at `activates_at` (`None`: since it was made)
    /// and retires at `retired_at` (`None`: no rotation has replaced it). Retirement wins, so a
    /// key is never both pending and retired.
    pub fn at(
        activates_at: Option<DateTime<Utc>>,
        retired_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> SigningKeyPhase {
        if retired_at.is_some_and(|at| at <= now) {
            SigningKeyPhase::Retired
        } else if activates_at.is_some_and(|at| at > now) {
            SigningKeyPhase::Pending
        } else {
            SigningKeyPhase::Active
        }
    }

    /// Its name in `keys status`.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKeyPhase::Pending => "pending",
            SigningKeyPhase::Active => "active",
            SigningKeyPhase::Retired => "retired",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn a_rotation_hands_over_at_one_instant_with_no_gap_and_no_overlap() {
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let handover = now + TimeDelta::seconds(120);
        // The old key (active since made) retires when the new one activates.
        let old = |at| SigningKeyPhase::at(None, Some(handover), at);
        let new = |at| SigningKeyPhase::at(Some(handover), None, at);
        for (at, before, after) in [
            (now, SigningKeyPhase::Active, SigningKeyPhase::Pending),
            (
                handover - TimeDelta::milliseconds(1),
                SigningKeyPhase::Active,
                SigningKeyPhase::Pending,
            ),
            (handover, SigningKeyPhase::Retired, SigningKeyPhase::Active),
            (
                handover + TimeDelta::days(1),
                SigningKeyPhase::Retired,
                SigningKeyPhase::Active,
            ),
        ] {
            assert_eq!((old(at), new(at)), (before, after), "at {at}");
        }
    }

    #[test]
    fn the_first_key_is_active_from_the_start_and_retirement_wins() {
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(
            SigningKeyPhase::at(None, None, now),
            SigningKeyPhase::Active
        );
        let later = now + TimeDelta::seconds(5);
        assert_eq!(
            SigningKeyPhase::at(Some(later), Some(now), now),
            SigningKeyPhase::Retired
        );
        assert_eq!(SigningKeyPhase::Pending.as_str(), "pending");
    }
}
