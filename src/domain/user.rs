//! People: users, their status, linked identities, and password rules.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainError, Permission};

/// A person. Their password hash lives beside this record in the store
/// (`StoredUser`), never in it.
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
    /// `active`, or `disabled`: a disabled user cannot sign in, and their
    /// sessions and tokens ended when they were disabled.
    #[serde(default)]
    pub status: UserStatus,
    /// Identities at upstream providers linked to this user.
    #[serde(default)]
    pub identities: Vec<LinkedIdentity>,
    /// Whether a password is set (the hash itself never leaves the store).
    #[serde(default)]
    pub has_password: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Last successful sign-in.
    #[serde(default)]
    pub last_login_at: Option<DateTime<Utc>>,
}

/// Whether a user may sign in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// May sign in.
    #[default]
    Active,
    /// May not; every session and token was ended.
    Disabled,
}

/// An identity at an upstream provider, linked to a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LinkedIdentity {
    /// The provider's configured name.
    pub idp: String,
    /// The provider's `sub`.
    pub subject: String,
    /// The email the provider gave, when it did.
    #[serde(default)]
    pub email: Option<String>,
    /// Roles this provider's role map granted the user (and will take back
    /// when the group is gone). Roles an administrator granted are never
    /// listed here, so the role map never removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// Shortest password accepted (NIST SP 800-63B asks at least 8; we ask 12).
pub const PASSWORD_MIN_CHARS: usize = 12;
/// Longest password accepted: bounds the hashing input.
pub const PASSWORD_MAX_CHARS: usize = 128;

/// Checks a new password: 12 to 128 characters, no composition rules,
/// never the email address itself.
pub fn validate_password(password: &str, email: &str) -> Result<(), DomainError> {
    let n = password.chars().count();
    if !(PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&n) {
        return Err(DomainError::Validation(format!(
            "password must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"
        )));
    }
    // Emails are kept lowercased in full Unicode: compare the same way.
    if password.trim().to_lowercase() == email.trim().to_lowercase() {
        return Err(DomainError::Validation(
            "password must not be the email address".into(),
        ));
    }
    Ok(())
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

    #[test]
    fn passwords() {
        assert!(validate_password("correct horse", "ada@example.com").is_ok());
        assert!(validate_password("short", "ada@example.com").is_err());
        assert!(validate_password(&"x".repeat(129), "a@b.c").is_err());
        assert!(validate_password(&"é".repeat(12), "a@b.c").is_ok());
        assert!(validate_password("Ada@Example.com", "ada@example.com").is_err());
        assert!(validate_password("ÉLODIE@EXAMPLE.COM", "élodie@example.com").is_err());
    }
}
