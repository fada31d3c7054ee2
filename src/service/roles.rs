//! Roles: create, read, change, delete (detaching on request).

use chrono::Utc;
use serde::Deserialize;
use serde_json::json;

use super::Gateway;
use super::audit;
use super::auth::Principal;
use crate::domain::role::validate_role_name;
use crate::domain::{DomainError, Permission, Role};
use crate::store::RoleDelete;

/// A new role.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRole {
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// What it grants.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// A change to a role.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchRole {
    /// New description.
    pub description: Option<String>,
    /// New permissions (replaces the list).
    pub permissions: Option<Vec<String>>,
}

/// Parses and checks permissions a caller wants to put into a role or onto
/// a user: well-formed, in the catalogue, and held by the caller.
pub fn checked_permissions(
    gw: &Gateway,
    actor: &Principal,
    raw: &[String],
) -> Result<Vec<Permission>, DomainError> {
    let perms = super::apps::parse_permissions(raw)?;
    gw.catalogue.check_all(&perms)?;
    super::apps::check_actor_holds(actor, &perms)?;
    Ok(perms)
}

/// Names every role in `names` that does not exist, in one 422.
pub async fn check_roles_exist(gw: &Gateway, names: &[String]) -> Result<(), DomainError> {
    let mut missing = Vec::new();
    for n in names {
        if gw.roles.get_role(n).await?.is_none() {
            missing.push(n.as_str());
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
    validate_role_name(&req.name)?;
    crate::domain::application::validate_text("description", &req.description, 1000, false)?;
    let permissions = checked_permissions(gw, actor, &req.permissions)?;
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
    audit::record(
        gw,
        actor,
        "role.create",
        &role.name,
        json!({"permissions": role.permissions}),
    )
    .await;
    Ok(role)
}

/// Reads a role.
pub async fn get(gw: &Gateway, name: &str) -> Result<Role, DomainError> {
    gw.roles
        .get_role(name)
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("role {name}")))
}

/// Every role.
pub async fn list(gw: &Gateway) -> Result<Vec<Role>, DomainError> {
    Ok(gw.roles.list_roles().await?)
}

/// Changes a role; tokens minted afterwards carry the change.
pub async fn patch(
    gw: &Gateway,
    actor: &Principal,
    name: &str,
    req: PatchRole,
) -> Result<Role, DomainError> {
    let mut role = get(gw, name).await?;
    if let Some(d) = req.description {
        crate::domain::application::validate_text("description", &d, 1000, false)?;
        role.description = d;
    }
    let changed_permissions = req.permissions.is_some();
    if let Some(p) = req.permissions {
        role.permissions = checked_permissions(gw, actor, &p)?;
    }
    role.updated_at = Utc::now();
    gw.roles.update_role(&role).await?;
    gw.grants_cache.clear();
    audit::record(
        gw,
        actor,
        "role.update",
        name,
        json!({"permissionsChanged": changed_permissions, "permissions": role.permissions}),
    )
    .await;
    Ok(role)
}

/// Deletes a role: 409 while it is held, unless `detach`.
pub async fn delete(
    gw: &Gateway,
    actor: &Principal,
    name: &str,
    detach: bool,
) -> Result<(), DomainError> {
    match gw.roles.delete_role(name, detach).await? {
        RoleDelete::Deleted => {
            gw.grants_cache.clear();
            gw.app_cache.clear();
            audit::record(gw, actor, "role.delete", name, json!({"detach": detach})).await;
            Ok(())
        }
        RoleDelete::NotFound => Err(DomainError::NotFound(format!("role {name}"))),
        RoleDelete::InUse { apps, users } => Err(DomainError::Conflict(format!(
            "role {name} is held by {} application(s) and {} user(s); delete with ?detach=true to remove it from them",
            apps.len(),
            users.len()
        ))),
    }
}
