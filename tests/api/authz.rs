//! "Nobody widens their own reach" (docs/api.md, "Applications"): the permission matrix over
//! every admin route, the escalations a red team found, and the operator
//! admin that the API may not touch.
//!
//! Every request goes through a trusted proxy (loopback) that names the
//! client in `X-Forwarded-For`, so one actor can call from outside its
//! token's `allowed_cidrs`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// The person actor's password.
const PERSON_PASSWORD: &str = "the person's passphrase";

/// Where actors call from, unless they are the outsider.
const HOME: &str = "127.0.0.2";
/// The outsider's token is bound to this address...
const BOUND: &str = "10.9.9.9";
/// ...and it calls from this one.
const AWAY: &str = "198.51.100.1";

struct Gw {
    app: TestApp,
    admin: String,
}

impl Gw {
    async fn start() -> Self {
        let app = spawn_with(|s| {
            s.trusted_proxies = vec![tessera::domain::IpNet::parse("127.0.0.1/32").unwrap()];
            // A provider that cannot be reached: its public routes answer
            // the same whoever calls.
            s.idp = vec![tessera::config::IdpSettings {
                name: "down".into(),
                display_name: None,
                issuer: "http://127.0.0.1:9/down".into(),
                client_id: "tessera".into(),
                client_secret: Some(secrecy::SecretString::from("unused-secret")),
                scopes: vec!["openid".into()],
                groups_claim: "groups".into(),
                create_users: false,
                allowed_domains: vec![],
                link_by_verified_email: false,
                token_exchange: false,
                role_map: vec![],
            }];
        })
        .await;
        let admin = token(&app, Some(ADMIN_ID), ADMIN_SECRET, HOME)
            .await
            .unwrap();
        Self { app, admin }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: &str,
        from: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(bearer)
            .header("x-forwarded-for", from);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, v) = self.call(method, path, &self.admin, HOME, Some(body)).await;
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }

    /// Creates an application as the admin: (id, secret).
    async fn app(&self, body: Value) -> (String, String) {
        let v = self.admin(Method::POST, "/api/v1/apps", body).await;
        (
            v["id"].as_str().unwrap().to_owned(),
            v["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// A person's token, from the password grant.
    async fn person(&self, email: &str, password: &str) -> String {
        let res = self
            .app
            .client
            .post(self.app.url("/api/v1/token"))
            .header("x-forwarded-for", HOME)
            .json(&json!({"grantType": "password", "email": email, "password": password}))
            .send()
            .await
            .unwrap();
        let v: Value = res.json().await.unwrap();
        v["accessToken"]
            .as_str()
            .expect("a person's token")
            .to_owned()
    }

    async fn actor(&self, body: Value, from: &str) -> String {
        let (_, secret) = self.app(body).await;
        token(&self.app, None, &secret, from).await.unwrap()
    }
}

async fn token(app: &TestApp, id: Option<&str>, secret: &str, from: &str) -> Result<String, u16> {
    let mut body = json!({"AppSecret": secret});
    if let Some(id) = id {
        body["AppId"] = json!(id);
    }
    let res = app
        .client
        .post(app.url("/api/v1/token"))
        .header("x-forwarded-for", from)
        .json(&body)
        .send()
        .await
        .unwrap();
    if res.status() != 200 {
        return Err(res.status().as_u16());
    }
    let v: Value = res.json().await.unwrap();
    Ok(v["accessToken"].as_str().unwrap().to_owned())
}

/// The actors, in the order of the table's columns.
const ACTORS: [&str; 13] = [
    "api_keys:read",
    "api_keys:manage",
    "manage+content",
    "roles+content",
    "users+content",
    "audit:read",
    "metrics:read",
    "tokens:introspect",
    "public key",
    "test key",
    "owner-bounded",
    "outside cidrs",
    "person",
];

/// What one cell expects: a status, or for bulk delete `200` and the
/// per-id result.
type Want = &'static str;

/// (method, route, target, expected per actor). Targets: `low` holds
/// `content:read`, `high` holds `*`; `-` needs none.
const TABLE: &[(&str, &str, &str, [Want; 13])] = &[
    (
        "GET",
        "/api/v1/apps",
        "-",
        [
            "200", "200", "200", "403", "403", "403", "403", "403", "403", "200", "200", "403",
            "200",
        ],
    ),
    (
        "GET",
        "/api/v1/apps/{app}",
        "low",
        [
            "200", "200", "200", "403", "403", "403", "403", "403", "403", "200", "200", "403",
            "200",
        ],
    ),
    (
        "POST",
        "/api/v1/apps",
        "low",
        [
            "403", "403", "201", "403", "403", "403", "403", "403", "403", "201", "403", "403",
            "201",
        ],
    ),
    (
        "POST",
        "/api/v1/apps",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "PATCH",
        "/api/v1/apps/{app}",
        "low",
        [
            "403", "403", "200", "403", "403", "403", "403", "403", "403", "200", "403", "403",
            "200",
        ],
    ),
    (
        "PATCH",
        "/api/v1/apps/{app}",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "POST",
        "/api/v1/apps/{app}/rotate",
        "low",
        [
            "403", "403", "200", "403", "403", "403", "403", "403", "403", "200", "403", "403",
            "200",
        ],
    ),
    (
        "POST",
        "/api/v1/apps/{app}/rotate",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "POST",
        "/api/v1/apps/{app}/revoke",
        "low",
        [
            "403", "403", "200", "403", "403", "403", "403", "403", "403", "200", "403", "403",
            "200",
        ],
    ),
    (
        "POST",
        "/api/v1/apps/{app}/revoke",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "DELETE",
        "/api/v1/apps/{app}",
        "low",
        [
            "403", "403", "204", "403", "403", "403", "403", "403", "403", "204", "403", "403",
            "204",
        ],
    ),
    (
        "DELETE",
        "/api/v1/apps/{app}",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "POST",
        "/api/v1/apps/bulk-delete",
        "low",
        [
            "403",
            "200:forbidden",
            "200:deleted",
            "403",
            "403",
            "403",
            "403",
            "403",
            "403",
            "200:deleted",
            "200:forbidden",
            "403",
            "200:deleted",
        ],
    ),
    (
        "POST",
        "/api/v1/apps/bulk-delete",
        "high",
        [
            "403",
            "200:forbidden",
            "200:forbidden",
            "403",
            "403",
            "403",
            "403",
            "403",
            "403",
            "200:forbidden",
            "200:forbidden",
            "403",
            "200:forbidden",
        ],
    ),
    (
        "GET",
        "/api/v1/roles",
        "-",
        [
            "403", "403", "403", "200", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "GET",
        "/api/v1/roles/{role}",
        "low",
        [
            "403", "403", "403", "200", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "POST",
        "/api/v1/roles",
        "low",
        [
            "403", "403", "403", "201", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "POST",
        "/api/v1/roles",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "PATCH",
        "/api/v1/roles/{role}",
        "low",
        [
            "403", "403", "403", "200", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "PATCH",
        "/api/v1/roles/{role}",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "DELETE",
        "/api/v1/roles/{role}",
        "low",
        [
            "403", "403", "403", "204", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "DELETE",
        "/api/v1/roles/{role}",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "GET",
        "/api/v1/users",
        "-",
        [
            "403", "403", "403", "403", "200", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "GET",
        "/api/v1/users/{user}",
        "low",
        [
            "403", "403", "403", "403", "200", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "POST",
        "/api/v1/users",
        "low",
        [
            "403", "403", "403", "403", "201", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "POST",
        "/api/v1/users",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "PATCH",
        "/api/v1/users/{user}",
        "low",
        [
            "403", "403", "403", "403", "200", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "PATCH",
        "/api/v1/users/{user}",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "DELETE",
        "/api/v1/users/{user}",
        "low",
        [
            "403", "403", "403", "403", "204", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "DELETE",
        "/api/v1/users/{user}",
        "high",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "GET",
        "/api/v1/audit",
        "-",
        [
            "403", "403", "403", "403", "403", "200", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "GET",
        "/metrics",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "200", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "GET",
        "/api/v1/revocations",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "403", "200", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "GET",
        "/api/v1/me",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "200",
        ],
    ),
    (
        "GET",
        "/api/v1/me/sessions",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "200",
        ],
    ),
    (
        "DELETE",
        "/api/v1/me/sessions/{session}",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "404",
        ],
    ),
    (
        "POST",
        "/api/v1/me/password",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "422",
        ],
    ),
    // A bearer token is neither a client's authentication nor a session:
    // every actor gets what an anonymous caller gets.
    (
        "POST",
        "/oauth/device_authorization",
        "-",
        [
            "400", "400", "400", "400", "400", "400", "400", "400", "400", "400", "400", "400",
            "400",
        ],
    ),
    (
        "GET",
        "/device",
        "-",
        [
            "200", "200", "200", "200", "200", "200", "200", "200", "200", "200", "200", "200",
            "200",
        ],
    ),
    (
        "POST",
        "/device",
        "-",
        [
            "400", "400", "400", "400", "400", "400", "400", "400", "400", "400", "400", "400",
            "400",
        ],
    ),
    (
        "POST",
        "/device/confirm",
        "-",
        [
            "400", "400", "400", "400", "400", "400", "400", "400", "400", "400", "400", "400",
            "400",
        ],
    ),
    (
        "GET",
        "/sso/nope/login",
        "-",
        [
            "404", "404", "404", "404", "404", "404", "404", "404", "404", "404", "404", "404",
            "404",
        ],
    ),
    (
        "GET",
        "/sso/nope/callback",
        "-",
        [
            "404", "404", "404", "404", "404", "404", "404", "404", "404", "404", "404", "404",
            "404",
        ],
    ),
    (
        "GET",
        "/sso/down/login",
        "-",
        [
            "502", "502", "502", "502", "502", "502", "502", "502", "502", "502", "502", "502",
            "502",
        ],
    ),
    (
        "GET",
        "/sso/down/callback",
        "-",
        [
            "400", "400", "400", "400", "400", "400", "400", "400", "400", "400", "400", "400",
            "400",
        ],
    ),
    (
        "GET",
        "/api/v1/permissions",
        "-",
        [
            "200", "200", "200", "200", "200", "200", "200", "200", "200", "200", "200", "403",
            "200",
        ],
    ),
    // Only `leaks:report` may report leaks: no actor here holds it (the
    // one holding `*` calls from outside its `allowed_cidrs`).
    (
        "POST",
        "/api/v1/leaks",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    // The signing keys (docs/api.md, "Signing keys over time") need `keys:manage`, which no actor here
    // holds: listing, adding and withdrawing a key are all refused.
    (
        "GET",
        "/api/v1/keys",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "POST",
        "/api/v1/keys/rotate",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
    (
        "POST",
        "/api/v1/keys/{kid}/revoke",
        "-",
        [
            "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403", "403",
            "403",
        ],
    ),
];

/// The grants a target of the given reach holds.
fn reach(target: &str) -> Value {
    match target {
        "high" => json!(["*"]),
        _ => json!(["content:read"]),
    }
}

/// Makes a fresh target for one cell and returns the path to call and the
/// body to send.
async fn prepare(
    gw: &Gw,
    method: &str,
    route: &str,
    target: &str,
    n: usize,
) -> (String, Option<Value>) {
    let perms = reach(target);
    let unique = format!("m{n}");
    if route.contains("{app}") {
        let (id, _) = gw.app(json!({"name": unique, "permissions": perms})).await;
        let body = (method == "PATCH").then(|| json!({"description": "changed"}));
        let body = if route.ends_with("/rotate") {
            Some(json!({"gracePeriodSeconds": 0}))
        } else {
            body
        };
        return (route.replace("{app}", &id), body);
    }
    if route.contains("{role}") {
        gw.admin(
            Method::POST,
            "/api/v1/roles",
            json!({"name": unique, "permissions": perms}),
        )
        .await;
        let body = (method == "PATCH").then(|| json!({"description": "changed"}));
        return (route.replace("{role}", &unique), body);
    }
    if route.contains("{user}") {
        let v = gw
            .admin(
                Method::POST,
                "/api/v1/users",
                json!({"email": format!("{unique}@example.com"), "permissions": perms}),
            )
            .await;
        let body = (method == "PATCH").then(|| json!({"name": "changed"}));
        return (route.replace("{user}", v["id"].as_str().unwrap()), body);
    }
    if route.contains("{session}") {
        // Somebody else's session: a person may end only their own.
        let other = gw
            .admin(
                Method::POST,
                "/api/v1/users",
                json!({"email": format!("{unique}@example.com"), "password": "another passphrase"}),
            )
            .await;
        let t = gw
            .person(other["email"].as_str().unwrap(), "another passphrase")
            .await;
        let sid = claims_of(&t)["sid"].as_str().unwrap().to_owned();
        return (route.replace("{session}", &sid), None);
    }
    if route.contains("{kid}") {
        // The key signing access tokens right now: the one most worth taking.
        let jwks: Value = reqwest::get(format!("{}/.well-known/jwks.json", gw.app.address))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kid = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["alg"] == "ES256")
            .unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned();
        return (route.replace("{kid}", &kid), None);
    }
    let body = match (method, route) {
        ("POST", "/api/v1/me/password") => Some(json!({
            "currentPassword": "not the current one",
            "newPassword": "a new passphrase here"
        })),
        ("POST", "/api/v1/apps") => Some(json!({"name": unique, "permissions": perms})),
        ("POST", "/api/v1/roles") => Some(json!({"name": unique, "permissions": perms})),
        ("POST", "/api/v1/users") => {
            Some(json!({"email": format!("{unique}@example.com"), "permissions": perms}))
        }
        ("POST", "/api/v1/leaks") => Some(json!([
            {"token": "not a key", "url": "https://example.com/", "source": "content"}
        ])),
        ("POST", "/api/v1/apps/bulk-delete") => {
            let (id, _) = gw.app(json!({"name": unique, "permissions": perms})).await;
            Some(json!({"ids": [id]}))
        }
        _ => None,
    };
    (route.to_owned(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permission_matrix_holds_on_every_admin_route() {
    let gw = Gw::start().await;
    let owner = gw
        .admin(
            Method::POST,
            "/api/v1/users",
            json!({"email": "owner@example.com", "permissions": ["api_keys:manage"]}),
        )
        .await;
    let owner = owner["id"].as_str().unwrap().to_owned();
    let mut actors = Vec::new();
    for (i, name) in ACTORS.iter().enumerate() {
        let body = match *name {
            "manage+content" => json!({"permissions": ["api_keys:manage", "content:*"]}),
            "roles+content" => json!({"permissions": ["roles:manage", "content:*"]}),
            "users+content" => json!({"permissions": ["users:manage", "content:*"]}),
            "public key" => json!({"type": "public", "permissions": ["content:read"]}),
            "test key" => {
                json!({"environment": "test", "permissions": ["api_keys:manage", "content:*"]})
            }
            "owner-bounded" => {
                json!({"owner": owner, "permissions": ["api_keys:manage", "content:*"]})
            }
            "outside cidrs" => json!({"permissions": ["*"], "allowedIps": [BOUND]}),
            "person" => {
                gw.admin(
                    Method::POST,
                    "/api/v1/users",
                    json!({"email": "person@example.com", "permissions": ["api_keys:manage", "content:*"], "password": PERSON_PASSWORD}),
                )
                .await;
                actors.push((gw.person("person@example.com", PERSON_PASSWORD).await, HOME));
                continue;
            }
            single => json!({"permissions": [single]}),
        };
        let mut body = body;
        body["name"] = json!(format!("actor-{i}"));
        let from = if *name == "outside cidrs" {
            BOUND
        } else {
            HOME
        };
        let token = gw.actor(body, from).await;
        let calls_from = if *name == "outside cidrs" { AWAY } else { HOME };
        actors.push((token, calls_from));
    }
    let mut cells = 0;
    let mut failures = Vec::new();
    for (row, (method, route, target, want)) in TABLE.iter().enumerate() {
        for (col, (token, from)) in actors.iter().enumerate() {
            let (path, body) = prepare(&gw, method, route, target, row * 100 + col).await;
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            let (status, v) = gw.call(m, &path, token, from, body).await;
            let got = if *route == "/api/v1/apps/bulk-delete" && status == 200 {
                format!("200:{}", v["results"][0]["result"].as_str().unwrap_or("?"))
            } else {
                status.to_string()
            };
            cells += 1;
            if got != want[col] {
                failures.push(format!(
                    "{method} {route} ({target}) as {}: want {}, got {got} {v}",
                    ACTORS[col], want[col]
                ));
            }
            if ACTORS[col] == "outside cidrs" && status == 403 {
                assert_eq!(v["error"]["code"], "ip_not_allowed", "{v}");
            }
        }
    }
    eprintln!(
        "permission matrix: {} routes x {} actors = {cells} cells",
        TABLE.len(),
        ACTORS.len()
    );
    assert!(
        failures.is_empty(),
        "{} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_manager_cannot_take_over_a_star_application() {
    let gw = Gw::start().await;
    let (star, _) = gw.app(json!({"name": "star", "permissions": ["*"]})).await;
    let manager = gw
        .actor(
            json!({"name": "mgr", "permissions": ["api_keys:manage"]}),
            HOME,
        )
        .await;
    for (method, path) in [
        (Method::POST, format!("/api/v1/apps/{star}/rotate")),
        (Method::POST, format!("/api/v1/apps/{star}/revoke")),
        (Method::DELETE, format!("/api/v1/apps/{star}")),
        (Method::PATCH, format!("/api/v1/apps/{star}")),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"name": "mine now"}));
        let (status, v) = gw.call(method.clone(), &path, &manager, HOME, body).await;
        assert_eq!(status, 403, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "insufficient_permissions");
        assert!(v.get("secret").is_none(), "a secret leaked: {v}");
    }
    // The refusals are in the audit log.
    let log = gw
        .admin(Method::GET, "/api/v1/audit?limit=50", json!(null))
        .await;
    let refused = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "refused" && r["target"] == json!(star))
        .count();
    assert_eq!(refused, 4, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_the_owner_is_checked_like_any_change() {
    let gw = Gw::start().await;
    let strong = gw
        .admin(
            Method::POST,
            "/api/v1/users",
            json!({"email": "strong@example.com", "permissions": ["*"]}),
        )
        .await;
    let weak = gw
        .admin(
            Method::POST,
            "/api/v1/users",
            json!({"email": "weak@example.com", "permissions": ["content:read"]}),
        )
        .await;
    // Nominally `*`, bounded by its weak owner to content:read.
    let (app, secret) = gw
        .app(json!({"name": "bounded", "permissions": ["*"], "owner": weak["id"]}))
        .await;
    let t = token(&gw.app, None, &secret, HOME).await.unwrap();
    assert_eq!(claims_of(&t)["permissions"], json!(["content:read"]));
    let manager = gw
        .actor(
            json!({"name": "mgr", "permissions": ["api_keys:manage", "content:*"]}),
            HOME,
        )
        .await;
    let (status, v) = gw
        .call(
            Method::PATCH,
            &format!("/api/v1/apps/{app}"),
            &manager,
            HOME,
            Some(json!({"owner": strong["id"]})),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    let t = token(&gw.app, None, &secret, HOME).await.unwrap();
    assert_eq!(
        claims_of(&t)["permissions"],
        json!(["content:read"]),
        "widened"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_edit_rechecks_the_public_keys_holding_it() {
    let gw = Gw::start().await;
    gw.admin(
        Method::POST,
        "/api/v1/roles",
        json!({"name": "viewer", "permissions": ["content:read"]}),
    )
    .await;
    let (public, _) = gw
        .app(json!({"name": "browser", "type": "public", "roles": ["viewer"]}))
        .await;
    for perms in [json!(["content:write"]), json!(["content:*"]), json!(["*"])] {
        let (status, v) = gw
            .call(
                Method::PATCH,
                "/api/v1/roles/viewer",
                &gw.admin,
                HOME,
                Some(json!({"permissions": perms})),
            )
            .await;
        assert_eq!(status, 422, "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(&public),
            "{v}"
        );
    }
    let role = gw
        .admin(Method::GET, "/api/v1/roles/viewer", json!(null))
        .await;
    assert_eq!(
        role["permissions"],
        json!(["content:read"]),
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_admin_cannot_be_rotated_revoked_deleted_or_changed() {
    let gw = Gw::start().await;
    for (method, path) in [
        (Method::POST, format!("/api/v1/apps/{ADMIN_ID}/rotate")),
        (Method::POST, format!("/api/v1/apps/{ADMIN_ID}/revoke")),
        (Method::DELETE, format!("/api/v1/apps/{ADMIN_ID}")),
        (Method::PATCH, format!("/api/v1/apps/{ADMIN_ID}")),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"permissions": []}));
        let (status, v) = gw.call(method.clone(), &path, &gw.admin, HOME, body).await;
        assert_eq!(status, 409, "{method} {path}: {v}");
    }
    let (status, v) = gw
        .call(
            Method::POST,
            "/api/v1/apps/bulk-delete",
            &gw.admin,
            HOME,
            Some(json!({"ids": [ADMIN_ID]})),
        )
        .await;
    assert_eq!(
        (status, v["results"][0]["result"].clone()),
        (200, json!("conflict"))
    );
    // Still the admin: it can list applications.
    let fresh = token(&gw.app, Some(ADMIN_ID), ADMIN_SECRET, HOME)
        .await
        .unwrap();
    let (status, _) = gw
        .call(Method::GET, "/api/v1/apps", &fresh, HOME, None)
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_applies_to_the_admin_api_at_once() {
    let gw = Gw::start().await;
    let (x, secret) = gw
        .app(json!({"name": "x", "permissions": ["api_keys:manage", "content:*"]}))
        .await;
    let t = token(&gw.app, None, &secret, HOME).await.unwrap();
    gw.admin(
        Method::PATCH,
        &format!("/api/v1/apps/{x}"),
        json!({"permissions": []}),
    )
    .await;
    let (status, v) = gw
        .call(
            Method::POST,
            "/api/v1/apps",
            &t,
            HOME,
            Some(json!({"name": "y", "permissions": ["content:read"]})),
        )
        .await;
    assert_eq!(status, 401, "the demoted token still works: {v}");
    let fresh = token(&gw.app, None, &secret, HOME).await.unwrap();
    let (status, _) = gw
        .call(
            Method::POST,
            "/api/v1/apps",
            &fresh,
            HOME,
            Some(json!({"name": "y"})),
        )
        .await;
    assert_eq!(status, 403, "the new token carries no api_keys:manage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_in_tokens_are_only_those_wholly_granted() {
    let gw = Gw::start().await;
    gw.admin(
        Method::POST,
        "/api/v1/roles",
        json!({"name": "editor", "permissions": ["content:read", "content:write"]}),
    )
    .await;
    gw.admin(
        Method::POST,
        "/api/v1/roles",
        json!({"name": "reader", "permissions": ["content:read"]}),
    )
    .await;
    let (_, secret) = gw
        .app(json!({"name": "e", "roles": ["editor", "reader"]}))
        .await;
    let res = gw
        .app
        .client
        .post(gw.app.url("/api/v1/token"))
        .header("x-forwarded-for", HOME)
        .json(&json!({"AppSecret": secret, "scope": "content:read"}))
        .send()
        .await
        .unwrap();
    let v: Value = res.json().await.unwrap();
    let claims = claims_of(v["accessToken"].as_str().unwrap());
    assert_eq!(claims["roles"], json!(["reader"]), "{claims}");
    // Owner-bounded: a role the owner's grants do not cover is dropped.
    let user = gw
        .admin(
            Method::POST,
            "/api/v1/users",
            json!({"email": "r@example.com", "permissions": ["content:read"]}),
        )
        .await;
    let (_, secret) = gw
        .app(json!({"name": "b", "roles": ["editor", "reader"], "owner": user["id"]}))
        .await;
    let t = token(&gw.app, None, &secret, HOME).await.unwrap();
    assert_eq!(claims_of(&t)["roles"], json!(["reader"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_star_application_cannot_mint_permissions_outside_the_catalogue() {
    let gw = Gw::start().await;
    let res = gw
        .app
        .client
        .post(gw.app.url("/api/v1/token"))
        .header("x-forwarded-for", HOME)
        .json(&json!({"AppId": ADMIN_ID, "AppSecret": ADMIN_SECRET, "scope": "billing:refund"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let v: Value = res.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("catalogue"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_change_is_audited_with_old_and_new_values() {
    let gw = Gw::start().await;
    let (id, secret) = gw
        .app(json!({"name": "audited", "allowedIps": ["10.0.0.0/8"], "tokenTtl": 60, "audiences": ["a1"]}))
        .await;
    gw.admin(
        Method::PATCH,
        &format!("/api/v1/apps/{id}"),
        json!({"allowedIps": [], "tokenTtl": null, "audiences": ["a1", "a2"]}),
    )
    .await;
    let log = gw
        .admin(Method::GET, "/api/v1/audit?limit=20", json!(null))
        .await;
    let created = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "app.create" && r["target"] == json!(id))
        .unwrap()
        .clone();
    assert_eq!(
        created["details"]["allowedIps"],
        json!(["10.0.0.0/8"]),
        "{created}"
    );
    let update = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "app.update" && r["target"] == json!(id))
        .unwrap()
        .clone();
    let changed = &update["details"]["changed"];
    assert_eq!(
        changed["allowedIps"],
        json!({"old": ["10.0.0.0/8"], "new": []}),
        "{update}"
    );
    assert_eq!(changed["tokenTtl"], json!({"old": 60, "new": null}));
    assert_eq!(changed["audiences"]["new"], json!(["a1", "a2"]));
    assert!(
        !log.to_string().contains(&secret),
        "the secret in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_configured_admin_secret_revokes_the_old_admins_tokens() {
    // The directories outlive each gateway, as on a real host.
    let root = tempfile::tempdir().unwrap();
    let mut settings = base_settings(root.path());
    settings.issuer = Some("http://gateway.test".into());
    let gw = spawn_in(tempfile::tempdir().unwrap(), settings.clone()).await;
    let old = gw.admin_token().await;
    let res = gw
        .authed(Method::GET, "/api/v1/apps", &old)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    drop(gw);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let new_secret = "a-new-admin-secret-for-tests-9876543210";
    settings.admin_app_secret = Some(secrecy::SecretString::from(new_secret));
    let gw = spawn_in(tempfile::tempdir().unwrap(), settings).await;
    let res = gw
        .authed(Method::GET, "/api/v1/apps", &old)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        401,
        "a token of the replaced admin secret still works"
    );
    assert_eq!(
        gw.exchange(Some(ADMIN_ID), ADMIN_SECRET).await.status(),
        401
    );
    let fresh = gw.token_for(Some(ADMIN_ID), new_secret).await;
    let res = gw
        .authed(Method::GET, "/api/v1/apps", &fresh)
        .await
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
