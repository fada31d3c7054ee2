//! People signing in (docs/api.md, "People"): the sign-in page, the authorization code
//! flow with PKCE, ID tokens, userinfo, refresh rotation and reuse,
//! sessions, logout, throttling, and the refusals a hostile client tries.
//! A browser is played by a cookie-keeping HTTP client that never follows
//! redirects, so every `Location` is looked at.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tessera::crypto::opaque::pkce_s256;

use crate::helpers::{TestApp, call, claims_of, ok, spawn_app, spawn_with};

pub const PASSWORD: &str = "correct horse battery";
const CLI_REDIRECT: &str = "http://127.0.0.1:49152/callback";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-and-more";

/// A browser: keeps cookies, never follows redirects.
pub struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, String>,
    base: String,
    /// `X-Forwarded-For` to send (behind a trusted proxy).
    pub forwarded_for: Option<String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            base: app.url(""),
            forwarded_for: None,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all("set-cookie") {
            let s = v.to_str().unwrap();
            let pair = s.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            if val.is_empty() || s.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    /// The names of every cookie held.
    pub fn cookie_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.cookies.keys().cloned().collect();
        names.sort();
        names
    }

    pub fn cookie(&self, name: &str) -> Option<&String> {
        self.cookies.get(name)
    }

    pub async fn get(&mut self, path_or_url: &str) -> reqwest::Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        };
        let mut req = self.http.get(url).header("cookie", self.cookie_header());
        if let Some(x) = &self.forwarded_for {
            req = req.header("x-forwarded-for", x);
        }
        let res = req.send().await.unwrap();
        self.keep(&res);
        res
    }

    pub async fn post_form(
        &mut self,
        path: &str,
        form: &[(String, String)],
        origin: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(form);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(x) = &self.forwarded_for {
            req = req.header("x-forwarded-for", x);
        }
        let res = req.send().await.unwrap();
        self.keep(&res);
        res
    }
}

/// Creates a user with a password and permissions; returns its id.
pub async fn create_user(app: &TestApp, email: &str, permissions: &[&str]) -> String {
    let v = ok(
        call(
            app,
            reqwest::Method::POST,
            "/api/v1/users",
            Some(json!({"email": email, "name": "Ada", "permissions": permissions, "password": PASSWORD})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(v["hasPassword"], true);
    assert!(v.get("password").is_none() && v.get("passwordHash").is_none());
    v["id"].as_str().unwrap().to_owned()
}

pub fn authorize_path(client: &str, redirect: &str, scope: &str, state: &str) -> String {
    let mut u = url::Url::parse("http://x/oauth/authorize").unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", scope)
        .append_pair("state", state)
        .append_pair("nonce", "n-0S6_WzA2Mj")
        .append_pair("code_challenge", &pkce_s256(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    format!("/oauth/authorize?{}", u.query().unwrap())
}

/// The hidden fields and the CSRF token of a form page.
fn form_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in html.split("<input type=\"hidden\" ").skip(1) {
        let name = part
            .split("name=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let value = part
            .split("value=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let value = value
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
        out.push((name.to_owned(), value));
    }
    out
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Shows the sign-in page and posts it; returns the response to the post.
pub async fn sign_in(
    b: &mut Browser,
    app: &TestApp,
    authorize: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let page = b.get(authorize).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let mut form = form_fields(&html);
    form.push(("email".into(), email.into()));
    form.push(("password".into(), password.into()));
    b.post_form("/oauth/authorize", &form, Some(&app.url("")))
        .await
}

/// Signs in through the CLI client and returns the code from the redirect.
pub async fn code_for(b: &mut Browser, app: &TestApp, email: &str, scope: &str) -> String {
    let res = sign_in(
        b,
        app,
        &authorize_path("tessera-cli", CLI_REDIRECT, scope, "st-1"),
        email,
        PASSWORD,
    )
    .await;
    assert_eq!(res.status(), 303, "{}", res.text().await.unwrap());
    let loc = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.starts_with(CLI_REDIRECT), "{loc}");
    let q = query_of(&loc);
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], app.issuer_hint());
    q["code"].clone()
}

pub async fn redeem(app: &TestApp, code: &str, verifier: Option<&str>) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("client_id", "tessera-cli"),
        ("code", code),
        ("redirect_uri", CLI_REDIRECT),
    ];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    app.client
        .post(app.url("/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap()
}

pub async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "tessera-cli"),
            ("refresh_token", token),
        ])
        .send()
        .await
        .unwrap()
}

