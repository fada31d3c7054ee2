//! The edge through a real Debian nginx in front of `cluster_api` (docs/api.md, "At the edge").
//!
//! nginx runs `deploy/nginx/tessera.conf` itself, its placeholders replaced
//! by this test's ports: what ships is what is tested. The gateways run on
//! a real Redis with `trusted_proxies = 127.0.0.1/32` (nginx's address);
//! `cluster_api` (the example binary) verifies the JWT nginx hands it.
//!
//! Clients here connect from other loopback addresses (127.0.0.2 and up)
//! so that the address nginx puts in `X-Forwarded-For` is not itself a
//! trusted proxy, as a real client's would not be.

use reqwest::Method;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tessera::Settings;
use tessera::domain::IpNet;

use crate::helpers::*;
use crate::redis_server::RedisServer;

const AUDIENCE: &str = "cluster-api";
/// Gateways behind one balancer share an issuer and a key ring.
const ISSUER: &str = "http://edge-gateways.test";
/// The shipped configuration.
const CONF: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/tessera.conf");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A client connecting from `127.0.0.{last}`.
pub(crate) fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(loopback(last))
        .build()
        .unwrap()
}

/// Debian's nginx, with the auth_request module; a clear failure otherwise
/// (never a silent skip).
fn nginx_binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file());
    let Some(bin) = found else {
        panic!("nginx is not installed: run `bash .ci/run install_nginx` (Debian's nginx)");
    };
    let out = Command::new(&bin).arg("-V").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("with-http_auth_request_module"),
        "{} lacks the auth_request module: run `bash .ci/run install_nginx`",
        bin.display()
    );
    bin
}

/// A child process stopped on drop: SIGTERM (nginx's master then stops its
/// workers), SIGKILL if it lingers.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `port` accepts connections, or fails with `log`.
fn wait_listening(proc: &mut Proc, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        let read_log = || std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            !proc.exited(),
            "{} exited before listening:\n{}",
            proc.name,
            read_log()
        );
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {port} within 30 s:\n{}",
            proc.name,
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `deploy/nginx/tessera.conf` with its placeholders replaced: the
/// `server __TESSERA_GATEWAY__` line once per gateway.
fn render(listen: &str, gateways: &[String], service: &str) -> String {
    let template = std::fs::read_to_string(CONF).unwrap();
    let mut out = String::new();
    let mut gateway_lines = 0;
    for line in template.lines() {
        if line.contains("__TESSERA_GATEWAY__") && !line.trim_start().starts_with('#') {
            gateway_lines += 1;
            for g in gateways {
                out.push_str(&line.replace("__TESSERA_GATEWAY__", g));
                out.push('\n');
            }
        } else {
            out.push_str(
                &line
                    .replace("__TESSERA_LISTEN__", listen)
                    .replace("__TESSERA_SERVICE__", service),
            );
            out.push('\n');
        }
    }
    assert_eq!(gateway_lines, 1, "one `server __TESSERA_GATEWAY__` line");
    let left: Vec<&str> = out
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("__TESSERA_"))
        .collect();
    assert!(left.is_empty(), "placeholders left: {left:?}");
    out
}

/// nginx, `cluster_api` and the gateways behind it, stopped in that order.
pub(crate) struct Edge {
    nginx: Proc,
    _service: Proc,
    gateways: Vec<TestApp>,
    _redis: RedisServer,
    dir: TempDir,
    /// nginx's base URL.
    url: String,
    /// `cluster_api`'s own base URL.
    service: String,
}

impl Edge {
    /// One gateway.
    async fn start() -> Self {
        Self::start_with(1).await
    }

    /// `n` gateways on one Redis, one issuer and one key ring, all in the
    /// one nginx upstream.
    async fn start_with(n: usize) -> Self {
        Self::start_tweaked(n, |_| {}).await
    }

