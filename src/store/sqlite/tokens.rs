//! Token rows in SQLite.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::crypto::fingerprint::Fingerprint;
use crate::domain::{BucketId, TenantId, Token, TokenFormat};
use crate::store::guard::{Counted, count_groups, decide_locks, outcomes, stored_in_closed};
use crate::store::rows::{TOKEN_COLUMNS, TokenRow, metadata_text};
use crate::store::{NewToken, StoreError, TokenInsert, TokenRecord, TokenStore};

/// When a bucket's lock ends, if it is locked at `now`.
async fn locked_until(
    tx: &mut sqlx::SqliteConnection,
    tenant: TenantId,
    bucket: BucketId,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    let until: Option<(DateTime<Utc>,)> = sqlx::query_as(
        "select locked_until from tokenize_buckets \
         where tenant_id = ?1 and bucket = ?2 and locked_until > ?3",
    )
    .bind(tenant.0)
    .bind(bucket.0.to_vec())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(until.map(|(u,)| u))
}

impl SqliteStore {
    /// The guarded insert, in the caller's transaction (see
    /// [`crate::store::PgStore::insert_guarded_on`]).
    pub(in crate::store) async fn insert_guarded_on(
        tx: &mut sqlx::SqliteConnection,
        rows: &[NewToken],
        now: DateTime<Utc>,
    ) -> Result<TokenInsert, StoreError> {
        // The caller's write transaction (`BEGIN IMMEDIATE`): SQLite has one writer, so the
        // counts below cannot race. A row that meets an existing fingerprint or token value is
        // skipped, and the caller tells the two apart, as with PostgreSQL.
        let mut prelocked: HashMap<(TenantId, BucketId), DateTime<Utc>> = HashMap::new();
        let mut inserted = Vec::with_capacity(rows.len());
        for r in rows {
            let key = (r.tenant, r.bucket);
            if !prelocked.contains_key(&key)
                && let Some(until) = locked_until(tx, r.tenant, r.bucket, now).await?
            {
                prelocked.insert(key, until);
            }
            if prelocked.contains_key(&key) {
                inserted.push(false);
                continue;
            }
            let result = sqlx::query(
                "insert into tokens (tenant_id, token, format, fingerprint, sealed_pan, \
                     dek_version, masked_pan, metadata, created_at, expires_at, bucket, \
                     import_window) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) on conflict do nothing",
            )
            .bind(r.tenant.0)
            .bind(r.token.as_str())
            .bind(r.format.as_str())
            .bind(r.fingerprint.0.to_vec())
            .bind(&r.sealed.bytes)
            .bind(i64::from(r.sealed.version))
            .bind(r.masked.as_str())
            .bind(metadata_text(r.metadata.as_ref()))
            .bind(r.created_at)
            .bind(r.expires_at)
            .bind(r.bucket.0.to_vec())
            .bind(r.allowance.window)
            .execute(&mut *tx)
            .await?;
            inserted.push(result.rows_affected() == 1);
        }

        let mut counted = Vec::new();
        for group in count_groups(rows, &inserted, now) {
            let (n,): (i64,) = sqlx::query_as(
                "select count(*) from tokens x \
                 left join tokenize_buckets b on b.tenant_id = x.tenant_id and b.bucket = x.bucket \
                 where x.tenant_id = ?1 and x.bucket = ?2 and x.import_window is ?3 \
                   and x.created_at > max(?4, coalesce(b.counted_since, ?4))",
            )
            .bind(group.tenant.0)
            .bind(group.bucket.0.to_vec())
            .bind(group.window)
            .bind(group.since)
            .fetch_one(&mut *tx)
            .await?;
            counted.push(Counted {
                group,
                new_pans: u64::try_from(n).unwrap_or(0),
                locked_until: None,
            });
        }
        let (locked, mut closed) = decide_locks(&counted, now);
        for l in &locked {
            sqlx::query(
                "insert into tokenize_buckets \
                     (tenant_id, bucket, counted_since, locked_at, locked_until, locked_count) \
                 values (?1, ?2, ?4, ?3, ?4, ?5) \
                 on conflict (tenant_id, bucket) do update set \
                     counted_since = excluded.counted_since, locked_at = excluded.locked_at, \
                     locked_until = excluded.locked_until, locked_count = excluded.locked_count",
            )
            .bind(l.tenant.0)
            .bind(l.bucket.0.to_vec())
            .bind(now)
            .bind(l.until)
            .bind(i64::try_from(l.counted).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        // Nothing of this insert stays in a bucket it locked.
        SqliteStore::delete_new_rows_on(tx, &stored_in_closed(rows, &inserted, &closed)).await?;
        closed.extend(prelocked);
        Ok(TokenInsert {
            rows: outcomes(rows, &inserted, &closed),
            locked,
            purged: Vec::new(),
        })
    }

    /// Deletes rows this transaction inserted and must not keep (see
    /// [`crate::store::PgStore::delete_new_rows_on`]).
    pub(in crate::store) async fn delete_new_rows_on(
        tx: &mut sqlx::SqliteConnection,
        rows: &[(TenantId, Token)],
    ) -> Result<(), StoreError> {
        for (tenant, token) in rows {
            sqlx::query("delete from tokens where tenant_id = ?1 and token = ?2")
                .bind(tenant.0)
                .bind(token.as_str())
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }

    /// See [`crate::store::TokenStore::find_by_fingerprints`]; on `conn`, in the caller's
    /// transaction if it has one open.
    pub(in crate::store) async fn find_fingerprints_on(
        conn: &mut sqlx::SqliteConnection,
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
                .fetch_optional(&mut *conn)
                .await?;
            found.push(row.map(TokenRecord::try_from).transpose()?);
        }
        Ok(found)
    }

    /// See [`crate::store::TokenStore::get_tokens`].
    async fn read_tokens(
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

    /// See [`crate::store::TokenStore::purge_expired`].
    async fn purge_batch(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<(TenantId, Token)>, StoreError> {
        let purged: Vec<(uuid::Uuid, String)> = sqlx::query_as(concat!(
            "update tokens set ",
            crate::store::tokens::sql::destroy_card_data!(),
            ", destroyed_at = ?1 \
             where rowid in (select rowid from tokens \
                             where destroyed_at is null and expires_at <= ?1 limit ?2) \
             returning tenant_id, token"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(purged
            .into_iter()
            .map(|(tenant, token)| (TenantId(tenant), Token::from_stored(token)))
            .collect())
    }
}

crate::store::tokens::token_store!(
    SqliteStore,
    sqlx::Sqlite,
    crate::store::dialect::Dialect::Sqlite
);
