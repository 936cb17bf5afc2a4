//! The oracle guards as use cases: which budget a tokenize counts against, misses of token
//! lookups, and the admin's release of a locked bucket and import windows.
//!
//! The counting itself is in the database, shared by every instance. The only thing held per
//! instance is a copy of the open import windows, refreshed every few seconds: opening or
//! closing a window early takes effect everywhere within [`WINDOW_REFRESH`]; a window's end by
//! time is exact, since every instance checks it against the clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use uuid::Uuid;

use super::audit::AuditTrail;
use super::context::RequestContext;
use crate::clock::Clock;
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::guard::{
    self, BucketLocked, MAX_IMPORT_WINDOW, MISS_LIMIT, MISS_THROTTLE, MISS_WINDOW,
};
use crate::domain::{Allowance, BucketId, ImportWindow, Principal, PrincipalId, TenantId};
use crate::metrics::Metrics;
use crate::store::{AuditedWrite, BucketLockRecord, GuardStore, StoreError, WriteOutcome};

/// How stale this instance's copy of the open import windows may be.
pub const WINDOW_REFRESH: Duration = Duration::from_secs(5);

/// Why an admin's guard command failed.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// The budget is zero or the window is empty or longer than allowed.
    #[error("an import window needs a budget of at least 1 and a length of 1 hour to 7 days")]
    InvalidWindow,
    /// No enabled tokenizer principal of that id.
    #[error("no enabled principal with the tokenizer role has that id")]
    NoSuchTokenizer,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The change was made but its record could not be written.
    #[error("{0}: the change was made but is not audited")]
    Unaudited(#[from] super::audit::AuditError),
}

/// The caller is throttled for guessing tokens: retry after this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many lookups of unknown tokens: slow down and retry later")]
pub struct Throttled(pub u64);

/// The guards of one instance.
pub struct Guard {
    store: Arc<dyn GuardStore>,
    clock: Arc<dyn Clock>,
    bucket_budget: u32,
    windows: Mutex<Option<(Instant, Vec<ImportWindow>)>>,
}

impl Guard {
    /// Guards over `store`, with `bucket_budget` new PANs per bucket per rolling window.
    pub fn new(store: Arc<dyn GuardStore>, clock: Arc<dyn Clock>, bucket_budget: u32) -> Guard {
        Guard {
            store,
            clock,
            bucket_budget: bucket_budget.max(1),
            windows: Mutex::new(None),
        }
    }

    /// The budget a new PAN of `principal` counts against: its open import window's, or the
    /// ordinary one. An import window never changes anyone else's.
    pub async fn allowance(&self, principal: PrincipalId) -> Result<Allowance, StoreError> {
        let now = self.clock.now();
        let mut cached = self.windows.lock().await;
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < WINDOW_REFRESH);
        if !fresh {
            *cached = Some((Instant::now(), self.store.open_import_windows(now).await?));
        }
        let window = cached.as_ref().and_then(|(_, windows)| {
            windows
                .iter()
                .find(|w| w.principal == principal.0 && w.is_open(now))
        });
        Ok(match window {
            Some(w) => Allowance {
                window: Some(w.id),
                budget: w.bucket_budget,
            },
            None => Allowance {
                window: None,
                budget: self.bucket_budget,
            },
        })
    }

    /// Seconds until `principal` may look tokens up again, if it is throttled now.
    pub fn lookups_throttled(&self, principal: &Principal) -> Option<u64> {
        let now = self.clock.now();
        principal
            .lookups_throttled_until
            .filter(|until| *until > now)
            .map(|until| guard::retry_after(now, until))
    }

    /// Records a miss by `principal`; returns `true` when it starts a throttling episode.
    pub async fn record_miss(&self, principal: PrincipalId) -> Result<bool, StoreError> {
        let now = self.clock.now();
        self.store
            .record_miss(
                principal,
                now,
                now - MISS_WINDOW,
                MISS_LIMIT,
                now + MISS_THROTTLE,
            )
            .await
    }

    /// Forgets misses that no longer count.
    pub async fn purge_misses(&self) -> Result<u64, StoreError> {
        self.store
            .purge_misses(self.clock.now() - MISS_WINDOW)
            .await
    }

    /// Buckets locked now.
    pub async fn locked_buckets(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<BucketLockRecord>, StoreError> {
        self.store.locked_buckets(tenant, self.clock.now()).await
    }

    /// Windows open now.
    pub async fn open_imports(&self) -> Result<Vec<ImportWindow>, StoreError> {
        self.store.open_import_windows(self.clock.now()).await
    }
}

