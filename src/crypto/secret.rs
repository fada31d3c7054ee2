//! The API-key format: `<prefix>_<sk|pk>_<live|test>_<id><random><checksum>`.
//!
//! - `<id>`: the 16 base62 characters that follow `app_` in a generated
//!   application id, so a key can be presented alone;
//! - `<random>`: 43 base62 characters, 256 bits from the OS generator;
//! - `<checksum>`: CRC-32 of everything before it, as 6 base62 characters,
//!   so a mistyped key is refused before any lookup and secret scanners can
//!   recognise real keys.

use secrecy::{ExposeSecret, SecretString};

use super::random::{self, RandomError};
use crate::domain::{Environment, KeyType};

/// Characters of the id part embedded in a secret.
pub const ID_PART_LEN: usize = 16;
const RANDOM_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Characters of the random part kept at rest as a hint (24 of 256 bits).
const HINT_LEN: usize = 4;
const BODY_LEN: usize = ID_PART_LEN + RANDOM_LEN + CHECKSUM_LEN;
/// Generated application ids are `app_` plus the id part.
pub const APP_ID_PREFIX: &str = "app_";

/// A fresh application id: `app_` and 16 base62 characters (~95 bits).
pub fn new_app_id() -> Result<String, RandomError> {
    Ok(format!("{APP_ID_PREFIX}{}", random::base62(ID_PART_LEN)?))
}

/// A newly generated secret and its displayable prefix.
pub struct GeneratedSecret {
    /// The whole secret: shown once, then only its hash is kept.
    pub secret: SecretString,
    /// The non-secret head (`tsr_sk_live_<id>`), safe to display.
    pub prefix: String,
    /// The first characters of the random part (see [`ParsedSecret::hint`]).
    pub hint: String,
}

impl std::fmt::Debug for GeneratedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedSecret")
            .field("secret", &"<hidden>")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn checksum(head: &str) -> [u8; CHECKSUM_LEN] {
    random::base62_fixed(u64::from(crc32fast::hash(head.as_bytes())))
}

/// Appends the checksum of what `out` holds.
fn push_checksum(out: &mut String) {
    let sum = checksum(out);
    out.extend(sum.iter().copied().map(char::from));
}

/// Appends the checksum to a key body (head, id part and random part). The
/// format is public, so secret scanners can check keys; this gives nothing
/// away, and lets tests make the checksum-valid forgeries an attacker would.
pub fn seal(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + CHECKSUM_LEN);
    out.push_str(body);
    push_checksum(&mut out);
    out
}

/// Generates a secret for a generated application id (`app_` + 16 chars).
pub fn generate(
    prefix: &str,
    key_type: KeyType,
    env: Environment,
    app_id: &str,
) -> Result<GeneratedSecret, SecretFormatError> {
    let id_part = embeddable_id_part(app_id).ok_or(SecretFormatError::IdNotEmbeddable)?;
    let head = format!("{prefix}_{}_{}_{id_part}", key_type.tag(), env.as_str());
    let random = random::base62(RANDOM_LEN).map_err(|_| SecretFormatError::Random)?;
    let hint = random[..HINT_LEN].to_owned();
    let mut full = String::with_capacity(head.len() + RANDOM_LEN + CHECKSUM_LEN);
    full.push_str(&head);
    full.push_str(&random);
    push_checksum(&mut full);
    Ok(GeneratedSecret {
        secret: SecretString::from(full),
        prefix: head,
        hint,
    })
}

/// The id part of a generated application id, if it has that form.
pub fn embeddable_id_part(app_id: &str) -> Option<&str> {
    let part = app_id.strip_prefix(APP_ID_PREFIX)?;
    (part.len() == ID_PART_LEN && part.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(part)
}

/// Why a secret could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum SecretFormatError {
    /// Only generated ids can be embedded in a secret.
    #[error("this application id cannot be embedded in a generated secret")]
    IdNotEmbeddable,
    /// The OS generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// What a generated secret says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedSecret {
    /// The application id it embeds.
    pub app_id: String,
    /// `sk` or `pk`.
    pub key_type: KeyType,
    /// `live` or `test`.
    pub environment: Environment,
    /// The first 4 characters of the random part: kept at rest to tell a
    /// rotated-out secret from the current one without a second argon2 run.
    pub hint: String,
}

