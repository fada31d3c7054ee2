//! A real headless Chromium for the api tests: Debian's chromedriver on a
//! free loopback port, one WebDriver session per [`Chrome`], and the checks
//! every page a test visits must pass ([`Chrome::check_page`]): axe-core
//! finds no serious or critical violation, the browser logged no
//! Content-Security-Policy violation, nothing came from another origin, the
//! page is readable at 375 px, and screenshots are saved under
//! `target/screenshots/<test>/`.
//!
//! A browser is heavy on two cores: a [`Chrome`] holds a process-wide lock
//! for its whole life, so the tests that use one run one at a time (and a
//! test must drop one before it starts the next).

pub mod loopback;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::{Capabilities, TimeoutConfiguration, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::{Mutex, MutexGuard};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "run `bash .ci/run install_browser` first (Debian's chromium and \
chromium-driver, and axe-core from tests/browser/package-lock.json)";

/// The narrow pass of every page: a small phone.
pub const NARROW: (u32, u32) = (375, 812);
const WIDE: (u32, u32) = (1280, 900);

/// Held by each live browser: one at a time on two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Whether pages may run JavaScript.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Js {
    On,
    Off,
}

/// A headless Chromium session, its chromedriver, and a fresh profile.
pub struct Chrome {
    client: Client,
    /// Dropped after the client: ends the session and the processes.
    _driver: Driver,
    /// Removed when the browser is gone.
    _profile: TempDir,
    shots: PathBuf,
    taken: AtomicU32,
    site: String,
    js: Js,
    _turn: MutexGuard<'static, ()>,
}

/// The chromedriver process: ended, with its browser, however the test
/// ends (a panic in `Chrome::start` included).
struct Driver {
    child: Child,
    port: u16,
    /// The WebDriver session to end first, once there is one.
    session: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Ask chromedriver to quit the browser, so it ends and reaps its
        // processes itself; a blocking call is fine at the end of a test.
        if let Some(id) = &self.session
            && let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port))
        {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.port
            );
            // The answer comes once the browser is gone (chromedriver may
            // keep the connection open, so not to its end).
            let _ = s.read(&mut [0; 1024]);
        }
        // Whatever is left: chromedriver leads its own process group (see
        // `start`), which Chromium's processes join.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Panics with the way to install what is missing: a browser test never
/// skips silently.
fn require(path: &Path) {
    assert!(path.exists(), "{} is missing: {INSTALL}", path.display());
}

/// The axe-core build the tests inject (pinned in tests/browser).
fn axe_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/axe-core/axe.min.js")
}

fn axe_source() -> String {
    let p = axe_path();
    require(&p);
    std::fs::read_to_string(&p).expect("axe-core readable")
}

/// `target/screenshots/<test>`, wherever the target directory is.
fn screenshot_dir(test: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_relative() { manifest.join(t) } else { t })
        .unwrap_or_else(|| manifest.join("target"));
    target.join("screenshots").join(test)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// chromedriver's `POST /session/{id}/se/log`: the browser's console and
/// security messages since the last call (the log is drained).
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({"type": "browser"}).to_string()),
        )
    }
}

/// chromedriver's `POST /session/{id}/goog/cdp/execute`: one DevTools
/// command.
#[derive(Debug)]
struct Cdp(Value);

impl WebDriverCompatibleCommand for Cdp {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/goog/cdp/execute",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.0.to_string()))
    }
}

/// Installed in every document before its own content runs (DevTools
/// scripts are not bound by the page's CSP): keeps each
/// `securitypolicyviolation` event, a second witness beside the log.
const CSP_LISTENER: &str = "window.__cspViolations = [];\
document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(\
e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') + ' at ' + e.sourceFile + ':' + e.lineNumber));";

