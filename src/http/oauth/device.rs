//! The device authorization grant's endpoints (RFC 8628):
//! `POST /oauth/device_authorization` for the device, and the pages at
//! `/device` where the signed-in person enters the user code and allows or
//! denies the named client.
//!
//! Without a session, `/device` sends the browser through the normal
//! sign-in (`/oauth/authorize` as `tessera-cli`, redirecting back to
//! `/device` with the user code in `state`), so every way of signing in
//! works here too. Forms are checked like the sign-in form (CSRF double
//! submit, `Origin`).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::pages;
use super::{csrf_token, error_page, our_form, see_other, session_cookie, unique};
use crate::crypto::opaque;
use crate::domain::DomainError;
use crate::domain::session::Session;
use crate::http::error::{OAuthErrors, OAuthTooManyRequests};
use crate::http::extract::{client_ip, gateway};
use crate::http::token::people_client;
use crate::http::{ApiError, OAuthError};
use crate::service::Gateway;
use crate::service::people::clients;
use crate::service::people::device;
use crate::service::people::sessions;
use crate::store::StoredUser;

/// Registers the device routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        crate::http::resource("/oauth/device_authorization", "POST")
            .route(web::post().to(device_authorization)),
    )
    .service(
        crate::http::resource("/device", "GET, POST")
            .route(web::get().to(page))
            .route(web::post().to(enter_code)),
    )
    .service(crate::http::resource("/device/confirm", "POST").route(web::post().to(confirm)));
}

/// The form of `POST /oauth/device_authorization` (RFC 8628 §3.1).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct DeviceAuthorizationRequest {
    /// The client (`tessera-cli`, or an application allowed the
    /// `urn:ietf:params:oauth:grant-type:device_code` grant).
    client_id: Option<String>,
    /// A confidential client's secret (or use HTTP Basic).
    client_secret: Option<String>,
    /// As at `/oauth/authorize`: OpenID scopes and permissions to narrow to.
    scope: Option<String>,
}

/// The RFC 8628 §3.2 answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeviceAuthorizationResponse {
    /// The device's secret, for polling `/oauth/token`.
    device_code: String,
    /// What the person types: `XXXX-XXXX`, letters without vowels.
    #[schema(pattern = "^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$")]
    user_code: String,
    /// `{issuer}/device`.
    verification_uri: String,
    /// The same with `?user_code=`.
    verification_uri_complete: String,
    /// Seconds until the codes expire.
    expires_in: u64,
    /// Seconds to wait between polls.
    interval: u64,
}

#[utoipa::path(post, path = "/oauth/device_authorization", tag = "tokens",
    request_body(content = DeviceAuthorizationRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "RFC 8628 §3.2 device authorization response", body = DeviceAuthorizationResponse),
        OAuthErrors,
        (status = 429, response = OAuthTooManyRequests)),
    security((), ("basic" = [])))]
/// `POST /oauth/device_authorization`.
pub async fn device_authorization(
    req: HttpRequest,
    form: crate::http::body::OAuthForm,
) -> Result<HttpResponse, OAuthError> {
    let gw = gateway(&req).map_err(OAuthError::from)?;
    let mut params = form.params()?;
    let client = people_client(&gw, &mut params, &req).await?;
    let d = device::start(
        &gw,
        &client,
        params.get("scope").as_deref(),
        client_ip(&req).map_err(OAuthError::from)?,
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(DeviceAuthorizationResponse {
            device_code: d.device_code.expose_secret().to_owned(),
            user_code: d.user_code,
            verification_uri: d.verification_uri,
            verification_uri_complete: d.verification_uri_complete,
            expires_in: d.expires_in,
            interval: d.interval,
        }))
}

/// What a user code field may carry back into a page: short, printable.
fn shown_code(v: Option<&String>) -> String {
    v.map(|s| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(20)
            .collect()
    })
    .unwrap_or_default()
}

/// The signed-in person, if the browser's cookie names a live session.
async fn signed_in(
    gw: &Gateway,
    req: &HttpRequest,
) -> Result<Option<(Session, StoredUser)>, DomainError> {
    match session_cookie(gw, req) {
        Some(c) => sessions::current(gw, &c).await,
        None => Ok(None),
    }
}

/// Where to sign in so that the browser comes back to `/device` with the
/// user code it had.
fn sign_in_first(gw: &Gateway, user_code: &str) -> Result<HttpResponse, DomainError> {
    let internal = |e: crate::crypto::random::RandomError| DomainError::Internal(e.to_string());
    // The code this sign-in yields is never exchanged; PKCE is required
    // all the same, so it gets a challenge nobody holds the verifier of.
    let verifier = opaque::random_value().map_err(internal)?;
    let mut u = url::Url::parse(&format!("{}/oauth/authorize", gw.issuer))
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", clients::CLI)
        .append_pair("redirect_uri", &format!("{}/device", gw.issuer))
        .append_pair("scope", "openid")
        .append_pair("state", &format!("device.{user_code}"))
        .append_pair(
            "code_challenge",
            &opaque::pkce_s256(verifier.expose_secret()),
        )
        .append_pair("code_challenge_method", "S256");
    Ok(see_other(u.as_str()))
}

