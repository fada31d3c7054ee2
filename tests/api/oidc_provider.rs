//! A real OpenID Connect provider for the single sign-on tests:
//! `node tests/oidc/provider.mjs` (oidc-provider from npm) on a free
//! loopback port, with its accounts and clients in a temporary JSON file the
//! test may rewrite between sign-ins; killed on drop. Plus a browser that
//! keeps each origin's cookies apart, follows redirects by hand, and keeps
//! the time it waited on each origin.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;
use tempfile::TempDir;
use tessera::crypto::opaque::pkce_s256;

/// The PKCE verifier the tests' own clients use.
pub const VERIFIER: &str = "oidc-test-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

/// `node tests/oidc/provider.mjs`, with its directory file; killed on drop.
pub struct OidcProvider {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`, as the provider names itself.
    pub issuer: String,
    directory: PathBuf,
    dir: TempDir,
}

impl OidcProvider {
    /// Starts the provider with `directory` (`{"accounts": {id: claims},
    /// "clients": [metadata]}`) and waits until its discovery answers.
    pub async fn start(directory: &Value) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
        assert!(
            root.join("node_modules/oidc-provider").is_dir(),
            "tests/oidc/node_modules is missing: run `bash .ci/run install_oidc_provider` \
             (npm ci of oidc-provider) before the SSO tests"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.json");
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let mut me = Self {
            child: None,
            issuer: String::new(),
            directory: path,
            dir,
        };
        me.write(directory);
        let mut child = Command::new("node")
            .arg(root.join("provider.mjs"))
            .args(["--port", "0", "--directory"])
            .arg(&me.directory)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("node must be installed to run the SSO tests (.ci/run install_oidc_provider)");
        let stdout = child.stdout.take().unwrap();
        me.child = Some(child);

        // The first line names the address; the rest is drained so the
        // provider never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("oidc-provider did not start: {}", me.stderr()));
        me.issuer = line
            .strip_prefix("oidc-provider listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();

        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let res = http
                .get(me.url("/.well-known/openid-configuration"))
                .send()
                .await;
            if matches!(&res, Ok(r) if r.status() == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "oidc-provider discovery never answered: {}",
                me.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        me
    }

    /// What the provider wrote on stderr (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The directory file as it stands.
    pub fn directory(&self) -> Value {
        serde_json::from_slice(&std::fs::read(&self.directory).unwrap()).unwrap()
    }

    /// Replaces the directory file whole (write then rename, so the provider
    /// never reads half of it); the next lookup sees the change.
    pub fn write(&self, directory: &Value) {
        let tmp = self.directory.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(directory).unwrap()).unwrap();
        std::fs::rename(&tmp, &self.directory).unwrap();
    }

    /// Changes the directory file in place.
    pub fn edit(&self, change: impl FnOnce(&mut Value)) {
        let mut d = self.directory();
        change(&mut d);
        self.write(&d);
    }

    /// The provider's `/auth` URL for a code flow with PKCE S256.
    pub fn authorize_url(
        &self,
        client_id: &str,
        redirect: &str,
        scope: &str,
        nonce: &str,
    ) -> String {
        let mut u = url::Url::parse(&self.url("/auth")).unwrap();
        u.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect)
            .append_pair("scope", scope)
            .append_pair("state", "provider-state")
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", &pkce_s256(VERIFIER))
            .append_pair("code_challenge_method", "S256");
        u.into()
    }

    /// Signs `account` in at the provider through `browser`, starting at
    /// `start` (any URL of any origin), following redirects until one
    /// points under `stop`. The provider's sign-in form is filled in when
    /// it shows; any other page ends the walk.
    pub async fn sign_in(
        &self,
        browser: &mut Browser,
        start: &str,
        account: &str,
        stop: &str,
    ) -> Landing {
        let landing = browser.follow(start, stop).await;
        match landing {
            Landing::Page {
                ref url,
                ref body,
                status,
            } if url.starts_with(&self.issuer) && status == 200 => {
                let Some(action) = form_action(body) else {
                    return landing;
                };
                let action = url::Url::parse(url).unwrap().join(&action).unwrap();
                let res = browser
                    .post_form(action.as_str(), &[("login".into(), account.into())])
                    .await;
                browser.land(action.as_str(), res, stop).await
            }
            other => other,
        }
    }

    /// An ID token for `account`, through the code flow of the client
    /// `client_id` (secret `secret`, redirect `redirect`) that the
    /// directory registers: what a service holding the user's provider
    /// session would present in a token exchange.
    pub async fn id_token_for(
        &self,
        client_id: &str,
        secret: &str,
        redirect: &str,
        account: &str,
        scope: &str,
    ) -> Value {
        let mut b = Browser::new();
        let start = self.authorize_url(client_id, redirect, scope, "n-provider");
        let landing = self.sign_in(&mut b, &start, account, redirect).await;
        let Landing::Redirect(loc) = landing else {
            panic!("the provider did not send the client back: {landing:?}");
        };
        let q = query_of(&loc);
        assert_eq!(q.get("iss"), Some(&self.issuer), "{loc}");
        let code = q.get("code").unwrap_or_else(|| panic!("no code in {loc}"));
        let res = reqwest::Client::new()
            .post(self.url("/token"))
            .basic_auth(client_id, Some(secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect),
                ("code_verifier", VERIFIER),
            ])
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `Location` header.
    pub fn location(&self) -> &str {
        self.headers["location"].to_str().unwrap()
    }
}

/// Where following redirects ended.
#[derive(Debug)]
pub enum Landing {
    /// A redirect to a URL under the stop prefix (not fetched).
    Redirect(String),
    /// A page that is not a redirect.
    Page {
        url: String,
        status: u16,
        body: String,
    },
}

impl Landing {
    /// The page, or a panic naming the redirect.
    pub fn page(self) -> (String, u16, String) {
        match self {
            Landing::Page { url, status, body } => (url, status, body),
            Landing::Redirect(loc) => panic!("expected a page, got a redirect to {loc}"),
        }
    }

