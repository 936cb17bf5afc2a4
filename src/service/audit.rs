//! The audit trail: an appender per writer that chains and commits many requests' records in
//! one transaction, checkpoints of its chain head outside the database, verification, and the
//! auditors' query.
//!
//! Every writer (a serving instance, a command) keeps a chain of its own, so instances never
//! wait on one another and no request waits on a global lock: each waits only for the batch
//! its record went into. A batch that fails is answered with an error and the writer starts a
//! new chain, so a commit whose outcome is unknown can never leave a gap or a fork behind.
//! Nothing here logs a record's contents.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::context::{Forbidden, RequestContext};
use super::deadline::Deadline;
use crate::clock::Clock;
use crate::crypto::checkpoint::CheckpointKey;
use crate::domain::Role;
use crate::domain::audit::{Action, AuditQuery};
use crate::domain::audit::{
    AuditEvent, ChainBreak, ChainHead, ChainVerifier, ChainedEvent, Checkpoint, HASH_LEN, Outcome,
    StoredRecord, Verified,
};
use crate::metrics::Metrics;
use crate::store::{AuditStore, AuditedWrite, StoreError, UseOutcome, WriteOutcome};

/// Most records one transaction appends.
const MAX_BATCH: usize = 512;
/// Records waiting for the appender before writers wait for room.
const QUEUE: usize = 8192;
/// Shortest wait between checkpoints written while no records arrive.
const IDLE_CHECKPOINT: Duration = Duration::from_secs(1);
/// Records one verification page reads.
const VERIFY_PAGE: u32 = 2000;

/// Why a record was not written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The trail refused the record (or its appender has stopped); it is not in the trail.
    #[error("the audit trail could not be written")]
    Unavailable,
    /// The database could not be reached, had no connection free in time or stalled (its
    /// statement timeout cancelled the transaction); nothing of it is in the trail.
    #[error("the database is unavailable")]
    DatabaseUnavailable,
}

/// How a use case that did not succeed is written in the trail: the stable code the caller is
/// answered with, whether the fault was ours, and (for policy refusals) which rule refused.
/// Front ends implement it for their error type, so the record and the answer share one code.
pub trait Refusal: From<AuditError> {
    /// The stable code (the problem answer's `code`).
    fn code(&self) -> &'static str;
    /// Whether the vault failed (recorded as `error`) rather than refused (`denied`).
    fn is_fault(&self) -> bool;
    /// A fixed name from our own vocabulary that says more, if any.
    fn detail(&self) -> Option<&'static str> {
        None
    }
}

/// Where chain heads are vouched for outside the database.
pub struct Anchor {
    key: CheckpointKey,
    file: Option<PathBuf>,
    every: Duration,
}

impl Anchor {
    /// Checkpoints MACed with `key`, appended to `file` (when given) and logged, at most once
    /// per `every` while records are written, and once more when the writer stops.
    pub fn new(key: CheckpointKey, file: Option<PathBuf>, every: Duration) -> Anchor {
        Anchor { key, file, every }
    }
}

/// Makes a write's records once its outcome is known.
type Finish = Box<dyn FnOnce(&WriteOutcome) -> Vec<AuditEvent> + Send>;

// Nearly every message is an `Append`: boxing it would cost an allocation per record to
// shrink the rare checkpoint request.
#[allow(clippy::large_enum_variant)]
enum Message {
    Append(AuditEvent, Waiter<()>),
    Write(AuditedWrite, Finish, Waiter<WriteOutcome>),
    Checkpoint(oneshot::Sender<()>),
    Probe(oneshot::Sender<Result<(), AuditError>>),
}

/// A request waiting for its record or write, and its deadline (none for commands).
struct Waiter<T> {
    done: oneshot::Sender<Result<T, AuditError>>,
    deadline: Option<Deadline>,
}

