//! Authenticating callers of the admin API by this gateway's own tokens.

use super::Gateway;
use super::token::load_app;
use crate::crypto::jwt;
use crate::domain::access::intersect;
use crate::domain::{AccessClaims, AppStatus, DomainError, IpNet, Permission};

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
    /// The person's session, when the caller is a person (`sid`).
    pub session: Option<String>,
}

impl Principal {
    /// Whether the caller is a person (a user's token) rather than an
    /// application.
    pub fn is_person(&self) -> bool {
        self.session.is_some()
    }
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
/// audience), lifetime, revocation, the client address against the token's
/// `allowed_cidrs`, and that the application behind it is still active, so
/// revoking an application locks its tokens out of this API at once.
///
/// The caller's permissions are those of the token narrowed to what its
/// application holds now: a demotion applies to the gateway's own API at
/// once, even before the demotion's revocation reaches this gateway.
pub async fn authenticate_bearer(
    gw: &Gateway,
    token: &str,
    ip: std::net::IpAddr,
) -> Result<Principal, DomainError> {
    let claims: AccessClaims = jwt::verify(
        &gw.keys.current(),
        token,
        &gw.issuer,
        &gw.policy.audience,
        gw.policy.leeway,
    )
    .map_err(|e| {
        tracing::debug!(reason = %e, "bearer token refused");
        DomainError::InvalidToken
    })?;
    // The gateway's own API serves people through its own clients only: a
    // token a third-party client obtained (with no consent step) is for
    // that client's APIs, never for managing the person's account here.
    // Token exchange takes such tokens through `check_claims`, so the rule
    // lives here, not there.
    let third_party =
        claims.sid.is_some() && !super::people::clients::is_built_in(&claims.client_id);
    let principal = check_claims(gw, claims, ip).await?;
    if third_party {
        return Err(DomainError::InsufficientPermissions(
            "tokens issued to other clients cannot call the gateway's own API; sign in with tessera-cli or the console".into(),
        ));
    }
    Ok(principal)
}

/// Everything [`authenticate_bearer`] checks once the signature, issuer,
/// audience and lifetime have passed: revocation (by `jti`, subject and
/// session), `allowed_cidrs` against `ip`, and a subject still active.
/// Token exchange checks its subject and actor tokens through here too,
/// whatever their audience.
pub async fn check_claims(
    gw: &Gateway,
    claims: AccessClaims,
    ip: std::net::IpAddr,
) -> Result<Principal, DomainError> {
    if super::revocation::is_revoked(gw, &claims).await? {
        return Err(DomainError::InvalidToken);
    }
    if let Some(cidrs) = &claims.allowed_cidrs {
        if !IpNet::listed_allow(cidrs, ip) {
            return Err(DomainError::IpNotAllowed(crate::domain::cidr::canonical(
                ip,
            )));
        }
    }
    if let Some(sid) = claims.sid.clone() {
        return person(gw, claims, sid, ip).await;
    }
    let Some(snapshot) = load_app(gw, &claims.sub).await? else {
        return Err(DomainError::InvalidToken);
    };
    let app = &snapshot.stored.app;
    if app.status_at(chrono::Utc::now()) != AppStatus::Active {
        return Err(DomainError::InvalidToken);
    }
    let current = super::grants::effective(gw, app).await?;
    let claimed: Vec<Permission> = claims
        .permissions
        .iter()
        .filter_map(|p| Permission::parse(p).ok())
        .collect();
    let permissions = intersect(&claimed, &current.permissions);
    Ok(Principal {
        subject: claims.sub,
        permissions,
        owner: app.owner.clone(),
        ip,
        session: None,
    })
}

/// A person's token: their permissions now (roles expanded) narrow what
/// the token claims, and a disabled or deleted user is refused at once.
/// What they create is theirs (`owner` is their id).
async fn person(
    gw: &Gateway,
    claims: AccessClaims,
    sid: String,
    ip: std::net::IpAddr,
) -> Result<Principal, DomainError> {
    let Some(user) = gw.users.get_user(&claims.sub).await? else {
        return Err(DomainError::InvalidToken);
    };
    if user.user.status != crate::domain::UserStatus::Active {
        return Err(DomainError::InvalidToken);
    }
    let current = super::authz::user_holdings(gw, &user.user).await?;
    let claimed: Vec<Permission> = claims
        .permissions
        .iter()
        .filter_map(|p| Permission::parse(p).ok())
        .collect();
    Ok(Principal {
        permissions: intersect(&claimed, &current.0),
        owner: claims.sub.clone(),
        subject: claims.sub,
        ip,
        session: Some(sid),
    })
}
