//! Access requests: ask under a policy, approve or deny, and hand the grant to its grantee.
//!
//! Policies decide at creation; the store decides approvals atomically. The grant JWT is
//! signed only for the grantee, when a request is created already approved or when they fetch
//! their approved request; approvers and lists never see it. Nothing here logs a code or a JWT.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use uuid::Uuid;

use super::audit::{AuditTrail, Refusal};
use super::context::{Forbidden, RequestContext};
use super::grants::{VIEWERS, sign_grant};
use super::keys::{KeyError, KeyService};
use super::mfa::{self, MfaError, MfaFailure};
use crate::clock::Clock;
use crate::crypto::grant::GrantJwt;
use crate::crypto::totp::TotpCode;
use crate::domain::access::{
    AccessRequestRecord, Decision, ExpiredRequest, GrantDraft, NewAccessRequest,
};
use crate::domain::access::{DecisionRefusal, transition};
use crate::domain::audit::Outcome;
use crate::domain::audit::{Action, AuditEvent};
use crate::domain::{
    AccessAsk, Denial, Policy, PolicySet, Principal, Purpose, Reason, RequestStatus, Role, Token,
};
use crate::store::{
    AccessStore, AuditedWrite, DecideOutcome, PrincipalStore, RequestFilter, StoreError,
    WriteOutcome,
};

/// Most requests one list returns.
pub const MAX_LIST: u32 = 500;

/// What a caller asks for, parsed.
#[derive(Debug)]
pub struct AccessAskInput {
    /// Named tokens (empty with `any_token`), without duplicates.
    pub tokens: Vec<Token>,
    /// Every token of the tenant.
    pub any_token: bool,
    /// The purpose.
    pub purpose: Purpose,
    /// Why, checked.
    pub reason: Reason,
    /// How long the grant should last.
    pub duration_seconds: u32,
    /// Uses wanted, if not the policy's limit.
    pub max_uses: Option<u32>,
    /// The requester's TOTP code.
    pub totp: Option<TotpCode>,
}

/// A request as its viewer may see it.
#[derive(Debug)]
pub struct AccessRequestView {
    /// The stored request.
    pub record: AccessRequestRecord,
    /// Its status now.
    pub status: RequestStatus,
    /// The grant JWT: only for the grantee, only while the grant can be used.
    pub grant: Option<GrantJwt>,
}

/// Why an access request operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No policy allows it.
    #[error("no policy allows this request")]
    PolicyDenied(Denial),
    /// A second factor was needed and not accepted.
    #[error("a valid TOTP code is required")]
    Mfa(MfaFailure),
    /// No such request visible to the caller.
    #[error("no such access request")]
    NotFound,
    /// The approval rule refused the decision.
    #[error("the decision was refused: {0:?}")]
    Refused(DecisionRefusal),
    /// Keys failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<MfaError> for AccessError {
    fn from(e: MfaError) -> Self {
        match e {
            MfaError::Store(e) => AccessError::Store(e),
            MfaError::Key(e) => AccessError::Key(e),
        }
    }
}

/// What a front end's error must be made from for the access-request use cases.
pub trait AccessRefusal: Refusal + From<AccessError> + From<Forbidden> + Send + 'static {}
impl<E: Refusal + From<AccessError> + From<Forbidden> + Send + 'static> AccessRefusal for E {}

/// An approver's decision as asked: the comment, checked, and the approver's TOTP code.
#[derive(Debug, Default)]
pub struct DecisionInput {
    /// The comment, if any.
    pub comment: Option<Reason>,
    /// The approver's TOTP code (approvals under an MFA policy).
    pub totp: Option<TotpCode>,
}

/// How long things last in the access workflow.
#[derive(Debug, Clone, Copy)]
pub struct AccessSettings {
    /// How long a request may stay pending.
    pub request_ttl: TimeDelta,
    /// How long ten wrong TOTP codes in a row lock a second factor.
    pub totp_lockout: TimeDelta,
}

/// Access requests of every tenant.
pub struct AccessService {
    store: Arc<dyn AccessStore>,
    factors: Arc<dyn PrincipalStore>,
    keys: Arc<KeyService>,
    policies: Arc<PolicySet>,
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
    request_ttl: TimeDelta,
    totp_lockout: TimeDelta,
}

/// Why a decision written in the trail's transaction was refused.
fn decided_refusal(outcome: &WriteOutcome) -> AccessError {
    match outcome {
        WriteOutcome::Decided(DecideOutcome::Refused(refusal)) => AccessError::Refused(*refusal),
        _ => AccessError::NotFound,
    }
}

