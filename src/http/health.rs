//! `/healthz`, `/readyz`, `/metrics`.

use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::ApiError;
use super::error::{ApiErrorBody, StandardErrors};
use super::extract::{Caller, gateway};
use crate::domain::permission::builtin::METRICS_READ;

/// The body of `/healthz`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct HealthBody {
    /// Always `ok`: the process answers.
    pub status: Health,
}

/// The one state `/healthz` reports.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Serving HTTP.
    Ok,
}

/// The body of `/readyz`, with 200 or 503.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadyBody {
    /// `ready` (200) or `unavailable` (503).
    pub status: Readiness,
    /// What was checked.
    pub checks: ReadyChecks,
}

/// Whether the gateway can serve.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// Store and keys usable.
    Ready,
    /// The store does not answer.
    Unavailable,
}

/// The checks behind `/readyz`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReadyChecks {
    /// The store's answer to a ping.
    pub store: CheckState,
    /// The `kid` of the active signing key.
    pub keys: String,
}

/// The outcome of one check.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckState {
    /// Answered.
    Ok,
    /// Did not answer.
    Unavailable,
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process serves HTTP", body = HealthBody)))]
/// The process is up and serving HTTP.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody { status: Health::Ok })
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Store and keys usable", body = ReadyBody),
        (status = 503, description = "The store does not answer", body = ReadyBody)))]
/// The store answers and a signing key is loaded.
pub async fn readyz(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let store_ok = crate::service::revocation::store_ready(&gw).await;
    let body = ReadyBody {
        status: if store_ok {
            Readiness::Ready
        } else {
            Readiness::Unavailable
        },
        checks: ReadyChecks {
            store: if store_ok {
                CheckState::Ok
            } else {
                CheckState::Unavailable
            },
            keys: gw.keys.current().active().kid().to_owned(),
        },
    };
    Ok(if store_ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    })
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
        (status = 404, description = "Metrics are switched off (`TESSERA_METRICS=off`)", body = ApiErrorBody),
        StandardErrors),
    security(("bearer" = [])))]
/// Prometheus text exposition, for a bearer token with `metrics:read`: the
/// counters describe other clients' traffic, so they are not public.
pub async fn metrics(req: HttpRequest, Caller(caller): Caller) -> Result<HttpResponse, ApiError> {
    caller.require(METRICS_READ)?;
    metrics_open(req).await
}

/// Prometheus text exposition with no token: only mounted on the separate
/// `metrics_listen` listener, which the operator keeps private. With
/// metrics off (`TESSERA_METRICS=off`) there is nothing to expose: 404.
pub async fn metrics_open(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let text = gw.metrics.render().ok_or_else(|| {
        crate::domain::DomainError::NotFound("metrics (switched off by TESSERA_METRICS)".into())
    })?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}
