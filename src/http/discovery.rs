//! JWKS and authorization-server metadata (RFC 8414, OpenID discovery).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::json;

use super::ApiError;
use super::extract::gateway;

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery", responses((status = 200, description = "Public signing keys (RFC 7517)", body = crate::http::openapi::Jwks)))]
/// `GET /.well-known/jwks.json`: public keys only, cacheable for 5 minutes
/// (short enough that a newly published key is seen before it signs, when
/// operators follow the rotation steps in `keys/README.md`).
pub async fn jwks(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .content_type("application/json")
        .body(gw.keys.jwks_json().to_owned()))
}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery", responses((status = 200, description = "RFC 8414 metadata", body = Object)))]
/// `GET /.well-known/oauth-authorization-server` and
/// `/.well-known/openid-configuration`.
pub async fn metadata(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let iss = &gw.issuer;
    let algs = gw.keys.algorithms();
    let scopes: Vec<&str> = gw.catalogue.entries().map(|d| d.name.as_str()).collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(json!({
            "issuer": iss,
            "token_endpoint": format!("{iss}/oauth/token"),
            "revocation_endpoint": format!("{iss}/oauth/revoke"),
            "introspection_endpoint": format!("{iss}/oauth/introspect"),
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "response_types_supported": ["token"],
            "scopes_supported": scopes,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
            "token_endpoint_auth_signing_alg_values_supported": algs,
            "access_token_signing_alg_values_supported": algs,
        })))
}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery", responses((status = 200, description = "OpenID discovery (the same metadata)", body = Object)))]
/// `GET /.well-known/openid-configuration`: the same document.
pub async fn openid_configuration(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    metadata(req).await
}
