//! The console (docs/api.md, "The console"): server-rendered pages at `/console` for
//! operators, from askama templates under `templates/`, with every asset
//! embedded in the binary.
//!
//! Three rules hold for every page, in one place each:
//! - who: [`Ctx`] accepts only a live session of docs/api.md, "People" and acts through
//!   the console's server-held token (`service::people::console`), so each
//!   page calls the same services, with the same permission checks, as the
//!   API;
//! - forged posts: [`Posted`] is the only way a handler gets a form, and it
//!   checks the `Origin` and the per-session CSRF token first;
//! - headers: [`page`] sends a strict Content-Security-Policy (no inline
//!   script or style, nothing from another origin), no framing, no caching.

pub mod apps;
pub mod audit;
pub mod auth;
pub mod forms;
pub mod people;
pub mod system;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, web};
use askama::Template;

use super::extract::{client_ip, gateway};
use super::oauth::{issuer_origin, session_cookie};
use crate::domain::DomainError;
use crate::domain::permission::builtin::{
    API_KEYS_MANAGE, API_KEYS_READ, AUDIT_READ, ROLES_MANAGE, USERS_MANAGE,
};
use crate::domain::session::Session;
use crate::service::Gateway;
use crate::service::auth::Principal;
use crate::service::people::{console, sessions};
use crate::store::StoredUser;

pub use forms::FormData;

/// The label the CSRF token is derived under (from the session cookie's
/// secret): per session, unguessable without the cookie, nothing stored.
const CSRF_LABEL: &str = "tessera-console-csrf-v1";

/// The Content-Security-Policy of every console page: scripts and styles
/// from this origin only (no inline), no plugins, forms post back here,
/// never framed.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One entry of the navigation.
pub struct NavItem {
    /// Where it goes.
    pub href: &'static str,
    /// Its label.
    pub label: &'static str,
    /// Whether it is the section shown.
    pub current: bool,
}

/// What the layout needs on every page.
pub struct Chrome {
    /// Whether someone is signed in (the sign-out form and navigation show).
    pub signed_in: bool,
    /// The person's email.
    pub email: String,
    /// The form's CSRF token.
    pub csrf: String,
    /// The sections this person may open.
    pub nav: Vec<NavItem>,
}

impl Chrome {
    /// The layout of a page shown to nobody in particular (errors before
    /// sign-in, signed out).
    pub fn anonymous() -> Self {
        Self {
            signed_in: false,
            email: String::new(),
            csrf: String::new(),
            nav: Vec::new(),
        }
    }
}

/// The sections, the permission each needs (`None`: every signed-in
/// person; signing keys are public, the JWKS publishes them).
const SECTIONS: &[(&str, &str, Option<&str>)] = &[
    ("/console/apps", "Applications", Some(API_KEYS_READ)),
    ("/console/roles", "Roles", Some(ROLES_MANAGE)),
    ("/console/users", "Users", Some(USERS_MANAGE)),
    ("/console/audit", "Audit log", Some(AUDIT_READ)),
    ("/console/keys", "Signing keys", None),
    ("/console/idps", "Identity providers", Some(USERS_MANAGE)),
];

/// A signed-in console request: the person, the caller they act as, and
/// the CSRF token their forms must carry.
pub struct Ctx {
    /// The gateway.
    pub gw: web::Data<Gateway>,
    /// Who acts, with their permissions now.
    pub principal: Principal,
    /// The person as stored.
    pub user: StoredUser,
    /// Their session.
    pub session: Session,
    /// The CSRF token of this session.
    pub csrf: String,
    /// The request's path and query (to come back after a refusal).
    pub here: String,
}

impl Ctx {
    /// Whether the person holds `permission` now (what is not held is not
    /// offered; the services refuse it anyway).
    pub fn may(&self, permission: &str) -> bool {
        self.principal.require(permission).is_ok()
    }

