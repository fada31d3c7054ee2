//! The signing-key lifecycle (docs/api.md, "Signing keys over time"): keys move through `next`
//! (published, not signing), `active` (signing) and `retired` (published
//! until the last token it signed has expired), then are gone; a revoked key
//! leaves the JWKS at once and verifiers refuse its tokens.
//!
//! Nothing but the keys themselves and three instants is stored
//! ([`StoredKey`]): a key's state follows from the clock and the other keys
//! of its algorithm ([`phases`]). So every gateway sharing a store derives
//! the same ring, a `next` key turns active by itself everywhere at its
//! instant, and no gateway has to be the one that moves it. Writes are
//! compare-and-swap on the ring's version, so two gateways adding a key at
//! once (a scheduled rotation, two starts on an empty store) cannot both
//! succeed from the same reading.
//!
//! The ring in use is swapped atomically ([`KeyRingCell::current`]): minting
//! reads it without a lock.

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::Gateway;
use super::audit;
use super::authz;
use crate::crypto::kek::Kek;
use crate::crypto::keys::{self, KeyRing, KeyState, SigningAlg, SigningKey};
use crate::domain::permission::builtin::KEYS_MANAGE;
use crate::domain::{DomainError, RevocationKind};
use crate::store::{KeyStore, SealedKey, StoreError, StoredKey, StoredRing};

use super::auth::Principal;

/// How often the ring is read again even when nothing was heard: a backstop
/// for a change message lost with a connection.
const POLL_EVERY: Duration = Duration::from_secs(10);

/// Writes retried when another gateway's write came first.
const SWAP_ATTEMPTS: usize = 8;

/// How long a verifier may keep a JWKS (the `max-age` the gateway serves):
/// a key revocation must outlive it, or a verifier still holding the key
/// in its cached JWKS would accept a token forged with it once the entry
/// is forgotten.
pub const JWKS_MAX_AGE_SECS: i64 = 300;

/// The most keys published at once: every verifier fetches the whole JWKS,
/// and a ring this size already means a rotation every few minutes.
const MAX_PUBLISHED: usize = 16;

/// What the lifecycle needs of the configuration.
#[derive(Clone, Debug)]
pub struct KeyPolicy {
    /// Algorithm of the key signing access tokens.
    pub signing_alg: SigningAlg,
    /// Algorithm of the key signing ID tokens (may equal `signing_alg`).
    pub id_token_alg: SigningAlg,
    /// How long a new key is published before it signs.
    pub publish_ahead: chrono::Duration,
    /// How long a key stays published after it stopped signing, and how
    /// long a key revocation is kept: the longest token lifetime plus the
    /// verifiers' leeway and a margin.
    pub retain: chrono::Duration,
    /// A new key once the newest is this many days old; 0 never.
    pub rotation_days: u32,
    /// `keys/`: imported on the first start of an empty store.
    pub import_dir: PathBuf,
    /// On an empty store with an empty `keys/`, write the first keys there
    /// as files too (the embedded default, as before the lifecycle); with a
    /// shared store they are kept only in the store, sealed.
    pub first_keys_as_files: bool,
}

impl KeyPolicy {
    /// How long a key revocation (and a revoked record) is kept: past every
    /// token the key signed, and past every JWKS that still listed it.
    pub fn revocation_lifetime(&self) -> chrono::Duration {
        self.retain + chrono::Duration::seconds(JWKS_MAX_AGE_SECS + 60)
    }

    /// The configured algorithms, each once.
    pub fn algorithms(&self) -> Vec<SigningAlg> {
        let mut algs = vec![self.signing_alg];
        if self.id_token_alg != self.signing_alg {
            algs.push(self.id_token_alg);
        }
        algs
    }
}

impl From<&crate::config::Settings> for KeyPolicy {
    fn from(s: &crate::config::Settings) -> Self {
        let secs = |n: u64| chrono::Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 2_000));
        Self {
            signing_alg: s.signing_alg,
            id_token_alg: s.id_token_alg,
            publish_ahead: secs(s.key_publish_ahead),
            // Every token lives at most token_ttl; verifiers allow the leeway.
            retain: secs(s.token_ttl.saturating_add(s.leeway).saturating_add(60)),
            rotation_days: s.key_rotation_days,
            import_dir: s.keys_dir.clone(),
            first_keys_as_files: s.redis_url.is_none(),
        }
    }
}

/// Where a stored key is at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Published; signs from its `activates_at`.
    Next,
    /// Signing.
    Active,
    /// Stopped signing at `since`; published until `since` + retention.
    Retired {
        /// When the key after it activated.
        since: DateTime<Utc>,
    },
    /// Retired for longer than the retention: no longer published.
    Gone,
    /// Withdrawn.
    Revoked,
}

impl Phase {
    fn published(self) -> Option<KeyState> {
        match self {
            Self::Next => Some(KeyState::Next),
            Self::Active => Some(KeyState::Active),
            Self::Retired { .. } => Some(KeyState::Retired),
            Self::Gone | Self::Revoked => None,
        }
    }
}

