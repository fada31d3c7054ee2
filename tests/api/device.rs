//! The device authorization grant (RFC 8628, docs/api.md, "The device grant") over HTTP: codes,
//! polling (pending, slow_down, expiry, denial, single use), and the
//! `/device` pages a signed-in person answers on, with wrong codes
//! throttled.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, call, claims_of, ok, spawn_with};
use crate::people::{Browser, PASSWORD, create_user, sign_in};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// A gateway whose devices may poll every second.
async fn gateway(lifetime: u64) -> TestApp {
    spawn_with(|s| {
        s.people.device_poll_interval = 1;
        s.people.device_code_lifetime = lifetime;
    })
    .await
}

pub async fn authorize(app: &TestApp, client: &str, scope: &str) -> reqwest::Response {
    app.client
        .post(app.url("/oauth/device_authorization"))
        .form(&[("client_id", client), ("scope", scope)])
        .send()
        .await
        .unwrap()
}

async fn codes(app: &TestApp, scope: &str) -> Value {
    let res = authorize(app, "tessera-cli", scope).await;
    assert_eq!(res.headers()["cache-control"], "no-store");
    ok(res, 200).await
}

async fn poll(app: &TestApp, device_code: &str) -> (u16, Value) {
    let res = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", GRANT),
            ("client_id", "tessera-cli"),
            ("device_code", device_code),
        ])
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap())
}

/// The value of a hidden field of a form page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    html.split(&marker)
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no hidden {name} in {html}"))
        .to_owned()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()["location"].to_str().unwrap().to_owned()
}

/// Opens `/device…` in a browser that is not signed in, signs in through
/// the normal page and follows it back; returns the code entry page.
pub async fn sign_in_at_device(b: &mut Browser, app: &TestApp, path: &str, email: &str) -> String {
    let res = b.get(path).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let authorize = location(&res);
    assert!(authorize.contains("/oauth/authorize?"), "{authorize}");
    let res = sign_in(b, app, &authorize, email, PASSWORD).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let back = location(&res);
    assert!(back.starts_with(&app.url("/device?")), "{back}");
    let res = b.get(&back).await;
    assert_eq!(
        res.status(),
        StatusCode::SEE_OTHER,
        "the code leaves the address"
    );
    let clean = location(&res);
    assert!(
        !clean.contains("code=") || clean.contains("user_code="),
        "{clean}"
    );
    let res = b.get(&clean).await;
    assert_eq!(res.status(), 200);
    res.text().await.unwrap()
}

/// Posts the code form; returns the response.
pub async fn enter(b: &mut Browser, app: &TestApp, csrf: &str, code: &str) -> reqwest::Response {
    b.post_form(
        "/device",
        &[
            ("csrf".into(), csrf.into()),
            ("user_code".into(), code.into()),
        ],
        Some(&app.url("")),
    )
    .await
}

