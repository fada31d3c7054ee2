//! The key-encryption key: 32 random bytes, given as base64 in `TESSERA_KEK`
//! or a file, that seal private signing keys at rest in a shared store
//! (docs/api.md, "Signing keys over time") with AES-256-GCM. Whoever reads the store without it learns
//! the public keys only.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The key's length in bytes (AES-256).
const KEY_LEN: usize = 32;

/// The most a key file is read: a key is 44 characters, so anything much
/// longer is the wrong file (and `/dev/zero` must not be read for ever).
const MAX_FILE_LEN: u64 = 4096;

/// Padding is optional: operators paste keys with or without `=`.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// Why a key-encryption key cannot be read or used. No message quotes the
/// key, its file's content or what was sealed.
#[derive(Debug, thiserror::Error)]
pub enum KekError {
    /// Nothing was given (an empty variable or file).
    #[error(
        "the key-encryption key is empty: give 32 random bytes in base64 (for example the output of `openssl rand -base64 32`)"
    )]
    Empty,
    /// The text is not base64 in either alphabet.
    #[error(
        "the key-encryption key is not base64: give 32 random bytes in standard or URL-safe base64, padded or not"
    )]
    NotBase64,
    /// Base64, but not of 32 bytes.
    #[error(
        "the key-encryption key decodes to {got} bytes, it must be exactly 32 (44 characters of base64)"
    )]
    WrongLength {
        /// How many bytes it decodes to.
        got: usize,
    },
    /// The key file cannot be read.
    #[error("cannot read the key-encryption key file {}: {source}", .path.display())]
    File {
        /// The file named in the configuration.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The key file is longer than any key.
    #[error(
        "the key-encryption key file {} is larger than {MAX_FILE_LEN} bytes: it must hold only the key, in base64",
        .path.display()
    )]
    FileTooLarge {
        /// The file named in the configuration.
        path: PathBuf,
    },
    /// The system random generator failed (a new key or a nonce).
    #[error("the system random number generator failed")]
    Random,
    /// Encryption failed (the input is beyond what AES-GCM seals at once).
    #[error("sealing a private key failed")]
    Seal,
    /// A stored nonce is not 96 bits.
    #[error(
        "a sealed private key has a {got}-byte nonce, it must be 12: the stored key is damaged"
    )]
    NonceLength {
        /// Its length in bytes.
        got: usize,
    },
    /// Authentication failed: another key, another `kid`, or altered data.
    #[error(
        "a sealed private key does not open with this key-encryption key: the key is not the one it was sealed with, or the stored key was altered"
    )]
    Open,
}

/// The key-encryption key. Zeroized on drop; `Debug` shows nothing of it.
pub struct Kek(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<hidden>)")
    }
}

