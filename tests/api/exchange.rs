//! Token exchange (RFC 8693, docs/api.md, "People") at `POST /oauth/token`: Tessera
//! access tokens exchanged for a narrower scope, another audience, or a
//! delegated token carrying `act`; and every refusal.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, claims_of, ok, spawn_app, verify_with_jwks};
use crate::people::{PASSWORD, create_user};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT: &str = "urn:ietf:params:oauth:token-type:access_token";

/// A confidential client listing the grant, allowed the `people-api`
/// audience for the people it acts for.
async fn broker(app: &TestApp) -> (String, String) {
    let (v, secret) = app
        .create_app(json!({"name": "broker", "grantTypes": [GRANT], "audiences": ["people-api"]}))
        .await;
    (v["id"].as_str().unwrap().to_owned(), secret)
}

/// `POST /oauth/token` with HTTP Basic and the given fields.
async fn post(app: &TestApp, client: (&str, &str), fields: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url("/oauth/token"))
        .basic_auth(client.0, Some(client.1))
        .form(fields)
        .send()
        .await
        .unwrap()
}

/// Exchanges `subject` with extra fields; returns the status and body, and
/// checks what every answer must (never a refresh token; the RFC 8693
/// fields on success).
async fn exchange(
    app: &TestApp,
    client: (&str, &str),
    subject: &str,
    extra: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut f = vec![
        ("grant_type", GRANT),
        ("subject_token", subject),
        ("subject_token_type", AT),
    ];
    f.extend_from_slice(extra);
    answer(post(app, client, &f).await).await
}

async fn answer(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    assert_eq!(
        res.headers().get("cache-control").unwrap(),
        "no-store",
        "{status}"
    );
    let body: Value = res.json().await.unwrap();
    assert!(body.get("refresh_token").is_none(), "{body}");
    if status == StatusCode::OK {
        assert_eq!(body["issued_token_type"], AT, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].as_u64().unwrap() > 0);
        assert!(body["scope"].is_string());
    }
    (status, body)
}

fn refused(got: &(StatusCode, Value), status: u16, error: &str) {
    assert_eq!(
        (got.0.as_u16(), got.1["error"].as_str().unwrap_or_default()),
        (status, error),
        "{}",
        got.1
    );
}

fn fields<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

fn token(body: &Value) -> String {
    body["access_token"].as_str().unwrap().to_owned()
}

/// Signs claims with the gateway's own access-token key, read from its
/// keys directory: for tokens the gateway would not mint by itself (a
/// `may_act`, an expired one).
fn mint(app: &TestApp, claims: &Value) -> String {
    let files = tessera::crypto::keys::load_dir(&app.keys_dir()).unwrap();
    let ring = tessera::crypto::KeyRing::from_keys(
        files,
        tessera::crypto::SigningAlg::ES256,
        tessera::crypto::SigningAlg::RS256,
    )
    .unwrap();
    tessera::crypto::jwt::mint(&ring, claims).unwrap()
}

async fn role(app: &TestApp, name: &str, perms: &[&str]) {
    ok(
        crate::helpers::call(
            app,
            reqwest::Method::POST,
            "/api/v1/roles",
            Some(json!({"name": name, "permissions": perms})),
        )
        .await,
        201,
    )
    .await;
}

