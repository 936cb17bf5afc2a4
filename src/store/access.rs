//! What just-in-time access stores: access requests, the decisions on them, and grants.
//!
//! The rules that need atomicity across instances live in the implementation's transactions:
//! each approver counts once, a request is decided once, a grant's uses never pass its limit,
//! and a revocation holds from the moment it commits. No JWT is ever stored.

mod sql;

pub(super) use sql::access_store;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreError;
use crate::domain::access::{
    AccessRequestRecord, Decision, DecisionRefusal, ExpiredRequest, GrantDraft, GrantRecord,
    NewAccessRequest,
};
use crate::domain::reports::{GrantTotals, RequestFact};
use crate::domain::{PrincipalId, RequestStatus, TenantId};

/// What deciding a request came to.
#[derive(Debug, Clone)]
pub enum DecideOutcome {
    /// No such request in the tenant.
    NotFound,
    /// Refused by the approval rule; nothing of the decision is recorded.
    Refused(DecisionRefusal),
    /// Recorded; the request as it now stands (with its grant if this approval minted one).
    Recorded(Box<AccessRequestRecord>),
}

/// What taking one use of a grant came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseOutcome {
    /// Taken: this is use number `n`.
    Used(u32),
    /// No such grant for this grantee in this tenant.
    NotFound,
    /// Revoked.
    Revoked,
    /// Every use is taken.
    Exhausted,
    /// Past its end.
    Expired,
}

/// Which requests to list.
#[derive(Debug, Clone, Copy)]
pub struct RequestFilter {
    /// Only this status (pending means still pending at `now`, expired includes lapsed).
    pub status: Option<RequestStatus>,
    /// Only this requester's.
    pub requester: Option<PrincipalId>,
    /// The time that decides lapsed requests.
    pub now: DateTime<Utc>,
    /// Most to return, newest first.
    pub limit: u32,
}

/// Access requests, decisions and grants.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Inserts a request; with `grant` (an auto-approved request), it is inserted approved,
    /// together with its grant, in one transaction.
    async fn insert_access_request(
        &self,
        request: &NewAccessRequest,
        grant: Option<&GrantDraft>,
    ) -> Result<(), StoreError>;

    /// One request of a tenant.
    async fn access_request(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Option<AccessRequestRecord>, StoreError>;

    /// Requests of a tenant, newest first.
    async fn list_access_requests(
        &self,
        tenant: TenantId,
        filter: RequestFilter,
    ) -> Result<Vec<AccessRequestRecord>, StoreError>;

    /// Records one approver's decision atomically: a denial closes the request; the approval
    /// that reaches the required count marks it approved and inserts the grant from `draft`.
    async fn decide_access_request(
        &self,
        tenant: TenantId,
        id: Uuid,
        decision: &Decision,
        draft: &GrantDraft,
    ) -> Result<DecideOutcome, StoreError>;

    /// Marks pending requests past their expiry as expired; returns them, for the audit trail.
    async fn expire_access_requests(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<ExpiredRequest>, StoreError>;

    /// One grant of a tenant.
    async fn grant(&self, tenant: TenantId, jti: Uuid) -> Result<Option<GrantRecord>, StoreError>;

    /// Takes one use of a grant held by `grantee`, in one conditional statement: concurrent
    /// callers on any number of instances never take more than `max_uses`.
    async fn use_grant(
        &self,
        tenant: TenantId,
        jti: Uuid,
        grantee: PrincipalId,
        now: DateTime<Utc>,
    ) -> Result<UseOutcome, StoreError>;

    /// Grants of a tenant (or of one grantee), newest first; with `active_at`, only those
    /// usable then.
    async fn list_grants(
        &self,
        tenant: TenantId,
        grantee: Option<PrincipalId>,
        active_at: Option<DateTime<Utc>>,
        limit: u32,
    ) -> Result<Vec<GrantRecord>, StoreError>;

    /// Revokes one grant; returns it as it now stands, or `None` if there is no such grant.
    async fn revoke_grant(
        &self,
        tenant: TenantId,
        jti: Uuid,
        by: PrincipalId,
        now: DateTime<Utc>,
    ) -> Result<Option<GrantRecord>, StoreError>;

    /// The grants minted and the requests made by a tenant in `[since, until)`: what the
    /// usage report adds up.
    async fn usage_facts(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(GrantTotals, Vec<RequestFact>), StoreError>;

    /// Revokes every unrevoked, unexpired grant of a tenant, or of one grantee; returns how many.
    async fn revoke_all_grants(
        &self,
        tenant: TenantId,
        grantee: Option<PrincipalId>,
        by: PrincipalId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}
