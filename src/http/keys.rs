//! `/api/v1/keys`: the gateway's signing keys (docs/api.md, "Signing keys over time"), with `keys:manage`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::ApiError;
use super::error::{ApiErrorBody, StandardErrors};
use super::extract::{Caller, gateway};
use crate::service::keyring::{self, KeyView};

/// A list of signing keys.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyList {
    /// Newest first.
    pub keys: Vec<KeyView>,
}

#[utoipa::path(operation_id = "list_keys", get, path = "/api/v1/keys", tag = "keys",
    responses(
        (status = 200, description = "Every key published or recently revoked, newest first; never a private half", body = KeyList),
        StandardErrors),
    security(("bearer" = [])))]
/// `GET /api/v1/keys`.
pub async fn list(req: HttpRequest, Caller(caller): Caller) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let keys = keyring::list(&gw, &caller).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(KeyList { keys }))
}

#[utoipa::path(operation_id = "rotate_keys", post, path = "/api/v1/keys/rotate", tag = "keys",
    responses(
        (status = 201, description = "A `next` key of each configured algorithm: in the JWKS at once, signing after `key_publish_ahead`", body = KeyList),
        StandardErrors,
        (status = 409, description = "A `next` key is already pending (one at a time), 16 keys are published already, or other writes to the key ring kept coming first; nothing was added", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `POST /api/v1/keys/rotate` (no body).
pub async fn rotate(req: HttpRequest, Caller(caller): Caller) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let keys = keyring::rotate(&gw, &caller).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(KeyList { keys }))
}

#[utoipa::path(operation_id = "revoke_key", post, path = "/api/v1/keys/{kid}/revoke", tag = "keys",
    params(("kid" = String, Path, description = "The key's `kid`")),
    responses(
        (status = 200, description = "Revoked (again: harmless): out of the JWKS at once, its tokens refused by verifiers; an active key is replaced at once", body = KeyView),
        StandardErrors,
        (status = 404, description = "No such key", body = ApiErrorBody),
        (status = 409, description = "Other writes to the key ring kept coming first; the key's tokens are already refused, try again to take it out of the ring", body = ApiErrorBody)),
    security(("bearer" = [])))]
/// `POST /api/v1/keys/{kid}/revoke` (no body).
pub async fn revoke(
    req: HttpRequest,
    Caller(caller): Caller,
    kid: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let key = keyring::revoke(&gw, &caller, &kid).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(key))
}
