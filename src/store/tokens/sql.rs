//! [`crate::store::TokenStore`] for both engines: reading one token, destroying one and the
//! tokenize calls' insert (`tokenize_on`, run in the audit trail's transaction) are written once
//! here. What really differs is supplied by the engine as inherent methods: the guarded insert
//! (`insert_guarded_on`: `unnest` and advisory lock stripes in PostgreSQL, row by row under
//! `BEGIN IMMEDIATE` in SQLite) and the delete of rows it must not keep, the fingerprint lookup
//! and the read of several tokens (`find_fingerprints_on`, `read_tokens`: one `unnest … with
//! ordinality` in PostgreSQL, one query a key in SQLite), and the purge (`purge_batch`: `for
//! update skip locked` in PostgreSQL, by `rowid` in SQLite).

/// The columns that hold card data or point at it, set to null when a token is destroyed.
macro_rules! destroy_card_data {
    () => {
        "sealed_pan = null, dek_version = null, masked_pan = null, fingerprint = null"
    };
}

pub(in crate::store) use destroy_card_data;

/// Implements [`crate::store::TokenStore`] for an engine's store, in a module of its own.
macro_rules! token_store {
    ($store:ident, $db:ty, $dialect:expr) => {
        mod shared_tokens {
            use async_trait::async_trait;
            use chrono::{DateTime, Utc};

            use super::$store;
            use $crate::crypto::fingerprint::Fingerprint;
            use $crate::domain::{TenantId, Token, TokenFormat};
            use $crate::store::rows::{TOKEN_COLUMNS, TokenRow};
            use $crate::store::tokens::calls;
            use $crate::store::{
                NewToken, RowOutcome, StoreError, TokenInsert, TokenRecord, TokenStore,
            };

            impl $store {
                /// Destroys one live token: a caller's delete, or (`deleting` false) only if
                /// it has expired at `now`.
                async fn destroy(
                    &self,
                    tenant: TenantId,
                    token: &Token,
                    now: DateTime<Utc>,
                    deleting: bool,
                ) -> Result<bool, StoreError> {
                    let mut conn = self.pool.acquire().await?;
                    $store::destroy_on(&mut conn, tenant, token, now, deleting).await
                }

                /// Destroys one live token on `conn` (in the caller's transaction when its
                /// record must commit with it).
                pub(in $crate::store) async fn destroy_on(
                    conn: &mut <$db as ::sqlx::Database>::Connection,
                    tenant: TenantId,
                    token: &Token,
                    now: DateTime<Utc>,
                    deleting: bool,
                ) -> Result<bool, StoreError> {
                    let result = ::sqlx::query($dialect.sql(concat!(
                        "update tokens set ",
                        $crate::store::tokens::sql::destroy_card_data!(),
                        ", destroyed_at = $3, deleted_at = case when $4 then $3 else deleted_at end \
                         where tenant_id = $1 and token = $2 and destroyed_at is null \
                           and ($4 or expires_at <= $3)",
                    )))
                    .bind(tenant.0)
                    .bind(token.as_str())
                    .bind(now)
                    .bind(deleting)
                    .execute(&mut *conn)
                    .await?;
                    Ok(result.rows_affected() == 1)
                }

                /// The rows of several tokenize calls, in the caller's transaction: one guarded
                /// insert for all of them, then, for the rows that met a fingerprint, the live
                /// token found (`Existing`) or, if it had expired, that token destroyed and the
                /// row drawn again. Each call learns its own share; a call with a row to draw
                /// again keeps none of its rows (see [`calls`]).
                pub(in $crate::store) async fn tokenize_on(
                    conn: &mut <$db as ::sqlx::Database>::Connection,
                    calls: &[&[NewToken]],
                    now: DateTime<Utc>,
                ) -> Result<Vec<TokenInsert>, StoreError> {
                    let merged = calls::merge(calls);
                    let mut insert = $store::insert_guarded_on(conn, &merged.rows, now).await?;
                    let mut purged: Vec<Option<Token>> = vec![None; merged.rows.len()];
                    let mut tenants: Vec<TenantId> = Vec::new();
                    for (row, outcome) in merged.rows.iter().zip(&insert.rows) {
                        if matches!(outcome, RowOutcome::Collided) && !tenants.contains(&row.tenant) {
                            tenants.push(row.tenant);
                        }
                    }
                    for tenant in tenants {
                        let met: Vec<usize> = (0..merged.rows.len())
                            .filter(|i| {
                                merged.rows.get(*i).is_some_and(|r| r.tenant == tenant)
                                    && matches!(insert.rows.get(*i), Some(RowOutcome::Collided))
                            })
                            .collect();
                        let keys: Vec<(TokenFormat, Fingerprint)> = met
                            .iter()
                            .filter_map(|i| merged.rows.get(*i))
                            .map(|r| (r.format, r.fingerprint.clone()))
                            .collect();
                        let found = $store::find_fingerprints_on(conn, tenant, &keys).await?;
                        for (i, record) in met.into_iter().zip(found) {
                            let Some(record) = record else { continue };
                            if record.expires_at.is_some_and(|at| at <= now) {
                                // An expired token no longer counts for determinism: it is
                                // destroyed and the row's PAN gets a fresh one.
                                if $store::destroy_on(conn, tenant, &record.token, now, false).await? {
                                    if let Some(slot) = purged.get_mut(i) {
                                        *slot = Some(record.token);
                                    }
                                }
                            } else if let Some(outcome) = insert.rows.get_mut(i) {
                                *outcome = RowOutcome::Existing(Box::new(record));
                            }
                        }
                    }
                    let (shares, withdrawn) = merged.split(insert, purged);
                    $store::delete_new_rows_on(conn, &withdrawn).await?;
                    Ok(shares)
                }
            }

            #[async_trait]
            impl TokenStore for $store {
                async fn find_by_fingerprints(
                    &self,
                    tenant: TenantId,
                    keys: &[(TokenFormat, Fingerprint)],
                ) -> Result<Vec<Option<TokenRecord>>, StoreError> {
                    let mut conn = self.pool.acquire().await?;
                    $store::find_fingerprints_on(&mut conn, tenant, keys).await
                }

                async fn get_token(
                    &self,
                    tenant: TenantId,
                    token: &Token,
                ) -> Result<Option<TokenRecord>, StoreError> {
                    let sql = format!(
                        "select {TOKEN_COLUMNS} from tokens where tenant_id = $1 and token = $2"
                    );
                    let row: Option<TokenRow> = ::sqlx::query_as($dialect.sql_owned(sql))
                        .bind(tenant.0)
                        .bind(token.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(TokenRecord::try_from).transpose()
                }

                async fn get_tokens(
                    &self,
                    tenant: TenantId,
                    tokens: &[Token],
                ) -> Result<Vec<Option<TokenRecord>>, StoreError> {
                    self.read_tokens(tenant, tokens).await
                }

                async fn delete_token(
                    &self,
                    tenant: TenantId,
                    token: &Token,
                    now: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    self.destroy(tenant, token, now, true).await
                }

                async fn destroy_if_expired(
                    &self,
                    tenant: TenantId,
                    token: &Token,
                    now: DateTime<Utc>,
                ) -> Result<bool, StoreError> {
                    self.destroy(tenant, token, now, false).await
                }

                async fn purge_expired(
                    &self,
                    now: DateTime<Utc>,
                    limit: i64,
                ) -> Result<Vec<(TenantId, Token)>, StoreError> {
                    self.purge_batch(now, limit).await
                }
            }
        }
    };
}

pub(in crate::store) use token_store;
