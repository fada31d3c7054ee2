//! Users in their minimal form: email, roles, permissions.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Gateway;
use super::audit;
use super::auth::Principal;
use super::roles::{check_roles_exist, checked_permissions};
use crate::crypto::random;
use crate::domain::user::normalize_email;
use crate::domain::{DomainError, User};
use crate::store::{AppFilter, ListQuery, StoredUser};

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    /// Unique email address.
    pub email: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Roles held.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions held directly.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// A change to a user.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchUser {
    /// New email.
    pub email: Option<String>,
    /// New name.
    pub name: Option<String>,
    /// New roles (replaces the list).
    pub roles: Option<Vec<String>>,
    /// New permissions (replaces the list).
    pub permissions: Option<Vec<String>>,
}

/// A page of users.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    /// The users, by id.
    pub data: Vec<User>,
    /// Pass as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn dedup(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

/// Creates a user.
pub async fn create(gw: &Gateway, actor: &Principal, req: CreateUser) -> Result<User, DomainError> {
    let email = normalize_email(&req.email)?;
    crate::domain::application::validate_text("name", &req.name, 100, false)?;
    let permissions = checked_permissions(gw, actor, &req.permissions)?;
    let roles = dedup(req.roles);
    check_roles_exist(gw, &roles).await?;
    let role_perms = super::grants::role_permissions(gw, &roles).await?;
    super::apps::check_actor_holds(actor, &role_perms)?;
    let now = Utc::now();
    let id = format!(
        "usr_{}",
        random::base62(16).map_err(|e| DomainError::Internal(e.to_string()))?
    );
    let user = User {
        id,
        email,
        name: req.name,
        roles,
        permissions,
        created_at: now,
        updated_at: now,
    };
    gw.users
        .insert_user(&StoredUser {
            user: user.clone(),
            password_hash: None,
        })
        .await?;
    audit::record(
        gw,
        actor,
        "user.create",
        &user.id,
        json!({"roles": user.roles}),
    )
    .await;
    Ok(user)
}

/// Reads a user.
pub async fn get(gw: &Gateway, id: &str) -> Result<User, DomainError> {
    gw.users
        .get_user(id)
        .await?
        .map(|u| u.user)
        .ok_or_else(|| DomainError::NotFound(format!("user {id}")))
}

/// Lists users.
pub async fn list(
    gw: &Gateway,
    limit: Option<usize>,
    cursor: Option<String>,
) -> Result<UserPage, DomainError> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(DomainError::Validation(
            "limit must be between 1 and 200".into(),
        ));
    }
    let (users, next) = gw.users.list_users(limit, cursor).await?;
    Ok(UserPage {
        data: users.into_iter().map(|u| u.user).collect(),
        next_cursor: next,
    })
}

/// Changes a user; the applications they own are re-bounded at once.
pub async fn patch(
    gw: &Gateway,
    actor: &Principal,
    id: &str,
    req: PatchUser,
) -> Result<User, DomainError> {
    let mut stored = gw
        .users
        .get_user(id)
        .await?
        .ok_or_else(|| DomainError::NotFound(format!("user {id}")))?;
    let u = &mut stored.user;
    if let Some(e) = req.email {
        u.email = normalize_email(&e)?;
    }
    if let Some(n) = req.name {
        crate::domain::application::validate_text("name", &n, 100, false)?;
        u.name = n;
    }
    if let Some(r) = req.roles {
        let roles = dedup(r);
        check_roles_exist(gw, &roles).await?;
        let role_perms = super::grants::role_permissions(gw, &roles).await?;
        super::apps::check_actor_holds(actor, &role_perms)?;
        u.roles = roles;
    }
    if let Some(p) = req.permissions {
        u.permissions = checked_permissions(gw, actor, &p)?;
    }
    u.updated_at = Utc::now();
    gw.users.update_user(&stored).await?;
    gw.grants_cache.clear();
    audit::record(
        gw,
        actor,
        "user.update",
        id,
        json!({"roles": stored.user.roles, "permissions": stored.user.permissions}),
    )
    .await;
    Ok(stored.user)
}

/// Deletes a user who owns no application (409 otherwise).
pub async fn delete(gw: &Gateway, actor: &Principal, id: &str) -> Result<(), DomainError> {
    let owned = gw
        .apps
        .list(&ListQuery {
            limit: 1,
            after: None,
            filter: AppFilter {
                owner: Some(id.to_owned()),
                ..AppFilter::default()
            },
        })
        .await?;
    if !owned.items.is_empty() {
        return Err(DomainError::Conflict(format!(
            "user {id} owns applications; give them another owner or delete them first"
        )));
    }
    if !gw.users.delete_user(id).await? {
        return Err(DomainError::NotFound(format!("user {id}")));
    }
    gw.grants_cache.clear();
    audit::record(gw, actor, "user.delete", id, json!({})).await;
    Ok(())
}
