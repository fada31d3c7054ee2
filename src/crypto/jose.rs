//! JOSE for verifiers: reading a JWKS and checking a token against it.
//! Compiled with the `verifier` feature alone (no gateway dependencies).
//!
//! The algorithm always comes from the key: a token's own `alg` header must
//! equal it and is never trusted alone. Only ES256, EdDSA and RS256 keys are
//! accepted, so `none` and every HMAC algorithm are refused by construction
//! (an RS256 public key can never be used as an HMAC secret).

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;

/// Why a key set or a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// The JWKS document does not parse.
    #[error("JWKS does not parse: {0}")]
    BadJwks(String),
    /// Not a compact JWS with a readable header.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Larger than the configured limit.
    #[error("token larger than {0} bytes")]
    TooLarge(usize),
    /// `typ` is not `at+jwt`.
    #[error("not an access token (typ must be at+jwt)")]
    WrongType,
    /// `typ` is not `JWT`: refused where an ID token is expected (an
    /// access token is never taken for one).
    #[error("not an ID token (typ must be JWT)")]
    NotAnIdToken,
    /// No published key has this `kid`.
    #[error("unknown signing key (kid {0:?})")]
    UnknownKey(String),
    /// The header's `alg` is not the key's.
    #[error("algorithm {0} does not match the key's")]
    WrongAlgorithm(String),
    /// Signature, `exp`, `nbf`, `iss` or `aud` failed.
    #[error("{0}")]
    Invalid(String),
}

/// A public key usable for verification.
#[derive(Clone)]
pub struct VerifyingKey {
    /// Key id.
    pub kid: String,
    /// The only algorithm this key verifies.
    pub alg: Algorithm,
    key: DecodingKey,
}

impl VerifyingKey {
    /// A key that verifies `alg` only (the gateway's key ring builds these;
    /// a verifier-only build reads its keys from a JWKS instead).
    #[cfg(feature = "gateway")]
    pub(crate) fn new(kid: String, alg: Algorithm, key: DecodingKey) -> Self {
        Self { kid, alg, key }
    }
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// The algorithm a JWK may verify: its `alg` when it names one we accept,
/// else the one its key type implies; `None` for anything else (HMAC keys,
/// unknown curves, encryption keys).
fn key_alg(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(implied),
        Some(KeyAlgorithm::EdDSA) if implied == Algorithm::EdDSA => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(implied),
        Some(_) => None,
    }
}

/// Parses a JWKS, keeping the signature keys we can use (with a `kid`).
pub fn parse_jwks(json: &str) -> Result<Vec<VerifyingKey>, JoseError> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| JoseError::BadJwks(e.to_string()))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let alg = key_alg(jwk)?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(VerifyingKey { kid, alg, key })
        })
        .collect())
}

/// What a token's header says, read before any key is chosen.
#[derive(Debug, Clone)]
pub struct TokenHeader {
    /// Key id.
    pub kid: String,
    /// Claimed algorithm.
    pub alg: Algorithm,
}

/// Reads and checks the header: size, shape, `typ: at+jwt`, a `kid`.
pub fn read_header(token: &str, max_bytes: usize) -> Result<TokenHeader, JoseError> {
    read_typed_header(token, max_bytes, "at+jwt", JoseError::WrongType)
}

/// Reads an ID token's header: size, shape, `typ: JWT`, a `kid`.
#[cfg(feature = "gateway")]
pub(crate) fn read_id_token_header(
    token: &str,
    max_bytes: usize,
) -> Result<TokenHeader, JoseError> {
    read_typed_header(token, max_bytes, "JWT", JoseError::NotAnIdToken)
}

