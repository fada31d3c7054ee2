//! Attacks on `/auth/forward` (docs/api.md, "At the edge") and on the gateway's revocation
//! mirror: what a client behind the proxy controls (headers, method, the
//! path under `/auth/forward/…`), what a careless proxy configuration
//! sends (empty or repeated requirements), and what a Redis outage does to
//! the mirror.

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::redis_server::RedisServer;

/// `/auth/forward` with `query`, the credential in `Authorization`.
async fn forward(app: &TestApp, query: &str, bearer: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/auth/forward{query}")))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
}

async fn status_of(app: &TestApp, query: &str, bearer: &str) -> u16 {
    forward(app, query, bearer).await.status().as_u16()
}

/// The token a 200 hands on.
fn handed(res: &reqwest::Response) -> String {
    assert_eq!(res.status(), 200);
    res.headers()["authorization"].to_str().unwrap()[7..].to_owned()
}

/// Two gateways on one Redis, sharing keys and issuer.
async fn pair(redis: &RedisServer) -> (TestApp, TestApp) {
    pair_on_redis(&redis.url(), "http://edge-attacks.test").await
}

/// Waits until `a` has (re)subscribed and reloaded its mirror: a
/// revocation on `b` then reaches `a`'s edge within the timeout.
async fn until_following(a: &TestApp, b: &TestApp) {
    let (created, secret) = b
        .create_app(json!({"name": format!("probe {}", tessera::crypto::random::base62(8).unwrap()), "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = handed(&forward(a, "", &secret).await);
    ok(
        call(b, Method::POST, &format!("/api/v1/apps/{id}/revoke"), None).await,
        200,
    )
    .await;
    let start = Instant::now();
    while status_of(a, "", &token).await != 401 {
        assert!(start.elapsed() < Duration::from_secs(10), "never followed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And the next tick has reloaded the list (the mirror is trusted again).
    tokio::time::sleep(Duration::from_millis(1_500)).await;
}

/// A subscription dropped by Redis (`CLIENT KILL TYPE pubsub`, as Redis
/// does itself to a subscriber over its output-buffer limit) while the
/// store stays up: a revocation made on another gateway in the moment
/// before the follower resubscribes must still be refused at this edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_subscription_does_not_hide_a_revocation_made_elsewhere() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis).await;
    until_following(&a, &b).await;
    let admin_b = b.admin_token().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();

    for round in 0..3 {
        let (created, secret) = b
            .create_app(json!({"name": format!("victim{round}"), "permissions": ["content:read"]}))
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        // Cached on A: the application read, the token minted.
        let token = handed(&forward(&a, "", &secret).await);
        assert_eq!(status_of(&a, "", &secret).await, 200);

        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut conn)
            .await
            .unwrap();
        let res = b
            .authed(Method::POST, &format!("/api/v1/apps/{id}/revoke"), &admin_b)
            .await
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(
            (
                status_of(&a, "", &secret).await,
                status_of(&a, "", &token).await
            ),
            (401, 401),
            "round {round}: gateway A admits a key revoked on B while its subscription was down"
        );
        until_following(&a, &b).await;
    }
}

/// Redis killed and restarted: the follower waits out its back-off (up to
/// 2 s) before it resubscribes, while the other gateway writes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_does_not_hide_a_revocation_made_elsewhere() {
    let mut redis = RedisServer::start();
    let (a, b) = pair(&redis).await;
    until_following(&a, &b).await;
    let (created, secret) = b
        .create_app(json!({"name": "victim", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = handed(&forward(&a, "", &secret).await);
    let admin_b = b.admin_token().await;

    redis.kill();
    // Long enough for A's follower to back off to its longest wait.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    redis.restart();
    let start = Instant::now();
    loop {
        let res = b
            .authed(Method::POST, &format!("/api/v1/apps/{id}/revoke"), &admin_b)
            .await
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "B never healed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let key = status_of(&a, "", &secret).await;
    let tok = status_of(&a, "", &token).await;
    assert!(
        key != 200 && tok != 200,
        "gateway A admits a key ({key}) or its token ({tok}) revoked on B after a Redis restart"
    );
}

/// Many requests in flight while the key is revoked: none sent after the
/// revoke call answered passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_sent_after_a_revoke_answered_passes() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "busy", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let admin = app.admin_token().await;
    let token = handed(&forward(&app, "", &secret).await);
    let answered = std::sync::Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (client, url, answered) = (
            app.client.clone(),
            app.url("/auth/forward"),
            answered.clone(),
        );
        let cred = if i % 2 == 0 {
            secret.clone()
        } else {
            token.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut late_admitted = 0;
            let until = Instant::now() + Duration::from_secs(3);
            while Instant::now() < until {
                let sent = Instant::now();
                let res = client.get(&url).bearer_auth(&cred).send().await.unwrap();
                if res.status() == 200 && answered.get().is_some_and(|t| *t <= sent) {
                    late_admitted += 1;
                }
            }
            late_admitted
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let res = app
        .authed(Method::POST, &format!("/api/v1/apps/{id}/revoke"), &admin)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let _ = answered.set(Instant::now());
    let mut late = 0;
    for t in tasks {
        late += t.await.unwrap();
    }
    assert_eq!(
        late, 0,
        "requests sent after the revoke answered were admitted"
    );
}

/// The route's requirements come from the proxy's configuration; when the
/// configuration hands over a blank or repeated one (a location that sets
/// it twice, a variable holding a space) the route must not open.
#[tokio::test]
async fn blank_or_repeated_requirements_never_open_a_route() {
    let app = spawn_app().await;
    let (_, secret) = app
        .create_app(json!({"name": "narrow", "permissions": ["content:read"]}))
        .await;
    let token = handed(&forward(&app, "", &secret).await);
    // (An empty `permission=` means "no permission" by design: the nginx
    // configuration sends every variable, and refuses an unmapped method
    // itself before asking. Blank but not empty is refused.)
    for q in [
        "?permission=%20",
        "?permission=content:write&permission=content:read",
        "?permission=content:read&permission=content:write",
        "?permission=content:write&resource=",
        "?permission=*",
        "?permission=content:*",
        "?audience=tessera&audience=other",
        "?permission=content:read&PERMISSION=content:write",
        "?perm%69ssion=content:write",
    ] {
        for cred in [&secret, &token] {
            let res = forward(&app, q, cred).await;
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            assert_ne!(status, 200, "{q} opened the route");
            assert!(headers.get("authorization").is_none(), "{q}");
            assert!(matches!(status, 400 | 403), "{q}: {status} {body}");
        }
    }
}

/// A client of Envoy controls the path after the prefix, and its query:
/// none of it may count, whatever the encoding.
#[tokio::test]
async fn the_tail_route_reads_no_requirement_and_no_trick_reaches_the_plain_route() {
    let app = spawn_app().await;
    let (_, secret) = app
        .create_app(json!({"name": "tail", "permissions": ["content:read"]}))
        .await;
    for path in [
        "/auth/forward/?audience=elsewhere",
        "/auth/forward//x?permission=nothing:at-all",
        "/auth/forward/%3Fpermission=x",
        "/auth/forward/..%2F?permision=y",
    ] {
        let res = app
            .client
            .get(app.url(path))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let claims = claims_of(&handed(&res));
        assert_eq!(claims["aud"], "tessera", "{path}");
    }
    // Encoded slashes do not reach the plain route with its query.
    for path in [
        "/auth%2Fforward?permission=x",
        "/auth/forward%2F?audience=z",
    ] {
        let res = app
            .client
            .get(app.url(path))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap();
        assert_ne!(res.status(), 200, "{path}");
    }
}

/// The client's address: forged forwarding headers from a peer that is
/// not a trusted proxy count for nothing, and behind a trusted proxy the
/// client cannot prepend an address of its choice.
#[tokio::test]
async fn forged_forwarding_headers_do_not_move_the_client_inside_allowed_ips() {
    let direct = spawn_app().await;
    let (_, secret) = direct
        .create_app(json!({"name": "fenced", "permissions": ["content:read"], "allowedIps": ["10.0.0.0/8"]}))
        .await;
    for (name, value) in [
        ("x-forwarded-for", "10.1.2.3"),
        ("forwarded", "for=10.1.2.3"),
        ("x-real-ip", "10.1.2.3"),
    ] {
        let res = direct
            .client
            .get(direct.url("/auth/forward"))
            .bearer_auth(&secret)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{name}");
    }

    let trusted = tessera::domain::IpNet::parse("127.0.0.1/32").unwrap();
    let mut app = spawn_with(|s| s.trusted_proxies = vec![trusted]).await;
    let mut defaults = reqwest::header::HeaderMap::new();
    defaults.insert(
        "x-forwarded-for",
        reqwest::header::HeaderValue::from_static("127.0.0.1"),
    );
    app.client = reqwest::Client::builder()
        .default_headers(defaults)
        .build()
        .unwrap();
    let (_, secret) = app
        .create_app(json!({"name": "fenced", "permissions": ["content:read"], "allowedIps": ["10.0.0.0/8"]}))
        .await;
    // The proxy appends the real client (192.0.2.9) to what the client sent.
    for forged in ["10.1.2.3, 192.0.2.9", "10.1.2.3,192.0.2.9"] {
        let res = app
            .client
            .get(app.url("/auth/forward"))
            .bearer_auth(&secret)
            .header("x-forwarded-for", forged)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{forged}");
    }
}

/// Hostile credentials and headers: never a panic, never a 5xx, never the
/// credential echoed.
#[tokio::test]
async fn hostile_credentials_are_refused_cleanly() {
    let app = spawn_app().await;
    let (_, secret) = app
        .create_app(json!({"name": "real", "permissions": ["content:read"]}))
        .await;
    let big = "A".repeat(8 * 1024 + 1);
    let big_jwt = format!(
        "eyJ{}.{}.{}",
        "a".repeat(3000),
        "b".repeat(3000),
        "c".repeat(3000)
    );
    let sixteen = "x".repeat(16 * 1024);
    let mut cases: Vec<(&str, String)> = vec![
        ("authorization", format!("Bearer {big}")),
        ("authorization", format!("Bearer {big_jwt}")),
        ("authorization", format!("Bearer {sixteen}")),
        ("authorization", "Bearer eyJ..".into()),
        (
            "authorization",
            "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.".into(),
        ),
        ("authorization", format!("Bearer {secret}{secret}")),
        (
            "authorization",
            format!("Bearer {}", &secret[..secret.len() - 1]),
        ),
        ("x-api-key", big.clone()),
        ("x-api-key", "tsr_sk_live_".into()),
    ];
    cases.push(("x-forwarded-for", "999.1.1.1, ::::".into()));
    cases.push(("forwarded", "for=\"[::1\";by=;;;".into()));
    for (name, value) in &cases {
        let res = app
            .client
            .get(app.url("/auth/forward"))
            .header(*name, value.as_str())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        assert!((400..500).contains(&status), "{name}: {status} {text}");
        assert!(!text.contains(&secret));
        for (_, v) in &headers {
            assert!(!v.to_str().unwrap_or("").contains(&secret[12..]));
        }
    }
    // Bytes that are no text at all (obs-text) in either header.
    for name in ["authorization", "x-api-key"] {
        let res = app
            .client
            .get(app.url("/auth/forward"))
            .header(
                name,
                reqwest::header::HeaderValue::from_bytes(b"Bearer tsr_sk_live_\xff\xfe\x80")
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{name}");
    }
    // Still serving.
    assert_eq!(status_of(&app, "", &secret).await, 200);
}

/// A flood of forged keys and of other audiences for a real key costs
/// bounded memory: the per-key cache keeps a few audiences per key, and
/// a refused audience is never cached.
#[tokio::test]
async fn many_audiences_for_one_key_stay_bounded() {
    let app = spawn_app().await;
    let (_, secret) = app
        .create_app(
            json!({"name": "aud", "permissions": ["content:read"], "audiences": ["a1", "a2"]}),
        )
        .await;
    for i in 0..200 {
        let status = status_of(&app, &format!("?audience=aud{i}"), &secret).await;
        assert_eq!(status, 403, "aud{i}");
    }
    assert_eq!(status_of(&app, "?audience=a1", &secret).await, 200);
    // The same audience written with spaces is the same audience.
    let plain = handed(&forward(&app, "?audience=a2", &secret).await);
    let spaced = forward(&app, "?audience=%20a2%20", &secret).await;
    if spaced.status() == 200 {
        assert_eq!(claims_of(&handed(&spaced))["aud"], "a2");
        assert_eq!(claims_of(&plain)["aud"], "a2");
    }
}

/// A person's access token at the edge: refused once its session is
/// ended, once the person loses the permission, once the person is
/// disabled (docs/api.md, "People").
#[tokio::test]
async fn a_person_s_token_dies_at_the_edge_with_the_session_the_grant_or_the_person() {
    use crate::people::{PASSWORD, create_user};
    let app = spawn_app().await;
    let uid = create_user(
        &app,
        "edge@example.com",
        &["content:read", "workloads:read"],
    )
    .await;
    let login = || async {
        let t = ok(
            app.post_json(
                "/api/v1/token",
                &json!({"grantType": "password", "email": "edge@example.com", "password": PASSWORD}),
            )
            .await,
            200,
        )
        .await;
        t["accessToken"].as_str().unwrap().to_owned()
    };
    let first = login().await;
    let second = login().await;
    assert_eq!(
        status_of(&app, "?permission=content:read", &first).await,
        200
    );

    // Session ended from the other session.
    let sid = claims_of(&first)["sid"].as_str().unwrap().to_owned();
    let res = app
        .authed(
            Method::DELETE,
            &format!("/api/v1/me/sessions/{sid}"),
            &second,
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(status_of(&app, "", &first).await, 401);
    assert_eq!(
        status_of(&app, "?permission=content:read", &second).await,
        200
    );

    // Demoted: the token minted before no longer carries the old grant.
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/users/{uid}"),
            Some(json!({"permissions": ["content:read"]})),
        )
        .await,
        200,
    )
    .await;
    let status = status_of(&app, "?permission=workloads:read", &second).await;
    assert!(matches!(status, 401 | 403), "demoted: {status}");

    // Disabled: every token of the person is refused.
    let third = login().await;
    assert_eq!(status_of(&app, "", &third).await, 200);
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/users/{uid}"),
            Some(json!({"status": "disabled"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(status_of(&app, "", &third).await, 401);
}

/// Narrowing a key's `allowedIps` is a demotion: neither the key nor a
/// token minted before passes from an address the list no longer holds.
#[tokio::test]
async fn narrowing_allowed_ips_ends_what_was_minted_before() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "moving", "permissions": ["content:read"], "allowedIps": ["127.0.0.0/8"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let token = handed(&forward(&app, "", &secret).await);
    let exchanged = app.token_for(None, &secret).await;
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/apps/{id}"),
            Some(json!({"allowedIps": ["10.0.0.0/8"]})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(status_of(&app, "", &secret).await, 403);
    for t in [&token, &exchanged] {
        let status = status_of(&app, "", t).await;
        assert!(matches!(status, 401 | 403), "old token: {status}");
    }
}
