//! `tessera apps …` and `tessera roles …`: the admin API from a terminal.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::Remote;
use super::client::AdminClient;
use super::values;

/// `tessera apps …`.
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Create an application; prints its secret once.
    Create(CreateArgs),
    /// List applications, filtered; a page at a time.
    List(ListArgs),
    /// Show one application.
    Show {
        /// Application id.
        id: String,
    },
    /// Change an application: only the fields given change.
    Update(UpdateArgs),
    /// Issue a new secret; prints it once. The old one stops at once, or
    /// after `--grace`.
    Rotate {
        /// Application id.
        id: String,
        /// Seconds the old secret keeps working, 0 to 86400.
        #[arg(long, default_value_t = 0)]
        grace: u64,
    },
    /// Revoke an application: its secret and tokens stop at once.
    Revoke {
        /// Application id.
        id: String,
    },
    /// Delete one or more applications (exit 1 when one was not found).
    Delete {
        /// Application ids.
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `tessera apps create`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  tessera apps create --name billing --permission content:read
  tessera apps create --name cluster-bot --env test --audience cluster-api \\
      --access-rule 'cluster:c1/project:*=content:read,reader' --expires-at 90d")]
pub struct CreateArgs {
    /// Name: 1 to 100 characters, unique on the gateway.
    #[arg(long)]
    pub name: String,
    /// Free text, at most 1000 characters.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Key type: `secret` (a confidential service) or `public`.
    #[arg(long = "type", default_value = "secret", value_name = "secret|public")]
    pub key_type: String,
    /// Environment: `live` or `test` (the secret's prefix says which).
    #[arg(long = "env", default_value = "live", value_name = "live|test")]
    pub environment: String,
    /// A permission it holds everywhere, `resource:action` (repeat for
    /// several; each must be in the gateway's catalogue).
    #[arg(long = "permission", value_name = "PERM")]
    pub permissions: Vec<String>,
    /// A role it holds everywhere (repeat for several; each must exist).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// A grant limited to resources: `SCOPE=GRANT[,GRANT…]`, where SCOPE is
    /// `type:name`, `type:*` or `*` segments joined by `/`, and each GRANT
    /// is a permission (it has a colon) or a role name. Example:
    /// `cluster:c1/project:*=content:read,reader` (repeat for several).
    #[arg(long = "access-rule", value_name = "SCOPE=GRANTS")]
    pub access_rules: Vec<String>,
    /// An extra audience its tokens may ask for, besides the gateway's
    /// default (repeat for several).
    #[arg(long = "audience", value_name = "AUD")]
    pub audiences: Vec<String>,
    /// An IP address or CIDR allowed to exchange its secret (repeat; none:
    /// anywhere).
    #[arg(long = "allowed-ip", value_name = "IP|CIDR")]
    pub allowed_ips: Vec<String>,
    /// When it stops working: an RFC 3339 instant (`2027-01-31T00:00:00Z`)
    /// or a duration from now (`90d`, `12h`; units s, m, h, d, w).
    #[arg(long, value_name = "WHEN")]
    pub expires_at: Option<String>,
    /// Lifetime of its tokens: seconds or a duration (`900`, `15m`), from
    /// 10 s up to the gateway's `token_ttl` (default: the gateway's).
    #[arg(long, value_name = "SECONDS")]
    pub token_ttl: Option<String>,
    /// Owner: a user id (`usr_…`) or `gateway` (default: yours).
    #[arg(long)]
    pub owner: Option<String>,
    /// Request budget at `/auth/forward`, `requests/window`: `100/1m`,
    /// `10/30s`; window at most `1d` (default: the gateway's).
    #[arg(long, value_name = "N/WINDOW")]
    pub rate_limit: Option<String>,
    /// A redirect URI for sign-in (it makes the application an OAuth
    /// client): `https`, or `http` on loopback (repeat for several).
    #[arg(long = "redirect-uri", value_name = "URL")]
    pub redirect_uris: Vec<String>,
    /// Where RP-initiated logout may send people back (repeat).
    #[arg(long = "post-logout-redirect-uri", value_name = "URL")]
    pub post_logout_redirect_uris: Vec<String>,
    /// A grant it may use (repeat): client_credentials, authorization_code,
    /// refresh_token, urn:ietf:params:oauth:grant-type:token-exchange,
    /// urn:ietf:params:oauth:grant-type:device_code (default:
    /// client_credentials, plus the code flow with `--redirect-uri`).
    #[arg(long = "grant-type", value_name = "GRANT")]
    pub grant_types: Vec<String>,
}

impl CreateArgs {
    /// The POST body, every value checked first: an error names the flag
    /// and what it accepts, and nothing is sent.
    pub fn body(&self) -> Result<Value, String> {
        let mut body = json!({
            "name": values::text("--name", &self.name, 100, true)?,
            "description": values::text("--description", &self.description, 1000, false)?,
            "type": values::one_of("--type", &self.key_type, &["secret", "public"])?,
            "environment": values::one_of("--env", &self.environment, &["live", "test"])?,
            "permissions": values::each("--permission", &self.permissions, values::permission)?,
            "roles": values::each("--role", &self.roles, values::role)?,
            "accessRules": values::each("--access-rule", &self.access_rules, values::access_rule)?,
            "audiences": values::each("--audience", &self.audiences, values::audience)?,
            "allowedIps": values::each("--allowed-ip", &self.allowed_ips, values::ip)?,
            "redirectUris": values::each("--redirect-uri", &self.redirect_uris, values::redirect_uri)?,
            "postLogoutRedirectUris": values::each(
                "--post-logout-redirect-uri",
                &self.post_logout_redirect_uris,
                values::redirect_uri,
            )?,
            "grantTypes": values::each("--grant-type", &self.grant_types, values::grant_type)?,
        });
        if let Some(e) = &self.expires_at {
            body["expiresAt"] = json!(values::expires_at("--expires-at", e)?);
        }
        if let Some(t) = &self.token_ttl {
            body["tokenTtl"] = json!(values::token_ttl("--token-ttl", t)?);
        }
        if let Some(o) = &self.owner {
            body["owner"] = json!(o);
        }
        if let Some(r) = &self.rate_limit {
            body["rateLimit"] = values::rate_limit("--rate-limit", r)?;
        }
        Ok(body)
    }
}

/// `100/1m` as the API's `rateLimit` object; `what` names the option in
/// errors.
pub fn rate_limit_body(what: &str, v: &str) -> Result<Value, String> {
    values::rate_limit(what, v)
}

/// The lists `apps update --clear` can empty, as flags and as API keys.
const CLEARABLE: &[(&str, &str)] = &[
    ("permissions", "permissions"),
    ("roles", "roles"),
    ("access-rules", "accessRules"),
    ("audiences", "audiences"),
    ("allowed-ips", "allowedIps"),
    ("redirect-uris", "redirectUris"),
    ("post-logout-redirect-uris", "postLogoutRedirectUris"),
    ("grant-types", "grantTypes"),
];

/// `tessera apps update`. A list option given at least once replaces that
/// list; `--clear` empties one.
#[derive(Debug, Args)]
#[command(
    after_help = "Only the options given change. A list option given at least once \
replaces the whole list; `--clear LIST` empties one.

Examples:
  tessera apps update app_… --audience cluster-api --audience billing-api
  tessera apps update app_… --access-rule 'cluster:c1=content:read' --token-ttl 15m
  tessera apps update app_… --clear allowed-ips --expires-at never --rate-limit default"
)]
pub struct UpdateArgs {
    /// Application id.
    pub id: String,
    /// New name: 1 to 100 characters, unique on the gateway.
    #[arg(long)]
    pub name: Option<String>,
    /// New description, at most 1000 characters.
    #[arg(long)]
    pub description: Option<String>,
    /// A permission, `resource:action` (repeat for several; replaces the
    /// list).
    #[arg(long = "permission", value_name = "PERM")]
    pub permissions: Option<Vec<String>>,
    /// A role (repeat for several; replaces the list).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Option<Vec<String>>,
    /// An access rule, `SCOPE=GRANT[,GRANT…]` as in `apps create` (repeat
    /// for several; replaces the list).
    #[arg(long = "access-rule", value_name = "SCOPE=GRANTS")]
    pub access_rules: Option<Vec<String>>,
    /// An extra audience (repeat for several; replaces the list).
    #[arg(long = "audience", value_name = "AUD")]
    pub audiences: Option<Vec<String>>,
    /// An allowed IP or CIDR (repeat for several; replaces the list).
    #[arg(long = "allowed-ip", value_name = "IP|CIDR")]
    pub allowed_ips: Option<Vec<String>>,
    /// A redirect URI, making it an OAuth client (repeat; replaces the list).
    #[arg(long = "redirect-uri", value_name = "URL")]
    pub redirect_uris: Option<Vec<String>>,
    /// A post-logout redirect URI (repeat; replaces the list).
    #[arg(long = "post-logout-redirect-uri", value_name = "URL")]
    pub post_logout_redirect_uris: Option<Vec<String>>,
    /// A grant type, as in `apps create` (repeat; replaces the list).
    #[arg(long = "grant-type", value_name = "GRANT")]
    pub grant_types: Option<Vec<String>>,
    /// Owner: a user id (`usr_…`) or `gateway`.
    #[arg(long)]
    pub owner: Option<String>,
    /// Expiry: an RFC 3339 instant, a duration from now (`90d`), or
    /// `never`.
    #[arg(long, value_name = "WHEN|never")]
    pub expires_at: Option<String>,
    /// Token lifetime: seconds or a duration (10 s to the gateway's
    /// `token_ttl`), or `default` for the gateway's.
    #[arg(long, value_name = "SECONDS|default")]
    pub token_ttl: Option<String>,
    /// Request budget at the edge, `requests/window` (`100/1m`), or
    /// `default` for the gateway's.
    #[arg(long, value_name = "N/WINDOW|default")]
    pub rate_limit: Option<String>,
    /// Empty a list (repeat for several): permissions, roles, access-rules,
    /// audiences, allowed-ips, redirect-uris, post-logout-redirect-uris,
    /// grant-types.
    #[arg(long, value_name = "LIST")]
    pub clear: Vec<String>,
}

