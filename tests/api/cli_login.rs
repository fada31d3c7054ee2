//! `tessera login|logout|whoami` end to end (docs/api.md, "The device grant"): the real binary
//! against a real gateway on loopback, a cookie-keeping HTTP client as the
//! browser, and a private configuration directory per test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::device::{answer, enter, sign_in_at_device};
use crate::helpers::{TestApp, spawn_with};
use crate::people::{Browser, PASSWORD, create_user, sign_in};

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

fn cli(app: &TestApp, config: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XDG_CONFIG_HOME", config)
        .env("HOME", config)
        .env("TESSERA_URL", app.url(""))
        .stdin(Stdio::null());
    c
}

/// Runs a command to the end (in a blocking thread: the gateway serves on
/// this runtime).
async fn run(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().unwrap())
        .await
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A running `tessera login`, its standard error collected as it comes.
struct Login {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Login {
    fn start(mut c: Command) -> Self {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let into = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = into.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Self { child, stderr }
    }

    /// The first printed line that `pick` accepts.
    async fn printed(&self, pick: impl Fn(&str) -> Option<String>) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(v) = self
                .stderr
                .lock()
                .unwrap()
                .lines()
                .find_map(|l| pick(l.trim()))
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "nothing printed: {}",
                self.stderr.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn finish(mut self) -> (bool, String, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut out = String::new();
                std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut out)
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
                let err = self.stderr.lock().unwrap().clone();
                return (status.success(), out, err);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("login did not end: {}", self.stderr.lock().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Login {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn credentials_file(config: &Path) -> std::path::PathBuf {
    config.join("tessera").join("credentials.json")
}

/// The stored entry for `app`.
fn entry(config: &Path, app: &TestApp) -> Value {
    let v: Value =
        serde_json::from_slice(&std::fs::read(credentials_file(config)).unwrap()).unwrap();
    v["gateways"][app.url("")].clone()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_whoami_admin_commands_refresh_and_logout() {
    // A short token life: every later command must refresh first.
    let app = spawn_with(|s| s.token_ttl = 10).await;
    let user = create_user(&app, "cli@example.com", &["api_keys:read", "content:read"]).await;
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path();

    // Not signed in: admin commands say what to do.
    let out = run({
        let mut c = cli(&app, cfg);
        c.args(["apps", "list"]);
        c
    })
    .await;
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tessera login"),
        "{}",
        text(&out.stderr)
    );

    // The login prints the address; the "browser" signs in there and is
    // sent to the CLI's loopback listener.
    let login = Login::start({
        let mut c = cli(&app, cfg);
        c.args(["login", "--no-browser"]);
        c
    });
    let address = login
        .printed(|l| l.starts_with("http").then(|| l.to_owned()))
        .await;
    assert!(
        address.starts_with(&app.url("/oauth/authorize?")),
        "{address}"
    );
    let mut b = Browser::new(&app);
    let res = sign_in(&mut b, &app, &address, "cli@example.com", PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let callback = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(callback.starts_with("http://127.0.0.1:"), "{callback}");
    assert!(callback.contains("/callback?"), "{callback}");
    // A forged answer (wrong state) is ignored; the real one ends the login.
    let forged = callback.replace("state=", "state=x");
    let res = reqwest::get(&forged).await.unwrap();
    assert_eq!(res.status(), 400);
    let res = reqwest::get(&callback).await.unwrap();
    assert_eq!(res.status(), 200);
    let (ok, out, err) = login.finish().await;
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("cli@example.com") && out.contains(&user),
        "{out}"
    );

    // The file: 0600 in a 0700 directory, tokens kept there only.
    let file = credentials_file(cfg);
    #[cfg(unix)]
    {
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
    }
    let first = entry(cfg, &app);
    let rt1 = first["refresh_token"].as_str().unwrap().to_owned();
    assert!(rt1.starts_with("tsr_rt_"), "{first}");
    assert!(!out.contains(&rt1) && !err.contains(&rt1));

    // whoami: the user, from the stored login (refreshed: the token's life
    // is shorter than the refresh margin).
    let out = run({
        let mut c = cli(&app, cfg);
        c.arg("whoami");
        c
    })
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("cli@example.com") && shown.contains(&user),
        "{shown}"
    );
    assert!(shown.contains("api_keys:read"), "{shown}");
    assert!(!shown.contains(&rt1));
    let second = entry(cfg, &app);
    let rt2 = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2, "refreshed, and the rotated token saved");
    #[cfg(unix)]
    assert_eq!(mode(&file), 0o600, "never widened by a rewrite");

    let out = run({
        let mut c = cli(&app, cfg);
        c.args(["--json", "whoami"]);
        c
    })
    .await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["user"]["id"], Value::from(user.clone()));
    assert!(v["expiresAt"].as_str().is_some(), "{v}");

    // An admin command works from the login.
    let out = run({
        let mut c = cli(&app, cfg);
        c.args(["--json", "apps", "list"]);
        c
    })
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).expect("JSON list");

    // Logout revokes: the refresh token is refused and a token from it
    // no longer works.
    let last = entry(cfg, &app);
    let (access, rt) = (
        last["access_token"].as_str().unwrap().to_owned(),
        last["refresh_token"].as_str().unwrap().to_owned(),
    );
    let me = app
        .authed(reqwest::Method::GET, "/api/v1/me", &access)
        .await;
    assert_eq!(me.send().await.unwrap().status(), 200);
    let out = run({
        let mut c = cli(&app, cfg);
        c.arg("logout");
        c
    })
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(entry(cfg, &app).is_null(), "forgotten");
    let me = app
        .authed(reqwest::Method::GET, "/api/v1/me", &access)
        .await;
    assert_eq!(me.send().await.unwrap().status(), 401);
    let res = crate::people::refresh(&app, &rt).await;
    assert_eq!(res.status(), 400);
    let out = run({
        let mut c = cli(&app, cfg);
        c.arg("whoami");
        c
    })
    .await;
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("tessera login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_a_device_code() {
    let app = spawn_with(|s| s.people.device_poll_interval = 1).await;
    let user = create_user(&app, "box@example.com", &["content:read"]).await;
    let config = tempfile::tempdir().unwrap();
    let login = Login::start({
        let mut c = cli(&app, config.path());
        c.args(["login", "--device"]);
        c
    });
    let code = login
        .printed(|l| (l.len() == 9 && l.as_bytes().get(4) == Some(&b'-')).then(|| l.to_owned()))
        .await;
    let uri = login
        .printed(|l| {
            l.strip_prefix("To sign in, open ")
                .and_then(|r| r.split(' ').next())
                .map(str::to_owned)
        })
        .await;
    assert_eq!(uri, app.url("/device"));
    let mut b = Browser::new(&app);
    let html = sign_in_at_device(&mut b, &app, "/device", "box@example.com").await;
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let res = enter(&mut b, &app, &csrf, &code).await;
    assert_eq!(res.status(), 200);
    let confirm = res.text().await.unwrap();
    assert!(confirm.contains("tessera-cli"));
    assert_eq!(answer(&mut b, &app, &confirm, "allow").await.status(), 200);
    let (ok, out, err) = login.finish().await;
    assert!(ok, "{out}{err}");
    assert!(out.contains(&user), "{out}");
    let out = run({
        let mut c = cli(&app, config.path());
        c.arg("whoami");
        c
    })
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("box@example.com"));
}
