//! The CLI covers the API (issue 16): the real `tessera` binary against a
//! real gateway on loopback. Each new command once; each client-side
//! refusal once, against a listener that proves nothing was sent;
//! `tessera verify` with and without credentials, and its sentences.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// One run of the binary: exit code, standard output, standard error.
struct Out {
    code: i32,
    out: String,
    err: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.out)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.out, self.err))
    }

    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "stdout: {}\nstderr: {}", self.out, self.err);
        self
    }
}

/// Runs the binary with only the environment given (no stored login: a
/// private, empty configuration directory), `stdin` on its standard input.
async fn run(url: &str, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Out {
    let config = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("XDG_CONFIG_HOME", config.path())
        .env("HOME", config.path())
        .env("TESSERA_URL", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let stdin = stdin.to_owned();
    // The gateway serves on this runtime: the child runs on another thread.
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = cmd.spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        drop(config);
        out
    })
    .await
    .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const ADMIN: [(&str, &str); 2] = [
    ("TESSERA_APP_ID", ADMIN_ID),
    ("TESSERA_APP_SECRET", ADMIN_SECRET),
];

/// As the bootstrap admin.
async fn admin(app: &TestApp, args: &[&str]) -> Out {
    run(&app.address, &ADMIN, args, "").await
}

#[tokio::test]
async fn cli_cover_apps_create_and_update_take_every_field() {
    let app = spawn_app().await;
    admin(
        &app,
        &["roles", "create", "reader", "--permission", "content:read"],
    )
    .await
    .ok();
    let created = admin(
        &app,
        &[
            "apps",
            "create",
            "--name",
            "cover",
            "--description",
            "from the CLI",
            "--env",
            "test",
            "--permission",
            "workloads:read",
            "--audience",
            "cluster-api",
            "--access-rule",
            "cluster:c1/project:*=content:read,reader",
            "--allowed-ip",
            "127.0.0.1",
            "--expires-at",
            "30d",
            "--token-ttl",
            "5m",
            "--rate-limit",
            "100/1m",
            "--redirect-uri",
            "http://127.0.0.1:9/cb",
            "--grant-type",
            "client_credentials",
            "--grant-type",
            "authorization_code",
            "--json",
        ],
    )
    .await
    .ok();
    let v = created.json();
    let id = v["id"].as_str().unwrap().to_owned();
    let secret = v["secret"].as_str().unwrap().to_owned();
    assert_eq!(v["environment"], "test");
    assert_eq!(v["audiences"], json!(["cluster-api"]));
    assert_eq!(v["accessRules"][0]["scope"], "cluster:c1/project:*", "{v}");
    assert_eq!(v["accessRules"][0]["roles"], json!(["reader"]), "{v}");
    assert_eq!(v["tokenTtl"], 300);
    assert_eq!(v["rateLimit"], json!({"requests": 100, "per": "1m"}));
    assert_eq!(v["allowedIps"], json!(["127.0.0.1/32"]));
    let expires: chrono::DateTime<chrono::Utc> = v["expiresAt"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_hours();
    assert!((29 * 24..=30 * 24).contains(&days), "{expires}");

    // The audience set by the CLI is one the application's tokens get, and
    // `token --json` prints what /api/v1/token answers.
    let own = [
        ("TESSERA_APP_ID", id.as_str()),
        ("TESSERA_APP_SECRET", secret.as_str()),
    ];
    let t = run(
        &app.address,
        &own,
        &["token", "--audience", "cluster-api", "--json"],
        "",
    )
    .await
    .ok()
    .json();
    assert_eq!(t["tokenType"], "Bearer", "{t}");
    assert_eq!(t["expiresIn"], 300, "{t}");
    assert!(t.get("access_token").is_none(), "{t}");
    let claims = claims_of(t["accessToken"].as_str().unwrap());
    assert_eq!(claims["aud"], "cluster-api");

    let updated = admin(
        &app,
        &[
            "apps",
            "update",
            &id,
            "--name",
            "cover-renamed",
            "--description",
            "changed",
            "--permission",
            "content:read",
            "--role",
            "reader",
            "--access-rule",
            "cluster:c2=workloads:read",
            "--access-rule",
            "*=reader",
            "--audience",
            "a-api",
            "--audience",
            "b-api",
            "--allowed-ip",
            "10.0.0.0/8",
            "--allowed-ip",
            "127.0.0.1",
            "--post-logout-redirect-uri",
            "http://127.0.0.1:9/bye",
            "--grant-type",
            "client_credentials",
            "--owner",
            "gateway",
            "--expires-at",
            "never",
            "--token-ttl",
            "default",
            "--rate-limit",
            "default",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(updated["name"], "cover-renamed");
    assert_eq!(updated["description"], "changed");
    assert_eq!(updated["permissions"], json!(["content:read"]));
    assert_eq!(updated["roles"], json!(["reader"]));
    assert_eq!(
        updated["accessRules"].as_array().unwrap().len(),
        2,
        "{updated}"
    );
    assert_eq!(updated["audiences"], json!(["a-api", "b-api"]));
    assert_eq!(updated["owner"], "gateway");
    assert!(updated["expiresAt"].is_null(), "{updated}");
    assert!(updated["tokenTtl"].is_null(), "{updated}");
    assert!(updated["rateLimit"].is_null(), "{updated}");
    let cleared = admin(
        &app,
        &[
            "apps",
            "update",
            &id,
            "--clear",
            "audiences",
            "--clear",
            "access-rules",
            "--json",
        ],
    )
    .await
    .ok()
    .json();
    assert_eq!(cleared["audiences"], json!([]));
    assert_eq!(cleared["accessRules"], json!([]));

    // The gateway's own refusal comes through as its message, never as a
    // complaint about a body the user did not write.
    let refused = run(&app.address, &own, &["token", "--audience", "a-api"], "").await;
    assert_ne!(refused.code, 0);
    assert!(refused.err.contains("audience"), "{}", refused.err);
    assert!(!refused.err.contains("body"), "{}", refused.err);
    let unknown = admin(&app, &["apps", "update", &id, "--role", "no-such-role"]).await;
    assert_ne!(unknown.code, 0);
    assert!(unknown.err.contains("no-such-role"), "{}", unknown.err);
    assert!(!unknown.err.contains("does not fit"), "{}", unknown.err);
}

#[tokio::test]
async fn cli_cover_tokens_introspect_and_revoke() {
    let app = spawn_app().await;
    let token = admin(&app, &["token"]).await.ok().out.trim().to_owned();
    let live = admin(&app, &["tokens", "introspect", &token, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(live["active"], true, "{live}");
    assert_eq!(live["client_id"], ADMIN_ID, "RFC 7662's own names: {live}");
    // From standard input, as a table.
    let table = run(&app.address, &ADMIN, &["tokens", "introspect"], &token)
        .await
        .ok();
    assert!(table.out.contains("active       true"), "{}", table.out);

    admin(&app, &["tokens", "revoke", &token]).await.ok();
    let dead = admin(&app, &["tokens", "introspect", &token, "--json"]).await;
    assert_eq!(dead.code, 1, "not active: exit 1; {}", dead.err);
    assert_eq!(dead.json()["active"], false);
    // Without credentials: a sentence, not a panic.
    let none = run(&app.address, &[], &["tokens", "introspect", &token], "").await;
    assert_ne!(none.code, 0);
    assert!(none.err.contains("TESSERA_APP_ID"), "{}", none.err);
}

#[tokio::test]
async fn cli_cover_verify_checks_issuer_audience_and_says_whether_revocation_was_asked() {
    let app = spawn_app().await;
    let issuer = app.issuer_hint();
    let token = admin(&app, &["token"]).await.ok().out.trim().to_owned();

    // An /oauth/* refusal prints as every server error does:
    // `<status>: <message> (<code>)`.
    let wrong = run(
        &app.address,
        &[
            ("TESSERA_APP_ID", ADMIN_ID),
            ("TESSERA_APP_SECRET", "not-the-admin-secret-0123456789"),
        ],
        &["apps", "list"],
        "",
    )
    .await;
    assert_ne!(wrong.code, 0);
    let line = wrong.err.trim();
    assert!(
        line.contains("401 Unauthorized: ") && line.ends_with("(invalid_client)"),
        "{line}"
    );

    // A person's login token is printed as it is: asking it for a scope or
    // an audience is refused, not ignored.
    for flag in ["--scope", "--audience"] {
        let asked = run(&app.address, &[], &["token", flag, "content:read"], "").await;
        assert_ne!(asked.code, 0, "{flag}: {}", asked.out);
        assert!(asked.out.trim().is_empty(), "{flag}: {}", asked.out);
        assert!(
            asked.err.contains("need an application's credentials"),
            "{flag}: {}",
            asked.err
        );
    }

    // No credentials: valid, and it says plainly that it did not ask.
    let plain = run(
        &app.address,
        &[],
        &["verify", &token, "--audience", "tessera"],
        "",
    )
    .await
    .ok();
    assert!(plain.out.starts_with("valid: "), "{}", plain.out);
    assert!(
        plain.out.contains(&issuer),
        "issuer from discovery: {}",
        plain.out
    );
    assert!(
        plain.out.contains("revocation NOT checked"),
        "{}",
        plain.out
    );
    let j = run(
        &app.address,
        &[],
        &["verify", &token, "--audience", "tessera", "--json"],
        "",
    )
    .await
    .ok()
    .json();
    assert_eq!(j["revocationChecked"], false);
    assert_eq!(j["claims"]["sub"], ADMIN_ID);

    // With credentials: asked, and a revoked token is invalid.
    let asked = run(
        &app.address,
        &ADMIN,
        &["verify", &token, "--audience", "tessera", "--json"],
        "",
    )
    .await
    .ok()
    .json();
    assert_eq!(asked["revocationChecked"], true, "{asked}");
    admin(&app, &["tokens", "revoke", &token]).await.ok();
    let revoked = run(
        &app.address,
        &ADMIN,
        &["verify", &token, "--audience", "tessera"],
        "",
    )
    .await;
    assert_eq!(revoked.code, 1, "{}", revoked.out);
    assert!(revoked.err.contains("not active"), "{}", revoked.err);
    // The same revoked token without credentials still passes the local
    // checks: which is why it says so.
    let unasked = run(
        &app.address,
        &[],
        &["verify", &token, "--audience", "tessera"],
        "",
    )
    .await;
    assert_eq!(unasked.code, 0);
    assert!(unasked.out.contains("NOT checked"), "{}", unasked.out);
    // Credentials that the gateway refuses: the check was asked for and
    // failed, which is not a pass.
    let refused = run(
        &app.address,
        &[
            ("TESSERA_APP_ID", ADMIN_ID),
            ("TESSERA_APP_SECRET", "not-the-admin-secret-0123456789"),
        ],
        &["verify", &token, "--audience", "tessera"],
        "",
    )
    .await;
    assert_eq!(refused.code, 2, "{} {}", refused.out, refused.err);
    assert!(!refused.out.contains("valid: "), "{}", refused.out);
    assert!(
        refused.err.contains("revocation could not be checked"),
        "{}",
        refused.err
    );

    // Errors are sentences naming what the token holds and what was wanted.
    let token = admin(&app, &["token"]).await.ok().out.trim().to_owned();
    let wrong_iss = run(
        &app.address,
        &[],
        &[
            "verify",
            &token,
            "--audience",
            "tessera",
            "--issuer",
            "http://elsewhere.test",
        ],
        "",
    )
    .await;
    assert_eq!(wrong_iss.code, 1);
    assert!(
        wrong_iss.err.contains(&format!(
            "the token's issuer is {issuer}, expected http://elsewhere.test"
        )),
        "{}",
        wrong_iss.err
    );
    let wrong_aud = run(
        &app.address,
        &[],
        &["verify", &token, "--audience", "billing"],
        "",
    )
    .await;
    assert_eq!(wrong_aud.code, 1);
    assert!(
        wrong_aud
            .err
            .contains("the token's audience is tessera, expected billing"),
        "{}",
        wrong_aud.err
    );
    // One character inside the signature (the last one may only carry
    // padding bits).
    let mut tampered: Vec<char> = token.chars().collect();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let bad_sig = run(
        &app.address,
        &[],
        &["verify", &tampered, "--audience", "tessera"],
        "",
    )
    .await;
    assert_eq!(bad_sig.code, 1);
    assert!(
        bad_sig.err.contains("signature does not match"),
        "{}",
        bad_sig.err
    );
    for e in [&wrong_iss.err, &wrong_aud.err, &bad_sig.err] {
        assert!(!e.contains("Invalid"), "no enum names: {e}");
    }
    // Neither issuer nor a gateway: refused as usage, naming the options.
    let mut cmd = Command::new(BIN);
    cmd.args(["verify", &token, "--audience", "tessera"])
        .env_clear();
    let o = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let bare = Out {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert_eq!(bare.code, 2, "{}", bare.err);
    assert!(
        bare.err.contains("--issuer") && bare.err.contains("--gateway"),
        "{}",
        bare.err
    );
    let no_aud = run(&app.address, &[], &["verify", &token], "").await;
    assert_eq!(no_aud.code, 2);
    assert!(
        no_aud.err.contains("--audience is required"),
        "{}",
        no_aud.err
    );
}

#[tokio::test]
async fn cli_cover_users_audit_and_the_role_conflict() {
    let app = spawn_app().await;
    admin(
        &app,
        &["roles", "create", "reader", "--permission", "content:read"],
    )
    .await
    .ok();
    let user = run(
        &app.address,
        &ADMIN,
        &[
            "users",
            "create",
            "--email",
            "grace@example.com",
            "--name",
            "Grace",
            "--role",
            "reader",
            "--password-stdin",
            "--json",
        ],
        "a long enough password\n",
    )
    .await
    .ok()
    .json();
    let uid = user["id"].as_str().unwrap().to_owned();
    assert_eq!(user["hasPassword"], true);
    let shown = admin(&app, &["users", "show", &uid, "--json"])
        .await
        .ok()
        .json();
    assert_eq!(shown["roles"], json!(["reader"]));
    let disabled = admin(
        &app,
        &["users", "update", &uid, "--status", "disabled", "--json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(disabled["status"], "disabled");
    let list = admin(&app, &["users", "list", "--limit", "10"]).await.ok();
    assert!(list.out.contains("grace@example.com"), "{}", list.out);

    // The role is held: the conflict names the CLI's flag, not the API's
    // query parameter.
    let held = admin(&app, &["roles", "delete", "reader"]).await;
    assert_ne!(held.code, 0);
    assert!(
        held.err.contains("tessera roles delete reader --detach"),
        "{}",
        held.err
    );
    assert!(!held.err.contains("?detach"), "{}", held.err);
    admin(&app, &["roles", "delete", "reader", "--detach"])
        .await
        .ok();
    admin(&app, &["users", "delete", &uid]).await.ok();

    // The audit log, filtered as the API filters.
    let page = admin(
        &app,
        &[
            "audit", "--action", "user.*", "--since", "1h", "--limit", "50", "--json",
        ],
    )
    .await
    .ok()
    .json();
    let actions: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"user.create"), "{actions:?}");
    assert!(
        actions.iter().all(|a| a.starts_with("user.")),
        "{actions:?}"
    );
    let by_target = admin(&app, &["audit", "--target", &uid, "--json"])
        .await
        .ok()
        .json();
    assert!(
        by_target["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["target"] == uid.as_str()),
        "{by_target}"
    );
    let future = admin(
        &app,
        &["audit", "--until", "2000-01-01T00:00:00Z", "--json"],
    )
    .await
    .ok()
    .json();
    assert_eq!(future["data"], json!([]));
}

/// A loopback listener that only counts the connections it is offered.
async fn tripwire() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (url, seen)
}

#[tokio::test]
async fn cli_cover_refuses_bad_values_before_sending_anything() {
    let (url, seen) = tripwire().await;
    // (arguments, what the error must say)
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["apps", "create", "--name", "x", "--env", "staging"],
            &["--env staging: expected one of live, test"],
        ),
        (
            &["apps", "create", "--name", "x", "--type", "private"],
            &["--type private: expected one of secret, public"],
        ),
        (
            &["apps", "create", "--name", "x", "--expires-at", "tomorrow"],
            &[
                "--expires-at tomorrow: expected an RFC 3339 instant like 2027-01-31T00:00:00Z or a duration like 30d",
            ],
        ),
        (
            &[
                "apps",
                "create",
                "--name",
                "x",
                "--expires-at",
                "2001-01-01T00:00:00Z",
            ],
            &["--expires-at 2001-01-01T00:00:00Z: must be in the future"],
        ),
        (
            &["apps", "create", "--name", "x", "--token-ttl", "5"],
            &["--token-ttl 5: expected seconds from 10 to 86400"],
        ),
        (
            &["apps", "create", "--name", "x", "--rate-limit", "100/1y"],
            &["--rate-limit 100/1y: expected requests/window like 100/1m"],
        ),
        (
            &[
                "apps",
                "create",
                "--name",
                "x",
                "--access-rule",
                "cluster:c1",
            ],
            &["--access-rule cluster:c1: expected SCOPE=GRANT"],
        ),
        (
            &["apps", "create", "--name", "x", "--audience", "has space"],
            &["--audience has space: expected 1 to 256 printable ASCII characters without spaces"],
        ),
        (
            &[
                "apps",
                "create",
                "--name",
                "x",
                "--allowed-ip",
                "10.0.0.0/99",
            ],
            &["--allowed-ip 10.0.0.0/99: expected an IP address or CIDR"],
        ),
        (
            &["apps", "create", "--name", "x", "--permission", "read"],
            &["--permission read: expected resource:action, resource:* or *"],
        ),
        (
            &["apps", "create", "--name", "x", "--grant-type", "password"],
            &["--grant-type password: expected one of client_credentials, authorization_code"],
        ),
        (
            &[
                "apps",
                "create",
                "--name",
                "x",
                "--redirect-uri",
                "http://example.com/cb",
            ],
            &["--redirect-uri http://example.com/cb: expected an absolute https URL"],
        ),
        (
            &["apps", "create", "--name", " "],
            &["--name must not be empty"],
        ),
        (
            &["apps", "update", "app_x", "--expires-at", "soon"],
            &[
                "--expires-at soon: expected an RFC 3339 instant",
                "or never",
            ],
        ),
        (
            &["apps", "update", "app_x", "--token-ttl", "forever"],
            &["--token-ttl forever: expected seconds", "or default"],
        ),
        (
            &["apps", "update", "app_x", "--clear", "scopes"],
            &["--clear scopes: expected one of permissions, roles, access-rules, audiences"],
        ),
        (
            &["apps", "update", "app_x", "--role", "r", "--clear", "roles"],
            &["--clear roles and --role: choose one"],
        ),
        (&["apps", "update", "app_x"], &["nothing to change"]),
        (
            &["apps", "list", "--status", "dead"],
            &["--status dead: expected one of active, revoked, expired"],
        ),
        (
            &["apps", "rotate", "app_x", "--grace", "90000"],
            &["--grace 90000: expected seconds from 0 to 86400"],
        ),
        (
            &["roles", "create", "Readers"],
            &["NAME Readers: expected a role name: 1 to 64 of a-z, 0-9, _ - ."],
        ),
        (
            &["users", "create", "--email", "not-an-email"],
            &["--email not-an-email: expected an email address"],
        ),
        (
            &["users", "update", "usr_x", "--status", "gone"],
            &["--status gone: expected one of active, disabled"],
        ),
        (
            &["audit", "--since", "yesterday"],
            &[
                "--since yesterday: expected an RFC 3339 instant",
                "or a duration ago like 1h",
            ],
        ),
        (
            &["audit", "--limit", "500"],
            &["--limit 500: expected 1 to 200"],
        ),
        (
            &["token", "--audience", "a b"],
            &["--audience a b: expected 1 to 256 printable ASCII"],
        ),
    ];
    for (args, wanted) in cases {
        let out = run(&url, &ADMIN, args, "").await;
        assert_eq!(out.code, 1, "{args:?} must fail: {}", out.err);
        for w in *wanted {
            assert!(out.err.contains(w), "{args:?}: {:?} lacks {w:?}", out.err);
        }
        assert!(out.out.is_empty(), "{args:?}: {}", out.out);
    }
    // A password too short is refused without being repeated.
    let out = run(
        &url,
        &ADMIN,
        &[
            "users",
            "create",
            "--email",
            "a@example.com",
            "--password-stdin",
        ],
        "hunter2\n",
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(out.err.contains("expected 12 to 128"), "{}", out.err);
    assert!(!out.err.contains("hunter2"), "{}", out.err);
    // A long value is named by its flag, not repeated.
    let long = format!("{} x", "a".repeat(300));
    let out = run(
        &url,
        &ADMIN,
        &["apps", "create", "--name", "x", "--audience", &long],
        "",
    )
    .await;
    assert!(out.err.contains("--audience: expected"), "{}", out.err);
    assert!(!out.err.contains(&long), "{}", out.err);
    // --json: the refusal is JSON too.
    let out = run(
        &url,
        &ADMIN,
        &["apps", "create", "--name", "x", "--env", "prod", "--json"],
        "",
    )
    .await;
    assert_eq!(
        out.json()["error"],
        "--env prod: expected one of live, test"
    );

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(seen.load(Ordering::SeqCst), 0, "nothing reached the server");
    // The tripwire does count: a valid command does connect.
    let out = run(&url, &ADMIN, &["apps", "list"], "").await;
    assert_ne!(out.code, 0);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(seen.load(Ordering::SeqCst) > 0);
}

/// `tessera openapi | head -c 16`: the reader closes the pipe after a few
/// bytes of a document far larger than a pipe holds (64 KiB). The command
/// ends with its own status, 0, and says nothing, where it used to panic on
/// the broken pipe.
#[test]
fn cli_cover_a_reader_closing_the_pipe_early_ends_the_command_quietly() {
    use std::io::Read;
    let mut child = Command::new(BIN)
        .arg("openapi")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // The read end is closed here, as `head` closes it.
    let out = child.wait_with_output().unwrap();
    assert!(head.starts_with(b"{"), "{}", String::from_utf8_lossy(&head));
    // Larger than a pipe holds, or the write would never meet the closed end.
    assert!(tessera::http::openapi::document().len() > 64 * 1024);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `apps delete --json` naming an id that does not exist prints one JSON
/// document (the per-id results) and exits 1; without `--json` the table
/// and a sentence on standard error.
#[tokio::test]
async fn cli_cover_a_bulk_delete_with_a_missing_id_prints_one_answer() {
    let app = spawn_app().await;
    let (created, _) = app.create_app(json!({"name": "to-go"})).await;
    let id = created["id"].as_str().unwrap();
    let out = admin(&app, &["apps", "delete", id, "app_missing", "--json"]).await;
    assert_eq!(out.code, 1, "{}\n{}", out.out, out.err);
    let v = out.json();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2, "{v}");
    assert!(
        results
            .iter()
            .any(|r| r["id"] == id && r["result"] == "deleted")
    );
    assert!(out.err.is_empty(), "{}", out.err);
    let (created, _) = app.create_app(json!({"name": "to-go-too"})).await;
    let other = created["id"].as_str().unwrap();
    let out = admin(&app, &["apps", "delete", other, "app_missing"]).await;
    assert_eq!(out.code, 1);
    assert!(out.out.contains(other), "{}", out.out);
    assert!(
        out.err.contains("some applications were not found"),
        "{}",
        out.err
    );
}

/// A peer that answers every request with `status` and `body` (a proxy in
/// front of a gateway that is down, or a broken gateway).
async fn answers(status: &'static str, ctype: &'static str, body: &'static str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                let mut got = Vec::new();
                // Up to the end of the headers and the (small) body.
                while let Ok(n) = conn.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if got.len() >= end + 4 + len {
                            break;
                        }
                    }
                }
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

/// An error answer that is not JSON (a proxy's HTML page) is reported by
/// its status; a success without a token is an error, never an empty line.
#[tokio::test]
async fn cli_cover_answers_that_are_not_the_gateways_are_reported_plainly() {
    let html = answers(
        "502 Bad Gateway",
        "text/html",
        "<html><body>502 Bad Gateway</body></html>",
    )
    .await;
    for args in [&["token"][..], &["apps", "list"][..]] {
        let out = run(&html, &ADMIN, args, "").await;
        assert_eq!(out.code, 1, "{args:?}: {}", out.out);
        assert!(out.err.contains("502 Bad Gateway"), "{args:?}: {}", out.err);
        assert!(!out.err.contains("unreadable"), "{args:?}: {}", out.err);
    }
    let empty = answers("200 OK", "application/json", "{}").await;
    let out = run(&empty, &ADMIN, &["token"], "").await;
    assert_eq!(out.code, 1, "{}", out.out);
    assert!(out.out.trim().is_empty(), "{}", out.out);
    assert!(out.err.contains("without an accessToken"), "{}", out.err);
    let garbled = answers("200 OK", "application/json", "not json").await;
    let out = run(&garbled, &ADMIN, &["token"], "").await;
    assert_eq!(out.code, 1, "{}", out.out);
    assert!(
        out.err.contains("unreadable answer (200 OK)"),
        "{}",
        out.err
    );
}
