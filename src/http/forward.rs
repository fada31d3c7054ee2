//! `/auth/forward` (docs/api.md, "At the edge"): the answer a reverse proxy asks for before
//! it passes a request on: nginx `auth_request`, Traefik `forwardAuth`,
//! Envoy `ext_authz` over HTTP.
//!
//! 200 carries the token to hand on in `Authorization`; a refusal carries
//! the error body (docs/errors.md), and the same body in `X-Tessera-Error` as well, because
//! nginx drops the body of an `auth_request` answer and can only pass
//! headers on.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use serde::Deserialize;

use super::error::{ApiError, api_error_response};
use super::extract;
use crate::domain::DomainError;
use crate::service::forward::{self, Credential, ForwardRequest, Refused, Requirements};
use crate::service::metrics::EdgeOutcome;
use crate::service::ratelimit::Decision;

/// What the proxy's configuration asks of the route. An unknown parameter
/// is refused (400): a misspelt `permision=` must not open a route.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardQuery {
    /// The audience the service behind expects.
    pub audience: Option<String>,
    /// A permission the caller must hold.
    pub permission: Option<String>,
    /// The resource the permission must hold on.
    pub resource: Option<String>,
    /// The status a rate-limit refusal is given (`429`, the default, or
    /// `403`): nginx's `auth_request` treats any status but 401 and 403 as
    /// its own failure, so its configuration asks for 403 and turns it back
    /// into 429 from `X-Tessera-Status`.
    pub limited_status: Option<u16>,
}

const X_TESSERA_SUBJECT: HeaderName = HeaderName::from_static("x-tessera-subject");
const X_TESSERA_CLIENT_ID: HeaderName = HeaderName::from_static("x-tessera-client-id");
const X_TESSERA_STATUS: HeaderName = HeaderName::from_static("x-tessera-status");
const X_TESSERA_ERROR: HeaderName = HeaderName::from_static("x-tessera-error");
const X_API_KEY: HeaderName = HeaderName::from_static("x-api-key");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The credential: `Authorization: Bearer …`, else `X-Api-Key`.
fn credential(req: &HttpRequest) -> Option<Credential> {
    if let Some(t) = extract::bearer_token(req) {
        return Some(Credential::classify(t));
    }
    let v = req.headers().get(X_API_KEY)?.to_str().ok()?.trim();
    (!v.is_empty()).then(|| Credential::classify(v))
}

/// The requirements: from the query on `/auth/forward` itself. Under
/// `/auth/forward/…` (Envoy appends the original path, and the client's
/// own query string, to its prefix) nothing the client wrote may count,
/// so no requirement is read there: the service checks its own.
fn requirements(req: &HttpRequest) -> Result<(Requirements, u16), ApiError> {
    if req.match_info().get("tail").is_some() {
        return Ok((Requirements::default(), 429));
    }
    let q = actix_web::web::Query::<ForwardQuery>::from_query(req.query_string())
        .map_err(|_| {
            DomainError::InvalidRequest(
                "the query may hold only audience, permission, resource and limited_status".into(),
            )
        })?
        .into_inner();
    let limited = match q.limited_status {
        None | Some(429) => 429,
        Some(403) => 403,
        Some(_) => {
            return Err(
                DomainError::InvalidRequest("limited_status must be 429 or 403".into()).into(),
            );
        }
    };
    Ok((
        Requirements {
            audience: q.audience.filter(|a| !a.is_empty()),
            permission: q.permission.filter(|p| !p.is_empty()),
            resource: q.resource.filter(|r| !r.is_empty()),
        },
        limited,
    ))
}

fn rate_headers(res: &mut HttpResponse, d: &Decision) {
    let window = d.limit.window_secs();
    let policy = format!("\"app\";q={};w={window}", d.limit.requests);
    let state = format!("\"app\";r={};t={}", d.remaining, d.reset_secs);
    for (name, v) in [(RATELIMIT_POLICY, policy), (RATELIMIT, state)] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            res.headers_mut().insert(name, v);
        }
    }
}

