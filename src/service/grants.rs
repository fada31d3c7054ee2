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
    /// What each of `roles` grants, for narrowing the `roles` claim.
    pub role_grants: Vec<(String, Vec<Permission>)>,
    /// When the reads behind these grants began (ms since the epoch).
    pub as_of_ms: i64,
    /// The `updatedAt` of the application version they were computed from:
    /// a cached entry serves only that version, so grants computed from a
    /// stale read can never be reused for a newer one.
    pub for_version: chrono::DateTime<chrono::Utc>,
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
    let as_of_ms = chrono::Utc::now().timestamp_millis();
    let mut role_grants = Vec::with_capacity(app.roles.len());
    for name in &app.roles {
        role_grants.push((
            name.clone(),
            role_permissions(gw, std::slice::from_ref(name)).await?,
        ));
    }
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
        role_grants,
        as_of_ms,
        for_version: app.updated_at,
        permissions,
        access,
    })
}

/// The grants a token for `app` carries now (cached).
pub async fn effective(gw: &Gateway, app: &Application) -> Result<Arc<Grants>, DomainError> {
    if let Some(g) = gw.grants_cache.get(&app.id)
        && g.for_version == app.updated_at
    {
        gw.metrics.cache(super::metrics::Cache::Grants, true);
        return Ok(g);
    }
    gw.metrics.cache(super::metrics::Cache::Grants, false);
    // Boxed so that a hit does not carry the store reads' futures.
    Box::pin(read_grants(gw, app)).await
}

/// [`effective`] on a miss: expands from the store and fills the cache.
async fn read_grants(gw: &Gateway, app: &Application) -> Result<Arc<Grants>, DomainError> {
    let epoch = gw.grants_cache.epoch();
    let mut g = expand(gw, app).await?;
    if let Some(bound) = owner_bound(gw, &app.owner).await? {
        g.permissions = intersect(&g.permissions, &bound);
        for a in &mut g.access {
            a.permissions = intersect(&a.permissions, &bound);
        }
        g.access.retain(|a| !a.permissions.is_empty());
    }
    let g = Arc::new(g);
    gw.grants_cache.put(app.id.clone(), g.clone(), epoch);
    Ok(g)
}

/// At most this many words in a requested `scope`, and this many bytes.
pub const MAX_SCOPE_WORDS: usize = 64;
/// See [`MAX_SCOPE_WORDS`].
pub const MAX_SCOPE_BYTES: usize = 4096;

/// What a token carries after narrowing.
#[derive(Debug, Clone, PartialEq)]
pub struct Narrowed {
    /// Permissions that hold everywhere.
    pub permissions: Vec<Permission>,
    /// Permissions that hold under a scope.
    pub access: Vec<AccessGrant>,
    /// Roles wholly within `permissions`: a service that authorizes on a
    /// role name never learns of a role the token does not fully carry.
    pub roles: Vec<String>,
}

/// Narrows grants to a requested scope: every requested permission must be
/// in the catalogue and held, everywhere or under some rule; what the token
/// carries is the intersection, rule by rule. Bounded and O(n log n): the
/// scope comes from callers.
pub fn narrow(
    grants: &Grants,
    requested: Option<&str>,
    catalogue: &crate::domain::Catalogue,
) -> Result<Narrowed, DomainError> {
    // ASCII white space only, as between words: anything else is part of a word.
    let trimmed = requested.map(|s| s.trim_matches(|c: char| c.is_ascii_whitespace()));
    let (permissions, access) = match trimmed.filter(|s| !s.is_empty()) {
        None => (grants.permissions.clone(), grants.access.clone()),
        Some(requested) => narrow_to(grants, requested, catalogue)?,
    };
    let roles = grants
        .role_grants
        .iter()
        .filter(|(_, perms)| {
            perms
                .iter()
                .all(|p| Permission::any_covers(&permissions, p))
        })
        .map(|(name, _)| name.clone())
        .collect();
    Ok(Narrowed {
        permissions,
        access,
        roles,
    })
}

