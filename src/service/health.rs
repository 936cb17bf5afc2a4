//! Readiness: whether this instance can do its job right now — reach its database, write its
//! audit trail, and seal with its keys. A load balancer stops sending traffic to an instance
//! that says no, and sends it again once it says yes, without a restart.

use std::sync::Arc;
use std::time::Duration;

use super::audit::AuditTrail;
use super::keys::KeyService;
use crate::store::Database;

/// How long readiness waits for the database before it answers no.
pub const READY_WAIT: Duration = Duration::from_millis(800);

/// What is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    /// The database does not answer (in time).
    #[error("the database does not answer")]
    Database,
    /// The audit trail cannot be written: every audited route would answer 503.
    #[error("the audit trail cannot be written")]
    AuditTrail,
    /// The keys are not loaded.
    #[error("the keys are not loaded")]
    Keys,
    /// The instance is sealed: custodians' shares must unseal it.
    #[error("the instance is sealed")]
    Sealed,
}

impl NotReady {
    /// A stable name for the problem's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotReady::Database => "database",
            NotReady::AuditTrail => "audit_trail",
            NotReady::Keys => "keys",
            NotReady::Sealed => "sealed",
        }
    }
}

/// Readiness checks of one instance.
pub struct Health {
    database: Arc<dyn Database>,
    trail: AuditTrail,
    keys: Arc<KeyService>,
}

impl Health {
    /// Checks over these parts.
    pub fn new(database: Arc<dyn Database>, trail: AuditTrail, keys: Arc<KeyService>) -> Health {
        Health {
            database,
            trail,
            keys,
        }
    }

    /// Ready, or what is not. A record is appended and rolled back to see whether the trail
    /// takes writes; if it does after a failed batch, the trail counts as healthy again.
    pub async fn ready(&self) -> Result<(), NotReady> {
        match tokio::time::timeout(READY_WAIT, self.database.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "readiness: database does not answer");
                return Err(NotReady::Database);
            }
            Err(_) => return Err(NotReady::Database),
        }
        // Every check appends a record and rolls it back: the answer holds even when no
        // request has tried to write since the trail stopped (or started) taking records.
        // The probe runs in the appender, on its own connections and after what is queued, so
        // a stalled appender or a lost connection of its own shows here too.
        match tokio::time::timeout(READY_WAIT, self.trail.probe()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return Err(NotReady::AuditTrail),
        }
        if !self.keys.is_ready() {
            return Err(NotReady::Keys);
        }
        Ok(())
    }
}
