//! Upstream OpenID Connect providers (docs/api.md, "Single sign-on"): the registry of configured
//! providers, their discovery documents and key sets, and checking their ID
//! tokens. The browser flow (`flow`) and token exchange build on it.
//!
//! Fetching is bounded on every side: timeouts, a body size limit, redirects
//! followed only on the same host, and retries with backoff. A provider that
//! is down at start does not stop the gateway: discovery is retried on first
//! use. The key set is refetched when a token names an unknown `kid`, at most
//! once per [`JWKS_REFETCH_EVERY`], so a flood of made-up `kid`s cannot make
//! the gateway hammer the provider.

pub mod flow;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use crate::config::IdpSettings;
use crate::crypto::jose::{self, JoseError, VerifyingKey};

/// Longest response body read from a provider.
const MAX_BODY_BYTES: usize = 512 * 1024;
/// Longest ID token accepted.
const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;
/// Fetch attempts before a provider is reported unavailable.
const ATTEMPTS: u32 = 3;
/// A failed discovery is not retried sooner than this (callers get the
/// failure at once meanwhile).
const DISCOVERY_RETRY_AFTER: Duration = Duration::from_secs(5);
/// A discovery document is refreshed after this long.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// The key set is fetched again at most this often on an unknown `kid`.
pub const JWKS_REFETCH_EVERY: Duration = Duration::from_secs(30);
/// A key set is refreshed after this long even without an unknown `kid`.
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// Longest `sub` accepted (OIDC Core §2: at most 255 ASCII characters).
const MAX_SUBJECT: usize = 255;
/// An ID token issued longer ago than this is refused, whatever its `exp`.
const MAX_AGE_SECS: i64 = 24 * 3600;

/// Why talking to a provider, or one of its ID tokens, failed. Messages
/// never carry a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SsoError {
    /// The provider could not be reached or answered nonsense.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The provider refused (token endpoint error, `error=` on callback).
    #[error("the identity provider refused: {0}")]
    Provider(String),
    /// The ID token failed a check.
    #[error("the ID token is not acceptable: {0}")]
    BadToken(String),
}

/// What discovery (OpenID Connect Discovery 1.0 §3) told us.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// Where the browser is sent.
    pub authorization_endpoint: String,
    /// Where codes are exchanged.
    pub token_endpoint: String,
    /// The key set.
    pub jwks_uri: String,
    /// How the token endpoint wants clients to authenticate.
    #[serde(default)]
    pub token_endpoint_auth_methods_supported: Vec<String>,
    /// ID token algorithms the provider may use.
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

impl Discovery {
    /// `client_secret_post` only when the provider lists it and not
    /// `client_secret_basic` (the default, OIDC Core §9).
    pub fn wants_post(&self) -> bool {
        let m = &self.token_endpoint_auth_methods_supported;
        m.iter().any(|x| x == "client_secret_post") && !m.iter().any(|x| x == "client_secret_basic")
    }
}

#[derive(Default)]
struct DiscoveryState {
    doc: Option<(Arc<Discovery>, Instant)>,
    failed_at: Option<Instant>,
}

#[derive(Default)]
struct KeyState {
    keys: Arc<Vec<VerifyingKey>>,
    fetched_at: Option<Instant>,
}

/// One configured provider and what was learnt from it.
pub struct Provider {
    /// Its configuration.
    pub settings: IdpSettings,
    discovery: tokio::sync::Mutex<DiscoveryState>,
    keys: tokio::sync::Mutex<KeyState>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Provider {
    /// The configured name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// What the sign-in button says.
    pub fn display_name(&self) -> &str {
        self.settings
            .display_name
            .as_deref()
            .unwrap_or(&self.settings.name)
    }

    /// The configured issuer, without a trailing `/`.
    fn issuer(&self) -> &str {
        self.settings.issuer.trim_end_matches('/')
    }

    /// What is known of discovery now, without fetching anything (for the
    /// console's read-only page).
    pub fn discovery_status(&self) -> DiscoveryStatus {
        let Ok(st) = self.discovery.try_lock() else {
            return DiscoveryStatus::Fetching;
        };
        match (&st.doc, st.failed_at) {
            (_, Some(t)) => DiscoveryStatus::Failed {
                ago: t.elapsed(),
                kept: st.doc.is_some(),
            },
            (Some((_, at)), None) => DiscoveryStatus::Discovered { ago: at.elapsed() },
            (None, None) => DiscoveryStatus::NotYet,
        }
    }
}

/// A provider's discovery as last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryStatus {
    /// Not tried yet (it is tried at start and on first use).
    NotYet,
    /// Being fetched right now.
    Fetching,
    /// The document was fetched this long ago.
    Discovered {
        /// Since the fetch.
        ago: Duration,
    },
    /// The last attempt failed this long ago.
    Failed {
        /// Since the failure.
        ago: Duration,
        /// Whether an older document is still in use.
        kept: bool,
    },
}