impl<T> Waiter<T> {
    /// A waiter for the current request.
    fn new() -> (Waiter<T>, oneshot::Receiver<Result<T, AuditError>>) {
        let (done, answer) = oneshot::channel();
        let deadline = Deadline::current();
        (Waiter { done, deadline }, answer)
    }

    /// Claims the request for the coming transaction: false if it has been answered without
    /// waiting for us (it timed out, or its caller left), and its part must be left out.
    fn claim(&self) -> bool {
        self.deadline.as_ref().is_none_or(Deadline::commit) && !self.done.is_closed()
    }

    fn send(self, result: Result<T, AuditError>) {
        let _ = self.done.send(result);
    }
}

/// One place in a batch's chain: a record as it came, or the record of a write.
// Nearly every entry is `Plain`: boxing it would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
enum Entry {
    Plain(AuditEvent),
    Written(usize, Finish),
}

/// Leaves out of the batch the records and writes of requests that were answered without
/// waiting for them (`503 timeout`, or a caller that left), and claims the rest, before the
/// transaction starts: a request answered `503 timeout` has committed nothing, and one whose
/// part is claimed is answered with its outcome instead of timing out.
fn withdraw_abandoned(batch: Batch) -> Batch {
    let recorded: Vec<bool> = batch.recorded.iter().map(Waiter::claim).collect();
    let written: Vec<bool> = batch.written.iter().map(Waiter::claim).collect();
    if recorded.iter().chain(&written).all(|kept| *kept) {
        return batch;
    }
    let mut kept = Batch::default();
    let mut renumbered = Vec::with_capacity(batch.writes.len());
    for ((write, waiter), keep) in batch.writes.into_iter().zip(batch.written).zip(&written) {
        if *keep {
            renumbered.push(Some(kept.writes.len()));
            kept.writes.push(write);
            kept.written.push(waiter);
        } else {
            renumbered.push(None);
        }
    }
    let mut plain = batch.recorded.into_iter().zip(recorded);
    for entry in batch.entries {
        match entry {
            // Plain records and their waiters come in the same order.
            Entry::Plain(event) => {
                if let Some((waiter, true)) = plain.next() {
                    kept.entries.push(Entry::Plain(event));
                    kept.recorded.push(waiter);
                }
            }
            Entry::Written(i, finish) => {
                if let Some(Some(j)) = renumbered.get(i) {
                    kept.entries.push(Entry::Written(*j, finish));
                }
            }
        }
    }
    kept
}

/// What the appender has taken from its queue and not yet committed.
#[derive(Default)]
struct Batch {
    entries: Vec<Entry>,
    writes: Vec<AuditedWrite>,
    recorded: Vec<Waiter<()>>,
    written: Vec<Waiter<WriteOutcome>>,
}

/// A handle on this writer's appenders; clones share them.
#[derive(Clone)]
pub struct AuditTrail {
    /// One queue per appender (lane), each appender with a chain of its own.
    lanes: Arc<[mpsc::Sender<Message>]>,
    /// The lane the next request goes to, counted up.
    next: Arc<AtomicUsize>,
}