/// Every key's phase at `now` (same order as `keys`), and the next instant
/// at which one changes by the clock alone.
pub fn phases(
    keys: &[StoredKey],
    now: DateTime<Utc>,
    retain: chrono::Duration,
) -> (Vec<Phase>, Option<DateTime<Utc>>) {
    let mut out = vec![Phase::Revoked; keys.len()];
    let mut next_change: Option<DateTime<Utc>> = None;
    let mut sooner = |t: DateTime<Utc>| {
        next_change = Some(next_change.map_or(t, |n| n.min(t)));
    };
    let mut by_alg: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        if k.revoked_at.is_none() {
            by_alg.entry(k.alg.as_str()).or_default().push(i);
        }
    }
    for (_, mut idx) in by_alg {
        idx.sort_by(|&a, &b| {
            let (a, b) = (&keys[a], &keys[b]);
            (a.activates_at, a.created_at, &a.kid).cmp(&(b.activates_at, b.created_at, &b.kid))
        });
        let activated: Vec<usize> = idx
            .iter()
            .copied()
            .filter(|&i| keys[i].activates_at <= now)
            .collect();
        for (n, &i) in activated.iter().enumerate() {
            out[i] = match activated.get(n + 1) {
                None => Phase::Active,
                Some(&after) => {
                    let since = keys[after].activates_at;
                    if since + retain <= now {
                        Phase::Gone
                    } else {
                        sooner(since + retain);
                        Phase::Retired { since }
                    }
                }
            };
        }
        for &i in idx.iter().filter(|&&i| keys[i].activates_at > now) {
            sooner(keys[i].activates_at);
            out[i] = Phase::Next;
        }
    }
    (out, next_change)
}

/// A signing key as the API shows it (never its private half).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyView {
    /// RFC 7638 thumbprint: the `kid` of the tokens it signs.
    pub kid: String,
    /// `ES256`, `EdDSA` or `RS256`.
    pub alg: String,
    /// `next`, `active`, `retired` or `revoked`.
    pub state: String,
    /// What it signs while active: `access` tokens, `id` tokens, or both.
    pub signs: Vec<String>,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it starts (or started) signing.
    pub activates_at: DateTime<Utc>,
    /// When it stopped signing (retired keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<DateTime<Utc>>,
    /// When it leaves the JWKS (retired keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_until: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

struct Inner {
    /// The stored ring the published ring was built from.
    stored: StoredRing,
    /// Keys already opened and parsed, by `kid`.
    parsed: HashMap<String, Arc<SigningKey>>,
    /// Keys that cannot be used here (said once each).
    unusable: HashSet<String>,
}

/// The ring in use, and how it is kept in step with the store.
pub struct KeyRingCell {
    ring: ArcSwap<KeyRing>,
    policy: KeyPolicy,
    kek: Option<Kek>,
    store: Arc<dyn KeyStore>,
    inner: tokio::sync::Mutex<Inner>,
    /// Milliseconds since the epoch when a phase next changes by the clock.
    next_change_ms: AtomicI64,
    heard: tokio::sync::Notify,
    /// The next change by the clock moved: the follower's sleep is redone.
    rescheduled: tokio::sync::Notify,
    /// `tessera_signing_keys{state}`, once registered.
    states: std::sync::OnceLock<prometheus::IntGaugeVec>,
    /// Keys this gateway knows were withdrawn (a record once seen revoked,
    /// or a key revocation heard): never used again here, whatever a
    /// record later says. Revocation is one way.
    withdrawn: std::sync::Mutex<HashSet<String>>,
}

impl std::fmt::Debug for KeyRingCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRingCell")
            .field("ring", &*self.ring.load())
            .finish_non_exhaustive()
    }
}

/// Why the ring could not be opened at start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyRingError(pub String);

fn store_err(e: StoreError) -> KeyRingError {
    KeyRingError(format!("the signing keys in the store: {e}"))
}

/// The associated data binding a sealed private key to its `kid`: a sealed
/// key moved onto another record does not open.
fn aad(kid: &str) -> Vec<u8> {
    format!("tessera signing key {kid}").into_bytes()
}

fn seal(kek: Option<&Kek>, kid: &str, pem: &str) -> Result<SealedKey, String> {
    match kek {
        None => Ok(SealedKey::Plain {
            pem: pem.to_owned(),
        }),
        Some(kek) => {
            let (nonce, ct) = kek
                .seal(&aad(kid), pem.as_bytes())
                .map_err(|e| e.to_string())?;
            Ok(SealedKey::Sealed {
                nonce: URL_SAFE_NO_PAD.encode(nonce),
                ciphertext: URL_SAFE_NO_PAD.encode(ct),
            })
        }
    }
}

/// Opens and parses a stored key, checking it is the key its record names.
/// A key in the clear is used only when `plain_ok`: never once a
/// key-encryption key is set (the gateway seals; a plain record in a sealed
/// store was written by someone else).
fn open(kek: Option<&Kek>, k: &StoredKey, plain_ok: bool) -> Result<SigningKey, String> {
    let pem: zeroize::Zeroizing<Vec<u8>> = match &k.private {
        SealedKey::Plain { pem } if plain_ok => zeroize::Zeroizing::new(pem.as_bytes().to_vec()),
        SealedKey::Plain { .. } => {
            return Err(format!(
                "signing key {} is stored in the clear, though this store's keys are sealed \
                 with the key-encryption key: not written by a gateway",
                k.kid
            ));
        }
        SealedKey::Sealed { nonce, ciphertext } => {
            let kek = kek.ok_or_else(|| {
                "the store's signing keys are encrypted: set the key-encryption key \
                 (TESSERA_KEK or TESSERA_KEK_FILE)"
                    .to_owned()
            })?;
            let undecodable = || format!("signing key {}: sealed data is not base64url", k.kid);
            let nonce = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| undecodable())?;
            let ct = URL_SAFE_NO_PAD
                .decode(ciphertext)
                .map_err(|_| undecodable())?;
            kek.open(&aad(&k.kid), &nonce, &ct).map_err(|_| {
                format!(
                    "signing key {} does not decrypt with this key-encryption key \
                     (TESSERA_KEK / TESSERA_KEK_FILE): is it the one the store was written with?",
                    k.kid
                )
            })?
        }
    };
    let key = SigningKey::from_pem(&pem, PathBuf::new()).map_err(|e| e.to_string())?;
    if key.kid() != k.kid || key.alg().as_str() != k.alg {
        return Err(format!(
            "signing key {}: the stored private key is another key",
            k.kid
        ));
    }
    Ok(key)
}

