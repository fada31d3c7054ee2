//! `POST /oauth/revoke` (RFC 7009), `POST /oauth/introspect` (RFC 7662) and
//! the revocation feed `GET /api/v1/revocations`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::error::{
    ApiErrorBody, OAuthErrorBody, OAuthErrors, OAuthTooManyRequests, StandardErrors,
};
use super::extract::{Caller, bearer_token, client_ip, gateway};
use super::token::OAuthParams;
use super::{ApiError, OAuthError};
use crate::domain::{DomainError, Permission};

/// The form of `/oauth/revoke` and `/oauth/introspect`. The handlers read
/// the form as name/value pairs (to refuse repeated parameters), so this
/// type only describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct OAuthTokenForm {
    /// The access token concerned.
    token: String,
    /// `access_token` (the only kind this gateway issues); not read.
    token_type_hint: Option<String>,
    /// The AppId (or use HTTP Basic, or a bearer token).
    client_id: Option<String>,
    /// The AppSecret (or use HTTP Basic, or a bearer token).
    client_secret: Option<String>,
}

use crate::service::auth::authenticate_bearer;
pub use crate::service::revocation::IntrospectionBody;
use crate::service::token::{ExchangeRequest, authenticate_client};
use crate::service::{Gateway, revocation};

/// Who is calling an `/oauth/*` management endpoint, and what they hold.
struct OAuthCaller {
    id: String,
    permissions: Vec<Permission>,
}

impl OAuthCaller {
    fn holds(&self, p: &str) -> bool {
        Permission::parse(p).is_ok_and(|p| Permission::any_covers(&self.permissions, &p))
    }
}

/// Client authentication for revoke and introspect: client credentials
/// (Basic or body), or a bearer token from this gateway.
async fn oauth_caller(
    gw: &Gateway,
    req: &HttpRequest,
    params: &mut OAuthParams,
) -> Result<OAuthCaller, OAuthError> {
    if let Some(creds) = params.client_credentials(req)? {
        let (client_id, secret) = creds;
        let (app, grants) = authenticate_client(
            gw,
            &ExchangeRequest {
                app_id: client_id.filter(|s| !s.is_empty()),
                secret,
                scope: None,
                audience: None,
                client_ip: client_ip(req)?,
            },
        )
        .await?;
        return Ok(OAuthCaller {
            id: app.stored.app.id.clone(),
            permissions: grants.permissions.clone(),
        });
    }
    match bearer_token(req) {
        Some(token) => {
            let p = authenticate_bearer(gw, token, client_ip(req)?)
                .await
                .map_err(|_| DomainError::InvalidCredentials)?;
            Ok(OAuthCaller {
                id: p.subject,
                permissions: p.permissions,
            })
        }
        None => Err(DomainError::MissingCredentials.into()),
    }
}

#[utoipa::path(operation_id = "oauth_revoke", post, path = "/oauth/revoke", tag = "revocation",
    request_body(content = OAuthTokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or nothing to revoke (RFC 7009 §2.2); revoking a token again adds nothing"),
        OAuthErrors,
        (status = 403, description = "`access_denied`: the client IP is outside the key's allow-list", body = OAuthErrorBody),
        (status = 429, description = "`temporarily_unavailable`: too many failed attempts, or the client added its allowance of revocations for this minute; see `Retry-After`",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again")),
            body = OAuthErrorBody)),
    security(("basic" = []), ("bearer" = [])))]
