//! Every error response is shaped here, and only here: docs/errors.md for `/api/*`
//! (and everything else that is not OAuth), RFC 6749 §5.2 for `/oauth/*`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToResponse, ToSchema};

use crate::domain::DomainError;

pub use crate::domain::error_body::{ApiErrorBody, ApiErrorDetail, ErrorCode, ErrorType};

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
    /// `(status, code, message)` for the error.
    fn parts(&self) -> (StatusCode, ErrorCode, String) {
        parts_of(&self.0)
    }
}

/// The status, code and message the API answers a domain error with (the
/// console shows the same on its pages).
pub(crate) fn parts_of(e: &DomainError) -> (StatusCode, ErrorCode, String) {
    {
        use DomainError as E;
        use ErrorCode as C;
        match e {
            E::MissingCredentials => (
                StatusCode::UNAUTHORIZED,
                C::MissingApiKey,
                "No API key or access token was provided".into(),
            ),
            E::InvalidCredentials => (
                StatusCode::UNAUTHORIZED,
                C::InvalidApiKey,
                INVALID_KEY_MESSAGE.into(),
            ),
            E::KeyExpired => (
                StatusCode::UNAUTHORIZED,
                C::KeyExpired,
                "The API key has expired".into(),
            ),
            E::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                C::InvalidToken,
                "The access token is invalid, expired or revoked".into(),
            ),
            E::InsufficientPermissions(m) | E::InvalidScope(m) | E::AudienceNotAllowed(m) => {
                (StatusCode::FORBIDDEN, C::InsufficientPermissions, m.clone())
            }
            E::IpNotAllowed(_) => (StatusCode::FORBIDDEN, C::IpNotAllowed, e.to_string()),
            E::InvalidRequest(m) | E::InvalidGrant(m) => {
                (StatusCode::BAD_REQUEST, C::InvalidRequest, m.clone())
            }
            E::UnauthorizedClient(m) => {
                (StatusCode::FORBIDDEN, C::InsufficientPermissions, m.clone())
            }
            E::UnsupportedGrantType(_) => (
                StatusCode::BAD_REQUEST,
                C::UnsupportedGrantType,
                e.to_string(),
            ),
            E::Validation(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                C::ValidationFailed,
                m.clone(),
            ),
            E::NotFound(_) => (StatusCode::NOT_FOUND, C::NotFound, e.to_string()),
            E::Conflict(m) => (StatusCode::CONFLICT, C::Conflict, m.clone()),
            E::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, C::RateLimited, e.to_string()),
            E::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                C::Unavailable,
                "The service is temporarily unavailable; retry shortly".into(),
            ),
            E::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                C::InternalError,
                "An internal error occurred".into(),
            ),
        }
    }
}

/// The docs/errors.md body with the headers that go with its status.
pub fn api_error_response(status: StatusCode, code: ErrorCode, message: &str) -> HttpResponse {
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    if status == StatusCode::UNAUTHORIZED {
        let challenge = if code == ErrorCode::InvalidToken {
            r#"Bearer realm="tessera", error="invalid_token""#
        } else {
            r#"Bearer realm="tessera""#
        };
        res.insert_header((header::WWW_AUTHENTICATE, challenge));
    }
    res.json(ApiErrorBody {
        error: ApiErrorDetail {
            code,
            message: message.to_owned(),
            kind: code.kind(),
        },
    })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        if let DomainError::Internal(detail) = &self.0 {
            tracing::error!(%detail, "internal error");
        }
        let (status, code, message) = self.parts();
        let mut res = api_error_response(status, code, &message);
        // Only these two tell the client when to come back.
        if let DomainError::RateLimited { retry_after } = &self.0
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        } else if let DomainError::Unavailable = &self.0 {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        res
    }
}

/// The RFC 6749 §5.2 error body: the one type every `/oauth/*` error is
/// serialized from.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// The RFC 6749 / 6750 / 7009 error code.
    pub error: OAuthErrorCode,
    /// What happened, for people. A value the caller sent is repeated only
    /// when short, printable and not shaped like a credential
    /// (`domain::error::quotable`).
    pub error_description: String,
}