    /// The layout data, with `section` (a `/console/…` path) marked current.
    pub fn chrome(&self, section: &str) -> Chrome {
        let nav = SECTIONS
            .iter()
            // Whoever may manage keys may read them (as the services say).
            .filter(|(_, _, p)| {
                p.is_none_or(|p| self.may(p) || (p == API_KEYS_READ && self.may(API_KEYS_MANAGE)))
            })
            .map(|(href, label, _)| NavItem {
                href,
                label,
                current: *href == section,
            })
            .collect();
        Chrome {
            signed_in: true,
            email: self.user.user.email.clone(),
            csrf: self.csrf.clone(),
            nav,
        }
    }
}

/// Why a console request is not served as asked.
#[derive(Debug)]
pub enum Refusal {
    /// No live session: sign in, then come back to this path.
    SignIn(String),
    /// A post without this session's CSRF token, or from another origin.
    Forged,
    /// A service refused: the API's status, shown as a page.
    Domain(DomainError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SignIn(_) => f.write_str("sign-in needed"),
            Self::Forged => f.write_str("forged form"),
            Self::Domain(e) => write!(f, "{e}"),
        }
    }
}

impl From<DomainError> for Refusal {
    fn from(e: DomainError) -> Self {
        Self::Domain(e)
    }
}

impl From<super::ApiError> for Refusal {
    fn from(e: super::ApiError) -> Self {
        Self::Domain(e.0)
    }
}

/// The page explaining an error.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    heading: String,
    message: String,
}

impl ResponseError for Refusal {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::SignIn(_) => StatusCode::SEE_OTHER,
            Self::Forged => StatusCode::FORBIDDEN,
            Self::Domain(e) => super::error::parts_of(e).0,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (status, heading, message) = match self {
            // With the console's headers, as every console answer.
            Self::SignIn(back) => return see_other(&auth::login_location(back)),
            Self::Forged => (
                StatusCode::FORBIDDEN,
                "This form was refused".to_owned(),
                "It did not come from this console page, or the page is out of date. Go back, reload the page and try again.".to_owned(),
            ),
            Self::Domain(e) => {
                if let DomainError::Internal(detail) = e {
                    tracing::error!(%detail, "internal error in the console");
                }
                let (status, _, message) = super::error::parts_of(e);
                let heading = match status {
                    StatusCode::FORBIDDEN => "Not allowed",
                    StatusCode::NOT_FOUND => "Not found",
                    s if s.is_server_error() => "Something went wrong",
                    _ => "This request cannot be completed",
                };
                (status, heading.to_owned(), message)
            }
        };
        page(
            status,
            &ErrorPage {
                chrome: Chrome::anonymous(),
                heading,
                message,
            },
        )
    }
}

/// The session cookie's secret half, when the browser sent a cookie.
fn cookie_secret(cookie: &str) -> Option<&str> {
    cookie.split_once('.').map(|(_, s)| s)
}

/// The path and query of a request, to return to after signing in.
fn here(req: &HttpRequest) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/console".to_owned(), |p| p.as_str().to_owned())
}

impl FromRequest for Ctx {
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let gw = gateway(req);
        let ip = client_ip(req);
        let page_load = req.method() == actix_web::http::Method::GET;
        let back = if page_load {
            here(req)
        } else {
            "/console".to_owned()
        };
        let cookie = gw.as_ref().ok().and_then(|g| session_cookie(g, req));
        Box::pin(async move {
            let gw = gw?;
            let ip = ip?;
            let Some(cookie) = cookie else {
                return Err(Refusal::SignIn(back));
            };
            let Some((session, user)) = sessions::current(&gw, &cookie).await? else {
                return Err(Refusal::SignIn(back));
            };
            let principal = match console::principal(&gw, &session, &user.user, ip, page_load).await
            {
                Ok(p) => p,
                // Not signed in to the console on this gateway yet, the
                // session ended between the two reads, or the person was
                // disabled: (sign in again) through the console's sign-in.
                Err(DomainError::InvalidToken | DomainError::InvalidGrant(_)) => {
                    return Err(Refusal::SignIn(back));
                }
                Err(e) => return Err(e.into()),
            };
            let csrf = crate::crypto::mac::derive(cookie_secret(&cookie).unwrap_or(""), CSRF_LABEL);
            Ok(Ctx {
                gw,
                principal,
                user,
                session,
                csrf,
                here: back,
            })
        })
    }
}

