//! Token rows in PostgreSQL.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::PgStore;
use crate::crypto::fingerprint::Fingerprint;
use crate::domain::{BucketId, TenantId, Token, TokenFormat};
use crate::store::guard::{
    Closed, Counted, count_groups, decide_locks, outcomes, stored_in_closed,
};
use crate::store::rows::{IndexedTokenRow, TOKEN_COLUMNS, metadata_text};
use crate::store::{NewToken, StoreError, TokenInsert, TokenRecord};

/// One row of the insert's answer, (tenant, token, bucket, locked_until): a stored row, or a
/// locked bucket.
type InsertAnswer = (Uuid, Option<String>, Option<Vec<u8>>, Option<DateTime<Utc>>);

/// Inserts rows in one statement: a batch (and coalesced single calls) costs one round trip.
/// Rows of buckets locked at `now` are not inserted, and the statement says which buckets
/// those are. `on conflict do nothing` without a target covers both the fingerprint index and
/// the token key; the caller tells the two apart. Returns the (tenant, token) of the rows
/// stored, and the locked buckets with the end of their locks.
async fn insert_rows(
    tx: &mut sqlx::PgConnection,
    rows: &[NewToken],
    now: DateTime<Utc>,
) -> Result<(HashSet<(Uuid, String)>, Closed), StoreError> {
    let answer: Vec<InsertAnswer> = sqlx::query_as(
        "with locked as ( \
                 select distinct b.tenant_id, b.bucket, b.locked_until \
                 from unnest($1::uuid[], $11::bytea[]) as l(t, k) \
                 join tokenize_buckets b on b.tenant_id = l.t and b.bucket = l.k \
                 where b.locked_until > $13), \
             stored as ( \
                 insert into tokens (tenant_id, token, format, fingerprint, sealed_pan, \
                     dek_version, masked_pan, metadata, created_at, expires_at, bucket, \
                     import_window) \
                 select t, tok, f, fp, s, v, m, md::jsonb, c, e, b, w \
                 from unnest($1::uuid[], $2::text[], $3::text[], $4::bytea[], $5::bytea[], \
                             $6::int[], $7::text[], $8::text[], $9::timestamptz[], \
                             $10::timestamptz[], $11::bytea[], $12::uuid[]) \
                      as u(t, tok, f, fp, s, v, m, md, c, e, b, w) \
                 where not exists (select 1 from locked \
                                   where locked.tenant_id = u.t and locked.bucket = u.b) \
                 on conflict do nothing \
                 returning tenant_id, token) \
             select tenant_id, token, null::bytea, null::timestamptz from stored \
             union all \
             select tenant_id, null, bucket, locked_until from locked",
    )
    .bind(rows.iter().map(|r| r.tenant.0).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.token.as_str().to_owned())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.format.as_str()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.fingerprint.0.to_vec())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.sealed.bytes.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| i32::try_from(r.sealed.version).unwrap_or(i32::MAX))
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| r.masked.as_str().to_owned())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|r| metadata_text(r.metadata.as_ref()))
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.expires_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.bucket.0.to_vec()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.allowance.window).collect::<Vec<_>>())
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut stored = HashSet::new();
    let mut locked = Closed::new();
    for (tenant, token, bucket, until) in answer {
        match (token, bucket, until) {
            // Token values are unique per tenant, and a statement never repeats one.
            (Some(token), _, _) => {
                stored.insert((tenant, token));
            }
            (None, Some(bucket), Some(until)) => {
                let bucket = <[u8; 16]>::try_from(bucket.as_slice())
                    .map_err(|_| StoreError::Corrupt("bucket id"))?;
                locked.insert((TenantId(tenant), BucketId(bucket)), until);
            }
            _ => return Err(StoreError::Corrupt("token insert answer")),
        }
    }
    Ok((stored, locked))
}

