//! `tessera verify`: checks a token as a downstream service would, and
//! says plainly what it checked: signature, issuer, audience and time
//! always; revocation only when it could ask the gateway.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Args;
use serde_json::{Value, json};
use std::io::BufRead;
use zeroize::Zeroizing;

use super::Remote;
use super::client::AdminClient;
use super::credentials::{self, printable};
use crate::crypto::jwt::{self, TokenError};

/// Clock skew allowed on `exp` and `nbf`, as a verifier would.
const LEEWAY_SECS: u64 = 30;

/// `tessera verify`.
#[derive(Args)]
#[command(
    after_help = "What is checked: the signature against the gateway's published keys, \
`typ` at+jwt, the issuer, the audience, `exp` and `nbf` (30 s of leeway). Revocation is checked \
only by asking the gateway (RFC 7662 introspection), which needs credentials holding \
tokens:introspect: TESSERA_APP_ID and TESSERA_APP_SECRET, or a `tessera login` to that \
gateway. Without them the output says that revocation was NOT checked. With them, an \
introspection the gateway refuses (a wrong secret, a missing permission, an error) exits 2: \
whether the token was revoked is then unknown.

Exit status: 0 valid, 1 invalid (or revoked), 2 bad usage or revocation unknown.

Examples:
  tessera verify \"$TOKEN\" --gateway https://auth.example.com --audience billing-api
  tessera verify \"$TOKEN\" --issuer https://auth.example.com --audience billing-api \\
      --jwks-url https://auth.example.com/.well-known/jwks.json"
)]
pub struct VerifyArgs {
    /// The access token; `-` or nothing reads it from standard input
    /// (arguments are visible to other users of the machine).
    pub token: Option<String>,
    /// The gateway: its discovery document gives the issuer, its
    /// `/.well-known/jwks.json` the keys, and revocation is asked of it.
    #[arg(
        long = "gateway",
        visible_alias = "url",
        env = "TESSERA_URL",
        value_name = "URL"
    )]
    pub gateway: Option<String>,
    /// The issuer the token must carry (default: the gateway's, from its
    /// discovery document).
    #[arg(long, value_name = "URL")]
    pub issuer: Option<String>,
    /// The audience the token must be for: the one your service expects
    /// (the gateway mints `tessera` unless configured or asked otherwise).
    /// Required.
    #[arg(long, value_name = "AUD")]
    pub audience: Option<String>,
    /// Where the public keys are (default: the gateway's
    /// `/.well-known/jwks.json`).
    #[arg(long, value_name = "URL")]
    pub jwks_url: Option<String>,
    /// Application id for the revocation check.
    #[arg(long, env = "TESSERA_APP_ID")]
    pub app_id: Option<String>,
    /// Application secret for the revocation check (prefer the environment
    /// variable).
    #[arg(long, env = "TESSERA_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,
}

impl std::fmt::Debug for VerifyArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyArgs")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("gateway", &self.gateway)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("jwks_url", &self.jwks_url)
            .field("app_id", &self.app_id)
            .field("app_secret", &self.app_secret.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// What `verify` found about a token that passed the local checks.
#[derive(Debug)]
pub struct Verified {
    /// The claims.
    pub claims: Value,
    /// The issuer checked.
    pub issuer: String,
    /// The audience checked.
    pub audience: String,
    /// Whether the gateway was asked about revocation.
    pub revocation_checked: bool,
    /// Why it was not, or that it was.
    pub revocation_note: String,
}

/// Why `verify` failed: a usage problem (exit 2) or an invalid token
/// (exit 1), as a sentence.
#[derive(Debug)]
pub enum VerifyError {
    /// Missing or unusable options, or an unreachable gateway.
    Usage(String),
    /// The token is not valid.
    Invalid(String),
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let res = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("{url}: HTTP {}", res.status()));
    }
    res.json()
        .await
        .map_err(|e| format!("{url}: not a JSON document: {e}"))
}

