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
//! 6. claims are minted and signed with the active key; those of an
//!    application's default token (no scope, no audience) are serialized
//!    once per application snapshot and grants value, each token adding its
//!    instants and id.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use std::net::IpAddr;
use std::sync::Arc;

use super::Gateway;
use super::cache::{AppSnapshot, DefaultToken, VerifiedSecret};
use super::grants::Grants;
use super::inflight::Outcome;
use super::metrics::{Cache, ExchangeOutcome, Grant};
use crate::crypto::hashing::HashError;
use crate::crypto::{SecretCheck, jwt, random, secret};
use crate::domain::claims::ClaimsTemplate;
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
pub struct IssuedToken {
    /// The signed JWT.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// Space-separated granted permissions (shared with the application's
    /// prepared default token).
    pub scope: Arc<str>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"<hidden>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Reads an application through the cache. The snapshot says when it was
/// read; a read that raced an invalidation is used but not cached.
pub async fn load_app(gw: &Gateway, id: &str) -> Result<Option<Arc<AppSnapshot>>, DomainError> {
    if let Some(snap) = gw.app_cache.get(id) {
        gw.metrics.cache(Cache::App, true);
        return Ok(Some(snap));
    }
    gw.metrics.cache(Cache::App, false);
    // Boxed so that a hit does not carry the store read's future.
    Box::pin(read_app(gw, id)).await
}

/// [`load_app`] on a miss: reads the store and fills the cache.
async fn read_app(gw: &Gateway, id: &str) -> Result<Option<Arc<AppSnapshot>>, DomainError> {
    let epoch = gw.app_cache.epoch();
    let as_of_ms = Utc::now().timestamp_millis();
    match gw.apps.get(id).await? {
        Some(app) => {
            let snap = Arc::new(AppSnapshot::new(Arc::new(app), as_of_ms));
            gw.app_cache.put(snap.clone(), epoch);
            Ok(Some(snap))
        }
        None => Ok(None),
    }
}

/// Hints are part of the stored secrets: compared in constant time.
fn same_hint(stored: Option<&str>, presented: &str) -> bool {
    stored.is_some_and(|s| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            s.as_bytes(),
            presented.as_bytes(),
        ))
    })
}

/// The hash a presented secret must match, or `None` when it cannot match
/// any: a generated key whose hint is neither the current secret's nor the
/// rotated-out one's (within its grace period) is forged or wrong, and is
/// refused without argon2. An unknown id is refused the same way, so the two
/// look alike, timing included; only a key carrying the right hint (24 bits
/// of the secret itself) ever costs a verification.
fn candidate_hash(
    app: &StoredApp,
    hint: Option<&str>,
    now: chrono::DateTime<Utc>,
) -> Option<Arc<str>> {
    let Some(h) = hint else {
        // A secret without a hint is operator-chosen; it can only match an
        // application whose secret was chosen that way (no stored hint).
        return app
            .secret_hint
            .is_none()
            .then(|| Arc::from(app.secret_hash.as_str()));
    };
    // A generated key can only match an application whose secret was
    // generated (it has a stored hint).
    if same_hint(app.secret_hint.as_deref(), h) {
        return Some(Arc::from(app.secret_hash.as_str()));
    }
    match &app.previous_secret {
        Some(prev) if prev.until > now && same_hint(prev.hint.as_deref(), h) => {
            Some(Arc::from(prev.hash.as_str()))
        }
        _ => None,
    }
}

/// Whether a verification still stands: its hash is the current one, or the
/// rotated-out one within its grace period (the clock is read only then).
fn still_valid(app: &StoredApp, verified_hash: &str, now: impl FnOnce() -> DateTime<Utc>) -> bool {
    *app.secret_hash == *verified_hash
        || app
            .previous_secret
            .as_ref()
            .is_some_and(|p| *p.hash == *verified_hash && p.until > now())
}

