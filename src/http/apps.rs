//! `/api/v1/apps` and `/api/v1/permissions`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;

use super::ApiError;
use super::extract::{Caller, gateway};
use crate::domain::DomainError;
use crate::service::apps::{self, AppView, CreateApp, ListParams};
use crate::service::auth::Principal;

fn require_read(p: &Principal) -> Result<(), DomainError> {
    // Whoever may manage keys may also read them.
    p.require("api_keys:read")
        .or_else(|_| p.require("api_keys:manage"))
        .map_err(|_| {
            DomainError::InsufficientPermissions(
                "this call needs the permission api_keys:read".into(),
            )
        })
}

/// `POST /api/v1/apps`: 201 with the record and its secret, shown once.
pub async fn create(
    req: HttpRequest,
    Caller(caller): Caller,
    body: web::Json<CreateApp>,
) -> Result<HttpResponse, ApiError> {
    caller.require("api_keys:manage")?;
    let gw = gateway(&req)?;
    let created = apps::create(&gw, &caller, body.into_inner()).await?;

    #[derive(Serialize)]
    struct WithSecret<'a> {
        #[serde(flatten)]
        view: &'a AppView,
        secret: &'a str,
    }
    let body = serde_json::to_vec(&WithSecret {
        view: &created.view,
        secret: created.secret.expose_secret(),
    })
    .map_err(|e| DomainError::Internal(e.to_string()))?;
    let location = format!("/api/v1/apps/{}", created.view.app.id);
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::LOCATION, location))
        .content_type("application/json")
        .body(body))
}

/// `GET /api/v1/apps`.
pub async fn list(
    req: HttpRequest,
    Caller(caller): Caller,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    require_read(&caller)?;
    let gw = gateway(&req)?;
    let page = apps::list(&gw, params.into_inner()).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /api/v1/apps/{id}`.
pub async fn get(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_read(&caller)?;
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(apps::get(&gw, &id).await?))
}

/// `POST /api/v1/apps/{id}/revoke`.
pub async fn revoke(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require("api_keys:manage")?;
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(apps::revoke(&gw, &caller, &id).await?))
}

/// `GET /api/v1/permissions`: the catalogue, for any valid token.
pub async fn permissions(req: HttpRequest, Caller(_): Caller) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let data: Vec<_> = gw.catalogue.entries().collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}
