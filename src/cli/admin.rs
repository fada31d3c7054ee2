//! `tessera apps …` and `tessera roles …`: the admin API from a terminal.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::Remote;
use super::client::AdminClient;

/// `tessera apps …`.
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an application; prints its secret once.
    Create(CreateArgs),
    /// List applications.
    List(ListArgs),
    /// Show one application.
    Show {
        /// Application id.
        id: String,
    },
    /// Change an application: only the fields given change.
    Update(UpdateArgs),
    /// Issue a new secret; prints it once.
    Rotate {
        /// Application id.
        id: String,
        /// Seconds the old secret keeps working (0 to 86400).
        #[arg(long, default_value_t = 0)]
        grace: u64,
    },
    /// Revoke an application: its secret and tokens stop at once.
    Revoke {
        /// Application id.
        id: String,
    },
    /// Delete one or more applications.
    Delete {
        /// Application ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `tessera apps create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name.
    #[arg(long)]
    pub name: String,
    /// Description.
    #[arg(long, default_value = "")]
    pub description: String,
    /// `secret` or `public`.
    #[arg(long = "type", default_value = "secret")]
    pub key_type: String,
    /// `live` or `test`.
    #[arg(long = "env", default_value = "live")]
    pub environment: String,
    /// A permission (repeat for several).
    #[arg(long = "permission")]
    pub permissions: Vec<String>,
    /// A role (repeat for several).
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// An allowed IP or CIDR (repeat for several).
    #[arg(long = "allowed-ip")]
    pub allowed_ips: Vec<String>,
    /// Expiry, RFC 3339.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Token lifetime in seconds.
    #[arg(long)]
    pub token_ttl: Option<u64>,
    /// Owner: a user id or `gateway`.
    #[arg(long)]
    pub owner: Option<String>,
    /// Request budget at the edge, `requests/window`: `100/1m`, `10/30s`
    /// (default: the gateway's).
    #[arg(long)]
    pub rate_limit: Option<String>,
}

/// `100/1m` as the API's `rateLimit` object; `what` names the option in
/// errors. The window itself is checked by the gateway (422).
pub fn rate_limit_body(what: &str, v: &str) -> Result<Value, String> {
    let bad = || format!("{what} {v}: requests/window, like 100/1m");
    let (n, per) = v.trim().split_once('/').ok_or_else(bad)?;
    let requests: u32 = n.trim().parse().map_err(|_| bad())?;
    let per = per.trim();
    if per.is_empty() {
        return Err(bad());
    }
    Ok(json!({"requests": requests, "per": per}))
}

/// `tessera apps update`. A list option given at least once replaces that
/// list; `--clear` empties one.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Application id.
    pub id: String,
    /// New name.
    #[arg(long)]
    pub name: Option<String>,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// A permission (repeat for several; replaces the list).
    #[arg(long = "permission")]
    pub permissions: Option<Vec<String>>,
    /// A role (repeat for several; replaces the list).
    #[arg(long = "role")]
    pub roles: Option<Vec<String>>,
    /// An allowed IP or CIDR (repeat for several; replaces the list).
    #[arg(long = "allowed-ip")]
    pub allowed_ips: Option<Vec<String>>,
    /// An audience (repeat for several; replaces the list).
    #[arg(long = "audience")]
    pub audiences: Option<Vec<String>>,
    /// A redirect URI, making it an OAuth client (repeat; replaces the list).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Option<Vec<String>>,
    /// Owner: a user id or `gateway`.
    #[arg(long)]
    pub owner: Option<String>,
    /// Expiry, RFC 3339, or `never`.
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Token lifetime in seconds, or `default`.
    #[arg(long)]
    pub token_ttl: Option<String>,
    /// Request budget at the edge, `requests/window` (`100/1m`), or
    /// `default` for the gateway's.
    #[arg(long)]
    pub rate_limit: Option<String>,
    /// Empty a list: permissions, roles, allowed-ips, audiences,
    /// redirect-uris (repeat for several).
    #[arg(long, value_parser = ["permissions", "roles", "allowed-ips", "audiences", "redirect-uris"])]
    pub clear: Vec<String>,
}

