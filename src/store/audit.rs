//! What the audit trail stores: chained records, appended in batches and never changed.
//!
//! The database refuses UPDATE, DELETE and TRUNCATE on the table (a trigger), and a deployment
//! can give the service's role only INSERT and SELECT on it. Errors carry no row data.

mod sql;

use async_trait::async_trait;
use uuid::Uuid;

use super::StoreError;
pub use crate::domain::audit::AuditQuery;
use crate::domain::audit::{ChainedEvent, StoredRecord};
pub(super) use sql::audit_store;

/// The audit trail's records.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends consecutive records of one chain in one transaction: all or none.
    async fn append_audit(&self, records: &[ChainedEvent]) -> Result<(), StoreError>;

    /// Records matching `query`, newest (highest id) first.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<StoredRecord>, StoreError>;

    /// Whether a record can be appended right now: one is inserted and rolled back, so a
    /// refusing trigger, a permission taken away or a full disk shows here as it would on the
    /// next write. Nothing is kept.
    async fn probe_append(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError>;

    /// Up to `limit` records in chain order (chain id, then seq) after `after`.
    async fn audit_chain_page(
        &self,
        after: Option<(Uuid, u64)>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError>;
}
