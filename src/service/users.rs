//! Users in their minimal form: email, roles, permissions.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Gateway;
use super::audit;
use super::auth::Principal;
use super::authz;
use super::roles::{all_apps, check_roles_exist, checked_permissions, revoke_subjects};
use crate::crypto::random;
use crate::domain::permission::builtin::USERS_MANAGE;
use crate::domain::user::normalize_email;
use crate::domain::{DomainError, User, UserStatus};
use crate::store::{AppFilter, ListQuery, StoredUser};
use secrecy::{ExposeSecret, SecretString};

/// A new user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "name": "Ada", "permissions": ["content:read"]}))]
pub struct CreateUser {
    /// Unique email address (compared case-insensitively; at most 254
    /// bytes).
    #[schema(
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@[^@.\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\.[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@.\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub email: String,
    /// Display name (at most 100 characters).
    #[serde(default)]
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
    /// Roles held (each must exist).
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions held directly (at most 256, each in the catalogue).
    #[serde(default)]
    #[schema(value_type = Vec<crate::domain::Permission>, max_items = 256)]
    pub permissions: Vec<String>,
    /// A first password (12 to 128 characters, not the email). Never
    /// echoed; stored as an argon2id hash.
    #[serde(default)]
    #[schema(value_type = Option<String>, min_length = 12, max_length = 128)]
    pub password: Option<SecretString>,
}

/// A change to a user.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchUser {
    /// New email.
    #[schema(
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@[^@.\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*\.[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^@.\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub email: Option<String>,
    /// New name (at most 100 characters).
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: Option<String>,
    /// New roles (replaces the list).
    pub roles: Option<Vec<String>>,
    /// New permissions (replaces the list; at most 256).
    #[schema(value_type = Option<Vec<crate::domain::Permission>>, max_items = 256)]
    pub permissions: Option<Vec<String>>,
    /// `disabled` ends every session and token of the user at once;
    /// `active` lets them sign in again.
    pub status: Option<UserStatus>,
    /// A new password (an administrator's reset): every session of the
    /// user ends.
    #[schema(value_type = Option<String>, min_length = 12, max_length = 128)]
    pub password: Option<SecretString>,
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

/// Forgets lapsed sessions, authorization codes and refresh tokens (run once
/// a minute; a no-op where the store expires them itself).
pub async fn purge_lapsed_sessions(gw: &Gateway) {
    if let Err(e) = gw.sessions.purge_people(Utc::now()).await {
        tracing::warn!(error = %e, "purging lapsed sessions failed");
    }
}

/// Creates a user.
pub async fn create(gw: &Gateway, actor: &Principal, req: CreateUser) -> Result<User, DomainError> {
    authz::require(gw, actor, USERS_MANAGE, "user.create", "-").await?;
    let email = normalize_email(&req.email)?;
    crate::domain::application::validate_text("name", &req.name, 100, false)?;
    let permissions = checked_permissions(gw, &req.permissions)?;
    let roles = dedup(req.roles);
    check_roles_exist(gw, &roles).await?;
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
        status: crate::domain::UserStatus::Active,
        identities: vec![],
        has_password: false,
        created_at: now,
        updated_at: now,
        last_login_at: None,
    };
    let after = authz::user_holdings(gw, &user).await?;
    authz::guard_audited(gw, actor, "user.create", "-", None, Some(&after)).await?;
    let mut user = user;
    let password_hash = match &req.password {
        Some(p) => {
            crate::domain::user::validate_password(p.expose_secret(), &user.email)?;
            user.has_password = true;
            Some(gw.hasher.hash(p).await?)
        }
        None => None,
    };
    gw.users
        .insert_user(&StoredUser {
            user: user.clone(),
            password_hash,
        })
        .await?;
    audit::record(gw, actor, "user.create", &user.id, audit::snapshot(&user)).await;
    Ok(user)
}

fn not_found(id: &str) -> DomainError {
    // Echo the id only when it has the shape of one: never arbitrary input.
    let shaped = id.len() <= 40
        && id.starts_with("usr_")
        && id[4..].bytes().all(|b| b.is_ascii_alphanumeric());
    DomainError::NotFound(if shaped {
        format!("user {id}")
    } else {
        "user (no such id)".into()
    })
}

async fn load(gw: &Gateway, id: &str) -> Result<StoredUser, DomainError> {
    gw.users.get_user(id).await?.ok_or_else(|| not_found(id))
}

/// Reads a user.
pub async fn get(gw: &Gateway, actor: &Principal, id: &str) -> Result<User, DomainError> {
    authz::require(gw, actor, USERS_MANAGE, "user.read", id).await?;
    Ok(load(gw, id).await?.user)
}

/// Lists users.
pub async fn list(
    gw: &Gateway,
    actor: &Principal,
    limit: Option<usize>,
    cursor: Option<String>,
) -> Result<UserPage, DomainError> {
    authz::require(gw, actor, USERS_MANAGE, "user.list", "-").await?;
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

/// The user and every application they own: the subjects whose tokens a
/// narrowing change to the user must end.
async fn user_and_owned(gw: &Gateway, id: &str) -> Result<Vec<String>, DomainError> {
    let mut subjects: Vec<String> = all_apps(gw, Some(id))
        .await?
        .into_iter()
        .map(|a| a.id)
        .collect();
    subjects.push(id.to_owned());
    Ok(subjects)
}

/// Changes a user; the applications they own are re-bounded at once, and
/// if the change takes anything away, their earlier tokens are revoked.
pub async fn patch(
    gw: &Gateway,
    actor: &Principal,
    id: &str,
    req: PatchUser,
) -> Result<User, DomainError> {
    authz::require(gw, actor, USERS_MANAGE, "user.update", id).await?;
    let mut stored = load(gw, id).await?;
    let old = stored.user.clone();
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
        u.roles = roles;
    }
    if let Some(p) = req.permissions {
        u.permissions = checked_permissions(gw, &p)?;
    }
    if let Some(st) = req.status {
        u.status = st;
    }
    let password_reset = req.password.is_some();
    if let Some(p) = &req.password {
        crate::domain::user::validate_password(p.expose_secret(), &u.email)?;
    }
    let before = authz::user_holdings(gw, &old).await?;
    let after = authz::user_holdings(gw, u).await?;
    authz::guard_audited(gw, actor, "user.update", id, Some(&before), Some(&after)).await?;
    let disabled = old.status == UserStatus::Active && u.status == UserStatus::Disabled;
    let narrowed =
        disabled || !before.within(&after.0) || old.roles.iter().any(|r| !u.roles.contains(r));
    if let Some(p) = &req.password {
        stored.password_hash = Some(gw.hasher.hash(p).await?);
        stored.user.has_password = true;
    }
    stored.user.updated_at = Utc::now();
    gw.users.update_user(&stored, old.updated_at).await?;
    if disabled || password_reset {
        super::people::sessions::end_all(gw, id).await?;
    }
    if narrowed {
        revoke_subjects(gw, &user_and_owned(gw, id).await?).await?;
    }
    gw.grants_cache.clear();
    let mut details = audit::diff(&old, &stored.user);
    details["tokensRevoked"] = json!(narrowed);
    if password_reset {
        details["passwordReset"] = json!(true);
    }
    audit::record(gw, actor, "user.update", id, details).await;
    Ok(stored.user)
}

/// What follows a change to a user that the gateway itself made (the role
/// map of a single sign-on) once it is stored, exactly as after an
/// administrator's change: a disabled user's sessions end; if the change
/// takes anything away, the tokens of the user and the applications they
/// own are revoked; the grants cache is cleared; the change is audited
/// (`by` names who made it).
pub async fn settle_change(
    gw: &Gateway,
    by: &Principal,
    action: &str,
    old: &User,
    new: &User,
) -> Result<(), DomainError> {
    let before = authz::user_holdings(gw, old).await?;
    let after = authz::user_holdings(gw, new).await?;
    let disabled = old.status == UserStatus::Active && new.status == UserStatus::Disabled;
    let narrowed =
        disabled || !before.within(&after.0) || old.roles.iter().any(|r| !new.roles.contains(r));
    if disabled {
        super::people::sessions::end_all(gw, &new.id).await?;
    }
    if narrowed {
        revoke_subjects(gw, &user_and_owned(gw, &new.id).await?).await?;
    }
    gw.grants_cache.clear();
    let mut details = audit::diff(old, new);
    details["tokensRevoked"] = json!(narrowed);
    audit::record(gw, by, action, &new.id, details).await;
    Ok(())
}

/// Deletes a user who owns no application (409 otherwise).
pub async fn delete(gw: &Gateway, actor: &Principal, id: &str) -> Result<(), DomainError> {
    authz::require(gw, actor, USERS_MANAGE, "user.delete", id).await?;
    let stored = load(gw, id).await?;
    let before = authz::user_holdings(gw, &stored.user).await?;
    authz::guard_audited(gw, actor, "user.delete", id, Some(&before), None).await?;
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
        return Err(not_found(id));
    }
    super::people::sessions::end_all(gw, id).await?;
    super::revocation::revoke_subject(gw, id).await?;
    gw.grants_cache.clear();
    audit::record(gw, actor, "user.delete", id, audit::snapshot(&stored.user)).await;
    Ok(())
}

/// A user's sessions, for an administrator (`users:manage`, as reading the
/// user is): the console's user page lists them.
pub async fn sessions_of(
    gw: &Gateway,
    actor: &Principal,
    id: &str,
) -> Result<Vec<crate::domain::session::Session>, DomainError> {
    authz::require(gw, actor, USERS_MANAGE, "user.sessions", id).await?;
    let user = load(gw, id).await?;
    super::people::sessions::list(gw, &user.user.id).await
}

/// Ends one session of a user, for an administrator: `users:manage`, and
/// the user may hold nothing beyond the caller (nobody widens their reach:
/// ending someone's session is a change to them). A session of another
/// user is "not found".
pub async fn end_session(
    gw: &Gateway,
    actor: &Principal,
    id: &str,
    sid: &str,
) -> Result<(), DomainError> {
    authz::require(gw, actor, USERS_MANAGE, "session.end", sid).await?;
    let stored = load(gw, id).await?;
    let holdings = authz::user_holdings(gw, &stored.user).await?;
    authz::guard_audited(gw, actor, "session.end", sid, Some(&holdings), None).await?;
    match super::people::sessions::get(gw, sid).await? {
        Some(s) if s.user_id == id => {
            super::people::sessions::end(gw, sid).await?;
            audit::record(gw, actor, "session.end", sid, json!({"user": id})).await;
            Ok(())
        }
        _ => Err(DomainError::NotFound(format!(
            "session (no such session of user {})",
            stored.user.id
        ))),
    }
}
