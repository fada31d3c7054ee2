//! `POST /api/v1/token` (JSON) and `POST /oauth/token` (RFC 6749 form).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::error::{
    JsonBodyErrors, OAuthErrorBody, OAuthErrors, OAuthTooManyRequests, StandardErrors,
    TooManyRequests,
};
use super::extract::{client_ip, gateway};
use super::{ApiError, OAuthError};
use crate::domain::DomainError;
use crate::service::Gateway;
use crate::service::exchange;
use crate::service::people::clients::{self, Client};
use crate::service::people::tokens::{self, PersonTokens};
use crate::service::people::{device, oauth};
use crate::service::token::{ExchangeRequest, exchange};
use secrecy::ExposeSecret;

/// The JSON token request (docs/api.md, "Getting a token"). Fields of other grants are accepted
/// and ignored here so that those grants can be refused by name.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct ApiTokenRequest {
    /// `app_token` (the default), `password` or `refresh_token`.
    #[serde(rename = "grantType", alias = "grant_type")]
    #[schema(pattern = "^(app_token|password|refresh_token)$")]
    grant_type: Option<String>,
    /// `password` grant: the person's email.
    #[schema(max_length = 254)]
    email: Option<String>,
    /// `password` grant: their password.
    #[schema(value_type = Option<String>, max_length = 1024)]
    password: Option<SecretString>,
    /// `refresh_token` grant: the refresh token.
    #[serde(rename = "refreshToken", alias = "refresh_token")]
    #[schema(value_type = Option<String>, max_length = 256)]
    refresh_token: Option<SecretString>,
    /// The application id, or its name (ignoring case); optional with a
    /// generated secret, which embeds the id.
    #[serde(rename = "AppId", alias = "appId", alias = "app_id")]
    app_id: Option<String>,
    /// The application secret (401 `missing_api_key` without it).
    #[serde(rename = "AppSecret", alias = "appSecret", alias = "app_secret")]
    #[schema(value_type = Option<String>)]
    app_secret: Option<SecretString>,
    /// Space-separated permissions to narrow the token to.
    scope: Option<String>,
    /// An audience the application may request.
    audience: Option<String>,
}

/// The JSON token response.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiTokenResponse {
    /// The signed JWT.
    access_token: String,
    /// Always `Bearer`.
    #[schema(pattern = "^Bearer$")]
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: u64,
    /// Granted permissions, space-separated.
    scope: String,
    /// For the `password` and `refresh_token` grants: the next refresh
    /// token (the one presented stops working after a short grace).
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
}

