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
#[cfg_attr(feature = "gateway", schema(value_type = String, example = "content:read"))]
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
                unknown.join(", ")
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
