//! Tokens for people: access tokens (docs/api.md, "People" claims), ID tokens, and
//! refresh tokens with rotation and reuse detection.
//!
//! What a person's token carries is decided at every issue, from the user
//! as stored now: their permissions and roles, bounded by the client's own
//! (for applications; the built-in clients are the gateway's), narrowed by
//! the permission words of `scope`. A refresh re-reads all of it, so a
//! demotion reaches the next refreshed token.

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::clients::{self, Client};
use super::sessions;
use crate::crypto::{jwt, opaque, random};
use crate::domain::access::intersect;
use crate::domain::session::{RefreshFamily, RefreshUse, Session};
use crate::domain::{AccessClaims, DomainError, Permission, UserStatus};
use crate::service::Gateway;
use crate::service::grants::{Grants, narrow, role_permissions};
use crate::store::StoredUser;

/// The OpenID Connect scope words; every other word names a permission.
pub const OIDC_SCOPES: &[&str] = &["openid", "profile", "email", "offline_access"];

/// What a grant answers with.
pub struct PersonTokens {
    /// The access token (JWT).
    pub access_token: String,
    /// Its lifetime, seconds.
    pub expires_in: u64,
    /// The scope granted: OIDC words, then permissions.
    pub scope: String,
    /// A new refresh token, when one was issued.
    pub refresh_token: Option<SecretString>,
    /// An ID token, when `openid` was granted.
    pub id_token: Option<String>,
}

impl std::fmt::Debug for PersonTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersonTokens")
            .field("scope", &self.scope)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Splits a requested scope into its OIDC words and its permission words
/// (bounded like every scope: 64 words, 4 KiB).
pub fn split_scope(scope: &str) -> Result<(Vec<String>, Vec<String>), DomainError> {
    if scope.len() > crate::service::grants::MAX_SCOPE_BYTES {
        return Err(DomainError::InvalidScope("scope is too long".into()));
    }
    let mut oidc = Vec::new();
    let mut perms = Vec::new();
    for w in scope
        .split(|c: char| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        if oidc.len() + perms.len() >= crate::service::grants::MAX_SCOPE_WORDS {
            return Err(DomainError::InvalidScope("scope has too many words".into()));
        }
        if OIDC_SCOPES.contains(&w) {
            if !oidc.iter().any(|o| o == w) {
                oidc.push(w.to_owned());
            }
        } else {
            Permission::parse(w).map_err(|_| {
                DomainError::InvalidScope(format!(
                    "scope word {} is neither an OpenID scope nor a permission",
                    crate::domain::error::shown(w)
                ))
            })?;
            if !perms.iter().any(|p| p == w) {
                perms.push(w.to_owned());
            }
        }
    }
    Ok((oidc, perms))
}

/// The grants of a user as stored now, bounded by what the client may
/// carry. `as_of_ms` is when the read of the user began.
async fn user_grants(
    gw: &Gateway,
    user: &StoredUser,
    bound: Option<&[Permission]>,
    as_of_ms: i64,
) -> Result<Grants, DomainError> {
    let u = &user.user;
    // Each role is read once: its permissions serve both its own grant and
    // the user's total.
    let mut role_grants = Vec::with_capacity(u.roles.len());
    let mut permissions = u.permissions.clone();
    for name in &u.roles {
        let held = role_permissions(gw, std::slice::from_ref(name)).await?;
        permissions.extend(held.iter().cloned());
        role_grants.push((name.clone(), held));
    }
    permissions.sort();
    permissions.dedup();
    if let Some(b) = bound {
        permissions = intersect(&permissions, b);
    }
    Ok(Grants {
        roles: u.roles.clone(),
        role_grants,
        as_of_ms,
        for_version: u.updated_at,
        permissions,
        access: Vec::new(),
    })
}

/// Everything an issue needs.
pub struct Issue<'a> {
    /// The user's id: `issue` reads the user itself, after taking the
    /// state instant.
    pub user_id: &'a str,
    /// Their session.
    pub session: &'a Session,
    /// The client.
    pub client: &'a Client,
    /// The scope as granted at sign-in (re-evaluated now).
    pub scope: &'a str,
    /// The client's nonce, for the ID token.
    pub nonce: Option<&'a str>,
    /// A refresh token to hand back (rotation), or whether to start a family.
    pub refresh: Refresh,
}

