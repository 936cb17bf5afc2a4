//! Readiness: whether this instance can reach its database.

use std::sync::Arc;

use crate::store::{Store, StoreError};

/// Readiness checks of one instance.
pub struct Health {
    store: Arc<dyn Store>,
}

impl Health {
    /// Checks over `store`.
    pub fn new(store: Arc<dyn Store>) -> Health {
        Health { store }
    }

    /// Whether the database answers.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}
