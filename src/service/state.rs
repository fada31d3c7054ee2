//! The gateway's shared state, built once at start-up and passed to every
//! handler as `web::Data<Gateway>`.

use std::sync::Arc;
use std::time::Duration;

use super::cache::{AppCache, GrantsCache, SecretCache};
use super::limiter::FailureLimiter;
use super::metrics::Metrics;
use super::usage::UsageRecorder;
use crate::config::Settings;
use crate::crypto::{Pepper, SecretHasher};
use crate::domain::Catalogue;
use crate::store::{
    AppStore, AuditStore, KeyStore, RateLimitStore, RevocationStore, RoleStore, SessionStore,
    UserStore,
};

/// Everything a request may need. The stores are private to the use cases
/// (`service::*`): handlers and start-up reach storage only through them.
pub struct Gateway {
    /// What the use cases need to know of the configuration, and no more.
    pub policy: Policy,
    /// How handlers find the client's address behind trusted proxies.
    pub client_address: ClientAddressRule,
    /// `iss` of minted tokens.
    pub issuer: String,
    /// Signing keys: the ring in use, kept in step with the store.
    pub keys: super::keyring::KeyRingCell,
    /// Permission catalogue.
    pub catalogue: Catalogue,
    /// Application storage.
    pub(in crate::service) apps: Arc<dyn AppStore>,
    /// Role storage.
    pub(in crate::service) roles: Arc<dyn RoleStore>,
    /// User storage.
    pub(in crate::service) users: Arc<dyn UserStore>,
    /// The audit log.
    pub(in crate::service) audit: Arc<dyn AuditStore>,
    /// Revocations and their feed.
    pub(in crate::service) revocations: Arc<dyn RevocationStore>,
    /// People's sessions, codes and refresh tokens.
    pub(in crate::service) sessions: Arc<dyn SessionStore>,
    /// Request budgets at the edge.
    pub(in crate::service) rate_limits: Arc<dyn RateLimitStore>,
    /// Effective grants recently computed.
    pub grants_cache: GrantsCache,
    /// argon2id on a bounded pool.
    pub hasher: SecretHasher,
    /// Applications recently read.
    pub app_cache: AppCache,
    /// Secrets recently verified (keyed by HMAC, never the secret).
    pub secret_cache: SecretCache,
    /// Failed-attempt limiter.
    pub limiter: FailureLimiter,
    /// Per-process HMAC key for the secret cache.
    pub pepper: Pepper,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Usage figures waiting to be written.
    pub usage: UsageRecorder,
    /// argon2 verifications in progress, shared by identical requests.
    pub inflight: super::inflight::Inflight,
    /// The operator-configured admin's id and the HMAC of its secret: this
    /// gateway holds that secret in its configuration, so it checks it
    /// without argon2 and a flood against the admin costs no hashing.
    pub operator_admin: Option<(String, [u8; 32])>,
    /// The stored hash bootstrap found (or wrote) for the configured
    /// secret: the HMAC shortcut holds only while the store still has it,
    /// so a secret replaced by another gateway stops working here too.
    pub operator_admin_hash: std::sync::OnceLock<String>,
    /// Failed sign-in counters (per address, per account and address).
    pub signin: super::people::signin::SignInThrottle,
    /// New feed entries each client may add through `/oauth/revoke`.
    pub revocation_limiter: super::revocation::RevocationLimiter,
    /// Wrong device user codes and device starts (per account, per address).
    pub device_throttle: super::people::device::DeviceThrottle,
    /// Upstream OpenID Connect providers (docs/api.md, "Single sign-on").
    pub sso: super::sso::Providers,
    /// The console's access tokens, held server-side per session.
    pub console_tokens: super::people::console::ConsoleTokens,
    /// The console's one-time slots (a new secret, a bulk outcome).
    pub console_reveals: super::people::reveal::Reveals,
    /// The revocation list in memory, as verifiers hold it (the edge reads it).
    pub revocation_mirror: super::mirror::GatewayMirror,
    /// Tokens minted at the edge for raw keys, reused until near expiry.
    pub forward_tokens: super::forward::ForwardTokens,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("issuer", &self.issuer)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The configuration the use cases read: their own small settings, so
/// services do not depend on the whole `Settings` (listening addresses,
/// directories and logging are start-up's business).
#[derive(Clone)]
pub struct Policy {
    /// Default `aud`, and the audience the admin API accepts.
    pub audience: String,
    /// Token lifetime ceiling, seconds.
    pub token_ttl: u64,
    /// Leeway for `exp`/`nbf`, seconds.
    pub leeway: u64,
    /// Prefix of generated secrets.
    pub key_prefix: String,
    /// Audiences reserved to live keys.
    pub live_audiences: Vec<String>,
    /// The operator-configured admin's id.
    pub admin_app_id: Option<String>,
    /// The operator-configured admin's secret.
    pub admin_app_secret: Option<secrecy::SecretString>,
    /// Sessions, refresh tokens and sign-in throttling.
    pub people: crate::config::PeopleSettings,
    /// The ensured admin user's email.
    pub admin_email: Option<String>,
    /// The ensured admin user's password.
    pub admin_password: Option<secrecy::SecretString>,
    /// The budget of an application without its own (docs/api.md, "At the edge"); `None`:
    /// no limit.
    pub rate_limit: Option<crate::domain::RateLimit>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("audience", &self.audience)
            .field("token_ttl", &self.token_ttl)
            .field("admin_app_id", &self.admin_app_id)
            .field("admin_app_secret", &"<hidden>")
            .finish_non_exhaustive()
    }
}