impl Chrome {
    /// Starts chromedriver and a headless Chromium for the test `test`
    /// (the screenshots' folder), waiting for its turn. `site` is the
    /// origin every checked page and all it loads must come from (the
    /// gateway's, `http://127.0.0.1:<port>`).
    pub async fn start(test: &str, site: &str, js: Js) -> Chrome {
        require(Path::new(CHROMIUM));
        require(Path::new(CHROMEDRIVER));
        require(&axe_path());
        let turn = ONE_AT_A_TIME.lock().await;
        let profile = tempfile::tempdir().expect("a profile directory");
        let port = free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut driver = Driver {
            child: cmd.spawn().expect("chromedriver starts"),
            port,
            session: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let gone = driver.child.try_wait().ok().flatten();
            assert!(
                gone.is_none() && Instant::now() < deadline,
                "{CHROMEDRIVER} is not listening on port {port} ({gone:?})"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            "--lang=en-US",
        ]
        .map(String::from)
        .into();
        args.push(format!(
            "--user-data-dir={}",
            profile.path().join("chromium").display()
        ));
        args.push(format!("--window-size={},{}", WIDE.0, WIDE.1));
        let mut options = json!({"binary": CHROMIUM, "args": args});
        if js == Js::Off {
            options["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
        }
        let caps: Capabilities = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": options,
            "goog:loggingPrefs": {"browser": "ALL"},
        }))
        .expect("capabilities");

        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(profile.path().join("chromedriver.log"))
                    .unwrap_or_default();
                panic!("no browser session from {CHROMEDRIVER}: {e}\n{log}")
            });
        driver.session = client.session_id().await.expect("session id");
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(Duration::from_secs(30)),
                Some(Duration::from_secs(30)),
                Some(Duration::ZERO),
            ))
            .await
            .expect("timeouts");
        if js == Js::On {
            client
                .issue_cmd(Cdp(json!({
                    "cmd": "Page.addScriptToEvaluateOnNewDocument",
                    "params": {"source": CSP_LISTENER},
                })))
                .await
                .expect("the CSP listener installed");
        }
        let shots = screenshot_dir(test);
        // Only this run's pictures in the folder.
        let _ = std::fs::remove_dir_all(&shots);
        Chrome {
            client,
            _driver: driver,
            _profile: profile,
            shots,
            taken: AtomicU32::new(0),
            site: site.trim_end_matches('/').to_owned(),
            js,
            _turn: turn,
        }
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for it to load.
    pub async fn visit(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("visit {url}: {e}"));
    }

    /// The address the browser shows.
    pub async fn url(&self) -> url::Url {
        self.client.current_url().await.expect("current url")
    }

    /// Waits until the address satisfies `pred` (after a form submitted
    /// with the keyboard, say); panics after 20 s.
    pub async fn wait_for_url(&self, what: &str, pred: impl Fn(&url::Url) -> bool) -> url::Url {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let u = self.url().await;
            if pred(&u) {
                return u;
            }
            if Instant::now() >= deadline {
                let shot = self.screenshot("never-reached").await;
                let text = match self.client.find(fantoccini::Locator::Css("body")).await {
                    Ok(b) => b.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                panic!(
                    "never reached {what}; still at {u} ({}), showing:\n{text}",
                    shot.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until an element matching `css` is on the page.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(fantoccini::Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css}: {e}"))
    }

    /// Waits until the first element matching `css` reads `text`.
    pub async fn wait_for_text(&self, css: &str, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = match self.client.find(fantoccini::Locator::Css(css)).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if now == text {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} never read {text:?}; it reads {now:?} at {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` on the keyboard, into whatever has the focus.
    pub async fn type_text(&self, text: &str) {
        let mut seq = KeyActions::new("keyboard".into());
        for c in text.chars() {
            seq = seq
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        self.client.perform_actions(seq).await.expect("keys typed");
    }

    /// Presses one key (Tab, Enter, ...).
    pub async fn press(&self, key: Key) {
        let c = char::from(key);
        let seq = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: c })
            .then(KeyAction::Up { value: c });
        self.client.perform_actions(seq).await.expect("key pressed");
    }

    /// The `id`, or else the text, of the focused element.
    pub async fn focused(&self) -> String {
        let el = self
            .client
            .active_element()
            .await
            .expect("a focused element");
        match el.attr("id").await.expect("id attribute") {
            Some(id) if !id.is_empty() => format!("#{id}"),
            _ => el.text().await.expect("element text"),
        }
    }

    /// Saves a screenshot as `target/screenshots/<test>/<n>-<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let n = self.taken.fetch_add(1, Ordering::Relaxed) + 1;
        std::fs::create_dir_all(&self.shots).expect("screenshot directory");
        let path = self.shots.join(format!("{n}-{name}.png"));
        let png = self.client.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// Runs a script in the page (WebDriver's execute-script is not bound
    /// by the page's CSP) and returns its value.
    pub async fn js(&self, script: &str) -> Value {
        self.client
            .execute(script, vec![])
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// axe-core's violations of impact serious or critical, one line each.
    pub async fn axe(&self) -> Vec<String> {
        if self.js("return typeof window.axe").await != json!("object") {
            // The script defines `window.axe` when run (UMD build).
            self.client
                .execute(&axe_source(), vec![])
                .await
                .expect("axe-core injected");
        }
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];\
                 axe.run(document, {resultTypes: ['violations']})\
                   .then(r => done({passes: r.passes.length, ok: r.violations.map(v => ({id: v.id, impact: v.impact,\
                      help: v.help, nodes: v.nodes.map(n => n.target.join(' '))}))}))\
                   .catch(e => done({error: String(e)}));",
                vec![],
            )
            .await
            .expect("axe ran");
        let list = found["ok"]
            .as_array()
            .unwrap_or_else(|| panic!("axe-core failed: {found}"));
        // A run that checked nothing would pass anything.
        assert!(
            found["passes"].as_u64().unwrap_or(0) > 0,
            "axe-core checked no rule: {found}"
        );
        list.iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                format!(
                    "{} ({}): {} at {}",
                    v["id"], v["impact"], v["help"], v["nodes"]
                )
            })
            .collect()
    }

    /// The browser log's entries since the last read.
    pub async fn log(&self) -> Vec<Value> {
        let v = self
            .client
            .issue_cmd(BrowserLog)
            .await
            .expect("browser log");
        v.as_array().cloned().unwrap_or_default()
    }

    /// Content-Security-Policy violations the browser reported since the
    /// last read of its log, and any a page listener caught.
    pub async fn csp_violations(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .log()
            .await
            .into_iter()
            .filter_map(|e| e["message"].as_str().map(str::to_owned))
            .filter(|m| {
                m.contains("Content Security Policy") || m.contains("Content-Security-Policy")
            })
            .collect();
        if self.js == Js::On {
            let caught = self
                .js("const v = window.__cspViolations || []; window.__cspViolations = []; return v;").await;
            for v in caught.as_array().into_iter().flatten() {
                out.push(v.to_string());
            }
        }
        out
    }

    /// Addresses the page loaded (the document and every resource) that
    /// are not under `origin`.
    pub async fn foreign_requests(&self, origin: &str) -> Vec<String> {
        let names = self
            .js("return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name))")
            .await;
        let prefix = format!("{}/", origin.trim_end_matches('/'));
        names
            .as_array()
            .expect("resource names")
            .iter()
            .filter_map(Value::as_str)
            .filter(|n| !n.starts_with(&prefix))
            .map(str::to_owned)
            .collect()
    }

    /// At the narrow size: the page's width past the viewport, if any.
    pub async fn too_wide(&self) -> Option<String> {
        let v = self
            .js("return [window.innerWidth, document.documentElement.scrollWidth]")
            .await;
        let inner = v[0].as_u64().expect("innerWidth");
        let scroll = v[1].as_u64().expect("scrollWidth");
        assert_eq!(
            inner,
            u64::from(NARROW.0),
            "the window could not be made {} px wide",
            NARROW.0
        );
        (scroll > u64::from(NARROW.0)).then(|| format!("{scroll} px wide at {inner} px"))
    }

    /// Resizes the window.
    pub async fn resize(&self, (w, h): (u32, u32)) {
        self.client
            .set_window_size(w, h)
            .await
            .expect("window resized");
    }

    /// Every check on the page shown, which must be under the site: no CSP
    /// violation, nothing from another origin, no serious or critical axe
    /// finding, not wider than 375 px at 375 px; a screenshot at each size.
    /// Panics listing every problem.
    pub async fn check_page(&self, name: &str) {
        let mut problems = Vec::new();
        // The log first: it is drained, and what follows runs scripts.
        for v in self.csp_violations().await {
            problems.push(format!("CSP violation: {v}"));
        }
        for r in self.foreign_requests(&self.site).await {
            problems.push(format!("loaded from another origin: {r}"));
        }
        for v in self.axe().await {
            problems.push(format!("axe: {v}"));
        }
        self.screenshot(name).await;
        self.resize(NARROW).await;
        if let Some(w) = self.too_wide().await {
            problems.push(format!("not readable at {} px: {w}", NARROW.0));
        }
        for v in self.axe().await {
            problems.push(format!("axe at {} px: {v}", NARROW.0));
        }
        self.screenshot(&format!("{name}-{}px", NARROW.0)).await;
        self.resize(WIDE).await;
        // Whatever the checks themselves made the browser say.
        for v in self.csp_violations().await {
            problems.push(format!("CSP violation: {v}"));
        }
        assert!(
            problems.is_empty(),
            "page {name} ({}) fails its checks:\n  {}",
            self.url().await,
            problems.join("\n  ")
        );
    }

    /// The checks that need no script, for a browser with JavaScript off:
    /// the page carries no script but the console's own file (never inline
    /// script, inline styles or event handlers), and the log has no CSP
    /// violation; a screenshot.
    pub async fn check_page_without_js(&self, name: &str) {
        let source = self
            .client
            .source()
            .await
            .expect("page source")
            .to_ascii_lowercase();
        for tag in source.split("<script").skip(1) {
            assert!(
                tag.trim_start()
                    .starts_with("src=\"/console/assets/console.js\""),
                "page {name} has another script: {tag}"
            );
            let body = tag.split_once('>').map_or("", |(_, b)| b);
            assert!(body.starts_with("</script>"), "page {name}: inline script");
        }
        for attr in [
            " style=",
            " onclick=",
            " onload=",
            " onsubmit=",
            " onchange=",
        ] {
            assert!(!source.contains(attr), "page {name} has{attr}");
        }
        let csp = self.csp_violations().await;
        assert!(csp.is_empty(), "page {name}: CSP violations {csp:?}");
        self.screenshot(name).await;
    }
}
