//! Attacks on the people feature (docs/api.md, "People") that currently succeed. Each
//! test plays the attacker through real HTTP (or, for the throttle's table,
//! the real limiter type) and asserts the outcome a fix must give: they
//! fail until the hole is closed.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, call, claims_of, ok, spawn_app, spawn_with};
use crate::people::{Browser, PASSWORD, VERIFIER, authorize_path, create_user, sign_in};

const CLI_REDIRECT: &str = "http://127.0.0.1:49152/callback";

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// A confidential OAuth client created by the admin; returns (id, secret).
async fn client_app(app: &TestApp, redirect: &str, permissions: &[&str]) -> (String, String) {
    let (v, secret) = app
        .create_app(json!({
            "name": "portal",
            "permissions": permissions,
            "redirectUris": [redirect],
        }))
        .await;
    (v["id"].as_str().unwrap().to_owned(), secret)
}

/// Signs `email` in through `client` in a fresh browser; returns the code.
async fn code_via(
    app: &TestApp,
    b: &mut Browser,
    client: &str,
    redirect: &str,
    email: &str,
    scope: &str,
) -> String {
    let res = sign_in(
        b,
        app,
        &authorize_path(client, redirect, scope, "st"),
        email,
        PASSWORD,
    )
    .await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(redirect), "{loc}");
    query_of(&loc)["code"].clone()
}

/// The confidential client redeems a code (HTTP Basic).
async fn redeem_as(app: &TestApp, id: &str, secret: &str, code: &str, redirect: &str) -> Value {
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    ok(res, 200).await
}

async fn refresh_as(app: &TestApp, id: &str, secret: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
}

async fn get_as(app: &TestApp, path: &str, token: &str) -> u16 {
    app.authed(reqwest::Method::GET, path, token)
        .await
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn password_login(app: &TestApp, email: &str) -> Value {
    ok(
        app.post_json(
            "/api/v1/token",
            &json!({"grantType": "password", "email": email, "password": PASSWORD}),
        )
        .await,
        200,
    )
    .await
}

/// Finding 1a. Revoking a client application must end the person tokens
/// it obtained (docs/api.md, "Applications": "every token already minted from it is rejected";
/// the guarantee of docs/api.md, "Revocation"). Today a person token carries `sub` = the user and
/// `client_id` = the app: the app's subject revocation does not cover it,
/// and the gateway's person path never looks at the client again.
#[tokio::test]
async fn revoking_a_client_app_ends_the_person_tokens_it_obtained() {
    let app = spawn_app().await;
    create_user(&app, "ann@example.com", &["api_keys:read", "content:read"]).await;
    let redirect = "https://portal.example/cb";
    let (id, secret) = client_app(&app, redirect, &["api_keys:read", "content:read"]).await;
    let mut b = Browser::new(&app);
    let code = code_via(
        &app,
        &mut b,
        &id,
        redirect,
        "ann@example.com",
        "openid api_keys:read",
    )
    .await;
    let t = redeem_as(&app, &id, &secret, &code, redirect).await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims_of(&access)["client_id"], id.as_str());
    assert_eq!(get_as(&app, "/oauth/userinfo", &access).await, 200);
    // A third-party client's token never reaches the gateway's own API.
    assert_eq!(get_as(&app, "/api/v1/apps", &access).await, 403);

    ok(
        call(
            &app,
            reqwest::Method::POST,
            &format!("/api/v1/apps/{id}/revoke"),
            None,
        )
        .await,
        200,
    )
    .await;

    assert_eq!(
        get_as(&app, "/oauth/userinfo", &access).await,
        401,
        "a token obtained through a revoked client still works on userinfo"
    );
    // And verifiers learn it: the client's subject entry covers the token.
    let res = app
        .client
        .post(app.url("/oauth/introspect"))
        .bearer_auth(app.admin_token().await)
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap()["active"], false);
}

