//! What the oracle guards store: locked card buckets, import windows, and principals' misses.
//!
//! Counting is in the database, so it holds across every instance. The budget check itself runs
//! inside the token insert (see [`super::AuditedWrite::Tokenize`]), where it can see the rows
//! it counts. Bucket ids are keyed hashes; nothing here holds a digit of a PAN.

mod sql;

pub(super) use sql::guard_store;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::guard::BucketLocked;
use crate::domain::{BucketId, ImportWindow, PrincipalId, TenantId};

/// What became of one row of a tokenize call's insert.
#[derive(Debug, Clone)]
pub enum RowOutcome {
    /// Stored.
    Inserted,
    /// Not stored: the PAN already has this live token in this format and tenant.
    Existing(Box<super::TokenRecord>),
    /// Not stored: draw again. Its token value is taken, or its PAN's token had expired (and
    /// is now destroyed).
    Collided,
    /// Stored and taken back in the same transaction, because another row of the same call
    /// must be drawn again: the call's rows commit in one round or not at all. Send it again.
    Withdrawn,
    /// Not stored: its bucket is locked until then, as an enumeration suspect.
    Refused {
        /// When the lock ends by itself.
        until: DateTime<Utc>,
    },
}

/// The outcome of one insert: per row, the buckets it locked, and the expired tokens it
/// destroyed to make way for its rows' PANs.
#[derive(Debug, Clone, Default)]
pub struct TokenInsert {
    /// One per row, in order.
    pub rows: Vec<RowOutcome>,
    /// Buckets this insert locked.
    pub locked: Vec<BucketLocked>,
    /// Expired tokens destroyed because a row's PAN had one (each to be recorded as purged).
    pub purged: Vec<(TenantId, crate::domain::Token)>,
}

/// A locked bucket, for an admin's review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLockRecord {
    /// Its tenant.
    pub tenant: TenantId,
    /// The bucket.
    pub bucket: BucketId,
    /// When it was locked.
    pub locked_at: DateTime<Utc>,
    /// When the lock ends by itself.
    pub locked_until: DateTime<Utc>,
    /// New PANs counted when it was locked.
    pub counted: u64,
}

