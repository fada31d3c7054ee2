//! `/api/v1/roles`, `/api/v1/users`, `/api/v1/audit`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::ApiError;
use super::extract::{Caller, gateway};
use crate::service::{audit, roles, users};

/// Paging parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// 1 to 200 (default 50).
    pub limit: Option<usize>,
    /// From a previous page's `nextCursor`.
    pub cursor: Option<String>,
}

/// `?detach=true` on role deletion.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRoleParams {
    /// Remove the role from its holders instead of refusing.
    #[serde(default)]
    pub detach: bool,
}

/// `GET /api/v1/roles`.
pub async fn list_roles(req: HttpRequest, Caller(c): Caller) -> Result<HttpResponse, ApiError> {
    c.require("roles:manage")?;
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(json!({"data": roles::list(&gw).await?})))
}

/// `POST /api/v1/roles`.
pub async fn create_role(
    req: HttpRequest,
    Caller(c): Caller,
    body: web::Json<roles::CreateRole>,
) -> Result<HttpResponse, ApiError> {
    c.require("roles:manage")?;
    let gw = gateway(&req)?;
    Ok(HttpResponse::Created().json(roles::create(&gw, &c, body.into_inner()).await?))
}

/// `GET /api/v1/roles/{name}`.
pub async fn get_role(
    req: HttpRequest,
    Caller(c): Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    c.require("roles:manage")?;
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(roles::get(&gw, &name).await?))
}

/// `PATCH /api/v1/roles/{name}`.
pub async fn patch_role(
    req: HttpRequest,
    Caller(c): Caller,
    name: web::Path<String>,
    body: web::Json<roles::PatchRole>,
) -> Result<HttpResponse, ApiError> {
    c.require("roles:manage")?;
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(roles::patch(&gw, &c, &name, body.into_inner()).await?))
}

/// `DELETE /api/v1/roles/{name}[?detach=true]`: 204, or 409 while held.
pub async fn delete_role(
    req: HttpRequest,
    Caller(c): Caller,
    name: web::Path<String>,
    params: web::Query<DeleteRoleParams>,
) -> Result<HttpResponse, ApiError> {
    c.require("roles:manage")?;
    let gw = gateway(&req)?;
    roles::delete(&gw, &c, &name, params.detach).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/users`.
pub async fn list_users(
    req: HttpRequest,
    Caller(c): Caller,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    c.require("users:manage")?;
    let gw = gateway(&req)?;
    let page = page.into_inner();
    Ok(HttpResponse::Ok().json(users::list(&gw, page.limit, page.cursor).await?))
}

/// `POST /api/v1/users`.
pub async fn create_user(
    req: HttpRequest,
    Caller(c): Caller,
    body: web::Json<users::CreateUser>,
) -> Result<HttpResponse, ApiError> {
    c.require("users:manage")?;
    let gw = gateway(&req)?;
    Ok(HttpResponse::Created().json(users::create(&gw, &c, body.into_inner()).await?))
}

/// `GET /api/v1/users/{id}`.
pub async fn get_user(
    req: HttpRequest,
    Caller(c): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    c.require("users:manage")?;
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(users::get(&gw, &id).await?))
}

/// `PATCH /api/v1/users/{id}`.
pub async fn patch_user(
    req: HttpRequest,
    Caller(c): Caller,
    id: web::Path<String>,
    body: web::Json<users::PatchUser>,
) -> Result<HttpResponse, ApiError> {
    c.require("users:manage")?;
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(users::patch(&gw, &c, &id, body.into_inner()).await?))
}

/// `DELETE /api/v1/users/{id}`: 204, or 409 while they own applications.
pub async fn delete_user(
    req: HttpRequest,
    Caller(c): Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    c.require("users:manage")?;
    let gw = gateway(&req)?;
    users::delete(&gw, &c, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/audit`: newest first.
pub async fn audit_log(
    req: HttpRequest,
    Caller(c): Caller,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    c.require("audit:read")?;
    let gw = gateway(&req)?;
    let page = page.into_inner();
    Ok(HttpResponse::Ok().json(audit::list(&gw, page.limit, page.cursor).await?))
}
