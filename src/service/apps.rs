//! The application lifecycle: create, read, list, revoke.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::Gateway;
use super::audit;
use super::auth::Principal;
use super::authz::{self, Holdings};
use super::roles::check_roles_exist;
use crate::crypto::secret;
use crate::domain::access::validate_path;
use crate::domain::application::{GATEWAY_OWNER, validate_audience, validate_text};
use crate::domain::permission::builtin::{API_KEYS_MANAGE, API_KEYS_READ};
use crate::domain::ratelimit::Window;
use crate::domain::{
    AccessRule, AppStatus, Application, DomainError, Environment, IpNet, KeyType, Permission,
    RateLimit,
};
use crate::store::{AppFilter, ListQuery, PreviousSecret, StoredApp};
use serde_json::json;

/// What an operator asks for when creating an application.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "billing", "description": "Billing service", "permissions": ["content:read"]}))]
pub struct CreateApp {
    /// Human name (required, at most 100 characters), unique ignoring case
    /// (409 otherwise) and not of the form of an id (`app_` and 16 letters
    /// or digits). It may stand for the id as `AppId` or `client_id`.
    #[schema(
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// Free text (at most 1000 characters).
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub description: String,
    /// `secret` (default) or `public`.
    #[serde(default, rename = "type")]
    pub key_type: KeyType,
    /// `live` (default) or `test`.
    #[serde(default)]
    pub environment: Environment,
    /// Granted permissions (at most 256, each in the catalogue).
    #[serde(default)]
    #[schema(value_type = Vec<crate::domain::Permission>, max_items = 256)]
    pub permissions: Vec<String>,
    /// Roles held (each must exist).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Grants limited to resources (at most 64).
    #[serde(default)]
    #[schema(max_items = 64)]
    pub access_rules: Vec<AccessRuleInput>,
    /// A user id, or `gateway`; default: the caller's own owner.
    #[serde(default)]
    pub owner: Option<String>,
    /// Extra audiences it may request (at most 32, each 1 to 256 printable
    /// ASCII characters without spaces).
    #[serde(default)]
    #[schema(max_items = 32)]
    pub audiences: Vec<String>,
    /// IP addresses and CIDRs allowed to exchange (at most 100; empty:
    /// anywhere).
    #[serde(default)]
    #[schema(max_items = 100)]
    pub allowed_ips: Vec<String>,
    /// Expiry; must be in the future.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Own token lifetime, 10 s up to the gateway's `token_ttl` (which is at
    /// most 86400).
    #[serde(default)]
    #[schema(minimum = 10, maximum = 86400)]
    pub token_ttl: Option<u64>,
    /// Where people signing in through this application may be sent back
    /// (it becomes an OAuth client; `https`, or `http` on loopback; at most 20).
    #[serde(default)]
    #[schema(max_items = 20)]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send people (at most 20).
    #[serde(default)]
    #[schema(max_items = 20)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Grants this client may use (default: `client_credentials`, plus
    /// `authorization_code` and `refresh_token` with `redirectUris`).
    #[serde(default)]
    #[schema(max_items = 5)]
    pub grant_types: Vec<String>,
    /// Its request budget at `/auth/forward` (docs/api.md, "At the edge"); absent: the
    /// gateway's default, if one is configured.
    #[serde(default)]
    pub rate_limit: Option<RateLimitInput>,
}

/// A request budget as a request writes it: `{"requests": 100, "per": "1m"}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitInput {
    /// Requests allowed in one window.
    #[schema(minimum = 1, maximum = 1000000)]
    pub requests: u32,
    /// The window: a whole number and a unit (`s`, `m`, `h`, `d`), at most
    /// one day.
    #[schema(pattern = r"^[0-9]{1,6}[smhd]$", example = "1m")]
    pub per: String,
}

/// Checks a budget as written (422 naming the field: a window that reads
/// well but is too long is a rule, not a shape).
fn parse_rate_limit(input: Option<RateLimitInput>) -> Result<Option<RateLimit>, DomainError> {
    let Some(input) = input else {
        return Ok(None);
    };
    let limit = RateLimit {
        requests: input.requests,
        per: Window::parse(&input.per)?,
    };
    limit.validate()?;
    Ok(Some(limit))
}

/// An application as the API shows it: the record plus its current status.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    /// The record.
    #[serde(flatten)]
    pub app: Application,
    /// `active`, `revoked` or `expired`, now.
    pub status: AppStatus,
}

impl AppView {
    /// The view of `app` at this moment.
    pub fn of(app: Application) -> Self {
        let status = app.status_at(Utc::now());
        Self { app, status }
    }
}

