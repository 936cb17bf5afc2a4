//! Tokenize, look up and delete.
//!
//! Deterministic tokenization is decided by the database's unique fingerprint index, not by a
//! lock in memory, so it holds for concurrent identical calls on any number of instances.
//! Plaintext PANs only pass through here on their way to be sealed; nothing here logs one.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use super::audit::{AuditError, AuditTrail, Refusal, conclude};
use super::context::{Forbidden, RequestContext};
use super::guard::{Alarms, Guard, Throttled};
use super::keys::{KeyError, KeyService};
use crate::clock::Clock;
use crate::crypto::fingerprint::Fingerprint;
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::guard::retry_after;
use crate::domain::{
    Allowance, BucketId, FormatError, MaskedPan, Metadata, Pan, Role, TenantId, Token, TokenFormat,
};
use crate::random::Csprng;
use crate::store::{
    AuditedWrite, NewToken, RowOutcome, StoreError, TokenInsert, TokenRecord, TokenStore,
    WriteOutcome,
};

/// Fresh tokens drawn for one item before its PAN's token space counts as exhausted. A draw is
/// lost only when its value is already taken, which needs a nearly full space.
const MAX_DRAWS: usize = 8;
/// Expired tokens destroyed per purge pass.
const PURGE_BATCH: i64 = 1000;

/// One value to tokenize, parsed.
#[derive(Debug)]
pub struct TokenizeItem {
    /// The card number.
    pub pan: Pan,
    /// The token format.
    pub format: TokenFormat,
    /// Caller metadata.
    pub metadata: Option<Metadata>,
    /// When the token stops being usable.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A token as callers see it: never the PAN, at most its masked form.
#[derive(Debug, Clone)]
pub struct TokenView {
    /// The token.
    pub token: Token,
    /// Its format.
    pub format: TokenFormat,
    /// The masked PAN.
    pub masked: MaskedPan,
    /// Caller metadata.
    pub metadata: Option<Metadata>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops being usable.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether this call created it (false: the PAN already had a token in this format).
    pub created: bool,
    /// Whether the call asked for metadata other than the existing token's, which was kept:
    /// a token has one metadata, set when it is created, and a later tokenize of its PAN
    /// neither changes it silently nor fails the payment flow that asked.
    pub metadata_ignored: bool,
}

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The format cannot tokenize this PAN.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// `expires_at` is not in the future.
    #[error("expires_at must be in the future")]
    ExpiryInPast,
    /// Every fresh token collided: the space of tokens for this PAN and format is full.
    #[error("no unused token is left for this card number in this format")]
    SpaceExhausted,
    /// No such token in the caller's tenant (or it was deleted).
    #[error("no such token")]
    NotFound,
    /// The token has expired.
    #[error("the token has expired")]
    Expired,
    /// The token's card data was destroyed with its tenant's keys (`strongroom tenant shred`).
    #[error("the token's card data was destroyed")]
    Destroyed,
    /// The card's bucket is locked: its tokenize calls look like enumeration. Retry after
    /// this many seconds (or once an admin has released it).
    #[error("too many new card numbers like this one: tokenizing in this range is paused")]
    EnumerationSuspected(u64),
    /// Keys failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The call's rows and record could not be committed: nothing of it is stored.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// How one item of a tokenize call came out, as its record says it.
#[derive(Debug, Clone)]
pub enum ItemNote {
    /// A token was issued; `created` is false when the PAN already had it.
    Issued {
        /// The token.
        token: Token,
        /// Whether this call created it.
        created: bool,
    },
    /// The item was refused.
    Refused(ItemRefusal),
}

/// Why one item of a tokenize call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemRefusal {
    /// See [`TokenError::Format`].
    Format(FormatError),
    /// See [`TokenError::ExpiryInPast`].
    ExpiryInPast,
    /// See [`TokenError::EnumerationSuspected`].
    EnumerationSuspected(u64),
    /// See [`TokenError::SpaceExhausted`].
    SpaceExhausted,
}