impl PgStore {
    /// The guarded insert, in the caller's transaction: rows of buckets locked before or by
    /// this insert are refused (a bucket whose new PANs, counted in the rolling window against
    /// each row's allowance, this insert's included, overrun the budget is locked here and
    /// now, and none of this insert's rows stay in it); the rest are inserted or collide with
    /// an existing fingerprint or token value (`Collided`; the caller tells the two apart).
    pub(in crate::store) async fn insert_guarded_on(
        tx: &mut sqlx::PgConnection,
        rows: &[NewToken],
        now: DateTime<Utc>,
    ) -> Result<TokenInsert, StoreError> {
        // One statement refuses the rows of buckets already locked and inserts the rest.
        let (stored, prelocked) = insert_rows(tx, rows, now).await?;
        let inserted: Vec<bool> = rows
            .iter()
            .map(|r| stored.contains(&(r.tenant.0, r.token.as_str().to_owned())))
            .collect();

        // Count the new PANs of every bucket this insert stored into, under the buckets' lock
        // stripes so that instances count one after the other; a bucket locked meanwhile
        // shows here.
        let groups = count_groups(rows, &inserted, now);
        let mut counted = Vec::with_capacity(groups.len());
        if !groups.is_empty() {
            let mut stripes: Vec<i64> = groups.iter().map(|g| g.bucket.lock_stripe()).collect();
            stripes.sort_unstable();
            stripes.dedup();
            let counts: Vec<(i64, Option<DateTime<Utc>>, i64)> =
                sqlx::query_as("select * from guard_count_new_pans($1, $2, $3, $4, $5)")
                    .bind(&stripes)
                    .bind(groups.iter().map(|g| g.tenant.0).collect::<Vec<_>>())
                    .bind(
                        groups
                            .iter()
                            .map(|g| g.bucket.0.to_vec())
                            .collect::<Vec<_>>(),
                    )
                    .bind(groups.iter().map(|g| g.window).collect::<Vec<_>>())
                    .bind(groups.iter().map(|g| g.since).collect::<Vec<_>>())
                    .fetch_all(&mut *tx)
                    .await?;
            for (group, (_, locked_until, n)) in groups.iter().zip(counts) {
                counted.push(Counted {
                    group: *group,
                    new_pans: u64::try_from(n).unwrap_or(0),
                    locked_until,
                });
            }
        }
        let (locked, mut closed) = decide_locks(&counted, now);
        if !locked.is_empty() {
            sqlx::query(
                "insert into tokenize_buckets \
                     (tenant_id, bucket, counted_since, locked_at, locked_until, locked_count) \
                 select t, k, e, $3, e, n from unnest($1::uuid[], $2::bytea[], \
                     $4::timestamptz[], $5::int[]) as u(t, k, e, n) \
                 on conflict (tenant_id, bucket) do update set \
                     counted_since = excluded.counted_since, locked_at = excluded.locked_at, \
                     locked_until = excluded.locked_until, locked_count = excluded.locked_count",
            )
            .bind(locked.iter().map(|l| l.tenant.0).collect::<Vec<_>>())
            .bind(
                locked
                    .iter()
                    .map(|l| l.bucket.0.to_vec())
                    .collect::<Vec<_>>(),
            )
            .bind(now)
            .bind(locked.iter().map(|l| l.until).collect::<Vec<_>>())
            .bind(
                locked
                    .iter()
                    .map(|l| i32::try_from(l.counted).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )
            .execute(&mut *tx)
            .await?;
        }
        // Nothing of this insert stays in a closed bucket.
        PgStore::delete_new_rows_on(tx, &stored_in_closed(rows, &inserted, &closed)).await?;
        closed.extend(prelocked);
        Ok(TokenInsert {
            rows: outcomes(rows, &inserted, &closed),
            locked,
            purged: Vec::new(),
        })
    }

    /// Deletes rows this transaction inserted and must not keep (in a bucket it locked, or of
    /// a call that must draw again). Never used on a committed row: a token's value stays
    /// reserved once issued.
    pub(in crate::store) async fn delete_new_rows_on(
        tx: &mut sqlx::PgConnection,
        rows: &[(TenantId, Token)],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (tenants, tokens): (Vec<Uuid>, Vec<String>) = rows
            .iter()
            .map(|(tenant, token)| (tenant.0, token.as_str().to_owned()))
            .unzip();
        sqlx::query(
            "delete from tokens where (tenant_id, token) in \
             (select * from unnest($1::uuid[], $2::text[]))",
        )
        .bind(&tenants)
        .bind(&tokens)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// See [`crate::store::TokenStore::find_by_fingerprints`]; on `conn`, in the caller's
    /// transaction if it has one open.
    pub(in crate::store) async fn find_fingerprints_on(
        conn: &mut sqlx::PgConnection,
        tenant: TenantId,
        keys: &[(TokenFormat, Fingerprint)],
    ) -> Result<Vec<Option<TokenRecord>>, StoreError> {
        let sql = format!(
            // One index probe per key: `lateral` with `limit 1` (each key matches at most one
            // row) cannot be flattened into a plain join, which the planner, guessing 100 rows
            // for `unnest`, turns into a scan of the whole table as it grows.
            "select q.idx, {cols} from unnest($2::text[], $3::bytea[]) with ordinality as q(f, fp, idx) \
             cross join lateral (select * from tokens \
                 where tenant_id = $1 and format = q.f and fingerprint = q.fp limit 1) t",
            cols = TOKEN_COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows: Vec<IndexedTokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(keys.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>())
            .bind(keys.iter().map(|(_, fp)| fp.0.to_vec()).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
        let mut found: Vec<Option<TokenRecord>> = vec![None; keys.len()];
        for row in rows {
            // `with ordinality` counts from 1.
            let slot = usize::try_from(row.idx - 1)
                .ok()
                .and_then(|i| found.get_mut(i))
                .ok_or(StoreError::Corrupt("fingerprint lookup index"))?;
            *slot = Some(row.row.try_into()?);
        }
        Ok(found)
    }

    /// See [`crate::store::TokenStore::get_tokens`].
    async fn read_tokens(
        &self,
        tenant: TenantId,
        tokens: &[Token],
    ) -> Result<Vec<Option<TokenRecord>>, StoreError> {
        let sql = format!(
            "select q.idx, {cols} from unnest($2::text[]) with ordinality as q(tok, idx) \
             cross join lateral (select * from tokens \
                 where tenant_id = $1 and token = q.tok limit 1) t",
            cols = TOKEN_COLUMNS
                .split(", ")
                .map(|c| format!("t.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows: Vec<IndexedTokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant.0)
            .bind(
                tokens
                    .iter()
                    .map(|t| t.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&self.pool)
            .await?;
        let mut found: Vec<Option<TokenRecord>> = vec![None; tokens.len()];
        for row in rows {
            // `with ordinality` counts from 1.
            let slot = usize::try_from(row.idx - 1)
                .ok()
                .and_then(|i| found.get_mut(i))
                .ok_or(StoreError::Corrupt("token lookup index"))?;
            *slot = Some(row.row.try_into()?);
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
            ", destroyed_at = $1 \
             where (tenant_id, token) in ( \
                 select tenant_id, token from tokens \
                 where destroyed_at is null and expires_at <= $1 \
                 limit $2 for update skip locked) \
             returning tenant_id, token",
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
    PgStore,
    sqlx::Postgres,
    crate::store::dialect::Dialect::Postgres
);
