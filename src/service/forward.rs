//! Forward authentication for reverse proxies (docs/api.md, "At the edge"): a raw API key or
//! an access token in, an access token for the service behind the proxy
//! out, with the route's requirements checked on the way.
//!
//! A raw key goes through the same policy as an exchange
//! (`token::authenticate_client`: revoked looks like unknown, the failure
//! limiter, the client address against `allowedIps`), then a token minted
//! for it is reused until shortly before it expires. Reuse is safe because
//! an entry serves only the very application snapshot and grants it was
//! minted from: any change to the application, its roles or its owner
//! gives a new snapshot, and the next request mints afresh. Access tokens
//! are checked as a verifier would (signature, issuer, audience, lifetime,
//! the in-memory revocation list, the token's own `allowed_cidrs`).
//!
//! Only requests that pass every check take from the rate budget: refused
//! requests never reach the service, and a budget counts what does.

use chrono::Utc;
use secrecy::SecretString;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use super::Gateway;
use super::cache::AppSnapshot;
use super::grants::Grants;
use super::metrics::Cache;
use super::ratelimit::{self, Decision};
use super::token::{self, ExchangeRequest};
use crate::crypto::jwt;
use crate::domain::access::{allows, validate_path};
use crate::domain::{AccessClaims, AccessGrant, DomainError, IpNet, Permission, TokenRef};

/// Tokens larger than this are refused unread.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Raw keys cached at most; beyond it the cache is swept, then cleared (a
/// miss costs one signature, never a wrong answer).
const MAX_KEYS: usize = 20_000;
/// A reused token is replaced once a quarter of its life, or a minute if
/// that is less, is left: the service behind gets it with time to spare.
const RENEW_FRACTION: i64 = 4;
const RENEW_MAX_SECS: i64 = 60;

/// What the proxy presented.
pub enum Credential {
    /// An application's secret (a generated key, which names its
    /// application).
    Key(SecretString),
    /// An access token of this gateway.
    Token(String),
}

impl Credential {
    /// A JWT (three base64url parts, a JSON header) is a token; anything
    /// else is a key. Generated keys hold no dot, so the two never meet.
    pub fn classify(raw: &str) -> Self {
        let raw = raw.trim();
        if raw.starts_with("eyJ") && raw.bytes().filter(|b| *b == b'.').count() == 2 {
            Self::Token(raw.to_owned())
        } else {
            Self::Key(SecretString::from(raw.to_owned()))
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(_) => f.write_str("Key(<hidden>)"),
            Self::Token(_) => f.write_str("Token(<hidden>)"),
        }
    }
}

/// What the route behind the proxy needs, as the proxy's configuration
/// names it.
#[derive(Debug, Default, Clone)]
pub struct Requirements {
    /// The audience the token must carry (minted for it, for a key).
    pub audience: Option<String>,
    /// A permission the caller must hold...
    pub permission: Option<String>,
    /// ...everywhere, or on this resource.
    pub resource: Option<String>,
}

/// One forward-auth question.
#[derive(Debug)]
pub struct ForwardRequest {
    /// The credential, if the request carried one.
    pub credential: Option<Credential>,
    /// The client's address (behind trusted proxies).
    pub client_ip: IpAddr,
    /// What the route needs.
    pub needs: Requirements,
}

/// The request may pass.
pub struct Admitted {
    /// The token for the proxy to hand on.
    pub access_token: Arc<str>,
    /// The token's `sub`.
    pub subject: String,
    /// The token's `client_id`.
    pub client_id: String,
    /// The budget taken from, if one applies.
    pub rate: Option<Decision>,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("access_token", &"<hidden>")
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The request may not pass, and why.
#[derive(Debug)]
pub struct Refused {
    /// The reason, as the error of docs/errors.md.
    pub error: DomainError,
    /// The budget, when the refusal is the rate limit.
    pub rate: Option<Decision>,
    /// Whether the credential was an access token (its 401 says
    /// `invalid_token` rather than `invalid_api_key`).
    pub token: bool,
}

impl Refused {
    fn key(error: DomainError) -> Self {
        Self {
            error,
            rate: None,
            token: false,
        }
    }