/// Answers one forward-auth request.
pub async fn check(req: HttpRequest) -> HttpResponse {
    let outcome = decide(&req).await;
    if let Ok(gw) = extract::gateway(&req) {
        gw.metrics.edge(match &outcome {
            Ok(_) => EdgeOutcome::Admitted,
            Err((r, _)) => match &r.error {
                DomainError::RateLimited { .. } => EdgeOutcome::RateLimited,
                // Not the caller's doing: the proxy's query, or the store.
                DomainError::InvalidRequest(_)
                | DomainError::Unavailable
                | DomainError::Internal(_) => EdgeOutcome::Error,
                _ => EdgeOutcome::Refused,
            },
        });
    }
    match outcome {
        Ok(res) => res,
        Err(e) => refusal(e),
    }
}

async fn decide(req: &HttpRequest) -> Result<HttpResponse, (Refused, u16)> {
    let key_refusal = |e: DomainError| {
        (
            Refused {
                error: e,
                rate: None,
                token: false,
            },
            429,
        )
    };
    let gw = extract::gateway(req).map_err(key_refusal)?;
    let (needs, limited) = requirements(req).map_err(|e| key_refusal(e.0))?;
    let client_ip = extract::client_ip(req).map_err(key_refusal)?;
    if tracing::enabled!(tracing::Level::DEBUG) {
        // The original path only: query strings are never logged.
        let original = req
            .headers()
            .get("x-forwarded-uri")
            .or_else(|| req.headers().get("x-original-uri"))
            .and_then(|v| v.to_str().ok())
            .map(|u| {
                u.split('?')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect::<String>()
            });
        tracing::debug!(original = ?original, "forward auth");
    }
    let asked = ForwardRequest {
        credential: credential(req),
        client_ip,
        needs,
    };
    let admitted = forward::check(&gw, asked).await.map_err(|r| (r, limited))?;
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    let mut res = res.finish();
    let bearer = format!("Bearer {}", admitted.access_token);
    let pairs = [
        (header::AUTHORIZATION, bearer.as_str()),
        (X_TESSERA_SUBJECT, admitted.subject.as_str()),
        (X_TESSERA_CLIENT_ID, admitted.client_id.as_str()),
    ];
    for (name, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            res.headers_mut().insert(name, v);
        }
    }
    if let Some(d) = &admitted.rate {
        rate_headers(&mut res, d);
    }
    Ok(res)
}

fn refusal((refused, limited): (Refused, u16)) -> HttpResponse {
    let Refused { error, rate, token } = refused;
    // A refused token says `invalid_token`; a refused key `invalid_api_key`.
    let error = match error {
        DomainError::InvalidCredentials if token => DomainError::InvalidToken,
        e => e,
    };
    let (status, code, message) = super::error::parts_of(&error);
    let mut res = api_error_response(status, code, &message);
    // 401 has its challenge already; a 400 or 503 is not about the
    // credential and gets none.
    let challenge = match status {
        StatusCode::FORBIDDEN => Some(r#"Bearer realm="tessera", error="insufficient_scope""#),
        StatusCode::TOO_MANY_REQUESTS => Some(r#"Bearer realm="tessera""#),
        _ => None,
    };
    if let Some(c) = challenge {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
    }
    let body = crate::domain::error_body::ApiErrorBody {
        error: crate::domain::error_body::ApiErrorDetail {
            code,
            message,
            kind: code.kind(),
        },
    };
    if let Ok(body) = serde_json::to_string(&body)
        && let Ok(v) = HeaderValue::from_str(&body)
    {
        res.headers_mut().insert(X_TESSERA_ERROR, v);
    }
    res.headers_mut()
        .insert(X_TESSERA_STATUS, HeaderValue::from(status.as_u16()));
    if let DomainError::RateLimited { retry_after } = &error {
        if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
            res.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if limited == 403 {
            *res.status_mut() = StatusCode::FORBIDDEN;
        }
    }
    if let Some(d) = &rate {
        rate_headers(&mut res, d);
    }
    res
}
