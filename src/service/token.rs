//! Token exchange: an application's secret in, a signed access token out.
//!
//! The order matters for security and speed:
//! 1. classify the secret; a generated key with a bad checksum is refused
//!    before any lookup;
//! 2. a verified-secret cache hit (HMAC-keyed) skips argon2 entirely;
//! 3. otherwise the failure limiter runs before any hashing;
//! 4. argon2id runs on the bounded pool; an unknown id is verified against a
//!    dummy hash, so it costs what a wrong secret costs and answers the same;
//! 5. policy: revoked looks like unknown, expired says so only after a
//!    correct secret; scope must be a subset; audience must be allowed;
//! 6. claims are minted and signed with the active key.

use chrono::Utc;
use secrecy::SecretString;
use std::net::IpAddr;
use std::sync::Arc;

use super::Gateway;
use super::cache::VerifiedSecret;
use super::inflight::Outcome;
use super::metrics::inc;
use crate::crypto::hashing::HashError;
use crate::crypto::{SecretCheck, jwt, random, secret};
use crate::domain::{AccessClaims, AppStatus, DomainError, Environment, IpNet};
use crate::store::StoredApp;

/// What the caller presented.
pub struct ExchangeRequest {
    /// AppId, when given separately (required for non-generated secrets).
    pub app_id: Option<String>,
    /// The secret or API key.
    pub secret: SecretString,
    /// Requested permissions, space-separated (downscoping).
    pub scope: Option<String>,
    /// Requested audience.
    pub audience: Option<String>,
    /// The client's IP address.
    pub client_ip: IpAddr,
}

impl std::fmt::Debug for ExchangeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExchangeRequest")
            .field("app_id", &self.app_id)
            .field("secret", &"<hidden>")
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("client_ip", &self.client_ip)
            .finish()
    }
}

/// A minted token and what it grants.
#[derive(Debug)]
pub struct IssuedToken {
    /// The signed JWT.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Space-separated granted permissions.
    pub scope: String,
}

/// Reads an application through the cache.
pub async fn load_app(gw: &Gateway, id: &str) -> Result<Option<Arc<StoredApp>>, DomainError> {
    if let Some(app) = gw.app_cache.get(id) {
        return Ok(Some(app));
    }
    match gw.apps.get(id).await? {
        Some(app) => {
            let app = Arc::new(app);
            gw.app_cache.put(app.clone());
            Ok(Some(app))
        }
        None => Ok(None),
    }
}

/// The hash a presented secret must match: the rotated-out one while its
/// grace period lasts and the hint points at it, else the current one.
/// Exactly one of them is ever verified, so timing reveals no rotation.
fn candidate_hash(app: &StoredApp, hint: Option<&str>, now: chrono::DateTime<Utc>) -> Arc<str> {
    // Hints are part of the stored secrets: compared in constant time.
    let same = |stored: Option<&str>, presented: &str| {
        stored.is_some_and(|s| {
            bool::from(subtle::ConstantTimeEq::ct_eq(
                s.as_bytes(),
                presented.as_bytes(),
            ))
        })
    };
    if let (Some(h), Some(prev)) = (hint, &app.previous_secret)
        && prev.until > now
        && !same(app.secret_hint.as_deref(), h)
        && same(prev.hint.as_deref(), h)
    {
        return Arc::from(prev.hash.as_str());
    }
    Arc::from(app.secret_hash.as_str())
}

/// Whether a cached verification still stands: its hash is the current one,
/// or the rotated-out one within its grace period.
fn still_valid(app: &StoredApp, verified_hash: &str, now: chrono::DateTime<Utc>) -> bool {
    *app.secret_hash == *verified_hash
        || app
            .previous_secret
            .as_ref()
            .is_some_and(|p| p.until > now && *p.hash == *verified_hash)
}

