//! SQLite implementation of [`AuditStore`]: a batch is one `BEGIN IMMEDIATE` transaction and
//! one commit.

use super::{SqliteStore, json_list};
use crate::domain::audit::ChainedEvent;
use crate::store::StoreError;
use crate::store::rows::seq;

impl SqliteStore {
    /// Appends one batch (see [`crate::store::AuditStore::append_audit`]): one transaction.
    async fn append_batch(&self, records: &[ChainedEvent]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        SqliteStore::append_on(&mut tx, records).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts one batch on `conn` (in the caller's transaction).
    async fn append_on(
        conn: &mut sqlx::SqliteConnection,
        records: &[ChainedEvent],
    ) -> Result<(), StoreError> {
        for r in records {
            let e = &r.event;
            sqlx::query(
                "insert into audit_events (chain_id, seq, prev_hash, hash, at, tenant_id, actor_id, \
                 action, outcome, code, purpose, reason, detail, request_id, source, tokens, \
                 grant_jti, subject) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
            )
            .bind(r.chain)
            .bind(seq(r.seq))
            .bind(r.prev_hash.to_vec())
            .bind(r.hash.to_vec())
            .bind(e.at)
            .bind(e.tenant.map(|t| t.0))
            .bind(e.actor.map(|a| a.0))
            .bind(e.action.as_str())
            .bind(e.outcome.as_str())
            .bind(e.code.as_deref())
            .bind(e.purpose.as_deref())
            .bind(e.reason.as_deref())
            .bind(e.detail.as_deref())
            .bind(e.request_id.as_deref())
            .bind(e.source.as_deref())
            .bind(json_list(&e.tokens))
            .bind(e.grant_jti)
            .bind(e.subject.as_deref())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

crate::store::audit::audit_store!(
    SqliteStore,
    sqlx::Sqlite,
    crate::store::dialect::Dialect::Sqlite,
    "and ($2 is null or at >= $2) \
     and ($3 is null or at < $3) \
     and ($4 is null or actor_id = $4) \
     and ($5 is null or action = $5) \
     and ($6 is null or exists (select 1 from json_each(tokens) where value = $6)) \
     and ($7 is null or outcome = $7) \
     and ($8 is null or id < $8) \
     order by id desc limit $9",
    "'[]'"
);
