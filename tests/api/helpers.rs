//! Test harness: a real gateway on a free loopback port with fresh
//! directories, and helpers that speak HTTP to it.

use secrecy::SecretString;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tempfile::TempDir;
use tessera::{Application, Settings};

pub const ADMIN_ID: &str = "admin-test";
pub const ADMIN_SECRET: &str = "admin-secret-for-tests-0123456789";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    keys_dir: PathBuf,
    redis_prefix: String,
    issuer: String,
    /// Held so the directories live as long as the server.
    _dirs: TempDir,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop the workers; the test runtime may already be gone.
        let h = self.handle.clone();
        std::mem::drop(h.stop(false));
    }
}

pub fn base_settings(dir: &Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.join("data"),
        keys_dir: dir.join("keys"),
        workers: Some(2),
        admin_app_id: Some(ADMIN_ID.into()),
        admin_app_secret: Some(SecretString::from(ADMIN_SECRET)),
        permissions: serde_json::from_value(json!([
            {"name": "content:read", "description": "Read content", "public": true},
            {"name": "content:write", "description": "Write content"},
            {"name": "workloads:read", "public": true},
            {"name": "workloads:write"}
        ]))
        .unwrap(),
        ..Settings::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dirs = tempfile::tempdir().unwrap();
    let mut settings = base_settings(dirs.path());
    tweak(&mut settings);
    spawn_in(dirs, settings).await
}

/// A gateway on the Redis at `redis_url` under `prefix`, issuing as
/// `issuer`, with its key ring in `keys` when given: gateways behind one
/// balancer share the three (operators share the ring by mounting one
/// directory).
pub async fn spawn_on_redis(
    redis_url: &str,
    prefix: &str,
    issuer: &str,
    keys: Option<PathBuf>,
) -> TestApp {
    spawn_with(|s| {
        s.redis_url = Some(redis_url.to_owned());
        s.redis_prefix = prefix.to_owned();
        s.issuer = Some(issuer.to_owned());
        if let Some(k) = keys {
            s.keys_dir = k;
        }
    })
    .await
}

/// Two gateways acting as one on the Redis at `redis_url`, under a fresh
/// prefix, sharing `issuer` and the first one's key ring.
pub async fn pair_on_redis(redis_url: &str, issuer: &str) -> (TestApp, TestApp) {
    let prefix = format!("t{}:", tessera::crypto::random::base62(10).unwrap());
    let a = spawn_on_redis(redis_url, &prefix, issuer, None).await;
    let b = spawn_on_redis(redis_url, &prefix, issuer, Some(a.keys_dir())).await;
    (a, b)
}

/// The key-encryption key of every Redis-backed test gateway that sets
/// none: gateways sharing a prefix must share it.
pub const TEST_KEK: &str = "dGVzc2VyYS10ZXN0LWtlay0zMi1ieXRlcy1sb25nISE=";

pub async fn spawn_in(dirs: TempDir, mut settings: Settings) -> TestApp {
    if settings.redis_url.is_some() && settings.kek.is_none() && settings.kek_file.is_none() {
        settings.kek = Some(SecretString::from(TEST_KEK));
    }
    let keys_dir = settings.keys_dir.clone();
    let configured_issuer = settings.issuer.clone();
    let redis_prefix = settings.redis_prefix.clone();
    // A gateway stopped just before on the same data directory may still
    // hold the embedded store's lock while its workers wind down.
    let mut tries = 0;
    let app = loop {
        match Application::build(settings.clone()).await {
            Ok(app) => break app,
            Err(e) if tries < 100 && e.to_string().contains("Cannot acquire lock") => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("gateway builds: {e:?}"),
        }
    };
    let address = format!("http://127.0.0.1:{}", app.port());
    let issuer = configured_issuer.unwrap_or_else(|| address.clone());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        keys_dir,
        redis_prefix,
        issuer,
        _dirs: dirs,
        handle,
    }
}

impl TestApp {
    pub fn keys_dir(&self) -> PathBuf {
        self.keys_dir.clone()
    }

    /// The issuer this gateway puts in its tokens.
    pub fn issuer_hint(&self) -> String {
        self.issuer.clone()
    }

    pub fn settings_prefix(&self) -> &str {
        &self.redis_prefix
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /api/v1/token` with an id and secret.
    pub async fn exchange(&self, id: Option<&str>, secret: &str) -> reqwest::Response {
        let mut body = json!({"grantType": "app_token", "AppSecret": secret});
        if let Some(id) = id {
            body["AppId"] = json!(id);
        }
        self.post_json("/api/v1/token", &body).await
    }

    pub async fn token_for(&self, id: Option<&str>, secret: &str) -> String {
        let res = self.exchange(id, secret).await;
        assert_eq!(
            res.status(),
            200,
            "exchange failed: {}",
            res.text().await.unwrap()
        );
        let body: Value = res.json().await.unwrap();
        body["accessToken"].as_str().unwrap().to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token_for(Some(ADMIN_ID), ADMIN_SECRET).await
    }

    pub async fn authed(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    /// Creates an application as the admin; returns (body, secret).
    pub async fn create_app(&self, body: Value) -> (Value, String) {
        let token = self.admin_token().await;
        let res = self
            .client
            .post(self.url("/api/v1/apps"))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            201,
            "create failed: {}",
            res.text().await.unwrap()
        );
        let v: Value = res.json().await.unwrap();
        let secret = v["secret"].as_str().unwrap().to_owned();
        (v, secret)
    }

    /// `GET path` without credentials: the JSON body, whatever the status.
    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn jwks(&self) -> String {
        self.client
            .get(self.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Verifies a token with the plain jsonwebtoken crate and the published
/// JWKS, as any downstream service would.
pub fn verify_with_jwks(jwks: &str, token: &str, iss: &str, aud: &str) -> Result<Value, String> {
    use jsonwebtoken::jwk::JwkSet;
    let set: JwkSet = serde_json::from_str(jwks).map_err(|e| e.to_string())?;
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = set.find(&kid).ok_or("unknown kid")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_issuer(&[iss]);
    v.set_audience(&[aud]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

/// Decodes a JWT's claims without checking anything (for assertions).
pub fn claims_of(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Asserts that `needle` occurs in no file under `dir`.
pub fn assert_absent_under(dir: &Path, needle: &str) {
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).unwrap();
        let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
        assert!(!found, "secret found in clear in {}", f.display());
    }
}

/// The docs/errors.md error code of a response body.
pub async fn error_code(res: reqwest::Response) -> (u16, String, Value) {
    let status = res.status().as_u16();
    let body: Value = res.json().await.unwrap();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    (status, code, body)
}

/// An admin call with a fresh admin token, and an optional JSON body.
pub async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let admin = app.admin_token().await;
    let mut req = app.authed(method, path, &admin).await;
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

/// Asserts the status and returns the JSON body (`Null` when empty).
pub async fn ok(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}
