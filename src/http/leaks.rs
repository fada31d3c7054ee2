//! `POST /api/v1/leaks` (docs/api.md, "At the edge").

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::ApiError;
use super::error::{ApiErrorBody, JsonBodyErrors, StandardErrors};
use super::extract::{Caller, gateway};
use crate::domain::DomainError;
use crate::service::leaks::{self, LeakReport, LeakVerdict};

#[utoipa::path(operation_id = "report_leaks", post, path = "/api/v1/leaks", tag = "leaks",
    request_body(content = LeakReport, description = "What a secret scanner found: at most 100 entries (an empty array is answered `[]`)"),
    responses(
        (status = 200, description = "One label per entry, in order. A genuine application secret or access token is revoked before this answers; nothing else is revealed", body = Vec<LeakVerdict>,
            headers(("Cache-Control" = String, description = "`no-store`"))),
        StandardErrors, JsonBodyErrors,
        (status = 422, description = "More than 100 entries, or an entry out of bounds (`token` over 8192 characters, `url` over 2048, `source` over 100, a control character); nothing changed", body = ApiErrorBody),
        (status = 429, response = super::error::TooManyRequests)),
    security(("bearer" = [])))]
/// `POST /api/v1/leaks`: labels each reported string `true_positive` or
/// `false_positive`, revoking every genuine one at once.
pub async fn report(
    req: HttpRequest,
    Caller(caller): Caller,
    web::Json(body): web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    // The body is an array (web::Json would read a struct from one, and
    // a sequence from nothing else): say so plainly, naming no value.
    if !body.is_array() {
        return Err(
            DomainError::InvalidRequest("the request body must be a JSON array".into()).into(),
        );
    }
    let entries: LeakReport = super::json::read(&body)?;
    let verdicts = leaks::report(&gw, &caller, entries).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(verdicts))
}
