//! Settings: built-in defaults, then an optional TOML file, then `TESSERA_*`
//! environment variables. A bad setting is an error naming the setting.

use secrecy::SecretString;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::crypto::SigningAlg;
use crate::domain::PermissionDef;

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Everything the gateway can be told. Field docs give the default.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub listen: String,
    /// `iss` of minted tokens. Default `http://<listen>`.
    pub issuer: Option<String>,
    /// Default `aud` of minted tokens, and the audience the gateway's own
    /// admin API accepts. Default `tessera`.
    pub audience: String,
    /// Embedded store directory. Default `./data`.
    pub data_dir: PathBuf,
    /// PEM signing keys imported by the first start on an empty store (and,
    /// on the embedded store, where that start writes its first keys).
    /// Default `./keys`.
    pub keys_dir: PathBuf,
    /// Shared Redis backend; unset means the embedded store.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and of the change channel. Default
    /// `tessera:`; several deployments may share one Redis with different
    /// prefixes.
    pub redis_prefix: String,
    /// Token lifetime in seconds and the ceiling for per-application TTLs.
    /// Default 600.
    pub token_ttl: u64,
    /// Prefix of generated secrets. Default `tsr`.
    pub key_prefix: String,
    /// `tracing` filter. Default `info`.
    pub log: String,
    /// `pretty` or `json`. Default `pretty`.
    pub log_format: LogFormat,
    /// Algorithm of generated and active signing keys. Default `ES256`.
    pub signing_alg: SigningAlg,
    /// Algorithm of the ID-token key (`ES256`, `EdDSA` or `RS256`). Default
    /// `RS256`: OpenID Connect Core §15.1 makes it the one algorithm every
    /// relying party must accept, and libraries such as authlib refuse a
    /// provider whose metadata lacks it. When equal to `signing_alg`, one
    /// key signs both kinds of token.
    pub id_token_alg: SigningAlg,
    /// Largest accepted request body in bytes. Default 32768.
    pub max_body_bytes: usize,
    /// argon2 jobs run at once. Default: the number of CPUs.
    pub hash_concurrency: usize,
    /// argon2 jobs allowed to wait; more are refused with 503. Default 256.
    pub hash_queue: usize,
    /// How long a verified secret skips argon2, in seconds. Default 300.
    pub secret_cache_ttl: u64,
    /// Failed exchanges allowed per client address (IPv6: per /64) in a
    /// minute before further attempts from it get 429. Default 100. There
    /// is deliberately no per-application limit: a stranger could trip it
    /// and lock the key's holder out.
    pub max_failures_per_ip: u32,
    /// Longest a request may take, from its first byte to its answer,
    /// seconds: a client trickling its body is cut off with 408. Default 15.
    pub request_timeout: u64,
    /// Open connections per worker thread; more wait in the listen queue.
    /// Default 1024. Keep `ulimit -n` above workers × this + 64.
    pub max_connections: usize,
    /// A separate listener serving `/metrics` with no token (for a
    /// scraper on a private network). Default: none; `/metrics` on the main
    /// listener always needs a bearer token with `metrics:read`.
    pub metrics_listen: Option<String>,
    /// Whether metrics are recorded at all (`TESSERA_METRICS`: `on` or
    /// `off`). Default `true`. Off, nothing is recorded on any path and
    /// `/metrics` answers 404: for benchmarks, or a deployment that does
    /// not scrape.
    pub metrics: bool,
    /// HTTP worker threads. Default: the number of CPUs.
    pub workers: Option<usize>,
    /// `tessera serve --init-keys`: signing keys may be generated afresh
    /// although `keys_dir` does not exist and the store, holding data
    /// already, holds no key. Only on the command line, for one start: a
    /// setting that stayed would defeat the check. Default `false`.
    #[serde(skip)]
    pub init_keys: bool,
    /// Ensured bootstrap admin id (`TESSERA_ADMIN_APP_ID`).
    pub admin_app_id: Option<String>,
    /// Ensured bootstrap admin secret (`TESSERA_ADMIN_APP_SECRET`).
    #[serde(skip)]
    pub admin_app_secret: Option<SecretString>,
    /// Proxies whose forwarding headers are believed (IPs or CIDRs).
    /// Default: none, so the socket peer is the client.
    pub trusted_proxies: Vec<crate::domain::IpNet>,
    /// The header trusted proxies name the client in: `x-forwarded-for`
    /// (the default, what nginx and most load balancers set) or
    /// `forwarded` (RFC 7239). Only this one is read; the other is ignored.
    pub forwarded_header: crate::domain::cidr::ForwardedHeader,
    /// Audiences reserved to `live` keys: a `test` key never gets a token
    /// for them. Default: none.
    pub live_audiences: Vec<String>,
    /// Leeway for `exp`/`nbf` when checking tokens, seconds. Default 30.
    pub leeway: u64,
    /// The permission catalogue (`[[permissions]]`).
    pub permissions: Vec<PermissionDef>,
    /// People: sessions, refresh tokens, sign-in throttling (docs/api.md, "People").
    pub people: PeopleSettings,
    /// Ensured admin user's email (`TESSERA_ADMIN_EMAIL`).
    pub admin_email: Option<String>,
    /// Ensured admin user's password (`TESSERA_ADMIN_PASSWORD`).
    #[serde(skip)]
    pub admin_password: Option<SecretString>,
    /// Upstream OpenID Connect providers (`[[idp]]`, docs/api.md, "Single sign-on"). Default:
    /// none.
    pub idp: Vec<IdpSettings>,
    /// The request budget of an application without its own, at the edge
    /// (`[rate_limit] requests = 100, per = "1m"`, or `TESSERA_RATE_LIMIT=100/1m`;
    /// docs/api.md, "At the edge"). Default: none, no limit.
    pub rate_limit: Option<crate::domain::RateLimit>,
    /// The key-encryption key (`TESSERA_KEK`, environment only): 32 bytes
    /// in base64, sealing the private signing keys kept in the store
    /// (docs/api.md, "Signing keys over time"). Required with Redis; optional with the embedded store.
    #[serde(skip)]
    pub kek: Option<SecretString>,
    /// A file holding the key-encryption key instead (`TESSERA_KEK_FILE`).
    pub kek_file: Option<PathBuf>,
    /// How long a new key is published before it signs, seconds
    /// (`TESSERA_KEY_PUBLISH_AHEAD`, `90s`, `6m`, `1h`). Default 360: the
    /// JWKS cache lifetime (300) plus a minute.
    #[serde(deserialize_with = "duration_secs")]
    pub key_publish_ahead: u64,
    /// A new key is added once the newest is this many days old
    /// (`TESSERA_KEY_ROTATION_DAYS`); 0 never. Default 90.
    pub key_rotation_days: u32,
}