impl UpdateArgs {
    /// The PATCH body: only what was given. Refuses a value that cannot be
    /// sent before anything is sent, and an empty update.
    pub fn body(&self) -> Result<Value, String> {
        let mut body = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            body.insert(k.to_owned(), v);
        };
        if let Some(v) = &self.name {
            put("name", json!(v));
        }
        if let Some(v) = &self.description {
            put("description", json!(v));
        }
        if let Some(v) = &self.owner {
            put("owner", json!(v));
        }
        for (key, flag, given) in [
            ("permissions", "permissions", &self.permissions),
            ("roles", "roles", &self.roles),
            ("allowedIps", "allowed-ips", &self.allowed_ips),
            ("audiences", "audiences", &self.audiences),
            ("redirectUris", "redirect-uris", &self.redirect_uris),
        ] {
            let cleared = self.clear.iter().any(|c| c == flag);
            match (given, cleared) {
                (Some(_), true) => {
                    return Err(format!("--clear {flag} and a value for it: choose one"));
                }
                (Some(v), false) => put(key, json!(v)),
                (None, true) => put(key, json!([])),
                (None, false) => {}
            }
        }
        match self.expires_at.as_deref() {
            None => {}
            Some("never") => put("expiresAt", Value::Null),
            Some(t) => {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map_err(|e| format!("--expires-at {t}: not RFC 3339 ({e})"))?;
                put("expiresAt", json!(t));
            }
        }
        match self.token_ttl.as_deref() {
            None => {}
            Some("default") => put("tokenTtl", Value::Null),
            Some(t) => {
                let n: u64 = t
                    .parse()
                    .map_err(|_| format!("--token-ttl {t}: seconds or `default`"))?;
                put("tokenTtl", json!(n));
            }
        }
        match self.rate_limit.as_deref() {
            None => {}
            Some("default") => put("rateLimit", Value::Null),
            Some(r) => put("rateLimit", rate_limit_body("--rate-limit", r)?),
        }
        if body.is_empty() {
            return Err("nothing to change: give at least one option".into());
        }
        Ok(Value::Object(body))
    }
}

/// `tessera apps list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Page size.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Cursor from a previous page.
    #[arg(long)]
    pub cursor: Option<String>,
    /// `live` or `test`.
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// `secret` or `public`.
    #[arg(long = "type")]
    pub key_type: Option<String>,
    /// `active`, `revoked` or `expired`.
    #[arg(long)]
    pub status: Option<String>,
    /// Owner id.
    #[arg(long)]
    pub owner: Option<String>,
}

/// `tessera roles …`.
#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// List roles.
    List,
    /// Show one role.
    Show {
        /// Role name.
        name: String,
    },
    /// Create a role.
    Create {
        /// Role name.
        name: String,
        /// A permission (repeat for several).
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Replace a role's permissions.
    Update {
        /// Role name.
        name: String,
        /// A permission (repeat for several).
        #[arg(long = "permission")]
        permissions: Vec<String>,
    },
    /// Delete a role.
    Delete {
        /// Role name.
        name: String,
        /// Remove it from every holder instead of refusing.
        #[arg(long)]
        detach: bool,
    },
}

const SECRET_WARNING: &str =
    "Store this secret now: it is shown only once and cannot be recovered.";

/// One cell of a table: strings bare, lists comma-joined, null as `-`.
pub(super) fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        // Names, emails and audit fields come from people and upstream
        // providers: no control or bidi characters reach the terminal.
        Value::String(s) => super::credentials::printable(s),
        Value::Array(a) => a.iter().map(s).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints rows under headers, columns padded to their widest cell.
pub(super) fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| (*h).to_owned()).collect());
    for r in rows {
        line(r.clone());
    }
}

