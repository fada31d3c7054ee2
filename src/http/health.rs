//! `/healthz`, `/readyz`, `/metrics`.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::ApiError;
use super::extract::gateway;

/// The process is up and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

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

/// Prometheus text exposition.
pub async fn metrics(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(gw.metrics.render()))
}