/// The outcome of looking at a presented secret.
#[derive(Debug, PartialEq, Eq)]
pub enum SecretCheck {
    /// It has the generated format and its checksum is right.
    Generated(ParsedSecret),
    /// It starts like a generated key but is malformed or mistyped:
    /// refuse without a lookup.
    Corrupt,
    /// Not in the generated format (e.g. an operator-chosen bootstrap secret):
    /// usable only together with an explicit AppId.
    Opaque,
}

/// Classifies `secret` against the configured key `prefix`.
pub fn check(prefix: &str, secret: &SecretString) -> SecretCheck {
    let s = secret.expose_secret();
    let Some(rest) = s.strip_prefix(prefix).and_then(|r| r.strip_prefix('_')) else {
        return SecretCheck::Opaque;
    };
    let mut parts = rest.splitn(3, '_');
    let (Some(kt), Some(env), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return SecretCheck::Corrupt;
    };
    let (Some(key_type), Some(environment)) = (KeyType::from_tag(kt), Environment::parse(env))
    else {
        return SecretCheck::Corrupt;
    };
    if body.len() != BODY_LEN || !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return SecretCheck::Corrupt;
    }
    let split = s.len() - CHECKSUM_LEN;
    // Not secret-dependent timing in a useful way: the checksum is public
    // information derivable from the rest of the key.
    if checksum(&s[..split]) != s.as_bytes()[split..] {
        return SecretCheck::Corrupt;
    }
    SecretCheck::Generated(ParsedSecret {
        app_id: [APP_ID_PREFIX, &body[..ID_PART_LEN]].concat(),
        key_type,
        environment,
        hint: body[ID_PART_LEN..ID_PART_LEN + HINT_LEN].to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_round_trips() {
        let id = new_app_id().unwrap();
        let g = generate("tsr", KeyType::Secret, Environment::Test, &id).unwrap();
        let s = g.secret.expose_secret();
        assert!(s.starts_with("tsr_sk_test_"), "{s}");
        assert!(g.prefix.starts_with("tsr_sk_test_") && s.starts_with(&g.prefix));
        assert_eq!(s.len(), "tsr_sk_test_".len() + BODY_LEN);
        assert_eq!(
            check("tsr", &g.secret),
            SecretCheck::Generated(ParsedSecret {
                app_id: id,
                key_type: KeyType::Secret,
                environment: Environment::Test,
                hint: g.hint.clone(),
            })
        );
        assert!(!format!("{g:?}").contains(s));
    }

    #[test]
    fn one_changed_character_is_caught() {
        let id = new_app_id().unwrap();
        let g = generate("tsr", KeyType::Public, Environment::Live, &id).unwrap();
        let s = g.secret.expose_secret().to_owned();
        for i in ["tsr_pk_live_".len(), s.len() - 10, s.len() - 1] {
            let mut b = s.clone().into_bytes();
            b[i] = if b[i] == b'a' { b'b' } else { b'a' };
            let t = SecretString::from(String::from_utf8(b).unwrap());
            assert_eq!(check("tsr", &t), SecretCheck::Corrupt, "position {i}");
        }
        let short = SecretString::from(s[..s.len() - 1].to_owned());
        assert_eq!(check("tsr", &short), SecretCheck::Corrupt);
    }

    #[test]
    fn foreign_strings_are_opaque_or_corrupt() {
        assert_eq!(
            check("tsr", &SecretString::from("hunter2")),
            SecretCheck::Opaque
        );
        assert_eq!(
            check("tsr", &SecretString::from("tsr_xx_live_abc")),
            SecretCheck::Corrupt
        );
        assert_eq!(
            check("tsr", &SecretString::from("tsr_")),
            SecretCheck::Corrupt
        );
        assert_eq!(
            check("tsr", &SecretString::from("tsr_sk_live_é")),
            SecretCheck::Corrupt
        );
    }

    #[test]
    fn only_generated_ids_embed() {
        assert!(generate("tsr", KeyType::Secret, Environment::Live, "admin").is_err());
        assert!(embeddable_id_part("app_0123456789abcdef").is_some());
    }
}

/// Property tests: presented secrets are untrusted input, so `check` must
/// classify anything without panicking, and the checksum must catch every
/// single-character slip in a generated key.
#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    /// Bounded, and no regression files written into the repository.
    fn config() -> Config {
        Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        }
    }

    fn key_type() -> impl Strategy<Value = KeyType> {
        prop_oneof![Just(KeyType::Secret), Just(KeyType::Public)]
    }

    fn environment() -> impl Strategy<Value = Environment> {
        prop_oneof![Just(Environment::Live), Just(Environment::Test)]
    }

    /// A generated application id (`app_` and 16 base62 characters).
    fn app_id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9]{16}".prop_map(|p| format!("{APP_ID_PREFIX}{p}"))
    }

    /// A configured key prefix: short, and never containing `_`, so the
    /// fields of the key stay separable.
    fn key_prefix() -> impl Strategy<Value = String> {
        "[a-z]{1,8}"
    }

    /// Strings that look like keys to various depths: the interesting
    /// inputs for `check`, next to wholly arbitrary ones.
    fn keyish() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            ".{0,120}",
            "tsr_(sk|pk|xx|)_(live|test|)_.{0,80}",
            // The right length, but arbitrary (often multi-byte) characters.
            "tsr_(sk|pk)_(live|test)_.{65}",
            "tsr_(sk|pk)_(live|test)_[A-Za-z0-9]{60,70}",
            "tsr(_[^_]{0,5}){0,5}",
        ]
    }

    fn generated(prefix: &str, kt: KeyType, env: Environment, id: &str) -> String {
        generate(prefix, kt, env, id)
            .unwrap()
            .secret
            .expose_secret()
            .to_owned()
    }

    proptest! {
        #![proptest_config(config())]

        /// Any string is classified without a panic; only a well-formed key
        /// with a right checksum is `Generated`, and what it names is what
        /// its text says.
        #[test]
        fn check_never_panics(s in keyish(), prefix in prop_oneof![Just("tsr".to_owned()), key_prefix()]) {
            let result = check(&prefix, &SecretString::from(s.clone()));
            if let SecretCheck::Generated(p) = result {
                let body = &s[s.len() - BODY_LEN..];
                prop_assert_eq!(p.app_id, format!("{APP_ID_PREFIX}{}", &body[..ID_PART_LEN]));
                let head = format!("{prefix}_");
                prop_assert!(s.starts_with(&head));
                prop_assert_eq!(seal(&s[..s.len() - CHECKSUM_LEN]), s);
            }
        }

        /// `generate` then `check` gives back the id, type, environment and
        /// hint, and the displayable prefix is a prefix of the secret.
        #[test]
        fn generate_then_check_round_trips(
            prefix in key_prefix(), kt in key_type(), env in environment(), id in app_id(),
        ) {
            let g = generate(&prefix, kt, env, &id).unwrap();
            let s = g.secret.expose_secret();
            prop_assert!(s.starts_with(&g.prefix));
            prop_assert_eq!(s.len(), g.prefix.len() + RANDOM_LEN + CHECKSUM_LEN);
            prop_assert_eq!(
                check(&prefix, &g.secret),
                SecretCheck::Generated(ParsedSecret {
                    app_id: id,
                    key_type: kt,
                    environment: env,
                    hint: g.hint.clone(),
                })
            );
        }

        /// One character replaced by any other (ASCII or not) is never taken
        /// for a generated key: the checksum catches it, or the shape does.
        #[test]
        fn one_changed_character_is_refused(
            kt in key_type(), env in environment(), id in app_id(),
            at in any::<prop::sample::Index>(), with in any::<char>(),
        ) {
            let s = generated("tsr", kt, env, &id);
            let chars: Vec<char> = s.chars().collect();
            let i = at.index(chars.len());
            prop_assume!(chars[i] != with);
            let mut changed = chars;
            changed[i] = with;
            let t: String = changed.into_iter().collect();
            let result = check("tsr", &SecretString::from(t.clone()));
            prop_assert!(
                !matches!(result, SecretCheck::Generated(_)),
                "position {} changed to {:?} accepted: {:?}", i, with, result
            );
        }

        /// A character dropped or added anywhere is refused the same way.
        #[test]
        fn one_character_more_or_less_is_refused(
            id in app_id(), at in any::<prop::sample::Index>(), with in any::<char>(), drop in any::<bool>(),
        ) {
            let s = generated("tsr", KeyType::Secret, Environment::Live, &id);
            let mut chars: Vec<char> = s.chars().collect();
            if drop {
                chars.remove(at.index(chars.len()));
            } else {
                chars.insert(at.index(chars.len() + 1), with);
            }
            let t: String = chars.into_iter().collect();
            prop_assert!(!matches!(check("tsr", &SecretString::from(t)), SecretCheck::Generated(_)));
        }
    }
}
