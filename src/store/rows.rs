//! Rows as both stores read them, and their conversion into the store's records: one
//! definition, so PostgreSQL and SQLite cannot read the same table differently.
//!
//! Every field's type decodes from both databases; lists are [`TextList`], a `text[]` in
//! PostgreSQL and JSON text in SQLite. Errors name the column, never its value.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Type};
use uuid::Uuid;

use super::{BucketLockRecord, PrincipalRecord, StoreError, TokenRecord};
use crate::crypto::keys::SealedPan;
use crate::domain::access::{AccessRequestRecord, Decision, GrantRecord, NewAccessRequest};
use crate::domain::audit::{AuditEvent, ChainedEvent, HASH_LEN, LinkHash, StoredRecord};
use crate::domain::{
    BucketId, ImportWindow, MaskedPan, Metadata, Principal, PrincipalId, Purpose, Reason, Role,
    TenantId, Token, TokenFormat,
};

/// A list of short strings: `text[]` in PostgreSQL, a JSON array in SQLite.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TextList(pub(super) Vec<String>);

/// A migration sqlx recorded as applied.
#[derive(sqlx::FromRow)]
pub(super) struct AppliedMigration {
    pub(super) version: i64,
    pub(super) checksum: Vec<u8>,
}

impl Type<Postgres> for TextList {
    fn type_info() -> PgTypeInfo {
        <Vec<String> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <Vec<String> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for TextList {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <Vec<String> as Decode<Postgres>>::decode(value).map(TextList)
    }
}

impl Type<Sqlite> for TextList {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'r> Decode<'r, Sqlite> for TextList {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(TextList(serde_json::from_str(text)?))
    }
}

/// Metadata as both engines store it: JSON text.
pub(super) fn metadata_text(metadata: Option<&Metadata>) -> Option<String> {
    metadata.and_then(|m| serde_json::to_string(m.as_map()).ok())
}

pub(super) const TOKEN_COLUMNS: &str = "tenant_id, token, format, sealed_pan, dek_version, masked_pan, metadata, created_at, expires_at, deleted_at, destroyed_at";

#[derive(sqlx::FromRow)]
pub(super) struct TokenRow {
    pub(super) tenant_id: Uuid,
    pub(super) token: String,
    pub(super) format: String,
    pub(super) sealed_pan: Option<Vec<u8>>,
    pub(super) dek_version: Option<i32>,
    pub(super) masked_pan: Option<String>,
    pub(super) metadata: Option<Value>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) expires_at: Option<DateTime<Utc>>,
    pub(super) deleted_at: Option<DateTime<Utc>>,
    pub(super) destroyed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub(super) struct IndexedTokenRow {
    pub(super) idx: i64,
    #[sqlx(flatten)]
    pub(super) row: TokenRow,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, Self::Error> {
        let format = row
            .format
            .parse::<TokenFormat>()
            .map_err(|()| StoreError::Corrupt("token format"))?;
        let sealed = match (row.sealed_pan, row.dek_version) {
            (Some(bytes), Some(version)) => Some(SealedPan {
                version: u32::try_from(version).map_err(|_| StoreError::Corrupt("key version"))?,
                bytes,
            }),
            _ => None,
        };
        let metadata = match row.metadata {
            Some(Value::Object(map)) => Some(Metadata::from_stored(map)),
            Some(_) => return Err(StoreError::Corrupt("token metadata")),
            None => None,
        };
        Ok(TokenRecord {
            tenant: TenantId(row.tenant_id),
            token: Token::from_stored(row.token),
            format,
            sealed,
            masked: row.masked_pan.map(MaskedPan::from_stored),
            metadata,
            created_at: row.created_at,
            expires_at: row.expires_at,
            deleted_at: row.deleted_at,
            destroyed_at: row.destroyed_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct PrincipalRow {
    pub(super) id: Uuid,
    pub(super) tenant_id: Uuid,
    pub(super) name: String,
    pub(super) roles: TextList,
    pub(super) expires_at: Option<DateTime<Utc>>,
    pub(super) disabled_at: Option<DateTime<Utc>>,
    pub(super) lookups_throttled_until: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub(super) struct PrincipalListingRow {
    #[sqlx(flatten)]
    pub(super) principal: PrincipalRow,
    pub(super) tenant_name: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) second_factor: bool,
    pub(super) totp_locked_until: Option<DateTime<Utc>>,
}

impl TryFrom<PrincipalListingRow> for crate::store::PrincipalListing {
    type Error = StoreError;

    fn try_from(row: PrincipalListingRow) -> Result<Self, Self::Error> {
        Ok(crate::store::PrincipalListing {
            record: row.principal.try_into()?,
            tenant_name: row.tenant_name,
            created_at: row.created_at,
            second_factor: row.second_factor,
            totp_locked_until: row.totp_locked_until,
        })
    }
}

impl TryFrom<PrincipalRow> for PrincipalRecord {
    type Error = StoreError;

    fn try_from(row: PrincipalRow) -> Result<Self, Self::Error> {
        let roles = row
            .roles
            .0
            .iter()
            .map(|r| r.parse::<Role>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| StoreError::Corrupt("principal role"))?;
        Ok(PrincipalRecord {
            principal: Principal {
                id: PrincipalId(row.id),
                tenant: TenantId(row.tenant_id),
                name: row.name,
                roles,
                lookups_throttled_until: row.lookups_throttled_until,
            },
            expires_at: row.expires_at,
            disabled_at: row.disabled_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct DataKeyRow {
    pub(super) version: i32,
    pub(super) wrapped: Vec<u8>,
    pub(super) tenant_bound: bool,
}

#[derive(sqlx::FromRow)]
pub(super) struct SigningKeyRow {
    pub(super) kid: String,
    pub(super) algorithm: String,
    pub(super) wrapped: Vec<u8>,
    pub(super) public_key: Vec<u8>,
    pub(super) activates_at: Option<DateTime<Utc>>,
    pub(super) retired_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub(super) struct SigningKeyStateRow {
    pub(super) kid: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) activates_at: Option<DateTime<Utc>>,
    pub(super) retired_at: Option<DateTime<Utc>>,
    pub(super) published: bool,
}

pub(super) const REQUEST_COLUMNS: &str = "id, tenant_id, requester_id, policy, tokens, any_token, purpose, \
    reason, duration_seconds, max_uses, approvals_required, mfa, status, source, created_at, \
    expires_at, decided_at, grant_jti";

pub(super) const GRANT_COLUMNS: &str = "jti, tenant_id, grantee_id, request_id, purpose, tokens, any_token, \
    max_uses, uses, kid, issued_at, expires_at, revoked_at";

#[derive(sqlx::FromRow)]
pub(super) struct RequestRow {
    pub(super) id: Uuid,
    pub(super) tenant_id: Uuid,
    pub(super) requester_id: Uuid,
    pub(super) policy: String,
    pub(super) tokens: TextList,
    pub(super) any_token: bool,
    pub(super) purpose: String,
    pub(super) reason: String,
    pub(super) duration_seconds: i32,
    pub(super) max_uses: i32,
    pub(super) approvals_required: i32,
    pub(super) mfa: bool,
    pub(super) status: String,
    pub(super) source: Option<String>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) decided_at: Option<DateTime<Utc>>,
    pub(super) grant_jti: Option<Uuid>,
}

#[derive(sqlx::FromRow)]
pub(super) struct DecisionRow {
    pub(super) request_id: Uuid,
    pub(super) approver_id: Uuid,
    pub(super) approve: bool,
    pub(super) comment: Option<String>,
    pub(super) created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
pub(super) struct GrantRow {
    pub(super) jti: Uuid,
    pub(super) tenant_id: Uuid,
    pub(super) grantee_id: Uuid,
    pub(super) request_id: Uuid,
    pub(super) purpose: String,
    pub(super) tokens: TextList,
    pub(super) any_token: bool,
    pub(super) max_uses: i32,
    pub(super) uses: i32,
    pub(super) kid: String,
    pub(super) issued_at: DateTime<Utc>,
    pub(super) expires_at: DateTime<Utc>,
    pub(super) revoked_at: Option<DateTime<Utc>>,
}

pub(super) fn to_u32(n: i32, what: &'static str) -> Result<u32, StoreError> {
    u32::try_from(n).map_err(|_| StoreError::Corrupt(what))
}

pub(super) fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl RequestRow {
    pub(super) fn into_record(
        self,
        decisions: Vec<Decision>,
    ) -> Result<AccessRequestRecord, StoreError> {
        Ok(AccessRequestRecord {
            status: self
                .status
                .parse()
                .map_err(|()| StoreError::Corrupt("access request status"))?,
            decided_at: self.decided_at,
            grant: self.grant_jti,
            decisions,
            request: NewAccessRequest {
                id: self.id,
                tenant: TenantId(self.tenant_id),
                requester: PrincipalId(self.requester_id),
                policy: self.policy,
                tokens: self.tokens.0.into_iter().map(Token::from_stored).collect(),
                any_token: self.any_token,
                purpose: stored_purpose(&self.purpose)?,
                reason: Reason::from_stored(self.reason),
                duration_seconds: to_u32(self.duration_seconds, "request duration")?,
                max_uses: to_u32(self.max_uses, "request max_uses")?,
                approvals_required: to_u32(self.approvals_required, "request approvals")?,
                approver_mfa: self.mfa,
                source: self.source,
                created_at: self.created_at,
                expires_at: self.expires_at,
            },
        })
    }
}

impl TryFrom<GrantRow> for GrantRecord {
    type Error = StoreError;

    fn try_from(row: GrantRow) -> Result<Self, Self::Error> {
        Ok(GrantRecord {
            jti: row.jti,
            tenant: TenantId(row.tenant_id),
            grantee: PrincipalId(row.grantee_id),
            request_id: row.request_id,
            purpose: stored_purpose(&row.purpose)?,
            tokens: row.tokens.0.into_iter().map(Token::from_stored).collect(),
            any_token: row.any_token,
            max_uses: to_u32(row.max_uses, "grant max_uses")?,
            uses: to_u32(row.uses, "grant uses")?,
            kid: row.kid,
            issued_at: row.issued_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// A purpose read back: only parsed purposes were written.
pub(super) fn stored_purpose(purpose: &str) -> Result<Purpose, StoreError> {
    Purpose::parse(purpose).ok_or(StoreError::Corrupt("purpose"))
}

pub(super) fn tokens_text(tokens: &[Token]) -> Vec<String> {
    tokens.iter().map(|t| t.as_str().to_owned()).collect()
}

pub(super) const AUDIT_COLUMNS: &str = "id, chain_id, seq, prev_hash, hash, at, tenant_id, actor_id, action, outcome, \
     code, purpose, reason, detail, request_id, source, tokens, grant_jti, subject";

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    pub(super) id: i64,
    pub(super) chain_id: Uuid,
    pub(super) seq: i64,
    pub(super) prev_hash: Vec<u8>,
    pub(super) hash: Vec<u8>,
    pub(super) at: DateTime<Utc>,
    pub(super) tenant_id: Option<Uuid>,
    pub(super) actor_id: Option<Uuid>,
    pub(super) action: String,
    pub(super) outcome: String,
    pub(super) code: Option<String>,
    pub(super) purpose: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) detail: Option<String>,
    pub(super) request_id: Option<String>,
    pub(super) source: Option<String>,
    pub(super) tokens: TextList,
    pub(super) grant_jti: Option<Uuid>,
    pub(super) subject: Option<String>,
}

pub(super) fn link_hash(bytes: Vec<u8>) -> Result<LinkHash, StoreError> {
    <[u8; HASH_LEN]>::try_from(bytes).map_err(|_| StoreError::Corrupt("audit hash length"))
}

impl TryFrom<AuditRow> for StoredRecord {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, Self::Error> {
        let event = AuditEvent {
            at: row.at,
            tenant: row.tenant_id.map(TenantId),
            actor: row.actor_id.map(PrincipalId),
            action: row
                .action
                .parse()
                .map_err(|()| StoreError::Corrupt("audit action"))?,
            outcome: row
                .outcome
                .parse()
                .map_err(|()| StoreError::Corrupt("audit outcome"))?,
            code: row.code,
            purpose: row.purpose,
            reason: row.reason,
            detail: row.detail,
            request_id: row.request_id,
            source: row.source,
            tokens: row.tokens.0,
            grant_jti: row.grant_jti,
            subject: row.subject,
        };
        Ok(StoredRecord {
            id: row.id,
            chained: ChainedEvent {
                chain: row.chain_id,
                seq: u64::try_from(row.seq).map_err(|_| StoreError::Corrupt("audit seq"))?,
                prev_hash: link_hash(row.prev_hash)?,
                hash: link_hash(row.hash)?,
                event,
            },
        })
    }
}

pub(super) fn rows(rows: Vec<AuditRow>) -> Result<Vec<StoredRecord>, StoreError> {
    rows.into_iter().map(StoredRecord::try_from).collect()
}

pub(super) fn seq(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The columns of an import window, in [`ImportWindowRow`]'s order.
pub(super) const IMPORT_WINDOW_COLUMNS: &str =
    "id, tenant_id, principal_id, bucket_budget, opened_at, closes_at, closed_at";

#[derive(sqlx::FromRow)]
pub(super) struct ImportWindowRow {
    pub(super) id: Uuid,
    pub(super) tenant_id: Uuid,
    pub(super) principal_id: Uuid,
    pub(super) bucket_budget: i32,
    pub(super) opened_at: DateTime<Utc>,
    pub(super) closes_at: DateTime<Utc>,
    pub(super) closed_at: Option<DateTime<Utc>>,
}

impl TryFrom<ImportWindowRow> for ImportWindow {
    type Error = StoreError;

    fn try_from(row: ImportWindowRow) -> Result<Self, Self::Error> {
        Ok(ImportWindow {
            id: row.id,
            tenant: row.tenant_id,
            principal: row.principal_id,
            bucket_budget: u32::try_from(row.bucket_budget)
                .map_err(|_| StoreError::Corrupt("import window budget"))?,
            opened_at: row.opened_at,
            closes_at: row.closes_at,
            closed_at: row.closed_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct BucketLockRow {
    pub(super) tenant_id: Uuid,
    pub(super) bucket: Vec<u8>,
    pub(super) locked_at: Option<DateTime<Utc>>,
    pub(super) locked_until: Option<DateTime<Utc>>,
    pub(super) locked_count: Option<i32>,
}

impl TryFrom<BucketLockRow> for BucketLockRecord {
    type Error = StoreError;

    fn try_from(row: BucketLockRow) -> Result<Self, Self::Error> {
        let bucket = <[u8; 16]>::try_from(row.bucket.as_slice())
            .map_err(|_| StoreError::Corrupt("bucket id"))?;
        match (row.locked_at, row.locked_until) {
            (Some(locked_at), Some(locked_until)) => Ok(BucketLockRecord {
                tenant: TenantId(row.tenant_id),
                bucket: BucketId(bucket),
                locked_at,
                locked_until,
                counted: row
                    .locked_count
                    .and_then(|n| u64::try_from(n).ok())
                    .unwrap_or(0),
            }),
            _ => Err(StoreError::Corrupt("bucket lock")),
        }
    }
}