impl Kek {
    /// Reads a key from base64 text (standard or URL-safe alphabet, padded
    /// or not, surrounding whitespace ignored) of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, KekError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KekError::Empty);
        }
        let bytes = Zeroizing::new(
            STANDARD_LENIENT
                .decode(text)
                .or_else(|_| URL_SAFE_LENIENT.decode(text))
                .map_err(|_| KekError::NotBase64)?,
        );
        let key: [u8; KEY_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KekError::WrongLength { got: bytes.len() })?;
        Ok(Self(Zeroizing::new(key)))
    }

    /// Reads a key from a file holding it as [`parse`](Self::parse) takes
    /// it (a trailing newline is fine).
    pub fn from_file(path: &Path) -> Result<Self, KekError> {
        let file_error = |source| KekError::File {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(file_error)?;
        let mut text = Zeroizing::new(Vec::new());
        // One byte past the limit tells a file that is too large.
        file.take(MAX_FILE_LEN + 1)
            .read_to_end(&mut text)
            .map_err(file_error)?;
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(KekError::FileTooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::str::from_utf8(&text).map_err(|_| KekError::NotBase64)?;
        Self::parse(text)
    }

    /// A new random key, as standard padded base64 (what `parse` reads).
    pub fn generate() -> Result<String, KekError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        super::random::fill(key.as_mut_slice()).map_err(|_| KekError::Random)?;
        Ok(STANDARD.encode(key.as_slice()))
    }

    /// Seals `plaintext` with AES-256-GCM under a fresh random 96-bit nonce,
    /// binding `aad`: returns the nonce and the ciphertext with its tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<([u8; 12], Vec<u8>), KekError> {
        let mut nonce = [0u8; NONCE_LEN];
        super::random::fill(&mut nonce).map_err(|_| KekError::Random)?;
        let mut in_out = plaintext.to_vec();
        self.key()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut in_out,
            )
            .map_err(|_| KekError::Seal)?;
        Ok((nonce, in_out))
    }

    /// Opens what [`seal`](Self::seal) made with the same `aad`. Fails on
    /// another key, another `aad`, any altered byte or a nonce that is not
    /// 12 bytes; the plaintext is zeroized when dropped.
    pub fn open(
        &self,
        aad: &[u8],
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, KekError> {
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| KekError::NonceLength { got: nonce.len() })?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let len = self
            .key()?
            .open_in_place(nonce, Aad::from(aad), in_out.as_mut_slice())
            .map_err(|_| KekError::Open)?
            .len();
        in_out.truncate(len);
        Ok(in_out)
    }

    /// The AEAD key, made per call: sealing happens once per rotation and
    /// opening once per key load, so nothing is worth caching.
    fn key(&self) -> Result<LessSafeKey, KekError> {
        let unbound =
            UnboundKey::new(&AES_256_GCM, self.0.as_slice()).map_err(|_| KekError::Seal)?;
        Ok(LessSafeKey::new(unbound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

    const KID: &[u8] = b"kid-thumbprint";
    const PEM: &[u8] = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n";

    fn kek() -> Kek {
        Kek::parse(&Kek::generate().unwrap()).unwrap()
    }

    #[test]
    fn sealed_keys_open_with_the_same_key_and_aad() {
        let k = kek();
        let (nonce, sealed) = k.seal(KID, PEM).unwrap();
        assert_eq!(sealed.len(), PEM.len() + 16, "ciphertext and a 16-byte tag");
        assert!(
            !sealed.windows(8).any(|w| PEM.windows(8).any(|p| p == w)),
            "no plaintext run survives"
        );
        assert_eq!(k.open(KID, &nonce, &sealed).unwrap().as_slice(), PEM);
        let (nonce2, sealed2) = k.seal(KID, PEM).unwrap();
        assert_ne!(nonce, nonce2, "a fresh nonce every time");
        assert_ne!(sealed, sealed2);
        let (n, empty) = k.seal(KID, b"").unwrap();
        assert!(k.open(KID, &n, &empty).unwrap().is_empty());
    }

    #[test]
    fn another_key_another_aad_or_altered_data_do_not_open() {
        let k = kek();
        let (nonce, sealed) = k.seal(KID, PEM).unwrap();
        assert!(matches!(
            kek().open(KID, &nonce, &sealed),
            Err(KekError::Open)
        ));
        assert!(matches!(
            k.open(b"another-kid", &nonce, &sealed),
            Err(KekError::Open)
        ));
        for i in [0, sealed.len() / 2, sealed.len() - 1] {
            for bit in [0, 7] {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                assert!(matches!(k.open(KID, &nonce, &bad), Err(KekError::Open)));
            }
        }
        let mut bad_nonce = nonce;
        bad_nonce[0] ^= 1;
        assert!(matches!(
            k.open(KID, &bad_nonce, &sealed),
            Err(KekError::Open)
        ));
        assert!(matches!(
            k.open(KID, &nonce[..11], &sealed),
            Err(KekError::NonceLength { got: 11 })
        ));
        assert!(matches!(
            k.open(KID, &[0; 16], &sealed),
            Err(KekError::NonceLength { got: 16 })
        ));
        assert!(matches!(
            k.open(KID, &nonce, &sealed[..sealed.len() - 1]),
            Err(KekError::Open)
        ));
        assert!(matches!(k.open(KID, &nonce, &[]), Err(KekError::Open)));
        assert!(matches!(k.open(KID, &nonce, &[1; 5]), Err(KekError::Open)));
    }

    #[test]
    fn parse_takes_either_alphabet_padded_or_not() {
        // 0xfb 0xff… uses the characters the two alphabets spell differently.
        let raw: Vec<u8> = (0..32u8).map(|i| 0xfb ^ i).collect();
        let (nonce, sealed) = Kek::parse(&STANDARD.encode(&raw))
            .unwrap()
            .seal(KID, PEM)
            .unwrap();
        let std = STANDARD.encode(&raw);
        assert!(std.contains('+') || std.contains('/'), "{std}");
        for text in [
            std.clone(),
            STANDARD_NO_PAD.encode(&raw),
            URL_SAFE.encode(&raw),
            URL_SAFE_NO_PAD.encode(&raw),
            format!("{std}\n"),
            format!("  {std}\r\n"),
        ] {
            let k = Kek::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(k.open(KID, &nonce, &sealed).unwrap().as_slice(), PEM);
        }
    }

    #[test]
    fn parse_refuses_other_lengths_and_garbage_without_quoting_them() {
        for n in [0usize, 16, 31, 33, 64] {
            let text = STANDARD.encode(vec![7u8; n]);
            let e = Kek::parse(&text).unwrap_err();
            if n == 0 {
                assert!(matches!(e, KekError::Empty));
            } else {
                assert!(
                    matches!(e, KekError::WrongLength { got } if got == n),
                    "{e}"
                );
                assert!(e.to_string().contains("exactly 32"), "{e}");
            }
        }
        let secretish = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMw!!";
        for text in [
            secretish,
            "not base64 at all",
            "====",
            "YQ=x",
            "\u{e9}t\u{e9}",
            "   ",
        ] {
            let e = Kek::parse(text).unwrap_err();
            assert!(
                matches!(e, KekError::NotBase64 | KekError::Empty),
                "{text:?}: {e}"
            );
            assert!(!e.to_string().contains(text.trim()) || text.trim().is_empty());
        }
        assert!(
            !Kek::parse(secretish)
                .unwrap_err()
                .to_string()
                .contains("c2Vj")
        );
    }

    #[test]
    fn generated_keys_parse_back_and_differ() {
        let a = Kek::generate().unwrap();
        assert_eq!(a.len(), 44);
        assert!(a.ends_with('='));
        assert_eq!(STANDARD.decode(&a).unwrap().len(), 32);
        Kek::parse(&a).unwrap();
        assert_ne!(a, Kek::generate().unwrap());
    }

    #[test]
    fn key_files_are_read_and_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let text = Kek::generate().unwrap();
        let path = dir.path().join("kek");
        std::fs::write(&path, format!("{text}\n")).unwrap();
        let (nonce, sealed) = Kek::parse(&text).unwrap().seal(KID, PEM).unwrap();
        let k = Kek::from_file(&path).unwrap();
        assert_eq!(k.open(KID, &nonce, &sealed).unwrap().as_slice(), PEM);

        let missing = dir.path().join("absent-kek");
        let e = Kek::from_file(&missing).unwrap_err();
        assert!(matches!(e, KekError::File { .. }));
        assert!(e.to_string().contains("absent-kek"), "{e}");

        let big = dir.path().join("big");
        std::fs::write(&big, "A".repeat(5000)).unwrap();
        let e = Kek::from_file(&big).unwrap_err();
        assert!(matches!(e, KekError::FileTooLarge { .. }), "{e}");

        let short = dir.path().join("short");
        std::fs::write(&short, STANDARD.encode([1u8; 31])).unwrap();
        assert!(matches!(
            Kek::from_file(&short),
            Err(KekError::WrongLength { got: 31 })
        ));
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xffu8, 0xfe, 0x00]).unwrap();
        assert!(matches!(Kek::from_file(&binary), Err(KekError::NotBase64)));
        // A directory is not a key file either.
        assert!(matches!(
            Kek::from_file(dir.path()),
            Err(KekError::File { .. })
        ));
    }

    #[test]
    fn debug_shows_nothing_of_the_key() {
        let text = Kek::generate().unwrap();
        let shown = format!("{:?}", Kek::parse(&text).unwrap());
        assert_eq!(shown, "Kek(<hidden>)");
        assert!(!shown.contains(&text[..8]));
    }
}
