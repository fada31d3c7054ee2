//! The OpenID provider's browser-facing endpoints: `/oauth/authorize` (the
//! sign-in page and its form), `/oauth/userinfo`, `/oauth/logout`.
//!
//! The sign-in and logout forms carry a CSRF token that must equal a
//! cookie set with the page (double submit), and a form post whose
//! `Origin` is another site is refused: a page elsewhere can neither sign a
//! browser into an attacker's account nor sign it out.

pub mod device;
pub mod pages;

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::extract::{bearer_token, client_ip, gateway};
use crate::crypto::opaque;
use crate::domain::DomainError;
use crate::service::Gateway;
use crate::service::people::oauth::{self, AuthorizeParams, LogoutParams, Refusal};
use crate::service::people::sessions::{self, SignedIn};
use crate::service::people::signin;

const CSRF_PLAIN: &str = "tessera_csrf";
const CSRF_SECURE: &str = "__Host-tessera_csrf";

fn csrf_cookie_name(gw: &Gateway) -> &'static str {
    if sessions::secure(gw) {
        CSRF_SECURE
    } else {
        CSRF_PLAIN
    }
}

/// A cookie as every sign-in cookie is set: path `/`, HttpOnly, SameSite
/// Lax, Secure over https.
pub(crate) fn cookie<'a>(
    gw: &Gateway,
    name: &'a str,
    value: String,
    max_age: Option<i64>,
) -> Cookie<'a> {
    let mut c = Cookie::build(name, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(sessions::secure(gw))
        .finish();
    if let Some(s) = max_age {
        c.set_max_age(CookieDuration::seconds(s));
    }
    c
}

/// The form's CSRF token: the browser's current one, or a new one to set.
fn csrf_token(
    gw: &Gateway,
    req: &HttpRequest,
) -> Result<(String, Option<Cookie<'static>>), DomainError> {
    if let Some(c) = req.cookie(csrf_cookie_name(gw))
        && c.value().len() == 43
        && c.value().bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return Ok((c.value().to_owned(), None));
    }
    let v = opaque::random_value().map_err(|e| DomainError::Internal(e.to_string()))?;
    let v = v.expose_secret().to_owned();
    Ok((v.clone(), Some(cookie(gw, csrf_cookie_name(gw), v, None))))
}

/// The issuer's origin (`scheme://host[:port]`).
pub(crate) fn issuer_origin(gw: &Gateway) -> String {
    url::Url::parse(&gw.issuer)
        .map_or_else(|_| gw.issuer.clone(), |u| u.origin().ascii_serialization())
}

/// A form post is ours when its CSRF field equals the cookie and its
/// `Origin`, when sent, is the issuer's.
fn form_is_ours(gw: &Gateway, req: &HttpRequest, field: Option<&str>) -> bool {
    if let Some(origin) = req.headers().get(header::ORIGIN)
        && origin.as_bytes() != issuer_origin(gw).as_bytes()
    {
        return false;
    }
    match (req.cookie(csrf_cookie_name(gw)), field) {
        (Some(c), Some(f)) => !f.is_empty() && opaque::same(c.value(), f),
        _ => false,
    }
}

/// The session cookie the browser sent.
pub(crate) fn session_cookie(gw: &Gateway, req: &HttpRequest) -> Option<String> {
    req.cookie(sessions::cookie_name(gw))
        .map(|c| c.value().to_owned())
}

/// Parameters of a query or form as pairs; a repeated name is refused
/// (RFC 6749 §3.1).
fn unique(
    pairs: Vec<(String, String)>,
) -> Result<std::collections::HashMap<String, String>, String> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in pairs {
        if out.insert(k.clone(), v).is_some() {
            return Err(format!(
                "The parameter {} appears more than once.",
                crate::domain::error::shown(&k)
            ));
        }
    }
    Ok(out)
}

