//! People's console sessions: sign in with an API key and a TOTP code, carry a session cookie,
//! sign out.
//!
//! A session lasts at most [`ABSOLUTE_LIMIT`] and ends after [`IDLE_LIMIT`] without a request
//! the person made (PCI DSS 8.2.8); the page's own polling does not keep it alive. Only people
//! (requesters, approvers, auditors, admins) may sign in: a service's key has no business in a
//! browser. The second factor is the API's: a principal with one enrolled must give a code,
//! accepted once, and ten wrong codes lock it. Sign-ins, refusals and sign-outs are recorded;
//! a session starts and ends only with its record. Nothing here logs a key, a code or a token.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use super::audit::{AuditTrail, Refusal};
use super::authn::Authenticator;
use super::context::{Forbidden, RequestContext};
use super::keys::{KeyError, KeyService};
use super::mfa::{self, MfaError, MfaFailure};
use super::principals::{AuthFailure, FailedAuth, usable};
use crate::clock::Clock;
use crate::crypto::session::{SessionHash, SessionToken};
use crate::domain::audit::{Action, Outcome};
use crate::domain::{Principal, Role};
use crate::random::Csprng;
use crate::store::{AuditedWrite, NewSession, PrincipalStore, StoreError, WriteOutcome};

/// A session ends after this long without a request the person made (PCI DSS 8.2.8).
pub const IDLE_LIMIT: TimeDelta = TimeDelta::minutes(15);
/// A session ends this long after sign-in, whatever happens.
pub const ABSOLUTE_LIMIT: TimeDelta = TimeDelta::hours(8);

/// The roles that may sign in to the console: people's.
pub const PEOPLE: &[Role] = &[Role::Requester, Role::Approver, Role::Auditor, Role::Admin];

/// Why a sign-in did not start a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The API key is unknown, disabled or expired.
    #[error("a valid API key is required")]
    Unauthenticated,
    /// Too many failures from this source: wait this many seconds.
    #[error("too many failed sign-ins from this source")]
    Throttled(u64),
    /// The second factor was not accepted.
    #[error("{}", .0.detail())]
    Mfa(MfaFailure),
    /// The key that seals second factors failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

impl From<MfaError> for SessionError {
    fn from(e: MfaError) -> Self {
        match e {
            MfaError::Store(e) => SessionError::Store(e),
            MfaError::Key(e) => SessionError::Key(e),
        }
    }
}

/// What a front end's error must be made from for the session use cases.
pub trait SessionRefusal: Refusal + From<SessionError> + From<Forbidden> + Send + 'static {}
impl<E: Refusal + From<SessionError> + From<Forbidden> + Send + 'static> SessionRefusal for E {}

/// A session as its front end sees it: whose, and until when.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The stored hash of its token (which names it in the store).
    pub token_hash: SessionHash,
    /// When it ends unless used before.
    pub idle_expires_at: DateTime<Utc>,
    /// When it ends whatever happens.
    pub expires_at: DateTime<Utc>,
}

/// A session just started: its token, for the cookie, and what the page needs.
#[derive(Debug)]
pub struct StartedSession {
    /// The token, to be set in an `HttpOnly` cookie and nowhere else.
    pub token: SessionToken,
    /// Who signed in.
    pub principal: Principal,
    /// Its limits.
    pub view: SessionView,
}

/// A presented session cookie, checked: its principal and limits, or why not.
pub type SessionCheck = Result<(Principal, SessionView), FailedAuth>;

/// Console sessions of every tenant.
pub struct SessionService {
    authn: Arc<Authenticator>,
    factors: Arc<dyn PrincipalStore>,
    keys: Arc<KeyService>,
    trail: AuditTrail,
    rng: Arc<dyn Csprng>,
    clock: Arc<dyn Clock>,
    totp_lockout: TimeDelta,
}

impl SessionService {
    /// Sessions of the principals in `factors`, failures observed by `authn`.
    pub fn new(
        authn: Arc<Authenticator>,
        factors: Arc<dyn PrincipalStore>,
        keys: Arc<KeyService>,
        trail: AuditTrail,
        rng: Arc<dyn Csprng>,
        clock: Arc<dyn Clock>,
        totp_lockout: TimeDelta,
    ) -> SessionService {
        SessionService {
            authn,
            factors,
            keys,
            trail,
            rng,
            clock,
            totp_lockout,
        }
    }

