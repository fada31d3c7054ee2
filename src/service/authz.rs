//! The one authorization rule for every change to an application, a role or
//! a user (docs/api.md, "Applications", "nobody widens their own reach"):
//!
//! the target's holdings before and after the call, roles expanded, must lie
//! within what the caller holds; otherwise 403 `insufficient_permissions`.
//!
//! Holdings are what the record grants before the owner bound is applied:
//! an owner may gain permissions later and the application would follow, so
//! a caller may only write, reveal or remove grants it could hand out itself.
//! Every mutation in `service::apps`, `service::roles` and `service::users`
//! passes through [`guard`]; nothing else decides.

use super::Gateway;
use super::auth::Principal;
use crate::domain::{Application, DomainError, Permission, Role, User};

/// Everything a target holds, flattened: top-level grants, rule grants and
/// the permissions of every role it names.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Holdings(pub Vec<Permission>);

impl Holdings {
    fn of(mut perms: Vec<Permission>) -> Self {
        perms.sort();
        perms.dedup();
        Self(perms)
    }

    /// Whether every grant here is covered by `other`.
    pub fn within(&self, other: &[Permission]) -> bool {
        self.0.iter().all(|p| Permission::any_covers(other, p))
    }
}

/// What an application holds, roles expanded, owner bound not applied.
pub async fn app_holdings(gw: &Gateway, app: &Application) -> Result<Holdings, DomainError> {
    let g = super::grants::expand(gw, app).await?;
    let mut all = g.permissions;
    for a in g.access {
        all.extend(a.permissions);
    }
    Ok(Holdings::of(all))
}

/// What a role grants.
pub fn role_holdings(role: &Role) -> Holdings {
    Holdings::of(role.permissions.clone())
}

/// What a user holds, roles expanded.
pub async fn user_holdings(gw: &Gateway, user: &User) -> Result<Holdings, DomainError> {
    let mut all = user.permissions.clone();
    all.extend(super::grants::role_permissions(gw, &user.roles).await?);
    Ok(Holdings::of(all))
}

/// Checks that the caller holds `permission` for `action` on `target`;
/// a refusal is audited.
pub async fn require(
    gw: &Gateway,
    actor: &Principal,
    permission: &str,
    action: &str,
    target: &str,
) -> Result<(), DomainError> {
    let r = actor.require(permission);
    if let Err(e) = &r {
        refused(gw, actor, action, target, e).await;
    }
    r
}

/// [`guard`], with the refusal audited.
pub async fn guard_audited(
    gw: &Gateway,
    actor: &Principal,
    action: &str,
    target: &str,
    before: Option<&Holdings>,
    after: Option<&Holdings>,
) -> Result<(), DomainError> {
    let r = guard(actor, before, after);
    if let Err(e) = &r {
        refused(gw, actor, action, target, e).await;
    }
    r
}

/// Records a refused call (403) in the audit log: who tried what, on what.
pub async fn refused(
    gw: &Gateway,
    actor: &Principal,
    action: &str,
    target: &str,
    why: &DomainError,
) {
    super::audit::record(
        gw,
        actor,
        "refused",
        target,
        serde_json::json!({"action": action, "reason": why.to_string()}),
    )
    .await;
}

/// The rule: `before` (the target as it is, if it exists) and `after` (as
/// the call would leave it, if it survives) must both lie within the caller.
pub fn guard(
    actor: &Principal,
    before: Option<&Holdings>,
    after: Option<&Holdings>,
) -> Result<(), DomainError> {
    let mut beyond: Vec<&str> = before
        .into_iter()
        .chain(after)
        .flat_map(|h| h.0.iter())
        .filter(|p| !Permission::any_covers(&actor.permissions, p))
        .map(Permission::as_str)
        .collect();
    if beyond.is_empty() {
        return Ok(());
    }
    beyond.sort_unstable();
    beyond.dedup();
    Err(DomainError::InsufficientPermissions(format!(
        "the target holds more than you do: {}",
        crate::domain::error::listed(beyond)
    )))
}

/// The caller must hold every one of `grants` to hand them out.
pub fn check_actor_holds(actor: &Principal, grants: &[Permission]) -> Result<(), DomainError> {
    guard(actor, None, Some(&Holdings::of(grants.to_vec())))
}

/// The operator-configured admin is configuration, not data: the API may
/// not change, rotate, revoke or delete it (409), or every later admin call
/// could fail until a restart.
pub fn refuse_operator_admin(gw: &Gateway, id: &str) -> Result<(), DomainError> {
    if gw.policy.admin_app_id.as_deref() == Some(id) {
        return Err(DomainError::Conflict(
            "this is the operator-configured admin application; change TESSERA_ADMIN_APP_ID/TESSERA_ADMIN_APP_SECRET instead".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(s: &[&str]) -> Vec<Permission> {
        s.iter().map(|p| Permission::parse(p).unwrap()).collect()
    }

    fn actor(p: &[&str]) -> Principal {
        Principal {
            subject: "app_x".into(),
            permissions: perms(p),
            owner: "gateway".into(),
            ip: "127.0.0.1".parse().unwrap(),
            session: None,
        }
    }

    #[test]
    fn before_and_after_must_both_lie_within_the_caller() {
        let a = actor(&["api_keys:manage", "content:*"]);
        let small = Holdings::of(perms(&["content:read"]));
        let big = Holdings::of(perms(&["*"]));
        assert!(guard(&a, Some(&small), Some(&small)).is_ok());
        assert!(
            guard(&a, Some(&big), None).is_err(),
            "revoking a wider target"
        );
        assert!(guard(&a, None, Some(&big)).is_err(), "granting more");
        assert!(guard(&a, Some(&small), Some(&big)).is_err());
        let e = guard(&a, Some(&big), Some(&small)).unwrap_err();
        assert!(e.to_string().contains('*'), "{e}");
    }
}
