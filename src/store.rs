//! Storage: narrow traits for what the services need, and their implementations: PostgreSQL
//! (production) and SQLite (the embedded store), held to one conformance suite.
//!
//! The traits speak domain types and never see a plaintext PAN: only sealed bytes, masked
//! forms and fingerprints cross this boundary. An embedded implementation fits behind the same
//! traits. Errors carry no row data.

pub mod access;
pub mod audit;
pub mod dialect;
pub mod guard;
mod keys;
pub mod postgres;
mod principals;
mod rows;
pub mod sqlite;
mod tokens;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use zeroize::Zeroizing;

use crate::crypto::api_key::KeyHash;
use crate::crypto::fingerprint::Fingerprint;
use crate::crypto::keys::SealedPan;
use crate::crypto::session::SessionHash;
use crate::domain::{
    Allowance, BucketId, MaskedPan, Metadata, Principal, PrincipalId, Role, TenantId, Token,
    TokenFormat,
};

pub use crate::domain::guard::BucketLocked;
pub use access::{AccessStore, DecideOutcome, RequestFilter, UseOutcome};
pub use audit::{AuditQuery, AuditStore, AuditedWrite, RecordBuilder, WriteOutcome};
pub use guard::{BucketLockRecord, GuardStore, RowOutcome, TokenInsert};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Why a store operation failed. Messages name constraints and operations, never values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error.
    #[error("database error: {}", describe(.0))]
    Database(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A principal of that name already exists in the tenant.
    #[error("a principal with that name already exists in the tenant")]
    PrincipalExists,
    /// A row held a value this version cannot read (e.g. an unknown role or format).
    #[error("stored data is not understood: {0}")]
    Corrupt(&'static str),
    /// The tenant was shredded: nothing is created in it again.
    #[error("the tenant was shredded; nothing is created in it again")]
    TenantShredded,
    /// Rows a change depends on changed while it was prepared; nothing was written.
    #[error("{0} changed meanwhile; nothing was written")]
    Changed(&'static str),
    /// The database could not be reached or opened at start: where, why and what to do,
    /// never the URL's password.
    #[error("{0}")]
    Connect(String),
}

/// A driver's error as an operator reads it: the server's message and SQLSTATE, without the
/// place in PostgreSQL's own source that the driver appends ("at line 3655"), and what to do
/// about a missing privilege.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let hint = if code == "42501" {
                ": the role in DATABASE_URL lacks a privilege (`migrate` runs as the schema's \
                 owner; `serve` and the other commands as a role granted what the README's \
                 production section grants)"
            } else {
                ""
            };
            format!("{} (SQLSTATE {code}){hint}", db.message())
        }
        other => other.to_string(),
    }
}

impl StoreError {
    /// Whether the database refused for want of a privilege (SQLSTATE 42501).
    pub fn is_permission_denied(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("42501"))
    }

    /// Whether the database is unreachable, overloaded or stalled right now — a condition that
    /// passes, answered `503` with `Retry-After` — rather than a fault of this request or of the
    /// data: a pool with no free connection in time, a connection that failed or was cut, a
    /// server shutting down or out of resources, a statement timeout or cancellation, a lock
    /// not granted, a serialization failure or deadlock, SQLite's busy database.
    pub fn is_unavailable(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                let code = code.as_ref();
                // PostgreSQL SQLSTATE classes 08 (connection), 53 (resources), 57 (operator
                // intervention: admin shutdown, statement timeout, cancel), 55000 (a database
                // not accepting connections), 55P03 (lock not available), 40001 / 40P01
                // (serialization failure, deadlock); SQLite 5 / 6 (busy, locked) and their
                // extended codes.
                ["08", "53", "57"].iter().any(|c| code.starts_with(c))
                    || matches!(
                        code,
                        "55000" | "55P03" | "40001" | "40P01" | "5" | "6" | "261" | "517"
                    )
            }),
            _ => false,
        }
    }
}

