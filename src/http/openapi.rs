//! The OpenAPI 3.1 document, generated from the handlers' annotations and
//! the types' schemas, so it cannot drift from the code. Served at
//! `/openapi.json` and printed by `tessera openapi`.

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::domain::{PermissionDef, Role};
use crate::service::apps::{AppView, BulkResult};

/// The SPEC §6 error body.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorBody {
    /// The error.
    pub error: ApiErrorDetail,
}

/// The inside of an error body.
#[derive(Serialize, ToSchema)]
pub struct ApiErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_api_key`.
    pub code: String,
    /// What happened, for people. Never repeats a secret.
    pub message: String,
    /// `authentication_error`, `authorization_error`, `invalid_request_error`,
    /// `rate_limit_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// RFC 6749 §5.2 error body.
#[derive(Serialize, ToSchema)]
pub struct OAuthErrorBody {
    /// `invalid_client`, `invalid_scope`, `invalid_request`, …
    pub error: String,
    /// What happened.
    pub error_description: String,
}

/// The `client_credentials` form.
#[derive(Serialize, ToSchema)]
pub struct OAuthTokenRequest {
    /// `client_credentials`.
    pub grant_type: String,
    /// AppId (or use HTTP Basic).
    pub client_id: Option<String>,
    /// AppSecret (or use HTTP Basic).
    pub client_secret: Option<String>,
    /// Space-separated permissions to narrow the token to.
    pub scope: Option<String>,
    /// Audience to request.
    pub audience: Option<String>,
    /// RFC 8707 alias of `audience`.
    pub resource: Option<String>,
}

/// RFC 6749 §5.1 token response.
#[derive(Serialize, ToSchema)]
pub struct OAuthTokenResponse {
    /// The JWT.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds until expiry.
    pub expires_in: u64,
    /// Granted permissions, space-separated.
    pub scope: String,
}

/// The form of `/oauth/revoke` and `/oauth/introspect`.
#[derive(Serialize, ToSchema)]
pub struct OAuthTokenForm {
    /// The access token concerned.
    pub token: String,
    /// `access_token` (the only kind this gateway issues).
    pub token_type_hint: Option<String>,
    /// AppId (or use HTTP Basic, or a bearer token).
    pub client_id: Option<String>,
    /// AppSecret.
    pub client_secret: Option<String>,
}

/// A page of the revocation feed.
#[derive(Serialize, ToSchema)]
pub struct FeedBody {
    /// Entries after the cursor, in order; every live entry for a snapshot.
    pub entries: Vec<crate::domain::Revocation>,
    /// Ask with `?since=` this next time.
    pub cursor: String,
    /// True when `entries` is the whole live set (replace, don't add).
    pub snapshot: bool,
}

/// An application together with its secret: only in create and rotate.
#[derive(Serialize, ToSchema)]
pub struct AppWithSecret {
    /// The record.
    #[serde(flatten)]
    pub app: AppView,
    /// The secret. Shown once; store it now.
    pub secret: String,
}

/// Bulk delete results.
#[derive(Serialize, ToSchema)]
pub struct BulkDeleteResults {
    /// One per id asked for, in order.
    pub results: Vec<BulkResult>,
}

/// The permission catalogue.
#[derive(Serialize, ToSchema)]
pub struct PermissionList {
    /// Every entry, by name.
    pub data: Vec<PermissionDef>,
}

/// Every role.
#[derive(Serialize, ToSchema)]
pub struct RoleList {
    /// By name.
    pub data: Vec<Role>,
}

/// A JSON Web Key Set (public keys only).
#[derive(Serialize, ToSchema)]
pub struct Jwks {
    /// The keys (`kty`, `crv`/`n`/`e`, `x`/`y`, `kid`, `alg`, `use`).
    #[schema(value_type = Vec<Object>)]
    pub keys: Vec<serde_json::Value>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.bearer_format = Some("JWT".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(bearer));
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Tessera", description = "Token-exchange auth gateway: application secrets in, short-lived signed JWTs out."),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
        super::discovery::jwks,
        super::discovery::metadata,
        super::discovery::openid_configuration,
        super::token::api_token,
        super::token::oauth_token,
        super::revocation::revoke,
        super::revocation::introspect,
        super::revocation::feed,
        super::apps::create,
        super::apps::list,
        super::apps::get,
        super::apps::patch,
        super::apps::rotate,
        super::apps::revoke,
        super::apps::delete,
        super::apps::bulk_delete,
        super::apps::permissions,
        super::admin::list_roles,
        super::admin::create_role,
        super::admin::get_role,
        super::admin::patch_role,
        super::admin::delete_role,
        super::admin::list_users,
        super::admin::create_user,
        super::admin::get_user,
        super::admin::patch_user,
        super::admin::delete_user,
        super::admin::audit_log,
        openapi_json,
    ),
    modifiers(&Security),
    tags(
        (name = "tokens", description = "Exchanging credentials for access tokens"),
        (name = "apps", description = "Applications (API keys)"),
        (name = "roles", description = "Roles: permission templates"),
        (name = "users", description = "Users (owners of applications)"),
        (name = "audit", description = "The audit log"),
        (name = "revocation", description = "Revocation, introspection and the revocation feed"),
        (name = "discovery", description = "JWKS and metadata"),
        (name = "operations", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// The document as pretty JSON.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)))]
/// `GET /openapi.json`.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}
