//! Property tests on what callers send: request bodies and list cursors.
//!
//! Arbitrary JSON values, byte strings, field-aware objects (the endpoint's
//! own field names with values of any shape, long strings and a real secret
//! or id now and then, so parsing goes past the first field) and form
//! fields are sent to `/api/v1/token`, `/oauth/token`, `POST /api/v1/apps`
//! and `PATCH /api/v1/apps/{id}` with an admin token; arbitrary cursors to
//! every paged list, on both stores. The properties:
//!
//! - never a 5xx;
//! - every error in the docs/errors.md shape (`/api/*`: code, message and type,
//!   paired as the table says, `WWW-Authenticate` on 401) or RFC 6749's
//!   (`/oauth/*`);
//! - no error echoes a long input string (over 64 bytes: `shown` quotes
//!   shorter printable values on purpose), nor the real secret that bodies
//!   sometimes carry.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::redis_server::RedisServer;

/// Cases per HTTP property.
const CASES: u32 = 64;

/// Placeholders a generated value may hold, replaced by the real thing
/// before sending.
const SECRET: &str = "$SECRET";
const APP: &str = "$APP";

/// docs/errors.md: each code, its type and the statuses it may come with
/// (`invalid_request` also covers 405, 408, 413 and 415).
const API_ERRORS: &[(&str, &str, &[u16])] = &[
    ("missing_api_key", "authentication_error", &[401]),
    ("invalid_api_key", "authentication_error", &[401]),
    ("invalid_token", "authentication_error", &[401]),
    ("key_expired", "authentication_error", &[401]),
    ("insufficient_permissions", "authorization_error", &[403]),
    ("ip_not_allowed", "authorization_error", &[403]),
    (
        "invalid_request",
        "invalid_request_error",
        &[400, 405, 408, 413, 415],
    ),
    ("unsupported_grant_type", "invalid_request_error", &[400]),
    ("not_found", "invalid_request_error", &[404]),
    ("conflict", "invalid_request_error", &[409]),
    ("validation_failed", "invalid_request_error", &[422]),
    ("rate_limited", "rate_limit_error", &[429]),
];

/// RFC 6749 §5.2 (and RFC 6750, 7009, 8707) codes with their statuses.
const OAUTH_ERRORS: &[(&str, &[u16])] = &[
    ("invalid_request", &[400, 404, 405, 408, 413, 415]),
    ("invalid_client", &[401]),
    ("invalid_grant", &[400]),
    ("unauthorized_client", &[400]),
    ("unsupported_grant_type", &[400]),
    ("invalid_scope", &[400]),
    ("invalid_target", &[400]),
    ("access_denied", &[403]),
    ("temporarily_unavailable", &[429]),
];

/// A gateway, an admin token, an application to patch and one whose
/// secret bodies may carry.
struct Ctx {
    app: TestApp,
    admin: String,
    target: String,
    id: String,
    secret: String,
    /// Whether an error may not repeat even a piece of a long input (the
    /// ignored test).
    no_fragments: bool,
    /// Statuses seen in the current run, to show what the cases reached.
    statuses: std::sync::Mutex<std::collections::BTreeMap<u16, usize>>,
}

/// One gateway on its own runtime; proptest drives it synchronously.
struct Harness {
    ctx: Ctx,
    _redis: Option<RedisServer>,
    rt: tokio::runtime::Runtime,
}

