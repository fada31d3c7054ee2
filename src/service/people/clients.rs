//! OAuth clients for people: the two built in (`tessera-console`,
//! `tessera-cli`) and every application with `redirectUris`. Redirect URIs
//! match exactly; a registered loopback `http` URI matches on any port
//! (RFC 8252 §7.3), since a native app learns its port only when it runs.

use std::sync::Arc;

use url::Url;

use crate::domain::application::CLIENT_GRANT_TYPES;
use crate::domain::{AppStatus, Application, DomainError, KeyType, Permission};
use crate::service::Gateway;
use crate::service::cache::AppSnapshot;

/// The console's client id (docs/api.md, "The console").
pub const CONSOLE: &str = "tessera-console";
/// The command line's client id (docs/api.md, "The device grant").
pub const CLI: &str = "tessera-cli";

/// Whether `client_id` is one of the gateway's own clients.
pub fn is_built_in(client_id: &str) -> bool {
    client_id == CONSOLE || client_id == CLI
}

/// At most this many redirect URIs of each kind per client.
const MAX_URIS: usize = 20;
/// Longest redirect URI accepted.
const MAX_URI_BYTES: usize = 2000;

/// A client people may sign in through.
#[derive(Debug, Clone)]
pub struct Client {
    /// `client_id`.
    pub id: String,
    /// Public clients hold no secret (PKCE alone protects their codes).
    pub public: bool,
    /// Registered redirect URIs.
    pub redirect_uris: Vec<String>,
    /// Registered post-logout redirect URIs.
    pub post_logout_redirect_uris: Vec<String>,
    /// The application behind it (none for the built-in clients).
    pub app: Option<Arc<AppSnapshot>>,
}

impl Client {
    /// Whether `uri` is one of this client's redirect URIs.
    pub fn redirect_allowed(&self, uri: &str) -> bool {
        uri_allowed(&self.redirect_uris, uri)
    }

    /// Whether `uri` is one of this client's post-logout redirect URIs.
    pub fn post_logout_allowed(&self, uri: &str) -> bool {
        uri_allowed(&self.post_logout_redirect_uris, uri)
    }

    /// Whether this client may use `grant`.
    pub fn allows_grant(&self, grant: &str) -> bool {
        match &self.app {
            // The command line also signs in from machines without a
            // browser (RFC 8628).
            None => {
                matches!(grant, "authorization_code" | "refresh_token")
                    || (self.id == CLI && grant == super::device::GRANT_TYPE)
            }
            Some(s) => s.stored.app.allows_grant(grant),
        }
    }

    /// Whether this is a built-in client (the gateway's own).
    pub fn built_in(&self) -> bool {
        self.app.is_none()
    }
}

/// Finds a client by id: a built-in one, or an active application with
/// redirect URIs. `None` for anything else (unknown, revoked, expired, or
/// not a client for people).
pub async fn find(gw: &Gateway, client_id: &str) -> Result<Option<Client>, DomainError> {
    match client_id {
        CONSOLE => {
            return Ok(Some(Client {
                id: CONSOLE.into(),
                public: true,
                redirect_uris: vec![format!("{}/console/callback", gw.issuer)],
                post_logout_redirect_uris: vec![format!("{}/console", gw.issuer)],
                app: None,
            }));
        }
        CLI => {
            let loopback: Vec<String> = ["127.0.0.1", "[::1]", "localhost"]
                .iter()
                .map(|h| format!("http://{h}/callback"))
                .collect();
            // `/device` too: its sign-in goes through the normal sign-in
            // page and comes back there (the code it carries is not used).
            let mut redirect_uris = loopback.clone();
            redirect_uris.push(format!("{}/device", gw.issuer));
            return Ok(Some(Client {
                id: CLI.into(),
                public: true,
                redirect_uris,
                post_logout_redirect_uris: loopback,
                app: None,
            }));
        }
        _ => {}
    }
    if crate::domain::application::validate_app_id(client_id).is_err() {
        return Ok(None);
    }
    let Some(snap) = crate::service::token::load_app(gw, client_id).await? else {
        return Ok(None);
    };
    let app = &snap.stored.app;
    if app.redirect_uris.is_empty() || app.status_at(chrono::Utc::now()) != AppStatus::Active {
        return Ok(None);
    }
    Ok(Some(Client {
        id: app.id.clone(),
        public: app.key_type == KeyType::Public,
        redirect_uris: app.redirect_uris.clone(),
        post_logout_redirect_uris: app.post_logout_redirect_uris.clone(),
        app: Some(snap),
    }))
}

/// What tokens issued to people through `client` may carry at most: the
/// client application's own effective permissions. A client registered by
/// someone who holds little cannot harvest an administrator's full reach
/// by having them sign in through it. The built-in clients are the
/// gateway's own: no bound.
pub async fn bound(gw: &Gateway, client: &Client) -> Result<Option<Vec<Permission>>, DomainError> {
    match &client.app {
        None => Ok(None),
        Some(snap) => {
            let g = crate::service::grants::effective(gw, &snap.stored.app).await?;
            Ok(Some(g.permissions.clone()))
        }
    }
}

