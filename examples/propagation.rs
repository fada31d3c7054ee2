//! Revocation propagation to downstream services: for N tokens, the time from
//! the gateway answering `POST /oauth/revoke` to the first refusal by each
//! `cluster_api` given. Prints p50/p99 per service. Used by `bench/run.sh`.
//!
//! `propagation GATEWAY APP_ID APP_SECRET N NAME=CLUSTER_API_URL...`
//! (the application needs `tokens:revoke`, the audience `cluster-api`, and
//! `workloads:read` on `cluster:c1`).

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
    let [_, gw, id, secret, n, targets @ ..] = args.as_slice() else {
        return Err("usage: GATEWAY APP_ID APP_SECRET N NAME=URL...".into());
    };
    let n: usize = n.parse()?;
    let targets: Vec<(String, String)> = targets
        .iter()
        .filter_map(|t| {
            t.split_once('=')
                .map(|(a, b)| (a.to_owned(), format!("{b}/api/v1/clusters/c1/workloads")))
        })
        .collect();
    let http = reqwest::Client::new();
    let mut results: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for _ in 0..n {
        let v: Value = http
            .post(format!("{gw}/oauth/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("audience", "cluster-api"),
            ])
            .send()
            .await?
            .json()
            .await?;
        let token = v["access_token"].as_str().ok_or("no token")?.to_owned();
        for (_, url) in &targets {
            let deadline = Instant::now() + Duration::from_secs(10);
            while http.get(url).bearer_auth(&token).send().await?.status() != 200 {
                if Instant::now() > deadline {
                    return Err(format!("{url} never accepted a fresh token").into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let res = http
            .post(format!("{gw}/oauth/revoke"))
            .form(&[
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
                ("token", token.as_str()),
            ])
            .send()
            .await?;
        let answered = Instant::now();
        if !res.status().is_success() {
            return Err(format!("revoke: {}", res.status()).into());
        }
        let mut pending: Vec<usize> = (0..targets.len()).collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for i in pending {
                if http
                    .get(&targets[i].1)
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .status()
                    == 401
                {
                    results[i].push(answered.elapsed());
                } else {
                    still.push(i);
                }
            }
            pending = still;
            if answered.elapsed() > Duration::from_secs(10) {
                return Err("a revocation never reached a service".into());
            }
        }
    }
    for ((name, _), r) in targets.iter().zip(results.iter_mut()) {
        println!(
            "propagation to {name} over {n} revocations: p50 {:.1} ms, p99 {:.1} ms (from the revoke call answering to the first refusal)",
            pct(r, 0.5),
            pct(r, 0.99)
        );
    }
    Ok(())
}
