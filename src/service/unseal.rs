//! Unsealing: custodians hand in their shares of the master key one by one, until a threshold
//! of them rebuilds a key that opens the vault's stored keys.
//!
//! A share is the credential: no API key is asked, so submissions are rate-limited per source
//! address. A mistyped share is refused and named before it is combined with anything; a
//! share of another split, or a full set that rebuilds a key that does not open the stored
//! keys, resets the progress (every share must be given again). Each step is recorded —
//! `unseal.progress` with the custodian's slot (the share's index, never the share),
//! `unseal.failed` with why, `unseal` with the key's fingerprint — in the trail's system
//! scope. Nothing here logs, stores or answers a share.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::DefaultClock;
use governor::{DefaultKeyedRateLimiter, Quota};
use tokio::sync::Mutex;

use super::audit::{AuditError, AuditTrail};
use super::keys::admin::opens_every_key;
use crate::clock::Clock;
use crate::crypto::keys::MasterKey;
use crate::crypto::shares::{self, KeyShare, ShareError};
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::store::{KeyStore, StoreError};

/// The code of a share refused on its own (mistyped, another threshold, given twice).
const INVALID: &str = "invalid_share";
/// The code of a set refused (another split, or not this vault's key): progress reset.
const FAILED: &str = "unseal_failed";

/// Share submissions per source address per minute.
pub const SUBMISSIONS_PER_MINUTE: u32 = 10;

/// Where unsealing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Shares accepted so far.
    pub progress: usize,
    /// Shares needed (unknown until the first share, unless configured).
    pub threshold: Option<u8>,
}

/// What a submitted share came to.
#[derive(Debug)]
pub enum Submitted {
    /// Accepted; more are needed.
    Progress(Progress),
    /// The threshold was reached and the key opens the stored keys.
    Unsealed(Box<MasterKey>, Progress),
    /// The instance was unsealed already: the share was not read.
    AlreadyUnsealed,
}

