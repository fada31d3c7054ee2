//! Opaque high-entropy tokens people's clients hold: refresh tokens,
//! authorization codes, session cookie secrets, CSRF tokens. They carry
//! 256 random bits, so the store keeps a plain SHA-256 of each (a slow hash
//! adds nothing against guessing 256 bits) and compares in constant time.
//! PKCE's S256 transform lives here too.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::random::{self, RandomError};

/// Random characters in a token (base62: about 256 bits).
const RANDOM_LEN: usize = 43;
/// Length of the checksum `secret::seal` appends.
const CHECKSUM_LEN: usize = 6;

/// A new random value of 256 bits, base62.
pub fn random_value() -> Result<SecretString, RandomError> {
    random::base62(RANDOM_LEN).map(SecretString::from)
}

/// A new refresh token: `{prefix}_rt_{random}{checksum}`, so secret
/// scanners can recognise and check one (docs/api.md, "People").
pub fn new_refresh_token(prefix: &str) -> Result<SecretString, RandomError> {
    let body = format!("{prefix}_rt_{}", random::base62(RANDOM_LEN)?);
    Ok(SecretString::from(super::secret::seal(&body)))
}

/// Whether `token` has the refresh-token shape with a valid checksum: a
/// malformed one is refused without a store lookup.
pub fn is_refresh_token(prefix: &str, token: &str) -> bool {
    let Some(rest) = token
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix("_rt_"))
    else {
        return false;
    };
    rest.len() == RANDOM_LEN + CHECKSUM_LEN
        && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        && super::secret::seal(&token[..token.len() - CHECKSUM_LEN]) == token
}

/// SHA-256 of a token, hex: how the store keys it.
pub fn digest_hex(value: &str) -> String {
    let d = digest::digest(&digest::SHA256, value.as_bytes());
    let mut out = String::with_capacity(64);
    for b in d.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether `value` hashes to `hex`, compared in constant time.
pub fn matches_digest(value: &SecretString, hex: &str) -> bool {
    digest_hex(value.expose_secret())
        .as_bytes()
        .ct_eq(hex.as_bytes())
        .into()
}

/// Constant-time equality of two strings (CSRF tokens and the like).
pub fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// PKCE S256 (RFC 7636 §4.2): base64url(SHA-256(verifier)).
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// Whether a PKCE `code_verifier` is well-formed (RFC 7636 §4.1: 43 to 128
/// characters of `[A-Za-z0-9-._~]`).
pub fn valid_verifier(v: &str) -> bool {
    (43..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_have_a_checkable_shape() {
        let t = new_refresh_token("tsr").unwrap();
        let s = t.expose_secret();
        assert!(s.starts_with("tsr_rt_"), "{s}");
        assert!(is_refresh_token("tsr", s));
        assert!(!is_refresh_token("acme", s));
        let mut forged = s.to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'a' { 'b' } else { 'a' });
        assert!(!is_refresh_token("tsr", &forged));
        assert!(!is_refresh_token("tsr", "tsr_rt_short"));
    }

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_verifier(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a b".repeat(20)));
    }

    #[test]
    fn digests() {
        let v = SecretString::from("abc");
        let h = digest_hex("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(matches_digest(&v, &h));
        assert!(!matches_digest(&SecretString::from("abd"), &h));
        assert!(same("x", "x") && !same("x", "y"));
    }
}