/// A created application with its secret, to be shown exactly once.
pub struct CreatedApp {
    /// The record.
    pub view: AppView,
    /// The secret; dropped (and zeroed) after the response is written.
    pub secret: SecretString,
}

impl std::fmt::Debug for CreatedApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApp")
            .field("view", &self.view)
            .field("secret", &"<hidden>")
            .finish()
    }
}

/// An access rule as a request writes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleInput {
    /// Where it holds (`cluster:c1/project:*`): 1 to 16 segments of
    /// `type:name`, `type:*` or `*`.
    #[schema(
        max_length = 512,
        pattern = r"^(\*|[A-Za-z0-9_.-]+:([A-Za-z0-9_.-]+|\*))(/(\*|[A-Za-z0-9_.-]+:([A-Za-z0-9_.-]+|\*))){0,15}$"
    )]
    pub scope: String,
    /// Roles granted there (each must exist).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions granted there (each in the catalogue).
    #[serde(default)]
    #[schema(value_type = Vec<crate::domain::Permission>, max_items = 256)]
    pub permissions: Vec<String>,
}

/// Parses access rules: scopes well-formed, permissions in the catalogue,
/// roles existing, at most 64 rules.
async fn parse_rules(
    gw: &Gateway,
    raw: &[AccessRuleInput],
) -> Result<Vec<AccessRule>, DomainError> {
    if raw.len() > 64 {
        return Err(DomainError::Validation("at most 64 access rules".into()));
    }
    let mut rules = Vec::with_capacity(raw.len());
    for r in raw {
        validate_path(&r.scope, false)?;
        let permissions = parse_permissions(&r.permissions)?;
        gw.catalogue.check_all(&permissions)?;
        let mut roles = r.roles.clone();
        roles.sort();
        roles.dedup();
        check_roles_exist(gw, &roles).await?;
        if roles.is_empty() && permissions.is_empty() {
            return Err(DomainError::Validation(format!(
                "access rule {} grants nothing: give it roles or permissions",
                crate::domain::error::shown(&r.scope)
            )));
        }
        rules.push(AccessRule {
            scope: r.scope.clone(),
            roles,
            permissions,
        });
    }
    Ok(rules)
}

/// Checks what an application would hold, everything expanded, against
/// the catalogue and the key type: a public key holds only catalogue entries
/// marked public (no wildcards). Returns the holdings for the authorization
/// rule.
async fn checked_holdings(gw: &Gateway, app: &Application) -> Result<Holdings, DomainError> {
    gw.catalogue.check_all(&app.permissions)?;
    let held = authz::app_holdings(gw, app).await?;
    if app.key_type == KeyType::Public {
        let not_public: Vec<&str> = held
            .0
            .iter()
            .filter(|g| !gw.catalogue.is_public(g))
            .map(Permission::as_str)
            .collect();
        if !not_public.is_empty() {
            return Err(DomainError::Validation(format!(
                "a public key may hold only permissions marked public, not: {}",
                crate::domain::error::listed(not_public)
            )));
        }
    }
    Ok(held)
}

/// The owner a new or changed application gets.
async fn resolve_owner(
    gw: &Gateway,
    actor: &Principal,
    requested: Option<String>,
) -> Result<String, DomainError> {
    match requested {
        None => Ok(actor.owner.clone()),
        Some(o) if o == GATEWAY_OWNER => {
            if actor.owner == GATEWAY_OWNER {
                Ok(o)
            } else {
                Err(DomainError::InsufficientPermissions(
                    "only callers owned by the gateway may make the gateway an owner".into(),
                ))
            }
        }
        Some(o) => match gw.users.get_user(&o).await? {
            Some(_) => Ok(o),
            None => Err(DomainError::Validation(format!(
                "unknown owner {}: not a user id",
                crate::domain::error::shown(&o)
            ))),
        },
    }
}

/// Parses permissions, naming every malformed one in a single 422.
pub fn parse_permissions(raw: &[String]) -> Result<Vec<Permission>, DomainError> {
    if raw.len() > 256 {
        return Err(DomainError::Validation("at most 256 permissions".into()));
    }
    let bad: Vec<String> = raw
        .iter()
        .filter(|p| Permission::parse(p).is_err())
        .map(|p| crate::domain::error::shown(p))
        .collect();
    if !bad.is_empty() {
        return Err(DomainError::Validation(format!(
            "invalid permission(s) {}: expected \"resource:action\", \"resource:*\" or \"*\"",
            bad.join(", ")
        )));
    }
    let mut perms: Vec<Permission> = raw
        .iter()
        .filter_map(|p| Permission::parse(p).ok())
        .collect();
    perms.sort();
    perms.dedup();
    Ok(perms)
}

