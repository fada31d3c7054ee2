//! Signing in to the console and out of it.
//!
//! `/console/login` starts an authorization request as `tessera-console`
//! (code + PKCE S256). The browser keeps `state`, the PKCE verifier and the
//! page to return to in a short-lived HttpOnly cookie for the length of the
//! sign-in only; `/console/callback` redeems the code on the server, and
//! the tokens stay there (`service::people::console`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret;

use super::{Chrome, Posted, Refusal, ok, page, see_other};
use crate::crypto::opaque;
use crate::domain::DomainError;
use crate::http::extract::{client_ip, gateway};
use crate::http::oauth::{cookie, session_cookie};
use crate::service::Gateway;
use crate::service::people::clients::CONSOLE;
use crate::service::people::{console, oauth, sessions};

const PENDING_PLAIN: &str = "tessera_console_signin";
const PENDING_SECURE: &str = "__Host-tessera_console_signin";
/// How long a sign-in may take.
const PENDING_TTL_SECS: i64 = 600;
/// The longest path the console returns to.
const MAX_RETURN: usize = 1024;

fn pending_name(gw: &Gateway) -> &'static str {
    if sessions::secure(gw) {
        PENDING_SECURE
    } else {
        PENDING_PLAIN
    }
}

/// Whether `path` is a console page to come back to: a path on this
/// gateway under `/console`, nothing that a browser could read as another
/// host, and printable ASCII only (a request's own path always is; any
/// other byte would make a `Location` that is not a URI).
fn console_path(path: &str) -> bool {
    path.len() <= MAX_RETURN
        && (path == "/console" || path.starts_with("/console/") || path.starts_with("/console?"))
        && !path.contains("//")
        && !path.contains('\\')
        && path.bytes().all(|b| b.is_ascii_graphic())
        && !dot_segment(path)
}

/// Whether the path part has a segment starting with a dot, plain or
/// percent-encoded: a browser resolves `/console/../x` and
/// `/console/%2e%2e/x` to `/x`, out of the console.
fn dot_segment(path: &str) -> bool {
    let p = path.split('?').next().unwrap_or(path).to_ascii_lowercase();
    p.contains("/.") || p.contains("/%2e")
}

/// Where a request that needs a session goes: the console's sign-in,
/// carrying the page to come back to.
pub fn login_location(back: &str) -> String {
    let back = if console_path(back) { back } else { "/console" };
    format!(
        "/console/login?return_to={}",
        url::form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    )
}

/// A page about signing in (refusals, signed out).
#[derive(Template)]
#[template(path = "signin_note.html")]
struct Note {
    chrome: Chrome,
    heading: &'static str,
    message: String,
}

fn note(status: StatusCode, heading: &'static str, message: impl Into<String>) -> HttpResponse {
    page(
        status,
        &Note {
            chrome: Chrome::anonymous(),
            heading,
            message: message.into(),
        },
    )
}

/// `GET /console/login[?return_to=/console/…]`: off to `/oauth/authorize`
/// as the console client. With a session already, the authorization
/// server answers at once; without, it shows its sign-in page (password
/// or any upstream provider).
async fn login(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, Refusal> {
    let gw = gateway(&req)?;
    let back = query
        .iter()
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.as_str())
        .filter(|p| console_path(p))
        .unwrap_or("/console");
    let internal = |e: crate::crypto::random::RandomError| DomainError::Internal(e.to_string());
    let state = opaque::random_value().map_err(internal)?;
    let verifier = opaque::random_value().map_err(internal)?;
    let redirect_uri = format!("{}/console/callback", gw.issuer);
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let location = format!(
        "/oauth/authorize?response_type=code&client_id={CONSOLE}&redirect_uri={}&scope={}&state={}&code_challenge={}&code_challenge_method=S256",
        enc(&redirect_uri),
        enc("openid profile email"),
        state.expose_secret(),
        opaque::pkce_s256(verifier.expose_secret()),
    );
    let value = format!(
        "{}.{}.{}",
        state.expose_secret(),
        verifier.expose_secret(),
        URL_SAFE_NO_PAD.encode(back.as_bytes())
    );
    let mut res = see_other(&location);
    let c = cookie(&gw, pending_name(&gw), value, Some(PENDING_TTL_SECS));
    let _ = res.add_cookie(&c);
    Ok(res)
}

