//! People's sessions, authorization codes and refresh-token families: the
//! records behind sign-in (docs/api.md, "People"). Their secrets (the cookie's secret, the
//! code, the refresh token) are random and high-entropy: the store keeps
//! only their SHA-256, never the values.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A signed-in person on one device: a browser (cookie) or a client that
/// signed in with the password grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Public id (`ses_…`): the `sid` claim of its tokens.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The client it was created through (`tessera-console`, an
    /// application id, …).
    pub client_id: String,
    /// When the person authenticated (OIDC `auth_time`).
    pub auth_time: DateTime<Utc>,
    /// How: `pwd` or `fed` (OIDC `amr`).
    pub amr: Vec<String>,
    /// The upstream provider, when federated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    /// Last request seen with it (idle limit).
    pub last_seen_at: DateTime<Utc>,
    /// The browser cookie stops working after this (absolute limit).
    pub expires_at: DateTime<Utc>,
    /// The record may be forgotten after this: its expiry, or later while
    /// refresh tokens issued in it live (`offline_access`).
    pub retain_until: DateTime<Utc>,
    /// Client address at sign-in.
    pub ip: String,
    /// `User-Agent` at sign-in (at most 200 characters).
    #[serde(default)]
    pub user_agent: String,
}

/// A session as stored: the record plus the SHA-256 (hex) of the cookie's
/// secret part.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredSession {
    /// What the user sees.
    pub session: Session,
    /// SHA-256 of the secret half of the cookie, hex.
    pub secret_hash: String,
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("session", &self.session)
            .field("secret_hash", &"<hidden>")
            .finish()
    }
}

/// An authorization code waiting to be exchanged (single use, 60 s).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthCode {
    /// The client it was issued to.
    pub client_id: String,
    /// The redirect URI it was sent to (must be presented again).
    pub redirect_uri: String,
    /// The user.
    pub user_id: String,
    /// The session it was issued in.
    pub session_id: String,
    /// Granted scope (space-separated).
    pub scope: String,
    /// The client's `nonce`, for the ID token.
    #[serde(default)]
    pub nonce: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// When it stops being usable.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for AuthCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthCode")
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .field("session_id", &self.session_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What taking a code found.
#[derive(Clone, Debug, PartialEq)]
pub enum CodeUse {
    /// First use: here it is, and it is now spent.
    Fresh(AuthCode),
    /// Already spent (RFC 6749 §4.1.2: the tokens issued from it should be
    /// revoked): the code as it was.
    Replayed(AuthCode),
    /// Never issued, or forgotten after expiry.
    Unknown,
}

/// A chain of refresh tokens, each replacing the one before (rotation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefreshFamily {
    /// Id (`rtf_…`).
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The session it belongs to: ending the session ends the family.
    pub session_id: String,
    /// Granted scope (space-separated).
    pub scope: String,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Last rotation (idle limit).
    pub last_used_at: DateTime<Utc>,
    /// Unusable after this, however recently used (absolute limit).
    pub expires_at: DateTime<Utc>,
    /// Ended by a detected reuse.
    #[serde(default)]
    pub revoked: bool,
}

/// What presenting a refresh token did.
#[derive(Clone, Debug, PartialEq)]
pub enum RefreshUse {
    /// Valid: the next token is now stored; the family as it is now.
    Rotated(RefreshFamily),
    /// A token already replaced, presented after the grace window: the
    /// family is now revoked (the caller ends its session too).
    Reused(RefreshFamily),
    /// The family is revoked, or past its idle or absolute limit.
    Ended,
    /// Never issued, or forgotten.
    Unknown,
}
