//! Stopping the real binary: SIGTERM closes idle keep-alive connections and
//! the revocation feed's pollers at once, lets the requests in flight
//! finish, and exits well within the 30 s cap.

use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{ADMIN_ID, ADMIN_SECRET};
use crate::serve::Served;

/// The binary with its address; killed on drop if the test fails before
/// it exits.
struct Gateway {
    served: Served,
    address: String,
}

fn start(dir: &std::path::Path) -> Gateway {
    let mut cmd = crate::serve::command(dir, 2);
    cmd.env("TESSERA_ADMIN_APP_ID", ADMIN_ID)
        .env("TESSERA_ADMIN_APP_SECRET", ADMIN_SECRET)
        .env("TESSERA_LOG", "info");
    let mut served = crate::serve::spawn(cmd);
    let address = served.address();
    Gateway { served, address }
}

fn host_port(address: &str) -> &str {
    address.trim_start_matches("http://")
}

/// Reads one HTTP/1.1 response with a `content-length` from `s`: head, body.
fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert!(n > 0, "closed mid-head: {}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap().to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_idle_and_polling_connections_and_finishes_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let gw = start(dir.path());
    let addr = host_port(&gw.address).to_owned();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let res = client
        .post(format!("{}/api/v1/token", gw.address))
        .json(&json!({"AppId": ADMIN_ID, "AppSecret": ADMIN_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let admin = res.json::<serde_json::Value>().await.unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();

    // An idle keep-alive connection: one request answered, then silence.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut idle);
    assert!(head.starts_with("http/1.1 200"), "{head}");

    // A verifier polling the revocation feed over one kept-alive connection.
    let stop_polling = Arc::new(AtomicBool::new(false));
    let answers: Arc<Mutex<Vec<(u16, bool)>>> = Arc::default();
    let poller = {
        let (client, admin, url) = (client.clone(), admin.clone(), gw.address.clone());
        let (stop, answers) = (stop_polling.clone(), answers.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(res) = client
                    .get(format!("{url}/api/v1/revocations"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                else {
                    break; // the gateway is gone
                };
                let closing = res
                    .headers()
                    .get("connection")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                let status = res.status().as_u16();
                let _ = res.bytes().await;
                answers.lock().unwrap().push((status, closing));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!answers.lock().unwrap().is_empty(), "the feed answers");

    // A slow request in flight: its head and half its body are sent now,
    // the rest after the signal.
    let body = json!({"AppId": ADMIN_ID, "AppSecret": ADMIN_SECRET}).to_string();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut slow = TcpStream::connect(&addr).unwrap();
    write!(
        slow,
        "POST /api/v1/token HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    let polls_before = answers.lock().unwrap().len();
    gw.served.terminate();

    // The idle connection is closed by the gateway, not left to time out.
    let idle_closed = std::thread::spawn(move || {
        idle.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut b = [0u8; 1];
        let closed = matches!(idle.read(&mut b), Ok(0) | Err(_));
        (closed, signalled.elapsed())
    });

    // The request in flight gets its whole answer, and the connection closes.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    slow.write_all(rest.as_bytes()).unwrap();
    let (head, answer) = read_response(&mut slow);
    assert!(head.starts_with("http/1.1 200"), "{head}{answer}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(answer.contains("accessToken"), "{answer}");

    let mut gw = gw;
    let status = loop {
        if let Some(status) = gw.served.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM: {}",
            gw.served.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = signalled.elapsed();
    stop_polling.store(true, Ordering::Relaxed);
    let _ = poller.await;
    let (closed, closed_after) = idle_closed.join().unwrap();
    let log = gw.served.stderr();
    eprintln!("exit {took:?} after SIGTERM; idle connection closed after {closed_after:?}");
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("gateway stopped"), "{log}");
    // In flight for a second after the signal, then out within moments.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(closed, "the idle connection was not closed");
    assert!(closed_after < Duration::from_secs(3), "{closed_after:?}");
    // The poller was answered (200) every time; once the gateway was
    // stopping its answer said `Connection: close`.
    let answers = answers.lock().unwrap();
    assert!(answers.iter().all(|(s, _)| *s == 200), "{answers:?}");
    assert!(
        answers[polls_before..].iter().any(|(_, closing)| *closing),
        "no answer closed the poller's connection: {answers:?}"
    );
}
