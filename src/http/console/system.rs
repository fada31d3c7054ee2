//! Signing keys and identity providers, read only (docs/api.md, "The console"), and the
//! console's own 404 and 405 pages.
//!
//! Neither page ever holds a secret: keys are shown by their public
//! members (the JWKS publishes them anyway), providers by their settings
//! without the client secret.

use std::time::Duration;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::{Chrome, Ctx, Refusal, ok, page};
use crate::domain::permission::builtin::USERS_MANAGE;
use crate::service::sso::DiscoveryStatus;

/// One row of the keys table.
struct KeyRow {
    kid: String,
    alg: &'static str,
    /// What the key does now, in words.
    state: String,
    /// Whether it signs anything (shown as such).
    signing: bool,
}

/// `keys.html`.
#[derive(Template)]
#[template(path = "keys.html")]
struct Keys {
    chrome: Chrome,
    keys: Vec<KeyRow>,
}

/// `GET /console/keys`: every signed-in person (the JWKS is public).
async fn keys(ctx: Ctx) -> HttpResponse {
    let ring = &ctx.gw.keys.current();
    let (active, id_token) = (ring.active().kid(), ring.id_token_key().kid());
    let keys = ring
        .keys()
        .iter()
        .map(|k| {
            let (a, i) = (k.kid() == active, k.kid() == id_token);
            let state = match (a, i, ring.state(k.kid())) {
                (true, true, _) => "Active: signs access tokens and ID tokens",
                (true, false, _) => "Active: signs access tokens",
                (false, true, _) => "Active: signs ID tokens",
                (false, false, Some(crate::crypto::keys::KeyState::Next)) => {
                    "Next: published, signs once it is activated"
                }
                (false, false, _) => "Retired: verifies tokens it signed until they expire",
            };
            KeyRow {
                kid: k.kid().to_owned(),
                alg: k.alg().as_str(),
                state: state.to_owned(),
                signing: a || i,
            }
        })
        .collect();
    ok(&Keys {
        chrome: ctx.chrome("/console/keys"),
        keys,
    })
}

/// One provider as shown: its settings without the client secret.
struct IdpView {
    name: String,
    display_name: String,
    issuer: String,
    client_id: String,
    scopes: String,
    groups_claim: String,
    link_by_verified_email: bool,
    create_users: bool,
    allowed_domains: Vec<String>,
    token_exchange: bool,
    /// `(group, "role, role")`.
    role_map: Vec<(String, String)>,
    discovery: String,
    /// Whether discovery is known to work.
    discovered: bool,
}

/// `idps.html`.
#[derive(Template)]
#[template(path = "idps.html")]
struct Idps {
    chrome: Chrome,
    idps: Vec<IdpView>,
}

/// A duration in the largest whole unit, for "… ago".
fn ago(d: Duration) -> String {
    let s = d.as_secs();
    if s < 5 {
        return "moments ago".to_owned();
    }
    let (n, unit) = match s {
        0..60 => (s, "second"),
        60..3600 => (s / 60, "minute"),
        3600..86_400 => (s / 3600, "hour"),
        _ => (s / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Discovery as words, and whether it is known to work.
fn discovery_words(s: DiscoveryStatus) -> (String, bool) {
    match s {
        DiscoveryStatus::NotYet => ("Not fetched yet (it is fetched on first use)".into(), false),
        DiscoveryStatus::Fetching => ("Being fetched now".into(), false),
        DiscoveryStatus::Discovered { ago: d } => (format!("Discovered {}", ago(d)), true),
        DiscoveryStatus::Failed { ago: d, kept } => (
            format!(
                "Failed {}{}; retried on next use",
                ago(d),
                if kept {
                    " (the document fetched before is still used)"
                } else {
                    ""
                }
            ),
            false,
        ),
    }
}

/// `GET /console/idps` (`users:manage`, as linking people to providers).
async fn idps(ctx: Ctx) -> Result<HttpResponse, Refusal> {
    ctx.principal.require(USERS_MANAGE)?;
    let idps = ctx
        .gw
        .sso
        .all()
        .iter()
        .map(|p| {
            let s = &p.settings;
            let (discovery, discovered) = discovery_words(p.discovery_status());
            IdpView {
                name: s.name.clone(),
                display_name: p.display_name().to_owned(),
                issuer: s.issuer.clone(),
                client_id: s.client_id.clone(),
                scopes: s.scopes.join(" "),
                groups_claim: s.groups_claim.clone(),
                link_by_verified_email: s.link_by_verified_email,
                create_users: s.create_users,
                allowed_domains: s.allowed_domains.clone(),
                token_exchange: s.token_exchange,
                role_map: s
                    .role_map
                    .iter()
                    .map(|m| (m.group.clone(), m.roles.join(", ")))
                    .collect(),
                discovery,
                discovered,
            }
        })
        .collect();
    Ok(ok(&Idps {
        chrome: ctx.chrome("/console/idps"),
        idps,
    }))
}

/// `not_found.html`: the console's 404 and 405.
#[derive(Template)]
#[template(path = "not_found.html")]
struct NotFound {
    chrome: Chrome,
    heading: &'static str,
    message: String,
}

/// The console's answer to a path it does not have (404), or to a method
/// a path it has does not take (405, with `Allow`): an HTML page with the
/// console's headers. The path is not repeated: it is the caller's input.
pub fn missing(req: &HttpRequest) -> HttpResponse {
    let allow = allowed(req);
    let (status, heading, message) = match allow {
        Some(_) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "This action is not available here",
            "This address does not take this kind of request. Go back to the page and use its links and buttons.".to_owned(),
        ),
        None => (
            StatusCode::NOT_FOUND,
            "Page not found",
            "There is no console page at this address. It may have moved, or the link may be mistyped.".to_owned(),
        ),
    };
    let mut res = page(
        status,
        &NotFound {
            chrome: Chrome::anonymous(),
            heading,
            message,
        },
    );
    if let Some(allow) = allow {
        res.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    }
    res
}

/// The methods the console's route at this path takes, when there is one
/// and the request's method is not among them. The route table knows the
/// paths, not their methods, and console routes are GET pages and POST
/// forms: a GET that missed is at a form's address, a POST (or HEAD) that
/// missed at a page's; any other method may have either.
fn allowed(req: &HttpRequest) -> Option<&'static str> {
    if !req.resource_map().has_resource(req.path()) {
        return None;
    }
    let m = req.method();
    Some(if m == Method::GET {
        "POST"
    } else if m == Method::POST || m == Method::HEAD {
        "GET"
    } else {
        "GET, POST"
    })
}

/// Registers this section's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/keys", web::get().to(keys))
        .route("/console/idps", web::get().to(idps));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_words() {
        assert_eq!(ago(Duration::from_millis(300)), "moments ago");
        assert_eq!(ago(Duration::from_secs(5)), "5 seconds ago");
        assert_eq!(ago(Duration::from_secs(59)), "59 seconds ago");
        assert_eq!(ago(Duration::from_secs(120)), "2 minutes ago");
        assert_eq!(ago(Duration::from_secs(7200)), "2 hours ago");
        assert_eq!(ago(Duration::from_secs(86_400)), "1 day ago");
    }
}
