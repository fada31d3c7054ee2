//! Revocation: writing entries, checking tokens against them, introspection.
//!
//! Entries live as long as the tokens they cover can: a `jti` entry until
//! that token's `exp`, a subject entry for the longest token lifetime plus the
//! leeway verifiers allow.

use chrono::Utc;
use serde_json::{Value, json};

use super::Gateway;
use crate::crypto::jwt;
use crate::domain::{AccessClaims, DomainError, Revocation, RevocationKind};

/// Seconds a subject entry must outlive its instant: every token issued
/// before it has expired by then, even with a verifier's leeway.
fn subject_lifetime(gw: &Gateway) -> i64 {
    i64::try_from(gw.settings.token_ttl + gw.settings.leeway).unwrap_or(i64::MAX / 4)
}

/// Revokes every token of `sub` issued until now.
pub async fn revoke_subject(gw: &Gateway, sub: &str) -> Result<Revocation, DomainError> {
    let now = Utc::now();
    let rev = gw
        .revocations
        .revoke(
            RevocationKind::Subject {
                sub: sub.to_owned(),
                not_before_ms: now.timestamp_millis(),
            },
            now.timestamp() + subject_lifetime(gw),
        )
        .await?;
    tracing::info!(sub, seq = rev.seq, "subject revoked");
    Ok(rev)
}

/// The moment a token was issued, in milliseconds.
pub fn issued_ms(claims: &AccessClaims) -> i64 {
    claims.iat_ms.unwrap_or(claims.iat.saturating_mul(1000))
}

/// Whether a token from this gateway has been revoked.
pub async fn is_revoked(gw: &Gateway, claims: &AccessClaims) -> Result<bool, DomainError> {
    Ok(gw
        .revocations
        .is_revoked(&claims.jti, &claims.sub, issued_ms(claims))
        .await?)
}

/// Reads a token of this gateway whatever its audience, without checking
/// revocation. `None` for anything that is not a live token of ours.
pub fn read_own_token(gw: &Gateway, token: &str) -> Option<AccessClaims> {
    if token.len() > 8 * 1024 {
        return None;
    }
    jwt::verify_any_audience(&gw.keys, token, &gw.issuer, gw.settings.leeway).ok()
}

/// Revokes one token (RFC 7009). `allowed` decides whether the caller may
/// revoke a token with these claims. Tokens that are not ours, malformed or
/// expired need nothing and succeed silently, as the RFC asks.
pub async fn revoke_token(
    gw: &Gateway,
    token: &str,
    allowed: impl FnOnce(&AccessClaims) -> bool,
) -> Result<Option<Revocation>, DomainError> {
    let Some(claims) = read_own_token(gw, token) else {
        return Ok(None);
    };
    if !allowed(&claims) {
        return Err(DomainError::InsufficientPermissions(
            "this token was issued to another client".into(),
        ));
    }
    let cap = Utc::now().timestamp() + subject_lifetime(gw);
    let rev = gw
        .revocations
        .revoke(
            RevocationKind::Jti {
                jti: claims.jti.clone(),
            },
            claims.exp.min(cap),
        )
        .await?;
    tracing::info!(jti = %claims.jti, sub = %claims.sub, seq = rev.seq, "token revoked");
    Ok(Some(rev))
}

/// RFC 7662 introspection: the claims of a live token, else `active: false`
/// (revoked, expired, foreign, malformed, or issued to a deleted or revoked
/// application).
pub async fn introspect(gw: &Gateway, token: &str) -> Result<Value, DomainError> {
    let inactive = json!({"active": false});
    let Some(claims) = read_own_token(gw, token) else {
        return Ok(inactive);
    };
    if is_revoked(gw, &claims).await? {
        return Ok(inactive);
    }
    Ok(json!({
        "active": true,
        "scope": claims.scope,
        "client_id": claims.client_id,
        "sub": claims.sub,
        "aud": claims.aud,
        "iss": claims.iss,
        "exp": claims.exp,
        "iat": claims.iat,
        "nbf": claims.nbf,
        "jti": claims.jti,
        "token_type": "Bearer",
        "roles": claims.roles,
        "permissions": claims.permissions,
        "env": claims.env,
        "key_type": claims.key_type,
    }))
}
