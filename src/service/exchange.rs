//! Token exchange (RFC 8693, docs/api.md, "People") for subject tokens of this gateway:
//! an authenticated confidential client presents a Tessera access token and
//! gets another for a narrower `scope` or another `audience`, or, with an
//! `actor_token`, a delegated one carrying `act`.
//!
//! The rules:
//! - the requesting client proves itself with its secret (never a public
//!   key) and must list the grant in its `grantTypes`;
//! - subject and actor tokens are checked as the gateway's own API checks
//!   bearer tokens (`auth::check_claims`), whatever their audience: a token
//!   minted for another service may be exchanged, as RFC 8693 intends;
//! - the new token never holds more than the subject token and its subject
//!   hold now, never outlives the subject token, and keeps the subject
//!   token's `iat_ms`, so whatever revokes the subject's state (subject,
//!   session) covers the new token too;
//! - an application subject may be sent to its own allowed audiences; a
//!   person to those of the requesting client, which an administrator
//!   registered for that client to call on people's behalf;
//! - never a refresh token.
//!
//! An upstream provider's ID token (`subject_token_type` `id_token` or
//! `jwt`) from a provider with `token_exchange = true` is checked in full
//! (but for `nonce`), mapped to its linked user under the single sign-on
//! identity rules, the role map applied, and exchanged for that user's
//! access token, bounded by the requesting client.

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::Gateway;
use super::auth::{self, Principal};
use super::grants::{Grants, narrow};
use super::metrics::{ExchangeOutcome, Grant};
use super::people::tokens::split_scope;
use super::token::{ExchangeRequest, IssuedToken, audience_for, authenticate_client, load_app};
use crate::crypto::{jwt, random};
use crate::domain::claims::Actor;
use crate::domain::permission::builtin::TOKENS_IMPERSONATE;
use crate::domain::{AccessClaims, DomainError, KeyType, Permission};

/// The grant type (RFC 8693 §2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The one token type accepted and issued: this gateway's access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// An upstream provider's ID token.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// A generic JWT: accepted as an upstream ID token too.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Longest `act` chain: each delegation nests one more level, and tokens
/// must stay small enough for headers.
const MAX_ACT_DEPTH: usize = 8;

/// A token-exchange request, as the handler read it.
pub struct TokenExchange {
    /// The requesting client's credentials and address (its `scope` and
    /// `audience` are ignored: those below apply).
    pub client: ExchangeRequest,
    /// `subject_token`.
    pub subject_token: Option<SecretString>,
    /// `subject_token_type`.
    pub subject_token_type: Option<String>,
    /// `actor_token`, for delegation.
    pub actor_token: Option<SecretString>,
    /// `actor_token_type`, required with `actor_token`.
    pub actor_token_type: Option<String>,
    /// `requested_token_type`: when given, must be the access-token type.
    pub requested_token_type: Option<String>,
    /// Space-separated scope to narrow to.
    pub scope: Option<String>,
    /// Another audience (`audience` or `resource`).
    pub audience: Option<String>,
    /// `audience` and `resource` named different targets: refused with
    /// `invalid_target`, but only once the client has authenticated (a
    /// stranger learns nothing before that).
    pub conflicting_targets: bool,
}

impl std::fmt::Debug for TokenExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchange")
            .field("client", &self.client)
            .field("subject_token", &"<hidden>")
            .field("subject_token_type", &self.subject_token_type)
            .field(
                "actor_token",
                &self.actor_token.as_ref().map(|_| "<hidden>"),
            )
            .field("actor_token_type", &self.actor_token_type)
            .field("requested_token_type", &self.requested_token_type)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .finish()
    }
}

/// Accepts only this gateway's access tokens; names the type only when it
/// is one we know of (the value is the caller's input).
fn check_type(given: Option<&str>, name: &str) -> Result<(), DomainError> {
    match given {
        Some(ACCESS_TOKEN_TYPE) => Ok(()),
        Some(ID_TOKEN_TYPE | JWT_TOKEN_TYPE) => Err(DomainError::InvalidRequest(format!(
            "an upstream ID token is accepted only as the subject_token; {name} must be {ACCESS_TOKEN_TYPE}"
        ))),
        Some(_) => Err(DomainError::InvalidRequest(format!(
            "{name} is not supported; use {ACCESS_TOKEN_TYPE}"
        ))),
        None => Err(DomainError::InvalidRequest(format!("{name} is required"))),
    }
}

