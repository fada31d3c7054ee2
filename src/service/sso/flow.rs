//! Signing in through an upstream provider: the authorization request with
//! PKCE, `state` and `nonce`; the callback that checks the answer in full;
//! finding (or linking, or creating) the user by the identity; the role map;
//! and the session.
//!
//! Identities are keyed by (provider, `sub`), never by email alone. An
//! unknown identity is linked to the user with the same email only when the
//! provider is trusted to (`link_by_verified_email`) and says the address is
//! verified; it creates a user only with `create_users`, a verified address
//! and an allowed domain. Everything else is refused, and audited.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use super::{IdClaims, Provider, SsoError};
use crate::crypto::{opaque, random};
use crate::domain::session::Session;
use crate::domain::user::{LinkedIdentity, normalize_email};
use crate::domain::{DomainError, User, UserStatus};
use crate::service::Gateway;
use crate::service::auth::Principal;
use crate::service::people::clients;
use crate::service::people::sessions::{self, SignedIn};
use crate::store::{SsoLogin, StoreError, StoredUser};

/// How long a sign-on attempt may take.
pub const ATTEMPT_TTL_SECS: i64 = 600;
/// Writes retried this often when another change to the user raced them.
const WRITE_ATTEMPTS: usize = 5;

/// Why a single sign-on cannot go on. Each is a page for a browser and an
/// audit entry (`sso.refused`, with [`Refused::reason`]).
#[derive(Debug)]
pub enum Refused {
    /// No provider of that name.
    UnknownProvider,
    /// `state` unknown, used, expired or for another provider.
    BadState,
    /// The callback came to another browser than the one that started.
    OtherBrowser,
    /// The provider said no, or could not be reached.
    Provider(SsoError),
    /// The ID token failed a check.
    BadIdToken(String),
    /// The identity is linked to nobody, and nothing allows linking or
    /// creating.
    UnknownIdentity,
    /// Linking or creating needs a verified email address.
    UnverifiedEmail,
    /// `create_users` is on, but not for this email's domain.
    DomainNotAllowed,
    /// A user has this email but linking by email is not allowed.
    EmailTaken,
    /// The user is disabled.
    Disabled,
    /// Something on our side failed.
    Internal(DomainError),
}

impl Refused {
    /// The audit reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownProvider => "unknown_provider",
            Self::BadState => "bad_state",
            Self::OtherBrowser => "other_browser",
            Self::Provider(SsoError::Unavailable(_)) => "provider_unavailable",
            Self::Provider(_) => "provider_error",
            Self::BadIdToken(_) => "bad_id_token",
            Self::UnknownIdentity => "unknown_identity",
            Self::UnverifiedEmail => "unverified_email",
            Self::DomainNotAllowed => "domain_not_allowed",
            Self::EmailTaken => "email_taken",
            Self::Disabled => "disabled",
            Self::Internal(_) => "internal",
        }
    }

    /// The HTTP status of the page.
    pub fn status(&self) -> u16 {
        match self {
            Self::UnknownProvider => 404,
            Self::BadState | Self::OtherBrowser | Self::BadIdToken(_) => 400,
            Self::Provider(SsoError::Unavailable(_)) => 502,
            Self::Provider(_) => 400,
            Self::UnknownIdentity
            | Self::UnverifiedEmail
            | Self::DomainNotAllowed
            | Self::EmailTaken
            | Self::Disabled => 403,
            Self::Internal(DomainError::Unavailable) => 503,
            Self::Internal(_) => 500,
        }
    }

    /// What the page tells the person.
    pub fn message(&self) -> String {
        match self {
            Self::UnknownProvider => "No identity provider of that name is configured.".into(),
            Self::BadState => "This sign-in link expired or was already used. Start again from the application.".into(),
            Self::OtherBrowser => "This sign-in was started in another browser (or its cookie expired). Start again from this browser.".into(),
            Self::Provider(SsoError::Unavailable(_)) => "The identity provider could not be reached. Try again in a moment.".into(),
            Self::Provider(_) => "The identity provider did not sign you in.".into(),
            Self::BadIdToken(_) => "The identity provider's answer could not be verified, so it was not trusted.".into(),
            Self::UnknownIdentity => "Your account at the identity provider is not linked to a Tessera user. Ask an administrator to give you access.".into(),
            Self::UnverifiedEmail => "The identity provider has not verified your email address, so it cannot be used to find or create your Tessera user.".into(),
            Self::DomainNotAllowed => "Accounts with your email domain cannot sign up here. Ask an administrator to give you access.".into(),
            Self::EmailTaken => "A Tessera user already has your email address, but it is not linked to this identity provider. Ask an administrator to link it.".into(),
            Self::Disabled => "This account is disabled.".into(),
            Self::Internal(DomainError::Unavailable) => "The service is temporarily unavailable; try again shortly.".into(),
            Self::Internal(_) => "Something went wrong on our side.".into(),
        }
    }
}