/// The header checks shared by both kinds of token; `typ` must be exactly
/// what the gateway mints, so one kind is never accepted as the other.
fn read_typed_header(
    token: &str,
    max_bytes: usize,
    typ: &str,
    wrong: JoseError,
) -> Result<TokenHeader, JoseError> {
    if token.len() > max_bytes {
        return Err(JoseError::TooLarge(max_bytes));
    }
    let h = jsonwebtoken::decode_header(token).map_err(|e| JoseError::Malformed(e.to_string()))?;
    if h.typ.as_deref() != Some(typ) {
        return Err(wrong);
    }
    let kid = h.kid.ok_or_else(|| JoseError::Malformed("no kid".into()))?;
    Ok(TokenHeader { kid, alg: h.alg })
}

/// Checks the signature with `key` (its algorithm only), then `exp` and
/// `nbf` with `leeway_secs`, and `iss` and `aud` when given (`None` skips
/// that check: revocation and introspection concern every audience).
pub fn decode<C: DeserializeOwned>(
    token: &str,
    header: &TokenHeader,
    key: &VerifyingKey,
    issuer: Option<&str>,
    audience: Option<&str>,
    leeway_secs: u64,
) -> Result<C, JoseError> {
    if header.alg != key.alg {
        return Err(JoseError::WrongAlgorithm(format!("{:?}", header.alg)));
    }
    let mut v = Validation::new(key.alg);
    v.leeway = leeway_secs;
    v.validate_nbf = true;
    let mut required = vec!["exp", "nbf", "iat", "sub"];
    match issuer {
        Some(i) => {
            v.set_issuer(&[i]);
            required.push("iss");
        }
        None => v.iss = None,
    }
    match audience {
        Some(a) => {
            v.set_audience(&[a]);
            required.push("aud");
        }
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    jsonwebtoken::decode::<C>(token, &key.key, &v)
        .map(|d| d.claims)
        .map_err(|e| JoseError::Invalid(e.to_string()))
}

/// Checks an ID token used as a hint (OIDC RP-Initiated Logout
/// `id_token_hint`): the signature with `key` (its algorithm only) and
/// `iss`. `exp` must be present but is not enforced, since an expired ID
/// token is still a valid hint; `aud` must be present and is left to the
/// caller, who knows which client is logging out.
#[cfg(feature = "gateway")]
pub(crate) fn decode_id_token_hint(
    token: &str,
    header: &TokenHeader,
    key: &VerifyingKey,
    issuer: &str,
) -> Result<serde_json::Value, JoseError> {
    if header.alg != key.alg {
        return Err(JoseError::WrongAlgorithm(format!("{:?}", header.alg)));
    }
    let mut v = Validation::new(key.alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["iss", "sub", "aud", "exp"]);
    let claims: serde_json::Value = jsonwebtoken::decode(token, &key.key, &v)
        .map(|d| d.claims)
        .map_err(|e| JoseError::Invalid(e.to_string()))?;
    // jsonwebtoken accepts an `iss` array holding the issuer; an ID token's
    // `iss` is one string (OIDC Core §2).
    if claims.get("iss").and_then(serde_json::Value::as_str) != Some(issuer) {
        return Err(JoseError::Invalid("InvalidIssuer".into()));
    }
    Ok(claims)
}

/// Checks an upstream OpenID provider's ID token against that provider's
/// keys: the key named by `kid` (or the only key, when the provider names
/// none), its algorithm only (so never `none` or HMAC), then the signature,
/// `exp` (and `nbf` when present) with `leeway_secs`, `iss` equal to
/// `issuer`, and `aud` containing `audience`. `typ`, when present, must be
/// `JWT`. An unknown `kid` is [`JoseError::UnknownKey`], so the caller can
/// refetch the key set. Returns the claims for the checks only the caller
/// can make (`azp`, `iat`, `nonce`).
#[cfg(feature = "gateway")]
pub(crate) fn decode_upstream_id_token(
    token: &str,
    keys: &[VerifyingKey],
    issuer: &str,
    audience: &str,
    leeway_secs: u64,
    max_bytes: usize,
) -> Result<serde_json::Value, JoseError> {
    if token.len() > max_bytes {
        return Err(JoseError::TooLarge(max_bytes));
    }
    let h = jsonwebtoken::decode_header(token).map_err(|e| JoseError::Malformed(e.to_string()))?;
    // RFC 7515 §4.1.11: extensions listed in `crit` must be understood, and
    // we understand none (jsonwebtoken ignores the header).
    if h.crit.is_some() {
        return Err(JoseError::Malformed(
            "crit names an unsupported extension".into(),
        ));
    }
    if h.typ
        .as_deref()
        .is_some_and(|t| !t.eq_ignore_ascii_case("JWT"))
    {
        return Err(JoseError::NotAnIdToken);
    }
    let key = match &h.kid {
        Some(kid) => keys
            .iter()
            .find(|k| &k.kid == kid)
            .ok_or_else(|| JoseError::UnknownKey(kid.clone()))?,
        None => match keys {
            [only] => only,
            _ => return Err(JoseError::UnknownKey(String::new())),
        },
    };
    if h.alg != key.alg {
        return Err(JoseError::WrongAlgorithm(format!("{:?}", h.alg)));
    }
    let mut v = Validation::new(key.alg);
    v.leeway = leeway_secs;
    v.validate_nbf = true;
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let claims: serde_json::Value = jsonwebtoken::decode(token, &key.key, &v)
        .map(|d| d.claims)
        .map_err(|e| JoseError::Invalid(e.to_string()))?;
    // An ID token's `iss` is one string (OIDC Core §2), never an array.
    if claims.get("iss").and_then(serde_json::Value::as_str) != Some(issuer) {
        return Err(JoseError::Invalid("InvalidIssuer".into()));
    }
    Ok(claims)
}

/// The JOSE name of an algorithm.
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::RS256 => "RS256",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> serde_json::Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/jose-rfc-vectors.json"
        ))
        .expect("tests/data/jose-rfc-vectors.json in the repository");
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn hmac_and_unsupported_keys_are_dropped() {
        let v = vectors();
        let keys = &v["rfc7520_keys"];
        let set = serde_json::json!({"keys": [keys["3.5_hmac"], keys["3.1_ec_pub"], keys["3.3_rsa_pub"]]});
        let parsed = parse_jwks(&set.to_string()).unwrap();
        // HMAC: never; P-521: not ours; the RSA key stays, as RS256.
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].alg, Algorithm::RS256);
    }

    #[test]
    fn rfc7520_rs256_example_verifies_with_its_key() {
        let v = vectors();
        let set = serde_json::json!({"keys": [v["rfc7520_keys"]["3.3_rsa_pub"]]});
        let key = &parse_jwks(&set.to_string()).unwrap()[0];
        let jws = v["rfc7520_jws"]["4.1_RS256_deterministic"]
            .as_str()
            .unwrap();
        let (signing_input, sig) = jws.rsplit_once('.').unwrap();
        assert!(
            jsonwebtoken::crypto::verify(sig, signing_input.as_bytes(), &key.key, Algorithm::RS256)
                .unwrap()
        );
        let mut tampered = signing_input.to_owned();
        tampered.push('A');
        assert!(
            !jsonwebtoken::crypto::verify(sig, tampered.as_bytes(), &key.key, Algorithm::RS256)
                .unwrap_or(false)
        );
    }
}