impl Harness {
    fn start(redis: bool) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = redis.then(RedisServer::start);
        let url = server.as_ref().map(RedisServer::url);
        let ctx = rt.block_on(async move {
            let app = spawn_with(|s| {
                // Wrong secrets are the point here: no lockout.
                s.max_failures_per_ip = 1_000_000;
                if let Some(url) = url {
                    s.redis_url = Some(url);
                    s.redis_prefix = format!("t{}:", tessera::crypto::random::base62(10).unwrap());
                }
            })
            .await;
            let admin = app.admin_token().await;
            let (t, _) = app
                .create_app(json!({"name": "fuzz-target", "permissions": ["content:read"]}))
                .await;
            let (c, secret) = app
                .create_app(json!({"name": "fuzz-client", "permissions": ["content:*"]}))
                .await;
            Ctx {
                admin,
                target: t["id"].as_str().unwrap().to_owned(),
                id: c["id"].as_str().unwrap().to_owned(),
                secret,
                app,
                no_fragments: false,
                statuses: Default::default(),
            }
        });
        Self {
            ctx,
            _redis: server,
            rt,
        }
    }

    /// Runs a property over `CASES` generated values, with no persistence
    /// file and bounded shrinking (each case is a real request).
    fn run<S: Strategy>(
        &self,
        name: &str,
        strategy: S,
        test: impl Fn(&Self, S::Value) -> Result<(), TestCaseError>,
    ) {
        let config = Config {
            // PROPTEST_CASES runs more, for a longer hunt.
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(CASES),
            failure_persistence: None,
            max_shrink_iters: 256,
            ..Config::default()
        };
        let started = std::time::Instant::now();
        let mut runner = TestRunner::new(config);
        let result = runner.run(&strategy, |v| test(self, v));
        let statuses = std::mem::take(&mut *self.ctx.statuses.lock().unwrap());
        eprintln!("{name}: {:.1?}, statuses {statuses:?}", started.elapsed());
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
    }
}

/// A request body as generated.
#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
}

fn long_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{65,200}",
        "\\PC{65,120}",
        "[a-z_]{1,10}:[a-z]{60,130}",
    ]
}

fn short_string() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,20}",
        Just(SECRET.to_owned()),
        Just(APP.to_owned()),
        Just("app_token".to_owned()),
        Just("client_credentials".to_owned()),
        Just("refresh_token".to_owned()),
        Just("password".to_owned()),
        Just("content:read".to_owned()),
        Just("*".to_owned()),
        Just("public".to_owned()),
        Just("test".to_owned()),
        Just("gateway".to_owned()),
        Just("10.0.0.0/8".to_owned()),
        Just("2099-01-01T00:00:00Z".to_owned()),
        Just("cluster:c1/project:*".to_owned()),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![4 => short_string(), 1 => long_string()]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        string().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
            prop::collection::btree_map(string(), inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An object with `fields` (and now and then a stranger) set to values of
/// any shape.
fn object(fields: &'static [&'static str]) -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        6 => prop::sample::select(fields).prop_map(str::to_owned),
        1 => string(),
    ];
    prop::collection::btree_map(key, json_value(), 0..6)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A body: mostly well-typed for the endpoint (`typed`), so that requests
/// reach the service layer; else the endpoint's fields with values of any
/// shape, any JSON, or bytes.
fn body(
    fields: &'static [&'static str],
    typed: impl Strategy<Value = Value> + 'static,
) -> impl Strategy<Value = Body> {
    prop_oneof![
        6 => typed.prop_map(Body::Json),
        2 => object(fields).prop_map(Body::Json),
        1 => json_value().prop_map(Body::Json),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Body::Bytes),
        1 => long_string().prop_map(|s| Body::Bytes(s.into_bytes())),
    ]
}

/// A value of the expected kind, or now and then of any shape.
fn or_any(typed: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![30 => typed, 1 => json_value()].boxed()
}

/// An object holding each of `fields` with probability one half, and now
/// and then a field the endpoint does not know.
fn typed_object(fields: Vec<(&'static str, BoxedStrategy<Value>)>) -> impl Strategy<Value = Value> {
    let parts: Vec<_> = fields
        .into_iter()
        .map(|(k, v)| prop::option::of(v).prop_map(move |v| v.map(|v| (k.to_owned(), v))))
        .collect();
    (parts, prop::option::weighted(0.1, (string(), json_value()))).prop_map(|(parts, extra)| {
        let mut m: serde_json::Map<String, Value> = parts.into_iter().flatten().collect();
        if let Some((k, v)) = extra {
            m.insert(k, v);
        }
        Value::Object(m)
    })
}

fn one_of(choices: &'static [&'static str]) -> BoxedStrategy<Value> {
    or_any(prop_oneof![
        9 => prop::sample::select(choices).prop_map(Value::from),
        1 => string().prop_map(Value::from),
    ])
}

