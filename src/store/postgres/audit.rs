//! PostgreSQL implementation of [`AuditStore`]: one `insert … select from unnest(…)` per batch,
//! so a batch of any size is one prepared statement and one commit.

use super::PgStore;
use crate::domain::audit::ChainedEvent;
use crate::store::StoreError;
use crate::store::rows::seq;

impl PgStore {
    /// Appends one batch (see [`crate::store::AuditStore::append_audit`]): one statement,
    /// committed by itself.
    async fn append_batch(&self, records: &[ChainedEvent]) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        PgStore::append_on(&mut conn, records).await
    }

    /// Inserts one batch on `conn` (in the caller's transaction, if it has one open).
    async fn append_on(
        conn: &mut sqlx::PgConnection,
        records: &[ChainedEvent],
    ) -> Result<(), StoreError> {
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
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

crate::store::audit::audit_store!(
    PgStore,
    sqlx::Postgres,
    crate::store::dialect::Dialect::Postgres,
    "and ($2::timestamptz is null or at >= $2) \
     and ($3::timestamptz is null or at < $3) \
     and ($4::uuid is null or actor_id = $4) \
     and ($5::text is null or action = $5) \
     and ($6::text is null or tokens @> array[$6::text]) \
     and ($7::text is null or outcome = $7) \
     and ($8::bigint is null or id < $8) \
     order by id desc limit $9",
    "'{}'"
);