/// A duration in a file: a number of seconds, or text as
/// [`parse_duration_secs`] reads it.
fn duration_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Secs(u64),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Secs(n) => Ok(n),
        Either::Text(t) => parse_duration_secs(&t).map_err(serde::de::Error::custom),
    }
}

/// `90`, `90s`, `6m`, `2h`, `1d`: seconds.
pub fn parse_duration_secs(v: &str) -> Result<u64, String> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{v:?} is not a duration like 90s, 6m, 2h or 1d"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{v:?} is not a duration like 90s, 6m, 2h or 1d")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("{v:?} is too long"))
}

/// One upstream OpenID Connect provider (`[[idp]]`, docs/api.md, "Single sign-on").
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdpSettings {
    /// URL-safe, unique: the callback is `{issuer}/sso/{name}/callback`.
    pub name: String,
    /// What the sign-in button says. Default: the name.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The provider's issuer; discovery is at
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    /// Our client id at the provider.
    pub client_id: String,
    /// Our client secret there, or `TESSERA_IDP_<NAME>_CLIENT_SECRET`
    /// (name upper-cased, `-` as `_`).
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Scopes asked for. Default `openid email profile`.
    #[serde(default = "default_idp_scopes")]
    pub scopes: Vec<String>,
    /// The ID-token claim holding the person's groups. Default `groups`.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Just-in-time creation of unknown people. Default false.
    #[serde(default)]
    pub create_users: bool,
    /// Email domains `create_users` may create people for. Default: none
    /// (so nobody is created until domains are listed).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// Link an unknown identity to the user with the same email, only when
    /// the provider says `email_verified`. Default false.
    #[serde(default)]
    pub link_by_verified_email: bool,
    /// Accept this provider's ID tokens in token exchange (docs/api.md, "Single sign-on").
    /// Default false.
    #[serde(default)]
    pub token_exchange: bool,
    /// Groups to roles, applied at every sign-in.
    #[serde(default)]
    pub role_map: Vec<RoleMapping>,
}

