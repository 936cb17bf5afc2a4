//! What the audit trail stores: chained records, appended in batches and never changed.
//!
//! The database refuses UPDATE, DELETE and TRUNCATE on the table (a trigger), and a deployment
//! can give the service's role only INSERT and SELECT on it. Errors carry no row data.

mod sql;

use async_trait::async_trait;
use uuid::Uuid;

use chrono::{DateTime, Utc};

use super::access::{DecideOutcome, UseOutcome};
use super::{
    KeyDestruction, NewPrincipal, NewSession, NewToken, PrincipalRecord, ResealedRow, Rewrap,
    Shredded, SigningKeyRotation, StoreError, StoredSigningKey, TokenInsert, WrappedDataKey,
};
use crate::domain::access::{Decision, GrantDraft, GrantRecord, NewAccessRequest};
pub use crate::domain::audit::AuditQuery;
use crate::domain::audit::{ChainedEvent, StoredRecord};
use crate::domain::{BucketId, ImportWindow, PrincipalId, TenantId, Token};
pub(super) use sql::audit_store;

/// A write that must commit together with its audit record, or not at all.
#[derive(Debug, Clone)]
pub enum AuditedWrite {
    /// Insert one tokenize call's new rows under the enumeration guard. The tokenize calls of
    /// one transaction go in as one statement; each learns its share (see [`TokenInsert`]).
    Tokenize {
        /// The call's rows, sealed, each value drawn once.
        rows: Vec<NewToken>,
        /// When (the guard counts its window back from here).
        now: DateTime<Utc>,
    },
    /// Take one use of a grant held by `grantee` (see [`crate::store::AccessStore::use_grant`]).
    UseGrant {
        /// The grant's tenant.
        tenant: TenantId,
        /// The grant.
        jti: Uuid,
        /// Who uses it.
        grantee: PrincipalId,
        /// When.
        now: DateTime<Utc>,
    },
    /// Destroy a live token's card data (see [`crate::store::TokenStore::delete_token`]).
    DeleteToken {
        /// Its tenant.
        tenant: TenantId,
        /// The token.
        token: Token,
        /// When.
        now: DateTime<Utc>,
    },
    /// Revoke one grant (see [`crate::store::AccessStore::revoke_grant`]).
    RevokeGrant {
        /// Its tenant.
        tenant: TenantId,
        /// The grant.
        jti: Uuid,
        /// Who revokes it.
        by: PrincipalId,
        /// When.
        now: DateTime<Utc>,
    },
    /// Revoke every active grant of a tenant or of one grantee.
    RevokeAllGrants {
        /// The tenant.
        tenant: TenantId,
        /// Only this grantee's.
        grantee: Option<PrincipalId>,
        /// Who revokes them.
        by: PrincipalId,
        /// When.
        now: DateTime<Utc>,
    },
    /// Insert an access request, with the grant it mints at once if any.
    CreateAccessRequest {
        /// The request.
        request: Box<NewAccessRequest>,
        /// The grant, when a policy approves at once.
        grant: Option<GrantDraft>,
    },
    /// Decide an access request (see [`crate::store::AccessStore::decide_access_request`]).
    DecideAccessRequest {
        /// Its tenant.
        tenant: TenantId,
        /// The request.
        id: Uuid,
        /// The decision.
        decision: Box<Decision>,
        /// The grant an approval that completes the count mints.
        draft: GrantDraft,
    },
    /// Create a principal (and its tenant if new).
    CreatePrincipal(Box<NewPrincipal>),
    /// Disable a principal's key.
    DisablePrincipal {
        /// The principal.
        id: PrincipalId,
        /// When.
        now: DateTime<Utc>,
    },
    /// Lift a principal's second factor's lock.
    UnlockTotp(PrincipalId),
    /// Lift a card bucket's lock after review.
    ReleaseBucket {
        /// The bucket.
        bucket: BucketId,
        /// When.
        now: DateTime<Utc>,
    },
    /// Open an import window for a tokenizer.
    OpenImportWindow {
        /// The window's id.
        id: Uuid,
        /// The importing principal.
        principal: PrincipalId,
        /// New cards per bucket over the window.
        bucket_budget: u32,
        /// When it opens.
        opened_at: DateTime<Utc>,
        /// When it closes by itself.
        closes_at: DateTime<Utc>,
    },
    /// Make `key` (the next version) the active data key; every older one retires: it opens,
    /// never seals again.
    RotateDataKey {
        /// The new key, wrapped.
        key: WrappedDataKey,
        /// The newest stored key as read and opened under the same master key: the rotation
        /// happens only while it is still stored so (not after a rewrap).
        witness: Option<WrappedDataKey>,
        /// When.
        now: DateTime<Utc>,
    },
    /// Replace rows' card numbers sealed under retired data keys with the same numbers sealed
    /// under the active one (`strongroom keys reencrypt`, or `serve` in the background).
    Reencrypt {
        /// The rows.
        rows: Vec<ResealedRow>,
    },
    /// Destroy a retired data key under which no row is sealed any more.
    DestroyDataKey {
        /// Its version.
        version: u32,
        /// It must have retired before this time.
        retired_before: DateTime<Utc>,
        /// When.
        now: DateTime<Utc>,
    },
    /// Replace every wrapped key and secret with its wrapping under a new master key, each only
    /// if it is still as read; fails (writing nothing) if any was not, or if any was added.
    Rewrap(Box<Rewrap>),
    /// Destroy a tenant's keys and with them its card data; revoke its grants, disable its
    /// principals, expire its pending requests.
    ShredTenant {
        /// The tenant's name.
        name: String,
        /// When.
        now: DateTime<Utc>,
    },
    /// Destroy the card data of live tokens of shredded tenants: rows a tokenize in flight
    /// wrote as its tenant was shredded (sealed under a key that is gone).
    SweepShredded {
        /// When.
        now: DateTime<Utc>,
    },
    /// Insert `key`, a new grant-signing key pending until its `activates_at` (`None`: `now`),
    /// and retire the key that signs now at that moment (see
    /// [`crate::store::SigningKeyRotation`]).
    RotateSigningKey {
        /// The new key, wrapped.
        key: StoredSigningKey,
        /// The newest data key as read and opened under the same master key: the rotation
        /// happens only while it is still stored so (not after a rewrap).
        witness: Option<WrappedDataKey>,
        /// When.
        now: DateTime<Utc>,
    },
    /// Close an import window early.
    CloseImportWindow {
        /// The window.
        id: Uuid,
        /// When.
        now: DateTime<Utc>,
    },
    /// Start a person's console session.
    StartSession(Box<NewSession>),
    /// End a console session (signed out); ending one already ended changes nothing.
    EndSession {
        /// The SHA-256 of the session's token.
        token_hash: crate::crypto::session::SessionHash,
        /// When.
        now: DateTime<Utc>,
    },
}