async fn userinfo(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/oauth/userinfo"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_code_flow_gives_verifiable_tokens_userinfo_and_refresh() {
    let app = spawn_app().await;
    let uid = create_user(&app, "ada@example.com", &["content:read", "content:write"]).await;
    let mut b = Browser::new(&app);
    let code = code_for(
        &mut b,
        &app,
        "Ada@Example.com",
        "openid email profile offline_access content:read",
    )
    .await;
    let session_cookie = b
        .cookie("tessera_session")
        .expect("session cookie set")
        .clone();
    assert!(session_cookie.starts_with("ses_"));
    let t = ok(redeem(&app, &code, Some(VERIFIER)).await, 200).await;
    assert_eq!(t["token_type"], "Bearer");
    let access = t["access_token"].as_str().unwrap();
    let id_token = t["id_token"].as_str().unwrap();
    let refresh_token = t["refresh_token"].as_str().unwrap();
    assert!(refresh_token.starts_with("tsr_rt_"));

    // The access token: the person, their session, narrowed by scope.
    let c = claims_of(access);
    assert_eq!(c["sub"], uid);
    assert_eq!(c["client_id"], "tessera-cli");
    assert!(c["sid"].as_str().unwrap().starts_with("ses_"));
    assert_eq!(c["amr"], json!(["pwd"]));
    assert_eq!(c["permissions"], json!(["content:read"]));

    // The ID token: RS256, verifiable with the JWKS, with every OIDC claim.
    let jwks = app.jwks().await;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&jwks).unwrap();
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let key = jsonwebtoken::DecodingKey::from_jwk(set.find(&header.kid.unwrap()).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_issuer(&[app.issuer_hint()]);
    v.set_audience(&["tessera-cli"]);
    let idc = jsonwebtoken::decode::<Value>(id_token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(idc["sub"], uid);
    assert_eq!(idc["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(idc["sid"], c["sid"]);
    assert_eq!(idc["amr"], json!(["pwd"]));
    assert!(idc["auth_time"].as_i64().unwrap() <= idc["iat"].as_i64().unwrap());
    assert_eq!(idc["email"], "ada@example.com");
    // at_hash: left half of SHA-256 of the access token, base64url.
    let full = pkce_s256(access);
    let raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, full).unwrap();
    let half = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &raw[..16],
    );
    assert_eq!(idc["at_hash"], half);

    let info = ok(userinfo(&app, access).await, 200).await;
    assert_eq!(info["sub"], uid);
    assert_eq!(info["email"], "ada@example.com");

    // A second authorize with the live session: no page, a code at once.
    let res = b
        .get(&authorize_path(
            "tessera-cli",
            CLI_REDIRECT,
            "openid",
            "st-2",
        ))
        .await;
    assert_eq!(res.status(), 303);
    assert!(query_of(res.headers()["location"].to_str().unwrap()).contains_key("code"));

    // Refresh rotates; two concurrent refreshes of one token both succeed.
    let (a, bb) = tokio::join!(refresh(&app, refresh_token), refresh(&app, refresh_token));
    let a = ok(a, 200).await;
    let bb = ok(bb, 200).await;
    assert_ne!(a["refresh_token"], bb["refresh_token"]);
    assert_ne!(a["refresh_token"].as_str().unwrap(), refresh_token);
    assert_eq!(
        claims_of(a["access_token"].as_str().unwrap())["sid"],
        c["sid"]
    );
    let again = ok(
        refresh(&app, a["refresh_token"].as_str().unwrap()).await,
        200,
    )
    .await;
    assert!(again["access_token"].is_string());
}

#[tokio::test]
async fn refresh_reuse_after_the_grace_ends_the_family_and_its_session() {
    let app = spawn_with(|s| s.people.refresh_grace = 0).await;
    create_user(&app, "bo@example.com", &["content:read"]).await;
    let mut b = Browser::new(&app);
    let code = code_for(&mut b, &app, "bo@example.com", "openid offline_access").await;
    let t = ok(redeem(&app, &code, Some(VERIFIER)).await, 200).await;
    let first = t["refresh_token"].as_str().unwrap().to_owned();
    let next = ok(refresh(&app, &first).await, 200).await;
    let access = next["access_token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The thief (or the user) presents the replaced token.
    let res = refresh(&app, &first).await;
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // The whole family is gone, and the session with it.
    let res = refresh(&app, next["refresh_token"].as_str().unwrap()).await;
    assert_eq!(res.status(), 400);
    assert_eq!(userinfo(&app, &access).await.status(), 401);
    let res = b
        .get(&authorize_path("tessera-cli", CLI_REDIRECT, "openid", "s"))
        .await;
    assert_eq!(res.status(), 200, "the session ended: sign in again");
}

#[tokio::test]
async fn bad_codes_and_verifiers_are_refused_and_a_replay_revokes() {
    let app = spawn_app().await;
    create_user(&app, "cy@example.com", &["content:read"]).await;
    let mut b = Browser::new(&app);
    let code = code_for(&mut b, &app, "cy@example.com", "openid").await;
    for verifier in [
        None,
        Some("wrong-verifier-wrong-verifier-wrong-verifier-xx"),
    ] {
        let res = redeem(&app, &code, verifier).await;
        assert_eq!(res.status(), 400);
        assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    }
    // A failed redemption spends the code too (single use, whatever happens).
    let res = redeem(&app, &code, Some(VERIFIER)).await;
    assert_eq!(res.status(), 400);

    let code = code_for(&mut b, &app, "cy@example.com", "openid").await;
    let t = ok(redeem(&app, &code, Some(VERIFIER)).await, 200).await;
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(userinfo(&app, access).await.status(), 200);
    let res = redeem(&app, &code, Some(VERIFIER)).await;
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
    // The replay ended the session the code came from: its token is dead.
    assert_eq!(userinfo(&app, access).await.status(), 401);

    let res = redeem(&app, "not-a-code", Some(VERIFIER)).await;
    assert_eq!(res.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn redirect_uris_are_never_followed_unless_registered() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    for redirect in [
        "https://evil.example/callback",
        "http://127.0.0.1.evil.example/callback",
        "http://127.0.0.1:8000/other",
        "//evil.example/callback",
        "javascript:alert(1)",
    ] {
        let res = b
            .get(&authorize_path("tessera-cli", redirect, "openid", "s"))
            .await;
        assert_eq!(res.status(), 400, "{redirect}");
        assert!(res.headers().get("location").is_none(), "{redirect}");
        let html = res.text().await.unwrap();
        assert!(html.contains("not registered"), "{html}");
    }
    let res = b
        .get(&authorize_path("nobody", CLI_REDIRECT, "openid", "s"))
        .await;
    assert_eq!(res.status(), 400);
    assert!(res.headers().get("location").is_none());

    // A registered redirect with a bad request: the error goes back there.
    let res = b
        .get(&format!(
            "/oauth/authorize?response_type=code&client_id=tessera-cli&redirect_uri={}&state=s",
            urlencode(CLI_REDIRECT)
        ))
        .await;
    assert_eq!(res.status(), 303);
    let q = query_of(res.headers()["location"].to_str().unwrap());
    assert_eq!(q["error"], "invalid_request", "PKCE is required");
    assert_eq!(q["state"], "s");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn the_sign_in_form_refuses_cross_site_posts() {
    let app = spawn_app().await;
    create_user(&app, "di@example.com", &[]).await;
    let mut b = Browser::new(&app);
    let path = authorize_path("tessera-cli", CLI_REDIRECT, "openid", "s");
    let html = b.get(&path).await.text().await.unwrap();
    let mut form = form_fields(&html);
    form.push(("email".into(), "di@example.com".into()));
    form.push(("password".into(), PASSWORD.into()));
    // Another site's page posting the same form: its Origin gives it away.
    let res = b
        .post_form("/oauth/authorize", &form, Some("https://evil.example"))
        .await;
    assert_eq!(res.status(), 403);
    // Without the CSRF cookie (a fresh browser) the token is worthless.
    let mut other = Browser::new(&app);
    let res = other.post_form("/oauth/authorize", &form, None).await;
    assert_eq!(res.status(), 403);
    assert!(other.cookie("tessera_session").is_none());
    // The genuine post works.
    let res = b
        .post_form("/oauth/authorize", &form, Some(&app.url("")))
        .await;
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn wrong_passwords_disabled_users_and_expired_sessions() {
    let app = spawn_with(|s| s.people.session_idle = 1).await;
    let uid = create_user(&app, "ed@example.com", &["content:read"]).await;
    let mut b = Browser::new(&app);
    let path = authorize_path("tessera-cli", CLI_REDIRECT, "openid", "s");
    for (email, pw) in [
        ("ed@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
    ] {
        let res = sign_in(&mut b, &app, &path, email, pw).await;
        assert_eq!(res.status(), 401);
        let html = res.text().await.unwrap();
        assert!(
            html.contains("The email or password is incorrect"),
            "{html}"
        );
        assert!(!html.contains(pw), "the password is never echoed");
    }
    // Signed in, then idle past the limit: the page is shown again.
    let _ = code_for(&mut b, &app, "ed@example.com", "openid").await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(b.get(&path).await.status(), 200);

    // Disabled: tokens die, and signing in is refused.
    let code = code_for(&mut b, &app, "ed@example.com", "openid offline_access").await;
    let t = ok(redeem(&app, &code, Some(VERIFIER)).await, 200).await;
    let access = t["access_token"].as_str().unwrap();
    ok(
        call(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{uid}"),
            Some(json!({"status": "disabled"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(userinfo(&app, access).await.status(), 401);
    let r = refresh(&app, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 400);
    let res = sign_in(&mut b, &app, &path, "ed@example.com", PASSWORD).await;
    assert_eq!(res.status(), 401);
    assert!(res.text().await.unwrap().contains("disabled"));
}

#[tokio::test]
async fn a_flood_from_other_addresses_never_locks_the_owner_out() {
    let app = spawn_with(|s| {
        s.trusted_proxies = vec![tessera::domain::IpNet::parse("127.0.0.1").unwrap()];
        s.people.signin_failures_per_account = 3;
        s.people.signin_failures_per_ip = 6;
    })
    .await;
    // Behind the proxy, every call names its client, the admin's too.
    let admin = app
        .client
        .post(app.url("/api/v1/token"))
        .header("x-forwarded-for", "192.0.2.1")
        .json(
            &json!({"AppId": crate::helpers::ADMIN_ID, "AppSecret": crate::helpers::ADMIN_SECRET}),
        )
        .send()
        .await
        .unwrap();
    let admin = ok(admin, 200).await["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .header("x-forwarded-for", "192.0.2.1")
        .bearer_auth(&admin)
        .json(&json!({"email": "fa@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    ok(res, 201).await;
    let path = authorize_path("tessera-cli", CLI_REDIRECT, "openid", "s");
    // 40 attackers, each at their own budget's end.
    for n in 0..40 {
        let mut attacker = Browser::new(&app);
        attacker.forwarded_for = Some(format!("203.0.113.{n}"));
        let mut last = StatusCode::OK;
        for _ in 0..4 {
            last = sign_in(
                &mut attacker,
                &app,
                &path,
                "fa@example.com",
                "guess guess guess",
            )
            .await
            .status();
        }
        assert_eq!(
            last,
            StatusCode::TOO_MANY_REQUESTS,
            "attacker {n} is throttled"
        );
    }
    // The owner, from their own address, signs in at once.
    let mut owner = Browser::new(&app);
    owner.forwarded_for = Some("198.51.100.7".into());
    let res = sign_in(&mut owner, &app, &path, "fa@example.com", PASSWORD).await;
    assert_eq!(res.status(), 303);
}

#[tokio::test]
async fn password_grant_me_sessions_and_logout_reach_the_gateway_api() {
    let app = spawn_app().await;
    let uid = create_user(
        &app,
        "gi@example.com",
        &["api_keys:manage", "api_keys:read", "content:read"],
    )
    .await;
    let login = |scope: Option<&str>| {
        let mut body =
            json!({"grantType": "password", "email": "gi@example.com", "password": PASSWORD});
        if let Some(s) = scope {
            body["scope"] = json!(s);
        }
        body
    };
    let t = ok(app.post_json("/api/v1/token", &login(None)).await, 200).await;
    let access = t["accessToken"].as_str().unwrap().to_owned();
    assert!(t["refreshToken"].as_str().unwrap().starts_with("tsr_rt_"));
    let me = ok(
        app.authed(reqwest::Method::GET, "/api/v1/me", &access)
            .await
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert_eq!(me["id"], uid);
    assert!(me.get("passwordHash").is_none());

    // A person's token creates applications owned by that person.
    let created = ok(
        app.authed(reqwest::Method::POST, "/api/v1/apps", &access)
            .await
            .json(&json!({"name": "mine", "permissions": ["content:read"]}))
            .send()
            .await
            .unwrap(),
        201,
    )
    .await;
    assert_eq!(created["owner"], uid);

    // Refresh on the JSON endpoint.
    let r = ok(
        app.post_json(
            "/api/v1/token",
            &json!({"grantType": "refresh_token", "refreshToken": t["refreshToken"]}),
        )
        .await,
        200,
    )
    .await;
    assert!(r["refreshToken"].is_string());

    // A second sign-in; list sessions; end the first from the second.
    let t2 = ok(
        app.post_json("/api/v1/token", &login(Some("content:read")))
            .await,
        200,
    )
    .await;
    let access2 = t2["accessToken"].as_str().unwrap().to_owned();
    let list = ok(
        app.authed(reqwest::Method::GET, "/api/v1/me/sessions", &access2)
            .await
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    let sessions = list["data"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let first_sid = claims_of(&access)["sid"].as_str().unwrap().to_owned();
    assert!(
        sessions
            .iter()
            .any(|s| s["id"] == first_sid && s["current"] == false)
    );
    let res = app
        .authed(
            reqwest::Method::DELETE,
            &format!("/api/v1/me/sessions/{first_sid}"),
            &access2,
        )
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    // The first session's tokens are refused by the gateway's own API.
    let res = app
        .authed(reqwest::Method::GET, "/api/v1/me", &access)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    // And its refresh token ended with it.
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"grantType": "refresh_token", "refreshToken": r["refreshToken"]}),
        )
        .await;
    assert_eq!(res.status(), 400);

    // Wrong password on the JSON endpoint: one answer for both unknowns.
    let res = app
        .post_json("/api/v1/token", &json!({"grantType": "password", "email": "gi@example.com", "password": "not the password"}))
        .await;
    assert_eq!(res.status(), 400);
    let body = res.text().await.unwrap();
    assert!(!body.contains("not the password"));

    // Password change: the current one is required; other sessions end.
    let change =
        |cur: &str| json!({"currentPassword": cur, "newPassword": "a brand new passphrase"});
    let res = app
        .authed(reqwest::Method::POST, "/api/v1/me/password", &access2)
        .await
        .json(&change("wrong current pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let res = app
        .authed(reqwest::Method::POST, "/api/v1/me/password", &access2)
        .await
        .json(&change(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app
        .post_json("/api/v1/token", &json!({"grantType": "password", "email": "gi@example.com", "password": "a brand new passphrase"}))
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn logout_ends_the_session_and_redirects_only_where_registered() {
    let app = spawn_app().await;
    create_user(&app, "hu@example.com", &["content:read"]).await;
    let mut b = Browser::new(&app);
    let code = code_for(&mut b, &app, "hu@example.com", "openid").await;
    let t = ok(redeem(&app, &code, Some(VERIFIER)).await, 200).await;
    let access = t["access_token"].as_str().unwrap();
    let id_token = t["id_token"].as_str().unwrap();

    // Without a hint, the browser is asked first (a third-party page
    // cannot sign anyone out); an unregistered target is dropped.
    let res = b
        .get("/oauth/logout?post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F&client_id=tessera-cli")
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Sign out"));
    assert_eq!(userinfo(&app, access).await.status(), 200);

    let res = b
        .get(&format!(
            "/oauth/logout?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
            urlencode("http://127.0.0.1:49152/callback")
        ))
        .await;
    assert_eq!(res.status(), 303);
    let loc = res.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with("http://127.0.0.1:49152/callback"), "{loc}");
    assert_eq!(query_of(loc)["state"], "bye");
    assert!(
        b.cookie("tessera_session").is_none(),
        "the cookie is cleared"
    );
    assert_eq!(userinfo(&app, access).await.status(), 401);
}

#[tokio::test]
async fn the_sign_in_page_is_a_real_labelled_form() {
    let app = spawn_app().await;
    let mut b = Browser::new(&app);
    let res = b
        .get(&authorize_path(
            "tessera-cli",
            CLI_REDIRECT,
            "openid",
            "<script>x</script>",
        ))
        .await;
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    for needle in [
        "<label for=\"email\">Email</label>",
        "<label for=\"password\">Password</label>",
        "name=\"email\"",
        "name=\"password\"",
        ">Sign in</button>",
    ] {
        assert!(html.contains(needle), "{needle}");
    }
    assert!(!html.contains("<script>"), "state is escaped");
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "no foreign assets"
    );
    let css = b.get("/oauth/assets/tessera.css").await;
    assert_eq!(css.status(), 200);
}

#[tokio::test]
async fn the_configured_admin_user_can_sign_in() {
    let app = spawn_with(|s| {
        s.admin_email = Some("root@example.com".into());
        s.admin_password = Some(secrecy::SecretString::from("the admin passphrase"));
    })
    .await;
    let t = ok(
        app.post_json(
            "/api/v1/token",
            &json!({"grantType": "password", "email": "root@example.com", "password": "the admin passphrase"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        claims_of(t["accessToken"].as_str().unwrap())["permissions"],
        json!(["*"])
    );
}

#[tokio::test]
async fn an_admin_password_reset_ends_every_session_of_the_user() {
    let app = spawn_app().await;
    let uid = create_user(&app, "jo@example.com", &["content:read"]).await;
    let login =
        |pw: &str| json!({"grantType": "password", "email": "jo@example.com", "password": pw});
    let t = ok(app.post_json("/api/v1/token", &login(PASSWORD)).await, 200).await;
    let access = t["accessToken"].as_str().unwrap().to_owned();
    let me = app
        .authed(reqwest::Method::GET, "/api/v1/me", &access)
        .await;
    assert_eq!(me.send().await.unwrap().status(), 200);
    // Too short, or the email itself: refused, nothing changes.
    for bad in ["short", "jo@example.com"] {
        let res = call(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{uid}"),
            Some(json!({"password": bad})),
        )
        .await;
        assert_eq!(res.status(), 422, "{bad}");
    }
    let me = app
        .authed(reqwest::Method::GET, "/api/v1/me", &access)
        .await;
    assert_eq!(me.send().await.unwrap().status(), 200);
    let v = ok(
        call(
            &app,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{uid}"),
            Some(json!({"password": "reset by an admin 42"})),
        )
        .await,
        200,
    )
    .await;
    assert!(v.get("password").is_none(), "never echoed");
    let me = app
        .authed(reqwest::Method::GET, "/api/v1/me", &access)
        .await;
    assert_eq!(
        me.send().await.unwrap().status(),
        401,
        "the old session ended"
    );
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"grantType": "refresh_token", "refreshToken": t["refreshToken"]}),
        )
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        app.post_json("/api/v1/token", &login(PASSWORD))
            .await
            .status(),
        400
    );
    assert_eq!(
        app.post_json("/api/v1/token", &login("reset by an admin 42"))
            .await
            .status(),
        200
    );
    // The audit log says a password was reset, and never what it is.
    let audit = ok(
        call(&app, reqwest::Method::GET, "/api/v1/audit", None).await,
        200,
    )
    .await;
    let text = audit.to_string();
    assert!(text.contains("passwordReset"));
    assert!(!text.contains("reset by an admin 42") && !text.contains(PASSWORD));
    assert!(text.contains("signin"), "sign-ins are audited");
}

#[tokio::test]
async fn a_public_client_revokes_its_refresh_token_and_the_session_ends() {
    let app = spawn_app().await;
    create_user(&app, "ki@example.com", &["content:read"]).await;
    let t = ok(
        app.post_json(
            "/api/v1/token",
            &json!({"grantType": "password", "email": "ki@example.com", "password": PASSWORD}),
        )
        .await,
        200,
    )
    .await;
    let (access, rt) = (
        t["accessToken"].as_str().unwrap(),
        t["refreshToken"].as_str().unwrap(),
    );
    let revoke = |client: &'static str| {
        app.client
            .post(app.url("/oauth/revoke"))
            .form(&[("token", rt), ("client_id", client)])
            .send()
    };
    // Another public client may not revoke it; a confidential one must
    // authenticate (an unknown client is a failed authentication).
    assert_eq!(revoke("tessera-console").await.unwrap().status(), 400);
    assert_eq!(revoke("app_nobody").await.unwrap().status(), 401);
    let me = app.authed(reqwest::Method::GET, "/api/v1/me", access).await;
    assert_eq!(me.send().await.unwrap().status(), 200);
    assert_eq!(revoke("tessera-cli").await.unwrap().status(), 200);
    let me = app.authed(reqwest::Method::GET, "/api/v1/me", access).await;
    assert_eq!(me.send().await.unwrap().status(), 401, "the session ended");
    let res = app
        .post_json(
            "/api/v1/token",
            &json!({"grantType": "refresh_token", "refreshToken": rt}),
        )
        .await;
    assert_eq!(res.status(), 400);
    // Revoking again: nothing left, still a success (RFC 7009 §2.2).
    assert_eq!(revoke("tessera-cli").await.unwrap().status(), 200);
}
