//! Group commit for new token rows: the tokenize calls that arrive while one insert is being
//! written go out together in the next, as one statement and one commit.
//!
//! Each call is still answered only once its own rows are durable, and learns exactly which of
//! its rows went in, so deterministic tokenization (the unique fingerprint index decides) and
//! token-value collisions (the caller draws again) work as they do for a call on its own. A
//! statement whose callers have all given up (timed out) is dropped and rolls back; one that
//! still has a live caller completes, so a caller that timed out beside others may find its
//! token stored (tokenizing again returns it). Nothing here sees a plaintext PAN or logs a row.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::domain::{TenantId, Token};
use crate::store::{NewToken, RowOutcome, StoreError, TokenInsert, TokenStore};

/// Most rows one statement carries (a batch call alone may bring 1,000).
const MAX_ROWS: usize = 2000;
/// Calls waiting for the writer before callers wait for room.
const QUEUE: usize = 4096;

struct Job {
    rows: Vec<NewToken>,
    done: Sender,
}

/// A handle on this instance's token writer; clones share it.
#[derive(Clone)]
pub struct TokenWriter {
    queue: mpsc::Sender<Job>,
}

impl TokenWriter {
    /// Starts the writer over `store`.
    pub fn spawn(store: Arc<dyn TokenStore>, clock: Arc<dyn Clock>) -> TokenWriter {
        let (queue, inbox) = mpsc::channel(QUEUE);
        tokio::spawn(run(store, clock, inbox));
        TokenWriter { queue }
    }

    /// Inserts `rows` (with whatever else is waiting) and answers as
    /// [`crate::store::TokenStore::insert_tokens`] does, for these rows: a bucket that the
    /// statement locked is reported to the first call with a row in it.
    pub async fn insert(&self, rows: Vec<NewToken>) -> Result<TokenInsert, StoreError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Job { rows, done })
            .await
            .map_err(|_| StoreError::Corrupt("the token writer has stopped"))?;
        answer
            .await
            .unwrap_or(Err(StoreError::Corrupt("the token writer has stopped")))
    }
}

async fn run(store: Arc<dyn TokenStore>, clock: Arc<dyn Clock>, mut inbox: mpsc::Receiver<Job>) {
    while let Some(first) = inbox.recv().await {
        let mut rows = first.rows.len();
        let mut jobs = vec![first];
        while rows < MAX_ROWS {
            match inbox.try_recv() {
                Ok(job) => {
                    rows += job.rows.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        write(store.as_ref(), clock.as_ref(), jobs).await;
    }
}

/// Resolves once every caller has gone (its request timed out or its client left).
async fn all_gone<T>(waiters: &mut [&mut oneshot::Sender<T>]) {
    for waiter in waiters.iter_mut() {
        waiter.closed().await;
    }
}

/// Inserts `rows`, unless every caller gives up first: then the statement is dropped and rolls
/// back, so a call answered `503 timeout` has stored nothing, as it would on its own.
async fn insert_for<T>(
    store: &dyn TokenStore,
    clock: &dyn Clock,
    rows: &[NewToken],
    waiters: &mut [&mut oneshot::Sender<T>],
) -> Option<Result<TokenInsert, StoreError>> {
    tokio::select! {
        inserted = store.insert_tokens(rows, clock.now()) => Some(inserted),
        () = all_gone(waiters) => None,
    }
}

async fn write(store: &dyn TokenStore, clock: &dyn Clock, jobs: Vec<Job>) {
    if let [_] = jobs.as_slice() {
        for mut job in jobs {
            if let Some(answer) = insert_for(store, clock, &job.rows, &mut [&mut job.done]).await {
                let _ = job.done.send(answer);
            }
        }
        return;
    }
    // Rows of different calls may draw the same value in one tenant by chance: the later ones
    // sit this statement out and are answered "not inserted", so their caller draws again.
    let mut seen: HashSet<(TenantId, Token)> = HashSet::new();
    let mut all = Vec::new();
    let mut slots: Vec<(Vec<Option<usize>>, Sender)> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut places = Vec::with_capacity(job.rows.len());
        for row in job.rows {
            if seen.insert((row.tenant, row.token.clone())) {
                places.push(Some(all.len()));
                all.push(row);
            } else {
                places.push(None);
            }
        }
        slots.push((places, job.done));
    }
    let mut waiters: Vec<&mut Sender> = slots.iter_mut().map(|(_, done)| done).collect();
    match insert_for(store, clock, &all, &mut waiters).await {
        None => {}
        Some(Ok(TokenInsert { rows, mut locked })) => {
            for (places, done) in slots {
                let outcomes: Vec<RowOutcome> = places
                    .iter()
                    .map(|p| {
                        p.and_then(|i| rows.get(i).copied())
                            .unwrap_or(RowOutcome::Collided)
                    })
                    .collect();
                // Each new lock goes to the first call with a row in its bucket.
                let (own, rest): (Vec<_>, Vec<_>) = locked.into_iter().partition(|l| {
                    places.iter().flatten().any(|i| {
                        all.get(*i)
                            .is_some_and(|r| (r.tenant, r.bucket) == (l.tenant, l.bucket))
                    })
                });
                locked = rest;
                let _ = done.send(Ok(TokenInsert {
                    rows: outcomes,
                    locked: own,
                }));
            }
        }
        // Nothing of the statement committed: each call's rows go again on their own, so
        // each gets its own answer (and one bad row fails only its own call).
        Some(Err(_)) => {
            for (places, mut done) in slots {
                let own: Vec<NewToken> = places
                    .iter()
                    .filter_map(|p| p.and_then(|i| all.get(i).cloned()))
                    .collect();
                let Some(answer) = insert_for(store, clock, &own, &mut [&mut done]).await else {
                    continue;
                };
                let answer = answer.map(|insert| {
                    let mut outcomes = insert.rows.into_iter();
                    TokenInsert {
                        rows: places
                            .iter()
                            .map(|p| match p {
                                Some(_) => outcomes.next().unwrap_or(RowOutcome::Collided),
                                None => RowOutcome::Collided,
                            })
                            .collect(),
                        locked: insert.locked,
                    }
                });
                let _ = done.send(answer);
            }
        }
    }
}

type Sender = oneshot::Sender<Result<TokenInsert, StoreError>>;
