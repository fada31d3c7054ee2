//! The signing key ring: private keys as PKCS#8 PEM files in the keys
//! directory, their public halves as a JWKS.
//!
//! - `kid` is the RFC 7638 thumbprint of the public key, so every gateway
//!   reading the same files agrees on it without coordination.
//! - Generated files are named `<UTC time>-<alg>.pem`; the active key is the
//!   last file, in name order, of the configured algorithm, and the ID-token
//!   key the last file of the ID-token algorithm (the same key when both
//!   algorithms are equal). Every key in the directory is published, so a
//!   retired key keeps verifying the tokens it signed until its file is
//!   removed.
//! - Key pairs are parsed once at load; signing never re-parses a key.

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RSA_PKCS1_SHA256,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The signing algorithms the gateway can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SigningAlg {
    /// ECDSA P-256 with SHA-256 (the default: small and fast).
    #[default]
    ES256,
    /// Ed25519.
    EdDSA,
    /// RSA PKCS#1 v1.5 with SHA-256, 2048-bit keys when generated.
    RS256,
}

impl SigningAlg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "ES256",
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::RS256 => "RS256",
        }
    }
    /// Parses a JOSE `alg` name (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "ES256" => Some(SigningAlg::ES256),
            "EDDSA" => Some(SigningAlg::EdDSA),
            "RS256" => Some(SigningAlg::RS256),
            _ => None,
        }
    }
    fn file_tag(self) -> &'static str {
        match self {
            SigningAlg::ES256 => "es256",
            SigningAlg::EdDSA => "eddsa",
            SigningAlg::RS256 => "rs256",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key-ring failure, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the keys directory failed.
    #[error("keys directory {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not a private key we can use.
    #[error("key file {path}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Key generation or signing failed inside the crypto library.
    #[error("crypto failure: {0}")]
    Crypto(String),
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A JWS signature's bytes: ES256 and EdDSA signatures (64 bytes) on the
/// stack, so that signing allocates nothing per token; RS256's, of the
/// modulus' size, on the heap.
pub(crate) enum JwsSignature {
    /// ES256 (`r || s`) or EdDSA.
    Fixed([u8; 64]),
    /// RS256.
    Rsa(Vec<u8>),
}

impl JwsSignature {
    fn fixed(sig: &aws_lc_rs::signature::Signature) -> Result<Self, KeyError> {
        <[u8; 64]>::try_from(sig.as_ref())
            .map(Self::Fixed)
            .map_err(|_| KeyError::Crypto("unexpected signature length".into()))
    }
}

impl AsRef<[u8]> for JwsSignature {
    fn as_ref(&self) -> &[u8] {
        match self {
            Self::Fixed(s) => s,
            Self::Rsa(v) => v,
        }
    }
}

impl std::ops::Deref for JwsSignature {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

/// One loaded key: private half for signing, public half for the JWKS.
pub struct SigningKey {
    kid: String,
    alg: SigningAlg,
    file: PathBuf,
    pair: Pair,
    public_jwk: Value,
    header_b64: String,
    id_header_b64: String,
    verifying: super::jose::VerifyingKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("file", &self.file)
            .field("private", &"<hidden>")
            .finish()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638 thumbprint (SHA-256, base64url) of a public JWK, or `None` when
/// the key type is not one we sign with.
pub fn thumbprint(jwk: &Value) -> Option<String> {
    let s = |k: &str| jwk.get(k).and_then(Value::as_str);
    // Members in lexicographic order, no white space (RFC 7638 §3.2).
    let canonical = match s("kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv")?,
            s("x")?,
            s("y")?
        ),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, s("crv")?, s("x")?),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e")?, s("n")?),
        _ => return None,
    };
    Some(b64(
        digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref()
    ))
}

