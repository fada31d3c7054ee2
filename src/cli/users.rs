//! `tessera users …` and `tessera audit`: people and the audit log from a
//! terminal.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};
use std::io::BufRead;
use zeroize::Zeroizing;

use super::Remote;
use super::admin::{print_table, s, urlencode};
use super::client::AdminClient;
use super::values;

/// `tessera users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List users, by id.
    List {
        /// Page size, 1 to 200.
        #[arg(long)]
        limit: Option<usize>,
        /// Cursor from a previous page (`more: --cursor …`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one user.
    Show {
        /// User id (`usr_…`).
        id: String,
    },
    /// Create a user (a person who signs in with a password, an upstream
    /// identity provider, or the device flow).
    #[command(after_help = "Example:
  printf '%s\\n' \"$PASSWORD\" | tessera users create --email ada@example.com --name Ada \\
      --role reader --password-stdin")]
    Create(UserArgs),
    /// Change a user: only the fields given change.
    Update {
        /// User id (`usr_…`).
        id: String,
        /// What to change.
        #[command(flatten)]
        fields: UserArgs,
        /// `active` or `disabled` (disabling ends every session and token
        /// of the user at once).
        #[arg(long, value_name = "active|disabled")]
        status: Option<String>,
    },
    /// Delete a user: their sessions and tokens end at once.
    Delete {
        /// User id (`usr_…`).
        id: String,
    },
}

/// The fields of a user, for create and update.
#[derive(Debug, Args)]
pub struct UserArgs {
    /// Email address, unique (compared case-insensitively); required to
    /// create.
    #[arg(long)]
    pub email: Option<String>,
    /// Display name, at most 100 characters.
    #[arg(long)]
    pub name: Option<String>,
    /// A role (repeat for several; replaces the list on update; each must
    /// exist).
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Option<Vec<String>>,
    /// A permission held directly, `resource:action` (repeat for several;
    /// replaces the list on update).
    #[arg(long = "permission", value_name = "PERM")]
    pub permissions: Option<Vec<String>>,
    /// Read a password (12 to 128 characters) from the first line of
    /// standard input (never from an argument, which other users of the
    /// machine can see). On update, a reset: every session ends.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `tessera audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Page size, 1 to 200 (default 50).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Cursor from a previous page (`more: --cursor …`).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Only this actor (an application or user id), exactly.
    #[arg(long)]
    pub actor: Option<String>,
    /// Only this action (`app.create`); ending with `.` or `*`, every
    /// action starting with it (`app.*`).
    #[arg(long)]
    pub action: Option<String>,
    /// Only this target (an id or a role name), exactly.
    #[arg(long)]
    pub target: Option<String>,
    /// Only records at or after this instant: RFC 3339
    /// (`2027-01-31T00:00:00Z`) or a duration ago (`1h`, `7d`).
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only records before this instant: RFC 3339 or a duration ago.
    #[arg(long, value_name = "WHEN")]
    pub until: Option<String>,
    /// Print the page as CSV, as the gateway sends it.
    #[arg(long)]
    pub csv: bool,
}

/// The first line of standard input, without its line ending; wiped when
/// dropped.
fn password_from_stdin() -> Result<Zeroizing<String>, String> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
    if trimmed.is_empty() {
        return Err("--password-stdin: standard input held no password".into());
    }
    let n = trimmed.chars().count();
    if !(12..=128).contains(&n) {
        // The password itself is never repeated.
        return Err(format!(
            "--password-stdin: the password has {n} characters, expected 12 to 128"
        ));
    }
    Ok(trimmed)
}

/// The JSON body for the fields given. The password, when asked for, is read
/// here, before any call is made.
fn user_body(a: &UserArgs) -> Result<serde_json::Map<String, Value>, String> {
    let mut body = serde_json::Map::new();
    if let Some(v) = &a.email {
        let ok = v.len() <= 254
            && v.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
            })
            && !v.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(values::bad(
                "--email",
                v,
                "expected an email address like ada@example.com",
            ));
        }
        body.insert("email".into(), json!(v));
    }
    if let Some(v) = &a.name {
        body.insert("name".into(), json!(values::text("--name", v, 100, false)?));
    }
    if let Some(v) = &a.roles {
        body.insert(
            "roles".into(),
            json!(values::each("--role", v, values::role)?),
        );
    }
    if let Some(v) = &a.permissions {
        body.insert(
            "permissions".into(),
            json!(values::each("--permission", v, values::permission)?),
        );
    }
    if a.password_stdin {
        let p = password_from_stdin()?;
        body.insert("password".into(), json!(p.as_str()));
    }
    Ok(body)
}

fn user_rows(users: &[Value]) {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                s(&u["id"]),
                s(&u["email"]),
                s(&u["name"]),
                s(&u["status"]),
                s(&u["roles"]),
                s(&u["permissions"]),
                s(&u["lastLoginAt"]),
            ]
        })
        .collect();
    print_table(
        &[
            "ID",
            "EMAIL",
            "NAME",
            "STATUS",
            "ROLES",
            "PERMISSIONS",
            "LAST LOGIN",
        ],
        &rows,
    );
}

fn user_detail(u: &Value) {
    for key in [
        "id",
        "email",
        "name",
        "status",
        "roles",
        "permissions",
        "hasPassword",
        "createdAt",
        "updatedAt",
        "lastLoginAt",
    ] {
        println!("{key:<12} {}", s(&u[key]));
    }
    let ids = u["identities"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for i in ids {
        println!(
            "{:<12} {} {} ({})",
            "identity",
            s(&i["idp"]),
            s(&i["subject"]),
            s(&i["email"])
        );
    }
}

/// `path` with the paging query a list call takes.
fn paged(path: &str, limit: Option<usize>, cursor: Option<String>) -> String {
    let mut q = Vec::new();
    if let Some(l) = limit {
        q.push(format!("limit={l}"));
    }
    if let Some(cur) = cursor {
        q.push(format!("cursor={}", urlencode(&cur)));
    }
    if q.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", q.join("&"))
    }
}