/// A token row to insert, already sealed.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Its tenant.
    pub tenant: TenantId,
    /// The token value.
    pub token: Token,
    /// Its format.
    pub format: TokenFormat,
    /// The keyed fingerprint of the PAN, for deterministic tokenization.
    pub fingerprint: Fingerprint,
    /// The PAN, sealed for this row.
    pub sealed: SealedPan,
    /// The masked PAN.
    pub masked: MaskedPan,
    /// Caller metadata.
    pub metadata: Option<Metadata>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops being usable.
    pub expires_at: Option<DateTime<Utc>>,
    /// The PAN's bucket (first six, last four, length) for the enumeration guard.
    pub bucket: BucketId,
    /// The budget a new PAN counts against.
    pub allowance: Allowance,
}

/// A stored token. `sealed` and `masked` are gone once it is deleted or purged.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// Its tenant.
    pub tenant: TenantId,
    /// The token value.
    pub token: Token,
    /// Its format.
    pub format: TokenFormat,
    /// The sealed PAN, unless destroyed.
    pub sealed: Option<SealedPan>,
    /// The masked PAN, unless destroyed.
    pub masked: Option<MaskedPan>,
    /// Caller metadata.
    pub metadata: Option<Metadata>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops being usable.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was deleted by a caller.
    pub deleted_at: Option<DateTime<Utc>>,
    /// When its card data was destroyed: by a delete, by expiry, or with its tenant's keys.
    pub destroyed_at: Option<DateTime<Utc>>,
}

