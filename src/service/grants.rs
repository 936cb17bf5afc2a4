//! Grants: signing them for their grantee, authorizing a detokenize call under one, listing and
//! revoking them.
//!
//! Authorizing checks the JWT (signature, pinned algorithm, issuer, audience, type, time), that
//! it names the caller and their tenant and covers every token asked for, and then takes one use
//! in the database, where revocation is checked in the same statement: so revocations and use
//! limits hold at once on every instance, and nothing about a grant is cached. Nothing here
//! logs a JWT.

use std::sync::Arc;

use uuid::Uuid;

use super::audit::{AuditTrail, Refusal};
use super::context::{Forbidden, RequestContext};
use super::keys::{KeyError, KeyService};
use crate::clock::Clock;
use crate::crypto::grant::{AUDIENCE, GrantClaims, GrantJwt, GrantTokenError, ISSUER};
use crate::domain::access::GrantRecord;
use crate::domain::audit::{Action, Outcome};
use crate::domain::{Principal, PrincipalId, Role, TenantId, Token};
use crate::store::{AccessStore, AuditedWrite, StoreError, UseOutcome, WriteOutcome};

/// Who may see requests and grants: their own, or the tenant's for approvers, admins and
/// auditors.
pub const VIEWERS: &[Role] = &[
    Role::Requester,
    Role::Detokenizer,
    Role::Approver,
    Role::Admin,
    Role::Auditor,
];

/// Most grants one list returns.
pub const MAX_LIST: u32 = 500;

/// Why a grant was refused or not found.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// No grant was presented.
    #[error("no grant was presented")]
    Missing,
    /// Not a valid grant for this caller.
    #[error("the grant is not valid")]
    Invalid,
    /// Outside its validity window.
    #[error("the grant has expired")]
    Expired,
    /// Revoked.
    #[error("the grant has been revoked")]
    Revoked,
    /// Every use is taken.
    #[error("the grant has no uses left")]
    Exhausted,
    /// A token asked for is outside the grant.
    #[error("a token is outside the grant's scope")]
    Scope,
    /// No such grant visible to the caller.
    #[error("no such grant")]
    NotFound,
    /// Keys failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<GrantTokenError> for GrantError {
    fn from(e: GrantTokenError) -> Self {
        match e {
            GrantTokenError::Invalid => GrantError::Invalid,
            GrantTokenError::Expired => GrantError::Expired,
        }
    }
}

/// Why a use of a grant was not taken, if it was not.
pub fn use_refused(outcome: UseOutcome) -> Option<GrantError> {
    match outcome {
        UseOutcome::Used(_) => None,
        // Signed by us but unknown here: not one of this vault's grants.
        UseOutcome::NotFound => Some(GrantError::Invalid),
        UseOutcome::Revoked => Some(GrantError::Revoked),
        UseOutcome::Exhausted => Some(GrantError::Exhausted),
        UseOutcome::Expired => Some(GrantError::Expired),
    }
}

/// A grant whose signature verified: which one, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    /// Its id.
    pub jti: Uuid,
    /// Its purpose.
    pub purpose: String,
}

/// Signs a grant's JWT (again: Ed25519 gives the same JWT for the same claims).
pub fn sign_grant(keys: &KeyService, grant: &GrantRecord) -> Result<GrantJwt, KeyError> {
    let claims = GrantClaims {
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
        sub: grant.grantee.0,
        tenant: grant.tenant.0,
        jti: grant.jti,
        iat: grant.issued_at.timestamp(),
        nbf: grant.issued_at.timestamp(),
        exp: grant.expires_at.timestamp(),
        tokens: grant.tokens.iter().map(|t| t.as_str().to_owned()).collect(),
        any_token: grant.any_token,
        purpose: grant.purpose.as_str().to_owned(),
        max_uses: grant.max_uses,
        request_id: grant.request_id,
    };
    Ok(keys.signing_key_by_kid(&grant.kid)?.sign(&claims)?)
}

/// What a front end's error must be made from for the grant use cases.
pub trait GrantRefusal: Refusal + From<GrantError> + From<Forbidden> + Send + 'static {}
impl<E: Refusal + From<GrantError> + From<Forbidden> + Send + 'static> GrantRefusal for E {}

/// Grants of every tenant.
pub struct GrantService {
    store: Arc<dyn AccessStore>,
    keys: Arc<KeyService>,
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
}

impl GrantService {
    /// A service over `store` and `keys`.
    pub fn new(
        store: Arc<dyn AccessStore>,
        keys: Arc<KeyService>,
        trail: AuditTrail,
        clock: Arc<dyn Clock>,
    ) -> GrantService {
        GrantService {
            store,
            keys,
            trail,
            clock,
        }
    }

