//! A relying party's loopback listener for the browser tests: answers
//! every request with a small page (or one of the deliberately broken
//! pages the harness's own test needs) and keeps each request line.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A listener on a free loopback port, served by a thread.
pub struct Loopback {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Loopback {
    /// Binds a free port on 127.0.0.1 and starts answering.
    pub fn start() -> Loopback {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("its address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        // Left blocked in accept when the test ends; the process exit ends
        // it. A thread per connection: Chromium opens spare connections
        // that may never carry a request.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || answer(stream, port, &log));
            }
        });
        Loopback { port, seen }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The origin, `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        self.url("")
    }

    /// The request targets received so far (`/callback?code=...`).
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("request log").clone()
    }
}

fn answer(stream: TcpStream, port: u16, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split(' ').nth(1).unwrap_or("/").to_owned();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    seen.lock().expect("request log").push(target.clone());
    let path = target.split('?').next().unwrap_or("/");
    let (csp, body) = match path {
        // Everything the page checks look for, on one page with a strict
        // policy: an inline script (a CSP violation), a field with no
        // label, an image from another origin (localhost is not
        // 127.0.0.1), and a box wider than a phone.
        "/broken" => (
            "default-src 'none'; img-src http://localhost:*; style-src 'unsafe-inline'",
            format!(
                "<!doctype html><html lang=\"en\"><head><title>Broken</title></head><body>\
<main><h1>Broken</h1><input type=\"text\">\
<img alt=\"\" src=\"http://localhost:{port}/pixel.png\">\
<div style=\"width:900px\">wide</div><script>document.title = 'ran';</script></main></body></html>"
            ),
        ),
        // Visible only where scripts do not run.
        "/noscript" => (
            "default-src 'none'",
            "<!doctype html><html lang=\"en\"><head><title>No script</title></head><body><main>\
<noscript><p id=\"noscript\">JavaScript is off</p></noscript></main></body></html>"
                .to_owned(),
        ),
        _ => (
            "default-src 'none'",
            "<!doctype html><html lang=\"en\"><head><title>Signed in</title></head>\
<body><main><h1>Back at the application</h1></main></body></html>"
                .to_owned(),
        ),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
Content-Security-Policy: {csp}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
