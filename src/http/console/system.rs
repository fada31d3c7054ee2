//! Signing keys and identity providers (read only).

use actix_web::web;

/// Registers this section's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let _ = cfg;
}