/// Property tests on the verification path: a bearer token is arbitrary
/// input, so reading its header and checking it must never panic, and any
/// change to a validly signed token's header, payload or signature must be
/// refused. Needs the gateway's key ring to sign, hence the feature gate.
#[cfg(all(test, feature = "gateway"))]
mod props {
    use super::*;
    use crate::crypto::jwt;
    use crate::crypto::keys::{KeyRing, SigningAlg};
    use crate::domain::AccessClaims;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;
    use proptest::test_runner::Config;
    use serde_json::{Value, json};
    use std::sync::OnceLock;

    const ISS: &str = "https://gw.test";
    const AUD: &str = "api";
    const MAX: usize = 64 * 1024;

    /// Bounded, and no regression files written into the repository.
    fn config(cases: u32) -> Config {
        Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        }
    }

    /// One ring per algorithm, generated once (RSA key generation is slow);
    /// the keys live in memory, so the directory can go at once.
    fn rings() -> &'static [KeyRing] {
        static RINGS: OnceLock<Vec<KeyRing>> = OnceLock::new();
        RINGS.get_or_init(|| {
            [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256]
                .into_iter()
                .map(|alg| {
                    let dir = tempfile::tempdir().unwrap();
                    KeyRing::load_or_init(dir.path(), alg, alg).unwrap().0
                })
                .collect()
        })
    }

    fn ring() -> impl Strategy<Value = &'static KeyRing> {
        (0..3usize).prop_map(|i| &rings()[i])
    }

    /// The one verification path, as the gateway and verifiers run it.
    fn verify(ring: &KeyRing, token: &str) -> Result<Value, JoseError> {
        let header = read_header(token, MAX)?;
        let key = ring
            .get(&header.kid)
            .ok_or_else(|| JoseError::UnknownKey(header.kid.clone()))?;
        decode(token, &header, key.verifying_key(), Some(ISS), Some(AUD), 0)
    }

    fn claims(sub: &str, perms: &[String]) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({
            "iss": ISS, "aud": AUD, "sub": sub, "iat": now, "nbf": now, "exp": now + 600,
            "jti": "j1", "client_id": sub, "scope": perms.join(" "), "permissions": perms,
            "env": "live", "key_type": "secret",
        })
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Signs `header` and `payload` as given (for well-signed oddities).
    fn sign_raw(ring: &KeyRing, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = ring.active().sign(input.as_bytes()).unwrap();
        format!("{input}.{}", b64(&sig))
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_-]{0,60}",
            prop::collection::vec(any::<u8>(), 0..80).prop_map(|b| b64(&b)),
            ".{0,20}",
        ]
    }

    /// Arbitrary strings and things shaped like compact JWS.
    fn tokenish() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            prop::collection::vec(segment(), 0..5).prop_map(|s| s.join(".")),
            "[A-Za-z0-9_.=+/-]{0,200}",
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,16}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("alg".to_owned()),
                        Just("kid".to_owned()),
                        Just("typ".to_owned()),
                        Just("exp".to_owned()),
                        Just("sub".to_owned()),
                        "[a-z]{1,6}"
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Replaces the character at `at` in `s` by `with` (which differs).
    fn replace_char(s: &str, at: prop::sample::Index, with: char) -> Option<String> {
        let mut chars: Vec<char> = s.chars().collect();
        let i = at.index(chars.len());
        if chars[i] == with {
            return None;
        }
        chars[i] = with;
        Some(chars.into_iter().collect())
    }

    proptest! {
        #![proptest_config(config(256))]

        /// Arbitrary strings never panic the verifier, and are refused.
        #[test]
        fn arbitrary_tokens_are_refused(ring in ring(), t in tokenish()) {
            prop_assert!(verify(ring, &t).is_err());
            let _ = read_header(&t, 16);
        }

        /// Headers of any shape, naming a real key or not, with an arbitrary
        /// payload and signature: refused, never a panic.
        #[test]
        fn arbitrary_headers_are_refused(
            ring in ring(), extra in json_value(), use_kid in any::<bool>(),
            alg in prop_oneof![Just("ES256"), Just("EdDSA"), Just("RS256"), Just("HS256"), Just("none"), Just("")],
            typ in prop_oneof![Just("at+jwt"), Just("JWT"), Just("")],
            payload in json_value(), sig in segment(),
        ) {
            let mut h = json!({"alg": alg, "typ": typ});
            if use_kid {
                h["kid"] = json!(ring.active().kid());
            }
            if let (Value::Object(extra), Some(obj)) = (extra, h.as_object_mut()) {
                for (k, v) in extra {
                    obj.entry(k).or_insert(v);
                }
            }
            let t = format!("{}.{}.{sig}", b64(h.to_string().as_bytes()), b64(payload.to_string().as_bytes()));
            prop_assert!(verify(ring, &t).is_err());
        }

        /// A validly signed token with an arbitrary payload (bytes or JSON)
        /// is refused or decoded, never a panic, for loose and strict claims.
        #[test]
        fn signed_arbitrary_payloads_never_panic(
            ring in ring(), payload in prop_oneof![
                json_value().prop_map(|v| v.to_string().into_bytes()),
                prop::collection::vec(any::<u8>(), 0..64),
            ],
        ) {
            let header = URL_SAFE_NO_PAD.decode(ring.active().header_b64()).unwrap();
            let t = sign_raw(ring, &header, &payload);
            let _ = verify(ring, &t);
            if let Ok(h) = read_header(&t, MAX) {
                let key = ring.get(&h.kid).unwrap().verifying_key();
                let _ = decode::<AccessClaims>(&t, &h, key, Some(ISS), Some(AUD), 0);
            }
        }

        /// One character of the header or payload changed to anything else:
        /// refused. (The untouched token verifies, so this is not vacuous.)
        #[test]
        fn a_changed_character_is_refused(
            ring in ring(), sub in "[a-z0-9_]{1,20}", perms in prop::collection::vec("[a-z]{1,6}:[a-z*]{1,6}", 0..4),
            part in 0..2usize, at in any::<prop::sample::Index>(), with in any::<char>(),
        ) {
            let t = jwt::mint(ring, &claims(&sub, &perms)).unwrap();
            prop_assert!(verify(ring, &t).is_ok());
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            let Some(changed) = replace_char(&parts[part], at, with) else {
                return Ok(());
            };
            parts[part] = changed;
            prop_assert!(verify(ring, &parts.join(".")).is_err());
        }

        /// Claims rewritten under the original signature (a wider grant, an
        /// other subject, a later expiry, or any value): refused.
        #[test]
        fn a_rewritten_payload_is_refused(
            ring in ring(), key in prop_oneof![
                Just("sub"), Just("permissions"), Just("exp"), Just("aud"), Just("iss"), Just("scope"), Just("x")
            ],
            value in prop_oneof![Just(json!(["*"])), Just(json!("app_other")), Just(json!(i64::MAX)), json_value()],
        ) {
            let original = claims("app_1", &["content:read".to_owned()]);
            let t = jwt::mint(ring, &original).unwrap();
            let mut forged = original.clone();
            forged[key] = value;
            prop_assume!(forged != original);
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            parts[1] = b64(forged.to_string().as_bytes());
            prop_assert!(verify(ring, &parts.join(".")).is_err());
        }

        /// A rewritten header (algorithm swapped, `kid` or `typ` changed,
        /// a field added) under the original signature: refused.
        #[test]
        fn a_rewritten_header_is_refused(
            ring in ring(), key in prop_oneof![Just("alg"), Just("kid"), Just("typ"), Just("jku"), Just("crit")],
            value in prop_oneof![
                Just(json!("HS256")), Just(json!("none")), Just(json!("ES256")), Just(json!("EdDSA")),
                Just(json!("RS256")), Just(json!("JWT")), json_value()
            ],
        ) {
            let t = jwt::mint(ring, &claims("app_1", &[])).unwrap();
            let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
            let original: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[0]).unwrap()).unwrap();
            let mut h = original.clone();
            h[key] = value;
            prop_assume!(h != original);
            parts[0] = b64(h.to_string().as_bytes());
            prop_assert!(verify(ring, &parts.join(".")).is_err());
        }

        /// One bit of the signature flipped: refused.
        #[test]
        fn a_flipped_signature_bit_is_refused(ring in ring(), bit in any::<prop::sample::Index>()) {
            let t = jwt::mint(ring, &claims("app_1", &[])).unwrap();
            let (input, sig) = t.rsplit_once('.').unwrap();
            let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            let i = bit.index(sig.len() * 8);
            sig[i / 8] ^= 1 << (i % 8);
            let forged = format!("{input}.{}", b64(&sig));
            prop_assert!(verify(ring, &forged).is_err());
        }
    }
}
