//! The oracle guards at the HTTP edge: a throttled principal's lookups are refused before any
//! token is read, a lookup that finds nothing counts as a miss, and a bucket lock or a new
//! throttling episode leaves one audit record and bumps its metric.
//!
//! The records name the bucket by its keyed id and the counts; never a digit beyond the mask.

use super::audit::Audit;
use super::extract::Caller;
use super::{ApiError, AppState};
use crate::domain::Principal;
use crate::domain::audit::{Action, Outcome};
use crate::domain::guard::BucketLocked;

/// Refuses `principal`'s lookups, deletes and detokenize calls while it is throttled.
pub fn check_lookups(state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    match state.guard().lookups_throttled(principal) {
        Some(seconds) => Err(ApiError::RateLimited(seconds)),
        None => Ok(()),
    }
}

/// Counts a lookup, delete or detokenize that found no token as a miss; the miss that starts a
/// throttling episode is audited (`token.lookup_suspicious`) and counted, once across
/// instances. A miss that cannot be recorded is logged; the caller's answer stays as it is.
pub async fn observe_miss<T>(
    state: &AppState,
    audit: &Audit,
    caller: &Caller,
    result: &Result<T, ApiError>,
) {
    if !matches!(result, Err(ApiError::NotFound)) {
        return;
    }
    match state.guard().record_miss(caller.0.id).await {
        Ok(false) => {}
        Ok(true) => {
            state.metrics().observe_lookup_suspicious();
            tracing::warn!(principal = %caller.0.id.0, "token lookups throttled: too many misses");
            let mut event = audit.event(state, Action::LookupSuspicious, caller);
            event.outcome = Outcome::Denied;
            event.code = Some("rate_limited".to_owned());
            event.detail = Some(format!(
                "misses>{} in {}s; throttled {}s",
                crate::domain::guard::MISS_LIMIT,
                crate::domain::guard::MISS_WINDOW.num_seconds(),
                crate::domain::guard::MISS_THROTTLE.num_seconds(),
            ));
            let _ = state.audit().record(event).await;
        }
        Err(e) => tracing::warn!(error = %e, "recording a lookup miss failed"),
    }
}

/// Audits and counts each bucket a tokenize call locked: the first refusal in the bucket.
pub async fn record_locks(
    state: &AppState,
    audit: &Audit,
    caller: &Caller,
    locked: &[BucketLocked],
) {
    for lock in locked {
        state.metrics().observe_enumeration_suspected();
        tracing::warn!(bucket = %lock.bucket, counted = lock.counted, "card bucket locked: tokenize looks like enumeration");
        let mut event = audit.event(state, Action::EnumerationSuspected, caller);
        event.tenant = Some(lock.tenant);
        event.outcome = Outcome::Denied;
        event.code = Some("enumeration_suspected".to_owned());
        event.subject = Some(lock.bucket.to_string());
        event.detail = Some(format!(
            "bucket={} new_pans={} budget={}{} locked_until={}",
            lock.bucket,
            lock.counted,
            lock.budget,
            lock.window
                .map(|w| format!(" import_window={w}"))
                .unwrap_or_default(),
            lock.until.to_rfc3339(),
        ));
        let _ = state.audit().record(event).await;
    }
}
