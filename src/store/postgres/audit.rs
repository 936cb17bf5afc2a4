//! PostgreSQL implementation of [`AuditStore`]: one `insert … select from unnest(…)` per batch,
//! so a batch of any size is one prepared statement and one commit.

use async_trait::async_trait;
use uuid::Uuid;

use super::PgStore;
use crate::domain::audit::{ChainedEvent, StoredRecord};
use crate::store::rows::{AUDIT_COLUMNS, AuditRow, rows, seq};
use crate::store::{AuditQuery, AuditStore, StoreError};

#[async_trait]
impl AuditStore for PgStore {
    async fn append_audit(&self, records: &[ChainedEvent]) -> Result<(), StoreError> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let n = records.len();
        let mut seqs = Vec::with_capacity(n);
        let mut prev = Vec::with_capacity(n);
        let mut hash = Vec::with_capacity(n);
        let mut at = Vec::with_capacity(n);
        let mut tenant = Vec::with_capacity(n);
        let mut actor = Vec::with_capacity(n);
        let mut action = Vec::with_capacity(n);
        let mut outcome = Vec::with_capacity(n);
        let mut code = Vec::with_capacity(n);
        let mut purpose = Vec::with_capacity(n);
        let mut reason = Vec::with_capacity(n);
        let mut detail = Vec::with_capacity(n);
        let mut request_id = Vec::with_capacity(n);
        let mut source = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut grant = Vec::with_capacity(n);
        let mut subject = Vec::with_capacity(n);
        for r in records {
            let e = &r.event;
            seqs.push(seq(r.seq));
            prev.push(r.prev_hash.to_vec());
            hash.push(r.hash.to_vec());
            at.push(e.at);
            tenant.push(e.tenant.map(|t| t.0));
            actor.push(e.actor.map(|a| a.0));
            action.push(e.action.as_str());
            outcome.push(e.outcome.as_str());
            code.push(e.code.as_deref());
            purpose.push(e.purpose.as_deref());
            reason.push(e.reason.as_deref());
            detail.push(e.detail.as_deref());
            request_id.push(e.request_id.as_deref());
            source.push(e.source.as_deref());
            // Tokens are digits or base32: a comma never occurs in one.
            tokens.push(e.tokens.join(","));
            grant.push(e.grant_jti);
            subject.push(e.subject.as_deref());
        }
        sqlx::query(
            "insert into audit_events (chain_id, seq, prev_hash, hash, at, tenant_id, actor_id, \
             action, outcome, code, purpose, reason, detail, request_id, source, tokens, grant_jti, subject) \
             select $1, seq, prev_hash, hash, at, tenant_id, actor_id, action, outcome, code, purpose, \
             reason, detail, request_id, source, string_to_array(tokens, ','), grant_jti, subject \
             from unnest($2::bigint[], $3::bytea[], $4::bytea[], $5::timestamptz[], $6::uuid[], \
             $7::uuid[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
             $14::text[], $15::text[], $16::text[], $17::uuid[], $18::text[]) \
             as t(seq, prev_hash, hash, at, tenant_id, actor_id, action, outcome, code, purpose, \
             reason, detail, request_id, source, tokens, grant_jti, subject)",
        )
        .bind(first.chain)
        .bind(seqs)
        .bind(prev)
        .bind(hash)
        .bind(at)
        .bind(tenant)
        .bind(actor)
        .bind(action)
        .bind(outcome)
        .bind(code)
        .bind(purpose)
        .bind(reason)
        .bind(detail)
        .bind(request_id)
        .bind(source)
        .bind(tokens)
        .bind(grant)
        .bind(subject)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<StoredRecord>, StoreError> {
        let sql = format!(
            "select {AUDIT_COLUMNS} from audit_events where tenant_id = $1 \
             and ($2::timestamptz is null or at >= $2) \
             and ($3::timestamptz is null or at < $3) \
             and ($4::uuid is null or actor_id = $4) \
             and ($5::text is null or action = $5) \
             and ($6::text is null or tokens @> array[$6::text]) \
             and ($7::text is null or outcome = $7) \
             and ($8::bigint is null or id < $8) \
             order by id desc limit $9"
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
            "select {AUDIT_COLUMNS} from audit_events where (chain_id, seq) > ($1, $2) \
             order by chain_id, seq limit $3"
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
