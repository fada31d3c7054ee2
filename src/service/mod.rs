//! Use cases: token exchange, the application lifecycle, bootstrap, and
//! authenticating the gateway's own bearer tokens. Storage is reached only
//! through the store traits; the backend was chosen in `startup`.

pub mod apps;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod cache;
pub mod grants;
pub mod inflight;
pub mod limiter;
pub mod metrics;
pub mod revocation;
pub mod roles;
pub mod state;
pub mod token;
pub mod usage;
pub mod users;

pub use state::{Gateway, Stores};

use crate::domain::DomainError;
use crate::store::StoreError;

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(id) => DomainError::Conflict(format!("{id} already exists")),
            StoreError::NotFound(id) => DomainError::NotFound(format!("application {id}")),
            StoreError::BadCursor => DomainError::InvalidRequest("invalid cursor".into()),
            StoreError::Unavailable(detail) => {
                tracing::error!(%detail, "store unavailable");
                DomainError::Unavailable
            }
            StoreError::Corrupt(detail) => {
                DomainError::Internal(format!("corrupt record: {detail}"))
            }
        }
    }
}

impl From<crate::crypto::hashing::HashError> for DomainError {
    fn from(e: crate::crypto::hashing::HashError) -> Self {
        match e {
            crate::crypto::hashing::HashError::Busy => DomainError::Unavailable,
            crate::crypto::hashing::HashError::Failed(d) => DomainError::Internal(d),
        }
    }
}
