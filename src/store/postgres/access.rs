//! Access requests, decisions and grants in PostgreSQL: the shared body
//! ([`crate::store::access::access_store`]) with `for update` row locks and arrays.

use std::collections::HashMap;

use uuid::Uuid;

use super::PgStore;
use crate::domain::PrincipalId;
use crate::domain::Reason;
use crate::domain::access::Decision;
use crate::store::StoreError;
use crate::store::rows::DecisionRow;
pub(super) use crate::store::rows::tokens_text;

impl PgStore {
    /// The decisions of several requests, in one query.
    async fn decisions_of(
        &self,
        conn: &mut sqlx::PgConnection,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<Decision>>, StoreError> {
        let rows: Vec<DecisionRow> = sqlx::query_as(
            "select request_id, approver_id, approve, comment, created_at from access_decisions \
             where request_id = any($1) order by created_at, approver_id",
        )
        .bind(ids)
        .fetch_all(conn)
        .await?;
        let mut by_request: HashMap<Uuid, Vec<Decision>> = HashMap::new();
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
        Ok(by_request)
    }
}

crate::store::access::access_store!(
    PgStore,
    sqlx::Postgres,
    crate::store::dialect::Dialect::Postgres,
    " for update"
);
