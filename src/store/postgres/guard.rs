//! Bucket locks, import windows and misses in PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use crate::domain::{BucketId, ImportWindow, PrincipalId, TenantId};
use crate::store::rows::{BucketLockRow, IMPORT_WINDOW_COLUMNS, ImportWindowRow};
use crate::store::{BucketLockRecord, GuardStore, StoreError};

#[async_trait]
impl GuardStore for PgStore {
    async fn locked_buckets(
        &self,
        tenant: Option<TenantId>,
        now: DateTime<Utc>,
    ) -> Result<Vec<BucketLockRecord>, StoreError> {
        let rows: Vec<BucketLockRow> = sqlx::query_as(
            "select tenant_id, bucket, locked_at, locked_until, locked_count \
             from tokenize_buckets \
             where locked_until > $1 and ($2::uuid is null or tenant_id = $2) \
             order by locked_at",
        )
        .bind(now)
        .bind(tenant.map(|t| t.0))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn release_bucket(
        &self,
        bucket: BucketId,
        now: DateTime<Utc>,
    ) -> Result<Option<TenantId>, StoreError> {
        let tenant: Option<Uuid> = sqlx::query_scalar(
            "update tokenize_buckets \
             set locked_at = null, locked_until = null, released_at = $2, counted_since = $2 \
             where bucket = $1 and locked_until > $2 \
             returning tenant_id",
        )
        .bind(bucket.0.to_vec())
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(tenant.map(TenantId))
    }

    async fn open_import_window(
        &self,
        id: Uuid,
        principal: PrincipalId,
        bucket_budget: u32,
        opened_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    ) -> Result<Option<ImportWindow>, StoreError> {
        let sql = format!(
            "insert into import_windows \
                 (id, tenant_id, principal_id, bucket_budget, opened_at, closes_at) \
             select $1, tenant_id, id, $3, $4, $5 from principals \
             where id = $2 and disabled_at is null and 'tokenizer' = any (roles) \
             returning {IMPORT_WINDOW_COLUMNS}"
        );
        let row: Option<ImportWindowRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(principal.0)
            .bind(i32::try_from(bucket_budget).unwrap_or(i32::MAX))
            .bind(opened_at)
            .bind(closes_at)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn close_import_window(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<ImportWindow>, StoreError> {
        let sql = format!(
            "update import_windows set closed_at = $2 \
             where id = $1 and closed_at is null and closes_at > $2 \
             returning {IMPORT_WINDOW_COLUMNS}"
        );
        let row: Option<ImportWindowRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn open_import_windows(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ImportWindow>, StoreError> {
        let sql = format!(
            "select {IMPORT_WINDOW_COLUMNS} from import_windows \
             where closed_at is null and opened_at <= $1 and closes_at > $1 order by opened_at"
        );
        let rows: Vec<ImportWindowRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn record_miss(
        &self,
        principal: PrincipalId,
        now: DateTime<Utc>,
        since: DateTime<Utc>,
        limit: u32,
        until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("insert into lookup_misses (principal_id, at) values ($1, $2)")
            .bind(principal.0)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // One conditional update: concurrent misses on several instances start one episode.
        let started = sqlx::query(
            "update principals set lookups_throttled_until = $4 \
             where id = $1 \
               and (lookups_throttled_until is null or lookups_throttled_until <= $2) \
               and (select count(*) from lookup_misses where principal_id = $1 and at > $3) > $5",
        )
        .bind(principal.0)
        .bind(now)
        .bind(since)
        .bind(until)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(started.rows_affected() == 1)
    }

    async fn purge_misses(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let result = sqlx::query("delete from lookup_misses where at <= $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }
}