/// The configured providers and the HTTP client that talks to them.
pub struct Providers {
    list: Vec<Arc<Provider>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.list.iter().map(|p| p.name()))
            .finish()
    }
}

/// Follows at most three redirects, and only within the origin first
/// asked: a provider's document may move on its own origin, never to
/// another host, port (a service beside it) or scheme (https to http).
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_host = attempt
            .previous()
            .first()
            .is_some_and(|first| first.origin() == attempt.url().origin());
        if attempt.previous().len() > 3 || !same_host {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

impl Providers {
    /// The providers of `settings` (no network yet). Inside a tokio
    /// runtime, discovery and key sets are fetched in the background at
    /// once; a failure there is retried on first use.
    pub fn new(settings: &[IdpSettings]) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .redirect(redirect_policy())
            .user_agent("tessera-sso")
            .build()
            .map_err(|e| format!("identity provider HTTP client: {e}"))?;
        let list: Vec<Arc<Provider>> = settings
            .iter()
            .map(|s| {
                Arc::new(Provider {
                    settings: s.clone(),
                    discovery: tokio::sync::Mutex::new(DiscoveryState::default()),
                    keys: tokio::sync::Mutex::new(KeyState::default()),
                })
            })
            .collect();
        let providers = Self { list, http };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            for p in &providers.list {
                let (p, http) = (p.clone(), providers.http.clone());
                rt.spawn(async move {
                    match discover(&http, &p).await {
                        Ok(d) => {
                            if let Err(e) = refresh_keys(&http, &p, &d, true).await {
                                tracing::warn!(idp = %p.name(), error = %e, "identity provider keys not fetched at start");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(idp = %p.name(), error = %e, "identity provider not reachable at start; retried on first use");
                        }
                    }
                });
            }
        }
        Ok(providers)
    }

    /// The provider of this name.
    pub fn get(&self, name: &str) -> Option<Arc<Provider>> {
        self.list.iter().find(|p| p.name() == name).cloned()
    }

    /// Every provider, in configuration order.
    pub fn all(&self) -> &[Arc<Provider>] {
        &self.list
    }

    /// The provider whose issuer a token claims, read without checking
    /// anything: only to choose whose keys to check it against, after
    /// which it is checked in full.
    pub fn claimed_by(&self, token: &str) -> Option<Arc<Provider>> {
        use base64::Engine;
        if token.len() > MAX_ID_TOKEN_BYTES {
            return None;
        }
        let payload = token.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        let iss = claims["iss"].as_str()?.trim_end_matches('/');
        self.list.iter().find(|p| p.issuer() == iss).cloned()
    }

    /// The provider's discovery document (fetched on first use).
    pub async fn discovery(&self, p: &Provider) -> Result<Arc<Discovery>, SsoError> {
        discover(&self.http, p).await
    }

    /// Exchanges an authorization code at the provider's token endpoint;
    /// returns the ID token.
    pub async fn redeem_code(
        &self,
        p: &Provider,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<String, SsoError> {
        let d = self.discovery(p).await?;
        // Borrowed, not copied: the secret, code and verifier leave no
        // unwiped copies behind.
        let secret: &str = p
            .settings
            .client_secret
            .as_ref()
            .map(secrecy::ExposeSecret::expose_secret)
            .unwrap_or_default();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ];
        let mut req = self.http.post(&d.token_endpoint);
        if d.wants_post() {
            form.push(("client_id", &p.settings.client_id));
            form.push(("client_secret", secret));
        } else {
            // RFC 6749 §2.3.1: both parts form-encoded before Basic.
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(&p.settings.client_id), Some(enc(secret)));
        }
        let res = req
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| SsoError::Unavailable(format!("token endpoint: {}", e.without_url())))?;
        let status = res.status();
        let body = read_limited(res).await?;
        let json: Value = serde_json::from_slice(&body).map_err(|_| {
            SsoError::Unavailable("token endpoint answered something other than JSON".into())
        })?;
        if !status.is_success() {
            let code = json["error"].as_str().unwrap_or("error");
            return Err(SsoError::Provider(format!(
                "token endpoint: {}",
                crate::domain::error::shown(code)
            )));
        }
        json["id_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SsoError::Provider("token endpoint returned no id_token".into()))
    }

    /// Checks a provider's ID token in full: signature against its key set
    /// (refetched once, rate-limited, on an unknown `kid`), `iss`, `aud`
    /// containing our client id, `azp` (required when several audiences,
    /// and then ours), `exp`, `iat` (not ahead beyond `leeway_secs`, not
    /// older than a day), and `nonce` when `nonce` is given.
    pub async fn check_id_token(
        &self,
        p: &Provider,
        token: &str,
        nonce: Option<&str>,
        leeway_secs: u64,
    ) -> Result<IdClaims, SsoError> {
        let d = self.discovery(p).await?;
        let bad = |e: JoseError| SsoError::BadToken(e.to_string());
        let decode = |keys: &[VerifyingKey]| {
            jose::decode_upstream_id_token(
                token,
                keys,
                // The issuer exactly as discovery declared it (equal to the
                // configured one but for a trailing `/`, which `iss` keeps).
                &d.issuer,
                &p.settings.client_id,
                leeway_secs,
                MAX_ID_TOKEN_BYTES,
            )
        };
        let keys = current_keys(&self.http, p, &d).await?;
        let claims = match decode(&keys) {
            Err(JoseError::UnknownKey(_)) => {
                let keys = refresh_keys(&self.http, p, &d, false).await?;
                decode(&keys).map_err(bad)?
            }
            other => other.map_err(bad)?,
        };
        IdClaims::check(
            claims,
            &p.settings.client_id,
            nonce,
            leeway_secs,
            &p.settings.groups_claim,
        )
    }
}

