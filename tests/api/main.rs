//! The one integration-test binary: real servers on loopback, real HTTP.

mod apps;
mod discovery;
mod errors;
mod helpers;
mod identity;
mod lifecycle;
mod process;
mod revocation;
mod token;