    /// `POST /v1/sessions`: signs a person in with `api_key` and, when they have a second
    /// factor, `totp`. A wrong key is an authentication failure (recorded and throttled like any
    /// other); a principal that is not a person, or a wrong code, is a refused `session.start`.
    pub async fn sign_in<E: SessionRefusal>(
        &self,
        api_key: &str,
        totp: Option<&str>,
        source: Option<IpAddr>,
        request_id: String,
    ) -> Result<StartedSession, E> {
        let principal = match self.authn.authenticate_key(api_key).await {
            Ok(Ok(principal)) => principal,
            Ok(Err(failure)) => {
                let throttled = self
                    .authn
                    .observe_failure(failure, source, request_id)
                    .await;
                return Err(E::from(match throttled {
                    Some(wait) => SessionError::Throttled(wait),
                    None => SessionError::Unauthenticated,
                }));
            }
            Err(e) => return Err(E::from(SessionError::Store(e))),
        };
        let ctx = RequestContext {
            principal,
            request_id,
            source,
            session: None,
        };
        let mut event = ctx.event(Action::SessionStart, self.clock.now());
        let prepared = async {
            ctx.require_any(PEOPLE)?;
            let factor = self.second_factor(&ctx.principal, totp).await?;
            event.detail = Some(format!("second_factor={factor}"));
            let token =
                SessionToken::generate(self.rng.as_ref()).map_err(|_| SessionError::Random)?;
            Ok::<_, E>(token)
        }
        .await;
        let token = match prepared {
            Ok(token) => token,
            Err(e) => return self.trail.settle(event, Err(e)).await,
        };
        let now = self.clock.now();
        let view = SessionView {
            token_hash: token.hash(),
            idle_expires_at: now + IDLE_LIMIT,
            expires_at: now + ABSOLUTE_LIMIT,
        };
        event.subject = Some(view.token_hash.public_name());
        let write = AuditedWrite::StartSession(Box::new(NewSession {
            token_hash: view.token_hash,
            principal: ctx.principal.id,
            tenant: ctx.principal.tenant,
            created_at: now,
            idle_expires_at: view.idle_expires_at,
            expires_at: view.expires_at,
        }));
        let finish = move |_: &WriteOutcome| {
            let mut event = event;
            event.outcome = Outcome::Success;
            event
        };
        // No session exists unrecorded: the row and its record commit together.
        self.trail.write(write, finish).await.map_err(E::from)?;
        Ok(StartedSession {
            token,
            principal: ctx.principal,
            view,
        })
    }

    /// Checks the second factor of a person signing in; answers what the record says of it.
    async fn second_factor(
        &self,
        principal: &Principal,
        totp: Option<&str>,
    ) -> Result<&'static str, SessionError> {
        if self.factors.totp_state(principal.id).await?.is_none() {
            return Ok("none");
        }
        mfa::verify(
            self.factors.as_ref(),
            &self.keys,
            self.clock.as_ref(),
            principal.id,
            totp,
            self.totp_lockout,
        )
        .await?
        .map_err(SessionError::Mfa)?;
        Ok("totp")
    }

    /// Checks a presented session cookie. `csrf` is the `X-CSRF-Token` of a request that
    /// changes state (`None` for a safe method, which needs none); `activity` says whether the
    /// person made the request, which moves the idle limit.
    pub async fn check(
        &self,
        cookie: &str,
        csrf: Option<Option<&str>>,
        activity: bool,
    ) -> Result<SessionCheck, StoreError> {
        let Some(token) = SessionToken::parse(cookie) else {
            return Ok(Err(AuthFailure::SessionEnded.into()));
        };
        let csrf_ok = csrf.is_none_or(|presented| presented.is_some_and(|p| token.csrf_matches(p)));
        let now = self.clock.now();
        let hash = token.hash();
        // A refused change keeps nothing alive; it is still looked up, so that the refusal is
        // recorded under the session's person and tenant.
        let idle_until = (activity && csrf_ok).then_some(now + IDLE_LIMIT);
        let Some(record) = self.factors.live_session(&hash, now, idle_until).await? else {
            return Ok(Err(AuthFailure::SessionEnded.into()));
        };
        let view = SessionView {
            token_hash: hash,
            idle_expires_at: record.idle_expires_at,
            expires_at: record.expires_at,
        };
        let principal = match usable(record.principal, now) {
            Ok(principal) => principal,
            Err(failure) => return Ok(Err(failure)),
        };
        if !csrf_ok {
            return Ok(Err(FailedAuth {
                reason: AuthFailure::CsrfMismatch,
                principal: Some(principal),
            }));
        }
        Ok(Ok((principal, view)))
    }

    /// The CSRF token of a presented session cookie (for a page that reloads).
    pub fn csrf_token(cookie: &str) -> Option<String> {
        SessionToken::parse(cookie).map(|t| t.csrf_token())
    }

    /// `DELETE /v1/sessions/current`: ends the caller's session, with its `session.end`
    /// record.
    pub async fn sign_out<E: SessionRefusal>(&self, ctx: &RequestContext) -> Result<(), E> {
        let Some(session) = &ctx.session else {
            return Err(E::from(SessionError::Unauthenticated));
        };
        let mut event = ctx.event(Action::SessionEnd, self.clock.now());
        event.subject = Some(session.token_hash.public_name());
        event.detail = Some("signed_out".to_owned());
        let write = AuditedWrite::EndSession {
            token_hash: session.token_hash,
            now: self.clock.now(),
        };
        // Of sign-outs racing on one session, the one that ends it succeeds; the others found it
        // ended already, and are refused like any request on an ended session.
        let finish = move |outcome: &WriteOutcome| {
            let mut event = event;
            if matches!(outcome, WriteOutcome::SessionEnded(true)) {
                event.outcome = Outcome::Success;
            } else {
                event.outcome = Outcome::Denied;
                event.code = Some(E::from(SessionError::Unauthenticated).code().to_owned());
                event.detail = Some("already_ended".to_owned());
            }
            event
        };
        match self.trail.write(write, finish).await {
            Ok(WriteOutcome::SessionEnded(true)) => Ok(()),
            Ok(_) => Err(E::from(SessionError::Unauthenticated)),
            Err(e) => Err(E::from(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_are_pci_dss_8_2_8s() {
        assert!(IDLE_LIMIT <= TimeDelta::minutes(15));
        assert!(ABSOLUTE_LIMIT > IDLE_LIMIT);
        assert!(!PEOPLE.contains(&Role::Tokenizer));
        assert!(!PEOPLE.contains(&Role::Detokenizer));
    }
}