/// The `error` values `/oauth/*` answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OAuthErrorCode {
    /// The grant (code, refresh token, credentials) is invalid.
    InvalidGrant,
    /// 400 (413 for an oversized body).
    InvalidRequest,
    /// 401: client authentication failed.
    InvalidClient,
    /// 400: the client may not do this (revoking another client's token).
    UnauthorizedClient,
    /// 400.
    UnsupportedGrantType,
    /// 400: a scope the client does not hold.
    InvalidScope,
    /// 400: an audience the client may not request (RFC 8707).
    InvalidTarget,
    /// 403: the client IP is outside the allow-list.
    AccessDenied,
    /// 403: introspection without `tokens:introspect` (RFC 6750 §3.1).
    InsufficientScope,
    /// 429 and 503, with `Retry-After`.
    TemporarilyUnavailable,
    /// 500.
    ServerError,
    /// 400: the person has not answered the device request yet (RFC 8628).
    AuthorizationPending,
    /// 400: the device polls too often; wait 5 s more (RFC 8628).
    SlowDown,
    /// 400: the device code expired (RFC 8628).
    ExpiredToken,
}

/// A domain error on its way out of `/oauth/*`, in RFC 6749 §5.2 shape.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: OAuthErrorCode,
    description: String,
    retry_after: Option<u64>,
}

impl OAuthError {
    /// `unauthorized_client` (400) with a description.
    pub fn unauthorized_client(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: OAuthErrorCode::UnauthorizedClient,
            description: description.into(),
            retry_after: None,
        }
    }

    /// `insufficient_scope` (403, RFC 6750 §3.1) with a description.
    pub fn insufficient_scope(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            error: OAuthErrorCode::InsufficientScope,
            description: description.into(),
            retry_after: None,
        }
    }

    /// A 400 with this code: the device grant's answers (RFC 8628 §3.5).
    pub fn bad_request(error: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            retry_after: None,
        }
    }

    /// The 413 for a body over `limit` bytes.
    pub fn too_large(limit: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            error: OAuthErrorCode::InvalidRequest,
            description: too_large(limit),
            retry_after: None,
        }
    }

    /// `invalid_request` with a description.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: OAuthErrorCode::InvalidRequest,
            description: description.into(),
            retry_after: None,
        }
    }
}

impl From<DomainError> for OAuthError {
    fn from(e: DomainError) -> Self {
        use DomainError as E;
        use OAuthErrorCode as C;
        let (status, error, retry_after) = match &e {
            E::MissingCredentials | E::InvalidCredentials | E::KeyExpired => {
                (StatusCode::UNAUTHORIZED, C::InvalidClient, None)
            }
            E::InvalidScope(_) | E::InsufficientPermissions(_) => {
                (StatusCode::BAD_REQUEST, C::InvalidScope, None)
            }
            E::AudienceNotAllowed(_) => (StatusCode::BAD_REQUEST, C::InvalidTarget, None),
            E::IpNotAllowed(_) => (StatusCode::FORBIDDEN, C::AccessDenied, None),
            E::UnsupportedGrantType(_) => (StatusCode::BAD_REQUEST, C::UnsupportedGrantType, None),
            E::InvalidGrant(_) => (StatusCode::BAD_REQUEST, C::InvalidGrant, None),
            E::UnauthorizedClient(_) => (StatusCode::BAD_REQUEST, C::UnauthorizedClient, None),
            E::InvalidRequest(_) | E::Validation(_) => {
                (StatusCode::BAD_REQUEST, C::InvalidRequest, None)
            }
            E::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                C::TemporarilyUnavailable,
                Some(*retry_after),
            ),
            E::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                C::TemporarilyUnavailable,
                Some(1),
            ),
            E::InvalidToken => (StatusCode::UNAUTHORIZED, C::InvalidClient, None),
            E::NotFound(_) | E::Conflict(_) => (StatusCode::BAD_REQUEST, C::InvalidRequest, None),
            E::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, C::ServerError, None),
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

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The wire name, from the one place that defines it (serde).
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => f.write_str(&s),
            _ => write!(f, "{self:?}"),
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
        res.json(OAuthErrorBody {
            error: self.error,
            error_description: self.description.clone(),
        })
    }
}

/// A description of a JSON body error that never repeats input values:
/// serde quotes offending strings, which could be secrets. The field is not
/// known here (see [`describe_at`] for errors whose path is known).
pub fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ),
        Category::Data => describe_at("", &explain_data_error(&e.to_string())),
    }
}

/// What serde's message about a value that does not fit says, in the API's
/// words: what the field accepts, never what was sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataError {
    /// The value has the wrong type or form; what is accepted (`one of
    /// live, test`, `an array`, `an RFC 3339 instant ...`).
    Expected(String),
    /// A field the object does not have; the names it does have, when
    /// serde listed them.
    UnknownField(Option<String>),
    /// A required field is absent: its name.
    Missing(String),
    /// A field appears twice: its name.
    Duplicate(String),
    /// Any other message, with whatever it quoted removed.
    Other(String),
}

