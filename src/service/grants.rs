//! What an application may actually do: its permissions and roles, its
//! access rules with roles expanded, all bounded by its owner's current
//! grants. Computed on a cache miss and cached per application; any change
//! to the application, a role or a user invalidates it, so a change applies
//! to every token minted afterwards.

use std::sync::Arc;

use super::Gateway;
use crate::domain::access::intersect;
use crate::domain::application::GATEWAY_OWNER;
use crate::domain::{AccessGrant, Application, DomainError, Permission};

/// The expanded, owner-bounded grants of one application.
#[derive(Debug, Clone, PartialEq)]
pub struct Grants {
    /// Role names, as carried in tokens.
    pub roles: Vec<String>,
    /// Permissions that hold everywhere.
    pub permissions: Vec<Permission>,
    /// Permissions that hold under a scope.
    pub access: Vec<AccessGrant>,
}

fn merge(mut a: Vec<Permission>, b: impl IntoIterator<Item = Permission>) -> Vec<Permission> {
    a.extend(b);
    a.sort();
    a.dedup();
    a
}

/// The permissions of the named roles (missing roles contribute nothing:
/// a role can only vanish by being detached everywhere).
pub async fn role_permissions(
    gw: &Gateway,
    names: &[String],
) -> Result<Vec<Permission>, DomainError> {
    let mut out = Vec::new();
    for name in names {
        if let Some(role) = gw.roles.get_role(name).await? {
            out.extend(role.permissions);
        }
    }
    Ok(merge(Vec::new(), out))
}

/// What an owner holds now: `None` for the gateway itself (no bound), an
/// empty list for an owner that no longer exists.
pub async fn owner_bound(
    gw: &Gateway,
    owner: &str,
) -> Result<Option<Vec<Permission>>, DomainError> {
    if owner == GATEWAY_OWNER {
        return Ok(None);
    }
    match gw.users.get_user(owner).await? {
        Some(u) => {
            let from_roles = role_permissions(gw, &u.user.roles).await?;
            Ok(Some(merge(u.user.permissions, from_roles)))
        }
        None => Ok(Some(Vec::new())),
    }
}

/// Expands an application's grants, without the owner bound.
pub async fn expand(gw: &Gateway, app: &Application) -> Result<Grants, DomainError> {
    let permissions = merge(
        app.permissions.clone(),
        role_permissions(gw, &app.roles).await?,
    );
    let mut access = Vec::with_capacity(app.access_rules.len());
    for rule in &app.access_rules {
        let perms = merge(
            rule.permissions.clone(),
            role_permissions(gw, &rule.roles).await?,
        );
        access.push(AccessGrant {
            scope: rule.scope.clone(),
            permissions: perms,
        });
    }
    Ok(Grants {
        roles: app.roles.clone(),
        permissions,
        access,
    })
}

/// The grants a token for `app` carries now (cached).
pub async fn effective(gw: &Gateway, app: &Application) -> Result<Arc<Grants>, DomainError> {
    if let Some(g) = gw.grants_cache.get(&app.id) {
        return Ok(g);
    }
    let mut g = expand(gw, app).await?;
    if let Some(bound) = owner_bound(gw, &app.owner).await? {
        g.permissions = intersect(&g.permissions, &bound);
        for a in &mut g.access {
            a.permissions = intersect(&a.permissions, &bound);
        }
        g.access.retain(|a| !a.permissions.is_empty());
    }
    let g = Arc::new(g);
    gw.grants_cache.put(app.id.clone(), g.clone());
    Ok(g)
}

/// Narrows grants to a requested scope: every requested permission must be
/// held, everywhere or under some rule; what the token carries is the
/// intersection, rule by rule.
pub fn narrow(
    grants: &Grants,
    requested: Option<&str>,
) -> Result<(Vec<Permission>, Vec<AccessGrant>), DomainError> {
    let Some(requested) = requested.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok((grants.permissions.clone(), grants.access.clone()));
    };
    let mut wanted: Vec<Permission> = Vec::new();
    for word in requested.split_ascii_whitespace() {
        let p = Permission::parse(word)
            .map_err(|_| DomainError::InvalidScope(format!("invalid scope value {word:?}")))?;
        if !wanted.contains(&p) {
            wanted.push(p);
        }
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|w| {
            !Permission::any_covers(&grants.permissions, w)
                && !grants
                    .access
                    .iter()
                    .any(|a| Permission::any_covers(&a.permissions, w))
        })
        .map(Permission::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(DomainError::InvalidScope(format!(
            "the application does not hold: {}",
            missing.join(", ")
        )));
    }
    let top = intersect(&grants.permissions, &wanted);
    let access = grants
        .access
        .iter()
        .map(|a| AccessGrant {
            scope: a.scope.clone(),
            permissions: intersect(&a.permissions, &wanted),
        })
        .filter(|a| !a.permissions.is_empty())
        .collect();
    Ok((top, access))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(s: &[&str]) -> Vec<Permission> {
        s.iter().map(|p| Permission::parse(p).unwrap()).collect()
    }

    #[test]
    fn scope_narrows_top_level_and_rules() {
        let g = Grants {
            roles: vec![],
            permissions: perms(&["content:*", "users:read"]),
            access: vec![AccessGrant {
                scope: "cluster:c1".into(),
                permissions: perms(&["workloads:*"]),
            }],
        };
        let (top, access) = narrow(&g, None).unwrap();
        assert_eq!((top, access), (g.permissions.clone(), g.access.clone()));
        let (top, access) = narrow(&g, Some("content:read workloads:read")).unwrap();
        assert_eq!(top, perms(&["content:read"]));
        assert_eq!(access[0].permissions, perms(&["workloads:read"]));
        let e = narrow(&g, Some("content:read users:write")).unwrap_err();
        assert!(e.to_string().contains("users:write"), "{e}");
        assert!(narrow(&g, Some("not-a-scope")).is_err());
    }
}
