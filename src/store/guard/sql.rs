//! The oracle guards' store methods: one body for both engines (see
//! [`crate::store::dialect`]); the only difference is how a principal's roles are asked.

/// Implements [`crate::store::GuardStore`] for an engine's store (a type with a `pool` and a
/// `begin_write`) in a [`crate::store::dialect::Dialect`]; `$holds_tokenizer` is the engine's
/// condition that a `principals` row has the tokenizer role.
macro_rules! guard_store {
    ($store:ty, $db:ty, $dialect:expr, $holds_tokenizer:literal) => {
        impl $store {
            /// Lifts a bucket's lock on `conn`.
            pub(in $crate::store) async fn release_bucket_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                bucket: $crate::domain::BucketId,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Option<$crate::domain::TenantId>, $crate::store::StoreError> {
                let tenant: Option<::uuid::Uuid> = ::sqlx::query_scalar($dialect.sql(
                    "update tokenize_buckets \
                     set locked_at = null, locked_until = null, released_at = $2, counted_since = $2 \
                     where bucket = $1 and locked_until > $2 \
                     returning tenant_id",
                ))
                .bind(bucket.0.to_vec())
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                Ok(tenant.map($crate::domain::TenantId))
            }
            /// Opens an import window on `conn`.
            pub(in $crate::store) async fn open_import_window_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                id: ::uuid::Uuid,
                principal: $crate::domain::PrincipalId,
                bucket_budget: u32,
                opened_at: ::chrono::DateTime<::chrono::Utc>,
                closes_at: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Option<$crate::domain::ImportWindow>, $crate::store::StoreError> {
                let sql = format!(
                    "insert into import_windows \
                         (id, tenant_id, principal_id, bucket_budget, opened_at, closes_at) \
                     select $1, tenant_id, id, $3, $4, $5 from principals \
                     where id = $2 and disabled_at is null and {} \
                     returning {}",
                    $holds_tokenizer,
                    $crate::store::rows::IMPORT_WINDOW_COLUMNS,
                );
                let row: Option<$crate::store::rows::ImportWindowRow> =
                    ::sqlx::query_as($dialect.sql_owned(sql))
                    .bind(id)
                    .bind(principal.0)
                    .bind(i32::try_from(bucket_budget).unwrap_or(i32::MAX))
                    .bind(opened_at)
                    .bind(closes_at)
                    .fetch_optional(&mut *conn)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }
            /// Closes an import window early on `conn`.
            pub(in $crate::store) async fn close_import_window_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                id: ::uuid::Uuid,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Option<$crate::domain::ImportWindow>, $crate::store::StoreError> {
                let sql = format!(
                    "update import_windows set closed_at = $2 \
                     where id = $1 and closed_at is null and closes_at > $2 \
                     returning {}",
                    $crate::store::rows::IMPORT_WINDOW_COLUMNS,
                );
                let row: Option<$crate::store::rows::ImportWindowRow> =
                    ::sqlx::query_as($dialect.sql_owned(sql))
                    .bind(id)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                row.map(TryInto::try_into).transpose()
            }
        }

        #[::async_trait::async_trait]
        impl $crate::store::GuardStore for $store {
            async fn locked_buckets(
                &self,
                tenant: Option<$crate::domain::TenantId>,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Vec<$crate::store::BucketLockRecord>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::rows::BucketLockRow> = ::sqlx::query_as($dialect.sql(
                    "select tenant_id, bucket, locked_at, locked_until, locked_count \
                     from tokenize_buckets \
                     where locked_until > $1 and ($2 is null or tenant_id = $2) \
                     order by locked_at",
                ))
                .bind(now)
                .bind(tenant.map(|t| t.0))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn release_bucket(
                &self,
                bucket: $crate::domain::BucketId,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Option<$crate::domain::TenantId>, $crate::store::StoreError> {
                let mut conn = self.pool.acquire().await?;
                <$store>::release_bucket_on(&mut conn, bucket, now).await
            }

            async fn open_import_window(
                &self,
                id: ::uuid::Uuid,
                principal: $crate::domain::PrincipalId,
                bucket_budget: u32,
                opened_at: ::chrono::DateTime<::chrono::Utc>,
                closes_at: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Option<$crate::domain::ImportWindow>, $crate::store::StoreError> {
                let mut conn = self.pool.acquire().await?;
                <$store>::open_import_window_on(
                    &mut conn,
                    id,
                    principal,
                    bucket_budget,
                    opened_at,
                    closes_at,
                )
                .await
            }

            async fn close_import_window(
                &self,
                id: ::uuid::Uuid,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Option<$crate::domain::ImportWindow>, $crate::store::StoreError> {
                let mut conn = self.pool.acquire().await?;
                <$store>::close_import_window_on(&mut conn, id, now).await
            }

            async fn open_import_windows(
                &self,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Vec<$crate::domain::ImportWindow>, $crate::store::StoreError> {
                let sql = format!(
                    "select {} from import_windows \
                     where closed_at is null and opened_at <= $1 and closes_at > $1 order by opened_at",
                    $crate::store::rows::IMPORT_WINDOW_COLUMNS,
                );
                let rows: Vec<$crate::store::rows::ImportWindowRow> =
                    ::sqlx::query_as($dialect.sql_owned(sql))
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn record_miss(
                &self,
                principal: $crate::domain::PrincipalId,
                now: ::chrono::DateTime<::chrono::Utc>,
                since: ::chrono::DateTime<::chrono::Utc>,
                limit: u32,
                until: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                ::sqlx::query($dialect.sql("insert into lookup_misses (principal_id, at) values ($1, $2)"))
                    .bind(principal.0)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                // One conditional update: concurrent misses on several instances start one episode.
                let started = ::sqlx::query($dialect.sql(
                    "update principals set lookups_throttled_until = $4 \
                     where id = $1 \
                       and (lookups_throttled_until is null or lookups_throttled_until <= $2) \
                       and (select count(*) from lookup_misses where principal_id = $1 and at > $3) > $5",
                ))
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

            async fn purge_misses(&self, before: ::chrono::DateTime<::chrono::Utc>) -> Result<u64, $crate::store::StoreError> {
                let result = ::sqlx::query($dialect.sql("delete from lookup_misses where at <= $1"))
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(result.rows_affected())
            }
        }
    };
}

pub(in crate::store) use guard_store;
