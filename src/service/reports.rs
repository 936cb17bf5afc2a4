//! `GET /v1/reports/usage`: an auditor's report of their tenant's access for a period (grants
//! issued and used, requests by requester and purpose, refusals, time to decide). Reading it is
//! recorded like any read of the trail.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::audit::ReadError;
use super::{AuditTrail, Forbidden, Refusal, RequestContext};
use crate::clock::Clock;
use crate::domain::Role;
use crate::domain::audit::Action;
use crate::domain::reports::{UsageReport, usage_report};
use crate::store::Store;

/// The period a report covers: `[since, until)`.
#[derive(Debug, Clone, Copy)]
pub struct Period {
    /// From (inclusive).
    pub since: DateTime<Utc>,
    /// Until (exclusive).
    pub until: DateTime<Utc>,
}

/// Reports over the store, each read recorded in the trail.
pub struct UsageReporter {
    store: Arc<dyn Store>,
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
}

impl UsageReporter {
    /// Reports from `store`, reads recorded in `trail`.
    pub fn new(store: Arc<dyn Store>, trail: AuditTrail, clock: Arc<dyn Clock>) -> UsageReporter {
        UsageReporter {
            store,
            trail,
            clock,
        }
    }

    /// The usage report of the auditor's own tenant for the period asked.
    pub async fn usage<E>(
        &self,
        ctx: &RequestContext,
        asked: Result<Period, E>,
    ) -> Result<UsageReport, E>
    where
        E: Refusal + From<Forbidden> + From<ReadError>,
    {
        let mut event = ctx.event(Action::AuditRead, self.clock.now());
        event.detail = Some("usage_report".to_owned());
        let result = async {
            let tenant = ctx.require(Role::Auditor)?.tenant;
            let Period { since, until } = asked?;
            let (grants, requests) = self
                .store
                .usage_facts(tenant, since, until)
                .await
                .map_err(ReadError::from)?;
            let refusals = self
                .store
                .refusal_counts(tenant, since, until)
                .await
                .map_err(ReadError::from)?;
            Ok(usage_report(since, until, grants, &requests, refusals))
        }
        .await;
        self.trail.settle(event, result).await
    }
}