impl AuditTrail {
    /// Starts the appender of a new chain over `store`.
    pub fn spawn(
        store: Arc<dyn AuditStore>,
        anchor: Option<Anchor>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> AuditTrail {
        AuditTrail::spawn_lanes(1, store, anchor, clock, metrics)
    }

    /// Starts `lanes` appenders over `store`, each with a new chain of its own, checkpointed
    /// to the same anchor. Requests' records and writes go to the lanes in turn, so one lane's
    /// transaction runs while another's commits: the database's work and its commit flush
    /// overlap instead of taking turns.
    pub fn spawn_lanes(
        lanes: usize,
        store: Arc<dyn AuditStore>,
        anchor: Option<Anchor>,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
    ) -> AuditTrail {
        let anchor = anchor.map(Arc::new);
        let queues: Vec<mpsc::Sender<Message>> = (0..lanes.max(1))
            .map(|_| {
                let (queue, inbox) = mpsc::channel(QUEUE);
                let appender = Appender {
                    store: Arc::clone(&store),
                    anchor: anchor.clone(),
                    clock: Arc::clone(&clock),
                    metrics: metrics.clone(),
                    head: ChainHead::new(Uuid::new_v4()),
                    checkpointed: None,
                    last_checkpoint: Instant::now(),
                };
                tokio::spawn(appender.run(inbox));
                queue
            })
            .collect();
        AuditTrail {
            lanes: queues.into(),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The next lane in turn: under load each lane batches what arrived while it was busy.
    fn lane(&self) -> Result<&mpsc::Sender<Message>, AuditError> {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.lanes.len())
            .filter_map(|i| self.lanes.get((first + i) % self.lanes.len()))
            .find(|lane| !lane.is_closed())
            .ok_or(AuditError::Unavailable)
    }

    async fn send(&self, message: Message) -> Result<(), AuditError> {
        self.lane()?
            .send(message)
            .await
            .map_err(|_| AuditError::Unavailable)
    }

    /// Appends `event` and waits until it is durable.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (waiter, answer) = Waiter::new();
        self.send(Message::Append(event, waiter)).await?;
        answer.await.unwrap_or(Err(AuditError::Unavailable))
    }

    /// Records how a use case ended and passes its result on. A success is only passed on
    /// once its record is durable, and becomes the trail's failure if it cannot be written
    /// (fail closed); a refusal is answered as it is whether or not its record lands.
    pub async fn settle<T, E: Refusal>(
        &self,
        mut event: AuditEvent,
        result: Result<T, E>,
    ) -> Result<T, E> {
        conclude(&mut event, &result);
        let recorded = self.record(event).await;
        match (result, recorded) {
            (Ok(_), Err(e)) => Err(E::from(e)),
            (result, _) => result,
        }
    }

    /// Runs `write` and appends its record, made by `finish` from the write's outcome, in one
    /// transaction (group-committed with whatever else is queued): the write and its record
    /// commit together or neither does. Answers the outcome once both are durable.
    pub async fn write(
        &self,
        write: AuditedWrite,
        finish: impl FnOnce(&WriteOutcome) -> AuditEvent + Send + 'static,
    ) -> Result<WriteOutcome, AuditError> {
        self.write_records(write, move |outcome| vec![finish(outcome)])
            .await
    }

    /// [`AuditTrail::write`] for a write that leaves any number of records: none when it
    /// committed nothing that needs one (a tokenize round whose rows were all withdrawn), or
    /// several (a call's record and the bucket locks it set).
    pub async fn write_records(
        &self,
        write: AuditedWrite,
        finish: impl FnOnce(&WriteOutcome) -> Vec<AuditEvent> + Send + 'static,
    ) -> Result<WriteOutcome, AuditError> {
        let (waiter, answer) = Waiter::new();
        self.send(Message::Write(write, Box::new(finish), waiter))
            .await?;
        answer.await.unwrap_or(Err(AuditError::Unavailable))
    }

    /// Records an administrative change and checkpoints the chain at once: a command reports
    /// its change done only when this succeeds.
    pub async fn record_change(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.record(event).await?;
        self.checkpoint().await;
        Ok(())
    }

    /// An administrative change written with its record in one transaction, the chain then
    /// checkpointed at once. `applied` says whether the outcome changed anything and fills in
    /// what the record says of it; a change that found nothing to change is recorded as
    /// refused, `not_found`.
    pub async fn write_change(
        &self,
        write: AuditedWrite,
        event: AuditEvent,
        applied: fn(&WriteOutcome, &mut AuditEvent) -> bool,
    ) -> Result<WriteOutcome, AuditError> {
        let finish = move |outcome: &WriteOutcome| {
            let mut event = event;
            if applied(outcome, &mut event) {
                event.outcome = Outcome::Success;
            } else {
                event.outcome = Outcome::Denied;
                event.code = Some("not_found".to_owned());
            }
            event
        };
        let outcome = self.write(write, finish).await?;
        self.checkpoint().await;
        Ok(outcome)
    }

    /// Whether every appender can write a record now, on its own connections: each inserts
    /// one and rolls it back after what is queued. Readiness asks this.
    pub async fn probe(&self) -> Result<(), AuditError> {
        for lane in self.lanes.iter() {
            let (done, answer) = oneshot::channel();
            lane.send(Message::Probe(done))
                .await
                .map_err(|_| AuditError::Unavailable)?;
            answer.await.unwrap_or(Err(AuditError::Unavailable))?;
        }
        Ok(())
    }

    /// Writes a checkpoint of every chain head now (at shutdown, and for tests).
    pub async fn checkpoint(&self) {
        for lane in self.lanes.iter() {
            let (done, answer) = oneshot::channel();
            if lane.send(Message::Checkpoint(done)).await.is_ok() {
                let _ = answer.await;
            }
        }
    }
}

/// Writes into `event` how a use case ended: success, or the refusal's outcome, code and
/// detail (see [`Refusal`]).
pub fn conclude<T, E: Refusal>(event: &mut AuditEvent, result: &Result<T, E>) {
    match result {
        Ok(_) => event.outcome = Outcome::Success,
        Err(e) => {
            event.outcome = if e.is_fault() {
                Outcome::Error
            } else {
                Outcome::Denied
            };
            event.code = Some(e.code().to_owned());
            if let Some(detail) = e.detail() {
                event.detail = Some(detail.to_owned());
            }
        }
    }
}

struct Appender {
    store: Arc<dyn AuditStore>,
    anchor: Option<Arc<Anchor>>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    head: ChainHead,
    checkpointed: Option<(Uuid, u64)>,
    last_checkpoint: Instant,
}

impl Appender {
    async fn run(mut self, mut inbox: mpsc::Receiver<Message>) {
        let mut batch = Batch::default();
        loop {
            // A head not yet vouched for is checkpointed within one interval even if nothing
            // else arrives, so a quiet vault's newest records do not stay unanchored.
            let first = match self.checkpoint_due_in() {
                Some(due) => match tokio::time::timeout(due, inbox.recv()).await {
                    Ok(received) => received,
                    Err(_) => {
                        self.write_checkpoint().await;
                        continue;
                    }
                },
                None => inbox.recv().await,
            };
            let Some(first) = first else { break };
            let mut next = Some(first);
            // Take whatever is queued: under load a batch grows to the concurrency.
            while let Some(message) = next.take() {
                match message {
                    Message::Append(event, waiter) => {
                        batch.entries.push(Entry::Plain(event));
                        batch.recorded.push(waiter);
                    }
                    Message::Probe(done) => {
                        self.commit(std::mem::take(&mut batch)).await;
                        let _ = done.send(self.probe().await);
                    }
                    Message::Write(write, finish, waiter) => {
                        batch
                            .entries
                            .push(Entry::Written(batch.writes.len(), finish));
                        batch.writes.push(write);
                        batch.written.push(waiter);
                    }
                    Message::Checkpoint(done) => {
                        self.commit(std::mem::take(&mut batch)).await;
                        self.write_checkpoint().await;
                        let _ = done.send(());
                    }
                }
                if batch.entries.len() < MAX_BATCH {
                    next = inbox.try_recv().ok();
                }
            }
            self.commit(std::mem::take(&mut batch)).await;
            if self
                .anchor
                .as_ref()
                .is_some_and(|a| self.last_checkpoint.elapsed() >= a.every)
            {
                self.write_checkpoint().await;
            }
        }
        self.write_checkpoint().await;
    }

