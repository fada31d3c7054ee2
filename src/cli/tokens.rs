//! `tessera tokens introspect|revoke`: RFC 7662 and RFC 7009 at the
//! gateway, with the CLI's credentials (an application's, or a login).

use clap::Subcommand;
use serde_json::{Value, json};
use std::io::BufRead;
use zeroize::Zeroizing;

use super::Remote;
use super::admin::s;
use super::client::AdminClient;

/// `tessera tokens …`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Ask the gateway whether a token is live (RFC 7662): signature,
    /// expiry, and revocation of the token, its application or its person.
    /// Prints its claims; exits 1 when it is not active. Needs the
    /// permission tokens:introspect.
    #[command(after_help = "Examples:
  tessera tokens introspect \"$TOKEN\"
  printf '%s' \"$TOKEN\" | tessera tokens introspect --json")]
    Introspect {
        /// The access token; `-` or nothing reads it from standard input
        /// (arguments are visible to other users of the machine).
        token: Option<String>,
    },
    /// Revoke an access token (RFC 7009): every verifier refuses it from
    /// now on. Your own application's tokens need nothing more; anyone
    /// else's need the permission tokens:revoke. An unknown or expired
    /// token is not an error (RFC 7009 answers the same).
    Revoke {
        /// The access token; `-` or nothing reads it from standard input.
        token: Option<String>,
    },
}

/// The token from the argument, or from the first line of standard input.
fn token_arg(arg: Option<String>) -> Result<Zeroizing<String>, String> {
    let raw = match arg {
        Some(t) if t != "-" => Zeroizing::new(t),
        _ => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| format!("reading the token from standard input: {e}"))?;
            line
        }
    };
    let t = Zeroizing::new(raw.trim().to_owned());
    if t.is_empty() {
        return Err("TOKEN: give the token as an argument or on standard input".into());
    }
    Ok(t)
}

/// Runs `tessera tokens …`; `Ok(false)` when an introspected token is not
/// active.
pub async fn tokens(remote: &Remote, cmd: TokensCommand, json_out: bool) -> Result<bool, String> {
    match cmd {
        TokensCommand::Introspect { token } => {
            let token = token_arg(token)?;
            let c = AdminClient::connect(remote).await?;
            let v = c
                .post_form("/oauth/introspect", &[("token", token.as_str())])
                .await?;
            let active = v["active"] == true;
            if json_out {
                println!("{v}");
            } else {
                print_introspection(&v);
            }
            Ok(active)
        }
        TokensCommand::Revoke { token } => {
            let token = token_arg(token)?;
            let c = AdminClient::connect(remote).await?;
            c.post_form(
                "/oauth/revoke",
                &[
                    ("token", token.as_str()),
                    ("token_type_hint", "access_token"),
                ],
            )
            .await?;
            if json_out {
                println!("{}", json!({"revoked": true}));
            } else {
                println!("revoked: every verifier that follows the gateway refuses this token now");
            }
            Ok(true)
        }
    }
}

fn print_introspection(v: &Value) {
    if v["active"] != true {
        println!("active       false (expired, revoked, or not a token of this gateway)");
        return;
    }
    println!("active       true");
    for key in [
        "sub",
        "client_id",
        "aud",
        "iss",
        "scope",
        "roles",
        "permissions",
        "env",
        "key_type",
        "jti",
    ] {
        if !v[key].is_null() {
            println!("{key:<12} {}", s(&v[key]));
        }
    }
    for key in ["iat", "nbf", "exp"] {
        if let Some(t) = v[key]
            .as_i64()
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        {
            println!("{key:<12} {}", t.to_rfc3339());
        }
    }
}
