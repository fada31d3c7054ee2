//! Authenticating callers of the admin API by this gateway's own tokens.

use super::Gateway;
use super::token::load_app;
use crate::crypto::jwt;
use crate::domain::{AccessClaims, AppStatus, DomainError, Permission};

/// A caller proven by a bearer token from this gateway.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: String,
    /// The token's permissions.
    pub permissions: Vec<Permission>,
    /// The owner of the calling application (`gateway` or a user id).
    pub owner: String,
    /// Where the call came from (for the audit log).
    pub ip: std::net::IpAddr,
}

impl Principal {
    /// `Ok` when the caller's permissions cover `needed`.
    pub fn require(&self, needed: &str) -> Result<(), DomainError> {
        let needed = Permission::parse(needed)?;
        if Permission::any_covers(&self.permissions, &needed) {
            Ok(())
        } else {
            Err(DomainError::InsufficientPermissions(format!(
                "this call needs the permission {needed}"
            )))
        }
    }
}

/// Checks a bearer token: signature, `typ`, `iss`, `aud` (the gateway's own
/// audience), lifetime, and that the application behind it is still active,
/// so revoking an application locks its tokens out of this API at once.
pub async fn authenticate_bearer(
    gw: &Gateway,
    token: &str,
    ip: std::net::IpAddr,
) -> Result<Principal, DomainError> {
    let claims: AccessClaims = jwt::verify(
        &gw.keys,
        token,
        &gw.issuer,
        &gw.settings.audience,
        gw.settings.leeway,
    )
    .map_err(|e| {
        tracing::debug!(reason = %e, "bearer token refused");
        DomainError::InvalidToken
    })?;
    if super::revocation::is_revoked(gw, &claims).await? {
        return Err(DomainError::InvalidToken);
    }
    let owner = match load_app(gw, &claims.sub).await? {
        Some(app) if app.app.status_at(chrono::Utc::now()) == AppStatus::Active => {
            app.app.owner.clone()
        }
        _ => return Err(DomainError::InvalidToken),
    };
    let permissions = claims
        .permissions
        .iter()
        .filter_map(|p| Permission::parse(p).ok())
        .collect();
    Ok(Principal {
        subject: claims.sub,
        permissions,
        owner,
        ip,
    })
}
