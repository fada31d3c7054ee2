//! Tessera as the OAuth 2.0 / OpenID Connect provider for its own people:
//! the authorization request, codes with PKCE, the token grants for people,
//! userinfo and RP-initiated logout (docs/api.md, "People").

use std::net::IpAddr;

use chrono::{Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use super::clients::{self, Client};
use super::sessions::{self, SignedIn};
use super::tokens::{self, Issue, PersonTokens, Refresh};
use crate::crypto::{jwt, opaque};
use crate::domain::session::{AuthCode, CodeUse, Session};
use crate::domain::{AccessClaims, DomainError, UserStatus};
use crate::service::Gateway;

/// How long a code may wait to be exchanged.
pub const CODE_TTL_SECS: i64 = 60;
/// Longest `state` and `nonce` accepted.
const MAX_PARAM_BYTES: usize = 1024;

/// The parameters of an authorization request (RFC 6749 §4.1.1, RFC 7636,
/// OIDC Core §3.1.2.1): the query of `GET /oauth/authorize`, carried again
/// as hidden fields by the sign-in form.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizeParams {
    /// Must be `code`.
    pub response_type: Option<String>,
    /// The client.
    pub client_id: Option<String>,
    /// Where to send the answer; must be registered.
    pub redirect_uri: Option<String>,
    /// OpenID scopes and permissions.
    pub scope: Option<String>,
    /// Opaque client state, returned as is.
    pub state: Option<String>,
    /// OIDC nonce, copied into the ID token.
    pub nonce: Option<String>,
    /// PKCE challenge.
    pub code_challenge: Option<String>,
    /// Must be `S256`.
    pub code_challenge_method: Option<String>,
    /// `login` forces the sign-in page; `none` never shows it.
    pub prompt: Option<String>,
    /// An upstream provider to go straight to.
    pub idp: Option<String>,
}

impl AuthorizeParams {
    /// The parameters a sign-in carries on to the request it continues
    /// (not `prompt` or `idp`, which were just acted on), as given.
    pub fn carried(&self) -> Vec<(&'static str, &str)> {
        [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// Why an authorization request cannot go on.
#[derive(Debug)]
pub enum Refusal {
    /// The client or its redirect URI cannot be trusted: an error page,
    /// never a redirect (RFC 6749 §4.1.2.1).
    Page(String),
    /// The client is known: send the error back to it.
    Redirect(String),
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// The client.
    pub client: Client,
    /// The registered redirect URI it named.
    pub redirect_uri: String,
    /// The request.
    pub params: AuthorizeParams,
}

impl Authorization {
    /// Whether the sign-in page must be shown even with a live session.
    pub fn forces_login(&self) -> bool {
        self.params
            .prompt
            .as_deref()
            .is_some_and(|p| p.split(' ').any(|w| w == "login"))
    }

    /// Whether the client asked never to show a page (`prompt=none`).
    pub fn no_prompt(&self) -> bool {
        self.params
            .prompt
            .as_deref()
            .is_some_and(|p| p.split(' ').any(|w| w == "none"))
    }

    /// The redirect carrying an error back to the client.
    pub fn error(&self, gw: &Gateway, error: &str, description: &str) -> String {
        error_location(
            gw,
            &self.redirect_uri,
            error,
            description,
            self.params.state.as_deref(),
        )
    }
}

/// `redirect_uri` with an RFC 6749 §4.1.2.1 error (and RFC 9207 `iss`).
pub fn error_location(
    gw: &Gateway,
    redirect_uri: &str,
    error: &str,
    description: &str,
    state: Option<&str>,
) -> String {
    let mut pairs = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &gw.issuer));
    with_query(redirect_uri, &pairs)
}

fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    match Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        // Registered URIs always parse; this is never reached.
        Err(_) => uri.to_owned(),
    }
}

