//! The command line: `serve`, `keys`, `token`, `verify`, `apps`, `roles`,
//! `users`, `audit`, `login`, `logout`, `whoami`.

pub mod admin;
pub mod client;
pub mod credentials;
pub mod keys;
pub mod login;
pub mod users;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Settings;
use crate::crypto::{SigningAlg, jwt};
use crate::startup::Application;

/// Tessera: application secrets in, short-lived signed JWTs out.
#[derive(Debug, Parser)]
#[command(name = "tessera", version)]
pub struct Cli {
    /// TOML configuration file (also `TESSERA_CONFIG`).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Generate new signing keys when the store holds data but no key
        /// and `keys_dir` does not exist (otherwise an error: a mistyped
        /// directory must not silently replace the keys).
        #[arg(long)]
        init_keys: bool,
    },
    /// The signing keys of a running gateway: list, rotate, revoke (and,
    /// locally, a key file to import or a key-encryption key).
    Keys {
        /// Gateway and credentials.
        #[command(flatten)]
        remote: Remote,
        /// What to do.
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Exchange application credentials for an access token and print it.
    Token(TokenArgs),
    /// Check a token against a JWKS URL and print its claims.
    Verify(VerifyArgs),
    /// Print the OpenAPI 3.1 document of this build.
    Openapi,
    /// Manage applications on a running gateway.
    Apps {
        /// Gateway and credentials.
        #[command(flatten)]
        remote: Remote,
        /// What to do.
        #[command(subcommand)]
        command: admin::AppsCommand,
    },
    /// Manage roles on a running gateway.
    Roles {
        /// Gateway and credentials.
        #[command(flatten)]
        remote: Remote,
        /// What to do.
        #[command(subcommand)]
        command: admin::RolesCommand,
    },
    /// Manage people on a running gateway.
    Users {
        /// Gateway and credentials.
        #[command(flatten)]
        remote: Remote,
        /// What to do.
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Read the audit log of a running gateway, newest first.
    Audit {
        /// Gateway and credentials.
        #[command(flatten)]
        remote: Remote,
        /// Which page.
        #[command(flatten)]
        page: users::AuditArgs,
    },
    /// Sign in as a person (browser on a loopback redirect, or `--device`);
    /// later commands use this login.
    Login(login::LoginArgs),
    /// Revoke the stored login and forget it.
    Logout(login::GatewayArgs),
    /// Show who the stored login is: user, roles, permissions, expiry.
    Whoami(login::GatewayArgs),
}

/// Where the gateway is and how to authenticate.
#[derive(Args)]
pub struct Remote {
    /// Gateway base URL.
    #[arg(long, env = "TESSERA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Application id.
    #[arg(long, env = "TESSERA_APP_ID")]
    pub app_id: Option<String>,
    /// Application secret (prefer the environment variable: arguments are
    /// visible to other users of the machine).
    #[arg(long, env = "TESSERA_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field("url", &self.url)
            .field("app_id", &self.app_id)
            .field("app_secret", &self.app_secret.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// `tessera token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Gateway and credentials.
    #[command(flatten)]
    pub remote: Remote,
    /// Space-separated permissions to narrow the token to.
    #[arg(long)]
    pub scope: Option<String>,
    /// Audience to request.
    #[arg(long)]
    pub audience: Option<String>,
}

/// `tessera verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The token.
    pub token: String,
    /// JWKS URL (default: `<TESSERA_URL>/.well-known/jwks.json`).
    #[arg(long)]
    pub jwks_url: Option<String>,
    /// Gateway base URL, used when `--jwks-url` is not given.
    #[arg(long, env = "TESSERA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Required issuer.
    #[arg(long)]
    pub issuer: Option<String>,
    /// Required audience.
    #[arg(long)]
    pub audience: Option<String>,
}

fn fail(json_out: bool, msg: &str) -> ExitCode {
    if json_out {
        println!("{}", json!({"ok": false, "error": msg}));
    } else {
        eprintln!("error: {msg}");
    }
    ExitCode::FAILURE
}

/// Parses the command line and runs it.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let json_out = cli.json;
    match cli.command {
        Command::Serve { init_keys } => serve(cli.config, init_keys).await,
        Command::Keys { remote, command } => {
            // Only `generate` reads the configuration (the keys directory
            // and algorithm); the others talk to the gateway.
            let (dir, alg) = match &command {
                keys::KeysCommand::Generate { .. } => match Settings::load(cli.config.as_deref()) {
                    Ok(s) => (s.keys_dir, s.signing_alg),
                    Err(e) => return fail(json_out, &e.to_string()),
                },
                _ => (PathBuf::new(), SigningAlg::ES256),
            };
            done(
                keys::keys_cmd(&remote, command, &dir, alg, json_out).await,
                json_out,
            )
        }
        Command::Token(t) => match token_cmd(t).await {
            Ok(v) => {
                if json_out {
                    println!("{v}");
                } else {
                    println!("{}", v["access_token"].as_str().unwrap_or_default());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(json_out, &e),
        },
        Command::Openapi => {
            println!("{}", crate::http::openapi::document());
            ExitCode::SUCCESS
        }
        Command::Apps { remote, command } => match admin::apps(&remote, command, json_out).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(json_out, &e),
        },
        Command::Roles { remote, command } => {
            match admin::roles(&remote, command, json_out).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(json_out, &e),
            }
        }
        Command::Users { remote, command } => {
            done(users::users(&remote, command, json_out).await, json_out)
        }
        Command::Audit { remote, page } => {
            done(users::audit(&remote, page, json_out).await, json_out)
        }
        Command::Login(a) => done(login::login(&a, json_out).await, json_out),
        Command::Logout(a) => done(login::logout(&a, json_out).await, json_out),
        Command::Whoami(a) => done(login::whoami(&a, json_out).await, json_out),
        Command::Verify(v) => match verify_cmd(v).await {
            Ok(claims) => {
                if json_out {
                    println!("{}", json!({"ok": true, "claims": claims}));
                } else {
                    println!(
                        "valid\n{}",
                        serde_json::to_string_pretty(&claims).unwrap_or_default()
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(json_out, &format!("invalid token: {e}")),
        },
    }
}

fn done(r: Result<(), String>, json_out: bool) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(json_out, &e),
    }
}

async fn serve(config: Option<PathBuf>, init_keys: bool) -> ExitCode {
    let settings = match Settings::load(config.as_deref()) {
        Ok(s) => Settings { init_keys, ..s },
        Err(e) => return fail(false, &e.to_string()),
    };
    if let Err(e) = crate::telemetry::init(&settings.log, settings.log_format) {
        return fail(false, &e.to_string());
    }
    let format = settings.log_format;
    let mut app = match Application::build(settings).await {
        Ok(a) => a,
        Err(e) => return crate::startup::failed(format, &e.to_string()),
    };
    // Shown once, on standard output only; never logged.
    app.announce(format);
    tracing::info!(listen = %app.listen(), issuer = %app.gateway().issuer, "serving");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => crate::startup::failed(format, &e.to_string()),
    }
}