/// The parts of a checked ID token the gateway uses.
#[derive(Clone)]
pub struct IdClaims {
    /// The provider's subject.
    pub sub: String,
    /// The email, when given.
    pub email: Option<String>,
    /// Whether the provider verified it.
    pub email_verified: bool,
    /// The display name, when given.
    pub name: Option<String>,
    /// The groups claim's values.
    pub groups: Vec<String>,
    /// When the ID token expires (seconds since the epoch).
    pub exp: i64,
}

impl std::fmt::Debug for IdClaims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdClaims")
            .field("sub", &self.sub)
            .field("email_verified", &self.email_verified)
            .field("groups", &self.groups.len())
            .finish_non_exhaustive()
    }
}

impl IdClaims {
    /// The checks `jose` leaves to us, then the claims we keep.
    fn check(
        c: Value,
        client_id: &str,
        nonce: Option<&str>,
        leeway_secs: u64,
        groups_claim: &str,
    ) -> Result<Self, SsoError> {
        let bad = |m: &str| SsoError::BadToken(m.to_owned());
        let several = c["aud"].as_array().is_some_and(|a| a.len() > 1);
        match c.get("azp").map(|v| v.as_str()) {
            Some(Some(azp)) if azp != client_id => return Err(bad("azp names another client")),
            Some(None) => return Err(bad("azp is not a string")),
            None if several => return Err(bad("several audiences and no azp")),
            _ => {}
        }
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(leeway_secs).unwrap_or(60);
        let exp = c["exp"]
            .as_i64()
            .ok_or_else(|| bad("exp is not a number"))?;
        let iat = c["iat"]
            .as_i64()
            .ok_or_else(|| bad("iat is not a number"))?;
        if iat > now + leeway {
            return Err(bad("iat is in the future"));
        }
        if iat < now - MAX_AGE_SECS {
            return Err(bad("iat is too old"));
        }
        if let Some(expected) = nonce {
            let given = c["nonce"].as_str().ok_or_else(|| bad("nonce is missing"))?;
            if !crate::crypto::opaque::same(given, expected) {
                return Err(bad("nonce does not match"));
            }
        }
        let sub = c["sub"].as_str().unwrap_or_default();
        if sub.is_empty() || sub.len() > MAX_SUBJECT || sub.chars().any(char::is_control) {
            return Err(bad("sub is empty, too long or malformed"));
        }
        let email_verified = match &c["email_verified"] {
            Value::Bool(b) => *b,
            // Some providers send the string.
            Value::String(s) => s == "true",
            _ => false,
        };
        let groups = match &c[groups_claim] {
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .take(1000)
                .map(str::to_owned)
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        Ok(Self {
            sub: sub.to_owned(),
            email: c["email"].as_str().map(str::to_owned),
            email_verified,
            // The provider's text goes into the user record, the audit log
            // and pages: no control characters, at most 100 characters.
            name: c["name"]
                .as_str()
                .map(|n| n.chars().filter(|ch| !ch.is_control()).take(100).collect()),
            groups,
            exp,
        })
    }
}

/// Reads a body of at most [`MAX_BODY_BYTES`].
async fn read_limited(mut res: reqwest::Response) -> Result<Vec<u8>, SsoError> {
    if res
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(SsoError::Unavailable("response too large".into()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = res
        .chunk()
        .await
        .map_err(|e| SsoError::Unavailable(e.without_url().to_string()))?
    {
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(SsoError::Unavailable("response too large".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// GETs a JSON document, retrying with backoff.
async fn fetch_json(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, SsoError> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        match http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
        {
            Ok(res) if res.status().is_success() => return read_limited(res).await,
            Ok(res) => last = format!("status {}", res.status().as_u16()),
            Err(e) => last = e.without_url().to_string(),
        }
    }
    Err(SsoError::Unavailable(last))
}

/// The discovery document, fetched (with retries) when absent or old. One
/// fetch at a time per provider; after a failure, callers are refused at
/// once for [`DISCOVERY_RETRY_AFTER`].
async fn discover(http: &reqwest::Client, p: &Provider) -> Result<Arc<Discovery>, SsoError> {
    let mut st = p.discovery.lock().await;
    if let Some((d, at)) = &st.doc
        && at.elapsed() < DISCOVERY_TTL
    {
        return Ok(d.clone());
    }
    // After a failure, callers get the old document (or a refusal) at once
    // rather than each queueing behind another round of retries.
    if st
        .failed_at
        .is_some_and(|t| t.elapsed() < DISCOVERY_RETRY_AFTER)
    {
        return match &st.doc {
            Some((d, _)) => Ok(d.clone()),
            None => Err(SsoError::Unavailable("discovery failed moments ago".into())),
        };
    }
    let url = format!("{}/.well-known/openid-configuration", p.issuer());
    let fetched = fetch_json(http, &url).await.and_then(|body| {
        let d: Discovery = serde_json::from_slice(&body)
            .map_err(|e| SsoError::Unavailable(format!("discovery document: {e}")))?;
        // OIDC Discovery §4.3: the issuer must be exactly the one asked.
        if d.issuer.trim_end_matches('/') != p.issuer() {
            return Err(SsoError::Unavailable(
                "discovery names another issuer".into(),
            ));
        }
        let plain = p.issuer().starts_with("http://");
        for u in [&d.authorization_endpoint, &d.token_endpoint, &d.jwks_uri] {
            if !endpoint_allowed(u, plain) {
                return Err(SsoError::Unavailable(
                    "discovery names an endpoint that is not an https URL".into(),
                ));
            }
        }
        Ok(Arc::new(d))
    });
    match fetched {
        Ok(d) => {
            st.doc = Some((d.clone(), Instant::now()));
            st.failed_at = None;
            Ok(d)
        }
        Err(e) => {
            st.failed_at = Some(Instant::now());
            // An old document is still better than none.
            match &st.doc {
                Some((d, _)) => Ok(d.clone()),
                None => Err(e),
            }
        }
    }
}

/// Whether a discovered endpoint may be used: https, or http only when the
/// issuer itself is plain http (local use), so the secret, codes and keys
/// of an https provider never travel in the clear.
fn endpoint_allowed(u: &str, plain_issuer: bool) -> bool {
    url::Url::parse(u).is_ok_and(|u| match u.scheme() {
        "https" => true,
        "http" => plain_issuer,
        _ => false,
    })
}

/// The cached keys, fetched when there are none or they are old.
async fn current_keys(
    http: &reqwest::Client,
    p: &Provider,
    d: &Discovery,
) -> Result<Arc<Vec<VerifyingKey>>, SsoError> {
    {
        let st = p.keys.lock().await;
        if st.fetched_at.is_some_and(|t| t.elapsed() < JWKS_TTL) {
            return Ok(st.keys.clone());
        }
    }
    refresh_keys(http, p, d, false).await
}

/// Fetches the key set again unless it was fetched within
/// [`JWKS_REFETCH_EVERY`] (then the cached one is returned): the rate limit
/// on unknown `kid`s. `force` skips the limit (start-up only).
async fn refresh_keys(
    http: &reqwest::Client,
    p: &Provider,
    d: &Discovery,
    force: bool,
) -> Result<Arc<Vec<VerifyingKey>>, SsoError> {
    let mut st = p.keys.lock().await;
    if !force
        && st
            .fetched_at
            .is_some_and(|t| t.elapsed() < JWKS_REFETCH_EVERY)
    {
        return Ok(st.keys.clone());
    }
    // Counted as an attempt even when it fails: a provider that is down is
    // not asked again by every request.
    st.fetched_at = Some(Instant::now());
    let body = fetch_json(http, &d.jwks_uri).await?;
    let text = String::from_utf8(body)
        .map_err(|_| SsoError::Unavailable("key set is not UTF-8".into()))?;
    let mut keys = jose::parse_jwks(&text).map_err(|e| SsoError::Unavailable(e.to_string()))?;
    // When discovery names the algorithms it signs ID tokens with, keys of
    // any other algorithm are not for ID tokens.
    if !d.id_token_signing_alg_values_supported.is_empty() {
        keys.retain(|k| {
            d.id_token_signing_alg_values_supported
                .iter()
                .any(|a| a == jose::algorithm_name(k.alg))
        });
    }
    st.keys = Arc::new(keys);
    Ok(st.keys.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims() -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"sub": "s1", "aud": "me", "iat": now, "exp": now + 60, "nonce": "n1", "email": "a@b.c", "email_verified": "true", "groups": ["g1", 7, "g2"]})
    }

    #[test]
    fn an_https_provider_never_names_http_endpoints() {
        assert!(endpoint_allowed("https://idp.example/token", false));
        assert!(!endpoint_allowed("http://idp.example/token", false));
        assert!(!endpoint_allowed("file:///etc/passwd", false));
        assert!(!endpoint_allowed("file:///etc/passwd", true));
        assert!(endpoint_allowed("http://127.0.0.1:8080/token", true));
    }

    #[test]
    fn claim_checks() {
        let ok = IdClaims::check(claims(), "me", Some("n1"), 30, "groups").unwrap();
        assert_eq!(ok.groups, vec!["g1".to_owned(), "g2".to_owned()]);
        assert!(ok.email_verified);
        assert!(IdClaims::check(claims(), "me", Some("n2"), 30, "groups").is_err());
        let mut c = claims();
        c["aud"] = json!(["me", "other"]);
        assert!(IdClaims::check(c.clone(), "me", None, 30, "groups").is_err());
        c["azp"] = json!("me");
        assert!(IdClaims::check(c.clone(), "me", None, 30, "groups").is_ok());
        c["azp"] = json!("other");
        assert!(IdClaims::check(c, "me", None, 30, "groups").is_err());
        let mut c = claims();
        c["iat"] = json!(chrono::Utc::now().timestamp() + 3600);
        assert!(IdClaims::check(c, "me", None, 30, "groups").is_err());
        let mut c = claims();
        c["sub"] = json!("");
        assert!(IdClaims::check(c, "me", None, 30, "groups").is_err());
    }
}
