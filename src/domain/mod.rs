//! Pure types and rules: no actix, no store, no I/O.

pub mod access;
pub mod application;
pub mod change;
pub mod cidr;
pub mod claims;
pub mod error;
pub mod error_body;
pub mod markup;
pub mod permission;
pub mod ratelimit;
pub mod revocation;
pub mod role;
pub mod session;
pub mod user;

pub use access::{AccessGrant, AccessRule};
pub use application::{AppStatus, Application, Environment, KeyType};
pub use change::ChangeEvent;
pub use cidr::IpNet;
pub use claims::AccessClaims;
pub use error::DomainError;
pub use permission::{Catalogue, Permission, PermissionDef};
pub use ratelimit::RateLimit;
pub use revocation::{Revocation, RevocationKind, TokenRef};
pub use role::Role;
pub use user::{LinkedIdentity, User, UserStatus};
