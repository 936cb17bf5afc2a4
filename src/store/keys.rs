//! Wrapped keys, secrets and DEK encryption counts: one body for both engines (the statements
//! are the same; see [`super::dialect`]).

/// Whether a signing key (a row of `signing_keys`) is published at `$1`: unretired, retired
/// after `$1`, or still the `kid` of an unexpired grant (by `grants_kid_expires_idx`). One
/// expression, so what instances verify with and what `keys status` says cannot differ.
macro_rules! published_sql {
    () => {
        "(signing_keys.retired_at is null or signing_keys.retired_at > $1 \
          or exists (select 1 from grants g \
                     where g.kid = signing_keys.kid and g.expires_at > $1))"
    };
}

/// Implements [`crate::store::KeyStore`] for an engine's store (a type with a `pool`) in a
/// [`crate::store::dialect::Dialect`].
macro_rules! key_store {
    ($store:ty, $db:ty, $dialect:expr) => {
        impl $store {
            /// Inserts the next data key and retires every older active one, on `conn` (in the
            /// transaction that records the rotation). `None` when the version exists already
            /// (another rotation won); otherwise the versions retired.
            pub(in $crate::store) async fn rotate_data_key_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                key: &$crate::store::WrappedDataKey,
                witness: Option<&$crate::store::WrappedDataKey>,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Option<Vec<u32>>, $crate::store::StoreError> {
                let version = i32::try_from(key.version)
                    .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                if !<$store>::witness_holds_on(&mut *conn, witness).await?
                    || !<$store>::insert_data_key_on(&mut *conn, key, now).await?
                {
                    return Ok(None);
                }
                let retired: Vec<(i32,)> = ::sqlx::query_as($dialect.sql(
                    "update data_keys set retired_at = $2 \
                     where version < $1 and retired_at is null returning version",
                ))
                .bind(version)
                .bind(now)
                .fetch_all(&mut *conn)
                .await?;
                Ok(Some(
                    retired
                        .into_iter()
                        .filter_map(|(v,)| u32::try_from(v).ok())
                        .collect(),
                ))
            }

            /// Seals rows again under the active key, on `conn` (in the transaction of their
            /// `key.reencrypt` record). A row is replaced only while it is live and still
            /// sealed under the version it was read under: a delete or another re-encryption
            /// that came first wins. Returns how many were replaced.
            pub(in $crate::store) async fn reseal_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                rows: &[$crate::store::ResealedRow],
            ) -> Result<u64, $crate::store::StoreError> {
                let mut moved = 0;
                for row in rows {
                    let to = i32::try_from(row.sealed.version)
                        .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                    let from = i32::try_from(row.from)
                        .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                    moved += ::sqlx::query($dialect.sql(
                        "update tokens set sealed_pan = $1, dek_version = $2 \
                         where tenant_id = $3 and token = $4 and dek_version = $5 \
                           and destroyed_at is null",
                    ))
                    .bind(&row.sealed.bytes)
                    .bind(to)
                    .bind(row.tenant.0)
                    .bind(row.token.as_str())
                    .bind(from)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                }
                Ok(moved)
            }

            /// Destroys a retired data key under which no live row is sealed, on `conn` (in
            /// the transaction of its `key.destroy` record): its row leaves `data_keys`, so
            /// the foreign key from `tokens` refuses a row sealed under it by an instance that
            /// has not yet seen the rotation (in PostgreSQL the delete waits for such an insert
            /// in flight and then fails, leaving the key), and what is known of it moves to
            /// `destroyed_data_keys`.
            pub(in $crate::store) async fn destroy_data_key_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                version: u32,
                retired_before: ::chrono::DateTime<::chrono::Utc>,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<$crate::store::KeyDestruction, $crate::store::StoreError> {
                use $crate::store::KeyDestruction;
                // A version past what the column holds was never made.
                let Ok(version) = i32::try_from(version) else {
                    return Ok(KeyDestruction::NotFound);
                };
                let key: Option<(Option<::chrono::DateTime<::chrono::Utc>>, bool)> =
                    ::sqlx::query_as($dialect.sql(
                        "select retired_at, version = (select max(version) from data_keys) \
                         from data_keys where version = $1",
                    ))
                    .bind(version)
                    .fetch_optional(&mut *conn)
                    .await?;
                let retired = match key {
                    None => return Ok(KeyDestruction::NotFound),
                    Some((None, _)) | Some((Some(_), true)) => {
                        return Ok(KeyDestruction::StillActive);
                    }
                    Some((Some(retired), false)) => retired,
                };
                let (rows,): (i64,) = ::sqlx::query_as($dialect.sql(
                    "select count(*) from tokens where dek_version = $1",
                ))
                .bind(version)
                .fetch_one(&mut *conn)
                .await?;
                if rows > 0 {
                    return Ok(KeyDestruction::RowsRemain(u64::try_from(rows).unwrap_or(0)));
                }
                if retired > retired_before {
                    return Ok(KeyDestruction::RecentlyRetired(retired));
                }
                ::sqlx::query($dialect.sql(
                    "insert into destroyed_data_keys \
                     (version, encryptions, created_at, retired_at, destroyed_at) \
                     select version, encryptions, created_at, retired_at, $2 from data_keys \
                     where version = $1",
                ))
                .bind(version)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                ::sqlx::query($dialect.sql("delete from data_keys where version = $1"))
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
                Ok(KeyDestruction::Destroyed)
            }

            /// Replaces every wrapped key and secret with its new wrapping, on `conn` (in the
            /// transaction of its `key.rewrap` record). Each replacement needs the row as it
            /// was read, and the tables must hold no row that was not read: a key made or
            /// changed meanwhile (by an instance still serving) fails the whole transaction.
            pub(in $crate::store) async fn rewrap_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                rewrap: &$crate::store::Rewrap,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::StoreError;
                let changed = StoreError::Changed("the wrapped keys");
                let replaced = |n: u64| {
                    if n == 1 { Ok(()) } else { Err(StoreError::Changed("the wrapped keys")) }
                };
                for (key, new) in &rewrap.data_keys {
                    let (version, old) = (
                        i32::try_from(key.version)
                            .map_err(|_| StoreError::Corrupt("key version"))?,
                        &key.wrapped,
                    );
                    replaced(::sqlx::query($dialect.sql(
                        "update data_keys set wrapped = $1 where version = $2 and wrapped = $3",
                    ))
                    .bind(new)
                    .bind(version)
                    .bind(old)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected())?;
                }
                for (name, old, new) in &rewrap.secrets {
                    replaced(::sqlx::query($dialect.sql(
                        "update vault_secrets set wrapped = $1 where name = $2 and wrapped = $3",
                    ))
                    .bind(new)
                    .bind(name)
                    .bind(old)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected())?;
                }
                for (kid, old, new) in &rewrap.signing_keys {
                    replaced(::sqlx::query($dialect.sql(
                        "update signing_keys set wrapped = $1 where kid = $2 and wrapped = $3",
                    ))
                    .bind(new)
                    .bind(kid)
                    .bind(old)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected())?;
                }
                for (tenant, old, new) in &rewrap.tenant_keys {
                    replaced(::sqlx::query($dialect.sql(
                        "update tenant_keys set wrapped = $1 where tenant_id = $2 and wrapped = $3",
                    ))
                    .bind(new)
                    .bind(tenant.0)
                    .bind(old)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected())?;
                }
                let counts: (i64, i64, i64, i64) = ::sqlx::query_as($dialect.sql(
                    "select (select count(*) from data_keys), (select count(*) from vault_secrets), \
                            (select count(*) from signing_keys), \
                            (select count(*) from tenant_keys where wrapped is not null)",
                ))
                .fetch_one(&mut *conn)
                .await?;
                let read = (
                    rewrap.data_keys.len(),
                    rewrap.secrets.len(),
                    rewrap.signing_keys.len(),
                    rewrap.tenant_keys.len(),
                );
                let count = |n: i64| usize::try_from(n).unwrap_or(usize::MAX);
                if (count(counts.0), count(counts.1), count(counts.2), count(counts.3)) != read {
                    return Err(changed);
                }
                Ok(())
            }

            /// Destroys the card data of live tokens of shredded tenants, on `conn` (in the
            /// transaction of their records); how many, by tenant.
            pub(in $crate::store) async fn sweep_shredded_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Vec<($crate::domain::TenantId, u64)>, $crate::store::StoreError> {
                let swept: Vec<(::uuid::Uuid,)> = ::sqlx::query_as($dialect.sql(concat!(
                    "update tokens set ",
                    $crate::store::tokens::sql::destroy_card_data!(),
                    ", destroyed_at = $1 where destroyed_at is null and tenant_id in \
                     (select tenant_id from tenant_keys where destroyed_at is not null) \
                     returning tenant_id",
                )))
                .bind(now)
                .fetch_all(&mut *conn)
                .await?;
                let mut by_tenant: Vec<($crate::domain::TenantId, u64)> = Vec::new();
                for (tenant,) in swept {
                    match by_tenant.iter_mut().find(|(t, _)| t.0 == tenant) {
                        Some((_, n)) => *n += 1,
                        None => by_tenant.push(($crate::domain::TenantId(tenant), 1)),
                    }
                }
                Ok(by_tenant)
            }

            /// Shreds a tenant by name, on `conn` (in the transaction of its `tenant.shred`
            /// record): its key is destroyed (or marked destroyed if it never had one, so none
            /// is made again), its live tokens' card data destroyed, its unexpired grants
            /// revoked, its principals disabled and its pending requests expired. `None` when
            /// there is no such tenant or it was shredded already.
            pub(in $crate::store) async fn shred_tenant_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                name: &str,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Option<$crate::store::Shredded>, $crate::store::StoreError> {
                let tenant: Option<(::uuid::Uuid,)> = ::sqlx::query_as($dialect.sql(
                    "update tenants set shredded_at = $2 where name = $1 and shredded_at is null \
                     returning id",
                ))
                .bind(name)
                .bind(now)
                .fetch_optional(&mut *conn)
                .await?;
                let Some((tenant,)) = tenant else {
                    return Ok(None);
                };
                ::sqlx::query($dialect.sql(
                    "insert into tenant_keys (tenant_id, wrapped, own_fingerprints, created_at, \
                     destroyed_at) values ($1, null, true, $2, $2) \
                     on conflict (tenant_id) do update set wrapped = null, destroyed_at = $2",
                ))
                .bind(tenant)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                let tokens = ::sqlx::query($dialect.sql(concat!(
                    "update tokens set ",
                    $crate::store::tokens::sql::destroy_card_data!(),
                    ", destroyed_at = $2 where tenant_id = $1 and destroyed_at is null",
                )))
                .bind(tenant)
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                let grants = ::sqlx::query($dialect.sql(
                    "update grants set revoked_at = $2 \
                     where tenant_id = $1 and revoked_at is null and expires_at > $2",
                ))
                .bind(tenant)
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                let principals = ::sqlx::query($dialect.sql(
                    "update principals set disabled_at = $2 \
                     where tenant_id = $1 and disabled_at is null",
                ))
                .bind(tenant)
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                let requests = ::sqlx::query($dialect.sql(
                    "update access_requests set status = 'expired', decided_at = $2 \
                     where tenant_id = $1 and status = 'pending'",
                ))
                .bind(tenant)
                .bind(now)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                Ok(Some($crate::store::Shredded {
                    tenant: $crate::domain::TenantId(tenant),
                    tokens,
                    grants,
                    principals,
                    requests,
                }))
            }

            /// Retires the signing key that signs now at `key.activates_at` and inserts `key`,
            /// pending until then, on `conn` (in the transaction that records the rotation).
            /// The key retired is one whose activation has passed, so a pending rotation is
            /// never overtaken: two keys are never pending at once.
            pub(in $crate::store) async fn rotate_signing_key_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                key: &$crate::store::StoredSigningKey,
                witness: Option<&$crate::store::WrappedDataKey>,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<$crate::store::SigningKeyRotation, $crate::store::StoreError> {
                use $crate::store::SigningKeyRotation;
                // Never insert a key wrapped under a master key a rewrap has replaced.
                if !<$store>::witness_holds_on(&mut *conn, witness).await? {
                    return Ok(SigningKeyRotation::Raced);
                }
                let activates_at = key.activates_at.unwrap_or(now);
                // Retiring first keeps the one-unretired-key index satisfied when the new key
                // goes in. In PostgreSQL a concurrent rotation waits on the row and then finds
                // it retired (read committed re-checks the condition), so it retires nothing
                // and inserts nothing; SQLite's writers take turns and see the pending key.
                let retired: Vec<(String,)> = ::sqlx::query_as($dialect.sql(
                    "update signing_keys set retired_at = $1 \
                     where retired_at is null and (activates_at is null or activates_at <= $2) \
                     returning kid",
                ))
                .bind(activates_at)
                .bind(now)
                .fetch_all(&mut *conn)
                .await?;
                let Some((retired,)) = retired.into_iter().next() else {
                    let pending: Option<(String, Option<::chrono::DateTime<::chrono::Utc>>)> =
                        ::sqlx::query_as($dialect.sql(
                            "select kid, activates_at from signing_keys where retired_at is null",
                        ))
                        .fetch_optional(&mut *conn)
                        .await?;
                    return Ok(match pending {
                        Some((kid, Some(activates_at))) if activates_at > now => {
                            SigningKeyRotation::Pending { kid, activates_at }
                        }
                        _ => SigningKeyRotation::Raced,
                    });
                };
                ::sqlx::query($dialect.sql(
                    "insert into signing_keys \
                     (kid, algorithm, wrapped, public_key, created_at, activates_at) \
                     values ($1, $2, $3, $4, $5, $6)",
                ))
                .bind(&key.kid)
                .bind(&key.algorithm)
                .bind(&key.wrapped)
                .bind(&key.public_key)
                .bind(now)
                .bind(activates_at)
                .execute(&mut *conn)
                .await?;
                Ok(SigningKeyRotation::Rotated { retired })
            }

            /// Whether `witness` — a data key as the caller read it and found it opens under its
            /// master key — is still stored so, on `conn`, holding its row until the
            /// transaction ends. A key wrapped under a master key is inserted only in the same
            /// transaction as this check: a rewrap to another master key either ran first (the
            /// witness is gone, nothing is inserted) or waits for the insert and then finds a
            /// key it did not read (and changes nothing).
            async fn witness_holds_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                witness: Option<&$crate::store::WrappedDataKey>,
            ) -> Result<bool, $crate::store::StoreError> {
                let Some(witness) = witness else {
                    return Ok(true);
                };
                let version = i32::try_from(witness.version)
                    .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                let held = ::sqlx::query($dialect.sql(
                    "update data_keys set wrapped = wrapped where version = $1 and wrapped = $2",
                ))
                .bind(version)
                .bind(&witness.wrapped)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                Ok(held == 1)
            }

            /// Adds a DEK version unless it exists or was destroyed (a version is never made
            /// twice), on `conn`; returns whether it did.
            async fn insert_data_key_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                key: &$crate::store::WrappedDataKey,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let version = i32::try_from(key.version)
                    .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                let result = ::sqlx::query($dialect.sql(
                    "insert into data_keys (version, wrapped, created_at, tenant_bound) \
                     select $1, $2, $3, $4 \
                     where not exists (select 1 from destroyed_data_keys where version = $1) \
                     on conflict (version) do nothing",
                ))
                .bind(version)
                .bind(&key.wrapped)
                .bind(now)
                .bind(key.tenant_bound)
                .execute(&mut *conn)
                .await?;
                Ok(result.rows_affected() == 1)
            }
        }

        #[::async_trait::async_trait]
        impl $crate::store::KeyStore for $store {
            async fn key_inventory(
                &self,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<$crate::store::KeyInventory, $crate::store::StoreError> {
                use ::chrono::{DateTime, Utc};
                use $crate::store::StoreError;
                let keys: Vec<(i32, i64, DateTime<Utc>, Option<DateTime<Utc>>)> =
                    ::sqlx::query_as($dialect.sql(
                        "select version, encryptions, created_at, retired_at from data_keys \
                         order by version",
                    ))
                    .fetch_all(&self.pool)
                    .await?;
                let rows: Vec<(i32, i64)> = ::sqlx::query_as($dialect.sql(
                    "select dek_version, count(*) from tokens where dek_version is not null \
                     group by dek_version",
                ))
                .fetch_all(&self.pool)
                .await?;
                let signing: Vec<$crate::store::rows::SigningKeyStateRow> =
                    ::sqlx::query_as($dialect.sql(concat!(
                    "select kid, created_at, activates_at, retired_at, ",
                    $crate::store::keys::published_sql!(),
                    " as published from signing_keys order by coalesce(activates_at, created_at), kid"
                )))
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                let secrets: Vec<(String, DateTime<Utc>)> = ::sqlx::query_as(
                    $dialect.sql("select name, created_at from vault_secrets order by name"),
                )
                .fetch_all(&self.pool)
                .await?;
                let destroyed: Vec<(
                    i32,
                    i64,
                    DateTime<Utc>,
                    Option<DateTime<Utc>>,
                    DateTime<Utc>,
                )> = ::sqlx::query_as($dialect.sql(
                    "select version, encryptions, created_at, retired_at, destroyed_at \
                     from destroyed_data_keys",
                ))
                .fetch_all(&self.pool)
                .await?;
                let tenant_keys: Vec<(::uuid::Uuid, String, DateTime<Utc>, Option<DateTime<Utc>>)> =
                    ::sqlx::query_as($dialect.sql(
                        "select k.tenant_id, t.name, k.created_at, k.destroyed_at \
                         from tenant_keys k join tenants t on t.id = k.tenant_id order by t.name",
                    ))
                    .fetch_all(&self.pool)
                    .await?;
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                let mut data_keys = destroyed
                    .into_iter()
                    .map(|(version, encryptions, created_at, retired_at, destroyed_at)| {
                        Ok($crate::store::DataKeyState {
                            version: u32::try_from(version)
                                .map_err(|_| StoreError::Corrupt("key version"))?,
                            encryptions: count(encryptions),
                            rows: 0,
                            created_at,
                            retired_at,
                            destroyed_at: Some(destroyed_at),
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                let live = keys
                    .into_iter()
                    .map(|(version, encryptions, created_at, retired_at)| {
                        Ok($crate::store::DataKeyState {
                            version: u32::try_from(version)
                                .map_err(|_| StoreError::Corrupt("key version"))?,
                            encryptions: count(encryptions),
                            rows: rows
                                .iter()
                                .find(|(v, _)| *v == version)
                                .map_or(0, |(_, n)| count(*n)),
                            created_at,
                            retired_at,
                            destroyed_at: None,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                data_keys.extend(live);
                data_keys.sort_by_key(|k| k.version);
                Ok($crate::store::KeyInventory {
                    data_keys,
                    signing_keys: signing
                        .into_iter()
                        .map(|r| $crate::store::SigningKeyState {
                            kid: r.kid,
                            created_at: r.created_at,
                            activates_at: r.activates_at,
                            retired_at: r.retired_at,
                            published: r.published,
                        })
                        .collect(),
                    secrets,
                    tenant_keys: tenant_keys
                        .into_iter()
                        .map(|(tenant, name, created_at, destroyed_at)| {
                            $crate::store::TenantKeyState {
                                tenant: $crate::domain::TenantId(tenant),
                                name,
                                created_at,
                                destroyed_at,
                            }
                        })
                        .collect(),
                })
            }

            async fn data_key_created(
                &self,
                version: u32,
            ) -> Result<Option<::chrono::DateTime<::chrono::Utc>>, $crate::store::StoreError> {
                let version = i32::try_from(version)
                    .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                let created: Option<(::chrono::DateTime<::chrono::Utc>,)> = ::sqlx::query_as(
                    $dialect.sql("select created_at from data_keys where version = $1"),
                )
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
                Ok(created.map(|(at,)| at))
            }

            async fn data_keys(
                &self,
            ) -> Result<Vec<$crate::store::WrappedDataKey>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::rows::DataKeyRow> = ::sqlx::query_as($dialect.sql(
                    "select version, wrapped, tenant_bound from data_keys order by version",
                ))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok($crate::store::WrappedDataKey {
                            version: u32::try_from(r.version)
                                .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?,
                            wrapped: r.wrapped,
                            tenant_bound: r.tenant_bound,
                        })
                    })
                    .collect()
            }

            async fn tenant_key(
                &self,
                tenant: $crate::domain::TenantId,
            ) -> Result<Option<$crate::store::StoredTenantKey>, $crate::store::StoreError> {
                let row: Option<(Option<Vec<u8>>, bool)> = ::sqlx::query_as($dialect.sql(
                    "select wrapped, own_fingerprints from tenant_keys where tenant_id = $1",
                ))
                .bind(tenant.0)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(wrapped, own_fingerprints)| $crate::store::StoredTenantKey {
                    wrapped,
                    own_fingerprints,
                }))
            }

            async fn insert_tenant_key(
                &self,
                tenant: $crate::domain::TenantId,
                wrapped: &[u8],
                witness: &$crate::store::WrappedDataKey,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                if !<$store>::witness_holds_on(&mut tx, Some(witness)).await? {
                    return Err($crate::store::StoreError::Changed("the master key"));
                }
                let result = ::sqlx::query($dialect.sql(
                    "insert into tenant_keys (tenant_id, wrapped, own_fingerprints, created_at) \
                     select $1, $2, not exists (select 1 from tokens where tenant_id = $1), $3 \
                     on conflict (tenant_id) do nothing",
                ))
                .bind(tenant.0)
                .bind(wrapped)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(result.rows_affected() == 1)
            }

            async fn shredded_tenants(
                &self,
            ) -> Result<Vec<$crate::domain::TenantId>, $crate::store::StoreError> {
                let rows: Vec<(::uuid::Uuid,)> = ::sqlx::query_as($dialect.sql(
                    "select tenant_id from tenant_keys where destroyed_at is not null",
                ))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id,)| $crate::domain::TenantId(id))
                    .collect())
            }

            async fn wrapped_keys(
                &self,
            ) -> Result<$crate::store::Rewrap, $crate::store::StoreError> {
                let data_keys: Vec<(i32, Vec<u8>, bool)> = ::sqlx::query_as($dialect.sql(
                    "select version, wrapped, tenant_bound from data_keys order by version",
                ))
                .fetch_all(&self.pool)
                .await?;
                let secrets: Vec<(String, Vec<u8>)> = ::sqlx::query_as(
                    $dialect.sql("select name, wrapped from vault_secrets order by name"),
                )
                .fetch_all(&self.pool)
                .await?;
                let signing_keys: Vec<(String, Vec<u8>)> = ::sqlx::query_as(
                    $dialect.sql("select kid, wrapped from signing_keys order by kid"),
                )
                .fetch_all(&self.pool)
                .await?;
                let tenant_keys: Vec<(::uuid::Uuid, Vec<u8>)> = ::sqlx::query_as($dialect.sql(
                    "select tenant_id, wrapped from tenant_keys where wrapped is not null \
                     order by tenant_id",
                ))
                .fetch_all(&self.pool)
                .await?;
                Ok($crate::store::Rewrap {
                    data_keys: data_keys
                        .into_iter()
                        .map(|(v, wrapped, tenant_bound)| {
                            u32::try_from(v)
                                .map(|version| {
                                    (
                                        $crate::store::WrappedDataKey {
                                            version,
                                            wrapped,
                                            tenant_bound,
                                        },
                                        Vec::new(),
                                    )
                                })
                                .map_err(|_| $crate::store::StoreError::Corrupt("key version"))
                        })
                        .collect::<Result<_, _>>()?,
                    secrets: secrets.into_iter().map(|(n, w)| (n, w, Vec::new())).collect(),
                    signing_keys: signing_keys
                        .into_iter()
                        .map(|(k, w)| (k, w, Vec::new()))
                        .collect(),
                    tenant_keys: tenant_keys
                        .into_iter()
                        .map(|(t, w)| ($crate::domain::TenantId(t), w, Vec::new()))
                        .collect(),
                })
            }

            async fn newest_data_key_version(&self) -> Result<u32, $crate::store::StoreError> {
                let (newest,): (i64,) = ::sqlx::query_as($dialect.sql(
                    "select cast(coalesce(max(version), 0) as bigint) from \
                     (select version from data_keys union all \
                      select version from destroyed_data_keys) as versions",
                ))
                .fetch_one(&self.pool)
                .await?;
                u32::try_from(newest).map_err(|_| $crate::store::StoreError::Corrupt("key version"))
            }

            async fn rows_to_reencrypt(&self, active: u32) -> Result<u64, $crate::store::StoreError> {
                let active = i32::try_from(active)
                    .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                let (rows,): (i64,) = ::sqlx::query_as($dialect.sql(
                    "select count(*) from tokens where dek_version < $1",
                ))
                .bind(active)
                .fetch_one(&self.pool)
                .await?;
                Ok(u64::try_from(rows).unwrap_or(0))
            }

            async fn rows_under_older_keys(
                &self,
                active: u32,
                after: Option<&($crate::domain::TenantId, $crate::domain::Token)>,
                limit: u32,
            ) -> Result<Vec<$crate::store::SealedRow>, $crate::store::StoreError> {
                use $crate::store::StoreError;
                let active =
                    i32::try_from(active).map_err(|_| StoreError::Corrupt("key version"))?;
                // Keyset order over the primary key: each batch starts where the last ended,
                // so rows re-encrypted meanwhile or left behind are not met again.
                // The walk starts below every key (the nil id and the empty token) rather than
                // with a null, so the statement is the same range scan every batch.
                let (tenant, token) = match after {
                    Some((tenant, token)) => (tenant.0, token.as_str()),
                    None => (::uuid::Uuid::nil(), ""),
                };
                let rows: Vec<(::uuid::Uuid, String, i32, Vec<u8>)> =
                    ::sqlx::query_as($dialect.sql(
                        "select tenant_id, token, dek_version, sealed_pan from tokens \
                         where dek_version < $1 and (tenant_id, token) > ($2, $3) \
                         order by tenant_id, token limit $4",
                    ))
                    .bind(active)
                    .bind(tenant)
                    .bind(token)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter()
                    .map(|(tenant, token, version, bytes)| {
                        Ok($crate::store::SealedRow {
                            tenant: $crate::domain::TenantId(tenant),
                            token: $crate::domain::Token::from_stored(token),
                            sealed: $crate::crypto::keys::SealedPan {
                                version: u32::try_from(version)
                                    .map_err(|_| StoreError::Corrupt("key version"))?,
                                bytes,
                            },
                        })
                    })
                    .collect()
            }

            async fn insert_data_key(
                &self,
                key: &$crate::store::WrappedDataKey,
                witness: Option<&$crate::store::WrappedDataKey>,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.pool.begin().await?;
                if !<$store>::witness_holds_on(&mut tx, witness).await? {
                    return Err($crate::store::StoreError::Changed("the master key"));
                }
                let inserted = <$store>::insert_data_key_on(&mut tx, key, now).await?;
                tx.commit().await?;
                Ok(inserted)
            }

            async fn reserve_encryptions(
                &self,
                version: u32,
                count: u32,
                limit: u64,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let version = i32::try_from(version)
                    .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                // One conditional increment: concurrent instances can never reserve past the
                // limit.
                let reserved = ::sqlx::query($dialect.sql(
                    "update data_keys set encryptions = encryptions + $2 \
                     where version = $1 and retired_at is null and encryptions + $2 <= $3",
                ))
                .bind(version)
                .bind(i64::from(count))
                .bind(limit)
                .execute(&self.pool)
                .await?
                .rows_affected()
                    == 1;
                if !reserved {
                    ::sqlx::query($dialect.sql(
                        "update data_keys set retired_at = coalesce(retired_at, $2) \
                         where version = $1",
                    ))
                    .bind(version)
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                }
                Ok(reserved)
            }

            async fn secret(
                &self,
                name: &str,
            ) -> Result<Option<Vec<u8>>, $crate::store::StoreError> {
                Ok(::sqlx::query_scalar(
                    $dialect.sql("select wrapped from vault_secrets where name = $1"),
                )
                .bind(name)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn insert_secret(
                &self,
                name: &str,
                wrapped: &[u8],
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let result = ::sqlx::query($dialect.sql(
                    "insert into vault_secrets (name, wrapped, created_at) values ($1, $2, $3) \
                     on conflict (name) do nothing",
                ))
                .bind(name)
                .bind(wrapped)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }

            async fn signing_keys(
                &self,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Vec<$crate::store::StoredSigningKey>, $crate::store::StoreError> {
                let rows: Vec<$crate::store::rows::SigningKeyRow> =
                    ::sqlx::query_as($dialect.sql(concat!(
                        "select kid, algorithm, wrapped, public_key, activates_at, retired_at \
                         from signing_keys where ",
                        $crate::store::keys::published_sql!(),
                        " order by coalesce(activates_at, created_at), kid"
                    )))
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|r| $crate::store::StoredSigningKey {
                        kid: r.kid,
                        algorithm: r.algorithm,
                        wrapped: r.wrapped,
                        public_key: r.public_key,
                        activates_at: r.activates_at,
                        retired_at: r.retired_at,
                    })
                    .collect())
            }

            async fn insert_signing_key(
                &self,
                key: &$crate::store::StoredSigningKey,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                // The partial unique index `signing_keys_one_active` decides a race between
                // instances.
                let result = ::sqlx::query($dialect.sql(
                    "insert into signing_keys (kid, algorithm, wrapped, public_key, created_at) \
                     values ($1, $2, $3, $4, $5) on conflict do nothing",
                ))
                .bind(&key.kid)
                .bind(&key.algorithm)
                .bind(&key.wrapped)
                .bind(&key.public_key)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(result.rows_affected() == 1)
            }
        }
    };
}

pub(super) use key_store;
pub(super) use published_sql;
