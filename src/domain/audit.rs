//! The audit trail's records and their hash chain (SPEC "Audit trail", PCI DSS 10.2–10.3).
//!
//! Each writer keeps its own chain: record `seq` of chain `c` carries the SHA-256 of the
//! previous record's hash and this record's canonical encoding. Changing, deleting or
//! reordering a record breaks the links after it; checkpoints of chain heads kept outside the
//! database catch a cut-off tail. No I/O, no clock. Records never hold a PAN, a key, a TOTP
//! code or a grant JWT: only ids, tokens, codes and the caller's own free text, which the API
//! has already refused when it read as a card number.

use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use uuid::Uuid;

use super::{PrincipalId, TenantId};

mod chain;

pub use chain::{
    ChainBreak, ChainHead, ChainVerifier, ChainedEvent, Checkpoint, GENESIS, HASH_LEN, LinkHash,
    StoredRecord, Verified, link_hash,
};

/// Filters of an auditor's query; every one optional but the tenant.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    /// The auditor's tenant.
    pub tenant: TenantId,
    /// Read the events of no tenant (service lifecycle, policy loads, failed authentication
    /// with an unknown key, the keys' creation) instead of the tenant's.
    pub system: bool,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// By this principal.
    pub actor: Option<PrincipalId>,
    /// Of this action.
    pub action: Option<Action>,
    /// Involving this token.
    pub token: Option<String>,
    /// With this outcome.
    pub outcome: Option<Outcome>,
    /// Records older than this id (the cursor).
    pub before_id: Option<i64>,
    /// Most records.
    pub limit: u32,
}

