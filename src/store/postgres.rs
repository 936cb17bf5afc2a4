//! The PostgreSQL store.
//!
//! Runtime-checked queries (`sqlx::query_as`) with `FromRow` rows; multi-statement work runs in
//! an explicit transaction. Nothing here logs row data.

mod access;
mod audit;
mod tokens;

use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::rows::AppliedMigration;
use super::{Database, SchemaStatus, StoreError};

/// How long a pooled connection may sit idle before it is pinged at checkout.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(1);

/// The migrations this binary carries (`migrations/`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The vault's data in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// One connection attempt before the pool is made, so that a database that cannot be used
/// is named at once with its reason and what to do — the pool would retry until its wait ran
/// out and then say only "pool timed out". Host, port, user and database are printed; the
/// password never is.
async fn probe(options: &PgConnectOptions, wait: Duration) -> Result<(), StoreError> {
    use sqlx::Connection;
    let (host, port) = (options.get_host(), options.get_port());
    let (user, database) = (
        options.get_username(),
        options.get_database().unwrap_or(options.get_username()),
    );
    let at = format!("PostgreSQL at {host}:{port}");
    let attempt = sqlx::PgConnection::connect_with(options);
    let outcome = match tokio::time::timeout(wait.max(Duration::from_secs(1)), attempt).await {
        Ok(outcome) => outcome,
        Err(_) => {
            return Err(StoreError::Connect(format!(
                "{at} did not answer within {} s",
                wait.max(Duration::from_secs(1)).as_secs()
            )));
        }
    };
    let e = match outcome {
        Ok(conn) => {
            let _ = conn.close().await;
            return Ok(());
        }
        Err(e) => e,
    };
    let code = match &e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    Err(StoreError::Connect(match (&e, code.as_deref()) {
        (sqlx::Error::Io(io), _) => format!("cannot connect to {at}: {io}"),
        (sqlx::Error::Tls(tls), _) => format!("TLS to {at} failed: {tls}"),
        (_, Some("3D000")) => format!(
            "database \"{database}\" does not exist on {at}: create it (as a PostgreSQL \
             superuser: `createdb -h {host} -p {port} -O {user} {database}`), then run \
             `strongroom migrate`"
        ),
        (sqlx::Error::Database(db), Some("28P01" | "28000")) => {
            format!("{at} refused user \"{user}\": {}", db.message())
        }
        (sqlx::Error::Database(db), _) => format!("{at}: {}", db.message()),
        (other, _) => format!("cannot connect to {at}: {other}"),
    }))
}

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<PgStore, StoreError> {
        PgStore::connect_waiting(url, max_connections, super::DEFAULT_ACQUIRE_WAIT).await
    }

    /// [`PgStore::connect`], where a caller waits at most `acquire_wait` for a connection.
    pub async fn connect_waiting(
        url: &str,
        max_connections: u32,
        acquire_wait: Duration,
    ) -> Result<PgStore, StoreError> {
        PgStore::connect_with(url.parse()?, max_connections, acquire_wait).await
    }

    /// A server's pool: a caller waits at most `request_timeout` for a connection, and
    /// PostgreSQL cancels a statement that runs (or waits for a lock) just past that, so a
    /// stalled database leaves no work behind the request's `503`.
    pub async fn connect_serving(
        url: &str,
        max_connections: u32,
        request_timeout: Duration,
    ) -> Result<PgStore, StoreError> {
        // A little past the request's own limit: the request is answered `503 timeout` first,
        // and the database then drops the work it was waiting on.
        let millis = (request_timeout.as_millis() * 11 / 10 + 100).to_string();
        let options: PgConnectOptions = url.parse()?;
        let options = options.options([("statement_timeout", millis.as_str())]);
        PgStore::connect_with(options, max_connections, request_timeout).await
    }

    async fn connect_with(
        options: PgConnectOptions,
        max_connections: u32,
        acquire_wait: Duration,
    ) -> Result<PgStore, StoreError> {
        probe(&options, acquire_wait).await?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_wait)
            // A ping before every checkout doubles the round trips of a one-query request, so
            // only a connection that sat idle for a second is pinged first: one the database
            // dropped while nothing ran (a restart, a terminated backend) is replaced before a
            // request's write meets it. A connection that breaks under load fails its one
            // statement instead (a 503), and the pool replaces it.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_BEFORE_PING {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options.application_name("strongroom"))
            .await?;
        Ok(PgStore { pool })
    }

    /// A store over an existing pool.
    pub fn from_pool(pool: PgPool) -> PgStore {
        PgStore { pool }
    }

    /// A transaction that only reads (several statements that must agree).
    pub(super) async fn begin_read(
        &self,
    ) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// A transaction that will read and then write.
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl Database for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let exists: bool = sqlx::query_scalar("select to_regclass('_sqlx_migrations') is not null")
            .fetch_one(&self.pool)
            .await?;
        let applied: Vec<AppliedMigration> = if exists {
            sqlx::query_as("select version, checksum from _sqlx_migrations where success")
                .fetch_all(&self.pool)
                .await?
        } else {
            Vec::new()
        };
        Ok(super::schema_status(&MIGRATOR, &applied))
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        PgStore::migrate(self).await
    }
}

/// Whether `err` is a unique violation of the named constraint.
fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation() && db.constraint() == Some(constraint))
}

crate::store::keys::key_store!(
    PgStore,
    sqlx::Postgres,
    crate::store::dialect::Dialect::Postgres
);

crate::store::guard::guard_store!(
    PgStore,
    sqlx::Postgres,
    crate::store::dialect::Dialect::Postgres,
    "'tokenizer' = any (roles)"
);

/// Roles as PostgreSQL keeps a list: `text[]`.
fn role_list(roles: &[crate::domain::Role]) -> Vec<&'static str> {
    roles.iter().map(|r| r.as_str()).collect()
}

crate::store::principals::principal_store!(
    PgStore,
    sqlx::Postgres,
    crate::store::dialect::Dialect::Postgres
);