fn narrow_to(
    grants: &Grants,
    requested: &str,
    catalogue: &crate::domain::Catalogue,
) -> Result<(Vec<Permission>, Vec<AccessGrant>), DomainError> {
    if requested.len() > MAX_SCOPE_BYTES {
        return Err(DomainError::InvalidScope(format!(
            "scope is longer than {MAX_SCOPE_BYTES} bytes"
        )));
    }
    let mut wanted: Vec<Permission> = Vec::new();
    for (i, word) in requested.split_ascii_whitespace().enumerate() {
        if i >= MAX_SCOPE_WORDS {
            return Err(DomainError::InvalidScope(format!(
                "scope holds more than {MAX_SCOPE_WORDS} permissions"
            )));
        }
        let p = Permission::parse(word).map_err(|_| {
            DomainError::InvalidScope(format!(
                "scope word {} is not a permission (resource:action, resource:* or *)",
                i + 1
            ))
        })?;
        wanted.push(p);
    }
    wanted.sort();
    wanted.dedup();
    // Never mint what the catalogue does not define, even for `*` holders.
    let unknown: Vec<&str> = wanted
        .iter()
        .filter(|w| !catalogue.knows(w))
        .map(Permission::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(DomainError::InvalidScope(format!(
            "not in the permission catalogue: {}",
            crate::domain::error::listed(unknown)
        )));
    }
    let everywhere = intersect(&wanted, &grants.permissions);
    let scoped: Vec<AccessGrant> = grants
        .access
        .iter()
        .map(|a| AccessGrant {
            scope: a.scope.clone(),
            permissions: intersect(&wanted, &a.permissions),
        })
        .filter(|a| !a.permissions.is_empty())
        .collect();
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
            crate::domain::error::listed(missing)
        )));
    }
    Ok((everywhere, scoped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Catalogue, PermissionDef};

    fn perms(s: &[&str]) -> Vec<Permission> {
        s.iter().map(|p| Permission::parse(p).unwrap()).collect()
    }

    fn catalogue() -> Catalogue {
        let def = |n: &str| PermissionDef {
            name: Permission::parse(n).unwrap(),
            description: String::new(),
            public: false,
        };
        Catalogue::new(vec![
            def("content:read"),
            def("content:write"),
            def("users:read"),
            def("users:write"),
            def("workloads:read"),
        ])
        .unwrap()
    }

    fn grants() -> Grants {
        Grants {
            roles: vec!["editor".into(), "reader".into()],
            role_grants: vec![
                ("editor".into(), perms(&["content:read", "content:write"])),
                ("reader".into(), perms(&["content:read"])),
            ],
            as_of_ms: 0,
            for_version: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            permissions: perms(&["content:*", "users:read"]),
            access: vec![AccessGrant {
                scope: "cluster:c1".into(),
                permissions: perms(&["workloads:*"]),
            }],
        }
    }

    #[test]
    fn scope_narrows_top_level_rules_and_roles() {
        let g = grants();
        let cat = catalogue();
        let all = narrow(&g, None, &cat).unwrap();
        assert_eq!(
            (all.permissions, all.access),
            (g.permissions.clone(), g.access.clone())
        );
        assert_eq!(all.roles, vec!["editor", "reader"]);
        let n = narrow(&g, Some("content:read workloads:read"), &cat).unwrap();
        assert_eq!(n.permissions, perms(&["content:read"]));
        assert_eq!(n.access[0].permissions, perms(&["workloads:read"]));
        assert_eq!(n.roles, vec!["reader"], "editor is not wholly carried");
        let e = narrow(&g, Some("content:read users:write"), &cat).unwrap_err();
        assert!(e.to_string().contains("users:write"), "{e}");
        assert!(narrow(&g, Some("not-a-scope"), &cat).is_err());
        let e = narrow(&g, Some("content:nope"), &cat).unwrap_err();
        assert!(e.to_string().contains("catalogue"), "{e}");
    }

    #[test]
    fn scope_is_bounded() {
        let g = grants();
        let cat = catalogue();
        let many = vec!["content:read"; MAX_SCOPE_WORDS + 1].join(" ");
        assert!(narrow(&g, Some(&many), &cat).is_err());
        let long = "x".repeat(MAX_SCOPE_BYTES + 1);
        let e = narrow(&g, Some(&long), &cat).unwrap_err();
        assert!(!e.to_string().contains("xxxx"), "input echoed: {e}");
    }
}