#[tokio::test]
async fn an_application_token_narrows_and_changes_audience() {
    let app = spawn_app().await;
    let (bid, bsecret) = broker(&app).await;
    let client = (bid.as_str(), bsecret.as_str());
    role(&app, "reader", &["content:read"]).await;
    let (svc, secret) = app
        .create_app(
            json!({"name": "svc", "roles": ["reader"], "permissions": ["content:write"],
            "audiences": ["orders-api"]}),
        )
        .await;
    let sid = svc["id"].as_str().unwrap();
    let subject = app.token_for(None, &secret).await;
    let sc = claims_of(&subject);

    // Narrower: the role is still wholly carried.
    let got = exchange(&app, client, &subject, &[("scope", "content:read")]).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["scope"], "content:read");
    let narrow = token(&got.1);
    let c = claims_of(&narrow);
    assert_eq!(c["sub"], sid);
    assert_eq!(c["client_id"], bid.as_str());
    assert_eq!(c["permissions"], json!(["content:read"]));
    assert_eq!(c["roles"], json!(["reader"]));
    assert_eq!(c["aud"], sc["aud"]);
    assert_ne!(c["jti"], sc["jti"]);
    assert_eq!(c["iat_ms"], sc["iat_ms"]);
    assert!(c["exp"].as_i64() <= sc["exp"].as_i64());
    assert!(c.get("act").is_none() && c.get("sid").is_none());
    // Narrower without the role's permission: the role is dropped.
    let got = exchange(&app, client, &subject, &[("scope", "content:write")]).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(claims_of(&token(&got.1))["roles"], json!([]));
    // No scope: everything the subject holds.
    let got = exchange(&app, client, &subject, &[]).await;
    assert_eq!(got.1["scope"], "content:read content:write", "{}", got.1);

    // Another audience the subject application may use, by either name.
    for name in ["audience", "resource"] {
        let got = exchange(&app, client, &subject, &[(name, "orders-api")]).await;
        assert_eq!(got.0, 200, "{}", got.1);
        let checked = verify_with_jwks(
            &app.jwks().await,
            &token(&got.1),
            &app.address,
            "orders-api",
        )
        .unwrap();
        assert_eq!(checked["sub"], sid);
        // A token for another service is itself a subject token.
        let again = exchange(&app, client, &token(&got.1), &[("scope", "content:read")]).await;
        assert_eq!(again.0, 200, "{}", again.1);
    }

    // Never more than the subject token: not a word it lacks, not from a
    // narrowed token what only the original held.
    let wide = exchange(
        &app,
        client,
        &subject,
        &[("scope", "content:read workloads:read")],
    )
    .await;
    refused(&wide, 400, "invalid_scope");
    refused(
        &exchange(&app, client, &narrow, &[("scope", "content:write")]).await,
        400,
        "invalid_scope",
    );
    refused(
        &exchange(&app, client, &subject, &[("scope", "openid")]).await,
        400,
        "invalid_scope",
    );
    // Audiences the subject may not use: unknown, or only the broker's.
    for aud in ["billing-api", "people-api"] {
        refused(
            &exchange(&app, client, &subject, &[("audience", aud)]).await,
            400,
            "invalid_target",
        );
    }
    refused(
        &exchange(
            &app,
            client,
            &subject,
            &[("audience", "orders-api"), ("resource", "billing-api")],
        )
        .await,
        400,
        "invalid_target",
    );
}

