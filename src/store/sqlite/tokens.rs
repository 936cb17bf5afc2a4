//! Token rows in SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{BEGIN_WRITE, SqliteStore};
use crate::crypto::fingerprint::Fingerprint;
use crate::crypto::keys::SealedPan;
use crate::domain::{TenantId, Token, TokenFormat};
use crate::store::{NewToken, StoreError, TokenRecord, TokenStore};

const TOKEN_COLUMNS: &str = "tenant_id, token, format, sealed_pan, dek_version, masked_pan, metadata, created_at, expires_at, deleted_at";

#[derive(sqlx::FromRow)]
struct TokenRow {
    tenant_id: Uuid,
    token: String,
    format: String,
    sealed_pan: Option<Vec<u8>>,
    dek_version: Option<i64>,
    masked_pan: Option<String>,
    metadata: Option<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    deleted_at: Option<DateTime<Utc>>,
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
        let metadata = match row.metadata.as_deref().map(serde_json::from_str::<Value>) {
            Some(Ok(Value::Object(map))) => Some(map),
            Some(_) => return Err(StoreError::Corrupt("token metadata")),
            None => None,
        };
        Ok(TokenRecord {
            tenant: TenantId(row.tenant_id),
            token: Token::from_stored(row.token),
            format,
            sealed,
            masked: row.masked_pan,
            metadata,
            created_at: row.created_at,
            expires_at: row.expires_at,
            deleted_at: row.deleted_at,
        })
    }
}

/// The columns that hold card data or point at it, set to null when a token is destroyed.
const DESTROY_CARD_DATA: &str =
    "sealed_pan = null, dek_version = null, masked_pan = null, fingerprint = null";

fn metadata_text(metadata: &Option<Map<String, Value>>) -> Option<String> {
    metadata
        .as_ref()
        .and_then(|m| serde_json::to_string(m).ok())
}

impl SqliteStore {
    async fn destroy(
        &self,
        tenant: TenantId,
        token: &Token,
        now: DateTime<Utc>,
        deleting: bool,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "update tokens set {DESTROY_CARD_DATA}, destroyed_at = ?3, \
             deleted_at = case when ?4 then ?3 else deleted_at end \
             where tenant_id = ?1 and token = ?2 and destroyed_at is null \
               and (?4 or expires_at <= ?3)"
        );
        let result = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(token.as_str())
            .bind(now)
            .bind(deleting)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert_tokens(&self, rows: &[NewToken]) -> Result<Vec<bool>, StoreError> {
        // One transaction for the set; a row that meets an existing fingerprint or token value
        // is skipped, and the caller tells the two apart, as with PostgreSQL.
        let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
        let mut inserted = Vec::with_capacity(rows.len());
        for r in rows {
            let result = sqlx::query(
                "insert into tokens (tenant_id, token, format, fingerprint, sealed_pan, \
                     dek_version, masked_pan, metadata, created_at, expires_at) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) on conflict do nothing",
            )
            .bind(r.tenant.0)
            .bind(r.token.as_str())
            .bind(r.format.as_str())
            .bind(r.fingerprint.0.to_vec())
            .bind(&r.sealed.bytes)
            .bind(i64::from(r.sealed.version))
            .bind(&r.masked)
            .bind(metadata_text(&r.metadata))
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&mut *tx)
            .await?;
            inserted.push(result.rows_affected() == 1);
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn find_by_fingerprints(
        &self,
        tenant: TenantId,
        keys: &[(TokenFormat, Fingerprint)],
    ) -> Result<Vec<Option<TokenRecord>>, StoreError> {
        let sql = format!(
            "select {TOKEN_COLUMNS} from tokens where tenant_id = ?1 and format = ?2 and fingerprint = ?3"
        );
        let mut found = Vec::with_capacity(keys.len());
        for (format, fingerprint) in keys {
            let row: Option<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant.0)
                .bind(format.as_str())
                .bind(fingerprint.0.to_vec())
                .fetch_optional(&self.pool)
                .await?;
            found.push(row.map(TokenRecord::try_from).transpose()?);
        }
        Ok(found)
    }

    async fn get_token(
        &self,
        tenant: TenantId,
        token: &Token,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("select {TOKEN_COLUMNS} from tokens where tenant_id = ?1 and token = ?2");
        let row: Option<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(token.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(TokenRecord::try_from).transpose()
    }

    async fn get_tokens(
        &self,
        tenant: TenantId,
        tokens: &[Token],
    ) -> Result<Vec<Option<TokenRecord>>, StoreError> {
        let mut found = Vec::with_capacity(tokens.len());
        for token in tokens {
            found.push(self.get_token(tenant, token).await?);
        }
        Ok(found)
    }

    async fn delete_token(
        &self,
        tenant: TenantId,
        token: &Token,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.destroy(tenant, token, now, true).await
    }

    async fn destroy_if_expired(
        &self,
        tenant: TenantId,
        token: &Token,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.destroy(tenant, token, now, false).await
    }

    async fn purge_expired(&self, now: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let sql = format!(
            "update tokens set {DESTROY_CARD_DATA}, destroyed_at = ?1 \
             where rowid in (select rowid from tokens \
                             where destroyed_at is null and expires_at <= ?1 limit ?2)"
        );
        let result = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}