/// Runs `tessera users …`.
pub async fn users(remote: &Remote, cmd: UsersCommand, json_out: bool) -> Result<(), String> {
    // Bodies (and a password on standard input) are read before connecting,
    // so a refused option spends no credential.
    let body = match &cmd {
        UsersCommand::List { limit: Some(l), .. } if !(1..=200).contains(l) => {
            return Err(values::bad("--limit", &l.to_string(), "expected 1 to 200"));
        }
        UsersCommand::Create(a) => {
            if a.email.is_none() {
                return Err("--email is required to create a user".into());
            }
            Some(Value::Object(user_body(a)?))
        }
        UsersCommand::Update { fields, status, .. } => {
            let mut b = user_body(fields)?;
            if let Some(st) = status {
                b.insert(
                    "status".into(),
                    json!(values::one_of("--status", st, &["active", "disabled"])?),
                );
            }
            if b.is_empty() {
                return Err("nothing to change: give at least one option".into());
            }
            Some(Value::Object(b))
        }
        _ => None,
    };
    let c = AdminClient::connect(remote).await?;
    let v = match cmd {
        UsersCommand::List { limit, cursor } => {
            let path = paged("/api/v1/users", limit, cursor);
            let v = c.call(Method::GET, &path, None).await?;
            if !json_out {
                user_rows(v["data"].as_array().map(Vec::as_slice).unwrap_or_default());
                if let Some(next) = v["nextCursor"].as_str() {
                    println!("\nmore: --cursor {next}");
                }
                return Ok(());
            }
            v
        }
        UsersCommand::Show { id } => {
            let path = format!("/api/v1/users/{}", urlencode(&id));
            c.call(Method::GET, &path, None).await?
        }
        UsersCommand::Create(_) => c.call(Method::POST, "/api/v1/users", body.as_ref()).await?,
        UsersCommand::Update { id, .. } => {
            let path = format!("/api/v1/users/{}", urlencode(&id));
            c.call(Method::PATCH, &path, body.as_ref()).await?
        }
        UsersCommand::Delete { id } => {
            let path = format!("/api/v1/users/{}", urlencode(&id));
            c.call(Method::DELETE, &path, None).await?;
            if json_out {
                println!("{}", json!({"deleted": id}));
            } else {
                println!("deleted user {id}");
            }
            return Ok(());
        }
    };
    if json_out {
        println!("{v}");
    } else {
        user_detail(&v);
    }
    Ok(())
}

/// Runs `tessera audit`: one page of the audit log, newest first.
pub async fn audit(remote: &Remote, args: AuditArgs, json_out: bool) -> Result<(), String> {
    // Every filter is checked before any credential is spent.
    if let Some(l) = args.limit
        && !(1..=200).contains(&l)
    {
        return Err(values::bad("--limit", &l.to_string(), "expected 1 to 200"));
    }
    let since = args
        .since
        .as_deref()
        .map(|v| values::instant_or_ago("--since", v))
        .transpose()?;
    let until = args
        .until
        .as_deref()
        .map(|v| values::instant_or_ago("--until", v))
        .transpose()?;
    if let (Some(a), Some(b)) = (&since, &until)
        && a >= b
    {
        return Err("--since must be before --until".into());
    }
    for (flag, v) in [
        ("--actor", &args.actor),
        ("--action", &args.action),
        ("--target", &args.target),
    ] {
        if let Some(v) = v
            && (v.is_empty() || v.len() > 256)
        {
            return Err(values::bad(flag, v, "expected 1 to 256 characters"));
        }
    }
    let c = AdminClient::connect(remote).await?;
    let mut path = paged("/api/v1/audit", args.limit, args.cursor);
    let filters = [
        ("actor", &args.actor),
        ("action", &args.action),
        ("target", &args.target),
        ("since", &since),
        ("until", &until),
    ];
    for (name, v) in filters {
        if let Some(v) = v {
            let sep = if path.contains('?') { '&' } else { '?' };
            path.push_str(&format!("{sep}{name}={}", urlencode(v)));
        }
    }
    if args.csv {
        let sep = if path.contains('?') { '&' } else { '?' };
        path.push_str(&format!("{sep}format=csv"));
        let (body, headers) = c.get_text(&path).await?;
        print!("{body}");
        if let Some(next) = headers.get("x-next-cursor").and_then(|h| h.to_str().ok()) {
            eprintln!("more: --cursor {next}");
        }
        return Ok(());
    }
    let v = c.call(Method::GET, &path, None).await?;
    if json_out {
        println!("{v}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let details = match &r["details"] {
                Value::Null => "-".to_owned(),
                Value::Object(m) if m.is_empty() => "-".to_owned(),
                d => d.to_string(),
            };
            vec![
                s(&r["at"]),
                s(&r["actor"]),
                s(&r["action"]),
                s(&r["target"]),
                s(&r["sourceIp"]),
                details,
            ]
        })
        .collect();
    print_table(
        &["AT", "ACTOR", "ACTION", "TARGET", "SOURCE IP", "DETAILS"],
        &rows,
    );
    if let Some(next) = v["nextCursor"].as_str() {
        println!("\nmore: --cursor {next}");
    }
    Ok(())
}