/// What the guards raise while serving: the audit record and metric of a bucket lock or of a
/// new lookup-throttling episode. The records name the bucket by its keyed id and the counts;
/// never a digit beyond the mask.
#[derive(Clone)]
pub struct Alarms {
    guard: Arc<Guard>,
    trail: AuditTrail,
    metrics: Metrics,
}

impl Alarms {
    /// Alarms of `guard`, recorded in `trail` and counted in `metrics`.
    pub fn new(guard: Arc<Guard>, trail: AuditTrail, metrics: Metrics) -> Alarms {
        Alarms {
            guard,
            trail,
            metrics,
        }
    }

    /// The guards these alarms watch.
    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    /// Counts a sealed card number that failed its integrity check.
    pub fn observe_integrity_failure(&self) {
        self.metrics.observe_integrity_failure();
    }

    /// Refuses the caller's lookups, deletes and detokenize calls while it is throttled.
    pub fn check_lookups(&self, principal: &Principal) -> Result<(), Throttled> {
        self.guard
            .lookups_throttled(principal)
            .map_or(Ok(()), |s| Err(Throttled(s)))
    }

    /// Counts a lookup, delete or detokenize that found no token as a miss; the miss that
    /// starts a throttling episode is audited (`token.lookup_suspicious`) and counted, once
    /// across instances. A miss that cannot be recorded is logged; the caller's answer stays
    /// as it is.
    pub async fn observe_miss(&self, ctx: &RequestContext) {
        match self.guard.record_miss(ctx.principal.id).await {
            Ok(false) => {}
            Ok(true) => {
                self.metrics.observe_lookup_suspicious();
                tracing::warn!(principal = %ctx.principal.id.0, "token lookups throttled: too many misses");
                let mut event = ctx.event(Action::LookupSuspicious, self.guard.clock.now());
                event.outcome = Outcome::Denied;
                event.code = Some("rate_limited".to_owned());
                event.detail = Some(format!(
                    "misses>{MISS_LIMIT} in {}s; throttled {}s",
                    MISS_WINDOW.num_seconds(),
                    MISS_THROTTLE.num_seconds(),
                ));
                let _ = self.trail.record(event).await;
            }
            Err(e) => tracing::warn!(error = %e, "recording a lookup miss failed"),
        }
    }

    /// Counts and logs each bucket a tokenize call locked (its record went in with the lock).
    pub fn observe_locks(&self, locked: &[BucketLocked]) {
        for lock in locked {
            self.metrics.observe_enumeration_suspected();
            tracing::warn!(bucket = %lock.bucket, counted = lock.counted, "card bucket locked: tokenize looks like enumeration");
        }
    }

    /// The record of a lock `ctx`'s call set: written in the transaction that sets it.
    pub fn lock_event(&self, ctx: &RequestContext, lock: &BucketLocked) -> AuditEvent {
        let mut event = ctx.event(Action::EnumerationSuspected, self.guard.clock.now());
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
        event
    }
}

/// An admin's review of the guards (the `guard` commands): every change is recorded in the
/// command's own chain before it is reported done. Buckets are named by their keyed id.
pub struct GuardAdmin {
    guard: Guard,
    trail: AuditTrail,
}