/// Parses an IP allow-list (at most 100 entries).
fn parse_ips(raw: &[String]) -> Result<Vec<IpNet>, DomainError> {
    if raw.len() > 100 {
        return Err(DomainError::Validation(
            "at most 100 allowedIps entries".into(),
        ));
    }
    let mut nets = raw
        .iter()
        .map(|s| IpNet::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    nets.dedup();
    Ok(nets)
}

fn check_audiences(gw: &Gateway, env: Environment, auds: &[String]) -> Result<(), DomainError> {
    if auds.len() > 32 {
        return Err(DomainError::Validation("at most 32 audiences".into()));
    }
    for a in auds {
        validate_audience(a)?;
        if env == Environment::Test && gw.policy.live_audiences.contains(a) {
            return Err(DomainError::Validation(format!(
                "audience {} is reserved to live keys",
                crate::domain::error::shown(a)
            )));
        }
    }
    Ok(())
}

fn check_expiry(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<(), DomainError> {
    match t {
        Some(t) if t <= now => Err(DomainError::Validation(
            "expiresAt must be in the future".into(),
        )),
        _ => Ok(()),
    }
}

fn dedup_sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn check_ttl(gw: &Gateway, ttl: Option<u64>) -> Result<(), DomainError> {
    match ttl {
        Some(ttl) if !(10..=gw.policy.token_ttl).contains(&ttl) => {
            Err(DomainError::Validation(format!(
                "tokenTtl must be between 10 and {} seconds",
                gw.policy.token_ttl
            )))
        }
        _ => Ok(()),
    }
}

/// Creates an application and its secret.
pub async fn create(
    gw: &Gateway,
    actor: &Principal,
    req: CreateApp,
) -> Result<CreatedApp, DomainError> {
    authz::require(gw, actor, API_KEYS_MANAGE, "app.create", "-").await?;
    let now = Utc::now();
    check_name(&req.name)?;
    validate_text("description", &req.description, 1000, false)?;
    let permissions = parse_permissions(&req.permissions)?;
    let allowed_ips = parse_ips(&req.allowed_ips)?;
    check_audiences(gw, req.environment, &req.audiences)?;
    check_expiry(req.expires_at, now)?;
    check_ttl(gw, req.token_ttl)?;
    let rate_limit = parse_rate_limit(req.rate_limit)?;
    let access_rules = parse_rules(gw, &req.access_rules).await?;
    let mut roles = req.roles;
    roles.sort();
    roles.dedup();
    check_roles_exist(gw, &roles).await?;
    let owner = resolve_owner(gw, actor, req.owner).await?;
    let id = secret::new_app_id().map_err(|e| DomainError::Internal(e.to_string()))?;
    let generated = secret::generate(&gw.policy.key_prefix, req.key_type, req.environment, &id)
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let app = Application {
        id,
        name: req.name.trim().to_owned(),
        description: req.description,
        owner,
        key_type: req.key_type,
        environment: req.environment,
        prefix: generated.prefix,
        roles,
        permissions,
        access_rules,
        audiences: req.audiences,
        allowed_ips,
        expires_at: req.expires_at,
        token_ttl: req.token_ttl,
        redirect_uris: req.redirect_uris,
        post_logout_redirect_uris: req.post_logout_redirect_uris,
        grant_types: dedup_sorted(req.grant_types),
        rate_limit,
        revoked_at: None,
        leaked_at: None,
        created_at: now,
        updated_at: now,
        last_used_at: None,
        last_used_ip: None,
        use_count: 0,
    };
    super::people::clients::check_client(&app)?;
    let after = checked_holdings(gw, &app).await?;
    authz::guard_audited(gw, actor, "app.create", "-", None, Some(&after)).await?;
    // A taken name is answered before argon2 runs; the store's insert
    // stays the authority (two creates racing for one name meet there).
    if gw.apps.find_by_name(&app.name).await?.is_some() {
        return Err(crate::store::StoreError::Conflict {
            what: crate::store::Entity::ApplicationName,
            id: app.name.clone(),
        }
        .into());
    }
    let secret_hash = gw.hasher.hash(&generated.secret).await?;
    gw.apps
        .insert(&StoredApp {
            app: app.clone(),
            secret_hash,
            secret_hint: Some(generated.hint),
            previous_secret: None,
        })
        .await?;
    tracing::info!(app_id = %app.id, actor = %actor.subject, "application created");
    audit::record(gw, actor, "app.create", &app.id, audit::snapshot(&app)).await;
    Ok(CreatedApp {
        view: AppView::of(app),
        secret: generated.secret,
    })
}

/// Whoever may manage keys may also read them.
async fn require_read(gw: &Gateway, actor: &Principal, target: &str) -> Result<(), DomainError> {
    if actor.require(API_KEYS_MANAGE).is_ok() {
        return Ok(());
    }
    authz::require(gw, actor, API_KEYS_READ, "app.read", target).await
}

/// Reads one application.
pub async fn get(gw: &Gateway, actor: &Principal, id: &str) -> Result<AppView, DomainError> {
    require_read(gw, actor, id).await?;
    Ok(AppView::of(load(gw, id).await?.app))
}

/// Listing parameters as they arrive from the query string.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<usize>,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
    /// Filter by environment.
    pub environment: Option<Environment>,
    /// Filter by type.
    #[serde(rename = "type")]
    pub key_type: Option<KeyType>,
    /// Filter by status.
    pub status: Option<AppStatus>,
    /// Filter by owner.
    pub owner: Option<String>,
    /// Search: name, id or prefix contains this, ignoring case (at most
    /// 100 characters).
    #[param(max_length = 100)]
    pub q: Option<String>,
}

/// The longest search text [`list`] accepts, in characters.
pub const MAX_SEARCH_CHARS: usize = 100;

/// One page of applications.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppPage {
    /// The applications, oldest first.
    pub data: Vec<AppView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Lists applications, paged and filtered.
pub async fn list(
    gw: &Gateway,
    actor: &Principal,
    params: ListParams,
) -> Result<AppPage, DomainError> {
    require_read(gw, actor, "-").await?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(DomainError::Validation(
            "limit must be between 1 and 200".into(),
        ));
    }
    let search = params.q.filter(|q| !q.trim().is_empty());
    if search
        .as_deref()
        .is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS)
    {
        return Err(DomainError::Validation(format!(
            "q must be at most {MAX_SEARCH_CHARS} characters"
        )));
    }
    let after = match params.cursor {
        Some(c) => {
            let raw = URL_SAFE_NO_PAD
                .decode(c.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| DomainError::InvalidRequest("invalid cursor".into()))?;
            Some(raw)
        }
        None => None,
    };
    let page = gw
        .apps
        .list(&ListQuery {
            limit,
            after,
            filter: AppFilter {
                environment: params.environment,
                key_type: params.key_type,
                status: params.status,
                owner: params.owner,
                search: search.map(|q| q.trim().to_owned()),
            },
        })
        .await?;
    Ok(AppPage {
        data: page.items.into_iter().map(|s| AppView::of(s.app)).collect(),
        next_cursor: page.next.map(|n| URL_SAFE_NO_PAD.encode(n.as_bytes())),
    })
}