/// Which application the request names (`None` when it cannot name one),
/// and the secret's hint. `AppId` may be the application's id or its name
/// (ignoring case): see `apps::names_app` and `apps::resolve_app_id`. An
/// unknown name is refused as an unknown id is.
async fn claimed_id(
    gw: &Gateway,
    req: &ExchangeRequest,
) -> Result<(Option<String>, Option<String>), DomainError> {
    match secret::check(&gw.policy.key_prefix, &req.secret) {
        SecretCheck::Generated(parsed) => match &req.app_id {
            // The id form is compared as before: no lookup.
            Some(given)
                if *given != parsed.app_id
                    && !Box::pin(super::apps::names_app(gw, given, &parsed.app_id)).await? =>
            {
                Ok((None, None))
            }
            _ => Ok((Some(parsed.app_id), Some(parsed.hint))),
        },
        // A mistyped generated key: refuse at once, no lookup, no hashing.
        SecretCheck::Corrupt => Err(DomainError::InvalidCredentials),
        SecretCheck::Opaque => match &req.app_id {
            // Boxed, as the name lookup's future would otherwise ride along
            // in every exchange's.
            Some(given) => Ok((
                Box::pin(super::apps::resolve_app_id(gw, given)).await?,
                None,
            )),
            None => Err(DomainError::InvalidCredentials),
        },
    }
}

/// A revoked application is unknown to the exchange: its genuine secret
/// gets the answer, and the timing, of a wrong one.
fn usable(snap: Option<Arc<AppSnapshot>>) -> Option<Arc<AppSnapshot>> {
    snap.filter(|s| s.stored.app.revoked_at.is_none())
}

/// Verifies the secret and returns a snapshot of the application it belongs
/// to, read after the verification.
async fn authenticate(
    gw: &Gateway,
    req: &ExchangeRequest,
) -> Result<Arc<AppSnapshot>, DomainError> {
    let (id, hint) = match claimed_id(gw, req).await {
        Ok(found) => found,
        Err(e) => {
            gw.metrics.exchange_failure();
            return Err(e);
        }
    };
    let digest = gw.pepper.digest(&req.secret);
    // Warm path: a secret verified before, for an application still active
    // and still holding the hash it matched.
    if let (Some(id), Some(hit)) = (&id, gw.secret_cache.get(&digest))
        && *hit.app_id == **id
        && let Some(snap) = usable(load_app(gw, id).await?)
        && still_valid(&snap.stored, &hit.secret_hash, Utc::now)
    {
        gw.metrics.cache(Cache::Secret, true);
        return Ok(snap);
    }
    gw.metrics.cache(Cache::Secret, false);
    // Boxed: the argon2 path's future is large, and inlined it would make
    // every warm exchange allocate and copy it too.
    Box::pin(authenticate_cold(gw, req, id, hint, digest)).await
}