/// The messages chrono gives for a string that is not an RFC 3339 instant.
const CHRONO_PARSE_ERRORS: [&str; 7] = [
    "input is out of range",
    "no possible date and time matching input",
    "input is not enough for unique date and time",
    "input contains invalid characters",
    "premature end of input",
    "trailing input",
    "bad or unsupported format string",
];

const RFC3339: &str = "an RFC 3339 instant, e.g. 2030-01-31T00:00:00Z";

/// Reads serde's message (see `serde::de::Error`'s provided methods) into a
/// [`DataError`]. What serde quotes of the input (the unexpected value, an
/// unknown field or variant) is dropped; what it expects comes from our
/// types and is kept, said plainly.
pub fn explain_data_error(msg: &str) -> DataError {
    // serde_json adds the position when reading text.
    let msg = msg
        .rsplit_once(" at line ")
        .filter(|(_, tail)| {
            tail.split_once(" column ").is_some_and(|(l, c)| {
                l.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_digit())
            })
        })
        .map_or(msg, |(head, _)| head);
    // The quoted name is the caller's; only serde's list after it is ours.
    let expected_tail = || {
        msg.rsplit_once(", expected ")
            .map(|(_, tail)| tail)
            .filter(|t| t.len() <= 2000 && t.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
    };
    // For an unknown field or variant the name before the tail is the
    // caller's and may itself hold ", expected ": the tail is trusted only
    // in the shape serde writes its list in.
    let list_tail = || expected_tail().filter(|t| is_serde_list(t));
    if msg.starts_with("unknown variant") {
        return match list_tail() {
            Some(t) => DataError::Expected(plain_expected(t)),
            None => DataError::Expected("none of the values given".into()),
        };
    }
    if msg.starts_with("unknown field") {
        return DataError::UnknownField(list_tail().map(names_of));
    }
    for (prefix, make) in [
        (
            "missing field `",
            DataError::Missing as fn(String) -> DataError,
        ),
        ("duplicate field `", DataError::Duplicate),
    ] {
        if let Some(name) = msg.strip_prefix(prefix).and_then(|r| r.strip_suffix('`')) {
            // The name is a field of ours, not input.
            return make(name.to_owned());
        }
    }
    if ["invalid type: ", "invalid value: ", "invalid length "]
        .iter()
        .any(|p| msg.starts_with(p))
    {
        if let Some(t) = expected_tail() {
            return DataError::Expected(plain_expected(t));
        }
    }
    // serde's own words for a bool read from text (query strings).
    if msg == "provided string was not `true` or `false`" {
        return DataError::Expected("true or false".into());
    }
    if CHRONO_PARSE_ERRORS.contains(&msg) {
        return DataError::Expected(RFC3339.into());
    }
    DataError::Other(scrub(msg))
}