/// What an access request's record says about the request, once decided.
fn describe_record(event: &mut AuditEvent, record: &AccessRequestRecord, status: RequestStatus) {
    let r = &record.request;
    event.subject = Some(r.id.to_string());
    event.tokens = r.tokens.iter().map(|t| t.as_str().to_owned()).collect();
    event.purpose = Some(r.purpose.as_str().to_owned());
    event.grant_jti = record.grant;
    event.detail = Some(status.as_str().to_owned());
}

impl AccessService {
    /// A service deciding by `policies`, with second factors checked in `factors`.
    pub fn new(
        store: Arc<dyn AccessStore>,
        factors: Arc<dyn PrincipalStore>,
        keys: Arc<KeyService>,
        policies: Arc<PolicySet>,
        trail: AuditTrail,
        clock: Arc<dyn Clock>,
        settings: AccessSettings,
    ) -> AccessService {
        AccessService {
            store,
            factors,
            keys,
            policies,
            trail,
            clock,
            request_ttl: settings.request_ttl,
            totp_lockout: settings.totp_lockout,
        }
    }

    /// The policies in force.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// `POST /v1/access-requests`: a requester or payment service asks for a grant. `asked`
    /// is the parsed request or the front end's refusal of it; either way the call is
    /// recorded (`access_request.create`), with the reason as given.
    pub async fn create<E: AccessRefusal>(
        &self,
        ctx: &RequestContext,
        asked: Result<AccessAskInput, E>,
    ) -> Result<AccessRequestView, E> {
        let mut event = ctx.event(Action::AccessRequestCreate, self.clock.now());
        let prepared = async {
            let principal = ctx.require_any(&[Role::Detokenizer, Role::Requester])?;
            let ask = asked?;
            event.tokens = ask.tokens.iter().map(|t| t.as_str().to_owned()).collect();
            event.purpose = Some(ask.purpose.as_str().to_owned());
            event.reason = Some(ask.reason.as_str().to_owned());
            Ok(self.prepare_request(principal, ask, ctx.source).await?)
        }
        .await;
        let (request, draft) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        // The request (and the grant it mints at once) and its record commit together: a
        // request answered 503 leaves no grant behind.
        event.subject = Some(request.id.to_string());
        event.grant_jti = draft.as_ref().map(|d| d.jti);
        event.detail = Some(
            if draft.is_some() {
                RequestStatus::Approved
            } else {
                RequestStatus::Pending
            }
            .as_str()
            .to_owned(),
        );
        let (tenant, id) = (request.tenant, request.id);
        let write = AuditedWrite::CreateAccessRequest {
            request: Box::new(request),
            grant: draft,
        };
        let finish = move |_: &WriteOutcome| {
            let mut event = event;
            event.outcome = Outcome::Success;
            event
        };
        self.trail.write(write, finish).await.map_err(E::from)?;
        let created = async {
            let record = self
                .store
                .access_request(tenant, id)
                .await?
                .ok_or(AccessError::NotFound)?;
            self.view(&ctx.principal, record).await
        }
        .await;
        created.map_err(E::from)
    }

    /// `POST /v1/access-requests/{id}/approve`. `id` is `None` when the path held no request
    /// id (answered as an unknown request).
    pub async fn approve<E: AccessRefusal>(
        &self,
        ctx: &RequestContext,
        id: Option<Uuid>,
        asked: Result<DecisionInput, E>,
    ) -> Result<AccessRequestView, E> {
        self.decide_as(ctx, Action::AccessRequestApprove, id, asked)
            .await
    }

    /// `POST /v1/access-requests/{id}/deny`: one denial closes a request.
    pub async fn deny<E: AccessRefusal>(
        &self,
        ctx: &RequestContext,
        id: Option<Uuid>,
        asked: Result<DecisionInput, E>,
    ) -> Result<AccessRequestView, E> {
        self.decide_as(ctx, Action::AccessRequestDeny, id, asked)
            .await
    }

