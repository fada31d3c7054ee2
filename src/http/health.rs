//! `/healthz`, `/readyz`, `/metrics`.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::ApiError;
use super::extract::gateway;

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process serves HTTP")))]
/// The process is up and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200, description = "Store and keys usable"), (status = 503, description = "The store does not answer")))]
/// The store answers and a signing key is loaded.
pub async fn readyz(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let store = gw.apps.ping().await;
    let body = json!({
        "status": if store.is_ok() { "ready" } else { "unavailable" },
        "checks": {
            "store": if store.is_ok() { "ok" } else { "unavailable" },
            "keys": gw.keys.active().kid(),
        }
    });
    Ok(if store.is_ok() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    })
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
/// Prometheus text exposition.
pub async fn metrics(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(gw.metrics.render()))
}