    /// `n` gateways as [`Edge::start_with`], each with `tweak` applied to
    /// its settings last (tests/api/edge_attacks.rs).
    pub(crate) async fn start_tweaked(n: usize, tweak: impl Fn(&mut Settings)) -> Self {
        let nginx_bin = nginx_binary();
        let redis = RedisServer::start();
        let prefix = format!("e{}:", tessera::crypto::random::base62(10).unwrap());
        let mut gateways: Vec<TestApp> = Vec::new();
        for _ in 0..n {
            let keys = gateways.first().map(TestApp::keys_dir);
            let mut gw = spawn_with(|s| {
                s.redis_url = Some(redis.url());
                s.redis_prefix = prefix.clone();
                s.issuer = Some(ISSUER.into());
                s.trusted_proxies = vec![IpNet::parse("127.0.0.1/32").unwrap()];
                if let Some(k) = keys {
                    s.keys_dir = k;
                }
                tweak(s);
            })
            .await;
            // The test's own admin calls come from an untrusted address, so
            // the gateway takes the peer for the client, as it should.
            gw.client = client_from(5);
            gateways.push(gw);
        }
        let dir = tempfile::tempdir().unwrap();
        // Running as root, nginx's workers run as `nobody`: they must reach
        // the temporary paths inside this directory.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }

        let service_port = free_port();
        let service_log = dir.path().join("cluster_api.log");
        let examples = Path::new(env!("CARGO_BIN_EXE_tessera"))
            .parent()
            .unwrap()
            .join("examples");
        let service_bin = examples.join("cluster_api");
        assert!(
            service_bin.exists(),
            "{} is missing: `cargo test` builds the examples",
            service_bin.display()
        );
        let mut service = Proc {
            child: Command::new(&service_bin)
                .args([
                    "--listen",
                    &format!("127.0.0.1:{service_port}"),
                    "--gateway",
                    &gateways[0].address,
                    "--audience",
                    AUDIENCE,
                    "--redis",
                    &redis.url(),
                    "--redis-prefix",
                    &prefix,
                ])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&service_log).unwrap())
                .spawn()
                .unwrap(),
            name: "cluster_api",
        };
        wait_listening(&mut service, service_port, &service_log);

        let upstreams: Vec<String> = gateways
            .iter()
            .map(|g| g.address.trim_start_matches("http://").to_owned())
            .collect();
        let conf = dir.path().join("tessera.conf");
        let error_log = dir.path().join("error.log");
        // A port found free may be taken before nginx binds it: try again.
        let mut tries = 0;
        let (nginx, port) = loop {
            tries += 1;
            let port = free_port();
            let text = render(
                &format!("127.0.0.1:{port}"),
                &upstreams,
                &format!("127.0.0.1:{service_port}"),
            );
            std::fs::write(&conf, text).unwrap();
            let mut nginx = Proc {
                child: Command::new(&nginx_bin)
                    .arg("-p")
                    .arg(dir.path())
                    .arg("-c")
                    .arg(&conf)
                    .arg("-e")
                    .arg(&error_log)
                    .args(["-g", "daemon off;"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
                name: "nginx",
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            let up = loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break true;
                }
                if nginx.exited() || Instant::now() > deadline {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if up {
                break (nginx, port);
            }
            let log = std::fs::read_to_string(&error_log).unwrap_or_default();
            assert!(
                tries < 3 && log.contains("Address already in use"),
                "nginx did not start:\n{log}"
            );
        };
        let edge = Self {
            nginx,
            _service: service,
            gateways,
            _redis: redis,
            dir,
            url: format!("http://127.0.0.1:{port}"),
            service: format!("http://127.0.0.1:{service_port}"),
        };
        edge.wait_for_service().await;
        edge
    }

    pub(crate) fn gw(&self) -> &TestApp {
        &self.gateways[0]
    }

    pub(crate) fn workloads(&self, cluster: &str) -> String {
        format!("{}/api/v1/clusters/{cluster}/workloads", self.url)
    }

    /// `cluster_api` answers through nginx once its verifier has the JWKS
    /// and its revocation mirror is fresh.
    async fn wait_for_service(&self) {
        let (_, key) = cluster_key(self.gw(), json!({})).await;
        let client = client_from(2);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let res = client
                .get(self.workloads("c1"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster_api never answered 200 through nginx (last {status}: {})\n{}",
                res.text().await.unwrap_or_default(),
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// nginx's access log (the `tessera` format of the shipped file).
    fn access_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The access log once a line satisfies `want`: nginx writes it after
    /// the response is sent, so a client can read the answer first.
    async fn log_until(&self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.access_log();
            if log.iter().any(|l| want(l)) {
                return log;
            }
            assert!(Instant::now() < deadline, "no such line in {log:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The access log's line for the request that `marker` (a cluster name
    /// used once) identifies.
    async fn logged(&self, marker: &str) -> String {
        let needle = format!("/api/v1/clusters/{marker}/workloads");
        let lines: Vec<String> = self
            .log_until(|l| l.contains(&needle))
            .await
            .into_iter()
            .filter(|l| l.contains(&needle))
            .collect();
        assert_eq!(lines.len(), 1, "one line for {needle}: {lines:?}");
        lines[0].clone()
    }
}

/// Creates an application for the cluster routes (`workloads:read` on
/// `cluster:c1` unless `extra` says otherwise); returns (body, secret).
pub(crate) async fn cluster_key(gw: &TestApp, extra: Value) -> (Value, String) {
    let mut body = json!({
        "name": format!("edge-{}", tessera::crypto::random::base62(6).unwrap()),
        "audiences": [AUDIENCE],
        "accessRules": [{"scope": "cluster:c1", "permissions": ["workloads:read"]}]
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    gw.create_app(body).await
}

/// Status, headers and JSON body of a response.
pub(crate) async fn parts(res: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, body)
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_key_reaches_cluster_api_which_sees_a_valid_jwt() {
    let edge = Edge::start().await;
    let (app, key) = cluster_key(edge.gw(), json!({})).await;
    let id = app["id"].as_str().unwrap();
    let client = client_from(2);

    let bearer = client
        .get(edge.workloads("c1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let (status, headers, body) = parts(bearer).await;
    // cluster_api answers 200 only after its verifier accepted a JWT
    // (signature from the JWKS, issuer, audience `cluster-api`, lifetime,
    // revocations) carrying workloads:read on cluster:c1; `caller` is the
    // token's `sub`. The raw key itself would be no JWT at all.
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"cluster": "c1", "workloads": [], "caller": id}),
        "cluster_api's own answer"
    );
    // No budget applies: no rate headers.
    assert!(header(&headers, "ratelimit").is_none());

    let by_header = client
        .get(edge.workloads("c1"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(by_header).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caller"], json!(id));

    // The JWT is what cluster_api checks: the same key on a cluster its
    // rules do not cover is refused by the gateway before it...
    let res = client
        .get(edge.workloads("c2"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    // ...and a raw key sent straight to cluster_api is no token to it.
    let direct = client
        .get(format!("{}/api/v1/clusters/c1/workloads", edge.service))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401, "cluster_api refuses a raw key");

    // A request without any credential: 401 with the challenge, once.
    let (status, headers, body) =
        parts(client.get(edge.workloads("c1")).send().await.unwrap()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "missing_api_key");
    assert_eq!(
        headers.get_all("www-authenticate").iter().count(),
        1,
        "{headers:?}"
    );
    // A key that is not one: 401 invalid_api_key, the docs/errors.md body.
    let (status, _, body) = parts(
        client
            .get(edge.workloads("c1"))
            .bearer_auth(format!("{key}x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    assert_eq!(body["error"]["type"], "authentication_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_without_the_permission_is_refused_and_never_reaches_cluster_api() {
    let edge = Edge::start().await;
    // Reads everywhere on cluster:c1, writes nowhere.
    let (_, key) = cluster_key(edge.gw(), json!({})).await;
    let client = client_from(2);

    // POST needs workloads:write (the config's map on the method).
    let res = client
        .post(edge.workloads("c1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let (status, headers, body) = parts(res).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        json!({"error": {
            "code": "insufficient_permissions",
            "message": "this call needs the permission workloads:write on cluster:c1",
            "type": "authorization_error"
        }}),
        "the gateway's error body, through nginx"
    );
    assert_eq!(header(&headers, "content-type"), Some("application/json"));
    assert!(
        header(&headers, "www-authenticate").is_some_and(|c| c.contains("insufficient_scope")),
        "{headers:?}"
    );
    // The gateway's internal headers stay between it and nginx.
    assert!(header(&headers, "x-tessera-error").is_none());
    assert!(header(&headers, "x-tessera-status").is_none());

    // A cluster outside the key's rules, named once so its log line is
    // unambiguous.
    let res = client
        .get(edge.workloads("c-refused"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    let (status, _, body) = parts(res).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body["error"]["message"],
        "this call needs the permission workloads:read on cluster:c-refused"
    );
    let refused = edge.logged("c-refused").await;
    assert!(
        refused.contains("service=- ") && refused.contains("decided=403"),
        "nginx never proxied it: {refused}"
    );
    // Whereas an admitted request did reach it.
    let res = client
        .get(edge.workloads("c1"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let reached: Vec<String> = edge
        .log_until(|l| l.contains("GET /api/v1/clusters/c1/workloads\" 200"))
        .await
        .into_iter()
        .filter(|l| l.contains("GET /api/v1/clusters/c1/workloads\" 200"))
        .collect();
    assert!(
        reached.iter().all(|l| !l.contains("service=- ")),
        "{reached:?}"
    );

    // Other methods are not routes: 405 before the gateway is asked.
    let res = client
        .delete(edge.workloads("c1"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
    // A cluster name that would add parameters to the gateway's query
    // matches no route.
    let res = client
        .get(format!(
            "{}/api/v1/clusters/c1%26permission%3D/workloads",
            edge.url
        ))
        .header("X-Api-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_at_once() {
    let edge = Edge::start().await;
    let (app, key) = cluster_key(edge.gw(), json!({})).await;
    let id = app["id"].as_str().unwrap();
    let client = client_from(2);
    // Admitted, so the gateway holds a minted token for it.
    for _ in 0..2 {
        let res = client
            .get(edge.workloads("c1"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    ok(
        call(
            edge.gw(),
            Method::POST,
            &format!("/api/v1/apps/{id}/revoke"),
            None,
        )
        .await,
        200,
    )
    .await;
    // The very next request, with no wait.
    let (status, headers, body) = parts(
        client
            .get(edge.workloads("c1"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_api_key")),
        "{body}"
    );
    assert!(header(&headers, "www-authenticate").is_some_and(|c| c.starts_with("Bearer")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_passes_too() {
    let edge = Edge::start().await;
    let (app, key) = cluster_key(edge.gw(), json!({})).await;
    let id = app["id"].as_str().unwrap();
    let client = client_from(2);
    let res = edge
        .gw()
        .post_json(
            "/api/v1/token",
            &json!({"AppSecret": key, "audience": AUDIENCE}),
        )
        .await;
    let token = ok(res, 200).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, body) = parts(
        client
            .get(edge.workloads("c1"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["caller"], json!(id));

    // A token minted for another audience is not one for this route.
    let other = edge.gw().token_for(None, &key).await;
    let (status, _, body) = parts(
        client
            .get(edge.workloads("c1"))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    // Revoked through RFC 7009: refused at once.
    let admin = edge.gw().admin_token().await;
    let res = edge
        .gw()
        .client
        .post(edge.gw().url("/oauth/revoke"))
        .bearer_auth(&admin)
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .get(edge.workloads("c1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_outside_its_allowed_ips_is_refused() {
    let edge = Edge::start().await;
    // 127.0.0.1 is nginx's own address: were the gateway to take its peer
    // for the client, every request would pass. (It is also the address
    // cluster_api sees and checks the token's CIDRs against: the example
    // trusts no proxy.)
    let (_, key) = cluster_key(
        edge.gw(),
        json!({"allowedIps": ["127.0.0.3/32", "127.0.0.1/32"]}),
    )
    .await;
    let get_from = async |last: u8, spoof: Option<&str>| {
        let mut req = client_from(last)
            .get(edge.workloads("c1"))
            .header("X-Api-Key", &key);
        if let Some(s) = spoof {
            req = req.header("X-Forwarded-For", s);
        }
        parts(req.send().await.unwrap()).await
    };
    // From 127.0.0.2: nginx tells the gateway so in X-Forwarded-For (the
    // gateway's peer is nginx, a trusted proxy).
    let (status, headers, body) = get_from(2, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("ip_not_allowed")),
        "{body}"
    );
    assert_eq!(body["error"]["type"], "authorization_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("127.0.0.2")),
        "the message names the refused address: {body}"
    );
    assert!(header(&headers, "www-authenticate").is_some());
    // What the client claims in its own X-Forwarded-For does not count.
    let (status, _, body) = get_from(2, Some("127.0.0.3")).await;
    assert_eq!(status, 403, "{body}");
    // From the allowed address it passes.
    let (status, _, body) = get_from(3, None).await;
    assert_eq!(status, 200, "{body}");
}

/// Sends `n` requests with `key` through nginx; returns the statuses.
async fn burst(edge: &Edge, key: &str, n: usize) -> Vec<(u16, reqwest::header::HeaderMap, Value)> {
    let client = client_from(2);
    let mut out = Vec::new();
    for _ in 0..n {
        let res = client
            .get(edge.workloads("c1"))
            .header("X-Api-Key", key)
            .send()
            .await
            .unwrap();
        out.push(parts(res).await);
    }
    out
}

/// The gateway that answered a request, from the access log's
/// `gateway=` field (nginx lists every address it tried; the last one
/// answered).
fn decided_by(line: &str) -> String {
    line.split("gateway=")
        .nth(1)
        .and_then(|g| g.split(" decided=").next())
        .and_then(|g| g.rsplit(", ").next())
        .unwrap_or_default()
        .to_owned()
}

fn assert_limited(got: &(u16, reqwest::header::HeaderMap, Value)) {
    let (status, headers, body) = got;
    assert_eq!(*status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    let retry: u64 = header(headers, "retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in {headers:?}"));
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        header(headers, "ratelimit-policy").is_some_and(|p| p.contains("q=")),
        "{headers:?}"
    );
    assert!(
        header(headers, "ratelimit").is_some_and(|r| r.contains("r=0")),
        "{headers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_limit_429_with_retry_after_and_ratelimit_headers() {
    let edge = Edge::start().await;
    let (app, key) = cluster_key(
        edge.gw(),
        json!({"rateLimit": {"requests": 3, "per": "1m"}}),
    )
    .await;
    assert_eq!(app["rateLimit"], json!({"requests": 3, "per": "1m"}));
    let got = burst(&edge, &key, 4).await;
    for (i, (status, headers, body)) in got[..3].iter().enumerate() {
        assert_eq!(*status, 200, "request {i}: {body}");
        assert!(
            header(headers, "ratelimit-policy").is_some_and(|p| p.contains("q=3")),
            "request {i}: {headers:?}"
        );
        let left = 2 - i;
        assert!(
            header(headers, "ratelimit").is_some_and(|r| r.contains(&format!("r={left}"))),
            "request {i}: {headers:?}"
        );
    }
    assert_limited(&got[3]);
    // The refused request never reached cluster_api.
    edge.log_until(|l| l.contains("\" 429 service=- ")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_behind_one_upstream_share_the_budget() {
    let mut edge = Edge::start_with(2).await;
    let budget = 4;
    let (_, key) = cluster_key(
        edge.gw(),
        json!({"rateLimit": {"requests": budget, "per": "1m"}}),
    )
    .await;
    let before = edge.access_log().len();
    let got = burst(&edge, &key, budget + 1).await;
    for (i, (status, _, body)) in got[..budget].iter().enumerate() {
        assert_eq!(*status, 200, "request {i}: {body}");
    }
    assert_limited(&got[budget]);
    // nginx spread them over both gateways (round robin).
    let log = edge.log_until(|l| l.contains("\" 429 service=- ")).await;
    let answered: std::collections::HashSet<String> =
        log[before..].iter().map(|l| decided_by(l)).collect();
    let addrs: Vec<String> = edge
        .gateways
        .iter()
        .map(|g| g.address.trim_start_matches("http://").to_owned())
        .collect();
    for a in &addrs {
        assert!(answered.contains(a), "{a} answered none of {log:?}");
    }
    // With the first gateway gone, the second alone still sees the budget
    // spent: it is one budget, not two halves.
    let first = edge.gateways.remove(0);
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = edge.access_log().len();
    let got = burst(&edge, &key, 2).await;
    for g in &got {
        assert_limited(g);
    }
    let log = edge
        .log_until(|_| edge.access_log().len() >= before + 2)
        .await;
    for line in &log[before..] {
        assert_eq!(decided_by(line), addrs[1], "{line}");
    }
    // nginx is still the one that answered.
    assert!(!edge.nginx.exited());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gateway_answering_is_a_503_never_a_pass() {
    let mut edge = Edge::start().await;
    let (_, key) = cluster_key(edge.gw(), json!({})).await;
    let client = client_from(2);
    let res = client
        .get(edge.workloads("c1"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    edge.gateways.clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, body) = parts(
        client
            .get(edge.workloads("c-down"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(edge.logged("c-down").await.contains("service=- "));
}
