//! JWKS and authorization-server metadata (RFC 8414, OpenID discovery).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::ApiError;
use super::extract::gateway;

/// A JSON Web Key Set (RFC 7517), public keys only. The key ring renders
/// it once at start (`crypto::keys`) and the handler serves those bytes;
/// this type describes them, and schemathesis checks the served set
/// against it in CI.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Jwks {
    /// The signing keys, the active one first.
    keys: Vec<Jwk>,
}

/// One public key (RFC 7517 §4, RFC 7518 §6, RFC 8037).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Jwk {
    /// `EC`, `OKP` or `RSA`.
    kty: String,
    /// The RFC 7638 thumbprint.
    kid: String,
    /// `ES256`, `EdDSA` or `RS256`.
    alg: String,
    /// `sig`.
    #[schema(rename = "use")]
    key_use: String,
    /// The curve (`P-256`, `Ed25519`), for EC and OKP keys.
    crv: Option<String>,
    /// The x coordinate or public key, for EC and OKP keys.
    x: Option<String>,
    /// The y coordinate, for EC keys.
    y: Option<String>,
    /// The modulus, for RSA keys.
    n: Option<String>,
    /// The exponent, for RSA keys.
    e: Option<String>,
}

/// The client authentication methods of every `/oauth/*` endpoint.
const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// RFC 8414 authorization-server metadata (also served as OpenID discovery).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerMetadata<'a> {
    /// The issuer, as in the tokens' `iss`.
    pub issuer: &'a str,
    /// `POST` the `client_credentials` form here.
    pub token_endpoint: String,
    /// RFC 7009 revocation.
    pub revocation_endpoint: String,
    /// RFC 7662 introspection.
    pub introspection_endpoint: String,
    /// How clients authenticate to revocation.
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// How clients authenticate to introspection.
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// The public keys.
    pub jwks_uri: String,
    /// `client_credentials`.
    pub grant_types_supported: Vec<&'static str>,
    /// How clients authenticate to the token endpoint.
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `token`.
    pub response_types_supported: Vec<&'static str>,
    /// The permission catalogue's names.
    pub scopes_supported: Vec<&'a str>,
    /// `public`.
    pub subject_types_supported: Vec<&'static str>,
    /// Signing algorithms in use.
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    /// Signing algorithms in use.
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    /// Signing algorithms in use.
    pub access_token_signing_alg_values_supported: Vec<&'static str>,
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "Public signing keys (RFC 7517)", body = Jwks)))]
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

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = ServerMetadata)))]
/// `GET /.well-known/oauth-authorization-server` and
/// `/.well-known/openid-configuration`.
pub async fn metadata(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let iss = gw.issuer.as_str();
    let algs = gw.keys.algorithms();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(ServerMetadata {
            issuer: iss,
            token_endpoint: format!("{iss}/oauth/token"),
            revocation_endpoint: format!("{iss}/oauth/revoke"),
            introspection_endpoint: format!("{iss}/oauth/introspect"),
            revocation_endpoint_auth_methods_supported: AUTH_METHODS.to_vec(),
            introspection_endpoint_auth_methods_supported: AUTH_METHODS.to_vec(),
            jwks_uri: format!("{iss}/.well-known/jwks.json"),
            grant_types_supported: vec!["client_credentials"],
            token_endpoint_auth_methods_supported: AUTH_METHODS.to_vec(),
            response_types_supported: vec!["token"],
            scopes_supported: gw.catalogue.entries().map(|d| d.name.as_str()).collect(),
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: algs.clone(),
            token_endpoint_auth_signing_alg_values_supported: algs.clone(),
            access_token_signing_alg_values_supported: algs,
        }))
}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "OpenID discovery (the same metadata)", body = ServerMetadata)))]
/// `GET /.well-known/openid-configuration`: the same document.
pub async fn openid_configuration(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    metadata(req).await
}
