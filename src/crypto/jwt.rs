//! Minting access tokens with the active key and ID tokens with the
//! ID-token key, and checking them.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::jose;
use super::keys::{KeyError, KeyRing, SigningAlg, SigningKey};

/// Signs `claims` as a compact JWS with the ring's active key
/// (header `alg`, `kid`, `typ: at+jwt`, RFC 9068).
pub fn mint<C: Serialize>(ring: &KeyRing, claims: &C) -> Result<String, KeyError> {
    let key = ring.active();
    sign_compact(key, key.header_b64(), claims)
}

/// Signs `claims` as an ID token with the ring's ID-token key (header
/// `alg`, `kid`, `typ: JWT`). The caller builds the OIDC claims (`iss`,
/// `sub`, `aud`, `exp`, `iat`, `nonce`, `at_hash`, ...).
pub fn mint_id_token<C: Serialize>(ring: &KeyRing, claims: &C) -> Result<String, KeyError> {
    let key = ring.id_token_key();
    sign_compact(key, key.id_header_b64(), claims)
}

/// As [`mint`], for claims already serialized (`claims::ClaimsTemplate`).
pub(crate) fn mint_serialized(ring: &KeyRing, payload: &[u8]) -> Result<String, KeyError> {
    let key = ring.active();
    sign_payload(key, key.header_b64(), payload)
}

/// `header.payload.signature` with `header` already base64url-encoded.
fn sign_compact<C: Serialize>(
    key: &SigningKey,
    header: &str,
    claims: &C,
) -> Result<String, KeyError> {
    let payload =
        serde_json::to_vec(claims).map_err(|e| KeyError::Crypto(format!("claims: {e}")))?;
    sign_payload(key, header, &payload)
}

/// [`sign_compact`] once the claims are JSON.
fn sign_payload(key: &SigningKey, header: &str, payload: &[u8]) -> Result<String, KeyError> {
    let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 100);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
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

/// Checks an ID token of this gateway given back as RP-initiated logout's
/// `id_token_hint`: signed by a key of the ring (algorithm pinned to the
/// key), `typ: JWT` (an access token is refused), `iss` equal to `issuer`.
/// `exp` is not enforced: OpenID Connect RP-Initiated Logout accepts an
/// expired ID token as a hint. Returns the claims; `aud` (always present)
/// is for the caller to check against the client.
pub fn verify_id_token_hint(
    ring: &KeyRing,
    token: &str,
    issuer: &str,
) -> Result<serde_json::Value, TokenError> {
    let header = jose::read_id_token_header(token, MAX_TOKEN_BYTES)?;
    let key = ring
        .get(&header.kid)
        .ok_or_else(|| TokenError::UnknownKey(header.kid.clone()))?;
    jose::decode_id_token_hint(token, &header, key.verifying_key(), issuer)
}

