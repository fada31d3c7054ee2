//! Tessera: a token-exchange auth gateway.
//!
//! Applications exchange an AppId and AppSecret (or one API key) for a
//! short-lived JWT signed with keys from `keys/`; downstream services verify
//! those tokens on their own with the JWKS.
//!
//! Downstream services use only the verifier:
//! `default-features = false, features = ["verifier", "actix"]` (see
//! [`verifier`]).
//!
//! The crate is laid out as `domain` (pure rules), `crypto` (keys, tokens,
//! hashing), `store` (persistence behind traits), `service` (use cases),
//! `http` (the actix-web surface), `startup` and `cli`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod domain;

#[cfg(feature = "gateway")]
pub mod cli;
#[cfg(feature = "gateway")]
pub mod config;
#[cfg(feature = "verifier")]
pub mod crypto;
#[cfg(feature = "gateway")]
pub mod http;
#[cfg(feature = "gateway")]
pub mod service;
#[cfg(feature = "gateway")]
pub mod startup;
#[cfg(feature = "gateway")]
pub mod store;
#[cfg(feature = "gateway")]
pub mod telemetry;
#[cfg(feature = "verifier")]
pub mod verifier;

#[cfg(feature = "gateway")]
pub use config::Settings;
#[cfg(feature = "gateway")]
pub use startup::Application;
