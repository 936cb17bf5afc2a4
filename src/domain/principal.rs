//! Tenants, principals and their roles.
//!
//! No I/O. The separation-of-duties rule lives here so that the CLI, the service and the
//! database constraint all enforce the same thing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A merchant: the unit of isolation. A principal only ever sees its own tenant's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(pub Uuid);

/// A caller: a service or a person holding an API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PrincipalId(pub Uuid);

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for PrincipalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a principal may do (SPEC "Who uses it").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Tokenizes, looks up (masked) and deletes tokens.
    Tokenizer,
    /// Detokenizes under a grant, usually auto-approved.
    Detokenizer,
    /// Asks for timed grants, e.g. for a dispute.
    Requester,
    /// Approves or denies access requests, never their own.
    Approver,
    /// Reads and verifies the audit trail; sees no card data.
    Auditor,
    /// Manages tenants, principals, policies and keys; sees no card data.
    Admin,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 6] = [
        Role::Tokenizer,
        Role::Detokenizer,
        Role::Requester,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
    ];

    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Tokenizer => "tokenizer",
            Role::Detokenizer => "detokenizer",
            Role::Requester => "requester",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// Whether the role touches card data or the grants that reveal it.
    pub fn touches_card_data(self) -> bool {
        matches!(
            self,
            Role::Tokenizer | Role::Detokenizer | Role::Requester | Role::Approver
        )
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = RoleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or(RoleError::Unknown)
    }
}

/// Why a set of roles cannot be given to one principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoleError {
    /// Not one of the six role names.
    #[error(
        "unknown role (expected tokenizer, detokenizer, requester, approver, auditor or admin)"
    )]
    Unknown,
    /// No role at all.
    #[error("a principal needs at least one role")]
    Empty,
    /// `admin` together with a role that touches card data: an operator must not be able to
    /// grant itself access (separation of duties, PCI DSS 7.2).
    #[error("admin cannot be combined with tokenizer, detokenizer, requester or approver")]
    AdminWithCardDataRole,
}

/// Sorts, de-duplicates and checks a set of roles for one principal.
pub fn validate_roles(roles: &[Role]) -> Result<Vec<Role>, RoleError> {
    let mut set = roles.to_vec();
    set.sort();
    set.dedup();
    if set.is_empty() {
        return Err(RoleError::Empty);
    }
    if set.contains(&Role::Admin) && set.iter().any(|r| r.touches_card_data()) {
        return Err(RoleError::AdminWithCardDataRole);
    }
    Ok(set)
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Its id.
    pub id: PrincipalId,
    /// The tenant it belongs to; it sees nothing of any other.
    pub tenant: TenantId,
    /// Its display name, unique within the tenant.
    pub name: String,
    /// Its roles, validated by [`validate_roles`].
    pub roles: Vec<Role>,
    /// Until when its lookups, deletes and detokenize calls are refused for guessing tokens.
    pub lookups_throttled_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Principal {
    /// Whether the principal sees every access request and grant of its tenant, not only its
    /// own: approvers decide them, admins revoke them, auditors review them.
    pub fn sees_whole_tenant(&self) -> bool {
        self.has(Role::Approver) || self.has(Role::Admin) || self.has(Role::Auditor)
    }

    /// Whether the principal holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_cannot_hold_a_card_data_role() {
        for r in [
            Role::Tokenizer,
            Role::Detokenizer,
            Role::Requester,
            Role::Approver,
        ] {
            assert_eq!(
                validate_roles(&[Role::Admin, r]),
                Err(RoleError::AdminWithCardDataRole)
            );
        }
        assert_eq!(
            validate_roles(&[Role::Auditor, Role::Admin]),
            Ok(vec![Role::Auditor, Role::Admin])
        );
    }

    #[test]
    fn roles_are_deduplicated_and_required() {
        assert_eq!(validate_roles(&[]), Err(RoleError::Empty));
        assert_eq!(
            validate_roles(&[Role::Tokenizer, Role::Tokenizer]),
            Ok(vec![Role::Tokenizer])
        );
    }

    #[test]
    fn role_names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!("root".parse::<Role>(), Err(RoleError::Unknown));
    }
}
