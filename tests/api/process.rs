//! The real `tessera` binary: first start, restart, kill -9, logs, CLI.

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::*;
use crate::serve::{BIN, Served};

const ISSUER: &str = "http://tessera.test";

/// The binary with its address.
struct Proc {
    served: Served,
    address: String,
}

fn start(dir: &Path, extra: &[(&str, &str)]) -> Proc {
    let mut cmd = crate::serve::command(dir, 2);
    cmd.env("TESSERA_ISSUER", ISSUER)
        .envs(extra.iter().copied());
    let mut served = crate::serve::spawn(cmd);
    let address = served.address();
    Proc { served, address }
}

impl Proc {
    fn bootstrap_credentials(&self) -> (String, String) {
        let out = self.served.stdout.lock().unwrap();
        // In JSON mode, the `admin_created` object.
        if let Some(v) = out
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == "admin_created")
        {
            let get = |k: &str| v[k].as_str().unwrap().to_owned();
            return (get("appId"), get("appSecret"));
        }
        let get = |label: &str| {
            out.lines()
                .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("no {label} in {out}"))
        };
        (get("AppId:"), get("AppSecret:"))
    }

    fn sigterm(mut self) -> (std::process::ExitStatus, String) {
        self.served.terminate();
        let status = self.served.wait_exit(Duration::from_secs(40));
        (status, self.served.stderr())
    }
}