    async fn decide_as<E: AccessRefusal>(
        &self,
        ctx: &RequestContext,
        action: Action,
        id: Option<Uuid>,
        asked: Result<DecisionInput, E>,
    ) -> Result<AccessRequestView, E> {
        let mut event = ctx.event(action, self.clock.now());
        let approve = action == Action::AccessRequestApprove;
        let prepared = async {
            let principal = ctx.require(Role::Approver)?;
            let id = id.ok_or(AccessError::NotFound)?;
            event.subject = Some(id.to_string());
            let asked = asked?;
            event.reason = asked.comment.as_ref().map(|c| c.as_str().to_owned());
            if approve {
                self.check_approval(principal, id, asked.totp).await?;
            }
            let now = whole_seconds(self.clock.now());
            let decision = Decision {
                approver: principal.id,
                approve,
                comment: asked.comment,
                at: now,
            };
            Ok((id, decision, self.draft(now)?))
        }
        .await;
        let (id, decision, draft) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        // The decision (and the grant it may mint) and its record commit together.
        let now = decision.at;
        let write = AuditedWrite::DecideAccessRequest {
            tenant: ctx.principal.tenant,
            id,
            decision: Box::new(decision),
            draft,
        };
        let finish = move |outcome: &WriteOutcome| {
            let mut event = event;
            match outcome {
                WriteOutcome::Decided(DecideOutcome::Recorded(record)) => {
                    event.outcome = Outcome::Success;
                    describe_record(&mut event, record, record.status_at(now));
                }
                other => {
                    let refusal = E::from(decided_refusal(other));
                    event.outcome = Outcome::Denied;
                    event.code = Some(refusal.code().to_owned());
                }
            }
            event
        };
        match self.trail.write(write, finish).await.map_err(E::from)? {
            // The approver sees the request, never the grant.
            WriteOutcome::Decided(DecideOutcome::Recorded(record)) => Ok(AccessRequestView {
                status: record.status_at(now),
                record: *record,
                grant: None,
            }),
            other => Err(E::from(decided_refusal(&other))),
        }
    }

    /// The request to insert if a policy allows it, with the grant it mints at once when that
    /// policy needs no approval (and then the answer carries the grant).
    async fn prepare_request(
        &self,
        requester: &Principal,
        ask: AccessAskInput,
        source: Option<IpAddr>,
    ) -> Result<(NewAccessRequest, Option<GrantDraft>), AccessError> {
        let now = whole_seconds(self.clock.now());
        let allowed = self
            .policies
            .evaluate(&AccessAsk {
                roles: &requester.roles,
                purpose: &ask.purpose,
                tokens: ask.tokens.len(),
                any_token: ask.any_token,
                duration_seconds: ask.duration_seconds,
                max_uses: ask.max_uses,
                at: now,
                source,
            })
            .map_err(AccessError::PolicyDenied)?;
        if allowed.requester_mfa {
            let code = ask.totp.as_ref().map(TotpCode::expose);
            mfa::verify(
                self.factors.as_ref(),
                &self.keys,
                self.clock.as_ref(),
                requester.id,
                code,
                self.totp_lockout,
            )
            .await?
            .map_err(AccessError::Mfa)?;
        }
        let request = NewAccessRequest {
            id: Uuid::new_v4(),
            tenant: requester.tenant,
            requester: requester.id,
            policy: allowed.policy,
            tokens: ask.tokens,
            any_token: ask.any_token,
            purpose: ask.purpose,
            reason: ask.reason,
            duration_seconds: ask.duration_seconds,
            max_uses: allowed.max_uses,
            approvals_required: allowed.approvals,
            approver_mfa: allowed.approver_mfa,
            source: source.map(|ip| ip.to_string()),
            created_at: now,
            expires_at: now
                .checked_add_signed(self.request_ttl)
                .ok_or(AccessError::Store(StoreError::Corrupt(
                    "request expiry out of range",
                )))?,
        };
        let draft = if allowed.approvals == 0 {
            Some(self.draft(now)?)
        } else {
            None
        };
        Ok((request, draft))
    }

