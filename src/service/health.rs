//! Readiness: whether this instance can reach its database.

use std::sync::Arc;

use crate::store::{Database, StoreError};

/// Readiness checks of one instance.
pub struct Health {
    store: Arc<dyn Database>,
}

impl Health {
    /// Checks over `store`.
    pub fn new(store: Arc<dyn Database>) -> Health {
        Health { store }
    }

    /// Whether the database answers.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }
}
