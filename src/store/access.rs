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
use crate::domain::{PrincipalId, RequestStatus, TenantId, Token};

/// An access request to insert.
#[derive(Debug, Clone)]
pub struct NewAccessRequest {
    /// Its id.
    pub id: Uuid,
    /// The tenant.
    pub tenant: TenantId,
    /// Who asks (and will hold the grant).
    pub requester: PrincipalId,
    /// The policy that allowed it.
    pub policy: String,
    /// The tokens asked for (empty with `any_token`).
    pub tokens: Vec<Token>,
    /// Whether every token of the tenant is asked for.
    pub any_token: bool,
    /// The purpose.
    pub purpose: String,
    /// Why.
    pub reason: String,
    /// How long the grant lasts once approved.
    pub duration_seconds: u32,
    /// Detokenize calls the grant allows.
    pub max_uses: u32,
    /// Distinct approvals needed.
    pub approvals_required: u32,
    /// Whether approvers must give a TOTP code.
    pub approver_mfa: bool,
    /// The source address it came from.
    pub source: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it expires if still pending.
    pub expires_at: DateTime<Utc>,
}

/// A pending request that lapsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredRequest {
    /// Its id.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: TenantId,
    /// Who asked.
    pub requester: PrincipalId,
    /// For what purpose.
    pub purpose: String,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The approver.
    pub approver: PrincipalId,
    /// Approve (true) or deny.
    pub approve: bool,
    /// Their comment.
    pub comment: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// A stored access request with its decisions.
#[derive(Debug, Clone)]
pub struct AccessRequestRecord {
    /// What was asked.
    pub request: NewAccessRequest,
    /// Its stored status. A `pending` request past `expires_at` is expired, whether or not the
    /// row says so yet.
    pub status: RequestStatus,
    /// When it was decided.
    pub decided_at: Option<DateTime<Utc>>,
    /// The grant it minted.
    pub grant: Option<Uuid>,
    /// The decisions so far, oldest first.
    pub decisions: Vec<Decision>,
}

impl AccessRequestRecord {
    /// The status at `now`.
    pub fn status_at(&self, now: DateTime<Utc>) -> RequestStatus {
        match self.status {
            RequestStatus::Pending if self.request.expires_at <= now => RequestStatus::Expired,
            other => other,
        }
    }

    /// Approvals so far.
    pub fn approvals(&self) -> usize {
        self.decisions.iter().filter(|d| d.approve).count()
    }

    /// The request as the approval rule ([`crate::domain::access::transition`]) sees it for
    /// `approver`.
    pub fn decision_state(&self, approver: PrincipalId) -> crate::domain::access::DecisionState {
        crate::domain::access::DecisionState {
            requester: self.request.requester.0,
            status: self.status,
            expires_at: self.request.expires_at,
            approvals: self.approvals(),
            approvals_required: self.request.approvals_required,
            decided_by_approver: self.decisions.iter().any(|d| d.approver == approver),
        }
    }
}

/// The grant an approval mints: its id and signing key, and when. The rest comes from the
/// request.
#[derive(Debug, Clone)]
pub struct GrantDraft {
    /// The new grant's id.
    pub jti: Uuid,
    /// The key that signs it.
    pub kid: String,
    /// When it is issued (and starts).
    pub issued_at: DateTime<Utc>,
}

/// A stored grant.
#[derive(Debug, Clone)]
pub struct GrantRecord {
    /// Its id.
    pub jti: Uuid,
    /// The tenant.
    pub tenant: TenantId,
    /// Who holds it.
    pub grantee: PrincipalId,
    /// The request that minted it.
    pub request_id: Uuid,
    /// The purpose.
    pub purpose: String,
    /// The tokens it covers (empty with `any_token`).
    pub tokens: Vec<Token>,
    /// Whether it covers every token.
    pub any_token: bool,
    /// Calls allowed.
    pub max_uses: u32,
    /// Calls made.
    pub uses: u32,
    /// The key that signs it.
    pub kid: String,
    /// When issued.
    pub issued_at: DateTime<Utc>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl GrantRecord {
    /// Whether it can still be used at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.uses < self.max_uses && now < self.expires_at
    }
}

/// What deciding a request came to.
#[derive(Debug, Clone)]
pub enum DecideOutcome {
    /// No such request in the tenant.
    NotFound,
    /// The approver is the requester.
    SelfApproval,
    /// This approver already decided it.
    AlreadyDecided,
    /// It is no longer pending (approved or denied).
    Closed(RequestStatus),
    /// It expired before this decision.
    Expired,
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

    /// Revokes every unrevoked, unexpired grant of a tenant, or of one grantee; returns how many.
    async fn revoke_all_grants(
        &self,
        tenant: TenantId,
        grantee: Option<PrincipalId>,
        by: PrincipalId,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}
