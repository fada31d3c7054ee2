//! `/auth/forward` spoken to directly (docs/api.md, "At the edge"); through a real nginx in
//! `edge_nginx`. What a proxy would see: the status, the token it is to
//! hand on, and the refusal's headers.

use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::redis_server::RedisServer;

/// `/auth/forward` with `query`, the credential in `Authorization`.
async fn forward(app: &TestApp, query: &str, bearer: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(&format!("/auth/forward{query}")));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    req.send().await.unwrap()
}

/// The token handed on by a 200, checked against the JWKS as any service
/// behind the proxy would.
async fn handed_on(app: &TestApp, res: reqwest::Response, aud: &str) -> (String, Value) {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    assert_eq!(status, 200, "{}", res.text().await.unwrap());
    let auth = headers["authorization"].to_str().unwrap();
    let token = auth.strip_prefix("Bearer ").unwrap().to_owned();
    let claims =
        verify_with_jwks(&app.jwks().await, &token, &app.issuer_hint(), aud).expect("a valid JWT");
    assert_eq!(
        headers["x-tessera-subject"].to_str().unwrap(),
        claims["sub"].as_str().unwrap()
    );
    assert_eq!(
        headers["x-tessera-client-id"].to_str().unwrap(),
        claims["client_id"].as_str().unwrap()
    );
    assert_eq!(headers["cache-control"], "no-store");
    (token, claims)
}

/// A refusal: status, error code, and the headers a proxy relies on.
async fn refused(res: reqwest::Response) -> (u16, String, reqwest::header::HeaderMap) {
    let headers = res.headers().clone();
    let (status, code, body) = error_code(res).await;
    assert_eq!(
        headers.contains_key("www-authenticate"),
        matches!(status, 401 | 403 | 429),
        "a refusal of the credential carries a challenge, and only that: {status}"
    );
    assert_eq!(
        headers["x-tessera-status"].to_str().unwrap(),
        status.to_string()
    );
    // nginx can pass on headers only: the body travels in one too.
    let copied: Value = serde_json::from_str(headers["x-tessera-error"].to_str().unwrap()).unwrap();
    assert_eq!(copied, body);
    assert!(headers.get("authorization").is_none());
    (status, code, headers)
}

fn aud() -> &'static str {
    "tessera"
}

#[tokio::test]
async fn a_raw_key_becomes_a_token_reused_until_near_expiry() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "edge", "permissions": ["workloads:read"]}))
        .await;
    let id = created["id"].as_str().unwrap();

    let (token, claims) = handed_on(&app, forward(&app, "", Some(&secret)).await, aud()).await;
    assert_eq!(claims["sub"], id);
    assert_eq!(claims["permissions"], json!(["workloads:read"]));

    // The same token again: minted once, not per request.
    let (again, _) = handed_on(&app, forward(&app, "", Some(&secret)).await, aud()).await;
    assert_eq!(again, token);

    // `X-Api-Key` works as well, and any method.
    let res = app
        .client
        .post(app.url("/auth/forward"))
        .header("X-Api-Key", &secret)
        .send()
        .await
        .unwrap();
    let (via_header, _) = handed_on(&app, res, aud()).await;
    assert_eq!(via_header, token);

    // Nothing anywhere carries the key back.
    let res = forward(&app, "", Some(&secret)).await;
    for (_, v) in res.headers() {
        assert!(!v.to_str().unwrap_or("").contains(&secret));
    }
    assert!(!res.text().await.unwrap().contains(&secret));
}