/// What to do about refresh tokens in an issue.
pub enum Refresh {
    /// None.
    Skip,
    /// Start a family (the first issue with `offline_access`).
    Start,
    /// Hand back this token, already stored by the rotation.
    Rotated(SecretString),
}

/// Mints the tokens of one issue.
pub async fn issue(gw: &Gateway, i: Issue<'_>) -> Result<PersonTokens, DomainError> {
    // The instant first, then a fresh read: the copy the caller holds may
    // predate a disable or a demotion (argon2 can queue), and a token must
    // never speak for state older than its `iat_ms`, or the revocation
    // written with that change would miss it.
    let as_of_ms = Utc::now().timestamp_millis();
    let fresh = gw
        .users
        .get_user(i.user_id)
        .await?
        .ok_or_else(|| DomainError::InvalidGrant("This account no longer exists".into()))?;
    let user = &fresh.user;
    if user.status != UserStatus::Active {
        return Err(DomainError::InvalidGrant("This account is disabled".into()));
    }
    let (oidc, perms) = split_scope(i.scope)?;
    let bound = clients::bound(gw, i.client).await?;
    let grants = user_grants(gw, &fresh, bound.as_deref(), as_of_ms).await?;
    let (narrowed, permissions) = held_of(gw, &grants, &perms)?;
    let mut scope_words: Vec<String> = oidc.clone();
    scope_words.extend(permissions.iter().cloned());
    let scope = scope_words.join(" ");
    let now = Utc::now();
    let iat = now.timestamp();
    let ttl = gw.policy.token_ttl;
    let internal = |e: random::RandomError| DomainError::Internal(e.to_string());
    let claims = AccessClaims {
        iss: gw.issuer.clone(),
        sub: user.id.clone(),
        aud: gw.policy.audience.clone(),
        exp: iat + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
        iat,
        iat_ms: Some(grants.as_of_ms),
        nbf: iat,
        jti: random::token_id().map_err(internal)?,
        client_id: i.client.id.clone(),
        scope: scope.clone(),
        roles: narrowed.roles,
        permissions,
        access: Vec::new(),
        env: "live".into(),
        key_type: "user".into(),
        allowed_cidrs: None,
        sid: Some(i.session.id.clone()),
        amr: Some(i.session.amr.clone()),
        idp: i.session.idp.clone(),
        act: None,
        may_act: None,
    };
    let access_token =
        jwt::mint(&gw.keys.current(), &claims).map_err(|e| DomainError::Internal(e.to_string()))?;
    let id_token = if oidc.iter().any(|w| w == "openid") {
        Some(id_token(gw, &i, user, &oidc, &access_token, iat)?)
    } else {
        None
    };
    let refresh_token = match i.refresh {
        Refresh::Skip => None,
        Refresh::Rotated(t) => Some(t),
        Refresh::Start => Some(start_family(gw, &fresh, i.session, i.client, i.scope).await?),
    };
    gw.metrics.token_issued();
    Ok(PersonTokens {
        access_token,
        expires_in: ttl,
        scope,
        refresh_token,
        id_token,
    })
}

/// A person's access token obtained without a session here (token
/// exchange of an upstream provider's ID token, docs/api.md, "Single sign-on"): no `sid`, no
/// refresh token, no ID token. Bounded by the client like every
/// third-party client's tokens, narrowed by the permission words of
/// `scope` (OIDC words other than `offline_access` are kept), for
/// `audience`, living at most `ttl` seconds.
pub struct Federated<'a> {
    /// The user's id (read afresh here).
    pub user_id: &'a str,
    /// The requesting client.
    pub client: &'a Client,
    /// The requested scope.
    pub scope: &'a str,
    /// The provider the person proved themselves at.
    pub idp: &'a str,
    /// `aud`.
    pub audience: String,
    /// Lifetime, seconds.
    pub ttl: u64,
}

