//! A per-process random pepper and keyed digests made with it.
//!
//! The verified-secret cache is keyed by HMAC-SHA256(pepper, secret): the
//! cache never holds a secret, and its keys are useless outside this process.

use aws_lc_rs::hmac;
use secrecy::{ExposeSecret, SecretString};

use super::random::{self, RandomError};

/// An HMAC-SHA256 key drawn at start-up and never persisted.
pub struct Pepper(hmac::Key);

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pepper(<hidden>)")
    }
}

impl Pepper {
    /// Draws a fresh 256-bit pepper.
    pub fn random() -> Result<Self, RandomError> {
        let mut k = zeroize::Zeroizing::new([0u8; 32]);
        random::fill(k.as_mut())?;
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, k.as_ref())))
    }

    /// HMAC-SHA256 of the secret under the pepper.
    pub fn digest(&self, secret: &SecretString) -> [u8; 32] {
        let tag = hmac::sign(&self.0, secret.expose_secret().as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// A value derived from a secret for one purpose: base64url of
/// HMAC-SHA256(secret, label). Knowing it reveals nothing of the secret,
/// and values for different labels are unrelated (the console's CSRF
/// token is derived from the session cookie's secret this way).
pub fn derive(secret: &str, label: &str) -> String {
    use base64::Engine;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hmac::sign(&key, label.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_depend_on_pepper_and_secret() {
        let p = Pepper::random().unwrap();
        let q = Pepper::random().unwrap();
        let s = SecretString::from("abc");
        assert_eq!(p.digest(&s), p.digest(&s));
        assert_ne!(p.digest(&s), q.digest(&s));
        assert_ne!(p.digest(&s), p.digest(&SecretString::from("abd")));
        assert_eq!(format!("{p:?}"), "Pepper(<hidden>)");
    }

    #[test]
    fn derived_values_depend_on_secret_and_label() {
        assert_eq!(derive("s", "a"), derive("s", "a"));
        assert_ne!(derive("s", "a"), derive("t", "a"));
        assert_ne!(derive("s", "a"), derive("s", "b"));
        assert_eq!(derive("s", "a").len(), 43);
    }
}