/// The rest of [`authenticate`] when the secret is not in the cache: the
/// limiter, then argon2 (shared by identical concurrent requests).
async fn authenticate_cold(
    gw: &Gateway,
    req: &ExchangeRequest,
    id: Option<String>,
    hint: Option<String>,
    digest: [u8; 32],
) -> Result<Arc<AppSnapshot>, DomainError> {
    let now = Utc::now();
    let reservation = match gw.limiter.reserve(req.client_ip) {
        Ok(r) => r,
        Err(retry_after) => {
            gw.metrics.rate_limited();
            return Err(DomainError::RateLimited { retry_after });
        }
    };
    let refuse = |reservation: super::limiter::Reservation| {
        reservation.fail();
        gw.metrics.exchange_failure();
        Err(DomainError::InvalidCredentials)
    };
    let Some(id) = id else {
        return refuse(reservation);
    };
    let Some(snap) = usable(load_app(gw, &id).await?) else {
        return refuse(reservation);
    };
    // The operator-configured admin: this gateway holds its secret, so an
    // HMAC comparison decides, with no argon2 for a flood to exhaust.
    // Whatever the presented key looks like: a forged generated-format key
    // naming the admin's id must not reach argon2 either.
    if let Some((admin_id, admin_digest)) = &gw.operator_admin
        && *admin_id == id
    {
        let same = bool::from(subtle::ConstantTimeEq::ct_eq(
            &digest[..],
            &admin_digest[..],
        ));
        // Only while the store still holds the hash bootstrap checked: a
        // secret replaced by another gateway's configuration ends here too.
        let current = gw
            .operator_admin_hash
            .get()
            .is_some_and(|h| *h == snap.stored.secret_hash);
        return if same && current {
            Ok(snap)
        } else {
            refuse(reservation)
        };
    }
    let Some(hash) = candidate_hash(&snap.stored, hint.as_deref(), now) else {
        return refuse(reservation);
    };
    let cache_epoch = gw.secret_cache.epoch();
    // Identical concurrent requests share one argon2 run.
    let outcome = gw
        .inflight
        .share(digest, hash.clone(), || async {
            if let Some(hit) = gw.secret_cache.get(&digest)
                && *hit.app_id == *id
                && *hit.secret_hash == *hash
            {
                return Outcome::Checked(true);
            }
            gw.metrics.secret_verification();
            match gw.hasher.verify(&req.secret, Some(hash.clone())).await {
                Ok(true) => {
                    gw.secret_cache.put(
                        digest,
                        VerifiedSecret {
                            app_id: Arc::from(id.as_str()),
                            secret_hash: hash.clone(),
                        },
                        cache_epoch,
                    );
                    Outcome::Checked(true)
                }
                Ok(false) => Outcome::Checked(false),
                Err(HashError::Busy) => Outcome::Busy,
                Err(HashError::Failed(e)) => Outcome::Failed(e),
            }
        })
        .await;
    match outcome {
        Outcome::Checked(true) => {}
        Outcome::Checked(false) => return refuse(reservation),
        Outcome::Busy => return Err(DomainError::Unavailable),
        Outcome::Failed(e) => return Err(DomainError::Internal(e)),
    }
    // argon2 took time: mint from the application as it is now, so a
    // revoke or rotation that landed meanwhile is refused here rather than
    // answered with a token that is dead on arrival.
    match usable(load_app(gw, &id).await?) {
        Some(fresh) if still_valid(&fresh.stored, &hash, Utc::now) => Ok(fresh),
        _ => refuse(reservation),
    }
}

/// Authenticates a client by its secret and applies the policy every use of
/// a secret must pass: revoked looks like unknown, expired says so only after
/// a correct secret, and the client IP must be allowed. Returns the
/// application snapshot and its effective grants.
pub async fn authenticate_client(
    gw: &Gateway,
    req: &ExchangeRequest,
) -> Result<(Arc<AppSnapshot>, Arc<Grants>), DomainError> {
    authenticate_client_at(gw, req)
        .await
        .map(|(snap, grants, _)| (snap, grants))
}

