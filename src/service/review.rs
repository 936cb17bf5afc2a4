//! `GET /v1/access-requests/{id}/review`: what an approver needs to decide a request, and
//! never a card number or a grant.
//!
//! For each card the request names: its masked PAN, BIN, last four and brand, and how often
//! and by whom it was revealed in the last 30 days (read from the trail's `detokenize`
//! records); the requester's name and recent requests; the policy that applies. The review
//! reads the trail, so it is recorded like any read of it (`audit.read`, `access_request_review`).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::TimeDelta;
use uuid::Uuid;

use super::access::{AccessRefusal, AccessRequestView, AccessService};
use super::audit::ReadError;
use super::{AuditTrail, RequestContext};
use crate::clock::Clock;
use crate::domain::access::AccessRequestRecord;
use crate::domain::audit::{Action, AuditQuery, Outcome};
use crate::domain::brand::CardBrand;
use crate::domain::{MaskedPan, Policy, PrincipalId, RequestStatus, Role, Token};
use crate::store::{RequestFilter, Store};

/// How far back reveals are counted.
pub const REVEAL_WINDOW: TimeDelta = TimeDelta::days(30);
/// Most reveal records read per card; past it the count says "at least".
pub const MAX_REVEALS_READ: u32 = 500;
/// How many of the requester's other requests are shown.
pub const RECENT_REQUESTS: usize = 10;

/// Who revealed a card, how often.
#[derive(Debug, Clone)]
pub struct Revealer {
    /// The principal.
    pub principal: PrincipalId,
    /// Their name, if they are still in the tenant.
    pub name: Option<String>,
    /// Reveals in the window.
    pub count: u64,
}

/// One card of a request, as an approver sees it.
#[derive(Debug, Clone)]
pub struct CardReview {
    /// The token.
    pub token: Token,
    /// `live`, `expired`, `destroyed` or `unknown` (no such token in the tenant).
    pub state: &'static str,
    /// The masked PAN, while the card data exists.
    pub masked: Option<MaskedPan>,
    /// The first six digits, when the mask shows them (PANs of 16 digits or more).
    pub bin: Option<String>,
    /// The last four digits.
    pub last_four: Option<String>,
    /// The brand, from the BIN.
    pub brand: CardBrand,
    /// Reveals in the last [`REVEAL_WINDOW`].
    pub reveals: u64,
    /// Whether more records were there than were read (`reveals` is then a floor).
    pub reveals_capped: bool,
    /// Who revealed it, most first.
    pub revealed_by: Vec<Revealer>,
}

/// Everything an approver sees of a request.
#[derive(Debug)]
pub struct RequestReview {
    /// The request (never with a grant).
    pub view: AccessRequestView,
    /// The requester's name.
    pub requester_name: Option<String>,
    /// The policy the request was made under, as it reads now (`None` if it was removed).
    pub policy: Option<Policy>,
    /// Its cards.
    pub cards: Vec<CardReview>,
    /// The requester's other recent requests, newest first, with their status now.
    pub recent: Vec<(AccessRequestRecord, RequestStatus)>,
}

/// Reviews of access requests.
pub struct ReviewService {
    store: Arc<dyn Store>,
    access: Arc<AccessService>,
    trail: AuditTrail,
    clock: Arc<dyn Clock>,
}

impl ReviewService {
    /// Reviews over `store`, requests seen through `access`.
    pub fn new(
        store: Arc<dyn Store>,
        access: Arc<AccessService>,
        trail: AuditTrail,
        clock: Arc<dyn Clock>,
    ) -> ReviewService {
        ReviewService {
            store,
            access,
            trail,
            clock,
        }
    }

    /// The review of request `id` (`None`: the path held no request id) for an approver or
    /// auditor of its tenant.
    pub async fn review<E>(
        &self,
        ctx: &RequestContext,
        id: Option<Uuid>,
    ) -> Result<RequestReview, E>
    where
        E: AccessRefusal + From<ReadError>,
    {
        let mut event = ctx.event(Action::AuditRead, self.clock.now());
        event.detail = Some("access_request_review".to_owned());
        event.subject = id.map(|id| id.to_string());
        let result = async {
            let caller = ctx.require_any(&[Role::Approver, Role::Auditor])?;
            let mut view = self.access.get::<E>(ctx, id).await?;
            view.grant = None;
            let request = &view.record.request;
            let cards = self.cards(caller.tenant, &request.tokens).await?;
            let recent = self
                .recent(caller.tenant, request.requester, request.id)
                .await?;
            let mut ids: Vec<PrincipalId> = cards
                .iter()
                .flat_map(|c| c.revealed_by.iter().map(|r| r.principal))
                .collect();
            ids.push(request.requester);
            ids.sort_by_key(|p| p.0);
            ids.dedup();
            let names: HashMap<PrincipalId, String> = self
                .store
                .principal_names(caller.tenant, &ids)
                .await
                .map_err(ReadError::from)?
                .into_iter()
                .collect();
            let cards = cards
                .into_iter()
                .map(|mut card| {
                    for r in &mut card.revealed_by {
                        r.name = names.get(&r.principal).cloned();
                    }
                    card
                })
                .collect();
            let policy = self
                .access
                .policies()
                .policies()
                .iter()
                .find(|p| p.name == request.policy)
                .cloned();
            Ok(RequestReview {
                requester_name: names.get(&request.requester).cloned(),
                policy,
                cards,
                recent,
                view,
            })
        }
        .await;
        self.trail.settle(event, result).await
    }