    /// How long until the head must be checkpointed, when it has records no checkpoint
    /// vouches for yet.
    fn checkpoint_due_in(&self) -> Option<Duration> {
        let anchor = self.anchor.as_ref()?;
        let unanchored =
            self.head.seq > 0 && self.checkpointed != Some((self.head.chain, self.head.seq));
        // Never sooner than a second apart when idle: a checkpoint file that cannot be written
        // is retried, not spun on.
        let every = anchor.every.max(IDLE_CHECKPOINT);
        unanchored.then(|| every.saturating_sub(self.last_checkpoint.elapsed()))
    }

    async fn commit(&mut self, batch: Batch) {
        if batch.entries.is_empty() {
            return;
        }
        let Batch {
            entries,
            writes,
            recorded,
            written,
        } = withdraw_abandoned(batch);
        if entries.is_empty() {
            return;
        }
        let start = self.head;
        let count = entries.len();
        let mut entries = Some(entries);
        let mut end = None;
        let missing = WriteOutcome::Grant(UseOutcome::NotFound);
        // The chain is built once the writes' outcomes are known, inside their transaction.
        let mut build = |outcomes: &[WriteOutcome]| -> Vec<ChainedEvent> {
            let mut head = start;
            let mut chained = Vec::with_capacity(count);
            for entry in entries.take().unwrap_or_default() {
                match entry {
                    Entry::Plain(event) => chained.push(head.append(event)),
                    Entry::Written(i, finish) => {
                        for event in finish(outcomes.get(i).unwrap_or(&missing)) {
                            chained.push(head.append(event));
                        }
                    }
                }
            }
            end = Some(head);
            chained
        };
        let committed = if writes.is_empty() {
            let chained = build(&[]);
            self.store.append_audit(&chained).await.map(|()| Vec::new())
        } else {
            self.store.commit_audited(&writes, &mut build).await
        };
        match committed {
            Ok(outcomes) => {
                if let Some(end) = end {
                    self.head = end;
                }
                for waiter in recorded {
                    waiter.send(Ok(()));
                }
                for (waiter, outcome) in written.into_iter().zip(outcomes) {
                    waiter.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, records = count, "audit trail write failed");
                self.metrics.observe_audit_write_failure("database");
                // Whether the commit landed is unknown: vouch for the last head known to have
                // landed, then go on in a new chain.
                self.write_checkpoint().await;
                self.head = ChainHead::new(Uuid::new_v4());
                let error = if e.is_unavailable() {
                    AuditError::DatabaseUnavailable
                } else {
                    AuditError::Unavailable
                };
                for waiter in recorded {
                    waiter.send(Err(error));
                }
                for waiter in written {
                    waiter.send(Err(error));
                }
            }
        }
    }