impl From<ItemRefusal> for TokenError {
    fn from(refusal: ItemRefusal) -> TokenError {
        match refusal {
            ItemRefusal::Format(e) => TokenError::Format(e),
            ItemRefusal::ExpiryInPast => TokenError::ExpiryInPast,
            ItemRefusal::EnumerationSuspected(s) => TokenError::EnumerationSuspected(s),
            ItemRefusal::SpaceExhausted => TokenError::SpaceExhausted,
        }
    }
}

/// Makes a tokenize call's record from what became of its items (in the order they were
/// given). It runs once, inside the transaction that commits the call's rows.
pub type TokenizeRecord = Arc<dyn Fn(&[ItemNote]) -> AuditEvent + Send + Sync>;

/// Tokens of every tenant.
pub struct TokenService {
    store: Arc<dyn TokenStore>,
    keys: Arc<KeyService>,
    guard: Arc<Guard>,
    alarms: Alarms,
    trail: AuditTrail,
    rng: Arc<dyn Csprng>,
    clock: Arc<dyn Clock>,
}

/// What a front end's error must be made from for the token use cases.
pub trait TokenRefusal: Refusal + From<TokenError> + From<Forbidden> + From<Throttled> {}
impl<E: Refusal + From<TokenError> + From<Forbidden> + From<Throttled>> TokenRefusal for E {}

/// An item still to be stored.
#[derive(Clone)]
struct Pending {
    index: usize,
    fingerprint: Fingerprint,
    bucket: BucketId,
    /// Fresh tokens drawn for it so far.
    draws: usize,
}

/// What one round settles: each item's note and, for those drawn again, the next round.
struct Round {
    notes: Vec<(usize, ItemNote)>,
    again: Vec<Pending>,
}

/// Reads a round's outcome: an item is settled, or goes again (its value taken or its PAN's
/// expired token replaced, once more drawn; or its call's rows withdrawn, unchanged). The same
/// reading makes the record (in the transaction) and the answer (after it), so both agree.
fn read_round(
    pending: &[Pending],
    drawn: &[Token],
    outcomes: &[RowOutcome],
    now: DateTime<Utc>,
) -> Round {
    let mut round = Round {
        notes: Vec::new(),
        again: Vec::new(),
    };
    for ((p, token), outcome) in pending.iter().zip(drawn).zip(outcomes) {
        let note = match outcome {
            RowOutcome::Inserted => ItemNote::Issued {
                token: token.clone(),
                created: true,
            },
            RowOutcome::Existing(record) => ItemNote::Issued {
                token: record.token.clone(),
                created: false,
            },
            RowOutcome::Refused { until } => {
                ItemNote::Refused(ItemRefusal::EnumerationSuspected(retry_after(now, *until)))
            }
            RowOutcome::Collided if p.draws >= MAX_DRAWS => {
                ItemNote::Refused(ItemRefusal::SpaceExhausted)
            }
            RowOutcome::Collided | RowOutcome::Withdrawn => {
                round.again.push(p.clone());
                continue;
            }
        };
        round.notes.push((p.index, note));
    }
    round
}

impl TokenService {
    /// A service over `store` and `keys`; new rows commit with their records through `trail`.
    pub fn new(
        store: Arc<dyn TokenStore>,
        keys: Arc<KeyService>,
        alarms: Alarms,
        trail: AuditTrail,
        rng: Arc<dyn Csprng>,
        clock: Arc<dyn Clock>,
    ) -> TokenService {
        TokenService {
            store,
            keys,
            guard: Arc::clone(alarms.guard()),
            alarms,
            trail,
            rng,
            clock,
        }
    }

