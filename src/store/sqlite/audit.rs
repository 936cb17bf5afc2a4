//! SQLite implementation of [`AuditStore`]: a batch is one `BEGIN IMMEDIATE` transaction and
//! one commit.

use async_trait::async_trait;
use uuid::Uuid;

use super::{SqliteStore, json_list};
use crate::domain::audit::{ChainedEvent, StoredRecord};
use crate::store::rows::{AUDIT_COLUMNS, AuditRow, rows, seq};
use crate::store::{AuditQuery, AuditStore, StoreError};

#[async_trait]
impl AuditStore for SqliteStore {
    async fn append_audit(&self, records: &[ChainedEvent]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
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
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<StoredRecord>, StoreError> {
        let sql = format!(
            "select {AUDIT_COLUMNS} from audit_events where tenant_id = ?1 \
             and (?2 is null or at >= ?2) \
             and (?3 is null or at < ?3) \
             and (?4 is null or actor_id = ?4) \
             and (?5 is null or action = ?5) \
             and (?6 is null or exists (select 1 from json_each(tokens) where value = ?6)) \
             and (?7 is null or outcome = ?7) \
             and (?8 is null or id < ?8) \
             order by id desc limit ?9"
        );
        let found: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(query.tenant.0)
            .bind(query.since)
            .bind(query.until)
            .bind(query.actor.map(|a| a.0))
            .bind(query.action.map(|a| a.as_str()))
            .bind(query.token.as_deref())
            .bind(query.outcome.map(|o| o.as_str()))
            .bind(query.before_id)
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await?;
        rows(found)
    }

    async fn audit_chain_page(
        &self,
        after: Option<(Uuid, u64)>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError> {
        let (chain, after_seq) = after.unwrap_or((Uuid::nil(), 0));
        let sql = format!(
            "select {AUDIT_COLUMNS} from audit_events where (chain_id, seq) > (?1, ?2) \
             order by chain_id, seq limit ?3"
        );
        let found: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(chain)
            .bind(seq(after_seq))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows(found)
    }
}
