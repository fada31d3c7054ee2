//! Users, in the minimal form applications need for their owner bound.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainError, Permission};

/// A person. Password and single sign-on login come later: their secrets
/// will live beside this record in the store, never in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Stable id (`usr_…`).
    pub id: String,
    /// Unique, compared case-insensitively (stored lower-case).
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Roles held.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions held directly.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Normalises and checks an email address (a pragmatic check: one `@`,
/// non-empty parts, a dot in the domain, no spaces, at most 254 bytes).
pub fn normalize_email(email: &str) -> Result<String, DomainError> {
    let e = email.trim().to_lowercase();
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            }
            None => false,
        };
    if ok {
        Ok(e)
    } else {
        Err(DomainError::Validation(format!(
            "invalid email address {}",
            super::error::shown(email)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in ["", "ada", "@x.y", "ada@x", "a b@x.y", "ada@x.y.", "a@b@c.d"] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }
}