fn permission() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "*", "content:*", "content:read", "content:write", "workloads:read",
            "api_keys:manage", "billing:refund", "nope",
        ])
        .prop_map(str::to_owned),
        1 => string(),
    ]
}

fn list_of(item: impl Strategy<Value = String> + 'static) -> BoxedStrategy<Value> {
    or_any(prop::collection::vec(item, 0..4).prop_map(|v| json!(v)))
}

fn scope_words() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(permission(), 0..4).prop_map(|v| v.join(" ")),
        1 => string(),
    ]
}

fn token_typed() -> impl Strategy<Value = Value> {
    typed_object(vec![
        (
            "grantType",
            one_of(&["app_token", "password", "refresh_token"]),
        ),
        (
            "AppId",
            one_of(&[APP, "admin-test", "app_0000000000000000"]),
        ),
        ("AppSecret", one_of(&[SECRET, SECRET, "tsr_sk_live_x", ""])),
        ("scope", or_any(scope_words().prop_map(Value::from))),
        ("audience", one_of(&["tessera", "other"])),
    ])
    .prop_flat_map(|v| {
        // The aliases, and the other grants' fields, now and then.
        let alias = prop::sample::select(vec![
            ("AppSecret", "AppSecret"),
            ("AppSecret", "appSecret"),
            ("AppId", "appId"),
            ("AppSecret", "email"),
            ("AppSecret", "password"),
            ("AppSecret", "refreshToken"),
        ]);
        (Just(v), prop::option::weighted(0.3, alias))
    })
    .prop_map(|(mut v, alias)| {
        if let (Some((from, to)), Some(m)) = (alias, v.as_object_mut()) {
            if let Some(x) = m.remove(from) {
                m.insert(to.to_owned(), x);
            }
        }
        v
    })
}

fn app_typed() -> impl Strategy<Value = Value> {
    let rule = typed_object(vec![
        (
            "scope",
            one_of(&["cluster:c1", "cluster:c2/project:*", "*", "a:b/*/c:*"]),
        ),
        ("permissions", list_of(permission())),
        ("roles", list_of(string())),
    ]);
    typed_object(vec![
        ("name", or_any(string().prop_map(Value::from))),
        ("description", or_any(string().prop_map(Value::from))),
        ("type", one_of(&["secret", "public"])),
        ("environment", one_of(&["live", "test"])),
        ("permissions", list_of(permission())),
        ("roles", list_of(string())),
        (
            "accessRules",
            or_any(prop::collection::vec(rule, 0..3).prop_map(Value::from)),
        ),
        ("owner", one_of(&["gateway", "usr_0000000000000000"])),
        ("audiences", list_of(string())),
        (
            "allowedIps",
            list_of(prop_oneof![
                3 => prop::sample::select(vec!["10.0.0.0/8", "::1", "192.168.1.1", "::/0"])
                    .prop_map(str::to_owned),
                1 => string(),
            ]),
        ),
        (
            "expiresAt",
            one_of(&["2099-01-01T00:00:00Z", "2000-01-01T00:00:00Z", "tomorrow"]),
        ),
        (
            "tokenTtl",
            or_any(prop_oneof![0..700u64, any::<u64>()].prop_map(Value::from)),
        ),
    ])
    .prop_map(|mut v| {
        // A create needs a name; a missing one is the arbitrary bodies' job.
        if let Some(m) = v.as_object_mut() {
            m.entry("name").or_insert_with(|| json!("fuzzed"));
        }
        v
    })
}

fn rotate_typed() -> impl Strategy<Value = Value> {
    typed_object(vec![(
        "gracePeriodSeconds",
        or_any(prop_oneof![0..100u64, 86_000..87_000u64, any::<u64>()].prop_map(Value::from)),
    )])
}

