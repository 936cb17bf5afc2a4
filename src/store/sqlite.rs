//! The embedded store: SQLite through sqlx (compiled in, nothing to install), behind the same
//! traits as PostgreSQL and held to the same conformance tests.
//!
//! One node, one writer: the database is a file in WAL mode, every transaction that reads and
//! then writes starts with `BEGIN IMMEDIATE` (so two writers queue instead of deadlocking), and
//! every single-statement rule (a grant's use, a TOTP step) is one conditional `UPDATE`, atomic
//! as in PostgreSQL. Arrays are JSON text, times RFC 3339 text in UTC. Nothing here logs row
//! data.

mod access;
mod audit;
mod tokens;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::rows::AppliedMigration;
use super::{Database, SchemaStatus, StoreError};

/// The migrations of the embedded store (`migrations/sqlite/`).
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The statement that opens a transaction which will write: takes the write lock up front.
const BEGIN_WRITE: &str = "begin immediate";

/// The vault's data in one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`).
    pub async fn connect(url: &str, max_connections: u32) -> Result<SqliteStore, StoreError> {
        SqliteStore::connect_waiting(url, max_connections, Duration::from_secs(10)).await
    }

    /// [`SqliteStore::connect`], where a caller waits at most `acquire_wait` for a connection.
    pub async fn connect_waiting(
        url: &str,
        max_connections: u32,
        acquire_wait: Duration,
    ) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before it is answered, as with PostgreSQL.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire_wait)
            .connect_with(options)
            .await?;
        Ok(SqliteStore { pool })
    }

    /// A transaction that only reads (several statements that must agree).
    pub(super) async fn begin_read(
        &self,
    ) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin().await
    }

    /// A transaction that will read and then write (`BEGIN IMMEDIATE`: it takes the write lock up front).
    pub(super) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, sqlx::Error> {
        self.pool.begin_with(BEGIN_WRITE).await
    }

    /// The pool, for tests and tools.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }
}

#[async_trait]
impl Database for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        let exists: bool = sqlx::query_scalar(
            "select count(*) > 0 from sqlite_master where type = 'table' and name = '_sqlx_migrations'",
        )
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
        SqliteStore::migrate(self).await
    }
}

/// Whether `err` is a unique violation (SQLite names columns, not constraints).
/// SQLite does not name the constraint a unique violation broke; every caller's statement has
/// only the one that can (`_constraint` documents which).
fn is_unique_violation(err: &sqlx::Error, _constraint: &str) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

/// A list as the JSON text SQLite keeps it in.
fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    serde_json::to_string(&items.iter().map(AsRef::as_ref).collect::<Vec<&str>>())
        .unwrap_or_else(|_| "[]".to_owned())
}

crate::store::keys::key_store!(
    SqliteStore,
    sqlx::Sqlite,
    crate::store::dialect::Dialect::Sqlite
);

crate::store::guard::guard_store!(
    SqliteStore,
    sqlx::Sqlite,
    crate::store::dialect::Dialect::Sqlite,
    "instr(roles, '\"tokenizer\"') > 0"
);

/// Roles as SQLite keeps a list: JSON text.
fn role_list(roles: &[crate::domain::Role]) -> String {
    json_list(&roles.iter().map(|r| r.as_str()).collect::<Vec<_>>())
}

crate::store::principals::principal_store!(
    SqliteStore,
    sqlx::Sqlite,
    crate::store::dialect::Dialect::Sqlite
);
