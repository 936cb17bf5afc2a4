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
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<Option<Vec<u32>>, $crate::store::StoreError> {
                let version = i32::try_from(key.version)
                    .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                if !<$store>::insert_data_key_on(&mut *conn, key, now).await? {
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

            /// Retires the signing key that signs now at `key.activates_at` and inserts `key`,
            /// pending until then, on `conn` (in the transaction that records the rotation).
            /// The key retired is one whose activation has passed, so a pending rotation is
            /// never overtaken: two keys are never pending at once.
            pub(in $crate::store) async fn rotate_signing_key_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                key: &$crate::store::StoredSigningKey,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<$crate::store::SigningKeyRotation, $crate::store::StoreError> {
                use $crate::store::SigningKeyRotation;
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

            /// Adds a DEK version unless it exists, on `conn`; returns whether it did.
            async fn insert_data_key_on(
                conn: &mut <$db as ::sqlx::Database>::Connection,
                key: &$crate::store::WrappedDataKey,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let version = i32::try_from(key.version)
                    .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?;
                let result = ::sqlx::query($dialect.sql(
                    "insert into data_keys (version, wrapped, created_at) values ($1, $2, $3) \
                     on conflict (version) do nothing",
                ))
                .bind(version)
                .bind(&key.wrapped)
                .bind(now)
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
                let count = |n: i64| u64::try_from(n).unwrap_or(0);
                let data_keys = keys
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
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
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
                let rows: Vec<$crate::store::rows::DataKeyRow> = ::sqlx::query_as(
                    $dialect.sql("select version, wrapped from data_keys order by version"),
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|r| {
                        Ok($crate::store::WrappedDataKey {
                            version: u32::try_from(r.version)
                                .map_err(|_| $crate::store::StoreError::Corrupt("key version"))?,
                            wrapped: r.wrapped,
                        })
                    })
                    .collect()
            }

            async fn insert_data_key(
                &self,
                key: &$crate::store::WrappedDataKey,
                now: ::chrono::DateTime<::chrono::Utc>,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut conn = self.pool.acquire().await?;
                <$store>::insert_data_key_on(&mut conn, key, now).await
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
