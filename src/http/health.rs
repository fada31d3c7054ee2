//! `/healthz`, `/readyz`, `/metrics`.

use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::ApiError;
use super::extract::{Caller, gateway};
use crate::domain::permission::builtin::METRICS_READ;

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

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain"), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks metrics:read", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// Prometheus text exposition, for a bearer token with `metrics:read`: the
/// counters describe other clients' traffic, so they are not public.
pub async fn metrics(req: HttpRequest, Caller(caller): Caller) -> Result<HttpResponse, ApiError> {
    caller.require(METRICS_READ)?;
    metrics_open(req).await
}

/// Prometheus text exposition with no token: only mounted on the separate
/// `metrics_listen` listener, which the operator keeps private.
pub async fn metrics_open(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(gw.metrics.render()))
}