/// Checks a presented token in full and returns its claims and its holder
/// as the gateway sees them now. Every way it can be bad is one answer.
async fn checked(
    gw: &Gateway,
    token: &SecretString,
    ip: std::net::IpAddr,
    name: &str,
) -> Result<(AccessClaims, Principal), DomainError> {
    let bad = || DomainError::InvalidRequest(format!("the {name} is invalid, expired or revoked"));
    let claims: AccessClaims = jwt::verify_any_audience(
        &gw.keys.current(),
        token.expose_secret(),
        &gw.issuer,
        gw.policy.leeway,
    )
    .map_err(|e| {
        tracing::debug!(reason = %e, token = name, "token exchange refused a token");
        bad()
    })?;
    // Within the leeway a token still verifies, but nothing can be minted
    // that would not outlive it.
    if claims.exp <= Utc::now().timestamp() {
        return Err(bad());
    }
    match auth::check_claims(gw, claims.clone(), ip).await {
        Ok(holder) => Ok((claims, holder)),
        Err(DomainError::InvalidToken | DomainError::IpNotAllowed(_)) => Err(bad()),
        Err(e) => Err(e),
    }
}

/// The OIDC words and the permission words to grant: what was asked for,
/// each word held by the subject token (OIDC words in its `scope`,
/// permissions in what its holder still holds). `None` permissions: all.
fn requested_scope(
    subject: &AccessClaims,
    holder: &Principal,
    requested: Option<&str>,
) -> Result<(Vec<String>, Option<Vec<String>>), DomainError> {
    // The subject's scope was minted here; a failure leaves no OIDC words.
    let (held_oidc, _) = split_scope(&subject.scope).unwrap_or_default();
    // No refresh token is ever issued, so `offline_access` is never granted.
    let granted_oidc = |words: Vec<String>| -> Vec<String> {
        words
            .into_iter()
            .filter(|w| w != "offline_access")
            .collect()
    };
    let Some(requested) = requested.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok((granted_oidc(held_oidc), None));
    };
    let (oidc, perms) = split_scope(requested)?;
    let mut missing: Vec<String> = oidc
        .iter()
        .filter(|w| !held_oidc.contains(w))
        .cloned()
        .collect();
    missing.extend(
        perms
            .iter()
            .filter(|w| {
                Permission::parse(w).map_or(true, |p| {
                    !Permission::any_covers(&holder.permissions, &p)
                        && !subject
                            .access
                            .iter()
                            .any(|a| Permission::any_covers(&a.permissions, &p))
                })
            })
            .cloned(),
    );
    if !missing.is_empty() {
        return Err(DomainError::InvalidScope(format!(
            "the subject token does not hold: {}",
            crate::domain::error::listed(missing.iter().map(String::as_str))
        )));
    }
    Ok((granted_oidc(oidc), Some(perms)))
}

/// The subject's grants as of now: the permissions its holder still holds
/// of those the token carries, the token's resource-limited grants, and its
/// roles with what each grants today (a role deleted since is dropped).
async fn subject_grants(
    gw: &Gateway,
    subject: &AccessClaims,
    holder: &Principal,
) -> Result<Grants, DomainError> {
    let mut role_grants = Vec::with_capacity(subject.roles.len());
    for name in &subject.roles {
        if let Some(role) = gw.roles.get_role(name).await? {
            role_grants.push((name.clone(), role.permissions));
        }
    }
    let now = Utc::now();
    Ok(Grants {
        roles: role_grants.iter().map(|(n, _)| n.clone()).collect(),
        role_grants,
        as_of_ms: now.timestamp_millis(),
        for_version: now,
        permissions: holder.permissions.clone(),
        access: subject.access.clone(),
    })
}

/// Whether `actor` may act for `subject`: the subject token's `may_act`
/// names it, or the actor holds `tokens:impersonate` now.
fn may_act_for(subject: &AccessClaims, actor: &AccessClaims, actor_holder: &Principal) -> bool {
    subject
        .may_act
        .as_ref()
        .is_some_and(|m| m.names(&actor.sub, &actor.client_id))
        || actor_holder.require(TOKENS_IMPERSONATE).is_ok()
}