/// The pending sign-in the browser holds: state, verifier, return path.
fn pending(gw: &Gateway, req: &HttpRequest) -> Option<(String, String, String)> {
    let c = req.cookie(pending_name(gw))?;
    let mut parts = c.value().splitn(3, '.');
    let state = parts.next()?.to_owned();
    let verifier = parts.next()?.to_owned();
    let back = URL_SAFE_NO_PAD
        .decode(parts.next()?)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|p| console_path(p))?;
    (state.len() == 43 && opaque::valid_verifier(&verifier)).then_some((state, verifier, back))
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `GET /console/callback`: the authorization server's answer.
async fn callback(
    req: HttpRequest,
    query: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, Refusal> {
    let gw = gateway(&req)?;
    let ip = client_ip(&req)?;
    let again = "Start again from the console's sign-in.";
    let Some((state, verifier, back)) = pending(&gw, &req) else {
        return Ok(note(
            StatusCode::BAD_REQUEST,
            "Sign-in not completed",
            format!("This browser did not start this sign-in, or it took too long. {again}"),
        ));
    };
    let sent_state = param(&query, "state").unwrap_or("");
    if !opaque::same(sent_state, &state) {
        return Ok(note(
            StatusCode::BAD_REQUEST,
            "Sign-in not completed",
            format!("The answer does not belong to this browser's sign-in. {again}"),
        ));
    }
    if let Some(error) = param(&query, "error") {
        let said = param(&query, "error_description").unwrap_or(error);
        return Ok(note(
            StatusCode::BAD_REQUEST,
            "Sign-in not completed",
            format!("The sign-in was refused: {said}. {again}"),
        ));
    }
    let code = param(&query, "code").unwrap_or("");
    let live = match session_cookie(&gw, &req) {
        Some(c) => sessions::current(&gw, &c).await?,
        None => None,
    };
    let Some((session, _)) = live else {
        return Ok(note(
            StatusCode::BAD_REQUEST,
            "Sign-in not completed",
            format!("This browser is not signed in. {again}"),
        ));
    };
    // The same answer loaded twice at once: the first load completes the
    // sign-in; redeeming again would be a replay, which ends the session.
    // The live session is all a console page needs, so this one goes on.
    if gw.console_tokens.first_redemption(code) {
        match console::complete_sign_in(&gw, &session, code, &verifier, ip).await {
            Ok(_) => {}
            Err(DomainError::InvalidGrant(m)) => {
                return Ok(note(
                    StatusCode::BAD_REQUEST,
                    "Sign-in not completed",
                    format!("{m}. {again}"),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut res = see_other(&back);
    let mut gone = cookie(&gw, pending_name(&gw), String::new(), Some(0));
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    Ok(res)
}

/// `POST /console/logout`: ends the session (its tokens are revoked here
/// and at every verifier) and forgets the console's token for it.
async fn logout(req: HttpRequest, posted: Posted) -> Result<HttpResponse, Refusal> {
    let gw = &posted.ctx.gw;
    let ip = client_ip(&req)?;
    oauth::logout(gw, session_cookie(gw, &req).as_deref(), ip).await?;
    gw.console_tokens.forget(&posted.ctx.session.id);
    let mut res = see_other("/console/signed-out");
    let mut gone = cookie(gw, sessions::cookie_name(gw), String::new(), Some(0));
    gone.make_removal();
    let _ = res.add_cookie(&gone);
    Ok(res)
}

/// `GET /console/signed-out`.
async fn signed_out() -> HttpResponse {
    ok(&Note {
        chrome: Chrome::anonymous(),
        heading: "Signed out",
        message: "You are signed out of the Tessera console.".into(),
    })
}

/// Registers the sign-in routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/login", web::get().to(login))
        .route("/console/callback", web::get().to(callback))
        .route("/console/logout", web::post().to(logout))
        .route("/console/signed-out", web::get().to(signed_out));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_returned_to() {
        for ok in [
            "/console",
            "/console/apps?q=a",
            "/console/apps/app_1",
            "/console/audit?action=app.*&q=/..",
        ] {
            assert!(console_path(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/console",
            "//evil.example/console",
            "/console//evil",
            "/consolex",
            "/console/\\evil",
            "/oauth/authorize",
            "/console/\nx",
            "/console/\u{e9}t\u{e9}",
            "/console/a b",
            "/console/../oauth/authorize",
            "/console/%2E%2e/api/v1/me",
            "/console/.%2e/x",
            "/console/./x",
            "/console/..",
        ] {
            assert!(!console_path(bad), "{bad}");
        }
        assert_eq!(
            login_location("//evil"),
            "/console/login?return_to=%2Fconsole"
        );
    }
}
