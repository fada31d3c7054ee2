//! The console's applications page with many applications (docs/api.md, "The console"):
//! server time of the first page, a search, and a filter, at p50 and p99.
//!
//! Seeds N applications (default 10,000) straight into a fresh embedded
//! store (their hashes are placeholders: nothing here exchanges them),
//! starts the gateway on it in this process, signs a person in through
//! the console as a browser does, then requests each page sequentially
//! over loopback HTTP. One request at a time, so each figure is one
//! request's time through the server (plus a loopback round trip).
//!
//! `cargo run --release --example console_pages [N] [REQUESTS]`
//! (default 10000 applications, 200 requests per page).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use serde_json::json;
use tessera::domain::{Application, Environment, KeyType, Permission};
use tessera::store::embedded::EmbeddedStore;
use tessera::store::{AppStore, StoredApp};
use tessera::{Application as Gateway, Settings};

type Error = Box<dyn std::error::Error>;

const ADMIN_ID: &str = "bench-admin";
const ADMIN_SECRET: &str = "bench-admin-secret-0123456789abcdef";
const EMAIL: &str = "console-bench@example.com";
const PASSWORD: &str = "console-bench-password";

fn app(n: usize) -> Result<StoredApp, Error> {
    let t = Utc
        .timestamp_opt(1_700_000_000 + i64::try_from(n)?, 0)
        .single()
        .ok_or("time")?;
    let env = if n % 3 == 0 {
        Environment::Test
    } else {
        Environment::Live
    };
    Ok(StoredApp {
        app: Application {
            id: format!("app_bench{n:06}"),
            name: format!(
                "service {n:05} {}",
                ["billing", "search", "ingest", "reports"][n % 4]
            ),
            description: "seeded by examples/console_pages.rs".into(),
            owner: "gateway".into(),
            key_type: KeyType::Secret,
            environment: env,
            prefix: format!("tsr_sk_{}_{n:06}", env.as_str()),
            roles: vec![],
            permissions: vec![Permission::parse("content:read")?],
            access_rules: vec![],
            audiences: vec![],
            allowed_ips: vec![],
            expires_at: None,
            token_ttl: None,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: Vec::new(),
            rate_limit: None,
            revoked_at: None,
            leaked_at: None,
            created_at: t,
            updated_at: t,
            last_used_at: Some(t),
            last_used_ip: Some("192.0.2.10".into()),
            use_count: u64::try_from(n)?,
        },
        secret_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2VlZGVk$placeholderplaceholder".into(),
        secret_hint: None,
        previous_secret: None,
    })
}

/// A browser: keeps cookies, follows no redirect by itself.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, res: &reqwest::Response) {
        for v in res.headers().get_all("set-cookie") {
            let Ok(s) = v.to_str() else { continue };
            let Some((k, val)) = s.split(';').next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            if val.is_empty() || s.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), val.to_owned());
            }
        }
    }

    fn abs(&self, p: &str) -> String {
        if p.starts_with("http") {
            p.to_owned()
        } else {
            format!("{}{p}", self.base)
        }
    }

    async fn get(&mut self, p: &str) -> Result<reqwest::Response, Error> {
        let res = self
            .http
            .get(self.abs(p))
            .header("cookie", self.cookie_header())
            .send()
            .await?;
        self.keep(&res);
        Ok(res)
    }

    async fn post(
        &mut self,
        p: &str,
        form: &[(String, String)],
    ) -> Result<reqwest::Response, Error> {
        let res = self
            .http
            .post(self.abs(p))
            .header("cookie", self.cookie_header())
            .header("origin", self.base.clone())
            .form(form)
            .send()
            .await?;
        self.keep(&res);
        Ok(res)
    }
}

fn location(res: &reqwest::Response) -> Result<String, Error> {
    Ok(res
        .headers()
        .get("location")
        .ok_or("expected a redirect")?
        .to_str()?
        .to_owned())
}

