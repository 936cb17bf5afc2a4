//! Tenants, principals and their second factors in SQLite.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{SqliteStore, is_unique_violation, json_list};
use crate::store::rows::PrincipalRow;

const PRINCIPAL_COLUMNS: &str =
    "id, tenant_id, name, roles, expires_at, disabled_at, lookups_throttled_until";
use crate::crypto::api_key::KeyHash;
use crate::domain::PrincipalId;
use crate::store::{NewPrincipal, PrincipalRecord, PrincipalStore, StoreError, TotpState};

#[async_trait]
impl PrincipalStore for SqliteStore {
    async fn create_principal(&self, new: &NewPrincipal) -> Result<PrincipalRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "insert into tenants (id, name, created_at) values (?1, ?2, ?3) \
             on conflict (name) do nothing",
        )
        .bind(Uuid::new_v4())
        .bind(&new.tenant_name)
        .bind(new.created_at)
        .execute(&mut *tx)
        .await?;
        let tenant_id: Uuid = sqlx::query_scalar("select id from tenants where name = ?1")
            .bind(&new.tenant_name)
            .fetch_one(&mut *tx)
            .await?;
        let roles: Vec<&str> = new.roles.iter().map(|r| r.as_str()).collect();
        let sql = format!(
            "insert into principals (id, tenant_id, name, roles, key_hash, created_at, expires_at, \
                 totp_secret) values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             returning {PRINCIPAL_COLUMNS}"
        );
        let row: PrincipalRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(new.id.0)
            .bind(tenant_id)
            .bind(&new.name)
            .bind(json_list(&roles))
            .bind(new.key_hash.0.to_vec())
            .bind(new.created_at)
            .bind(new.expires_at)
            .bind(new.sealed_totp.as_deref())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                // The key hash is 256 random bits: a clash can only be the name.
                if is_unique_violation(&e) {
                    StoreError::PrincipalExists
                } else {
                    StoreError::Database(e)
                }
            })?;
        tx.commit().await?;
        row.try_into()
    }

    async fn principal_by_key_hash(
        &self,
        hash: &KeyHash,
    ) -> Result<Option<PrincipalRecord>, StoreError> {
        let sql = format!("select {PRINCIPAL_COLUMNS} from principals where key_hash = ?1");
        let row: Option<PrincipalRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(hash.0.to_vec())
            .fetch_optional(&self.pool)
            .await?;
        row.map(PrincipalRecord::try_from).transpose()
    }

    async fn disable_principal(
        &self,
        id: PrincipalId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "update principals set disabled_at = ?2 where id = ?1 and disabled_at is null",
        )
        .bind(id.0)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn totp_state(&self, id: PrincipalId) -> Result<Option<TotpState>, StoreError> {
        let row: Option<(Option<Vec<u8>>, Option<DateTime<Utc>>)> =
            sqlx::query_as("select totp_secret, totp_locked_until from principals where id = ?1")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.and_then(|(sealed, locked_until)| {
            sealed.map(|sealed| TotpState {
                sealed,
                locked_until,
            })
        }))
    }

    async fn accept_totp_step(
        &self,
        id: PrincipalId,
        step: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "update principals set totp_last_step = ?2, totp_failures = 0 \
             where id = ?1 and totp_secret is not null \
               and (totp_last_step is null or totp_last_step < ?2) \
               and (totp_locked_until is null or totp_locked_until <= ?3)",
        )
        .bind(id.0)
        .bind(step)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    async fn record_totp_failure(
        &self,
        id: PrincipalId,
        max_failures: u32,
        lock_until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "update principals set \
                 totp_locked_until = case when totp_failures + 1 >= ?2 then ?3 else totp_locked_until end, \
                 totp_failures = case when totp_failures + 1 >= ?2 then 0 else totp_failures + 1 end \
             where id = ?1",
        )
        .bind(id.0)
        .bind(i64::from(max_failures))
        .bind(lock_until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
