//! The downstream verifier: accept this gateway's tokens with no call to the
//! gateway per request, and still refuse a revoked token within milliseconds.
//!
//! ```toml
//! tessera = { version = "0.1", default-features = false, features = ["verifier", "actix"] }
//! ```
//!
//! A [`Verifier`] holds a JWKS cache and an in-memory mirror of the
//! revocation list (fed by the Redis channel or by the gateway's feed).
//! [`Verifier::verify`] costs a signature check and at most three hash
//! lookups (the token's `jti`, subject and session).
//! With the `actix` feature, `actix::Authenticated` extracts verified claims
//! and answers failures in the gateway's error shape.

#[cfg(feature = "actix")]
pub mod actix;
pub mod jwks;
pub mod metrics;
pub mod mirror;

use secrecy::SecretString;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::crypto::jose::{self, JoseError};
use crate::domain::access::{allows, validate_path};
/// The forwarding-header choice of [`VerifierConfig::forwarded_header`].
pub use crate::domain::cidr::ForwardedHeader;
use crate::domain::{AccessClaims, IpNet, Permission, TokenRef};
use jwks::JwksCache;
use metrics::VerifierMetrics;
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
    /// Proxies whose forwarding header is believed when enforcing a token's
    /// IP allow-list. Default none: the socket peer is the client (the
    /// gateway's own rule, `domain::cidr::client_ip`).
    pub trusted_proxies: Vec<IpNet>,
    /// The one header those proxies name the client in. Default
    /// `X-Forwarded-For`: what nginx and most load balancers append. The
    /// other kind is never read, because a proxy passes a header it does
    /// not set through untouched, and the client would choose its address.
    /// A trusted proxy's header that does not name the client (missing,
    /// `unknown`, garbage) is a 400, never a fallback to the peer.
    pub forwarded_header: ForwardedHeader,
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
            forwarded_header: ForwardedHeader::XForwardedFor,
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
    /// The request is malformed: a trusted proxy's header does not name the
    /// client, or the resource it asks for is not a valid resource path.
    /// The message never quotes the offending text.
    #[error("{0}")]
    InvalidRequest(String),
}

/// The refusal of a resource that is not a valid path. It does not quote
/// the resource: that text comes from the request.
fn malformed_resource() -> VerifyError {
    VerifyError::InvalidRequest(
        "the resource of this request is malformed: each path segment must be \
         type:name of letters, digits, '_', '-' or '.'"
            .to_owned(),
    )
}