/// What an [`AuditedWrite`] came to.
#[derive(Debug, Clone)]
pub enum WriteOutcome {
    /// What became of a tokenize call's rows.
    Tokenized(TokenInsert),
    /// The grant's use, or why none was taken.
    Grant(UseOutcome),
    /// Whether a live token was destroyed.
    Deleted(bool),
    /// The revoked grant, if the tenant has it.
    Revoked(Option<GrantRecord>),
    /// How many grants were revoked.
    RevokedAll(u64),
    /// The request was inserted.
    Created,
    /// What the decision came to.
    Decided(DecideOutcome),
    /// The created principal; `None` when the name is taken in the tenant.
    PrincipalCreated(Option<Box<PrincipalRecord>>),
    /// Nothing was created: the tenant was shredded.
    TenantWasShredded,
    /// Whether the principal was enabled (and is now disabled).
    Disabled(bool),
    /// Whether the principal has a second factor (now unlocked).
    Unlocked(bool),
    /// The released bucket's tenant, if it was locked.
    Released(Option<TenantId>),
    /// The versions a rotation retired; `None` when another rotation made that version first.
    DataKeyRotated(Option<Vec<u32>>),
    /// How many rows were sealed again (the others had been deleted or moved meanwhile).
    Reencrypted(u64),
    /// What became of destroying a data key.
    DataKeyDestroyed(KeyDestruction),
    /// Every wrapped key and secret was rewrapped.
    Rewrapped,
    /// What a shred destroyed; `None`: no such tenant, or shredded already.
    TenantShredded(Option<Shredded>),
    /// Late tokens of shredded tenants destroyed, by tenant.
    SweptShredded(Vec<(TenantId, u64)>),
    /// What a signing key rotation came to.
    SigningKeyRotated(SigningKeyRotation),
    /// The window opened (`None`: no enabled tokenizer of that id), or the one closed (`None`:
    /// not open).
    ImportWindow(Option<ImportWindow>),
    /// The session was started.
    SessionStarted,
    /// Whether a live session was ended.
    SessionEnded(bool),
}

/// Builds the chained records of a batch once its writes' outcomes are known (the records
/// say what happened, and their chain must be in the same transaction).
pub type RecordBuilder<'a> = dyn FnMut(&[WriteOutcome]) -> Vec<ChainedEvent> + Send + 'a;

/// The audit trail's records.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends consecutive records of one chain in one transaction: all or none.
    async fn append_audit(&self, records: &[ChainedEvent]) -> Result<(), StoreError>;

    /// Runs `writes` and appends the records `build` makes from their outcomes, in one
    /// transaction: every write with its record, or nothing at all.
    async fn commit_audited(
        &self,
        writes: &[AuditedWrite],
        build: &mut RecordBuilder<'_>,
    ) -> Result<Vec<WriteOutcome>, StoreError>;

    /// A tenant's refused calls in `[since, until)`, counted by their code.
    async fn refusal_counts(
        &self,
        tenant: TenantId,
        since: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(String, u64)>, StoreError>;

    /// Records matching `query`, newest (highest id) first.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<StoredRecord>, StoreError>;

    /// Whether a record can be appended right now: one is inserted and rolled back, so a
    /// refusing trigger, a permission taken away or a full disk shows here as it would on the
    /// next write. Nothing is kept.
    async fn probe_append(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError>;

    /// Up to `limit` records in chain order (chain id, then seq) after `after`.
    async fn audit_chain_page(
        &self,
        after: Option<(Uuid, u64)>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError>;
}