    async fn cards(
        &self,
        tenant: crate::domain::TenantId,
        tokens: &[Token],
    ) -> Result<Vec<CardReview>, ReadError> {
        let records = self.store.get_tokens(tenant, tokens).await?;
        let now = self.clock.now();
        let mut cards = Vec::with_capacity(tokens.len());
        for (token, record) in tokens.iter().zip(records) {
            let (state, masked) = match record {
                None => ("unknown", None),
                Some(r) if r.deleted_at.is_some() || r.destroyed_at.is_some() => {
                    ("destroyed", None)
                }
                Some(r) if r.expires_at.is_some_and(|at| at <= now) => ("expired", r.masked),
                Some(r) => ("live", r.masked),
            };
            let text = masked.as_ref().map(|m| m.as_str().to_owned());
            let bin = text
                .as_deref()
                .and_then(|t| t.get(..6))
                .filter(|b| b.bytes().all(|c| c.is_ascii_digit()))
                .map(str::to_owned);
            let last_four = text
                .as_deref()
                .and_then(|t| t.get(t.len().saturating_sub(4)..))
                .map(str::to_owned);
            let (reveals, capped, revealed_by) = self.reveals(tenant, token).await?;
            cards.push(CardReview {
                token: token.clone(),
                state,
                brand: CardBrand::of_bin(bin.as_deref()),
                masked,
                bin,
                last_four,
                reveals,
                reveals_capped: capped,
                revealed_by,
            });
        }
        Ok(cards)
    }

    /// The card's successful `detokenize` records in the window, counted by who made them.
    async fn reveals(
        &self,
        tenant: crate::domain::TenantId,
        token: &Token,
    ) -> Result<(u64, bool, Vec<Revealer>), ReadError> {
        let records = self
            .store
            .query_audit(&AuditQuery {
                tenant,
                system: false,
                since: Some(self.clock.now() - REVEAL_WINDOW),
                until: None,
                actor: None,
                action: Some(Action::Detokenize),
                token: Some(token.as_str().to_owned()),
                outcome: Some(Outcome::Success),
                before_id: None,
                limit: MAX_REVEALS_READ,
            })
            .await?;
        let capped = records.len() >= usize::try_from(MAX_REVEALS_READ).unwrap_or(usize::MAX);
        let mut by: HashMap<PrincipalId, u64> = HashMap::new();
        for record in &records {
            if let Some(actor) = record.chained.event.actor {
                *by.entry(actor).or_default() += 1;
            }
        }
        let mut revealed_by: Vec<Revealer> = by
            .into_iter()
            .map(|(principal, count)| Revealer {
                principal,
                name: None,
                count,
            })
            .collect();
        revealed_by.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.principal.0.cmp(&b.principal.0))
        });
        Ok((
            u64::try_from(records.len()).unwrap_or(u64::MAX),
            capped,
            revealed_by,
        ))
    }

    async fn recent(
        &self,
        tenant: crate::domain::TenantId,
        requester: PrincipalId,
        this: Uuid,
    ) -> Result<Vec<(AccessRequestRecord, RequestStatus)>, ReadError> {
        let now = self.clock.now();
        let records = self
            .store
            .list_access_requests(
                tenant,
                RequestFilter {
                    status: None,
                    requester: Some(requester),
                    now,
                    limit: u32::try_from(RECENT_REQUESTS + 1).unwrap_or(u32::MAX),
                },
            )
            .await?;
        Ok(records
            .into_iter()
            .filter(|r| r.request.id != this)
            .take(RECENT_REQUESTS)
            .map(|r| {
                let status = r.status_at(now);
                (r, status)
            })
            .collect())
    }
}