/// Exchanges a Tessera access token for another (RFC 8693).
pub async fn exchange(gw: &Gateway, req: TokenExchange) -> Result<IssuedToken, DomainError> {
    let started = gw.metrics.start();
    let result = exchange_timed(gw, req).await;
    gw.metrics
        .exchange(started, Grant::TokenExchange, ExchangeOutcome::of(&result));
    result
}

async fn exchange_timed(gw: &Gateway, req: TokenExchange) -> Result<IssuedToken, DomainError> {
    let ip = req.client.client_ip;
    let (client_snap, _) = authenticate_client(gw, &req.client).await?;
    let client = &client_snap.stored.app;
    if client.key_type != KeyType::Secret {
        return Err(DomainError::UnauthorizedClient(
            "a public key may not use the token-exchange grant".into(),
        ));
    }
    if !client.allows_grant(GRANT_TYPE) {
        return Err(DomainError::UnauthorizedClient(
            "this client may not use the token-exchange grant (it must list it in grantTypes)"
                .into(),
        ));
    }
    if req.conflicting_targets {
        return Err(DomainError::AudienceNotAllowed(
            "audience and resource name different targets; name one".into(),
        ));
    }
    if req
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return Err(DomainError::InvalidRequest(format!(
            "requested_token_type: only {ACCESS_TOKEN_TYPE} is issued"
        )));
    }
    if matches!(
        req.subject_token_type.as_deref(),
        Some(ID_TOKEN_TYPE | JWT_TOKEN_TYPE)
    ) {
        return exchange_id_token(gw, &client_snap, req).await;
    }
    check_type(req.subject_token_type.as_deref(), "subject_token_type")?;
    let subject_token = req
        .subject_token
        .ok_or_else(|| DomainError::InvalidRequest("subject_token is required".into()))?;
    let actor = match (req.actor_token, req.actor_token_type.as_deref()) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(DomainError::InvalidRequest(
                "actor_token_type is required with actor_token".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(DomainError::InvalidRequest(
                "actor_token_type is given without actor_token".into(),
            ));
        }
        (Some(token), Some(t)) => {
            check_type(Some(t), "actor_token_type")?;
            Some(token)
        }
    };
    let (subject, holder) = checked(gw, &subject_token, ip, "subject_token").await?;
    let actor = match actor {
        None => None,
        Some(token) => {
            let (actor, actor_holder) = checked(gw, &token, ip, "actor_token").await?;
            if !may_act_for(&subject, &actor, &actor_holder) {
                return Err(DomainError::InvalidRequest(format!(
                    "the actor_token may not act for this subject: its subject is not named by may_act and lacks {TOKENS_IMPERSONATE}"
                )));
            }
            Some(actor)
        }
    };

    let (oidc, perms) = requested_scope(&subject, &holder, req.scope.as_deref())?;
    let grants = subject_grants(gw, &subject, &holder).await?;
    let narrowed = narrow(
        &grants,
        perms.map(|p| p.join(" ")).as_deref(),
        &gw.catalogue,
    )?;
    // A person goes where the requesting client may go; an application
    // where it may itself go.
    let audience = if holder.is_person() {
        audience_for(gw, client, req.audience.as_deref())?
    } else {
        let Some(app) = load_app(gw, &subject.sub).await? else {
            return Err(DomainError::InvalidRequest(
                "the subject_token is invalid, expired or revoked".into(),
            ));
        };
        audience_for(gw, &app.stored.app, req.audience.as_deref())?
    };
    let (act, may_act) = match &actor {
        Some(a) => {
            let chain = Actor {
                sub: a.sub.clone(),
                client_id: Some(a.client_id.clone()),
                act: subject.act.clone().map(Box::new),
            };
            if chain.depth() > MAX_ACT_DEPTH {
                return Err(DomainError::InvalidRequest(format!(
                    "the delegation chain is longer than {MAX_ACT_DEPTH} actors"
                )));
            }
            // The delegation is spent: the result names its actor.
            (Some(chain), None)
        }
        // A narrowed token stays the subject's, delegation and all.
        None => (subject.act.clone(), subject.may_act.clone()),
    };

    let ttl = client
        .token_ttl
        .map_or(gw.policy.token_ttl, |t| t.min(gw.policy.token_ttl));
    let now = Utc::now();
    let iat = now.timestamp();
    let exp = subject
        .exp
        .min(iat.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX / 2)));
    let permissions: Vec<String> = narrowed
        .permissions
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    let mut words = oidc;
    words.extend(permissions.iter().cloned());
    let scope = words.join(" ");
    let claims = AccessClaims {
        iss: gw.issuer.clone(),
        sub: subject.sub.clone(),
        aud: audience,
        exp,
        iat,
        iat_ms: Some(super::revocation::issued_ms(&subject)),
        nbf: iat,
        jti: random::token_id().map_err(|e| DomainError::Internal(e.to_string()))?,
        client_id: client.id.clone(),
        scope: scope.clone(),
        roles: narrowed.roles,
        permissions,
        access: narrowed.access,
        env: subject.env.clone(),
        key_type: subject.key_type.clone(),
        allowed_cidrs: subject.allowed_cidrs.clone(),
        sid: subject.sid.clone(),
        amr: subject.amr.clone(),
        idp: subject.idp.clone(),
        act,
        may_act,
    };
    let access_token =
        jwt::mint(&gw.keys.current(), &claims).map_err(|e| DomainError::Internal(e.to_string()))?;
    gw.metrics.token_issued();
    recorded(
        gw,
        client,
        ip,
        &subject.sub,
        json!({
            "client": client.id,
            "subject": subject.sub,
            "actor": actor.as_ref().map(|a| &a.sub),
            "session": subject.sid,
            "audience": claims.aud,
            "scope": scope,
            "jti": claims.jti,
        }),
    )
    .await;
    tracing::debug!(client = %client.id, subject = %subject.sub, "token exchanged");
    Ok(IssuedToken {
        access_token,
        expires_in: u64::try_from(exp - iat).unwrap_or(0),
        scope: scope.into(),
    })
}

