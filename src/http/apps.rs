//! `/api/v1/apps` and `/api/v1/permissions`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::ApiError;
use super::error::{ApiErrorBody, JsonBodyErrors, PayloadTooLarge, StandardErrors};
use super::extract::{Caller, gateway};
use super::json::JsonObject;
use crate::domain::{DomainError, PermissionDef};
use crate::service::apps::{
    self, AppPage, AppView, BulkResult, CreateApp, CreatedApp, ListParams, PatchApp,
};

/// An application together with its secret: the body of create and rotate,
/// the only responses that ever hold a secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppWithSecret<'a> {
    /// The record.
    #[serde(flatten)]
    pub app: &'a AppView,
    /// The secret. Shown once; store it now.
    pub secret: &'a str,
}

/// The body of a bulk delete answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BulkDeleteResults {
    /// One per id asked for, in order.
    pub results: Vec<BulkResult>,
}

/// The permission catalogue.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PermissionList<'a> {
    /// Every entry, by name.
    pub data: Vec<&'a PermissionDef>,
}

#[utoipa::path(operation_id = "create_app", post, path = "/api/v1/apps", tag = "apps", request_body = CreateApp,
    responses(
        (status = 201, description = "Created; the secret is in this response only", body = AppWithSecret,
            headers(("Location" = String, description = "The new application's URL"))),
        StandardErrors, JsonBodyErrors,
        (status = 409, description = "Another application has this name (names are unique ignoring case); the message quotes it", body = ApiErrorBody),
        (status = 422, description = "A field breaks a rule the schema cannot say: a name of the form of an application id (`app_` and 16 letters or digits), a permission outside the catalogue, an unknown role or owner, an unparsable IP or CIDR, `expiresAt` not in the future, `tokenTtl` above the gateway's `token_ttl`, an audience reserved to live keys, or a public key holding a permission not marked public", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `POST /api/v1/apps`: 201 with the record and its secret, shown once.
pub async fn create(
    req: HttpRequest,
    Caller(caller): Caller,
    JsonObject(body): JsonObject<CreateApp>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let created = apps::create(&gw, &caller, body).await?;
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
    let body = serde_json::to_vec(&AppWithSecret {
        app: &created.view,
        secret: created.secret.expose_secret(),
    })
    .map_err(|e| DomainError::Internal(e.to_string()))?;
    Ok(builder
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .content_type("application/json")
        .body(body))
}

#[utoipa::path(operation_id = "patch_app", patch, path = "/api/v1/apps/{id}", tag = "apps", params(("id" = String, Path, description = "Application id")), request_body = PatchApp,
    responses(
        (status = 200, description = "Changed", body = AppView),
        StandardErrors, JsonBodyErrors,
        (status = 404, description = "No such application", body = ApiErrorBody),
        (status = 409, description = "The operator-configured admin application, which the API does not change; or the new name is another application's (names are unique ignoring case; the message quotes it)", body = ApiErrorBody),
        (status = 422, description = "A field breaks a rule the schema cannot say (see `create_app`); nothing changed", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `PATCH /api/v1/apps/{id}`.
pub async fn patch(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
    JsonObject(body): JsonObject<PatchApp>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(apps::patch(&gw, &caller, &id, body).await?))
}

/// The body of a rotate call; it may be empty.
#[derive(Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old secret keeps working, 0 to 604800 (7 days; default 0).
    #[serde(default)]
    #[schema(maximum = 604800)]
    pub grace_period_seconds: u64,
}

#[utoipa::path(operation_id = "rotate_app", post, path = "/api/v1/apps/{id}/rotate", tag = "apps", params(("id" = String, Path, description = "Application id")), request_body(content = Option<RotateBody>, description = "Optional: an empty body keeps the default"),
    responses(
        (status = 200, description = "The new secret, shown once", body = AppWithSecret),
        StandardErrors,
        (status = 404, description = "No such application", body = ApiErrorBody),
        (status = 409, description = "Revoked by an operator (final; an application revoked because its secret leaked is rotated back instead), or the operator-configured admin application (or any key with an operator-chosen secret)", body = ApiErrorBody),
        (status = 413, response = PayloadTooLarge),
        (status = 422, description = "`gracePeriodSeconds` above 604800 (7 days), or above 0 for a leaked secret", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `POST /api/v1/apps/{id}/rotate`: the new secret, shown once.
pub async fn rotate(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    // An empty body, or JSON `null`, keeps the defaults.
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        match serde_json::from_slice(&body)
            .map_err(|e| DomainError::InvalidRequest(super::error::describe_json_error(&e)))?
        {
            serde_json::Value::Null => RotateBody::default(),
            value => super::json::from_object(value)?,
        }
    };
    let rotated = apps::rotate(&gw, &caller, &id, body.grace_period_seconds).await?;
    with_secret(HttpResponse::Ok(), &rotated)
}

#[utoipa::path(operation_id = "delete_app", delete, path = "/api/v1/apps/{id}", tag = "apps", params(("id" = String, Path, description = "Application id")), 
    responses(
        (status = 204, description = "Deleted"),
        StandardErrors,
        (status = 404, description = "No such application", body = ApiErrorBody),
        (status = 409, description = "The operator-configured admin application, which the API does not delete", body = ApiErrorBody)),
    security(("bearer" = [])))]
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
    #[schema(min_items = 1, max_items = 100)]
    pub ids: Vec<String>,
}

