//! The second factor: checking a person's TOTP code when they elevate.
//!
//! A code is accepted once (a code of the same or an earlier step is a replay, RFC 6238 §5.2),
//! decided by one conditional update so that two instances cannot both accept it. Repeated wrong
//! codes lock the factor for a while. Nothing here logs a code or a secret.

use chrono::{DateTime, TimeDelta, Utc};

use super::keys::{KeyError, KeyService};
use crate::clock::Clock;
use crate::domain::PrincipalId;
use crate::store::{PrincipalStore, StoreError};

/// Wrong codes in a row that lock the factor.
pub const MAX_FAILURES: u32 = 5;
/// How long a locked factor stays locked.
pub const LOCKOUT: TimeDelta = TimeDelta::minutes(5);

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
            MfaFailure::Wrong | MfaFailure::Replayed => {
                "the TOTP code is not valid (wrong, or already used)"
            }
            MfaFailure::Locked => "too many wrong TOTP codes: try again in a few minutes",
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

/// Checks `code` for `principal` at the clock's time.
pub async fn verify(
    store: &dyn PrincipalStore,
    keys: &KeyService,
    clock: &dyn Clock,
    principal: PrincipalId,
    code: Option<&str>,
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
        .record_totp_failure(principal, MAX_FAILURES, now + LOCKOUT)
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
