//! Revocation: writing entries, checking tokens against them, introspection.
//!
//! Entries live as long as the tokens they cover can: a `jti` entry until
//! that token's `exp` plus the leeway, a subject or session entry for the
//! longest token lifetime plus the leeway plus [`MAX_STATE_AGE_SECS`].
//!
//! Revoking is bounded per caller: revoking the same token again is free
//! (the store appends nothing), and each client may add at most
//! [`REVOCATIONS_PER_WINDOW`] entries per [`REVOCATION_WINDOW`].

use chrono::Utc;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Gateway;
use crate::crypto::jwt;
use crate::domain::{AccessClaims, AccessGrant, DomainError, Revocation, RevocationKind, TokenRef};
use serde::{Deserialize, Serialize};

/// The longest an application snapshot may be used to mint after it was
/// read from the store; a subject entry must outlive every token minted from
/// a snapshot read before it.
pub const MAX_STATE_AGE_SECS: i64 = 60;

/// Seconds a subject entry must outlive its instant: every token issued
/// before it (even from an application snapshot read just before it and
/// used for up to [`MAX_STATE_AGE_SECS`]) has expired by then, even with a
/// verifier's leeway.
fn subject_lifetime(gw: &Gateway) -> i64 {
    i64::try_from(gw.policy.token_ttl + gw.policy.leeway)
        .unwrap_or(i64::MAX / 4)
        .saturating_add(MAX_STATE_AGE_SECS)
}

/// New entries one client may add through `/oauth/revoke` per window.
pub const REVOCATIONS_PER_WINDOW: u32 = 60;
/// The window of [`REVOCATIONS_PER_WINDOW`].
pub const REVOCATION_WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at most; beyond, finished windows are forgotten first.
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// A fixed-window count of the feed entries each client has added: what
/// keeps one client from growing the feed (and every verifier's work) at
/// will.
pub struct RevocationLimiter {
    window: Duration,
    limit: u32,
    counts: Mutex<HashMap<String, (u32, Instant)>>,
}

