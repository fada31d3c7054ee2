//! Permissions (`resource:action`, `resource:*`, `*`) and the catalogue.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

use super::DomainError;

/// A permission or grant: `*`, `resource:*` or `resource:action`.
///
/// Resource and action are made of ASCII letters, digits, `_`, `-` and `.`,
/// so a permission can never smuggle a separator or white space into a
/// space-separated `scope`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(
    feature = "gateway",
    schema(
        value_type = String,
        example = "content:read",
        // `parse` below: at most 128 characters in all.
        pattern = r"^(\*|[A-Za-z0-9_.-]+:([A-Za-z0-9_.-]+|\*))$"
    )
)]
pub struct Permission(String);

const MAX_LEN: usize = 128;

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Permission {
    /// Parses and validates a permission string.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let ok = s.len() <= MAX_LEN
            && (s == "*"
                || match s.split_once(':') {
                    Some((r, a)) => valid_part(r) && (a == "*" || valid_part(a)),
                    None => false,
                });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(DomainError::Validation(format!(
                "invalid permission {}: expected \"resource:action\", \"resource:*\" or \"*\"",
                super::error::shown(s)
            )))
        }
    }

    /// `*`: every permission.
    pub fn star() -> Self {
        Self("*".to_owned())
    }

    /// The permission as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The resource part (`None` for `*`).
    pub fn resource(&self) -> Option<&str> {
        self.0.split_once(':').map(|(r, _)| r)
    }

    /// True when this is a wildcard (`*` or `resource:*`).
    pub fn is_wildcard(&self) -> bool {
        self.0 == "*" || self.0.ends_with(":*")
    }

    /// Whether holding `self` grants `other`: `*` covers everything,
    /// `r:*` covers `r:*` and every `r:action`, anything else only itself.
    pub fn covers(&self, other: &Permission) -> bool {
        if self.0 == "*" {
            return true;
        }
        match self.0.strip_suffix(":*") {
            Some(res) => other.resource() == Some(res),
            None => self.0 == other.0,
        }
    }

    /// Whether any of `grants` covers `wanted`.
    pub fn any_covers(grants: &[Permission], wanted: &Permission) -> bool {
        grants.iter().any(|g| g.covers(wanted))
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Permission {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Permission::parse(&s).map_err(|e| e.to_string())
    }
}

impl From<Permission> for String {
    fn from(p: Permission) -> String {
        p.0
    }
}

/// One catalogue entry, as written in the `[[permissions]]` TOML table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PermissionDef {
    /// `resource:action`.
    pub name: Permission,
    /// What it allows, for people.
    #[serde(default)]
    pub description: String,
    /// May be held by a public (browser) key.
    #[serde(default)]
    pub public: bool,
}

/// Names of the gateway's own permissions: every check uses these, never a
/// string literal, so a typo is a compile error rather than an open door.
pub mod builtin {
    /// List and read applications.
    pub const API_KEYS_READ: &str = "api_keys:read";
    /// Create, change, rotate, revoke and delete applications.
    pub const API_KEYS_MANAGE: &str = "api_keys:manage";
    /// Create, change and delete roles.
    pub const ROLES_MANAGE: &str = "roles:manage";
    /// Create, change and delete users.
    pub const USERS_MANAGE: &str = "users:manage";
    /// Revoke any access token.
    pub const TOKENS_REVOKE: &str = "tokens:revoke";
    /// Introspect access tokens.
    pub const TOKENS_INTROSPECT: &str = "tokens:introspect";
    /// Read the audit log.
    pub const AUDIT_READ: &str = "audit:read";
    /// Read `/metrics`.
    pub const METRICS_READ: &str = "metrics:read";
    /// Act for any subject in a token exchange (RFC 8693 delegation),
    /// without the subject token's `may_act` naming the actor.
    pub const TOKENS_IMPERSONATE: &str = "tokens:impersonate";
    /// Report leaked keys and tokens (`POST /api/v1/leaks`).
    pub const LEAKS_REPORT: &str = "leaks:report";
    /// List, rotate and revoke the gateway's signing keys (docs/api.md, "Signing keys over time").
    pub const KEYS_MANAGE: &str = "keys:manage";
}

/// The gateway's own permissions, always in the catalogue.
pub const BUILT_INS: &[(&str, &str)] = &[
    (
        builtin::API_KEYS_READ,
        "List and read applications (API keys)",
    ),
    (
        builtin::API_KEYS_MANAGE,
        "Create, change, rotate, revoke and delete applications",
    ),
    (builtin::ROLES_MANAGE, "Create, change and delete roles"),
    (builtin::USERS_MANAGE, "Create, change and delete users"),
    (builtin::TOKENS_REVOKE, "Revoke access tokens"),
    (builtin::TOKENS_INTROSPECT, "Introspect access tokens"),
    (builtin::AUDIT_READ, "Read the audit log"),
    (builtin::METRICS_READ, "Read the gateway's metrics"),
    (
        builtin::TOKENS_IMPERSONATE,
        "Act for any subject in a token exchange",
    ),
    (
        builtin::LEAKS_REPORT,
        "Report leaked keys and tokens, which are revoked at once",
    ),
    (
        builtin::KEYS_MANAGE,
        "List, rotate and revoke the gateway's signing keys",
    ),
];

