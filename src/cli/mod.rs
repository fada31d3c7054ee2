//! The command line: `serve`, `keys`, `token`, `tokens`, `verify`, `apps`,
//! `roles`, `users`, `audit`, `login`, `logout`, `whoami`.

// The CLI's own `println!` and `print!`, in scope for every module declared
// below them (keep them first): a reader that closes the pipe early
// (`tessera audit --csv | head`) does not panic the command, as `std`'s
// macros would on the broken pipe.
macro_rules! println {
    () => {
        $crate::cli::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

pub mod admin;
pub mod client;
pub mod credentials;
pub mod keys;
pub mod login;
pub mod tokens;
pub mod users;
pub mod values;
pub mod verify;

use clap::{Args, Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Settings;
use crate::crypto::SigningAlg;
use crate::startup::Application;

/// Set once the reader of standard output has gone.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Writes the CLI's output. Once the reader has closed the pipe, output is
/// dropped and the command runs on to its own exit status (a failure still
/// fails a pipeline under `pipefail`); any other write error ends it.
pub fn write_stdout(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            STDOUT_CLOSED.store(true, Ordering::Relaxed);
            return;
        }
        eprintln!("error: writing the output failed: {e}");
        std::process::exit(1);
    }
}

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
    /// Exchange application credentials (or the stored login) for an
    /// access token and print it; `--json` prints the gateway's whole
    /// answer, as `/api/v1/token` gives it.
    Token(TokenArgs),
    /// Ask the gateway about an access token (introspect) or revoke it.
    Tokens {
        /// Gateway and credentials.
        #[command(flatten)]
        remote: Remote,
        /// What to do.
        #[command(subcommand)]
        command: tokens::TokensCommand,
    },
    /// Check a token as a downstream service would: signature, issuer,
    /// audience, expiry, and revocation when credentials allow asking.
    Verify(verify::VerifyArgs),
    /// Print the OpenAPI 3.1 document of this build.
    Openapi,
    /// Manage applications on a running gateway.
    Apps {
        /// Gateway and credentials.
        #[command(flatten)]
        remote: Remote,
        /// What to do.
        #[command(subcommand)]
        command: Box<admin::AppsCommand>,
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
    #[arg(
        long,
        global = true,
        env = "TESSERA_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Application id (`app_…`); may be left out with a generated secret,
    /// which names its application. Without a secret, the stored login of
    /// `tessera login` is used.
    #[arg(long, global = true, env = "TESSERA_APP_ID")]
    pub app_id: Option<String>,
    /// Application secret (prefer the environment variable: arguments are
    /// visible to other users of the machine).
    #[arg(
        long,
        global = true,
        env = "TESSERA_APP_SECRET",
        hide_env_values = true
    )]
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
#[command(after_help = "Examples:
  TOKEN=$(tessera token)
  tessera token --scope 'content:read' --audience billing-api --json")]
pub struct TokenArgs {
    /// Gateway and credentials.
    #[command(flatten)]
    pub remote: Remote,
    /// Space-separated permissions to narrow the token to (each held by
    /// the application; needs an application's secret).
    #[arg(long)]
    pub scope: Option<String>,
    /// Audience to request: the gateway's default, or one of the
    /// application's audiences (needs an application's secret).
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
                    println!("{}", v["accessToken"].as_str().unwrap_or_default());
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(json_out, &e),
        },
        Command::Tokens { remote, command } => {
            match tokens::tokens(&remote, command, json_out).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => fail(json_out, &e),
            }
        }
        Command::Openapi => {
            println!("{}", crate::http::openapi::document());
            ExitCode::SUCCESS
        }
        Command::Apps { remote, command } => match admin::apps(&remote, *command, json_out).await {
            Ok(true) => ExitCode::SUCCESS,
            // Printed already (a bulk delete with ids not found).
            Ok(false) => ExitCode::FAILURE,
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
        Command::Verify(v) => verify_out(verify::verify(&v).await, json_out),
    }
}

/// Prints `verify`'s verdict: what was checked, and plainly whether
/// revocation was.
fn verify_out(r: Result<verify::Verified, verify::VerifyError>, json_out: bool) -> ExitCode {
    match r {
        Ok(v) => {
            if json_out {
                println!(
                    "{}",
                    json!({
                        "ok": true, "valid": true, "issuer": v.issuer, "audience": v.audience,
                        "revocationChecked": v.revocation_checked,
                        "revocation": v.revocation_note, "claims": v.claims,
                    })
                );
            } else {
                println!(
                    "valid: signature, issuer {}, audience {}, not expired",
                    credentials::printable(&v.issuer),
                    credentials::printable(&v.audience)
                );
                println!("{}", v.revocation_note);
                println!(
                    "{}",
                    serde_json::to_string_pretty(&v.claims).unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Err(verify::VerifyError::Invalid(e)) => {
            if json_out {
                println!("{}", json!({"ok": false, "valid": false, "error": e}));
            } else {
                eprintln!("invalid token: {e}");
            }
            ExitCode::FAILURE
        }
        Err(verify::VerifyError::Usage(e)) => {
            fail(json_out, &e);
            ExitCode::from(2)
        }
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
        // It is the login's token as it is: asking it for less or for
        // another audience would silently print more than was asked for.
        if t.scope.is_some() || t.audience.is_some() {
            return Err(
                "--scope and --audience need an application's credentials (TESSERA_APP_SECRET, with TESSERA_APP_ID for a non-generated secret); a person's login token is printed as it is"
                    .into(),
            );
        }
        let url = credentials::normalise_url(&t.remote.url)?;
        let token = credentials::access_token(&reqwest::Client::new(), &url).await?;
        return Ok(json!({"accessToken": token.expose_secret(), "tokenType": "Bearer"}));
    };
    if let Some(a) = &t.audience {
        values::audience("--audience", a)?;
    }
    if let Some(sc) = &t.scope {
        for p in sc.split_whitespace() {
            values::permission("--scope", p)?;
        }
    }
    let secret = SecretString::from(secret);
    // The JSON endpoint, so that `--json` prints what `/api/v1/token`
    // answers (camelCase keys).
    let mut body = json!({"AppSecret": secret.expose_secret()});
    if let Some(id) = t.remote.app_id {
        body["AppId"] = json!(id);
    }
    if let Some(s) = t.scope {
        body["scope"] = json!(s);
    }
    if let Some(a) = t.audience {
        body["audience"] = json!(a);
    }
    let url = format!("{}/api/v1/token", t.remote.url.trim_end_matches('/'));
    let res = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let (status, answer) = client::read_json(&url, res).await?;
    if !status.is_success() {
        return Err(client::describe(status, &answer));
    }
    if !answer["accessToken"].is_string() {
        return Err(format!(
            "{url}: the gateway answered {status} without an accessToken"
        ));
    }
    Ok(answer)
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

    /// One thumbprint in 64 begins with `-`: `keys revoke` must still take
    /// it as the key id.
    #[test]
    fn a_key_id_beginning_with_a_dash_is_an_id() {
        let cli = Cli::try_parse_from(["tessera", "keys", "revoke", "-Xb9kq2"]).unwrap();
        match cli.command {
            Command::Keys {
                command: keys::KeysCommand::Revoke { kid },
                ..
            } => assert_eq!(kid, "-Xb9kq2"),
            other => panic!("{other:?}"),
        }
    }
}