/// What a person is granted of the permission words asked for (`perms`,
/// none meaning everything they hold): words they do not hold are dropped
/// (the answer's `scope` says what was granted), and asking only for words
/// they do not hold grants nothing, never everything. Returns the narrowed
/// grants and their permission words.
fn held_of(
    gw: &Gateway,
    grants: &crate::service::grants::Grants,
    perms: &[String],
) -> Result<(crate::service::grants::Narrowed, Vec<String>), DomainError> {
    let held: Vec<&str> = perms
        .iter()
        .map(String::as_str)
        .filter(|w| {
            Permission::parse(w).is_ok_and(|p| Permission::any_covers(&grants.permissions, &p))
        })
        .collect();
    let narrowed = if held.is_empty() && !perms.is_empty() {
        crate::service::grants::Narrowed {
            permissions: Vec::new(),
            access: Vec::new(),
            roles: Vec::new(),
        }
    } else {
        narrow(grants, Some(&held.join(" ")), &gw.catalogue)?
    };
    let permissions = narrowed
        .permissions
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    Ok((narrowed, permissions))
}

/// Mints the access token of a [`Federated`] request; returns it, its
/// lifetime and the granted scope.
pub async fn issue_federated(
    gw: &Gateway,
    f: Federated<'_>,
) -> Result<(String, u64, String), DomainError> {
    let as_of_ms = Utc::now().timestamp_millis();
    let fresh = gw
        .users
        .get_user(f.user_id)
        .await?
        .ok_or_else(|| DomainError::InvalidGrant("the user no longer exists".into()))?;
    if fresh.user.status != UserStatus::Active {
        return Err(DomainError::InvalidGrant("the user is disabled".into()));
    }
    let (oidc, perms) = split_scope(f.scope)?;
    let oidc: Vec<String> = oidc.into_iter().filter(|w| w != "offline_access").collect();
    let bound = clients::bound(gw, f.client).await?;
    let grants = user_grants(gw, &fresh, bound.as_deref(), as_of_ms).await?;
    let (narrowed, permissions) = held_of(gw, &grants, &perms)?;
    let mut words = oidc;
    words.extend(permissions.iter().cloned());
    let scope = words.join(" ");
    let iat = Utc::now().timestamp();
    let internal = |e: random::RandomError| DomainError::Internal(e.to_string());
    let claims = AccessClaims {
        iss: gw.issuer.clone(),
        sub: fresh.user.id.clone(),
        aud: f.audience,
        exp: iat + i64::try_from(f.ttl).unwrap_or(600),
        iat,
        iat_ms: Some(grants.as_of_ms),
        nbf: iat,
        jti: random::token_id().map_err(internal)?,
        client_id: f.client.id.clone(),
        scope: scope.clone(),
        roles: narrowed.roles,
        permissions,
        access: Vec::new(),
        env: "live".into(),
        key_type: "user".into(),
        allowed_cidrs: None,
        sid: None,
        amr: Some(vec!["fed".into()]),
        idp: Some(f.idp.to_owned()),
        act: None,
        may_act: None,
    };
    let token =
        jwt::mint(&gw.keys.current(), &claims).map_err(|e| DomainError::Internal(e.to_string()))?;
    gw.metrics.token_issued();
    Ok((token, f.ttl, scope))
}

fn id_token(
    gw: &Gateway,
    i: &Issue<'_>,
    user: &crate::domain::User,
    oidc: &[String],
    access_token: &str,
    iat: i64,
) -> Result<String, DomainError> {
    let mut c = json!({
        "iss": gw.issuer,
        "sub": user.id,
        "aud": i.client.id,
        "azp": i.client.id,
        "exp": iat + i64::try_from(gw.policy.token_ttl).unwrap_or(600),
        "iat": iat,
        "auth_time": i.session.auth_time.timestamp(),
        "sid": i.session.id,
        "amr": i.session.amr,
        "at_hash": jwt::at_hash(access_token, gw.keys.current().id_token_key().alg()),
    });
    if let Some(n) = i.nonce {
        c["nonce"] = Value::from(n);
    }
    if oidc.iter().any(|w| w == "email") {
        c["email"] = Value::from(user.email.clone());
        // Tessera does not verify addresses itself; a linked identity's
        // provider may have, but that is not this address's proof.
        c["email_verified"] = Value::from(false);
    }
    if oidc.iter().any(|w| w == "profile") && !user.name.is_empty() {
        c["name"] = Value::from(user.name.clone());
    }
    jwt::mint_id_token(&gw.keys.current(), &c).map_err(|e| DomainError::Internal(e.to_string()))
}

