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
    /// Every published key (access-token and ID-token keys, retired ones
    /// still verifying), in file-name order.
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

/// How confidential clients authenticate to revocation and introspection.
const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// How clients authenticate to the token endpoint: `none` is a public
/// client (the CLI, a single-page app) proving itself with PKCE instead.
const TOKEN_AUTH_METHODS: [&str; 3] = ["client_secret_basic", "client_secret_post", "none"];

/// The OpenID Connect scopes, offered before the permission catalogue.
const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// Claims the provider may put in ID tokens and userinfo answers.
const CLAIMS: [&str; 13] = [
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "sid",
    "amr",
    "email",
    "email_verified",
    "name",
    "at_hash",
];

/// RFC 8414 authorization-server metadata: only what is true of this
/// gateway (no implicit flow, no JWT client authentication).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServerMetadata<'a> {
    /// The issuer, as in the tokens' `iss`.
    pub issuer: &'a str,
    /// The authorization code flow starts here (`/oauth/authorize`).
    pub authorization_endpoint: String,
    /// `POST` the token request form here.
    pub token_endpoint: String,
    /// The public keys.
    pub jwks_uri: String,
    /// RFC 7009 revocation.
    pub revocation_endpoint: String,
    /// RFC 7662 introspection.
    pub introspection_endpoint: String,
    /// RFC 8628: a device without a browser asks for codes here.
    pub device_authorization_endpoint: String,
    /// How clients authenticate to revocation.
    pub revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    /// How clients authenticate to introspection.
    pub introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `openid`, `profile`, `email`, `offline_access`, then the permission
    /// catalogue's names.
    pub scopes_supported: Vec<&'a str>,
    /// `code` only.
    pub response_types_supported: Vec<&'static str>,
    /// `query` only.
    pub response_modes_supported: Vec<&'static str>,
    /// `authorization_code`, `refresh_token`, `client_credentials`, the
    /// token exchange (RFC 8693) and the device code (RFC 8628).
    pub grant_types_supported: Vec<&'static str>,
    /// `client_secret_basic`, `client_secret_post`, `none` (public clients).
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// `S256` only: `plain` PKCE is refused.
    pub code_challenge_methods_supported: Vec<&'static str>,
}

/// OpenID Connect Discovery 1.0 metadata: the RFC 8414 members plus the
/// OpenID provider's own.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OpenIdConfiguration<'a> {
    /// The RFC 8414 members.
    #[serde(flatten)]
    pub oauth: ServerMetadata<'a>,
    /// Claims about the signed-in person, for an access token.
    pub userinfo_endpoint: String,
    /// RP-initiated logout.
    pub end_session_endpoint: String,
    /// `public`: `sub` is the user id for every client.
    pub subject_types_supported: Vec<&'static str>,
    /// The algorithm of the ID-token key (`id_token_alg`, RS256 by
    /// default: OpenID Connect requires RS256 here, and clients such as
    /// authlib refuse metadata without it, so choosing another algorithm
    /// trades that interoperability away).
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    /// Claims that may appear in ID tokens and userinfo.
    pub claims_supported: Vec<&'static str>,
    /// `false`: no `claims` request parameter.
    pub claims_parameter_supported: bool,
    /// `false`: no request objects by value.
    pub request_parameter_supported: bool,
    /// `false`: no request objects by reference (the default would be
    /// `true`, so it is said explicitly).
    pub request_uri_parameter_supported: bool,
    /// `false`: no front-channel logout.
    pub frontchannel_logout_supported: bool,
    /// `false`: no back-channel logout.
    pub backchannel_logout_supported: bool,
}

impl<'a> ServerMetadata<'a> {
    fn new(gw: &'a crate::service::Gateway) -> Self {
        let iss = gw.issuer.as_str();
        let mut scopes: Vec<&str> = OIDC_SCOPES.to_vec();
        for d in gw.catalogue.entries() {
            if !scopes.contains(&d.name.as_str()) {
                scopes.push(d.name.as_str());
            }
        }
        Self {
            issuer: iss,
            authorization_endpoint: format!("{iss}/oauth/authorize"),
            token_endpoint: format!("{iss}/oauth/token"),
            jwks_uri: format!("{iss}/.well-known/jwks.json"),
            revocation_endpoint: format!("{iss}/oauth/revoke"),
            introspection_endpoint: format!("{iss}/oauth/introspect"),
            device_authorization_endpoint: format!("{iss}/oauth/device_authorization"),
            revocation_endpoint_auth_methods_supported: AUTH_METHODS.to_vec(),
            introspection_endpoint_auth_methods_supported: AUTH_METHODS.to_vec(),
            scopes_supported: scopes,
            response_types_supported: vec!["code"],
            response_modes_supported: vec!["query"],
            grant_types_supported: vec![
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:token-exchange",
                crate::service::people::device::GRANT_TYPE,
            ],
            token_endpoint_auth_methods_supported: TOKEN_AUTH_METHODS.to_vec(),
            code_challenge_methods_supported: vec!["S256"],
        }
    }
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
        .body(gw.keys.current().jwks_json().to_owned()))
}

#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "discovery",
    responses((status = 200, description = "RFC 8414 metadata", body = ServerMetadata)))]
/// `GET /.well-known/oauth-authorization-server` (RFC 8414).
pub async fn metadata(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(ServerMetadata::new(&gw)))
}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "discovery",
    responses((status = 200, description = "OpenID Connect Discovery 1.0 metadata", body = OpenIdConfiguration)))]
/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0).
pub async fn openid_configuration(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let gw = gateway(&req)?;
    let iss = gw.issuer.as_str();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(OpenIdConfiguration {
            userinfo_endpoint: format!("{iss}/oauth/userinfo"),
            end_session_endpoint: format!("{iss}/oauth/logout"),
            subject_types_supported: vec!["public"],
            id_token_signing_alg_values_supported: vec![
                gw.keys.current().id_token_key().alg().as_str(),
            ],
            claims_supported: CLAIMS.to_vec(),
            claims_parameter_supported: false,
            request_parameter_supported: false,
            request_uri_parameter_supported: false,
            frontchannel_logout_supported: false,
            backchannel_logout_supported: false,
            oauth: ServerMetadata::new(&gw),
        }))
}