/// Revokes an application: its secret stops working at once, here, and
/// every token it minted is revoked. Revoking twice is harmless and keeps
/// the first revocation time; revoking an application a leak report
/// revoked makes that revocation final (no rotation brings it back).
pub async fn revoke(gw: &Gateway, actor: &Principal, id: &str) -> Result<AppView, DomainError> {
    authz::require(gw, actor, API_KEYS_MANAGE, "app.revoke", id).await?;
    let mut stored = load(gw, id).await?;
    authz::refuse_operator_admin(gw, id)?;
    let before = authz::app_holdings(gw, &stored.app).await?;
    authz::guard_audited(gw, actor, "app.revoke", id, Some(&before), None).await?;
    // The subject entry is written on every call, so a retry after a
    // failed write still kills the tokens already minted.
    if stored.app.revoked_at.is_none() {
        let now = Utc::now();
        let read_at = stored.app.updated_at;
        stored.app.revoked_at = Some(now);
        stored.app.updated_at = now;
        gw.apps.update(&stored, read_at).await?;
        super::revocation::revoke_subject(gw, id).await?;
        forget(gw, id);
        tracing::info!(app_id = %id, actor = %actor.subject, "application revoked");
        audit::record(gw, actor, "app.revoke", id, json!({})).await;
    } else if stored.app.leaked_at.is_some() {
        // Revoked by a leak report, which a rotation may undo; an
        // operator revoking it on top makes the revocation final.
        let read_at = stored.app.updated_at;
        stored.app.leaked_at = None;
        stored.app.updated_at = Utc::now();
        gw.apps.update(&stored, read_at).await?;
        super::revocation::revoke_subject(gw, id).await?;
        forget(gw, id);
        tracing::info!(app_id = %id, actor = %actor.subject, "leak revocation made final");
        audit::record(gw, actor, "app.revoke", id, json!({"final": true})).await;
    } else {
        super::revocation::revoke_subject(gw, id).await?;
        forget(gw, id);
    }
    Ok(AppView::of(stored.app))
}

