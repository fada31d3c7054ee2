//! The audit log: filters and exports.

use actix_web::web;

/// Registers this section's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let _ = cfg;
}
