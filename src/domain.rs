//! Pure types and rules of the payments domain: card numbers, tokens, principals, access
//! policies and requests.
//!
//! No I/O, no clock, no randomness of its own (callers pass an RNG). Nothing here logs.

pub mod access;
pub mod audit;
pub mod brand;
pub mod card_data;
pub mod guard;
pub mod luhn;
pub mod metadata;
pub mod pan;
pub mod policy;
pub mod principal;
pub mod reports;
pub mod signing_key;
pub mod token;

pub use access::{Reason, RequestStatus, TextError};
pub use guard::{Allowance, BucketId, ImportWindow};
pub use metadata::{Metadata, MetadataError};
pub use pan::{MaskedPan, Pan, PanError};
pub use policy::{AccessAsk, Allowed, Denial, Policy, PolicyError, PolicySet, Purpose};
pub use principal::{Principal, PrincipalId, Role, RoleError, TenantId};
pub use signing_key::SigningKeyPhase;
pub use token::{FormatError, Token, TokenFormat};
