//! `/api/v1/apps` and `/api/v1/permissions`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;

use super::ApiError;
use super::extract::{Caller, gateway};
use crate::domain::DomainError;
use crate::service::apps::{self, AppView, CreateApp, CreatedApp, ListParams, PatchApp};

#[utoipa::path(operation_id = "create_app", post, path = "/api/v1/apps", tag = "apps", request_body = CreateApp, responses((status = 201, description = "Created; the secret is in this response only", body = crate::http::openapi::AppWithSecret), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "A field breaks a rule", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `POST /api/v1/apps`: 201 with the record and its secret, shown once.
pub async fn create(
    req: HttpRequest,
    Caller(caller): Caller,
    body: web::Json<CreateApp>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let created = apps::create(&gw, &caller, body.into_inner()).await?;
    let location = format!("/api/v1/apps/{}", created.view.app.id);
    let mut res = with_secret(HttpResponse::Created(), &created)?;
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// The record plus its secret: the one response that ever holds it.
fn with_secret(
    mut builder: actix_web::HttpResponseBuilder,
    created: &CreatedApp,
) -> Result<HttpResponse, ApiError> {
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
    Ok(builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(body))
}

#[utoipa::path(operation_id = "patch_app", patch, path = "/api/v1/apps/{id}", tag = "apps", params(("id" = String, Path, description = "Application id")), request_body = PatchApp, responses((status = 200, description = "Changed", body = AppView), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such application", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "A field breaks a rule; nothing changed", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `PATCH /api/v1/apps/{id}`.
pub async fn patch(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
    body: web::Json<PatchApp>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(apps::patch(&gw, &caller, &id, body.into_inner()).await?))
}

/// The body of a rotate call; it may be empty.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret keeps working, 0 to 86400 (default 0).
    #[serde(default)]
    pub grace_period_seconds: u64,
}

#[utoipa::path(operation_id = "rotate_app", post, path = "/api/v1/apps/{id}/rotate", tag = "apps", params(("id" = String, Path, description = "Application id")), request_body(content = Option<RotateBody>), responses((status = 200, description = "The new secret, shown once", body = crate::http::openapi::AppWithSecret), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such application", body = crate::http::openapi::ApiErrorBody), (status = 409, description = "Revoked, or an operator-chosen secret", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "Grace period out of range", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `POST /api/v1/apps/{id}/rotate`: the new secret, shown once.
pub async fn rotate(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| DomainError::InvalidRequest(super::error::describe_json_error(&e)))?
    };
    let rotated = apps::rotate(&gw, &caller, &id, body.grace_period_seconds).await?;
    with_secret(HttpResponse::Ok(), &rotated)
}

#[utoipa::path(operation_id = "delete_app", delete, path = "/api/v1/apps/{id}", tag = "apps", params(("id" = String, Path, description = "Application id")), responses((status = 204, description = "Deleted"), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such application", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `DELETE /api/v1/apps/{id}`: 204.
pub async fn delete(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    apps::delete(&gw, &caller, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The body of a bulk delete.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDeleteBody {
    /// Application ids, 1 to 100.
    pub ids: Vec<String>,
}

#[utoipa::path(operation_id = "bulk_delete_apps", post, path = "/api/v1/apps/bulk-delete", tag = "apps", request_body = BulkDeleteBody, responses((status = 200, description = "A result per id", body = crate::http::openapi::BulkDeleteResults), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "No ids, or more than 100", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `POST /api/v1/apps/bulk-delete`: a result per id.
pub async fn bulk_delete(
    req: HttpRequest,
    Caller(caller): Caller,
    body: web::Json<BulkDeleteBody>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let results = apps::bulk_delete(&gw, &caller, body.into_inner().ids).await?;
    Ok(HttpResponse::Ok().json(json!({ "results": results })))
}

#[utoipa::path(operation_id = "list_apps", get, path = "/api/v1/apps", tag = "apps", params(ListParams), responses((status = 200, description = "A page, oldest first", body = crate::service::apps::AppPage), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 400, description = "Bad query", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "Bad limit", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `GET /api/v1/apps`.
pub async fn list(
    req: HttpRequest,
    Caller(caller): Caller,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let page = apps::list(&gw, &caller, params.into_inner()).await?;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(operation_id = "get_app", get, path = "/api/v1/apps/{id}", tag = "apps", params(("id" = String, Path, description = "Application id")), responses((status = 200, description = "The application", body = AppView), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such application", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `GET /api/v1/apps/{id}`.
pub async fn get(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(apps::get(&gw, &caller, &id).await?))
}

#[utoipa::path(operation_id = "revoke_app", post, path = "/api/v1/apps/{id}/revoke", tag = "apps", params(("id" = String, Path, description = "Application id")), responses((status = 200, description = "Revoked", body = AppView), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such application", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `POST /api/v1/apps/{id}/revoke`.
pub async fn revoke(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(apps::revoke(&gw, &caller, &id).await?))
}

#[utoipa::path(operation_id = "list_permissions", get, path = "/api/v1/permissions", tag = "apps", responses((status = 200, description = "The permission catalogue", body = crate::http::openapi::PermissionList), (status = 401, description = "Missing or invalid bearer token", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `GET /api/v1/permissions`: the catalogue, for any valid token.
pub async fn permissions(req: HttpRequest, Caller(_): Caller) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let data: Vec<_> = gw.catalogue.entries().collect();
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}