    /// The redirect, or a panic showing the page.
    pub fn redirect(self) -> String {
        match self {
            Landing::Redirect(loc) => loc,
            Landing::Page { url, status, body } => {
                panic!("expected a redirect, got {status} at {url}: {body}")
            }
        }
    }
}

/// A browser played by hand: cookies kept per origin (host and port, so the
/// gateway's and the provider's never mix), redirects never followed by the
/// client, the time waited on each origin added up.
pub struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, HashMap<String, String>>,
    /// Time spent waiting on each origin (`host:port`), whole answers.
    pub waited: HashMap<String, Duration>,
    /// Requests sent to each origin.
    pub requests: HashMap<String, usize>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

fn origin_of(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        u.host_str().unwrap(),
        u.port_or_known_default().unwrap()
    )
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
            waited: HashMap::new(),
            requests: HashMap::new(),
        }
    }

    /// The cookie `name` this browser holds for `url`'s origin.
    pub fn cookie(&self, url: &str, name: &str) -> Option<&String> {
        self.cookies.get(&origin_of(url))?.get(name)
    }

    /// Drops every cookie of `url`'s origin (a fresh session there, the
    /// others kept).
    pub fn forget(&mut self, url: &str) {
        self.cookies.remove(&origin_of(url));
    }

    /// Requests sent to `url`'s origin so far.
    pub fn requests_to(&self, url: &str) -> usize {
        self.requests
            .get(&origin_of(url))
            .copied()
            .unwrap_or_default()
    }

    /// Time spent waiting on `url`'s origin so far.
    pub fn waited_on(&self, url: &str) -> Duration {
        self.waited
            .get(&origin_of(url))
            .copied()
            .unwrap_or_default()
    }

    fn cookie_header(&self, origin: &str) -> String {
        self.cookies
            .get(origin)
            .map(|jar| {
                jar.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    fn keep(&mut self, origin: &str, headers: &HeaderMap) {
        let jar = self.cookies.entry(origin.to_owned()).or_default();
        for v in headers.get_all("set-cookie") {
            let s = v.to_str().unwrap();
            let pair = s.split(';').next().unwrap();
            let (k, val) = pair.split_once('=').unwrap();
            let expired = val.is_empty()
                || s.to_ascii_lowercase().contains("max-age=0")
                || s.contains("1970");
            if expired {
                jar.remove(k.trim());
            } else {
                jar.insert(k.trim().to_owned(), val.to_owned());
            }
        }
    }

    async fn send(&mut self, url: &str, req: reqwest::RequestBuilder) -> Answer {
        let origin = origin_of(url);
        let req = req.header("cookie", self.cookie_header(&origin));
        let started = Instant::now();
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        // The whole answer counts: the body is read before the clock stops.
        let body = res.text().await.unwrap();
        *self.waited.entry(origin.clone()).or_default() += started.elapsed();
        *self.requests.entry(origin.clone()).or_default() += 1;
        self.keep(&origin, &headers);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        let req = self.http.get(url);
        self.send(url, req).await
    }

    /// Posts a form, with the `Origin` a browser would send.
    pub async fn post_form(&mut self, url: &str, form: &[(String, String)]) -> Answer {
        let u = url::Url::parse(url).unwrap();
        let origin = u.origin().ascii_serialization();
        let req = self.http.post(url).header("origin", origin).form(form);
        self.send(url, req).await
    }

    /// Follows redirects from a GET of `url` until one points under `stop`
    /// (returned, not fetched) or a page answers.
    pub async fn follow(&mut self, url: &str, stop: &str) -> Landing {
        let res = self.get(url).await;
        self.land(url, res, stop).await
    }

    /// Goes on from `res` (the answer to a request for `url`).
    pub async fn land(&mut self, url: &str, mut res: Answer, stop: &str) -> Landing {
        let mut at = url::Url::parse(url).unwrap();
        for _ in 0..20 {
            if !(300..400).contains(&res.status) {
                return Landing::Page {
                    url: at.into(),
                    status: res.status,
                    body: res.body,
                };
            }
            let loc = res.headers["location"].to_str().unwrap();
            at = at.join(loc).unwrap();
            if at.as_str().starts_with(stop) {
                return Landing::Redirect(at.into());
            }
            res = self.get(at.clone().as_str()).await;
        }
        panic!("more than 20 redirects, the last to {at}");
    }
}

/// The `action` of the first form on a page.
pub fn form_action(html: &str) -> Option<String> {
    let rest = html.split("<form").nth(1)?;
    let action = rest.split("action=\"").nth(1)?.split('"').next()?;
    Some(action.replace("&amp;", "&"))
}

/// The query parameters of a URL.
pub fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}
