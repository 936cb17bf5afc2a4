//! The second factor: checking a person's TOTP code when they elevate.
//!
//! A code is accepted once (a code of the same or an earlier step is a replay, RFC 6238 §5.2),
//! decided by one conditional update so that two instances cannot both accept it. Ten wrong
//! codes in a row lock the factor for at least 30 minutes (PCI DSS 8.3.4), and a locked factor
//! answers exactly as a wrong code does, so the lock tells a guesser nothing; an admin can lift
//! it (audited). Nothing here logs a code or a secret.

use chrono::{DateTime, TimeDelta, Utc};

use super::keys::{KeyError, KeyService};
use crate::clock::Clock;
use crate::domain::PrincipalId;
use crate::store::{PrincipalStore, StoreError};

/// Wrong codes in a row that lock the factor (PCI DSS 8.3.4: at most ten).
pub const MAX_FAILURES: u32 = 10;
const _: () = assert!(
    MAX_FAILURES <= 10,
    "PCI DSS 8.3.4 allows at most ten attempts"
);

/// The shortest lock (PCI DSS 8.3.4: at least 30 minutes); configurable up, never below.
pub const MIN_LOCKOUT: TimeDelta = TimeDelta::minutes(30);
/// The longest lock that can be configured.
pub const MAX_LOCKOUT: TimeDelta = TimeDelta::days(7);

/// How long a locked factor stays locked: `minutes`, held to [`MIN_LOCKOUT`]..=[`MAX_LOCKOUT`].
pub fn lockout(minutes: u64) -> TimeDelta {
    i64::try_from(minutes)
        .ok()
        .and_then(TimeDelta::try_minutes)
        .unwrap_or(MAX_LOCKOUT)
        .clamp(MIN_LOCKOUT, MAX_LOCKOUT)
}

/// Why a second factor was not accepted. All of these answer `mfa_required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaFailure {
    /// No code was given.
    Missing,
    /// The principal has no second factor enrolled.
    NotEnrolled,
    /// The code is wrong.
    Wrong,
    /// The code (or a later one) was already used.
    Replayed,
    /// Too many wrong codes: locked for a while.
    Locked,
}

impl MfaFailure {
    /// A sentence for the problem's detail.
    pub fn detail(self) -> &'static str {
        match self {
            MfaFailure::Missing => "a TOTP code is required for this request",
            MfaFailure::NotEnrolled => {
                "a TOTP code is required, and this principal has no second factor enrolled"
            }
            // A locked factor answers exactly as a wrong code: the lock is no signal.
            MfaFailure::Wrong | MfaFailure::Replayed | MfaFailure::Locked => {
                "the TOTP code is not valid (wrong, or already used)"
            }
        }
    }

    /// A stable name for the audit trail (which, unlike the caller, learns which it was).
    pub fn as_str(self) -> &'static str {
        match self {
            MfaFailure::Missing => "totp_missing",
            MfaFailure::NotEnrolled => "totp_not_enrolled",
            MfaFailure::Wrong => "totp_wrong",
            MfaFailure::Replayed => "totp_replayed",
            MfaFailure::Locked => "totp_locked",
        }
    }
}

/// Why checking could not even be attempted.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The sealed secret did not open.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Checks `code` for `principal` at the clock's time; `lockout` is how long ten wrong codes lock
/// the factor (see [`lockout`]).
pub async fn verify(
    store: &dyn PrincipalStore,
    keys: &KeyService,
    clock: &dyn Clock,
    principal: PrincipalId,
    code: Option<&str>,
    lockout: TimeDelta,
) -> Result<Result<(), MfaFailure>, MfaError> {
    let Some(code) = code else {
        return Ok(Err(MfaFailure::Missing));
    };
    let Some(state) = store.totp_state(principal).await? else {
        return Ok(Err(MfaFailure::NotEnrolled));
    };
    let now = clock.now();
    if state.locked_until.is_some_and(|until| until > now) {
        return Ok(Err(MfaFailure::Locked));
    }
    let secret = keys.open_totp(principal, &state.sealed)?;
    let step = unix_seconds(now).and_then(|t| secret.matching_step(code, t));
    let accepted = match step.and_then(|s| i64::try_from(s).ok()) {
        Some(step) => store.accept_totp_step(principal, step, now).await?,
        None => false,
    };
    if accepted {
        return Ok(Ok(()));
    }
    store
        .record_totp_failure(principal, MAX_FAILURES, now + lockout.max(MIN_LOCKOUT))
        .await?;
    Ok(Err(if step.is_some() {
        MfaFailure::Replayed
    } else {
        MfaFailure::Wrong
    }))
}

fn unix_seconds(at: DateTime<Utc>) -> Option<u64> {
    u64::try_from(at.timestamp()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_is_never_shorter_than_thirty_minutes_and_answers_like_a_wrong_code() {
        assert_eq!(lockout(0), MIN_LOCKOUT);
        assert_eq!(lockout(29), MIN_LOCKOUT);
        assert_eq!(lockout(45), TimeDelta::minutes(45));
        assert_eq!(lockout(u64::MAX), MAX_LOCKOUT);
        assert_eq!(MfaFailure::Locked.detail(), MfaFailure::Wrong.detail());
    }
}
