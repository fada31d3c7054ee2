//! Access rules: grants limited to resources.
//!
//! The matching rule (the downstream verifier implements exactly this one):
//! - A resource path is 1 to 16 segments joined by `/`, each `type:name`
//!   (`cluster:c1/project:p2/workload:w9`).
//! - A scope is written the same way, except that a segment may be `*`
//!   (any one segment) and a name may be `*` (any name of that type:
//!   `project:*`). No other wildcards exist; `*` never spans segments.
//! - A scope covers a resource when the resource has at least as many
//!   segments and each scope segment matches the resource segment at the same
//!   position: a grant at a scope holds at that resource and everything below
//!   it (`cluster:c1` covers `cluster:c1/project:p2`).
//! - A permission `p` holds on resource `r` when a top-level grant covers
//!   `p`, or some rule's scope covers `r` and one of its permissions covers
//!   `p` (with the `*` / `resource:*` permission wildcards).

use serde::{Deserialize, Serialize};

use std::collections::BTreeSet;

use super::{DomainError, Permission};

const MAX_SEGMENTS: usize = 16;
const MAX_LEN: usize = 512;

fn valid_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Checks a scope pattern (wildcards allowed) or, with `concrete`, a
/// resource path (no wildcards).
pub fn validate_path(s: &str, concrete: bool) -> Result<(), DomainError> {
    let what = if concrete { "resource" } else { "scope" };
    let bad = |why: &str| {
        DomainError::Validation(format!(
            "invalid {what} {}: {why} (expected e.g. \"cluster:c1/project:*\")",
            super::error::shown(s)
        ))
    };
    if s.is_empty() || s.len() > MAX_LEN {
        return Err(bad("empty or too long"));
    }
    let segments: Vec<&str> = s.split('/').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(bad("more than 16 segments"));
    }
    for seg in segments {
        if seg == "*" && !concrete {
            continue;
        }
        let Some((t, n)) = seg.split_once(':') else {
            return Err(bad("each segment is type:name"));
        };
        let name_ok = valid_word(n) || (n == "*" && !concrete);
        if !valid_word(t) || !name_ok {
            return Err(bad("each segment is type:name"));
        }
    }
    Ok(())
}

fn segment_matches(pattern: &str, seg: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match (pattern.split_once(':'), seg.split_once(':')) {
        (Some((pt, pn)), Some((st, sn))) => pt == st && (pn == "*" || pn == sn),
        _ => false,
    }
}

/// Whether `scope` covers `resource` (at it or below it).
pub fn scope_covers(scope: &str, resource: &str) -> bool {
    let mut res = resource.split('/');
    for pattern in scope.split('/') {
        match res.next() {
            Some(seg) if segment_matches(pattern, seg) => {}
            _ => return false,
        }
    }
    true
}

/// A rule as configured on an application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// Where it holds.
    pub scope: String,
    /// Roles whose permissions it grants there.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Permissions it grants there.
    #[serde(default)]
    pub permissions: Vec<Permission>,
}

/// A rule as carried in tokens: roles expanded into permissions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
pub struct AccessGrant {
    /// Where it holds.
    pub scope: String,
    /// What it grants there.
    pub permissions: Vec<Permission>,
}

/// Whether `permission` holds on `resource` given top-level grants and
/// scoped grants (the rule documented at the top of this module).
pub fn allows(
    top_level: &[Permission],
    access: &[AccessGrant],
    permission: &Permission,
    resource: Option<&str>,
) -> bool {
    if Permission::any_covers(top_level, permission) {
        return true;
    }
    let Some(resource) = resource else {
        return false;
    };
    access.iter().any(|g| {
        scope_covers(&g.scope, resource) && Permission::any_covers(&g.permissions, permission)
    })
}

