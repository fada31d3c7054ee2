//! Roles: create, read, change, delete (detaching on request).

use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::Gateway;
use super::audit;
use super::auth::Principal;
use super::authz::{self, Holdings};
use crate::domain::permission::builtin::ROLES_MANAGE;
use crate::domain::role::validate_role_name;
use crate::domain::{Application, DomainError, KeyType, Permission, Role};
use crate::store::{AppFilter, ListQuery, RoleDelete};

/// A new role.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "reader", "description": "Reads content", "permissions": ["content:read"]}))]
pub struct CreateRole {
    /// Unique name: 1 to 64 of `a-z`, `0-9`, `_`, `-`, `.`.
    #[schema(pattern = r"^[a-z0-9_.-]{1,64}$")]
    pub name: String,
    /// Free text (at most 1000 characters).
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub description: String,
    /// What it grants (at most 256, each in the catalogue).
    #[serde(default)]
    #[schema(value_type = Vec<crate::domain::Permission>, max_items = 256)]
    pub permissions: Vec<String>,
}

/// A change to a role.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchRole {
    /// New description (at most 1000 characters).
    #[schema(max_length = 1000, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub description: Option<String>,
    /// New permissions (replaces the list; at most 256).
    #[schema(value_type = Option<Vec<crate::domain::Permission>>, max_items = 256)]
    pub permissions: Option<Vec<String>>,
}

/// Parses and checks permissions for a role or a user: well-formed and in
/// the catalogue. Whether the caller may hand them out is `authz`'s call.
pub fn checked_permissions(gw: &Gateway, raw: &[String]) -> Result<Vec<Permission>, DomainError> {
    let perms = super::apps::parse_permissions(raw)?;
    gw.catalogue.check_all(&perms)?;
    Ok(perms)
}

/// Every application, page by page (role and owner changes must find all
/// the applications they touch; admin calls, not the token path).
pub async fn all_apps(gw: &Gateway, owner: Option<&str>) -> Result<Vec<Application>, DomainError> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = gw
            .apps
            .list(&ListQuery {
                limit: 200,
                after,
                filter: AppFilter {
                    owner: owner.map(str::to_owned),
                    ..AppFilter::default()
                },
            })
            .await?;
        out.extend(page.items.into_iter().map(|s| s.app));
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

fn holds_role(app: &Application, name: &str) -> bool {
    app.roles.iter().any(|r| r == name)
        || app
            .access_rules
            .iter()
            .any(|rule| rule.roles.iter().any(|r| r == name))
}

/// The subjects whose tokens a narrowed role must end: applications holding
/// it, users holding it, and the applications those users own.
async fn subjects_holding(gw: &Gateway, name: &str) -> Result<Vec<String>, DomainError> {
    let mut users = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = gw.users.list_users(200, cursor).await?;
        users.extend(
            page.into_iter()
                .filter(|u| u.user.roles.iter().any(|r| r == name))
                .map(|u| u.user.id),
        );
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    let mut out: Vec<String> = all_apps(gw, None)
        .await?
        .into_iter()
        .filter(|a| holds_role(a, name) || users.contains(&a.owner))
        .map(|a| a.id)
        .collect();
    out.extend(users);
    Ok(out)
}

/// Revokes every token of `subjects` issued until now.
pub async fn revoke_subjects(gw: &Gateway, subjects: &[String]) -> Result<(), DomainError> {
    for sub in subjects {
        super::revocation::revoke_subject(gw, sub).await?;
    }
    Ok(())
}

/// A role edit re-checks every public key holding the role: a public key
/// may hold only catalogue entries marked public (422 naming them).
async fn check_public_holders(
    gw: &Gateway,
    name: &str,
    perms: &[Permission],
) -> Result<(), DomainError> {
    if perms.iter().all(|p| gw.catalogue.is_public(p)) {
        return Ok(());
    }
    let public: Vec<String> = all_apps(gw, None)
        .await?
        .into_iter()
        .filter(|a| a.key_type == KeyType::Public && holds_role(a, name))
        .map(|a| a.id)
        .collect();
    if public.is_empty() {
        return Ok(());
    }
    Err(DomainError::Validation(format!(
        "role {name} is held by public key(s) {}, which may hold only permissions marked public",
        public.join(", ")
    )))
}