/// Token rows: deterministic lookup by fingerprint, read, destroy. New rows are inserted with
/// their call's audit record ([`AuditedWrite::Tokenize`]), never on their own.
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The live (not destroyed) token of each `(format, fingerprint)` in one tenant, if any.
    async fn find_by_fingerprints(
        &self,
        tenant: TenantId,
        keys: &[(TokenFormat, Fingerprint)],
    ) -> Result<Vec<Option<TokenRecord>>, StoreError>;

    /// One token of one tenant, destroyed or not.
    async fn get_token(
        &self,
        tenant: TenantId,
        token: &Token,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// Several tokens of one tenant in one round trip, in the order asked; `None` where there
    /// is no such token.
    async fn get_tokens(
        &self,
        tenant: TenantId,
        tokens: &[Token],
    ) -> Result<Vec<Option<TokenRecord>>, StoreError>;

    /// Destroys a live token's ciphertext, fingerprint and masked PAN; the row stays so the
    /// value is never issued again. Returns whether a live token was destroyed.
    async fn delete_token(
        &self,
        tenant: TenantId,
        token: &Token,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Destroys one token if it has expired at `now`; returns whether it did.
    async fn destroy_if_expired(
        &self,
        tenant: TenantId,
        token: &Token,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Destroys up to `limit` tokens expired at `now`; returns which.
    async fn purge_expired(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(TenantId, Token)>, StoreError>;
}

/// A principal to create.
#[derive(Debug, Clone)]
pub struct NewPrincipal {
    /// Its id.
    pub id: PrincipalId,
    /// The tenant's name; the tenant is created if new.
    pub tenant_name: String,
    /// The principal's name, unique in the tenant.
    pub name: String,
    /// Its roles, already validated.
    pub roles: Vec<Role>,
    /// The hash of its API key.
    pub key_hash: KeyHash,
    /// When its key stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Its TOTP secret, sealed by the key service, if it has a second factor.
    pub sealed_totp: Option<Vec<u8>>,
}

/// A principal's second factor and the state that refuses replays and guessing.
#[derive(Debug, Clone)]
pub struct TotpState {
    /// The sealed secret.
    pub sealed: Vec<u8>,
    /// When failures locked it, until then.
    pub locked_until: Option<DateTime<Utc>>,
}

/// A person's console session as it starts. Only the SHA-256 of its token is stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The SHA-256 of the session's token.
    pub token_hash: SessionHash,
    /// Whose it is.
    pub principal: PrincipalId,
    /// Their tenant.
    pub tenant: TenantId,
    /// When it starts.
    pub created_at: DateTime<Utc>,
    /// When it ends unless used before.
    pub idle_expires_at: DateTime<Utc>,
    /// When it ends whatever happens.
    pub expires_at: DateTime<Utc>,
}

/// A live console session's principal and limits.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// Whose it is, as authentication sees them.
    pub principal: PrincipalRecord,
    /// When it ends unless used before.
    pub idle_expires_at: DateTime<Utc>,
    /// When it ends whatever happens.
    pub expires_at: DateTime<Utc>,
}

/// A principal as authentication sees it.
#[derive(Debug, Clone)]
pub struct PrincipalRecord {
    /// The principal.
    pub principal: Principal,
    /// When its key stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was disabled.
    pub disabled_at: Option<DateTime<Utc>>,
}

/// A principal as an administrator lists it: with its tenant's name, when it was made and
/// its second factor's state. Never its key's hash nor its TOTP secret.
#[derive(Debug, Clone)]
pub struct PrincipalListing {
    /// The principal, its key's expiry and when it was disabled.
    pub record: PrincipalRecord,
    /// Its tenant's name.
    pub tenant_name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Whether it has a TOTP second factor.
    pub second_factor: bool,
    /// Until when its second factor is locked after wrong codes, if it is.
    pub totp_locked_until: Option<DateTime<Utc>>,
}

/// Tenants and principals.
#[async_trait]
pub trait PrincipalStore: Send + Sync {
    /// Every principal of the tenant named `tenant`, or of every tenant, by tenant and name.
    async fn list_principals(
        &self,
        tenant: Option<&str>,
    ) -> Result<Vec<PrincipalListing>, StoreError>;

    /// Creates the tenant if new, then the principal.
    async fn create_principal(&self, new: &NewPrincipal) -> Result<PrincipalRecord, StoreError>;

    /// The principal whose key hashes to `hash`.
    async fn principal_by_key_hash(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<PrincipalRecord>, StoreError>;

    /// Disables a principal's key; returns whether it existed and was enabled.
    async fn disable_principal(
        &self,
        id: PrincipalId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The principal's second factor, if it has one.
    async fn totp_state(&self, id: PrincipalId) -> Result<Option<TotpState>, StoreError>;

    /// Accepts a code of time step `step` if no code of that step or a later one was accepted
    /// before and the factor is not locked at `now`; clears the failure count. One statement, so
    /// a code is accepted once across every instance.
    async fn accept_totp_step(
        &self,
        id: PrincipalId,
        step: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Counts a wrong code; the `max_failures`-th in a row locks the factor until `lock_until`.
    async fn record_totp_failure(
        &self,
        id: PrincipalId,
        max_failures: u32,
        lock_until: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Lifts a second factor's lock and clears its failure count (an admin's decision); returns
    /// whether the principal has a second factor.
    async fn unlock_totp(&self, id: PrincipalId) -> Result<bool, StoreError>;

    /// The console session whose token hashes to `token_hash`, if it is live at `now` (not
    /// ended, neither limit passed). With `idle_until`, its idle limit first moves there (never
    /// past its absolute limit): the person did something.
    async fn live_session(
        &self,
        token_hash: &SessionHash,
        now: DateTime<Utc>,
        idle_until: Option<DateTime<Utc>>,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// The names of the tenant's principals among `ids`; ids of no principal of the tenant are
    /// left out.
    async fn principal_names(
        &self,
        tenant: TenantId,
        ids: &[PrincipalId],
    ) -> Result<Vec<(PrincipalId, String)>, StoreError>;
}

/// A wrapped data-encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    /// Its version.
    pub version: u32,
    /// The key wrapped by the master key.
    pub wrapped: Vec<u8>,
    /// Whether it seals through each tenant's key (every version made since tenant keys).
    pub tenant_bound: bool,
}

impl WrappedDataKey {
    /// The label it is wrapped under, which says which kind of key it is.
    pub fn label(&self) -> String {
        if self.tenant_bound {
            crate::crypto::keys::tenant_bound_dek_label(self.version)
        } else {
            crate::crypto::keys::dek_label(self.version)
        }
    }
}

impl std::fmt::Debug for WrappedDataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedDataKey")
            .field("version", &self.version)
            .field("tenant_bound", &self.tenant_bound)
            .finish_non_exhaustive()
    }
}

/// A tenant's key as stored.
#[derive(Clone)]
pub struct StoredTenantKey {
    /// The key wrapped by the master key; `None` once the tenant was shredded.
    pub wrapped: Option<Vec<u8>>,
    /// Whether the tenant's fingerprints are under its own key (false: it had tokens before
    /// tenant keys, and its fingerprints stay under the vault-wide root).
    pub own_fingerprints: bool,
}

impl std::fmt::Debug for StoredTenantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTenantKey")
            .field("destroyed", &self.wrapped.is_none())
            .field("own_fingerprints", &self.own_fingerprints)
            .finish_non_exhaustive()
    }
}

