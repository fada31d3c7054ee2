//! Signing-key propagation between gateways sharing one store (docs/api.md, "Signing keys over time"):
//! N times, adds a `next` key on gateway A (`POST /api/v1/keys/rotate`) and
//! times from sending that request until gateway B's JWKS publishes it, then
//! revokes it on A and times from the revocation request until B's JWKS no
//! longer holds it. B is polled every millisecond. Prints p50/p99/max of
//! both, and of A's own answers to the rotations. Used by `bench/keys.sh`.
//!
//! `key_propagation GATEWAY_A GATEWAY_B APP_ID APP_SECRET N`
//! (the application needs `keys:manage`).

use serde_json::Value;
use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

async fn kids(http: &reqwest::Client, gw: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let v: Value = http
        .get(format!("{gw}/.well-known/jwks.json"))
        .send()
        .await?
        .json()
        .await?;
    Ok(v["keys"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect())
}

/// Polls B's JWKS until `want(kids)` holds; the time since `from`.
async fn until(
    http: &reqwest::Client,
    gw: &str,
    from: Instant,
    want: impl Fn(&[String]) -> bool,
) -> Result<Duration, Box<dyn std::error::Error>> {
    loop {
        if want(&kids(http, gw).await?) {
            return Ok(from.elapsed());
        }
        if from.elapsed() > Duration::from_secs(30) {
            return Err(format!("{gw} did not follow within 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, a, b, id, secret, n] = args.as_slice() else {
        return Err("usage: GATEWAY_A GATEWAY_B APP_ID APP_SECRET N".into());
    };
    let n: usize = n.parse()?;
    let http = reqwest::Client::new();
    let v: Value = http
        .post(format!("{a}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id.as_str()),
            ("client_secret", secret.as_str()),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = v["access_token"].as_str().ok_or("no token")?.to_owned();
    let (mut added, mut withdrawn) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut answers = Vec::with_capacity(n);
    for _ in 0..n {
        let sent = Instant::now();
        let res = http
            .post(format!("{a}/api/v1/keys/rotate"))
            .bearer_auth(&token)
            .send()
            .await?;
        answers.push(sent.elapsed());
        if res.status() != 201 {
            return Err(format!("rotate: {}", res.status()).into());
        }
        let body: Value = res.json().await?;
        let new: Vec<String> = body["keys"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|k| k["kid"].as_str().map(str::to_owned))
            .collect();
        added.push(until(&http, b, sent, |k| new.iter().all(|n| k.contains(n))).await?);
        // Withdrawn again, so the ring stays as it was (one key may be
        // pending at a time): timed from the last revocation's request.
        let mut sent = Instant::now();
        for kid in &new {
            sent = Instant::now();
            let res = http
                .post(format!("{a}/api/v1/keys/{kid}/revoke"))
                .bearer_auth(&token)
                .send()
                .await?;
            if res.status() != 200 {
                return Err(format!("revoke: {}", res.status()).into());
            }
        }
        withdrawn.push(until(&http, b, sent, |k| new.iter().all(|n| !k.contains(n))).await?);
    }
    for (what, v) in [
        ("rotate answered by A", &mut answers),
        ("published by B", &mut added),
        ("withdrawn by B", &mut withdrawn),
    ] {
        let max = v.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        println!(
            "key {what:<21} over {n} changes: p50 {:.1} ms   p99 {:.1} ms   max {max:.1} ms",
            pct(v, 0.50),
            pct(v, 0.99)
        );
    }
    Ok(())
}
