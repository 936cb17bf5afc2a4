//! Access requests, decisions and grants: one body for both engines (see
//! [`crate::store::dialect`]).
//!
//! Deciding a request locks its row — `for update` in PostgreSQL, the `BEGIN IMMEDIATE`
//! transaction's write lock in SQLite — so concurrent approvals on any instance are counted one
//! after another; the decisions' primary key counts each approver once. A grant's use is one
//! conditional `update`, so no two callers can take the last use.
//!
//! The invoking engine module supplies `tokens_text(&[Token])` (a token list as the engine
//! binds one) and `decisions_of(&self, &mut Connection, &[Uuid])` (the decisions of several
//! requests: one `= any($1)` in PostgreSQL, one query per request in SQLite).

/// Implements [`crate::store::AccessStore`] for an engine's store, in a module of its own.
macro_rules! access_store {
    ($store:ident, $db:ty, $dialect:expr, $for_update:literal) => {
        mod shared_access {
            use chrono::{DateTime, TimeDelta, Utc};
            use sqlx::Transaction;
            use uuid::Uuid;

            use super::{$store, tokens_text};
            use $crate::domain::access::{Transition, transition};
            use $crate::domain::{PrincipalId, RequestStatus, TenantId};
            use $crate::store::StoreError;
            use $crate::domain::access::{
                AccessRequestRecord, Decision, ExpiredRequest, GrantDraft, GrantRecord,
                NewAccessRequest,
            };
            use $crate::store::access::{AccessStore, DecideOutcome, RequestFilter, UseOutcome};
            use $crate::store::rows::{
                GRANT_COLUMNS, GrantRow, REQUEST_COLUMNS, RequestRow, to_i32, to_u32,
            };

            /// Inserts the grant an approved request mints: its scope, limit and purpose come from the
            /// request, its end is the approval time plus the request's duration.
            async fn insert_grant(
                tx: &mut Transaction<'_, $db>,
                request: &NewAccessRequest,
                draft: &GrantDraft,
            ) -> Result<(), StoreError> {
                let expires_at = draft
                    .issued_at
                    .checked_add_signed(TimeDelta::seconds(i64::from(request.duration_seconds)))
                    .ok_or(StoreError::Corrupt("grant expiry out of range"))?;
                ::sqlx::query(
                    $dialect.sql("insert into grants (jti, tenant_id, grantee_id, request_id, purpose, tokens, any_token, \
                                         max_uses, kid, issued_at, expires_at) \
                     values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
                )
                .bind(draft.jti)
                .bind(request.tenant.0)
                .bind(request.requester.0)
                .bind(request.id)
                .bind(request.purpose.as_str())
                .bind(tokens_text(&request.tokens))
                .bind(request.any_token)
                .bind(to_i32(request.max_uses))
                .bind(&draft.kid)
                .bind(draft.issued_at)
                .bind(expires_at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            impl $store {
                /// Takes one use of a grant on `conn` (inside the caller's transaction when
                /// the use must commit with its audit record).
                pub(in $crate::store) async fn use_grant_on(
                    conn: &mut <$db as ::sqlx::Database>::Connection,
                    tenant: TenantId,
                    jti: Uuid,
                    grantee: PrincipalId,
                    now: DateTime<Utc>,
                ) -> Result<UseOutcome, StoreError> {
                    let used: Option<i32> = ::sqlx::query_scalar(
                        $dialect.sql("update grants set uses = uses + 1 \
                         where jti = $1 and tenant_id = $2 and grantee_id = $3 \
                           and revoked_at is null and uses < max_uses and expires_at > $4 \
                         returning uses"),
                    )
                    .bind(jti)
                    .bind(tenant.0)
                    .bind(grantee.0)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if let Some(n) = used {
                        return Ok(UseOutcome::Used(to_u32(n, "grant uses")?));
                    }
                    // Not taken: say why.
                    let state: Option<(Option<DateTime<Utc>>, DateTime<Utc>)> = ::sqlx::query_as(
                        $dialect.sql("select revoked_at, expires_at from grants \
                         where jti = $1 and tenant_id = $2 and grantee_id = $3"),
                    )
                    .bind(jti)
                    .bind(tenant.0)
                    .bind(grantee.0)
                    .fetch_optional(&mut *conn)
                    .await?;
                    Ok(match state {
                        None => UseOutcome::NotFound,
                        Some((Some(_), _)) => UseOutcome::Revoked,
                        Some((None, expires_at)) if expires_at <= now => UseOutcome::Expired,
                        Some(_) => UseOutcome::Exhausted,
                    })
                }

                /// Takes `n` uses of one grant on `conn` for `n` calls of one batch, in two
                /// statements whatever `n`: the row is read (and locked) and its count raised
                /// once. The first calls get the uses left, in order; the rest find it
                /// exhausted (or all find why none could be taken).
                pub(in $crate::store) async fn use_grant_n_on(
                    conn: &mut <$db as ::sqlx::Database>::Connection,
                    tenant: TenantId,
                    jti: Uuid,
                    grantee: PrincipalId,
                    now: DateTime<Utc>,
                    n: u32,
                ) -> Result<Vec<UseOutcome>, StoreError> {
                    if n <= 1 {
                        let one = $store::use_grant_on(conn, tenant, jti, grantee, now).await?;
                        return Ok(vec![one]);
                    }
                    let usable: Option<(i32, i32)> = ::sqlx::query_as($dialect.sql(concat!(
                        "select uses, max_uses from grants \
                         where jti = $1 and tenant_id = $2 and grantee_id = $3 \
                           and revoked_at is null and uses < max_uses and expires_at > $4",
                        $for_update
                    )))
                    .bind(jti)
                    .bind(tenant.0)
                    .bind(grantee.0)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let Some((uses, max_uses)) = usable else {
                        // None can be taken: each call learns why, as a single one would.
                        let why = $store::use_grant_on(conn, tenant, jti, grantee, now).await?;
                        return Ok(vec![why; n as usize]);
                    };
                    let (uses, max_uses) = (to_u32(uses, "grant uses")?, to_u32(max_uses, "grant max_uses")?);
                    let taken = n.min(max_uses.saturating_sub(uses));
                    ::sqlx::query($dialect.sql(
                        "update grants set uses = uses + $4 \
                         where jti = $1 and tenant_id = $2 and grantee_id = $3",
                    ))
                    .bind(jti)
                    .bind(tenant.0)
                    .bind(grantee.0)
                    .bind(to_i32(taken))
                    .execute(&mut *conn)
                    .await?;
                    Ok((0..n)
                        .map(|i| {
                            if i < taken {
                                UseOutcome::Used(uses + i + 1)
                            } else {
                                UseOutcome::Exhausted
                            }
                        })
                        .collect())
                }

                /// Inserts a request (and the grant it mints at once) in `tx`.
                pub(in $crate::store) async fn insert_access_request_on(
                    &self,
                    tx: &mut Transaction<'_, $db>,
                    request: &NewAccessRequest,
                    grant: Option<&GrantDraft>,
                ) -> Result<(), StoreError> {
                    let status = if grant.is_some() {
                        RequestStatus::Approved
                    } else {
                        RequestStatus::Pending
                    };
                    ::sqlx::query(
                        $dialect.sql("insert into access_requests (id, tenant_id, requester_id, policy, tokens, any_token, \
                             purpose, reason, duration_seconds, max_uses, approvals_required, mfa, status, \
                             source, created_at, expires_at, decided_at, grant_jti) \
                         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"),
                    )
                    .bind(request.id)
                    .bind(request.tenant.0)
                    .bind(request.requester.0)
                    .bind(&request.policy)
                    .bind(tokens_text(&request.tokens))
                    .bind(request.any_token)
                    .bind(request.purpose.as_str())
                    .bind(request.reason.as_str())
                    .bind(to_i32(request.duration_seconds))
                    .bind(to_i32(request.max_uses))
                    .bind(to_i32(request.approvals_required))
                    .bind(request.approver_mfa)
                    .bind(status.as_str())
                    .bind(request.source.as_deref())
                    .bind(request.created_at)
                    .bind(request.expires_at)
                    .bind(grant.map(|g| g.issued_at))
                    .bind(grant.map(|g| g.jti))
                    .execute(&mut **tx)
                    .await?;
                    if let Some(draft) = grant {
                        insert_grant(tx, request, draft).await?;
                    }
                    Ok(())
                }
                /// Decides a request in `tx` (see [`AccessStore::decide_access_request`]).
                pub(in $crate::store) async fn decide_on(
                    &self,
                    tx: &mut Transaction<'_, $db>,
                    tenant: TenantId,
                    id: Uuid,
                    decision: &Decision,
                    draft: &GrantDraft,
                ) -> Result<DecideOutcome, StoreError> {
                    // The lock serialises every decision on this request, on every instance;
                    // under it the domain's rule decides and this writes what it says.
                    let locked: Option<(Uuid,)> =
                        ::sqlx::query_as($dialect.sql(concat!(
                            "select id from access_requests where tenant_id = $1 and id = $2",
                            $for_update
                        )))
                        .bind(tenant.0)
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await?;
                    if locked.is_none() {
                        return Ok(DecideOutcome::NotFound);
                    }
                    let record = self
                        .request_in(tx, tenant, id)
                        .await?
                        .ok_or(StoreError::Corrupt("access request vanished"))?;
                    let step = transition(
                        &record.decision_state(decision.approver),
                        decision.approver.0,
                        decision.approve,
                        decision.at,
                    );
                    if let Some(refusal) = step.refusal() {
                        if step == Transition::Expire && record.status == RequestStatus::Pending {
                            ::sqlx::query($dialect.sql(
                                "update access_requests set status = 'expired', \
                                 decided_at = expires_at where id = $1",
                            ))
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                        }
                        return Ok(DecideOutcome::Refused(refusal));
                    }
                    let recorded = ::sqlx::query($dialect.sql(
                        "insert into access_decisions \
                             (request_id, approver_id, approve, comment, created_at) \
                         values ($1, $2, $3, $4, $5) on conflict (request_id, approver_id) do nothing",
                    ))
                    .bind(id)
                    .bind(decision.approver.0)
                    .bind(decision.approve)
                    .bind(decision.comment.as_ref().map(crate::domain::Reason::as_str))
                    .bind(decision.at)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                        == 1;
                    if !recorded {
                        // Cannot happen under the lock; the primary key holds it regardless.
                        return Ok(DecideOutcome::Refused(
                            $crate::domain::access::DecisionRefusal::AlreadyDecided,
                        ));
                    }
                    match step {
                        Transition::Deny => {
                            ::sqlx::query($dialect.sql(
                                "update access_requests set status = 'denied', decided_at = $2 \
                                 where id = $1",
                            ))
                            .bind(id)
                            .bind(decision.at)
                            .execute(&mut **tx)
                            .await?;
                        }
                        Transition::Approve => {
                            insert_grant(tx, &record.request, draft).await?;
                            ::sqlx::query($dialect.sql(
                                "update access_requests set status = 'approved', decided_at = $2, \
                                 grant_jti = $3 where id = $1",
                            ))
                            .bind(id)
                            .bind(draft.issued_at)
                            .bind(draft.jti)
                            .execute(&mut **tx)
                            .await?;
                        }
                        _ => {}
                    }
                    let record = self
                        .request_in(tx, tenant, id)
                        .await?
                        .ok_or(StoreError::Corrupt("access request vanished"))?;
                    Ok(DecideOutcome::Recorded(Box::new(record)))
                }
                /// Revokes one grant on `conn`.
                pub(in $crate::store) async fn revoke_grant_on(
                    conn: &mut <$db as ::sqlx::Database>::Connection,
                    tenant: TenantId,
                    jti: Uuid,
                    by: PrincipalId,
                    now: DateTime<Utc>,
                ) -> Result<Option<GrantRecord>, StoreError> {
                    // Revoking twice keeps the first revocation's time and author.
                    let sql = format!(
                        "update grants set revoked_at = coalesce(revoked_at, $3), \
                                           revoked_by = coalesce(revoked_by, $4) \
                         where tenant_id = $1 and jti = $2 returning {GRANT_COLUMNS}"
                    );
                    let row: Option<GrantRow> = ::sqlx::query_as($dialect.sql_owned(sql))
                        .bind(tenant.0)
                        .bind(jti)
                        .bind(now)
                        .bind(by.0)
                        .fetch_optional(&mut *conn)
                        .await?;
                    row.map(GrantRecord::try_from).transpose()
                }
                /// Revokes every active grant of a tenant (or of one grantee) on `conn`.
                pub(in $crate::store) async fn revoke_all_on(
                    conn: &mut <$db as ::sqlx::Database>::Connection,
                    tenant: TenantId,
                    grantee: Option<PrincipalId>,
                    by: PrincipalId,
                    now: DateTime<Utc>,
                ) -> Result<u64, StoreError> {
                    let result = ::sqlx::query(
                        $dialect.sql("update grants set revoked_at = $3, revoked_by = $4 \
                         where tenant_id = $1 and ($2 is null or grantee_id = $2) \
                           and revoked_at is null and uses < max_uses and expires_at > $3"),
                    )
                    .bind(tenant.0)
                    .bind(grantee.map(|p| p.0))
                    .bind(now)
                    .bind(by.0)
                    .execute(&mut *conn)
                    .await?;
                    Ok(result.rows_affected())
                }

                async fn request_in(
                    &self,
                    tx: &mut Transaction<'_, $db>,
                    tenant: TenantId,
                    id: Uuid,
                ) -> Result<Option<AccessRequestRecord>, StoreError> {
                    let sql = format!(
                        "select {REQUEST_COLUMNS} from access_requests where tenant_id = $1 and id = $2"
                    );
                    let Some(row) = ::sqlx::query_as::<_, RequestRow>($dialect.sql_owned(sql))
                        .bind(tenant.0)
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await?
                    else {
                        return Ok(None);
                    };
                    let mut decisions = self.decisions_of(&mut **tx, &[id]).await?;
                    row.into_record(decisions.remove(&id).unwrap_or_default())
                        .map(Some)
                }
            }

            #[::async_trait::async_trait]
            impl AccessStore for $store {
                async fn usage_facts(
                    &self,
                    tenant: TenantId,
                    since: DateTime<Utc>,
                    until: DateTime<Utc>,
                ) -> Result<
                    (
                        $crate::domain::reports::GrantTotals,
                        Vec<$crate::domain::reports::RequestFact>,
                    ),
                    StoreError,
                > {
                    let count = |n: i64| u64::try_from(n).unwrap_or(0);
                    let (issued, uses, allowed, unused, revoked): (i64, i64, i64, i64, i64) =
                        ::sqlx::query_as($dialect.sql(
                            "select count(*), \
                                    cast(coalesce(sum(uses), 0) as bigint), \
                                    cast(coalesce(sum(max_uses), 0) as bigint), \
                                    cast(coalesce(sum(case when uses = 0 then 1 else 0 end), 0) as bigint), \
                                    cast(coalesce(sum(case when revoked_at is null then 0 else 1 end), 0) as bigint) \
                             from grants where tenant_id = $1 and issued_at >= $2 and issued_at < $3",
                        ))
                        .bind(tenant.0)
                        .bind(since)
                        .bind(until)
                        .fetch_one(&self.pool)
                        .await?;
                    let rows: Vec<(
                        Uuid,
                        String,
                        String,
                        String,
                        i32,
                        DateTime<Utc>,
                        Option<DateTime<Utc>>,
                    )> = ::sqlx::query_as($dialect.sql(
                        "select r.requester_id, p.name, r.purpose, r.status, r.approvals_required, \
                                r.created_at, r.decided_at \
                         from access_requests r join principals p on p.id = r.requester_id \
                         where r.tenant_id = $1 and r.created_at >= $2 and r.created_at < $3",
                    ))
                    .bind(tenant.0)
                    .bind(since)
                    .bind(until)
                    .fetch_all(&self.pool)
                    .await?;
                    let facts = rows
                        .into_iter()
                        .map(|(requester, name, purpose, status, approvals, created_at, decided_at)| {
                            Ok($crate::domain::reports::RequestFact {
                                requester: PrincipalId(requester),
                                requester_name: name,
                                purpose,
                                status: status
                                    .parse::<RequestStatus>()
                                    .map_err(|_| StoreError::Corrupt("request status"))?,
                                automatic: approvals == 0,
                                created_at,
                                decided_at,
                            })
                        })
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    Ok((
                        $crate::domain::reports::GrantTotals {
                            issued: count(issued),
                            uses: count(uses),
                            allowed: count(allowed),
                            unused: count(unused),
                            revoked: count(revoked),
                        },
                        facts,
                    ))
                }

                async fn insert_access_request(
                    &self,
                    request: &NewAccessRequest,
                    grant: Option<&GrantDraft>,
                ) -> Result<(), StoreError> {
                    let mut tx = self.begin_write().await?;
                    self.insert_access_request_on(&mut tx, request, grant).await?;
                    tx.commit().await?;
                    Ok(())
                }

                async fn access_request(
                    &self,
                    tenant: TenantId,
                    id: Uuid,
                ) -> Result<Option<AccessRequestRecord>, StoreError> {
                    let mut tx = self.begin_read().await?;
                    let record = self.request_in(&mut tx, tenant, id).await?;
                    tx.commit().await?;
                    Ok(record)
                }

                async fn list_access_requests(
                    &self,
                    tenant: TenantId,
                    filter: RequestFilter,
                ) -> Result<Vec<AccessRequestRecord>, StoreError> {
                    // A lapsed pending request is listed as expired even before the sweep marks it.
                    let sql = format!(
                        "select {REQUEST_COLUMNS} from access_requests \
                         where tenant_id = $1 and ($2 is null or requester_id = $2) \
                           and (case when $3 is null then true \
                                     when $3 = 'pending' then status = 'pending' and expires_at > $4 \
                                     when $3 = 'expired' then status = 'expired' \
                                          or (status = 'pending' and expires_at <= $4) \
                                     else status = $3 end) \
                         order by created_at desc, id limit $5"
                    );
                    let rows: Vec<RequestRow> = ::sqlx::query_as($dialect.sql_owned(sql))
                        .bind(tenant.0)
                        .bind(filter.requester.map(|p| p.0))
                        .bind(filter.status.map(RequestStatus::as_str))
                        .bind(filter.now)
                        .bind(i64::from(filter.limit))
                        .fetch_all(&self.pool)
                        .await?;
                    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
                    let mut conn = self.pool.acquire().await?;
                    let mut decisions = self.decisions_of(&mut conn, &ids).await?;
                    rows.into_iter()
                        .map(|row| {
                            let d = decisions.remove(&row.id).unwrap_or_default();
                            row.into_record(d)
                        })
                        .collect()
                }

                async fn decide_access_request(
                    &self,
                    tenant: TenantId,
                    id: Uuid,
                    decision: &Decision,
                    draft: &GrantDraft,
                ) -> Result<DecideOutcome, StoreError> {
                    let mut tx = self.begin_write().await?;
                    let outcome = self.decide_on(&mut tx, tenant, id, decision, draft).await?;
                    tx.commit().await?;
                    Ok(outcome)
                }

                async fn expire_access_requests(
                    &self,
                    now: DateTime<Utc>,
                ) -> Result<Vec<ExpiredRequest>, StoreError> {
                    let expired: Vec<(Uuid, Uuid, Uuid, String)> = ::sqlx::query_as(
                        $dialect.sql("update access_requests set status = 'expired', decided_at = expires_at \
                         where status = 'pending' and expires_at <= $1 \
                         returning id, tenant_id, requester_id, purpose"),
                    )
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?;
                    expired
                        .into_iter()
                        .map(|(id, tenant, requester, purpose)| Ok(ExpiredRequest {
                            id,
                            tenant: TenantId(tenant),
                            requester: PrincipalId(requester),
                            purpose: crate::store::rows::stored_purpose(&purpose)?,
                        }))
                        .collect()
                }

                async fn grant(&self, tenant: TenantId, jti: Uuid) -> Result<Option<GrantRecord>, StoreError> {
                    let sql = format!("select {GRANT_COLUMNS} from grants where tenant_id = $1 and jti = $2");
                    let row: Option<GrantRow> = ::sqlx::query_as($dialect.sql_owned(sql))
                        .bind(tenant.0)
                        .bind(jti)
                        .fetch_optional(&self.pool)
                        .await?;
                    row.map(GrantRecord::try_from).transpose()
                }

                async fn use_grant(
                    &self,
                    tenant: TenantId,
                    jti: Uuid,
                    grantee: PrincipalId,
                    now: DateTime<Utc>,
                ) -> Result<UseOutcome, StoreError> {
                    let mut conn = self.pool.acquire().await?;
                    $store::use_grant_on(&mut conn, tenant, jti, grantee, now).await
                }

                async fn list_grants(
                    &self,
                    tenant: TenantId,
                    grantee: Option<PrincipalId>,
                    active_at: Option<DateTime<Utc>>,
                    limit: u32,
                ) -> Result<Vec<GrantRecord>, StoreError> {
                    let sql = format!(
                        "select {GRANT_COLUMNS} from grants \
                         where tenant_id = $1 and ($2 is null or grantee_id = $2) \
                           and ($3 is null \
                                or (revoked_at is null and uses < max_uses and expires_at > $3)) \
                         order by issued_at desc, jti limit $4"
                    );
                    let rows: Vec<GrantRow> = ::sqlx::query_as($dialect.sql_owned(sql))
                        .bind(tenant.0)
                        .bind(grantee.map(|p| p.0))
                        .bind(active_at)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?;
                    rows.into_iter().map(GrantRecord::try_from).collect()
                }

                async fn revoke_grant(
                    &self,
                    tenant: TenantId,
                    jti: Uuid,
                    by: PrincipalId,
                    now: DateTime<Utc>,
                ) -> Result<Option<GrantRecord>, StoreError> {
                    let mut conn = self.pool.acquire().await?;
                    $store::revoke_grant_on(&mut conn, tenant, jti, by, now).await
                }

                async fn revoke_all_grants(
                    &self,
                    tenant: TenantId,
                    grantee: Option<PrincipalId>,
                    by: PrincipalId,
                    now: DateTime<Utc>,
                ) -> Result<u64, StoreError> {
                    let mut conn = self.pool.acquire().await?;
                    $store::revoke_all_on(&mut conn, tenant, grantee, by, now).await
                }
            }
        }
    };
}

pub(in crate::store) use access_store;
