//! What the audit trail stores: chained records, appended in batches and never changed.
//!
//! The database refuses UPDATE, DELETE and TRUNCATE on the table (a trigger), and a deployment
//! can give the service's role only INSERT and SELECT on it. Errors carry no row data.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::audit::{Action, ChainedEvent, Outcome, StoredRecord};
use crate::domain::{PrincipalId, TenantId};

/// Filters of an auditor's query; every one optional but the tenant.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    /// The auditor's tenant.
    pub tenant: TenantId,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// By this principal.
    pub actor: Option<PrincipalId>,
    /// Of this action.
    pub action: Option<Action>,
    /// Involving this token.
    pub token: Option<String>,
    /// With this outcome.
    pub outcome: Option<Outcome>,
    /// Records older than this id (the cursor).
    pub before_id: Option<i64>,
    /// Most records.
    pub limit: u32,
}

/// The audit trail's records.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends consecutive records of one chain in one transaction: all or none.
    async fn append_audit(&self, records: &[ChainedEvent]) -> Result<(), StoreError>;

    /// Records matching `query`, newest (highest id) first.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<StoredRecord>, StoreError>;

    /// Up to `limit` records in chain order (chain id, then seq) after `after`.
    async fn audit_chain_page(
        &self,
        after: Option<(Uuid, u64)>,
        limit: u32,
    ) -> Result<Vec<StoredRecord>, StoreError>;
}