async fn token(
    client: &reqwest::Client,
    address: &str,
    id: Option<&str>,
    secret: &str,
) -> reqwest::Response {
    let mut body = json!({"grantType": "app_token", "AppSecret": secret});
    if let Some(id) = id {
        body["AppId"] = json!(id);
    }
    client
        .post(format!("{address}/api/v1/token"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn access_token(
    client: &reqwest::Client,
    address: &str,
    id: Option<&str>,
    secret: &str,
) -> String {
    let res = token(client, address, id, secret).await;
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn create(client: &reqwest::Client, address: &str, admin: &str) -> (String, String) {
    let res = client
        .post(format!("{address}/api/v1/apps"))
        .bearer_auth(admin)
        .json(&json!({"name": "persisted", "permissions": ["api_keys:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn first_start_bootstraps_then_restart_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let gw = start(
        dir.path(),
        &[("TESSERA_LOG", "debug"), ("TESSERA_LOG_FORMAT", "json")],
    );
    let (admin_id, admin_secret) = gw.bootstrap_credentials();
    assert!(admin_secret.starts_with("tsr_sk_live_"));
    let admin = access_token(&client, &gw.address, Some(&admin_id), &admin_secret).await;
    let (app_id, app_secret) = create(&client, &gw.address, &admin).await;
    let app_token = access_token(&client, &gw.address, None, &app_secret).await;
    let jwks_before = client
        .get(format!("{}/.well-known/jwks.json", gw.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // A failed attempt too, so that error paths are in the log.
    assert_eq!(
        token(&client, &gw.address, Some(&app_id), "wrong-secret-xyz")
            .await
            .status(),
        401
    );

    let (status, log) = gw.sigterm();
    assert!(status.success(), "exit after SIGTERM: {status}\n{log}");
    assert!(log.contains("gateway stopped"), "{log}");
    for line in log.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
    }
    for secret in [&admin_secret, &app_secret] {
        assert!(!log.contains(secret.as_str()), "a secret reached the log");
        assert_absent_under(&dir.path().join("data"), secret);
        assert_absent_under(&dir.path().join("keys"), secret);
    }
    #[cfg(unix)]
    for f in files_under(&dir.path().join("keys")) {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o077,
            0,
            "{}",
            f.display()
        );
    }

    let gw = start(dir.path(), &[]);
    assert!(
        !gw.served.stdout.lock().unwrap().contains("AppSecret"),
        "bootstrap ran twice"
    );
    let jwks_after = client
        .get(format!("{}/.well-known/jwks.json", gw.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(jwks_before, jwks_after, "the same key ring after restart");
    let claims =
        verify_with_jwks(&jwks_after, &app_token, ISSUER, "tessera").expect("old token verifies");
    assert_eq!(claims["sub"], app_id.as_str());
    // The token minted before the restart is accepted by the admin API too.
    let res = client
        .get(format!("{}/api/v1/apps/{app_id}", gw.address))
        .bearer_auth(&app_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    access_token(&client, &gw.address, Some(&admin_id), &admin_secret).await;
    access_token(&client, &gw.address, None, &app_secret).await;
}

#[tokio::test]
async fn kill_9_right_after_an_acknowledged_create_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let env = [
        ("TESSERA_ADMIN_APP_ID", ADMIN_ID),
        ("TESSERA_ADMIN_APP_SECRET", ADMIN_SECRET),
    ];
    let mut gw = start(dir.path(), &env);
    assert!(
        !gw.served.stdout.lock().unwrap().contains(ADMIN_SECRET),
        "configured secret printed"
    );
    let admin = access_token(&client, &gw.address, Some(ADMIN_ID), ADMIN_SECRET).await;
    let (app_id, app_secret) = create(&client, &gw.address, &admin).await;
    gw.served.child.kill().unwrap(); // SIGKILL, no chance to flush anything
    gw.served.child.wait().unwrap();
    drop(gw);

    let gw = start(dir.path(), &env);
    let admin = access_token(&client, &gw.address, Some(ADMIN_ID), ADMIN_SECRET).await;
    let res = client
        .get(format!("{}/api/v1/apps/{app_id}", gw.address))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    access_token(&client, &gw.address, None, &app_secret).await;
}

#[test]
fn a_bad_setting_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("TESSERA_TOKEN_TTL", "ten"),
        ("TESSERA_LOG_FORMAT", "xml"),
        ("TESSERA_SIGNING_ALG", "HS256"),
    ] {
        let out = Command::new(BIN)
            .arg("serve")
            .env("TESSERA_DATA_DIR", dir.path().join("data"))
            .env("TESSERA_KEYS_DIR", dir.path().join("keys"))
            .env("TESSERA_LISTEN", "127.0.0.1:0")
            .env(var, value)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "token_ttl = \"soon\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token_ttl"));
}

#[tokio::test]
async fn the_cli_fetches_verifies_and_lists_keys() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TESSERA_ADMIN_APP_ID", ADMIN_ID),
        ("TESSERA_ADMIN_APP_SECRET", ADMIN_SECRET),
    ];
    let gw = start(dir.path(), &env);
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("TESSERA_URL", &gw.address)
            .env("TESSERA_APP_ID", ADMIN_ID)
            .env("TESSERA_APP_SECRET", ADMIN_SECRET)
            .env("TESSERA_KEYS_DIR", dir.path().join("keys"))
            .output()
            .unwrap()
    };
    let out = cli(&["token"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let out = cli(&[
        "verify",
        &token,
        "--issuer",
        ISSUER,
        "--audience",
        "tessera",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["claims"]["sub"], ADMIN_ID);

    let out = cli(&["verify", &token, "--audience", "someone-else"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the token's audience is tessera, expected someone-else")
    );
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert!(
        !cli(&["verify", &tampered, "--audience", "tessera"])
            .status
            .success()
    );

    // The signing keys, from the running gateway (docs/api.md, "Signing keys over time").
    let list = |cli: &dyn Fn(&[&str]) -> std::process::Output| {
        let out = cli(&["keys", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["keys"].as_array().unwrap().clone()
    };
    let keys = list(&cli);
    // The ES256 access-token key and the RS256 ID-token key, both active.
    assert_eq!(keys.len(), 2, "{keys:?}");
    let of = |keys: &[Value], alg: &str, state: &str| -> Vec<String> {
        keys.iter()
            .filter(|k| k["alg"] == alg && k["state"] == state)
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let es = of(&keys, "ES256", "active");
    assert_eq!(es.len(), 1, "{keys:?}");
    assert_eq!(of(&keys, "RS256", "active").len(), 1, "{keys:?}");
    let signs =
        |kid: &str, keys: &[Value]| keys.iter().find(|k| k["kid"] == kid).unwrap()["signs"].clone();
    assert_eq!(signs(&es[0], &keys), json!(["access"]));
    let out = cli(&["keys", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("STATE") && table.contains("active") && table.contains(&es[0]),
        "{table}"
    );
    // Rotate: a next key of each algorithm, published, not signing yet.
    let out = cli(&["keys", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("signs from"));
    let keys = list(&cli);
    assert_eq!(keys.len(), 4, "{keys:?}");
    let next_es = of(&keys, "ES256", "next");
    assert_eq!(next_es.len(), 1, "{keys:?}");
    assert_eq!(of(&keys, "RS256", "next").len(), 1, "{keys:?}");
    let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", gw.address))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == next_es[0].as_str()),
        "the next key is published at once: {jwks}"
    );
    // Revoke the active ES256 key: the pending one signs from now on.
    let out = cli(&["keys", "revoke", &es[0]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = list(&cli);
    assert_eq!(of(&keys, "ES256", "revoked"), es, "{keys:?}");
    assert_eq!(of(&keys, "ES256", "active"), next_es, "{keys:?}");
    let out = cli(&["token"]);
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let header: Value =
        serde_json::from_slice(&base64_url_decode(token.split('.').next().unwrap())).unwrap();
    assert_eq!(
        header["kid"],
        next_es[0].as_str(),
        "signed by the promoted key"
    );
    let out = cli(&["keys", "revoke", "no-such-kid"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    // Local helpers: a key-encryption key, and a key file for keys/.
    let out = cli(&["keys", "kek"]);
    assert!(out.status.success());
    let kek = String::from_utf8(out.stdout).unwrap();
    assert_eq!(kek.trim().len(), 44, "32 bytes in base64: {kek}");
    let out = cli(&["keys", "generate", "--alg", "EdDSA"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("EdDSA"));

    let out = Command::new(BIN)
        .args(["token"])
        .env("TESSERA_URL", &gw.address)
        .env("TESSERA_APP_ID", ADMIN_ID)
        .env("TESSERA_APP_SECRET", "wrong-wrong-wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid_api_key"));
}

#[tokio::test]
async fn the_cli_manages_apps_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TESSERA_ADMIN_APP_ID", ADMIN_ID),
        ("TESSERA_ADMIN_APP_SECRET", ADMIN_SECRET),
    ];
    let gw = start(dir.path(), &env);
    let client = reqwest::Client::new();
    let cli = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("TESSERA_URL", &gw.address)
            .env("TESSERA_APP_ID", ADMIN_ID)
            .env("TESSERA_APP_SECRET", ADMIN_SECRET)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, out, err) = cli(&["roles", "create", "reader", "--permission", "api_keys:read"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("reader") && out.contains("api_keys:read"),
        "{out}"
    );

    let (ok, out, err) = cli(&[
        "apps", "create", "--name", "from-cli", "--env", "test", "--role", "reader",
    ]);
    assert!(ok, "{err}");
    assert!(
        out.contains("shown only once"),
        "the warning goes with the secret: {out}"
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(secret.starts_with("tsr_sk_test_"), "{secret}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id"))
        .unwrap()
        .trim()
        .to_owned();
    access_token(&client, &gw.address, None, &secret).await;

    let (ok, out, _) = cli(&["apps", "list"]);
    assert!(ok);
    assert!(
        out.lines().next().unwrap().starts_with("ID"),
        "a table: {out}"
    );
    assert!(out.contains(&id) && !out.contains(&secret), "{out}");
    let (ok, out, _) = cli(&["apps", "list", "--json", "--env", "test"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);

    let (ok, out, _) = cli(&["apps", "show", &id, "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["roles"], json!(["reader"]));

    let (ok, out, err) = cli(&["apps", "rotate", &id, "--grace", "0", "--json"]);
    assert!(ok);
    assert!(err.contains("shown only once"));
    let rotated: Value = serde_json::from_str(&out).unwrap();
    let new_secret = rotated["secret"].as_str().unwrap();
    assert_eq!(
        token(&client, &gw.address, None, &secret).await.status(),
        401
    );
    access_token(&client, &gw.address, None, new_secret).await;

    let (ok, out, _) = cli(&["apps", "revoke", &id]);
    assert!(ok, "{out}");
    assert_eq!(
        token(&client, &gw.address, None, new_secret).await.status(),
        401
    );
    let (ok, out, _) = cli(&["apps", "delete", &id, "app_missing"]);
    assert!(!ok, "a missing id is reported");
    assert!(
        out.contains("deleted") && out.contains("not_found"),
        "{out}"
    );

    let (ok, _, err) = cli(&["roles", "delete", "reader"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&["apps", "show", "app_missing"]);
    assert!(!ok);
    assert!(err.contains("not_found"), "{err}");
}

#[tokio::test]
async fn the_cli_updates_apps_manages_users_and_reads_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TESSERA_ADMIN_APP_ID", ADMIN_ID),
        ("TESSERA_ADMIN_APP_SECRET", ADMIN_SECRET),
    ];
    let gw = start(dir.path(), &env);
    let client = reqwest::Client::new();
    // Runs the CLI as the admin, with `stdin` on its standard input.
    let cli_in = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new(BIN)
            .args(args)
            .env("TESSERA_URL", &gw.address)
            .env("TESSERA_APP_ID", ADMIN_ID)
            .env("TESSERA_APP_SECRET", ADMIN_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cli = |args: &[&str]| cli_in(args, "");

    // apps update: only what is given changes; lists replace; --clear empties.
    let (ok, out, err) = cli(&[
        "apps",
        "create",
        "--name",
        "svc",
        "--permission",
        "api_keys:read",
        "--json",
    ]);
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let (ok, out, err) = cli(&[
        "apps",
        "update",
        &id,
        "--name",
        "svc-renamed",
        "--allowed-ip",
        "127.0.0.1",
        "--allowed-ip",
        "10.0.0.0/8",
        "--expires-at",
        "2099-01-01T00:00:00Z",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["name"], "svc-renamed");
    assert_eq!(v["permissions"], json!(["api_keys:read"]), "untouched");
    assert_eq!(v["allowedIps"], json!(["127.0.0.1/32", "10.0.0.0/8"]));
    assert!(v["expiresAt"].as_str().unwrap().starts_with("2099-01-01"));
    let (ok, out, err) = cli(&[
        "apps",
        "update",
        &id,
        "--clear",
        "allowed-ips",
        "--expires-at",
        "never",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allowedIps"], json!([]));
    assert!(v["expiresAt"].is_null(), "{v}");
    // Refused before anything is sent: nothing to change, a bad date, a
    // list both given and cleared.
    for bad in [
        vec!["apps", "update", id.as_str()],
        vec!["apps", "update", id.as_str(), "--expires-at", "tomorrow"],
        vec![
            "apps",
            "update",
            id.as_str(),
            "--role",
            "x",
            "--clear",
            "roles",
        ],
    ] {
        let (ok, _, err) = cli(&bad);
        assert!(!ok, "{bad:?} must fail");
        assert!(err.starts_with("error: "), "{err}");
    }
    // The gateway's own refusal comes through with its code.
    let (ok, _, err) = cli(&["apps", "update", &id, "--permission", "no:such"]);
    assert!(!ok);
    assert!(err.contains("validation_failed"), "{err}");
    let (ok, out, _) = cli(&["apps", "show", &id, "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["permissions"], json!(["api_keys:read"]), "unchanged");

    // users: create with a password from standard input, sign in with it.
    let password = "correct horse battery staple";
    let (ok, out, err) = cli_in(
        &[
            "users",
            "create",
            "--email",
            "ada@example.com",
            "--name",
            "Ada",
            "--permission",
            "api_keys:read",
            "--password-stdin",
            "--json",
        ],
        &format!("{password}\n"),
    );
    assert!(ok, "{err}");
    assert!(!out.contains(password) && !err.contains(password));
    let user: Value = serde_json::from_str(&out).unwrap();
    let uid = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["hasPassword"], true);
    let signed_in = client
        .post(format!("{}/api/v1/token", gw.address))
        .json(&json!({"grantType": "password", "email": "ada@example.com", "password": password}))
        .send()
        .await
        .unwrap();
    let status = signed_in.status();
    let body = signed_in.text().await.unwrap();
    assert_eq!(status, 200, "{body}");

    let (ok, out, _) = cli(&["users", "list"]);
    assert!(ok);
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");
    assert!(
        out.contains(&uid) && out.contains("ada@example.com"),
        "{out}"
    );
    let (ok, out, err) = cli(&[
        "users", "update", &uid, "--name", "Ada L.", "--status", "disabled",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("Ada L.") && out.contains("disabled"), "{out}");
    let (ok, _, err) = cli(&["users", "update", &uid, "--status", "asleep"]);
    assert!(!ok, "clap refuses an unknown status: {err}");
    let (ok, _, err) = cli_in(&["users", "update", &uid, "--password-stdin"], "");
    assert!(!ok);
    assert!(err.contains("no password"), "{err}");
    let (ok, out, err) = cli(&["users", "delete", &uid]);
    assert!(ok, "{err}");
    assert!(out.contains(&uid));
    let (ok, _, err) = cli(&["users", "show", &uid]);
    assert!(!ok);
    assert!(err.contains("not_found"), "{err}");

    // audit: what just happened, newest first, paged.
    let (ok, out, err) = cli(&["audit", "--limit", "3", "--json"]);
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let actions: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.len(), 3);
    assert!(actions[0].starts_with("user."), "{actions:?}");
    let cursor = page["nextCursor"].as_str().unwrap();
    let (ok, out, _) = cli(&["audit", "--limit", "3", "--cursor", cursor]);
    assert!(ok);
    assert!(out.lines().next().unwrap().starts_with("AT"), "{out}");
    assert!(
        out.contains("app."),
        "older records on the next page: {out}"
    );
    assert!(!out.contains(password));
    // Filters and the CSV export.
    let (ok, out, err) = cli(&["audit", "--action", "user.*", "--json"]);
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let actions: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(actions.len() >= 2, "{actions:?}");
    assert!(
        actions.iter().all(|a| a.starts_with("user.")),
        "{actions:?}"
    );
    let (ok, out, err) = cli(&[
        "audit",
        "--target",
        &id,
        "--action",
        "app.update",
        "--since",
        "2000-01-01T00:00:00Z",
        "--until",
        "2999-01-01T00:00:00+01:00",
        "--csv",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "id,at,actor,action,target,sourceIp,details");
    assert_eq!(lines.len(), 3, "the two updates: {out}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| l.contains(&format!(",app.update,{id},"))),
        "{out}"
    );
    let (ok, _, err) = cli(&["audit", "--since", "yesterday"]);
    assert!(!ok);
    assert!(err.contains("RFC 3339"), "{err}");
    let (ok, _, err) = cli(&["audit", "--limit", "0"]);
    assert!(!ok);
    assert!(err.contains("--limit 0: expected 1 to 200"), "{err}");
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Settings built in code pass the rules loaded ones do: a bad one is
/// refused by `Application::build`, naming it, rather than panicking later.
#[tokio::test]
async fn settings_built_in_code_are_checked_at_build() {
    let dir = tempfile::tempdir().unwrap();
    for (tweak, named) in [
        (
            (|s: &mut tessera::config::Settings| s.workers = Some(0))
                as fn(&mut tessera::config::Settings),
            "workers (TESSERA_WORKERS)",
        ),
        (|s| s.max_body_bytes = 10, "max_body_bytes"),
        (|s| s.listen = "nowhere".into(), "listen"),
    ] {
        let mut settings = crate::helpers::base_settings(dir.path());
        tweak(&mut settings);
        match tessera::startup::Application::build(settings).await {
            Ok(_) => panic!("{named}: built"),
            Err(e) => assert!(e.to_string().contains(named), "{named}: {e}"),
        }
    }
    // Nothing was written for a refused start.
    assert!(!dir.path().join("data").exists());
}
