//! Minting access tokens with the active key, and checking them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::jose;
use super::keys::{KeyError, KeyRing};

/// Signs `claims` as a compact JWS with the ring's active key
/// (header `alg`, `kid`, `typ: at+jwt`, RFC 9068).
pub fn mint<C: Serialize>(ring: &KeyRing, claims: &C) -> Result<String, KeyError> {
    let key = ring.active();
    let payload =
        serde_json::to_vec(claims).map_err(|e| KeyError::Crypto(format!("claims: {e}")))?;
    let header = key.header_b64();
    let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 100);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
    let sig = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(&sig, &mut token);
    Ok(token)
}

pub use super::jose::JoseError as TokenError;

/// Tokens larger than this are refused before parsing.
const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// Checks a token of this gateway through the one validation path of
/// `crypto::jose`: key by `kid`, algorithm pinned to the key's (never the
/// header's alone), `typ`, signature, `exp`/`nbf` with the leeway, and the
/// issuer and audience when given.
fn check<C: DeserializeOwned>(
    ring: &KeyRing,
    token: &str,
    issuer: Option<&str>,
    audience: Option<&str>,
    leeway_secs: u64,
) -> Result<C, TokenError> {
    let header = jose::read_header(token, MAX_TOKEN_BYTES)?;
    let key = ring
        .get(&header.kid)
        .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?;
    jose::decode(
        token,
        &header,
        key.verifying_key(),
        issuer,
        audience,
        leeway_secs,
    )
}

/// Checks a token from this gateway for one audience.
pub fn verify<C: DeserializeOwned>(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
    audience: &str,
    leeway_secs: u64,
) -> Result<C, TokenError> {
    check(ring, token, Some(issuer), Some(audience), leeway_secs)
}

/// As [`verify`], without an audience check: for revocation and
/// introspection, which concern every token of this issuer.
pub fn verify_any_audience<C: DeserializeOwned>(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
    leeway_secs: u64,
) -> Result<C, TokenError> {
    check(ring, token, Some(issuer), None, leeway_secs)
}

/// Checks any token against a JWKS document, as a downstream verifier
/// would; `issuer` and `audience` are checked when given. Returns the claims.
pub fn verify_with_jwks(
    jwks_json: &str,
    token: &str,
    issuer: Option<&str>,
    audience: Option<&str>,
    leeway_secs: u64,
) -> Result<serde_json::Value, TokenError> {
    let keys = jose::parse_jwks(jwks_json)?;
    let header = jose::read_header(token, MAX_TOKEN_BYTES)?;
    let key = keys
        .iter()
        .find(|k| k.kid == header.kid)
        .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?;
    jose::decode(token, &header, key, issuer, audience, leeway_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::{SigningAlg, generate_file, load_dir};
    use serde_json::{Value, json};

    fn ring(alg: SigningAlg) -> (tempfile::TempDir, KeyRing) {
        let dir = tempfile::tempdir().unwrap();
        let (ring, _) = KeyRing::load_or_init(dir.path(), alg).unwrap();
        (dir, ring)
    }

    fn claims(exp_in: i64) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": "https://gw", "aud": "api", "sub": "app_1", "iat": now, "nbf": now, "exp": now + exp_in})
    }

    #[test]
    fn minted_tokens_verify_with_every_algorithm() {
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
            let (_d, ring) = ring(alg);
            let t = mint(&ring, &claims(60)).unwrap();
            let c: Value = verify(&ring, &t, "https://gw", "api", 0).unwrap();
            assert_eq!(c["sub"], "app_1");
            let h = jsonwebtoken::decode_header(&t).unwrap();
            assert_eq!(h.kid.as_deref(), Some(ring.active().kid()));
            assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        }
    }

    #[test]
    fn refusals() {
        let (_d, ring) = ring(SigningAlg::ES256);
        let t = mint(&ring, &claims(60)).unwrap();
        assert!(verify::<Value>(&ring, &t, "https://other", "api", 0).is_err());
        assert!(verify::<Value>(&ring, &t, "https://gw", "other", 0).is_err());
        let expired = mint(&ring, &claims(-120)).unwrap();
        assert!(verify::<Value>(&ring, &expired, "https://gw", "api", 5).is_err());
        // A payload swapped under a valid signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let mut forged = claims(60);
        forged["sub"] = json!("app_2");
        let body = URL_SAFE_NO_PAD.encode(forged.to_string());
        parts[1] = &body;
        assert!(verify::<Value>(&ring, &parts.join("."), "https://gw", "api", 0).is_err());
        // A key the ring does not hold.
        let (_d2, other) = super::tests::ring(SigningAlg::ES256);
        let foreign = mint(&other, &claims(60)).unwrap();
        assert!(matches!(
            verify::<Value>(&ring, &foreign, "https://gw", "api", 0),
            Err(TokenError::UnknownKey(_))
        ));
        assert!(verify::<Value>(&ring, "a.b.c", "https://gw", "api", 0).is_err());
    }

    #[test]
    fn jwks_verification_uses_the_keys_alg() {
        let (_d, ring) = ring(SigningAlg::EdDSA);
        let t = mint(&ring, &claims(60)).unwrap();
        let c = verify_with_jwks(ring.jwks_json(), &t, Some("https://gw"), Some("api"), 0).unwrap();
        assert_eq!(c["sub"], "app_1");
        assert!(verify_with_jwks(ring.jwks_json(), &t, None, Some("nope"), 0).is_err());
        assert!(verify_with_jwks("{\"keys\": []}", &t, None, None, 0).is_err());
    }

    #[test]
    fn a_retired_key_still_verifies_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        generate_file(dir.path(), SigningAlg::ES256).unwrap();
        let old = KeyRing::from_keys(load_dir(dir.path()).unwrap(), SigningAlg::ES256).unwrap();
        let t = mint(&old, &claims(60)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        generate_file(dir.path(), SigningAlg::ES256).unwrap();
        let new = KeyRing::from_keys(load_dir(dir.path()).unwrap(), SigningAlg::ES256).unwrap();
        assert_ne!(new.active().kid(), old.active().kid());
        assert!(verify::<Value>(&new, &t, "https://gw", "api", 0).is_ok());
    }
}