/// A fresh key of `alg` signing from `activates_at`, sealed for the store.
fn fresh(
    kek: Option<&Kek>,
    alg: SigningAlg,
    now: DateTime<Utc>,
    activates_at: DateTime<Utc>,
) -> Result<(StoredKey, Arc<SigningKey>), String> {
    let pem = keys::generate_pem(alg).map_err(|e| e.to_string())?;
    let key = SigningKey::from_pem(pem.as_bytes(), PathBuf::new()).map_err(|e| e.to_string())?;
    let record = StoredKey {
        kid: key.kid().to_owned(),
        alg: alg.as_str().to_owned(),
        created_at: now,
        activates_at,
        revoked_at: None,
        private: seal(kek, key.kid(), &pem)?,
    };
    Ok((record, Arc::new(key)))
}

impl KeyRingCell {
    /// Opens the ring at start: every key in the store must open with the
    /// configured key-encryption key, or nothing starts and nothing is
    /// written. An empty store gets `keys/` imported (or fresh keys); keys
    /// stored in the clear are sealed once a key-encryption key is set.
    pub async fn open(
        policy: KeyPolicy,
        store: Arc<dyn KeyStore>,
        kek: Option<Kek>,
    ) -> Result<Self, KeyRingError> {
        let mut stored = store.load_keys().await.map_err(store_err)?;
        let mut parsed = HashMap::new();
        // Keys in the clear are read once, to be sealed, only from the
        // embedded store that kept them so before a KEK was set.
        let plain_ok = kek.is_none() || policy.first_keys_as_files;
        for k in stored.keys.iter().filter(|k| k.revoked_at.is_none()) {
            let key = open(kek.as_ref(), k, plain_ok).map_err(KeyRingError)?;
            parsed.insert(k.kid.clone(), Arc::new(key));
        }
        if stored.keys.is_empty() {
            let (records, keys) = first_keys(&policy, kek.as_ref())?;
            match store
                .swap_keys(stored.version, &records, &[])
                .await
                .map_err(store_err)?
            {
                Some(version) => {
                    tracing::info!(keys = records.len(), "signing keys stored");
                    stored = StoredRing {
                        version,
                        keys: records,
                    };
                    parsed.extend(keys.into_iter().map(|k| (k.kid().to_owned(), k)));
                }
                // Another gateway filled the empty store first: use its keys.
                None => {
                    stored = store.load_keys().await.map_err(store_err)?;
                    for k in stored.keys.iter().filter(|k| k.revoked_at.is_none()) {
                        let key = open(kek.as_ref(), k, plain_ok).map_err(KeyRingError)?;
                        parsed.insert(k.kid.clone(), Arc::new(key));
                    }
                }
            }
        }
        if let Some(kek) = &kek {
            stored = seal_plain(&*store, kek, stored).await?;
        }
        let mut unusable = HashSet::new();
        let withdrawn = HashSet::new();
        let stored = ensure_active(
            &*store,
            kek.as_ref(),
            &policy,
            stored,
            &mut parsed,
            &mut unusable,
            &withdrawn,
        )
        .await
        .map_err(|e| KeyRingError(format!("signing keys: {e}")))?;
        let usable = effective(&stored, &parsed, &withdrawn);
        let (ring, next) = build(&policy, &usable, &parsed, Utc::now())
            .map_err(|e| KeyRingError(format!("signing keys: {e}")))?;
        let cell = Self {
            ring: ArcSwap::from_pointee(ring),
            policy,
            kek,
            store,
            inner: tokio::sync::Mutex::new(Inner {
                stored,
                parsed,
                unusable,
            }),
            next_change_ms: AtomicI64::new(i64::MAX),
            heard: tokio::sync::Notify::new(),
            rescheduled: tokio::sync::Notify::new(),
            withdrawn: std::sync::Mutex::new(withdrawn),
            states: std::sync::OnceLock::new(),
        };
        cell.set_next_change(next);
        // A configured algorithm with no active key (a new setting, or every
        // key of it revoked) gets one now.
        cell.refresh()
            .await
            .map_err(|e| KeyRingError(format!("signing keys: {e}")))?;
        Ok(cell)
    }

    /// The ring in use: the keys published and the ones signing.
    pub fn current(&self) -> arc_swap::Guard<Arc<KeyRing>> {
        self.ring.load()
    }

    /// The ring in the store changed (the change channel said so, or it was
    /// reconnected): read it again at once.
    pub fn changed(&self) {
        self.heard.notify_one();
    }

    /// Registers `tessera_signing_keys{state}` (published keys by state, set
    /// at every rebuild) when metrics are on.
    pub fn register_metrics(&self, metrics: &super::metrics::Metrics) {
        if !metrics.enabled() {
            return;
        }
        let opts = prometheus::Opts::new(
            "tessera_signing_keys",
            "Signing keys published, by state (next, active, retired).",
        );
        match prometheus::IntGaugeVec::new(opts, &["state"]) {
            Ok(g) => {
                if let Err(e) = metrics.registry().register(Box::new(g.clone())) {
                    tracing::error!(error = %e, "the signing-key gauge could not be registered");
                    return;
                }
                let _ = self.states.set(g);
                self.count_states();
            }
            Err(e) => tracing::error!(error = %e, "the signing-key gauge could not be created"),
        }
    }

