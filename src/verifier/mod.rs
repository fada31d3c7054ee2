//! The downstream verifier: accept this gateway's tokens with no call to the
//! gateway per request, and still refuse a revoked token within milliseconds.
//!
//! ```toml
//! tessera = { version = "0.1", default-features = false, features = ["verifier", "actix"] }
//! ```
//!
//! A [`Verifier`] holds a JWKS cache and an in-memory mirror of the
//! revocation list (fed by the Redis channel or by the gateway's feed).
//! [`Verifier::verify`] costs a signature check and two hash lookups.
//! With the `actix` feature, `actix::Authenticated` extracts verified claims
//! and answers failures in the gateway's error shape.

#[cfg(feature = "actix")]
pub mod actix;
pub mod jwks;
pub mod mirror;

use secrecy::SecretString;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::jose::{self, JoseError};
use crate::domain::access::allows;
use crate::domain::{AccessClaims, IpNet, Permission};
use jwks::JwksCache;
use mirror::RevocationMirror;

/// Where revocations come from.
#[derive(Clone)]
pub enum RevocationSource {
    /// Subscribe to the gateway's Redis channel; load the full set from Redis
    /// at start and after every reconnect.
    Redis {
        /// `redis://…`
        url: String,
        /// The gateway's `TESSERA_REDIS_PREFIX` (default `tessera:`).
        prefix: String,
    },
    /// Poll `GET /api/v1/revocations?since=` with the gateway's own
    /// credentials (an application holding `tokens:introspect`).
    Feed {
        /// Gateway base URL.
        gateway_url: String,
        /// AppId.
        app_id: String,
        /// AppSecret.
        app_secret: SecretString,
        /// Time between polls. Default 1 s.
        every: Duration,
    },
    /// No revocation checking: only for tokens that are never revoked.
    Disabled,
}

impl std::fmt::Debug for RevocationSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redis { url, prefix } => write!(f, "Redis({url}, {prefix})"),
            Self::Feed { gateway_url, .. } => {
                write!(f, "Feed({gateway_url}, <credentials hidden>)")
            }
            Self::Disabled => f.write_str("Disabled"),
        }
    }
}

/// How strict to be. Each setting's default and why.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    /// Where the keys are: `<gateway>/.well-known/jwks.json`.
    pub jwks_url: String,
    /// Required `iss`: the gateway's issuer. Tokens of another issuer are
    /// refused even when signed by a published key.
    pub issuer: String,
    /// Required `aud`: this service's own audience, so a token minted for
    /// another service cannot be replayed here.
    pub audience: String,
    /// Clock leeway for `exp` and `nbf`. Default 30 s: enough for ordinary
    /// clock skew, small against the default 10-minute token life.
    pub leeway: Duration,
    /// Largest token accepted. Default 8 KiB: real tokens are well under
    /// 2 KiB; the bound keeps parsing cost and memory per request small.
    pub max_token_bytes: usize,
    /// At most one JWKS refresh per this interval when an unknown `kid`
    /// appears. Default 10 s: a flood of forged `kid`s cannot make us hammer
    /// the gateway, and a genuinely new key is picked up within seconds.
    pub jwks_min_refresh: Duration,
    /// JWKS lifetime when the response has no `Cache-Control: max-age`.
    /// Default 300 s, matching the gateway's header.
    pub jwks_default_max_age: Duration,
    /// Where revocations come from.
    pub revocations: RevocationSource,
    /// A mirror that has not heard from its source for longer than this is
    /// stale. Default 10 s: ten feed polls, or a Redis reconnect that failed
    /// for that long.
    pub max_staleness: Duration,
    /// What to do with a stale mirror. Default `false`: fail closed (503),
    /// because a revoked token must not be accepted just because the
    /// revocation could not reach us. Set `true` to keep accepting tokens
    /// during an outage of the revocation source.
    pub fail_open_when_stale: bool,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed
    /// when enforcing a token's IP allow-list. Default none: the socket peer
    /// is the client (the gateway's own rule, `domain::cidr::client_ip`).
    pub trusted_proxies: Vec<IpNet>,
}

impl VerifierConfig {
    /// Defaults for a gateway at `gateway_url` with issuer `issuer`, for
    /// a service whose audience is `audience`.
    pub fn new(
        gateway_url: &str,
        issuer: &str,
        audience: &str,
        revocations: RevocationSource,
    ) -> Self {
        Self {
            jwks_url: format!(
                "{}/.well-known/jwks.json",
                gateway_url.trim_end_matches('/')
            ),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: Duration::from_secs(30),
            max_token_bytes: 8 * 1024,
            jwks_min_refresh: Duration::from_secs(10),
            jwks_default_max_age: Duration::from_secs(300),
            revocations,
            max_staleness: Duration::from_secs(10),
            fail_open_when_stale: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// No bearer token.
    #[error("an access token is required")]
    Missing,
    /// Malformed, badly signed, expired, foreign, for another audience…
    #[error("invalid token: {0}")]
    Invalid(JoseError),
    /// In the revocation mirror.
    #[error("the token has been revoked")]
    Revoked,
    /// The mirror is staler than allowed and we fail closed.
    #[error("revocation data is stale; refusing tokens until it is fresh")]
    Stale,
    /// The client address is outside the token's allow-list.
    #[error("requests from {0} are not allowed for this token")]
    IpNotAllowed(IpAddr),
    /// The token lacks a permission (on a resource).
    #[error("{0}")]
    Forbidden(String),
    /// The verifier could not start (JWKS unreachable, bad config).
    #[error("verifier unavailable: {0}")]
    Unavailable(String),
}

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Its claims.
    pub claims: AccessClaims,
    permissions: Vec<Permission>,
}

impl VerifiedToken {
    /// Whether `permission` holds, everywhere or on `resource` (the matching
    /// rule of `domain::access`, wildcards included).
    pub fn allows(&self, permission: &str, resource: Option<&str>) -> bool {
        Permission::parse(permission)
            .is_ok_and(|p| allows(&self.permissions, &self.claims.access, &p, resource))
    }