impl UpdateArgs {
    /// The PATCH body: only what was given. Refuses a value that cannot be
    /// sent before anything is sent, and an empty update.
    pub fn body(&self) -> Result<Value, String> {
        let names: Vec<&str> = CLEARABLE.iter().map(|(f, _)| *f).collect();
        for c in &self.clear {
            values::one_of("--clear", c, &names)?;
        }
        let mut body = serde_json::Map::new();
        let mut put = |k: &str, v: Value| {
            body.insert(k.to_owned(), v);
        };
        if let Some(v) = &self.name {
            put("name", json!(values::text("--name", v, 100, true)?));
        }
        if let Some(v) = &self.description {
            put(
                "description",
                json!(values::text("--description", v, 1000, false)?),
            );
        }
        if let Some(v) = &self.owner {
            put("owner", json!(v));
        }
        type Check = fn(&str, &str) -> Result<Value, String>;
        let lists: [(&str, &str, &Option<Vec<String>>, Check); 8] = [
            ("permissions", "--permission", &self.permissions, |f, v| {
                values::permission(f, v).map(Value::from)
            }),
            ("roles", "--role", &self.roles, |f, v| {
                values::role(f, v).map(Value::from)
            }),
            (
                "access-rules",
                "--access-rule",
                &self.access_rules,
                values::access_rule,
            ),
            ("audiences", "--audience", &self.audiences, |f, v| {
                values::audience(f, v).map(Value::from)
            }),
            ("allowed-ips", "--allowed-ip", &self.allowed_ips, |f, v| {
                values::ip(f, v).map(Value::from)
            }),
            (
                "redirect-uris",
                "--redirect-uri",
                &self.redirect_uris,
                |f, v| values::redirect_uri(f, v).map(Value::from),
            ),
            (
                "post-logout-redirect-uris",
                "--post-logout-redirect-uri",
                &self.post_logout_redirect_uris,
                |f, v| values::redirect_uri(f, v).map(Value::from),
            ),
            ("grant-types", "--grant-type", &self.grant_types, |f, v| {
                values::grant_type(f, v).map(Value::from)
            }),
        ];
        for (list, flag, given, check) in lists {
            let key = CLEARABLE
                .iter()
                .find(|(f, _)| *f == list)
                .map_or(list, |(_, k)| *k);
            let cleared = self.clear.iter().any(|c| c == list);
            match (given, cleared) {
                (Some(_), true) => {
                    return Err(format!("--clear {list} and {flag}: choose one"));
                }
                (Some(v), false) => put(key, Value::Array(values::each(flag, v, check)?)),
                (None, true) => put(key, json!([])),
                (None, false) => {}
            }
        }
        match self.expires_at.as_deref() {
            None => {}
            Some("never") => put("expiresAt", Value::Null),
            Some(t) => put(
                "expiresAt",
                json!(values::expires_at("--expires-at", t).map_err(|e| format!("{e}, or never"))?),
            ),
        }
        match self.token_ttl.as_deref() {
            None => {}
            Some("default") => put("tokenTtl", Value::Null),
            Some(t) => put(
                "tokenTtl",
                json!(values::token_ttl("--token-ttl", t).map_err(|e| format!("{e}, or default"))?),
            ),
        }
        match self.rate_limit.as_deref() {
            None => {}
            Some("default") => put("rateLimit", Value::Null),
            Some(r) => put(
                "rateLimit",
                values::rate_limit("--rate-limit", r).map_err(|e| format!("{e}, or default"))?,
            ),
        }
        if body.is_empty() {
            return Err("nothing to change: give at least one option (see --help)".into());
        }
        Ok(Value::Object(body))
    }
}

