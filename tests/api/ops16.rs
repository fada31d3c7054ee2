//! Issue 16's operations part: errors that name the field and what it
//! accepts, logs fit for their reader, and safe defaults at start-up.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "tsr_sk_live_Q2x9vP0aZ4mLr7TtYb1cWd3eFg5hJk8nMp6sRu0vXy";

async fn refused(app: &TestApp, method: Method, path: &str, body: Value) -> (u16, String) {
    let (status, _, v) = error_code(call(app, method, path, Some(body)).await).await;
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!message.contains(SECRET), "a secret came back: {message}");
    (status, message)
}

/// What the issue met through the CLI (`--env staging`, `--expires-at
/// tomorrow`) and what a hand-written body gets wrong most: each answer
/// names the field and what it accepts, and never the value sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_fit_names_the_field_and_the_allowed_values() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"name": "e", "environment": "staging"}),
            "environment: expected one of live, test",
        ),
        (
            json!({"name": "e", "environment": SECRET}),
            "environment: expected one of live, test",
        ),
        (
            json!({"name": "e", "type": 3}),
            "type: expected one of secret, public",
        ),
        (
            json!({"name": "e", "expiresAt": "tomorrow"}),
            "expiresAt: expected an RFC 3339 instant, e.g. 2030-01-31T00:00:00Z",
        ),
        (
            json!({"name": "e", "roles": "reader"}),
            "roles: expected an array of strings",
        ),
        (
            json!({"name": "e", "tokenTtl": "an hour"}),
            "tokenTtl: expected a non-negative integer",
        ),
        (json!({"description": "no name"}), "name: required"),
    ];
    for (body, want) in cases {
        let (status, message) = refused(&app, Method::POST, "/api/v1/apps", body.clone()).await;
        assert_eq!((status, message.as_str()), (400, want), "{body}");
    }
    // An unknown field: its object and the fields it has, not the name sent.
    let (status, message) = refused(
        &app,
        Method::POST,
        "/api/v1/apps",
        json!({"name": "e", SECRET: 1}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        message.starts_with("the request body: unknown field; the fields are name, "),
        "{message}"
    );
    assert!(message.contains("environment"), "{message}");
    // The same on PATCH and on the roles API.
    let (_, message) = refused(
        &app,
        Method::PATCH,
        &format!("/api/v1/apps/{ADMIN_ID}"),
        json!({"expiresAt": "soon"}),
    )
    .await;
    assert!(
        message.starts_with("expiresAt: expected an RFC 3339"),
        "{message}"
    );
    let (_, message) = refused(
        &app,
        Method::POST,
        "/api/v1/roles",
        json!({"name": "r", "permissions": "content:read"}),
    )
    .await;
    assert_eq!(message, "permissions: expected an array of strings");
}

/// Values are quoted only when short, printable and not shaped like a
/// credential: an unknown role is named, a secret pasted as one is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_errors_quote_plain_names_and_never_a_credential() {
    let app = spawn_app().await;
    let (status, message) = refused(
        &app,
        Method::POST,
        "/api/v1/apps",
        json!({"name": "q", "roles": ["reader", SECRET]}),
    )
    .await;
    assert_eq!(status, 422, "{message}");
    assert!(message.contains("\"reader\""), "{message}");
    assert!(
        message.contains(&format!("(a value of {} bytes)", SECRET.len())),
        "{message}"
    );
}

// ---------------------------------------------------------------------------
// The real binary: what it prints, and when it refuses to start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{BIN, Served};

/// `tessera serve ARGS` on `dir` with `env`, one worker.
fn spawn(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut cmd = crate::serve::command(dir, 1);
    cmd.args(args).envs(env.iter().copied());
    crate::serve::spawn(cmd)
}

/// Waits until it listens (`true`) or exits (`false`).
fn listens(gw: &mut Served) -> bool {
    gw.try_address().is_some()
}

/// SIGTERM, then waits for a successful exit; returns (stdout, stderr).
fn stop(mut gw: Served) -> (String, String) {
    gw.terminate();
    let status = gw.wait_exit(Duration::from_secs(40));
    assert!(status.success(), "{status}: {}", gw.stderr());
    (gw.stdout(), gw.stderr())
}