/// Why a share was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// The share is malformed or mistyped.
    #[error("the share {0}")]
    Share(ShareError),
    /// The share is of another threshold than this instance was started for.
    #[error("the share is of a {0}-of-N split; this instance was started for {1}")]
    Threshold(u8, u8),
    /// The shares combined into a key that does not open the stored keys, or came from two
    /// splits: progress was reset.
    #[error("{0}; progress was reset: every share must be given again")]
    WrongSet(&'static str),
    /// Too many submissions from this source: wait this many seconds.
    #[error("too many shares from this address")]
    Throttled(u64),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The unseal could not be recorded, so the instance stays sealed (fail closed).
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// The shares given so far, and what checks a rebuilt key.
pub struct Unsealer {
    keys: Arc<dyn KeyStore>,
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
    expected: Option<u8>,
    /// The shares so far; `None` once unsealed, so that late shares are never combined.
    given: Mutex<Option<Vec<KeyShare>>>,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    limiter_clock: DefaultClock,
}

impl Unsealer {
    /// Unsealing against the keys in `keys`, recorded in `trail`; `expected` is the threshold
    /// the operator started the instance for, if they said.
    pub fn new(
        keys: Arc<dyn KeyStore>,
        trail: AuditTrail,
        clock: Arc<dyn Clock>,
        expected: Option<u8>,
    ) -> Unsealer {
        let per_minute = NonZeroU32::new(SUBMISSIONS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Unsealer {
            keys,
            trail,
            clock,
            expected,
            given: Mutex::new(Some(Vec::new())),
            limiter: DefaultKeyedRateLimiter::hashmap(Quota::per_minute(per_minute)),
            limiter_clock: DefaultClock::default(),
        }
    }

    /// Takes one custodian's share (as typed) from `source`.
    pub async fn submit(
        &self,
        text: &str,
        source: Option<IpAddr>,
    ) -> Result<Submitted, UnsealError> {
        if let Some(ip) = source
            && let Err(not_until) = self.limiter.check_key(&ip)
        {
            use governor::clock::Clock as _;
            let wait: Duration = not_until.wait_time_from(self.limiter_clock.now());
            return Err(UnsealError::Throttled(wait.as_secs() + 1));
        }
        let mut event = AuditEvent::new(Action::UnsealProgress, self.clock.now());
        event.source = source.map(|ip| ip.to_string());
        // One submission at a time: a share is checked against the ones before it.
        let mut state = self.given.lock().await;
        let Some(given) = state.as_mut() else {
            return Ok(Submitted::AlreadyUnsealed);
        };
        let share = match KeyShare::parse(text) {
            Ok(share) => share,
            Err(e) => {
                let detail = match e {
                    ShareError::Checksum => "mistyped",
                    _ => "malformed",
                };
                self.failed(event, INVALID, detail, given.len()).await;
                return Err(UnsealError::Share(e));
            }
        };
        event.subject = Some(format!("split:{}", share.split_id()));
        if let Some(expected) = self.expected
            && share.threshold() != expected
        {
            self.failed(event, INVALID, "other_threshold", given.len())
                .await;
            return Err(UnsealError::Threshold(share.threshold(), expected));
        }
        match shares::admit(given, &share) {
            Ok(()) => {}
            Err(ShareError::Duplicate(slot)) => {
                self.failed(event, INVALID, &format!("slot={slot} again"), given.len())
                    .await;
                return Err(UnsealError::Share(ShareError::Duplicate(slot)));
            }
            Err(e) => {
                // Refused alone, the progress kept: anyone can make a well-formed share of a
                // split of their own, and one should not undo the custodians' work.
                self.failed(event, INVALID, "other_split", given.len())
                    .await;
                return Err(UnsealError::Share(e));
            }
        }
        let slot = share.index();
        let threshold = share.threshold();
        given.push(share);
        let progress = Progress {
            progress: given.len(),
            threshold: Some(threshold),
        };
        if given.len() < usize::from(threshold) {
            event.outcome = Outcome::Success;
            event.detail = Some(format!("slot={slot} progress={}/{threshold}", given.len()));
            self.record(event).await;
            return Ok(Submitted::Progress(progress));
        }
        // The threshold is reached: the shares are used once, whatever they rebuild.
        let rebuilt = shares::combine(given);
        given.clear();
        let key = rebuilt
            .ok()
            .and_then(|bytes| MasterKey::from_bytes(&bytes).ok())
            .map(|key| key.with_origin("shares"));
        let opens = match &key {
            Some(key) => match opens_every_key(self.keys.as_ref(), key).await {
                Ok(opens) => opens,
                Err(super::KeyError::Store(e)) => {
                    self.failed(event, "database_unavailable", "store; reset", 0)
                        .await;
                    return Err(UnsealError::Store(e));
                }
                Err(_) => false,
            },
            None => false,
        };
        match key {
            Some(key) if opens => {
                event.outcome = Outcome::Success;
                event.detail = Some(format!("slot={slot} progress={threshold}/{threshold}"));
                self.record(event).await;
                // No unseal without its record: if the trail cannot take it, stay sealed.
                let mut done = AuditEvent::new(Action::Unseal, self.clock.now());
                done.outcome = Outcome::Success;
                done.detail = Some(format!("master={}", key.fingerprint()));
                self.trail.record_change(done).await?;
                // Sealed for good against late shares: they are answered, never combined.
                *state = None;
                Ok(Submitted::Unsealed(Box::new(key), progress))
            }
            _ => {
                self.failed(event, FAILED, "wrong_set; reset", 0).await;
                Err(UnsealError::WrongSet(
                    "the shares do not rebuild this vault's master key",
                ))
            }
        }
    }

    async fn failed(&self, mut event: AuditEvent, code: &str, why: &str, progress: usize) {
        event.action = Action::UnsealFailed;
        event.outcome = Outcome::Denied;
        event.code = Some(code.to_owned());
        event.detail = Some(format!("{why} progress={progress}"));
        self.record(event).await;
    }

    async fn record(&self, event: AuditEvent) {
        if self.trail.record_change(event).await.is_err() {
            tracing::warn!("an unseal step could not be recorded");
        }
    }
}

/// How an unsealed instance is told to seal itself: the serving loop waits on it.
#[derive(Clone, Default)]
pub struct SealSwitch(Arc<tokio::sync::Notify>);

impl SealSwitch {
    /// Completes once the instance is to seal.
    pub async fn sealed(&self) {
        self.0.notified().await;
    }

    fn seal(&self) {
        // A permit is kept if nobody waits yet, so the seal is never lost.
        self.0.notify_one();
    }
}

/// `POST /v1/sys/seal`: an admin seals the instance; it stops serving (in-flight requests
/// finish), wipes its keys from memory and waits for custodians' shares again.
pub struct Sealer {
    switch: SealSwitch,
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
}

impl Sealer {
    /// Seals through `switch`, recorded in `trail`.
    pub fn new(switch: SealSwitch, trail: AuditTrail, clock: Arc<dyn Clock>) -> Sealer {
        Sealer {
            switch,
            trail,
            clock,
        }
    }

    /// Seals, once its `seal` record is durable (fail closed: no record, no seal, 503).
    pub async fn seal<E>(&self, ctx: &super::RequestContext) -> Result<(), E>
    where
        E: super::Refusal + From<super::Forbidden>,
    {
        let event = ctx.event(Action::Seal, self.clock.now());
        let allowed = ctx
            .require(crate::domain::Role::Admin)
            .map(|_| ())
            .map_err(E::from);
        self.trail.settle(event, allowed).await?;
        self.switch.seal();
        Ok(())
    }
}