async fn start_family(
    gw: &Gateway,
    user: &StoredUser,
    session: &Session,
    client: &Client,
    scope: &str,
) -> Result<SecretString, DomainError> {
    let internal = |e: random::RandomError| DomainError::Internal(e.to_string());
    let token = opaque::new_refresh_token(&gw.policy.key_prefix).map_err(internal)?;
    let now = Utc::now();
    let family = RefreshFamily {
        id: format!("rtf_{}", random::base62(22).map_err(internal)?),
        user_id: user.user.id.clone(),
        client_id: client.id.clone(),
        session_id: session.id.clone(),
        scope: scope.to_owned(),
        created_at: now,
        last_used_at: now,
        expires_at: now + super::sessions::secs(gw.policy.people.refresh_absolute),
        revoked: false,
    };
    gw.sessions
        .insert_refresh(&family, &opaque::digest_hex(token.expose_secret()))
        .await?;
    sessions::retain(gw, &session.id, family.expires_at).await?;
    Ok(token)
}

/// The refusal every bad refresh token gets: nothing tells an unknown token
/// from an ended one.
fn ended() -> DomainError {
    DomainError::InvalidGrant("The refresh token is invalid, expired or revoked".into())
}

/// The `refresh_token` grant: rotates the token and issues new tokens.
/// Presenting a replaced token after the grace window ends the family and
/// its session (theft is assumed: one of the two holders is not the user).
pub async fn refresh(
    gw: &Gateway,
    presented: &SecretString,
    client: &Client,
    ip: std::net::IpAddr,
) -> Result<PersonTokens, DomainError> {
    let t = presented.expose_secret();
    if !opaque::is_refresh_token(&gw.policy.key_prefix, t) {
        return Err(ended());
    }
    if !client.allows_grant("refresh_token") {
        return Err(DomainError::UnauthorizedClient(
            "this client may not use the refresh_token grant".into(),
        ));
    }
    let next = opaque::new_refresh_token(&gw.policy.key_prefix)
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let p = &gw.policy.people;
    let outcome = gw
        .sessions
        .use_refresh(
            &opaque::digest_hex(t),
            &opaque::digest_hex(next.expose_secret()),
            Utc::now(),
            std::time::Duration::from_secs(p.refresh_grace),
            std::time::Duration::from_secs(p.refresh_idle),
        )
        .await?;
    let family = match outcome {
        RefreshUse::Rotated(f) => f,
        RefreshUse::Reused(f) => {
            tracing::warn!(family = %f.id, user = %f.user_id, "refresh token reused: family and session ended");
            sessions::end(gw, &f.session_id).await?;
            super::signin::audit(
                gw,
                &f.user_id,
                "refresh.reuse",
                ip,
                json!({"family": f.id, "session": f.session_id, "client": f.client_id}),
            )
            .await;
            return Err(ended());
        }
        RefreshUse::Ended | RefreshUse::Unknown => return Err(ended()),
    };
    if family.client_id != client.id {
        // A token bound to another client: stolen, or a confused client.
        // Either way the family is no longer trustworthy.
        sessions::end(gw, &family.session_id).await?;
        return Err(ended());
    }
    let Some(session) = sessions::get(gw, &family.session_id).await? else {
        return Err(ended());
    };
    issue(
        gw,
        Issue {
            user_id: &family.user_id,
            session: &session,
            client,
            scope: &family.scope,
            nonce: None,
            refresh: Refresh::Rotated(next),
        },
    )
    .await
}

/// Revokes a refresh token at the request of `client_id` (RFC 7009): its
/// session ends, and with it the family and every access token of the
/// session. A token issued to another client is refused
/// (`InsufficientPermissions`); an unknown or ended one is a success with
/// nothing to do (RFC 7009 §2.2).
pub async fn revoke_refresh(
    gw: &Gateway,
    presented: &str,
    client_id: &str,
    ip: std::net::IpAddr,
) -> Result<(), DomainError> {
    if !opaque::is_refresh_token(&gw.policy.key_prefix, presented) {
        return Ok(());
    }
    let Some(family) = gw
        .sessions
        .find_refresh(&opaque::digest_hex(presented))
        .await?
    else {
        return Ok(());
    };
    if family.client_id != client_id {
        return Err(DomainError::InsufficientPermissions(
            "the refresh token was issued to another client".into(),
        ));
    }
    sessions::end(gw, &family.session_id).await?;
    super::signin::audit(
        gw,
        &family.user_id,
        "refresh.revoke",
        ip,
        json!({"family": family.id, "session": family.session_id, "client": client_id}),
    )
    .await;
    Ok(())
}
