//! Principals: creating them (with a key shown once) and authenticating callers by key.
//!
//! Authentication failures are reported with a reason for the audit and metrics, but every
//! reason looks the same to the caller. Nothing here logs a key.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::audit::{AuditError, AuditTrail};
use crate::clock::Clock;
use crate::crypto::api_key::{self, ApiKey};
use crate::crypto::totp::TotpSecret;
use crate::domain::audit::{Action, AuditEvent, Outcome};
use crate::domain::principal::validate_roles;
use crate::domain::{Principal, PrincipalId, Role, RoleError};
use crate::random::Csprng;
use crate::service::keys::{KeyError, KeyService};
use crate::store::{
    AuditedWrite, NewPrincipal, PrincipalRecord, PrincipalStore, StoreError, WriteOutcome,
};

/// What to create.
#[derive(Debug, Clone)]
pub struct NewPrincipalRequest {
    /// The tenant's name; created if new.
    pub tenant: String,
    /// The principal's name, unique within the tenant.
    pub name: String,
    /// Its roles.
    pub roles: Vec<Role>,
    /// When its key stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Whether to enrol a TOTP second factor (people: requesters and approvers).
    pub totp: bool,
}

/// A created principal and its credentials, to be shown once.
#[derive(Debug)]
pub struct CreatedPrincipal {
    /// The principal.
    pub record: PrincipalRecord,
    /// Its API key.
    pub key: ApiKey,
    /// Its TOTP secret, when enrolled.
    pub totp: Option<TotpSecret>,
}

/// Why a principal cannot be created.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    /// The roles break a rule.
    #[error(transparent)]
    Roles(#[from] RoleError),
    /// A tenant or principal name is empty, too long or has control characters.
    #[error("{0} must be 1-100 characters without control characters")]
    InvalidName(&'static str),
    /// The expiry is not in the future.
    #[error("the key's expiry must be in the future")]
    ExpiryInPast,
    /// A name taken in the tenant.
    #[error("a principal with that name already exists in the tenant")]
    Exists,
    /// The tenant was shredded: no principal is created in it again.
    #[error("the tenant was shredded: no principal is created in it again")]
    TenantShredded,
    /// Randomness failed.
    #[error("the system random number generator failed")]
    Random,
    /// A second factor was asked for without the keys to seal it.
    #[error("enrolling TOTP needs STRONGROOM_MASTER_KEY to encrypt the secret")]
    NoKeys,
    /// Sealing the TOTP secret failed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The change was made but its record could not be written: the key is not released.
    #[error("{0}: the change was made but is not audited")]
    Unaudited(#[from] AuditError),
}

impl PrincipalError {
    /// The stable code of a refusal (a request that breaks a rule), or `None` for a failure.
    pub fn refusal_code(&self) -> Option<&'static str> {
        match self {
            PrincipalError::Roles(_) => Some("invalid_roles"),
            PrincipalError::InvalidName(_) => Some("invalid_name"),
            PrincipalError::ExpiryInPast => Some("invalid_expiry"),
            PrincipalError::Exists => Some("principal_exists"),
            PrincipalError::TenantShredded => Some("tenant_shredded"),
            PrincipalError::NoKeys => Some("totp_needs_master_key"),
            PrincipalError::Random
            | PrincipalError::Keys(_)
            | PrincipalError::Store(_)
            | PrincipalError::Unaudited(_) => None,
        }
    }
}

impl From<StoreError> for PrincipalError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::PrincipalExists => PrincipalError::Exists,
            other => PrincipalError::Store(other),
        }
    }
}

/// Why a caller was not authenticated. All of these answer the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header.
    Missing,
    /// Not `Bearer <key>`, or not a plausible key.
    Malformed,
    /// No principal has this key.
    UnknownKey,
    /// The principal is disabled.
    Disabled,
    /// The key has expired.
    Expired,
    /// A console session cookie that is unknown, ended, idle too long or past its limit.
    SessionEnded,
    /// A console session's state change without its CSRF token.
    CsrfMismatch,
}

/// A failed authentication: why, and whose key it was when the vault knows the key (disabled
/// or expired), so the failure is recorded under that principal and its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAuth {
    /// Why.
    pub reason: AuthFailure,
    /// The principal whose key was presented, if the key is known.
    pub principal: Option<Principal>,
}

impl From<AuthFailure> for FailedAuth {
    fn from(reason: AuthFailure) -> Self {
        FailedAuth {
            reason,
            principal: None,
        }
    }
}

impl AuthFailure {
    /// A stable label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::Disabled => "disabled",
            AuthFailure::Expired => "expired",
            AuthFailure::SessionEnded => "session_ended",
            AuthFailure::CsrfMismatch => "csrf_mismatch",
        }
    }
}