impl GuardAdmin {
    /// Review of `guard`, recorded in `trail`.
    pub fn new(guard: Guard, trail: AuditTrail) -> GuardAdmin {
        GuardAdmin { guard, trail }
    }

    /// Lifts a bucket's lock after review (`guard.release`, with the reason); answers the
    /// bucket's tenant, or `None` when it was not locked (recorded as refused). The release
    /// and its record commit together.
    pub async fn release(
        &self,
        bucket: BucketId,
        reason: String,
    ) -> Result<Option<TenantId>, GuardError> {
        let now = self.guard.clock.now();
        let mut event = AuditEvent::new(Action::BucketRelease, now);
        event.subject = Some(bucket.to_string());
        event.reason = Some(reason);
        let write = AuditedWrite::ReleaseBucket { bucket, now };
        let outcome = self
            .trail
            .write_change(write, event, |outcome, event| match outcome {
                WriteOutcome::Released(Some(tenant)) => {
                    event.tenant = Some(*tenant);
                    true
                }
                _ => false,
            })
            .await?;
        Ok(match outcome {
            WriteOutcome::Released(tenant) => tenant,
            _ => None,
        })
    }

    /// Opens an import window (`guard.import_open`), with its record in one transaction.
    pub async fn open_import(
        &self,
        principal: PrincipalId,
        bucket_budget: u32,
        length: chrono::TimeDelta,
    ) -> Result<ImportWindow, GuardError> {
        let opened_at = self.guard.clock.now();
        let closes_at = window_end(opened_at, bucket_budget, length)?;
        let id = Uuid::new_v4();
        let mut event = AuditEvent::new(Action::ImportWindowOpen, opened_at);
        event.subject = Some(id.to_string());
        let write = AuditedWrite::OpenImportWindow {
            id,
            principal,
            bucket_budget,
            opened_at,
            closes_at,
        };
        let outcome = self
            .trail
            .write_change(write, event, |outcome, event| match outcome {
                WriteOutcome::ImportWindow(Some(window)) => {
                    event.tenant = Some(TenantId(window.tenant));
                    event.detail = Some(format!(
                        "principal={} bucket_budget={} closes_at={}",
                        window.principal,
                        window.bucket_budget,
                        window.closes_at.to_rfc3339()
                    ));
                    true
                }
                _ => false,
            })
            .await?;
        match outcome {
            WriteOutcome::ImportWindow(Some(window)) => Ok(window),
            _ => Err(GuardError::NoSuchTokenizer),
        }
    }

    /// Closes an import window early (`guard.import_close`); `None` when it was not open
    /// (recorded as refused). The closing and its record commit together.
    pub async fn close_import(&self, id: Uuid) -> Result<Option<ImportWindow>, GuardError> {
        let now = self.guard.clock.now();
        let mut event = AuditEvent::new(Action::ImportWindowClose, now);
        event.subject = Some(id.to_string());
        let write = AuditedWrite::CloseImportWindow { id, now };
        let outcome = self
            .trail
            .write_change(write, event, |outcome, event| match outcome {
                WriteOutcome::ImportWindow(Some(window)) => {
                    event.tenant = Some(TenantId(window.tenant));
                    true
                }
                _ => false,
            })
            .await?;
        Ok(match outcome {
            WriteOutcome::ImportWindow(window) => window,
            _ => None,
        })
    }
}

/// When an import window of `length` opened at `from` closes, if the budget and length are
/// allowed.
fn window_end(
    from: chrono::DateTime<chrono::Utc>,
    bucket_budget: u32,
    length: chrono::TimeDelta,
) -> Result<chrono::DateTime<chrono::Utc>, GuardError> {
    if bucket_budget == 0 || length < chrono::TimeDelta::hours(1) || length > MAX_IMPORT_WINDOW {
        return Err(GuardError::InvalidWindow);
    }
    from.checked_add_signed(length)
        .ok_or(GuardError::InvalidWindow)
}
