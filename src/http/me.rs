//! `/api/v1/me`: a signed-in person's own record, sessions and password.

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::Deserialize;

use super::ApiError;
use super::error::{ApiErrorBody, JsonBodyErrors, StandardErrors};
use super::extract::{Caller, gateway};
use super::json::JsonObject;
use crate::domain::User;
use crate::service::people::me::{self, SessionView};

/// A password change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PasswordChange {
    /// The password now.
    #[schema(value_type = String, max_length = 1024)]
    pub current_password: SecretString,
    /// The new one (12 to 128 characters, not the email).
    #[schema(value_type = String, min_length = 12, max_length = 128)]
    pub new_password: SecretString,
}

/// The caller's sessions.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SessionList {
    /// Oldest first.
    pub data: Vec<SessionView>,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "people",
    responses((status = 200, description = "The signed-in person", body = User), StandardErrors),
    security(("bearer" = [])))]
/// `GET /api/v1/me`.
pub async fn get_me(req: HttpRequest, Caller(c): Caller) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(me::me(&gw, &c).await?))
}

#[utoipa::path(get, path = "/api/v1/me/sessions", tag = "people",
    responses((status = 200, description = "The person's sessions", body = SessionList), StandardErrors),
    security(("bearer" = [])))]
/// `GET /api/v1/me/sessions`.
pub async fn sessions(req: HttpRequest, Caller(c): Caller) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok().json(SessionList {
        data: me::my_sessions(&gw, &c).await?,
    }))
}

#[utoipa::path(delete, path = "/api/v1/me/sessions/{id}", tag = "people",
    params(("id" = String, Path, description = "Session id (`ses_…`)")),
    responses(
        (status = 204, description = "Ended: its tokens are revoked"),
        StandardErrors,
        (status = 404, description = "No such session of yours", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `DELETE /api/v1/me/sessions/{id}`.
pub async fn end_session(
    req: HttpRequest,
    Caller(c): Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    me::end_my_session(&gw, &c, &path.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "people", request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed; every other session ended"),
        StandardErrors, JsonBodyErrors,
        (status = 422, description = "The current password is wrong, or the new one breaks a rule", body = ApiErrorBody),
        (status = 429, response = super::error::TooManyRequests)),
    security(("bearer" = [])))]
/// `POST /api/v1/me/password`.
pub async fn change_password(
    req: HttpRequest,
    Caller(c): Caller,
    JsonObject(body): JsonObject<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    me::change_password(&gw, &c, &body.current_password, &body.new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}