/// Posts the confirmation form.
pub async fn answer(
    b: &mut Browser,
    app: &TestApp,
    html: &str,
    decision: &str,
) -> reqwest::Response {
    b.post_form(
        "/device/confirm",
        &[
            ("csrf".into(), hidden(html, "csrf")),
            ("user_code".into(), hidden(html, "user_code")),
            ("decision".into(), decision.into()),
        ],
        Some(&app.url("")),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_signs_in_once_the_person_allows_it() {
    let app = gateway(600).await;
    let user = create_user(&app, "dev@example.com", &["content:read"]).await;
    let d = codes(&app, "openid offline_access content:read").await;
    let user_code = d["user_code"].as_str().unwrap();
    let device_code = d["device_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert!(
        user_code.bytes().enumerate().all(|(i, b)| if i == 4 {
            b == b'-'
        } else {
            b"BCDFGHJKLMNPQRSTVWXZ".contains(&b)
        }),
        "{user_code}"
    );
    assert_eq!(d["verification_uri"], app.url("/device"));
    assert_eq!(
        d["verification_uri_complete"],
        app.url(&format!("/device?user_code={user_code}"))
    );
    assert_eq!(d["expires_in"], 600);
    assert_eq!(d["interval"], 1);

    // Nobody answered yet; polling faster than the interval slows it down.
    let (s, v) = poll(&app, device_code).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );
    let (s, v) = poll(&app, device_code).await;
    assert_eq!((s, v["error"].as_str()), (400, Some("slow_down")), "{v}");

    // The person signs in through the normal page and comes back.
    let mut b = Browser::new(&app);
    let path = format!("/device?user_code={user_code}");
    let html = sign_in_at_device(&mut b, &app, &path, "dev@example.com").await;
    assert!(
        html.contains(&format!("value=\"{user_code}\"")),
        "prefilled"
    );
    assert!(html.contains("<label for=\"user_code\">"), "labelled");
    assert!(!html.contains("<script"), "no script");
    // Case and hyphen do not matter.
    let sloppy = user_code.replace('-', "").to_lowercase();
    let res = enter(&mut b, &app, &hidden(&html, "csrf"), &sloppy).await;
    assert_eq!(res.status(), 200);
    let confirm = res.text().await.unwrap();
    assert!(
        confirm.contains("Tessera command line (tessera-cli)"),
        "the page names the client: {confirm}"
    );
    assert!(confirm.contains("offline_access") && confirm.contains("content:read"));
    assert!(confirm.contains("dev@example.com"));
    assert!(confirm.contains(">Allow</button>") && confirm.contains(">Deny</button>"));
    let res = answer(&mut b, &app, &confirm, "allow").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Device connected"));

    // The next poll gets the tokens (the interval binds only while the
    // request is pending).
    let (s, t) = poll(&app, device_code).await;
    assert_eq!(s, 200, "{t}");
    let claims = claims_of(t["access_token"].as_str().unwrap());
    assert_eq!(claims["sub"], user);
    assert_eq!(claims["client_id"], "tessera-cli");
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert!(claims["sid"].as_str().unwrap().starts_with("ses_"));
    assert_eq!(claims["permissions"], json!(["content:read"]));
    assert!(
        t["refresh_token"].as_str().is_some(),
        "offline_access asked"
    );
    assert!(t["id_token"].as_str().is_some());
    let me = app
        .authed(
            reqwest::Method::GET,
            "/api/v1/me",
            t["access_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(me.send().await.unwrap().status(), 200);

    // The code works once; the user code is spent too.
    let (s, v) = poll(&app, device_code).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "{v}"
    );
    let res = enter(&mut b, &app, &hidden(&html, "csrf"), user_code).await;
    assert_eq!(res.status(), 400);

    // Approvals are audited.
    let log = ok(
        call(&app, reqwest::Method::GET, "/api/v1/audit?limit=50", None).await,
        200,
    )
    .await;
    assert!(
        log["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "device.approve" && r["target"] == json!(user)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_offline_access_no_refresh_token_and_denial_is_final() {
    let app = gateway(600).await;
    create_user(&app, "den@example.com", &["content:read"]).await;
    let mut b = Browser::new(&app);
    let html = sign_in_at_device(&mut b, &app, "/device", "den@example.com").await;
    let csrf = hidden(&html, "csrf");

    // Allowed without offline_access: no refresh token.
    let d = codes(&app, "openid").await;
    let res = enter(&mut b, &app, &csrf, d["user_code"].as_str().unwrap()).await;
    let confirm = res.text().await.unwrap();
    assert_eq!(answer(&mut b, &app, &confirm, "allow").await.status(), 200);
    let (s, t) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(s, 200, "{t}");
    assert!(t.get("refresh_token").is_none(), "{t}");

    // Denied: access_denied, every time.
    let d = codes(&app, "openid offline_access").await;
    let res = enter(&mut b, &app, &csrf, d["user_code"].as_str().unwrap()).await;
    let confirm = res.text().await.unwrap();
    let res = answer(&mut b, &app, &confirm, "deny").await;
    assert_eq!(res.status(), 200);
    assert!(res.text().await.unwrap().contains("Request denied"));
    for _ in 0..2 {
        let (s, v) = poll(&app, d["device_code"].as_str().unwrap()).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (400, Some("access_denied")),
            "{v}"
        );
    }
    // A second answer changes nothing.
    assert_eq!(answer(&mut b, &app, &confirm, "allow").await.status(), 400);

    // Forms from elsewhere are refused.
    let d = codes(&app, "openid").await;
    let res = b
        .post_form(
            "/device",
            &[
                ("csrf".into(), "forged".into()),
                ("user_code".into(), d["user_code"].as_str().unwrap().into()),
            ],
            Some(&app.url("")),
        )
        .await;
    assert_eq!(res.status(), 403);
    let res = b
        .post_form(
            "/device",
            &[
                ("csrf".into(), csrf.clone()),
                ("user_code".into(), d["user_code"].as_str().unwrap().into()),
            ],
            Some("https://evil.example"),
        )
        .await;
    assert_eq!(res.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_expire() {
    let app = gateway(2).await;
    create_user(&app, "exp@example.com", &[]).await;
    let d = codes(&app, "openid").await;
    assert_eq!(d["expires_in"], 2);
    let mut b = Browser::new(&app);
    let html = sign_in_at_device(&mut b, &app, "/device", "exp@example.com").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let res = enter(
        &mut b,
        &app,
        &hidden(&html, "csrf"),
        d["user_code"].as_str().unwrap(),
    )
    .await;
    assert_eq!(res.status(), 400);
    assert!(res.text().await.unwrap().contains("expired"));
    let (s, v) = poll(&app, d["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("expired_token")),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_user_codes_are_throttled() {
    let app = gateway(600).await;
    create_user(&app, "guess@example.com", &[]).await;
    let real = codes(&app, "openid").await;
    let mut b = Browser::new(&app);
    let html = sign_in_at_device(&mut b, &app, "/device", "guess@example.com").await;
    let csrf = hidden(&html, "csrf");
    let mut statuses = Vec::new();
    for i in 0..12 {
        let guess = format!("BCDF-GHJ{}", ["K", "L", "M", "N"][i % 4]);
        if guess == real["user_code"] {
            continue;
        }
        let res = enter(&mut b, &app, &csrf, &guess).await;
        if res.status() == 429 {
            assert!(res.headers().contains_key("retry-after"));
        }
        statuses.push(res.status().as_u16());
    }
    assert_eq!(&statuses[..10], &[400; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // Once throttled, even the right code waits: guessing gains nothing.
    let res = enter(&mut b, &app, &csrf, real["user_code"].as_str().unwrap()).await;
    assert_eq!(res.status(), 429);
    // Confirming directly is counted the same way.
    let res = b
        .post_form(
            "/device/confirm",
            &[
                ("csrf".into(), csrf.clone()),
                (
                    "user_code".into(),
                    real["user_code"].as_str().unwrap().into(),
                ),
                ("decision".into(), "allow".into()),
            ],
            Some(&app.url("")),
        )
        .await;
    assert_eq!(res.status(), 429);
    let (s, v) = poll(&app, real["device_code"].as_str().unwrap()).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("authorization_pending"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_allowed_the_grant_get_codes() {
    let app = gateway(600).await;
    let res = authorize(&app, "app_nobody", "openid").await;
    assert_eq!(res.status(), 401);
    let res = authorize(&app, "tessera-cli", "openid not-a-scope").await;
    let (s, v) = (res.status().as_u16(), res.json::<Value>().await.unwrap());
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_scope")),
        "{v}"
    );
    // A public client registered without the device grant.
    let (spa, _) = app
        .create_app(
            json!({"name": "spa", "type": "public", "permissions": ["content:read"],
                           "redirectUris": ["https://spa.example/cb"]}),
        )
        .await;
    let res = authorize(&app, spa["id"].as_str().unwrap(), "openid").await;
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized_client", "{v}");
    // The discovery document names the endpoint and the grant.
    let m: Value = app
        .client
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["device_authorization_endpoint"],
        app.url("/oauth/device_authorization")
    );
    assert!(
        m["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(GRANT))
    );
}
