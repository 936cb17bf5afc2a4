//! The entities of just-in-time access: an access request and the decisions on it, and the
//! grant an approval mints, with the rules that read them (`status_at`, `is_active`). The
//! store keeps them; it does not define them.
//!
//! No I/O. Nothing here logs.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Reason, RequestStatus};
use crate::domain::{PrincipalId, Purpose, TenantId, Token};

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
    pub purpose: Purpose,
    /// Why.
    pub reason: Reason,
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
    pub purpose: Purpose,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The approver.
    pub approver: PrincipalId,
    /// Approve (true) or deny.
    pub approve: bool,
    /// Their comment.
    pub comment: Option<Reason>,
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

    /// The request as the approval rule ([`super::transition`]) sees it for
    /// `approver`.
    pub fn decision_state(&self, approver: PrincipalId) -> super::DecisionState {
        super::DecisionState {
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
    pub purpose: Purpose,
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