impl SigningKey {
    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }
    /// The algorithm.
    pub fn alg(&self) -> SigningAlg {
        self.alg
    }
    /// The PEM file it came from.
    pub fn file(&self) -> &Path {
        &self.file
    }
    /// The public JWK (with `kid`, `alg`, `use`).
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }
    /// The precomputed base64url JOSE header (`alg`, `kid`, `typ: at+jwt`).
    pub(crate) fn header_b64(&self) -> &str {
        &self.header_b64
    }
    /// The precomputed base64url JOSE header of ID tokens (`alg`, `kid`,
    /// `typ: JWT`).
    pub(crate) fn id_header_b64(&self) -> &str {
        &self.id_header_b64
    }
    /// Key for verifying tokens this key signed (its algorithm only).
    pub(crate) fn verifying_key(&self) -> &super::jose::VerifyingKey {
        &self.verifying
    }

    /// Signs `message`, returning the raw JWS signature bytes.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<JwsSignature, KeyError> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ec(k) => k
                .sign(&rng, message)
                .map_err(|_| KeyError::Crypto("ECDSA signing failed".into()))
                .and_then(|s| JwsSignature::fixed(&s)),
            Pair::Ed(k) => JwsSignature::fixed(&k.sign(message)),
            Pair::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .map_err(|_| KeyError::Crypto("RSA signing failed".into()))?;
                Ok(JwsSignature::Rsa(sig))
            }
        }
    }

    fn from_pair(pair: Pair, file: PathBuf) -> Result<Self, KeyError> {
        let bad = |reason: &str| KeyError::BadKey {
            path: file.clone(),
            reason: reason.to_owned(),
        };
        let (alg, mut jwk, decoding) = match &pair {
            Pair::Ec(k) => {
                let p = k.public_key().as_ref();
                if p.len() != 65 || p[0] != 4 {
                    return Err(bad("unexpected P-256 public key encoding"));
                }
                let (x, y) = (b64(&p[1..33]), b64(&p[33..]));
                let dk = jsonwebtoken::DecodingKey::from_ec_components(&x, &y)
                    .map_err(|e| bad(&e.to_string()))?;
                (
                    SigningAlg::ES256,
                    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                    dk,
                )
            }
            Pair::Ed(k) => {
                let x = b64(k.public_key().as_ref());
                let dk = jsonwebtoken::DecodingKey::from_ed_components(&x)
                    .map_err(|e| bad(&e.to_string()))?;
                (
                    SigningAlg::EdDSA,
                    json!({"kty": "OKP", "crv": "Ed25519", "x": x}),
                    dk,
                )
            }
            Pair::Rsa(k) => {
                let pk = k.public_key();
                let n = b64(pk.modulus().big_endian_without_leading_zero());
                let e = b64(pk.exponent().big_endian_without_leading_zero());
                let dk = jsonwebtoken::DecodingKey::from_rsa_components(&n, &e)
                    .map_err(|e| bad(&e.to_string()))?;
                (SigningAlg::RS256, json!({"kty": "RSA", "n": n, "e": e}), dk)
            }
        };
        let kid = thumbprint(&jwk).ok_or_else(|| bad("cannot compute thumbprint"))?;
        jwk["kid"] = json!(kid);
        jwk["alg"] = json!(alg.as_str());
        jwk["use"] = json!("sig");
        let header = json!({"alg": alg.as_str(), "kid": kid, "typ": "at+jwt"});
        let header_b64 = b64(header.to_string().as_bytes());
        let id_header = json!({"alg": alg.as_str(), "kid": kid, "typ": "JWT"});
        let id_header_b64 = b64(id_header.to_string().as_bytes());
        let jose_alg = match alg {
            SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            SigningAlg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
        };
        let verifying = super::jose::VerifyingKey::new(kid.clone(), jose_alg, decoding);
        Ok(Self {
            kid,
            alg,
            file,
            pair,
            public_jwk: jwk,
            header_b64,
            id_header_b64,
            verifying,
        })
    }

    /// Parses a PEM private key: PKCS#8 (`PRIVATE KEY`) holding P-256,
    /// Ed25519 or RSA, or the legacy `EC PRIVATE KEY` / `RSA PRIVATE KEY`.
    pub fn from_pem(text: &[u8], file: PathBuf) -> Result<Self, KeyError> {
        let bad = |reason: String| KeyError::BadKey {
            path: file.clone(),
            reason,
        };
        let block = pem::parse(text).map_err(|e| bad(format!("not PEM: {e}")))?;
        let der = block.contents();
        let pair = match block.tag() {
            "PRIVATE KEY" => {
                if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
                    Pair::Ec(k)
                } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    Pair::Ed(k)
                } else if let Ok(k) = RsaKeyPair::from_pkcs8(der) {
                    Pair::Rsa(k)
                } else {
                    return Err(bad(
                        "PKCS#8 key is not P-256, Ed25519 or RSA (2048 to 8192 bits)".into(),
                    ));
                }
            }
            "EC PRIVATE KEY" => Pair::Ec(
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(|e| bad(format!("not a P-256 key: {e}")))?,
            ),
            "RSA PRIVATE KEY" => Pair::Rsa(
                RsaKeyPair::from_der(der).map_err(|e| bad(format!("not an RSA key: {e}")))?,
            ),
            other => return Err(bad(format!("unsupported PEM block {other:?}"))),
        };
        Self::from_pair(pair, file)
    }
}

