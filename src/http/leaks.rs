//! `POST /api/v1/leaks` (SPEC §13).

use actix_web::HttpResponse;

use super::ApiError;
use crate::domain::DomainError;

/// Reports leaked keys and tokens.
pub async fn report() -> Result<HttpResponse, ApiError> {
    Err(DomainError::Unavailable.into())
}