impl RevocationLimiter {
    /// `limit` new entries per `window` and client.
    pub fn new(window: Duration, limit: u32) -> Self {
        Self {
            window,
            limit,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one unit of `client`'s allowance, or `Err(seconds)` until the
    /// window ends when none is left.
    pub fn try_take(&self, client: &str) -> Result<(), u64> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= MAX_TRACKED_CLIENTS && !counts.contains_key(client) {
            let w = self.window;
            counts.retain(|_, (_, start)| start.elapsed() < w);
            if counts.len() >= MAX_TRACKED_CLIENTS {
                // Every tracked client is mid-window: refuse rather than
                // forget someone's count.
                return Err(1);
            }
        }
        let e = counts
            .entry(client.to_owned())
            .or_insert((0, Instant::now()));
        let age = e.1.elapsed();
        if age >= self.window {
            *e = (0, Instant::now());
        }
        if e.0 >= self.limit {
            return Err(self.window.saturating_sub(age).as_secs().max(1));
        }
        e.0 += 1;
        Ok(())
    }

    /// Gives back a unit taken for a revocation that appended nothing.
    pub fn give_back(&self, client: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = counts.get_mut(client) {
            e.0 = e.0.saturating_sub(1);
        }
    }
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
    if rev.appended {
        gw.metrics.revocation_published("subject");
    }
    let rev = rev.entry;
    gw.revocation_mirror.apply(&rev);
    // Snapshots of `sub` read before this instant can only mint tokens
    // that are born revoked: the next exchange must read afresh.
    gw.app_cache.invalidate(sub);
    gw.grants_cache.invalidate(sub);
    tracing::info!(sub, seq = rev.seq, "subject revoked");
    Ok(rev)
}

/// The longest session id accepted: real ones are `ses_` and a few dozen
/// characters; the bound keeps a caller from storing (and every verifier
/// from holding) arbitrary text.
const MAX_SID_LEN: usize = 128;

/// Revokes every access token of the session `sid` at once (logout, a
/// session deleted, a user disabled, a refresh token reused: docs/api.md, "People"). The
/// entry lives as long as a subject entry: however late a token of the
/// session was minted, it has expired, leeway included, when the entry is
/// forgotten. Revoking the same session again appends nothing.
///
/// # Errors
/// `Validation` for an empty or oversized `sid`; the store's error when it
/// cannot write.
pub async fn revoke_session(gw: &Gateway, sid: &str) -> Result<(), DomainError> {
    if sid.is_empty() || sid.len() > MAX_SID_LEN || sid.chars().any(char::is_control) {
        return Err(DomainError::Validation(
            "a session id is 1 to 128 printable characters".into(),
        ));
    }
    let now = Utc::now();
    let stored = gw
        .revocations
        .revoke(
            RevocationKind::Session {
                sid: sid.to_owned(),
            },
            now.timestamp() + subject_lifetime(gw),
        )
        .await?;
    gw.revocation_mirror.apply(&stored.entry);
    if stored.appended {
        gw.metrics.revocation_published("session");
        // The sid names a session, not a secret: it is safe to log.
        tracing::info!(sid, seq = stored.entry.seq, "session revoked");
    }
    Ok(())
}

/// The moment a token was issued, in milliseconds.
pub fn issued_ms(claims: &AccessClaims) -> i64 {
    TokenRef::from(claims).issued_ms
}

/// Whether a token from this gateway has been revoked: by its `jti`, its
/// subject, or its session.
pub async fn is_revoked(gw: &Gateway, claims: &AccessClaims) -> Result<bool, DomainError> {
    Ok(gw.revocations.is_revoked(&TokenRef::from(claims)).await?)
}

/// Reads a token of this gateway whatever its audience, without checking
/// revocation. `None` for anything that is not a live token of ours.
pub fn read_own_token(gw: &Gateway, token: &str) -> Option<AccessClaims> {
    if token.len() > 8 * 1024 {
        return None;
    }
    jwt::verify_any_audience(&gw.keys.current(), token, &gw.issuer, gw.policy.leeway).ok()
}

/// Revokes one token (RFC 7009) for the authenticated client `caller`.
/// `allowed` decides whether the caller may revoke a token with these
/// claims. Tokens that are not ours, malformed, expired or already revoked
/// need nothing and succeed silently (`None`), as the RFC asks, whatever the
/// caller's allowance; a new entry takes one unit of it (`RateLimited` when
/// none is left).
pub async fn revoke_token(
    gw: &Gateway,
    caller: &str,
    ip: std::net::IpAddr,
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
    // Already revoked (this token, or its subject): nothing to add, and
    // nothing taken from the caller's allowance.
    if is_revoked(gw, &claims).await? {
        return Ok(None);
    }
    let key = format!("{}\n{caller}", gw.issuer);
    gw.revocation_limiter
        .try_take(&key)
        .map_err(|retry_after| DomainError::RateLimited { retry_after })?;
    let cap = Utc::now().timestamp() + subject_lifetime(gw);
    // Verifiers accept a token until `exp` plus their leeway: the entry
    // must last as long.
    let leeway = i64::try_from(gw.policy.leeway).unwrap_or(i64::MAX / 4);
    let stored = gw
        .revocations
        .revoke(
            RevocationKind::Jti {
                jti: claims.jti.clone(),
            },
            claims.exp.saturating_add(leeway).min(cap),
        )
        .await;
    let stored = match stored {
        Ok(s) => s,
        Err(e) => {
            gw.revocation_limiter.give_back(&key);
            return Err(e.into());
        }
    };
    gw.revocation_mirror.apply(&stored.entry);
    if stored.appended {
        gw.metrics.revocation_published("jti");
        tracing::info!(jti = %claims.jti, sub = %claims.sub, seq = stored.entry.seq, "token revoked");
        let actor = super::auth::Principal {
            subject: caller.to_owned(),
            permissions: Vec::new(),
            owner: String::new(),
            ip,
            session: None,
        };
        super::audit::record(
            gw,
            &actor,
            "token.revoke",
            &claims.sub,
            serde_json::json!({"jti": claims.jti, "clientId": claims.client_id}),
        )
        .await;
    } else {
        gw.revocation_limiter.give_back(&key);
    }
    Ok(Some(stored.entry))
}

/// RFC 7662 introspection: the claims of a live token, else `active: false`
/// (revoked, expired, foreign, malformed, or issued to a deleted or revoked
/// application). The access rules (`access`) and the IP allow-list
/// (`allowed_cidrs`) are included when the token has them, under the
/// token's own claim names, so a resource server can enforce them.
pub async fn introspect(gw: &Gateway, token: &str) -> Result<IntrospectionBody, DomainError> {
    let Some(claims) = read_own_token(gw, token) else {
        return Ok(IntrospectionBody::default());
    };
    if is_revoked(gw, &claims).await? {
        return Ok(IntrospectionBody::default());
    }
    Ok(IntrospectionBody {
        active: true,
        scope: Some(claims.scope),
        client_id: Some(claims.client_id),
        sub: Some(claims.sub),
        aud: Some(claims.aud),
        iss: Some(claims.iss),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        nbf: Some(claims.nbf),
        jti: Some(claims.jti),
        token_type: Some("Bearer".into()),
        roles: Some(claims.roles),
        permissions: Some(claims.permissions),
        env: Some(claims.env),
        key_type: Some(claims.key_type),
        access: (!claims.access.is_empty()).then_some(claims.access),
        allowed_cidrs: claims.allowed_cidrs,
    })
}

/// The RFC 7662 introspection answer: `{"active": false}` for anything not
/// live, else the token's claims under their own names.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionBody {
    /// Whether the token is live.
    pub active: bool,
    /// Granted permissions, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The application the token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The token's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// `Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Role names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Granted permissions (may hold wildcards).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// `live` or `test`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// `secret` or `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Grants limited to resources, when the token has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<Vec<AccessGrant>>,
    /// The application's IP allow-list, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
}

