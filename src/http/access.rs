//! The one middleware every request passes: a request id (carried to every
//! line logged while serving the request), the request deadline, the
//! request metrics and the access log line.
//!
//! - **Request id.** `X-Request-Id` from the client is kept when it is 1 to
//!   128 characters of `[A-Za-z0-9._:-]` (what proxies and tracing systems
//!   generate), else a fresh random one replaces it. It is echoed on every
//!   response, errors and timeouts included.
//! - **Span.** Every line logged while serving the request carries the id
//!   as a span `request{request_id=…}` (see `telemetry`: the id rides in a
//!   task-local, so no tracing span is built per request).
//! - **Access log.** One line per request at INFO, target `tessera::access`:
//!   `request_id`, `method`, `route` (the matched pattern, or `unmatched`),
//!   `path` (never the query string; escaped to printable ASCII),
//!   `status`, `duration_ms`, `peer` (the client address as the gateway
//!   resolves it behind trusted proxies, else the socket peer). Nothing of
//!   the headers, cookies, query or body.
//! - **Metrics.** `tessera_http_request_duration_seconds{route,method,status}`
//!   and `tessera_http_responses_total{class}`.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{Error, web};
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::service::Gateway;
use crate::telemetry::RequestId;

/// The request id header, read and echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest path logged; the rest is cut (a path is client input).
const MAX_LOGGED_PATH: usize = 512;

/// The client's id when it is plain (1 to 128 characters of
/// `[A-Za-z0-9._:-]`, the rule of [`RequestId::new`], so it can be logged
/// and echoed as is), else a fresh one: 22 characters of base64url over 64
/// bits drawn at start and a 64-bit counter. Ids only need to be unique
/// (per process by the counter, across processes by the random half), not
/// secret, so no random bytes are drawn per request. Returned as the
/// header to echo and as the id the log lines carry.
fn request_id(req: &ServiceRequest) -> (HeaderValue, Option<RequestId>) {
    use base64::Engine;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<[u8; 8]> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    if let Some(v) = req.headers().get(&REQUEST_ID)
        && let Some(rid) = RequestId::new(v.as_bytes())
    {
        return (v.clone(), Some(rid));
    }
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        // A failed draw leaves a fixed prefix: ids stay unique per process.
        let _ = crate::crypto::random::fill(&mut b);
        b
    });
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(prefix);
    raw[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    let mut out = [0u8; 22];
    let out: &[u8] =
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_slice(raw, &mut out) {
            Ok(22) => &out,
            _ => b"unavailable",
        };
    let header =
        HeaderValue::from_bytes(out).unwrap_or_else(|_| HeaderValue::from_static("unavailable"));
    (header, RequestId::new(out))
}

/// The matched route's pattern (`unmatched` when none). A path that is
/// itself a route's pattern (every fixed route: `/api/v1/token`) is
/// remembered per worker thread, so the hot paths skip the second walk of
/// the route table (regex matches for the parameterised routes). Only
/// patterns are remembered, so the table is bounded by the route count
/// whatever paths clients send.
fn route_label(req: &ServiceRequest) -> Rc<str> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    thread_local! {
        static FIXED: RefCell<HashMap<Box<str>, Rc<str>>> = RefCell::new(HashMap::new());
    }
    let path = req.path();
    if let Some(hit) = FIXED.with(|f| f.borrow().get(path).cloned()) {
        return hit;
    }
    match req.match_pattern() {
        Some(pattern) if pattern == path => {
            let label: Rc<str> = Rc::from(pattern);
            FIXED.with(|f| {
                f.borrow_mut().insert(Box::from(path), label.clone());
            });
            label
        }
        Some(pattern) => Rc::from(pattern),
        None => Rc::from("unmatched"),
    }
}

/// A method as a label: the standard ones by name, anything else `other`
/// (a client may invent methods; labels must stay few).
fn method_label(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `path` as the access line writes it: cut to at most [`MAX_LOGGED_PATH`]
/// bytes on a character boundary, and every byte that is not printable
/// ASCII written `%XX`. A path is client input: a raw non-ASCII space or a
/// control character could otherwise make one pretty line read as two, or
/// forge a `status=` after the real one.
fn logged_path(path: &str) -> std::borrow::Cow<'_, str> {
    let mut end = path.len().min(MAX_LOGGED_PATH);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    let cut = path.get(..end).unwrap_or("");
    if cut.bytes().all(|b| b.is_ascii_graphic()) {
        return std::borrow::Cow::Borrowed(cut);
    }
    use std::fmt::Write as _;
    let mut out = String::with_capacity(cut.len() * 3);
    for b in cut.bytes() {
        if b.is_ascii_graphic() {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `fut`'s output, or `Elapsed` at `deadline`. A request done at its first
/// poll (the warm exchange on the embedded store) never builds tokio's
/// timer entry, whose drop takes the timer driver's lock even when it was
/// never registered.
async fn within<F: Future>(
    deadline: tokio::time::Instant,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => tokio::time::timeout_at(deadline, fut).await,
    }
}

/// The middleware: `App::new().wrap(access::Observe::new(request_timeout))`.
#[derive(Debug, Clone, Copy)]
pub struct Observe {
    timeout: Duration,
}

impl Observe {
    /// Requests taking longer than `timeout` (body included) get 408.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S, B> Transform<S, ServiceRequest> for Observe
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type InitError = ();
    type Transform = ObserveService<S>;
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ObserveService {
            service: Rc::new(service),
            timeout: self.timeout,
        }))
    }
}