/// Generates a fresh private key as PKCS#8 PEM text.
pub fn generate_pem(alg: SigningAlg) -> Result<zeroize::Zeroizing<String>, KeyError> {
    let crypto = |what: &str| KeyError::Crypto(format!("{what} key generation failed"));
    let der: zeroize::Zeroizing<Vec<u8>> = match alg {
        SigningAlg::ES256 => {
            let rng = SystemRandom::new();
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| crypto("P-256"))?
                .as_ref()
                .to_vec()
                .into()
        }
        SigningAlg::EdDSA => {
            let rng = SystemRandom::new();
            Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| crypto("Ed25519"))?
                .as_ref()
                .to_vec()
                .into()
        }
        SigningAlg::RS256 => {
            let k = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| crypto("RSA"))?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&k)
                .map_err(|_| crypto("RSA"))?;
            der.as_ref().to_vec().into()
        }
    };
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der.to_vec())).into())
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the keys directory (mode 0700) if it is missing.
fn ensure_dir(dir: &Path) -> Result<(), KeyError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(io_err(dir))
}

/// Writes a new key of `alg` into `dir` (mode 0600, written to a temporary
/// name, synced, then renamed, so a crash never leaves half a key) and
/// returns its path.
pub fn generate_file(dir: &Path, alg: SigningAlg) -> Result<PathBuf, KeyError> {
    ensure_dir(dir)?;
    let pem = generate_pem(alg)?;
    let now = chrono::Utc::now();
    let name = format!(
        "{}-{}.pem",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        alg.file_tag()
    );
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(pem.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Make the rename durable; failure here is not fatal to the key.
        let _ = d.sync_all();
    }
    Ok(path)
}

/// Loads every `*.pem` in `dir`, sorted by file name.
pub fn load_dir(dir: &Path) -> Result<Vec<SigningKey>, KeyError> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem") && p.is_file())
        .collect();
    paths.sort();
    let mut keys: Vec<SigningKey> = Vec::with_capacity(paths.len());
    for p in paths {
        let text = zeroize::Zeroizing::new(std::fs::read(&p).map_err(io_err(&p))?);
        let key = SigningKey::from_pem(&text, p)?;
        // The same key under two names would publish a duplicate kid.
        if !keys.iter().any(|k| k.kid == key.kid) {
            keys.push(key);
        }
    }
    Ok(keys)
}

/// Where a published key is in its life (docs/api.md, "Signing keys over time").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet: verifiers learn it before its first token.
    Next,
    /// Signing.
    Active,
    /// Published until the last token it signed has expired.
    Retired,
}

