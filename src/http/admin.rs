//! `/api/v1/roles`, `/api/v1/users`, `/api/v1/audit`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::ApiError;
use super::error::{ApiErrorBody, JsonBodyErrors, StandardErrors};
use super::extract::{Caller, gateway};
use super::json::JsonObject;
use crate::domain::{Role, User};
use crate::service::{audit, roles, users};

/// Every role.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RoleList {
    /// By name.
    pub data: Vec<Role>,
}

/// Paging parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
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

#[utoipa::path(get, path = "/api/v1/roles", tag = "roles",
    responses((status = 200, description = "Every role", body = RoleList), StandardErrors),
    security(("bearer" = [])))]
/// `GET /api/v1/roles`.
pub async fn list_roles(req: HttpRequest, Caller(c): Caller) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(RoleList {
        data: roles::list(&gw, &c).await?,
    }))
}

#[utoipa::path(post, path = "/api/v1/roles", tag = "roles", request_body = roles::CreateRole,
    responses(
        (status = 201, description = "Created", body = Role),
        StandardErrors, JsonBodyErrors,
        (status = 409, description = "The name exists", body = ApiErrorBody),
        (status = 422, description = "A field breaks a rule the schema cannot say: a permission outside the catalogue, or one that a public key holding the role may not hold", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `POST /api/v1/roles`.
pub async fn create_role(
    req: HttpRequest,
    Caller(c): Caller,
    JsonObject(body): JsonObject<roles::CreateRole>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Created().json(roles::create(&gw, &c, body).await?))
}

#[utoipa::path(get, path = "/api/v1/roles/{name}", tag = "roles", params(("name" = String, Path, description = "Role name")), 
    responses(
        (status = 200, description = "The role", body = Role),
        StandardErrors,
        (status = 404, description = "No such role", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `GET /api/v1/roles/{name}`.
pub async fn get_role(
    req: HttpRequest,
    Caller(c): Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(roles::read(&gw, &c, &name).await?))
}

#[utoipa::path(patch, path = "/api/v1/roles/{name}", tag = "roles", params(("name" = String, Path, description = "Role name")), request_body = roles::PatchRole,
    responses(
        (status = 200, description = "Changed; applies to tokens minted from now on", body = Role),
        StandardErrors, JsonBodyErrors,
        (status = 404, description = "No such role", body = ApiErrorBody),
        (status = 422, description = "A field breaks a rule the schema cannot say (see `create_role`); nothing changed", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `PATCH /api/v1/roles/{name}`.
pub async fn patch_role(
    req: HttpRequest,
    Caller(c): Caller,
    name: web::Path<String>,
    JsonObject(body): JsonObject<roles::PatchRole>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(roles::patch(&gw, &c, &name, body).await?))
}

#[utoipa::path(delete, path = "/api/v1/roles/{name}", tag = "roles", params(("name" = String, Path, description = "Role name"), DeleteRoleParams),
    responses(
        (status = 204, description = "Deleted"),
        StandardErrors,
        (status = 404, description = "No such role", body = ApiErrorBody),
        (status = 409, description = "Still held; use ?detach=true", body = ApiErrorBody)),
    security(("bearer" = [])))]
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

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(Page),
    responses(
        (status = 200, description = "A page of users", body = users::UserPage),
        StandardErrors,
        (status = 422, description = "`limit` outside 1 to 200", body = ApiErrorBody)),
    security(("bearer" = [])))]
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

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = users::CreateUser,
    responses(
        (status = 201, description = "Created", body = User),
        StandardErrors, JsonBodyErrors,
        (status = 409, description = "The email exists", body = ApiErrorBody),
        (status = 422, description = "A field breaks a rule the schema cannot say: a permission outside the catalogue, or an unknown role", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `POST /api/v1/users`.
pub async fn create_user(
    req: HttpRequest,
    Caller(c): Caller,
    JsonObject(body): JsonObject<users::CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Created().json(users::create(&gw, &c, body).await?))
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")), 
    responses(
        (status = 200, description = "The user", body = User),
        StandardErrors,
        (status = 404, description = "No such user", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `GET /api/v1/users/{id}`.
pub async fn get_user(
    req: HttpRequest,
    Caller(c): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(users::get(&gw, &c, &id).await?))
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")), request_body = users::PatchUser,
    responses(
        (status = 200, description = "Changed", body = User),
        StandardErrors, JsonBodyErrors,
        (status = 404, description = "No such user", body = ApiErrorBody),
        (status = 409, description = "The email belongs to someone else", body = ApiErrorBody),
        (status = 422, description = "A field breaks a rule the schema cannot say (see `create_user`); nothing changed", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `PATCH /api/v1/users/{id}`.
pub async fn patch_user(
    req: HttpRequest,
    Caller(c): Caller,
    id: web::Path<String>,
    JsonObject(body): JsonObject<users::PatchUser>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(users::patch(&gw, &c, &id, body).await?))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = String, Path, description = "User id")), 
    responses(
        (status = 204, description = "Deleted"),
        StandardErrors,
        (status = 404, description = "No such user", body = ApiErrorBody),
        (status = 409, description = "Owns applications", body = ApiErrorBody)),
    security(("bearer" = [])))]
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

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(Page),
    responses(
        (status = 200, description = "Newest first", body = audit::AuditPage),
        StandardErrors,
        (status = 422, description = "`limit` outside 1 to 200", body = ApiErrorBody)),
    security(("bearer" = [])))]
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
