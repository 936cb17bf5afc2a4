//! The instance's own events, which an assessor looks for (PCI DSS 10.2.1.x): it started (its
//! version and instance id), it loaded its access policies (the file's SHA-256 and the policies'
//! names, so a changed `approvals = 0` leaves a trace), it stopped. Tenant-less records:
//! auditors read them with `GET /v1/audit?scope=system`.

use std::sync::Arc;

use uuid::Uuid;

use super::audit::{AuditError, AuditTrail};
use crate::clock::Clock;
use crate::domain::PolicySet;
use crate::domain::audit::{Action, AuditEvent};

/// The lifecycle of one serving instance.
pub struct Lifecycle {
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
    instance: Uuid,
}

impl Lifecycle {
    /// A new instance, recorded in `trail`.
    pub fn new(trail: AuditTrail, clock: Arc<dyn Clock>) -> Lifecycle {
        Lifecycle {
            trail,
            clock,
            instance: Uuid::new_v4(),
        }
    }

    fn event(&self, action: Action, detail: String) -> AuditEvent {
        let mut event = AuditEvent::new(action, self.clock.now());
        event.subject = Some(self.instance.to_string());
        event.detail = Some(detail);
        event
    }

    /// `service.start` and `policy.load`, before the first request is served: an instance
    /// whose trail cannot take them does not start. `policy_text` is the policy file as read
    /// (`None`: no file, so every access request is refused).
    pub async fn started(
        &self,
        policy_text: Option<&str>,
        policies: &PolicySet,
    ) -> Result<(), AuditError> {
        self.trail
            .record_change(self.event(
                Action::ServiceStart,
                format!(
                    "version={} instance={}",
                    env!("CARGO_PKG_VERSION"),
                    self.instance
                ),
            ))
            .await?;
        let names: Vec<&str> = policies
            .policies()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let detail = match policy_text {
            Some(text) => format!(
                "sha256={} policies={}",
                hex::encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes())),
                names.join(",")
            ),
            None => "no policy file: every access request is refused".to_owned(),
        };
        self.trail
            .record_change(self.event(Action::PolicyLoad, detail))
            .await
    }

    /// `service.stop`, once connections have drained. A stop that cannot be recorded is
    /// logged: the process ends either way.
    pub async fn stopped(&self) {
        let event = self.event(
            Action::ServiceStop,
            format!(
                "version={} instance={}",
                env!("CARGO_PKG_VERSION"),
                self.instance
            ),
        );
        if self.trail.record_change(event).await.is_err() {
            tracing::warn!("the service stop could not be recorded");
        }
    }
}