    /// `GET /v1/policies`: the policies a caller may ask under (those naming one of its
    /// roles), or every policy for an approver, admin or auditor, who decide and review
    /// requests made under any of them.
    pub async fn policies_for<E: AccessRefusal>(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<Policy>, E> {
        let caller = ctx.require_any(VIEWERS)?;
        Ok(self
            .policies
            .policies()
            .iter()
            .filter(|p| caller.sees_whole_tenant() || p.roles.iter().any(|r| caller.has(*r)))
            .cloned()
            .collect())
    }

    /// One request, if the caller may see it: its requester, or an approver, admin or auditor
    /// of the tenant. Anyone else gets the same answer as for a request that does not exist.
    pub async fn get<E: AccessRefusal>(
        &self,
        ctx: &RequestContext,
        id: Option<Uuid>,
    ) -> Result<AccessRequestView, E> {
        let caller = ctx.require_any(VIEWERS)?;
        let id = id.ok_or(AccessError::NotFound)?;
        Ok(self.get_request(caller, id).await?)
    }

    async fn get_request(
        &self,
        caller: &Principal,
        id: Uuid,
    ) -> Result<AccessRequestView, AccessError> {
        let record = self
            .store
            .access_request(caller.tenant, id)
            .await?
            .ok_or(AccessError::NotFound)?;
        if record.request.requester != caller.id && !caller.sees_whole_tenant() {
            return Err(AccessError::NotFound);
        }
        self.view(caller, record).await
    }

    /// Requests the caller may see, newest first: the tenant's for approvers, admins and
    /// auditors, their own for everyone else. Lists never carry a grant.
    pub async fn list<E: AccessRefusal>(
        &self,
        ctx: &RequestContext,
        asked: Result<(Option<RequestStatus>, u32), E>,
    ) -> Result<Vec<AccessRequestView>, E> {
        let caller = ctx.require_any(VIEWERS)?;
        let (status, limit) = asked?;
        let now = self.clock.now();
        let records = self
            .store
            .list_access_requests(
                caller.tenant,
                RequestFilter {
                    status,
                    requester: (!caller.sees_whole_tenant()).then_some(caller.id),
                    now,
                    limit: limit.clamp(1, MAX_LIST),
                },
            )
            .await
            .map_err(AccessError::from)?;
        Ok(records
            .into_iter()
            .map(|record| AccessRequestView {
                status: record.status_at(now),
                record,
                grant: None,
            })
            .collect())
    }

    /// The checks before an approval is written: the cheap refusals, by the same rule the store
    /// applies under its lock, and then (under an MFA policy) the approver's TOTP code.
    async fn check_approval(
        &self,
        approver: &Principal,
        id: Uuid,
        totp: Option<TotpCode>,
    ) -> Result<(), AccessError> {
        let record = self
            .store
            .access_request(approver.tenant, id)
            .await?
            .ok_or(AccessError::NotFound)?;
        // Cheap refusals before spending the approver's code, by the same rule the store
        // applies under its lock.
        let step = transition(
            &record.decision_state(approver.id),
            approver.id.0,
            true,
            self.clock.now(),
        );
        if let Some(refusal) = step.refusal() {
            return Err(AccessError::Refused(refusal));
        }
        if record.request.approver_mfa {
            mfa::verify(
                self.factors.as_ref(),
                &self.keys,
                self.clock.as_ref(),
                approver.id,
                totp.as_ref().map(TotpCode::expose),
                self.totp_lockout,
            )
            .await?
            .map_err(AccessError::Mfa)?;
        }
        Ok(())
    }

    /// Marks lapsed pending requests expired, recording each (`access_request.expire`);
    /// returns how many.
    pub async fn expire_pending(&self) -> Result<usize, StoreError> {
        let expired: Vec<ExpiredRequest> =
            self.store.expire_access_requests(self.clock.now()).await?;
        for request in &expired {
            let mut event = AuditEvent::new(Action::AccessRequestExpire, self.clock.now());
            event.tenant = Some(request.tenant);
            event.subject = Some(request.id.to_string());
            event.purpose = Some(request.purpose.as_str().to_owned());
            event.detail = Some(format!("requester {}", request.requester));
            let _ = self.trail.record(event).await;
        }
        Ok(expired.len())
    }

    fn draft(&self, now: DateTime<Utc>) -> Result<GrantDraft, AccessError> {
        Ok(GrantDraft {
            jti: Uuid::new_v4(),
            kid: self.keys.signing_key()?.kid().to_owned(),
            issued_at: now,
        })
    }

    /// The request for `viewer`, with the grant JWT when the viewer is its grantee and the
    /// grant can still be used.
    async fn view(
        &self,
        viewer: &Principal,
        record: AccessRequestRecord,
    ) -> Result<AccessRequestView, AccessError> {
        let now = self.clock.now();
        let status = record.status_at(now);
        let mut grant = None;
        if let (RequestStatus::Approved, Some(jti)) = (status, record.grant)
            && record.request.requester == viewer.id
            && let Some(g) = self.store.grant(viewer.tenant, jti).await?
            && g.is_active(now)
        {
            grant = Some(sign_grant(&self.keys, &g)?);
        }
        Ok(AccessRequestView {
            record,
            status,
            grant,
        })
    }
}

/// Grants start and end on whole seconds, as their JWT claims do.
fn whole_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::seconds(1)).unwrap_or(at)
}
