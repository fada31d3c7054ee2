//! Roles: named permission templates.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainError, Permission};

/// A role: applications and users hold it by name; its permissions are
/// expanded whenever a token is minted, so a change applies to every token
/// minted afterwards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// What it grants.
    pub permissions: Vec<Permission>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Checks a role name: 1 to 64 of `[a-z0-9_.-]`.
pub fn validate_role_name(name: &str) -> Result<(), DomainError> {
    // "." and ".." are path segments every client rewrites
    // (`/roles/../edit` is `/edit`): such a role could never be addressed.
    let ok = (1..=64).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(DomainError::Validation(format!(
            "invalid role name {}: 1 to 64 of a-z, 0-9, '_', '-', '.'",
            super::error::shown(name)
        )))
    }
}