fn is_loopback_http(u: &Url) -> bool {
    u.scheme() == "http"
        && matches!(
            u.host_str(),
            Some("127.0.0.1") | Some("[::1]") | Some("localhost")
        )
}

/// Exact match, except that a registered loopback URI matches any port.
fn uri_allowed(registered: &[String], uri: &str) -> bool {
    if uri.len() > MAX_URI_BYTES {
        return false;
    }
    if registered.iter().any(|r| r == uri) {
        return true;
    }
    let Ok(given) = Url::parse(uri) else {
        return false;
    };
    if !is_loopback_http(&given) {
        return false;
    }
    registered.iter().any(|r| {
        Url::parse(r).is_ok_and(|reg| {
            is_loopback_http(&reg)
                && reg.host_str() == given.host_str()
                && reg.path() == given.path()
                && reg.query() == given.query()
                && given.fragment().is_none()
                && given.username().is_empty()
                && given.password().is_none()
        })
    })
}

/// Checks URIs a client registers: absolute, `https` (or `http` on a
/// loopback address), no fragment, no credentials, at most 20.
pub fn check_uris(field: &str, uris: &[String]) -> Result<(), DomainError> {
    if uris.len() > MAX_URIS {
        return Err(DomainError::Validation(format!(
            "{field}: at most {MAX_URIS}"
        )));
    }
    for u in uris {
        let bad = |why: &str| {
            DomainError::Validation(format!("{field}: {} {why}", crate::domain::error::shown(u)))
        };
        if u.len() > MAX_URI_BYTES {
            return Err(bad("is too long"));
        }
        let parsed = Url::parse(u).map_err(|_| bad("is not an absolute URI"))?;
        if parsed.fragment().is_some() {
            return Err(bad("must not have a fragment"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("must not carry credentials"));
        }
        if parsed.scheme() != "https" && !is_loopback_http(&parsed) {
            return Err(bad("must use https (http only on a loopback address)"));
        }
        // The stored form must be the one matched: no normalisation surprises.
        if parsed.as_str() != u && format!("{}", parsed).trim_end_matches('/') != u {
            return Err(bad("is not in normal form"));
        }
    }
    Ok(())
}

/// Checks the client fields of an application.
pub fn check_client(app: &Application) -> Result<(), DomainError> {
    check_uris("redirectUris", &app.redirect_uris)?;
    check_uris("postLogoutRedirectUris", &app.post_logout_redirect_uris)?;
    for g in &app.grant_types {
        if !CLIENT_GRANT_TYPES.contains(&g.as_str()) {
            return Err(DomainError::Validation(format!(
                "grantTypes: unknown grant {}",
                crate::domain::error::shown(g)
            )));
        }
    }
    let needs_redirect = app.grant_types.iter().any(|g| g == "authorization_code");
    if needs_redirect && app.redirect_uris.is_empty() {
        return Err(DomainError::Validation(
            "grantTypes: authorization_code needs redirectUris".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn redirects_match_exactly_and_loopback_on_any_port() {
        let r = reg(&["https://app.example.com/cb", "http://127.0.0.1/callback"]);
        assert!(uri_allowed(&r, "https://app.example.com/cb"));
        assert!(!uri_allowed(&r, "https://app.example.com/cb/"));
        assert!(!uri_allowed(&r, "https://app.example.com/cb?x=1"));
        assert!(!uri_allowed(&r, "https://evil.example.com/cb"));
        assert!(!uri_allowed(&r, "https://app.example.com.evil.com/cb"));
        assert!(uri_allowed(&r, "http://127.0.0.1:53682/callback"));
        assert!(!uri_allowed(&r, "http://127.0.0.1:53682/other"));
        assert!(!uri_allowed(&r, "http://localhost:53682/callback"));
        assert!(!uri_allowed(&r, "http://user@127.0.0.1:1/callback"));
        assert!(!uri_allowed(&r, "https://127.0.0.1:53682/callback"));
    }

    #[test]
    fn registration_rules() {
        assert!(check_uris("r", &reg(&["https://a.example/cb"])).is_ok());
        assert!(check_uris("r", &reg(&["http://127.0.0.1/cb"])).is_ok());
        assert!(check_uris("r", &reg(&["http://a.example/cb"])).is_err());
        assert!(check_uris("r", &reg(&["https://a.example/cb#x"])).is_err());
        assert!(check_uris("r", &reg(&["/relative"])).is_err());
        assert!(check_uris("r", &reg(&["javascript:alert(1)"])).is_err());
        assert!(check_uris("r", &reg(&["https://u:p@a.example/"])).is_err());
    }
}