/// What a leak report did to the application whose secret it held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeakEffect {
    /// The leaked secret was the current one: the application is now
    /// revoked, marked `leakedAt`, and every token it minted is revoked.
    Revoked,
    /// The leaked secret was the rotated-out one, still within its grace
    /// period: the grace ended and the tokens minted so far are revoked;
    /// the new secret keeps working.
    GraceEnded,
    /// The application was revoked already (by an operator or an earlier
    /// report): it stays as it is; its tokens are revoked again, harmlessly.
    AlreadyRevoked,
    /// The secret stopped working between the check and this call (a
    /// rotation, a deletion): nothing left to do.
    AlreadyDead,
}

impl LeakEffect {
    /// The word the audit log records.
    pub fn as_str(self) -> &'static str {
        match self {
            LeakEffect::Revoked => "revoked",
            LeakEffect::GraceEnded => "graceEnded",
            LeakEffect::AlreadyRevoked => "alreadyRevoked",
            LeakEffect::AlreadyDead => "alreadyDead",
        }
    }
}

/// Reads of a record changed concurrently before a leak revocation gives up.
const LEAK_WRITE_TRIES: usize = 8;

/// Kills the secret of application `id` whose argon2 hash is `matched`
/// (verified by the caller against a presented secret): the current
/// secret revokes the application as [`revoke`] does and marks it leaked;
/// the rotated-out one ends its grace period. No reach rule applies:
/// holding a genuine secret is the authority to kill it (docs/api.md, "At the edge"). A
/// change that lands between the read and the write is re-read and the
/// decision taken again, so the leaked secret is dead when this returns.
pub async fn kill_leaked_secret(
    gw: &Gateway,
    id: &str,
    matched: &str,
) -> Result<LeakEffect, DomainError> {
    for _ in 0..LEAK_WRITE_TRIES {
        let Some(mut stored) = gw.apps.get(id).await? else {
            return Ok(LeakEffect::AlreadyDead);
        };
        let now = Utc::now();
        let read_at = stored.app.updated_at;
        let effect = if *stored.secret_hash == *matched {
            if stored.app.revoked_at.is_some() {
                super::revocation::revoke_subject(gw, id).await?;
                forget(gw, id);
                return Ok(LeakEffect::AlreadyRevoked);
            }
            stored.app.revoked_at = Some(now);
            stored.app.leaked_at = Some(now);
            LeakEffect::Revoked
        } else if stored
            .previous_secret
            .as_ref()
            .is_some_and(|p| p.until > now && *p.hash == *matched)
        {
            stored.previous_secret = None;
            LeakEffect::GraceEnded
        } else {
            return Ok(LeakEffect::AlreadyDead);
        };
        stored.app.updated_at = now;
        match gw.apps.update(&stored, read_at).await {
            Ok(()) => {}
            Err(crate::store::StoreError::Stale { .. }) => continue,
            Err(crate::store::StoreError::NotFound { .. }) => return Ok(LeakEffect::AlreadyDead),
            Err(e) => return Err(e.into()),
        }
        super::revocation::revoke_subject(gw, id).await?;
        forget(gw, id);
        tracing::warn!(app_id = %id, effect = effect.as_str(), "leaked secret killed");
        return Ok(effect);
    }
    Err(DomainError::Unavailable)
}

/// `null` in JSON becomes `Some(None)`: "clear this field".
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A partial update; absent fields are left as they are.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchApp {
    /// New name (at most 100 characters), unique ignoring case (409
    /// otherwise) and not of the form of an id.
    #[schema(
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: Option<String>,
    /// New description (at most 1000 characters).
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub description: Option<String>,
    /// New permissions (replaces the list; at most 256).
    #[schema(value_type = Option<Vec<crate::domain::Permission>>, max_items = 256)]
    pub permissions: Option<Vec<String>>,
    /// New roles (replaces the list).
    pub roles: Option<Vec<String>>,
    /// New access rules (replaces the list; at most 64).
    #[schema(max_items = 64)]
    pub access_rules: Option<Vec<AccessRuleInput>>,
    /// New owner (a user id, or `gateway`): re-binds the application.
    pub owner: Option<String>,
    /// New extra audiences (replaces the list; at most 32).
    #[schema(max_items = 32)]
    pub audiences: Option<Vec<String>>,
    /// New IP allow-list (replaces it; `[]` allows anywhere; at most 100).
    #[schema(max_items = 100)]
    pub allowed_ips: Option<Vec<String>>,
    /// New expiry; `null` removes it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<chrono::DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New token lifetime (10 s up to the gateway's `token_ttl`); `null`
    /// falls back to the gateway's.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<u64>, minimum = 10, maximum = 86400)]
    pub token_ttl: Option<Option<u64>>,
    /// New redirect URIs (replaces the list).
    #[schema(max_items = 20)]
    pub redirect_uris: Option<Vec<String>>,
    /// New post-logout redirect URIs (replaces the list).
    #[schema(max_items = 20)]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// New grant types (replaces the list; `[]` restores the default).
    #[schema(max_items = 5)]
    pub grant_types: Option<Vec<String>>,
    /// New request budget at `/auth/forward`; `null` falls back to the
    /// gateway's default.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<RateLimitInput>)]
    pub rate_limit: Option<Option<RateLimitInput>>,
}