fn authorize_params(m: &std::collections::HashMap<String, String>) -> AuthorizeParams {
    let g = |k: &str| m.get(k).cloned();
    AuthorizeParams {
        response_type: g("response_type"),
        client_id: g("client_id"),
        redirect_uri: g("redirect_uri"),
        scope: g("scope"),
        state: g("state"),
        nonce: g("nonce"),
        code_challenge: g("code_challenge"),
        code_challenge_method: g("code_challenge_method"),
        prompt: g("prompt"),
        idp: g("idp"),
    }
}

fn param_pairs(p: &AuthorizeParams) -> Vec<(&'static str, String)> {
    p.carried()
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect()
}

/// A posted form's fields, once they are unique and the form is ours;
/// otherwise the page that says why.
fn our_form(
    gw: &Gateway,
    req: &HttpRequest,
    pairs: Vec<(String, String)>,
    what: &str,
) -> Result<std::collections::HashMap<String, String>, HttpResponse> {
    let map = unique(pairs).map_err(|m| error_page(StatusCode::BAD_REQUEST, &m))?;
    if !form_is_ours(gw, req, map.get("csrf").map(String::as_str)) {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            &format!(
                "The {what} form expired or was sent from another site. Go back, reload the page and try again."
            ),
        ));
    }
    Ok(map)
}

/// A logout request's plan, or the page refusing a bad one.
async fn plan_or_page(
    gw: &Gateway,
    p: &LogoutParams,
) -> Result<Result<oauth::LogoutPlan, HttpResponse>, DomainError> {
    match oauth::plan_logout(gw, p).await {
        Ok(plan) => Ok(Ok(plan)),
        Err(DomainError::InvalidRequest(m)) => Ok(Err(error_page(StatusCode::BAD_REQUEST, &m))),
        Err(e) => Err(e),
    }
}

fn error_page(status: StatusCode, message: &str) -> HttpResponse {
    pages::respond(status, "Sign-in error", &pages::error(message), None)
}

/// A 303 to `location`, never cached.
pub(crate) fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

fn origin_of(uri: &str) -> Option<String> {
    url::Url::parse(uri)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}

fn sign_in_page(
    gw: &Gateway,
    req: &HttpRequest,
    a: &oauth::Authorization,
    status: StatusCode,
    email: &str,
    error: Option<&str>,
) -> Result<HttpResponse, DomainError> {
    let (csrf, set) = csrf_token(gw, req)?;
    let pairs = param_pairs(&a.params);
    let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let resume = a.resume_path();
    let idps: Vec<(String, String)> = gw
        .sso
        .all()
        .iter()
        .map(|p| {
            (
                format!(
                    "/sso/{}/login?return_to={}",
                    p.name(),
                    url::form_urlencoded::byte_serialize(resume.as_bytes()).collect::<String>()
                ),
                p.display_name().to_owned(),
            )
        })
        .collect();
    let body = pages::sign_in(&pages::hidden(&refs), &csrf, email, error, &idps);
    let mut res = pages::respond(
        status,
        "Sign in",
        &body,
        origin_of(&a.redirect_uri).as_deref(),
    );
    if let Some(c) = set {
        let _ = res.add_cookie(&c);
    }
    Ok(res)
}

fn refusal(r: Refusal) -> HttpResponse {
    match r {
        Refusal::Page(m) => error_page(StatusCode::BAD_REQUEST, &m),
        Refusal::Redirect(loc) => see_other(&loc),
    }
}

