//! The use cases: tokenize, look up, delete; access requests, grants and detokenize; create
//! and authenticate principals; second factors; keys.
//!
//! No HTTP types here. Services take domain types, talk to the store and crypto, and answer
//! with domain results and small typed errors that the API layer maps in one place.

pub mod access;
pub mod audit;
pub mod auth_flood;
pub mod authn;
pub mod context;
pub mod deadline;
pub mod detokenize;
pub mod grants;
pub mod guard;
pub mod health;
pub mod housekeeping;
pub mod keys;
pub mod lifecycle;
pub mod mfa;
pub mod principals;
pub mod reports;
pub mod review;
pub mod sessions;
pub mod tokens;
pub mod unseal;

pub use access::{
    AccessAskInput, AccessError, AccessRequestView, AccessService, AccessSettings, DecisionInput,
};
pub use audit::{Anchor, AuditError, AuditRead, AuditReader, AuditTrail, Refusal};
pub use authn::Authenticator;
pub use context::{Forbidden, RequestContext};
pub use detokenize::{DetokenizeService, Revealed};
pub use grants::{GrantError, GrantService};
pub use guard::{Alarms, Guard, GuardError, Throttled};
pub use health::Health;
pub use housekeeping::Housekeeping;
pub use keys::{KeyError, KeyService, KeySettings};
pub use lifecycle::Lifecycle;
pub use principals::{AuthFailure, FailedAuth, NewPrincipalRequest, PrincipalError};
pub use reports::{Period, UsageReporter};
pub use review::{RequestReview, ReviewService};
pub use sessions::{SessionError, SessionService, SessionView, StartedSession};
pub use tokens::{
    ItemNote, ItemRefusal, TokenError, TokenService, TokenView, TokenizeItem, TokenizeRecord,
};