async fn token_cmd(t: TokenArgs) -> Result<Value, String> {
    let Some(secret) = t.remote.app_secret else {
        // A person's stored login (`tessera login`), refreshed if needed.
        let url = credentials::normalise_url(&t.remote.url)?;
        let token = credentials::access_token(&reqwest::Client::new(), &url).await?;
        return Ok(json!({"access_token": token.expose_secret()}));
    };
    let secret = SecretString::from(secret);
    let mut form: Vec<(&str, String)> = vec![
        ("grant_type", "client_credentials".into()),
        ("client_secret", secret.expose_secret().to_owned()),
    ];
    if let Some(id) = t.remote.app_id {
        form.push(("client_id", id));
    }
    if let Some(s) = t.scope {
        form.push(("scope", s));
    }
    if let Some(a) = t.audience {
        form.push(("audience", a));
    }
    let url = format!("{}/oauth/token", t.remote.url.trim_end_matches('/'));
    let res = reqwest::Client::new()
        .post(&url)
        .form(&form)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = res.status();
    let body: Value = res
        .json()
        .await
        .map_err(|e| format!("{url}: unreadable answer: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {} {}",
            body["error"].as_str().unwrap_or("error"),
            body["error_description"].as_str().unwrap_or_default()
        ));
    }
    Ok(body)
}

async fn verify_cmd(v: VerifyArgs) -> Result<Value, String> {
    let url = v
        .jwks_url
        .unwrap_or_else(|| format!("{}/.well-known/jwks.json", v.url.trim_end_matches('/')));
    let res = reqwest::get(&url)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("{url}: HTTP {}", res.status()));
    }
    let jwks = res.text().await.map_err(|e| format!("{url}: {e}"))?;
    jwt::verify_with_jwks(
        &jwks,
        v.token.trim(),
        v.issuer.as_deref(),
        v.audience.as_deref(),
        30,
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_the_secret() {
        let cli = Cli::parse_from([
            "tessera",
            "token",
            "--app-id",
            "app_x",
            "--app-secret",
            "tsr_sk_live_very_secret",
        ]);
        let shown = format!("{cli:?}");
        assert!(!shown.contains("very_secret"), "{shown}");
        assert!(shown.contains("<hidden>"), "{shown}");
    }
}