    fn token(error: DomainError) -> Self {
        Self {
            error,
            rate: None,
            token: true,
        }
    }
}

/// A token minted at the edge for a raw key, and what it was minted from.
struct Minted {
    audience: Box<str>,
    token: Arc<str>,
    claims: AccessClaims,
    permissions: Vec<Permission>,
    /// The snapshot and grants it speaks for (compared by pointer: a new
    /// read of the application means a new token).
    snap: Arc<AppSnapshot>,
    grants: Arc<Grants>,
    /// After this instant (seconds) the token is replaced.
    renew_at: i64,
}

/// An access token whose signature, issuer and lifetime were checked.
struct Verified {
    claims: AccessClaims,
    permissions: Vec<Permission>,
}

/// Tokens minted for raw keys, keyed by the HMAC of the key (never the
/// key) and the audience asked for; and access tokens already verified,
/// keyed by the HMAC of the token, so a token presented again costs a hash
/// rather than a signature check (the bench measured P-256 verification as
/// half of that path). What can change about a verified token is checked on
/// every request all the same: expiry, audience, revocation, address.
#[derive(Default)]
pub struct ForwardTokens {
    map: RwLock<HashMap<[u8; 32], Vec<Arc<Minted>>>>,
    verified: RwLock<HashMap<[u8; 32], Arc<Verified>>>,
}

impl ForwardTokens {
    fn get(&self, digest: &[u8; 32], audience: &str) -> Option<Arc<Minted>> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.get(digest)?
            .iter()
            .find(|m| *m.audience == *audience)
            .cloned()
    }

    fn put(&self, digest: [u8; 32], minted: Arc<Minted>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(&digest) {
            let now = Utc::now().timestamp();
            map.retain(|_, v| v.iter().any(|m| m.renew_at > now));
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        let entries = map.entry(digest).or_default();
        entries.retain(|m| m.audience != minted.audience);
        // A key asking for ever new audiences keeps its last few only.
        if entries.len() >= 8 {
            entries.remove(0);
        }
        entries.push(minted);
    }

    fn forget(&self, digest: &[u8; 32], audience: &str) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = map.get_mut(digest) {
            v.retain(|m| *m.audience != *audience);
            if v.is_empty() {
                map.remove(digest);
            }
        }
    }

    /// Drops tokens due for renewal, and verified tokens that expired
    /// (the minute tick calls it).
    pub fn purge(&self) {
        let now = Utc::now().timestamp();
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, v| {
            v.retain(|m| m.renew_at > now);
            !v.is_empty()
        });
        drop(map);
        let mut verified = self.verified.write().unwrap_or_else(|e| e.into_inner());
        verified.retain(|_, v| v.claims.exp > now);
    }

    /// Forgets every token held: a signing key left the ring, so a token
    /// minted with it must not be handed on, and one verified with it must
    /// be checked again.
    pub fn clear(&self) {
        self.map.write().unwrap_or_else(|e| e.into_inner()).clear();
        self.forget_verified();
    }

    /// Forgets every verified token: a signing key left the ring, and what
    /// it signed must be checked again.
    pub fn forget_verified(&self) {
        self.verified
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn verified(&self, digest: &[u8; 32]) -> Option<Arc<Verified>> {
        let map = self.verified.read().unwrap_or_else(|e| e.into_inner());
        map.get(digest).cloned()
    }

    fn remember(&self, digest: [u8; 32], v: Arc<Verified>) {
        let mut map = self.verified.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            let now = Utc::now().timestamp();
            map.retain(|_, v| v.claims.exp > now);
            if map.len() >= MAX_KEYS {
                map.clear();
            }
        }
        map.insert(digest, v);
    }

    /// How many keys have a token held.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether none has.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The permission and resource a route needs, checked for shape: they come
/// from the proxy's configuration, and a bad one is a configuration error
/// (400), never a requirement silently dropped.
fn parsed_needs(needs: &Requirements) -> Result<Option<(Permission, Option<&str>)>, DomainError> {
    let resource = needs.resource.as_deref();
    if let Some(r) = resource
        && validate_path(r, true).is_err()
    {
        return Err(DomainError::InvalidRequest(
            "resource is not a valid resource path".into(),
        ));
    }
    match needs.permission.as_deref() {
        Some(p) => {
            let p = Permission::parse(p).map_err(|_| {
                DomainError::InvalidRequest("permission is not a valid permission".into())
            })?;
            Ok(Some((p, resource)))
        }
        None if resource.is_some() => Err(DomainError::InvalidRequest(
            "resource needs a permission to check on it".into(),
        )),
        None => Ok(None),
    }
}