/// Whether `tail` is serde's list of expected names: `` `a` ``,
/// `` `a` or `b` `` or `` one of `a`, `b`, `c` ``, each name an identifier.
fn is_serde_list(tail: &str) -> bool {
    let list = tail.strip_prefix("one of ").unwrap_or(tail);
    let mut rest = list;
    loop {
        let Some(after) = rest.strip_prefix('`') else {
            return false;
        };
        let Some((name, after)) = after.split_once('`') else {
            return false;
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        {
            return false;
        }
        if after.is_empty() {
            return true;
        }
        match after
            .strip_prefix(", ")
            .or_else(|| after.strip_prefix(" or "))
        {
            Some(next) => rest = next,
            None => return false,
        }
    }
}

/// `` `a`, `b` `` or `` one of `a`, `b` `` as `a, b`.
fn names_of(list: &str) -> String {
    let list = list.strip_prefix("one of ").unwrap_or(list);
    list.replace(" or ", ", ").replace('`', "")
}

/// What serde or a visitor says it expects, in the API's (JSON's) terms.
fn plain_expected(what: &str) -> String {
    if what.contains('`') {
        let names = names_of(what);
        return if names.contains(", ") {
            format!("one of {names}")
        } else {
            names
        };
    }
    let plain = match what {
        "a sequence" => "an array",
        "a map" => "an object",
        "a boolean" | "a string" => what,
        "u8" => "an integer from 0 to 255",
        "u16" => "an integer from 0 to 65535",
        "u32" => "an integer from 0 to 4294967295",
        "u64" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        _ if what.starts_with("struct ") => "an object",
        _ if what.contains("RFC 3339") => RFC3339,
        _ => what,
    };
    plain.to_owned()
}

/// The message for a [`DataError`] at `path` (`roles[2]`, `expiresAt`; empty
/// for the body itself).
pub fn describe_at(path: &str, e: &DataError) -> String {
    let at = if path.is_empty() {
        "the request body".to_owned()
    } else {
        path.to_owned()
    };
    let field = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    match e {
        DataError::Expected(what) => format!("{at}: expected {what}"),
        DataError::UnknownField(Some(names)) => {
            format!("{at}: unknown field; the fields are {names}")
        }
        DataError::UnknownField(None) => format!("{at}: unknown field"),
        DataError::Missing(name) => format!("{}: required", field(name)),
        DataError::Duplicate(name) => format!("{}: given more than once", field(name)),
        DataError::Other(m) => format!("{at}: {m}"),
    }
}

/// Replaces whatever serde quoted (`"…"` or `` `…` ``) with an ellipsis.
///
/// Only for messages [`explain_data_error`] did not recognise: the unknown
/// field or variant messages, whose backtick-quoted name is not escaped and
/// so could hold a backtick, never reach it. Inside `"…"` (Rust's escaped
/// `Debug` form) a backslash escapes the next character.
pub fn scrub(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in msg.chars() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
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

/// The 415 of a JSON endpoint given another media type.
pub const NOT_JSON: &str = "the request body must be application/json";
/// The 400 of a body the connection could not deliver.
pub const UNREADABLE: &str = "the request body could not be read";
/// The 400 of an `/oauth/*` body of another media type.
pub const NOT_FORM_TYPE: &str = "the request body must be application/x-www-form-urlencoded";
/// The 400 of an `/oauth/*` body that is not a form.
pub const NOT_A_FORM: &str = "the request body is not a valid form";

/// The message of a 413.
pub fn too_large(limit: usize) -> String {
    format!("the request body exceeds the limit of {limit} bytes")
}

/// JSON extractor settings: size limit and errors in the docs/errors.md shape.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            use actix_web::error::JsonPayloadError as J;
            let (status, message) = match &err {
                J::OverflowKnownLength { .. } | J::Overflow { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, too_large(limit))
                }
                J::ContentType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, NOT_JSON.to_owned()),
                J::Deserialize(e) => (StatusCode::BAD_REQUEST, describe_json_error(e)),
                _ => (StatusCode::BAD_REQUEST, UNREADABLE.to_owned()),
            };
            let res = api_error_response(status, ErrorCode::InvalidRequest, &message);
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
                U::Overflow { .. } => OAuthError::too_large(limit),
                U::ContentType => OAuthError::invalid_request(NOT_FORM_TYPE),
                _ => OAuthError::invalid_request(NOT_A_FORM),
            };
            let res = e.error_response();
            actix_web::error::InternalError::from_response(err, res).into()
        })
}

/// Query-string extractor settings: 400s in the docs/errors.md shape.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, _req| {
        // The parameter's name and value are the caller's: only what serde
        // expected (our names) is said, never the string it was given.
        let detail = match &err {
            actix_web::error::QueryPayloadError::Deserialize(e) => {
                describe_query(&explain_data_error(&e.to_string()))
            }
            _ => "the query string could not be read".to_owned(),
        };
        let message = format!("invalid query parameters: {detail}");
        let res = api_error_response(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, &message);
        actix_web::error::InternalError::from_response(err, res).into()
    })
}

/// A query string's [`DataError`] in words: serde_urlencoded does not say
/// which parameter failed, so only what was expected is named.
fn describe_query(e: &DataError) -> String {
    match e {
        DataError::Expected(what) => format!("expected {what}"),
        DataError::UnknownField(Some(names)) => {
            format!("unknown parameter; the parameters are {names}")
        }
        DataError::UnknownField(None) => "unknown parameter".to_owned(),
        DataError::Missing(name) => format!("{name}: required"),
        DataError::Duplicate(name) => format!("{name}: given more than once"),
        DataError::Other(m) => m.clone(),
    }
}

/// Path extractor settings: 404s in the docs/errors.md shape.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|err, req: &HttpRequest| {
        let res = path_not_found(req.path().starts_with("/oauth/"));
        actix_web::error::InternalError::from_response(err, res).into()
    })
}