/// The permission catalogue: configured entries plus the built-ins.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    entries: BTreeMap<Permission, PermissionDef>,
}

impl Catalogue {
    /// Builds the catalogue; a configured entry must be concrete (no wildcard)
    /// and may not repeat a name.
    pub fn new(configured: Vec<PermissionDef>) -> Result<Self, DomainError> {
        let mut entries = BTreeMap::new();
        for (name, description) in BUILT_INS {
            let name = Permission::parse(name)?;
            let def = PermissionDef {
                name: name.clone(),
                description: (*description).to_owned(),
                public: false,
            };
            entries.insert(name, def);
        }
        for def in configured {
            if def.name.is_wildcard() {
                return Err(DomainError::Validation(format!(
                    "catalogue entry {} is a wildcard; list concrete permissions",
                    def.name
                )));
            }
            if entries.contains_key(&def.name) {
                return Err(DomainError::Validation(format!(
                    "catalogue entry {} is listed twice (or repeats a built-in)",
                    def.name
                )));
            }
            entries.insert(def.name.clone(), def);
        }
        Ok(Self { entries })
    }

    /// Every entry, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = &PermissionDef> {
        self.entries.values()
    }

    /// Whether a grant names something the catalogue knows: `*`, a
    /// `resource:*` whose resource has at least one entry, or an entry.
    pub fn knows(&self, grant: &Permission) -> bool {
        if grant.as_str() == "*" {
            return true;
        }
        if let Some(res) = grant.as_str().strip_suffix(":*") {
            return self.entries.keys().any(|k| k.resource() == Some(res));
        }
        self.entries.contains_key(grant)
    }

    /// Whether a grant may be held by a public key: a concrete catalogue
    /// entry marked public (never a wildcard).
    pub fn is_public(&self, grant: &Permission) -> bool {
        !grant.is_wildcard() && self.entries.get(grant).is_some_and(|d| d.public)
    }

    /// Checks every grant, naming all the unknown ones in one error.
    pub fn check_all(&self, grants: &[Permission]) -> Result<(), DomainError> {
        let unknown: Vec<&str> = grants
            .iter()
            .filter(|g| !self.knows(g))
            .map(Permission::as_str)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(format!(
                "unknown permission(s), not in the catalogue: {}",
                super::error::listed(unknown)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    #[test]
    fn parses_and_refuses() {
        for ok in ["*", "content:read", "content:*", "a.b-c_d:x"] {
            assert!(Permission::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "content", ":read", "content:", "a b:c", "a:b:c", "*:read", "a:r*",
        ] {
            assert!(Permission::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wildcards_cover() {
        assert!(p("*").covers(&p("content:read")));
        assert!(p("*").covers(&p("*")));
        assert!(p("content:*").covers(&p("content:read")));
        assert!(p("content:*").covers(&p("content:*")));
        assert!(!p("content:*").covers(&p("contents:read")));
        assert!(!p("content:*").covers(&p("*")));
        assert!(!p("content:read").covers(&p("content:*")));
        assert!(p("content:read").covers(&p("content:read")));
        assert!(!p("content:read").covers(&p("content:write")));
    }

    #[test]
    fn catalogue_knows_builtins_and_config() {
        let cat = Catalogue::new(vec![PermissionDef {
            name: p("content:read"),
            description: String::new(),
            public: true,
        }])
        .unwrap();
        assert!(cat.knows(&p("api_keys:manage")));
        assert!(cat.knows(&p("content:read")));
        assert!(cat.knows(&p("content:*")));
        assert!(cat.knows(&p("*")));
        assert!(!cat.knows(&p("content:write")));
        assert!(!cat.knows(&p("nope:*")));
        let err = cat
            .check_all(&[p("content:read"), p("x:y"), p("z:*")])
            .unwrap_err();
        assert!(err.to_string().contains("x:y, z:*"), "{err}");
    }

    #[test]
    fn catalogue_refuses_duplicates_and_wildcards() {
        let dup = PermissionDef {
            name: p("api_keys:read"),
            description: String::new(),
            public: false,
        };
        assert!(Catalogue::new(vec![dup]).is_err());
        let wild = PermissionDef {
            name: p("content:*"),
            description: String::new(),
            public: false,
        };
        assert!(Catalogue::new(vec![wild]).is_err());
    }
}

/// Property tests: permissions arrive in request bodies and `scope`
/// strings, so parsing must never panic, must accept exactly the documented
/// grammar, and coverage must behave like the order it claims to be.
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

    /// A well-formed part: the documented alphabet.
    fn part() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,20}"
    }

    /// A well-formed permission of each of the three shapes.
    fn valid() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => Just("*".to_owned()),
            3 => part().prop_map(|r| format!("{r}:*")),
            6 => (part(), part()).prop_map(|(r, a)| format!("{r}:{a}")),
        ]
    }

    /// A small universe, so that generated pairs often relate.
    fn small() -> impl Strategy<Value = Permission> {
        let r = prop_oneof![Just("a"), Just("b"), Just("content")];
        let a = prop_oneof![Just("*"), Just("read"), Just("write")];
        prop_oneof![
            1 => Just(Permission::star()),
            8 => (r, a).prop_map(|(r, a)| Permission::parse(&format!("{r}:{a}")).unwrap()),
        ]
    }

    /// Near misses and noise.
    fn arbitrary() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z*:. _-]{0,12}",
            "[A-Za-z0-9_.*-]{0,10}(:[A-Za-z0-9_.*: -]{0,10}){0,3}",
            "[a-z]{120,140}:[a-z]{0,10}",
        ]
    }

    /// The grammar as documented, written independently of the parser.
    fn grammar(s: &str) -> bool {
        let ok_part = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        };
        s.len() <= 128
            && (s == "*"
                || matches!(s.split(':').collect::<Vec<_>>()[..],
                    [r, a] if ok_part(r) && (a == "*" || ok_part(a))))
    }

    proptest! {
        #![proptest_config(config())]

        /// Never a panic; accepted exactly when the grammar says so; what
        /// is accepted is kept verbatim and never holds white space.
        #[test]
        fn parse_never_panics_and_follows_the_grammar(s in arbitrary()) {
            let parsed = Permission::parse(&s);
            prop_assert_eq!(parsed.is_ok(), grammar(&s), "{:?}", s);
            if let Ok(p) = parsed {
                prop_assert_eq!(p.as_str(), s.as_str());
                prop_assert!(!p.as_str().contains(char::is_whitespace));
            }
        }

        /// Display, `as_str`, `String` and serde all round-trip.
        #[test]
        fn valid_permissions_round_trip(s in valid()) {
            let p = Permission::parse(&s).unwrap();
            prop_assert_eq!(p.as_str(), s.as_str());
            prop_assert_eq!(p.to_string(), s.clone());
            prop_assert_eq!(Permission::parse(&p.to_string()).unwrap(), p.clone());
            prop_assert_eq!(Permission::try_from(String::from(p.clone())).unwrap(), p.clone());
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<Permission>(&json).unwrap(), p.clone());
            prop_assert_eq!(p.is_wildcard(), s == "*" || s.ends_with(":*"));
        }

        /// Serde refuses what `parse` refuses (bodies are parsed this way).
        #[test]
        fn serde_agrees_with_parse(s in arbitrary()) {
            let json = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(
                serde_json::from_str::<Permission>(&json).is_ok(),
                Permission::parse(&s).is_ok()
            );
        }

        /// `covers` is reflexive; `*` covers everything and only `*` covers
        /// `*`; `r:*` covers exactly the permissions of resource `r`.
        #[test]
        fn coverage_rules(s in valid(), t in valid()) {
            let p = Permission::parse(&s).unwrap();
            let q = Permission::parse(&t).unwrap();
            prop_assert!(p.covers(&p));
            prop_assert!(Permission::star().covers(&p));
            prop_assert_eq!(p.covers(&Permission::star()), s == "*");
            if let Some(res) = s.strip_suffix(":*") {
                prop_assert_eq!(p.covers(&q), q.resource() == Some(res));
            }
            if !p.is_wildcard() {
                prop_assert_eq!(p.covers(&q), p == q);
            }
            prop_assert!(Permission::any_covers(&[p.clone(), q.clone()], &q));
        }

        /// `covers` is a partial order: transitive and antisymmetric.
        #[test]
        fn coverage_is_a_partial_order(a in small(), b in small(), c in small()) {
            if a.covers(&b) && b.covers(&c) {
                prop_assert!(a.covers(&c), "{} {} {}", a, b, c);
            }
            if a.covers(&b) && b.covers(&a) {
                prop_assert_eq!(a, b);
            }
        }

        /// The catalogue never "knows" a malformed or foreign grant, and
        /// knows every entry and every wildcard over a known resource.
        #[test]
        fn catalogue_knows_its_entries(q in small(), names in prop::collection::btree_set(small(), 0..6)) {
            let defs: Vec<PermissionDef> = names
                .iter()
                .filter(|p| !p.is_wildcard())
                .map(|p| PermissionDef { name: p.clone(), description: String::new(), public: false })
                .collect();
            let cat = Catalogue::new(defs.clone()).unwrap();
            for d in &defs {
                prop_assert!(cat.knows(&d.name));
            }
            let concrete_known = defs.iter().any(|d| d.name == q)
                || BUILT_INS.iter().any(|(n, _)| *n == q.as_str());
            if !q.is_wildcard() {
                prop_assert_eq!(cat.knows(&q), concrete_known);
            }
            prop_assert!(!cat.is_public(&q) || !q.is_wildcard());
        }
    }
}