/// Checks an authorization request. Client and redirect URI first: until
/// both are proven, nothing is sent anywhere.
pub async fn validate(gw: &Gateway, p: &AuthorizeParams) -> Result<Authorization, Refusal> {
    let page = |m: &str| Refusal::Page(m.to_owned());
    let client_id = p
        .client_id
        .as_deref()
        .ok_or_else(|| page("The request names no client (client_id is missing)."))?;
    let client = clients::find(gw, client_id)
        .await
        .map_err(|_| page("The service is temporarily unavailable; retry shortly."))?
        .ok_or_else(|| {
            page("The client in this request is unknown or not allowed to sign people in.")
        })?;
    let redirect_uri = p
        .redirect_uri
        .as_deref()
        .ok_or_else(|| page("The request names no redirect_uri."))?;
    if !client.redirect_allowed(redirect_uri) {
        return Err(page(
            "The redirect_uri in this request is not registered for this client.",
        ));
    }
    let a = Authorization {
        client,
        redirect_uri: redirect_uri.to_owned(),
        params: p.clone(),
    };
    let back = |e: &str, d: &str| Refusal::Redirect(a.error(gw, e, d));
    if p.response_type.as_deref() != Some("code") {
        return Err(back(
            "unsupported_response_type",
            "only response_type=code is supported",
        ));
    }
    if !a.client.allows_grant("authorization_code") {
        return Err(back(
            "unauthorized_client",
            "this client may not use the authorization code grant",
        ));
    }
    match (
        p.code_challenge.as_deref(),
        p.code_challenge_method.as_deref(),
    ) {
        (Some(c), Some("S256"))
            if c.len() == 43
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') => {}
        (Some(_), Some("S256")) => {
            return Err(back("invalid_request", "code_challenge is malformed"));
        }
        _ => {
            return Err(back(
                "invalid_request",
                "PKCE is required: code_challenge with code_challenge_method=S256",
            ));
        }
    }
    for (name, v) in [("state", &p.state), ("nonce", &p.nonce)] {
        if v.as_ref().is_some_and(|v| v.len() > MAX_PARAM_BYTES) {
            return Err(back("invalid_request", &format!("{name} is too long")));
        }
    }
    if let Err(e) = tokens::split_scope(p.scope.as_deref().unwrap_or("")) {
        return Err(back("invalid_scope", &e.to_string()));
    }
    if p.idp
        .as_deref()
        .is_some_and(|i| !i.is_empty() && gw.sso.get(i).is_none())
    {
        return Err(back(
            "invalid_request",
            "no upstream identity provider of that name is configured",
        ));
    }
    Ok(a)
}

impl Authorization {
    /// The upstream provider the request asks to go straight to.
    pub fn idp(&self) -> Option<&str> {
        self.params.idp.as_deref().filter(|i| !i.is_empty())
    }

    /// This request as a path on this gateway, to continue it once the
    /// person is signed in elsewhere: without `idp` (so it does not loop)
    /// and `prompt` (they just signed in).
    pub fn resume_path(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.params.carried() {
            q.append_pair(k, v);
        }
        format!("/oauth/authorize?{}", q.finish())
    }
}

/// Issues a code for a signed-in session; returns where to send the browser.
pub async fn issue_code(
    gw: &Gateway,
    a: &Authorization,
    session: &Session,
) -> Result<String, DomainError> {
    let code = opaque::random_value().map_err(|e| DomainError::Internal(e.to_string()))?;
    let record = AuthCode {
        client_id: a.client.id.clone(),
        redirect_uri: a.redirect_uri.clone(),
        user_id: session.user_id.clone(),
        session_id: session.id.clone(),
        scope: a.params.scope.clone().unwrap_or_default(),
        nonce: a.params.nonce.clone(),
        code_challenge: a.params.code_challenge.clone().unwrap_or_default(),
        expires_at: Utc::now() + Duration::seconds(CODE_TTL_SECS),
    };
    gw.sessions
        .put_code(&opaque::digest_hex(code.expose_secret()), &record)
        .await?;
    let mut pairs = vec![("code", code.expose_secret())];
    if let Some(s) = a.params.state.as_deref() {
        pairs.push(("state", s));
    }
    pairs.push(("iss", &gw.issuer));
    Ok(with_query(&a.redirect_uri, &pairs))
}

fn bad_code() -> DomainError {
    DomainError::InvalidGrant("The authorization code is invalid, expired or already used".into())
}