fn check_permission(
    need: Option<&(Permission, Option<&str>)>,
    permissions: &[Permission],
    access: &[AccessGrant],
) -> Result<(), DomainError> {
    let Some((p, resource)) = need else {
        return Ok(());
    };
    if allows(permissions, access, p, *resource) {
        return Ok(());
    }
    Err(DomainError::InsufficientPermissions(match resource {
        Some(r) => format!(
            "this call needs the permission {} on {}",
            crate::domain::error::listed([p.as_str()]),
            crate::domain::error::listed([*r])
        ),
        None => format!(
            "this call needs the permission {}",
            crate::domain::error::listed([p.as_str()])
        ),
    }))
}

/// Decides one forward-auth request.
pub async fn check(gw: &Gateway, req: ForwardRequest) -> Result<Admitted, Refused> {
    let need = parsed_needs(&req.needs).map_err(Refused::key)?;
    match req.credential {
        None => Err(Refused::key(DomainError::MissingCredentials)),
        Some(Credential::Key(secret)) => {
            with_key(gw, secret, req.client_ip, &req.needs, need.as_ref()).await
        }
        Some(Credential::Token(t)) => {
            with_token(gw, t, req.client_ip, &req.needs, need.as_ref()).await
        }
    }
}

async fn with_key(
    gw: &Gateway,
    secret: SecretString,
    client_ip: IpAddr,
    needs: &Requirements,
    need: Option<&(Permission, Option<&str>)>,
) -> Result<Admitted, Refused> {
    let digest = gw.pepper.digest(&secret);
    let exchange = ExchangeRequest {
        app_id: None,
        secret,
        scope: None,
        audience: needs.audience.clone(),
        client_ip,
    };
    let (snap, grants) = token::authenticate_client(gw, &exchange)
        .await
        .map_err(Refused::key)?;
    let audience = needs.audience.as_deref().unwrap_or("");
    let now = Utc::now().timestamp();
    let reusable = |m: &Minted| {
        Arc::ptr_eq(&m.snap, &snap) && Arc::ptr_eq(&m.grants, &grants) && m.renew_at > now
    };
    let mut minted = gw
        .forward_tokens
        .get(&digest, audience)
        .filter(|m| reusable(m));
    gw.metrics.cache(Cache::ForwardMinted, minted.is_some());
    if let Some(m) = &minted
        && is_revoked(gw, &m.claims).await.map_err(Refused::key)?
    {
        gw.forward_tokens.forget(&digest, audience);
        minted = None;
    }
    let minted = match minted {
        Some(m) => m,
        None => {
            let (issued, claims) = token::mint(gw, &snap, &grants, None, needs.audience.as_deref())
                .map_err(Refused::key)?;
            // Born revoked: a revocation landed between the read and now.
            if is_revoked(gw, &claims).await.map_err(Refused::key)? {
                return Err(Refused::key(DomainError::InvalidCredentials));
            }
            let life = claims.exp - claims.iat;
            let margin = (life / RENEW_FRACTION).min(RENEW_MAX_SECS);
            let permissions = claims
                .permissions
                .iter()
                .filter_map(|p| Permission::parse(p).ok())
                .collect();
            let m = Arc::new(Minted {
                audience: audience.into(),
                token: Arc::from(issued.access_token),
                permissions,
                snap: snap.clone(),
                grants: grants.clone(),
                renew_at: claims.exp - margin,
                claims,
            });
            gw.forward_tokens.put(digest, m.clone());
            m
        }
    };
    check_permission(need, &minted.permissions, &minted.claims.access).map_err(Refused::key)?;
    let app = &snap.stored.app;
    let rate = take_budget(gw, &app.id, app.rate_limit.as_ref(), false).await?;
    gw.usage.record(&app.id, Utc::now(), client_ip);
    Ok(Admitted {
        access_token: minted.token.clone(),
        subject: minted.claims.sub.clone(),
        client_id: minted.claims.client_id.clone(),
        rate,
    })
}

