//! Applications: the holders of API keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

use super::{AccessRule, DomainError, IpNet, Permission};

/// `secret` keys live on servers; `public` keys may sit in a browser.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// Full permissions; shown as `sk` in the secret.
    #[default]
    Secret,
    /// Only catalogue permissions marked `public`; shown as `pk`.
    Public,
}

impl KeyType {
    /// The two letters used in the secret format.
    pub fn tag(self) -> &'static str {
        match self {
            KeyType::Secret => "sk",
            KeyType::Public => "pk",
        }
    }
    /// Inverse of [`KeyType::tag`].
    pub fn from_tag(s: &str) -> Option<Self> {
        match s {
            "sk" => Some(KeyType::Secret),
            "pk" => Some(KeyType::Public),
            _ => None,
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Secret => "secret",
            KeyType::Public => "public",
        })
    }
}

/// `live` or `test`, fixed at creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Production traffic.
    #[default]
    Live,
    /// Test traffic.
    Test,
}

impl Environment {
    /// The word used in the secret format and the `env` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Live => "live",
            Environment::Test => "test",
        }
    }
    /// Inverse of [`Environment::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(Environment::Live),
            "test" => Some(Environment::Test),
            _ => None,
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Derived at read time from `revokedAt` and `expiresAt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    /// Usable.
    Active,
    /// Revoked by an operator: refused as if unknown.
    Revoked,
    /// Past `expiresAt`: refused with `key_expired` after a correct secret.
    Expired,
}

/// The owner recorded for applications the gateway creates itself.
pub const GATEWAY_OWNER: &str = "gateway";

/// An application as operators see it (never holds the secret or its hash).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Stable id, also embedded in generated secrets.
    pub id: String,
    /// Human name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// A user id, or `gateway` for the bootstrap admin.
    pub owner: String,
    /// `secret` or `public`.
    #[serde(rename = "type")]
    pub key_type: KeyType,
    /// `live` or `test`.
    pub environment: Environment,
    /// The first characters of the secret, safe to display.
    pub prefix: String,
    /// Roles held; expanded when a token is minted.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Granted permissions (wildcards allowed), valid everywhere.
    pub permissions: Vec<Permission>,
    /// Grants limited to resources (see `domain::access`).
    #[serde(default)]
    pub access_rules: Vec<AccessRule>,
    /// Audiences this application may request besides the default one.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Client addresses allowed to exchange (empty: anywhere). Carried in
    /// tokens as `allowed_cidrs` so verifiers can enforce it too.
    #[serde(default)]
    #[cfg_attr(feature = "gateway", schema(value_type = Vec<String>, example = json!(["10.0.0.0/8"])))]
    pub allowed_ips: Vec<IpNet>,
    /// After this instant the key is refused with `key_expired`.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Own token lifetime in seconds, at most the gateway's.
    #[serde(default)]
    pub token_ttl: Option<u64>,
    /// Where people signing in through this application may be sent back
    /// (OAuth client registration; exact match, loopback on any port).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send people afterwards.
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Grants this client may use at `/oauth/token`. Empty (the default)
    /// means `client_credentials`, plus `authorization_code` and
    /// `refresh_token` when `redirectUris` is set.
    #[serde(default)]
    pub grant_types: Vec<String>,
    /// Its request budget at the edge (`/auth/forward`); none: the
    /// gateway's default budget, if one is configured (docs/api.md, "At the edge").
    #[serde(default)]
    pub rate_limit: Option<super::RateLimit>,
    /// When it was revoked, if it was.
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
    /// When a secret scanner's report (`POST /api/v1/leaks`) revoked it
    /// because its current secret was found in public. Set only together
    /// with `revokedAt`; such an application comes back only through a
    /// rotation, which issues a new secret and clears both (docs/api.md, "At the edge").
    #[serde(default)]
    pub leaked_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Last successful exchange.
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
    /// Client IP of the last successful exchange.
    #[serde(default)]
    pub last_used_ip: Option<String>,
    /// Successful exchanges so far.
    #[serde(default)]
    pub use_count: u64,
}

/// Grants an application may register.
pub const CLIENT_GRANT_TYPES: &[&str] = &[
    "client_credentials",
    "authorization_code",
    "refresh_token",
    "urn:ietf:params:oauth:grant-type:token-exchange",
    "urn:ietf:params:oauth:grant-type:device_code",
];

impl Application {
    /// Whether this client may use `grant` (see `grant_types`).
    pub fn allows_grant(&self, grant: &str) -> bool {
        if self.grant_types.is_empty() {
            grant == "client_credentials"
                || (!self.redirect_uris.is_empty()
                    && matches!(grant, "authorization_code" | "refresh_token"))
        } else {
            self.grant_types.iter().any(|g| g == grant)
        }
    }

    /// The status at `now`.
    pub fn status_at(&self, now: DateTime<Utc>) -> AppStatus {
        if self.revoked_at.is_some() {
            AppStatus::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            AppStatus::Expired
        } else {
            AppStatus::Active
        }
    }
}

/// Checks an application id: 3 to 64 of `[A-Za-z0-9_.-]`.
pub fn validate_app_id(id: &str) -> Result<(), DomainError> {
    let ok = (3..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(DomainError::Validation(
            "application id must be 3 to 64 characters of A-Z, a-z, 0-9, '_', '-', '.'".into(),
        ))
    }
}

/// Checks a name or description: bounded length, no control characters.
pub fn validate_text(
    field: &str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<(), DomainError> {
    if required && value.trim().is_empty() {
        return Err(DomainError::Validation(format!(
            "{field} must not be empty"
        )));
    }
    if value.chars().count() > max {
        return Err(DomainError::Validation(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if value.chars().any(|c| c.is_control() || invisible_format(c)) {
        return Err(DomainError::Validation(format!(
            "{field} must not contain control characters or invisible formatting (such as right-to-left overrides)"
        )));
    }
    Ok(())
}

/// Format characters that change how a text displays without showing
/// themselves: bidirectional overrides, isolates and marks, zero-width
/// characters. A name holding one can read differently from what it is
/// (on a confirmation page, say).
fn invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Checks an audience value: 1 to 256 printable ASCII characters, no spaces.
pub fn validate_audience(aud: &str) -> Result<(), DomainError> {
    if aud.is_empty() || aud.len() > 256 || !aud.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DomainError::Validation(format!(
            "invalid audience {}: 1 to 256 printable ASCII characters without spaces",
            super::error::shown(aud)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn names_refuse_invisible_formatting() {
        assert!(validate_text("name", "billing", 100, true).is_ok());
        assert!(validate_text("name", "café – Zürich", 100, true).is_ok());
        for bad in [
            "evil\u{202E}gnp.exe",
            "a\u{200B}b",
            "\u{FEFF}x",
            "x\u{2066}y",
            "tab\there",
        ] {
            assert!(validate_text("name", bad, 100, true).is_err(), "{bad:?}");
        }
    }

    fn app() -> Application {
        let now = Utc::now();
        Application {
            id: "app_1".into(),
            name: "n".into(),
            description: String::new(),
            owner: GATEWAY_OWNER.into(),
            key_type: KeyType::Secret,
            environment: Environment::Live,
            prefix: "tsr_sk_live_abc".into(),
            roles: vec![],
            permissions: vec![],
            access_rules: vec![],
            audiences: vec![],
            allowed_ips: vec![],
            expires_at: None,
            token_ttl: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: Vec::new(),
            rate_limit: None,
            revoked_at: None,
            leaked_at: None,
            created_at: now,
            updated_at: now,
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
        }
    }

    #[test]
    fn status_follows_revocation_then_expiry() {
        let now = Utc::now();
        let mut a = app();
        assert_eq!(a.status_at(now), AppStatus::Active);
        a.expires_at = Some(now - Duration::seconds(1));
        assert_eq!(a.status_at(now), AppStatus::Expired);
        a.revoked_at = Some(now);
        assert_eq!(a.status_at(now), AppStatus::Revoked);
    }

    #[test]
    fn ids_and_text() {
        assert!(validate_app_id("app_abc").is_ok());
        assert!(validate_app_id("ab").is_err());
        assert!(validate_app_id("a b c").is_err());
        assert!(validate_text("name", "", 10, true).is_err());
        assert!(validate_text("name", "x\u{0}", 10, true).is_err());
        assert!(validate_text("name", "ok", 10, true).is_ok());
    }

    #[test]
    fn serializes_type_and_camel_case() {
        let v = serde_json::to_value(app()).unwrap();
        assert_eq!(v["type"], "secret");
        assert_eq!(v["environment"], "live");
        assert!(v.get("createdAt").is_some());
    }
}