/// [`authenticate_client`], and the instant its policy was checked at: a
/// token minted from it is issued at that instant (one clock read serves
/// the check, the token and the usage record).
async fn authenticate_client_at(
    gw: &Gateway,
    req: &ExchangeRequest,
) -> Result<(Arc<AppSnapshot>, Arc<Grants>, DateTime<Utc>), DomainError> {
    let snap = authenticate(gw, req).await?;
    let app = &snap.stored.app;
    let now = Utc::now();
    match app.status_at(now) {
        AppStatus::Active => {}
        // Unreachable after `usable`, kept so a new status cannot slip by.
        AppStatus::Revoked => {
            gw.metrics.exchange_failure();
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
    Ok((snap, grants, now))
}

/// The instant a token minted from `snap` and `grants` speaks for: the
/// older of the two reads. A subject revocation written after a change
/// covers every token minted from state read before it, however late that
/// token is minted (docs/api.md, "Revocation").
fn state_instant(
    gw: &Gateway,
    snap: &AppSnapshot,
    grants: &Grants,
    now: DateTime<Utc>,
) -> Result<i64, DomainError> {
    let as_of = snap.as_of_ms.min(grants.as_of_ms);
    let age_ms = now.timestamp_millis() - as_of;
    // Subject entries outlive their instant by this margin; older state
    // could mint a token that outlives the entry meant to kill it.
    if age_ms > super::revocation::MAX_STATE_AGE_SECS * 1000 {
        tracing::warn!(age_ms, "application state too old to mint from");
        gw.app_cache.invalidate(&snap.stored.app.id);
        gw.grants_cache.invalidate(&snap.stored.app.id);
        return Err(DomainError::Unavailable);
    }
    Ok(as_of)
}

/// The audience a token for `app` may carry: the gateway's default when
/// none is asked for; else the requested one if it is the default or one of
/// the application's `audiences` (refused otherwise). A test key never
/// reaches a live-only audience.
pub fn audience_for(
    gw: &Gateway,
    app: &crate::domain::Application,
    requested: Option<&str>,
) -> Result<String, DomainError> {
    let audience = match requested.map(str::trim) {
        None | Some("") => gw.policy.audience.clone(),
        Some(a) if a == gw.policy.audience || app.audiences.iter().any(|x| x == a) => a.to_owned(),
        Some(a) => {
            return Err(DomainError::AudienceNotAllowed(format!(
                "audience {} is not allowed for this application",
                crate::domain::error::shown(a)
            )));
        }
    };
    if app.environment == Environment::Test && gw.policy.live_audiences.contains(&audience) {
        return Err(DomainError::AudienceNotAllowed(format!(
            "audience {} is reserved to live keys",
            crate::domain::error::shown(&audience)
        )));
    }
    Ok(audience)
}

/// Exchanges application credentials for an access token.
///
/// `req` is borrowed: an argument moved down a chain of async fns is kept
/// once per fn in the future, and actix boxes that future per request.
pub async fn exchange(gw: &Gateway, req: &ExchangeRequest) -> Result<IssuedToken, DomainError> {
    let started = gw.metrics.start();
    let result = exchange_timed(gw, req).await;
    gw.metrics.exchange(
        started,
        Grant::ClientCredentials,
        ExchangeOutcome::of(&result),
    );
    result
}

async fn exchange_timed(gw: &Gateway, req: &ExchangeRequest) -> Result<IssuedToken, DomainError> {
    let (snap, grants, now) = authenticate_client_at(gw, req).await?;
    let issued = issue(
        gw,
        &snap,
        &grants,
        req.scope.as_deref(),
        req.audience.as_deref(),
        now,
    )?;
    gw.usage.record(&snap.stored.app.id, now, req.client_ip);
    tracing::debug!(app_id = %snap.stored.app.id, "token issued");
    Ok(issued)
}

/// Whether a request leaves `scope` and `audience` to their defaults, as
/// [`super::grants::narrow`] and [`audience_for`] read them.
fn asks_default(scope: Option<&str>, audience: Option<&str>) -> bool {
    scope
        .map(|s| s.trim_matches(|c: char| c.is_ascii_whitespace()))
        .is_none_or(str::is_empty)
        && audience.map(str::trim).is_none_or(str::is_empty)
}

/// The token an exchange answers with: [`mint`]'s, except that the
/// claims of an application's default token are serialized once per
/// snapshot and grants (`cache::DefaultToken`), not once per token. Every
/// check stays per token: the state's age here, and before this, all of
/// `authenticate_client`.
fn issue(
    gw: &Gateway,
    snap: &AppSnapshot,
    grants: &Arc<Grants>,
    scope: Option<&str>,
    audience: Option<&str>,
    now: DateTime<Utc>,
) -> Result<IssuedToken, DomainError> {
    if !asks_default(scope, audience) {
        return mint_at(gw, snap, grants, scope, audience, now).map(|(issued, _)| issued);
    }
    // `narrow` and `audience_for` without a scope or an audience depend on
    // the snapshot, the grants and the configuration alone, so they run
    // only when the template is made. A check that depends on anything else
    // belongs before this point, for every token.
    let state_ms = state_instant(gw, snap, grants, now)?;
    let iat = now.timestamp();
    let internal = |e: &dyn std::fmt::Display| DomainError::Internal(e.to_string());
    let jti_chars = random::token_id_chars().map_err(|e| internal(&e))?;
    let jti = std::str::from_utf8(&jti_chars).map_err(|e| internal(&e))?;
    let mut payload = Vec::with_capacity(1024);
    let render = |d: &DefaultToken, payload: &mut Vec<u8>| {
        let exp = iat.saturating_add(i64::try_from(d.ttl).unwrap_or(i64::MAX / 2));
        d.claims
            .render(exp, iat, state_ms, iat, jti, payload)
            .map(|()| (d.scope.clone(), d.ttl))
            .map_err(|e| DomainError::Internal(format!("claims: {e}")))
    };
    let (scope, ttl) = match snap.with_default_token(grants, |d| render(d, &mut payload)) {
        Some(rendered) => rendered?,
        None => {
            // The first token of this state: the full claims, as `mint`
            // builds them, become the template.
            let narrowed = super::grants::narrow(grants, None, &gw.catalogue)?;
            let audience = audience_for(gw, &snap.stored.app, None)?;
            let (claims, ttl) =
                claims_of(gw, snap, narrowed, audience, now, state_ms, jti.to_owned());
            let Some(template) = ClaimsTemplate::new(claims.clone()) else {
                tracing::warn!("default token claims could not be prepared; signing them in full");
                return signed(gw, claims, ttl).map(|(issued, _)| issued);
            };
            let prepared = DefaultToken {
                grants: grants.clone(),
                claims: template,
                scope: claims.scope.into(),
                ttl,
            };
            let rendered = render(&prepared, &mut payload)?;
            snap.keep_default_token(prepared);
            rendered
        }
    };
    let access_token = jwt::mint_serialized(&gw.keys.current(), &payload)
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    gw.metrics.token_issued();
    Ok(IssuedToken {
        access_token,
        expires_in: ttl,
        scope,
    })
}

/// Mints an access token for an authenticated application from `snap` and
/// `grants`, narrowed to `scope`, for `audience`; returns it with its
/// claims.
pub fn mint(
    gw: &Gateway,
    snap: &AppSnapshot,
    grants: &Grants,
    scope: Option<&str>,
    audience: Option<&str>,
) -> Result<(IssuedToken, AccessClaims), DomainError> {
    mint_at(gw, snap, grants, scope, audience, Utc::now())
}

/// [`mint`] at `now`.
fn mint_at(
    gw: &Gateway,
    snap: &AppSnapshot,
    grants: &Grants,
    scope: Option<&str>,
    audience: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(IssuedToken, AccessClaims), DomainError> {
    let narrowed = super::grants::narrow(grants, scope, &gw.catalogue)?;
    let state_ms = state_instant(gw, snap, grants, now)?;
    let audience = audience_for(gw, &snap.stored.app, audience)?;
    let jti = random::token_id().map_err(|e| DomainError::Internal(e.to_string()))?;
    let (claims, ttl) = claims_of(gw, snap, narrowed, audience, now, state_ms, jti);
    signed(gw, claims, ttl)
}

/// The claims of a token for `snap` carrying `narrowed`, and its lifetime.
fn claims_of(
    gw: &Gateway,
    snap: &AppSnapshot,
    narrowed: super::grants::Narrowed,
    audience: String,
    now: DateTime<Utc>,
    state_ms: i64,
    jti: String,
) -> (AccessClaims, u64) {
    let app = &snap.stored.app;
    let ttl = app
        .token_ttl
        .map_or(gw.policy.token_ttl, |t| t.min(gw.policy.token_ttl));
    let iat = now.timestamp();
    let permissions: Vec<String> = narrowed
        .permissions
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    let scope = permissions.join(" ");
    let claims = AccessClaims {
        iss: gw.issuer.clone(),
        sub: app.id.clone(),
        aud: audience,
        exp: iat.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX / 2)),
        iat,
        iat_ms: Some(state_ms),
        nbf: iat,
        jti,
        client_id: app.id.clone(),
        scope,
        roles: narrowed.roles,
        permissions,
        access: narrowed.access,
        env: app.environment.as_str().to_owned(),
        key_type: app.key_type.to_string(),
        allowed_cidrs: (!app.allowed_ips.is_empty())
            .then(|| app.allowed_ips.iter().map(ToString::to_string).collect()),
        sid: None,
        amr: None,
        idp: None,
        act: None,
        may_act: None,
    };
    (claims, ttl)
}

/// Signs `claims` with the active key.
fn signed(
    gw: &Gateway,
    claims: AccessClaims,
    ttl: u64,
) -> Result<(IssuedToken, AccessClaims), DomainError> {
    let access_token =
        jwt::mint(&gw.keys.current(), &claims).map_err(|e| DomainError::Internal(e.to_string()))?;
    gw.metrics.token_issued();
    Ok((
        IssuedToken {
            access_token,
            expires_in: ttl,
            scope: claims.scope.as_str().into(),
        },
        claims,
    ))
}