/// The service [`Observe`] wraps around the application.
pub struct ObserveService<S> {
    service: Rc<S>,
    timeout: Duration,
}

/// What the access line and the metrics need, read before the request is
/// handed on (the request cannot be kept: actix needs it unshared).
struct Seen {
    method: &'static str,
    route: Rc<str>,
    /// Only when the access line is logged.
    logged: Option<(String, String)>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<S, B> Service<ServiceRequest> for ObserveService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let (id, rid) = request_id(&req);
        let gw = req.app_data::<web::Data<Gateway>>().cloned();
        let metrics_on = gw.as_ref().is_some_and(|g| g.metrics.enabled());
        let log_on = tracing::enabled!(target: "tessera::access", tracing::Level::INFO);
        // Per request: read only what is used.
        let seen = (metrics_on || log_on).then(|| Seen {
            method: method_label(req.method()),
            route: route_label(&req),
            logged: log_on.then(|| {
                let peer = super::extract::client_ip(req.request())
                    .ok()
                    .or_else(|| req.peer_addr().map(|a| a.ip()))
                    .map_or_else(String::new, |ip| ip.to_string());
                (logged_path(req.path()).into_owned(), peer)
            }),
        });
        // Every line of the request carries its id, whatever the filter
        // (see `telemetry`: a task-local, not a span built per request).
        let fut = match rid {
            Some(rid) => crate::telemetry::in_request_sync(rid, || self.service.call(req)),
            None => self.service.call(req),
        };
        // A deadline over the whole request, body included: a client
        // trickling its body cannot hold a connection (and a file
        // descriptor) for ever. The request is gone by then, so the 408
        // travels as an error carrying its response.
        let deadline = tokio::time::Instant::from_std(started) + self.timeout;
        let served = within(deadline, fut);
        let served = async move {
            match rid {
                Some(rid) => crate::telemetry::in_request(rid, served).await,
                None => served.await,
            }
        };
        Box::pin(
            // Outside the span: the access line names the id itself, and a
            // JSON line without the span list is cheaper to write.
            async move {
                let mut outcome = match served.await {
                    Ok(Ok(mut res)) => {
                        res.headers_mut().insert(REQUEST_ID, id.clone());
                        Ok(res)
                    }
                    Ok(Err(e)) => {
                        let mut res = e.error_response();
                        res.headers_mut().insert(REQUEST_ID, id.clone());
                        Err((res.status(), e.to_string(), res))
                    }
                    Err(_) => {
                        let mut res = super::error::request_timeout();
                        res.headers_mut().insert(REQUEST_ID, id.clone());
                        Err((res.status(), "request timeout".to_owned(), res))
                    }
                };
                let status = match &outcome {
                    Ok(res) => res.status(),
                    Err((status, _, _)) => *status,
                };
                // A body refused as too large was never read, so the
                // connection cannot carry another request: say so, or a
                // client reusing it races the close.
                if status == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
                    let close = actix_web::http::ConnectionType::Close;
                    match &mut outcome {
                        Ok(res) => res.response_mut().head_mut().set_connection_type(close),
                        Err((_, _, res)) => res.head_mut().set_connection_type(close),
                    }
                }
                if let Some(seen) = seen {
                    let elapsed = started.elapsed();
                    if let Some(gw) = &gw {
                        gw.metrics
                            .http(&seen.route, seen.method, status.as_u16(), elapsed);
                    }
                    if let Some((path, peer)) = seen.logged {
                        let duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
                        tracing::info!(
                            target: "tessera::access",
                            request_id = id.to_str().unwrap_or(""),
                            method = seen.method,
                            route = %seen.route,
                            path = %path,
                            status = status.as_u16(),
                            duration_ms,
                            peer = %peer,
                            "request"
                        );
                    }
                }
                outcome.map_err(|(_, why, res)| {
                    actix_web::error::InternalError::from_response(why, res).into()
                })
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a client's id is kept (the rule is `RequestId::new`'s).
    fn valid_request_id(id: &[u8]) -> bool {
        RequestId::new(id).is_some()
    }

    #[test]
    fn request_ids_are_kept_only_when_plain() {
        assert!(valid_request_id(b"abc-123_x.y:z"));
        assert!(valid_request_id(&[b'a'; 128]));
        assert!(!valid_request_id(&[b'a'; 129]));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"a\"b"));
        assert!(!valid_request_id(b"a b"));
        assert!(!valid_request_id("é".as_bytes()));
    }

    #[test]
    fn long_paths_are_cut_on_a_character_boundary() {
        let p = format!("/{}", "é".repeat(400));
        let cut = logged_path(&p);
        // Cut before escaping: at most 512 bytes of the path, each é %C3%A9.
        assert_eq!(cut.len(), 1 + 255 * 6, "{cut}");
        assert!(cut.starts_with("/%C3%A9%C3%A9"));
        assert_eq!(logged_path("/healthz"), "/healthz");
    }

    #[test]
    fn paths_are_logged_as_printable_ascii() {
        assert_eq!(
            logged_path("/api/v1/apps/x\u{2003}status=200"),
            "/api/v1/apps/x%E2%80%83status=200"
        );
        assert_eq!(logged_path("/a b\tc\nd"), "/a%20b%09c%0Ad");
        assert_eq!(logged_path("/a%20b"), "/a%20b");
    }
}
