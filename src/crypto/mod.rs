//! Everything that touches key material or secrets: the signing key ring and
//! JWKS, JWT minting and checking, argon2id hashing on a bounded pool, the
//! secret format with its checksum, and keyed digests for caches.
//!
//! Only this module imports `jsonwebtoken`, `aws-lc-rs` and `argon2`. With
//! the `verifier` feature alone only `jose` is compiled.

#[cfg(feature = "gateway")]
pub mod hashing;
pub mod jose;
#[cfg(feature = "gateway")]
pub mod jwt;
#[cfg(feature = "gateway")]
pub mod kek;
#[cfg(feature = "gateway")]
pub mod keys;
#[cfg(feature = "gateway")]
pub mod mac;
#[cfg(feature = "gateway")]
pub mod opaque;
#[cfg(feature = "gateway")]
pub mod random;
#[cfg(feature = "gateway")]
pub mod secret;

#[cfg(feature = "gateway")]
pub use hashing::SecretHasher;
#[cfg(feature = "gateway")]
pub use keys::{KeyRing, SigningAlg};
#[cfg(feature = "gateway")]
pub use mac::Pepper;
#[cfg(feature = "gateway")]
pub use secret::{ParsedSecret, SecretCheck};
