//! The access-token claims (RFC 9068 profile plus Tessera's own).

use serde::{Deserialize, Serialize};

use super::AccessGrant;

/// What every access token from this gateway carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the gateway's configured issuer URL.
    pub iss: String,
    /// Subject: the application (or user) id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// The instant, in milliseconds, of the application state this token was
    /// minted from (never later than `iat`). Subject revocations compare
    /// against it: a revocation written after a change covers every token
    /// minted from state read before the change, however late it was
    /// minted, and a token minted in the same second after it survives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    /// Not before.
    pub nbf: i64,
    /// Unique token id, for revocation.
    pub jti: String,
    /// The application that asked for the token.
    pub client_id: String,
    /// Space-separated granted permissions.
    pub scope: String,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Granted permissions (may contain wildcards).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Grants limited to resources, roles expanded (`domain::access`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessGrant>,
    /// `live` or `test`.
    pub env: String,
    /// `secret` or `public`.
    pub key_type: String,
    /// The application's IP allow-list, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
    /// The person's session (`ses_…`), on tokens minted for a signed-in
    /// user (docs/api.md, "People"): ending the session revokes every token carrying it
    /// (`RevocationKind::Session`). Absent on application tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// How the person authenticated (RFC 8176 values: `pwd`, or `fed` when
    /// through an upstream provider). Absent on application tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The upstream identity provider's configured name, when the person
    /// signed in through one (docs/api.md, "Single sign-on").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    /// The party acting for the subject (RFC 8693 §4.1), on tokens from a
    /// delegating token exchange; a prior chain is nested inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Who may exchange this token to act for its subject (RFC 8693 §4.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<MayAct>,
}

/// The `act` claim: the current actor, and inside it the actor before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The actor's subject (application or user id).
    pub sub: String,
    /// The client the actor's token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The prior actor in the chain, when the subject token was itself
    /// delegated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// How many actors the chain holds, this one included.
    pub fn depth(&self) -> usize {
        1 + self.act.as_ref().map_or(0, |a| a.depth())
    }
}

/// The `may_act` claim: the party allowed to act for the token's subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MayAct {
    /// The subject the actor's token must carry.
    pub sub: String,
    /// When present, the client the actor's token must have been issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl MayAct {
    /// Whether an actor token with this `sub` and `client_id` is named.
    pub fn names(&self, sub: &str, client_id: &str) -> bool {
        self.sub == sub && self.client_id.as_deref().is_none_or(|c| c == client_id)
    }
}
