//! `/api/v1/roles`, `/api/v1/users`, `/api/v1/audit`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use super::extract::{Caller, gateway};
use crate::service::{audit, roles, users};

/// Paging parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// From a previous page's `nextCursor`.
    pub cursor: Option<String>,
}

/// `?detach=true` on role deletion.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteRoleParams {
    /// Remove the role from its holders instead of refusing.
    #[serde(default)]
    pub detach: bool,
}

#[utoipa::path(get, path = "/api/v1/roles", tag = "roles", responses((status = 200, description = "Every role", body = crate::http::openapi::RoleList), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `GET /api/v1/roles`.
pub async fn list_roles(req: HttpRequest, Caller(c): Caller) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(json!({"data": roles::list(&gw, &c).await?})))
}

#[utoipa::path(post, path = "/api/v1/roles", tag = "roles", request_body = roles::CreateRole, responses((status = 201, description = "Created", body = crate::domain::Role), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 409, description = "The name exists", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "A field breaks a rule", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `POST /api/v1/roles`.
pub async fn create_role(
    req: HttpRequest,
    Caller(c): Caller,
    body: web::Json<roles::CreateRole>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Created().json(roles::create(&gw, &c, body.into_inner()).await?))
}

#[utoipa::path(get, path = "/api/v1/roles/{name}", tag = "roles", params(("name" = String, Path, description = "Role name")), responses((status = 200, description = "The role", body = crate::domain::Role), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such role", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `GET /api/v1/roles/{name}`.
pub async fn get_role(
    req: HttpRequest,
    Caller(c): Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(roles::read(&gw, &c, &name).await?))
}

#[utoipa::path(patch, path = "/api/v1/roles/{name}", tag = "roles", params(("name" = String, Path, description = "Role name")), request_body = roles::PatchRole, responses((status = 200, description = "Changed; applies to tokens minted from now on", body = crate::domain::Role), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such role", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "A field breaks a rule", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `PATCH /api/v1/roles/{name}`.
pub async fn patch_role(
    req: HttpRequest,
    Caller(c): Caller,
    name: web::Path<String>,
    body: web::Json<roles::PatchRole>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(roles::patch(&gw, &c, &name, body.into_inner()).await?))
}

#[utoipa::path(delete, path = "/api/v1/roles/{name}", tag = "roles", params(("name" = String, Path, description = "Role name"), DeleteRoleParams), responses((status = 204, description = "Deleted"), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such role", body = crate::http::openapi::ApiErrorBody), (status = 409, description = "Still held; use ?detach=true", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `DELETE /api/v1/roles/{name}[?detach=true]`: 204, or 409 while held.
pub async fn delete_role(
    req: HttpRequest,
    Caller(c): Caller,
    name: web::Path<String>,
    params: web::Query<DeleteRoleParams>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    roles::delete(&gw, &c, &name, params.detach).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(Page), responses((status = 200, description = "A page of users", body = users::UserPage), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `GET /api/v1/users`.
pub async fn list_users(
    req: HttpRequest,
    Caller(c): Caller,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let page = page.into_inner();
    Ok(HttpResponse::Ok().json(users::list(&gw, &c, page.limit, page.cursor).await?))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = users::CreateUser, responses((status = 201, description = "Created", body = crate::domain::User), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 409, description = "The email exists", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "A field breaks a rule", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `POST /api/v1/users`.
pub async fn create_user(
    req: HttpRequest,
    Caller(c): Caller,
    body: web::Json<users::CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Created().json(users::create(&gw, &c, body.into_inner()).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")), responses((status = 200, description = "The user", body = crate::domain::User), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such user", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `GET /api/v1/users/{id}`.
pub async fn get_user(
    req: HttpRequest,
    Caller(c): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(users::get(&gw, &c, &id).await?))
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")), request_body = users::PatchUser, responses((status = 200, description = "Changed", body = crate::domain::User), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such user", body = crate::http::openapi::ApiErrorBody), (status = 409, description = "The email belongs to someone else", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "A field breaks a rule", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `PATCH /api/v1/users/{id}`.
pub async fn patch_user(
    req: HttpRequest,
    Caller(c): Caller,
    id: web::Path<String>,
    body: web::Json<users::PatchUser>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(users::patch(&gw, &c, &id, body.into_inner()).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")), responses((status = 204, description = "Deleted"), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 404, description = "No such user", body = crate::http::openapi::ApiErrorBody), (status = 409, description = "Owns applications", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `DELETE /api/v1/users/{id}`: 204, or 409 while they own applications.
pub async fn delete_user(
    req: HttpRequest,
    Caller(c): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    users::delete(&gw, &c, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(Page), responses((status = 200, description = "Newest first", body = audit::AuditPage), (status = 401, description = "Missing, invalid or expired bearer token", body = crate::http::openapi::ApiErrorBody), (status = 403, description = "The token lacks the permission", body = crate::http::openapi::ApiErrorBody), (status = 422, description = "Bad limit", body = crate::http::openapi::ApiErrorBody)), security(("bearer" = [])))]
/// `GET /api/v1/audit`: newest first.
pub async fn audit_log(
    req: HttpRequest,
    Caller(c): Caller,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    c.require(crate::domain::permission::builtin::AUDIT_READ)?;
    let gw = gateway(&req)?;
    let page = page.into_inner();
    Ok(HttpResponse::Ok().json(audit::list(&gw, page.limit, page.cursor).await?))
}