fn app_rows(apps: &[Value]) {
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            vec![
                s(&a["id"]),
                s(&a["name"]),
                s(&a["type"]),
                s(&a["environment"]),
                s(&a["status"]),
                s(&a["prefix"]),
                s(&a["permissions"]),
                s(&a["useCount"]),
                s(&a["lastUsedAt"]),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "NAME",
            "TYPE",
            "ENV",
            "STATUS",
            "PREFIX",
            "PERMISSIONS",
            "USES",
            "LAST USED",
        ],
        &rows,
    );
}

fn app_detail(a: &Value) {
    for key in [
        "id",
        "name",
        "description",
        "owner",
        "type",
        "environment",
        "status",
        "prefix",
        "roles",
        "permissions",
        "accessRules",
        "allowedIps",
        "audiences",
        "expiresAt",
        "tokenTtl",
        "rateLimit",
        "createdAt",
        "updatedAt",
        "revokedAt",
        "lastUsedAt",
        "lastUsedIp",
        "useCount",
    ] {
        let v = &a[key];
        let shown = if key == "accessRules" && v.is_array() {
            v.to_string()
        } else if key == "rateLimit" && v.is_object() {
            format!("{}/{}", s(&v["requests"]), s(&v["per"]))
        } else {
            s(v)
        };
        println!("{key:<12} {shown}");
    }
}

fn with_secret(v: &Value, json_out: bool) {
    if json_out {
        println!("{v}");
        eprintln!("{SECRET_WARNING}");
    } else {
        app_detail(v);
        println!();
        println!("secret       {}", s(&v["secret"]));
        println!();
        println!("{SECRET_WARNING}");
    }
}