/// Which application the request names (`None` when it cannot name one: a
/// refusal that must still cost a dummy verification), and the secret's hint.
fn claimed_id(
    gw: &Gateway,
    req: &ExchangeRequest,
) -> Result<(Option<String>, Option<String>), DomainError> {
    match secret::check(&gw.settings.key_prefix, &req.secret) {
        SecretCheck::Generated(parsed) => match &req.app_id {
            Some(given) if *given != parsed.app_id => Ok((None, None)),
            _ => Ok((Some(parsed.app_id), Some(parsed.hint))),
        },
        // A mistyped generated key: refuse at once, no lookup, no hashing.
        SecretCheck::Corrupt => Err(DomainError::InvalidCredentials),
        SecretCheck::Opaque => match &req.app_id {
            Some(id) if crate::domain::application::validate_app_id(id).is_ok() => {
                Ok((Some(id.clone()), None))
            }
            Some(_) => Ok((None, None)),
            None => Err(DomainError::InvalidCredentials),
        },
    }
}

/// Verifies the secret and returns the application it belongs to.
async fn authenticate(gw: &Gateway, req: &ExchangeRequest) -> Result<Arc<StoredApp>, DomainError> {
    let now = Utc::now();
    let (id, hint) = match claimed_id(gw, req) {
        Ok(found) => found,
        Err(e) => {
            inc(&gw.metrics.exchange_failures);
            return Err(e);
        }
    };
    let digest = gw.pepper.digest(&req.secret);
    if let (Some(id), Some(hit)) = (&id, gw.secret_cache.get(&digest))
        && hit.app_id == *id
        && let Some(app) = load_app(gw, id).await?
        && still_valid(&app, &hit.secret_hash, now)
    {
        inc(&gw.metrics.secret_cache_hits);
        return Ok(app);
    }

    let limiter_key = id.as_deref().unwrap_or("-");
    if let Err(retry_after) = gw.limiter.check(limiter_key, req.client_ip) {
        inc(&gw.metrics.rate_limited);
        return Err(DomainError::RateLimited { retry_after });
    }
    let app = match &id {
        Some(id) => load_app(gw, id).await?,
        None => None,
    };
    let hash: Option<Arc<str>> = app
        .as_ref()
        .map(|a| candidate_hash(a, hint.as_deref(), now));
    // Every path shares its argon2 run with identical concurrent requests,
    // the dummy verification of an unknown id included: otherwise N copies
    // of one request would take visibly longer for an unknown id.
    let key: Arc<str> = hash.clone().unwrap_or_else(|| Arc::from("-"));
    let outcome = gw
        .inflight
        .share(digest, key, || async {
            let (Some(app), Some(h)) = (&app, &hash) else {
                inc(&gw.metrics.secret_verifications);
                return match gw.hasher.verify(&req.secret, None).await {
                    Ok(_) => Outcome::Checked(false),
                    Err(HashError::Busy) => Outcome::Busy,
                    Err(HashError::Failed(e)) => Outcome::Failed(e),
                };
            };
            // A sharer that just finished may have cached it already.
            if let Some(hit) = gw.secret_cache.get(&digest)
                && hit.app_id == app.app.id
                && *hit.secret_hash == **h
            {
                return Outcome::Checked(true);
            }
            inc(&gw.metrics.secret_verifications);
            match gw.hasher.verify(&req.secret, Some(h.clone())).await {
                Ok(true) => {
                    // Cached before the shared run ends: late arrivals find it.
                    gw.secret_cache.put(
                        digest,
                        VerifiedSecret {
                            app_id: app.app.id.clone(),
                            secret_hash: h.clone(),
                        },
                    );
                    Outcome::Checked(true)
                }
                Ok(false) => Outcome::Checked(false),
                Err(HashError::Busy) => Outcome::Busy,
                Err(HashError::Failed(e)) => Outcome::Failed(e),
            }
        })
        .await;
    let ok = match outcome {
        Outcome::Checked(ok) => ok,
        Outcome::Busy => return Err(DomainError::Unavailable),
        Outcome::Failed(e) => return Err(DomainError::Internal(e)),
    };
    match (ok, app) {
        (true, Some(app)) => Ok(app),
        _ => {
            gw.limiter.record_failure(limiter_key, req.client_ip);
            inc(&gw.metrics.exchange_failures);
            Err(DomainError::InvalidCredentials)
        }
    }
}

