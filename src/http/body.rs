//! Request bodies read whole, into a buffer of their own size.
//!
//! actix's `Json` and `Form` extractors start every body with an 8 KiB
//! buffer (and `Form` boxes a future besides). On the token endpoints, whose
//! bodies are a hundred bytes, that allocation made glibc consolidate its
//! free lists on every request (seen in the warm path's profile). Here a
//! body that arrives in one chunk, as small ones do, is used as it came.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::StreamExt;
use secrecy::SecretString;
use std::future::Future;
use std::pin::Pin;

use super::OAuthError;
use super::error::{NOT_A_FORM, NOT_FORM_TYPE};
use super::token::OAuthParams;

/// The largest request body the gateway reads, in bytes (`max_body`),
/// registered with the routes.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// The one form type the `/oauth/*` endpoints read.
const FORM_TYPE: &str = "application/x-www-form-urlencoded";

/// The limit when none is registered (a handler run on its own).
const DEFAULT_LIMIT: usize = 32 * 1024;

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than the limit, as declared or as sent: the limit.
    TooLarge(usize),
    /// The connection failed or the body's framing was wrong.
    Unreadable,
}

/// Starts reading the body of `req`: checked against the limit before a
/// byte is read when its length is declared, and as it arrives otherwise.
pub fn read(
    req: &HttpRequest,
    payload: &mut Payload,
) -> impl Future<Output = Result<Bytes, BodyError>> + 'static {
    let limit = req.app_data::<BodyLimit>().map_or(DEFAULT_LIMIT, |l| l.0);
    // actix's HTTP/1 decoder has already refused a length that is not a
    // number; whatever else is here is framed by the decoder itself.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut stream = payload.take();
    async move {
        if declared.is_some_and(|n| n > limit) {
            return Err(BodyError::TooLarge(limit));
        }
        let mut whole = Bytes::new();
        let mut joined: Option<Vec<u8>> = None;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
            let so_far = joined.as_ref().map_or(whole.len(), Vec::len);
            let total = so_far + chunk.len();
            if total > limit {
                return Err(BodyError::TooLarge(limit));
            }
            match joined.as_mut() {
                Some(buf) => buf.extend_from_slice(&chunk),
                None if whole.is_empty() => whole = chunk,
                None => {
                    // Sized by what arrived, not by the declared length: a
                    // client declaring the limit and trickling bytes must not
                    // hold the limit's worth of memory per connection.
                    let mut buf = Vec::with_capacity((total * 2).min(limit));
                    buf.extend_from_slice(&whole);
                    buf.extend_from_slice(&chunk);
                    joined = Some(buf);
                }
            }
        }
        Ok(joined.map_or(whole, Bytes::from))
    }
}

/// An `application/x-www-form-urlencoded` body, as the `/oauth/*`
/// endpoints read it: [`OAuthForm::params`] keeps the recognised
/// parameters, each value held as a secret. Errors as `error::form_config`
/// gives them: RFC 6749 JSON, 413 over the limit.
pub enum OAuthForm {
    /// A UTF-8 body as it came: decoded by `params`, which copies only the
    /// values it keeps.
    Body(Bytes),
    /// A body in another charset, decoded by actix.
    Pairs(Vec<(String, SecretString)>),
}

impl OAuthForm {
    /// The recognised parameters; a repeated one is refused (RFC 6749 §3.2).
    pub fn params(self) -> Result<OAuthParams, OAuthError> {
        match self {
            Self::Body(body) => OAuthParams::from_body(&body),
            Self::Pairs(pairs) => OAuthParams::new(pairs),
        }
    }
}

impl FromRequest for OAuthForm {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // The type without parameters (what clients send) is UTF-8 and needs
        // no parse of the header.
        let bare = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(FORM_TYPE.as_bytes()));
        let utf8 = bare || req.encoding().is_ok_and(|e| e.name() == "UTF-8");
        if !utf8 {
            // Another charset (or a malformed one): actix's reader decodes
            // or refuses it, with the same errors.
            let form = web::Form::<Vec<(String, SecretString)>>::from_request(req, payload);
            return Box::pin(async move { Ok(OAuthForm::Pairs(form.await?.into_inner())) });
        }
        if !bare && !req.content_type().eq_ignore_ascii_case(FORM_TYPE) {
            return Box::pin(async { Err(OAuthError::invalid_request(NOT_FORM_TYPE).into()) });
        }
        let body = read(req, payload);
        Box::pin(async move {
            let body = body.await.map_err(|e| match e {
                BodyError::TooLarge(limit) => OAuthError::too_large(limit),
                BodyError::Unreadable => not_a_form(),
            })?;
            Ok(OAuthForm::Body(body))
        })
    }
}

fn not_a_form() -> OAuthError {
    OAuthError::invalid_request(NOT_A_FORM)
}
