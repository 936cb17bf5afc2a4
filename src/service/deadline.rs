//! A request's deadline, settled once between the two sides that race for it: the front end,
//! which would answer `503 timeout`, and the audit trail, which would commit the request's
//! writes and records. Whichever claims it first wins, so a request answered `503 timeout` has
//! committed nothing, and one whose records are committing is answered with their outcome.
//!
//! The front end runs each request in [`Deadline::scope`]; the trail takes the current
//! request's deadline with each record it is handed ([`Deadline::current`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

const OPEN: u8 = 0;
const COMMITTING: u8 = 1;
const EXPIRED: u8 = 2;

tokio::task_local! {
    static CURRENT: Deadline;
}

/// One request's deadline; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Deadline(Arc<AtomicU8>);

impl Deadline {
    /// Runs `work` as the request this deadline belongs to.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    /// The deadline of the request being run, if any (commands and housekeeping have none).
    pub fn current() -> Option<Deadline> {
        CURRENT.try_with(Deadline::clone).ok()
    }

    /// The front end's claim: true if the request may be answered as timed out (and nothing
    /// of it will commit from now on); false if its records are already committing, in which
    /// case the request must be awaited and answered with their outcome.
    pub fn expire(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == EXPIRED,
        }
    }

    /// The trail's claim, made before the transaction that carries the request's records
    /// starts: true if they may commit (the request can no longer time out), false if the
    /// request has been answered as timed out.
    pub fn commit(&self) -> bool {
        match self
            .0
            .compare_exchange(OPEN, COMMITTING, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(state) => state == COMMITTING,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claim_wins_and_each_side_may_claim_again() {
        let expired = Deadline::default();
        assert!(expired.expire());
        assert!(expired.expire());
        assert!(
            !expired.commit(),
            "nothing commits once the request timed out"
        );

        let committing = Deadline::default();
        assert!(committing.commit());
        assert!(committing.commit(), "a request's later records commit too");
        assert!(!committing.expire(), "it is answered with its outcome");
    }

    #[tokio::test]
    async fn the_current_deadline_is_the_scope_s() {
        assert!(Deadline::current().is_none());
        let deadline = Deadline::default();
        let seen = deadline.clone().scope(async { Deadline::current() }).await;
        assert!(seen.is_some_and(|d| d.expire()));
        assert!(!deadline.commit(), "the scope's deadline is the same one");
    }
}