const TOKEN_FIELDS: &[&str] = &[
    "grantType",
    "grant_type",
    "AppId",
    "appId",
    "AppSecret",
    "appSecret",
    "scope",
    "audience",
    "email",
    "password",
    "refreshToken",
];

const APP_FIELDS: &[&str] = &[
    "name",
    "description",
    "type",
    "environment",
    "permissions",
    "roles",
    "accessRules",
    "owner",
    "audiences",
    "allowedIps",
    "expiresAt",
    "tokenTtl",
];

const OAUTH_FIELDS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "resource",
    "refresh_token",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "requested_token_type",
];

/// Replaces the placeholders by the real secret and id.
fn fill(ctx: &Ctx, s: &str) -> String {
    s.replace(SECRET, &ctx.secret).replace(APP, &ctx.id)
}

fn fill_json(ctx: &Ctx, v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(fill(ctx, s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| fill_json(ctx, x)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (fill(ctx, k), fill_json(ctx, x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What a request carried that its error must not repeat: strings over
/// 64 bytes, except valid permission names (a 422 names a permission
/// outside the catalogue on purpose, docs/api.md, "Applications").
#[derive(Default)]
struct Inputs(Vec<String>);

impl Inputs {
    fn add(&mut self, s: &str) {
        if s.len() > 64 && tessera::domain::Permission::parse(s).is_err() {
            self.0.push(s.to_owned());
        }
    }

    /// Every string and key in `v`.
    fn add_json(&mut self, v: &Value) {
        match v {
            Value::String(s) => self.add(s),
            Value::Array(a) => a.iter().for_each(|x| self.add_json(x)),
            Value::Object(m) => {
                for (k, x) in m {
                    self.add(k);
                    self.add_json(x);
                }
            }
            _ => {}
        }
    }
}

/// A response, as the checks need it.
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    text: String,
}

async fn answer(res: reqwest::Response) -> Answer {
    Answer {
        status: res.status().as_u16(),
        www_authenticate: res
            .headers()
            .get("www-authenticate")
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned),
        text: res.text().await.unwrap(),
    }
}

/// What a response says: its JSON strings unescaped, one a line (or the
/// raw body when it is not JSON), so an echo hidden by escaping is found.
fn spoken(text: &str) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(m) => m.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let mut out = String::new();
            walk(&v, &mut out);
            out
        }
        Err(_) => text.to_owned(),
    }
}

/// Characters of a long input that, repeated together, count as an echo.
const ECHO_WINDOW: usize = 40;

/// The first piece of `input` of [`ECHO_WINDOW`] characters that `spoken`
/// repeats, if any.
fn echoed_piece(spoken: &str, input: &str) -> Option<String> {
    let chars: Vec<char> = input.chars().collect();
    chars
        .windows(ECHO_WINDOW)
        .map(|w| w.iter().collect::<String>())
        .find(|piece| spoken.contains(piece.as_str()))
}

/// Which error shape an endpoint answers with.
#[derive(Clone, Copy)]
enum Shape {
    Api,
    OAuth,
}

