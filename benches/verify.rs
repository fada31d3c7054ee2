//! Verifier figures, printed (no assertions on time): verify throughput with
//! the revocation check against a bare jsonwebtoken decode of the same token,
//! lookups in a large mirror, and the mirror's memory for one million
//! entries. `cargo bench --bench verify`

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use tessera::crypto::{KeyRing, SigningAlg, jwt};
use tessera::domain::{Revocation, RevocationKind};
use tessera::verifier::mirror::RevocationMirror;
use tessera::verifier::{RevocationSource, Verifier, VerifierConfig};

fn rss_bytes() -> u64 {
    // Second field of statm: resident pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

fn rate(name: &str, iters: u32, elapsed: std::time::Duration) -> f64 {
    let per = elapsed.as_secs_f64() / f64::from(iters);
    println!(
        "{name:<58} {:>8.2} µs/op {:>10.0} op/s",
        per * 1e6,
        1.0 / per
    );
    1.0 / per
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = std::env::temp_dir().join(format!("tessera-vbench-{}", std::process::id()));
    let (ring, _) = KeyRing::load_or_init(&dir, SigningAlg::ES256, SigningAlg::RS256)?;
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": "http://gw", "sub": "app_0123456789abcdef", "aud": "cluster-api",
        "exp": now + 600, "iat": now, "iat_ms": now * 1000, "nbf": now, "jti": "AAAAAAAAAAAAAAAAAAAAAA",
        "client_id": "app_0123456789abcdef", "scope": "workloads:read", "roles": [],
        "permissions": ["workloads:read"], "env": "live", "key_type": "secret"
    });
    let token = jwt::mint(&ring, &claims)?;

    // A mirror with 10 000 entries, none of them this token.
    let mirror = Arc::new(RevocationMirror::default());
    for i in 0..10_000u32 {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&i.to_be_bytes());
        b[15] = 1;
        mirror.apply(&Revocation {
            seq: u64::from(i),
            kind: RevocationKind::Jti {
                jti: URL_SAFE_NO_PAD.encode(b),
            },
            expires_at: now + 600,
        });
    }
    mirror.heard();
    let config = VerifierConfig::new(
        "http://gw",
        "http://gw",
        "cluster-api",
        RevocationSource::Disabled,
    );
    let verifier = Verifier::with_fixed_keys(config, ring.jwks_json(), Some(mirror.clone()))?;

    let iters = 40_000;
    let ours = rt.block_on(async {
        for _ in 0..1000 {
            black_box(verifier.verify(&token).await.is_ok());
        }
        let start = Instant::now();
        for _ in 0..iters {
            black_box(verifier.verify(&token).await.is_ok());
        }
        start.elapsed()
    });
    assert!(
        rt.block_on(verifier.verify(&token)).is_ok(),
        "the token verifies"
    );
    let ours = rate(
        "Verifier::verify (kid lookup, ES256, claims, revocation)",
        iters,
        ours,
    );

    let jwks: serde_json::Value = serde_json::from_str(ring.jwks_json())?;
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone())?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk)?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_issuer(&["http://gw"]);
    v.set_audience(&["cluster-api"]);
    for _ in 0..1000 {
        black_box(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).is_ok());
    }
    let start = Instant::now();
    for _ in 0..iters {
        black_box(jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v).is_ok());
    }
    let bare = rate(
        "bare jsonwebtoken::decode of the same token",
        iters,
        start.elapsed(),
    );
    println!(
        "ratio verify / bare decode: {:.2} (target 0.9)",
        ours / bare
    );

    let start = Instant::now();
    let lookups = 1_000_000u32;
    for i in 0..lookups {
        black_box(mirror.is_revoked(&tessera::domain::TokenRef {
            jti: if i % 2 == 0 {
                "AAAAAAAAAAAAAAAAAAAAAA"
            } else {
                "BAAAAAAAAAAAAAAAAAAAAA"
            },
            sub: "app_x",
            sid: None,
            client: None,
            issued_ms: 0,
        }));
    }
    rate("mirror lookup (10 000 entries)", lookups, start.elapsed());

    // Memory: one million jti entries.
    let big = RevocationMirror::default();
    let before = rss_bytes();
    let entries: u32 = 1_000_000;
    for i in 0..entries {
        let mut b = [7u8; 16];
        b[..4].copy_from_slice(&i.to_be_bytes());
        big.apply(&Revocation {
            seq: u64::from(i),
            kind: RevocationKind::Jti {
                jti: URL_SAFE_NO_PAD.encode(b),
            },
            expires_at: now + 600,
        });
    }
    let after = rss_bytes();
    println!(
        "mirror memory, {entries} jti entries: {:.1} MiB resident ({:.0} bytes/entry)",
        (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0),
        (after.saturating_sub(before)) as f64 / f64::from(entries)
    );
    let subjects = RevocationMirror::default();
    let before = rss_bytes();
    for i in 0..entries {
        subjects.apply(&Revocation {
            seq: u64::from(i),
            kind: RevocationKind::Subject {
                sub: format!("app_{i:016}"),
                not_before_ms: now * 1000,
            },
            expires_at: now + 600,
        });
    }
    let after = rss_bytes();
    println!(
        "mirror memory, {entries} subject entries: {:.1} MiB resident ({:.0} bytes/entry)",
        (after.saturating_sub(before)) as f64 / (1024.0 * 1024.0),
        (after.saturating_sub(before)) as f64 / f64::from(entries)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