impl From<Settings> for Policy {
    fn from(s: Settings) -> Self {
        Self {
            audience: s.audience,
            token_ttl: s.token_ttl,
            leeway: s.leeway,
            key_prefix: s.key_prefix,
            live_audiences: s.live_audiences,
            admin_app_id: s.admin_app_id,
            admin_app_secret: s.admin_app_secret,
            people: s.people,
            admin_email: s.admin_email,
            admin_password: s.admin_password,
            rate_limit: s.rate_limit,
        }
    }
}

/// The trusted-proxy rule for finding the client's address.
#[derive(Clone, Debug)]
pub struct ClientAddressRule {
    /// Proxies whose forwarding header is believed.
    pub trusted_proxies: Vec<crate::domain::IpNet>,
    /// The one header they name the client in.
    pub header: crate::domain::cidr::ForwardedHeader,
}

/// The storage a gateway runs on, one trait object per concern; a backend
/// usually implements them all on one value.
#[derive(Clone)]
pub struct Stores {
    /// Applications.
    pub apps: Arc<dyn AppStore>,
    /// Roles.
    pub roles: Arc<dyn RoleStore>,
    /// Users.
    pub users: Arc<dyn UserStore>,
    /// Audit log.
    pub audit: Arc<dyn AuditStore>,
    /// Revocations.
    pub revocations: Arc<dyn RevocationStore>,
    /// People's sessions, codes and refresh tokens.
    pub sessions: Arc<dyn SessionStore>,
    /// Request budgets.
    pub rate_limits: Arc<dyn RateLimitStore>,
    /// The signing-key ring.
    pub keys: Arc<dyn KeyStore>,
}

impl Stores {
    /// Every concern served by one backend value.
    pub fn all<
        S: AppStore
            + RoleStore
            + UserStore
            + AuditStore
            + RevocationStore
            + SessionStore
            + RateLimitStore
            + KeyStore,
    >(
        s: S,
    ) -> Self {
        let s = Arc::new(s);
        Self {
            apps: s.clone(),
            roles: s.clone(),
            users: s.clone(),
            audit: s.clone(),
            revocations: s.clone(),
            sessions: s.clone(),
            rate_limits: s.clone(),
            keys: s,
        }
    }
}

/// Why the gateway could not be assembled.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

impl Gateway {
    /// Assembles the state from settings, a key ring and a store.
    pub fn new(
        settings: Settings,
        keys: super::keyring::KeyRingCell,
        stores: Stores,
    ) -> Result<Self, BuildError> {
        let catalogue = Catalogue::new(settings.permissions.clone())
            .map_err(|e| BuildError(format!("permissions: {e}")))?;
        let metrics = Metrics::new(settings.metrics);
        let hasher = SecretHasher::new(settings.hash_concurrency, settings.hash_queue)
            .map_err(|e| BuildError(e.to_string()))?
            .with_wait_histogram(metrics.argon2_wait());
        metrics.watch_hasher(&hasher.load());
        let pepper = Pepper::random().map_err(|e| BuildError(e.to_string()))?;
        let sso = super::sso::Providers::new(&settings.idp).map_err(BuildError)?;
        Ok(Self {
            sso,
            issuer: settings.issuer(),
            keys,
            catalogue,
            apps: stores.apps,
            roles: stores.roles,
            users: stores.users,
            audit: stores.audit,
            revocations: stores.revocations,
            sessions: stores.sessions,
            rate_limits: stores.rate_limits,
            grants_cache: GrantsCache::new(Duration::from_secs(30), 100_000),
            hasher,
            // Changes made here invalidate at once; the TTL bounds staleness
            // for changes made elsewhere.
            app_cache: AppCache::new(Duration::from_secs(30), 100_000),
            secret_cache: SecretCache::new(Duration::from_secs(settings.secret_cache_ttl), 100_000),
            limiter: FailureLimiter::new(Duration::from_secs(60), settings.max_failures_per_ip),
            operator_admin_hash: std::sync::OnceLock::new(),
            operator_admin: match (&settings.admin_app_id, &settings.admin_app_secret) {
                (Some(id), Some(secret)) => Some((id.clone(), pepper.digest(secret))),
                _ => None,
            },
            pepper,
            revocation_limiter: super::revocation::RevocationLimiter::new(
                super::revocation::REVOCATION_WINDOW,
                super::revocation::REVOCATIONS_PER_WINDOW,
            ),
            signin: super::people::signin::SignInThrottle::new(&settings.people),
            device_throttle: super::people::device::DeviceThrottle::default(),
            console_tokens: super::people::console::ConsoleTokens::default(),
            console_reveals: super::people::reveal::Reveals::default(),
            revocation_mirror: super::mirror::GatewayMirror::default(),
            forward_tokens: super::forward::ForwardTokens::default(),
            metrics,
            usage: UsageRecorder::default(),
            inflight: super::inflight::Inflight::default(),
            client_address: ClientAddressRule {
                trusted_proxies: settings.trusted_proxies.clone(),
                header: settings.forwarded_header,
            },
            policy: Policy::from(settings),
        })
    }
}