/// Authenticates a client by its secret and applies the policy every use of
/// a secret must pass: revoked looks like unknown, expired says so only after
/// a correct secret, and the client IP must be allowed. Returns the
/// application and its effective grants.
pub async fn authenticate_client(
    gw: &Gateway,
    req: &ExchangeRequest,
) -> Result<(Arc<StoredApp>, Arc<super::grants::Grants>), DomainError> {
    let stored = authenticate(gw, req).await?;
    let app = &stored.app;
    match app.status_at(Utc::now()) {
        AppStatus::Active => {}
        // Revoked must be indistinguishable from unknown.
        AppStatus::Revoked => {
            inc(&gw.metrics.exchange_failures);
            return Err(DomainError::InvalidCredentials);
        }
        AppStatus::Expired => return Err(DomainError::KeyExpired),
    }
    if !app.allowed_ips.is_empty() && !IpNet::any_contains(&app.allowed_ips, req.client_ip) {
        return Err(DomainError::IpNotAllowed(crate::domain::cidr::canonical(
            req.client_ip,
        )));
    }
    let grants = super::grants::effective(gw, app).await?;
    Ok((stored, grants))
}

/// Exchanges application credentials for an access token.
pub async fn exchange(gw: &Gateway, req: ExchangeRequest) -> Result<IssuedToken, DomainError> {
    let (stored, grants) = authenticate_client(gw, &req).await?;
    let app = &stored.app;
    let now = Utc::now();
    let (granted, access) = super::grants::narrow(&grants, req.scope.as_deref())?;
    let audience = match req.audience.as_deref().map(str::trim) {
        None | Some("") => gw.settings.audience.clone(),
        Some(a) if a == gw.settings.audience || app.audiences.iter().any(|x| x == a) => {
            a.to_owned()
        }
        Some(a) => {
            return Err(DomainError::AudienceNotAllowed(format!(
                "audience {a:?} is not allowed for this application"
            )));
        }
    };
    if app.environment == Environment::Test && gw.settings.live_audiences.contains(&audience) {
        return Err(DomainError::AudienceNotAllowed(format!(
            "audience {audience:?} is reserved to live keys"
        )));
    }
    let ttl = app
        .token_ttl
        .map_or(gw.settings.token_ttl, |t| t.min(gw.settings.token_ttl));
    let iat = now.timestamp();
    let permissions: Vec<String> = granted.iter().map(|p| p.as_str().to_owned()).collect();
    let scope = permissions.join(" ");
    let claims = AccessClaims {
        iss: gw.issuer.clone(),
        sub: app.id.clone(),
        aud: audience,
        exp: iat + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
        iat,
        iat_ms: Some(now.timestamp_millis()),
        nbf: iat,
        jti: random::token_id().map_err(|e| DomainError::Internal(e.to_string()))?,
        client_id: app.id.clone(),
        scope: scope.clone(),
        roles: grants.roles.clone(),
        permissions,
        access,
        env: app.environment.as_str().to_owned(),
        key_type: app.key_type.to_string(),
        allowed_cidrs: (!app.allowed_ips.is_empty())
            .then(|| app.allowed_ips.iter().map(ToString::to_string).collect()),
    };
    let access_token =
        jwt::mint(&gw.keys, &claims).map_err(|e| DomainError::Internal(e.to_string()))?;
    inc(&gw.metrics.tokens_issued);
    gw.usage.record(&app.id, now, req.client_ip);
    tracing::debug!(app_id = %app.id, "token issued");
    Ok(IssuedToken {
        access_token,
        expires_in: ttl,
        scope,
    })
}
