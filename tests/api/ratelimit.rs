//! Per-application rate limits at the edge (docs/api.md, "At the edge"), spoken to
//! `/auth/forward` directly with a raw generated key: the headers of
//! draft-ietf-httpapi-ratelimit-headers, 429 beyond the budget, refill,
//! the gateway's default, one budget shared by gateways on one Redis, the
//! API and the console.

use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

use crate::console::Console;
use crate::helpers::*;
use crate::people::create_user;
use crate::redis_server::RedisServer;
use tessera::domain::RateLimit;
use tessera::domain::ratelimit::Window;

fn budget(requests: u32, per: &str) -> RateLimit {
    RateLimit {
        requests,
        per: Window::parse(per).unwrap(),
    }
}

/// Creates an application (with `rateLimit` when given); returns (id, key).
async fn app_with(app: &TestApp, limit: Option<Value>) -> (String, String) {
    let mut body = json!({"name": format!("edge {}", tessera::crypto::random::base62(8).unwrap()), "permissions": ["content:read"]});
    if let Some(l) = limit {
        body["rateLimit"] = l;
    }
    let (v, secret) = app.create_app(body).await;
    (v["id"].as_str().unwrap().to_owned(), secret)
}

/// One forward-auth request with the raw key, and an optional query.
async fn forward(app: &TestApp, key: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/auth/forward{query}")))
        .header("X-Api-Key", key)
        .send()
        .await
        .unwrap()
}

fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// `"app";r=…;t=…` read back: (remaining, reset).
fn state_of(res: &reqwest::Response) -> (u64, u64) {
    let v = header(res, "ratelimit").expect("a RateLimit header");
    let rest = v.strip_prefix("\"app\";").unwrap_or_else(|| panic!("{v}"));
    let mut r = None;
    let mut t = None;
    for p in rest.split(';') {
        match p.split_once('=') {
            Some(("r", n)) => r = n.parse().ok(),
            Some(("t", n)) => t = n.parse().ok(),
            _ => panic!("unexpected parameter in {v}"),
        }
    }
    (r.expect("r"), t.expect("t"))
}

#[tokio::test]
async fn within_the_budget_the_headers_count_down_and_beyond_it_429() {
    let app = spawn_app().await;
    let (_, key) = app_with(&app, Some(json!({"requests": 3, "per": "1m"}))).await;
    for left in [2, 1, 0] {
        let res = forward(&app, &key, "").await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "ratelimit-policy").as_deref(),
            Some("\"app\";q=3;w=60")
        );
        let (r, t) = state_of(&res);
        assert_eq!(r, left, "remaining counts down");
        // Whole again once every request taken has drained: 20 s each.
        let drained = 20 * (3 - left);
        assert!(
            t <= drained && t + 2 >= drained,
            "t={t}, expected ~{drained}"
        );
    }
    let res = forward(&app, &key, "").await;
    assert_eq!(res.status(), 429);
    let retry: u64 = header(&res, "retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry), "one interval at most: {retry}");
    assert_eq!(
        header(&res, "ratelimit-policy").as_deref(),
        Some("\"app\";q=3;w=60")
    );
    let (r, t) = state_of(&res);
    assert_eq!(r, 0);
    assert!((58..=60).contains(&t), "{t}");
    assert_eq!(header(&res, "x-tessera-status").as_deref(), Some("429"));
    assert!(header(&res, "www-authenticate").is_some());
    let (status, code, body) = error_code(res).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // nginx asks for 403 (its auth_request turns a 429 into a 500) and
    // reads the real status from X-Tessera-Status.
    let res = forward(&app, &key, "?limited_status=403").await;
    assert_eq!(res.status(), 403);
    assert_eq!(header(&res, "x-tessera-status").as_deref(), Some("429"));
    assert!(header(&res, "retry-after").is_some());
    assert!(header(&res, "ratelimit").is_some());
    let err: Value = serde_json::from_str(&header(&res, "x-tessera-error").unwrap()).unwrap();
    assert_eq!(err["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn the_budget_refills_after_its_window() {
    let app = spawn_app().await;
    let (_, key) = app_with(&app, Some(json!({"requests": 2, "per": "2s"}))).await;
    for _ in 0..2 {
        assert_eq!(forward(&app, &key, "").await.status(), 200);
    }
    let res = forward(&app, &key, "").await;
    assert_eq!(res.status(), 429);
    assert_eq!(header(&res, "retry-after").as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = forward(&app, &key, "").await;
    assert_eq!(res.status(), 200, "one interval later, one more fits");
    assert_eq!(state_of(&res).0, 0);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = forward(&app, &key, "").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        state_of(&res).0,
        1,
        "a whole window later, the whole budget"
    );
}

#[tokio::test]
async fn without_a_limit_there_are_no_headers_and_a_default_applies_to_apps_without_their_own() {
    let app = spawn_app().await;
    let (_, key) = app_with(&app, None).await;
    for _ in 0..20 {
        let res = forward(&app, &key, "").await;
        assert_eq!(res.status(), 200);
        assert!(header(&res, "ratelimit").is_none());
        assert!(header(&res, "ratelimit-policy").is_none());
    }

    let app = spawn_with(|s| s.rate_limit = Some(budget(2, "1h"))).await;
    let (_, plain) = app_with(&app, None).await;
    let (_, own) = app_with(&app, Some(json!({"requests": 5, "per": "1m"}))).await;
    for _ in 0..2 {
        let res = forward(&app, &plain, "").await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "ratelimit-policy").as_deref(),
            Some("\"app\";q=2;w=3600")
        );
    }
    assert_eq!(forward(&app, &plain, "").await.status(), 429);
    // Its own budget, not the default, and not the other one's.
    for _ in 0..5 {
        let res = forward(&app, &own, "").await;
        assert_eq!(res.status(), 200);
        assert_eq!(
            header(&res, "ratelimit-policy").as_deref(),
            Some("\"app\";q=5;w=60")
        );
    }
    assert_eq!(forward(&app, &own, "").await.status(), 429);
}

