//! The docs/errors.md error body, on the wire: built in one place for the gateway
//! (`http::error`) and the downstream verifier (`verifier::actix`) alike.
//! It knows codes and types, not HTTP statuses.

use serde::Serialize;

/// The docs/errors.md error body: the one type every `/api/*` error is serialized
/// from, and the schema the OpenAPI document shows for it.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
pub struct ApiErrorBody {
    /// The error.
    pub error: ApiErrorDetail,
}

/// The inside of an error body.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
pub struct ApiErrorDetail {
    /// Stable machine-readable code.
    pub code: ErrorCode,
    /// What happened, for people: the field at fault and what it accepts.
    /// A value the caller sent is repeated only when short, printable and
    /// not shaped like a credential (`domain::error::quotable`); otherwise
    /// only its length.
    pub message: String,
    /// The family of the code.
    #[serde(rename = "type")]
    pub kind: ErrorType,
}

/// The docs/errors.md codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401: no API key or access token.
    MissingApiKey,
    /// 401: unknown, wrong or revoked key (indistinguishable).
    InvalidApiKey,
    /// 401: bad, expired or revoked bearer token.
    InvalidToken,
    /// 401: the key has expired (only after a correct secret).
    KeyExpired,
    /// 403: the caller lacks a permission.
    InsufficientPermissions,
    /// 403: the client IP is outside the allow-list.
    IpNotAllowed,
    /// 400, 405, 408, 413, 415: the request is malformed.
    InvalidRequest,
    /// 400: a grant type this endpoint does not serve.
    UnsupportedGrantType,
    /// 404.
    NotFound,
    /// 409.
    Conflict,
    /// 422: well-formed input that breaks a rule.
    ValidationFailed,
    /// 429, with `Retry-After`.
    RateLimited,
    /// 503, with `Retry-After`.
    Unavailable,
    /// 500.
    InternalError,
}

/// The family of an [`ErrorCode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorType {
    /// 401s.
    AuthenticationError,
    /// 403s.
    AuthorizationError,
    /// 400, 404, 405, 408, 409, 413, 415, 422.
    InvalidRequestError,
    /// 429.
    RateLimitError,
    /// 500, 503.
    ApiError,
}

impl ErrorCode {
    /// The type docs/errors.md pairs with the code: one code, one type.
    pub fn kind(self) -> ErrorType {
        use ErrorCode as C;
        match self {
            C::MissingApiKey | C::InvalidApiKey | C::InvalidToken | C::KeyExpired => {
                ErrorType::AuthenticationError
            }
            C::InsufficientPermissions | C::IpNotAllowed => ErrorType::AuthorizationError,
            C::InvalidRequest
            | C::UnsupportedGrantType
            | C::NotFound
            | C::Conflict
            | C::ValidationFailed => ErrorType::InvalidRequestError,
            C::RateLimited => ErrorType::RateLimitError,
            C::Unavailable | C::InternalError => ErrorType::ApiError,
        }
    }
}
