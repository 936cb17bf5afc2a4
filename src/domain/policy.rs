//! Access policies: the rules that decide whether an access request may be made, how many
//! approvals it needs and what its grant may do.
//!
//! Parsed from TOML and validated whole at start-up. No I/O (the caller reads the file), no
//! clock (the caller passes the time). Nothing here logs.
//!
//! How several policies combine: each policy is a complete allow rule, and they are tried in
//! file order; the first policy that allows the whole request decides its approvals, MFA and
//! use limit (firewall-rule semantics, so the order in the file is the administrator's tool).
//! Limits are never mixed across policies. When none allows it, the refusal names the reason
//! given by the first policy that covers the caller's role and purpose.

use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;

use chrono::{DateTime, Timelike, Utc};
use ipnet::IpNet;
use serde::Deserialize;

use super::Role;

/// Longest grant a policy may allow: seven days.
pub const MAX_DURATION_SECONDS: u32 = 7 * 24 * 3600;
/// Most tokens one request may name (and one detokenize call may carry).
pub const MAX_TOKENS: u32 = 100;
/// Most approvals a policy may ask for.
pub const MAX_APPROVALS: u32 = 10;
/// Most uses a policy may allow per grant.
pub const MAX_USES: u32 = 1_000_000;

/// A purpose such as `chargeback`: lowercase letters, digits and underscores, 1–64 long.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Purpose(String);

impl Purpose {
    /// Parses a purpose name.
    pub fn parse(s: &str) -> Option<Purpose> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        ok.then(|| Purpose(s.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A daily window in UTC, `HH:MM-HH:MM`: start included, end excluded, `24:00` allowed as end.
/// A start after the end wraps past midnight (`22:00-06:00`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoursUtc {
    start: u32,
    end: u32,
}

impl HoursUtc {
    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let minute = at.hour() * 60 + at.minute();
        if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

impl std::fmt::Display for HoursUtc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

impl FromStr for HoursUtc {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let minutes = |hm: &str| -> Result<u32, ()> {
            let (h, m) = hm.split_once(':').ok_or(())?;
            if h.len() != 2 || m.len() != 2 {
                return Err(());
            }
            let h: u32 = h.parse().map_err(|_| ())?;
            let m: u32 = m.parse().map_err(|_| ())?;
            if m >= 60 || h > 24 || (h == 24 && m != 0) {
                return Err(());
            }
            Ok(h * 60 + m)
        };
        let (a, b) = s.split_once('-').ok_or(())?;
        let (start, end) = (minutes(a.trim())?, minutes(b.trim())?);
        if start == end || start >= 24 * 60 {
            return Err(());
        }
        Ok(HoursUtc { start, end })
    }
}

/// One validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its name, unique in the file.
    pub name: String,
    /// The roles it applies to (`detokenizer`, `requester`).
    pub roles: Vec<Role>,
    /// The purposes it allows.
    pub purposes: Vec<Purpose>,
    /// Distinct approvals needed; 0 approves at once.
    pub approvals: u32,
    /// Longest grant.
    pub max_duration_seconds: u32,
    /// Most detokenize calls per grant.
    pub max_uses: u32,
    /// Most tokens one request may name.
    pub max_tokens: u32,
    /// Whether a request may cover every token of the tenant.
    pub any_token: bool,
    /// Whether people elevating under it must give a TOTP code.
    pub mfa: bool,
    /// When requests may be made.
    pub hours_utc: Option<HoursUtc>,
    /// Where requests may come from.
    pub source_cidrs: Option<Vec<IpNet>>,
}

/// Why a policy file was refused: the policy (when one is to blame) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", policy.as_ref().map(|p| format!("policy `{p}`: ")).unwrap_or_default())]
pub struct PolicyError {
    /// The policy at fault.
    pub policy: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// Why no policy allows a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// No policy lets the caller's roles ask for this purpose.
    Purpose,
    /// The duration is longer than allowed.
    Duration,
    /// More uses than allowed.
    Uses,
    /// More tokens than allowed.
    Tokens,
    /// Every token was asked for, and the policy does not allow that.
    AnyToken,
    /// Outside the policy's hours.
    Hours,
    /// From outside the policy's networks.
    Network,
}

impl Denial {
    /// The stable machine name, sent as the problem's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::Purpose => "purpose",
            Denial::Duration => "duration",
            Denial::Uses => "uses",
            Denial::Tokens => "tokens",
            Denial::AnyToken => "any_token",
            Denial::Hours => "hours",
            Denial::Network => "network",
        }
    }

    /// A sentence for the problem's detail.
    pub fn detail(self) -> &'static str {
        match self {
            Denial::Purpose => "no policy allows this purpose for the caller's roles",
            Denial::Duration => "the duration asked for is longer than policy allows",
            Denial::Uses => "more uses were asked for than policy allows",
            Denial::Tokens => "more tokens were named than policy allows",
            Denial::AnyToken => "policy does not allow a grant for any token",
            Denial::Hours => "requests are not allowed at this time of day",
            Denial::Network => "requests are not allowed from this network address",
        }
    }
}

