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

/// Property tests: scopes and resource paths come from request bodies and
/// from downstream services, so validation must never panic and must accept
/// exactly the documented grammar; matching must follow the documented rule;
/// `intersect` must be exact, since every narrowing relies on it.
#[cfg(test)]
mod props {
    use super::*;
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

    /// A segment `type:name` from a small alphabet, so paths often relate.
    fn segment() -> impl Strategy<Value = String> {
        let t = prop_oneof![Just("cluster"), Just("project"), Just("w")];
        let n = prop_oneof![Just("c1"), Just("c2"), Just("p.1"), Just("x_y-z")];
        (t, n).prop_map(|(t, n)| format!("{t}:{n}"))
    }

    /// A resource path: 1 to 16 segments.
    fn resource() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec(segment(), 1..=16)
    }

    /// How one segment of a pattern is derived from a resource segment.
    #[derive(Debug, Clone, Copy)]
    enum Wild {
        Keep,
        AnySegment,
        AnyName,
    }

    fn wild() -> impl Strategy<Value = Wild> {
        prop_oneof![
            3 => Just(Wild::Keep),
            1 => Just(Wild::AnySegment),
            1 => Just(Wild::AnyName)
        ]
    }

    fn apply(seg: &str, w: Wild) -> String {
        match w {
            Wild::Keep => seg.to_owned(),
            Wild::AnySegment => "*".to_owned(),
            Wild::AnyName => format!("{}:*", seg.split_once(':').unwrap().0),
        }
    }

    /// Near misses and noise.
    fn arbitrary() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z:*/ .]{0,40}",
            "([a-z*]{0,3}:[a-z0-9*]{0,3}/?){0,20}",
            "(\\*/){10,20}\\*",
            "[a-z]{1,3}:[a-z]{500,520}",
        ]
    }

    /// The grammar as documented, written independently of the validator.
    fn grammar(s: &str, concrete: bool) -> bool {
        let word = |w: &str| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        };
        let segs: Vec<&str> = s.split('/').collect();
        !s.is_empty()
            && s.len() <= 512
            && segs.len() <= 16
            && segs.iter().all(|seg| {
                (*seg == "*" && !concrete)
                    || matches!(seg.split(':').collect::<Vec<_>>()[..],
                        [t, n] if word(t) && (word(n) || (n == "*" && !concrete)))
            })
    }

    fn perm() -> impl Strategy<Value = Permission> {
        let r = prop_oneof![Just("a"), Just("b"), Just("c")];
        let a = prop_oneof![Just("*"), Just("read"), Just("write")];
        prop_oneof![
            1 => Just(Permission::star()),
            8 => (r, a).prop_map(|(r, a)| Permission::parse(&format!("{r}:{a}")).unwrap()),
        ]
    }

    fn perms() -> impl Strategy<Value = Vec<Permission>> {
        prop::collection::vec(perm(), 0..6)
    }

    proptest! {
        #![proptest_config(config())]

        /// Never a panic, and exactly the documented grammar, for scopes and
        /// for concrete resources.
        #[test]
        fn validate_path_follows_the_grammar(s in arbitrary()) {
            prop_assert_eq!(validate_path(&s, false).is_ok(), grammar(&s, false), "scope {:?}", s);
            prop_assert_eq!(validate_path(&s, true).is_ok(), grammar(&s, true), "resource {:?}", s);
        }

        /// Matching arbitrary strings never panics, and a scope never covers
        /// a resource with fewer segments.
        #[test]
        fn matching_never_panics(scope in arbitrary(), res in arbitrary()) {
            let covered = scope_covers(&scope, &res);
            if scope.split('/').count() > res.split('/').count() {
                prop_assert!(!covered);
            }
            let g = [AccessGrant { scope, permissions: vec![Permission::star()] }];
            let _ = allows(&[], &g, &Permission::star(), Some(&res));
        }

        /// Generated resources and patterns validate as what they are.
        #[test]
        fn generated_paths_validate(r in resource(), w in prop::collection::vec(wild(), 16)) {
            let path = r.join("/");
            prop_assert!(validate_path(&path, true).is_ok(), "{}", path);
            prop_assert!(validate_path(&path, false).is_ok(), "{}", path);
            let pattern: Vec<String> = r.iter().zip(&w).map(|(s, w)| apply(s, *w)).collect();
            let pattern = pattern.join("/");
            prop_assert!(validate_path(&pattern, false).is_ok(), "{}", pattern);
            prop_assert_eq!(validate_path(&pattern, true).is_ok(), !pattern.contains('*'));
        }

        /// A scope covers itself and everything below it; a pattern made by
        /// wildcarding segments of a resource's ancestor covers it; a
        /// concrete scope covers exactly the resources it is a prefix of.
        #[test]
        fn scopes_cover_at_and_below(
            r in resource(), cut in any::<prop::sample::Index>(),
            w in prop::collection::vec(wild(), 16), other in resource(),
        ) {
            let path = r.join("/");
            prop_assert!(scope_covers(&path, &path));
            let k = cut.index(r.len()) + 1;
            let ancestor = r[..k].join("/");
            prop_assert!(scope_covers(&ancestor, &path));
            let pattern: Vec<String> = r[..k].iter().zip(&w).map(|(s, w)| apply(s, *w)).collect();
            prop_assert!(scope_covers(&pattern.join("/"), &path));
            let prefix = other.len() <= r.len() && other[..] == r[..other.len()];
            prop_assert_eq!(scope_covers(&other.join("/"), &path), prefix);
        }

        /// `allows` is exactly the documented rule.
        #[test]
        fn allows_is_the_documented_rule(
            top in perms(), p in perm(),
            grants in prop::collection::vec((resource(), perms()), 0..4),
            res in prop::option::of(resource()),
        ) {
            let access: Vec<AccessGrant> = grants
                .into_iter()
                .map(|(s, permissions)| AccessGrant { scope: s[..s.len().min(2)].join("/"), permissions })
                .collect();
            let res = res.map(|r| r.join("/"));
            let want = Permission::any_covers(&top, &p)
                || res.as_deref().is_some_and(|r| {
                    access.iter().any(|g| scope_covers(&g.scope, r) && Permission::any_covers(&g.permissions, &p))
                });
            prop_assert_eq!(allows(&top, &access, &p, res.as_deref()), want);
        }

        /// `intersect` is exact: a permission is covered by the result if
        /// and only if both inputs cover it; and it keeps no redundant grant.
        #[test]
        fn intersect_is_exact(wanted in perms(), bound in perms(), probe in perm()) {
            let out = intersect(&wanted, &bound);
            prop_assert_eq!(
                Permission::any_covers(&out, &probe),
                Permission::any_covers(&wanted, &probe) && Permission::any_covers(&bound, &probe),
                "wanted {:?} bound {:?} out {:?} probe {}", wanted, bound, out, probe
            );
            for (i, a) in out.iter().enumerate() {
                for (j, b) in out.iter().enumerate() {
                    prop_assert!(i == j || !a.covers(b), "{} is redundant beside {}", b, a);
                }
            }
        }
    }
}