/// Every wrapped key and secret, each with its wrapping under the current master key and
/// under the new one: what `strongroom keys rewrap` replaces in one transaction.
#[derive(Default, Clone)]
pub struct Rewrap {
    /// Data keys: as stored now, and wrapped anew.
    pub data_keys: Vec<(WrappedDataKey, Vec<u8>)>,
    /// Secrets: name, wrapped now, wrapped anew.
    pub secrets: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Grant-signing keys: kid, wrapped now, wrapped anew.
    pub signing_keys: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// Tenant keys not destroyed: tenant, wrapped now, wrapped anew.
    pub tenant_keys: Vec<(TenantId, Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for Rewrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewrap")
            .field("data_keys", &self.data_keys.len())
            .field("secrets", &self.secrets.len())
            .field("signing_keys", &self.signing_keys.len())
            .field("tenant_keys", &self.tenant_keys.len())
            .finish()
    }
}

/// What shredding a tenant destroyed and stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shredded {
    /// The tenant.
    pub tenant: TenantId,
    /// Live tokens whose card data was destroyed.
    pub tokens: u64,
    /// Unexpired grants revoked.
    pub grants: u64,
    /// Principals disabled.
    pub principals: u64,
    /// Pending access requests expired.
    pub requests: u64,
}

/// A grant-signing key as stored: the private key wrapped by the master key, and when it signs
/// (see [`crate::domain::SigningKeyPhase`]).
#[derive(Clone)]
pub struct StoredSigningKey {
    /// Its `kid`.
    pub kid: String,
    /// Its JWS algorithm.
    pub algorithm: String,
    /// The PKCS#8 private key, wrapped.
    pub wrapped: Vec<u8>,
    /// The raw public key.
    pub public_key: Vec<u8>,
    /// When it starts signing; `None`: since it was made (the first key).
    pub activates_at: Option<DateTime<Utc>>,
    /// When it stops signing, once a rotation has named its successor. Read only: a key is
    /// always inserted unretired.
    pub retired_at: Option<DateTime<Utc>>,
}

// Names and times only: the wrapped key stays out of logs even though it is sealed.
impl std::fmt::Debug for StoredSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("activates_at", &self.activates_at)
            .field("retired_at", &self.retired_at)
            .finish_non_exhaustive()
    }
}

/// What a grant-signing key rotation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigningKeyRotation {
    /// The new key is in, pending until its `activates_at`; the key that signed until now
    /// (this `kid`) retires at that moment.
    Rotated {
        /// The `kid` of the key it replaces.
        retired: String,
    },
    /// Another rotation's key is still pending: nothing was changed, so that two keys are never
    /// pending at once.
    Pending {
        /// The pending key.
        kid: String,
        /// When it starts signing.
        activates_at: DateTime<Utc>,
    },
    /// No key was left to retire: another rotation committed first (or the vault has no
    /// signing key yet). Nothing was changed.
    Raced,
}

/// What an operator is shown of one data key: never its material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKeyState {
    /// Its version.
    pub version: u32,
    /// Encryptions reserved under it by all instances (may over-count, never under-count).
    pub encryptions: u64,
    /// Token rows whose card number is sealed under it now.
    pub rows: u64,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stopped sealing, if it has.
    pub retired_at: Option<DateTime<Utc>>,
    /// When it was destroyed (`strongroom keys destroy`), if it was: it opens nothing since.
    pub destroyed_at: Option<DateTime<Utc>>,
}

/// A token's sealed card number, read to be sealed again under the active data key.
#[derive(Debug, Clone)]
pub struct SealedRow {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its token.
    pub token: Token,
    /// The card number as sealed now (its version says under which key).
    pub sealed: SealedPan,
}