/// The grants in `wanted` that `bound` allows: each wanted grant that a bound
/// grant covers, else the bound grants it covers (so `content:*` bounded by
/// `content:read` gives `content:read`). Redundant grants are dropped.
///
/// Coverage is looked up in ordered sets (a grant is covered by itself, its
/// `resource:*` or `*`), so this is O(n log n), not quadratic: `scope` words
/// come from callers.
pub fn intersect(wanted: &[Permission], bound: &[Permission]) -> Vec<Permission> {
    let bound_set: BTreeSet<&Permission> = bound.iter().collect();
    let mut out: BTreeSet<Permission> = BTreeSet::new();
    for w in wanted {
        if covered_by_set(&bound_set, w) {
            out.insert(w.clone());
        } else if w.as_str() == "*" {
            out.extend(bound.iter().cloned());
        } else if let Some(res) = w.as_str().strip_suffix(":*") {
            out.extend(bound.iter().filter(|b| b.resource() == Some(res)).cloned());
        }
    }
    let all: BTreeSet<&Permission> = out.iter().collect();
    out.iter()
        .filter(|p| !covered_by_other(&all, p))
        .cloned()
        .collect()
}

fn covered_by_set(set: &BTreeSet<&Permission>, p: &Permission) -> bool {
    set.contains(p) || covered_by_other(set, p)
}

/// Whether a wider grant than `p` itself is in `set`.
fn covered_by_other(set: &BTreeSet<&Permission>, p: &Permission) -> bool {
    if p.as_str() == "*" {
        return false;
    }
    let star = Permission::star();
    if set.contains(&star) {
        return true;
    }
    match p.resource() {
        Some(res) if !p.is_wildcard() => Permission::parse(&format!("{res}:*"))
            .map(|w| set.contains(&w))
            .unwrap_or(false),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    #[test]
    fn paths_and_scopes_validate() {
        assert!(validate_path("cluster:c1/project:*", false).is_ok());
        assert!(validate_path("*/project:p1", false).is_ok());
        assert!(validate_path("cluster:c1", true).is_ok());
        assert!(validate_path("cluster:*", true).is_err());
        for bad in [
            "",
            "cluster",
            "cluster:c1//x:y",
            "cluster:c1/",
            "a b:c",
            "**",
            "x:y*",
        ] {
            assert!(validate_path(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_cover_at_and_below() {
        assert!(scope_covers("cluster:c1", "cluster:c1"));
        assert!(scope_covers("cluster:c1", "cluster:c1/project:p2"));
        assert!(!scope_covers("cluster:c1", "cluster:c2"));
        assert!(!scope_covers("cluster:c1/project:p2", "cluster:c1"));
        assert!(scope_covers(
            "cluster:c1/project:*",
            "cluster:c1/project:p9/workload:w"
        ));
        assert!(!scope_covers("cluster:c1/project:*", "cluster:c1/team:t1"));
        assert!(scope_covers("*/project:p1", "cluster:c7/project:p1"));
        assert!(!scope_covers("*/project:p1", "cluster:c7"));
        assert!(!scope_covers("cluster:c1", "clusters:c1"));
    }

    #[test]
    fn allows_combines_top_level_and_rules() {
        let access = vec![AccessGrant {
            scope: "cluster:c1".into(),
            permissions: vec![p("workloads:*")],
        }];
        let top = vec![p("content:read")];
        assert!(allows(&top, &access, &p("content:read"), None));
        assert!(allows(
            &top,
            &access,
            &p("workloads:write"),
            Some("cluster:c1/project:x")
        ));
        assert!(!allows(
            &top,
            &access,
            &p("workloads:write"),
            Some("cluster:c2")
        ));
        assert!(!allows(&top, &access, &p("workloads:write"), None));
    }

    #[test]
    fn intersection_narrows_wildcards() {
        assert_eq!(
            intersect(&[p("content:*")], &[p("content:read")]),
            vec![p("content:read")]
        );
        assert_eq!(
            intersect(&[p("content:read")], &[p("*")]),
            vec![p("content:read")]
        );
        assert_eq!(
            intersect(&[p("*")], &[p("a:b"), p("c:*")]),
            vec![p("a:b"), p("c:*")]
        );
        assert!(intersect(&[p("content:read")], &[p("users:read")]).is_empty());
        assert_eq!(
            intersect(&[p("c:*"), p("c:r")], &[p("c:*")]),
            vec![p("c:*")]
        );
    }
}
