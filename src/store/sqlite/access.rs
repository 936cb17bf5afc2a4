//! Access requests, decisions and grants in SQLite: the shared body
//! ([`crate::store::access::access_store`]); the `BEGIN IMMEDIATE` transaction is the lock.

use std::collections::HashMap;

use uuid::Uuid;

use super::{SqliteStore, json_list};
use crate::domain::Reason;
use crate::domain::access::Decision;
use crate::domain::{PrincipalId, Token};
use crate::store::StoreError;
use crate::store::rows::DecisionRow;

/// A request's or grant's tokens as the JSON text SQLite keeps them in.
fn tokens_text(tokens: &[Token]) -> String {
    json_list(&tokens.iter().map(Token::as_str).collect::<Vec<_>>())
}

impl SqliteStore {
    /// The decisions of several requests, one query each.
    async fn decisions_of(
        &self,
        conn: &mut sqlx::SqliteConnection,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<Decision>>, StoreError> {
        let mut by_request: HashMap<Uuid, Vec<Decision>> = HashMap::new();
        for id in ids {
            let rows: Vec<DecisionRow> = sqlx::query_as(
                "select request_id, approver_id, approve, comment, created_at from access_decisions \
                 where request_id = ?1 order by created_at, approver_id",
            )
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                by_request
                    .entry(row.request_id)
                    .or_default()
                    .push(Decision {
                        approver: PrincipalId(row.approver_id),
                        approve: row.approve,
                        comment: row.comment.map(Reason::from_stored),
                        at: row.created_at,
                    });
            }
        }
        Ok(by_request)
    }
}

crate::store::access::access_store!(
    SqliteStore,
    sqlx::Sqlite,
    crate::store::dialect::Dialect::Sqlite,
    ""
);
