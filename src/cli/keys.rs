//! `tessera keys …`: the signing keys of a running gateway (docs/api.md, "Signing keys over time"), plus
//! two local helpers: a PEM file for `keys/` and a key-encryption key.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use std::path::Path;

use super::Remote;
use super::admin::{print_table, s, urlencode};
use super::client::AdminClient;
use crate::crypto::kek::Kek;
use crate::crypto::{SigningAlg, keys};

/// `tessera keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List the gateway's signing keys: state, algorithm, what each signs.
    List,
    /// Add a `next` key of each configured algorithm: published at once,
    /// signing by itself after `key_publish_ahead`.
    Rotate,
    /// Withdraw a compromised key at once: out of the JWKS, its tokens
    /// refused by every verifier; an active key is replaced.
    Revoke {
        /// The key id (`tessera keys list`). A key id is a base64url
        /// thumbprint and may begin with `-`: taken as the id, not a flag.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
    /// Write a new private key file into the keys directory (local; it is
    /// imported only by the first start of an empty store).
    Generate {
        /// ES256, EdDSA or RS256 (default: the configured algorithm).
        #[arg(long)]
        alg: Option<String>,
    },
    /// Print a fresh key-encryption key for `TESSERA_KEK` (local).
    Kek,
}

/// Runs a `keys` subcommand against the gateway at `remote`; `generate`
/// writes into `keys_dir` with `default_alg` unless told otherwise.
pub async fn keys_cmd(
    remote: &Remote,
    cmd: KeysCommand,
    keys_dir: &Path,
    default_alg: SigningAlg,
    json_out: bool,
) -> Result<(), String> {
    match cmd {
        KeysCommand::Generate { alg } => {
            let alg = match alg.as_deref().map(SigningAlg::parse) {
                None => default_alg,
                Some(Some(a)) => a,
                Some(None) => return Err("--alg: expected ES256, EdDSA or RS256".into()),
            };
            let path = keys::generate_file(keys_dir, alg).map_err(|e| e.to_string())?;
            if json_out {
                println!(
                    "{}",
                    json!({"file": path.display().to_string(), "alg": alg.as_str()})
                );
            } else {
                println!("wrote {} ({alg})", path.display());
            }
            Ok(())
        }
        KeysCommand::Kek => {
            let kek = Kek::generate().map_err(|e| e.to_string())?;
            if json_out {
                println!("{}", json!({"kek": kek}));
            } else {
                println!("{kek}");
            }
            Ok(())
        }
        KeysCommand::List => {
            let c = AdminClient::connect(remote).await?;
            let v = c.call(Method::GET, "/api/v1/keys", None).await?;
            print_keys(&v["keys"], json_out, &v);
            Ok(())
        }
        KeysCommand::Rotate => {
            let c = AdminClient::connect(remote).await?;
            let v = c.call(Method::POST, "/api/v1/keys/rotate", None).await?;
            if json_out {
                println!("{v}");
            } else {
                for k in v["keys"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    println!(
                        "added {} ({}): published now, signs from {}",
                        s(&k["kid"]),
                        s(&k["alg"]),
                        s(&k["activatesAt"])
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Revoke { kid } => {
            let c = AdminClient::connect(remote).await?;
            let path = format!("/api/v1/keys/{}/revoke", urlencode(&kid));
            let v = c.call(Method::POST, &path, None).await?;
            if json_out {
                println!("{v}");
            } else {
                println!(
                    "revoked {} ({}): out of the JWKS, its tokens refused",
                    s(&v["kid"]),
                    s(&v["alg"])
                );
            }
            Ok(())
        }
    }
}

fn print_keys(keys: &Value, json_out: bool, whole: &Value) {
    if json_out {
        println!("{whole}");
        return;
    }
    let rows: Vec<Vec<String>> = keys
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|k| {
            let signs: Vec<String> = k["signs"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(s)
                .collect();
            let when = match k["state"].as_str() {
                Some("next") => format!("signs from {}", s(&k["activatesAt"])),
                Some("retired") => format!("published until {}", s(&k["publishedUntil"])),
                Some("revoked") => format!("revoked {}", s(&k["revokedAt"])),
                _ => format!("since {}", s(&k["activatesAt"])),
            };
            vec![
                s(&k["kid"]),
                s(&k["alg"]),
                s(&k["state"]),
                signs.join("+"),
                when,
            ]
        })
        .collect();
    print_table(&["KID", "ALG", "STATE", "SIGNS", "WHEN"], &rows);
}