/// Finding 1b. Narrowing a client application must narrow the person
/// tokens minted through it (the client's bound is applied at issue only).
#[tokio::test]
async fn narrowing_a_client_app_narrows_the_person_tokens_it_obtained() {
    let app = spawn_app().await;
    create_user(&app, "ben@example.com", &["api_keys:read", "content:read"]).await;
    let redirect = "https://portal.example/cb";
    let (id, secret) = client_app(&app, redirect, &["api_keys:read", "content:read"]).await;
    let mut b = Browser::new(&app);
    let code = code_via(&app, &mut b, &id, redirect, "ben@example.com", "openid").await;
    let t = redeem_as(&app, &id, &secret, &code, redirect).await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get_as(&app, "/oauth/userinfo", &access).await, 200);

    ok(
        call(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/apps/{id}"),
            Some(json!({"permissions": ["content:read"]})),
        )
        .await,
        200,
    )
    .await;

    // Narrowing the client revokes what was minted through it before.
    assert_eq!(
        get_as(&app, "/oauth/userinfo", &access).await,
        401,
        "the client was narrowed, yet the person token it obtained lives on"
    );
}

/// Finding 2. Anyone holding `api_keys:manage` registers an OAuth client
/// (with no permission at all) and, when a signed-in person follows a link,
/// silently receives a token that manages that person's own account: it
/// reads their record and ends their other sessions through /api/v1/me.
/// Either a consent step or refusing third-party client tokens on /me
/// (and the admin API) closes it.
#[tokio::test]
async fn a_third_party_client_cannot_end_the_persons_sessions() {
    let app = spawn_app().await;
    create_user(&app, "vic@example.com", &["content:read"]).await;
    create_user(&app, "mal@example.com", &["api_keys:manage"]).await;
    // The victim's other device: a session from the password grant.
    let other = password_login(&app, "vic@example.com").await;
    let other_access = other["accessToken"].as_str().unwrap().to_owned();
    let other_sid = claims_of(&other_access)["sid"].as_str().unwrap().to_owned();

    // Mallory registers a client holding nothing, redirecting to her site.
    let mal = password_login(&app, "mal@example.com").await;
    let redirect = "https://mallory.example/cb";
    let created = ok(
        app.authed(
            reqwest::Method::POST,
            "/api/v1/apps",
            mal["accessToken"].as_str().unwrap(),
        )
        .await
        .json(&json!({"name": "innocent", "permissions": [], "redirectUris": [redirect]}))
        .send()
        .await
        .unwrap(),
        201,
    )
    .await;
    let (id, secret) = (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    );

    // The victim is signed in to Tessera in their browser...
    let mut b = Browser::new(&app);
    let _ = code_via(
        &app,
        &mut b,
        "tessera-cli",
        CLI_REDIRECT,
        "vic@example.com",
        "openid",
    )
    .await;
    // ...and follows Mallory's link: a code goes to Mallory at once.
    let res = b.get(&authorize_path(&id, redirect, "openid", "x")).await;
    let code = res
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .filter(|l| l.starts_with(redirect))
        .and_then(|l| query_of(l).get("code").cloned());
    let Some(code) = code else {
        return; // a consent step stopped it: closed
    };
    let t = redeem_as(&app, &id, &secret, &code, redirect).await;
    let stolen = t["access_token"].as_str().unwrap().to_owned();

    let res = app
        .authed(
            reqwest::Method::DELETE,
            &format!("/api/v1/me/sessions/{other_sid}"),
            &stolen,
        )
        .await
        .send()
        .await
        .unwrap();
    assert!(
        res.status() == 401 || res.status() == 403,
        "a client holding nothing ended the victim's session ({})",
        res.status()
    );
    assert_eq!(get_as(&app, "/api/v1/me", &other_access).await, 200);
}

/// Finding 3. RFC 7009 §2: a server MUST support revoking refresh tokens.
/// `/oauth/revoke` answers 200 for a refresh token and does nothing, so a
/// client that "logs out" this way leaves a working 30-day credential.
#[tokio::test]
async fn revoking_a_refresh_token_at_the_revocation_endpoint_ends_it() {
    let app = spawn_app().await;
    create_user(&app, "cat@example.com", &["content:read"]).await;
    let redirect = "https://portal.example/cb";
    let (id, secret) = client_app(&app, redirect, &["content:read"]).await;
    let mut b = Browser::new(&app);
    let code = code_via(
        &app,
        &mut b,
        &id,
        redirect,
        "cat@example.com",
        "openid offline_access",
    )
    .await;
    let t = redeem_as(&app, &id, &secret, &code, redirect).await;
    let rt = t["refresh_token"].as_str().unwrap().to_owned();

    let res = app
        .client
        .post(app.url("/oauth/revoke"))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", rt.as_str()), ("token_type_hint", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let res = refresh_as(&app, &id, &secret, &rt).await;
    assert_eq!(
        res.status(),
        400,
        "the revoked refresh token still refreshes: {}",
        res.text().await.unwrap()
    );
}

