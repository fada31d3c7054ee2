//! The application lifecycle: create, read, list, revoke.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::Gateway;
use super::auth::Principal;
use crate::crypto::secret;
use crate::domain::application::{GATEWAY_OWNER, validate_audience, validate_text};
use crate::domain::{AppStatus, Application, DomainError, Environment, KeyType, Permission};
use crate::store::{AppFilter, ListQuery, StoredApp};

/// What an operator asks for when creating an application.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApp {
    /// Human name (required, at most 100 characters).
    pub name: String,
    /// Free text (at most 1000 characters).
    #[serde(default)]
    pub description: String,
    /// `secret` (default) or `public`.
    #[serde(default, rename = "type")]
    pub key_type: KeyType,
    /// `live` (default) or `test`.
    #[serde(default)]
    pub environment: Environment,
    /// Granted permissions.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Extra audiences it may request.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Expiry; must be in the future.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// Own token lifetime, 10 s up to the gateway's `token_ttl`.
    #[serde(default)]
    pub token_ttl: Option<u64>,
}

/// An application as the API shows it: the record plus its current status.
#[derive(Debug, Serialize)]
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

/// Validates grants against the catalogue, the key type, and the actor: no
/// one can hand out a permission they do not hold themselves.
fn check_grants(
    gw: &Gateway,
    actor: &Principal,
    key_type: KeyType,
    grants: &[Permission],
) -> Result<(), DomainError> {
    gw.catalogue.check_all(grants)?;
    if key_type == KeyType::Public {
        let not_public: Vec<&str> = grants
            .iter()
            .filter(|g| {
                g.is_wildcard() || !gw.catalogue.entries().any(|d| d.name == **g && d.public)
            })
            .map(Permission::as_str)
            .collect();
        if !not_public.is_empty() {
            return Err(DomainError::Validation(format!(
                "a public key may hold only permissions marked public, not: {}",
                not_public.join(", ")
            )));
        }
    }
    let beyond: Vec<&str> = grants
        .iter()
        .filter(|g| !Permission::any_covers(&actor.permissions, g))
        .map(Permission::as_str)
        .collect();
    if !beyond.is_empty() {
        return Err(DomainError::InsufficientPermissions(format!(
            "you cannot grant permissions you do not hold: {}",
            beyond.join(", ")
        )));
    }
    Ok(())
}

fn validate_create(gw: &Gateway, req: &CreateApp, now: DateTime<Utc>) -> Result<(), DomainError> {
    validate_text("name", &req.name, 100, true)?;
    validate_text("description", &req.description, 1000, false)?;
    if req.permissions.len() > 256 {
        return Err(DomainError::Validation("at most 256 permissions".into()));
    }
    if req.audiences.len() > 32 {
        return Err(DomainError::Validation("at most 32 audiences".into()));
    }
    for a in &req.audiences {
        validate_audience(a)?;
    }
    if let Some(t) = req.expires_at
        && t <= now
    {
        return Err(DomainError::Validation(
            "expiresAt must be in the future".into(),
        ));
    }
    if let Some(ttl) = req.token_ttl
        && !(10..=gw.settings.token_ttl).contains(&ttl)
    {
        return Err(DomainError::Validation(format!(
            "tokenTtl must be between 10 and {} seconds",
            gw.settings.token_ttl
        )));
    }
    Ok(())
}

/// Creates an application and its secret.
pub async fn create(
    gw: &Gateway,
    actor: &Principal,
    req: CreateApp,
) -> Result<CreatedApp, DomainError> {
    let now = Utc::now();
    validate_create(gw, &req, now)?;
    check_grants(gw, actor, req.key_type, &req.permissions)?;
    let id = secret::new_app_id().map_err(|e| DomainError::Internal(e.to_string()))?;
    let generated = secret::generate(&gw.settings.key_prefix, req.key_type, req.environment, &id)
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    let secret_hash = gw.hasher.hash(&generated.secret).await?;
    let mut permissions = req.permissions;
    permissions.sort();
    permissions.dedup();
    let app = Application {
        id,
        name: req.name.trim().to_owned(),
        description: req.description,
        owner: GATEWAY_OWNER.to_owned(),
        key_type: req.key_type,
        environment: req.environment,
        prefix: generated.prefix,
        permissions,
        audiences: req.audiences,
        expires_at: req.expires_at,
        token_ttl: req.token_ttl,
        revoked_at: None,
        created_at: now,
        updated_at: now,
        last_used_at: None,
        last_used_ip: None,
        use_count: 0,
    };
    gw.apps
        .insert(&StoredApp {
            app: app.clone(),
            secret_hash,
        })
        .await?;
    tracing::info!(app_id = %app.id, actor = %actor.subject, "application created");
    Ok(CreatedApp {
        view: AppView::of(app),
        secret: generated.secret,
    })
}

/// Reads one application.
pub async fn get(gw: &Gateway, id: &str) -> Result<AppView, DomainError> {
    match gw.apps.get(id).await? {
        Some(s) => Ok(AppView::of(s.app)),
        None => Err(DomainError::NotFound(format!("application {id}"))),
    }
}

/// Listing parameters as they arrive from the query string.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1 to 200 (default 50).
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
}

/// One page of applications.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppPage {
    /// The applications, oldest first.
    pub data: Vec<AppView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Lists applications, paged and filtered.
pub async fn list(gw: &Gateway, params: ListParams) -> Result<AppPage, DomainError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(DomainError::Validation(
            "limit must be between 1 and 200".into(),
        ));
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
            },
        })
        .await?;
    Ok(AppPage {
        data: page.items.into_iter().map(|s| AppView::of(s.app)).collect(),
        next_cursor: page.next.map(|n| URL_SAFE_NO_PAD.encode(n.as_bytes())),
    })
}

/// Revokes an application: its secret stops working at once, here.
/// Revoking twice is harmless and keeps the first revocation time.
pub async fn revoke(gw: &Gateway, actor: &Principal, id: &str) -> Result<AppView, DomainError> {
    let Some(mut stored) = gw.apps.get(id).await? else {
        return Err(DomainError::NotFound(format!("application {id}")));
    };
    if stored.app.revoked_at.is_none() {
        let now = Utc::now();
        stored.app.revoked_at = Some(now);
        stored.app.updated_at = now;
        gw.apps.update(&stored).await?;
        tracing::info!(app_id = %id, actor = %actor.subject, "application revoked");
    }
    gw.app_cache.invalidate(id);
    gw.secret_cache.invalidate_app(id);
    Ok(AppView::of(stored.app))
}