/// In JSON mode every line on standard output and standard error is a JSON
/// object: the first start's admin (its secret shown once, on standard
/// output only) and the address included.
#[test]
fn json_mode_prints_only_json_and_shows_the_first_admin_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = spawn(dir.path(), &[], &[("TESSERA_LOG_FORMAT", "json")]);
    assert!(listens(&mut gw), "{}", gw.stderr());
    let (out, err) = stop(gw);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON on stdout: {l}")))
        .collect();
    for l in err.lines() {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON on stderr: {l}"));
        assert!(v["level"].is_string(), "{l}");
    }
    let admin = lines
        .iter()
        .find(|v| v["event"] == "admin_created")
        .unwrap_or_else(|| panic!("no admin_created in {out}"));
    let secret = admin["appSecret"].as_str().unwrap();
    assert!(secret.starts_with("tsr_sk_live_"), "{admin}");
    assert!(admin["appId"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(!err.contains(secret), "the secret reached the log");
    let listening = lines.iter().find(|v| v["event"] == "listening").unwrap();
    assert!(
        listening["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );

    // The second start shows no admin: only the address.
    let mut gw = spawn(dir.path(), &[], &[("TESSERA_LOG_FORMAT", "json")]);
    assert!(listens(&mut gw));
    let (out, _) = stop(gw);
    assert!(!out.contains("appSecret"), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
}

/// Pretty logs written to a pipe carry no colour codes.
#[test]
fn pretty_logs_off_a_terminal_have_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = spawn(dir.path(), &[], &[("TESSERA_LOG", "debug")]);
    assert!(listens(&mut gw), "{}", gw.stderr());
    let (out, err) = stop(gw);
    assert!(out.contains("tessera listening on http://"), "{out}");
    assert!(out.contains("AppSecret:"), "{out}");
    assert!(err.contains("gateway stopped"), "{err}");
    assert!(!err.contains('\u{1b}'), "colour codes in {err}");
}

/// A store that holds applications but no signing key (one kept before keys
/// moved into the store) imports them from `keys_dir`: a mistyped directory
/// is refused, naming it and the way out, instead of a new key ring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_keys_dir_is_refused_when_keys_would_be_replaced() {
    use tessera::store::KeyStore;
    let dir = tempfile::tempdir().unwrap();
    // A first start on an empty data directory makes its own keys.
    let mut gw = spawn(dir.path(), &[], &[]);
    assert!(listens(&mut gw), "{}", gw.stderr());
    stop(gw);
    // The store's keys are removed, as if kept in files only.
    {
        let store =
            tessera::store::embedded::EmbeddedStore::open(&dir.path().join("data")).unwrap();
        let ring = store.load_keys().await.unwrap();
        let kids: Vec<String> = ring.keys.iter().map(|k| k.kid.clone()).collect();
        assert!(!kids.is_empty());
        store
            .swap_keys(ring.version, &[], &kids)
            .await
            .unwrap()
            .unwrap();
    }
    let typo = dir.path().join("kyes");
    let typo_s = typo.to_str().unwrap();
    for format in ["pretty", "json"] {
        let mut gw = spawn(
            dir.path(),
            &[],
            &[("TESSERA_KEYS_DIR", typo_s), ("TESSERA_LOG_FORMAT", format)],
        );
        assert!(!listens(&mut gw), "started with a mistyped keys_dir");
        assert!(!gw.child.wait().unwrap().success());
        let err = gw.stderr();
        for needle in [typo_s, "TESSERA_KEYS_DIR", "--init-keys"] {
            assert!(err.contains(needle), "{format}: {needle} not in {err}");
        }
        if format == "json" {
            for l in err.lines() {
                serde_json::from_str::<Value>(l).unwrap_or_else(|_| panic!("not JSON: {l}"));
            }
        }
        assert!(!typo.exists(), "the mistyped directory was created");
    }
    // The right directory: its keys are imported.
    let mut gw = spawn(dir.path(), &[], &[]);
    assert!(listens(&mut gw), "{}", gw.stderr());
    let (_, err) = stop(gw);
    assert!(err.contains("signing key imported into the store"), "{err}");
    // Or, deliberately, new keys.
    {
        let store =
            tessera::store::embedded::EmbeddedStore::open(&dir.path().join("data")).unwrap();
        let ring = store.load_keys().await.unwrap();
        let kids: Vec<String> = ring.keys.iter().map(|k| k.kid.clone()).collect();
        store
            .swap_keys(ring.version, &[], &kids)
            .await
            .unwrap()
            .unwrap();
    }
    let mut gw = spawn(
        dir.path(),
        &["--init-keys"],
        &[("TESSERA_KEYS_DIR", typo_s)],
    );
    assert!(listens(&mut gw), "{}", gw.stderr());
    stop(gw);
}

// ---------------------------------------------------------------------------
// The example services.

fn example(name: &str) -> std::path::PathBuf {
    let bin = Path::new(BIN).parent().unwrap().join("examples").join(name);
    assert!(
        bin.exists(),
        "{}: `cargo test` builds the examples",
        bin.display()
    );
    bin
}

#[test]
fn the_example_services_print_their_usage_with_help() {
    for name in ["cluster_api", "admin_api"] {
        let out = Command::new(example(name)).arg("--help").output().unwrap();
        assert!(out.status.success(), "{name} --help: {}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        for needle in [
            format!("Usage: {name}").as_str(),
            "--listen",
            "--gateway",
            "--audience",
        ] {
            assert!(text.contains(needle), "{name}: {needle} not in {text}");
        }
        let out = Command::new(example(name))
            .arg("--nonsense")
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--help"));
    }
}

/// `cluster_api` logs each refused token at info with its reason, and never
/// the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_logs_a_refused_token_with_its_reason() {
    let app = spawn_app().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(example("cluster_api"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--gateway", &app.address, "--audience", "cluster-api"])
        .env("TESSERA_APP_ID", ADMIN_ID)
        .env("TESSERA_APP_SECRET", ADMIN_SECRET)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = crate::serve::collect(child.stderr.take().unwrap());
    let url = format!("http://127.0.0.1:{port}/api/v1/clusters/c1/workloads");
    let client = reqwest::Client::new();
    // The admin's token is for the gateway's audience, not cluster-api's.
    let wrong_audience = app.admin_token().await;
    let garbage = "not-a-token-5d1f0c";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(&url).bearer_auth(&wrong_audience).send().await {
            assert_eq!(res.status(), 401);
            break;
        }
        assert!(Instant::now() < deadline, "cluster_api did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = client.get(&url).bearer_auth(garbage).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = stderr.lock().unwrap().clone();
        if log.matches("token refused").count() >= 3 {
            break log;
        }
        assert!(Instant::now() < deadline, "refusals not logged: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("token refused"))
        .collect();
    assert!(refused.iter().all(|l| l.contains("INFO")), "{log}");
    assert!(refused[0].contains("reason=invalid"), "{log}");
    assert!(refused[1].contains("reason=malformed"), "{log}");
    assert!(refused[2].contains("reason=missing"), "{log}");
    assert!(!log.contains(garbage), "the token was logged: {log}");
    assert!(
        !log.contains(&wrong_audience),
        "the token was logged: {log}"
    );
    assert!(!log.contains('\u{1b}'), "colour off a terminal: {log}");
}
