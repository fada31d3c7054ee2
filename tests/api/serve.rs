//! The real `tessera serve` process for the tests that need the binary
//! itself (start-up, logs, signals, several gateways on one store): a clean
//! environment, its standard output and error collected, killed on drop.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// `tessera serve` with nothing inherited but `PATH`: a loopback port of its
/// own, data and keys under `dir`, `workers` workers. Callers add the rest.
pub fn command(dir: &Path, workers: u32) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TESSERA_LISTEN", "127.0.0.1:0")
        .env("TESSERA_DATA_DIR", dir.join("data"))
        .env("TESSERA_KEYS_DIR", dir.join("keys"))
        .env("TESSERA_WORKERS", workers.to_string());
    cmd
}

/// A running binary; its output is collected line by line as it comes.
pub struct Served {
    pub child: Child,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `cmd` with its standard output and error collected.
pub fn spawn(mut cmd: Command) -> Served {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    Served {
        child,
        stdout,
        stderr,
    }
}

/// Collects what `from` writes, line by line, as it comes.
pub fn collect(from: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let into = Arc::new(Mutex::new(String::new()));
    let out = into.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            let mut s = out.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    into
}

impl Served {
    /// Waits up to 60 s until it listens: its address (the plain line, or in
    /// JSON mode the `listening` object). `None` if it exits first.
    pub fn try_address(&mut self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self.stdout.lock().unwrap().lines().find_map(|l| {
                l.strip_prefix("tessera listening on ")
                    .map(str::to_owned)
                    .or_else(|| {
                        serde_json::from_str::<Value>(l).ok()?["url"]
                            .as_str()
                            .map(str::to_owned)
                    })
            });
            if found.is_some() {
                return found;
            }
            if self.child.try_wait().unwrap().is_some() {
                // Let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "did not start: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// [`Served::try_address`] for a binary that must start.
    pub fn address(&mut self) -> String {
        self.try_address()
            .unwrap_or_else(|| panic!("exited before listening: {}", self.stderr()))
    }

    /// Its standard output so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Its standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// What it printed after a label (`AppId:`, `AppSecret:`).
    pub fn printed(&self, label: &str) -> Option<String> {
        self.stdout
            .lock()
            .unwrap()
            .lines()
            .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_owned()))
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits up to `limit` for the exit; its status, once the readers have
    /// taken the last lines.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            assert!(Instant::now() < deadline, "no exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