/// A posted console form, accepted only from this console: the `Origin`
/// (or, without one, the `Referer`) must be the gateway's own, and the
/// `csrf` field must be this session's token. Every console handler that
/// changes anything takes its form through here.
pub struct Posted {
    /// The signed-in request.
    pub ctx: Ctx,
    /// The form's fields (without `csrf`).
    pub form: FormData,
}

/// Whether the request says it was sent by a page of this gateway.
fn same_origin(gw: &Gateway, req: &HttpRequest) -> bool {
    let ours = issuer_origin(gw);
    if let Some(o) = req.headers().get(header::ORIGIN) {
        return o.as_bytes() == ours.as_bytes();
    }
    req.headers()
        .get(header::REFERER)
        .and_then(|r| r.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
        .is_some_and(|u| u.origin().ascii_serialization() == ours)
}

impl FromRequest for Posted {
    type Error = Refusal;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let ctx = Ctx::from_request(req, payload);
        let form = web::Form::<Vec<(String, String)>>::from_request(req, payload);
        let ours = gateway(req).is_ok_and(|g| same_origin(&g, req));
        Box::pin(async move {
            let ctx = ctx.await?;
            if !ours {
                return Err(Refusal::Forged);
            }
            let pairs = form
                .await
                .map_err(|_| {
                    Refusal::Domain(DomainError::InvalidRequest(
                        "the form could not be read".into(),
                    ))
                })?
                .into_inner();
            let form = FormData::new(pairs);
            let sent = form.csrf();
            if sent.is_empty() || !crate::crypto::opaque::same(sent, &ctx.csrf) {
                return Err(Refusal::Forged);
            }
            Ok(Posted { ctx, form })
        })
    }
}

/// Sets the headers every console answer carries.
pub fn headers(res: &mut HttpResponseBuilder) {
    res.insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        // Console pages show what only this person may see: never kept.
        .insert_header((header::CACHE_CONTROL, "no-store"));
}

/// Renders a template as a page with the console's headers.
pub fn page<T: Template>(status: StatusCode, t: &T) -> HttpResponse {
    match t.render() {
        Ok(html) => {
            let mut res = HttpResponseBuilder::new(status);
            headers(&mut res);
            res.content_type("text/html; charset=utf-8").body(html)
        }
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            let mut res = HttpResponseBuilder::new(StatusCode::INTERNAL_SERVER_ERROR);
            headers(&mut res);
            res.content_type("text/plain; charset=utf-8")
                .body("The page could not be shown.")
        }
    }
}

/// A 200 page.
pub fn ok<T: Template>(t: &T) -> HttpResponse {
    page(StatusCode::OK, t)
}

/// 303 to `location` (after a post: reloading never repeats it).
pub fn see_other(location: &str) -> HttpResponse {
    let mut res = HttpResponse::SeeOther();
    headers(&mut res);
    res.insert_header((header::LOCATION, location)).finish()
}

/// The console's home: the sections this person may open.
#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    chrome: Chrome,
    name: String,
}

/// `GET /console`.
async fn home(ctx: Ctx) -> HttpResponse {
    let name = if ctx.user.user.name.is_empty() {
        ctx.user.user.email.clone()
    } else {
        ctx.user.user.name.clone()
    };
    ok(&Home {
        chrome: ctx.chrome("/console"),
        name,
    })
}

const STYLESHEET: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");

/// `GET /console/assets/{name}`: the embedded stylesheet and script.
async fn asset(name: web::Path<String>) -> HttpResponse {
    let (body, kind) = match name.as_str() {
        "console.css" => (STYLESHEET, "text/css; charset=utf-8"),
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

/// Registers the console's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(home))
        .route("/console/", web::get().to(home))
        .route("/console/assets/{name}", web::get().to(asset))
        .configure(auth::routes)
        .configure(apps::routes)
        .configure(people::routes)
        .configure(audit::routes)
        .configure(system::routes);
}