impl std::fmt::Debug for IdpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpSettings")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<hidden>")
            .field("create_users", &self.create_users)
            .field("token_exchange", &self.token_exchange)
            .finish_non_exhaustive()
    }
}

/// One `[[idp.role_map]]` entry: members of `group` hold `roles`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// A value of the provider's groups claim.
    pub group: String,
    /// Roles its members get.
    pub roles: Vec<String>,
}

fn default_idp_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// The environment variable holding a provider's client secret.
pub fn idp_secret_var(name: &str) -> String {
    format!(
        "TESSERA_IDP_{}_CLIENT_SECRET",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

/// Checks the `[[idp]]` tables: names URL-safe and unique, an http(s)
/// issuer, a client id and secret, `openid` among the scopes.
fn validate_idps(idps: &[IdpSettings]) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for (i, p) in idps.iter().enumerate() {
        let at = |field: &str| format!("idp[{i}].{field}");
        let name_ok = (1..=32).contains(&p.name.len())
            && p.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(err(
                &at("name"),
                "must be 1 to 32 lowercase letters, digits, - or _",
            ));
        }
        if !seen.insert(p.name.clone()) {
            return Err(err(
                &at("name"),
                format!("{:?} is configured twice", p.name),
            ));
        }
        let issuer_ok = url::Url::parse(&p.issuer).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
        });
        if !issuer_ok {
            return Err(err(
                &at("issuer"),
                "must be an http(s) URL without query or fragment",
            ));
        }
        if p.client_id.is_empty() || p.client_id.len() > 256 {
            return Err(err(&at("client_id"), "must be 1 to 256 characters"));
        }
        if p.client_secret
            .as_ref()
            .is_none_or(|s| secrecy::ExposeSecret::expose_secret(s).is_empty())
        {
            return Err(err(
                &at("client_secret"),
                format!("is required (or set {})", idp_secret_var(&p.name)),
            ));
        }
        if !p.scopes.iter().any(|s| s == "openid") {
            return Err(err(&at("scopes"), "must include openid"));
        }
        if p.scopes
            .iter()
            .any(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace()))
        {
            return Err(err(&at("scopes"), "each scope must be one non-empty word"));
        }
        if p.groups_claim.is_empty() {
            return Err(err(&at("groups_claim"), "must not be empty"));
        }
        if p.create_users && p.allowed_domains.is_empty() {
            return Err(err(
                &at("allowed_domains"),
                "create_users needs at least one allowed domain",
            ));
        }
        if p.allowed_domains
            .iter()
            .any(|d| d.is_empty() || d.contains('@') || d.contains(char::is_whitespace))
        {
            return Err(err(
                &at("allowed_domains"),
                "each entry must be a bare domain such as example.com",
            ));
        }
        for (j, m) in p.role_map.iter().enumerate() {
            if m.group.is_empty() || m.roles.iter().any(String::is_empty) {
                return Err(err(
                    &format!("idp[{i}].role_map[{j}]"),
                    "group and roles must not be empty",
                ));
            }
        }
    }
    Ok(())
}

/// How long people stay signed in, and how hard sign-in is throttled
/// (TOML table `[people]`; every value in seconds unless named otherwise).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeopleSettings {
    /// A session unused this long ends (`TESSERA_SESSION_IDLE`). Default 1800.
    pub session_idle: u64,
    /// A session ends this long after sign-in, however used
    /// (`TESSERA_SESSION_ABSOLUTE`). Default 43200 (12 h).
    pub session_absolute: u64,
    /// A refresh family unused this long ends. Default 1209600 (14 days).
    pub refresh_idle: u64,
    /// A refresh family ends this long after it began. Default 2592000
    /// (30 days).
    pub refresh_absolute: u64,
    /// A refresh token already replaced is still honoured this long, so two
    /// tabs refreshing at once both succeed. Default 10.
    pub refresh_grace: u64,
    /// Failed sign-ins allowed per client address (IPv6: per /64) per
    /// `signin_window`. Default 50.
    pub signin_failures_per_ip: u32,
    /// Failed sign-ins allowed per account from one client address per
    /// `signin_window`. Default 5. Never counted across addresses: a flood
    /// from elsewhere must not lock the owner out.
    pub signin_failures_per_account: u32,
    /// The throttling window. Default 900.
    pub signin_window: u64,
    /// How long a device authorization request (RFC 8628) waits for the
    /// person, seconds. Default 600.
    pub device_code_lifetime: u64,
    /// How often a device may poll at first, seconds (each `slow_down`
    /// adds 5). Default 5.
    pub device_poll_interval: u64,
}