/// The properties, for one answer to a request that carried `inputs`.
fn check(ctx: &Ctx, a: &Answer, shape: Shape, inputs: &Inputs) -> Result<(), TestCaseError> {
    *ctx.statuses.lock().unwrap().entry(a.status).or_default() += 1;
    let said = || format!("{} {}", a.status, a.text);
    prop_assert!(a.status < 500, "a server error: {}", said());
    if a.status < 400 {
        return Ok(());
    }
    // An error never holds the secret a body carried (a record that
    // stores what its caller wrote, e.g. a description, may).
    prop_assert!(
        !a.text.contains(&ctx.secret),
        "a response holds the secret: {}",
        said()
    );
    let v: Value = serde_json::from_str(&a.text)
        .map_err(|_| TestCaseError::fail(format!("an error that is not JSON: {}", said())))?;
    match shape {
        Shape::Api => {
            let e = &v["error"];
            let (code, message, kind) = (
                e["code"].as_str(),
                e["message"].as_str(),
                e["type"].as_str(),
            );
            prop_assert!(message.is_some(), "no message: {}", said());
            let known = API_ERRORS
                .iter()
                .any(|(c, t, s)| Some(*c) == code && Some(*t) == kind && s.contains(&a.status));
            prop_assert!(known, "not a docs/errors.md error: {}", said());
            if a.status == 401 {
                prop_assert!(
                    a.www_authenticate
                        .as_deref()
                        .is_some_and(|h| h.starts_with("Bearer")),
                    "401 without WWW-Authenticate: Bearer: {}",
                    said()
                );
            }
        }
        Shape::OAuth => {
            let code = v["error"].as_str();
            let known = OAUTH_ERRORS
                .iter()
                .any(|(c, s)| Some(*c) == code && s.contains(&a.status));
            prop_assert!(known, "not an RFC 6749 error: {}", said());
            prop_assert!(
                v.get("error_description").is_none_or(Value::is_string),
                "{}",
                said()
            );
            if a.status == 401 {
                prop_assert!(a.www_authenticate.is_some(), "401 without WWW-Authenticate");
            }
        }
    }
    let spoken = spoken(&a.text);
    for s in &inputs.0 {
        prop_assert!(
            !spoken.contains(s.as_str()),
            "the error repeats {:?}: {}",
            s,
            said()
        );
        if ctx.no_fragments {
            let piece = echoed_piece(&spoken, s);
            prop_assert!(
                piece.is_none(),
                "the error repeats {:?} of the input {:?}: {}",
                piece,
                s,
                said()
            );
        }
    }
    Ok(())
}

/// Sends a JSON-endpoint body with an optional bearer token.
async fn send(
    ctx: &Ctx,
    method: Method,
    path: &str,
    bearer: bool,
    body: &Body,
) -> (Answer, Inputs) {
    let mut req = ctx.app.client.request(method, ctx.app.url(path));
    if bearer {
        req = req.bearer_auth(&ctx.admin);
    }
    let mut inputs = Inputs::default();
    let req = match body {
        Body::Json(v) => {
            let v = fill_json(ctx, v);
            inputs.add_json(&v);
            req.json(&v)
        }
        Body::Bytes(b) => {
            if let Ok(s) = std::str::from_utf8(b) {
                inputs.add(s);
            }
            req.header("content-type", "application/json")
                .body(b.clone())
        }
    };
    (answer(req.send().await.unwrap()).await, inputs)
}

fn bodies_get_clean_answers(no_fragments: bool) {
    let mut h = Harness::start(false);
    h.ctx.no_fragments = no_fragments;
    h.run(
        "POST /api/v1/token",
        body(TOKEN_FIELDS, token_typed()),
        |h, b| {
            h.rt.block_on(async {
                let (a, inputs) = send(&h.ctx, Method::POST, "/api/v1/token", false, &b).await;
                check(&h.ctx, &a, Shape::Api, &inputs)
            })
        },
    );
    h.run(
        "POST /api/v1/apps",
        body(APP_FIELDS, app_typed()),
        |h, b| {
            h.rt.block_on(async {
                let (a, inputs) = send(&h.ctx, Method::POST, "/api/v1/apps", true, &b).await;
                check(&h.ctx, &a, Shape::Api, &inputs)
            })
        },
    );
    h.run(
        "PATCH /api/v1/apps/{id}",
        body(APP_FIELDS, app_typed()),
        |h, b| {
            h.rt.block_on(async {
                let path = format!("/api/v1/apps/{}", h.ctx.target);
                let (a, inputs) = send(&h.ctx, Method::PATCH, &path, true, &b).await;
                check(&h.ctx, &a, Shape::Api, &inputs)
            })
        },
    );
    // Rotate reads its (optional) body by hand.
    h.run(
        "POST /api/v1/apps/{id}/rotate",
        body(&["gracePeriodSeconds"], rotate_typed()),
        |h, b| {
            h.rt.block_on(async {
                let path = format!("/api/v1/apps/{}/rotate", h.ctx.target);
                let (a, inputs) = send(&h.ctx, Method::POST, &path, true, &b).await;
                check(&h.ctx, &a, Shape::Api, &inputs)
            })
        },
    );
}