/// Names every role in `names` that does not exist, in one 422.
pub async fn check_roles_exist(gw: &Gateway, names: &[String]) -> Result<(), DomainError> {
    let mut missing = Vec::new();
    for n in names {
        if gw.roles.get_role(n).await?.is_none() {
            missing.push(crate::domain::error::shown(n));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(DomainError::Validation(format!(
            "unknown role(s): {}",
            missing.join(", ")
        )))
    }
}

/// Creates a role.
pub async fn create(gw: &Gateway, actor: &Principal, req: CreateRole) -> Result<Role, DomainError> {
    authz::require(gw, actor, ROLES_MANAGE, "role.create", "-").await?;
    validate_role_name(&req.name)?;
    crate::domain::application::validate_text("description", &req.description, 1000, false)?;
    let permissions = checked_permissions(gw, &req.permissions)?;
    let after = Holdings(permissions.clone());
    authz::guard_audited(gw, actor, "role.create", &req.name, None, Some(&after)).await?;
    let now = Utc::now();
    let role = Role {
        name: req.name,
        description: req.description,
        permissions,
        created_at: now,
        updated_at: now,
    };
    gw.roles.insert_role(&role).await?;
    gw.grants_cache.clear();
    audit::record(gw, actor, "role.create", &role.name, audit::snapshot(&role)).await;
    Ok(role)
}

/// Reads a role.
async fn get(gw: &Gateway, name: &str) -> Result<Role, DomainError> {
    let missing = || {
        // Echo the name only when it is a valid one: never arbitrary input.
        DomainError::NotFound(match validate_role_name(name) {
            Ok(()) => format!("role {name}"),
            Err(_) => "role (no such name)".into(),
        })
    };
    if validate_role_name(name).is_err() {
        return Err(missing());
    }
    gw.roles.get_role(name).await?.ok_or_else(missing)
}

/// Reads a role for a caller with `roles:manage`.
pub async fn read(gw: &Gateway, actor: &Principal, name: &str) -> Result<Role, DomainError> {
    authz::require(gw, actor, ROLES_MANAGE, "role.read", name).await?;
    get(gw, name).await
}

/// Every role, for a caller with `roles:manage`.
pub async fn list(gw: &Gateway, actor: &Principal) -> Result<Vec<Role>, DomainError> {
    authz::require(gw, actor, ROLES_MANAGE, "role.list", "-").await?;
    Ok(gw.roles.list_roles().await?)
}

/// Changes a role; tokens minted afterwards carry the change, and if it
/// takes anything away, every token of its holders minted before is revoked.
pub async fn patch(
    gw: &Gateway,
    actor: &Principal,
    name: &str,
    req: PatchRole,
) -> Result<Role, DomainError> {
    authz::require(gw, actor, ROLES_MANAGE, "role.update", name).await?;
    let mut role = get(gw, name).await?;
    let old = role.clone();
    if let Some(d) = req.description {
        crate::domain::application::validate_text("description", &d, 1000, false)?;
        role.description = d;
    }
    if let Some(p) = req.permissions {
        role.permissions = checked_permissions(gw, &p)?;
    }
    let (before, after) = (authz::role_holdings(&old), authz::role_holdings(&role));
    authz::guard_audited(gw, actor, "role.update", name, Some(&before), Some(&after)).await?;
    check_public_holders(gw, name, &role.permissions).await?;
    let narrowed = !before.within(&after.0);
    role.updated_at = Utc::now();
    gw.roles.update_role(&role, old.updated_at).await?;
    if narrowed {
        revoke_subjects(gw, &subjects_holding(gw, name).await?).await?;
    }
    gw.grants_cache.clear();
    let mut details = audit::diff(&old, &role);
    details["tokensRevoked"] = json!(narrowed);
    audit::record(gw, actor, "role.update", name, details).await;
    Ok(role)
}

/// Deletes a role: 409 while it is held, unless `detach`, which removes it
/// from every holder and revokes their tokens.
pub async fn delete(
    gw: &Gateway,
    actor: &Principal,
    name: &str,
    detach: bool,
) -> Result<(), DomainError> {
    authz::require(gw, actor, ROLES_MANAGE, "role.delete", name).await?;
    let role = get(gw, name).await?;
    let before = authz::role_holdings(&role);
    authz::guard_audited(gw, actor, "role.delete", name, Some(&before), None).await?;
    let holders = if detach {
        subjects_holding(gw, name).await?
    } else {
        Vec::new()
    };
    match gw.roles.delete_role(name, detach).await? {
        RoleDelete::Deleted => {
            revoke_subjects(gw, &holders).await?;
            gw.grants_cache.clear();
            gw.app_cache.clear();
            let mut details = audit::snapshot(&role);
            details["detach"] = json!(detach);
            audit::record(gw, actor, "role.delete", name, details).await;
            Ok(())
        }
        RoleDelete::NotFound => get(gw, name).await.map(|_| ()),
        RoleDelete::InUse { apps, users } => Err(DomainError::Conflict(format!(
            "role {name} is held by {} application(s) and {} user(s); delete it with detach (API: ?detach=true) to remove it from them",
            apps.len(),
            users.len()
        ))),
    }
}