/// Locks, releases, import windows and misses.
#[async_trait]
pub trait GuardStore: Send + Sync {
    /// Buckets locked at `now`, of one tenant or all.
    async fn locked_buckets(
        &self,
        tenant: Option<TenantId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<BucketLockRecord>, StoreError>;

    /// Lifts a bucket's lock (in whichever tenant it is: bucket ids are keyed per tenant) and
    /// restarts its count at `now`. Returns the tenant of the bucket released, if one was locked.
    async fn release_bucket(
        &self,
        bucket: BucketId,
        now: DateTime<Utc>,
    ) -> Result<Option<TenantId>, StoreError>;

    /// Opens an import window for a tokenizer principal (its tenant is the principal's).
    /// Returns `None` if there is no enabled principal with the tokenizer role of that id.
    async fn open_import_window(
        &self,
        id: Uuid,
        principal: PrincipalId,
        bucket_budget: u32,
        opened_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    ) -> Result<Option<ImportWindow>, StoreError>;

    /// Closes an open import window early; returns it if it was open.
    async fn close_import_window(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<ImportWindow>, StoreError>;

    /// Windows open at `now`.
    async fn open_import_windows(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ImportWindow>, StoreError>;

    /// Records that `principal` asked for a token that does not exist, and, if that makes more
    /// than `limit` misses since `since`, throttles it until `until` — unless it already is.
    /// Returns `true` when this miss started a throttling episode (exactly once across
    /// instances).
    async fn record_miss(
        &self,
        principal: PrincipalId,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
        limit: u32,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Forgets misses older than `before`; returns how many.
    async fn purge_misses(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// Buckets closed to an insert, with the end of each lock.
pub(super) type Closed = std::collections::HashMap<(TenantId, BucketId), DateTime<Utc>>;

/// One (tenant, bucket, allowance) whose new PANs an insert must count: the rows it stored
/// there, and from when the count runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CountGroup {
    pub(super) tenant: TenantId,
    pub(super) bucket: BucketId,
    pub(super) window: Option<Uuid>,
    pub(super) budget: u32,
    /// Start of the rolling window (ordinary traffic) or of time (an import window's budget
    /// covers its whole life); a bucket's own `counted_since` may start it later.
    pub(super) since: DateTime<Utc>,
}

/// What the database said of one [`CountGroup`] under the bucket's lock.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counted {
    pub(super) group: CountGroup,
    /// New PANs in the window, this insert's included.
    pub(super) new_pans: u64,
    /// A lock set since the insert first looked (by another instance).
    pub(super) locked_until: Option<DateTime<Utc>>,
}

/// The groups to count: one per (tenant, bucket, window) where this insert stored a row.
pub(super) fn count_groups(
    rows: &[super::NewToken],
    inserted: &[bool],
    now: DateTime<Utc>,
) -> Vec<CountGroup> {
    // Keyed and so ordered by bucket first: instances take bucket locks in the same order. A
    // batch of 2,000 rows makes up to 2,000 groups, so they are deduplicated by key, not by a
    // scan of those found so far.
    let mut groups: std::collections::BTreeMap<(BucketId, Uuid, Option<Uuid>), CountGroup> =
        std::collections::BTreeMap::new();
    for (row, _) in rows.iter().zip(inserted).filter(|(_, ok)| **ok) {
        let window = row.allowance.window;
        groups
            .entry((row.bucket, row.tenant.0, window))
            .or_insert(CountGroup {
                tenant: row.tenant,
                bucket: row.bucket,
                window,
                budget: row.allowance.budget,
                since: match window {
                    None => now - crate::domain::guard::BUCKET_WINDOW,
                    Some(_) => DateTime::UNIX_EPOCH,
                },
            });
    }
    groups.into_values().collect()
}

/// Buckets that must be locked now: those whose count overran the budget and those another
/// instance locked meanwhile. Returns the new locks (to record and audit) and every bucket
/// closed to this insert with the end of its lock.
pub(super) fn decide_locks(counted: &[Counted], now: DateTime<Utc>) -> (Vec<BucketLocked>, Closed) {
    let mut new_locks: Vec<BucketLocked> = Vec::new();
    let mut closed = Closed::new();
    for c in counted {
        let key = (c.group.tenant, c.group.bucket);
        if let Some(until) = c.locked_until.filter(|u| *u > now) {
            closed.insert(key, until);
        } else if crate::domain::guard::over_budget(c.new_pans, c.group.budget)
            && !closed.contains_key(&key)
        {
            let until = now + crate::domain::guard::BUCKET_LOCK;
            closed.insert(key, until);
            new_locks.push(BucketLocked {
                tenant: c.group.tenant,
                bucket: c.group.bucket,
                counted: c.new_pans,
                budget: c.group.budget,
                window: c.group.window,
                until,
            });
        }
    }
    (new_locks, closed)
}

/// The rows this insert stored in buckets closed to it: they must not stay.
pub(super) fn stored_in_closed(
    rows: &[super::NewToken],
    inserted: &[bool],
    closed: &Closed,
) -> Vec<(TenantId, crate::domain::Token)> {
    rows.iter()
        .zip(inserted)
        .filter(|(r, ok)| **ok && closed.contains_key(&(r.tenant, r.bucket)))
        .map(|(r, _)| (r.tenant, r.token.clone()))
        .collect()
}

/// The rows' outcomes: refused where the bucket is closed (before or by this insert), else
/// inserted or collided.
pub(super) fn outcomes(
    rows: &[super::NewToken],
    inserted: &[bool],
    closed: &Closed,
) -> Vec<RowOutcome> {
    rows.iter()
        .zip(inserted)
        .map(|(row, ok)| match closed.get(&(row.tenant, row.bucket)) {
            Some(until) => RowOutcome::Refused { until: *until },
            None if *ok => RowOutcome::Inserted,
            None => RowOutcome::Collided,
        })
        .collect()
}