async fn with_token(
    gw: &Gateway,
    token: String,
    client_ip: IpAddr,
    needs: &Requirements,
    need: Option<&(Permission, Option<&str>)>,
) -> Result<Admitted, Refused> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(Refused::token(DomainError::InvalidToken));
    }
    let digest = gw.pepper.digest(&SecretString::from(token.as_str()));
    let leeway = i64::try_from(gw.policy.leeway).unwrap_or(0);
    let now = Utc::now().timestamp();
    let verified = match gw.forward_tokens.verified(&digest) {
        // Verified before: only its expiry can have changed since.
        Some(v) if v.claims.exp.saturating_add(leeway) > now => {
            gw.metrics.cache(Cache::ForwardVerified, true);
            v
        }
        _ => {
            gw.metrics.cache(Cache::ForwardVerified, false);
            let claims: AccessClaims =
                jwt::verify_any_audience(&gw.keys.current(), &token, &gw.issuer, gw.policy.leeway)
                    .map_err(|e| {
                        tracing::debug!(reason = %e, "forwarded token refused");
                        Refused::token(DomainError::InvalidToken)
                    })?;
            let permissions = claims
                .permissions
                .iter()
                .filter_map(|p| Permission::parse(p).ok())
                .collect();
            let v = Arc::new(Verified {
                claims,
                permissions,
            });
            gw.forward_tokens.remember(digest, v.clone());
            v
        }
    };
    let claims = &verified.claims;
    let audience = needs.audience.as_deref().unwrap_or(&gw.policy.audience);
    if claims.aud != audience {
        return Err(Refused::token(DomainError::InvalidToken));
    }
    if is_revoked(gw, claims).await.map_err(Refused::token)? {
        return Err(Refused::token(DomainError::InvalidToken));
    }
    if let Some(cidrs) = &claims.allowed_cidrs {
        if !IpNet::listed_allow(cidrs, client_ip) {
            return Err(Refused::token(DomainError::IpNotAllowed(
                crate::domain::cidr::canonical(client_ip),
            )));
        }
    }
    check_permission(need, &verified.permissions, &claims.access).map_err(Refused::token)?;
    // A person's requests share the person's budget (the gateway's
    // default); an application's, the application's own.
    let rate = if claims.sid.is_some() {
        take_budget(gw, &claims.sub, None, true).await?
    } else {
        let own = token::load_app(gw, &claims.client_id)
            .await
            .map_err(Refused::token)?
            .and_then(|s| s.stored.app.rate_limit);
        take_budget(gw, &claims.client_id, own.as_ref(), true).await?
    };
    Ok(Admitted {
        access_token: Arc::from(token),
        subject: claims.sub.clone(),
        client_id: claims.client_id.clone(),
        rate,
    })
}

async fn is_revoked(gw: &Gateway, claims: &AccessClaims) -> Result<bool, DomainError> {
    super::mirror::is_revoked(gw, &TokenRef::from(claims)).await
}

/// Takes one request from `bucket`'s budget: `Ok` with the decision to
/// report when it fits, a 429 refusal carrying it when it does not.
async fn take_budget(
    gw: &Gateway,
    bucket: &str,
    own: Option<&crate::domain::RateLimit>,
    token: bool,
) -> Result<Option<Decision>, Refused> {
    let decision = ratelimit::take(gw, bucket, own)
        .await
        .map_err(|error| Refused {
            error,
            rate: None,
            token,
        })?;
    match decision {
        Some(d) if !d.allowed => Err(Refused {
            error: DomainError::RateLimited {
                retry_after: d.retry_after_secs.max(1),
            },
            rate: Some(d),
            token,
        }),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_keys_are_told_apart() {
        assert!(matches!(
            Credential::classify("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"),
            Credential::Token(_)
        ));
        assert!(matches!(
            Credential::classify("tsr_sk_live_abc123"),
            Credential::Key(_)
        ));
        assert!(matches!(Credential::classify("a.b.c"), Credential::Key(_)));
        assert_eq!(
            format!("{:?}", Credential::classify("tsr_sk_live_abc")),
            "Key(<hidden>)"
        );
    }

    #[test]
    fn a_requirement_that_does_not_parse_is_refused_not_dropped() {
        let needs = |p: Option<&str>, r: Option<&str>| Requirements {
            audience: None,
            permission: p.map(str::to_owned),
            resource: r.map(str::to_owned),
        };
        assert!(parsed_needs(&needs(Some("workloads:read"), Some("cluster:c1"))).is_ok());
        assert!(parsed_needs(&needs(Some("not a permission"), None)).is_err());
        assert!(parsed_needs(&needs(Some("workloads:read"), Some("cluster:*"))).is_err());
        assert!(parsed_needs(&needs(None, Some("cluster:c1"))).is_err());
        assert!(matches!(parsed_needs(&needs(None, None)), Ok(None)));
    }
}