/// `POST /oauth/revoke`: a client revokes its own tokens; a holder of
/// `tokens:revoke` revokes anyone's. Unknown, foreign, expired or already
/// revoked tokens answer 200, as RFC 7009 §2.2 asks. Each client may add
/// [`revocation::REVOCATIONS_PER_WINDOW`] entries per minute; beyond, 429.
pub async fn revoke(
    req: HttpRequest,
    form: super::body::OAuthForm,
) -> Result<HttpResponse, OAuthError> {
    let gw = gateway(&req).map_err(OAuthError::from)?;
    let mut params = form.params()?;
    let token = params
        .take("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    if crate::crypto::opaque::is_refresh_token(
        &gw.policy.key_prefix,
        secrecy::ExposeSecret::expose_secret(&token),
    ) {
        return revoke_refresh(&gw, &req, &mut params, &token).await;
    }
    let caller = oauth_caller(&gw, &req, &mut params).await?;
    let may_revoke_any = caller.holds("tokens:revoke");
    let token = secrecy::ExposeSecret::expose_secret(&token).to_owned();
    let ip = client_ip(&req)?;
    revocation::revoke_token(&gw, &caller.id, ip, &token, |c| {
        may_revoke_any || c.client_id == caller.id
    })
    .await
    .map_err(|e| match e {
        DomainError::InsufficientPermissions(_) => OAuthError::unauthorized_client(
            "the token was issued to another client; revoking it needs tokens:revoke",
        ),
        other => other.into(),
    })?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// A refresh token at `/oauth/revoke`: a confidential client proves itself
/// with its secret, a public one names itself with `client_id` (it has no
/// secret; RFC 7009 §2.1 lets it revoke its own tokens).
async fn revoke_refresh(
    gw: &Gateway,
    req: &HttpRequest,
    params: &mut OAuthParams,
    token: &SecretString,
) -> Result<HttpResponse, OAuthError> {
    use crate::service::people::clients;
    let client_id = match params.client_credentials(req)? {
        Some((id, secret)) => {
            let (app, _) = authenticate_client(
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
            app.stored.app.id.clone()
        }
        None => {
            let id = params
                .get("client_id")
                .ok_or(DomainError::MissingCredentials)?;
            match clients::find(gw, &id).await? {
                Some(c) if c.public => c.id,
                _ => return Err(DomainError::InvalidCredentials.into()),
            }
        }
    };
    crate::service::people::tokens::revoke_refresh(
        gw,
        secrecy::ExposeSecret::expose_secret(token),
        &client_id,
        client_ip(req)?,
    )
    .await
    .map_err(|e| match e {
        DomainError::InsufficientPermissions(m) => OAuthError::unauthorized_client(m),
        other => other.into(),
    })?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

#[utoipa::path(operation_id = "oauth_introspect", post, path = "/oauth/introspect", tag = "revocation",
    request_body(content = OAuthTokenForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "RFC 7662 answer; `active: false` for anything not live", body = IntrospectionBody),
        OAuthErrors,
        (status = 403, description = "`insufficient_scope`: needs tokens:introspect; or `access_denied`: the client IP is outside the key's allow-list", body = OAuthErrorBody),
        (status = 429, response = OAuthTooManyRequests)),
    security(("basic" = []), ("bearer" = [])))]
/// `POST /oauth/introspect`: for callers holding `tokens:introspect`.
pub async fn introspect(
    req: HttpRequest,
    form: super::body::OAuthForm,
) -> Result<HttpResponse, OAuthError> {
    let gw = gateway(&req).map_err(OAuthError::from)?;
    let mut params = form.params()?;
    let caller = oauth_caller(&gw, &req, &mut params).await?;
    if !caller.holds("tokens:introspect") {
        return Err(OAuthError::insufficient_scope(
            "introspection needs the permission tokens:introspect",
        ));
    }
    let token = params
        .take("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let body = revocation::introspect(&gw, secrecy::ExposeSecret::expose_secret(&token)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body))
}

/// Feed parameters.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedParams {
    /// The `cursor` of the previous answer; absent to start a snapshot.
    pub since: Option<String>,
    /// At most this many entries per page, snapshots included (1 to 10000,
    /// default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// A page of the revocation feed, as `GET /api/v1/revocations` answers it.
///
/// To follow the feed: ask without `since` first, then always with the last
/// `cursor`, at once while `more` is true. A page with `reset` starts a
/// snapshot: collect its entries and those of the following `snapshot`
/// pages; the snapshot is complete at its first page with `more: false` or
/// at the first page with `snapshot: false`, and then replaces what the
/// reader held. A reader that stops while `more` is true is behind.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedPageBody {
    /// Entries after the cursor, in order; or the next part of a snapshot
    /// (live entries only).
    pub entries: Vec<crate::domain::Revocation>,
    /// Ask with `?since=` this next time.
    pub cursor: String,
    /// True when `entries` belong to a snapshot of the whole live set (the
    /// cursor was absent, foreign or too old, or continued a snapshot), not
    /// increments.
    pub snapshot: bool,
    /// True on a snapshot's first page: start a new live set, and replace
    /// the old one with it once the snapshot is complete.
    pub reset: bool,
    /// True when entries remain after this page: ask again with `cursor`
    /// now; until then the reader is behind.
    pub more: bool,
}

impl From<crate::store::FeedPage> for FeedPageBody {
    fn from(p: crate::store::FeedPage) -> Self {
        Self {
            entries: p.entries,
            cursor: p.cursor,
            snapshot: p.snapshot,
            reset: p.reset,
            more: p.more,
        }
    }
}

/// `GET /api/v1/revocations?since=&limit=`: one page of entries after the
/// cursor, or of a snapshot of every live entry when the cursor is absent,
/// foreign or too old; `more` says whether entries remain.
#[utoipa::path(operation_id = "revocation_feed", get, path = "/api/v1/revocations", tag = "revocation", params(FeedParams),
    responses((status = 200, description = "One page: entries, the cursor to continue with, and whether more remain", body = FeedPageBody),
        StandardErrors,
        (status = 422, description = "`limit` outside 1 to 10000", body = ApiErrorBody)),
    security(("bearer" = [])))]
pub async fn feed(
    req: HttpRequest,
    Caller(c): Caller,
    params: web::Query<FeedParams>,
) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let limit = params.limit.unwrap_or(1000);
    let page = revocation::feed(&gw, &c, params.since.as_deref(), limit).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(FeedPageBody::from(page)))
}