impl Default for PeopleSettings {
    fn default() -> Self {
        Self {
            session_idle: 1800,
            session_absolute: 43_200,
            refresh_idle: 14 * 86_400,
            refresh_absolute: 30 * 86_400,
            refresh_grace: 10,
            signin_failures_per_ip: 50,
            signin_failures_per_account: 5,
            signin_window: 900,
            device_code_lifetime: 600,
            device_poll_interval: 5,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            listen: "127.0.0.1:8080".into(),
            issuer: None,
            audience: "tessera".into(),
            data_dir: PathBuf::from("./data"),
            keys_dir: PathBuf::from("./keys"),
            redis_url: None,
            redis_prefix: "tessera:".into(),
            token_ttl: 600,
            key_prefix: "tsr".into(),
            log: "info".into(),
            log_format: LogFormat::Pretty,
            signing_alg: SigningAlg::ES256,
            id_token_alg: SigningAlg::RS256,
            max_body_bytes: 32 * 1024,
            hash_concurrency: cpus,
            hash_queue: 256,
            secret_cache_ttl: 300,
            max_failures_per_ip: 100,
            request_timeout: 15,
            max_connections: 1024,
            metrics_listen: None,
            metrics: true,
            workers: None,
            init_keys: false,
            admin_app_id: None,
            admin_app_secret: None,
            leeway: 30,
            trusted_proxies: Vec::new(),
            forwarded_header: crate::domain::cidr::ForwardedHeader::XForwardedFor,
            live_audiences: Vec::new(),
            permissions: Vec::new(),
            people: PeopleSettings::default(),
            admin_email: None,
            admin_password: None,
            idp: Vec::new(),
            rate_limit: None,
            kek: None,
            kek_file: None,
            key_publish_ahead: 360,
            key_rotation_days: 90,
        }
    }
}

/// A setting that cannot be used, with its name and the reason.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {setting}: {reason}")]
pub struct ConfigError {
    /// The setting (file key or environment variable).
    pub setting: String,
    /// What is wrong.
    pub reason: String,
}

fn err(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_owned(),
        reason: reason.into(),
    }
}

fn parse_num<T: std::str::FromStr>(var: &str, v: &str) -> Result<T, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| err(var, format!("{v:?} is not a valid number")))
}

/// `100/1m`: requests, a slash, a window; empty or `none` for no limit.
pub fn parse_rate_limit(
    var: &str,
    v: &str,
) -> Result<Option<crate::domain::RateLimit>, ConfigError> {
    let v = v.trim();
    if v.is_empty() || v == "none" {
        return Ok(None);
    }
    let bad = |reason: String| err(var, reason);
    let (n, w) = v
        .split_once('/')
        .ok_or_else(|| bad(format!("{v:?} is not requests/window, like 100/1m")))?;
    let limit = crate::domain::RateLimit {
        requests: parse_num(var, n)?,
        per: crate::domain::ratelimit::Window::parse(w.trim()).map_err(|e| bad(e.to_string()))?,
    };
    limit.validate().map_err(|e| bad(e.to_string()))?;
    Ok(Some(limit))
}

