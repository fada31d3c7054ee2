//! Measures how fast a revocation becomes visible: from sending
//! `POST /oauth/revoke` to (a) its answer, (b) the entry on the Redis
//! channel, (c) the entry in the feed polled in a tight loop. Prints p50/p99
//! over N revocations. Used by `bench/run.sh`.
//!
//! `cargo run --release --example revocation_latency -- GATEWAY_URL REDIS_URL PREFIX APP_ID APP_SECRET [N]`
//! (the application needs `tokens:revoke` and `tokens:introspect`).

use futures_util::StreamExt;
use serde_json::Value;
use std::time::{Duration, Instant};

fn pct(v: &mut [Duration], p: f64) -> f64 {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, gw, redis_url, prefix, id, secret, rest @ ..] = args.as_slice() else {
        return Err("usage: GATEWAY_URL REDIS_URL PREFIX APP_ID APP_SECRET [N]".into());
    };
    let n: usize = rest.first().map_or(Ok(200), |s| s.parse())?;
    let http = reqwest::Client::new();
    let token_of = async |http: &reqwest::Client| -> Result<String, Box<dyn std::error::Error>> {
        let v: Value = http
            .post(format!("{gw}/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
            ])
            .send()
            .await?
            .json()
            .await?;
        Ok(v["access_token"].as_str().ok_or("no token")?.to_owned())
    };
    let bearer = token_of(&http).await?;
    let feed = async |since: &str| -> Result<Value, Box<dyn std::error::Error>> {
        Ok(http
            .get(format!("{gw}/api/v1/revocations?since={since}"))
            .bearer_auth(&bearer)
            .send()
            .await?
            .json()
            .await?)
    };
    let mut cursor = feed("").await?["cursor"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let client = redis::Client::open(redis_url.as_str())?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(format!("{prefix}events")).await?;
    let mut messages = pubsub.into_on_message();

    let (mut answered, mut on_channel, mut in_feed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let token = token_of(&http).await?;
        let jti = {
            use base64::Engine;
            let part = token.split('.').nth(1).ok_or("bad token")?;
            let claims: Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?,
            )?;
            claims["jti"].as_str().ok_or("no jti")?.to_owned()
        };
        let t0 = Instant::now();
        let res = http
            .post(format!("{gw}/oauth/revoke"))
            .form(&[
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
                ("token", token.as_str()),
            ])
            .send()
            .await?;
        answered.push(t0.elapsed());
        if !res.status().is_success() {
            return Err(format!("revoke failed: {}", res.status()).into());
        }
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), messages.next())
                .await?
                .ok_or("channel closed")?;
            let payload: String = msg.get_payload()?;
            let v: Value = serde_json::from_str(&payload)?;
            if v["entry"]["jti"] == jti.as_str() {
                on_channel.push(t0.elapsed());
                break;
            }
        }
        loop {
            let page = feed(&cursor).await?;
            let found = page["entries"]
                .as_array()
                .is_some_and(|e| e.iter().any(|x| x["jti"] == jti.as_str()));
            cursor = page["cursor"].as_str().unwrap_or_default().to_owned();
            if found {
                in_feed.push(t0.elapsed());
                break;
            }
        }
    }
    println!(
        "revocations: {n}; from sending the revoke call: answered p50 {:.2} ms p99 {:.2} ms; \
         on the Redis channel p50 {:.2} ms p99 {:.2} ms; in the feed p50 {:.2} ms p99 {:.2} ms",
        pct(&mut answered, 0.5),
        pct(&mut answered, 0.99),
        pct(&mut on_channel, 0.5),
        pct(&mut on_channel, 0.99),
        pct(&mut in_feed, 0.5),
        pct(&mut in_feed, 0.99)
    );
    Ok(())
}