impl From<DomainError> for Refused {
    fn from(e: DomainError) -> Self {
        Self::Internal(e)
    }
}

impl From<StoreError> for Refused {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// Where a started sign-on sends the browser, and the browser-binding
/// value to set as a cookie (a new one, or the one it had).
pub struct Started {
    /// The provider's authorization endpoint with our request.
    pub location: String,
    /// The browser-binding cookie's value.
    pub browser: String,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Started { .. }")
    }
}

/// Whether a browser-binding value has the shape we give them.
pub fn valid_browser_value(v: &str) -> bool {
    v.len() == 43 && v.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `to` is a path on this gateway: `/` then no second `/` or `\`
/// (which browsers read as another host), no control characters.
pub fn same_origin_path(to: &str) -> bool {
    to.len() <= 4096
        && to.starts_with('/')
        && !to.starts_with("//")
        && !to.starts_with("/\\")
        && !to.chars().any(|c| c.is_control() || c == '\\')
}

/// The callback URL registered at the provider.
pub fn callback_url(gw: &Gateway, name: &str) -> String {
    format!("{}/sso/{name}/callback", gw.issuer)
}

fn internal(e: impl std::fmt::Display) -> Refused {
    Refused::Internal(DomainError::Internal(e.to_string()))
}

/// Starts a sign-on: stores the attempt (single-use `state` and `nonce`,
/// the PKCE verifier, the browser binding, where to go afterwards) and
/// returns the provider's authorization URL.
pub async fn start(
    gw: &Gateway,
    name: &str,
    browser: Option<&str>,
    return_to: Option<&str>,
) -> Result<Started, Refused> {
    let p = gw.sso.get(name).ok_or(Refused::UnknownProvider)?;
    let d = gw.sso.discovery(&p).await.map_err(Refused::Provider)?;
    let return_to = return_to.filter(|t| same_origin_path(t)).map(str::to_owned);
    let client_id = return_to
        .as_deref()
        .and_then(authorize_client)
        .unwrap_or_else(|| clients::CONSOLE.to_owned());
    let state = opaque::random_value().map_err(internal)?;
    let nonce = opaque::random_value().map_err(internal)?;
    let verifier = opaque::random_value().map_err(internal)?;
    let browser = match browser.filter(|b| valid_browser_value(b)) {
        Some(b) => b.to_owned(),
        None => opaque::random_value()
            .map_err(internal)?
            .expose_secret()
            .to_owned(),
    };
    gw.sessions
        .put_sso_login(
            &opaque::digest_hex(state.expose_secret()),
            &SsoLogin {
                idp: p.name().to_owned(),
                nonce: nonce.expose_secret().to_owned(),
                code_verifier: verifier.expose_secret().to_owned(),
                browser: opaque::digest_hex(&browser),
                client_id,
                return_to,
                expires_at: Utc::now() + Duration::seconds(ATTEMPT_TTL_SECS),
            },
        )
        .await?;
    let mut url = url::Url::parse(&d.authorization_endpoint).map_err(internal)?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &p.settings.client_id)
        .append_pair("redirect_uri", &callback_url(gw, p.name()))
        .append_pair("scope", &p.settings.scopes.join(" "))
        .append_pair("state", state.expose_secret())
        .append_pair("nonce", nonce.expose_secret())
        .append_pair(
            "code_challenge",
            &opaque::pkce_s256(verifier.expose_secret()),
        )
        .append_pair("code_challenge_method", "S256");
    Ok(Started {
        location: url.to_string(),
        browser,
    })
}

/// The `client_id` of a continued `/oauth/authorize` request.
fn authorize_client(return_to: &str) -> Option<String> {
    let rest = return_to.strip_prefix("/oauth/authorize?")?;
    url::form_urlencoded::parse(rest.as_bytes())
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned())
        .filter(|c| c.len() <= 128)
}

/// The provider's answer at the callback.
#[derive(Default)]
pub struct Callback {
    /// The code, on success.
    pub code: Option<String>,
    /// Our `state`.
    pub state: Option<String>,
    /// The provider's error code, on failure.
    pub error: Option<String>,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

/// The browser and request the callback came with.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The browser-binding cookie, when sent.
    pub browser: Option<&'a str>,
    /// The session cookie the browser held, ended by the new session.
    pub old_session: Option<&'a str>,
    /// The client address.
    pub ip: IpAddr,
    /// The `User-Agent`.
    pub user_agent: &'a str,
}

/// A finished sign-on.
pub struct Finished {
    /// The new session.
    pub session: Session,
    /// Its cookie value.
    pub cookie: SecretString,
    /// The user.
    pub user: User,
    /// Where to continue, when the start named somewhere.
    pub return_to: Option<String>,
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Finished")
            .field("session", &self.session.id)
            .field("user", &self.user.id)
            .finish_non_exhaustive()
    }
}

/// The callback: takes the attempt (once), checks the browser, redeems the
/// code, checks the ID token in full, finds the user, applies the role map
/// and starts a session. Every refusal is audited here.
pub async fn finish(
    gw: &Gateway,
    name: &str,
    cb: Callback,
    who: Requester<'_>,
) -> Result<Finished, Refused> {
    let out = finish_inner(gw, name, cb, who).await;
    if let Err(r) = &out {
        refused(gw, name, "-", r, who.ip).await;
    }
    out
}

async fn finish_inner(
    gw: &Gateway,
    name: &str,
    cb: Callback,
    who: Requester<'_>,
) -> Result<Finished, Refused> {
    let p = gw.sso.get(name).ok_or(Refused::UnknownProvider)?;
    let state = cb
        .state
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or(Refused::BadState)?;
    // Taken before anything else is looked at: whatever happens next, this
    // state is spent.
    let login = gw
        .sessions
        .take_sso_login(&opaque::digest_hex(&state), Utc::now())
        .await?
        .ok_or(Refused::BadState)?;
    if login.idp != p.name() {
        return Err(Refused::BadState);
    }
    let same_browser = who
        .browser
        .is_some_and(|b| opaque::same(&opaque::digest_hex(b), &login.browser));
    if !same_browser {
        return Err(Refused::OtherBrowser);
    }
    if let Some(e) = cb.error {
        return Err(Refused::Provider(SsoError::Provider(
            crate::domain::error::shown(&e),
        )));
    }
    let code = cb
        .code
        .filter(|c| !c.is_empty() && c.len() <= 4096)
        .ok_or_else(|| Refused::Provider(SsoError::Provider("no code".into())))?;
    let id_token = gw
        .sso
        .redeem_code(&p, &code, &callback_url(gw, p.name()), &login.code_verifier)
        .await
        .map_err(Refused::Provider)?;
    let claims = gw
        .sso
        .check_id_token(&p, &id_token, Some(&login.nonce), gw.policy.leeway)
        .await
        .map_err(|e| Refused::BadIdToken(e.to_string()))?;
    let user = user_for(gw, &p, &claims, who.ip).await?;
    apply_role_map(gw, &p, &user.user.id, &claims, who.ip).await?;
    let new = sessions::start(
        gw,
        &user.user,
        SignedIn {
            client_id: &login.client_id,
            amr: "fed",
            idp: Some(p.name().to_owned()),
            ip: who.ip,
            user_agent: who.user_agent,
        },
        who.old_session,
    )
    .await
    .map_err(|e| match e {
        DomainError::InvalidGrant(_) => Refused::Disabled,
        e => Refused::Internal(e),
    })?;
    crate::service::people::signin::audit(
        gw,
        &user.user.id,
        "sso.signin",
        who.ip,
        json!({"idp": p.name(), "client": login.client_id, "session": new.session.id}),
    )
    .await;
    Ok(Finished {
        session: new.session,
        cookie: new.cookie,
        // Neither the role map nor the sign-in changes what the page shows
        // of the user (the email): no need to read it again.
        user: user.user,
        return_to: login.return_to,
    })
}

/// Audits a refusal (never a token).
pub async fn refused(gw: &Gateway, idp: &str, user_id: &str, r: &Refused, ip: IpAddr) {
    // The name may come from the request path: a configured one is shown
    // as is, anything else only by its size.
    let idp = if gw.sso.get(idp).is_some() {
        idp.to_owned()
    } else {
        crate::domain::error::shown(idp)
    };
    let mut details = json!({"idp": idp, "reason": r.reason()});
    if let Refused::BadIdToken(why) = r {
        // Bounded: a `kid` in the message is the sender's input.
        details["detail"] = Value::from(why.chars().take(200).collect::<String>());
    }
    crate::service::people::signin::audit(gw, user_id, "sso.refused", ip, details).await;
}

fn system(name: &str, ip: IpAddr) -> Principal {
    Principal {
        subject: format!("sso:{name}"),
        permissions: Vec::new(),
        owner: String::new(),
        ip,
        session: None,
    }
}

/// The user an identity belongs to, linking or creating one when the
/// provider's settings allow it (see the module's rules).
pub async fn user_for(
    gw: &Gateway,
    p: &Arc<Provider>,
    c: &IdClaims,
    ip: IpAddr,
) -> Result<StoredUser, Refused> {
    let s = &p.settings;
    for _ in 0..WRITE_ATTEMPTS {
        if let Some(u) = gw.users.find_user_by_identity(p.name(), &c.sub).await? {
            if u.user.status != UserStatus::Active {
                return Err(Refused::Disabled);
            }
            return Ok(u);
        }
        // ASCII only: lowercasing folds some other characters into ASCII
        // (KELVIN SIGN to `k`), so another mailbox would match a user's.
        let email = c
            .email
            .as_deref()
            .filter(|e| e.is_ascii())
            .and_then(|e| normalize_email(e).ok());
        let existing = match &email {
            Some(e) => gw.users.find_user_by_email(e).await?,
            None => None,
        };
        if let Some(mut u) = existing {
            if !s.link_by_verified_email {
                return Err(if s.create_users {
                    Refused::EmailTaken
                } else {
                    Refused::UnknownIdentity
                });
            }
            // Already linked to another `sub` there: this one is someone
            // else holding the address now (OIDC Core §5.7).
            if u.user.identities.iter().any(|i| i.idp == p.name()) {
                return Err(Refused::UnknownIdentity);
            }
            if !c.email_verified {
                return Err(Refused::UnverifiedEmail);
            }
            if u.user.status != UserStatus::Active {
                return Err(Refused::Disabled);
            }
            let old = u.user.clone();
            u.user.identities.push(LinkedIdentity {
                idp: p.name().to_owned(),
                subject: c.sub.clone(),
                email: email.clone(),
                roles: Vec::new(),
            });
            u.user.updated_at = Utc::now().max(old.updated_at + Duration::milliseconds(1));
            match gw.users.update_user(&u, old.updated_at).await {
                Ok(()) => {
                    crate::service::audit::record(
                        gw,
                        &system(p.name(), ip),
                        "sso.link",
                        &u.user.id,
                        json!({"idp": p.name(), "by": "verified_email"}),
                    )
                    .await;
                    return Ok(u);
                }
                // Another change (or a racing link) came first: look again.
                Err(StoreError::Stale { .. } | StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if !s.create_users {
            return Err(Refused::UnknownIdentity);
        }
        let Some(email) = email else {
            return Err(Refused::UnverifiedEmail);
        };
        if !c.email_verified {
            return Err(Refused::UnverifiedEmail);
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if !s
            .allowed_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
        {
            return Err(Refused::DomainNotAllowed);
        }
        let now = Utc::now();
        let user = User {
            id: format!("usr_{}", random::base62(16).map_err(internal)?),
            email: email.clone(),
            name: c.name.clone().unwrap_or_default(),
            roles: Vec::new(),
            permissions: Vec::new(),
            status: UserStatus::Active,
            identities: vec![LinkedIdentity {
                idp: p.name().to_owned(),
                subject: c.sub.clone(),
                email: Some(email),
                roles: Vec::new(),
            }],
            has_password: false,
            created_at: now,
            updated_at: now,
            last_login_at: None,
        };
        let stored = StoredUser {
            user: user.clone(),
            password_hash: None,
        };
        match gw.users.insert_user(&stored).await {
            Ok(()) => {
                crate::service::audit::record(
                    gw,
                    &system(p.name(), ip),
                    "user.create",
                    &user.id,
                    crate::service::audit::snapshot(&user),
                )
                .await;
                return Ok(stored);
            }
            // Created meanwhile by a racing sign-in: look again.
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Refused::Internal(DomainError::Unavailable))
}

/// Applies the provider's role map to the user's identity there: roles its
/// groups map to are added; roles it added before whose group is gone are
/// removed (unless another provider's map holds them too); roles an
/// administrator granted are never touched. Written through the users'
/// change path, so a removal revokes earlier tokens as an admin's would.
pub async fn apply_role_map(
    gw: &Gateway,
    p: &Arc<Provider>,
    user_id: &str,
    c: &IdClaims,
    ip: IpAddr,
) -> Result<(), Refused> {
    let mut mapped: Vec<String> = Vec::new();
    for m in &p.settings.role_map {
        if c.groups.iter().any(|g| g == &m.group) {
            for r in &m.roles {
                if !mapped.contains(r) {
                    mapped.push(r.clone());
                }
            }
        }
    }
    for _ in 0..WRITE_ATTEMPTS {
        let Some(mut stored) = gw.users.get_user(user_id).await? else {
            return Err(Refused::UnknownIdentity);
        };
        let old = stored.user.clone();
        let u = &mut stored.user;
        let Some(at) = u
            .identities
            .iter()
            .position(|i| i.idp == p.name() && i.subject == c.sub)
        else {
            return Err(Refused::UnknownIdentity);
        };
        let others: Vec<String> = u
            .identities
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .flat_map(|(_, i)| i.roles.iter().cloned())
            .collect();
        let before = u.identities[at].roles.clone();
        // A role map naming a role that does not exist grants nothing. Only
        // roles about to be added are looked up: at a steady sign-in (the
        // user holds every mapped role already) this reads no role.
        let mut added: Vec<String> = Vec::new();
        for r in mapped.iter().filter(|r| !u.roles.contains(r)) {
            if gw.roles.get_role(r).await?.is_some() {
                added.push(r.clone());
            } else {
                tracing::warn!(idp = %p.name(), role = %r, "role map names a role that does not exist");
            }
        }
        let gone: Vec<String> = before
            .iter()
            .filter(|r| !mapped.contains(r) && !others.contains(r))
            .cloned()
            .collect();
        let mut granted: Vec<String> = before
            .iter()
            .filter(|r| mapped.contains(r) && u.roles.contains(r))
            .cloned()
            .collect();
        granted.extend(added.iter().cloned());
        granted.sort();
        granted.dedup();
        let mut roles: Vec<String> = u
            .roles
            .iter()
            .filter(|r| !gone.contains(r))
            .cloned()
            .collect();
        roles.extend(added.iter().cloned());
        roles.sort();
        roles.dedup();
        if roles == u.roles && granted == u.identities[at].roles {
            return Ok(());
        }
        u.roles = roles;
        u.identities[at].roles = granted;
        u.updated_at = Utc::now().max(old.updated_at + Duration::milliseconds(1));
        match gw.users.update_user(&stored, old.updated_at).await {
            Ok(()) => {
                crate::service::users::settle_change(
                    gw,
                    &system(p.name(), ip),
                    "user.update",
                    &old,
                    &stored.user,
                )
                .await?;
                return Ok(());
            }
            Err(StoreError::Stale { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Refused::Internal(DomainError::Unavailable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_to_must_stay_here() {
        for ok in ["/", "/oauth/authorize?client_id=x", "/console"] {
            assert!(same_origin_path(ok), "{ok}");
        }
        for bad in [
            "",
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "/a\\b",
            "/a\nb",
            "javascript:alert(1)",
        ] {
            assert!(!same_origin_path(bad), "{bad}");
        }
        assert_eq!(
            authorize_client("/oauth/authorize?a=1&client_id=app_x").as_deref(),
            Some("app_x")
        );
        assert_eq!(authorize_client("/console?client_id=app_x"), None);
    }
}