/// The claims as the token writes them, unverified: only to say what an
/// invalid token carries.
fn peek(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p.as_bytes()).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// A claim for a sentence: strings bare, arrays joined, short.
fn claim(v: &Value) -> String {
    let s = match v {
        Value::Null => return "missing".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    };
    let s = printable(&s);
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

fn when(v: &Value) -> String {
    match v
        .as_i64()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
    {
        Some(t) => t.to_rfc3339(),
        None => "an unreadable time".into(),
    }
}

/// A refusal as a sentence, naming what the token carries where that
/// helps.
pub fn sentence(e: &TokenError, token: &str, issuer: &str, audience: &str) -> String {
    let claims = peek(token);
    match e {
        TokenError::BadJwks(m) => format!("the gateway's key set does not parse ({m})"),
        TokenError::Malformed(_) => {
            "this is not a JWT: a token is three base64url parts joined by dots".into()
        }
        TokenError::TooLarge(n) => format!("the token is longer than {n} bytes"),
        TokenError::WrongType => {
            "this is not an access token of this gateway: its header's typ is not at+jwt".into()
        }
        TokenError::NotAnIdToken => "this is not an ID token".into(),
        TokenError::UnknownKey(kid) => format!(
            "the token was signed with key {}, which the gateway does not publish: another issuer's token, or a revoked key",
            claim(&json!(kid))
        ),
        TokenError::WrongAlgorithm(a) => {
            format!("the token says algorithm {a}, which is not its key's")
        }
        TokenError::Invalid(kind) => match kind.as_str() {
            "InvalidIssuer" => format!(
                "the token's issuer is {}, expected {}",
                claim(&claims["iss"]),
                printable(issuer)
            ),
            "InvalidAudience" => format!(
                "the token's audience is {}, expected {}",
                claim(&claims["aud"]),
                printable(audience)
            ),
            "ExpiredSignature" => format!("the token expired at {}", when(&claims["exp"])),
            "ImmatureSignature" => {
                format!("the token is not valid before {}", when(&claims["nbf"]))
            }
            "InvalidSignature" => {
                "the signature does not match: the token was altered, or signed by another key"
                    .into()
            }
            k if k.starts_with("Missing required claim: ") => format!(
                "the token has no {} claim",
                k.trim_start_matches("Missing required claim: ")
            ),
            k if k.starts_with("Invalid format for claim: ") => format!(
                "the token's {} claim is not of the right type",
                k.trim_start_matches("Invalid format for claim: ")
            ),
            _ => "the token is malformed: its parts do not decode".into(),
        },
    }
}

/// The token from the argument, or from the first line of standard input.
fn token_arg(arg: Option<&str>) -> Result<Zeroizing<String>, VerifyError> {
    let raw = match arg {
        Some(t) if t != "-" => Zeroizing::new(t.to_owned()),
        _ => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin().lock().read_line(&mut line).map_err(|e| {
                VerifyError::Usage(format!("reading the token from standard input: {e}"))
            })?;
            line
        }
    };
    let t = Zeroizing::new(raw.trim().to_owned());
    if t.is_empty() {
        return Err(VerifyError::Usage(
            "TOKEN: give the token as an argument or on standard input".into(),
        ));
    }
    Ok(t)
}