    /// Appends a record on the appender's own connections and rolls it back.
    async fn probe(&mut self) -> Result<(), AuditError> {
        match self.store.probe_append(self.clock.now()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "the audit trail cannot be written");
                Err(AuditError::Unavailable)
            }
        }
    }

    async fn write_checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        let Some(anchor) = &self.anchor else { return };
        if self.head.seq == 0 || self.checkpointed == Some((self.head.chain, self.head.seq)) {
            return;
        }
        let checkpoint = Checkpoint {
            chain: self.head.chain,
            seq: self.head.seq,
            hash: self.head.hash,
            at: self.clock.now(),
        };
        let line = CheckpointLine::new(&checkpoint, &anchor.key);
        tracing::info!(
            chain = %line.chain,
            seq = line.seq,
            hash = %line.hash,
            at = %line.at,
            mac = %line.mac,
            "audit checkpoint"
        );
        if let Some(path) = anchor.file.clone() {
            let written = tokio::task::spawn_blocking(move || append_line(&path, &line)).await;
            if !matches!(written, Ok(Ok(()))) {
                tracing::error!("audit checkpoint file could not be written");
                self.metrics.observe_audit_write_failure("checkpoint");
                return;
            }
        }
        self.checkpointed = Some((self.head.chain, self.head.seq));
    }
}

/// A checkpoint as one JSON line of the checkpoint file (and the fields of its log line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointLine {
    chain: Uuid,
    seq: u64,
    hash: String,
    at: DateTime<Utc>,
    mac: String,
}