impl Settings {
    /// Defaults, then `file` (or `TESSERA_CONFIG`), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| k.starts_with("TESSERA_"))
            .collect();
        Self::load_from(file, &env)
    }

    /// As [`Settings::load`], with the environment given explicitly.
    pub fn load_from(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("TESSERA_CONFIG").map(PathBuf::from));
        let mut s = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err("--config", format!("{}: {e}", path.display())))?;
                toml::from_str::<Settings>(&text)
                    .map_err(|e| err(&format!("{}", path.display()), e.to_string()))?
            }
            None => Settings::default(),
        };
        s.apply_env(env)?;
        s.validate()?;
        Ok(s)
    }

    fn apply_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        for (k, v) in env {
            match k.as_str() {
                "TESSERA_LISTEN" => self.listen = v.clone(),
                "TESSERA_ISSUER" => self.issuer = Some(v.clone()),
                "TESSERA_AUDIENCE" => self.audience = v.clone(),
                "TESSERA_DATA_DIR" => self.data_dir = PathBuf::from(v),
                "TESSERA_KEYS_DIR" => self.keys_dir = PathBuf::from(v),
                "TESSERA_REDIS_URL" => {
                    self.redis_url = Some(v.clone()).filter(|v| !v.is_empty());
                }
                "TESSERA_REDIS_PREFIX" => self.redis_prefix = v.clone(),
                "TESSERA_TOKEN_TTL" => self.token_ttl = parse_num(k, v)?,
                "TESSERA_KEY_PREFIX" => self.key_prefix = v.clone(),
                "TESSERA_LOG" => self.log = v.clone(),
                "TESSERA_LOG_FORMAT" => {
                    self.log_format = match v.as_str() {
                        "pretty" => LogFormat::Pretty,
                        "json" => LogFormat::Json,
                        _ => return Err(err(k, format!("{v:?}: expected pretty or json"))),
                    }
                }
                "TESSERA_SIGNING_ALG" => {
                    self.signing_alg = SigningAlg::parse(v)
                        .ok_or_else(|| err(k, format!("{v:?}: expected ES256, EdDSA or RS256")))?;
                }
                "TESSERA_ID_TOKEN_ALG" => {
                    self.id_token_alg = SigningAlg::parse(v)
                        .ok_or_else(|| err(k, format!("{v:?}: expected ES256, EdDSA or RS256")))?;
                }
                "TESSERA_MAX_BODY_BYTES" => self.max_body_bytes = parse_num(k, v)?,
                "TESSERA_HASH_CONCURRENCY" => self.hash_concurrency = parse_num(k, v)?,
                "TESSERA_WORKERS" => self.workers = Some(parse_num(k, v)?),
                "TESSERA_REQUEST_TIMEOUT" => self.request_timeout = parse_num(k, v)?,
                "TESSERA_MAX_CONNECTIONS" => self.max_connections = parse_num(k, v)?,
                "TESSERA_METRICS_LISTEN" => {
                    self.metrics_listen = Some(v.clone()).filter(|v| !v.is_empty());
                }
                "TESSERA_METRICS" => {
                    self.metrics = match v.to_ascii_lowercase().as_str() {
                        "on" | "true" | "1" => true,
                        "off" | "false" | "0" => false,
                        _ => return Err(err(k, format!("{v:?}: expected on or off"))),
                    }
                }
                "TESSERA_ADMIN_APP_ID" => self.admin_app_id = Some(v.clone()),
                "TESSERA_TRUSTED_PROXIES" => {
                    self.trusted_proxies = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(crate::domain::IpNet::parse)
                        .collect::<Result<_, _>>()
                        .map_err(|e| err(k, e.to_string()))?;
                }
                "TESSERA_FORWARDED_HEADER" => {
                    self.forwarded_header = crate::domain::cidr::ForwardedHeader::parse(v)
                        .ok_or_else(|| {
                            err(k, format!("{v:?}: expected x-forwarded-for or forwarded"))
                        })?;
                }
                "TESSERA_LIVE_AUDIENCES" => {
                    self.live_audiences = v
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "TESSERA_ADMIN_APP_SECRET" => {
                    self.admin_app_secret = Some(SecretString::from(v.clone()));
                }
                "TESSERA_ADMIN_EMAIL" => self.admin_email = Some(v.clone()),
                "TESSERA_ADMIN_PASSWORD" => {
                    self.admin_password = Some(SecretString::from(v.clone()));
                }
                "TESSERA_SESSION_IDLE" => self.people.session_idle = parse_num(k, v)?,
                "TESSERA_SESSION_ABSOLUTE" => self.people.session_absolute = parse_num(k, v)?,
                "TESSERA_REFRESH_IDLE" => self.people.refresh_idle = parse_num(k, v)?,
                "TESSERA_REFRESH_ABSOLUTE" => self.people.refresh_absolute = parse_num(k, v)?,
                "TESSERA_REFRESH_GRACE" => self.people.refresh_grace = parse_num(k, v)?,
                "TESSERA_RATE_LIMIT" => self.rate_limit = parse_rate_limit(k, v)?,
                "TESSERA_KEK" => {
                    self.kek = Some(SecretString::from(v.clone())).filter(|_| !v.is_empty());
                }
                "TESSERA_KEK_FILE" => {
                    self.kek_file = Some(PathBuf::from(v)).filter(|_| !v.is_empty());
                }
                "TESSERA_KEY_PUBLISH_AHEAD" => {
                    self.key_publish_ahead = parse_duration_secs(v).map_err(|e| err(k, e))?;
                }
                "TESSERA_KEY_ROTATION_DAYS" => self.key_rotation_days = parse_num(k, v)?,
                // Read elsewhere (TESSERA_CONFIG) or by the CLI (URL, credentials).
                _ => {}
            }
        }
        for p in &mut self.idp {
            if let Some(v) = env.get(&idp_secret_var(&p.name)).filter(|v| !v.is_empty()) {
                p.client_secret = Some(SecretString::from(v.clone()));
            }
        }
        Ok(())
    }

    /// Checks every setting; the first bad one is reported.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.kek.is_some() && self.kek_file.is_some() {
            return Err(err(
                "kek (TESSERA_KEK, TESSERA_KEK_FILE)",
                "set one of the two, not both",
            ));
        }
        if self.redis_url.is_some() && self.kek.is_none() && self.kek_file.is_none() {
            return Err(err(
                "kek (TESSERA_KEK or TESSERA_KEK_FILE)",
                "required with a Redis store: the private signing keys are kept in Redis, \
                 encrypted with it (make one with `tessera keys kek`)",
            ));
        }
        if self.key_publish_ahead > 7 * 86_400 {
            return Err(err(
                "key_publish_ahead (TESSERA_KEY_PUBLISH_AHEAD)",
                "at most 7 days",
            ));
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(err(
                "listen (TESSERA_LISTEN)",
                format!("{:?} is not an IP:port address", self.listen),
            ));
        }
        if let Some(m) = &self.metrics_listen
            && m.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(err(
                "metrics_listen (TESSERA_METRICS_LISTEN)",
                format!("{m:?} is not an IP:port address"),
            ));
        }
        if !(1..=3600).contains(&self.request_timeout) {
            return Err(err(
                "request_timeout (TESSERA_REQUEST_TIMEOUT)",
                "must be between 1 and 3600 seconds",
            ));
        }
        if self.max_connections == 0 {
            return Err(err(
                "max_connections (TESSERA_MAX_CONNECTIONS)",
                "must be at least 1",
            ));
        }
        if self.token_ttl < 10 || self.token_ttl > 86_400 {
            return Err(err(
                "token_ttl (TESSERA_TOKEN_TTL)",
                "must be between 10 and 86400 seconds",
            ));
        }
        let prefix_ok = (1..=16).contains(&self.key_prefix.len())
            && self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !prefix_ok {
            return Err(err(
                "key_prefix (TESSERA_KEY_PREFIX)",
                "must be 1 to 16 lowercase letters or digits",
            ));
        }
        if self.audience.is_empty() || self.audience.contains(char::is_whitespace) {
            return Err(err(
                "audience (TESSERA_AUDIENCE)",
                "must be a non-empty word",
            ));
        }
        if let Some(iss) = &self.issuer
            && !(iss.starts_with("http://") || iss.starts_with("https://"))
        {
            return Err(err("issuer (TESSERA_ISSUER)", "must be an http(s) URL"));
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
        {
            return Err(err(
                "redis_url (TESSERA_REDIS_URL)",
                "must start with redis://, rediss:// or unix://",
            ));
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 1024 * 1024 {
            return Err(err(
                "max_body_bytes (TESSERA_MAX_BODY_BYTES)",
                "must be between 1024 and 1048576",
            ));
        }
        if self.hash_concurrency == 0 || self.hash_concurrency > 256 {
            return Err(err(
                "hash_concurrency (TESSERA_HASH_CONCURRENCY)",
                "must be between 1 and 256",
            ));
        }
        if self.workers == Some(0) {
            return Err(err("workers (TESSERA_WORKERS)", "must be at least 1"));
        }
        if self.admin_app_id.is_some() != self.admin_app_secret.is_some() {
            return Err(err(
                "TESSERA_ADMIN_APP_ID / TESSERA_ADMIN_APP_SECRET",
                "set both or neither",
            ));
        }
        if let Some(id) = &self.admin_app_id {
            crate::domain::application::validate_app_id(id)
                .map_err(|e| err("TESSERA_ADMIN_APP_ID", e.to_string()))?;
        }
        if let Some(s) = &self.admin_app_secret
            && secrecy::ExposeSecret::expose_secret(s).len() < 16
        {
            return Err(err(
                "TESSERA_ADMIN_APP_SECRET",
                "must be at least 16 characters",
            ));
        }
        crate::domain::Catalogue::new(self.permissions.clone())
            .map_err(|e| err("permissions", e.to_string()))?;
        if self.admin_email.is_some() != self.admin_password.is_some() {
            return Err(err(
                "TESSERA_ADMIN_EMAIL / TESSERA_ADMIN_PASSWORD",
                "set both or neither",
            ));
        }
        if let (Some(e), Some(p)) = (&self.admin_email, &self.admin_password) {
            let e = crate::domain::user::normalize_email(e)
                .map_err(|x| err("TESSERA_ADMIN_EMAIL", x.to_string()))?;
            crate::domain::user::validate_password(secrecy::ExposeSecret::expose_secret(p), &e)
                .map_err(|x| err("TESSERA_ADMIN_PASSWORD", x.to_string()))?;
        }
        let p = &self.people;
        for (name, v, lo, hi) in [
            (
                "people.session_idle (TESSERA_SESSION_IDLE)",
                p.session_idle,
                1,
                30 * 86_400,
            ),
            (
                "people.session_absolute (TESSERA_SESSION_ABSOLUTE)",
                p.session_absolute,
                1,
                90 * 86_400,
            ),
            (
                "people.refresh_idle (TESSERA_REFRESH_IDLE)",
                p.refresh_idle,
                1,
                365 * 86_400,
            ),
            (
                "people.refresh_absolute (TESSERA_REFRESH_ABSOLUTE)",
                p.refresh_absolute,
                1,
                365 * 86_400,
            ),
            (
                "people.refresh_grace (TESSERA_REFRESH_GRACE)",
                p.refresh_grace,
                0,
                300,
            ),
            ("people.signin_window", p.signin_window, 1, 86_400),
            (
                "people.device_code_lifetime",
                p.device_code_lifetime,
                1,
                3600,
            ),
            ("people.device_poll_interval", p.device_poll_interval, 1, 60),
            (
                "people.signin_failures_per_ip",
                u64::from(p.signin_failures_per_ip),
                1,
                1_000_000,
            ),
            (
                "people.signin_failures_per_account",
                u64::from(p.signin_failures_per_account),
                1,
                1_000_000,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(err(name, format!("must be between {lo} and {hi}")));
            }
        }
        validate_idps(&self.idp)?;
        if let Some(r) = &self.rate_limit {
            r.validate()
                .map_err(|e| err("rate_limit (TESSERA_RATE_LIMIT)", e.to_string()))?;
        }
        Ok(())
    }

    /// The issuer: the configured one, or `http://<listen>`.
    pub fn issuer(&self) -> String {
        self.issuer
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_header_setting() {
        use crate::domain::cidr::ForwardedHeader;
        let s = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(s.forwarded_header, ForwardedHeader::XForwardedFor);
        let s =
            Settings::load_from(None, &env(&[("TESSERA_FORWARDED_HEADER", "forwarded")])).unwrap();
        assert_eq!(s.forwarded_header, ForwardedHeader::Forwarded);
        let e = Settings::load_from(None, &env(&[("TESSERA_FORWARDED_HEADER", "x-real-ip")]))
            .unwrap_err();
        assert!(e.to_string().contains("TESSERA_FORWARDED_HEADER"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "forwarded_header = \"forwarded\"\n").unwrap();
        let s = Settings::load_from(Some(&path), &env(&[])).unwrap();
        assert_eq!(s.forwarded_header, ForwardedHeader::Forwarded);
        std::fs::write(&path, "forwarded_header = \"x-real-ip\"\n").unwrap();
        let e = Settings::load_from(Some(&path), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("forwarded_header"), "{e}");
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::load_from(None, &env(&[])).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.token_ttl, 600);
        assert_eq!(s.key_prefix, "tsr");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.issuer(), "http://127.0.0.1:8080");
        assert_eq!(s.id_token_alg, SigningAlg::RS256);
    }

    #[test]
    fn id_token_alg_setting() {
        let s = Settings::load_from(None, &env(&[("TESSERA_ID_TOKEN_ALG", "es256")])).unwrap();
        assert_eq!(s.id_token_alg, SigningAlg::ES256);
        let e = Settings::load_from(None, &env(&[("TESSERA_ID_TOKEN_ALG", "HS256")])).unwrap_err();
        assert!(e.to_string().contains("TESSERA_ID_TOKEN_ALG"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "id_token_alg = \"EdDSA\"\n").unwrap();
        let s = Settings::load_from(Some(&path), &env(&[])).unwrap();
        assert_eq!(s.id_token_alg, SigningAlg::EdDSA);
        std::fs::write(&path, "id_token_alg = \"HS256\"\n").unwrap();
        let e = Settings::load_from(Some(&path), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("HS256"), "{e}");
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(
            &path,
            "token_ttl = 300\nkey_prefix = \"acme\"\n[[permissions]]\nname = \"content:read\"\npublic = true\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &env(&[("TESSERA_TOKEN_TTL", "120")])).unwrap();
        assert_eq!(s.token_ttl, 120);
        assert_eq!(s.key_prefix, "acme");
        assert_eq!(s.permissions.len(), 1);
    }

    #[test]
    fn identity_providers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        let good = "[[idp]]\nname = \"corp-sso\"\ndisplay_name = \"Corp SSO\"\nissuer = \"https://login.example.com\"\nclient_id = \"tessera\"\nscopes = [\"openid\", \"email\"]\ncreate_users = true\nallowed_domains = [\"example.com\"]\n[[idp.role_map]]\ngroup = \"admins\"\nroles = [\"admin\"]\n";
        std::fs::write(&path, good).unwrap();
        // No secret anywhere: named, with the variable that would hold it.
        let e = Settings::load_from(Some(&path), &env(&[])).unwrap_err();
        assert!(
            e.to_string().contains("TESSERA_IDP_CORP_SSO_CLIENT_SECRET"),
            "{e}"
        );
        let s = Settings::load_from(
            Some(&path),
            &env(&[("TESSERA_IDP_CORP_SSO_CLIENT_SECRET", "s3cret-value")]),
        )
        .unwrap();
        assert_eq!(s.idp.len(), 1);
        assert_eq!(s.idp[0].role_map[0].roles, vec!["admin".to_owned()]);
        assert_eq!(s.idp[0].groups_claim, "groups");
        let shown = format!("{:?}", s.idp[0]);
        assert!(
            !shown.contains("s3cret") && shown.contains("<hidden>"),
            "{shown}"
        );
        for (bad, what) in [
            (good.replace("corp-sso", "Corp SSO"), "name"),
            (
                good.replace("https://login.example.com", "login.example.com"),
                "issuer",
            ),
            (
                good.replace("[\"openid\", \"email\"]", "[\"email\"]"),
                "openid",
            ),
            (
                good.replace("allowed_domains = [\"example.com\"]", ""),
                "allowed_domains",
            ),
            (
                format!(
                    "{good}{}",
                    good.replace("display_name = \"Corp SSO\"\n", "")
                ),
                "twice",
            ),
            (good.replace("client_id", "clientid"), "clientid"),
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = Settings::load_from(
                Some(&path),
                &env(&[("TESSERA_IDP_CORP_SSO_CLIENT_SECRET", "x")]),
            )
            .unwrap_err();
            assert!(e.to_string().contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn metrics_switch() {
        assert!(Settings::load_from(None, &env(&[])).unwrap().metrics);
        let s = Settings::load_from(None, &env(&[("TESSERA_METRICS", "off")])).unwrap();
        assert!(!s.metrics);
        let s = Settings::load_from(None, &env(&[("TESSERA_METRICS", "ON")])).unwrap();
        assert!(s.metrics);
        let e = Settings::load_from(None, &env(&[("TESSERA_METRICS", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("TESSERA_METRICS"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "metrics = false\n").unwrap();
        assert!(!Settings::load_from(Some(&path), &env(&[])).unwrap().metrics);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = Settings::load_from(None, &env(&[("TESSERA_TOKEN_TTL", "ten")])).unwrap_err();
        assert!(e.to_string().contains("TESSERA_TOKEN_TTL"), "{e}");
        let e = Settings::load_from(None, &env(&[("TESSERA_LISTEN", "nowhere")])).unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
        let e = Settings::load_from(None, &env(&[("TESSERA_ADMIN_APP_ID", "admin")])).unwrap_err();
        assert!(e.to_string().contains("TESSERA_ADMIN_APP_SECRET"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        std::fs::write(&path, "tokenttl = 5\n").unwrap();
        let e = Settings::load_from(Some(&path), &env(&[])).unwrap_err();
        assert!(e.to_string().contains("tokenttl"), "{e}");
        std::fs::write(&path, "[[permissions]]\nname = \"bad perm\"\n").unwrap();
        assert!(Settings::load_from(Some(&path), &env(&[])).is_err());
    }
}