/// The JSON 405.
pub fn method_not_allowed(method: &Method, allow: &'static str, oauth: bool) -> HttpResponse {
    let message = format!("method {method} is not allowed on this path; allowed: {allow}");
    let mut res = if oauth {
        oauth_error_response(StatusCode::METHOD_NOT_ALLOWED, &message)
    } else {
        api_error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::InvalidRequest,
            &message,
        )
    };
    res.headers_mut().insert(
        actix_web::http::header::ALLOW,
        actix_web::http::header::HeaderValue::from_static(allow),
    );
    res
}

/// The JSON 404 for an unknown path. The path is not repeated: it is the
/// caller's input and may hold anything.
pub fn path_not_found(oauth: bool) -> HttpResponse {
    if oauth {
        return oauth_error_response(StatusCode::NOT_FOUND, "no such endpoint");
    }
    api_error_response(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint",
    )
}

/// An RFC 6749 `invalid_request` body with another status, for the 404 and
/// 405 of paths under `/oauth/`, whose clients parse that shape only.
fn oauth_error_response(status: StatusCode, description: &str) -> HttpResponse {
    let mut e = OAuthError::invalid_request(description);
    e.status = status;
    actix_web::ResponseError::error_response(&e)
}

/// The JSON 408 for a request that took longer than `request_timeout`;
/// the connection is closed.
pub fn request_timeout() -> HttpResponse {
    let mut res = api_error_response(
        StatusCode::REQUEST_TIMEOUT,
        ErrorCode::InvalidRequest,
        "the request took too long to arrive",
    );
    res.head_mut()
        .set_connection_type(actix_web::http::ConnectionType::Close);
    res
}

// ---------------------------------------------------------------------------
// Shared responses for the OpenAPI document: declared once here, referenced
// from every operation (`#/components/responses/...`), built on the body types
// above so the document shows exactly what these functions serialize.

/// A response whose body is `schema` (a component name), with `headers`.
fn documented(description: &str, schema: &str, headers: &[(&str, &str)]) -> Response {
    let mut builder = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build(),
    );
    for (name, what) in headers {
        let string = utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .build();
        builder = builder.header(
            *name,
            HeaderBuilder::new()
                .schema(string)
                .description(Some(*what))
                .build(),
        );
    }
    builder.build()
}

const WWW_AUTHENTICATE: (&str, &str) = (
    "WWW-Authenticate",
    "The challenge (`Bearer realm=\"tessera\"`, with `error=\"invalid_token\"` for a refused token)",
);
const RETRY_AFTER: (&str, &str) = ("Retry-After", "Seconds to wait before trying again");

/// Declares a shared response component: a unit type implementing
/// `ToResponse`, named after the type.
macro_rules! shared_response {
    ($(#[$doc:meta])* $name:ident, $description:expr, $schema:literal, [$($header:expr),*]) => {
        $(#[$doc])*
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (
                    stringify!($name),
                    RefOr::T(documented($description, $schema, &[$($header),*])),
                )
            }
        }
    };
}

