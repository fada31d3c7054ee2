//! Everything that touches key material or secrets: the signing key ring and
//! JWKS, JWT minting and checking, argon2id hashing on a bounded pool, the
//! secret format with its checksum, and keyed digests for caches.
//!
//! Only this module imports `jsonwebtoken`, `aws-lc-rs` and `argon2`.

pub mod hashing;
pub mod jwt;
pub mod keys;
pub mod mac;
pub mod random;
pub mod secret;

pub use hashing::SecretHasher;
pub use keys::{KeyRing, SigningAlg};
pub use mac::Pepper;
pub use secret::{ParsedSecret, SecretCheck};