/// Finding 5. The sign-in throttle refuses every key it has not seen once
/// its table holds 200 000 keys inside the window, and entries stay even
/// for successes. A flood of failures from many addresses (an IPv6 /48 is
/// 65 536 keys; per-account keys are (email, address), 50 per address)
/// fills it, and then nobody new can sign in for the window: exactly the
/// lockout docs/api.md, "People" rules out. Driven on the limiter type the gateway uses
/// (`SignInThrottle::per_account`), since 200 000 HTTP sign-ins do not fit
/// in a test.
#[test]
fn a_full_throttle_table_never_refuses_the_owner() {
    use std::net::{IpAddr, Ipv6Addr};
    use tessera::service::limiter::FailureLimiter;
    let l: FailureLimiter<(String, IpAddr)> = FailureLimiter::new(Duration::from_secs(900), 5);
    for n in 0u32..200_000 {
        // The attacker's addresses: one /64 each out of a few /48s.
        let ip = IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            (n >> 16) as u16,
            n as u16,
            0,
            0,
            0,
            1,
        ));
        let slot = l
            .reserve_key(("victim@example.com".to_owned(), ip))
            .expect("a fresh key has budget");
        slot.fail();
    }
    let owner: IpAddr = "198.51.100.7".parse().unwrap();
    assert!(
        l.reserve_key(("victim@example.com".to_owned(), owner))
            .is_ok(),
        "the owner, from an address that never failed, is refused"
    );
}

/// Finding 6. A sign-in that reads the user before an administrator
/// disables them mints its token afterwards, from the stale read, with an
/// issue time later than the user's subject revocation and a fresh session
/// that `end_all` never saw: the token is live at every verifier (and at
/// introspection) after the disable call has answered, breaking the
/// guarantee of docs/api.md, "Revocation". Many sign-ins race one disable; every token they got must
/// be dead once it answered.
#[tokio::test]
async fn no_token_minted_across_a_disable_outlives_it() {
    let app = spawn_with(|s| {
        s.trusted_proxies = vec![tessera::domain::IpNet::parse("127.0.0.1").unwrap()];
    })
    .await;
    let admin = ok(
        app.client
            .post(app.url("/api/v1/token"))
            .header("x-forwarded-for", "192.0.2.1")
            .json(&json!({"AppId": crate::helpers::ADMIN_ID, "AppSecret": crate::helpers::ADMIN_SECRET}))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = ok(
        app.client
            .post(app.url("/api/v1/users"))
            .header("x-forwarded-for", "192.0.2.1")
            .bearer_auth(&admin)
            .json(&json!({"email": "eve@example.com", "permissions": ["content:read"], "password": PASSWORD}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    let uid = user["id"].as_str().unwrap().to_owned();

    // Sign-ins from many addresses (each address's budget is its own).
    let mut grants = Vec::new();
    for n in 0..40u32 {
        let (http, url) = (app.client.clone(), app.url("/api/v1/token"));
        grants.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(n) * 10)).await;
            let res = http
                .post(url)
                .header("x-forwarded-for", format!("203.0.113.{n}"))
                .json(&json!({"grantType": "password", "email": "eve@example.com", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            if res.status() == 200 {
                res.json::<Value>().await.unwrap()["accessToken"]
                    .as_str()
                    .map(str::to_owned)
            } else {
                None
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let res = app
        .client
        .patch(app.url(&format!("/api/v1/users/{uid}")))
        .header("x-forwarded-for", "192.0.2.1")
        .bearer_auth(&admin)
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let mut minted = 0;
    let mut live = 0;
    for g in grants {
        let Some(token) = g.await.unwrap() else {
            continue;
        };
        minted += 1;
        let body = ok(
            app.client
                .post(app.url("/oauth/introspect"))
                .header("x-forwarded-for", "192.0.2.1")
                .basic_auth(crate::helpers::ADMIN_ID, Some(crate::helpers::ADMIN_SECRET))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        if body["active"] == true {
            live += 1;
        }
    }
    assert!(
        minted > 0,
        "no sign-in finished before the disable: the race was not run"
    );
    assert_eq!(
        live, 0,
        "{live} of {minted} tokens of a disabled user are live after the disable answered"
    );
}