fn query(args: &ListArgs) -> String {
    let pairs = [
        ("limit", args.limit.map(|l| l.to_string())),
        ("cursor", args.cursor.clone()),
        ("environment", args.environment.clone()),
        ("type", args.key_type.clone()),
        ("status", args.status.clone()),
        ("owner", args.owner.clone()),
    ];
    let q: Vec<String> = pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={}", urlencode(&v))))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// Percent-encodes a path segment or query value.
pub(super) fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `tessera apps …`.
pub async fn apps(remote: &Remote, cmd: AppsCommand, json_out: bool) -> Result<(), String> {
    // A malformed update is refused before any credential is spent.
    let update_body = match &cmd {
        AppsCommand::Update(u) => Some(u.body()?),
        _ => None,
    };
    let create_rate = match &cmd {
        AppsCommand::Create(a) => a
            .rate_limit
            .as_deref()
            .map(|r| rate_limit_body("--rate-limit", r))
            .transpose()?,
        _ => None,
    };
    let c = AdminClient::connect(remote).await?;
    match cmd {
        AppsCommand::Create(a) => {
            let mut body = json!({
                "name": a.name, "description": a.description, "type": a.key_type,
                "environment": a.environment, "permissions": a.permissions, "roles": a.roles,
                "allowedIps": a.allowed_ips,
            });
            if let Some(e) = a.expires_at {
                body["expiresAt"] = json!(e);
            }
            if let Some(t) = a.token_ttl {
                body["tokenTtl"] = json!(t);
            }
            if let Some(o) = a.owner {
                body["owner"] = json!(o);
            }
            if let Some(r) = create_rate {
                body["rateLimit"] = r;
            }
            let v = c.call(Method::POST, "/api/v1/apps", Some(&body)).await?;
            with_secret(&v, json_out);
        }
        AppsCommand::List(args) => {
            let v = c
                .call(Method::GET, &format!("/api/v1/apps{}", query(&args)), None)
                .await?;
            if json_out {
                println!("{v}");
            } else {
                app_rows(v["data"].as_array().map(Vec::as_slice).unwrap_or_default());
                if let Some(next) = v["nextCursor"].as_str() {
                    println!("\nmore: --cursor {next}");
                }
            }
        }
        AppsCommand::Show { id } => {
            let v = c
                .call(
                    Method::GET,
                    &format!("/api/v1/apps/{}", urlencode(&id)),
                    None,
                )
                .await?;
            if json_out {
                println!("{v}");
            } else {
                app_detail(&v);
            }
        }
        AppsCommand::Update(u) => {
            let path = format!("/api/v1/apps/{}", urlencode(&u.id));
            let v = c.call(Method::PATCH, &path, update_body.as_ref()).await?;
            if json_out {
                println!("{v}");
            } else {
                app_detail(&v);
            }
        }
        AppsCommand::Rotate { id, grace } => {
            let body = json!({"gracePeriodSeconds": grace});
            let path = format!("/api/v1/apps/{}/rotate", urlencode(&id));
            let v = c.call(Method::POST, &path, Some(&body)).await?;
            with_secret(&v, json_out);
        }
        AppsCommand::Revoke { id } => {
            let path = format!("/api/v1/apps/{}/revoke", urlencode(&id));
            let v = c.call(Method::POST, &path, None).await?;
            if json_out {
                println!("{v}");
            } else {
                println!("revoked {}", s(&v["id"]));
            }
        }
        AppsCommand::Delete { ids } => {
            let body = json!({"ids": ids});
            let v = c
                .call(Method::POST, "/api/v1/apps/bulk-delete", Some(&body))
                .await?;
            if json_out {
                println!("{v}");
            } else {
                let rows: Vec<Vec<String>> = v["results"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .map(|r| vec![s(&r["id"]), s(&r["result"])])
                    .collect();
                print_table(&["ID", "RESULT"], &rows);
            }
            let missing = v["results"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["result"] != "deleted"));
            if missing {
                return Err("some applications were not found".into());
            }
        }
    }
    Ok(())
}

/// Runs `tessera roles …`.
pub async fn roles(remote: &Remote, cmd: RolesCommand, json_out: bool) -> Result<(), String> {
    let c = AdminClient::connect(remote).await?;
    let role_rows = |roles: &[Value]| {
        let rows: Vec<Vec<String>> = roles
            .iter()
            .map(|r| vec![s(&r["name"]), s(&r["permissions"]), s(&r["description"])])
            .collect();
        print_table(&["NAME", "PERMISSIONS", "DESCRIPTION"], &rows);
    };
    let v = match cmd {
        RolesCommand::List => {
            let v = c.call(Method::GET, "/api/v1/roles", None).await?;
            if !json_out {
                role_rows(v["data"].as_array().map(Vec::as_slice).unwrap_or_default());
                return Ok(());
            }
            v
        }
        RolesCommand::Show { name } => {
            c.call(
                Method::GET,
                &format!("/api/v1/roles/{}", urlencode(&name)),
                None,
            )
            .await?
        }
        RolesCommand::Create {
            name,
            permissions,
            description,
        } => {
            let body =
                json!({"name": name, "permissions": permissions, "description": description});
            c.call(Method::POST, "/api/v1/roles", Some(&body)).await?
        }
        RolesCommand::Update { name, permissions } => {
            let body = json!({"permissions": permissions});
            let path = format!("/api/v1/roles/{}", urlencode(&name));
            c.call(Method::PATCH, &path, Some(&body)).await?
        }
        RolesCommand::Delete { name, detach } => {
            let path = format!("/api/v1/roles/{}?detach={detach}", urlencode(&name));
            c.call(Method::DELETE, &path, None).await?;
            if json_out {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted role {name}");
            }
            return Ok(());
        }
    };
    if json_out {
        println!("{v}");
    } else {
        role_rows(std::slice::from_ref(&v));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_are_written_as_requests_per_window() {
        assert_eq!(
            rate_limit_body("--rate-limit", "100/1m").unwrap(),
            json!({"requests": 100, "per": "1m"})
        );
        for bad in ["100", "x/1m", "100/", "-1/1m", ""] {
            assert!(rate_limit_body("--rate-limit", bad).is_err(), "{bad:?}");
        }
    }
}