/// One page of the revocation feed (`GET /api/v1/revocations`), for a
/// caller holding `tokens:introspect`; `limit` is 1 to 10,000.
pub async fn feed(
    gw: &Gateway,
    actor: &super::auth::Principal,
    since: Option<&str>,
    limit: usize,
) -> Result<crate::store::FeedPage, DomainError> {
    actor.require(crate::domain::permission::builtin::TOKENS_INTROSPECT)?;
    if !(1..=10_000).contains(&limit) {
        return Err(DomainError::Validation(
            "limit must be between 1 and 10000".into(),
        ));
    }
    Ok(gw.revocations.feed(since, limit).await?)
}

/// Forgets revocations whose tokens have all expired (run once a minute).
pub async fn purge_expired(gw: &Gateway) {
    let now = Utc::now().timestamp();
    if let Err(e) = gw.revocations.purge_expired(now).await {
        tracing::warn!(error = %e, "purging expired revocations failed");
    }
}

/// Whether the store answers (for `/readyz`).
pub async fn store_ready(gw: &Gateway) -> bool {
    gw.apps.ping().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::crypto::random;
    use crate::startup::Application;
    use secrecy::SecretString;

    const ADMIN: &str = "admin-session-test";

    fn settings(dir: &std::path::Path) -> Settings {
        Settings {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.join("data"),
            keys_dir: dir.join("keys"),
            workers: Some(1),
            admin_app_id: Some(ADMIN.into()),
            admin_app_secret: Some(SecretString::from("admin-secret-for-session-tests-01")),
            ..Settings::default()
        }
    }

    /// A token of the admin application, as a person's session would carry
    /// it (the login flow is another room's): `sid` set or not.
    fn token(gw: &Gateway, sid: Option<&str>) -> String {
        let now = Utc::now();
        let claims = AccessClaims {
            iss: gw.issuer.clone(),
            // A token with a session is a person's.
            sub: if sid.is_some() { PERSON } else { ADMIN }.into(),
            aud: gw.policy.audience.clone(),
            exp: now.timestamp() + 300,
            iat: now.timestamp(),
            iat_ms: Some(now.timestamp_millis()),
            nbf: now.timestamp(),
            jti: random::token_id().unwrap(),
            // People reach the gateway's own API through its own clients.
            client_id: if sid.is_some() { "tessera-cli" } else { ADMIN }.into(),
            scope: String::new(),
            roles: vec![],
            permissions: vec![],
            access: vec![],
            env: "live".into(),
            key_type: "secret".into(),
            allowed_cidrs: None,
            sid: sid.map(str::to_owned),
            amr: sid.map(|_| vec!["pwd".to_owned()]),
            idp: None,
            act: None,
            may_act: None,
        };
        jwt::mint(&gw.keys.current(), &claims).unwrap()
    }

    async fn active(gw: &Gateway, token: &str) -> bool {
        introspect(gw, token).await.unwrap().active
    }

    const PERSON: &str = "usr_sessiontest0001";

    async fn ending_a_session_ends_its_tokens_everywhere(gw: &Gateway) {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let now = Utc::now();
        gw.users
            .insert_user(&crate::store::StoredUser {
                user: crate::domain::User {
                    id: PERSON.into(),
                    email: "session-test@example.com".into(),
                    name: String::new(),
                    roles: vec![],
                    permissions: vec![],
                    status: crate::domain::UserStatus::Active,
                    identities: vec![],
                    has_password: false,
                    created_at: now,
                    updated_at: now,
                    last_login_at: None,
                },
                password_hash: None,
            })
            .await
            .unwrap();
        let (a, b) = ("ses_4fGh7Kq2LmN9pQrStUvWx0", "ses_Other0000000000000000");
        let (in_a, also_in_a, in_b, none) = (
            token(gw, Some(a)),
            token(gw, Some(a)),
            token(gw, Some(b)),
            token(gw, None),
        );
        for t in [&in_a, &also_in_a, &in_b, &none] {
            assert!(active(gw, t).await);
            assert!(
                super::super::auth::authenticate_bearer(gw, t, ip)
                    .await
                    .is_ok()
            );
        }
        let (_, start) = {
            let p = gw.revocations.feed(None, 1000).await.unwrap();
            (p.entries, p.cursor)
        };

        let before = Utc::now().timestamp();
        revoke_session(gw, a).await.unwrap();
        for t in [&in_a, &also_in_a] {
            assert!(!active(gw, t).await, "introspection: inactive");
            assert!(matches!(
                super::super::auth::authenticate_bearer(gw, t, ip).await,
                Err(DomainError::InvalidToken)
            ));
        }
        for t in [&in_b, &none] {
            assert!(active(gw, t).await, "other sessions and app tokens live on");
            assert!(
                super::super::auth::authenticate_bearer(gw, t, ip)
                    .await
                    .is_ok()
            );
        }

        // Again: nothing more is appended, unless the clock passed a second
        // in between (the new entry would then outlive the old by that
        // second). The entry outlives every token of the session, leeway
        // included.
        revoke_session(gw, a).await.unwrap();
        let page = gw.revocations.feed(Some(&start), 1000).await.unwrap();
        assert!(matches!(page.entries.len(), 1 | 2), "{:?}", page.entries);
        assert!(
            page.entries
                .windows(2)
                .all(|w| w[0].kind == w[1].kind && w[0].expires_at < w[1].expires_at),
            "{:?}",
            page.entries
        );
        let entry = &page.entries[0];
        assert_eq!(entry.kind, RevocationKind::Session { sid: a.into() });
        let longest = i64::try_from(gw.policy.token_ttl + gw.policy.leeway).unwrap();
        assert!(entry.expires_at >= before + longest, "{entry:?}");

        // RFC 7009 keeps working: a token already revoked by its session
        // needs nothing; another is revoked by its jti.
        let r = revoke_token(gw, ADMIN, ip, &in_a, |_| true).await.unwrap();
        assert_eq!(r, None);
        let r = revoke_token(gw, ADMIN, ip, &in_b, |_| true).await.unwrap();
        assert!(matches!(
            r,
            Some(Revocation {
                kind: RevocationKind::Jti { .. },
                ..
            })
        ));
        assert!(!active(gw, &in_b).await && active(gw, &none).await);

        for bad in [String::new(), "s".repeat(129), "ses_\n".into()] {
            assert!(matches!(
                revoke_session(gw, &bad).await,
                Err(DomainError::Validation(_))
            ));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ending_a_session_with_the_embedded_store() {
        let dir = tempfile::tempdir().unwrap();
        let app = Application::build(settings(dir.path())).await.unwrap();
        ending_a_session_ends_its_tokens_everywhere(app.gateway()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ending_a_session_with_redis() {
        let redis = crate::store::redis::test_server::RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.redis_url = Some(redis.url());
        // A shared store holds the signing keys sealed: it needs a KEK.
        s.kek = Some(SecretString::from(
            "dGVzc2VyYS10ZXN0LWtlay0zMi1ieXRlcy1sb25nISE=",
        ));
        let app = Application::build(s).await.unwrap();
        ending_a_session_ends_its_tokens_everywhere(app.gateway()).await;
    }
}