#[test]
fn arbitrary_bodies_get_clean_answers() {
    bodies_get_clean_answers(false);
}

/// No error repeats even a piece of a long input.
#[test]
fn arbitrary_bodies_get_answers_without_pieces_of_the_input() {
    bodies_get_clean_answers(true);
}

/// A form body for `/oauth/token`: fields (known or not, repeated or not)
/// with string values, and now and then HTTP Basic credentials of any
/// content.
fn form() -> impl Strategy<Value = (Vec<(String, String)>, Option<Vec<u8>>)> {
    let key = prop_oneof![
        6 => prop::sample::select(OAUTH_FIELDS).prop_map(str::to_owned),
        1 => string(),
    ];
    let basic = prop_oneof![
        Just(format!("{APP}:{SECRET}").into_bytes()),
        prop::collection::vec(any::<u8>(), 0..80),
        string().prop_map(String::into_bytes),
        "%[0-9A-Fa-f]{0,2}.{0,10}".prop_map(String::into_bytes),
    ];
    let typed = |k: &'static str, choices: &'static [&'static str]| {
        prop::option::of(prop_oneof![
            4 => prop::sample::select(choices).prop_map(str::to_owned),
            1 => string(),
        ])
        .prop_map(move |v| v.map(|v| (k.to_owned(), v)))
    };
    let known = (
        typed(
            "grant_type",
            &[
                "client_credentials",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:token-exchange",
                "password",
            ],
        ),
        typed("client_id", &[APP, "admin-test"]),
        typed("client_secret", &[SECRET, ""]),
        typed(
            "scope",
            &["content:read", "content:read content:write", "*", "nope:x"],
        ),
        typed("audience", &["tessera", "other"]),
        typed("resource", &["https://api.example.com", "x"]),
        typed("refresh_token", &["x"]),
        typed(
            "subject_token_type",
            &["urn:ietf:params:oauth:token-type:access_token"],
        ),
        typed("subject_token", &["x.y.z"]),
    )
        .prop_map(|t| {
            vec![t.0, t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
        });
    let fields = prop_oneof![
        3 => known,
        1 => prop::collection::vec((key, string()), 0..8),
    ];
    (fields, prop::option::weighted(0.3, basic))
}

#[test]
fn arbitrary_oauth_forms_get_rfc6749_answers() {
    use base64::Engine;
    let h = Harness::start(false);
    h.run("POST /oauth/token", form(), |h, (fields, basic)| {
        h.rt.block_on(async {
            let ctx = &h.ctx;
            let fields: Vec<(String, String)> = fields
                .iter()
                .map(|(k, v)| (fill(ctx, k), fill(ctx, v)))
                .collect();
            let mut inputs = Inputs::default();
            for (k, v) in &fields {
                inputs.add(k);
                inputs.add(v);
            }
            let mut req = ctx
                .app
                .client
                .post(ctx.app.url("/oauth/token"))
                .form(&fields);
            if let Some(b) = basic {
                let b = fill(ctx, &String::from_utf8_lossy(&b)).into_bytes();
                inputs.add(&String::from_utf8_lossy(&b));
                let enc = base64::engine::general_purpose::STANDARD.encode(&b);
                req = req.header("authorization", format!("Basic {enc}"));
            }
            let a = answer(req.send().await.unwrap()).await;
            check(ctx, &a, Shape::OAuth, &inputs)
        })
    });
}

/// A cursor: arbitrary text, base64url of arbitrary bytes, or base64url of
/// plausible keys.
fn cursor() -> impl Strategy<Value = String> {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    prop_oneof![
        any::<String>(),
        string(),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(move |b| b64(&b)),
        prop_oneof![
            "app_[A-Za-z0-9]{0,20}",
            "usr_[A-Za-z0-9]{0,20}",
            "[0-9]{20}-[A-Za-z0-9]{8}",
            "\\PC{0,40}",
            "[\\x00-\\x1f~\\xff]{1,10}",
            "[a-z]{300,600}",
        ]
        .prop_map(move |s| b64(s.as_bytes())),
    ]
}

/// Every paged list, an arbitrary cursor and (now and then) limit.
fn list_call() -> impl Strategy<Value = (&'static str, &'static str, String, Option<String>)> {
    let list = prop::sample::select(vec![
        ("/api/v1/apps", "cursor"),
        ("/api/v1/audit", "cursor"),
        ("/api/v1/users", "cursor"),
        ("/api/v1/revocations", "since"),
    ]);
    let limit = prop::option::weighted(
        0.2,
        prop_oneof![Just("0".to_owned()), Just("201".to_owned()), ".{0,8}"],
    );
    (list, cursor(), limit).prop_map(|((path, param), c, l)| (path, param, c, l))
}

fn cursors_get_clean_answers(redis: bool) {
    let h = Harness::start(redis);
    h.rt.block_on(async {
        // Something to page through.
        for i in 0..3 {
            h.ctx
                .app
                .create_app(json!({"name": format!("page-{i}")}))
                .await;
        }
    });
    h.run(
        "list cursors",
        list_call(),
        |h, (path, param, cursor, limit)| {
            h.rt.block_on(async {
                let ctx = &h.ctx;
                let mut query = vec![(param, cursor.clone())];
                if let Some(l) = &limit {
                    query.push(("limit", l.clone()));
                }
                let res = ctx
                    .app
                    .client
                    .get(ctx.app.url(path))
                    .bearer_auth(&ctx.admin)
                    .query(&query)
                    .send()
                    .await
                    .unwrap();
                let a = answer(res).await;
                let mut inputs = Inputs::default();
                for s in [Some(cursor), limit].iter().flatten() {
                    inputs.add(s);
                }
                check(ctx, &a, Shape::Api, &inputs)?;
                prop_assert!(
                    matches!(a.status, 200 | 400 | 422),
                    "{path}: {} {}",
                    a.status,
                    a.text
                );
                Ok(())
            })
        },
    );
}

#[test]
fn arbitrary_cursors_get_clean_answers_embedded() {
    cursors_get_clean_answers(false);
}

#[test]
fn arbitrary_cursors_get_clean_answers_redis() {
    cursors_get_clean_answers(true);
}

/// The bodies behind a method the route does not have still get a JSON
/// error (405 with `Allow`), whatever they hold.
#[test]
fn arbitrary_bodies_on_wrong_methods_get_clean_answers() {
    let h = Harness::start(false);
    h.run(
        "wrong methods",
        (
            prop::sample::select(vec![
                (Method::PUT, "/api/v1/token"),
                (Method::DELETE, "/api/v1/apps"),
                (Method::PUT, "/api/v1/apps/x"),
                (Method::GET, "/api/v1/apps/bulk-delete"),
            ]),
            body(APP_FIELDS, app_typed()),
        ),
        |h, ((method, path), b)| {
            h.rt.block_on(async {
                let (a, inputs) = send(&h.ctx, method, path, true, &b).await;
                check(&h.ctx, &a, Shape::Api, &inputs)?;
                prop_assert_eq!(a.status, 405, "{}", a.text);
                Ok(())
            })
        },
    );
}

/// docs/errors.md: "`/oauth/*` errors use RFC 6749's shape". A wrong method or an
/// unknown path under `/oauth/` answers in the `/api` shape instead
/// (minimal input: `GET /oauth/token` with no body gives 405
/// `{"error":{"code":"invalid_request",…}}`).
#[test]
fn wrong_methods_and_paths_under_oauth_get_rfc6749_answers() {
    let h = Harness::start(false);
    h.run(
        "wrong methods under /oauth",
        (
            prop::sample::select(vec![
                (Method::GET, "/oauth/token"),
                (Method::PUT, "/oauth/revoke"),
                (Method::DELETE, "/oauth/introspect"),
                (Method::POST, "/oauth/nope"),
            ]),
            body(OAUTH_FIELDS, json_value()),
        ),
        |h, ((method, path), b)| {
            h.rt.block_on(async {
                let (a, inputs) = send(&h.ctx, method, path, false, &b).await;
                check(&h.ctx, &a, Shape::OAuth, &inputs)
            })
        },
    );
}

/// The long value the echo regressions send: printable, over 64 bytes, so
/// `shown` would never quote it.
fn long_value() -> String {
    format!("x{}", "A".repeat(79))
}

/// Sends `body` to `path` with the admin token; the error's message.
async fn message_for(
    app: &TestApp,
    method: Method,
    path: &str,
    bearer: bool,
    body: Value,
) -> String {
    let mut req = app.client.request(method, app.url(path));
    if bearer {
        req = req.bearer_auth(app.admin_token().await);
    }
    let res = req.json(&body).send().await.unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let v: Value = res.json().await.unwrap();
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An unknown role is not named in full, whatever its length or content
/// (found by the body fuzzing: a secret pasted in the wrong field came back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_role_is_not_repeated() {
    let app = spawn_app().await;
    let m = message_for(
        &app,
        Method::POST,
        "/api/v1/apps",
        true,
        json!({"name": "r", "roles": [long_value()]}),
    )
    .await;
    assert!(!m.contains(&long_value()), "{m}");
}

/// An unknown owner is not quoted in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_owner_is_not_repeated() {
    let app = spawn_app().await;
    let m = message_for(
        &app,
        Method::POST,
        "/api/v1/apps",
        true,
        json!({"name": "o", "owner": long_value()}),
    )
    .await;
    assert!(!m.contains(&long_value()), "{m}");
}