/// `tessera apps list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Page size, 1 to 200.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Cursor from a previous page (`more: --cursor …`).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Only this environment: `live` or `test`.
    #[arg(long = "env", value_name = "live|test")]
    pub environment: Option<String>,
    /// Only this key type: `secret` or `public`.
    #[arg(long = "type", value_name = "secret|public")]
    pub key_type: Option<String>,
    /// Only this status: `active`, `revoked` or `expired`.
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only applications of this owner (a user id or `gateway`).
    #[arg(long)]
    pub owner: Option<String>,
}

impl ListArgs {
    /// Checks the filters before anything is sent.
    fn check(&self) -> Result<(), String> {
        if let Some(l) = self.limit
            && !(1..=200).contains(&l)
        {
            return Err(values::bad("--limit", &l.to_string(), "expected 1 to 200"));
        }
        if let Some(e) = &self.environment {
            values::one_of("--env", e, &["live", "test"])?;
        }
        if let Some(t) = &self.key_type {
            values::one_of("--type", t, &["secret", "public"])?;
        }
        if let Some(st) = &self.status {
            values::one_of("--status", st, &["active", "revoked", "expired"])?;
        }
        Ok(())
    }
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
        /// Role name: 1 to 64 of a-z, 0-9, `_`, `-`, `.`.
        name: String,
        /// A permission it grants, `resource:action` (repeat for several;
        /// each must be in the catalogue).
        #[arg(long = "permission", value_name = "PERM")]
        permissions: Vec<String>,
        /// Free text, at most 1000 characters.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Replace a role's permissions (holders' tokens minted before a
    /// narrowing stop working).
    Update {
        /// Role name.
        name: String,
        /// A permission (repeat for several; none empties the role).
        #[arg(long = "permission", value_name = "PERM")]
        permissions: Vec<String>,
    },
    /// Delete a role. Refused while applications or users hold it, unless
    /// `--detach`.
    Delete {
        /// Role name.
        name: String,
        /// Remove it from every application and user holding it, then
        /// delete it (instead of refusing).
        #[arg(long)]
        detach: bool,
    },
}

