//! The use cases: tokenize, look up, delete; create and authenticate principals; keys.
//!
//! No HTTP types here. Services take domain types, talk to the store and crypto, and answer
//! with domain results and small typed errors that the API layer maps in one place.

pub mod keys;
pub mod principals;
pub mod tokens;

pub use keys::{KeyError, KeyService, KeySettings};
pub use principals::{AuthFailure, NewPrincipalRequest, PrincipalError};
pub use tokens::{TokenError, TokenService, TokenView, TokenizeItem};
