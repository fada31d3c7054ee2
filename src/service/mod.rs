//! Use cases: token exchange, the application lifecycle, bootstrap, and
//! authenticating the gateway's own bearer tokens. Storage is reached only
//! through the store traits; the backend was chosen in `startup`.

pub mod apps;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod cache;
pub mod exchange;
pub mod forward;
pub mod grants;
pub mod inflight;
pub mod keyring;
pub mod leaks;
pub mod limiter;
pub mod metrics;
pub mod mirror;
pub mod people;
pub mod ratelimit;
pub mod revocation;
pub mod roles;
pub mod sso;
pub mod state;
pub mod token;
pub mod usage;
pub mod usage_chart;
pub mod users;

pub use state::{Gateway, Stores};

use crate::domain::DomainError;
use crate::store::{Entity, StoreError};

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { what, id } => {
                DomainError::Conflict(format!("{} already exists", named(what, &id)))
            }
            StoreError::NotFound { what, id } => DomainError::NotFound(named(what, &id)),
            StoreError::Stale { what, id } => DomainError::Conflict(format!(
                "{} was changed by another call while this one ran; read it again and retry",
                named(what, &id)
            )),
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

/// "application app_x": names the id only when it is well-formed for its
/// kind, so an error never carries arbitrary input back (docs/errors.md).
fn named(what: Entity, id: &str) -> String {
    let well_formed = match what {
        Entity::Application => crate::domain::application::validate_app_id(id).is_ok(),
        // Names reach the store validated (short, printable, not secret):
        // quoted, so the clash is plain to whoever chose it.
        Entity::ApplicationName => {
            // A name may still look like a credential pasted by mistake.
            return if crate::domain::application::validate_text("name", id, 100, true).is_ok()
                && !crate::domain::error::credential_shaped(id)
            {
                format!("{what} {id:?}")
            } else {
                "application with that name".into()
            };
        }
        Entity::Role => {
            crate::domain::role::validate_role_name(id).is_ok()
                && !crate::domain::error::credential_shaped(id)
        }
        Entity::User => {
            id.len() <= 40
                && id
                    .strip_prefix("usr_")
                    .is_some_and(|r| r.bytes().all(|b| b.is_ascii_alphanumeric()))
        }
        Entity::UserEmail => {
            crate::domain::user::normalize_email(id).is_ok_and(|e| e == id)
                && id.bytes().all(|b| b.is_ascii_graphic())
        }
        Entity::Session => {
            id.len() <= 40
                && id
                    .strip_prefix("ses_")
                    .is_some_and(|r| r.bytes().all(|b| b.is_ascii_alphanumeric()))
        }
        // An upstream subject is the provider's input: never echoed.
        Entity::UserIdentity => false,
    };
    if well_formed {
        format!("{what} {id}")
    } else {
        what.to_string()
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