#[tokio::test]
async fn bad_requests_subject_tokens_and_clients_are_refused() {
    let app = spawn_app().await;
    let (bid, bsecret) = broker(&app).await;
    let client = (bid.as_str(), bsecret.as_str());
    let (svc, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read"]}))
        .await;
    let svc_id = svc["id"].as_str().unwrap();
    let subject = app.token_for(None, &secret).await;

    // Token types: upstream ID tokens are not accepted yet.
    for t in [
        "urn:ietf:params:oauth:token-type:id_token",
        "urn:ietf:params:oauth:token-type:jwt",
    ] {
        let got = answer(
            post(
                &app,
                client,
                &[
                    ("grant_type", GRANT),
                    ("subject_token", &subject),
                    ("subject_token_type", t),
                ],
            )
            .await,
        )
        .await;
        refused(&got, 400, "invalid_request");
        assert!(
            got.1["error_description"]
                .as_str()
                .unwrap()
                .contains("no upstream identity provider accepts token exchange")
        );
    }
    for fields in [
        vec![("grant_type", GRANT), ("subject_token", subject.as_str())],
        vec![("grant_type", GRANT), ("subject_token_type", AT)],
        vec![
            ("grant_type", GRANT),
            ("subject_token", subject.as_str()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            ),
        ],
    ] {
        refused(
            &answer(post(&app, client, &fields).await).await,
            400,
            "invalid_request",
        );
    }
    refused(
        &exchange(
            &app,
            client,
            &subject,
            &[(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:refresh_token",
            )],
        )
        .await,
        400,
        "invalid_request",
    );
    // Not a token at all.
    refused(
        &exchange(&app, client, "a.b.c", &[]).await,
        400,
        "invalid_request",
    );
    // Expired: just now (inside the verification leeway), and long ago.
    let mut c = claims_of(&subject);
    for ago in [5, 3600] {
        let now = chrono::Utc::now().timestamp();
        c["exp"] = json!(now - ago);
        c["jti"] = json!(format!("expired{ago}"));
        refused(
            &exchange(&app, client, &mint(&app, &c), &[]).await,
            400,
            "invalid_request",
        );
    }

    // Unauthenticated: no credentials, a wrong secret.
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", GRANT),
            ("subject_token", &subject),
            ("subject_token_type", AT),
        ])
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("www-authenticate"));
    refused(&answer(res).await, 401, "invalid_client");
    refused(
        &exchange(&app, (&bid, "wrong-secret-wrong-secret"), &subject, &[]).await,
        401,
        "invalid_client",
    );
    // Authenticated, but not allowed the grant: empty grantTypes (the
    // default), or a list without it.
    refused(
        &exchange(&app, (svc_id, &secret), &subject, &[]).await,
        400,
        "unauthorized_client",
    );
    let (cc, cc_secret) = app
        .create_app(json!({"name": "cc", "grantTypes": ["client_credentials"]}))
        .await;
    refused(
        &exchange(
            &app,
            (cc["id"].as_str().unwrap(), &cc_secret),
            &subject,
            &[],
        )
        .await,
        400,
        "unauthorized_client",
    );

    // A revoked subject token, then a revoked subject application.
    assert_eq!(exchange(&app, client, &subject, &[]).await.0, 200);
    let res = app
        .client
        .post(app.url("/oauth/revoke"))
        .form(&[
            ("client_id", svc_id),
            ("client_secret", &secret),
            ("token", &subject),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    refused(
        &exchange(&app, client, &subject, &[]).await,
        400,
        "invalid_request",
    );
    let fresh = app.token_for(None, &secret).await;
    assert_eq!(exchange(&app, client, &fresh, &[]).await.0, 200);
    let admin = app.admin_token().await;
    let res = app
        .authed(
            reqwest::Method::POST,
            &format!("/api/v1/apps/{svc_id}/revoke"),
            &admin,
        )
        .await
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    refused(
        &exchange(&app, client, &fresh, &[]).await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn delegation_needs_may_act_or_impersonation_and_nests_act() {
    let app = spawn_app().await;
    let (bid, bsecret) = broker(&app).await;
    let client = (bid.as_str(), bsecret.as_str());
    let (_, secret) = app
        .create_app(json!({"name": "svc", "permissions": ["content:read"]}))
        .await;
    let subject = app.token_for(None, &secret).await;
    let (plain, plain_secret) = app.create_app(json!({"name": "plain"})).await;
    let plain_id = plain["id"].as_str().unwrap();
    let plain_token = app.token_for(None, &plain_secret).await;
    let mut actors = Vec::new();
    for name in ["imp1", "imp2"] {
        let (v, s) = app
            .create_app(json!({"name": name, "permissions": ["tokens:impersonate"]}))
            .await;
        actors.push((
            v["id"].as_str().unwrap().to_owned(),
            app.token_for(None, &s).await,
        ));
    }
    let acting = |actor: &str| {
        vec![
            ("actor_token", actor.to_owned()),
            ("actor_token_type", AT.to_owned()),
        ]
    };

    // Neither named by may_act nor holding tokens:impersonate.
    let a = acting(&plain_token);
    refused(
        &exchange(&app, client, &subject, &fields(&a)).await,
        400,
        "invalid_request",
    );
    // An actor token without its type, and a type without a token.
    refused(
        &exchange(&app, client, &subject, &[("actor_token", &plain_token)]).await,
        400,
        "invalid_request",
    );
    refused(
        &exchange(&app, client, &subject, &[("actor_token_type", AT)]).await,
        400,
        "invalid_request",
    );

    // An impersonator: `act` names it.
    let a = acting(&actors[0].1);
    let got = exchange(&app, client, &subject, &fields(&a)).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let first = token(&got.1);
    let c = claims_of(&first);
    assert_eq!(
        c["act"],
        json!({"sub": actors[0].0, "client_id": actors[0].0})
    );
    // Narrowed again without an actor: the delegation stays visible.
    let got = exchange(&app, client, &first, &[]).await;
    assert_eq!(claims_of(&token(&got.1))["act"], c["act"]);
    // A second delegation nests the first inside (RFC 8693 §4.1).
    let a = acting(&actors[1].1);
    let got = exchange(&app, client, &first, &fields(&a)).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(
        claims_of(&token(&got.1))["act"],
        json!({"sub": actors[1].0, "client_id": actors[1].0,
            "act": {"sub": actors[0].0, "client_id": actors[0].0}})
    );

    // may_act names the plain actor: allowed without impersonation, and
    // the result no longer carries may_act.
    let mut mc = claims_of(&subject);
    mc["jti"] = json!("mayact1");
    mc["may_act"] = json!({"sub": plain_id});
    let named = mint(&app, &mc);
    let a = acting(&plain_token);
    let got = exchange(&app, client, &named, &fields(&a)).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let c = claims_of(&token(&got.1));
    assert_eq!(c["act"]["sub"], plain_id);
    assert!(c.get("may_act").is_none());
    // Each exchange is audited with the ids involved, never a token.
    let log = ok(
        crate::helpers::call(&app, reqwest::Method::GET, "/api/v1/audit?limit=50", None).await,
        200,
    )
    .await;
    let entries: Vec<&Value> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token.exchange")
        .collect();
    assert_eq!(entries.len(), 4, "{log}");
    assert!(entries.iter().all(|e| e["actor"] == bid.as_str()));
    assert!(entries.iter().any(|e| e["details"]["actor"] == plain_id
        && e["target"] == claims_of(&subject)["sub"]));
    let text = log.to_string();
    for t in [&subject, &named, &plain_token, &first] {
        assert!(!text.contains(t.as_str()));
    }
    // ...but not when it also names another client.
    mc["jti"] = json!("mayact2");
    mc["may_act"] = json!({"sub": plain_id, "client_id": "app_someoneelse"});
    refused(
        &exchange(&app, client, &mint(&app, &mc), &fields(&a)).await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn a_persons_token_keeps_its_session_and_ends_with_it() {
    let app = spawn_app().await;
    let (bid, bsecret) = broker(&app).await;
    let client = (bid.as_str(), bsecret.as_str());
    let uid = create_user(&app, "ex@example.com", &["content:read", "content:write"]).await;
    let login = json!({"grantType": "password", "email": "ex@example.com", "password": PASSWORD});
    let t1 = ok(app.post_json("/api/v1/token", &login).await, 200).await;
    let person = t1["accessToken"].as_str().unwrap().to_owned();
    let pc = claims_of(&person);
    let sid = pc["sid"].as_str().unwrap().to_owned();

    let got = exchange(&app, client, &person, &[("scope", "content:read")]).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(got.1["scope"], "content:read");
    let exchanged = token(&got.1);
    let c = claims_of(&exchanged);
    assert_eq!(c["sub"], uid.as_str());
    assert_eq!(c["sid"], sid.as_str());
    assert_eq!(c["amr"], pc["amr"]);
    assert_eq!(c["client_id"], bid.as_str());
    assert_eq!(c["iat_ms"], pc["iat_ms"]);
    // The exchanged token was issued to the broker, a third-party client:
    // it stays out of the gateway's own API, yet exchanges again.
    let again = exchange(&app, client, &exchanged, &[("scope", "content:read")]).await;
    assert_eq!(again.0, 200, "{}", again.1);
    assert_eq!(claims_of(&token(&again.1))["sid"], sid.as_str());
    let res = app
        .authed(reqwest::Method::GET, "/api/v1/apps", &exchanged)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "the gateway's own API refuses it");
    // No scope: what the token holds, but never offline_access.
    let got = exchange(&app, client, &person, &[]).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert!(!got.1["scope"].as_str().unwrap().contains("offline_access"));
    // A person goes where the requesting client may go, nowhere else.
    let got = exchange(&app, client, &person, &[("audience", "people-api")]).await;
    assert_eq!(claims_of(&token(&got.1))["aud"], "people-api", "{}", got.1);
    refused(
        &exchange(&app, client, &person, &[("audience", "billing-api")]).await,
        400,
        "invalid_target",
    );
    refused(
        &exchange(&app, client, &person, &[("scope", "users:manage")]).await,
        400,
        "invalid_scope",
    );

    // The session ends (from a second sign-in): the person's token and
    // the exchanged one are refused, by the exchange and by the API.
    let t2 = ok(app.post_json("/api/v1/token", &login).await, 200).await;
    let other = t2["accessToken"].as_str().unwrap();
    let res = app
        .authed(
            reqwest::Method::DELETE,
            &format!("/api/v1/me/sessions/{sid}"),
            other,
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    for t in [&person, &exchanged] {
        refused(
            &exchange(&app, client, t, &[]).await,
            400,
            "invalid_request",
        );
    }
    let res = app
        .authed(reqwest::Method::GET, "/api/v1/me", &exchanged)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}
