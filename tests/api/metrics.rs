//! `/metrics` after real traffic, the metrics switch, request ids, the access
//! log of the real binary, and the verifier's own metrics.

use actix_web::{App, HttpServer, web};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tessera::verifier::{RevocationSource, Verifier, VerifierConfig};

use crate::helpers::*;
use crate::redis_server::RedisServer;
use crate::serve::Served;
use crate::verifier::downstream;

/// The samples of a scrape, `name{labels}` → value.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The value of the sample named exactly `key` (0 when absent).
fn value(text: &str, key: &str) -> f64 {
    samples(text)
        .into_iter()
        .find(|(k, _)| k == key)
        .map_or(0.0, |(_, v)| v)
}

/// The sum of every sample of `name` whose labels contain all of `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(k, _)| {
            k.split_once('{').map_or(k.as_str(), |(n, _)| n) == name
                && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

async fn scrape(app: &TestApp, admin: &str) -> String {
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

async fn client_credentials(app: &TestApp, id: &str, secret: &str) -> u16 {
    app.client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn requests_are_timed_by_route_pattern_and_exchanges_by_outcome() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (created, secret) = app
        .create_app(json!({"name": "timed", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let res = app
        .authed(reqwest::Method::GET, &format!("/api/v1/apps/{id}"), &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .get(app.url("/no/such/path"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // Cold (argon2), then warm (the verified-secret cache).
    app.token_for(None, &secret).await;
    let before = scrape(&app, &admin).await;
    app.token_for(None, &secret).await;
    assert_eq!(client_credentials(&app, &id, &secret).await, 200);
    assert_eq!(app.exchange(Some(&id), "wrong-secret").await.status(), 401);
    let after = scrape(&app, &admin).await;

    // The pattern, never the id.
    assert!(
        value(
            &after,
            "tessera_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/apps/{id}\",status=\"200\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        !after.contains(&id),
        "an application id leaked into a label"
    );
    assert!(
        value(
            &after,
            "tessera_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        value(
            &after,
            "tessera_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/token\",status=\"200\",le=\"+Inf\"}"
        ) >= 2.0,
        "{after}"
    );
    // The old counters keep their names.
    assert!(value(&after, "tessera_tokens_issued_total") >= 4.0);
    assert!(value(&after, "tessera_http_responses_total{class=\"2xx\"}") >= 5.0);
    assert!(value(&after, "tessera_http_responses_total{class=\"4xx\"}") >= 2.0);

    // Exchanges by outcome: the warm JSON exchange and the OAuth one were
    // issued, the wrong secret refused.
    let issued =
        "tessera_exchange_duration_seconds_count{grant=\"client_credentials\",outcome=\"issued\"}";
    assert_eq!(value(&after, issued) - value(&before, issued), 2.0);
    let refused =
        "tessera_exchange_duration_seconds_count{grant=\"client_credentials\",outcome=\"refused\"}";
    assert_eq!(value(&after, refused) - value(&before, refused), 1.0);

    // The warm exchanges hit the secret cache; hits + misses are lookups.
    let hits = "tessera_cache_hits_total{cache=\"secret\"}";
    assert!(value(&after, hits) - value(&before, hits) >= 2.0, "{after}");
    assert!(value(&after, "tessera_cache_misses_total{cache=\"secret\"}") >= 1.0);
    assert!(value(&after, "tessera_cache_hits_total{cache=\"app\"}") >= 1.0);
    assert!(sum(&after, "tessera_cache_hits_total", &["cache=\"grants\""]) >= 1.0);
    assert_eq!(
        value(&after, "tessera_secret_cache_hits_total")
            - value(&before, "tessera_secret_cache_hits_total"),
        value(&after, hits) - value(&before, hits)
    );

    // The cold exchange waited (however briefly) for an argon2 slot; the
    // pool is idle now.
    assert!(value(&after, "tessera_argon2_queue_wait_seconds_count") >= 1.0);
    assert!(after.contains("\ntessera_argon2_in_flight 0\n"), "{after}");
    assert!(after.contains("\ntessera_argon2_queued 0\n"), "{after}");
}

#[tokio::test]
async fn revocations_published_are_counted_by_kind() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (created, secret) = app.create_app(json!({"name": "revoker"})).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = app.token_for(None, &secret).await;
    let res = app
        .client
        .post(app.url("/oauth/revoke"))
        .form(&[
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = scrape(&app, &admin).await;
    assert_eq!(
        value(&text, "tessera_revocations_published_total{kind=\"jti\"}"),
        1.0,
        "{text}"
    );
}

#[tokio::test]
async fn metrics_off_records_nothing_and_metrics_answers_404() {
    let dirs = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dirs.path());
    settings.metrics = false;
    let app = tessera::Application::build(settings).await.unwrap();
    let registry = app.gateway().metrics.registry().clone();
    assert!(!app.gateway().metrics.enabled());
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let token: Value = client
        .post(format!("{address}/api/v1/token"))
        .json(&json!({"AppId": ADMIN_ID, "AppSecret": ADMIN_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let admin = token["accessToken"].as_str().unwrap();
    let res = client
        .get(format!("{address}/metrics"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // The request id is given all the same.
    assert!(res.headers().contains_key("x-request-id"));
    assert!(registry.gather().is_empty(), "something was registered");
    handle.stop(false).await;
}

#[tokio::test]
async fn a_redis_backed_gateway_times_its_redis_commands() {
    let mut redis = RedisServer::start();
    let prefix = format!("m{}:", tessera::crypto::random::base62(8).unwrap());
    let app = spawn_on_redis(&redis.url(), &prefix, "http://metrics.test", None).await;
    let admin = app.admin_token().await;
    app.create_app(json!({"name": "on-redis"})).await;
    let text = scrape(&app, &admin).await;
    assert!(
        sum(
            &text,
            "tessera_redis_command_duration_seconds_count",
            &["op=\"pool_get\""]
        ) >= 1.0,
        "{text}"
    );
    // Reads and the scripted writes, by command.
    let commands = sum(&text, "tessera_redis_command_duration_seconds_count", &[])
        - sum(
            &text,
            "tessera_redis_command_duration_seconds_count",
            &["op=\"pool_get\""],
        );
    assert!(commands >= 2.0, "{text}");
    assert_eq!(sum(&text, "tessera_redis_errors_total", &[]), 0.0, "{text}");

    // With Redis gone, calls fail and are counted.
    redis.kill();
    let res = app
        .client
        .post(app.url("/api/v1/apps"))
        .bearer_auth(&admin)
        .json(&json!({"name": "while-down"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let res = app
            .client
            .get(app.url("/metrics"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            break res.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "no scrape after Redis came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        sum(&text, "tessera_redis_errors_total", &[]) >= 1.0,
        "{text}"
    );
}

#[tokio::test]
async fn request_ids_are_honoured_replaced_and_echoed_on_errors() {
    let app = spawn_app().await;
    let id_of = |res: &reqwest::Response| {
        res.headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .expect("every response carries a request id")
    };
    let plain = |id: &str| {
        (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    };
    // Honoured.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "trace-01:abc.DEF_9")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&res), "trace-01:abc.DEF_9");
    let longest = "a".repeat(128);
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", &longest)
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&res), longest);
    // Generated, fresh each time.
    let a = id_of(&app.client.get(app.url("/healthz")).send().await.unwrap());
    let b = id_of(&app.client.get(app.url("/healthz")).send().await.unwrap());
    assert!(plain(&a) && plain(&b) && a != b, "{a} {b}");
    // Replaced when it is not plain.
    for bad in ["a\"b", &"x".repeat(129), "two words", "semi;colon", ""] {
        let res = app
            .client
            .get(app.url("/healthz"))
            .header("X-Request-Id", bad)
            .send()
            .await
            .unwrap();
        let got = id_of(&res);
        assert!(got != bad && plain(&got), "{bad:?} gave {got:?}");
    }
    // Echoed on errors: 404, 401, 405, 400.
    let res = app
        .client
        .get(app.url("/nowhere"))
        .header("X-Request-Id", "e404")
        .send()
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), id_of(&res)), (404, "e404".into()));
    let res = app
        .client
        .get(app.url("/api/v1/apps"))
        .header("X-Request-Id", "e401")
        .send()
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), id_of(&res)), (401, "e401".into()));
    let res = app
        .client
        .delete(app.url("/healthz"))
        .header("X-Request-Id", "e405")
        .send()
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), id_of(&res)), (405, "e405".into()));
    let res = app
        .client
        .post(app.url("/api/v1/token"))
        .header("X-Request-Id", "e400")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!((res.status().as_u16(), id_of(&res)), (400, "e400".into()));
}

#[tokio::test]
async fn the_request_deadline_answers_408_with_the_request_id_and_is_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_with(|s| s.request_timeout = 1).await;
    let admin = app.admin_token().await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /api/v1/token HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow-body-1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the deadline closes the connection")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 408"), "{text}");
    assert!(text.contains("\r\nx-request-id: slow-body-1\r\n"), "{text}");
    let metrics = scrape(&app, &admin).await;
    assert_eq!(
        value(
            &metrics,
            "tessera_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/token\",status=\"408\"}"
        ),
        1.0,
        "{metrics}"
    );
}

/// The binary, serving with `env` and the admin configured; its address.
fn serve(dir: &std::path::Path, env: &[(&str, &str)]) -> (Served, String) {
    let mut cmd = crate::serve::command(dir, 1);
    cmd.env("TESSERA_ADMIN_APP_ID", ADMIN_ID)
        .env("TESSERA_ADMIN_APP_SECRET", ADMIN_SECRET)
        .envs(env.iter().copied());
    let mut gw = crate::serve::spawn(cmd);
    let address = gw.address();
    (gw, address)
}

/// The lines of `log` that are JSON.
fn json_lines(log: &str) -> impl Iterator<Item = Value> + '_ {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
}

/// The JSON lines of `log` that carry `request_id` (as a field or in a span).
fn lines_of(log: &str, request_id: &str) -> Vec<Value> {
    json_lines(log)
        .filter(|v| {
            v["fields"]["request_id"] == request_id || v["span"]["request_id"] == request_id
        })
        .collect()
}

/// A trusted proxy network that is not private works, and is said at start
/// (once per such network); private ones and a loopback metrics listener
/// are not.
#[tokio::test]
async fn settings_that_expose_the_gateway_are_warned_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, address) = serve(
        dir.path(),
        &[
            ("TESSERA_LOG_FORMAT", "json"),
            (
                "TESSERA_TRUSTED_PROXIES",
                "0.0.0.0/0, 10.0.0.0/8, 2001:db8::/32",
            ),
            ("TESSERA_METRICS_LISTEN", "127.0.0.1:0"),
        ],
    );
    let health = reqwest::get(format!("{address}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let log = gw.stderr();
    let warned: Vec<String> = json_lines(&log)
        .filter(|v| {
            v["level"] == "WARN"
                && v["fields"]["message"].as_str().is_some_and(|m| {
                    m.starts_with("trusted_proxies holds a network that is not private")
                })
        })
        .map(|v| {
            v["fields"]["network"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(warned, ["0.0.0.0/0", "2001:db8::/32"], "{log}");
    assert!(!log.contains("metrics_listen serves"), "{log}");
}

#[tokio::test]
async fn the_access_log_is_one_json_line_per_request_with_nothing_secret() {
    let dir = tempfile::tempdir().unwrap();
    // The service's debug line shows that lines logged while serving the
    // request carry its id too.
    let (gw, address) = serve(
        dir.path(),
        &[
            ("TESSERA_LOG_FORMAT", "json"),
            ("TESSERA_LOG", "info,tessera::service::token=debug"),
        ],
    );
    let client = reqwest::Client::new();
    let query_secret = "qs-4f9a1c0b7e";
    let res = client
        .post(format!("{address}/api/v1/token?hint={query_secret}"))
        .header("X-Request-Id", "req-access-1")
        .header("Authorization", "Bearer header-secret-77e1")
        .header("Cookie", "session=cookie-secret-9d2c")
        .json(&json!({"AppId": ADMIN_ID, "AppSecret": ADMIN_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "req-access-1");
    let token: Value = res.json().await.unwrap();
    let minted = token["accessToken"].as_str().unwrap().to_owned();

    let deadline = Instant::now() + Duration::from_secs(10);
    let (access, log) = loop {
        let log = gw.stderr();
        let access: Vec<Value> = lines_of(&log, "req-access-1")
            .into_iter()
            .filter(|v| v["target"] == "tessera::access")
            .collect();
        if !access.is_empty() {
            break (access, log);
        }
        assert!(Instant::now() < deadline, "no access line in {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(access.len(), 1, "one line per request: {access:?}");
    let line = &access[0];
    assert_eq!(line["level"], "INFO");
    let f = &line["fields"];
    assert_eq!(f["request_id"], "req-access-1");
    assert_eq!(f["method"], "POST");
    assert_eq!(f["route"], "/api/v1/token");
    assert_eq!(f["path"], "/api/v1/token");
    assert_eq!(f["status"], 200);
    assert!(f["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{f}");
    assert_eq!(f["peer"], "127.0.0.1");
    // Another line of the same request carries the id through its span.
    assert!(
        lines_of(&log, "req-access-1")
            .iter()
            .any(|v| v["target"] != "tessera::access" && v["span"]["request_id"] == "req-access-1"),
        "{log}"
    );
    // As a tracing span is written: first in the list, named `request`;
    // the access line itself is outside it.
    assert!(
        lines_of(&log, "req-access-1")
            .iter()
            .any(|v| v["target"] != "tessera::access"
                && v["spans"][0]["request_id"] == "req-access-1"
                && v["spans"][0]["name"] == "request"
                && v["span"]["name"] == "request"),
        "{log}"
    );
    assert!(access[0].get("span").is_none(), "{log}");
    for secret in [
        ADMIN_SECRET,
        query_secret,
        "header-secret-77e1",
        "cookie-secret-9d2c",
        minted.as_str(),
        "hint=",
    ] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
    // Every line is one JSON object.
    for l in log.lines() {
        assert!(serde_json::from_str::<Value>(l).is_ok(), "not JSON: {l}");
    }
}

/// In the pretty format, a line logged while serving a request names its
/// id as a span, before the target; a line outside any request does not.
#[tokio::test]
async fn pretty_lines_of_a_request_carry_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, address) = serve(
        dir.path(),
        &[
            ("TESSERA_LOG_FORMAT", "pretty"),
            ("TESSERA_LOG", "info,tessera::service::token=debug"),
        ],
    );
    let res = reqwest::Client::new()
        .post(format!("{address}/api/v1/token"))
        .header("X-Request-Id", "req-pretty-1")
        .json(&json!({"AppId": ADMIN_ID, "AppSecret": ADMIN_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = gw.stderr();
        if log.contains("tessera::access") {
            break log;
        }
        assert!(Instant::now() < deadline, "no access line in {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let issued = log
        .lines()
        .find(|l| l.contains("token issued"))
        .unwrap_or_else(|| panic!("no debug line in {log}"));
    assert!(
        issued.contains(" DEBUG request{request_id=req-pretty-1}: tessera::service::token: "),
        "{issued}"
    );
    let access = log.lines().find(|l| l.contains("tessera::access")).unwrap();
    assert!(access.contains(" INFO tessera::access: "), "{access}");
    assert!(
        !log.contains('\u{1b}'),
        "colour in a log that is not a terminal: {log}"
    );
}

#[tokio::test]
async fn the_verifier_counts_jwks_refreshes_refusals_and_its_mirror() {
    let redis = RedisServer::start();
    let prefix = format!("v{}:", tessera::crypto::random::base62(8).unwrap());
    let gw = spawn_with(|s| {
        s.redis_url = Some(redis.url());
        s.redis_prefix = prefix.clone();
    })
    .await;
    let issuer: Value = gw
        .client
        .get(gw.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let config = VerifierConfig::new(
        &gw.address,
        issuer["issuer"].as_str().unwrap(),
        "cluster-api",
        RevocationSource::Redis {
            url: redis.url(),
            prefix: prefix.clone(),
        },
    );
    let verifier = Verifier::start(config).await.unwrap();
    let text = verifier.metrics_text();
    assert_eq!(
        value(
            &text,
            "tessera_verifier_jwks_refreshes_total{result=\"ok\"}"
        ),
        1.0,
        "{text}"
    );

    // The example's routes, and its /metrics.
    let v = verifier.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::from(v.clone()))
            .configure(downstream::cluster_routes)
            .configure(downstream::metrics_routes)
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let url = format!("http://127.0.0.1:{}", server.addrs()[0].port());
    let server = server.run();
    let handle = server.handle();
    tokio::spawn(server);

    let scrape_verifier = || async {
        reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let workloads = format!("{url}/api/v1/clusters/c1/workloads");
    let client = reqwest::Client::new();
    let status =
        |req: reqwest::RequestBuilder| async move { req.send().await.unwrap().status().as_u16() };
    assert_eq!(
        status(client.get(&workloads).bearer_auth("not.a.token")).await,
        401
    );
    assert_eq!(status(client.get(&workloads)).await, 401);
    let text = scrape_verifier().await;
    assert_eq!(
        value(
            &text,
            "tessera_verifier_refusals_total{reason=\"malformed\"}"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        value(&text, "tessera_verifier_refusals_total{reason=\"missing\"}"),
        1.0
    );

    // A revoked token is refused and counted; the mirror's position moves.
    let (created, secret) = gw
        .create_app(json!({"name": "ci", "audiences": ["cluster-api"],
            "accessRules": [{"scope": "cluster:c1", "permissions": ["workloads:read"]}]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token: Value = gw
        .post_json(
            "/api/v1/token",
            &json!({"AppId": id, "AppSecret": secret, "audience": "cluster-api"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = token["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(
        status(client.get(&workloads).bearer_auth(&token)).await,
        200
    );
    let res = gw
        .client
        .post(gw.url("/oauth/revoke"))
        .form(&[
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
            ("token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    while status(client.get(&workloads).bearer_auth(&token)).await != 401 {
        assert!(Instant::now() < deadline, "the revocation did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = scrape_verifier().await;
    assert!(value(&text, "tessera_verifier_refusals_total{reason=\"revoked\"}") >= 1.0);
    let position = value(&text, "tessera_verifier_mirror_position");
    assert!(position >= 1.0, "{text}");
    // Caught up with the gateway's feed.
    let admin = gw.admin_token().await;
    let gw_text = scrape(&gw, &admin).await;
    assert_eq!(
        value(&gw_text, "tessera_revocation_feed_position"),
        position,
        "{gw_text}"
    );
    assert!(
        value(&text, "tessera_verifier_mirror_entries") >= 1.0,
        "{text}"
    );
    // Subscribed: fresh.
    assert_eq!(
        value(&text, "tessera_verifier_mirror_staleness_seconds"),
        0.0
    );
    assert_eq!(value(&text, "tessera_verifier_mirror_stale"), 0.0);
    handle.stop(false).await;
}