#[tokio::test]
async fn the_default_comes_from_the_environment() {
    let env: std::collections::HashMap<String, String> =
        [("TESSERA_RATE_LIMIT".to_owned(), "100/1m".to_owned())].into();
    let s = tessera::Settings::load_from(None, &env).unwrap();
    assert_eq!(s.rate_limit, Some(budget(100, "1m")));
    for bad in ["100", "0/1m", "100/2d", "x/1m", "100/1w"] {
        let env: std::collections::HashMap<String, String> =
            [("TESSERA_RATE_LIMIT".to_owned(), bad.to_owned())].into();
        let e = tessera::Settings::load_from(None, &env).unwrap_err();
        assert!(e.to_string().contains("TESSERA_RATE_LIMIT"), "{bad}: {e}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tessera.toml");
    std::fs::write(&file, "[rate_limit]\nrequests = 10\nper = \"30s\"\n").unwrap();
    let s = tessera::Settings::load_from(Some(&file), &Default::default()).unwrap();
    assert_eq!(s.rate_limit, Some(budget(10, "30s")));
}

fn prefix() -> String {
    format!("rl{}:", tessera::crypto::random::base62(10).unwrap())
}

async fn on_redis(redis: &RedisServer, prefix: &str) -> TestApp {
    let p = prefix.to_owned();
    let url = redis.url();
    spawn_with(move |s| {
        s.redis_url = Some(url);
        s.redis_prefix = p;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_on_one_redis_share_one_budget_and_another_prefix_does_not() {
    let redis = RedisServer::start();
    let shared = prefix();
    let a = on_redis(&redis, &shared).await;
    let b = on_redis(&redis, &shared).await;
    let (id, key) = app_with(&a, Some(json!({"requests": 5, "per": "1m"}))).await;
    for n in 0..3 {
        let res = forward(&a, &key, "").await;
        assert_eq!(res.status(), 200, "gateway a, request {n}");
    }
    for n in 0..2 {
        let res = forward(&b, &key, "").await;
        assert_eq!(res.status(), 200, "gateway b, request {n}");
        assert_eq!(state_of(&res).0, 1 - n, "b sees what a spent");
    }
    let res = forward(&b, &key, "").await;
    assert_eq!(
        res.status(),
        429,
        "the 6th of a budget of 5, on either gateway"
    );
    assert_eq!(forward(&a, &key, "").await.status(), 429);

    // Another prefix is another deployment: its own applications, its own
    // budgets, even for a bucket of the same name.
    let other = prefix();
    let c = on_redis(&redis, &other).await;
    let (cid, ckey) = app_with(&c, Some(json!({"requests": 5, "per": "1m"}))).await;
    for _ in 0..5 {
        assert_eq!(forward(&c, &ckey, "").await.status(), 200);
    }
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*rl:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    let mut want = vec![format!("{shared}rl:{id}"), format!("{other}rl:{cid}")];
    want.sort();
    assert_eq!(keys, want, "one bucket per application, under its prefix");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(format!("{shared}rl:{id}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        pttl > 50_000 && pttl <= 60_000,
        "the bucket expires when the budget is whole again: {pttl}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_answer_refuses_rather_than_lifting_the_limit() {
    let redis = RedisServer::start();
    let p = prefix();
    let app = on_redis(&redis, &p).await;
    let (id, key) = app_with(&app, Some(json!({"requests": 100, "per": "1m"}))).await;
    assert_eq!(forward(&app, &key, "").await.status(), 200);
    // Only the budget fails: its key now holds a hash, so the script's GET
    // errors while Redis, the mirror and everything else still answer.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let bucket = format!("{p}rl:{id}");
    let _: () = redis::pipe()
        .del(&bucket)
        .hset(&bucket, "x", "1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let res = forward(&app, &key, "").await;
    assert_eq!(
        header(&res, "x-tessera-status").as_deref(),
        Some("503"),
        "fail closed"
    );
    assert!(header(&res, "authorization").is_none());
    let (status, code, _) = error_code(res).await;
    assert_eq!((status, code.as_str()), (503, "unavailable"));
    // Another application's budget is unaffected.
    let (_, other) = app_with(&app, Some(json!({"requests": 100, "per": "1m"}))).await;
    assert_eq!(forward(&app, &other, "").await.status(), 200);
}

#[tokio::test]
async fn the_api_sets_shows_clears_and_validates_rate_limit() {
    let app = spawn_app().await;
    let (v, _) = app
        .create_app(json!({"name": "rl", "rateLimit": {"requests": 100, "per": "1m"}}))
        .await;
    assert_eq!(v["rateLimit"], json!({"requests": 100, "per": "1m"}));
    let id = v["id"].as_str().unwrap();
    let path = format!("/api/v1/apps/{id}");
    let got = ok(call(&app, Method::GET, &path, None).await, 200).await;
    assert_eq!(got["rateLimit"], json!({"requests": 100, "per": "1m"}));
    let list = ok(call(&app, Method::GET, "/api/v1/apps", None).await, 200).await;
    let listed = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .unwrap();
    assert_eq!(listed["rateLimit"], json!({"requests": 100, "per": "1m"}));

    let patched = ok(
        call(
            &app,
            Method::PATCH,
            &path,
            Some(json!({"rateLimit": {"requests": 5, "per": "90m"}})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(patched["rateLimit"], json!({"requests": 5, "per": "90m"}));
    let untouched = ok(
        call(&app, Method::PATCH, &path, Some(json!({"name": "renamed"}))).await,
        200,
    )
    .await;
    assert_eq!(untouched["rateLimit"], json!({"requests": 5, "per": "90m"}));
    let cleared = ok(
        call(&app, Method::PATCH, &path, Some(json!({"rateLimit": null}))).await,
        200,
    )
    .await;
    assert_eq!(cleared["rateLimit"], Value::Null);

    // The changes are audited like any other field.
    let audit = ok(
        call(&app, Method::GET, "/api/v1/audit?limit=50", None).await,
        200,
    )
    .await;
    let changed: Vec<&Value> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "app.update" && r["target"] == id)
        .filter_map(|r| r["details"]["changed"].get("rateLimit"))
        .collect();
    assert!(
        changed.contains(&&json!({"old": {"requests": 5, "per": "90m"}, "new": null})),
        "{changed:?}"
    );

    for bad in [
        json!({"requests": 0, "per": "1m"}),
        json!({"requests": 1_000_001, "per": "1m"}),
        json!({"requests": 10, "per": "2d"}),
        json!({"requests": 10, "per": "0s"}),
        json!({"requests": 10, "per": "1w"}),
        json!({"requests": 10, "per": ""}),
    ] {
        for (method, p, body) in [
            (
                Method::POST,
                "/api/v1/apps".to_owned(),
                json!({"name": "bad", "rateLimit": bad}),
            ),
            (Method::PATCH, path.clone(), json!({"rateLimit": bad})),
        ] {
            let (status, code, body) = error_code(call(&app, method, &p, Some(body)).await).await;
            assert_eq!((status, code.as_str()), (422, "validation_failed"), "{bad}");
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(msg.contains("rateLimit"), "names the field: {msg}");
        }
    }
    // A shape that is not a budget at all is a 400, as for any field.
    let (status, _, _) = error_code(
        call(
            &app,
            Method::PATCH,
            &path,
            Some(json!({"rateLimit": {"requests": 1, "per": "1m", "burst": 2}})),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);

    // The OpenAPI document describes the field as the API reads it.
    let doc = app.get_json("/openapi.json").await;
    let input = &doc["components"]["schemas"]["RateLimitInput"];
    assert_eq!(input["properties"]["requests"]["minimum"], 1);
    assert_eq!(input["properties"]["requests"]["maximum"], 1_000_000);
    assert_eq!(input["properties"]["per"]["pattern"], "^[0-9]{1,6}[smhd]$");
    let create = doc["components"]["schemas"]["CreateApp"]["properties"]["rateLimit"].to_string();
    assert!(create.contains("RateLimitInput"), "{create}");
    let patch = doc["components"]["schemas"]["PatchApp"]["properties"]["rateLimit"].to_string();
    assert!(
        patch.contains("RateLimitInput") && patch.contains("null"),
        "{patch}"
    );
}

#[tokio::test]
async fn the_console_shows_and_sets_the_limit() {
    let app = spawn_with(|s| s.rate_limit = Some(budget(50, "1m"))).await;
    create_user(&app, "ops@example.com", &["api_keys:manage", "content:*"]).await;
    let mut c = Console::sign_in(&app, "ops@example.com").await;

    let (v, _) = app
        .create_app(json!({"name": "own", "rateLimit": {"requests": 100, "per": "1h"}}))
        .await;
    let own = v["id"].as_str().unwrap().to_owned();
    // It holds nothing, so it is within ops's reach: page and form.
    let (status, html) = c.page(&format!("/console/apps/{own}")).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("<dt>Rate limit</dt><dd>100 requests per 1h</dd>"),
        "{html}"
    );
    assert!(html.contains("id=\"rate_requests\" name=\"rate_requests\""));
    assert!(html.contains("<label for=\"rate_requests\">"));
    assert!(html.contains("<label for=\"rate_per\">"));
    assert!(html.contains("value=\"100\""));
    assert!(html.contains("value=\"1h\""));

    let (v, _) = app.create_app(json!({"name": "plain"})).await;
    let plain = v["id"].as_str().unwrap().to_owned();
    let (_, html) = c.page(&format!("/console/apps/{plain}")).await;
    assert!(
        html.contains("<dd>gateway default: 50 requests per 1m</dd>"),
        "{html}"
    );

    // Set through the edit form, without JavaScript: a plain post.
    let owner = v["owner"].as_str().unwrap().to_owned();
    let res = c
        .post(
            &format!("/console/apps/{plain}"),
            &[
                ("name", "plain"),
                ("description", ""),
                ("owner", &owner),
                ("rate_requests", "7"),
                ("rate_per", "30s"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let got = ok(
        call(&app, Method::GET, &format!("/api/v1/apps/{plain}"), None).await,
        200,
    )
    .await;
    assert_eq!(got["rateLimit"], json!({"requests": 7, "per": "30s"}));

    // A bad window is an error on its field, and nothing changes.
    let res = c
        .post(
            &format!("/console/apps/{plain}"),
            &[
                ("name", "plain"),
                ("description", ""),
                ("owner", &owner),
                ("rate_requests", "7"),
                ("rate_per", "2d"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let html = res.text().await.unwrap();
    assert!(html.contains("id=\"rate_per-error\""), "{html}");

    // Both fields emptied: back to the gateway's default.
    let res = c
        .post(
            &format!("/console/apps/{plain}"),
            &[
                ("name", "plain"),
                ("description", ""),
                ("owner", &owner),
                ("rate_requests", ""),
                ("rate_per", ""),
            ],
        )
        .await;
    assert_eq!(res.status(), 303);
    let got = ok(
        call(&app, Method::GET, &format!("/api/v1/apps/{plain}"), None).await,
        200,
    )
    .await;
    assert_eq!(got["rateLimit"], Value::Null);

    // Created with a limit from the new-application form.
    let res = c
        .post(
            "/console/apps",
            &[
                ("name", "made here"),
                ("description", ""),
                ("type", "secret"),
                ("environment", "live"),
                ("rate_requests", "3"),
                ("rate_per", "1m"),
            ],
        )
        .await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let list = ok(
        call(&app, Method::GET, "/api/v1/apps?q=made", None).await,
        200,
    )
    .await;
    assert_eq!(
        list["data"][0]["rateLimit"],
        json!({"requests": 3, "per": "1m"})
    );
    let (_, html) = c.page("/console/apps/new").await;
    assert!(html.contains("default (50 requests per 1m)"), "{html}");
}
