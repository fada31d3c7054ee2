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

/// How `GET /api/v1/audit` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditFormat {
    /// `{"data": [...], "nextCursor": ...}`.
    #[default]
    Json,
    /// A `text/csv` download; the next cursor in `X-Next-Cursor`.
    Csv,
}

/// Paging, filters and format of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// 1 to 200 (default 50): the most records one page holds.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// From a previous page's `nextCursor` (or `X-Next-Cursor`).
    pub cursor: Option<String>,
    /// Only this actor (a token's subject), exactly.
    #[param(min_length = 1, max_length = 256)]
    pub actor: Option<String>,
    /// Only this action, exactly; or, ending with `.` or `*`, every action
    /// starting with it (`app.` and `app.*` both match `app.create`).
    #[param(min_length = 1, max_length = 256)]
    pub action: Option<String>,
    /// Only this target (an id or a role name), exactly.
    #[param(min_length = 1, max_length = 256)]
    pub target: Option<String>,
    /// Only records at or after this instant (RFC 3339).
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only records strictly before this instant (RFC 3339); after `since`.
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// `json` (default) or `csv`.
    #[param(inline)]
    pub format: Option<AuditFormat>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    description = "The audit log, newest first, optionally filtered. With a filter, one call \
looks at no more than 5,000 records: a page may then hold fewer than `limit` records (even \
none) and still carry a next cursor. Only a missing next cursor means the end. `since` ends \
the walk early, at the first older record. With `format=csv` the body is a CSV download \
(header `id,at,actor,action,target,sourceIp,details`, RFC 4180 quoting, `details` as compact \
JSON, a cell that starts with `=`, `+`, `-`, `@`, tab or CR prefixed with `'`) and the next \
cursor is in the `X-Next-Cursor` header.",
    responses(
        (status = 200, description = "Newest first",
            content((audit::AuditPage = "application/json"), (String = "text/csv")),
            headers(("X-Next-Cursor" = String, description = "With `format=csv`, when more may remain: pass as `cursor`"))),
        StandardErrors,
        (status = 422, description = "`limit` outside 1 to 200, an empty or over-long filter, or `since` not before `until`", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `GET /api/v1/audit`: newest first, filtered, as JSON or CSV.
pub async fn audit_log(
    req: HttpRequest,
    Caller(c): Caller,
    params: web::Query<AuditParams>,
) -> Result<HttpResponse, ApiError> {
    c.require(crate::domain::permission::builtin::AUDIT_READ)?;
    let gw = gateway(&req)?;
    let p = params.into_inner();
    let filter = audit::AuditFilter {
        actor: p.actor,
        action: p.action,
        target: p.target,
        since: p.since,
        until: p.until,
    };
    let page = audit::list(&gw, p.limit, p.cursor, &filter).await?;
    if p.format.unwrap_or_default() == AuditFormat::Json {
        return Ok(HttpResponse::Ok().json(page));
    }
    let mut res = HttpResponse::Ok();
    res.content_type("text/csv; charset=utf-8").insert_header((
        actix_web::http::header::CONTENT_DISPOSITION,
        "attachment; filename=\"tessera-audit.csv\"",
    ));
    if let Some(next) = &page.next_cursor {
        res.insert_header(("X-Next-Cursor", next.as_str()));
    }
    Ok(res.body(audit::to_csv(&page.data)))
}