/// The `authorization_code` grant: the code, the same redirect URI, and
/// the PKCE verifier; the client was authenticated by the caller when it
/// is confidential. A replayed code ends the session it was issued in, so
/// the tokens its first use obtained stop working (RFC 6749 §4.1.2).
pub async fn exchange_code(
    gw: &Gateway,
    client: &Client,
    code: &str,
    redirect_uri: Option<&str>,
    verifier: Option<&str>,
) -> Result<PersonTokens, DomainError> {
    if !client.allows_grant("authorization_code") {
        return Err(DomainError::UnauthorizedClient(
            "this client may not use the authorization code grant".into(),
        ));
    }
    if code.is_empty() || code.len() > 128 {
        return Err(bad_code());
    }
    let found = gw
        .sessions
        .take_code(&opaque::digest_hex(code), Utc::now())
        .await?;
    let c = match found {
        CodeUse::Fresh(c) => c,
        CodeUse::Replayed(c) => {
            tracing::warn!(client = %c.client_id, "authorization code replayed: its session ended");
            sessions::end(gw, &c.session_id).await?;
            return Err(bad_code());
        }
        CodeUse::Unknown => return Err(bad_code()),
    };
    if c.client_id != client.id || redirect_uri != Some(c.redirect_uri.as_str()) {
        return Err(bad_code());
    }
    let verified = verifier.is_some_and(|v| {
        opaque::valid_verifier(v) && opaque::same(&opaque::pkce_s256(v), &c.code_challenge)
    });
    if !verified {
        return Err(DomainError::InvalidGrant(
            "code_verifier does not match the code_challenge".into(),
        ));
    }
    let Some(session) = sessions::get(gw, &c.session_id).await? else {
        return Err(bad_code());
    };
    let offline = tokens::split_scope(&c.scope)
        .is_ok_and(|(oidc, _)| oidc.iter().any(|w| w == "offline_access"))
        && client.allows_grant("refresh_token");
    tokens::issue(
        gw,
        Issue {
            user_id: &c.user_id,
            session: &session,
            client,
            scope: &c.scope,
            nonce: c.nonce.as_deref(),
            refresh: if offline {
                Refresh::Start
            } else {
                Refresh::Skip
            },
        },
    )
    .await
}

/// The JSON endpoint's `password` grant (docs/api.md, "Getting a token"), for the built-in
/// command-line client: a session is started (amr `pwd`) and a refresh
/// token is always issued.
pub async fn password_grant(
    gw: &Gateway,
    email: &str,
    password: &SecretString,
    scope: Option<&str>,
    ip: IpAddr,
    user_agent: &str,
) -> Result<PersonTokens, DomainError> {
    let user = super::signin::check_password(gw, email, password, ip).await?;
    let client = clients::find(gw, clients::CLI)
        .await?
        .ok_or_else(|| DomainError::Internal("built-in client missing".into()))?;
    let new = sessions::start(
        gw,
        &user.user,
        SignedIn {
            client_id: clients::CLI,
            amr: "pwd",
            idp: None,
            ip,
            user_agent,
        },
        None,
    )
    .await?;
    super::signin::audit(
        gw,
        &user.user.id,
        "signin",
        ip,
        json!({"client": clients::CLI, "session": new.session.id, "method": "password_grant"}),
    )
    .await;
    let mut scope = scope.unwrap_or("").to_owned();
    if !scope
        .split_ascii_whitespace()
        .any(|w| w == "offline_access")
    {
        scope = format!("{scope} offline_access").trim().to_owned();
    }
    tokens::issue(
        gw,
        Issue {
            user_id: &user.user.id,
            session: &new.session,
            client: &client,
            scope: &scope,
            nonce: None,
            refresh: Refresh::Start,
        },
    )
    .await
}

/// Checks a person's access token for this gateway's own use (userinfo,
/// `/api/v1/me`): signature, lifetime, revocation (by `jti`, subject and
/// session), a live user. Returns the claims.
pub async fn person_claims(gw: &Gateway, token: &str) -> Result<AccessClaims, DomainError> {
    let claims: AccessClaims =
        jwt::verify_any_audience(&gw.keys.current(), token, &gw.issuer, gw.policy.leeway)
            .map_err(|_| DomainError::InvalidToken)?;
    if claims.sid.is_none() || !claims.sub.starts_with("usr_") {
        return Err(DomainError::InvalidToken);
    }
    if crate::service::revocation::is_revoked(gw, &claims).await? {
        return Err(DomainError::InvalidToken);
    }
    // A token obtained through an application lives only as long as that
    // client does: revoked, expired or no longer a client, its tokens stop.
    if !clients::is_built_in(&claims.client_id)
        && clients::find(gw, &claims.client_id).await?.is_none()
    {
        return Err(DomainError::InvalidToken);
    }
    Ok(claims)
}

