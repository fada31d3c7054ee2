//! Applications: the table, create, details, usage, rotate, revoke, delete, bulk actions.

use actix_web::web;

/// Registers this section's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let _ = cfg;
}
