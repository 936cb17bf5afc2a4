//! Detokenize: card numbers back, under a grant — one use case from the grant to the answer.
//!
//! In order: the caller's role, its lookup throttle, the grant's signature, grantee and scope
//! (no database), the tokens read and decrypted into memory, and then, in one transaction, one
//! use of the grant taken and the `detokenize` record written. The PANs are handed back only
//! once that transaction has committed. A refusal or failure before it — an unknown, expired
//! or damaged token — spends no use; a use that cannot be taken (revoked, exhausted) is
//! recorded as refused in the same transaction; if the transaction fails, neither the use nor
//! a record exists and the PANs are wiped here. Nothing here logs a PAN or the grant.

use std::sync::Arc;

use super::access::{AccessError, AccessService};
use super::audit::AuditTrail;
use super::context::RequestContext;
use super::grants::{GrantError, GrantService, use_refused};
use super::guard::Alarms;
use super::tokens::{TokenError, TokenRefusal, TokenService};
use crate::clock::Clock;
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::{Pan, Role, Token};
use crate::store::{AuditedWrite, UseOutcome, WriteOutcome};

/// What a front end's error must be made from for detokenize.
pub trait DetokenizeRefusal:
    TokenRefusal + From<GrantError> + From<AccessError> + Send + 'static
{
}
impl<E: TokenRefusal + From<GrantError> + From<AccessError> + Send + 'static> DetokenizeRefusal
    for E
{
}

/// Card numbers released to their grantee, in the order asked. Wiped on drop.
pub struct Revealed {
    /// The tokens, as asked.
    pub tokens: Vec<Token>,
    /// Their PANs, one per token.
    pub pans: Vec<Pan>,
}

/// The detokenize use case.
pub struct DetokenizeService {
    access: Arc<AccessService>,
    tokens: Arc<TokenService>,
    grants: Arc<GrantService>,
    alarms: Alarms,
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
}

impl DetokenizeService {
    /// Detokenize over these services.
    pub fn new(
        access: Arc<AccessService>,
        tokens: Arc<TokenService>,
        grants: Arc<GrantService>,
        alarms: Alarms,
        trail: AuditTrail,
        clock: Arc<dyn Clock>,
    ) -> DetokenizeService {
        DetokenizeService {
            access,
            tokens,
            grants,
            alarms,
            trail,
            clock,
        }
    }

    /// `POST /v1/access-requests/{id}/reveal`: the PANs of `asked` under the grant that
    /// request `id` minted for the caller, used here without ever leaving the vault (the
    /// console's Reveal: no script holds the JWT). Everything else is [`Self::detokenize`]'s:
    /// one use taken, recorded, refused without a grant the caller holds.
    pub async fn reveal_for_request<E: DetokenizeRefusal>(
        &self,
        ctx: &RequestContext,
        id: Option<uuid::Uuid>,
        asked: Result<Vec<Token>, E>,
    ) -> Result<Revealed, E> {
        let mut event = ctx.event(Action::Detokenize, self.clock.now());
        event.subject = id.map(|id| id.to_string());
        let view = match self.access.get::<E>(ctx, id).await {
            Ok(view) => view,
            // A reveal through a request the caller cannot see is a refused detokenize.
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        // Only its grantee is handed the grant, only while it can be used; anyone else (an
        // approver included) goes on without one and is refused, and recorded, by detokenize.
        // The grantee of a grant that was usable once learns why it is not any more.
        let own = view.record.request.requester == ctx.principal.id;
        if let (None, Some(jti), true) = (&view.grant, view.record.grant, own)
            && ctx
                .require_any(&[Role::Detokenizer, Role::Requester])
                .is_ok()
        {
            event.grant_jti = Some(jti);
            event.purpose = Some(view.record.request.purpose.as_str().to_owned());
            if let Ok(tokens) = &asked {
                event.tokens = tokens.iter().map(|t| t.as_str().to_owned()).collect();
            }
            let why = self.grants.why_unusable(ctx.principal.tenant, jti).await;
            return self.trail.settle(event, Err(E::from(why))).await;
        }
        self.detokenize(ctx, view.grant.as_ref().map(|g| g.as_str()), asked)
            .await
    }

    /// `POST /v1/detokenize`: the PANs of `asked` (the parsed tokens, or the front end's
    /// refusal of them) under the presented `grant`. Every call is recorded, refusals with
    /// their code and the grant's id once its signature verified.
    pub async fn detokenize<E: DetokenizeRefusal>(
        &self,
        ctx: &RequestContext,
        grant: Option<&str>,
        asked: Result<Vec<Token>, E>,
    ) -> Result<Revealed, E> {
        let mut event = ctx.event(Action::Detokenize, self.clock.now());
        let mut missed = false;
        let prepared = async {
            let principal = ctx.require_any(&[Role::Detokenizer, Role::Requester])?;
            self.alarms.check_lookups(principal)?;
            let tokens = asked?;
            event.tokens = tokens.iter().map(|t| t.as_str().to_owned()).collect();
            let (presented, verified) = self.grants.verify(principal, grant, &tokens);
            if let Some(p) = presented {
                event.grant_jti = Some(p.jti);
                event.purpose = Some(p.purpose);
            }
            let jti = verified?;
            let pans = self.tokens.reveal(principal.tenant, &tokens).await;
            missed = matches!(pans, Err(TokenError::NotFound));
            Ok((tokens, pans?, jti))
        }
        .await;
        if missed {
            self.alarms.observe_miss(ctx).await;
        }
        let (tokens, pans, jti) = match prepared {
            Ok(prepared) => prepared,
            // Refused before any use was taken: recorded on its own.
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        let write = AuditedWrite::UseGrant {
            tenant: ctx.principal.tenant,
            jti,
            grantee: ctx.principal.id,
            now: self.clock.now(),
        };
        let finish = move |outcome: &WriteOutcome| -> AuditEvent {
            let mut event = event;
            match outcome {
                WriteOutcome::Grant(UseOutcome::Used(n)) => {
                    event.outcome = Outcome::Success;
                    event.detail = Some(format!("use {n}"));
                }
                other => {
                    let refusal = match other {
                        WriteOutcome::Grant(used) => use_refused(*used),
                        _ => None,
                    };
                    let refusal = E::from(refusal.unwrap_or(GrantError::Invalid));
                    event.outcome = Outcome::Denied;
                    event.code = Some(refusal.code().to_owned());
                }
            }
            event
        };
        match self.trail.write(write, finish).await {
            Ok(WriteOutcome::Grant(UseOutcome::Used(_))) => Ok(Revealed { tokens, pans }),
            Ok(WriteOutcome::Grant(other)) => {
                Err(E::from(use_refused(other).unwrap_or(GrantError::Invalid)))
            }
            Ok(_) => Err(E::from(GrantError::Invalid)),
            // Nothing committed: no use, no record. The card numbers are wiped here.
            Err(e) => Err(E::from(e)),
        }
    }
}