shared_response!(
    /// 400 on `/api/*`.
    BadRequest,
    "Malformed request: a body that is not JSON or does not fit the operation (wrong types, unknown or missing fields), query parameters that do not parse, an unsupported grant type, or an unusable forwarding header from a trusted proxy",
    "ApiErrorBody",
    []
);
shared_response!(
    /// 401 on `/api/*`.
    Unauthorized,
    "Missing, invalid, revoked or expired credentials (`missing_api_key`, `invalid_api_key`, `invalid_token`, `key_expired`)",
    "ApiErrorBody",
    [WWW_AUTHENTICATE]
);
shared_response!(
    /// 403 on `/api/*`.
    Forbidden,
    "The caller lacks a permission this needs, or would gain reach it does not hold (`insufficient_permissions`), or the client IP is outside the key's allow-list (`ip_not_allowed`)",
    "ApiErrorBody",
    []
);
shared_response!(
    /// 408 anywhere: the request deadline passed.
    RequestTimeout,
    "The request did not arrive (or could not be answered) within `request_timeout`; the connection is closed",
    "ApiErrorBody",
    []
);
shared_response!(
    /// 413 on `/api/*`.
    PayloadTooLarge,
    "The body exceeds `max_body_bytes`",
    "ApiErrorBody",
    []
);
shared_response!(
    /// 415 on `/api/*` JSON bodies.
    UnsupportedMediaType,
    "The body is not `application/json`",
    "ApiErrorBody",
    []
);
shared_response!(
    /// 429 on `/api/*`.
    TooManyRequests,
    "Too many attempts from this client; see `Retry-After`",
    "ApiErrorBody",
    [RETRY_AFTER]
);
shared_response!(
    /// 503 on `/api/*`.
    Unavailable,
    "The store or the hashing pool cannot serve right now; see `Retry-After`",
    "ApiErrorBody",
    [RETRY_AFTER]
);
shared_response!(
    /// 400 on `/oauth/*`.
    OAuthBadRequest,
    "RFC 6749 §5.2 error: a missing or repeated parameter, a body that is not `application/x-www-form-urlencoded`, an unsupported grant type, or a scope or audience the client does not hold",
    "OAuthErrorBody",
    []
);
shared_response!(
    /// 401 on `/oauth/*`.
    OAuthUnauthorized,
    "`invalid_client`: client authentication failed",
    "OAuthErrorBody",
    [("WWW-Authenticate", "`Basic realm=\"tessera\"`")]
);
shared_response!(
    /// 413 on `/oauth/*`.
    OAuthPayloadTooLarge,
    "`invalid_request`: the body exceeds `max_body_bytes`",
    "OAuthErrorBody",
    []
);
shared_response!(
    /// 429 on `/oauth/*`.
    OAuthTooManyRequests,
    "`temporarily_unavailable`: too many attempts from this client; see `Retry-After`",
    "OAuthErrorBody",
    [RETRY_AFTER]
);
shared_response!(
    /// 503 on `/oauth/*`.
    OAuthUnavailable,
    "`temporarily_unavailable`: the store or the hashing pool cannot serve right now; see `Retry-After`",
    "OAuthErrorBody",
    [RETRY_AFTER]
);

/// A map of status to a reference to a shared response component.
fn refs(entries: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    entries
        .iter()
        .map(|(status, name)| {
            (
                (*status).to_owned(),
                RefOr::Ref(Ref::from_response_name(*name)),
            )
        })
        .collect()
}

/// What any authenticated `/api/*` operation (and the token exchange) may
/// answer besides its own outcomes: 400, 401, 403, 408, 503.
pub struct StandardErrors;

impl IntoResponses for StandardErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        refs(&[
            ("400", "BadRequest"),
            ("401", "Unauthorized"),
            ("403", "Forbidden"),
            ("408", "RequestTimeout"),
            ("503", "Unavailable"),
        ])
    }
}

/// What an operation reading a JSON body may answer besides
/// [`StandardErrors`]: 413 and 415.
pub struct JsonBodyErrors;

impl IntoResponses for JsonBodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        refs(&[("413", "PayloadTooLarge"), ("415", "UnsupportedMediaType")])
    }
}

/// What any `/oauth/*` operation may answer besides its own outcomes: 400,
/// 401, 408, 413, 503.
pub struct OAuthErrors;

impl IntoResponses for OAuthErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        refs(&[
            ("400", "OAuthBadRequest"),
            ("401", "OAuthUnauthorized"),
            ("408", "RequestTimeout"),
            ("413", "OAuthPayloadTooLarge"),
            ("503", "OAuthUnavailable"),
        ])
    }
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
        assert_eq!(d, "the request body: expected a non-negative integer");
    }

    #[test]
    fn serde_messages_said_plainly() {
        use DataError as D;
        let cases = [
            (
                "unknown variant `x`, expected `live` or `test`",
                D::Expected("one of live, test".into()),
            ),
            (
                "unknown variant `a`, expected `b`, expected one of `c`, `d`",
                D::Expected("one of c, d".into()),
            ),
            (
                "unknown field `k`, expected one of `a`, `b` at line 1 column 9",
                D::UnknownField(Some("a, b".into())),
            ),
            ("missing field `name`", D::Missing("name".into())),
            ("duplicate field `name`", D::Duplicate("name".into())),
            (
                "invalid type: string \"x, expected y\", expected a sequence",
                D::Expected("an array".into()),
            ),
            ("premature end of input", D::Expected(RFC3339.into())),
            (
                "provided string was not `true` or `false`",
                D::Expected("true or false".into()),
            ),
            (
                "unknown variant `x, expected `SECRET`, there are no variants",
                D::Expected("none of the values given".into()),
            ),
            (
                "unknown field `x, expected `SECRET`, there are no fields",
                D::UnknownField(None),
            ),
            (
                "something about \"a secret\"",
                D::Other("something about \"…\"".into()),
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(explain_data_error(msg), want, "{msg}");
        }
    }
}