    /// `POST /v1/tokens`: tokenizes one card number for a tokenizer. `asked` is the parsed
    /// request, or the front end's refusal of it (recorded all the same). A new token's row and
    /// its `token.tokenize` record commit together, with the record of a bucket the call locked.
    pub async fn tokenize<E: TokenRefusal + Send + 'static>(
        &self,
        ctx: &RequestContext,
        asked: Result<TokenizeItem, E>,
    ) -> Result<TokenView, E> {
        let event = ctx.event(Action::Tokenize, self.clock.now());
        let item = match ctx.require(Role::Tokenizer).map_err(E::from).and(asked) {
            Ok(item) => item,
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        let template = event.clone();
        let record: TokenizeRecord = Arc::new(move |notes: &[ItemNote]| {
            let mut event = template.clone();
            let result = match notes.first() {
                Some(ItemNote::Issued { token, created }) => {
                    event.tokens.push(token.as_str().to_owned());
                    event.detail = Some(if *created { "created" } else { "existing" }.to_owned());
                    Ok(())
                }
                Some(ItemNote::Refused(refusal)) => Err(E::from(TokenError::from(*refusal))),
                None => Err(E::from(TokenError::SpaceExhausted)),
            };
            conclude(&mut event, &result);
            event
        });
        match self
            .tokenize_items(ctx, std::slice::from_ref(&item), record)
            .await
        {
            Ok(mut results) => results
                .pop()
                .unwrap_or(Err(TokenError::SpaceExhausted))
                .map_err(E::from),
            Err(e) => self.failed(event, e).await,
        }
    }

    /// `POST /v1/tokens/batch`: tokenizes many, answering per item in input order. `asked`
    /// holds each item as parsed or refused by the front end; items fail independently. One
    /// `token.tokenize_batch` record names every token issued and counts the refusals; it
    /// commits with the call's new rows.
    pub async fn tokenize_batch<E: TokenRefusal + Send + 'static>(
        &self,
        ctx: &RequestContext,
        asked: Result<Vec<Result<TokenizeItem, E>>, E>,
    ) -> Result<Vec<Result<TokenView, E>>, E> {
        let event = ctx.event(Action::TokenizeBatch, self.clock.now());
        let asked = match ctx.require(Role::Tokenizer).map_err(E::from).and(asked) {
            Ok(asked) => asked,
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        // Only the valid items go to the store; answers keep input order.
        let mut valid: Vec<TokenizeItem> = Vec::with_capacity(asked.len());
        let mut slots = Vec::with_capacity(asked.len());
        for item in asked {
            match item {
                Ok(item) => {
                    slots.push(Ok(valid.len()));
                    valid.push(item);
                }
                Err(e) => slots.push(Err(e)),
            }
        }
        let items = slots.len();
        let refused_before = items - valid.len();
        let template = event.clone();
        let record: TokenizeRecord = Arc::new(move |notes: &[ItemNote]| {
            let mut event = template.clone();
            let mut refused = refused_before;
            for note in notes {
                match note {
                    ItemNote::Issued { token, .. } => event.tokens.push(token.as_str().to_owned()),
                    ItemNote::Refused(_) => refused += 1,
                }
            }
            event.detail = Some(format!("items={items} refused={refused}"));
            event.outcome = Outcome::Success;
            event
        });
        let tokenized = match self.tokenize_items(ctx, &valid, record).await {
            Ok(tokenized) => tokenized,
            Err(e) => return self.failed(event, e).await,
        };
        let mut tokenized: Vec<Option<Result<TokenView, TokenError>>> =
            tokenized.into_iter().map(Some).collect();
        Ok(slots
            .into_iter()
            .map(|slot| match slot {
                Ok(i) => tokenized
                    .get_mut(i)
                    .and_then(Option::take)
                    .unwrap_or(Err(TokenError::SpaceExhausted))
                    .map_err(E::from),
                Err(e) => Err(e),
            })
            .collect())
    }

    /// Answers a tokenize call that failed as a whole: a trail that could not commit the call
    /// is answered as such (nothing of the call is stored, and there is nowhere to record it);
    /// any other failure is recorded.
    async fn failed<T, E: TokenRefusal>(
        &self,
        event: AuditEvent,
        error: TokenError,
    ) -> Result<T, E> {
        match error {
            TokenError::Audit(e) => Err(E::from(e)),
            e => self.trail.settle(event, Err(E::from(e))).await,
        }
    }

    /// `GET /v1/tokens/{token}`: a live token of the caller's tenant, masked. `token` is
    /// `None` when what was asked for is not shaped like a token: answered, and counted as a
    /// miss, like an unknown one.
    pub async fn lookup<E: TokenRefusal>(
        &self,
        ctx: &RequestContext,
        token: Option<Token>,
    ) -> Result<TokenView, E> {
        self.on_one_token(ctx, Action::Lookup, token, |tenant, token| async move {
            self.lookup_view(tenant, &token).await
        })
        .await
    }

    /// `DELETE /v1/tokens/{token}`: destroys a token's card data; the value stays reserved
    /// for ever. The destruction and its record commit together.
    pub async fn delete<E: TokenRefusal + Send + 'static>(
        &self,
        ctx: &RequestContext,
        token: Option<Token>,
    ) -> Result<(), E> {
        let mut event = ctx.event(Action::Delete, self.clock.now());
        let mut missed = false;
        let prepared = async {
            let principal = ctx.require(Role::Tokenizer)?;
            self.alarms.check_lookups(principal)?;
            let deletable = match token {
                Some(token) => {
                    event.tokens.push(token.as_str().to_owned());
                    let found = self.store.get_token(principal.tenant, &token).await;
                    found.map_err(TokenError::from).and_then(|record| {
                        deletable(record)?;
                        Ok(token)
                    })
                }
                None => Err(TokenError::NotFound),
            };
            missed = matches!(deletable, Err(TokenError::NotFound));
            Ok((principal.tenant, deletable?))
        }
        .await;
        if missed {
            self.alarms.observe_miss(ctx).await;
        }
        let (tenant, token) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        let write = AuditedWrite::DeleteToken {
            tenant,
            token,
            now: micros(self.clock.now()),
        };
        let finish = move |outcome: &WriteOutcome| {
            let mut event = event;
            if matches!(outcome, WriteOutcome::Deleted(true)) {
                event.outcome = Outcome::Success;
            } else {
                // Deleted or destroyed in the meantime.
                event.outcome = Outcome::Denied;
                event.code = Some(E::from(TokenError::NotFound).code().to_owned());
            }
            event
        };
        match self.trail.write(write, finish).await.map_err(E::from)? {
            WriteOutcome::Deleted(true) => Ok(()),
            _ => Err(E::from(TokenError::NotFound)),
        }
    }

    /// A tokenizer's call on one token: throttled callers are refused before any row is read,
    /// a miss is counted, and the call is recorded.
    async fn on_one_token<T, E, F, Fut>(
        &self,
        ctx: &RequestContext,
        action: Action,
        token: Option<Token>,
        run: F,
    ) -> Result<T, E>
    where
        E: TokenRefusal,
        F: FnOnce(TenantId, Token) -> Fut,
        Fut: Future<Output = Result<T, TokenError>>,
    {
        let mut event = ctx.event(action, self.clock.now());
        let mut missed = false;
        let result = async {
            let principal = ctx.require(Role::Tokenizer)?;
            self.alarms.check_lookups(principal)?;
            let outcome = match token {
                Some(token) => {
                    event.tokens.push(token.as_str().to_owned());
                    run(principal.tenant, token).await
                }
                None => Err(TokenError::NotFound),
            };
            missed = matches!(outcome, Err(TokenError::NotFound));
            Ok(outcome?)
        }
        .await;
        if missed {
            self.alarms.observe_miss(ctx).await;
        }
        self.trail.settle(event, result).await
    }

    /// Tokenizes each item for `ctx`'s principal, answering in input order. Items fail
    /// independently; a store, key or trail failure fails them all. Every item passes the
    /// enumeration guard in the same statement that stores it: an item whose bucket is locked
    /// — before or by this call — is refused whether or not its PAN already has a token.
    ///
    /// The call's new rows commit with the record `record` makes, in one transaction of the
    /// trail (with the records of buckets the call locked and of expired tokens it replaced),
    /// or not at all: a round that must draw an item again stores none of the call's rows.
    /// The engine of both tokenize use cases: no role check of its own.
    pub async fn tokenize_items(
        &self,
        ctx: &RequestContext,
        items: &[TokenizeItem],
        record: TokenizeRecord,
    ) -> Result<Vec<Result<TokenView, TokenError>>, TokenError> {
        let tenant = ctx.principal.tenant;
        let now = micros(self.clock.now());
        let allowance = self.guard.allowance(ctx.principal.id).await?;
        let fingerprint_key = self.keys.fingerprint_key(tenant).await?;
        let mut notes: Vec<Option<ItemNote>> = items.iter().map(|_| None).collect();
        let mut results: Vec<Option<Result<TokenView, TokenError>>> =
            items.iter().map(|_| None).collect();
        let mut pending = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let checked = item
                .format
                .check(&item.pan)
                .map_err(ItemRefusal::Format)
                .and_then(|()| match item.expires_at {
                    Some(at) if at <= now => Err(ItemRefusal::ExpiryInPast),
                    _ => Ok(()),
                });
            match checked {
                Ok(()) => pending.push(Pending {
                    index,
                    fingerprint: fingerprint_key.fingerprint(&item.pan),
                    bucket: fingerprint_key.bucket(&item.pan),
                    draws: 0,
                }),
                Err(refusal) => {
                    set(&mut notes, index, ItemNote::Refused(refusal));
                    set(&mut results, index, Err(refusal.into()));
                }
            }
        }
        if pending.is_empty() {
            // Nothing to store: the record stands alone.
            self.trail.record(record(&settled(notes))).await?;
            return Ok(finished(results));
        }

        while !pending.is_empty() {
            for p in &mut pending {
                p.draws += 1;
            }
            let rows = self
                .seal_new_rows(tenant, items, &pending, allowance, now)
                .await?;
            let drawn: Vec<Token> = rows.iter().map(|r| r.token.clone()).collect();
            let finish = {
                let (pending, drawn, mut notes) = (pending.clone(), drawn.clone(), notes.clone());
                let (record, alarms, ctx) = (Arc::clone(&record), self.alarms.clone(), ctx.clone());
                move |outcome: &WriteOutcome| {
                    let WriteOutcome::Tokenized(insert) = outcome else {
                        return Vec::new();
                    };
                    let mut events = side_records(&alarms, &ctx, insert, now);
                    let round = read_round(&pending, &drawn, &insert.rows, now);
                    if round.again.is_empty() {
                        for (index, note) in round.notes {
                            set(&mut notes, index, note);
                        }
                        events.push(record(&settled(notes)));
                    }
                    events
                }
            };
            let write = AuditedWrite::Tokenize {
                rows: rows.clone(),
                now,
            };
            let insert = match self.trail.write_records(write, finish).await? {
                WriteOutcome::Tokenized(insert) => insert,
                _ => return Err(StoreError::Corrupt("tokenize outcome").into()),
            };
            self.alarms.observe_locks(&insert.locked);
            let round = read_round(&pending, &drawn, &insert.rows, now);
            for (index, note) in round.notes {
                set(&mut notes, index, note);
            }
            for ((p, row), outcome) in pending.iter().zip(rows).zip(insert.rows) {
                let result = match outcome {
                    RowOutcome::Inserted => Ok(view(
                        row.token,
                        row.format,
                        row.masked,
                        row.metadata,
                        row.created_at,
                        row.expires_at,
                        true,
                    )),
                    RowOutcome::Existing(record) => {
                        let asked = items.get(p.index).and_then(|i| i.metadata.as_ref());
                        existing_view(*record, now).map(|mut view| {
                            view.metadata_ignored =
                                asked.is_some_and(|asked| view.metadata.as_ref() != Some(asked));
                            view
                        })
                    }
                    RowOutcome::Refused { until } => {
                        Err(TokenError::EnumerationSuspected(retry_after(now, until)))
                    }
                    RowOutcome::Collided if p.draws >= MAX_DRAWS => Err(TokenError::SpaceExhausted),
                    RowOutcome::Collided | RowOutcome::Withdrawn => continue,
                };
                set(&mut results, p.index, result);
            }
            pending = round.again;
        }
        Ok(finished(results))
    }

    /// Draws fresh, mutually distinct tokens for the pending items and seals their PANs.
    async fn seal_new_rows(
        &self,
        tenant: TenantId,
        items: &[TokenizeItem],
        pending: &[Pending],
        allowance: Allowance,
        now: DateTime<Utc>,
    ) -> Result<Vec<NewToken>, TokenError> {
        let mut drawn: HashSet<Token> = HashSet::with_capacity(pending.len());
        let mut rows = Vec::with_capacity(pending.len());
        for p in pending {
            let Some(item) = items.get(p.index) else {
                continue;
            };
            let mut token = self.draw(item)?;
            // Two items of one statement must not share a value, or one would shadow the other.
            for _ in 0..MAX_DRAWS {
                if !drawn.contains(&token) {
                    break;
                }
                token = self.draw(item)?;
            }
            drawn.insert(token.clone());
            let sealed = self.keys.seal_pan(tenant, &token, &item.pan).await?;
            rows.push(NewToken {
                tenant,
                token,
                format: item.format,
                fingerprint: p.fingerprint.clone(),
                sealed,
                masked: item.pan.masked(),
                metadata: item.metadata.clone(),
                created_at: now,
                expires_at: item.expires_at.map(micros),
                bucket: p.bucket,
                allowance,
            });
        }
        Ok(rows)
    }

    fn draw(&self, item: &TokenizeItem) -> Result<Token, TokenError> {
        item.format
            .generate(&item.pan, self.rng.as_ref())
            .map_err(|e| TokenError::Key(KeyError::Crypto(e.into())))
    }

    /// A live token of the tenant.
    async fn lookup_view(&self, tenant: TenantId, token: &Token) -> Result<TokenView, TokenError> {
        let record = self
            .store
            .get_token(tenant, token)
            .await?
            .ok_or(TokenError::NotFound)?;
        existing_view(record, micros(self.clock.now()))
    }

    /// The PANs of live tokens of the tenant, in order. The caller has already authorized the
    /// call under a grant; a deleted or unknown token is not found, an expired one is gone.
    pub async fn reveal(&self, tenant: TenantId, tokens: &[Token]) -> Result<Vec<Pan>, TokenError> {
        let now = micros(self.clock.now());
        let records = self.store.get_tokens(tenant, tokens).await?;
        let mut pans = Vec::with_capacity(tokens.len());
        for (token, record) in tokens.iter().zip(records) {
            let record = record.ok_or(TokenError::NotFound)?;
            if record.deleted_at.is_some() {
                return Err(TokenError::NotFound);
            }
            if record.sealed.is_none() {
                return Err(gone(&record));
            }
            let sealed = match record.sealed {
                Some(sealed) if !is_expired_at(record.expires_at, now) => sealed,
                _ => return Err(TokenError::Expired),
            };
            match self.keys.open_pan(tenant, token, &sealed).await {
                Ok(pan) => pans.push(pan),
                Err(KeyError::Integrity) => {
                    // Named, counted and logged (by tenant and key version, never a value), so
                    // an operator can alert on it; the use case records it with its code.
                    self.alarms.observe_integrity_failure();
                    tracing::error!(
                        tenant = %tenant,
                        key_version = sealed.version,
                        "a sealed card number failed its integrity check"
                    );
                    return Err(KeyError::Integrity.into());
                }
                // A row written while its tenant was being shredded, not yet swept: its key is
                // gone, and so is it.
                Err(KeyError::TenantShredded) => return Err(TokenError::Destroyed),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(pans)
    }

    /// Destroys the card data of expired tokens, recording each (`token.purge`, under its
    /// tenant, by the vault); returns how many.
    pub async fn purge_expired(&self) -> Result<u64, TokenError> {
        let now = micros(self.clock.now());
        let mut total = 0;
        loop {
            let purged = self.store.purge_expired(now, PURGE_BATCH).await?;
            let n = purged.len();
            for (tenant, token) in purged {
                let event = purge_event(tenant, &token, self.clock.now());
                if self.trail.record(event).await.is_err() {
                    tracing::warn!("a token purge could not be recorded");
                }
            }
            total += u64::try_from(n).unwrap_or(u64::MAX);
            if n < usize::try_from(PURGE_BATCH).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }
}

/// The records a tokenize round leaves whether or not it settles its call: the locks it set
/// and the expired tokens it destroyed to make way for a fresh one.
fn side_records(
    alarms: &Alarms,
    ctx: &RequestContext,
    insert: &TokenInsert,
    now: DateTime<Utc>,
) -> Vec<AuditEvent> {
    let locks = insert
        .locked
        .iter()
        .map(|lock| alarms.lock_event(ctx, lock));
    let purges = insert
        .purged
        .iter()
        .map(|(tenant, token)| purge_event(*tenant, token, now));
    locks.chain(purges).collect()
}

/// The record of an expired token's card data destroyed, by the vault.
fn purge_event(tenant: TenantId, token: &Token, at: DateTime<Utc>) -> AuditEvent {
    let mut event = AuditEvent::new(Action::TokenPurge, at);
    event.tenant = Some(tenant);
    event.tokens.push(token.as_str().to_owned());
    event.detail = Some("expired".to_owned());
    event
}

/// Every item's note, once each is settled.
fn settled(notes: Vec<Option<ItemNote>>) -> Vec<ItemNote> {
    notes
        .into_iter()
        .map(|n| n.unwrap_or(ItemNote::Refused(ItemRefusal::SpaceExhausted)))
        .collect()
}

/// Every item's answer, once each is settled.
fn finished(
    results: Vec<Option<Result<TokenView, TokenError>>>,
) -> Vec<Result<TokenView, TokenError>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(TokenError::SpaceExhausted)))
        .collect()
}