/// The hidden fields of the sign-in form.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let attr = |part: &str, name: &str| -> Option<String> {
        let v = part
            .split(&format!("{name}=\""))
            .nth(1)?
            .split('"')
            .next()?;
        Some(
            v.replace("&amp;", "&")
                .replace("&quot;", "\"")
                .replace("&#39;", "'"),
        )
    };
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|p| Some((attr(p, "name")?, attr(p, "value")?)))
        .collect()
}

async fn sign_in(b: &mut Browser) -> Result<(), Error> {
    let login = location(&b.get("/console").await?)?;
    let authorize = location(&b.get(&login).await?)?;
    let page = b.get(&authorize).await?.text().await?;
    let mut form = hidden_fields(&page);
    form.push(("email".into(), EMAIL.into()));
    form.push(("password".into(), PASSWORD.into()));
    let callback = location(&b.post("/oauth/authorize", &form).await?)?;
    let back = location(&b.get(&callback).await?)?;
    let res = b.get(&back).await?;
    if res.status() != 200 {
        return Err(format!("console home answered {}", res.status()).into());
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure(b: &mut Browser, what: &str, path: &str, n: usize) -> Result<(), Error> {
    // Warm caches and connections first.
    for _ in 0..5 {
        b.get(path).await?.bytes().await?;
    }
    let mut times = Vec::with_capacity(n);
    let mut bytes = 0;
    let mut rows = 0;
    for _ in 0..n {
        let t = Instant::now();
        let res = b.get(path).await?;
        if res.status() != 200 {
            return Err(format!("{path} answered {}", res.status()).into());
        }
        let body = res.text().await?;
        times.push(t.elapsed());
        bytes = body.len();
        rows = body.matches("<tr").count().saturating_sub(1);
    }
    times.sort();
    println!(
        "{what:<34} p50 {:>7.2} ms   p99 {:>7.2} ms   ({rows} rows, {} KiB)",
        percentile(&times, 0.50).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0,
        bytes / 1024
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(10_000), |a| a.parse())?;
    let requests: usize = args.next().map_or(Ok(200), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");

    let t = Instant::now();
    {
        let store = EmbeddedStore::open(&data)?;
        for i in 0..n {
            store.insert(&app(i)?).await?;
        }
    }
    println!(
        "seeded {n} applications in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let settings = Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: data,
        keys_dir: dir.path().join("keys"),
        admin_app_id: Some(ADMIN_ID.into()),
        admin_app_secret: Some(SecretString::from(ADMIN_SECRET)),
        permissions: serde_json::from_value(json!([
            {"name": "content:read", "description": "Read content", "public": true}
        ]))?,
        ..Settings::default()
    };
    let gw = Gateway::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", gw.port());
    let handle = gw.handle();
    tokio::spawn(gw.run_until_stopped());

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let token: serde_json::Value = http
        .post(format!("{base}/api/v1/token"))
        .json(&json!({"appId": ADMIN_ID, "appSecret": ADMIN_SECRET}))
        .send()
        .await?
        .json()
        .await?;
    let token = token["accessToken"]
        .as_str()
        .or_else(|| token["access_token"].as_str())
        .ok_or("no admin token")?
        .to_owned();
    let created = http
        .post(format!("{base}/api/v1/users"))
        .bearer_auth(&token)
        .json(&json!({"email": EMAIL, "name": "Bench", "permissions": ["api_keys:read"], "password": PASSWORD}))
        .send()
        .await?;
    if created.status() != 201 {
        return Err(format!("user not created: {}", created.text().await?).into());
    }
    let mut b = Browser {
        http,
        base: base.clone(),
        cookies: HashMap::new(),
    };
    sign_in(&mut b).await?;

    println!("{n} applications, {requests} sequential requests per page, embedded store");
    measure(&mut b, "first page (50 rows)", "/console/apps", requests).await?;
    measure(
        &mut b,
        "search, one match",
        "/console/apps?q=service+04242",
        requests,
    )
    .await?;
    measure(
        &mut b,
        "search, a quarter match",
        "/console/apps?q=billing",
        requests,
    )
    .await?;
    measure(
        &mut b,
        "filter environment=test",
        "/console/apps?environment=test",
        requests,
    )
    .await?;
    handle.stop(true).await;
    Ok(())
}