#[utoipa::path(operation_id = "bulk_delete_apps", post, path = "/api/v1/apps/bulk-delete", tag = "apps", request_body = BulkDeleteBody,
    responses(
        (status = 200, description = "A result per id", body = BulkDeleteResults),
        StandardErrors, JsonBodyErrors,
        (status = 422, description = "No ids, or more than 100", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `POST /api/v1/apps/bulk-delete`: a result per id.
pub async fn bulk_delete(
    req: HttpRequest,
    Caller(caller): Caller,
    JsonObject(body): JsonObject<BulkDeleteBody>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let results = apps::bulk_delete(&gw, &caller, body.ids).await?;
    Ok(HttpResponse::Ok().json(BulkDeleteResults { results }))
}

#[utoipa::path(operation_id = "list_apps", get, path = "/api/v1/apps", tag = "apps", params(ListParams),
    responses(
        (status = 200, description = "A page, oldest first", body = AppPage),
        StandardErrors,
        (status = 422, description = "`limit` outside 1 to 200, or `q` longer than 100 characters", body = ApiErrorBody)),
    security(("bearer" = [])))]
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

#[utoipa::path(operation_id = "get_app", get, path = "/api/v1/apps/{id}", tag = "apps", params(("id" = String, Path, description = "Application id")), 
    responses(
        (status = 200, description = "The application", body = AppView),
        StandardErrors,
        (status = 404, description = "No such application", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `GET /api/v1/apps/{id}`.
pub async fn get(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(apps::get(&gw, &caller, &id).await?))
}

#[utoipa::path(operation_id = "revoke_app", post, path = "/api/v1/apps/{id}/revoke", tag = "apps", params(("id" = String, Path, description = "Application id")), 
    responses(
        (status = 200, description = "Revoked (again: harmless, the first time is kept)", body = AppView),
        StandardErrors,
        (status = 404, description = "No such application", body = ApiErrorBody),
        (status = 409, description = "The operator-configured admin application, which the API does not revoke", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `POST /api/v1/apps/{id}/revoke`.
pub async fn revoke(
    req: HttpRequest,
    Caller(caller): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(apps::revoke(&gw, &caller, &id).await?))
}

#[utoipa::path(operation_id = "list_permissions", get, path = "/api/v1/permissions", tag = "apps",
    responses(
        (status = 200, description = "The permission catalogue", body = PermissionList),
        StandardErrors),
    security(("bearer" = [])))]
/// `GET /api/v1/permissions`: the catalogue, for any valid token.
pub async fn permissions(req: HttpRequest, Caller(_): Caller) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let data = gw.catalogue.entries().collect();
    Ok(HttpResponse::Ok().json(PermissionList { data }))
}