/// Property tests for `narrow`: the `scope` of a token request is arbitrary
/// caller input, so narrowing must never panic, must never grant beyond the
/// application's grants or the request, and must be exact.
#[cfg(test)]
mod props {
    use super::*;
    use crate::domain::{Catalogue, PermissionDef};
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    /// Bounded, and no regression files written into the repository.
    fn config() -> Config {
        Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        }
    }

    const CATALOGUE: &[&str] = &[
        "content:read",
        "content:write",
        "users:read",
        "users:write",
        "workloads:read",
    ];

    fn catalogue() -> Catalogue {
        Catalogue::new(
            CATALOGUE
                .iter()
                .map(|n| PermissionDef {
                    name: Permission::parse(n).unwrap(),
                    description: String::new(),
                    public: false,
                })
                .collect(),
        )
        .unwrap()
    }

    /// Catalogue entries, wildcards over them, built-ins, and permissions
    /// outside the catalogue.
    fn word() -> impl Strategy<Value = String> {
        let r = prop_oneof![
            Just("content"),
            Just("users"),
            Just("workloads"),
            Just("api_keys"),
            Just("billing")
        ];
        let a = prop_oneof![
            Just("read"),
            Just("write"),
            Just("manage"),
            Just("*"),
            Just("refund")
        ];
        prop_oneof![
            1 => Just("*".to_owned()),
            10 => (r, a).prop_map(|(r, a)| format!("{r}:{a}")),
        ]
    }

    fn perm() -> impl Strategy<Value = Permission> {
        word().prop_map(|w| Permission::parse(&w).unwrap())
    }

    fn perms() -> impl Strategy<Value = Vec<Permission>> {
        prop::collection::vec(perm(), 0..5).prop_map(|mut v| {
            v.sort();
            v.dedup();
            v
        })
    }

    fn grants() -> impl Strategy<Value = Grants> {
        // Role names are unique, as in the store.
        let roles = (prop::collection::vec(perms(), 3), 0..=3usize).prop_map(|(ps, k)| {
            ["editor", "reader", "ops"]
                .iter()
                .zip(ps)
                .take(k)
                .map(|(n, p)| ((*n).to_owned(), p))
                .collect::<Vec<_>>()
        });
        let rule = (
            prop_oneof![Just("cluster:c1"), Just("cluster:c2/project:*"), Just("*")],
            perms(),
        )
            .prop_map(|(s, permissions)| AccessGrant {
                scope: s.to_owned(),
                permissions,
            });
        (perms(), roles, prop::collection::vec(rule, 0..3)).prop_map(
            |(permissions, role_grants, access)| Grants {
                roles: role_grants.iter().map(|(n, _)| n.clone()).collect(),
                role_grants,
                as_of_ms: 0,
                for_version: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                permissions,
                access,
            },
        )
    }

    /// Separators a caller might use, ASCII and not.
    fn sep() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            8 => Just(" "),
            1 => Just("\t"),
            1 => Just("\n  "),
            1 => Just("\u{a0}"),
            1 => Just(""),
        ]
    }

    /// A scope string: permission words with separators, or noise.
    fn scope() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::collection::vec((word(), sep()), 0..8).prop_map(|ws| {
                ws.into_iter().map(|(w, s)| format!("{w}{s}")).collect::<String>()
            }),
            1 => any::<String>(),
            1 => "[a-z:* \t]{0,64}",
            1 => prop::collection::vec(word(), 60..70).prop_map(|w| w.join(" ")),
            1 => "[a-z]{4090,4100}",
        ]
    }

    proptest! {
        #![proptest_config(config())]

        /// Never a panic; the result lies within the grants (top level,
        /// rule by rule) and within the request; the roles claim names only
        /// roles the result wholly carries; and narrowing is exact.
        #[test]
        fn narrowing_stays_within_the_grants_and_the_request(
            g in grants(), requested in prop::option::of(scope()), probe in perm(),
        ) {
            let cat = catalogue();
            let Ok(n) = narrow(&g, requested.as_deref(), &cat) else {
                return Ok(());
            };
            for p in &n.permissions {
                prop_assert!(Permission::any_covers(&g.permissions, p), "{} beyond {:?}", p, g.permissions);
            }
            for a in &n.access {
                prop_assert!(
                    g.access.iter().any(|r| r.scope == a.scope
                        && a.permissions.iter().all(|p| Permission::any_covers(&r.permissions, p))),
                    "{:?} beyond {:?}", a, g.access
                );
            }
            for r in &n.roles {
                let (_, held) = g.role_grants.iter().find(|(name, _)| name == r).unwrap();
                prop_assert!(held.iter().all(|p| Permission::any_covers(&n.permissions, p)));
            }
            let words: Vec<Permission> = requested
                .as_deref()
                .unwrap_or("")
                .split_ascii_whitespace()
                .map(|w| Permission::parse(w).unwrap())
                .collect();
            if words.is_empty() {
                prop_assert_eq!(&n.permissions, &g.permissions);
                prop_assert_eq!(&n.access, &g.access);
            } else {
                for w in &words {
                    prop_assert!(cat.knows(w), "{} is not in the catalogue", w);
                    prop_assert!(
                        Permission::any_covers(&g.permissions, w)
                            || g.access.iter().any(|a| Permission::any_covers(&a.permissions, w)),
                        "{} is not held", w
                    );
                }
                prop_assert_eq!(
                    Permission::any_covers(&n.permissions, &probe),
                    Permission::any_covers(&words, &probe) && Permission::any_covers(&g.permissions, &probe)
                );
                for a in &n.access {
                    // A rule narrowed to nothing is dropped, not carried.
                    prop_assert!(!a.permissions.is_empty());
                    for p in &a.permissions {
                        prop_assert!(Permission::any_covers(&words, p), "{} not asked for", p);
                    }
                }
            }
        }

        /// A word that is not a permission is refused without being echoed.
        #[test]
        fn junk_is_refused_without_an_echo(
            g in grants(), before in prop::collection::vec(word(), 0..3), junk in "[a-z]{4,12}[!@#%&]{1,3}[a-z]{4,12}",
        ) {
            let s = format!("{} {junk}", before.join(" "));
            let e = narrow(&g, Some(&s), &catalogue()).unwrap_err();
            prop_assert!(!e.to_string().contains(&junk), "{}", e);
        }
    }
}