/// A row's card number sealed again under the active data key, to replace what was sealed
/// under `from` (and only that: a row deleted or moved meanwhile is left as it is).
#[derive(Debug, Clone)]
pub struct ResealedRow {
    /// Its tenant.
    pub tenant: TenantId,
    /// Its token.
    pub token: Token,
    /// The version it was sealed under.
    pub from: u32,
    /// The card number sealed under the active key.
    pub sealed: SealedPan,
}

/// What became of destroying a data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDestruction {
    /// Destroyed now.
    Destroyed,
    /// Refused: rows are still sealed under it (re-encrypt them first).
    RowsRemain(u64),
    /// Refused: it still seals (it is the newest key, or not retired).
    StillActive,
    /// Refused: no data key has that version, or it was destroyed already.
    NotFound,
    /// Refused: it retired so recently (at this time) that a serving instance may not have
    /// seen the rotation yet and still seal under it.
    RecentlyRetired(DateTime<Utc>),
}

/// What an operator is shown of one grant-signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyState {
    /// Its `kid`.
    pub kid: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it starts (or started) signing; `None`: since it was made.
    pub activates_at: Option<DateTime<Utc>>,
    /// When it stops (or stopped) signing, if a rotation has named its successor.
    pub retired_at: Option<DateTime<Utc>>,
    /// Whether instances publish it (in the JWKS) and verify with it: see
    /// [`KeyStore::signing_keys`].
    pub published: bool,
}

/// What an operator is shown of one tenant's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantKeyState {
    /// The tenant.
    pub tenant: TenantId,
    /// Its name.
    pub name: String,
    /// When its key was made.
    pub created_at: DateTime<Utc>,
    /// When it was destroyed (the tenant shredded), if it was.
    pub destroyed_at: Option<DateTime<Utc>>,
}

/// Every key and wrapped secret the vault holds, as an operator sees them: names, versions,
/// states and counts, never material.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyInventory {
    /// Data keys, oldest first.
    pub data_keys: Vec<DataKeyState>,
    /// Grant-signing keys, in the order they sign (by when they activate).
    pub signing_keys: Vec<SigningKeyState>,
    /// Other wrapped secrets: name and when made, by name.
    pub secrets: Vec<(String, DateTime<Utc>)>,
    /// Tenants' keys, by tenant name.
    pub tenant_keys: Vec<TenantKeyState>,
}