/// The ID token's `at_hash` for `access_token` (OIDC Core §3.1.3.6): the
/// base64url left half of the access token's hash, the hash being the one
/// of the ID token's `alg`: SHA-256 for RS256 and ES256. EdDSA names no
/// hash; for Ed25519 we use SHA-512, the hash Ed25519 itself is built on
/// (RFC 8032), as OpenID-certified providers do (panva's oidc-provider).
pub fn at_hash(access_token: &str, alg: SigningAlg) -> String {
    use aws_lc_rs::digest;
    let algorithm = match alg {
        SigningAlg::RS256 | SigningAlg::ES256 => &digest::SHA256,
        SigningAlg::EdDSA => &digest::SHA512,
    };
    let hash = digest::digest(algorithm, access_token.as_bytes());
    let bytes = hash.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
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
        let (ring, _) = KeyRing::load_or_init(dir.path(), alg, alg).unwrap();
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
        let old = KeyRing::from_keys(
            load_dir(dir.path()).unwrap(),
            SigningAlg::ES256,
            SigningAlg::ES256,
        )
        .unwrap();
        let t = mint(&old, &claims(60)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        generate_file(dir.path(), SigningAlg::ES256).unwrap();
        let new = KeyRing::from_keys(
            load_dir(dir.path()).unwrap(),
            SigningAlg::ES256,
            SigningAlg::ES256,
        )
        .unwrap();
        assert_ne!(new.active().kid(), old.active().kid());
        assert!(verify::<Value>(&new, &t, "https://gw", "api", 0).is_ok());
    }

    /// An ES256 access-token key beside an RS256 ID-token key, as by
    /// default (RSA generation is slow: made once).
    fn split_ring() -> &'static KeyRing {
        static RING: std::sync::OnceLock<KeyRing> = std::sync::OnceLock::new();
        RING.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            KeyRing::load_or_init(dir.path(), SigningAlg::ES256, SigningAlg::RS256)
                .unwrap()
                .0
        })
    }

    fn id_claims(exp_in: i64) -> Value {
        let now = chrono::Utc::now().timestamp();
        json!({"iss": "https://gw", "aud": "client_1", "sub": "usr_1", "iat": now,
               "exp": now + exp_in, "nonce": "n-0S6_WzA2Mj", "sid": "s1"})
    }

    #[test]
    fn id_tokens_are_signed_by_the_id_key_with_typ_jwt() {
        let ring = split_ring();
        let t = mint_id_token(ring, &id_claims(60)).unwrap();
        let h = jsonwebtoken::decode_header(&t).unwrap();
        assert_eq!(h.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(h.kid.as_deref(), Some(ring.id_token_key().kid()));
        assert_eq!(h.typ.as_deref(), Some("JWT"));
        // Exactly alg, kid, typ in the header.
        let raw = URL_SAFE_NO_PAD
            .decode(t.split('.').next().unwrap())
            .unwrap();
        let header: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(header.as_object().unwrap().len(), 3, "{header}");
        let c = verify_id_token_hint(ring, &t, "https://gw").unwrap();
        assert_eq!(c["aud"], "client_1");
        assert_eq!(c["nonce"], "n-0S6_WzA2Mj");
        // A relying party checks it against the published JWKS: the header
        // says JWT, so the access-token path of a verifier refuses it.
        assert_eq!(
            verify_with_jwks(ring.jwks_json(), &t, Some("https://gw"), None, 0),
            Err(TokenError::WrongType)
        );
    }

    #[test]
    fn an_expired_hint_is_still_a_hint_but_nothing_else_passes() {
        let ring = split_ring();
        let expired = mint_id_token(ring, &id_claims(-86_400)).unwrap();
        let c = verify_id_token_hint(ring, &expired, "https://gw").unwrap();
        assert_eq!(c["sub"], "usr_1");
        // Another issuer.
        assert!(verify_id_token_hint(ring, &expired, "https://other").is_err());
        // An access token is never taken for an ID token...
        let access = mint(ring, &claims(60)).unwrap();
        assert_eq!(
            verify_id_token_hint(ring, &access, "https://gw"),
            Err(TokenError::NotAnIdToken)
        );
        // ... nor an ID token for an access token, even with a matching aud.
        let mut as_api = id_claims(60);
        as_api["aud"] = json!("api");
        as_api["nbf"] = as_api["iat"].clone();
        let id = mint_id_token(ring, &as_api).unwrap();
        assert_eq!(
            verify::<Value>(ring, &id, "https://gw", "api", 0),
            Err(TokenError::WrongType)
        );
        assert!(verify_any_audience::<Value>(ring, &id, "https://gw", 0).is_err());
        // A payload swapped under a valid signature.
        let mut parts: Vec<&str> = expired.split('.').collect();
        let mut forged = id_claims(60);
        forged["sub"] = json!("usr_admin");
        let body = URL_SAFE_NO_PAD.encode(forged.to_string());
        parts[1] = &body;
        assert!(verify_id_token_hint(ring, &parts.join("."), "https://gw").is_err());
        // A key the ring does not hold.
        let (_d, other) = super::tests::ring(SigningAlg::ES256);
        let foreign = mint_id_token(&other, &id_claims(60)).unwrap();
        assert!(matches!(
            verify_id_token_hint(ring, &foreign, "https://gw"),
            Err(TokenError::UnknownKey(_))
        ));
        // The id key's header with the access key's kid: algorithm pinned.
        let header = json!({"alg": "RS256", "kid": ring.active().kid(), "typ": "JWT"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(id_claims(60).to_string())
        );
        let sig = ring.id_token_key().sign(input.as_bytes()).unwrap();
        let swapped = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert!(matches!(
            verify_id_token_hint(ring, &swapped, "https://gw"),
            Err(TokenError::WrongAlgorithm(_))
        ));
        // Claims an ID token always has.
        for missing in ["iss", "sub", "aud", "exp"] {
            let mut c = id_claims(60);
            c.as_object_mut().unwrap().remove(missing);
            let t = mint_id_token(ring, &c).unwrap();
            assert!(
                verify_id_token_hint(ring, &t, "https://gw").is_err(),
                "{missing}"
            );
        }
        // An `iss` array holding the issuer is not an ID token's `iss`.
        let mut c = id_claims(60);
        c["iss"] = json!(["https://gw", "https://other"]);
        let t = mint_id_token(ring, &c).unwrap();
        assert!(verify_id_token_hint(ring, &t, "https://gw").is_err());
        for junk in ["", "a.b.c", "....", "eyJ9.e30.AA"] {
            assert!(verify_id_token_hint(ring, junk, "https://gw").is_err());
        }
    }

    #[test]
    fn at_hash_follows_oidc_core() {
        // SHA-256("abc") is ba7816bf8f01cfea414140de5dae2223 b00361a3...
        // (FIPS 180-2 B.1): its left 128 bits, base64url, worked by hand.
        assert_eq!(at_hash("abc", SigningAlg::RS256), "ungWv48Bz-pBQUDeXa4iIw");
        assert_eq!(at_hash("abc", SigningAlg::ES256), "ungWv48Bz-pBQUDeXa4iIw");
        // The access token and at_hash of OIDC Core's example ID token.
        assert_eq!(
            at_hash(
                "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y",
                SigningAlg::RS256
            ),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        // SHA-512("abc") begins ddaf35a193617aba cc417349ae204131
        // 12e6fa4e89a97ea2 0a9eeee64b55d39a (FIPS 180-2 C.1): 256 bits kept.
        assert_eq!(
            at_hash("abc", SigningAlg::EdDSA),
            "3a81oZNherrMQXNJriBBMRLm-k6JqX6iCp7u5ktV05o"
        );
    }
}