/// Builds a resource path from `(type, name)` pairs taken from a request,
/// such as path parameters: `resource(&[("cluster", id)])` is `cluster:<id>`.
///
/// Each type and name must be exactly one word of the resource grammar
/// (`domain::access`): no `/`, `:`, `*`, spaces or empty names. Without this
/// check a decoded `%2F` in a path parameter (`c1/project:p2`) would build
/// a deeper resource than the route names, and a token scoped to that
/// deeper resource would pass.
///
/// # Errors
/// `InvalidRequest` (400) for a malformed segment.
pub fn resource(segments: &[(&str, &str)]) -> Result<String, VerifyError> {
    let mut out = String::new();
    for (kind, name) in segments {
        let segment = format!("{kind}:{name}");
        // One segment, whatever the grammar says about the whole path.
        if segment.contains('/') || validate_path(&segment, true).is_err() {
            return Err(malformed_resource());
        }
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(&segment);
    }
    validate_path(&out, true).map_err(|_| malformed_resource())?;
    Ok(out)
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
    /// rule of `domain::access`, wildcards included). Never on a malformed
    /// resource (`cluster:*`, `cluster:a b`, an empty segment...), even for
    /// a token holding the permission everywhere: the caller built a
    /// resource from bad input, and nothing should be done with it.
    pub fn allows(&self, permission: &str, resource: Option<&str>) -> bool {
        if resource.is_some_and(|r| validate_path(r, true).is_err()) {
            return false;
        }
        Permission::parse(permission)
            .is_ok_and(|p| allows(&self.permissions, &self.claims.access, &p, resource))
    }

    /// `Ok` when [`VerifiedToken::allows`], else `Forbidden` naming it.
    ///
    /// # Errors
    /// `InvalidRequest` (400 `invalid_request`) when `resource` is not a
    /// valid resource path: a malformed resource is a bad request, whatever
    /// the token holds. `Forbidden` (403 `insufficient_permissions`) when
    /// the permission does not hold. This checks the whole path's shape
    /// only; build resources from request input with [`resource`], which
    /// also keeps each input to one segment.
    pub fn require(&self, permission: &str, resource: Option<&str>) -> Result<(), VerifyError> {
        if resource.is_some_and(|r| validate_path(r, true).is_err()) {
            return Err(malformed_resource());
        }
        if self.allows(permission, resource) {
            return Ok(());
        }
        Err(VerifyError::Forbidden(match resource {
            Some(r) => format!("this call needs the permission {permission} on {r}"),
            None => format!("this call needs the permission {permission}"),
        }))
    }

    /// Enforces the token's IP allow-list (`allowed_cidrs`), if it has one;
    /// a list with an entry that does not parse allows nobody, as at the
    /// gateway.
    pub fn check_client_ip(&self, ip: IpAddr) -> Result<(), VerifyError> {
        let Some(cidrs) = &self.claims.allowed_cidrs else {
            return Ok(());
        };
        if IpNet::listed_allow(cidrs, ip) {
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
    metrics: VerifierMetrics,
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
        // Before the first fetch, so start-up refreshes are counted too.
        let metrics = VerifierMetrics::new(&jwks.refreshes)
            .map_err(|e| VerifyError::Unavailable(format!("metrics: {e}")))?;
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
        Self::assemble(config, jwks, mirror, metrics)
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
        let metrics = VerifierMetrics::new(&jwks.refreshes)
            .map_err(|e| VerifyError::Unavailable(format!("metrics: {e}")))?;
        Self::assemble(config, jwks, mirror, metrics)
    }

    fn assemble(
        config: VerifierConfig,
        jwks: JwksCache,
        mirror: Option<Arc<RevocationMirror>>,
        metrics: VerifierMetrics,
    ) -> Result<Arc<Self>, VerifyError> {
        if let Some(m) = &mirror {
            metrics
                .watch_mirror(m, config.max_staleness)
                .map_err(|e| VerifyError::Unavailable(format!("metrics: {e}")))?;
        }
        Ok(Arc::new(Self {
            config,
            jwks,
            mirror,
            metrics,
        }))
    }

    /// The verifier's metrics in the Prometheus text format (serve it at
    /// your service's `/metrics`); see [`metrics`] for what they mean.
    pub fn metrics_text(&self) -> String {
        let mut out = String::with_capacity(4096);
        if let Err(e) =
            prometheus::TextEncoder::new().encode_utf8(&self.metrics.registry.gather(), &mut out)
        {
            tracing::error!(error = %e, "verifier metrics could not be rendered");
        }
        out
    }

    /// The registry holding the verifier's metrics, to gather with your
    /// service's own.
    pub fn metrics_registry(&self) -> &prometheus::Registry {
        &self.metrics.registry
    }

    /// Counts a refusal the service made itself (say a
    /// [`VerifiedToken::require`] that failed) under
    /// `tessera_verifier_refusals_total`. [`Verifier::verify`] and the actix
    /// extractor count theirs already.
    pub fn count_refusal(&self, e: &VerifyError) {
        self.metrics.refused(e);
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
    /// Every refusal is counted in `tessera_verifier_refusals_total`.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let res = self.verify_uncounted(token).await;
        if let Err(e) = &res {
            self.metrics.refused(e);
        }
        res
    }

    async fn verify_uncounted(&self, token: &str) -> Result<VerifiedToken, VerifyError> {
        let header =
            jose::read_header(token, self.config.max_token_bytes).map_err(VerifyError::Invalid)?;
        // A withdrawn signing key: its tokens are refused before any work,
        // even while the cached JWKS still holds it. A stale mirror is
        // judged below, once the token is known to be ours.
        if let Some(m) = &self.mirror
            && m.is_key_revoked(&header.kid)
        {
            return Err(VerifyError::Revoked);
        }
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
            // By jti, subject, or the person's session (`sid`); the key was
            // checked above.
            if m.is_revoked(&TokenRef::from(&claims)) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_from_request_input_stay_one_segment_each() {
        assert_eq!(resource(&[("cluster", "c1")]).unwrap(), "cluster:c1");
        assert_eq!(
            resource(&[("cluster", "c1"), ("project", "p-2.x_y")]).unwrap(),
            "cluster:c1/project:p-2.x_y"
        );
        for bad in [
            "c1/project:p2",
            "c1/",
            "*",
            "c1:x",
            "c1 x",
            "",
            "../c2",
            "c1%2Fp",
        ] {
            assert!(
                matches!(
                    resource(&[("cluster", bad)]),
                    Err(VerifyError::InvalidRequest(m)) if !m.contains(bad) || bad.is_empty()
                ),
                "{bad:?}"
            );
        }
        assert!(resource(&[]).is_err());
        assert!(resource(&[("clu/ster", "c1")]).is_err());
        let deep: Vec<(&str, &str)> = vec![("a", "b"); 17];
        assert!(resource(&deep).is_err());
    }
}