/// What happened. The names are stable: auditors filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `POST /v1/tokens`.
    Tokenize,
    /// `POST /v1/tokens/batch`: one record for the whole batch.
    TokenizeBatch,
    /// `GET /v1/tokens/{token}`.
    Lookup,
    /// `DELETE /v1/tokens/{token}`.
    Delete,
    /// `POST /v1/detokenize`; a successful one is also the grant's use (`grant_jti`).
    Detokenize,
    /// `POST /v1/access-requests`.
    AccessRequestCreate,
    /// `POST /v1/access-requests/{id}/approve`.
    AccessRequestApprove,
    /// `POST /v1/access-requests/{id}/deny`.
    AccessRequestDeny,
    /// A pending request lapsed.
    AccessRequestExpire,
    /// `POST /v1/grants/{jti}/revoke`.
    GrantRevoke,
    /// `POST /v1/grants/revoke-all`.
    GrantRevokeAll,
    /// A principal was created.
    PrincipalCreate,
    /// A principal was disabled.
    PrincipalDisable,
    /// An admin lifted the lock of a principal's second factor.
    PrincipalTotpUnlock,
    /// A key was created (data-encryption key, grant-signing key).
    KeyCreate,
    /// An operator rotated a key: a new one is active, the old one retired.
    KeyRotate,
    /// Rows were sealed again under the active data key (`detail` counts them).
    KeyReencrypt,
    /// A retired data key under which no row was sealed was destroyed.
    KeyDestroy,
    /// Every wrapped key and secret was wrapped again under a new master key.
    KeyRewrap,
    /// The master key was split into custodians' shares (counts and split id; never a share).
    KeySplit,
    /// A tenant's keys were destroyed, its tokens with them.
    TenantShred,
    /// A caller failed to authenticate.
    AuthFailure,
    /// An admin sealed an instance: its master key was wiped from memory.
    Seal,
    /// A custodian's share was accepted while sealed (the slot, never the share).
    UnsealProgress,
    /// A share was refused while sealed (mistyped, another split, or a set that does not
    /// rebuild the key: progress reset).
    UnsealFailed,
    /// The shares rebuilt the master key: the instance unsealed.
    Unseal,
    /// A person signed in to the console (or was refused: a role that may not, a wrong code).
    SessionStart,
    /// A person signed out of the console.
    SessionEnd,
    /// `GET /v1/audit`.
    AuditRead,
    /// A card bucket was locked: its tokenize calls look like enumeration.
    EnumerationSuspected,
    /// A principal's lookups keep missing: its token lookups are throttled.
    LookupSuspicious,
    /// An admin released a locked bucket.
    BucketRelease,
    /// An admin opened an import window.
    ImportWindowOpen,
    /// An admin closed an import window early.
    ImportWindowClose,
    /// An expired token's card data was destroyed by the vault's housekeeping.
    TokenPurge,
    /// An instance started serving (version, instance).
    ServiceStart,
    /// An instance stopped serving.
    ServiceStop,
    /// An instance loaded its access policies (the file's SHA-256, the policies' names).
    PolicyLoad,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 38] = [
        Action::Tokenize,
        Action::TokenizeBatch,
        Action::Lookup,
        Action::Delete,
        Action::Detokenize,
        Action::AccessRequestCreate,
        Action::AccessRequestApprove,
        Action::AccessRequestDeny,
        Action::AccessRequestExpire,
        Action::GrantRevoke,
        Action::GrantRevokeAll,
        Action::PrincipalCreate,
        Action::PrincipalDisable,
        Action::PrincipalTotpUnlock,
        Action::KeyCreate,
        Action::KeyRotate,
        Action::KeyReencrypt,
        Action::KeyDestroy,
        Action::KeyRewrap,
        Action::KeySplit,
        Action::TenantShred,
        Action::AuthFailure,
        Action::Seal,
        Action::UnsealProgress,
        Action::UnsealFailed,
        Action::Unseal,
        Action::SessionStart,
        Action::SessionEnd,
        Action::AuditRead,
        Action::EnumerationSuspected,
        Action::LookupSuspicious,
        Action::BucketRelease,
        Action::ImportWindowOpen,
        Action::ImportWindowClose,
        Action::TokenPurge,
        Action::ServiceStart,
        Action::ServiceStop,
        Action::PolicyLoad,
    ];

    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Tokenize => "token.tokenize",
            Action::TokenizeBatch => "token.tokenize_batch",
            Action::Lookup => "token.lookup",
            Action::Delete => "token.delete",
            Action::Detokenize => "detokenize",
            Action::AccessRequestCreate => "access_request.create",
            Action::AccessRequestApprove => "access_request.approve",
            Action::AccessRequestDeny => "access_request.deny",
            Action::AccessRequestExpire => "access_request.expire",
            Action::GrantRevoke => "grant.revoke",
            Action::GrantRevokeAll => "grant.revoke_all",
            Action::PrincipalCreate => "principal.create",
            Action::PrincipalDisable => "principal.disable",
            Action::PrincipalTotpUnlock => "principal.totp_unlock",
            Action::KeyCreate => "key.create",
            Action::KeyRotate => "key.rotate",
            Action::KeyReencrypt => "key.reencrypt",
            Action::KeyDestroy => "key.destroy",
            Action::KeyRewrap => "key.rewrap",
            Action::KeySplit => "key.split",
            Action::TenantShred => "tenant.shred",
            Action::AuthFailure => "auth.failure",
            Action::Seal => "seal",
            Action::UnsealProgress => "unseal.progress",
            Action::UnsealFailed => "unseal.failed",
            Action::Unseal => "unseal",
            Action::SessionStart => "session.start",
            Action::SessionEnd => "session.end",
            Action::AuditRead => "audit.read",
            Action::EnumerationSuspected => "tokenize.enumeration_suspected",
            Action::LookupSuspicious => "token.lookup_suspicious",
            Action::BucketRelease => "guard.release",
            Action::ImportWindowOpen => "guard.import_open",
            Action::ImportWindowClose => "guard.import_close",
            Action::TokenPurge => "token.purge",
            Action::ServiceStart => "service.start",
            Action::ServiceStop => "service.stop",
            Action::PolicyLoad => "policy.load",
        }
    }
}

impl FromStr for Action {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL.into_iter().find(|a| a.as_str() == s).ok_or(())
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused: the caller, their grant, the policy or the input said no.
    Denied,
    /// Failed inside the vault.
    Error,
}

impl Outcome {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }
}

impl FromStr for Outcome {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Outcome::Success, Outcome::Denied, Outcome::Error]
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or(())
    }
}