impl CheckpointLine {
    fn new(checkpoint: &Checkpoint, key: &CheckpointKey) -> CheckpointLine {
        CheckpointLine {
            chain: checkpoint.chain,
            seq: checkpoint.seq,
            hash: hex::encode(checkpoint.hash),
            at: checkpoint.at,
            mac: hex::encode(key.sign(checkpoint)),
        }
    }

    fn open(&self, key: &CheckpointKey) -> Option<Checkpoint> {
        let hash = <[u8; HASH_LEN]>::try_from(hex::decode(&self.hash).ok()?).ok()?;
        let checkpoint = Checkpoint {
            chain: self.chain,
            seq: self.seq,
            hash,
            at: self.at,
        };
        let mac = hex::decode(&self.mac).ok()?;
        key.verify(&checkpoint, &mac).then_some(checkpoint)
    }
}

fn append_line(path: &Path, line: &CheckpointLine) -> std::io::Result<()> {
    let mut text = serde_json::to_string(line).map_err(std::io::Error::other)?;
    text.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // One write of one line: appends from several writers do not interleave.
    file.write_all(text.as_bytes())?;
    file.sync_data()
}

/// Why the checkpoint file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointFileError {
    /// It could not be read.
    #[error("cannot read the checkpoint file: {0}")]
    Read(#[from] std::io::Error),
    /// A line is not a checkpoint, or its MAC does not verify under this vault's key.
    #[error(
        "checkpoint file line {0} is not a valid checkpoint of this vault (forged, changed or foreign)"
    )]
    Invalid(usize),
}

/// Reads and authenticates every checkpoint in a file.
pub fn read_checkpoints(
    path: &Path,
    key: &CheckpointKey,
) -> Result<Vec<Checkpoint>, CheckpointFileError> {
    let text = std::fs::read_to_string(path)?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str::<CheckpointLine>(line)
                .ok()
                .and_then(|l| l.open(key))
                .ok_or(CheckpointFileError::Invalid(i + 1))
        })
        .collect()
}

/// Walks every chain in the store against `checkpoints`: the count of what verified, or the
/// first break.
pub async fn verify(
    store: &dyn AuditStore,
    checkpoints: Vec<Checkpoint>,
) -> Result<Result<Verified, ChainBreak>, StoreError> {
    let mut verifier = ChainVerifier::new(checkpoints);
    let mut after = None;
    loop {
        let page: Vec<StoredRecord> = store.audit_chain_page(after, VERIFY_PAGE).await?;
        for record in &page {
            if let Err(e) = verifier.push(record) {
                return Ok(Err(e));
            }
        }
        match page.last() {
            Some(last) => after = Some((last.chained.chain, last.chained.seq)),
            None => break,
        }
    }
    Ok(verifier.finish())
}