fn check_name(what: &'static str, name: &str) -> Result<(), PrincipalError> {
    let len = name.chars().count();
    if (1..=100).contains(&len) && !name.chars().any(char::is_control) && name.trim() == name {
        Ok(())
    } else {
        Err(PrincipalError::InvalidName(what))
    }
}

/// Creates a principal (and its tenant if new); returns it with its API key and TOTP secret,
/// to be shown once. Enrolling TOTP needs `keys` to seal the secret. Not recorded: the
/// commands go through [`PrincipalAdmin`], which writes the principal with its record.
pub async fn create(
    store: &dyn PrincipalStore,
    rng: &dyn Csprng,
    clock: &dyn Clock,
    keys: Option<&KeyService>,
    request: NewPrincipalRequest,
) -> Result<CreatedPrincipal, PrincipalError> {
    let (new, key, totp) = prepare(rng, clock, keys, request)?;
    let record = store.create_principal(&new).await?;
    Ok(CreatedPrincipal { record, key, totp })
}

/// The principal to insert, checked, with its API key and TOTP secret.
fn prepare(
    rng: &dyn Csprng,
    clock: &dyn Clock,
    keys: Option<&KeyService>,
    request: NewPrincipalRequest,
) -> Result<(NewPrincipal, ApiKey, Option<TotpSecret>), PrincipalError> {
    check_name("the tenant name", &request.tenant)?;
    check_name("the principal name", &request.name)?;
    let roles = validate_roles(&request.roles)?;
    let now = clock.now();
    if request.expires_at.is_some_and(|at| at <= now) {
        return Err(PrincipalError::ExpiryInPast);
    }
    let key = ApiKey::generate(rng).map_err(|_| PrincipalError::Random)?;
    let id = PrincipalId(Uuid::new_v4());
    let (totp, sealed_totp) = if request.totp {
        let keys = keys.ok_or(PrincipalError::NoKeys)?;
        let secret = TotpSecret::generate(rng).map_err(|_| PrincipalError::Random)?;
        let sealed = keys.seal_totp(id, &secret)?;
        (Some(secret), Some(sealed))
    } else {
        (None, None)
    };
    let new = NewPrincipal {
        id,
        tenant_name: request.tenant,
        name: request.name,
        roles,
        key_hash: key.hash(),
        expires_at: request.expires_at,
        created_at: now,
        sealed_totp,
    };
    Ok((new, key, totp))
}

/// Administering principals, for the `principal` commands and `dev`: every change is recorded
/// in the command's own chain before it is reported, and a created key is handed back only
/// once the record of its creation is durable.
pub struct PrincipalAdmin {
    keys: Option<Arc<KeyService>>,
    trail: AuditTrail,
    rng: Arc<dyn Csprng>,
    clock: Arc<dyn Clock>,
}

impl PrincipalAdmin {
    /// Administration written through `trail` (whose store holds the principals) with each
    /// change's record; enrolling TOTP needs `keys`.
    pub fn new(
        keys: Option<Arc<KeyService>>,
        trail: AuditTrail,
        rng: Arc<dyn Csprng>,
        clock: Arc<dyn Clock>,
    ) -> PrincipalAdmin {
        PrincipalAdmin {
            keys,
            trail,
            rng,
            clock,
        }
    }

