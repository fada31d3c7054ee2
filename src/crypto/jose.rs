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
    if token.len() > max_bytes {
        return Err(JoseError::TooLarge(max_bytes));
    }
    let h = jsonwebtoken::decode_header(token).map_err(|e| JoseError::Malformed(e.to_string()))?;
    if h.typ.as_deref() != Some("at+jwt") {
        return Err(JoseError::WrongType);
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