fn entry_page(
    gw: &Gateway,
    req: &HttpRequest,
    status: StatusCode,
    user_code: &str,
    error: Option<&str>,
) -> Result<HttpResponse, DomainError> {
    let (csrf, set) = csrf_token(gw, req)?;
    let mut res = pages::respond(
        status,
        "Connect a device",
        &pages::device_entry(&csrf, user_code, error),
        None,
    );
    if let Some(c) = set {
        let _ = res.add_cookie(&c);
    }
    Ok(res)
}

/// A refused code: the entry page again, saying why (429 with
/// `Retry-After` once the counters are spent).
fn refused(
    gw: &Gateway,
    req: &HttpRequest,
    user_code: &str,
    e: DomainError,
) -> Result<HttpResponse, ApiError> {
    match e {
        DomainError::InvalidGrant(m) => Ok(entry_page(
            gw,
            req,
            StatusCode::BAD_REQUEST,
            user_code,
            Some(&m),
        )?),
        DomainError::RateLimited { retry_after } => {
            let mut res = entry_page(
                gw,
                req,
                StatusCode::TOO_MANY_REQUESTS,
                user_code,
                Some("Too many wrong codes. Wait a few minutes and try again."),
            )?;
            if let Ok(v) = header::HeaderValue::from_str(&retry_after.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Ok(res)
        }
        other => Err(other.into()),
    }
}

/// `GET /device`: the code form (prefilled from `?user_code=`), after
/// sign-in.
pub async fn page(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let map = match unique(query.into_inner()) {
        Ok(m) => m,
        Err(m) => return Ok(error_page(StatusCode::BAD_REQUEST, &m)),
    };
    // Back from signing in: drop the unused code from the address.
    if let Some(state) = map.get("state").and_then(|s| s.strip_prefix("device.")) {
        let code = shown_code(Some(&state.to_owned()));
        let to = if code.is_empty() {
            "/device".to_owned()
        } else {
            format!("/device?user_code={code}")
        };
        return Ok(see_other(&to));
    }
    let code = shown_code(map.get("user_code"));
    if signed_in(&gw, &req).await?.is_none() {
        return Ok(sign_in_first(&gw, &code)?);
    }
    Ok(entry_page(&gw, &req, StatusCode::OK, &code, None)?)
}

/// `POST /device`: the code entered; shows what the client asks for.
pub async fn enter_code(
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let map = match our_form(&gw, &req, form.into_inner(), "device") {
        Ok(m) => m,
        Err(page) => return Ok(page),
    };
    let code = shown_code(map.get("user_code"));
    let Some((session, user)) = signed_in(&gw, &req).await? else {
        return Ok(sign_in_first(&gw, &code)?);
    };
    let input = map.get("user_code").map(String::as_str).unwrap_or("");
    let pending = match device::lookup(&gw, input, &session, client_ip(&req)?).await {
        Ok(p) => p,
        Err(e) => return refused(&gw, &req, &code, e),
    };
    let (csrf, set) = csrf_token(&gw, &req)?;
    let mut res = pages::respond(
        StatusCode::OK,
        "Allow this device?",
        &pages::device_confirm(
            &csrf,
            &pending.user_code,
            &pending.client_name,
            &user.user.email,
            &pending.scope,
        ),
        None,
    );
    if let Some(c) = set {
        let _ = res.add_cookie(&c);
    }
    Ok(res)
}

/// `POST /device/confirm`: Allow or Deny.
pub async fn confirm(
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let map = match our_form(&gw, &req, form.into_inner(), "device") {
        Ok(m) => m,
        Err(page) => return Ok(page),
    };
    let code = shown_code(map.get("user_code"));
    let Some((session, _)) = signed_in(&gw, &req).await? else {
        return Ok(sign_in_first(&gw, &code)?);
    };
    let approve = match map.get("decision").map(String::as_str) {
        Some("allow") => true,
        Some("deny") => false,
        _ => {
            return Ok(error_page(StatusCode::BAD_REQUEST, "Choose Allow or Deny."));
        }
    };
    let input = map.get("user_code").map(String::as_str).unwrap_or("");
    match device::decide(&gw, input, &session, approve, client_ip(&req)?).await {
        Ok(p) => Ok(pages::respond(
            StatusCode::OK,
            if approve {
                "Device connected"
            } else {
                "Request denied"
            },
            &pages::device_done(approve, &p.client_name),
            None,
        )),
        Err(e) => refused(&gw, &req, &code, e),
    }
}
