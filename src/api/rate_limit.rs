//! Per-principal rate limits (GCRA token buckets, `governor`), per instance.
//!
//! Each instance limits each principal on its own; behind a load balancer with N instances a
//! principal gets at most N times the configured rate. No I/O.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::domain::PrincipalId;

/// The limits of one instance.
pub struct RateLimits {
    limiter: Option<DefaultKeyedRateLimiter<PrincipalId>>,
    clock: DefaultClock,
}

impl RateLimits {
    /// `per_second` sustained requests per principal, bursts of `burst`; 0 turns limits off.
    pub fn new(per_second: u32, burst: u32) -> RateLimits {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            DefaultKeyedRateLimiter::hashmap(Quota::per_second(rate).allow_burst(burst))
        });
        RateLimits {
            limiter,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from the principal's bucket, or says how long until one is free.
    pub fn check(&self, principal: PrincipalId) -> Result<(), Duration> {
        match &self.limiter {
            Some(limiter) => limiter
                .check_key(&principal)
                .map_err(|not_until| not_until.wait_time_from(self.clock.now())),
            None => Ok(()),
        }
    }

    /// Takes `n` more from the principal's bucket: a batch spends one per item (the request
    /// itself took one already). A batch larger than the burst waits for a full bucket and
    /// empties it, so the limit holds for any batch size the API accepts.
    pub fn check_n(&self, principal: PrincipalId, n: u32) -> Result<(), Duration> {
        let (Some(limiter), Some(n)) = (&self.limiter, NonZeroU32::new(n)) else {
            return Ok(());
        };
        let taken = match limiter.check_key_n(&principal, n) {
            Ok(taken) => taken,
            // More than the burst: take the whole burst instead.
            Err(governor::InsufficientCapacity(burst)) => NonZeroU32::new(burst)
                .map_or(Ok(()), |burst| {
                    limiter.check_key_n(&principal, burst).unwrap_or(Ok(()))
                }),
        };
        taken.map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets principals whose buckets are full again, so memory follows active callers.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn a_principal_past_its_burst_waits_and_others_do_not() {
        let limits = RateLimits::new(1, 2);
        let (a, b) = (PrincipalId(Uuid::new_v4()), PrincipalId(Uuid::new_v4()));
        assert!(limits.check(a).is_ok());
        assert!(limits.check(a).is_ok());
        let wait = limits.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limits.check(b).is_ok());
    }

    #[test]
    fn a_batch_spends_one_per_item() {
        let limits = RateLimits::new(1, 100);
        let a = PrincipalId(Uuid::new_v4());
        assert!(limits.check(a).is_ok());
        assert!(limits.check_n(a, 98).is_ok());
        assert!(limits.check(a).is_ok());
        // The bucket is empty: neither a batch nor a single request passes.
        assert!(limits.check_n(a, 2).is_err());
        assert!(limits.check(a).is_err());
    }

    #[test]
    fn a_batch_larger_than_the_burst_needs_a_full_bucket_and_empties_it() {
        let limits = RateLimits::new(1, 10);
        let a = PrincipalId(Uuid::new_v4());
        assert!(limits.check_n(a, 1000).is_ok());
        assert!(limits.check(a).is_err());
        let b = PrincipalId(Uuid::new_v4());
        assert!(limits.check(b).is_ok());
        assert!(limits.check_n(b, 1000).is_err());
    }

    #[test]
    fn zero_turns_limits_off() {
        let limits = RateLimits::new(0, 0);
        let a = PrincipalId(Uuid::new_v4());
        assert!((0..10_000).all(|_| limits.check(a).is_ok()));
    }
}