/// What is asked, as the policies see it.
#[derive(Debug, Clone)]
pub struct AccessAsk<'a> {
    /// The caller's roles.
    pub roles: &'a [Role],
    /// The purpose.
    pub purpose: &'a Purpose,
    /// How many tokens are named (0 with `any_token`).
    pub tokens: usize,
    /// Whether every token of the tenant is asked for.
    pub any_token: bool,
    /// How long the grant should last.
    pub duration_seconds: u32,
    /// Uses asked for, if any.
    pub max_uses: Option<u32>,
    /// When the request is made.
    pub at: DateTime<Utc>,
    /// Where it comes from.
    pub source: Option<IpAddr>,
}

/// What the deciding policy says about an allowed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    /// The policy's name.
    pub policy: String,
    /// Distinct approvals needed.
    pub approvals: u32,
    /// Uses the grant will allow.
    pub max_uses: u32,
    /// Whether the requester must give a TOTP code now (a person, under an MFA policy).
    pub requester_mfa: bool,
    /// Whether each approver must give a TOTP code.
    pub approver_mfa: bool,
}

/// Every policy, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySet {
    policies: Vec<Policy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    policy: Vec<RawPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    roles: Vec<String>,
    purposes: Vec<String>,
    approvals: u32,
    max_duration_seconds: u32,
    #[serde(default)]
    max_uses: Option<u32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    any_token: bool,
    #[serde(default)]
    mfa: Option<bool>,
    #[serde(default)]
    hours_utc: Option<String>,
    #[serde(default)]
    source_cidrs: Option<Vec<String>>,
}

impl PolicySet {
    /// No policy: every access request is refused.
    pub fn empty() -> PolicySet {
        PolicySet::default()
    }

    /// The policies.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Parses and validates a policy file.
    pub fn from_toml(text: &str) -> Result<PolicySet, PolicyError> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            // A policy file holds no secrets: its text may be quoted back.
            let at = e.span().map_or(0, |span| span.start);
            let (line, column) = line_and_column(text, at);
            PolicyError {
                policy: policy_around(text, at),
                reason: format!("line {line}, column {column}: {}", e.message().trim_end()),
            }
        })?;
        let mut names = HashSet::new();
        let mut policies = Vec::with_capacity(file.policy.len());
        for raw in file.policy {
            let policy = validate(raw)?;
            if !names.insert(policy.name.clone()) {
                return Err(PolicyError {
                    policy: Some(policy.name),
                    reason: "the name is used by another policy".into(),
                });
            }
            policies.push(policy);
        }
        Ok(PolicySet { policies })
    }

    /// Decides a request: the first policy that allows all of it, or the reason none does.
    pub fn evaluate(&self, ask: &AccessAsk<'_>) -> Result<Allowed, Denial> {
        let mut first_denial = None;
        for policy in self.policies.iter().filter(|p| {
            p.purposes.contains(ask.purpose) && p.roles.iter().any(|r| ask.roles.contains(r))
        }) {
            match policy.check(ask) {
                Ok(allowed) => return Ok(allowed),
                Err(denial) => {
                    first_denial.get_or_insert(denial);
                }
            }
        }
        Err(first_denial.unwrap_or(Denial::Purpose))
    }
}

impl Policy {
    fn check(&self, ask: &AccessAsk<'_>) -> Result<Allowed, Denial> {
        if ask.any_token && !self.any_token {
            return Err(Denial::AnyToken);
        }
        if u32::try_from(ask.tokens).map_or(true, |n| n > self.max_tokens) {
            return Err(Denial::Tokens);
        }
        if ask.duration_seconds > self.max_duration_seconds {
            return Err(Denial::Duration);
        }
        if ask.max_uses.is_some_and(|n| n > self.max_uses) {
            return Err(Denial::Uses);
        }
        if self.hours_utc.is_some_and(|h| !h.contains(ask.at)) {
            return Err(Denial::Hours);
        }
        if let Some(cidrs) = &self.source_cidrs {
            let inside = ask
                .source
                .is_some_and(|ip| cidrs.iter().any(|net| net.contains(&canonical(ip))));
            if !inside {
                return Err(Denial::Network);
            }
        }
        // People elevate with a second factor; services (detokenizer) have none. The requester
        // is a person when the policy applies to them through the requester role.
        let as_person =
            self.roles.contains(&Role::Requester) && ask.roles.contains(&Role::Requester);
        Ok(Allowed {
            policy: self.name.clone(),
            approvals: self.approvals,
            max_uses: ask.max_uses.unwrap_or(self.max_uses),
            requester_mfa: self.mfa && as_person,
            approver_mfa: self.mfa,
        })
    }
}