/// The form of `POST /oauth/token`. The handler reads the form as
/// name/value pairs (to refuse repeated parameters), so this type only
/// describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct OAuthTokenRequest {
    /// `client_credentials`, `authorization_code`, `refresh_token`,
    /// `urn:ietf:params:oauth:grant-type:device_code` (RFC 8628) or
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693).
    #[schema(
        pattern = "^(client_credentials|authorization_code|refresh_token|urn:ietf:params:oauth:grant-type:device_code|urn:ietf:params:oauth:grant-type:token-exchange)$"
    )]
    grant_type: String,
    /// `authorization_code`: the code.
    code: Option<String>,
    /// `authorization_code`: the redirect URI the code was sent to.
    redirect_uri: Option<String>,
    /// `authorization_code`: the PKCE verifier.
    code_verifier: Option<String>,
    /// `refresh_token`: the refresh token.
    refresh_token: Option<String>,
    /// Device grant: the device code from `/oauth/device_authorization`.
    device_code: Option<String>,
    /// The AppId: the application's id or its name, ignoring case (or use
    /// HTTP Basic, where it may be either too).
    client_id: Option<String>,
    /// The AppSecret (or use HTTP Basic; never both).
    client_secret: Option<String>,
    /// Space-separated permissions to narrow the token to.
    scope: Option<String>,
    /// An audience to request.
    audience: Option<String>,
    /// RFC 8707 alias of `audience`.
    resource: Option<String>,
    /// Token exchange: the Tessera access token to exchange.
    subject_token: Option<String>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token`
    /// (upstream ID tokens are refused).
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:access_token$")]
    subject_token_type: Option<String>,
    /// Token exchange, delegation: the acting party's access token.
    actor_token: Option<String>,
    /// Token exchange: the actor token's type, required with it.
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:access_token$")]
    actor_token_type: Option<String>,
    /// Token exchange: when given, the access-token type.
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:access_token$")]
    requested_token_type: Option<String>,
}

/// The RFC 6749 §5.1 token response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OAuthTokenResponse {
    /// The signed JWT.
    access_token: String,
    /// Always `Bearer`.
    #[schema(pattern = "^Bearer$")]
    token_type: &'static str,
    /// Seconds until it expires.
    expires_in: u64,
    /// Granted scope, space-separated.
    scope: String,
    /// A refresh token (`offline_access`), for the code and refresh grants.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    /// An ID token (`openid`), for the code grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
    /// Token exchange: the type of `access_token` (RFC 8693 §2.2.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_token_type: Option<&'static str>,
}

impl OAuthTokenResponse {
    fn of(t: PersonTokens) -> Self {
        Self {
            access_token: t.access_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
            scope: t.scope,
            refresh_token: t.refresh_token.map(|r| r.expose_secret().to_owned()),
            id_token: t.id_token,
            issued_token_type: None,
        }
    }

    /// An application's token; `issued_token_type` for token exchange.
    fn issued(
        issued: crate::service::token::IssuedToken,
        issued_token_type: Option<&'static str>,
    ) -> Self {
        Self {
            access_token: issued.access_token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: issued.scope.to_string(),
            refresh_token: None,
            id_token: None,
            issued_token_type,
        }
    }
}

fn no_store(res: &mut actix_web::HttpResponseBuilder) -> &mut actix_web::HttpResponseBuilder {
    // Static values: a `&str` would be copied into a new value per answer.
    res.insert_header((
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    ))
    .insert_header((header::PRAGMA, header::HeaderValue::from_static("no-cache")))
}

/// The answer to an application's exchange, on either endpoint
/// (`camel`: the JSON API's names; else RFC 6749's). Written by hand rather
/// than by serde: the access token is this gateway's own base64url-and-dots
/// JWS, which JSON never escapes, and serde's escaping scan of its ~700
/// bytes was a measurable part of the warm exchange (bench/run.sh). Anything
/// else, or a token that is somehow not plain, goes through serde.
fn issued_response(camel: bool, issued: crate::service::token::IssuedToken) -> HttpResponse {
    // What JSON escapes: control characters, the quote and the backslash.
    // Without early exit, so that the check over ~700 bytes vectorises.
    let plain = !issued.access_token.bytes().fold(false, |bad, b| {
        bad | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    match plain.then(|| hand_written(camel, &issued)) {
        Some(Ok(body)) => no_store(&mut HttpResponse::Ok())
            .insert_header((
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            ))
            .body(body),
        _ if camel => no_store(&mut HttpResponse::Ok()).json(ApiTokenResponse {
            access_token: issued.access_token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            scope: issued.scope.to_string(),
            refresh_token: None,
        }),
        _ => no_store(&mut HttpResponse::Ok()).json(OAuthTokenResponse::issued(issued, None)),
    }
}

/// [`issued_response`]'s body for a plain access token: written into one
/// buffer, numbers and scope by serde_json.
fn hand_written(
    camel: bool,
    issued: &crate::service::token::IssuedToken,
) -> Result<Vec<u8>, serde_json::Error> {
    let (at, tt, ei, sc): (&[u8], &[u8], &[u8], &[u8]) = if camel {
        (b"accessToken", b"tokenType", b"expiresIn", b"scope")
    } else {
        (b"access_token", b"token_type", b"expires_in", b"scope")
    };
    let mut out = Vec::with_capacity(issued.access_token.len() + issued.scope.len() + 112);
    out.extend_from_slice(b"{\"");
    out.extend_from_slice(at);
    out.extend_from_slice(b"\":\"");
    out.extend_from_slice(issued.access_token.as_bytes());
    out.extend_from_slice(b"\",\"");
    out.extend_from_slice(tt);
    out.extend_from_slice(b"\":\"Bearer\",\"");
    out.extend_from_slice(ei);
    out.extend_from_slice(b"\":");
    serde_json::to_writer(&mut out, &issued.expires_in)?;
    out.extend_from_slice(b",\"");
    out.extend_from_slice(sc);
    out.extend_from_slice(b"\":");
    serde_json::to_writer(&mut out, &*issued.scope)?;
    out.push(b'}');
    Ok(out)
}

/// Names the grant only when it is one we know of: the value is the
/// caller's input and is never repeated otherwise.
fn unsupported(grant: &str) -> DomainError {
    match grant {
        "password" => DomainError::UnsupportedGrantType(
            "password (use POST /api/v1/token, or the authorization code grant)".into(),
        ),
        _ => DomainError::UnsupportedGrantType(
            "this grant type is not supported here (app_token, password and refresh_token on /api/v1/token; client_credentials, authorization_code, refresh_token, device_code and token-exchange on /oauth/token)".into(),
        ),
    }
}

fn user_agent(req: &HttpRequest) -> String {
    req.headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect()
}

#[utoipa::path(post, path = "/api/v1/token", tag = "tokens", request_body = ApiTokenRequest,
    responses(
        (status = 200, description = "An access token", body = ApiTokenResponse),
        StandardErrors, JsonBodyErrors,
        (status = 429, response = TooManyRequests)))]
/// `POST /api/v1/token`.
pub fn api_token(
    req: HttpRequest,
    body: super::json::FastJsonObject<ApiTokenRequest>,
) -> impl Future<Output = Result<HttpResponse, ApiError>> {
    run(api_step(req, body.0), true)
}

/// What `POST /api/v1/token` comes to before anything is awaited.
fn api_step(req: HttpRequest, body: ApiTokenRequest) -> Step<ApiError> {
    let gw = match gateway(&req) {
        Ok(gw) => gw,
        Err(e) => return Step::Refused(e.into()),
    };
    match body.grant_type.as_deref() {
        None | Some("app_token") => {}
        Some(_) => return Step::Other(Box::pin(api_people_grant(gw, body, req))),
    }
    let Some(secret) = body.app_secret else {
        return Step::Refused(DomainError::MissingCredentials.into());
    };
    match client_ip(&req) {
        Ok(client_ip) => Step::Exchange(
            gw,
            ExchangeRequest {
                app_id: body.app_id,
                secret,
                scope: body.scope,
                audience: body.audience,
                client_ip,
            },
        ),
        Err(e) => Step::Refused(e.into()),
    }
}

/// A token request read and checked without waiting: the application
/// exchange to run, another grant's future (boxed: those are large and
/// rare), or the refusal. actix boxes each handler's future per request, so
/// the request body and the form are not kept in it (only what the
/// exchange needs), and it stays under the 1 KiB at which glibc's `malloc`
/// consolidates its free lists.
enum Step<E> {
    Exchange(actix_web::web::Data<Gateway>, ExchangeRequest),
    Other(std::pin::Pin<Box<dyn Future<Output = Result<HttpResponse, E>>>>),
    Refused(E),
}

/// Runs a [`Step`]; `camel` picks `/api/v1/token`'s answer over OAuth's.
async fn run<E: From<DomainError>>(step: Step<E>, camel: bool) -> Result<HttpResponse, E> {
    match step {
        Step::Exchange(gw, request) => Ok(issued_response(camel, exchange(&gw, &request).await?)),
        Step::Other(other) => other.await,
        Step::Refused(e) => Err(e),
    }
}

/// `POST /api/v1/token` for a person: the password and refresh grants.
async fn api_people_grant(
    gw: actix_web::web::Data<Gateway>,
    body: ApiTokenRequest,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    match body.grant_type.as_deref().unwrap_or_default() {
        "password" => {
            let (Some(email), Some(password)) = (body.email.as_deref(), body.password.as_ref())
            else {
                return Err(DomainError::InvalidRequest(
                    "the password grant needs email and password".into(),
                )
                .into());
            };
            let t = oauth::password_grant(
                &gw,
                email,
                password,
                body.scope.as_deref(),
                client_ip(&req)?,
                &user_agent(&req),
            )
            .await?;
            Ok(api_person_response(t))
        }
        "refresh_token" => {
            let token = body.refresh_token.ok_or_else(|| {
                DomainError::InvalidRequest("the refresh_token grant needs refreshToken".into())
            })?;
            let client = clients::find(&gw, clients::CLI)
                .await?
                .ok_or_else(|| DomainError::Internal("built-in client missing".into()))?;
            let t = tokens::refresh(&gw, &token, &client, client_ip(&req)?).await?;
            Ok(api_person_response(t))
        }
        other => Err(unsupported(other).into()),
    }
}

fn api_person_response(t: PersonTokens) -> HttpResponse {
    no_store(&mut HttpResponse::Ok()).json(ApiTokenResponse {
        access_token: t.access_token,
        token_type: "Bearer",
        expires_in: t.expires_in,
        scope: t.scope,
        refresh_token: t.refresh_token.map(|r| r.expose_secret().to_owned()),
    })
}

/// Percent-decoding as in `application/x-www-form-urlencoded` (RFC 6749
/// §2.3.1 encodes Basic credentials this way).
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Client credentials from `Authorization: Basic`, if present.
fn basic_credentials(req: &HttpRequest) -> Result<Option<(String, SecretString)>, OAuthError> {
    let Some(v) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || OAuthError::from(DomainError::InvalidCredentials);
    let v = v.to_str().map_err(|_| bad())?;
    let Some((scheme, b64)) = v.split_once(' ') else {
        return Err(bad());
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        // Another scheme (Bearer, on revoke and introspect) is not client
        // credentials; the endpoint decides what to do with it.
        return Ok(None);
    }
    let raw = zeroize::Zeroizing::new(STANDARD.decode(b64.trim()).map_err(|_| bad())?);
    let text = std::str::from_utf8(&raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id).ok_or_else(bad)?;
    let secret = SecretString::from(form_decode(secret).ok_or_else(bad)?);
    Ok(Some((id, secret)))
}

/// The parameters an `/oauth/*` endpoint reads; any other is ignored, as
/// RFC 6749 §3.2 asks of unrecognised parameters.
const OAUTH_PARAMETERS: [&str; 18] = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "resource",
    "token",
    "token_type_hint",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "device_code",
];

/// The parameters of an `/oauth/*` form, held as secrets until we know
/// which one is the client secret. RFC 6749 §3.2: none may repeat. One slot
/// per recognised parameter, in the order of [`OAUTH_PARAMETERS`]: a form
/// has a handful of them, and a hash map cost more than the lookups it saves
/// on the warm exchange.
pub struct OAuthParams([Option<SecretString>; OAUTH_PARAMETERS.len()]);

/// The slot of a recognised parameter.
fn slot(k: &str) -> Option<usize> {
    OAUTH_PARAMETERS.iter().position(|p| *p == k)
}

impl OAuthParams {
    /// Keeps the recognised parameters of decoded pairs and refuses a
    /// repeated one.
    pub fn new(form: Vec<(String, SecretString)>) -> Result<Self, OAuthError> {
        let mut params = Self(std::array::from_fn(|_| None));
        for (k, v) in form {
            params.put(&k, || v)?;
        }
        Ok(params)
    }

    /// As [`OAuthParams::new`], from a UTF-8 form body: names are compared
    /// where they lie and only the values kept are copied.
    pub fn from_body(body: &[u8]) -> Result<Self, OAuthError> {
        let mut params = Self(std::array::from_fn(|_| None));
        for (k, v) in url::form_urlencoded::parse(body) {
            params.put(&k, || SecretString::from(v.into_owned()))?;
        }
        Ok(params)
    }

    /// Keeps `value` if `name` is recognised; refuses it if already given.
    fn put(&mut self, name: &str, value: impl FnOnce() -> SecretString) -> Result<(), OAuthError> {
        let Some(place) = slot(name).and_then(|i| self.0.get_mut(i)) else {
            return Ok(());
        };
        if place.is_some() {
            // `name` matched a recognised parameter: it is ours to repeat.
            return Err(OAuthError::invalid_request(format!(
                "parameter {name} is repeated"
            )));
        }
        *place = Some(value());
        Ok(())
    }

    /// A non-secret parameter, borrowed.
    pub fn peek(&self, k: &str) -> Option<&str> {
        use secrecy::ExposeSecret;
        slot(k)
            .and_then(|i| self.0.get(i))
            .and_then(Option::as_ref)
            .map(|v| v.expose_secret())
    }

    /// A non-secret parameter.
    pub fn get(&self, k: &str) -> Option<String> {
        self.peek(k).map(str::to_owned)
    }

    /// Takes a parameter out, still as a secret.
    pub fn take(&mut self, k: &str) -> Option<SecretString> {
        slot(k)
            .and_then(|i| self.0.get_mut(i))
            .and_then(Option::take)
    }

    /// The client's credentials: HTTP Basic or `client_id`/`client_secret`
    /// in the body, never both. `None` when neither is present.
    pub fn client_credentials(
        &mut self,
        req: &HttpRequest,
    ) -> Result<Option<(Option<String>, SecretString)>, OAuthError> {
        let basic = basic_credentials(req)?;
        let body_secret = self.take("client_secret");
        match (basic, body_secret) {
            (Some(_), Some(_)) => Err(OAuthError::invalid_request(
                "use one client authentication method, not both Basic and client_secret",
            )),
            (Some((id, secret)), None) => {
                // Two identities for one client: authentication failed.
                if self.peek("client_id").is_some_and(|body_id| body_id != id) {
                    return Err(DomainError::InvalidCredentials.into());
                }
                Ok(Some((Some(id), secret)))
            }
            (None, Some(secret)) => Ok(Some((self.get("client_id"), secret))),
            (None, None) => Ok(None),
        }
    }
}

#[utoipa::path(post, path = "/oauth/token", tag = "tokens",
    request_body(content = OAuthTokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "RFC 6749 §5.1 token response", body = OAuthTokenResponse),
        OAuthErrors,
        (status = 403, description = "`access_denied`: the client IP is outside the key's allow-list", body = OAuthErrorBody),
        (status = 429, response = OAuthTooManyRequests)),
    security((), ("basic" = [])))]
/// `POST /oauth/token`.
pub fn oauth_token(
    req: HttpRequest,
    form: super::body::OAuthForm,
) -> impl Future<Output = Result<HttpResponse, OAuthError>> {
    let step = oauth_step(req, form).unwrap_or_else(Step::Refused);
    run(step, false)
}

/// What `POST /oauth/token` comes to before anything is awaited.
fn oauth_step(
    req: HttpRequest,
    form: super::body::OAuthForm,
) -> Result<Step<OAuthError>, OAuthError> {
    let gw = gateway(&req).map_err(OAuthError::from)?;
    let mut params = form.params()?;
    let grant = params
        .peek("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    if grant != "client_credentials" {
        let grant = grant.to_owned();
        return Ok(Step::Other(Box::pin(oauth_other_grant(
            gw, params, req, grant,
        ))));
    }
    let (client_id, secret) = params
        .client_credentials(&req)?
        .ok_or(DomainError::MissingCredentials)?;
    let audience = params.get("audience").or_else(|| params.get("resource"));
    Ok(Step::Exchange(
        gw,
        ExchangeRequest {
            app_id: client_id.filter(|s| !s.is_empty()),
            secret,
            scope: params.get("scope"),
            audience,
            client_ip: client_ip(&req)?,
        },
    ))
}

/// `POST /oauth/token` for every grant but `client_credentials`.
async fn oauth_other_grant(
    gw: actix_web::web::Data<Gateway>,
    mut params: OAuthParams,
    req: HttpRequest,
    grant: String,
) -> Result<HttpResponse, OAuthError> {
    match grant.as_str() {
        "authorization_code" => {
            let client = people_client(&gw, &mut params, &req).await?;
            let code = params
                .take("code")
                .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
            let t = oauth::exchange_code(
                &gw,
                &client,
                code.expose_secret(),
                params.get("redirect_uri").as_deref(),
                params
                    .take("code_verifier")
                    .as_ref()
                    .map(|v| v.expose_secret()),
            )
            .await?;
            Ok(no_store(&mut HttpResponse::Ok()).json(OAuthTokenResponse::of(t)))
        }
        "refresh_token" => {
            let client = people_client(&gw, &mut params, &req).await?;
            let token = params
                .take("refresh_token")
                .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
            let t = tokens::refresh(&gw, &token, &client, client_ip(&req)?).await?;
            Ok(no_store(&mut HttpResponse::Ok()).json(OAuthTokenResponse::of(t)))
        }
        exchange::GRANT_TYPE => token_exchange(&gw, &mut params, &req).await,
        device::GRANT_TYPE => {
            let client = people_client(&gw, &mut params, &req).await?;
            let code = params
                .take("device_code")
                .ok_or_else(|| OAuthError::invalid_request("device_code is required"))?;
            match device::poll(&gw, &client, code.expose_secret()).await {
                Ok(t) => Ok(no_store(&mut HttpResponse::Ok()).json(OAuthTokenResponse::of(t))),
                Err(r) => Err(device_refusal(r)),
            }
        }
        _ => Err(unsupported(&grant).into()),
    }
}

/// The token-exchange grant (RFC 8693): the client must authenticate with
/// its secret; the answer never holds a refresh token.
async fn token_exchange(
    gw: &Gateway,
    params: &mut OAuthParams,
    req: &HttpRequest,
) -> Result<HttpResponse, OAuthError> {
    let (client_id, secret) = params
        .client_credentials(req)?
        .ok_or(DomainError::MissingCredentials)?;
    let (audience, resource) = (params.get("audience"), params.get("resource"));
    let conflicting_targets = matches!((&audience, &resource), (Some(a), Some(r)) if a != r);
    let audience = audience.or(resource);
    let issued = exchange::exchange(
        gw,
        exchange::TokenExchange {
            client: ExchangeRequest {
                app_id: client_id.filter(|s| !s.is_empty()),
                secret,
                scope: None,
                audience: None,
                client_ip: client_ip(req)?,
            },
            subject_token: params.take("subject_token"),
            subject_token_type: params.get("subject_token_type"),
            actor_token: params.take("actor_token"),
            actor_token_type: params.get("actor_token_type"),
            requested_token_type: params.get("requested_token_type"),
            scope: params.get("scope"),
            audience,
            conflicting_targets,
        },
    )
    .await?;
    Ok(
        no_store(&mut HttpResponse::Ok()).json(OAuthTokenResponse::issued(
            issued,
            Some(exchange::ACCESS_TOKEN_TYPE),
        )),
    )
}

/// RFC 8628 §3.5's answers while the person has not approved.
fn device_refusal(r: device::PollRefusal) -> OAuthError {
    use super::error::OAuthErrorCode as C;
    match r {
        device::PollRefusal::Pending => OAuthError::bad_request(
            C::AuthorizationPending,
            "the person has not answered yet; poll again after the interval",
        ),
        device::PollRefusal::SlowDown(n) => OAuthError::bad_request(
            C::SlowDown,
            format!("polling too fast: wait at least {n} seconds between polls"),
        ),
        device::PollRefusal::Expired => {
            OAuthError::bad_request(C::ExpiredToken, "the device code expired; start again")
        }
        device::PollRefusal::Denied => {
            OAuthError::bad_request(C::AccessDenied, "the person denied the request")
        }
        device::PollRefusal::Failed(e) => e.into(),
    }
}

/// The client of a people grant: a confidential one proves itself with its
/// secret (Basic or body); a public one names itself with `client_id` and
/// has no secret (PKCE or rotation protect it).
pub(crate) async fn people_client(
    gw: &Gateway,
    params: &mut OAuthParams,
    req: &HttpRequest,
) -> Result<Client, OAuthError> {
    match params.client_credentials(req)? {
        Some((id, secret)) => {
            let (snap, _) = crate::service::token::authenticate_client(
                gw,
                &ExchangeRequest {
                    app_id: id.filter(|s| !s.is_empty()),
                    secret,
                    scope: None,
                    audience: None,
                    client_ip: client_ip(req)?,
                },
            )
            .await?;
            match clients::find(gw, &snap.stored.app.id).await? {
                Some(c) if !c.public => Ok(c),
                _ => Err(DomainError::UnauthorizedClient(
                    "this application is not a client for people (no redirectUris)".into(),
                )
                .into()),
            }
        }
        None => {
            let id = params
                .get("client_id")
                .ok_or(DomainError::MissingCredentials)?;
            match clients::find(gw, &id).await? {
                Some(c) if c.public => Ok(c),
                // A confidential client must authenticate.
                _ => Err(DomainError::InvalidCredentials.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ApiTokenResponse, OAuthTokenResponse, form_decode, issued_response};
    use crate::service::token::IssuedToken;
    use actix_web::body::MessageBody;

    fn body_of(camel: bool, token: &str, scope: &str) -> serde_json::Value {
        let res = issued_response(
            camel,
            IssuedToken {
                access_token: token.to_owned(),
                expires_in: 600,
                scope: scope.into(),
            },
        );
        assert_eq!(res.headers().get("cache-control").unwrap(), "no-store");
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            "application/json"
        );
        let bytes = res.into_body().try_into_bytes().unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn the_hand_written_token_answer_is_what_serde_writes() {
        for token in ["eyJh.eyJz.c2ln-_x", "not \"plain\" \\ at all"] {
            for scope in ["api_keys:read tokens:*", "odd \"scope\"\n"] {
                let camel = serde_json::to_value(ApiTokenResponse {
                    access_token: token.into(),
                    token_type: "Bearer",
                    expires_in: 600,
                    scope: scope.into(),
                    refresh_token: None,
                })
                .unwrap();
                assert_eq!(body_of(true, token, scope), camel);
                let snake = serde_json::to_value(OAuthTokenResponse {
                    access_token: token.into(),
                    token_type: "Bearer",
                    expires_in: 600,
                    scope: scope.into(),
                    refresh_token: None,
                    id_token: None,
                    issued_token_type: None,
                })
                .unwrap();
                assert_eq!(body_of(false, token, scope), snake);
            }
        }
    }

    /// actix boxes each handler's future per request: the rare grants and
    /// the cache misses are boxed on their own, and the body is read before
    /// the future is made, so the warm exchange's future stays under the
    /// 1 KiB from which glibc consolidates its free lists on every
    /// allocation (it was 5.9 KiB for /oauth/token before).
    #[test]
    fn the_exchange_handlers_futures_stay_small() {
        let req = actix_web::test::TestRequest::default().to_http_request();
        let oauth = super::oauth_token(req.clone(), super::super::body::OAuthForm::Pairs(vec![]));
        let body: super::ApiTokenRequest = serde_json::from_str("{}").unwrap();
        let api = super::api_token(req, super::super::json::FastJsonObject(body));
        assert!(
            std::mem::size_of_val(&oauth) < 1024,
            "{}",
            std::mem::size_of_val(&oauth)
        );
        assert!(
            std::mem::size_of_val(&api) < 1024,
            "{}",
            std::mem::size_of_val(&api)
        );
    }

    #[test]
    fn a_form_body_is_read_as_its_recognised_parameters() {
        use super::OAuthParams;
        let p = OAuthParams::from_body(
            b"grant_type=client_credentials&scope=a%3Ab+c&x=1&x=2&client_secret=s%26t",
        )
        .unwrap();
        assert_eq!(p.peek("grant_type"), Some("client_credentials"));
        assert_eq!(p.peek("scope"), Some("a:b c"));
        assert_eq!(p.peek("client_secret"), Some("s&t"));
        assert_eq!(p.peek("audience"), None);
        // A name spelled with escapes is the same name, repeated or not.
        for body in [
            &b"scope=a&scope=b"[..],
            b"scope=a&sc%6Fpe=b",
            b"scope=&scope=",
        ] {
            let Err(e) = OAuthParams::from_body(body) else {
                panic!("accepted {body:?}");
            };
            assert!(e.to_string().contains("parameter scope is repeated"), "{e}");
        }
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a%3Ab+c").as_deref(), Some("a:b c"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
        assert_eq!(form_decode("%C3%A9").as_deref(), Some("é"));
    }
}
