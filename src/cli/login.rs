//! `tessera login`, `tessera logout`, `tessera whoami` (docs/api.md, "The device grant").
//!
//! Login is the authorization code flow with PKCE on a loopback redirect
//! (RFC 8252 §7.3: `http://127.0.0.1:{port}/callback`, port chosen by the
//! system, `state` checked), or the device authorization grant (RFC 8628)
//! with `--device`. Both sign in as the built-in public client
//! `tessera-cli` with `openid profile email offline_access`; the tokens go
//! to the credentials file, never to the terminal.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::credentials::{self, CLIENT_ID, Credentials};
use crate::crypto::{opaque, random};

/// What a login asks for.
const SCOPE: &str = "openid profile email offline_access";
/// How long the loopback listener waits for the browser.
const BROWSER_WAIT: Duration = Duration::from_secs(300);
/// How long the loopback listener waits for one request's head.
const HEAD_WAIT: Duration = Duration::from_secs(5);
/// The largest request head the loopback listener reads.
const MAX_HEAD: usize = 16 * 1024;

/// `tessera login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Gateway base URL.
    #[arg(long, env = "TESSERA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Use the device authorization grant: print a code to enter at
    /// `{gateway}/device` from any browser (for machines without one).
    #[arg(long)]
    pub device: bool,
    /// Print the sign-in address instead of opening a browser.
    #[arg(long)]
    pub no_browser: bool,
}

/// The gateway of `tessera logout` and `tessera whoami`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Gateway base URL.
    #[arg(long, env = "TESSERA_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

fn base(url: &str) -> Result<String, String> {
    credentials::normalise_url(url)
}

async fn post_form(
    http: &reqwest::Client,
    url: &str,
    form: &[(&str, &str)],
) -> Result<(reqwest::StatusCode, Value), String> {
    let res = http
        .post(url)
        .form(form)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    // Revocation answers 200 with no body (RFC 7009 §2.2): `Null`.
    super::client::read_json(url, res).await
}

/// Signs in and stores the tokens; prints who signed in.
pub async fn login(args: &LoginArgs, json_out: bool) -> Result<(), String> {
    let url = base(&args.url)?;
    let http = reqwest::Client::new();
    let creds = if args.device {
        device_login(&http, &url).await?
    } else {
        loopback_login(&http, &url, args.no_browser).await?
    };
    credentials::save(&url, &creds)?;
    let me = me(&http, &url, creds.access_token.expose_secret()).await?;
    if json_out {
        println!("{}", json!({"ok": true, "url": url, "user": me}));
    } else {
        println!(
            "Signed in to {url} as {} ({}).",
            credentials::printable(me["email"].as_str().unwrap_or("?")),
            credentials::printable(me["id"].as_str().unwrap_or("?"))
        );
    }
    Ok(())
}

fn open_browser(address: &str) {
    for opener in ["xdg-open", "open"] {
        let started = std::process::Command::new(opener)
            .arg(address)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if started.is_ok() {
            return;
        }
    }
}

async fn loopback_login(
    http: &reqwest::Client,
    url: &str,
    no_browser: bool,
) -> Result<Credentials, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("loopback listener: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("loopback listener: {e}"))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = opaque::random_value().map_err(|e| e.to_string())?;
    let state = random::base62(22).map_err(|e| e.to_string())?;
    let mut address =
        url::Url::parse(&format!("{url}/oauth/authorize")).map_err(|e| format!("{url}: {e}"))?;
    address
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", SCOPE)
        .append_pair("state", &state)
        .append_pair(
            "code_challenge",
            &opaque::pkce_s256(verifier.expose_secret()),
        )
        .append_pair("code_challenge_method", "S256");
    eprintln!("Open this address in a browser to sign in:\n\n  {address}\n");
    if !no_browser {
        open_browser(address.as_str());
    }
    eprintln!(
        "Waiting for the browser to come back (up to {} minutes)…",
        BROWSER_WAIT.as_secs() / 60
    );
    let code = tokio::task::spawn_blocking(move || wait_for_code(&listener, &state))
        .await
        .map_err(|e| format!("loopback listener: {e}"))??;
    let endpoint = format!("{url}/oauth/token");
    let (status, body) = post_form(
        http,
        &endpoint,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", verifier.expose_secret()),
        ],
    )
    .await?;
    if !status.is_success() {
        return Err(credentials::oauth_error(status, &body));
    }
    Credentials::from_response(&body)
}

/// Serves the loopback redirect until a request with the right `state`
/// arrives; anything else is answered and ignored (a local process cannot
/// end the login by knocking).
fn wait_for_code(listener: &TcpListener, state: &str) -> Result<String, String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("loopback listener: {e}"))?;
    let deadline = Instant::now() + BROWSER_WAIT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(outcome) = answer_callback(stream, state) {
                    return outcome;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err("timed out waiting for the browser to sign in".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(format!("loopback listener: {e}")),
        }
    }
}