/// Counts an exchange as a use of the calling client and audits it as
/// `token.exchange` by that client (`details` never holds a token).
async fn recorded(
    gw: &Gateway,
    client: &crate::domain::Application,
    ip: std::net::IpAddr,
    subject: &str,
    details: serde_json::Value,
) {
    gw.usage.record(&client.id, Utc::now(), ip);
    let by = Principal {
        subject: client.id.clone(),
        permissions: Vec::new(),
        owner: client.owner.clone(),
        ip,
        session: None,
    };
    super::audit::record(gw, &by, "token.exchange", subject, details).await;
}

/// Exchanges an upstream provider's ID token for an access token of the
/// user it is linked to (docs/api.md, "Single sign-on").
async fn exchange_id_token(
    gw: &Gateway,
    client_snap: &std::sync::Arc<crate::service::cache::AppSnapshot>,
    req: TokenExchange,
) -> Result<IssuedToken, DomainError> {
    use super::sso::flow::{self, Refused};
    let ip = req.client.client_ip;
    let client = &client_snap.stored.app;
    if req.actor_token.is_some() || req.actor_token_type.is_some() {
        return Err(DomainError::InvalidRequest(
            "delegation (actor_token) is not supported with an upstream ID token".into(),
        ));
    }
    let token = req
        .subject_token
        .ok_or_else(|| DomainError::InvalidRequest("subject_token is required".into()))?;
    let refused_provider = || {
        DomainError::InvalidRequest(
            "no upstream identity provider accepts token exchange for this subject_token".into(),
        )
    };
    let provider = gw
        .sso
        .claimed_by(token.expose_secret())
        .ok_or_else(refused_provider)?;
    if !provider.settings.token_exchange {
        return Err(refused_provider());
    }
    let claims = match gw
        .sso
        .check_id_token(&provider, token.expose_secret(), None, gw.policy.leeway)
        .await
    {
        Ok(c) => c,
        Err(super::sso::SsoError::Unavailable(e)) => {
            tracing::warn!(idp = %provider.name(), error = %e, "identity provider unavailable during token exchange");
            return Err(DomainError::Unavailable);
        }
        Err(e) => {
            flow::refused(
                gw,
                provider.name(),
                "-",
                &Refused::BadIdToken(e.to_string()),
                ip,
            )
            .await;
            return Err(DomainError::InvalidRequest(
                "the subject_token is invalid or expired".into(),
            ));
        }
    };
    // RFC 8693 §2.2.2: a subject_token unacceptable by policy (an identity
    // linked to nobody, a disabled user) is invalid_request, as on the
    // Tessera-token path.
    let to_grant_error = |r: Refused| match r {
        Refused::Internal(e) => e,
        r => DomainError::InvalidRequest(format!(
            "the subject_token's identity cannot be used here ({})",
            r.reason()
        )),
    };
    let user = match flow::user_for(gw, &provider, &claims, ip).await {
        Ok(u) => u,
        Err(r) => {
            flow::refused(gw, provider.name(), "-", &r, ip).await;
            return Err(to_grant_error(r));
        }
    };
    flow::apply_role_map(gw, &provider, &user.user.id, &claims, ip)
        .await
        .map_err(to_grant_error)?;
    let people_client = super::people::clients::Client {
        id: client.id.clone(),
        public: false,
        redirect_uris: client.redirect_uris.clone(),
        post_logout_redirect_uris: client.post_logout_redirect_uris.clone(),
        app: Some(client_snap.clone()),
    };
    let audience = audience_for(gw, client, req.audience.as_deref())?;
    // Never outlives the ID token, as a Tessera subject token bounds its
    // exchange.
    let left = u64::try_from(claims.exp.saturating_sub(Utc::now().timestamp())).unwrap_or(0);
    let ttl = client
        .token_ttl
        .map_or(gw.policy.token_ttl, |t| t.min(gw.policy.token_ttl))
        .min(left);
    if ttl == 0 {
        return Err(DomainError::InvalidRequest(
            "the subject_token is invalid or expired".into(),
        ));
    }
    let (access_token, expires_in, scope) = super::people::tokens::issue_federated(
        gw,
        super::people::tokens::Federated {
            user_id: &user.user.id,
            client: &people_client,
            scope: req.scope.as_deref().unwrap_or(""),
            idp: provider.name(),
            audience: audience.clone(),
            ttl,
        },
    )
    .await?;
    recorded(
        gw,
        client,
        ip,
        &user.user.id,
        json!({
            "client": client.id,
            "subject": user.user.id,
            "idp": provider.name(),
            "audience": audience,
            "scope": scope,
        }),
    )
    .await;
    Ok(IssuedToken {
        access_token,
        expires_in,
        scope: scope.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::claims::MayAct;

    #[test]
    fn only_access_tokens_are_accepted() {
        assert!(check_type(Some(ACCESS_TOKEN_TYPE), "t").is_ok());
        for t in [Some(ID_TOKEN_TYPE), Some(JWT_TOKEN_TYPE)] {
            let e = check_type(t, "t").unwrap_err().to_string();
            assert!(e.contains("only as the subject_token"), "{e}");
        }
        let e = check_type(Some("urn:x:secret-value"), "t").unwrap_err();
        assert!(!e.to_string().contains("secret-value"));
        assert!(check_type(None, "t").is_err());
    }

    #[test]
    fn may_act_names_subject_and_optionally_client() {
        let m = MayAct {
            sub: "app_a".into(),
            client_id: None,
        };
        assert!(m.names("app_a", "anything"));
        assert!(!m.names("app_b", "app_a"));
        let m = MayAct {
            sub: "usr_1".into(),
            client_id: Some("app_c".into()),
        };
        assert!(m.names("usr_1", "app_c"));
        assert!(!m.names("usr_1", "app_d"));
    }

    #[test]
    fn act_chains_count_their_depth() {
        let inner = Actor {
            sub: "a".into(),
            client_id: None,
            act: None,
        };
        let outer = Actor {
            sub: "b".into(),
            client_id: Some("c".into()),
            act: Some(Box::new(inner)),
        };
        assert_eq!(outer.depth(), 2);
        let v = serde_json::to_value(&outer).unwrap();
        assert_eq!(v["act"]["sub"], "a");
        assert!(v["act"].get("act").is_none() && v["act"].get("client_id").is_none());
    }
}