/// `GET /oauth/authorize`: checks the request, then either issues a code at
/// once (a live session, no `prompt=login`) or shows the sign-in page.
pub async fn authorize(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, super::ApiError> {
    let gw = gateway(&req)?;
    let map = match unique(query.into_inner()) {
        Ok(m) => m,
        Err(m) => return Ok(error_page(StatusCode::BAD_REQUEST, &m)),
    };
    let a = match oauth::validate(&gw, &authorize_params(&map)).await {
        Ok(a) => a,
        Err(r) => return Ok(refusal(r)),
    };
    if !a.forces_login()
        && let Some(c) = session_cookie(&gw, &req)
        && let Some((session, _)) = sessions::current(&gw, &c).await?
    {
        let loc = oauth::issue_code(&gw, &a, &session).await?;
        return Ok(see_other(&loc));
    }
    if a.no_prompt() {
        return Ok(see_other(&a.error(
            &gw,
            "login_required",
            "the user is not signed in",
        )));
    }
    if let Some(idp) = a.idp() {
        // Straight to the provider; the request resumes after the callback.
        return Ok(crate::http::sso::start_response(&gw, &req, idp, Some(&a.resume_path())).await);
    }
    Ok(sign_in_page(&gw, &req, &a, StatusCode::OK, "", None)?)
}

/// `POST /oauth/authorize`: the sign-in form.
pub async fn sign_in(
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, super::ApiError> {
    let gw = gateway(&req)?;
    let map = match our_form(&gw, &req, form.into_inner(), "sign-in") {
        Ok(m) => m,
        Err(page) => return Ok(page),
    };
    let a = match oauth::validate(&gw, &authorize_params(&map)).await {
        Ok(a) => a,
        Err(r) => return Ok(refusal(r)),
    };
    let email = map.get("email").cloned().unwrap_or_default();
    let password = SecretString::from(map.get("password").cloned().unwrap_or_default());
    let ip = client_ip(&req)?;
    let user = match signin::check_password(&gw, &email, &password, ip).await {
        Ok(u) => u,
        Err(DomainError::InvalidGrant(m)) => {
            return Ok(sign_in_page(
                &gw,
                &req,
                &a,
                StatusCode::UNAUTHORIZED,
                &email,
                Some(&m),
            )?);
        }
        Err(DomainError::RateLimited { retry_after }) => {
            let mut res = sign_in_page(
                &gw,
                &req,
                &a,
                StatusCode::TOO_MANY_REQUESTS,
                &email,
                Some("Too many failed sign-ins from here. Wait a few minutes and try again."),
            )?;
            if let Ok(v) = header::HeaderValue::from_str(&retry_after.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return Ok(res);
        }
        Err(e) => return Err(e.into()),
    };
    let ua: String = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let old = session_cookie(&gw, &req);
    let new = sessions::start(
        &gw,
        &user.user,
        SignedIn {
            client_id: &a.client.id,
            amr: "pwd",
            idp: None,
            ip,
            user_agent: &ua,
        },
        old.as_deref(),
    )
    .await?;
    signin::audit(
        &gw,
        &user.user.id,
        "signin",
        ip,
        json!({"client": a.client.id, "session": new.session.id, "method": "password"}),
    )
    .await;
    let loc = oauth::issue_code(&gw, &a, &new.session).await?;
    let mut res = see_other(&loc);
    let c = cookie(
        &gw,
        sessions::cookie_name(&gw),
        new.cookie.expose_secret().to_owned(),
        Some(i64::try_from(gw.policy.people.session_absolute).unwrap_or(43_200)),
    );
    let _ = res.add_cookie(&c);
    Ok(res)
}

/// RFC 6750 §3.1 refusal for userinfo.
fn bearer_refusal(e: DomainError) -> HttpResponse {
    match e {
        DomainError::InsufficientPermissions(m) => {
            super::OAuthError::insufficient_scope(m).into_response()
        }
        DomainError::Unavailable | DomainError::Internal(_) => {
            super::OAuthError::from(e).into_response()
        }
        _ => HttpResponse::Unauthorized()
            .insert_header((
                header::WWW_AUTHENTICATE,
                r#"Bearer realm="tessera", error="invalid_token""#,
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(json!({"error": "invalid_token", "error_description": "The access token is invalid, expired or revoked"})),
    }
}

trait IntoResponse {
    fn into_response(self) -> HttpResponse;
}

impl IntoResponse for super::OAuthError {
    fn into_response(self) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

/// `GET|POST /oauth/userinfo` (OIDC Core §5.3).
pub async fn userinfo(req: HttpRequest) -> HttpResponse {
    let gw = match gateway(&req) {
        Ok(g) => g,
        Err(e) => return bearer_refusal(e),
    };
    let Some(token) = bearer_token(&req).filter(|t| t.len() <= 8192) else {
        return HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, r#"Bearer realm="tessera""#))
            .finish();
    };
    match oauth::userinfo(&gw, token).await {
        Ok(v) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(v),
        Err(e) => bearer_refusal(e),
    }
}

fn logout_params(m: &std::collections::HashMap<String, String>) -> LogoutParams {
    let g = |k: &str| m.get(k).cloned().filter(|v| !v.is_empty());
    LogoutParams {
        id_token_hint: g("id_token_hint"),
        post_logout_redirect_uri: g("post_logout_redirect_uri"),
        client_id: g("client_id"),
        state: g("state"),
    }
}

fn after_logout(gw: &Gateway, redirect: Option<&str>) -> HttpResponse {
    let mut res = match redirect {
        Some(loc) => see_other(loc),
        None => pages::respond(StatusCode::OK, "Signed out", &pages::signed_out(), None),
    };
    let mut gone = cookie(gw, sessions::cookie_name(gw), String::new(), Some(0));
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    res
}

/// `GET /oauth/logout`: RP-initiated logout. With a valid `id_token_hint`
/// for the signed-in person it signs out at once; otherwise it asks first.
pub async fn logout_get(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, super::ApiError> {
    let gw = gateway(&req)?;
    let map = match unique(query.into_inner()) {
        Ok(m) => m,
        Err(m) => return Ok(error_page(StatusCode::BAD_REQUEST, &m)),
    };
    let p = logout_params(&map);
    let plan = match plan_or_page(&gw, &p).await? {
        Ok(plan) => plan,
        Err(page) => return Ok(page),
    };
    let cookie_value = session_cookie(&gw, &req);
    let live = match &cookie_value {
        Some(c) => sessions::current_any(&gw, c).await?,
        None => None,
    };
    let Some((session, _)) = live else {
        return Ok(after_logout(&gw, plan.redirect.as_deref()));
    };
    if plan.confirmed && plan.hint_sub.as_deref() == Some(session.user_id.as_str()) {
        oauth::logout(&gw, cookie_value.as_deref(), client_ip(&req)?).await?;
        return Ok(after_logout(&gw, plan.redirect.as_deref()));
    }
    let (csrf, set) = csrf_token(&gw, &req)?;
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for (k, v) in [
        ("id_token_hint", &p.id_token_hint),
        ("post_logout_redirect_uri", &p.post_logout_redirect_uri),
        ("client_id", &p.client_id),
        ("state", &p.state),
    ] {
        if let Some(v) = v {
            pairs.push((k, v));
        }
    }
    let form_to = plan.redirect.as_deref().and_then(origin_of);
    let mut res = pages::respond(
        StatusCode::OK,
        "Sign out",
        &pages::confirm_logout(&pages::hidden(&pairs), &csrf),
        form_to.as_deref(),
    );
    if let Some(c) = set {
        let _ = res.add_cookie(&c);
    }
    Ok(res)
}

/// `POST /oauth/logout`: the confirmation form (CSRF-checked).
pub async fn logout_post(
    req: HttpRequest,
    form: web::Form<Vec<(String, String)>>,
) -> Result<HttpResponse, super::ApiError> {
    let gw = gateway(&req)?;
    let map = match our_form(&gw, &req, form.into_inner(), "sign-out") {
        Ok(m) => m,
        Err(page) => return Ok(page),
    };
    let plan = match plan_or_page(&gw, &logout_params(&map)).await? {
        Ok(plan) => plan,
        Err(page) => return Ok(page),
    };
    oauth::logout(&gw, session_cookie(&gw, &req).as_deref(), client_ip(&req)?).await?;
    Ok(after_logout(&gw, plan.redirect.as_deref()))
}

/// `GET /oauth/assets/tessera.css`.
pub async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(pages::STYLESHEET)
}