/// `GET /oauth/userinfo` (OIDC Core §5.3): the claims the token's scope
/// allows.
pub async fn userinfo(gw: &Gateway, token: &str) -> Result<Value, DomainError> {
    let claims = person_claims(gw, token).await?;
    let scope: Vec<&str> = claims.scope.split(' ').collect();
    if !scope.contains(&"openid") {
        return Err(DomainError::InsufficientPermissions(
            "userinfo needs a token with the openid scope".into(),
        ));
    }
    let Some(user) = gw.users.get_user(&claims.sub).await? else {
        return Err(DomainError::InvalidToken);
    };
    if user.user.status != UserStatus::Active {
        return Err(DomainError::InvalidToken);
    }
    let mut out = json!({"sub": user.user.id});
    if scope.contains(&"email") {
        out["email"] = Value::from(user.user.email.clone());
        out["email_verified"] = Value::from(false);
    }
    if scope.contains(&"profile") {
        out["name"] = Value::from(user.user.name.clone());
        out["updated_at"] = Value::from(user.user.updated_at.timestamp());
    }
    Ok(out)
}

/// The parameters of RP-initiated logout (OpenID RP-Initiated Logout 1.0).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LogoutParams {
    /// An ID token this gateway issued to the client.
    pub id_token_hint: Option<String>,
    /// Where to go afterwards; must be registered for the client.
    pub post_logout_redirect_uri: Option<String>,
    /// The client, when no hint is given.
    pub client_id: Option<String>,
    /// Returned to the client as is.
    pub state: Option<String>,
}

/// What a logout request amounts to.
#[derive(Debug)]
pub struct LogoutPlan {
    /// Where to send the browser afterwards, when allowed.
    pub redirect: Option<String>,
    /// Whether the request proves it comes from the session's own client
    /// (a valid hint for the signed-in user): then no confirmation is asked.
    pub confirmed: bool,
    /// The hint's subject, when there was a valid hint.
    pub hint_sub: Option<String>,
}

/// Checks a logout request. A redirect goes only to a URI registered for
/// the client the hint (or `client_id`) names; anything else is dropped,
/// never followed.
pub async fn plan_logout(gw: &Gateway, p: &LogoutParams) -> Result<LogoutPlan, DomainError> {
    let mut client_id = p.client_id.clone();
    let mut hint_sub = None;
    if let Some(h) = p.id_token_hint.as_deref().filter(|h| !h.is_empty()) {
        let claims =
            jwt::verify_id_token_hint(&gw.keys.current(), h, &gw.issuer).map_err(|_| {
                DomainError::InvalidRequest(
                    "id_token_hint is not a valid ID token of this provider".into(),
                )
            })?;
        let aud = match &claims["aud"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a.first().and_then(|v| v.as_str()).map(str::to_owned),
            _ => None,
        };
        if let (Some(given), Some(aud)) = (&client_id, &aud)
            && given != aud
        {
            return Err(DomainError::InvalidRequest(
                "client_id does not match the id_token_hint".into(),
            ));
        }
        client_id = aud;
        hint_sub = claims["sub"].as_str().map(str::to_owned);
    }
    let mut redirect = None;
    if let (Some(uri), Some(cid)) = (p.post_logout_redirect_uri.as_deref(), client_id.as_deref())
        && let Some(client) = clients::find(gw, cid).await?
        && client.post_logout_allowed(uri)
    {
        let mut pairs = Vec::new();
        if let Some(s) = p.state.as_deref() {
            pairs.push(("state", s));
        }
        redirect = Some(with_query(uri, &pairs));
    }
    Ok(LogoutPlan {
        redirect,
        confirmed: hint_sub.is_some(),
        hint_sub,
    })
}

/// Ends the browser's session (if its cookie names one) and audits it.
pub async fn logout(gw: &Gateway, cookie: Option<&str>, ip: IpAddr) -> Result<(), DomainError> {
    let Some(c) = cookie else { return Ok(()) };
    let Some((sid, _)) = c.split_once('.') else {
        return Ok(());
    };
    if !sessions::valid_sid(sid) {
        return Ok(());
    }
    // Only the holder of the cookie's secret may end it.
    let Some((session, _)) = sessions::current_any(gw, c).await? else {
        return Ok(());
    };
    sessions::end(gw, &session.id).await?;
    super::signin::audit(
        gw,
        &session.user_id,
        "logout",
        ip,
        json!({"session": session.id}),
    )
    .await;
    Ok(())
}
