//! Request extractors: the authenticated principal and the client IP.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;

use super::ApiError;
use crate::domain::DomainError;
use crate::service::Gateway;
use crate::service::auth::{Principal, authenticate_bearer};

/// The gateway state, or an internal error if the app was built without it.
pub fn gateway(req: &HttpRequest) -> Result<web::Data<Gateway>, DomainError> {
    req.app_data::<web::Data<Gateway>>()
        .cloned()
        .ok_or_else(|| DomainError::Internal("gateway state missing".into()))
}

/// The client's IP: the socket peer, unless the peer is a configured
/// trusted proxy; only then does the configured forwarding header count
/// (the rule is `domain::cidr::client_ip`).
///
/// # Errors
/// `InvalidRequest` (400) when a trusted proxy's header does not name the
/// client: never a fallback to the peer.
pub fn client_ip(req: &HttpRequest) -> Result<IpAddr, DomainError> {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let Some(gw) = req.app_data::<web::Data<Gateway>>() else {
        return Ok(crate::domain::cidr::canonical(peer));
    };
    let (trusted, header) = (&gw.client_address.trusted_proxies, gw.client_address.header);
    let lines = crate::verifier::actix::forwarded_lines(req, header);
    crate::domain::cidr::client_ip(peer, header, &lines, trusted)
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Tokens larger than this are refused before any parsing.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Extracts and checks the caller of an admin endpoint.
pub struct Caller(pub Principal);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let gw = gateway(req);
        let token = bearer_token(req).map(str::to_owned);
        let ip = client_ip(req);
        Box::pin(async move {
            let gw = gw?;
            let ip = ip?;
            let token = token.ok_or(DomainError::MissingCredentials)?;
            if token.len() > MAX_TOKEN_BYTES {
                return Err(DomainError::InvalidToken.into());
            }
            Ok(Caller(authenticate_bearer(&gw, &token, ip).await?))
        })
    }
}