fn respond(mut stream: TcpStream, status: &str, message: &str) {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Tessera</title></head><body><p>{message}</p></body></html>"
    );
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

/// Handles one request to the loopback listener: `Some` ends the wait
/// (the code, or the error the gateway sent back for our `state`).
fn answer_callback(mut stream: TcpStream, state: &str) -> Option<Result<String, String>> {
    let _ = stream.set_nonblocking(false);
    // One deadline for the whole head, not per read: the listener serves
    // one connection at a time, and a local process trickling a byte every
    // few seconds must not hold it until the login times out.
    let deadline = Instant::now() + HEAD_WAIT;
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let target = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or("");
    let Ok(u) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
        respond(stream, "400 Bad Request", "Not a sign-in answer.");
        return None;
    };
    if u.path() != "/callback" {
        respond(stream, "404 Not Found", "Nothing here.");
        return None;
    }
    let q: std::collections::HashMap<String, String> = u.query_pairs().into_owned().collect();
    if !q.get("state").is_some_and(|s| opaque::same(s, state)) {
        respond(
            stream,
            "400 Bad Request",
            "This answer does not belong to the sign-in in progress; it was ignored.",
        );
        return None;
    }
    if let Some(e) = q.get("error") {
        respond(
            stream,
            "200 OK",
            "Sign-in was not completed. Return to the terminal.",
        );
        let shown = crate::domain::error::shown(e);
        let desc = q
            .get("error_description")
            .map(|d| {
                d.chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect::<String>()
            })
            .unwrap_or_default();
        return Some(Err(format!("sign-in refused: {shown} {desc}")));
    }
    match q.get("code") {
        Some(code) if !code.is_empty() && code.len() <= 256 => {
            respond(
                stream,
                "200 OK",
                "Signed in to Tessera. You can close this window and return to the terminal.",
            );
            Some(Ok(code.clone()))
        }
        _ => {
            respond(stream, "400 Bad Request", "The answer carries no code.");
            None
        }
    }
}

async fn device_login(http: &reqwest::Client, url: &str) -> Result<Credentials, String> {
    let endpoint = format!("{url}/oauth/device_authorization");
    let (status, d) = post_form(
        http,
        &endpoint,
        &[("client_id", CLIENT_ID), ("scope", SCOPE)],
    )
    .await?;
    if !status.is_success() {
        return Err(credentials::oauth_error(status, &d));
    }
    let (Some(device_code), Some(user_code), Some(uri)) = (
        d["device_code"].as_str(),
        d["user_code"].as_str(),
        d["verification_uri"].as_str(),
    ) else {
        return Err(format!("{endpoint}: incomplete answer"));
    };
    let (uri, user_code) = (
        credentials::printable(uri),
        credentials::printable(user_code),
    );
    eprintln!("To sign in, open {uri} in a browser and enter the code\n\n  {user_code}\n");
    if let Some(complete) = d["verification_uri_complete"].as_str() {
        eprintln!("(or open {})", credentials::printable(complete));
    }
    let mut interval = d["interval"].as_u64().unwrap_or(5).clamp(1, 60);
    let lifetime = d["expires_in"].as_u64().unwrap_or(600).clamp(1, 3600);
    let deadline = Instant::now() + Duration::from_secs(lifetime);
    let token_endpoint = format!("{url}/oauth/token");
    loop {
        // A little over the interval: arrival times jitter.
        tokio::time::sleep(Duration::from_millis(interval * 1000 + 100)).await;
        let (status, body) = post_form(
            http,
            &token_endpoint,
            &[
                ("grant_type", crate::service::people::device::GRANT_TYPE),
                ("client_id", CLIENT_ID),
                ("device_code", device_code),
            ],
        )
        .await?;
        if status.is_success() {
            return Credentials::from_response(&body);
        }
        match body["error"].as_str() {
            Some("authorization_pending") => {}
            Some("slow_down") => interval = interval.saturating_add(5),
            Some("expired_token") => {
                return Err(
                    "the code expired before it was entered: run `tessera login --device` again"
                        .into(),
                );
            }
            Some("access_denied") => return Err("the sign-in was denied in the browser".into()),
            _ => return Err(credentials::oauth_error(status, &body)),
        }
        if Instant::now() >= deadline {
            return Err("the code expired before it was entered".into());
        }
    }
}

async fn me(http: &reqwest::Client, url: &str, token: &str) -> Result<Value, String> {
    let endpoint = format!("{url}/api/v1/me");
    let res = http
        .get(&endpoint)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let (status, body) = super::client::read_json(&endpoint, res).await?;
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return Err(format!(
            "the login for {url} is no longer valid: run `tessera login --url {url}`"
        ));
    }
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            credentials::printable(body["error"]["message"].as_str().unwrap_or_default())
        ));
    }
    Ok(body)
}

