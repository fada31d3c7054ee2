//! Every error response is shaped here, and only here: SPEC §6 for `/api/*`
//! (and everything else that is not OAuth), RFC 6749 §5.2 for `/oauth/*`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;
use std::fmt;

use crate::domain::DomainError;

/// A domain error on its way out of the `/api` surface.
#[derive(Debug)]
pub struct ApiError(pub DomainError);

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError(e)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

const INVALID_KEY_MESSAGE: &str = "The API key provided is invalid or has been revoked";

impl ApiError {
    /// `(status, code, type, message)` for the error.
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        use DomainError as E;
        let auth = "authentication_error";
        let authz = "authorization_error";
        let req = "invalid_request_error";
        match &self.0 {
            E::MissingCredentials => (
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                auth,
                "No API key or access token was provided".into(),
            ),
            E::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                auth,
                INVALID_KEY_MESSAGE.into(),
            ),
            E::KeyExpired => (
                StatusCode::UNAUTHORIZED,
                "key_expired",
                auth,
                "The API key has expired".into(),
            ),
            E::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                auth,
                "The access token is invalid, expired or revoked".into(),
            ),
            E::InsufficientPermissions(m) | E::InvalidScope(m) | E::AudienceNotAllowed(m) => (
                StatusCode::FORBIDDEN,
                "insufficient_permissions",
                authz,
                m.clone(),
            ),
            E::IpNotAllowed(_) => (
                StatusCode::FORBIDDEN,
                "ip_not_allowed",
                authz,
                self.0.to_string(),
            ),
            E::InvalidRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", req, m.clone()),
            E::UnsupportedGrantType(_) => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                req,
                self.0.to_string(),
            ),
            E::Validation(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                req,
                m.clone(),
            ),
            E::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", req, self.0.to_string()),
            E::Conflict(m) => (StatusCode::CONFLICT, "conflict", req, m.clone()),
            E::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "rate_limit_error",
                self.0.to_string(),
            ),
            E::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "api_error",
                "The service is temporarily unavailable; retry shortly".into(),
            ),
            // Anything not listed above (the enum is non-exhaustive) is a bug.
            _ => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "api_error",
                "An internal error occurred".into(),
            ),
        }
    }
}

/// The SPEC §6 body with the headers that go with its status.
pub fn api_error_response(
    status: StatusCode,
    code: &str,
    kind: &str,
    message: &str,
) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED {
        let challenge = if code == "invalid_token" {
            r#"Bearer realm="tessera", error="invalid_token""#
        } else {
            r#"Bearer realm="tessera""#
        };
        res.insert_header((header::WWW_AUTHENTICATE, challenge));
    }
    res.json(json!({"error": {"code": code, "message": message, "type": kind}}))
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        if let DomainError::Internal(detail) = &self.0 {
            tracing::error!(%detail, "internal error");
        }
        let (status, code, kind, message) = self.parts();
        let mut res = api_error_response(status, code, kind, &message);
        match &self.0 {
            DomainError::RateLimited { retry_after } => {
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    res.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            DomainError::Unavailable => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        res
    }
}

/// A domain error on its way out of `/oauth/*`, in RFC 6749 §5.2 shape.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    retry_after: Option<u64>,
}

impl OAuthError {
    /// `unauthorized_client` (400) with a description.
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "unauthorized_client",
            description: description.into(),
            retry_after: None,
        }
    }

    /// `insufficient_scope` (403, RFC 6750 §3.1) with a description.
    pub fn insufficient_scope(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            error: "insufficient_scope",
            description: description.into(),
            retry_after: None,
        }
    }

    /// `invalid_request` with a description.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.into(),
            retry_after: None,
        }
    }
}

impl From<DomainError> for OAuthError {
    fn from(e: DomainError) -> Self {
        use DomainError as E;
        let (status, error, retry_after) = match &e {
            E::MissingCredentials | E::InvalidCredentials | E::KeyExpired => {
                (StatusCode::UNAUTHORIZED, "invalid_client", None)
            }
            E::InvalidScope(_) | E::InsufficientPermissions(_) => {
                (StatusCode::BAD_REQUEST, "invalid_scope", None)
            }
            E::AudienceNotAllowed(_) => (StatusCode::BAD_REQUEST, "invalid_target", None),
            E::IpNotAllowed(_) => (StatusCode::FORBIDDEN, "access_denied", None),
            E::UnsupportedGrantType(_) => (StatusCode::BAD_REQUEST, "unsupported_grant_type", None),
            E::InvalidRequest(_) | E::Validation(_) => {
                (StatusCode::BAD_REQUEST, "invalid_request", None)
            }
            E::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                Some(*retry_after),
            ),
            E::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                Some(1),
            ),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
        };
        let description = match &e {
            E::InvalidCredentials | E::MissingCredentials => {
                "client authentication failed".to_owned()
            }
            E::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                "an internal error occurred".to_owned()
            }
            other => other.to_string(),
        };
        Self {
            status,
            error,
            description,
            retry_after,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error, self.description)
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::PRAGMA, "no-cache"));
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, r#"Basic realm="tessera""#));
        }
        if let Some(s) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        res.json(json!({"error": self.error, "error_description": self.description}))
    }
}