/// The auditors' trail could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the audit trail could not be read: {0}")]
pub struct ReadError(#[from] StoreError);

impl ReadError {
    /// Whether the database was unreachable or stalled.
    pub fn is_unavailable(&self) -> bool {
        self.0.is_unavailable()
    }
}

/// An auditor's read as asked: the filters, parsed, and their names (from our own
/// vocabulary) for the record of the read.
#[derive(Debug)]
pub struct AuditRead {
    /// The filters.
    pub query: AuditQuery,
    /// The filters' names, sorted, comma-separated.
    pub filters: String,
}

/// `GET /v1/audit`: auditors read their tenant's trail, and every read is itself recorded.
pub struct AuditReader {
    store: Arc<dyn AuditStore>,
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
}

impl AuditReader {
    /// Reads from `store`, records reads in `trail`.
    pub fn new(
        store: Arc<dyn AuditStore>,
        trail: AuditTrail,
        clock: Arc<dyn Clock>,
    ) -> AuditReader {
        AuditReader {
            store,
            trail,
            clock,
        }
    }

    /// Records matching `asked` in the auditor's own tenant, newest first.
    pub async fn read<E>(
        &self,
        ctx: &RequestContext,
        asked: Result<AuditRead, E>,
    ) -> Result<Vec<StoredRecord>, E>
    where
        E: Refusal + From<Forbidden> + From<ReadError>,
    {
        let mut event = ctx.event(Action::AuditRead, self.clock.now());
        let result = async {
            let principal = ctx.require(Role::Auditor)?;
            let AuditRead { mut query, filters } = asked?;
            query.tenant = principal.tenant;
            // What was asked, never a value outside our own vocabulary: the filters' names,
            // and the token (checked to be a token, not a card number) in `tokens`.
            event.detail = Some(filters);
            event.tokens.extend(query.token.clone());
            Ok(self
                .store
                .query_audit(&query)
                .await
                .map_err(ReadError::from)?)
        }
        .await;
        self.trail.settle(event, result).await
    }
}

#[cfg(test)]
mod withdraw_tests {
    use super::*;
    use crate::domain::audit::Action;
    use crate::domain::{PrincipalId, TenantId};

    fn use_of(n: u128) -> AuditedWrite {
        AuditedWrite::UseGrant {
            tenant: TenantId(Uuid::from_u128(n)),
            jti: Uuid::from_u128(n),
            grantee: PrincipalId(Uuid::from_u128(n)),
            now: chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap_or_default(),
        }
    }

    #[test]
    fn a_write_whose_request_gave_up_is_withdrawn_and_the_rest_renumbered() {
        let at = chrono::DateTime::from_timestamp(1_900_000_000, 0).unwrap_or_default();
        let (gave_up, dropped) = Waiter::<WriteOutcome>::new();
        drop(dropped);
        let (waits, _kept_answer) = Waiter::<WriteOutcome>::new();
        let (plain, _plain_answer) = Waiter::<()>::new();
        // A record of a request already answered `503 timeout`, and one still waiting.
        let timed_out = Deadline::default();
        assert!(timed_out.expire());
        let (mut late, _late_answer) = Waiter::<()>::new();
        late.deadline = Some(timed_out);
        let (mut on_time, _on_time_answer) = Waiter::<()>::new();
        let waiting = Deadline::default();
        on_time.deadline = Some(waiting.clone());
        let finish = |action: Action| -> Finish {
            Box::new(move |_: &WriteOutcome| vec![AuditEvent::new(action, at)])
        };
        let batch = Batch {
            entries: vec![
                Entry::Written(0, finish(Action::Delete)),
                Entry::Plain(AuditEvent::new(Action::Lookup, at)),
                Entry::Plain(AuditEvent::new(Action::TokenizeBatch, at)),
                Entry::Written(1, finish(Action::Detokenize)),
                Entry::Plain(AuditEvent::new(Action::AuditRead, at)),
            ],
            writes: vec![use_of(1), use_of(2)],
            recorded: vec![plain, late, on_time],
            written: vec![gave_up, waits],
        };
        let kept = withdraw_abandoned(batch);
        assert_eq!(kept.writes.len(), 1);
        assert_eq!(kept.written.len(), 1);
        assert_eq!(kept.recorded.len(), 2);
        assert!(
            !waiting.expire(),
            "claimed: its request now waits for the commit"
        );
        assert!(
            matches!(kept.writes[0], AuditedWrite::UseGrant { jti, .. } if jti == Uuid::from_u128(2))
        );
        let kinds: Vec<String> = kept
            .entries
            .into_iter()
            .map(|e| match e {
                Entry::Plain(event) => format!("plain {}", event.action.as_str()),
                Entry::Written(i, finish) => {
                    let outcome = WriteOutcome::Deleted(true);
                    format!("write {i} {}", finish(&outcome)[0].action.as_str())
                }
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                "plain token.lookup",
                "write 0 detokenize",
                "plain audit.read"
            ]
        );
    }
}