/// Wrapped keys and secrets, and the shared count of encryptions per DEK.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every key and secret with its state at `now`; the rows under each data key are counted
    /// (a scan of the token table's key column, for an operator's command, not a request).
    async fn key_inventory(&self, now: DateTime<Utc>) -> Result<KeyInventory, StoreError>;

    /// Every DEK not destroyed, oldest first.
    async fn data_keys(&self) -> Result<Vec<WrappedDataKey>, StoreError>;

    /// A tenant's key, if it has one (made at its first card number).
    async fn tenant_key(&self, tenant: TenantId) -> Result<Option<StoredTenantKey>, StoreError>;

    /// Stores a tenant's first key unless it has one (another instance made it first, or the
    /// tenant was shredded); returns whether it did. Its fingerprints are its own unless it
    /// already has tokens.
    /// `witness` is as for [`KeyStore::insert_data_key`].
    async fn insert_tenant_key(
        &self,
        tenant: TenantId,
        wrapped: &[u8],
        witness: &WrappedDataKey,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The tenants whose keys were destroyed.
    async fn shredded_tenants(&self) -> Result<Vec<TenantId>, StoreError>;

    /// Every wrapped key and secret (tenant keys not destroyed), for a rewrap.
    async fn wrapped_keys(&self) -> Result<Rewrap, StoreError>;

    /// The highest DEK version ever made, destroyed ones included (the next is one more).
    async fn newest_data_key_version(&self) -> Result<u32, StoreError>;

    /// How many live rows are sealed under a data key older than `active`.
    async fn rows_to_reencrypt(&self, active: u32) -> Result<u64, StoreError>;

    /// Up to `limit` live rows sealed under a data key older than `active`, in (tenant, token)
    /// order after `after`: a walk that each row is met by once. (Older only: a row a newer
    /// key sealed, one this walk has not heard of yet, is never moved back.)
    async fn rows_under_older_keys(
        &self,
        active: u32,
        after: Option<&(TenantId, Token)>,
        limit: u32,
    ) -> Result<Vec<SealedRow>, StoreError>;

    /// When a DEK version was made, if it exists.
    async fn data_key_created(&self, version: u32) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Adds a DEK version unless another instance added it first; returns whether it did.
    /// `witness`, when given, is a data key as the caller read it and found it opens under its
    /// master key: the insert happens only while it is still stored so (otherwise
    /// [`StoreError::Changed`]), so no key is wrapped under a master key a rewrap replaced.
    async fn insert_data_key(
        &self,
        key: &WrappedDataKey,
        witness: Option<&WrappedDataKey>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Reserves `count` encryptions under `version` if that keeps its total at or below
    /// `limit`; otherwise marks it retired and returns false. Shared by all instances.
    async fn reserve_encryptions(
        &self,
        version: u32,
        count: u32,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// A wrapped secret by name.
    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores a wrapped secret unless one of that name exists; returns whether it did.
    async fn insert_secret(
        &self,
        name: &str,
        wrapped: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Every grant-signing key published at `now`, in the order they sign (by when they
    /// activate): each unretired one (pending or active), each retired after `now`, and each
    /// that is the `kid` of a grant unexpired at `now`, revoked or not (a revoked grant
    /// presented is then refused as revoked, not as a bad signature). Only these verify grants
    /// and appear in the JWKS.
    async fn signing_keys(&self, now: DateTime<Utc>) -> Result<Vec<StoredSigningKey>, StoreError>;

    /// Adds a signing key unless an unretired one exists (another instance won the race);
    /// returns whether it did.
    async fn insert_signing_key(
        &self,
        key: &StoredSigningKey,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// Where the schema stands against the migrations this binary carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// Every migration is applied.
    Current,
    /// Some are not: `strongroom migrate` must run first.
    Behind {
        /// How many are missing.
        pending: usize,
    },
    /// An applied migration differs from this binary's copy.
    Modified {
        /// Its version.
        version: i64,
    },
}

/// The database as a whole.
#[async_trait]
pub trait Database: Send + Sync {
    /// Whether it answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Where the schema stands.
    async fn schema_status(&self) -> Result<SchemaStatus, StoreError>;

    /// Applies every pending migration.
    async fn migrate(&self) -> Result<(), StoreError>;
}

/// Where a schema stands, from the migrations applied to it.
fn schema_status(
    migrator: &sqlx::migrate::Migrator,
    applied: &[rows::AppliedMigration],
) -> SchemaStatus {
    let applied: std::collections::HashMap<i64, &[u8]> = applied
        .iter()
        .map(|m| (m.version, m.checksum.as_slice()))
        .collect();
    let mut pending = 0;
    for migration in migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
    {
        match applied.get(&migration.version) {
            None => pending += 1,
            Some(checksum) if *checksum != &*migration.checksum => {
                return SchemaStatus::Modified {
                    version: migration.version,
                };
            }
            Some(_) => {}
        }
    }
    if pending == 0 {
        SchemaStatus::Current
    } else {
        SchemaStatus::Behind { pending }
    }
}

/// Opens the store a URL names: `postgres://…` (production; any number of instances) or
/// `sqlite://…` (the embedded store: one node).
pub async fn open(url: &DatabaseUrl, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    open_waiting(url, max_connections, DEFAULT_ACQUIRE_WAIT).await
}

/// How long a caller waits for a free connection unless told otherwise.
pub const DEFAULT_ACQUIRE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A server's store: a request never waits for a connection, nor PostgreSQL for a statement,
/// longer than `request_timeout`.
pub async fn open_serving(
    url: &DatabaseUrl,
    max_connections: u32,
    request_timeout: std::time::Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    url.check().map_err(StoreError::Connect)?;
    let embedded = url.is_embedded();
    let url = url.expose();
    if embedded {
        Ok(Arc::new(
            SqliteStore::connect_waiting(url, max_connections, request_timeout).await?,
        ))
    } else {
        Ok(Arc::new(
            PgStore::connect_serving(url, max_connections, request_timeout).await?,
        ))
    }
}

/// [`open`], where a caller waits at most `acquire_wait` for a free connection.
pub async fn open_waiting(
    url: &DatabaseUrl,
    max_connections: u32,
    acquire_wait: std::time::Duration,
) -> Result<Arc<dyn Store>, StoreError> {
    url.check().map_err(StoreError::Connect)?;
    let embedded = url.is_embedded();
    let url = url.expose();
    if embedded {
        Ok(Arc::new(
            SqliteStore::connect_waiting(url, max_connections, acquire_wait).await?,
        ))
    } else {
        Ok(Arc::new(
            PgStore::connect_waiting(url, max_connections, acquire_wait).await?,
        ))
    }
}

/// Where the database is: a URL that may hold a password. Wiped on drop, never printed (its
/// `Debug` is redacted).
#[derive(Clone)]
pub struct DatabaseUrl(Zeroizing<String>);

impl DatabaseUrl {
    /// The URL, for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Refuses a URL that names neither engine, naming its scheme only.
    pub fn check(&self) -> Result<(), String> {
        check_engine(self.expose())
    }

    /// The PostgreSQL user it connects as, if it names one.
    pub fn user(&self) -> Option<String> {
        if self.is_embedded() {
            return None;
        }
        let options: sqlx::postgres::PgConnectOptions = self.expose().parse().ok()?;
        Some(options.get_username().to_owned())
    }

    /// Whether it names the embedded store (SQLite) rather than PostgreSQL.
    pub fn is_embedded(&self) -> bool {
        self.0.starts_with("sqlite:")
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(Zeroizing::new(url))
    }
}

/// The engines a URL may name, as the command line's messages list them.
pub const ENGINES: &str = "postgres://USER:PASSWORD@HOST:5432/DATABASE (PostgreSQL: production, \
     any number of instances) or sqlite:///PATH/vault.db (the embedded store: one node)";

impl std::str::FromStr for DatabaseUrl {
    type Err = String;

    /// Takes the two engines' URLs only: anything else (a `mysql://` URL) would otherwise be
    /// read as PostgreSQL's and fail with a driver's message. The refusal names the scheme,
    /// never the URL, which may hold a password.
    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let url = url.trim();
        check_engine(url)?;
        Ok(DatabaseUrl(Zeroizing::new(url.to_owned())))
    }
}

/// Whether `url` names one of the two engines; the refusal names its scheme only.
fn check_engine(url: &str) -> Result<(), String> {
    let scheme = url
        .trim()
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql" | "sqlite") => Ok(()),
        Some(scheme)
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            Err(format!(
                "unsupported database URL scheme `{scheme}:`; Strongroom stores in {ENGINES}"
            ))
        }
        _ => Err(format!("not a database URL; expected {ENGINES}")),
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

/// Everything the vault stores.
pub trait Store:
    TokenStore + PrincipalStore + KeyStore + AccessStore + AuditStore + GuardStore + Database
{
}

impl<T: TokenStore + PrincipalStore + KeyStore + AccessStore + AuditStore + GuardStore + Database>
    Store for T
{
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_of_another_engine_is_refused_by_scheme_never_echoed() {
        for url in [
            "postgres://a@b/c",
            "postgresql://a@b/c",
            "sqlite:///tmp/v.db",
            "sqlite::memory:",
        ] {
            assert!(url.parse::<DatabaseUrl>().is_ok(), "{url}");
        }
        let e = "mysql://root:hunter2@db/vault"
            .parse::<DatabaseUrl>()
            .unwrap_err();
        assert!(
            e.contains("`mysql:`") && e.contains("postgres://") && e.contains("sqlite://"),
            "{e}"
        );
        assert!(!e.contains("hunter2") && !e.contains("db/vault"), "{e}");
        let e = "hunter2".parse::<DatabaseUrl>().unwrap_err();
        assert!(
            e.starts_with("not a database URL") && !e.contains("hunter2"),
            "{e}"
        );
        let e = "user:hunter2@db".parse::<DatabaseUrl>().unwrap_err();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn a_database_url_never_prints() {
        let url: DatabaseUrl = "postgres://vault:s3cret-pw@db.internal/strongroom"
            .parse()
            .unwrap();
        assert!(url.expose().contains("s3cret-pw"));
        let shown = format!("{url:?} {:?}", Some(url.clone()));
        assert!(
            !shown.contains("s3cret") && !shown.contains("db.internal"),
            "{shown}"
        );
    }
}