async fn load(gw: &Gateway, id: &str) -> Result<StoredApp, DomainError> {
    gw.apps
        .get(id)
        .await?
        .ok_or_else(|| DomainError::NotFound(not_found(id)))
}

/// Whether `s` has the form of a generated application id (`app_` and 16
/// letters or digits): such a value names an application by id, anything
/// else by name.
pub fn is_generated_id(s: &str) -> bool {
    s.strip_prefix(secret::APP_ID_PREFIX).is_some_and(|rest| {
        rest.len() == secret::ID_PART_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Checks a new name: the text rules, and not the form of a generated id
/// (the exchange would read it as an id, so the name could never be used).
fn check_name(name: &str) -> Result<(), DomainError> {
    validate_text("name", name, 100, true)?;
    if is_generated_id(name.trim()) {
        return Err(DomainError::Validation(format!(
            "name must not have the form of an application id ({}, then {} letters or digits)",
            secret::APP_ID_PREFIX,
            secret::ID_PART_LEN
        )));
    }
    Ok(())
}

/// Names are short: a longer value is no name, and is not looked up.
const NAME_LOOKUP_MAX: usize = 400;

/// Whether the `AppId` a client gave names application `id`, the one its
/// generated secret embeds: its id, or its name ignoring case. Read through
/// the application cache, which the exchange then reads again, so a name
/// costs no store round trip more than the id does.
pub async fn names_app(gw: &Gateway, given: &str, id: &str) -> Result<bool, DomainError> {
    if given == id {
        return Ok(true);
    }
    if given.len() > NAME_LOOKUP_MAX || is_generated_id(given) {
        return Ok(false);
    }
    Ok(super::token::load_app(gw, id).await?.is_some_and(|snap| {
        crate::store::name_key(&snap.stored.app.name) == crate::store::name_key(given)
    }))
}

/// The application an `AppId` names when the secret does not embed one
/// (an operator-chosen secret): a generated id or the configured admin's id
/// as it is; otherwise the application of that name (ignoring case), or,
/// when none has it, the value as an id. `None` when it can name nothing.
pub async fn resolve_app_id(gw: &Gateway, given: &str) -> Result<Option<String>, DomainError> {
    let as_id = crate::domain::application::validate_app_id(given).is_ok();
    let configured = gw
        .operator_admin
        .as_ref()
        .is_some_and(|(admin, _)| admin == given);
    if is_generated_id(given) || configured {
        return Ok(Some(given.to_owned()));
    }
    if given.len() <= NAME_LOOKUP_MAX
        && let Some(id) = gw.apps.find_by_name(given).await?
    {
        return Ok(Some(id));
    }
    Ok(as_id.then(|| given.to_owned()))
}

/// "application <id>", naming the id only when it is a well-formed one:
/// a 404 never echoes arbitrary input.
pub fn not_found(id: &str) -> String {
    if crate::domain::application::validate_app_id(id).is_ok() && id.len() <= 64 {
        format!("application {id}")
    } else {
        "application (no such id)".into()
    }
}

/// Whether network `new` contains all of network `old`.
fn net_covers(new: &IpNet, old: &IpNet) -> bool {
    fn split(n: &IpNet) -> Option<(std::net::IpAddr, u8)> {
        let s = n.to_string();
        let (addr, prefix) = s.split_once('/')?;
        Some((addr.parse().ok()?, prefix.parse().ok()?))
    }
    match (split(new), split(old)) {
        (Some((_, p_new)), Some((addr, p_old))) => p_new <= p_old && new.contains(addr),
        _ => false,
    }
}

/// Whether a change takes anything away from what the application's tokens
/// allow: then the tokens minted before it must stop working (docs/api.md, "Revocation").
fn narrows(before: &Application, after: &Application, held: (&Holdings, &Holdings)) -> bool {
    let (held_before, held_after) = held;
    let ips_narrowed = !after.allowed_ips.is_empty()
        && (before.allowed_ips.is_empty()
            || !before
                .allowed_ips
                .iter()
                .all(|old| after.allowed_ips.iter().any(|new| net_covers(new, old))));
    let expiry_earlier = match (before.expires_at, after.expires_at) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(old), Some(new)) => new < old,
    };
    let ttl_shorter = match (before.token_ttl, after.token_ttl) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(old), Some(new)) => new < old,
    };
    !held_before.within(&held_after.0)
        || before.roles.iter().any(|r| !after.roles.contains(r))
        || before.access_rules != after.access_rules
        || before.owner != after.owner
        || before
            .audiences
            .iter()
            .any(|a| !after.audiences.contains(a))
        || ips_narrowed
        || expiry_earlier
        || ttl_shorter
}

