//! The one integration-test binary: real servers on loopback, real HTTP.

mod apps;
mod attacks;
mod authz;
mod cli_login;
mod device;
mod device_attacks;
mod discovery;
mod errors;
mod exchange;
mod feed;
mod fuzz_bodies;
mod helpers;
mod identity;
mod lifecycle;
mod model;
mod people;
mod people_attacks;
mod process;
mod proxy;
mod race;
mod redis;
mod redis_server;
mod revocation;
mod token;
mod verifier;
