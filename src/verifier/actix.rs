//! actix-web integration: an extractor for verified tokens and errors in the
//! gateway's JSON shape (docs/errors.md).
//!
//! ```text
//! App::new()
//!     .app_data(web::Data::from(verifier.clone()))
//!     .route("/things/{id}", web::get().to(|Authenticated(t): Authenticated, id: web::Path<String>| async move {
//!         // `resource` keeps the path parameter to one segment (a decoded
//!         // `%2F` cannot make it deeper).
//!         t.require("things:read", Some(&resource(&[("thing", &id)])?))?;
//!         Ok::<_, VerifyError>(HttpResponse::Ok().finish())
//!     }))
//! ```

use crate::domain::cidr::ForwardedHeader;
use crate::domain::error_body::{ApiErrorBody, ApiErrorDetail, ErrorCode};
use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;

use super::{VerifiedToken, Verifier, VerifyError};

impl VerifyError {
    fn parts(&self) -> (StatusCode, ErrorCode) {
        match self {
            VerifyError::Missing => (StatusCode::UNAUTHORIZED, ErrorCode::MissingApiKey),
            VerifyError::Invalid(_) | VerifyError::Revoked => {
                (StatusCode::UNAUTHORIZED, ErrorCode::InvalidToken)
            }
            VerifyError::IpNotAllowed(_) => (StatusCode::FORBIDDEN, ErrorCode::IpNotAllowed),
            VerifyError::Forbidden(_) => {
                (StatusCode::FORBIDDEN, ErrorCode::InsufficientPermissions)
            }
            VerifyError::Stale | VerifyError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            VerifyError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
        }
    }
}

impl ResponseError for VerifyError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.parts();
        // One message for every invalid token: the reason is logged, not told.
        let message = match self {
            VerifyError::Invalid(reason) => {
                tracing::debug!(%reason, "token refused");
                "The access token is invalid, expired or revoked".to_owned()
            }
            VerifyError::Revoked => "The access token is invalid, expired or revoked".to_owned(),
            other => other.to_string(),
        };
        let mut res = HttpResponse::build(status);
        if status == StatusCode::UNAUTHORIZED {
            res.insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            res.insert_header((header::RETRY_AFTER, "1"));
        }
        res.json(ApiErrorBody {
            error: ApiErrorDetail {
                code,
                message,
                kind: code.kind(),
            },
        })
    }
}

/// The lines of the forwarding header `header` in `req`, as
/// `domain::cidr::client_ip` reads them. The name is a constant, not a
/// string: looking a request up by a non-standard name as a string copies
/// it into a new `HeaderName` every time.
pub fn forwarded_lines(req: &HttpRequest, forwarded: ForwardedHeader) -> Vec<&[u8]> {
    let name = match forwarded {
        ForwardedHeader::XForwardedFor => header::X_FORWARDED_FOR,
        ForwardedHeader::Forwarded => header::FORWARDED,
    };
    req.headers()
        .get_all(name)
        .map(header::HeaderValue::as_bytes)
        .collect()
}

/// The client address under the verifier's trusted-proxy rule: the socket
/// peer, unless it is a trusted proxy; then only the configured forwarding
/// header counts (the gateway's rule, `domain::cidr::client_ip`).
///
/// # Errors
/// `InvalidRequest` (400) when a trusted proxy's header does not name the
/// client: never a fallback to the peer.
pub fn client_ip(req: &HttpRequest, verifier: &Verifier) -> Result<IpAddr, VerifyError> {
    let peer = req
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    let config = verifier.config();
    let lines = forwarded_lines(req, config.forwarded_header);
    crate::domain::cidr::client_ip(
        peer,
        config.forwarded_header,
        &lines,
        &config.trusted_proxies,
    )
    .map_err(|e| VerifyError::InvalidRequest(e.to_string()))
}

/// A request whose bearer token passed every check, including the token's
/// IP allow-list. Needs `web::Data<Verifier>` in the app.
#[derive(Debug, Clone)]
pub struct Authenticated(pub VerifiedToken);

impl FromRequest for Authenticated {
    type Error = VerifyError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim().to_owned());
        let ip = verifier.as_ref().map(|v| client_ip(req, v));
        Box::pin(async move {
            let verifier = verifier
                .ok_or_else(|| VerifyError::Unavailable("no Verifier in the app data".into()))?;
            // `verify` counts its own refusals; these are counted here.
            let counted = |e: VerifyError| {
                verifier.count_refusal(&e);
                e
            };
            // A request whose proxy chain is unreadable is malformed, before
            // any token work.
            let ip = ip.transpose().map_err(counted)?;
            let token = token
                .filter(|t| !t.is_empty())
                .ok_or(VerifyError::Missing)
                .map_err(counted)?;
            let verified = verifier.verify(&token).await?;
            if let Some(ip) = ip {
                verified.check_client_ip(ip).map_err(counted)?;
            }
            Ok(Authenticated(verified))
        })
    }
}
