//! The usage report an auditor reads for a period: grants issued against their uses, access
//! requests by requester and purpose, refusals by code, and how long people took to decide.
//!
//! Pure: the store supplies the facts of the period, this module adds them up.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use super::{PrincipalId, RequestStatus};

/// One access request of the period, as the report needs it.
#[derive(Debug, Clone)]
pub struct RequestFact {
    /// Who asked.
    pub requester: PrincipalId,
    /// Their name.
    pub requester_name: String,
    /// For what.
    pub purpose: String,
    /// Where it stands.
    pub status: RequestStatus,
    /// Approved by its policy with no person deciding.
    pub automatic: bool,
    /// When asked.
    pub created_at: DateTime<Utc>,
    /// When decided (approved, denied or expired).
    pub decided_at: Option<DateTime<Utc>>,
}

/// Grants minted in the period and what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantTotals {
    /// Minted.
    pub issued: u64,
    /// Uses taken (detokenize calls made under them).
    pub uses: u64,
    /// Uses they allowed in all.
    pub allowed: u64,
    /// Never used.
    pub unused: u64,
    /// Revoked.
    pub revoked: u64,
}

/// Requests by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// All of them.
    pub total: u64,
    /// Still waiting.
    pub pending: u64,
    /// Approved (by people or by policy).
    pub approved: u64,
    /// Approved by policy, with no person deciding.
    pub automatic: u64,
    /// Denied.
    pub denied: u64,
    /// Lapsed undecided.
    pub expired: u64,
}

impl StatusCounts {
    fn add(&mut self, fact: &RequestFact) {
        self.total += 1;
        match fact.status {
            RequestStatus::Pending => self.pending += 1,
            RequestStatus::Approved => self.approved += 1,
            RequestStatus::Denied => self.denied += 1,
            RequestStatus::Expired => self.expired += 1,
        }
        if fact.automatic {
            self.automatic += 1;
        }
    }
}

/// How long people took to decide (approved or denied by a person), in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DecisionTimes {
    /// Requests decided by a person.
    pub decided: u64,
    /// The median, if any was decided.
    pub median_seconds: Option<f64>,
    /// The 90th percentile (nearest rank).
    pub p90_seconds: Option<f64>,
    /// The longest.
    pub max_seconds: Option<f64>,
}

/// The report of a period.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageReport {
    /// From (inclusive).
    pub since: DateTime<Utc>,
    /// Until (exclusive).
    pub until: DateTime<Utc>,
    /// Grants minted in the period.
    pub grants: GrantTotals,
    /// Requests made in the period.
    pub requests: StatusCounts,
    /// The same by requester (id, name), most requests first.
    pub by_requester: Vec<(PrincipalId, String, StatusCounts)>,
    /// The same by purpose, most requests first.
    pub by_purpose: Vec<(String, StatusCounts)>,
    /// Refused calls of the period by their code, most first.
    pub refusals: Vec<(String, u64)>,
    /// How long people took to decide the period's requests.
    pub decisions: DecisionTimes,
}

