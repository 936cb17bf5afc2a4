//! Tenants, principals and their second factors: one body for both engines (see
//! [`super::dialect`]).
//!
//! The invoking engine module supplies what its driver does differently:
//! `role_list(&[Role])`, the roles as the engine binds a list (`text[]` or JSON text), and
//! `is_unique_violation(&sqlx::Error, constraint)`.

/// The columns of a principal, in [`crate::store::rows::PrincipalRow`]'s order.
pub(super) const PRINCIPAL_COLUMNS: &str =
    "id, tenant_id, name, roles, expires_at, disabled_at, lookups_throttled_until";

/// Implements [`crate::store::PrincipalStore`] for an engine's store in a
/// [`crate::store::dialect::Dialect`].
macro_rules! principal_store {
    ($store:ty, $db:ty, $dialect:expr) => {
        impl $store {
            /// Creates a principal (and its tenant if new) in `tx`; `None` when the tenant
            /// has a principal of that name already.
            pub(in $crate::store) async fn create_principal_on(
                tx: &mut ::sqlx::Transaction<'_, $db>,
                new: &$crate::store::NewPrincipal,
            ) -> Result<Option<$crate::store::PrincipalRecord>, $crate::store::StoreError> {
                use $crate::store::StoreError;
                // Asked first, so that a taken name is an answer and not an error that would
                // abort a transaction shared with other writes; the unique key still holds.
                let taken: Option<(i32,)> = ::sqlx::query_as($dialect.sql(
                    "select 1 from principals p join tenants t on t.id = p.tenant_id \
                     where t.name = $1 and p.name = $2",
                ))
                .bind(&new.tenant_name)
                .bind(&new.name)
                .fetch_optional(&mut **tx)
                .await?;
                if taken.is_some() {
                    return Ok(None);
                }
                // The tenant's row is held (a no-op update) until the principal is in: a shred
                // of the tenant either came first and is seen here, or waits and then disables
                // the new principal with the others.
                let tenant: Option<(Option<::chrono::DateTime<::chrono::Utc>>,)> =
                    ::sqlx::query_as($dialect.sql(
                        "update tenants set name = name where name = $1 returning shredded_at",
                    ))
                    .bind(&new.tenant_name)
                    .fetch_optional(&mut **tx)
                    .await?;
                if matches!(tenant, Some((Some(_),))) {
                    return Err(StoreError::TenantShredded);
                }
                ::sqlx::query($dialect.sql(
                    "insert into tenants (id, name, created_at) values ($1, $2, $3) \
                     on conflict (name) do nothing",
                ))
                .bind(::uuid::Uuid::new_v4())
                .bind(&new.tenant_name)
                .bind(new.created_at)
                .execute(&mut **tx)
                .await?;
                let tenant_id: ::uuid::Uuid =
                    ::sqlx::query_scalar($dialect.sql("select id from tenants where name = $1"))
                        .bind(&new.tenant_name)
                        .fetch_one(&mut **tx)
                        .await?;
                let sql = format!(
                    "insert into principals (id, tenant_id, name, roles, key_hash, created_at, \
                         expires_at, totp_secret) values ($1, $2, $3, $4, $5, $6, $7, $8) \
                     returning {}",
                    $crate::store::principals::PRINCIPAL_COLUMNS
                );
                let row: $crate::store::rows::PrincipalRow =
                    ::sqlx::query_as($dialect.sql_owned(sql))
                        .bind(new.id.0)
                        .bind(tenant_id)
                        .bind(&new.name)
                        .bind(role_list(&new.roles))
                        .bind(new.key_hash.0.to_vec())
                        .bind(new.created_at)
                        .bind(new.expires_at)
                        .bind(new.sealed_totp.as_deref())
                        .fetch_one(&mut **tx)
                        .await
                        .map_err(|e| {
                            if is_unique_violation(&e, "principals_tenant_name_key") {
                                StoreError::PrincipalExists
                            } else {
                                StoreError::Database(e)
                            }
                        })?;
                row.try_into().map(Some)
            }
            /// Disables a principal on `conn`.
            pub(in $crate::store) async fn disable_principal_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                id: $crate::domain::PrincipalId,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let result = ::sqlx::query($dialect.sql(
                    "update principals set disabled_at = $2 where id = $1 and disabled_at is null",
                ))
                .bind(id.0)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(result.rows_affected() == 1)
            }
            /// Starts a console session in `tx`.
            pub(in $crate::store) async fn start_session_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                new: &$crate::store::NewSession,
            ) -> Result<(), $crate::store::StoreError> {
                ::sqlx::query($dialect.sql(
                    "insert into console_sessions (token_hash, principal_id, tenant_id, \
                         created_at, idle_expires_at, expires_at) \
                     values ($1, $2, $3, $4, $5, $6)",
                ))
                .bind(new.token_hash.0.to_vec())
                .bind(new.principal.0)
                .bind(new.tenant.0)
                .bind(new.created_at)
                .bind(new.idle_expires_at.min(new.expires_at))
                .bind(new.expires_at)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
            /// Ends a live console session on `conn`; answers whether one was live.
            pub(in $crate::store) async fn end_session_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                token_hash: &$crate::crypto::session::SessionHash,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let result = ::sqlx::query($dialect.sql(
                    "update console_sessions set ended_at = $2 \
                     where token_hash = $1 and ended_at is null",
                ))
                .bind(token_hash.0.to_vec())
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(result.rows_affected() == 1)
            }
            /// Lifts a second factor's lock on `conn`.
            pub(in $crate::store) async fn unlock_totp_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                id: $crate::domain::PrincipalId,
            ) -> Result<bool, $crate::store::StoreError> {
                let result = ::sqlx::query($dialect.sql(
                    "update principals set totp_locked_until = null, totp_failures = 0 \
                     where id = $1 and totp_secret is not null",
                ))
                .bind(id.0)
                .execute(&mut *conn)
                .await?;
                Ok(result.rows_affected() == 1)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::store::PrincipalStore for $store {
            async fn list_principals(
                &self,
                tenant: Option<&str>,
            ) -> Result<Vec<$crate::store::PrincipalListing>, $crate::store::StoreError> {
                const COLUMNS: &str = "select p.id, p.tenant_id, p.name, p.roles, p.expires_at, \
                     p.disabled_at, p.lookups_throttled_until, t.name as tenant_name, \
                     p.created_at, (p.totp_secret is not null) as second_factor, \
                     p.totp_locked_until \
                     from principals p join tenants t on t.id = p.tenant_id";
                let rows: Vec<$crate::store::rows::PrincipalListingRow> = match tenant {
                    Some(tenant) => {
                        ::sqlx::query_as($dialect.sql_owned(format!(
                            "{COLUMNS} where t.name = $1 order by p.name, p.id"
                        )))
                        .bind(tenant)
                        .fetch_all(&self.pool)
                        .await?
                    }
                    None => {
                        ::sqlx::query_as(
                            $dialect.sql_owned(format!("{COLUMNS} order by t.name, p.name, p.id")),
                        )
                        .fetch_all(&self.pool)
                        .await?
                    }
                };
                rows.into_iter()
                    .map($crate::store::PrincipalListing::try_from)
                    .collect()
            }

            async fn create_principal(
                &self,
                new: &$crate::store::NewPrincipal,
            ) -> Result<$crate::store::PrincipalRecord, $crate::store::StoreError> {
                let mut tx = self.begin_write().await?;
                let created = <$store>::create_principal_on(&mut tx, new).await?;
                tx.commit().await?;
                created.ok_or($crate::store::StoreError::PrincipalExists)
            }

            async fn principal_by_key_hash(
                &self,
                hash: &$crate::crypto::api_key::KeyHash,
            ) -> Result<Option<$crate::store::PrincipalRecord>, $crate::store::StoreError> {
                let sql = format!(
                    "select {} from principals where key_hash = $1",
                    $crate::store::principals::PRINCIPAL_COLUMNS
                );
                let row: Option<$crate::store::rows::PrincipalRow> =
                    ::sqlx::query_as($dialect.sql_owned(sql))
                        .bind(hash.0.to_vec())
                        .fetch_optional(&self.pool)
                        .await?;
                row.map($crate::store::PrincipalRecord::try_from)
                    .transpose()
            }

            async fn disable_principal(
                &self,
                id: $crate::domain::PrincipalId,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut conn = self.pool.acquire().await?;
                <$store>::disable_principal_on(&mut conn, id, now).await
            }

            async fn totp_state(
                &self,
                id: $crate::domain::PrincipalId,
            ) -> Result<Option<$crate::store::TotpState>, $crate::store::StoreError> {
                let row: Option<(Option<Vec<u8>>, Option<::chrono::DateTime<::chrono::Utc>>)> =
                    ::sqlx::query_as($dialect.sql(
                        "select totp_secret, totp_locked_until from principals where id = $1",
                    ))
                    .bind(id.0)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.and_then(|(sealed, locked_until)| {
                    sealed.map(|sealed| $crate::store::TotpState {
                        sealed,
                        locked_until,
                    })
                }))
            }

            async fn accept_totp_step(
                &self,
                id: $crate::domain::PrincipalId,
                step: i64,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let result = ::sqlx::query($dialect.sql(
                    "update principals set totp_last_step = $2, totp_failures = 0 \
                     where id = $1 and totp_secret is not null \
                       and (totp_last_step is null or totp_last_step < $2) \
                       and (totp_locked_until is null or totp_locked_until <= $3)",
                ))
                .bind(id.0)
                .bind(step)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn record_totp_failure(
                &self,
                id: $crate::domain::PrincipalId,
                max_failures: u32,
                lock_until: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<(), $crate::store::StoreError> {
                // The failure that reaches the limit locks the factor and starts a fresh count.
                ::sqlx::query($dialect.sql(
                    "update principals set \
                         totp_locked_until = case when totp_failures + 1 >= $2 then $3 \
                                                  else totp_locked_until end, \
                         totp_failures = case when totp_failures + 1 >= $2 then 0 \
                                              else totp_failures + 1 end \
                     where id = $1",
                ))
                .bind(id.0)
                .bind(i32::try_from(max_failures).unwrap_or(i32::MAX))
                .bind(lock_until)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn unlock_totp(
                &self,
                id: $crate::domain::PrincipalId,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut conn = self.pool.acquire().await?;
                <$store>::unlock_totp_on(&mut conn, id).await
            }

            async fn principal_names(
                &self,
                tenant: $crate::domain::TenantId,
                ids: &[$crate::domain::PrincipalId],
            ) -> Result<Vec<($crate::domain::PrincipalId, String)>, $crate::store::StoreError> {
                // A handful at a time (a request's requester and those who revealed its
                // cards), so one indexed read each keeps the two engines' SQL the same.
                let mut names = Vec::with_capacity(ids.len());
                for id in ids {
                    let name: Option<String> = ::sqlx::query_scalar(
                        $dialect
                            .sql("select name from principals where id = $1 and tenant_id = $2"),
                    )
                    .bind(id.0)
                    .bind(tenant.0)
                    .fetch_optional(&self.pool)
                    .await?;
                    if let Some(name) = name {
                        names.push((*id, name));
                    }
                }
                Ok(names)
            }

            async fn live_session(
                &self,
                token_hash: &$crate::crypto::session::SessionHash,
                now: ::chrono::DateTime<::chrono::Utc>,
                idle_until: Option<::chrono::DateTime<::chrono::Utc>>,
            ) -> Result<Option<$crate::store::SessionRecord>, $crate::store::StoreError> {
                type Limits = (
                    ::uuid::Uuid,
                    ::chrono::DateTime<::chrono::Utc>,
                    ::chrono::DateTime<::chrono::Utc>,
                );
                // One statement decides and moves the idle limit, so a session that lapsed
                // an instant ago is not revived by a request racing its end.
                let live = "ended_at is null and idle_expires_at > $2 and expires_at > $2";
                let limits: Option<Limits> = match idle_until {
                    Some(until) => {
                        ::sqlx::query_as($dialect.sql_owned(format!(
                            "update console_sessions set idle_expires_at = \
                                 case when $3 < expires_at then $3 else expires_at end \
                             where token_hash = $1 and {live} \
                             returning principal_id, idle_expires_at, expires_at"
                        )))
                        .bind(token_hash.0.to_vec())
                        .bind(now)
                        .bind(until)
                        .fetch_optional(&self.pool)
                        .await?
                    }
                    None => {
                        ::sqlx::query_as($dialect.sql_owned(format!(
                            "select principal_id, idle_expires_at, expires_at \
                             from console_sessions where token_hash = $1 and {live}"
                        )))
                        .bind(token_hash.0.to_vec())
                        .bind(now)
                        .fetch_optional(&self.pool)
                        .await?
                    }
                };
                let Some((principal, idle_expires_at, expires_at)) = limits else {
                    return Ok(None);
                };
                let sql = format!(
                    "select {} from principals where id = $1",
                    $crate::store::principals::PRINCIPAL_COLUMNS
                );
                let row: Option<$crate::store::rows::PrincipalRow> =
                    ::sqlx::query_as($dialect.sql_owned(sql))
                        .bind(principal)
                        .fetch_optional(&self.pool)
                        .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                Ok(Some($crate::store::SessionRecord {
                    principal: row.try_into()?,
                    idle_expires_at,
                    expires_at,
                }))
            }
        }
    };
}

pub(super) use principal_store;
