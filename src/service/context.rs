//! Who is asking, from where, under which request id: built once per request by the front end
//! (the HTTP extractor) and handed to every use case, which checks roles against it and
//! starts its audit record from it.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use super::sessions::SessionView;
use crate::domain::audit::{Action, AuditEvent};
use crate::domain::{Principal, Role};

/// The caller of a use case.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The authenticated principal.
    pub principal: Principal,
    /// The request's id, as answered in `X-Request-Id`.
    pub request_id: String,
    /// Where the request came from, when known.
    pub source: Option<IpAddr>,
    /// The console session it came in, if it came with a session cookie and not an API key.
    pub session: Option<SessionView>,
}

/// The caller's roles do not allow the use case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the caller's roles do not allow this operation")]
pub struct Forbidden;

impl RequestContext {
    /// The principal, if it holds `role`.
    pub fn require(&self, role: Role) -> Result<&Principal, Forbidden> {
        self.require_any(&[role])
    }

    /// The principal, if it holds one of `roles`.
    pub fn require_any(&self, roles: &[Role]) -> Result<&Principal, Forbidden> {
        if roles.iter().any(|r| self.principal.has(*r)) {
            Ok(&self.principal)
        } else {
            Err(Forbidden)
        }
    }

    /// The start of this caller's record of `action` at `at`: tenant, actor, request id and
    /// source filled in.
    pub fn event(&self, action: Action, at: DateTime<Utc>) -> AuditEvent {
        let mut event = AuditEvent::new(action, at);
        event.tenant = Some(self.principal.tenant);
        event.actor = Some(self.principal.id);
        event.request_id = Some(self.request_id.clone());
        event.source = self.source.map(|ip| ip.to_string());
        event
    }
}