    /// Creates a principal (`principal.create`, with its roles; never its key).
    pub async fn create(
        &self,
        request: NewPrincipalRequest,
    ) -> Result<CreatedPrincipal, PrincipalError> {
        let totp = request.totp;
        let asked: Vec<&str> = request.roles.iter().map(|r| r.as_str()).collect();
        let asked = format!(
            "roles={}{}",
            asked.join(","),
            if totp { " totp" } else { "" }
        );
        let prepared = prepare(
            self.rng.as_ref(),
            self.clock.as_ref(),
            self.keys.as_deref(),
            request,
        );
        let (new, key, totp_secret) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                // A refused creation is evidence too (an admin combined with a card-data role,
                // say): recorded with what was asked, never the names given.
                if let Some(code) = e.refusal_code() {
                    let mut event = AuditEvent::new(Action::PrincipalCreate, self.clock.now());
                    event.outcome = Outcome::Denied;
                    event.code = Some(code.to_owned());
                    event.detail = Some(asked);
                    if self.trail.record_change(event).await.is_err() {
                        tracing::warn!("a refused principal creation could not be recorded");
                    }
                }
                return Err(e);
            }
        };
        // The principal and its record commit together: no account exists unrecorded.
        let mut event = AuditEvent::new(Action::PrincipalCreate, self.clock.now());
        event.subject = Some(new.id.to_string());
        let finish = move |outcome: &WriteOutcome| {
            let mut event = event;
            match outcome {
                WriteOutcome::PrincipalCreated(Some(record)) => {
                    let p = &record.principal;
                    let roles: Vec<&str> = p.roles.iter().map(|r| r.as_str()).collect();
                    event.outcome = Outcome::Success;
                    event.tenant = Some(p.tenant);
                    event.detail = Some(format!(
                        "roles={}{}",
                        roles.join(","),
                        if totp { " totp" } else { "" }
                    ));
                }
                WriteOutcome::TenantWasShredded => {
                    event.outcome = Outcome::Denied;
                    event.code = PrincipalError::TenantShredded
                        .refusal_code()
                        .map(str::to_owned);
                    event.detail = Some(asked);
                }
                _ => {
                    event.outcome = Outcome::Denied;
                    event.code = PrincipalError::Exists.refusal_code().map(str::to_owned);
                    event.detail = Some(asked);
                }
            }
            event
        };
        let written = self
            .trail
            .write(AuditedWrite::CreatePrincipal(Box::new(new)), finish)
            .await?;
        self.trail.checkpoint().await;
        match written {
            WriteOutcome::PrincipalCreated(Some(record)) => Ok(CreatedPrincipal {
                record: *record,
                key,
                totp: totp_secret,
            }),
            WriteOutcome::TenantWasShredded => Err(PrincipalError::TenantShredded),
            _ => Err(PrincipalError::Exists),
        }
    }

    /// Lifts the lock of a principal's second factor and clears its count of wrong codes
    /// (`principal.totp_unlock`); answers whether it has a second factor. Asking for one that
    /// has none is recorded as refused.
    pub async fn unlock_totp(&self, id: PrincipalId) -> Result<bool, PrincipalError> {
        let mut event = AuditEvent::new(Action::PrincipalTotpUnlock, self.clock.now());
        event.subject = Some(id.to_string());
        let outcome = self
            .trail
            .write_change(AuditedWrite::UnlockTotp(id), event, |outcome, _| {
                matches!(outcome, WriteOutcome::Unlocked(true))
            })
            .await?;
        Ok(matches!(outcome, WriteOutcome::Unlocked(true)))
    }

    /// Disables a principal's key at once (`principal.disable`); answers whether it was
    /// enabled. Asking for one that is not is recorded as refused.
    pub async fn disable(&self, id: PrincipalId) -> Result<bool, PrincipalError> {
        let now = self.clock.now();
        let mut event = AuditEvent::new(Action::PrincipalDisable, now);
        event.subject = Some(id.to_string());
        let outcome = self
            .trail
            .write_change(
                AuditedWrite::DisablePrincipal { id, now },
                event,
                |outcome, _| matches!(outcome, WriteOutcome::Disabled(true)),
            )
            .await?;
        Ok(matches!(outcome, WriteOutcome::Disabled(true)))
    }
}

/// Resolves an `Authorization` header value to a principal.
pub async fn authenticate(
    store: &Arc<dyn PrincipalStore>,
    clock: &dyn Clock,
    authorization: Option<&str>,
) -> Result<Result<Principal, FailedAuth>, StoreError> {
    let Some(header) = authorization else {
        return Ok(Err(AuthFailure::Missing.into()));
    };
    // RFC 6750 §2.1; the scheme is case-insensitive (RFC 9110 §11.1).
    let key = match header.split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") => key.trim(),
        _ => return Ok(Err(AuthFailure::Malformed.into())),
    };
    authenticate_key(store, clock, key).await
}

/// Resolves a presented API key to a principal.
pub async fn authenticate_key(
    store: &Arc<dyn PrincipalStore>,
    clock: &dyn Clock,
    key: &str,
) -> Result<Result<Principal, FailedAuth>, StoreError> {
    if key.is_empty() || key.len() > api_key::MAX_LEN {
        return Ok(Err(AuthFailure::Malformed.into()));
    }
    let Some(record) = store.principal_by_key_hash(&api_key::hash(key)).await? else {
        return Ok(Err(AuthFailure::UnknownKey.into()));
    };
    Ok(usable(record, clock.now()))
}

/// The principal of `record`, unless it is disabled or expired at `now`.
pub fn usable(record: PrincipalRecord, now: DateTime<Utc>) -> Result<Principal, FailedAuth> {
    let reason = if record.disabled_at.is_some_and(|at| at <= now) {
        Some(AuthFailure::Disabled)
    } else if record.expires_at.is_some_and(|at| at <= now) {
        Some(AuthFailure::Expired)
    } else {
        None
    };
    match reason {
        Some(reason) => Err(FailedAuth {
            reason,
            principal: Some(record.principal),
        }),
        None => Ok(record.principal),
    }
}