/// The gateway's conflict names the API's query parameter; a CLI user
/// needs the flag instead.
fn detach_advice(e: &str, name: &str) -> String {
    if !e.contains("?detach=true") {
        return e.to_owned();
    }
    let advice = format!(
        "run `tessera roles delete {} --detach` to remove it from them and delete it",
        super::credentials::printable(name)
    );
    e.replace(
        "delete it with detach (API: ?detach=true) to remove it from them",
        &advice,
    )
    .replace(" (API: ?detach=true)", &format!(" ({advice})"))
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

/// Runs `tessera apps …`; `Ok(false)` when it printed its answer but must
/// exit 1 (a bulk delete naming ids not found).
pub async fn apps(remote: &Remote, cmd: AppsCommand, json_out: bool) -> Result<bool, String> {
    // A malformed value is refused before any credential is spent.
    let body = match &cmd {
        AppsCommand::Update(u) => Some(u.body()?),
        AppsCommand::Create(a) => Some(a.body()?),
        AppsCommand::List(l) => {
            l.check()?;
            None
        }
        AppsCommand::Rotate { grace, .. } if *grace > 86_400 => {
            return Err(values::bad(
                "--grace",
                &grace.to_string(),
                "expected seconds from 0 to 86400",
            ));
        }
        _ => None,
    };
    let c = AdminClient::connect(remote).await?;
    match cmd {
        AppsCommand::Create(_) => {
            let v = c.call(Method::POST, "/api/v1/apps", body.as_ref()).await?;
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
            let v = c.call(Method::PATCH, &path, body.as_ref()).await?;
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
                // In JSON the results already say which; one document only.
                if !json_out {
                    eprintln!("error: some applications were not found");
                }
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Runs `tessera roles …`.
pub async fn roles(remote: &Remote, cmd: RolesCommand, json_out: bool) -> Result<(), String> {
    // Names and permissions are checked before any credential is spent.
    match &cmd {
        RolesCommand::Create {
            name,
            permissions,
            description,
        } => {
            values::role("NAME", name)?;
            values::each("--permission", permissions, values::permission)?;
            values::text("--description", description, 1000, false)?;
        }
        RolesCommand::Update { permissions, .. } => {
            values::each("--permission", permissions, values::permission)?;
        }
        _ => {}
    }
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
            c.call(Method::DELETE, &path, None)
                .await
                .map_err(|e| detach_advice(&e, &name))?;
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
