//! One store body for both engines: a statement is written once, in PostgreSQL's numbered
//! placeholders (`$1`), and SQLite reads the same text with its own numbered ones (`?1`, which
//! bind by number just the same). Store methods whose SQL is the same on both engines are
//! written once, in a macro each engine's store invokes; only statements that really differ
//! stay per engine.

use std::borrow::Cow;

use sqlx::AssertSqlSafe;

/// The SQL dialect a shared store body writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `$1`.
    Postgres,
    /// SQLite: `?1`.
    Sqlite,
}

impl Dialect {
    /// A statement written with `$n` placeholders, as this engine reads it. The text must not
    /// hold a `$` of its own (none of the store's statements do: no dollar quoting).
    pub fn sql(self, text: &'static str) -> AssertSqlSafe<Cow<'static, str>> {
        match self {
            Dialect::Postgres => AssertSqlSafe(Cow::Borrowed(text)),
            Dialect::Sqlite => AssertSqlSafe(Cow::Owned(text.replace('$', "?"))),
        }
    }

    /// [`Dialect::sql`] for a statement assembled at run time (a shared column list).
    pub fn sql_owned(self, text: String) -> AssertSqlSafe<Cow<'static, str>> {
        match self {
            Dialect::Postgres => AssertSqlSafe(Cow::Owned(text)),
            Dialect::Sqlite => AssertSqlSafe(Cow::Owned(text.replace('$', "?"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_reads_the_same_numbered_placeholders() {
        let AssertSqlSafe(pg) = Dialect::Postgres.sql("update t set a = $2 where id = $1");
        let AssertSqlSafe(lite) = Dialect::Sqlite.sql("update t set a = $2 where id = $1");
        assert_eq!(pg, "update t set a = $2 where id = $1");
        assert_eq!(lite, "update t set a = ?2 where id = ?1");
    }
}