/// Checks the token; asks the gateway about revocation when it can.
pub async fn verify(v: &VerifyArgs) -> Result<Verified, VerifyError> {
    let usage = VerifyError::Usage;
    let Some(audience) = v.audience.clone() else {
        return Err(usage(
            "--audience is required: the audience your service expects in the token's aud (the gateway's default is `tessera` unless configured)".into(),
        ));
    };
    let token = token_arg(v.token.as_deref())?;
    let http = reqwest::Client::new();
    let gateway = v
        .gateway
        .as_deref()
        .map(|g| g.trim_end_matches('/').to_owned());
    let discovery = match &gateway {
        Some(g) if v.issuer.is_none() => Some(
            get_json(
                &http,
                &format!("{g}/.well-known/oauth-authorization-server"),
            )
            .await
            .map_err(|e| usage(format!("reading the gateway's discovery document: {e}")))?,
        ),
        _ => None,
    };
    let from_discovery = |key: &str| {
        discovery
            .as_ref()
            .and_then(|d| d[key].as_str())
            .map(str::to_owned)
    };
    let issuer = v.issuer.clone().or_else(|| from_discovery("issuer")).ok_or_else(|| {
        usage(
            "--issuer is required without a gateway: give --issuer, or --gateway URL (or TESSERA_URL) to read it from the gateway's discovery".into(),
        )
    })?;
    // The keys of the gateway given, at its own address: the discovery's
    // `jwks_uri` is built on the public issuer, which a gateway behind a
    // proxy may not be reachable at from here.
    let jwks_url = v
        .jwks_url
        .clone()
        .or_else(|| gateway.as_ref().map(|g| format!("{g}/.well-known/jwks.json")))
        .ok_or_else(|| {
        usage(
            "--jwks-url is required without a gateway: give --jwks-url, or --gateway URL (or TESSERA_URL)".into(),
        )
    })?;
    let jwks = http
        .get(&jwks_url)
        .send()
        .await
        .map_err(|e| usage(format!("{jwks_url}: {e}")))?;
    if !jwks.status().is_success() {
        return Err(usage(format!("{jwks_url}: HTTP {}", jwks.status())));
    }
    let jwks = jwks
        .text()
        .await
        .map_err(|e| usage(format!("{jwks_url}: {e}")))?;
    let claims = jwt::verify_with_jwks(
        &jwks,
        token.as_str(),
        Some(&issuer),
        Some(&audience),
        LEEWAY_SECS,
    )
    .map_err(|e| VerifyError::Invalid(sentence(&e, token.as_str(), &issuer, &audience)))?;
    let (revocation_checked, revocation_note) =
        revocation(v, gateway.as_deref(), token.as_str()).await?;
    Ok(Verified {
        claims,
        issuer,
        audience,
        revocation_checked,
        revocation_note,
    })
}

/// Asks the gateway through introspection when credentials are at hand.
/// An inactive answer makes the token invalid.
async fn revocation(
    v: &VerifyArgs,
    gateway: Option<&str>,
    token: &str,
) -> Result<(bool, String), VerifyError> {
    let Some(gateway) = gateway else {
        return Ok((
            false,
            "revocation NOT checked: no gateway to ask (give --gateway or TESSERA_URL, with credentials)".into(),
        ));
    };
    let has_login = v.app_secret.is_none()
        && credentials::normalise_url(gateway)
            .ok()
            .and_then(|u| credentials::load(&u).ok().flatten())
            .is_some();
    if v.app_secret.is_none() && !has_login {
        return Ok((
            false,
            "revocation NOT checked: no credentials (set TESSERA_APP_ID and TESSERA_APP_SECRET, or run `tessera login`, to ask the gateway)".into(),
        ));
    }
    let remote = Remote {
        url: gateway.to_owned(),
        app_id: v.app_id.clone(),
        app_secret: v.app_secret.clone(),
    };
    let asked = match AdminClient::connect(&remote).await {
        Ok(c) => c.post_form("/oauth/introspect", &[("token", token)]).await,
        Err(e) => Err(e),
    };
    match asked {
        Ok(answer) if answer["active"] == true => Ok((
            true,
            "revocation checked: the gateway says the token is active".into(),
        )),
        Ok(_) => Err(VerifyError::Invalid(
            "the gateway says the token is not active: it was revoked (or its application or person was)".into(),
        )),
        // Credentials were given, so the caller asked for the check: a
        // failed one must not read as a pass.
        Err(e) => Err(VerifyError::Usage(format!(
            "revocation could not be checked: the gateway's introspection refused ({e}); the signature, issuer, audience and expiry are good, but whether the token was revoked is unknown"
        ))),
    }
}
