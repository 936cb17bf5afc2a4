//! The rules that keep the vault's answers from working as oracles: the tokenize enumeration
//! guard (per card bucket) and the lookup guessing guard (per principal).
//!
//! Deterministic tokenization answers "this PAN already has that token". Whoever holds a
//! tokenizer key and a `six_four` token knows the first six and last four digits, which leaves
//! about 100,000 Luhn-valid candidates for a 16-digit card: tokenizing them all finds the PAN.
//! The guard counts the distinct PANs newly tokenized per bucket (tenant, first six, last four,
//! length) in a rolling window and, past a small budget, refuses every tokenize in the bucket —
//! known PAN and new PAN alike, so the refusal says nothing either. An attacker's chance per
//! window is budget / 100,000.
//!
//! No I/O, no clock (times are passed in). Nothing here logs, and a bucket id never holds
//! digits: it is a keyed hash made in `crypto::fingerprint`.

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use uuid::Uuid;

/// The rolling window in which new PANs count against a bucket's budget.
pub const BUCKET_WINDOW: TimeDelta = TimeDelta::hours(24);
/// How long a bucket stays locked unless an admin releases it earlier: one window, so an
/// attacker gets at most one budget of guesses per window.
pub const BUCKET_LOCK: TimeDelta = TimeDelta::hours(24);
/// The default budget: new PANs per bucket per window.
pub const DEFAULT_BUCKET_BUDGET: u32 = 20;

/// The window in which a principal's misses (lookups of tokens that do not exist) count.
pub const MISS_WINDOW: TimeDelta = TimeDelta::minutes(10);
/// Misses in [`MISS_WINDOW`] a principal may have; one more starts an episode.
pub const MISS_LIMIT: u32 = 50;
/// How long a principal's lookups, deletes and detokenize calls are refused in an episode.
pub const MISS_THROTTLE: TimeDelta = TimeDelta::minutes(10);

/// Lock stripes for counting buckets.
pub const LOCK_STRIPES: i64 = 128;
/// Where the stripes sit in the 64-bit advisory lock space (`"sr-guard"` in ASCII), away from
/// any other user of advisory locks on the database.
const LOCK_NAMESPACE: i64 = 0x7372_2d67_7561_7264 & !0xff;

/// Longest an import window may stay open.
pub const MAX_IMPORT_WINDOW: TimeDelta = TimeDelta::days(7);

/// A card bucket of one tenant, as a keyed id: equal for two PANs of the tenant with the same
/// first six, last four and length, and meaningless to anyone without the tenant's key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketId(pub [u8; 16]);

impl BucketId {
    /// Parses the hex form that audit records and `strongroom guard` show.
    pub fn parse_hex(text: &str) -> Option<BucketId> {
        let bytes = hex::decode(text.trim()).ok()?;
        <[u8; 16]>::try_from(bytes.as_slice()).ok().map(BucketId)
    }

    /// The lock stripe this bucket's count is taken under: one of [`LOCK_STRIPES`]. Buckets
    /// are keyed hashes, so their first byte is uniformly spread; two buckets on one stripe
    /// only wait for each other. Few stripes keep a transaction of thousands of rows to a
    /// bounded number of locks (PostgreSQL's lock table is shared and small).
    pub fn lock_stripe(&self) -> i64 {
        let first = self.0.first().copied().unwrap_or(0);
        LOCK_NAMESPACE + i64::from(first) % LOCK_STRIPES
    }
}

impl fmt::Display for BucketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BucketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BucketId({self})")
    }
}

/// A bucket that an insert locked: the first refusal in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLocked {
    /// Its tenant.
    pub tenant: super::TenantId,
    /// The bucket.
    pub bucket: BucketId,
    /// New PANs counted in its window, the refused ones included.
    pub counted: u64,
    /// The budget they overran.
    pub budget: u32,
    /// The import window whose budget was overrun, if it was one.
    pub window: Option<Uuid>,
    /// When the lock ends by itself.
    pub until: DateTime<Utc>,
}

/// Which budget a new PAN counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// The import window it is tokenized under; `None` for ordinary traffic.
    pub window: Option<Uuid>,
    /// New PANs allowed per bucket: per rolling window for ordinary traffic, for the whole
    /// window's life for an import.
    pub budget: u32,
}

/// Whether `count` new PANs (this call's included) overrun `budget`.
pub fn over_budget(count: u64, budget: u32) -> bool {
    count > u64::from(budget)
}

/// From when new PANs of a bucket count: the start of the rolling window, or later if the
/// bucket was released or its lock ended since.
pub fn counting_from(now: DateTime<Utc>, counted_since: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let window_start = now - BUCKET_WINDOW;
    counted_since.map_or(window_start, |since| since.max(window_start))
}

/// Whole seconds until `until`, at least one (RFC 9110 §10.2.3 `Retry-After`).
pub fn retry_after(now: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
    let millis = u64::try_from((until - now).num_milliseconds()).unwrap_or(0);
    millis.div_ceil(1000).max(1)
}

/// An import window: one principal migrating cards from another vault under a bucket budget of
/// its own, until it closes by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportWindow {
    /// Its id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: Uuid,
    /// The one principal it widens the budget of.
    pub principal: Uuid,
    /// New PANs per bucket over the window's life.
    pub bucket_budget: u32,
    /// When it opened.
    pub opened_at: DateTime<Utc>,
    /// When it closes by itself.
    pub closes_at: DateTime<Utc>,
    /// When an admin closed it early.
    pub closed_at: Option<DateTime<Utc>>,
}

impl ImportWindow {
    /// Whether it is open at `now`.
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        self.closed_at.is_none() && self.opened_at <= now && now < self.closes_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_overrun_only_past_it() {
        assert!(!over_budget(20, 20));
        assert!(over_budget(21, 20));
        assert!(!over_budget(0, 1));
    }

    #[test]
    fn counting_starts_at_the_later_of_the_window_and_a_release() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(counting_from(now, None), now - BUCKET_WINDOW);
        let released = now - TimeDelta::hours(1);
        assert_eq!(counting_from(now, Some(released)), released);
        let long_ago = now - TimeDelta::days(3);
        assert_eq!(counting_from(now, Some(long_ago)), now - BUCKET_WINDOW);
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(retry_after(now, now + TimeDelta::milliseconds(1500)), 2);
        assert_eq!(retry_after(now, now - TimeDelta::seconds(5)), 1);
        assert_eq!(retry_after(now, now + BUCKET_LOCK), 86_400);
    }

    #[test]
    fn bucket_ids_round_trip_through_hex_and_refuse_other_lengths() {
        let id = BucketId([7u8; 16]);
        assert_eq!(BucketId::parse_hex(&id.to_string()), Some(id));
        assert_eq!(BucketId::parse_hex("07"), None);
        assert_eq!(BucketId::parse_hex("not hex"), None);
    }

    #[test]
    fn an_import_window_is_open_between_its_times_unless_closed() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let mut w = ImportWindow {
            id: Uuid::nil(),
            tenant: Uuid::nil(),
            principal: Uuid::nil(),
            bucket_budget: 1000,
            opened_at: now - TimeDelta::hours(1),
            closes_at: now + TimeDelta::hours(1),
            closed_at: None,
        };
        assert!(w.is_open(now));
        assert!(!w.is_open(now + TimeDelta::hours(2)));
        w.closed_at = Some(now);
        assert!(!w.is_open(now));
    }
}
