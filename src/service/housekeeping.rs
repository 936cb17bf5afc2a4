//! Housekeeping, now and then: pick up a data or signing key an operator rotated in (and stop
//! publishing a retired signing key no unexpired grant carries), forget shredded tenants' keys
//! and destroy tokens written as they were shredded, destroy the card data of
//! expired tokens, expire lapsed access requests (each recorded), forget lookup misses that no
//! longer count, and write the aggregated records of authentication floods that have ended.
//!
//! Every step is independent: one that fails is logged and the others still run; the next
//! pass tries again.

use std::sync::Arc;

use super::access::AccessService;
use super::authn::Authenticator;
use super::guard::Guard;
use super::keys::KeyService;
use super::tokens::TokenService;

/// The housekeeping of one instance.
pub struct Housekeeping {
    keys: Arc<KeyService>,
    tokens: Arc<TokenService>,
    access: Arc<AccessService>,
    guard: Arc<Guard>,
    authn: Arc<Authenticator>,
}

impl Housekeeping {
    /// Housekeeping over these services.
    pub fn new(
        keys: Arc<KeyService>,
        tokens: Arc<TokenService>,
        access: Arc<AccessService>,
        guard: Arc<Guard>,
        authn: Arc<Authenticator>,
    ) -> Housekeeping {
        Housekeeping {
            keys,
            tokens,
            access,
            guard,
            authn,
        }
    }

    /// One pass.
    pub async fn run_once(&self) {
        if let Err(e) = self.keys.rotate_if_aged().await {
            tracing::warn!(error = %e, "rotating an aged data key failed");
        }
        if let Err(e) = self.keys.refresh().await {
            tracing::warn!(error = %e, "reloading the keys failed");
        }
        match self.keys.sweep_shredded().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(destroyed = n, "destroyed late tokens of shredded tenants"),
            Err(e) => tracing::warn!(error = %e, "sweeping shredded tenants failed"),
        }
        self.authn.sweep_floods().await;
        if let Err(e) = self.guard.purge_misses().await {
            tracing::warn!(error = %e, "purging old lookup misses failed");
        }
        match self.tokens.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "destroyed expired tokens"),
            Err(e) => tracing::warn!(error = %e, "purging expired tokens failed"),
        }
        match self.access.expire_pending().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired pending access requests"),
            Err(e) => tracing::warn!(error = %e, "expiring access requests failed"),
        }
    }
}