/// Adds up a period's facts.
pub fn usage_report(
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    grants: GrantTotals,
    requests: &[RequestFact],
    mut refusals: Vec<(String, u64)>,
) -> UsageReport {
    let mut all = StatusCounts::default();
    let mut by_requester: HashMap<PrincipalId, (String, StatusCounts)> = HashMap::new();
    let mut by_purpose: BTreeMap<String, StatusCounts> = BTreeMap::new();
    let mut waits: Vec<f64> = Vec::new();
    for fact in requests {
        all.add(fact);
        by_requester
            .entry(fact.requester)
            .or_insert_with(|| (fact.requester_name.clone(), StatusCounts::default()))
            .1
            .add(fact);
        by_purpose
            .entry(fact.purpose.clone())
            .or_default()
            .add(fact);
        let decided_by_a_person = !fact.automatic
            && matches!(fact.status, RequestStatus::Approved | RequestStatus::Denied);
        if let (true, Some(at)) = (decided_by_a_person, fact.decided_at) {
            waits.push((at - fact.created_at).as_seconds_f64().max(0.0));
        }
    }
    waits.sort_by(f64::total_cmp);
    let rank = |q: f64| -> Option<f64> {
        // Nearest rank: the smallest value with at least q of them at or below it.
        let n = waits.len();
        let k = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
        waits.get(k - 1).copied()
    };
    let mut by_requester: Vec<(PrincipalId, String, StatusCounts)> = by_requester
        .into_iter()
        .map(|(id, (name, counts))| (id, name, counts))
        .collect();
    by_requester.sort_by(|a, b| b.2.total.cmp(&a.2.total).then_with(|| a.1.cmp(&b.1)));
    let mut by_purpose: Vec<(String, StatusCounts)> = by_purpose.into_iter().collect();
    by_purpose.sort_by(|a, b| b.1.total.cmp(&a.1.total).then_with(|| a.0.cmp(&b.0)));
    refusals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    UsageReport {
        since,
        until,
        grants,
        requests: all,
        by_requester,
        by_purpose,
        refusals,
        decisions: DecisionTimes {
            decided: waits.len() as u64,
            median_seconds: rank(0.5),
            p90_seconds: rank(0.9),
            max_seconds: waits.last().copied(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_900_000_000 + seconds, 0).unwrap_or_default()
    }

    fn fact(who: u128, purpose: &str, status: RequestStatus, wait: Option<i64>) -> RequestFact {
        RequestFact {
            requester: PrincipalId(Uuid::from_u128(who)),
            requester_name: format!("p{who}"),
            purpose: purpose.to_owned(),
            status,
            automatic: wait == Some(0),
            created_at: at(0),
            decided_at: wait.map(at),
        }
    }

    #[test]
    fn requests_are_counted_by_requester_and_purpose_and_only_people_s_decisions_are_timed() {
        let facts = [
            fact(1, "chargeback", RequestStatus::Approved, Some(60)),
            fact(1, "chargeback", RequestStatus::Denied, Some(600)),
            fact(1, "chargeback", RequestStatus::Pending, None),
            fact(2, "payment_authorization", RequestStatus::Approved, Some(0)),
            fact(2, "payment_authorization", RequestStatus::Approved, Some(0)),
            fact(3, "chargeback", RequestStatus::Expired, Some(3600)),
            fact(3, "chargeback", RequestStatus::Approved, Some(120)),
        ];
        let grants = GrantTotals {
            issued: 4,
            uses: 3,
            allowed: 10,
            unused: 2,
            revoked: 1,
        };
        let report = usage_report(
            at(-10),
            at(10_000),
            grants,
            &facts,
            vec![("grant_missing".into(), 2), ("forbidden".into(), 5)],
        );
        assert_eq!(report.requests.total, 7);
        assert_eq!(
            (
                report.requests.approved,
                report.requests.automatic,
                report.requests.denied,
                report.requests.pending,
                report.requests.expired
            ),
            (4, 2, 1, 1, 1)
        );
        let names: Vec<(&str, u64)> = report
            .by_requester
            .iter()
            .map(|(_, n, c)| (n.as_str(), c.total))
            .collect();
        assert_eq!(names, vec![("p1", 3), ("p2", 2), ("p3", 2)]);
        let purposes: Vec<(&str, u64, u64)> = report
            .by_purpose
            .iter()
            .map(|(p, c)| (p.as_str(), c.total, c.approved))
            .collect();
        assert_eq!(
            purposes,
            vec![("chargeback", 5, 2), ("payment_authorization", 2, 2)]
        );
        // People decided three (60, 120, 600 s); automatic approvals and expiries are not timed.
        assert_eq!(report.decisions.decided, 3);
        assert_eq!(report.decisions.median_seconds, Some(120.0));
        assert_eq!(report.decisions.p90_seconds, Some(600.0));
        assert_eq!(report.decisions.max_seconds, Some(600.0));
        assert_eq!(
            report.refusals,
            vec![("forbidden".into(), 5), ("grant_missing".into(), 2)]
        );
        assert_eq!(report.grants, grants);
    }

    #[test]
    fn an_empty_period_reports_zeros_and_no_times() {
        let report = usage_report(at(0), at(1), GrantTotals::default(), &[], Vec::new());
        assert_eq!(report.requests, StatusCounts::default());
        assert_eq!(report.decisions, DecisionTimes::default());
        assert!(report.by_requester.is_empty() && report.by_purpose.is_empty());
    }
}
