//! Single sign-on through upstream providers (docs/api.md, "Single sign-on"): `GET
//! /sso/{name}/login` sends the browser to the provider, `GET
//! /sso/{name}/callback` takes its answer. Both answer browsers, so every
//! refusal is an HTML page (never JSON).
//!
//! The browser that starts a sign-on gets a short-lived cookie whose hash
//! is stored with the attempt; the callback must bring it back, so a
//! `state` obtained by someone else cannot be completed in another
//! browser (login CSRF).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};

use super::extract::{client_ip, gateway};
use super::oauth::{cookie, pages, see_other, session_cookie};
use crate::service::Gateway;
use crate::service::people::sessions;
use crate::service::sso::flow::{self, Callback, Refused, Requester};

const BROWSER_PLAIN: &str = "tessera_sso";
const BROWSER_SECURE: &str = "__Host-tessera_sso";

fn browser_cookie_name(gw: &Gateway) -> &'static str {
    if sessions::secure(gw) {
        BROWSER_SECURE
    } else {
        BROWSER_PLAIN
    }
}

fn browser_value(gw: &Gateway, req: &HttpRequest) -> Option<String> {
    req.cookie(browser_cookie_name(gw))
        .map(|c| c.value().to_owned())
        .filter(|v| flow::valid_browser_value(v))
}

fn refusal_page(r: &Refused) -> HttpResponse {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    pages::respond(
        status,
        "Sign-in refused",
        &pages::sso_refused(&r.message()),
        None,
    )
}

/// Starts a sign-on at `idp` and answers with the redirect to it (or the
/// page refusing it). `return_to` must be a path on this gateway.
pub async fn start_response(
    gw: &Gateway,
    req: &HttpRequest,
    idp: &str,
    return_to: Option<&str>,
) -> HttpResponse {
    let browser = browser_value(gw, req);
    match flow::start(gw, idp, browser.as_deref(), return_to).await {
        Ok(s) => {
            let mut res = HttpResponse::Found()
                .insert_header((header::LOCATION, s.location))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
            let c = cookie(
                gw,
                browser_cookie_name(gw),
                s.browser,
                Some(flow::ATTEMPT_TTL_SECS),
            );
            let _ = res.add_cookie(&c);
            res
        }
        Err(r) => {
            if let Ok(ip) = client_ip(req) {
                flow::refused(gw, idp, "-", &r, ip).await;
            }
            refusal_page(&r)
        }
    }
}

fn one_param(pairs: &[(String, String)], name: &str) -> Result<Option<String>, ()> {
    let mut found = pairs.iter().filter(|(k, _)| k == name);
    let first = found.next().map(|(_, v)| v.clone());
    if found.next().is_some() {
        return Err(());
    }
    Ok(first)
}

/// `GET /sso/{name}/login[?return_to=/path]`: 302 to the provider.
pub async fn login(
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, super::ApiError> {
    let gw = gateway(&req)?;
    let Ok(return_to) = one_param(&query, "return_to") else {
        return Ok(refusal_page(&Refused::BadState));
    };
    Ok(start_response(&gw, &req, &name, return_to.as_deref()).await)
}

/// `GET /sso/{name}/callback`: the provider's answer. On success the
/// browser gets its session cookie and goes where it came from (the
/// pending authorization request), or sees a "signed in" page.
pub async fn callback(
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, super::ApiError> {
    let gw = gateway(&req)?;
    let ip = client_ip(&req)?;
    let get = |k: &str| one_param(&query, k);
    let (Ok(code), Ok(state), Ok(error)) = (get("code"), get("state"), get("error")) else {
        let r = Refused::BadState;
        flow::refused(&gw, &name, "-", &r, ip).await;
        return Ok(refusal_page(&r));
    };
    let browser = browser_value(&gw, &req);
    let old = session_cookie(&gw, &req);
    let ua: String = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let done = flow::finish(
        &gw,
        &name,
        Callback { code, state, error },
        Requester {
            browser: browser.as_deref(),
            old_session: old.as_deref(),
            ip,
            user_agent: &ua,
        },
    )
    .await;
    let f = match done {
        Ok(f) => f,
        Err(r) => return Ok(refusal_page(&r)),
    };
    let mut res = match f.return_to.as_deref() {
        Some(to) => see_other(to),
        None => pages::respond(
            StatusCode::OK,
            "Signed in",
            &pages::signed_in(&f.user.email),
            None,
        ),
    };
    let c = cookie(
        &gw,
        sessions::cookie_name(&gw),
        secrecy::ExposeSecret::expose_secret(&f.cookie).to_owned(),
        Some(i64::try_from(gw.policy.people.session_absolute).unwrap_or(43_200)),
    );
    let _ = res.add_cookie(&c);
    Ok(res)
}