fn forget(gw: &Gateway, id: &str) {
    gw.app_cache.invalidate(id);
    gw.secret_cache.invalidate_app(id);
    gw.grants_cache.invalidate(id);
}

/// Changes an application. Every field is checked first; one bad field
/// means a 422 and no change at all. A change that takes anything away
/// revokes the tokens minted before it.
pub async fn patch(
    gw: &Gateway,
    actor: &Principal,
    id: &str,
    req: PatchApp,
) -> Result<AppView, DomainError> {
    authz::require(gw, actor, API_KEYS_MANAGE, "app.update", id).await?;
    let now = Utc::now();
    let mut stored = load(gw, id).await?;
    authz::refuse_operator_admin(gw, id)?;
    let old = stored.app.clone();
    let before = authz::app_holdings(gw, &old).await?;
    let app = &mut stored.app;
    if let Some(name) = req.name {
        check_name(&name)?;
        app.name = name.trim().to_owned();
    }
    if let Some(d) = req.description {
        validate_text("description", &d, 1000, false)?;
        app.description = d;
    }
    if let Some(p) = req.permissions {
        app.permissions = parse_permissions(&p)?;
    }
    if let Some(mut r) = req.roles {
        r.sort();
        r.dedup();
        check_roles_exist(gw, &r).await?;
        app.roles = r;
    }
    if let Some(rules) = req.access_rules {
        app.access_rules = parse_rules(gw, &rules).await?;
    }
    if let Some(o) = req.owner {
        app.owner = resolve_owner(gw, actor, Some(o)).await?;
    }
    if let Some(a) = req.audiences {
        check_audiences(gw, app.environment, &a)?;
        app.audiences = a;
    }
    if let Some(ips) = req.allowed_ips {
        app.allowed_ips = parse_ips(&ips)?;
    }
    if let Some(t) = req.expires_at {
        check_expiry(t, now)?;
        app.expires_at = t;
    }
    if let Some(t) = req.token_ttl {
        check_ttl(gw, t)?;
        app.token_ttl = t;
    }
    if let Some(u) = req.redirect_uris {
        app.redirect_uris = u;
    }
    if let Some(u) = req.post_logout_redirect_uris {
        app.post_logout_redirect_uris = u;
    }
    if let Some(g) = req.grant_types {
        app.grant_types = dedup_sorted(g);
    }
    if let Some(r) = req.rate_limit {
        app.rate_limit = parse_rate_limit(r)?;
    }
    super::people::clients::check_client(app)?;
    // Every PATCH, whatever its fields, passes the rule: before and after.
    let after = checked_holdings(gw, app).await?;
    authz::guard_audited(gw, actor, "app.update", id, Some(&before), Some(&after)).await?;
    let narrowed = narrows(&old, app, (&before, &after));
    app.updated_at = now;
    gw.apps.update(&stored, old.updated_at).await?;
    if narrowed {
        super::revocation::revoke_subject(gw, id).await?;
    }
    forget(gw, id);
    tracing::info!(app_id = %id, actor = %actor.subject, narrowed, "application changed");
    let mut details = audit::diff(&old, &stored.app);
    details["tokensRevoked"] = json!(narrowed);
    audit::record(gw, actor, "app.update", id, details).await;
    Ok(AppView::of(stored.app))
}

/// Longest grace period a rotation may grant, in seconds.
pub const MAX_GRACE_SECONDS: u64 = 604_800;