impl KeyState {
    /// `next`, `active` or `retired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

/// The published keys with their states, the one signing access tokens, the
/// one signing ID tokens, and the JWKS document.
pub struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
    states: Vec<KeyState>,
    active: usize,
    id_token: usize,
    jwks: String,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active().kid)
            .field("id_token", &self.id_token_key().kid)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl KeyRing {
    /// Loads the keys in `dir`, first generating a key of `id_alg` and one
    /// of `alg` when the directory holds none of that algorithm (one key
    /// serves both when `alg == id_alg`). Returns the ring and the paths of
    /// the keys it generated, oldest first.
    ///
    /// The ID-token key is generated before the access-token key so that,
    /// in a fresh directory, the last file is still the one signing access
    /// tokens, as it was before ID tokens existed.
    pub fn load_or_init(
        dir: &Path,
        alg: SigningAlg,
        id_alg: SigningAlg,
    ) -> Result<(Self, Vec<PathBuf>), KeyError> {
        ensure_dir(dir)?;
        let mut keys = load_dir(dir)?;
        let mut generated = Vec::new();
        for a in [id_alg, alg] {
            if !keys.iter().any(|k| k.alg == a) {
                generated.push(generate_file(dir, a)?);
                keys = load_dir(dir)?;
            }
        }
        Ok((Self::from_keys(keys, alg, id_alg)?, generated))
    }

    /// Builds a ring from loaded keys; the active key is the last of `alg`,
    /// the ID-token key the last of `id_alg`.
    pub fn from_keys(
        keys: Vec<SigningKey>,
        alg: SigningAlg,
        id_alg: SigningAlg,
    ) -> Result<Self, KeyError> {
        let last_of = |a: SigningAlg| {
            keys.iter()
                .rposition(|k| k.alg == a)
                .ok_or_else(|| KeyError::Crypto(format!("no {a} key in the key ring")))
        };
        let active = last_of(alg)?;
        let id_token = last_of(id_alg)?;
        let states = (0..keys.len())
            .map(|i| {
                if i == active || i == id_token {
                    KeyState::Active
                } else {
                    KeyState::Retired
                }
            })
            .collect();
        Ok(Self::build(
            keys.into_iter().map(Arc::new).collect(),
            states,
            active,
            id_token,
        ))
    }

    /// Builds a ring from keys in known states (the lifecycle's), signing
    /// access tokens with `active` and ID tokens with `id_token` (kids of
    /// two of them, in state `Active`).
    pub fn assemble(
        keys: Vec<(Arc<SigningKey>, KeyState)>,
        active: &str,
        id_token: &str,
    ) -> Result<Self, KeyError> {
        let find = |kid: &str| {
            keys.iter()
                .position(|(k, st)| k.kid == kid && *st == KeyState::Active)
                .ok_or_else(|| KeyError::Crypto(format!("no active key {kid} in the key ring")))
        };
        let (active, id_token) = (find(active)?, find(id_token)?);
        let (keys, states) = keys.into_iter().unzip();
        Ok(Self::build(keys, states, active, id_token))
    }

    fn build(
        keys: Vec<Arc<SigningKey>>,
        states: Vec<KeyState>,
        active: usize,
        id_token: usize,
    ) -> Self {
        // The JWKS is built here and only here, from public members.
        let jwks = json!({"keys": keys.iter().map(|k| k.public_jwk.clone()).collect::<Vec<_>>()})
            .to_string();
        Self {
            keys,
            states,
            active,
            id_token,
            jwks,
        }
    }

    /// The state of the published key `kid`.
    pub fn state(&self, kid: &str) -> Option<KeyState> {
        let i = self.keys.iter().position(|k| k.kid == kid)?;
        self.states.get(i).copied()
    }

    /// The key that signs new access tokens.
    pub fn active(&self) -> &SigningKey {
        // `active` is an index computed from `keys` in `from_keys`.
        &self.keys[self.active]
    }

    /// The key that signs new ID tokens: the last file of the ID-token
    /// algorithm (the active key itself when both algorithms are equal).
    pub fn id_token_key(&self) -> &SigningKey {
        // `id_token` is an index computed from `keys` in `from_keys`.
        &self.keys[self.id_token]
    }

    /// A key by `kid`.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid).map(|k| &**k)
    }

    /// Every published key (in file-name order for a ring read from files).
    pub fn keys(&self) -> &[Arc<SigningKey>] {
        &self.keys
    }

    /// The JWKS document (public keys only).
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    /// Algorithms a verifier may meet in our tokens.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = self.keys.iter().map(|k| k.alg.as_str()).collect();
        algs.sort_unstable();
        algs.dedup();
        algs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/jose-rfc-vectors.json"
        ))
        .expect("tests/data/jose-rfc-vectors.json in the repository");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn thumbprint_matches_rfc7638_and_rfc8037() {
        let v = vectors();
        let rsa = &v["rfc7638_3_1"];
        assert_eq!(thumbprint(&rsa["jwk"]).unwrap(), rsa["thumbprint_sha256"]);
        let ed = &v["rfc8037_A"];
        assert_eq!(
            thumbprint(&ed["public_jwk"]).unwrap(),
            ed["thumbprint_sha256"]
        );
    }

    #[test]
    fn ed25519_signature_matches_rfc8037() {
        let v = &vectors()["rfc8037_A"];
        let d = URL_SAFE_NO_PAD
            .decode(v["private_jwk"]["d"].as_str().unwrap())
            .unwrap();
        let x = URL_SAFE_NO_PAD
            .decode(v["private_jwk"]["x"].as_str().unwrap())
            .unwrap();
        let pair = Ed25519KeyPair::from_seed_and_public_key(&d, &x).unwrap();
        let key = SigningKey::from_pair(Pair::Ed(pair), PathBuf::from("rfc8037")).unwrap();
        assert_eq!(key.kid(), v["thumbprint_sha256"]);
        let jws = v["jws_compact"].as_str().unwrap();
        let (signing_input, sig) = jws.rsplit_once('.').unwrap();
        assert_eq!(b64(&key.sign(signing_input.as_bytes()).unwrap()), sig);
    }

    #[test]
    fn every_algorithm_generates_loads_and_publishes_no_private_part() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
            let path = generate_file(dir.path(), alg).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o777, 0o600);
            }
        }
        let ring = KeyRing::from_keys(
            load_dir(dir.path()).unwrap(),
            SigningAlg::EdDSA,
            SigningAlg::RS256,
        )
        .unwrap();
        assert_eq!(ring.keys().len(), 3);
        assert_eq!(ring.active().alg(), SigningAlg::EdDSA);
        assert_eq!(ring.id_token_key().alg(), SigningAlg::RS256);
        let jwks: Value = serde_json::from_str(ring.jwks_json()).unwrap();
        for k in jwks["keys"].as_array().unwrap() {
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(k.get(private).is_none(), "{private} published: {k}");
            }
            assert_eq!(thumbprint(k).unwrap(), k["kid"]);
        }
    }

    #[test]
    fn a_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broken.pem"), "not a key").unwrap();
        let err =
            KeyRing::load_or_init(dir.path(), SigningAlg::ES256, SigningAlg::RS256).unwrap_err();
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }

    #[test]
    fn an_id_token_key_is_generated_beside_the_access_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let (ring, generated) =
            KeyRing::load_or_init(dir.path(), SigningAlg::ES256, SigningAlg::RS256).unwrap();
        eprintln!("ES256 + RS256 key generation: {:?}", started.elapsed());
        assert_eq!(generated.len(), 2);
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.active().alg(), SigningAlg::ES256);
        assert_eq!(ring.id_token_key().alg(), SigningAlg::RS256);
        // The access-token key is the last file, as before ID tokens.
        assert_eq!(load_dir(dir.path()).unwrap()[1].kid(), ring.active().kid());
        let jwks: Value = serde_json::from_str(ring.jwks_json()).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert!(kids.contains(&ring.id_token_key().kid()), "{jwks}");
        assert!(kids.contains(&ring.active().kid()), "{jwks}");

        // A restart generates nothing and picks the same keys.
        let (again, generated) =
            KeyRing::load_or_init(dir.path(), SigningAlg::ES256, SigningAlg::RS256).unwrap();
        assert!(generated.is_empty());
        assert_eq!(again.id_token_key().kid(), ring.id_token_key().kid());
        assert_eq!(again.active().kid(), ring.active().kid());

        // Asking for EdDSA ID tokens adds that key only.
        let (eddsa, generated) =
            KeyRing::load_or_init(dir.path(), SigningAlg::ES256, SigningAlg::EdDSA).unwrap();
        assert_eq!(generated.len(), 1);
        assert_eq!(eddsa.id_token_key().alg(), SigningAlg::EdDSA);
        assert_eq!(eddsa.active().kid(), ring.active().kid());
    }

    #[test]
    fn one_key_serves_both_when_the_algorithms_agree() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, generated) =
            KeyRing::load_or_init(dir.path(), SigningAlg::EdDSA, SigningAlg::EdDSA).unwrap();
        assert_eq!(generated.len(), 1);
        assert_eq!(ring.keys().len(), 1);
        assert_eq!(ring.id_token_key().kid(), ring.active().kid());
    }
}