/// An audience the application may not use is not quoted in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_audience_is_not_repeated() {
    let app = spawn_app().await;
    let (_, secret) = app.create_app(json!({"name": "a"})).await;
    let m = message_for(
        &app,
        Method::POST,
        "/api/v1/token",
        false,
        json!({"AppSecret": secret, "audience": long_value()}),
    )
    .await;
    assert!(!m.contains(&long_value()), "{m}");
}

/// A field name holding a backtick throws `scrub` out of step: what follows
/// the backtick is repeated, and the list of expected fields leaks around
/// ellipses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_field_with_a_backtick_is_not_repeated() {
    let app = spawn_app().await;
    let key = format!("`{}", long_value());
    let m = message_for(
        &app,
        Method::POST,
        "/api/v1/apps",
        true,
        json!({"name": "f", key: 1}),
    )
    .await;
    assert!(!m.contains(&long_value()), "{m}");
}

/// An unparsable `allowedIps` entry is not quoted in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_ip_is_not_repeated() {
    let app = spawn_app().await;
    let m = message_for(
        &app,
        Method::POST,
        "/api/v1/apps",
        true,
        json!({"name": "i", "allowedIps": [long_value()]}),
    )
    .await;
    assert!(!m.contains(&long_value()), "{m}");
}

/// A well-formed permission that is a pasted secret (up to 128 bytes parse)
/// is named by its length only: in a scope the catalogue does not know, and
/// in an application's permissions (found by the body fuzzing in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_unknown_permission_is_not_repeated() {
    let app = spawn_app().await;
    let (_, secret) = app.create_app(json!({"name": "p"})).await;
    let perm = format!("x:{}", long_value().to_lowercase());
    let m = message_for(
        &app,
        Method::POST,
        "/api/v1/token",
        false,
        json!({"AppSecret": secret, "scope": format!("content:read {perm}")}),
    )
    .await;
    assert!(m.contains("not in the permission catalogue"), "{m}");
    assert!(!m.contains(&perm[2..]), "{m}");
    let m = message_for(
        &app,
        Method::POST,
        "/api/v1/apps",
        true,
        json!({"name": "q", "permissions": ["content:read", perm]}),
    )
    .await;
    assert!(m.contains("not in the catalogue"), "{m}");
    assert!(!m.contains(&perm[2..]), "{m}");
}
