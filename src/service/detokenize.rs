//! Detokenize: card numbers back, under a grant — one use case from the grant to the answer.
//!
//! In order: the caller's role, its lookup throttle, the grant (signature, grantee, scope) and
//! one use of it taken in the database, then the PANs decrypted, then the `detokenize` record
//! written. The PANs are handed back only once that record is durable; if it cannot be
//! written they are wiped here and the caller gets the trail's failure. Nothing here logs a
//! PAN or the grant.

use std::sync::Arc;

use super::audit::AuditTrail;
use super::context::RequestContext;
use super::grants::{GrantError, GrantService};
use super::guard::Alarms;
use super::tokens::{TokenError, TokenRefusal, TokenService};
use crate::clock::Clock;
use crate::domain::audit::Action;
use crate::domain::{Pan, Role, Token};

/// What a front end's error must be made from for detokenize.
pub trait DetokenizeRefusal: TokenRefusal + From<GrantError> {}
impl<E: TokenRefusal + From<GrantError>> DetokenizeRefusal for E {}

/// Card numbers released to their grantee, in the order asked. Wiped on drop.
pub struct Revealed {
    /// The tokens, as asked.
    pub tokens: Vec<Token>,
    /// Their PANs, one per token.
    pub pans: Vec<Pan>,
}

/// The detokenize use case.
pub struct DetokenizeService {
    tokens: Arc<TokenService>,
    grants: Arc<GrantService>,
    alarms: Alarms,
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
}

impl DetokenizeService {
    /// Detokenize over these services.
    pub fn new(
        tokens: Arc<TokenService>,
        grants: Arc<GrantService>,
        alarms: Alarms,
        trail: AuditTrail,
        clock: Arc<dyn Clock>,
    ) -> DetokenizeService {
        DetokenizeService {
            tokens,
            grants,
            alarms,
            trail,
            clock,
        }
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
        let result = async {
            let principal = ctx.require_any(&[Role::Detokenizer, Role::Requester])?;
            self.alarms.check_lookups(principal)?;
            let tokens = asked?;
            event.tokens = tokens.iter().map(|t| t.as_str().to_owned()).collect();
            let (presented, authorized) = self.grants.authorize(principal, grant, &tokens).await;
            if let Some(p) = presented {
                event.grant_jti = Some(p.jti);
                event.purpose = Some(p.purpose);
            }
            let authorized = authorized?;
            event.detail = Some(format!("use {}", authorized.use_number));
            let pans = self.tokens.reveal(principal.tenant, &tokens).await;
            missed = matches!(pans, Err(TokenError::NotFound));
            Ok(Revealed {
                tokens,
                pans: pans?,
            })
        }
        .await;
        if missed {
            self.alarms.observe_miss(ctx).await;
        }
        self.trail.settle(event, result).await
    }
}