/// The claims of our own access token, for display only (the gateway
/// checks it on every call).
fn claims(token: &str) -> Value {
    token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn words(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `tessera whoami`: the signed-in user, their roles and permissions (as
/// the current access token carries them) and when the token expires.
pub async fn whoami(args: &GatewayArgs, json_out: bool) -> Result<(), String> {
    let url = base(&args.url)?;
    let http = reqwest::Client::new();
    let token = credentials::access_token(&http, &url).await?;
    let user = me(&http, &url, token.expose_secret()).await?;
    let c = claims(token.expose_secret());
    let expires = credentials::load(&url)?.map(|c| {
        c.expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    });
    let (roles, permissions) = (words(&c["roles"]), words(&c["permissions"]));
    if json_out {
        println!(
            "{}",
            json!({"url": url, "user": user, "roles": roles, "permissions": permissions,
                   "expiresAt": expires})
        );
    } else {
        println!(
            "{} ({})",
            credentials::printable(user["email"].as_str().unwrap_or("?")),
            credentials::printable(user["id"].as_str().unwrap_or("?"))
        );
        if let Some(n) = user["name"].as_str().filter(|n| !n.is_empty()) {
            println!("name:        {}", credentials::printable(n));
        }
        println!("gateway:     {url}");
        println!("roles:       {}", credentials::printable(&roles.join(", ")));
        println!(
            "permissions: {}",
            credentials::printable(&permissions.join(", "))
        );
        println!("expires:     {}", expires.unwrap_or_default());
    }
    Ok(())
}

/// `tessera logout`: revokes the refresh token (which ends the session and
/// its access tokens) and forgets the login.
pub async fn logout(args: &GatewayArgs, json_out: bool) -> Result<(), String> {
    let url = base(&args.url)?;
    let Some(c) = credentials::load(&url)? else {
        if json_out {
            println!("{}", json!({"ok": true, "url": url, "signedIn": false}));
        } else {
            println!("Not signed in to {url}.");
        }
        return Ok(());
    };
    let http = reqwest::Client::new();
    let (token, hint) = match &c.refresh_token {
        Some(r) => (r, "refresh_token"),
        None => (&c.access_token, "access_token"),
    };
    let endpoint = format!("{url}/oauth/revoke");
    let revoked = post_form(
        &http,
        &endpoint,
        &[
            ("token", token.expose_secret()),
            ("token_type_hint", hint),
            ("client_id", CLIENT_ID),
        ],
    )
    .await;
    // Forgotten either way: a login the person asked to end must not stay
    // on disk because the gateway could not be reached.
    credentials::forget(&url)?;
    match revoked {
        Ok((status, _)) if status.is_success() => {
            if json_out {
                println!("{}", json!({"ok": true, "url": url, "signedIn": false}));
            } else {
                println!("Signed out of {url}.");
            }
            Ok(())
        }
        Ok((status, body)) => Err(format!(
            "forgotten here, but the gateway refused to revoke the login: {}",
            credentials::oauth_error(status, &body)
        )),
        Err(e) => Err(format!(
            "forgotten here, but the gateway could not be reached to revoke the login: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the listener's wait in a thread; its outcome arrives on the
    /// channel.
    fn listen(
        state: &'static str,
    ) -> (
        std::net::SocketAddr,
        std::sync::mpsc::Receiver<Result<String, String>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(wait_for_code(&listener, state));
        });
        (addr, rx)
    }

    fn send(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    #[test]
    fn another_local_process_cannot_end_the_login() {
        let (addr, rx) = listen("st4te");
        let r = send(addr, "GET /callback?code=evil&state=guess HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        let r = send(addr, "GET /callback?code=evil HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        let r = send(
            addr,
            "GET /elsewhere?code=evil&state=st4te HTTP/1.1\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let r = send(
            addr,
            "POST /callback?code=evil&state=st4te HTTP/1.1\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 4"), "{r}");
        assert!(rx.try_recv().is_err(), "still waiting");
        let r = send(addr, "GET /callback?code=c0de&state=st4te HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        let got = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(got.unwrap(), "c0de");
    }

    #[test]
    fn a_trickling_local_connection_does_not_hold_the_listener() {
        let (addr, rx) = listen("st4te");
        // Connects first and sends a byte a second: each read returns well
        // inside any per-read timeout.
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            for _ in 0..40 {
                if s.write_all(b"G").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        let browser = std::thread::spawn(move || {
            send(addr, "GET /callback?code=c0de&state=st4te HTTP/1.1\r\n\r\n")
        });
        let got = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("the browser's answer waited behind the trickling connection");
        assert_eq!(got.unwrap(), "c0de");
        assert!(browser.join().unwrap().starts_with("HTTP/1.1 200"));
    }
}