    /// `POST /v1/grants/{jti}/revoke`: its grantee releasing it, or an approver or admin of
    /// the tenant. `jti` is `None` when the path held no grant id (an unknown grant).
    pub async fn revoke<E: GrantRefusal>(
        &self,
        ctx: &RequestContext,
        jti: Option<Uuid>,
    ) -> Result<GrantRecord, E> {
        let mut event = ctx.event(Action::GrantRevoke, self.clock.now());
        let prepared = async {
            let principal = ctx.require_any(&[
                Role::Requester,
                Role::Detokenizer,
                Role::Approver,
                Role::Admin,
            ])?;
            let jti = jti.ok_or(GrantError::NotFound)?;
            event.grant_jti = Some(jti);
            Ok(self.may_revoke(principal, jti).await?)
        }
        .await;
        let jti = match prepared {
            Ok(jti) => jti,
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        // The revocation and its record commit together.
        let write = AuditedWrite::RevokeGrant {
            tenant: ctx.principal.tenant,
            jti,
            by: ctx.principal.id,
            now: self.clock.now(),
        };
        let finish = move |outcome: &WriteOutcome| {
            let mut event = event;
            if let WriteOutcome::Revoked(Some(grant)) = outcome {
                event.outcome = Outcome::Success;
                event.purpose = Some(grant.purpose.as_str().to_owned());
                event.subject = Some(grant.grantee.to_string());
            } else {
                event.outcome = Outcome::Denied;
                event.code = Some(E::from(GrantError::NotFound).code().to_owned());
            }
            event
        };
        match self.trail.write(write, finish).await.map_err(E::from)? {
            WriteOutcome::Revoked(Some(grant)) => Ok(grant),
            _ => Err(E::from(GrantError::NotFound)),
        }
    }

    /// `POST /v1/grants/revoke-all`: an admin revokes every active grant of the tenant, or of
    /// one principal in it (`asked`); answers how many.
    pub async fn revoke_all<E: GrantRefusal>(
        &self,
        ctx: &RequestContext,
        asked: Result<Option<PrincipalId>, E>,
    ) -> Result<u64, E> {
        let mut event = ctx.event(Action::GrantRevokeAll, self.clock.now());
        let prepared = async {
            let admin = ctx.require(Role::Admin)?;
            let grantee = asked?;
            event.subject = grantee.map(|p| p.to_string());
            Ok((admin, grantee))
        }
        .await;
        let (admin, grantee) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        // The revocations and their record commit together.
        let write = AuditedWrite::RevokeAllGrants {
            tenant: admin.tenant,
            grantee,
            by: admin.id,
            now: self.clock.now(),
        };
        let finish = move |outcome: &WriteOutcome| {
            let mut event = event;
            let revoked = match outcome {
                WriteOutcome::RevokedAll(n) => *n,
                _ => 0,
            };
            event.outcome = Outcome::Success;
            event.detail = Some(format!("revoked {revoked}"));
            event
        };
        match self.trail.write(write, finish).await.map_err(E::from)? {
            WriteOutcome::RevokedAll(n) => Ok(n),
            _ => Ok(0),
        }
    }

    /// Checks a presented grant for a detokenize call by `caller` on `tokens`: signature,
    /// pinned algorithm, issuer, audience, type and time; that it names the caller and their
    /// tenant; that it covers every token asked for. Answers the grant's id to take a use of
    /// (in the same transaction as the call's record; see `service::detokenize`). Whatever the
    /// answer, also says which grant was presented once its signature verified, for the trail.
    pub fn verify(
        &self,
        caller: &Principal,
        jwt: Option<&str>,
        tokens: &[Token],
    ) -> (Option<Presented>, Result<Uuid, GrantError>) {
        let Some(jwt) = jwt else {
            return (None, Err(GrantError::Missing));
        };
        let now = self.clock.now();
        let claims = match self.keys.grant_verifier().verify(jwt, now.timestamp()) {
            Ok(claims) => claims,
            Err(e) => return (None, Err(e.into())),
        };
        let presented = Presented {
            jti: claims.jti,
            purpose: claims.purpose.clone(),
        };
        // A grant is good only in its grantee's hands.
        if claims.sub != caller.id.0 || claims.tenant != caller.tenant.0 {
            return (Some(presented), Err(GrantError::Invalid));
        }
        if !claims.any_token
            && !tokens
                .iter()
                .all(|t| claims.tokens.iter().any(|c| c == t.as_str()))
        {
            return (Some(presented), Err(GrantError::Scope));
        }
        (Some(presented), Ok(claims.jti))
    }

    /// Grants the caller may see, newest first: the tenant's for approvers, admins and
    /// auditors, their own for everyone else; with `active`, only those still usable.
    pub async fn list<E: GrantRefusal>(
        &self,
        ctx: &RequestContext,
        asked: Result<(bool, u32), E>,
    ) -> Result<Vec<GrantRecord>, E> {
        let caller = ctx.require_any(VIEWERS)?;
        let (active, limit) = asked?;
        let now = self.clock.now();
        Ok(self
            .store
            .list_grants(
                caller.tenant,
                (!caller.sees_whole_tenant()).then_some(caller.id),
                active.then_some(now),
                limit.clamp(1, MAX_LIST),
            )
            .await
            .map_err(GrantError::from)?)
    }

    /// Why a grant that is no longer handed to its grantee cannot be used: revoked, expired or
    /// spent (for a reveal through its request, which would otherwise only see no grant).
    pub async fn why_unusable(&self, tenant: TenantId, jti: Uuid) -> GrantError {
        let now = self.clock.now();
        match self.store.grant(tenant, jti).await {
            Ok(Some(g)) if g.revoked_at.is_some() => GrantError::Revoked,
            Ok(Some(g)) if g.expires_at <= now => GrantError::Expired,
            Ok(Some(g)) if g.uses >= g.max_uses => GrantError::Exhausted,
            Ok(_) => GrantError::Missing,
            Err(e) => GrantError::Store(e),
        }
    }

    /// Whether `caller` may revoke the grant: its grantee releasing it, or an approver or admin
    /// of the tenant. Anyone else gets the answer for a grant that does not exist.
    async fn may_revoke(&self, caller: &Principal, jti: Uuid) -> Result<Uuid, GrantError> {
        let grant = self
            .store
            .grant(caller.tenant, jti)
            .await?
            .ok_or(GrantError::NotFound)?;
        let may =
            grant.grantee == caller.id || caller.has(Role::Approver) || caller.has(Role::Admin);
        if !may {
            return Err(GrantError::NotFound);
        }
        Ok(jti)
    }
}