#[tokio::test]
async fn the_route_requirements_are_checked() {
    let app = spawn_app().await;
    let (_, secret) = app
        .create_app(json!({
            "name": "scoped",
            "permissions": ["content:read"],
            "accessRules": [{"scope": "cluster:c1", "permissions": ["workloads:read"]}]
        }))
        .await;
    let ok = |q: &'static str| {
        let (app, secret) = (&app, &secret);
        async move { forward(app, q, Some(secret)).await }
    };
    handed_on(&app, ok("?permission=content:read").await, aud()).await;
    handed_on(
        &app,
        ok("?permission=workloads:read&resource=cluster:c1").await,
        aud(),
    )
    .await;
    // Below the rule's scope too.
    handed_on(
        &app,
        ok("?permission=workloads:read&resource=cluster:c1/project:p").await,
        aud(),
    )
    .await;

    for q in [
        "?permission=workloads:read",
        "?permission=workloads:read&resource=cluster:c2",
        "?permission=workloads:write&resource=cluster:c1",
        "?permission=content:write",
    ] {
        let (status, code, headers) = refused(ok(q).await).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "insufficient_permissions"),
            "{q}"
        );
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("insufficient_scope")
        );
    }

    // A requirement the gateway cannot read is a configuration error,
    // never a requirement dropped.
    for q in [
        "?permision=workloads:write",
        "?permission=not%20one",
        "?permission=workloads:read&resource=cluster:*",
        "?resource=cluster:c1",
        "?limited_status=500",
    ] {
        let (status, code, _) = refused(ok(q).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_request"), "{q}");
    }

    // Under `/auth/forward/…` (Envoy appends the original path and query)
    // nothing the client wrote is read as a requirement.
    let res = app
        .client
        .get(app.url("/auth/forward/api/v1/x?audience=elsewhere&permission=workloads:write"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    let (_, claims) = handed_on(&app, res, aud()).await;
    assert_eq!(claims["aud"], aud());
}

#[tokio::test]
async fn audiences_get_their_own_tokens() {
    let app = spawn_app().await;
    let (_, secret) = app
        .create_app(
            json!({"name": "aud", "permissions": ["content:read"], "audiences": ["cluster-api"]}),
        )
        .await;
    let (default, _) = handed_on(&app, forward(&app, "", Some(&secret)).await, aud()).await;
    let (cluster, claims) = handed_on(
        &app,
        forward(&app, "?audience=cluster-api", Some(&secret)).await,
        "cluster-api",
    )
    .await;
    assert_ne!(default, cluster);
    assert_eq!(claims["aud"], "cluster-api");
    let (status, code, _) =
        refused(forward(&app, "?audience=admin-api", Some(&secret)).await).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_permissions"));
}

#[tokio::test]
async fn bad_credentials_are_refused_alike() {
    let app = spawn_app().await;
    let (status, code, _) = refused(forward(&app, "", None).await).await;
    assert_eq!((status, code.as_str()), (401, "missing_api_key"));

    let (_, secret) = app
        .create_app(json!({"name": "real", "permissions": ["content:read"]}))
        .await;
    // A wrong secret for a real application, a forged key, an unknown
    // application: one answer.
    let mut wrong = secret.clone();
    wrong.replace_range(20..24, "AAAA");
    for bad in [wrong.as_str(), "tsr_sk_live_nothing", "opaque-secret"] {
        let (status, code, _) = refused(forward(&app, "", Some(bad)).await).await;
        assert_eq!((status, code.as_str()), (401, "invalid_api_key"), "{bad}");
    }
    // A token that is not ours, or not a token.
    let other = spawn_app().await;
    let foreign = other.admin_token().await;
    for bad in [foreign.as_str(), "eyJhbGciOiJub25lIn0.e30.", "eyJ.x.y"] {
        let (status, code, _) = refused(forward(&app, "", Some(bad)).await).await;
        assert_eq!((status, code.as_str()), (401, "invalid_token"), "{bad}");
    }
}

#[tokio::test]
async fn access_tokens_pass_as_they_are_and_revocation_is_immediate() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read", "tokens:revoke"]}))
        .await;
    let id = created["id"].as_str().unwrap();
    let token = app.token_for(None, &secret).await;
    let (passed, _) = handed_on(
        &app,
        forward(&app, "?permission=content:read", Some(&token)).await,
        aud(),
    )
    .await;
    assert_eq!(passed, token, "an access token is handed on as it is");

    // Another audience than the token's: refused.
    let (status, code, _) =
        refused(forward(&app, "?audience=cluster-api", Some(&token)).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));

    // Revoked: refused on the very next request.
    let res = app
        .client
        .post(app.url("/oauth/revoke"))
        .form(&[
            ("client_id", id),
            ("client_secret", secret.as_str()),
            ("token", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let (status, code, _) = refused(forward(&app, "", Some(&token)).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
}

#[tokio::test]
async fn revoking_rotating_or_narrowing_a_key_takes_effect_at_once() {
    let app = spawn_app().await;
    let (created, secret) = app
        .create_app(json!({"name": "life", "permissions": ["content:read", "workloads:read"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let (first, _) = handed_on(&app, forward(&app, "", Some(&secret)).await, aud()).await;

    // Narrowed: the next request gets a token without the permission.
    ok(
        call(
            &app,
            Method::PATCH,
            &format!("/api/v1/apps/{id}"),
            Some(json!({"permissions": ["content:read"]})),
        )
        .await,
        200,
    )
    .await;
    let (status, code, _) =
        refused(forward(&app, "?permission=workloads:read", Some(&secret)).await).await;
    assert_eq!((status, code.as_str()), (403, "insufficient_permissions"));
    let (second, claims) = handed_on(&app, forward(&app, "", Some(&secret)).await, aud()).await;
    assert_ne!(second, first);
    assert_eq!(claims["permissions"], json!(["content:read"]));
    // The token handed on before the change is dead too (demotion).
    let (status, _, _) = refused(forward(&app, "", Some(&first)).await).await;
    assert_eq!(status, 401);

    // Rotated without grace: the old key stops, the new one works.
    let rotated = ok(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/apps/{id}/rotate"),
            Some(json!({"gracePeriodSeconds": 0})),
        )
        .await,
        200,
    )
    .await;
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    let (status, code, _) = refused(forward(&app, "", Some(&secret)).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    let (third, _) = handed_on(&app, forward(&app, "", Some(&new_secret)).await, aud()).await;

    // Revoked: the key and every token handed on are refused at once.
    ok(
        call(
            &app,
            Method::POST,
            &format!("/api/v1/apps/{id}/revoke"),
            None,
        )
        .await,
        200,
    )
    .await;
    let (status, code, _) = refused(forward(&app, "", Some(&new_secret)).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_api_key"));
    let (status, code, _) = refused(forward(&app, "", Some(&third)).await).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
}

#[tokio::test]
async fn allowed_ips_hold_at_the_edge() {
    let trusted = tessera::domain::IpNet::parse("127.0.0.1/32").unwrap();
    let mut app = spawn_with(|s| s.trusted_proxies = vec![trusted]).await;
    // The harness's own calls come through "the proxy" too.
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
    let from = |ip: &'static str| {
        let (app, secret) = (&app, &secret);
        async move {
            app.client
                .get(app.url("/auth/forward"))
                .bearer_auth(secret)
                .header("X-Forwarded-For", ip)
                .send()
                .await
                .unwrap()
        }
    };
    let (_, claims) = handed_on(&app, from("10.1.2.3").await, aud()).await;
    assert_eq!(claims["allowed_cidrs"], json!(["10.0.0.0/8"]));
    let (status, code, _) = refused(from("192.0.2.9").await).await;
    assert_eq!((status, code.as_str()), (403, "ip_not_allowed"));
    // Its token, presented from outside the list, is refused as well.
    let token = {
        let res = from("10.1.2.3").await;
        res.headers()["authorization"].to_str().unwrap()[7..].to_owned()
    };
    let res = app
        .client
        .get(app.url("/auth/forward"))
        .bearer_auth(&token)
        .header("X-Forwarded-For", "192.0.2.9")
        .send()
        .await
        .unwrap();
    let (status, code, _) = refused(res).await;
    assert_eq!((status, code.as_str()), (403, "ip_not_allowed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_gateway_reaches_the_edge_of_another() {
    let redis = RedisServer::start();
    let issuer = "http://edge.test";
    let (a, b) = pair_on_redis(&redis.url(), issuer).await;
    let (created, secret) = a
        .create_app(json!({"name": "shared", "permissions": ["content:read"]}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let ok_on_b = forward(&b, "", Some(&secret)).await;
    assert_eq!(ok_on_b.status(), 200);
    let token = ok_on_b.headers()["authorization"].to_str().unwrap()[7..].to_owned();
    assert_eq!(forward(&b, "", Some(&token)).await.status(), 200);

    ok(
        call(&a, Method::POST, &format!("/api/v1/apps/{id}/revoke"), None).await,
        200,
    )
    .await;
    let start = Instant::now();
    loop {
        let key = forward(&b, "", Some(&secret)).await.status();
        let tok = forward(&b, "", Some(&token)).await.status();
        if key == 401 && tok == 401 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "gateway B still admits a revoked key ({key}) or its token ({tok})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // A gateway started afterwards loads the list: the token is refused
    // from its first request.
    let c = spawn_on_redis(
        &redis.url(),
        a.settings_prefix(),
        issuer,
        Some(a.keys_dir()),
    )
    .await;
    assert_eq!(forward(&c, "", Some(&token)).await.status(), 401);
}

#[tokio::test]
async fn the_embedded_store_s_list_is_loaded_at_start() {
    // The store and keys outlive the first gateway.
    let kept = tempfile::tempdir().unwrap();
    let settings = base_settings(kept.path());
    let (token, secret) = {
        let app = spawn_in(tempfile::tempdir().unwrap(), settings.clone()).await;
        let (created, secret) = app
            .create_app(json!({"name": "kept", "permissions": ["content:read"]}))
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        let token = app.token_for(None, &secret).await;
        ok(
            call(
                &app,
                Method::POST,
                &format!("/api/v1/apps/{id}/revoke"),
                None,
            )
            .await,
            200,
        )
        .await;
        (token, secret)
    };
    let again = spawn_in(tempfile::tempdir().unwrap(), settings).await;
    assert_eq!(forward(&again, "", Some(&token)).await.status(), 401);
    assert_eq!(forward(&again, "", Some(&secret)).await.status(), 401);
}

#[tokio::test]
async fn the_edge_s_decisions_are_counted() {
    let app = spawn_with(|s| {
        s.rate_limit = Some(serde_json::from_value(json!({"requests": 1, "per": "1h"})).unwrap());
    })
    .await;
    let (_, secret) = app
        .create_app(json!({"name": "counted", "permissions": ["content:read"]}))
        .await;
    assert_eq!(forward(&app, "", Some(&secret)).await.status(), 200);
    assert_eq!(forward(&app, "", Some(&secret)).await.status(), 429);
    assert_eq!(forward(&app, "", None).await.status(), 401);
    assert_eq!(
        forward(&app, "", Some("tsr_sk_live_nothing"))
            .await
            .status(),
        401
    );
    assert_eq!(
        forward(&app, "?permision=x:y", Some(&secret))
            .await
            .status(),
        400
    );
    let admin = app.admin_token().await;
    let text = app
        .authed(Method::GET, "/metrics", &admin)
        .await
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "tessera_edge_decisions_total{outcome=\"admitted\"} 1",
        "tessera_edge_decisions_total{outcome=\"rate_limited\"} 1",
        "tessera_edge_decisions_total{outcome=\"refused\"} 2",
        "tessera_edge_decisions_total{outcome=\"error\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
}

/// A refused route requirement names the permission and the resource only
/// when they are plain: a pasted secret in the query (a well-formed
/// permission of up to 128 bytes) is never repeated.
#[tokio::test]
async fn a_refused_requirement_does_not_repeat_a_secret_shaped_value() {
    let app = spawn_app().await;
    let (_, secret) = app
        .create_app(json!({"name": "plain", "permissions": ["content:read"]}))
        .await;
    let long = format!("x{}", "Q7".repeat(30));
    let query = format!("?permission=x:{long}&resource=cluster:{long}");
    let res = forward(&app, &query, Some(&secret)).await;
    assert_eq!(res.status(), 403);
    let text = res.text().await.unwrap();
    assert!(!text.contains(&long), "{text}");
    assert!(text.contains("(a value of"), "{text}");
    let res = forward(
        &app,
        "?permission=workloads:read&resource=cluster:c9",
        Some(&secret),
    )
    .await;
    let text = res.text().await.unwrap();
    assert!(
        text.contains("this call needs the permission workloads:read on cluster:c9"),
        "{text}"
    );
}
