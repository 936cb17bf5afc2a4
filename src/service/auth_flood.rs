//! Floods of failed authentication, per source address: past [`LIMIT`] failures in a
//! [`WINDOW`] the source is answered `429 rate_limited` until the window ends, and the audit
//! trail gets the window's first failure as it happens and one aggregated record (with the
//! count) for the rest, so a flood can neither grow the append-only table without bound nor
//! fill the disk.
//!
//! Held per instance, in memory: behind N instances a source gets at most N × [`LIMIT`]
//! attempts a window, and the trail at most 2 × N records per source and window. The map is
//! bounded: past [`MAX_SOURCES`] sources, new ones share one overflow entry. No I/O here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::{DateTime, TimeDelta, Utc};

use crate::domain::{PrincipalId, TenantId};

/// Failed authentications one source may make per window before it is throttled.
pub const LIMIT: u32 = 20;
/// The window.
pub const WINDOW: TimeDelta = TimeDelta::minutes(1);
/// Most sources tracked at once.
pub const MAX_SOURCES: usize = 10_000;

/// Who failed: the source address, and the principal when the key was one the vault knows
/// (disabled or expired), so its tenant's auditor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailureKey {
    /// Where it came from (none when unknown, or for the overflow entry).
    pub source: Option<IpAddr>,
    /// The principal whose key it was, with its tenant.
    pub principal: Option<(PrincipalId, TenantId)>,
}

/// Failures of one key in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureWindow {
    /// When its first failure came.
    pub started: DateTime<Utc>,
    /// Failures so far, the first included.
    pub count: u32,
    /// The reason of the latest one.
    pub reason: &'static str,
}

/// What to do with one failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Record this failure now: the first of its window.
    pub record: bool,
    /// The source is past its limit: answer 429, retrying after this many seconds.
    pub throttled: Option<u64>,
    /// Windows that have ended with failures beyond their first: one aggregated record each.
    pub ended: Vec<(FailureKey, FailureWindow)>,
}

/// The failure windows of one instance.
#[derive(Debug, Default)]
pub struct AuthFloods {
    windows: Mutex<HashMap<FailureKey, FailureWindow>>,
}

impl AuthFloods {
    /// Counts one failure of `key` for `reason` at `now`.
    pub fn observe(&self, key: FailureKey, reason: &'static str, now: DateTime<Utc>) -> Verdict {
        let Ok(mut windows) = self.windows.lock() else {
            // A poisoned lock: record everything rather than lose evidence.
            return Verdict {
                record: true,
                throttled: None,
                ended: Vec::new(),
            };
        };
        let mut ended = drain_ended(&mut windows, now);
        let key = if windows.contains_key(&key) || windows.len() < MAX_SOURCES {
            key
        } else {
            FailureKey {
                source: None,
                principal: None,
            }
        };
        let window = windows.entry(key).or_insert(FailureWindow {
            started: now,
            count: 0,
            reason,
        });
        window.count = window.count.saturating_add(1);
        window.reason = reason;
        let record = window.count == 1;
        // The limit is per source, whichever principals' keys it tried: one pass for the
        // source's failures and its earliest window.
        let (from_source, first) = windows
            .iter()
            .filter(|(k, _)| k.source == key.source)
            .fold((0u32, now), |(n, first), (_, w)| {
                (n.saturating_add(w.count), first.min(w.started))
            });
        let throttled =
            (from_source > LIMIT).then(|| crate::domain::guard::retry_after(now, first + WINDOW));
        ended.retain(|(_, w)| w.count > 1);
        Verdict {
            record,
            throttled,
            ended,
        }
    }

    /// Windows that have ended by `now` with failures beyond their first, forgotten here.
    pub fn sweep(&self, now: DateTime<Utc>) -> Vec<(FailureKey, FailureWindow)> {
        match self.windows.lock() {
            Ok(mut windows) => {
                let mut ended = drain_ended(&mut windows, now);
                ended.retain(|(_, w)| w.count > 1);
                ended
            }
            Err(_) => Vec::new(),
        }
    }
}

fn drain_ended(
    windows: &mut HashMap<FailureKey, FailureWindow>,
    now: DateTime<Utc>,
) -> Vec<(FailureKey, FailureWindow)> {
    let ended: Vec<FailureKey> = windows
        .iter()
        .filter(|(_, w)| w.started + WINDOW <= now)
        .map(|(k, _)| *k)
        .collect();
    ended
        .into_iter()
        .filter_map(|k| windows.remove(&k).map(|w| (k, w)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(last: u8) -> FailureKey {
        FailureKey {
            source: Some(IpAddr::from([10, 0, 0, last])),
            principal: None,
        }
    }

    #[test]
    fn a_source_is_throttled_past_the_limit_and_recorded_once_per_window() {
        let floods = AuthFloods::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let verdicts: Vec<Verdict> = (0..25)
            .map(|i| floods.observe(key(1), "unknown_key", t0 + TimeDelta::seconds(i)))
            .collect();
        assert_eq!(verdicts.iter().filter(|v| v.record).count(), 1);
        assert!(verdicts.iter().take(20).all(|v| v.throttled.is_none()));
        assert_eq!(verdicts[20].throttled, Some(40));
        // Another source is not affected.
        assert_eq!(floods.observe(key(2), "unknown_key", t0).throttled, None);
        // The window ends: the next failure is recorded afresh and the old window reported
        // with its count.
        let next = floods.observe(key(1), "unknown_key", t0 + TimeDelta::seconds(61));
        assert!(next.record);
        assert!(next.throttled.is_none());
        let ended: Vec<_> = next.ended.iter().filter(|(k, _)| *k == key(1)).collect();
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].1.count, 25);
    }

    #[test]
    fn known_principals_are_kept_apart_but_share_their_source_limit() {
        let floods = AuthFloods::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let p = (
            PrincipalId(uuid::Uuid::new_v4()),
            TenantId(uuid::Uuid::new_v4()),
        );
        let known = FailureKey {
            source: key(1).source,
            principal: Some(p),
        };
        assert!(floods.observe(known, "disabled", t0).record);
        for _ in 0..19 {
            floods.observe(key(1), "unknown_key", t0);
        }
        assert!(
            floods
                .observe(key(1), "unknown_key", t0)
                .throttled
                .is_some()
        );
        let swept = floods.sweep(t0 + WINDOW);
        assert_eq!(swept.len(), 1, "only the window with more than one failure");
        assert_eq!(swept[0].0, key(1));
    }

    #[test]
    fn the_map_is_bounded_by_an_overflow_entry() {
        let floods = AuthFloods::default();
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        for i in 0..(MAX_SOURCES + 50) {
            let ip = IpAddr::from(u32::try_from(i).unwrap().to_be_bytes());
            let k = FailureKey {
                source: Some(ip),
                principal: None,
            };
            floods.observe(k, "unknown_key", t0);
        }
        assert!(floods.windows.lock().unwrap().len() <= MAX_SOURCES + 1);
    }
}