/// Issues a new secret. The old one keeps working for `grace_seconds`
/// (0: it stops at once), then is refused as if revoked.
pub async fn rotate(
    gw: &Gateway,
    actor: &Principal,
    id: &str,
    grace_seconds: u64,
) -> Result<CreatedApp, DomainError> {
    if grace_seconds > MAX_GRACE_SECONDS {
        return Err(DomainError::Validation(format!(
            "gracePeriodSeconds must be between 0 and {MAX_GRACE_SECONDS}"
        )));
    }
    authz::require(gw, actor, API_KEYS_MANAGE, "app.rotate", id).await?;
    let now = Utc::now();
    let mut stored = load(gw, id).await?;
    authz::refuse_operator_admin(gw, id)?;
    // Rotating reveals a secret: the caller must hold all it unlocks.
    let held = authz::app_holdings(gw, &stored.app).await?;
    authz::guard_audited(gw, actor, "app.rotate", id, Some(&held), Some(&held)).await?;
    // A key revoked because it leaked comes back only this way, with a new
    // secret and no grace for the leaked one; any other revocation is final.
    let leaked = stored.app.leaked_at.is_some();
    if stored.app.revoked_at.is_some() && !leaked {
        return Err(DomainError::Conflict(format!(
            "application {id} is revoked; a revoked key cannot be rotated"
        )));
    }
    if leaked && grace_seconds > 0 {
        return Err(DomainError::Validation(
            "this application's secret leaked: rotate it with gracePeriodSeconds 0".into(),
        ));
    }
    let generated = secret::generate(
        &gw.policy.key_prefix,
        stored.app.key_type,
        stored.app.environment,
        id,
    )
    .map_err(|_| {
        DomainError::Conflict(format!(
            "application {id} has an operator-chosen secret; change TESSERA_ADMIN_APP_SECRET instead"
        ))
    })?;
    let new_hash = gw.hasher.hash(&generated.secret).await?;
    let old_hash = std::mem::replace(&mut stored.secret_hash, new_hash);
    let old_hint = stored.secret_hint.replace(generated.hint);
    stored.previous_secret = (grace_seconds > 0).then(|| PreviousSecret {
        hash: old_hash,
        hint: old_hint,
        until: now + chrono::Duration::seconds(i64::try_from(grace_seconds).unwrap_or(0)),
    });
    stored.app.prefix = generated.prefix;
    if leaked {
        stored.previous_secret = None;
        stored.app.revoked_at = None;
        stored.app.leaked_at = None;
    }
    let read_at = std::mem::replace(&mut stored.app.updated_at, now);
    gw.apps.update(&stored, read_at).await?;
    if grace_seconds == 0 {
        // Rotated out at once: the tokens it minted die with it.
        super::revocation::revoke_subject(gw, id).await?;
    }
    forget(gw, id);
    tracing::info!(app_id = %id, actor = %actor.subject, grace_seconds, leaked, "application secret rotated");
    let mut details = json!({"gracePeriodSeconds": grace_seconds});
    if leaked {
        details["restoredAfterLeak"] = json!(true);
    }
    audit::record(gw, actor, "app.rotate", id, details).await;
    Ok(CreatedApp {
        view: AppView::of(stored.app),
        secret: generated.secret,
    })
}

/// Deletes an application: its secret stops working at once, and every
/// token it minted is revoked.
pub async fn delete(gw: &Gateway, actor: &Principal, id: &str) -> Result<(), DomainError> {
    authz::require(gw, actor, API_KEYS_MANAGE, "app.delete", id).await?;
    let stored = load(gw, id).await?;
    authz::refuse_operator_admin(gw, id)?;
    let before = authz::app_holdings(gw, &stored.app).await?;
    authz::guard_audited(gw, actor, "app.delete", id, Some(&before), None).await?;
    if !gw.apps.delete(id).await? {
        return Err(DomainError::NotFound(not_found(id)));
    }
    super::revocation::revoke_subject(gw, id).await?;
    forget(gw, id);
    tracing::info!(app_id = %id, actor = %actor.subject, "application deleted");
    audit::record(gw, actor, "app.delete", id, audit::snapshot(&stored.app)).await;
    Ok(())
}

/// The outcome for one id of a bulk delete.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkResult {
    /// The id asked for.
    pub id: String,
    /// `deleted`, `not_found`, `forbidden` (holds more than the caller),
    /// `conflict` (the operator-configured admin) or `error` (not deleted;
    /// try again).
    pub result: &'static str,
}

/// Deletes several applications; every id gets its own result, and one
/// failure never stops the others.
pub async fn bulk_delete(
    gw: &Gateway,
    actor: &Principal,
    ids: Vec<String>,
) -> Result<Vec<BulkResult>, DomainError> {
    authz::require(gw, actor, API_KEYS_MANAGE, "app.bulk_delete", "-").await?;
    if ids.is_empty() || ids.len() > 100 {
        return Err(DomainError::Validation(
            "ids must hold 1 to 100 application ids".into(),
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let result = match delete(gw, actor, &id).await {
            Ok(()) => "deleted",
            Err(DomainError::NotFound(_)) => "not_found",
            Err(DomainError::InsufficientPermissions(_)) => "forbidden",
            Err(DomainError::Conflict(_)) => "conflict",
            Err(e) => {
                tracing::warn!(app_id = %id, error = %e, "bulk delete: one id failed");
                "error"
            }
        };
        let id = if crate::domain::application::validate_app_id(&id).is_ok() {
            id
        } else {
            "(invalid id)".to_owned()
        };
        out.push(BulkResult { id, result });
    }
    Ok(out)
}