fn set<T>(results: &mut [Option<T>], index: usize, value: T) {
    if let Some(slot) = results.get_mut(index) {
        *slot = Some(value);
    }
}

fn is_expired_at(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_some_and(|at| at <= now)
}

/// Whether a token can be deleted: one that does not exist or was deleted does not exist;
/// one whose card data is already destroyed (purged) is gone. An expired one not yet purged is
/// deleted like a live one.
fn deletable(record: Option<TokenRecord>) -> Result<(), TokenError> {
    let record = record.ok_or(TokenError::NotFound)?;
    if record.deleted_at.is_some() {
        return Err(TokenError::NotFound);
    }
    if record.sealed.is_none() {
        return Err(gone(&record));
    }
    Ok(())
}

/// Why a token that is not deleted has no card data: it expired (and was purged), or it was
/// destroyed with its tenant's keys — the one destruction that is neither a delete nor expiry.
fn gone(record: &TokenRecord) -> TokenError {
    let expired = record
        .expires_at
        .is_some_and(|at| record.destroyed_at.is_none_or(|destroyed| at <= destroyed));
    if expired {
        TokenError::Expired
    } else {
        TokenError::Destroyed
    }
}

/// The view of a stored token: deleted ones do not exist, expired ones are gone.
fn existing_view(record: TokenRecord, now: DateTime<Utc>) -> Result<TokenView, TokenError> {
    if record.deleted_at.is_some() {
        return Err(TokenError::NotFound);
    }
    if record.sealed.is_none() {
        return Err(gone(&record));
    }
    match (record.sealed, record.masked) {
        (Some(_), Some(masked)) if record.expires_at.is_none_or(|at| at > now) => Ok(view(
            record.token,
            record.format,
            masked,
            record.metadata,
            record.created_at,
            record.expires_at,
            false,
        )),
        _ => Err(TokenError::Expired),
    }
}

fn view(
    token: Token,
    format: TokenFormat,
    masked: MaskedPan,
    metadata: Option<Metadata>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    created: bool,
) -> TokenView {
    TokenView {
        token,
        format,
        masked,
        metadata,
        created_at,
        expires_at,
        created,
        metadata_ignored: false,
    }
}

/// Times are stored with microsecond precision; answers must match what a later read returns.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(at)
}