/// The 1-based line and column of byte `at` in `text`.
fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The policy whose `[[policy]]` table holds byte `at`: its `name` when the table has one
/// on a line of its own, else its place in the file ("#2").
fn policy_around(text: &str, at: usize) -> Option<String> {
    let before = text.get(..at).unwrap_or(text);
    let start = before.rfind("[[policy]]")?;
    let index = before.matches("[[policy]]").count();
    let table = text.get(start + "[[policy]]".len()..).unwrap_or_default();
    let table = table.split("[[").next().unwrap_or_default();
    let name = table.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        let value = value.split('#').next()?.trim();
        (key.trim() == "name")
            .then(|| value.trim_matches(|c| c == '"' || c == '\'').to_owned())
            .filter(|name| !name.is_empty())
    });
    Some(name.unwrap_or_else(|| format!("#{index}")))
}

/// An IPv4-mapped IPv6 address compares as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn validate(raw: RawPolicy) -> Result<Policy, PolicyError> {
    let name = raw.name.trim().to_owned();
    let fail = |reason: &str| PolicyError {
        policy: Some(name.clone()),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(PolicyError {
            policy: None,
            reason: "a policy name must be 1-100 characters".into(),
        });
    }
    let mut roles = Vec::new();
    for r in &raw.roles {
        match r.parse::<Role>() {
            Ok(role @ (Role::Detokenizer | Role::Requester)) => roles.push(role),
            Ok(_) => {
                return Err(fail(
                    "roles may only be detokenizer or requester (the roles that ask for access)",
                ));
            }
            Err(_) => return Err(fail("unknown role")),
        }
    }
    if roles.is_empty() {
        return Err(fail("roles must name at least one role"));
    }
    let purposes = raw
        .purposes
        .iter()
        .map(|p| Purpose::parse(p))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| fail("a purpose must be 1-64 lowercase letters, digits or underscores"))?;
    if purposes.is_empty() {
        return Err(fail("purposes must name at least one purpose"));
    }
    if raw.approvals > MAX_APPROVALS {
        return Err(fail("approvals must be at most 10"));
    }
    if !(1..=MAX_DURATION_SECONDS).contains(&raw.max_duration_seconds) {
        return Err(fail(
            "max_duration_seconds must be between 1 and 604800 (7 days)",
        ));
    }
    // A grant always has a use limit; without one in the policy, it is one use.
    let max_uses = raw.max_uses.unwrap_or(1);
    if !(1..=MAX_USES).contains(&max_uses) {
        return Err(fail("max_uses must be between 1 and 1000000"));
    }
    let max_tokens = raw.max_tokens.unwrap_or(MAX_TOKENS);
    if !(1..=MAX_TOKENS).contains(&max_tokens) {
        return Err(fail("max_tokens must be between 1 and 100"));
    }
    let hours_utc = raw
        .hours_utc
        .as_deref()
        .map(str::parse::<HoursUtc>)
        .transpose()
        .map_err(|()| fail("hours_utc must look like 09:00-17:30 (UTC)"))?;
    let source_cidrs = raw
        .source_cidrs
        .map(|list| {
            list.iter()
                .map(|c| c.trim().parse::<IpNet>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(|_| fail("source_cidrs must be CIDR ranges such as 10.0.0.0/8"))?;
    if source_cidrs.as_ref().is_some_and(Vec::is_empty) {
        return Err(fail(
            "source_cidrs is empty, which would refuse every request; leave it out instead",
        ));
    }
    Ok(Policy {
        name,
        roles,
        purposes,
        approvals: raw.approvals,
        max_duration_seconds: raw.max_duration_seconds,
        max_uses,
        max_tokens,
        any_token: raw.any_token,
        mfa: raw.mfa.unwrap_or(true),
        hours_utc,
        source_cidrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = r#"
[[policy]]
name = "checkout"
roles = ["detokenizer"]
purposes = ["payment_authorization", "recurring_billing"]
approvals = 0
max_duration_seconds = 60
max_uses = 1000
any_token = true

[[policy]]
name = "support-chargeback"
roles = ["requester"]
purposes = ["chargeback", "dispute"]
approvals = 1
max_duration_seconds = 3600
max_uses = 5
max_tokens = 5
mfa = true
hours_utc = "00:00-24:00"
source_cidrs = ["127.0.0.0/8", "10.0.0.0/8"]
"#;

    fn at(hh_mm: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2030-01-01T{hh_mm}:00Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    fn ask<'a>(roles: &'a [Role], purpose: &'a Purpose) -> AccessAsk<'a> {
        AccessAsk {
            roles,
            purpose,
            tokens: 1,
            any_token: false,
            duration_seconds: 60,
            max_uses: None,
            at: at("12:00"),
            source: Some("127.0.0.1".parse().unwrap()),
        }
    }

    fn purpose(s: &str) -> Purpose {
        Purpose::parse(s).unwrap()
    }

    #[test]
    fn the_spec_example_parses_with_defaults() {
        let set = PolicySet::from_toml(SPEC_EXAMPLE).unwrap();
        let [checkout, support] = set.policies() else {
            panic!("two policies")
        };
        assert_eq!(checkout.max_tokens, MAX_TOKENS);
        assert!(checkout.mfa, "mfa is on unless set to false");
        assert!(checkout.any_token);
        assert_eq!(support.max_tokens, 5);
        assert_eq!(support.source_cidrs.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn a_payment_service_is_auto_approved_without_a_second_factor() {
        let set = PolicySet::from_toml(SPEC_EXAMPLE).unwrap();
        let p = purpose("payment_authorization");
        let mut a = ask(&[Role::Detokenizer], &p);
        a.any_token = true;
        a.tokens = 0;
        let allowed = set.evaluate(&a).unwrap();
        assert_eq!(allowed.policy, "checkout");
        assert_eq!(allowed.approvals, 0);
        assert_eq!(allowed.max_uses, 1000);
        assert!(!allowed.requester_mfa);
    }

    #[test]
    fn a_person_needs_mfa_and_an_approval() {
        let set = PolicySet::from_toml(SPEC_EXAMPLE).unwrap();
        let p = purpose("chargeback");
        let allowed = set.evaluate(&ask(&[Role::Requester], &p)).unwrap();
        assert_eq!(allowed.approvals, 1);
        assert_eq!(allowed.max_uses, 5);
        assert!(allowed.requester_mfa && allowed.approver_mfa);
    }

    #[test]
    fn each_limit_gives_its_own_reason() {
        let set = PolicySet::from_toml(SPEC_EXAMPLE).unwrap();
        let p = purpose("chargeback");
        let roles = [Role::Requester];
        let base = ask(&roles, &p);

        let other = purpose("marketing");
        assert_eq!(set.evaluate(&ask(&roles, &other)), Err(Denial::Purpose));
        let detok = [Role::Detokenizer];
        assert_eq!(set.evaluate(&ask(&detok, &p)), Err(Denial::Purpose));

        let mut a = base.clone();
        a.duration_seconds = 3601;
        assert_eq!(set.evaluate(&a), Err(Denial::Duration));
        let mut a = base.clone();
        a.max_uses = Some(6);
        assert_eq!(set.evaluate(&a), Err(Denial::Uses));
        let mut a = base.clone();
        a.tokens = 6;
        assert_eq!(set.evaluate(&a), Err(Denial::Tokens));
        let mut a = base.clone();
        a.any_token = true;
        a.tokens = 0;
        assert_eq!(set.evaluate(&a), Err(Denial::AnyToken));
        let mut a = base.clone();
        a.source = Some("192.168.1.1".parse().unwrap());
        assert_eq!(set.evaluate(&a), Err(Denial::Network));
        let mut a = base.clone();
        a.source = Some("::ffff:10.1.2.3".parse().unwrap());
        assert!(set.evaluate(&a).is_ok(), "IPv4-mapped addresses match");
        let mut a = base;
        a.source = None;
        assert_eq!(set.evaluate(&a), Err(Denial::Network));
    }

    #[test]
    fn the_first_policy_that_allows_the_whole_request_decides() {
        let text = r#"
[[policy]]
name = "quick"
roles = ["requester"]
purposes = ["dispute"]
approvals = 1
max_duration_seconds = 600
[[policy]]
name = "long"
roles = ["requester"]
purposes = ["dispute"]
approvals = 2
max_duration_seconds = 7200
"#;
        let set = PolicySet::from_toml(text).unwrap();
        let p = purpose("dispute");
        let roles = [Role::Requester];
        let mut a = ask(&roles, &p);
        assert_eq!(set.evaluate(&a).unwrap().policy, "quick");
        a.duration_seconds = 3600;
        let allowed = set.evaluate(&a).unwrap();
        assert_eq!((allowed.policy.as_str(), allowed.approvals), ("long", 2));
        assert_eq!(allowed.max_uses, 1, "one use unless the policy says more");
        a.duration_seconds = 7201;
        assert_eq!(set.evaluate(&a), Err(Denial::Duration));
    }

    #[test]
    fn hours_windows_include_the_start_and_wrap_past_midnight() {
        let day: HoursUtc = "09:00-17:30".parse().unwrap();
        assert!(day.contains(at("09:00")) && day.contains(at("17:29")));
        assert!(!day.contains(at("17:30")) && !day.contains(at("08:59")));
        let night: HoursUtc = "22:00-06:00".parse().unwrap();
        assert!(night.contains(at("23:59")) && night.contains(at("00:00")));
        assert!(!night.contains(at("06:00")) && !night.contains(at("12:00")));
        let all: HoursUtc = "00:00-24:00".parse().unwrap();
        assert!(all.contains(at("00:00")) && all.contains(at("23:59")));
        for bad in [
            "9:00-17:00",
            "09:00-09:00",
            "25:00-26:00",
            "09:60-10:00",
            "24:00-01:00",
            "x",
        ] {
            assert!(bad.parse::<HoursUtc>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_file_names_the_policy_and_the_reason() {
        let cases = [
            ("roles = [\"admin\"]", "roles may only be"),
            ("roles = []", "at least one role"),
            ("purposes = [\"Charge Back\"]", "purpose"),
            ("max_duration_seconds = 0", "max_duration_seconds"),
            ("approvals = 11", "approvals"),
            ("max_uses = 0", "max_uses"),
            ("max_tokens = 101", "max_tokens"),
            ("hours_utc = \"9-5\"", "hours_utc"),
            ("source_cidrs = [\"10.0.0.0/33\"]", "source_cidrs"),
            ("source_cidrs = []", "source_cidrs"),
        ];
        for (line, reason) in cases {
            let key = line.split(' ').next().unwrap();
            let mut text = String::from("[[policy]]\nname = \"p1\"\n");
            for default in [
                "roles = [\"requester\"]",
                "purposes = [\"dispute\"]",
                "approvals = 1",
                "max_duration_seconds = 60",
            ] {
                if !default.starts_with(&format!("{key} ")) {
                    text.push_str(default);
                    text.push('\n');
                }
            }
            text.push_str(line);
            let err = PolicySet::from_toml(&text).unwrap_err();
            assert_eq!(err.policy.as_deref(), Some("p1"), "{line}: {err}");
            assert!(err.to_string().contains(reason), "{line}: {err}");
        }
        let unknown = "[[policy]]\nname = \"p\"\nroles = [\"requester\"]\npurposes = [\"x\"]\napprovals = 0\nmax_duration_seconds = 1\nmfa_required = true\n";
        assert!(
            PolicySet::from_toml(unknown)
                .unwrap_err()
                .reason
                .contains("mfa_required")
        );
        let dup = format!(
            "{0}\n{0}",
            "[[policy]]\nname = \"p\"\nroles = [\"requester\"]\npurposes = [\"x\"]\napprovals = 0\nmax_duration_seconds = 1"
        );
        assert!(
            PolicySet::from_toml(&dup)
                .unwrap_err()
                .to_string()
                .contains("policy `p`")
        );
        assert!(PolicySet::from_toml("").unwrap().policies().is_empty());
    }

    #[test]
    fn a_toml_error_names_its_line_column_and_policy() {
        let text = "[[policy]]\nname = \"checkout\"\nroles = [\"detokenizer\"]\n\
                    purposes = [\"payment_authorization\"]\napprovals = 0\n\
                    max_duration_seconds = 300\n\n[[policy]]\nname = \"support\"\n\
                    roles = [\"requester\"]\nmax_uses = \"five\"\n";
        let e = PolicySet::from_toml(text).unwrap_err().to_string();
        assert!(
            e.starts_with("policy `support`: line 11, column 12:"),
            "{e}"
        );
        // A syntax error in a table without a name yet: its place in the file.
        let e = PolicySet::from_toml("[[policy]]\nroles = [\"requester\"\n").unwrap_err();
        assert_eq!(e.policy.as_deref(), Some("#1"), "{e}");
        assert!(e.reason.starts_with("line 2,"), "{e}");
        // Before any policy: no policy is named.
        let e = PolicySet::from_toml("oops = \n").unwrap_err();
        assert_eq!(e.policy, None, "{e}");
        assert!(e.reason.starts_with("line 1, column"), "{e}");
    }
}