    /// `Ok` when [`VerifiedToken::allows`], else `Forbidden` naming it.
    pub fn require(&self, permission: &str, resource: Option<&str>) -> Result<(), VerifyError> {
        if self.allows(permission, resource) {
            return Ok(());
        }
        Err(VerifyError::Forbidden(match resource {
            Some(r) => format!("this call needs the permission {permission} on {r}"),
            None => format!("this call needs the permission {permission}"),
        }))
    }

    /// Enforces the token's IP allow-list (`allowed_cidrs`), if it has one.
    pub fn check_client_ip(&self, ip: IpAddr) -> Result<(), VerifyError> {
        let Some(cidrs) = &self.claims.allowed_cidrs else {
            return Ok(());
        };
        let nets: Vec<IpNet> = cidrs.iter().filter_map(|c| IpNet::parse(c).ok()).collect();
        if IpNet::any_contains(&nets, ip) {
            Ok(())
        } else {
            Err(VerifyError::IpNotAllowed(crate::domain::cidr::canonical(
                ip,
            )))
        }
    }
}

/// Verifies tokens locally. Share one per process (`Arc`).
pub struct Verifier {
    config: VerifierConfig,
    jwks: JwksCache,
    mirror: Option<Arc<RevocationMirror>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.config.issuer)
            .field("audience", &self.config.audience)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Fetches the JWKS (retrying for a few seconds) and starts following
    /// revocations. Needs a tokio runtime.
    pub async fn start(config: VerifierConfig) -> Result<Arc<Self>, VerifyError> {
        let jwks = JwksCache::new(&config)?;
        let mut last = None;
        for _ in 0..20 {
            match jwks.refresh_now().await {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        if let Some(e) = last {
            return Err(VerifyError::Unavailable(format!(
                "JWKS {}: {e}",
                config.jwks_url
            )));
        }
        let mirror = match &config.revocations {
            RevocationSource::Disabled => None,
            source => Some(RevocationMirror::follow(source.clone())),
        };
        Ok(Arc::new(Self {
            config,
            jwks,
            mirror,
        }))
    }

    /// A verifier with a fixed key set and a mirror fed by the caller: for
    /// services that pin keys, and for tests and benchmarks. Nothing is
    /// fetched; `config.jwks_url` and `config.revocations` are not used.
    pub fn with_fixed_keys(
        config: VerifierConfig,
        jwks_json: &str,
        mirror: Option<Arc<RevocationMirror>>,
    ) -> Result<Arc<Self>, VerifyError> {
        let jwks = JwksCache::fixed(&config, jwks_json)?;
        Ok(Arc::new(Self {
            config,
            jwks,
            mirror,
        }))
    }

    /// The configuration in force.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// The revocation mirror, if revocations are followed.
    pub fn mirror(&self) -> Option<&RevocationMirror> {
        self.mirror.as_deref()
    }

    /// Checks a token: size, `typ`, key by `kid` (algorithm from the key),
    /// signature, `exp`/`nbf` with leeway, `iss`, `aud`, then revocation.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let header =
            jose::read_header(token, self.config.max_token_bytes).map_err(VerifyError::Invalid)?;
        let key = self
            .jwks
            .key(&header.kid)
            .await
            .map_err(VerifyError::Invalid)?;
        let claims: AccessClaims = jose::decode(
            token,
            &header,
            &key,
            Some(&self.config.issuer),
            Some(&self.config.audience),
            self.config.leeway.as_secs(),
        )
        .map_err(VerifyError::Invalid)?;
        if let Some(m) = &self.mirror {
            if !self.config.fail_open_when_stale && m.is_stale(self.config.max_staleness) {
                return Err(VerifyError::Stale);
            }
            let issued_ms = claims.iat_ms.unwrap_or(claims.iat.saturating_mul(1000));
            if m.is_revoked(&claims.jti, &claims.sub, issued_ms) {
                return Err(VerifyError::Revoked);
            }
        }
        let permissions = claims
            .permissions
            .iter()
            .filter_map(|p| Permission::parse(p).ok())
            .collect();
        Ok(VerifiedToken {
            claims,
            permissions,
        })
    }
}
