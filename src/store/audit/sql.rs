//! [`crate::store::AuditStore`] for both engines: the auditors' query and the verifier's chain
//! walk are written once here. The engine supplies how a batch is appended (`append_batch`:
//! one `insert … select from unnest(…)` in PostgreSQL, one `BEGIN IMMEDIATE` transaction of
//! inserts in SQLite) and the query's filter on a token (an array in PostgreSQL, a JSON list in
//! SQLite), which is all that differs.

/// Implements [`crate::store::AuditStore`] for an engine's store, in a module of its own.
/// `$filters` is the query's `where` clause after the tenant: the same nine numbered
/// parameters on both engines, in the same order. `$no_tokens` is an empty token list as the
/// engine stores one.
macro_rules! audit_store {
    ($store:ident, $db:ty, $dialect:expr, $filters:literal, $no_tokens:literal) => {
        mod shared_audit {
            use async_trait::async_trait;
            use uuid::Uuid;

            use super::$store;
            use $crate::domain::audit::{ChainedEvent, StoredRecord};
            use $crate::store::rows::{AUDIT_COLUMNS, AuditRow, rows, seq};
            use $crate::domain::{PrincipalId, TenantId};
            use $crate::store::{
                AuditQuery, AuditStore, AuditedWrite, RecordBuilder, StoreError, TokenInsert,
                UseOutcome, WriteOutcome,
            };
            use chrono::{DateTime, Utc};

            #[async_trait]
            impl AuditStore for $store {
                async fn append_audit(&self, records: &[ChainedEvent]) -> Result<(), StoreError> {
                    self.append_batch(records).await
                }

                async fn commit_audited(
                    &self,
                    writes: &[AuditedWrite],
                    build: &mut RecordBuilder<'_>,
                ) -> Result<Vec<WriteOutcome>, StoreError> {
                    let mut tx = self.begin_write().await?;
                    // Uses of one grant by many calls of the batch are taken together, in two
                    // statements, not one round trip each; every other write runs in order.
                    let mut uses: Vec<((TenantId, Uuid, PrincipalId), DateTime<Utc>, Vec<usize>)> =
                        Vec::new();
                    for (i, write) in writes.iter().enumerate() {
                        if let AuditedWrite::UseGrant {
                            tenant,
                            jti,
                            grantee,
                            now,
                        } = write
                        {
                            let key = (*tenant, *jti, *grantee);
                            match uses.iter_mut().find(|(k, _, _)| *k == key) {
                                Some((_, _, calls)) => calls.push(i),
                                None => uses.push((key, *now, vec![i])),
                            }
                        }
                    }
                    // In one order everywhere, so transactions of the appender's lanes (and of
                    // other instances) that use the same grants wait instead of deadlocking.
                    uses.sort_by_key(|((tenant, jti, grantee), _, _)| (tenant.0, *jti, grantee.0));
                    let mut taken: Vec<Option<WriteOutcome>> = vec![None; writes.len()];
                    for ((tenant, jti, grantee), now, calls) in uses {
                        let n = u32::try_from(calls.len()).unwrap_or(u32::MAX);
                        let outcomes =
                            $store::use_grant_n_on(&mut tx, tenant, jti, grantee, now, n).await?;
                        for (i, outcome) in calls.into_iter().zip(outcomes) {
                            if let Some(slot) = taken.get_mut(i) {
                                *slot = Some(WriteOutcome::Grant(outcome));
                            }
                        }
                    }
                    // The tokenize calls of the batch are one guarded insert.
                    let mut calls = Vec::new();
                    let mut callers = Vec::new();
                    let mut at = None;
                    for (i, write) in writes.iter().enumerate() {
                        if let AuditedWrite::Tokenize { rows, now } = write {
                            calls.push(rows.as_slice());
                            callers.push(i);
                            at = at.max(Some(*now));
                        }
                    }
                    if let Some(now) = at {
                        let shares = $store::tokenize_on(&mut tx, &calls, now).await?;
                        for (i, share) in callers.into_iter().zip(shares) {
                            if let Some(slot) = taken.get_mut(i) {
                                *slot = Some(WriteOutcome::Tokenized(share));
                            }
                        }
                    }
                    let mut outcomes = Vec::with_capacity(writes.len());
                    for (i, write) in writes.iter().enumerate() {
                        outcomes.push(match write {
                            AuditedWrite::UseGrant { .. } => taken
                                .get_mut(i)
                                .and_then(Option::take)
                                .unwrap_or(WriteOutcome::Grant(UseOutcome::NotFound)),
                            AuditedWrite::Tokenize { .. } => taken
                                .get_mut(i)
                                .and_then(Option::take)
                                .unwrap_or_else(|| WriteOutcome::Tokenized(TokenInsert::default())),
                            AuditedWrite::DeleteToken { tenant, token, now } => {
                                WriteOutcome::Deleted(
                                    $store::destroy_on(&mut tx, *tenant, token, *now, true).await?,
                                )
                            }
                            AuditedWrite::RevokeGrant {
                                tenant,
                                jti,
                                by,
                                now,
                            } => WriteOutcome::Revoked(
                                $store::revoke_grant_on(&mut tx, *tenant, *jti, *by, *now).await?,
                            ),
                            AuditedWrite::RevokeAllGrants {
                                tenant,
                                grantee,
                                by,
                                now,
                            } => WriteOutcome::RevokedAll(
                                $store::revoke_all_on(&mut tx, *tenant, *grantee, *by, *now)
                                    .await?,
                            ),
                            AuditedWrite::CreateAccessRequest { request, grant } => {
                                self.insert_access_request_on(&mut tx, request, grant.as_ref())
                                    .await?;
                                WriteOutcome::Created
                            }
                            AuditedWrite::DecideAccessRequest {
                                tenant,
                                id,
                                decision,
                                draft,
                            } => WriteOutcome::Decided(
                                self.decide_on(&mut tx, *tenant, *id, decision, draft).await?,
                            ),
                            AuditedWrite::CreatePrincipal(new) => {
                                // Refused before anything is written: the transaction goes on.
                                match $store::create_principal_on(&mut tx, new).await {
                                    Err(StoreError::TenantShredded) => {
                                        WriteOutcome::TenantWasShredded
                                    }
                                    created => {
                                        WriteOutcome::PrincipalCreated(created?.map(Box::new))
                                    }
                                }
                            }
                            AuditedWrite::DisablePrincipal { id, now } => WriteOutcome::Disabled(
                                $store::disable_principal_on(&mut tx, *id, *now).await?,
                            ),
                            AuditedWrite::UnlockTotp(id) => {
                                WriteOutcome::Unlocked($store::unlock_totp_on(&mut tx, *id).await?)
                            }
                            AuditedWrite::ReleaseBucket { bucket, now } => WriteOutcome::Released(
                                $store::release_bucket_on(&mut tx, *bucket, *now).await?,
                            ),
                            AuditedWrite::OpenImportWindow {
                                id,
                                principal,
                                bucket_budget,
                                opened_at,
                                closes_at,
                            } => WriteOutcome::ImportWindow(
                                $store::open_import_window_on(
                                    &mut tx,
                                    *id,
                                    *principal,
                                    *bucket_budget,
                                    *opened_at,
                                    *closes_at,
                                )
                                .await?,
                            ),
                            AuditedWrite::RotateDataKey { key, witness, now } => {
                                WriteOutcome::DataKeyRotated(
                                    $store::rotate_data_key_on(&mut tx, key, witness.as_ref(), *now)
                                        .await?,
                                )
                            }
                            AuditedWrite::Reencrypt { rows } => WriteOutcome::Reencrypted(
                                $store::reseal_on(&mut tx, rows).await?,
                            ),
                            AuditedWrite::DestroyDataKey {
                                version,
                                retired_before,
                                now,
                            } => {
                                WriteOutcome::DataKeyDestroyed(
                                    $store::destroy_data_key_on(
                                        &mut tx,
                                        *version,
                                        *retired_before,
                                        *now,
                                    )
                                    .await?,
                                )
                            }
                            AuditedWrite::Rewrap(rewrap) => {
                                $store::rewrap_on(&mut tx, rewrap).await?;
                                WriteOutcome::Rewrapped
                            }
                            AuditedWrite::ShredTenant { name, now } => {
                                WriteOutcome::TenantShredded(
                                    $store::shred_tenant_on(&mut tx, name, *now).await?,
                                )
                            }
                            AuditedWrite::SweepShredded { now } => WriteOutcome::SweptShredded(
                                $store::sweep_shredded_on(&mut tx, *now).await?,
                            ),
                            AuditedWrite::RotateSigningKey { key, witness, now } => {
                                WriteOutcome::SigningKeyRotated(
                                    $store::rotate_signing_key_on(&mut tx, key, witness.as_ref(), *now)
                                        .await?,
                                )
                            }
                            AuditedWrite::CloseImportWindow { id, now } => {
                                WriteOutcome::ImportWindow(
                                    $store::close_import_window_on(&mut tx, *id, *now).await?,
                                )
                            }
                            AuditedWrite::StartSession(new) => {
                                $store::start_session_on(&mut tx, new).await?;
                                WriteOutcome::SessionStarted
                            }
                            AuditedWrite::EndSession { token_hash, now } => {
                                WriteOutcome::SessionEnded(
                                    $store::end_session_on(&mut tx, token_hash, *now).await?,
                                )
                            }
                        });
                    }
                    let records = build(&outcomes);
                    $store::append_on(&mut tx, &records).await?;
                    tx.commit().await?;
                    Ok(outcomes)
                }

                async fn refusal_counts(
                    &self,
                    tenant: $crate::domain::TenantId,
                    since: ::chrono::DateTime<::chrono::Utc>,
                    until: ::chrono::DateTime<::chrono::Utc>,
                ) -> Result<Vec<(String, u64)>, StoreError> {
                    let rows: Vec<(String, i64)> = ::sqlx::query_as($dialect.sql(
                        "select coalesce(code, 'unknown'), count(*) from audit_events \
                         where tenant_id = $1 and at >= $2 and at < $3 and outcome = 'denied' \
                         group by coalesce(code, 'unknown')",
                    ))
                    .bind(tenant.0)
                    .bind(since)
                    .bind(until)
                    .fetch_all(&self.pool)
                    .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(code, n)| (code, u64::try_from(n).unwrap_or(0)))
                        .collect())
                }

                async fn query_audit(
                    &self,
                    query: &AuditQuery,
                ) -> Result<Vec<StoredRecord>, StoreError> {
                    // The tenant's events by its index, or those of no tenant; `$1` is bound
                    // either way so the filters keep their numbers.
                    let scope = if query.system {
                        "($1 is null or $1 is not null) and tenant_id is null"
                    } else {
                        "tenant_id = $1"
                    };
                    let sql = format!(
                        "select {AUDIT_COLUMNS} from audit_events where {scope} {}",
                        $filters
                    );
                    let found: Vec<AuditRow> = ::sqlx::query_as($dialect.sql_owned(sql))
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

                async fn probe_append(
                    &self,
                    now: ::chrono::DateTime<::chrono::Utc>,
                ) -> Result<(), StoreError> {
                    let mut tx = self.pool.begin().await?;
                    ::sqlx::query($dialect.sql(concat!(
                        "insert into audit_events (chain_id, seq, prev_hash, hash, at, action, \
                         outcome, tokens) values ($1, 1, $2, $2, $3, 'audit.probe', 'success', ",
                        $no_tokens,
                        ")"
                    )))
                    .bind(Uuid::new_v4())
                    .bind(vec![0u8; 32])
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                    Ok(())
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
                    let found: Vec<AuditRow> = ::sqlx::query_as($dialect.sql_owned(sql))
                        .bind(chain)
                        .bind(seq(after_seq))
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    rows(found)
                }
            }
        }
    };
}

pub(in crate::store) use audit_store;