    fn count_states(&self) {
        let Some(g) = self.states.get() else { return };
        let ring = self.ring.load();
        for state in [KeyState::Next, KeyState::Active, KeyState::Retired] {
            let n = ring
                .keys()
                .iter()
                .filter(|k| ring.state(k.kid()) == Some(state))
                .count();
            g.with_label_values(&[state.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A key revocation was heard: the key is never used here again, and
    /// the ring is rebuilt without it at once.
    pub fn withdraw(&self, kid: &str) {
        let fresh = self
            .withdrawn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kid.to_owned());
        if fresh {
            self.heard.notify_one();
        }
    }

    fn withdrawn(&self) -> HashSet<String> {
        self.withdrawn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_next_change(&self, at: Option<DateTime<Utc>>) {
        let at = at.map_or(i64::MAX, |t| t.timestamp_millis());
        let before = self.next_change_ms.swap(at, Ordering::Relaxed);
        if at < before {
            // A key added here turns active sooner than the follower planned
            // to look (on Redis the channel would say so; on the embedded
            // store nobody else does).
            self.rescheduled.notify_one();
        }
    }

    /// Reads the store and rebuilds the ring; returns whether a key left it
    /// (what it signed must no longer be trusted from caches).
    pub async fn refresh(&self) -> Result<bool, DomainError> {
        let mut inner = self.inner.lock().await;
        let stored = self.store.load_keys().await?;
        self.rebuild(&mut inner, stored).await
    }

    /// Rebuilds the ring from `stored`, first adding an active key for any
    /// configured algorithm that has none among the keys usable here.
    async fn rebuild(&self, inner: &mut Inner, stored: StoredRing) -> Result<bool, DomainError> {
        let mut withdrawn = self.withdrawn();
        let newly: Vec<String> = stored
            .keys
            .iter()
            .filter(|k| k.revoked_at.is_some() && !withdrawn.contains(&k.kid))
            .map(|k| k.kid.clone())
            .collect();
        if !newly.is_empty() {
            let mut w = self.withdrawn.lock().unwrap_or_else(|e| e.into_inner());
            w.extend(newly.iter().cloned());
            withdrawn.extend(newly);
        }
        let stored = ensure_active(
            &*self.store,
            self.kek.as_ref(),
            &self.policy,
            stored,
            &mut inner.parsed,
            &mut inner.unusable,
            &withdrawn,
        )
        .await?;
        inner.parsed.retain(|kid, _| {
            !withdrawn.contains(kid)
                && stored
                    .keys
                    .iter()
                    .any(|k| &k.kid == kid && k.revoked_at.is_none())
        });
        let usable = effective(&stored, &inner.parsed, &withdrawn);
        let (ring, next) = build(&self.policy, &usable, &inner.parsed, Utc::now())
            .map_err(DomainError::Internal)?;
        let before = self.ring.load_full();
        let left = before.keys().iter().any(|k| ring.get(k.kid()).is_none());
        if before.jwks_json() != ring.jwks_json() || before.active().kid() != ring.active().kid() {
            tracing::info!(
                active = %ring.active().kid(),
                published = ring.keys().len(),
                "signing key ring changed"
            );
        }
        self.ring.store(Arc::new(ring));
        self.count_states();
        self.set_next_change(next);
        inner.stored = stored;
        Ok(left)
    }
}

/// The keys this gateway may act on: revoked ones as they are, withdrawn
/// ones as revoked (whatever their record says now), the others only when
/// they opened here. States are derived from these alone, so a key nobody
/// here can open never becomes the active one.
fn effective(
    stored: &StoredRing,
    parsed: &HashMap<String, Arc<SigningKey>>,
    withdrawn: &HashSet<String>,
) -> StoredRing {
    let keys = stored
        .keys
        .iter()
        .filter_map(|k| {
            if k.revoked_at.is_some() {
                Some(k.clone())
            } else if withdrawn.contains(&k.kid) {
                let mut k = k.clone();
                k.revoked_at = Some(k.created_at);
                Some(k)
            } else {
                parsed.contains_key(&k.kid).then(|| k.clone())
            }
        })
        .collect();
    StoredRing {
        version: stored.version,
        keys,
    }
}

/// Opens the keys of `stored` not opened yet; one that cannot be is said
/// once and left out.
fn open_new(
    kek: Option<&Kek>,
    stored: &StoredRing,
    parsed: &mut HashMap<String, Arc<SigningKey>>,
    unusable: &mut HashSet<String>,
    withdrawn: &HashSet<String>,
) {
    for k in stored.keys.iter().filter(|k| k.revoked_at.is_none()) {
        if parsed.contains_key(&k.kid) || unusable.contains(&k.kid) || withdrawn.contains(&k.kid) {
            continue;
        }
        // The gateway seals every key it writes when it has a KEK.
        match open(kek, k, kek.is_none()) {
            Ok(key) => {
                parsed.insert(k.kid.clone(), Arc::new(key));
            }
            Err(e) => {
                tracing::error!(kid = %k.kid, error = %e, "a stored signing key cannot be used; left out");
                unusable.insert(k.kid.clone());
            }
        }
    }
}

/// Adds an active key, signing at once, for every configured algorithm
/// that has none (a new setting, or a store someone emptied of them).
async fn ensure_active(
    store: &dyn KeyStore,
    kek: Option<&Kek>,
    policy: &KeyPolicy,
    mut stored: StoredRing,
    parsed: &mut HashMap<String, Arc<SigningKey>>,
    unusable: &mut HashSet<String>,
    withdrawn: &HashSet<String>,
) -> Result<StoredRing, DomainError> {
    let algs = policy.algorithms();
    for _ in 0..SWAP_ATTEMPTS {
        open_new(kek, &stored, parsed, unusable, withdrawn);
        let usable = effective(&stored, parsed, withdrawn);
        let now = Utc::now();
        let (ph, _) = phases(&usable.keys, now, policy.retain);
        let mut added = Vec::new();
        for &alg in &algs {
            let has_active = usable
                .keys
                .iter()
                .zip(&ph)
                .any(|(k, p)| k.alg == alg.as_str() && *p == Phase::Active);
            if !has_active {
                let (record, key) = fresh(kek, alg, now, now).map_err(DomainError::Internal)?;
                parsed.insert(record.kid.clone(), key);
                added.push(record);
            }
        }
        if added.is_empty() {
            break;
        }
        match store.swap_keys(stored.version, &added, &[]).await? {
            Some(version) => {
                for k in &added {
                    tracing::warn!(kid = %k.kid, alg = %k.alg, "no active signing key: added one, signing at once");
                }
                stored.version = version;
                stored.keys.extend(added);
            }
            None => stored = store.load_keys().await?,
        }
    }
    Ok(stored)
}

/// `keys/` on the first start, or fresh keys: activated in file order, a
/// millisecond apart, so the last file of each algorithm signs (as it did
/// before the lifecycle) and the others are retired from now on.
fn first_keys(
    policy: &KeyPolicy,
    kek: Option<&Kek>,
) -> Result<(Vec<StoredKey>, Vec<Arc<SigningKey>>), KeyRingError> {
    let dir = &policy.import_dir;
    let files = if policy.first_keys_as_files {
        KeyRing::load_or_init(dir, policy.signing_alg, policy.id_token_alg)
            .map(|(ring, generated)| {
                for path in generated {
                    tracing::info!(file = %path.display(), "generated a new signing key");
                }
                ring.keys().to_vec()
            })
            .map_err(|e| KeyRingError(format!("keys_dir (TESSERA_KEYS_DIR): {e}")))?
    } else if dir.is_dir() {
        keys::load_dir(dir)
            .map_err(|e| KeyRingError(format!("keys_dir (TESSERA_KEYS_DIR): {e}")))?
            .into_iter()
            .map(Arc::new)
            .collect()
    } else {
        Vec::new()
    };
    let now = Utc::now();
    let n = i64::try_from(files.len()).unwrap_or(i64::MAX);
    let mut records = Vec::with_capacity(files.len());
    for (i, key) in files.iter().enumerate() {
        let i = i64::try_from(i).unwrap_or(0);
        let at = now - chrono::Duration::milliseconds(n - i);
        let pem = std::fs::read_to_string(key.file()).map_err(|e| {
            KeyRingError(format!(
                "keys_dir (TESSERA_KEYS_DIR): {}: {e}",
                key.file().display()
            ))
        })?;
        let pem = zeroize::Zeroizing::new(pem);
        records.push(StoredKey {
            kid: key.kid().to_owned(),
            alg: key.alg().as_str().to_owned(),
            created_at: at,
            activates_at: at,
            revoked_at: None,
            private: seal(kek, key.kid(), &pem).map_err(KeyRingError)?,
        });
        tracing::info!(kid = %key.kid(), file = %key.file().display(), "signing key imported into the store");
    }
    // No file of a configured algorithm (a shared store writes none): a
    // fresh key, kept only in the store.
    let mut keys = files;
    for alg in policy.algorithms() {
        if !keys.iter().any(|k| k.alg() == alg) {
            let (record, key) = fresh(kek, alg, now, now).map_err(KeyRingError)?;
            tracing::info!(kid = %record.kid, alg = %record.alg, "generated a new signing key in the store");
            records.push(record);
            keys.push(key);
        }
    }
    Ok((records, keys))
}

/// Seals keys stored in the clear (an embedded store that ran without a
/// key-encryption key): once one is set, the store holds none readable.
/// Files in `keys/` are not touched: delete them once imported.
async fn seal_plain(
    store: &dyn KeyStore,
    kek: &Kek,
    mut stored: StoredRing,
) -> Result<StoredRing, KeyRingError> {
    for _ in 0..SWAP_ATTEMPTS {
        let mut sealed = Vec::new();
        for k in &stored.keys {
            if let SealedKey::Plain { pem } = &k.private {
                let mut k = k.clone();
                k.private = seal(Some(kek), &k.kid, pem).map_err(KeyRingError)?;
                sealed.push(k);
            }
        }
        if sealed.is_empty() {
            return Ok(stored);
        }
        match store
            .swap_keys(stored.version, &sealed, &[])
            .await
            .map_err(store_err)?
        {
            Some(_) => {
                tracing::info!(
                    keys = sealed.len(),
                    "signing keys sealed with the key-encryption key"
                );
                return store.load_keys().await.map_err(store_err);
            }
            None => stored = store.load_keys().await.map_err(store_err)?,
        }
    }
    Ok(stored)
}

/// The published ring at `now`, and when it next changes by the clock.
fn build(
    policy: &KeyPolicy,
    stored: &StoredRing,
    parsed: &HashMap<String, Arc<SigningKey>>,
    now: DateTime<Utc>,
) -> Result<(KeyRing, Option<DateTime<Utc>>), String> {
    let (ph, next) = phases(&stored.keys, now, policy.retain);
    let mut published = Vec::new();
    let mut active_of: HashMap<&str, &str> = HashMap::new();
    for (k, p) in stored.keys.iter().zip(&ph) {
        let (Some(state), Some(key)) = (p.published(), parsed.get(&k.kid)) else {
            continue;
        };
        if state == KeyState::Active {
            active_of.insert(k.alg.as_str(), k.kid.as_str());
        }
        published.push((k, state, key.clone()));
    }
    // Oldest first, as files were: a JWKS reads in the order keys came.
    published.sort_by(|a, b| (a.0.activates_at, &a.0.kid).cmp(&(b.0.activates_at, &b.0.kid)));
    let active = active_of
        .get(policy.signing_alg.as_str())
        .ok_or_else(|| format!("no usable active {} key", policy.signing_alg))?;
    let id_token = active_of
        .get(policy.id_token_alg.as_str())
        .ok_or_else(|| format!("no usable active {} key", policy.id_token_alg))?;
    let ring = KeyRing::assemble(
        published.into_iter().map(|(_, s, k)| (k, s)).collect(),
        active,
        id_token,
    )
    .map_err(|e| e.to_string())?;
    Ok((ring, next))
}

/// Keeps the ring in step for as long as the gateway runs: at once when a
/// change is heard, when a phase changes by the clock, every
/// [`POLL_EVERY`] as a backstop, and once a minute the scheduled rotation
/// and the forgetting of keys no longer published.
pub fn follow(gw: actix_web::web::Data<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_poll = std::time::Instant::now();
        let mut last_chores: Option<std::time::Instant> = None;
        loop {
            let cell = &gw.keys;
            let wait = {
                let to_change =
                    cell.next_change_ms.load(Ordering::Relaxed) - Utc::now().timestamp_millis();
                let to_change = Duration::from_millis(u64::try_from(to_change.max(0)).unwrap_or(0));
                to_change
                    .min(POLL_EVERY.saturating_sub(last_poll.elapsed()))
                    .max(Duration::from_millis(10))
            };
            tokio::select! {
                () = cell.heard.notified() => {}
                () = cell.rescheduled.notified() => continue,
                () = tokio::time::sleep(wait) => {}
            }
            last_poll = std::time::Instant::now();
            // Key revocations the mirror holds (loaded, heard, or stored
            // here) keep their keys out of the ring, whatever the records say.
            for kid in gw.revocation_mirror.revoked_kids() {
                cell.withdraw(&kid);
            }
            match cell.refresh().await {
                Ok(left) => {
                    if left {
                        forget_signed_by_withdrawn(&gw);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the signing keys failed; retrying"),
            }
            if last_chores.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                last_chores = Some(std::time::Instant::now());
                if let Err(e) = scheduled_rotation(&gw).await {
                    tracing::warn!(error = %e, "scheduled signing key rotation failed; retrying");
                }
                if let Err(e) = forget_gone(&gw).await {
                    tracing::warn!(error = %e, "forgetting unpublished signing keys failed");
                }
            }
        }
    })
}

/// A key left the ring: tokens cached at the edge may be signed by it.
fn forget_signed_by_withdrawn(gw: &Gateway) {
    gw.forward_tokens.clear();
    gw.console_tokens.clear();
}

/// Adds a `next` key of each configured algorithm once the newest key of
/// the access-token algorithm is `rotation_days` old and none is pending.
/// Every gateway asks once a minute; the condition is asked again of every
/// reading, so when several are due at once one key is added, not one each.
async fn scheduled_rotation(gw: &Gateway) -> Result<(), DomainError> {
    let cell = &gw.keys;
    if cell.policy.rotation_days == 0 {
        return Ok(());
    }
    let stored = cell.store.load_keys().await?;
    let added = add_next_keys(gw, stored, |policy, stored| {
        Ok(rotation_due(policy, stored, Utc::now()))
    })
    .await?;
    for k in &added {
        tracing::info!(kid = %k.kid, activates_at = %k.activates_at, "scheduled signing key rotation");
    }
    Ok(())
}

/// Whether the schedule wants a new key: the newest key of the access-token
/// algorithm (a pending one included) is `rotation_days` old.
fn rotation_due(policy: &KeyPolicy, stored: &StoredRing, now: DateTime<Utc>) -> bool {
    let alg = policy.signing_alg.as_str();
    let newest = stored
        .keys
        .iter()
        .filter(|k| k.alg == alg && k.revoked_at.is_none())
        .map(|k| k.activates_at)
        .max();
    policy.rotation_days > 0
        && newest.is_none_or(|t| t + chrono::Duration::days(i64::from(policy.rotation_days)) <= now)
}

/// The API's rule for a rotation: nothing pending, room in the JWKS.
fn rotation_allowed(policy: &KeyPolicy, stored: &StoredRing) -> Result<bool, DomainError> {
    // One key waiting at a time: a second rotation before the first signs
    // would only lengthen the JWKS (and cost an RSA key each time).
    let (ph, _) = phases(&stored.keys, Utc::now(), policy.retain);
    if let Some(pending) = stored
        .keys
        .iter()
        .zip(&ph)
        .find(|(_, p)| **p == Phase::Next)
    {
        return Err(DomainError::Conflict(format!(
            "a next key ({}) is already published and signs from {}: wait for it, or \
             revoke it to start over",
            pending.0.kid,
            pending
                .0
                .activates_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    }
    let published = ph.iter().filter(|p| p.published().is_some()).count();
    if published + policy.algorithms().len() > MAX_PUBLISHED {
        return Err(DomainError::Conflict(format!(
            "{published} keys are published already (at most {MAX_PUBLISHED}): retired keys \
             leave once the tokens they signed have expired"
        )));
    }
    Ok(true)
}

/// Removes from the store keys no longer published (retired past the
/// retention, or revoked longer ago than it).
async fn forget_gone(gw: &Gateway) -> Result<(), DomainError> {
    let cell = &gw.keys;
    let stored = cell.store.load_keys().await?;
    let now = Utc::now();
    let (ph, _) = phases(&stored.keys, now, cell.policy.retain);
    let gone: Vec<String> = stored
        .keys
        .iter()
        .zip(&ph)
        .filter(|(k, p)| match p {
            Phase::Gone => true,
            Phase::Revoked => k
                .revoked_at
                .is_some_and(|t| t + cell.policy.revocation_lifetime() <= now),
            _ => false,
        })
        .map(|(k, _)| k.kid.clone())
        .collect();
    if !gone.is_empty()
        && cell
            .store
            .swap_keys(stored.version, &[], &gone)
            .await?
            .is_some()
    {
        tracing::info!(keys = gone.len(), "forgot signing keys no longer published");
    }
    Ok(())
}

/// Adds a `next` key of each configured algorithm (compare-and-swap,
/// retried from a fresh reading), then rebuilds the ring. `wanted` is asked
/// of every reading, the first and each one after a lost swap: another
/// gateway may have added the key meanwhile (`Ok(false)`: nothing to do).
async fn add_next_keys(
    gw: &Gateway,
    mut stored: StoredRing,
    wanted: impl Fn(&KeyPolicy, &StoredRing) -> Result<bool, DomainError>,
) -> Result<Vec<StoredKey>, DomainError> {
    let cell = &gw.keys;
    let mut inner = cell.inner.lock().await;
    for _ in 0..SWAP_ATTEMPTS {
        if !wanted(&cell.policy, &stored)? {
            return Ok(Vec::new());
        }
        let now = Utc::now();
        let at = now + cell.policy.publish_ahead;
        let mut added = Vec::new();
        let mut opened = Vec::new();
        for alg in cell.policy.algorithms() {
            let (record, key) =
                fresh(cell.kek.as_ref(), alg, now, at).map_err(DomainError::Internal)?;
            opened.push(key);
            added.push(record);
        }
        match cell.store.swap_keys(stored.version, &added, &[]).await? {
            Some(version) => {
                for key in opened {
                    inner.parsed.insert(key.kid().to_owned(), key);
                }
                stored.version = version;
                stored.keys.extend(added.iter().cloned());
                if cell.rebuild(&mut inner, stored).await? {
                    forget_signed_by_withdrawn(gw);
                }
                return Ok(added);
            }
            None => stored = cell.store.load_keys().await?,
        }
    }
    Err(DomainError::Conflict(
        "the key ring kept changing while this call ran; try again".into(),
    ))
}

fn view(policy: &KeyPolicy, k: &StoredKey, phase: Phase) -> KeyView {
    let state = match phase {
        Phase::Next => "next",
        Phase::Active => "active",
        Phase::Retired { .. } | Phase::Gone => "retired",
        Phase::Revoked => "revoked",
    };
    let mut signs = Vec::new();
    if k.alg == policy.signing_alg.as_str() {
        signs.push("access".to_owned());
    }
    if k.alg == policy.id_token_alg.as_str() {
        signs.push("id".to_owned());
    }
    let retired_at = match phase {
        Phase::Retired { since } => Some(since),
        _ => None,
    };
    KeyView {
        kid: k.kid.clone(),
        alg: k.alg.clone(),
        state: state.to_owned(),
        signs,
        created_at: k.created_at,
        activates_at: k.activates_at,
        retired_at,
        published_until: retired_at.map(|t| t + policy.retain),
        revoked_at: k.revoked_at,
    }
}

/// Every key still published or recently revoked, newest first, as the
/// store has them now.
///
/// # Errors
/// `InsufficientPermissions` without `keys:manage`; `Unavailable` when the
/// store does not answer.
pub async fn list(gw: &Gateway, actor: &Principal) -> Result<Vec<KeyView>, DomainError> {
    authz::require(gw, actor, KEYS_MANAGE, "key.list", "-").await?;
    let cell = &gw.keys;
    let stored = cell.store.load_keys().await?;
    let (ph, _) = phases(&stored.keys, Utc::now(), cell.policy.retain);
    let mut out: Vec<KeyView> = stored
        .keys
        .iter()
        .zip(ph)
        .filter(|(_, p)| *p != Phase::Gone)
        .map(|(k, p)| view(&cell.policy, k, p))
        .collect();
    out.sort_by(|a, b| (b.activates_at, &b.kid).cmp(&(a.activates_at, &a.kid)));
    Ok(out)
}

/// Adds a `next` key of each configured algorithm: published at once,
/// signing after `key_publish_ahead` (docs/api.md, "Signing keys over time").
///
/// # Errors
/// `InsufficientPermissions` without `keys:manage`; `Unavailable` when the
/// store does not answer; `Conflict` when a `next` key is already pending,
/// when [`MAX_PUBLISHED`] keys are published, or when other writes kept
/// winning.
pub async fn rotate(gw: &Gateway, actor: &Principal) -> Result<Vec<KeyView>, DomainError> {
    authz::require(gw, actor, KEYS_MANAGE, "key.rotate", "-").await?;
    let cell = &gw.keys;
    let stored = cell.store.load_keys().await?;
    let added = add_next_keys(gw, stored, rotation_allowed).await?;
    let views: Vec<KeyView> = added
        .iter()
        .map(|k| view(&cell.policy, k, Phase::Next))
        .collect();
    for v in &views {
        audit::record(
            gw,
            actor,
            "key.rotate",
            &v.kid,
            serde_json::json!({"alg": v.alg, "activatesAt": v.activates_at}),
        )
        .await;
        tracing::info!(kid = %v.kid, activates_at = %v.activates_at, "signing key added");
    }
    Ok(views)
}

/// The longest a `kid` may be: thumbprints are 43 characters.
const MAX_KID_LEN: usize = 128;

/// Withdraws a compromised key at once: verifiers hear of it first (a
/// revocation of kind `key`, kept as long as any token it signed may live),
/// then it leaves the ring. An active key is replaced at once, by the
/// pending `next` key of its algorithm when there is one (verifiers know it
/// already), else by a fresh key. Revoking a revoked key changes nothing.
///
/// # Errors
/// `InsufficientPermissions` without `keys:manage`; `NotFound` for a key the
/// store does not hold; `Unavailable` when the store does not answer.
pub async fn revoke(gw: &Gateway, actor: &Principal, kid: &str) -> Result<KeyView, DomainError> {
    let shown = if kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        kid
    } else {
        "-"
    };
    authz::require(gw, actor, KEYS_MANAGE, "key.revoke", shown).await?;
    let not_found = || DomainError::NotFound(format!("signing key {shown}"));
    if shown == "-" {
        return Err(not_found());
    }
    let cell = &gw.keys;
    let stored = cell.store.load_keys().await?;
    let Some(record) = stored.keys.iter().find(|k| k.kid == kid) else {
        return Err(not_found());
    };
    if record.revoked_at.is_some() {
        return Ok(view(&cell.policy, record, Phase::Revoked));
    }
    // The ring is held from here: the follower, hearing of the revocation
    // below, must not rebuild (and add a stand-in of its own) before this
    // call has promoted the pending key.
    let mut inner = cell.inner.lock().await;
    // Verifiers first: from this entry on they refuse the key's tokens,
    // whatever JWKS they hold. Stored before the ring changes, so a failure
    // between the two leaves the key refused, never trusted.
    let now = Utc::now();
    let expires = (now + cell.policy.revocation_lifetime()).timestamp();
    let entry = gw
        .revocations
        .revoke(
            RevocationKind::Key {
                kid: kid.to_owned(),
            },
            expires,
        )
        .await?;
    gw.revocation_mirror.apply(&entry.entry);
    if entry.appended {
        gw.metrics.revocation_published("key");
    }
    // Never used here again, even if the ring's write below fails.
    cell.withdraw(kid);
    let mut stored = stored;
    let mut result = None;
    for _ in 0..SWAP_ATTEMPTS {
        let now = Utc::now();
        let (ph, _) = phases(&stored.keys, now, cell.policy.retain);
        let Some(i) = stored.keys.iter().position(|k| k.kid == kid) else {
            return Err(not_found());
        };
        let mut revoked = stored.keys[i].clone();
        if revoked.revoked_at.is_some() {
            result = Some(revoked);
            break;
        }
        revoked.revoked_at = Some(now);
        let mut upsert = vec![revoked.clone()];
        if ph[i] == Phase::Active {
            // The pending key of its algorithm signs from now; else a new one.
            let pending = stored
                .keys
                .iter()
                .zip(&ph)
                .filter(|(k, p)| k.alg == revoked.alg && **p == Phase::Next)
                .map(|(k, _)| k)
                .min_by_key(|k| k.activates_at);
            match pending {
                Some(k) => {
                    let mut k = k.clone();
                    k.activates_at = now;
                    upsert.push(k);
                }
                None => {
                    let alg = SigningAlg::parse(&revoked.alg).unwrap_or(cell.policy.signing_alg);
                    let (record, key) =
                        fresh(cell.kek.as_ref(), alg, now, now).map_err(DomainError::Internal)?;
                    inner.parsed.insert(record.kid.clone(), key);
                    upsert.push(record);
                }
            }
        }
        match cell.store.swap_keys(stored.version, &upsert, &[]).await? {
            Some(version) => {
                stored.version = version;
                for u in upsert {
                    match stored.keys.iter_mut().find(|k| k.kid == u.kid) {
                        Some(k) => *k = u,
                        None => stored.keys.push(u),
                    }
                }
                result = Some(revoked);
                break;
            }
            None => stored = cell.store.load_keys().await?,
        }
    }
    let Some(revoked) = result else {
        return Err(DomainError::Conflict(
            "the key ring kept changing while this call ran; try again".into(),
        ));
    };
    cell.rebuild(&mut inner, stored).await?;
    drop(inner);
    forget_signed_by_withdrawn(gw);
    audit::record(
        gw,
        actor,
        "key.revoke",
        kid,
        serde_json::json!({"alg": revoked.alg, "seq": entry.entry.seq}),
    )
    .await;
    tracing::warn!(kid, "signing key revoked");
    Ok(view(&cell.policy, &revoked, Phase::Revoked))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, alg: &str, activates: i64, revoked: Option<i64>) -> StoredKey {
        let t = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        StoredKey {
            kid: kid.into(),
            alg: alg.into(),
            created_at: t(0),
            activates_at: t(activates),
            revoked_at: revoked.map(t),
            private: SealedKey::Plain { pem: String::new() },
        }
    }

    #[test]
    fn phases_follow_the_clock_per_algorithm() {
        let keys = vec![
            key("a", "ES256", 100, None),
            key("b", "ES256", 200, None),
            key("c", "ES256", 300, None),
            key("r", "RS256", 50, None),
            key("x", "ES256", 250, Some(260)),
        ];
        let retain = chrono::Duration::seconds(60);
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let (p, next) = phases(&keys, at(210), retain);
        assert_eq!(p[0], Phase::Retired { since: at(200) });
        assert_eq!(p[1], Phase::Active);
        assert_eq!(p[2], Phase::Next);
        assert_eq!(p[3], Phase::Active, "another algorithm");
        assert_eq!(p[4], Phase::Revoked);
        assert_eq!(next, Some(at(260)), "a leaves the JWKS before c signs");
        let (p, next) = phases(&keys, at(300), retain);
        assert_eq!(p[0], Phase::Gone);
        assert_eq!(p[1], Phase::Retired { since: at(300) });
        assert_eq!(p[2], Phase::Active, "turns active by itself");
        assert_eq!(next, Some(at(360)));
    }

    #[test]
    fn a_revoked_successor_does_not_end_its_predecessor_early() {
        let keys = vec![
            key("a", "ES256", 100, None),
            key("b", "ES256", 200, Some(201)),
        ];
        let at = |s| DateTime::from_timestamp(s, 0).unwrap();
        let (p, _) = phases(&keys, at(300), chrono::Duration::seconds(60));
        assert_eq!(p, vec![Phase::Active, Phase::Revoked]);
    }
}
