//! Wrapped keys, secrets and DEK encryption counts in SQLite (the same statements as PostgreSQL).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::rows::{DataKeyRow, SigningKeyRow};
use crate::store::{KeyStore, StoreError, StoredSigningKey, WrappedDataKey};

#[async_trait]
impl KeyStore for SqliteStore {
    async fn data_keys(&self) -> Result<Vec<WrappedDataKey>, StoreError> {
        let rows: Vec<DataKeyRow> =
            sqlx::query_as("select version, wrapped from data_keys order by version")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|r| {
                Ok(WrappedDataKey {
                    version: u32::try_from(r.version)
                        .map_err(|_| StoreError::Corrupt("key version"))?,
                    wrapped: r.wrapped,
                })
            })
            .collect()
    }

    async fn insert_data_key(
        &self,
        key: &WrappedDataKey,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let version = i64::from(key.version);
        let result = sqlx::query(
            "insert into data_keys (version, wrapped, created_at) values (?1, ?2, ?3) on conflict (version) do nothing",
        )
        .bind(version)
        .bind(&key.wrapped)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn reserve_encryptions(
        &self,
        version: u32,
        count: u32,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let version = i64::from(version);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // One conditional increment: concurrent instances can never reserve past the limit.
        let reserved = sqlx::query(
            "update data_keys set encryptions = encryptions + ?2 \
             where version = ?1 and retired_at is null and encryptions + ?2 <= ?3",
        )
        .bind(version)
        .bind(i64::from(count))
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if !reserved {
            sqlx::query(
                "update data_keys set retired_at = coalesce(retired_at, ?2) where version = ?1",
            )
            .bind(version)
            .bind(now)
            .execute(&self.pool)
            .await?;
        }
        Ok(reserved)
    }

    async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(
            sqlx::query_scalar("select wrapped from vault_secrets where name = ?1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn insert_secret(
        &self,
        name: &str,
        wrapped: &[u8],
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "insert into vault_secrets (name, wrapped, created_at) values (?1, ?2, ?3) on conflict (name) do nothing",
        )
        .bind(name)
        .bind(wrapped)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let rows: Vec<SigningKeyRow> = sqlx::query_as(
            "select kid, algorithm, wrapped, public_key from signing_keys \
             where retired_at is null order by created_at, kid",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| StoredSigningKey {
                kid: r.kid,
                algorithm: r.algorithm,
                wrapped: r.wrapped,
                public_key: r.public_key,
            })
            .collect())
    }

    async fn insert_signing_key(
        &self,
        key: &StoredSigningKey,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // The partial unique index `signing_keys_one_active` decides a race between instances.
        let result = sqlx::query(
            "insert into signing_keys (kid, algorithm, wrapped, public_key, created_at) \
             values (?1, ?2, ?3, ?4, ?5) on conflict do nothing",
        )
        .bind(&key.kid)
        .bind(&key.algorithm)
        .bind(&key.wrapped)
        .bind(&key.public_key)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}