/// One audited event, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When, to the microsecond (what PostgreSQL keeps, so the hash survives a round trip).
    pub at: DateTime<Utc>,
    /// The tenant, when known.
    pub tenant: Option<TenantId>,
    /// Who: the principal, when known (none for the vault's own sweeps and unknown keys).
    pub actor: Option<PrincipalId>,
    /// What.
    pub action: Action,
    /// How it ended.
    pub outcome: Outcome,
    /// The refusal or error code (the API's stable `code`).
    pub code: Option<String>,
    /// The purpose of an access request or grant.
    pub purpose: Option<String>,
    /// The caller's stated reason (an access request's reason, an approver's comment).
    pub reason: Option<String>,
    /// Machine detail: which policy limit refused, why authentication failed, which key.
    pub detail: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// The source address.
    pub source: Option<String>,
    /// Tokens involved.
    pub tokens: Vec<String>,
    /// The grant involved.
    pub grant_jti: Option<Uuid>,
    /// The object acted on: an access request, a principal, a key.
    pub subject: Option<String>,
}

impl AuditEvent {
    /// An event of `action` at `at` (truncated to microseconds), successful until told
    /// otherwise, with every other field empty.
    pub fn new(action: Action, at: DateTime<Utc>) -> AuditEvent {
        AuditEvent {
            at: at.trunc_subsecs(6),
            tenant: None,
            actor: None,
            action,
            outcome: Outcome::Success,
            code: None,
            purpose: None,
            reason: None,
            detail: None,
            request_id: None,
            source: None,
            tokens: Vec::new(),
            grant_jti: None,
            subject: None,
        }
    }

    /// The canonical encoding of this event as record `seq` of `chain`: a fixed field order,
    /// every string length-prefixed and every optional field tagged, so two different records
    /// never encode alike.
    pub fn canonical(&self, chain: Uuid, seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"strongroom-audit-v1");
        out.extend_from_slice(chain.as_bytes());
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&self.at.timestamp_micros().to_be_bytes());
        put_opt(&mut out, self.tenant.map(|t| *t.0.as_bytes()).as_ref());
        put_opt(&mut out, self.actor.map(|a| *a.0.as_bytes()).as_ref());
        put_str(&mut out, self.action.as_str());
        put_str(&mut out, self.outcome.as_str());
        for field in [
            &self.code,
            &self.purpose,
            &self.reason,
            &self.detail,
            &self.request_id,
            &self.source,
        ] {
            put_opt(&mut out, field.as_ref());
        }
        put_len(&mut out, self.tokens.len());
        for token in &self.tokens {
            put_str(&mut out, token);
        }
        put_opt(&mut out, self.grant_jti.map(|j| *j.as_bytes()).as_ref());
        put_opt(&mut out, self.subject.as_ref());
        out
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Fields are far below 4 GiB; saturating keeps this total without a panic path.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: impl AsRef<[u8]>) {
    let bytes = s.as_ref();
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_opt<T: AsRef<[u8]>>(out: &mut Vec<u8>, value: Option<&T>) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put_str(out, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event() -> AuditEvent {
        let at = Utc.timestamp_opt(1_800_000_000, 123_456_789).unwrap();
        let mut e = AuditEvent::new(Action::Detokenize, at);
        e.tokens = vec!["4111110000001111".into()];
        e
    }

    #[test]
    fn times_keep_microseconds_only() {
        assert_eq!(event().at.timestamp_subsec_nanos(), 123_456_000);
    }

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert!("token.nope".parse::<Action>().is_err());
    }

    #[test]
    fn empty_and_absent_fields_encode_differently() {
        let mut a = event();
        let mut b = event();
        a.reason = None;
        b.reason = Some(String::new());
        assert_ne!(a.canonical(Uuid::nil(), 1), b.canonical(Uuid::nil(), 1));
        // Moving text from one field into the next must not encode alike.
        a.reason = Some("ab".into());
        a.detail = Some("c".into());
        b.reason = Some("a".into());
        b.detail = Some("bc".into());
        assert_ne!(a.canonical(Uuid::nil(), 1), b.canonical(Uuid::nil(), 1));
    }
}