/// A description of a JSON body error that never repeats input values:
/// serde quotes offending strings, which could be secrets.
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ),
        Category::Data => {
            let out = scrub(&e.to_string());
            format!("the request body does not fit this endpoint: {out}")
        }
    }
}

/// Replaces whatever serde quoted (`"…"` or `` `…` ``) with an ellipsis.
pub fn scrub(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quote: Option<char> = None;
    for c in msg.chars() {
        match quote {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                quote = None;
            }
            Some(_) => {}
            None => {
                out.push(c);
                if c == '"' || c == '`' {
                    quote = Some(c);
                }
            }
        }
    }
    out
}

fn too_large(limit: usize) -> String {
    format!("the request body exceeds the limit of {limit} bytes")
}

/// JSON extractor settings: size limit and SPEC-shaped errors.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            use actix_web::error::JsonPayloadError as J;
            let (status, message) = match &err {
                J::OverflowKnownLength { .. } | J::Overflow { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, too_large(limit))
                }
                J::ContentType => (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "the request body must be application/json".to_owned(),
                ),
                J::Deserialize(e) => (StatusCode::BAD_REQUEST, describe_json_error(e)),
                _ => (
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read".to_owned(),
                ),
            };
            let res =
                api_error_response(status, "invalid_request", "invalid_request_error", &message);
            actix_web::error::InternalError::from_response(err, res).into()
        })
}

/// Form extractor settings for `/oauth/*`: size limit and RFC 6749 errors.
pub fn form_config(limit: usize) -> web::FormConfig {
    web::FormConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            use actix_web::error::UrlencodedError as U;
            let e = match &err {
                U::Overflow { .. } => OAuthError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    error: "invalid_request",
                    description: too_large(limit),
                    retry_after: None,
                },
                U::ContentType => OAuthError::invalid_request(
                    "the request body must be application/x-www-form-urlencoded",
                ),
                _ => OAuthError::invalid_request("the request body is not a valid form"),
            };
            let res = e.error_response();
            actix_web::error::InternalError::from_response(err, res).into()
        })
}

/// Query-string extractor settings: SPEC-shaped 400s.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        let message = format!("invalid query parameters: {}", scrub(&err.to_string()));
        let res = api_error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid_request_error",
            &message,
        );
        actix_web::error::InternalError::from_response(err, res).into()
    })
}

/// Path extractor settings: SPEC-shaped 404s.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, req: &HttpRequest| {
        let _ = req;
        let res = path_not_found();
        actix_web::error::InternalError::from_response(err, res).into()
    })
}

/// The JSON 405.
pub fn method_not_allowed(method: &Method, allow: &'static str) -> HttpResponse {
    let mut res = api_error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        "invalid_request_error",
        &format!("method {method} is not allowed on this path; allowed: {allow}"),
    );
    res.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    res
}

/// The JSON 404 for an unknown path. The path is not repeated: it is the
/// caller's input and may hold anything.
pub fn path_not_found() -> HttpResponse {
    api_error_response(
        StatusCode::NOT_FOUND,
        "not_found",
        "invalid_request_error",
        "no such endpoint",
    )
}

/// The JSON 408 for a request that took longer than `request_timeout`;
/// the connection is closed.
pub fn request_timeout() -> HttpResponse {
    let mut res = api_error_response(
        StatusCode::REQUEST_TIMEOUT,
        "invalid_request",
        "invalid_request_error",
        "the request took too long to arrive",
    );
    res.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_do_not_repeat_values() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            n: u64,
        }
        let e = serde_json::from_str::<T>(r#"{"n": "tsr_sk_live_secret"}"#).unwrap_err();
        let d = describe_json_error(&e);
        assert!(!d.contains("secret"), "{d}");
        assert!(d.contains("invalid type"), "{d}");
    }
}
