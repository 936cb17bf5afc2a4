//! Authenticating callers by API key, and recording the failures.
//!
//! Every failure is counted, logged and audited by reason and source address — never the
//! presented key — under the principal and its tenant when the key is one the vault knows. A
//! flood from one source is aggregated in the trail (see [`auth_flood`](super::auth_flood))
//! and slowed down.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::audit::AuditTrail;
use super::auth_flood::{self, AuthFloods, FailureKey, FailureWindow};
use super::principals::{self, FailedAuth};
use crate::clock::Clock;
use crate::domain::Principal;
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::metrics::Metrics;
use crate::store::{PrincipalStore, StoreError};

/// The code an authentication failure is answered and recorded with.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// Authentication for one instance.
pub struct Authenticator {
    store: Arc<dyn PrincipalStore>,
    clock: Arc<dyn Clock>,
    trail: AuditTrail,
    metrics: Metrics,
    floods: AuthFloods,
}

impl Authenticator {
    /// Authenticates against `store`, records failures in `trail` and `metrics`.
    pub fn new(
        store: Arc<dyn PrincipalStore>,
        clock: Arc<dyn Clock>,
        trail: AuditTrail,
        metrics: Metrics,
    ) -> Authenticator {
        Authenticator {
            store,
            clock,
            trail,
            metrics,
            floods: AuthFloods::default(),
        }
    }

    /// Resolves an `Authorization` header value to a principal.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<Result<Principal, FailedAuth>, StoreError> {
        principals::authenticate(&self.store, self.clock.as_ref(), authorization).await
    }

    /// Resolves a presented API key (not a header) to a principal.
    pub async fn authenticate_key(
        &self,
        key: &str,
    ) -> Result<Result<Principal, FailedAuth>, StoreError> {
        principals::authenticate_key(&self.store, self.clock.as_ref(), key).await
    }

    /// Observes a failed authentication from `source` (counted, logged, audited); answers
    /// the number of seconds to make the source wait when it is past its limit. The caller
    /// gets its answer whether or not the record could be written.
    pub async fn observe_failure(
        &self,
        failure: FailedAuth,
        source: Option<IpAddr>,
        request_id: String,
    ) -> Option<u64> {
        let reason = failure.reason.as_str();
        self.metrics.observe_auth_failure(reason);
        tracing::warn!(
            request_id = %request_id,
            reason,
            source = %source.map(|ip| ip.to_string()).unwrap_or_default(),
            "authentication failed"
        );
        let key = FailureKey {
            source,
            principal: failure.principal.as_ref().map(|p| (p.id, p.tenant)),
        };
        let now = self.clock.now();
        let verdict = self.floods.observe(key, reason, now);
        // Ended windows first, so the trail reads in the order things happened.
        self.record_floods(verdict.ended).await;
        if verdict.record {
            let mut event = failure_event(key, now);
            event.detail = Some(reason.to_owned());
            event.request_id = Some(request_id);
            let _ = self.trail.record(event).await;
        }
        verdict.throttled
    }

    /// Writes the aggregated records of failure windows that have ended (also called by
    /// housekeeping, so a flood that stops is still recorded).
    pub async fn sweep_floods(&self) {
        let ended = self.floods.sweep(self.clock.now());
        self.record_floods(ended).await;
    }

    async fn record_floods(&self, ended: Vec<(FailureKey, FailureWindow)>) {
        for (key, window) in ended {
            let mut event = failure_event(key, self.clock.now());
            event.detail = Some(format!(
                "{} failures from this source between {} and the end of a {}s window \
                 (the first recorded on its own; last reason {})",
                window.count,
                window.started.to_rfc3339(),
                auth_flood::WINDOW.num_seconds(),
                window.reason,
            ));
            let _ = self.trail.record(event).await;
        }
    }
}

/// An `auth.failure` record for `key`, without its detail.
fn failure_event(key: FailureKey, now: DateTime<Utc>) -> AuditEvent {
    let mut event = AuditEvent::new(Action::AuthFailure, now);
    event.outcome = Outcome::Denied;
    event.code = Some(UNAUTHENTICATED.to_owned());
    event.source = key.source.map(|ip| ip.to_string());
    if let Some((principal, tenant)) = key.principal {
        event.actor = Some(principal);
        event.tenant = Some(tenant);
    }
    event
}
