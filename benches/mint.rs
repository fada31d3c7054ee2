//! Micro-benchmarks, printed as figures (no assertions on time):
//! minting with key pairs held once vs jsonwebtoken's `encode` (which parses
//! the key on every call), verification, HMAC of a secret, and permission
//! matching. `cargo bench --bench mint`

use std::hint::black_box;
use std::time::Instant;

use serde_json::json;
use tessera::crypto::{KeyRing, Pepper, SigningAlg, jwt};
use tessera::domain::Permission;

fn measure(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    let per = start.elapsed() / iters;
    let rate = 1.0 / per.as_secs_f64();
    println!(
        "{name:<48} {:>10.2} µs/op {rate:>12.0} op/s",
        per.as_secs_f64() * 1e6
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("tessera-bench-{}", std::process::id()));
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": "http://gw", "sub": "app_0123456789abcdef", "aud": "tessera",
        "exp": now + 600, "iat": now, "nbf": now, "jti": "AAAAAAAAAAAAAAAAAAAAAA",
        "client_id": "app_0123456789abcdef", "scope": "content:read", "roles": [],
        "permissions": ["content:read"], "env": "live", "key_type": "secret"
    });
    for alg in [SigningAlg::ES256, SigningAlg::EdDSA, SigningAlg::RS256] {
        let d = dir.join(alg.as_str());
        let (ring, _) = KeyRing::load_or_init(&d, alg, SigningAlg::RS256)?;
        let iters = if alg == SigningAlg::RS256 {
            2_000
        } else {
            20_000
        };
        measure(&format!("mint {alg} (key pair held once)"), iters, || {
            black_box(jwt::mint(&ring, &claims).ok());
        });
        let token = jwt::mint(&ring, &claims)?;
        measure(
            &format!("verify {alg} (jsonwebtoken decode)"),
            iters,
            || {
                black_box(
                    jwt::verify::<serde_json::Value>(&ring, &token, "http://gw", "tessera", 0).ok(),
                );
            },
        );
    }
    let pem = tessera::crypto::keys::generate_pem(SigningAlg::ES256)?;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes())?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    measure(
        "mint ES256 (jsonwebtoken::encode, re-parses key)",
        20_000,
        || {
            black_box(jsonwebtoken::encode(&header, &claims, &key).ok());
        },
    );

    let pepper = Pepper::random()?;
    let secret = secrecy::SecretString::from(
        "tsr_sk_live_0123456789abcdefABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq",
    );
    measure("HMAC-SHA256 of a secret (cache key)", 200_000, || {
        black_box(pepper.digest(&secret));
    });
    let grants: Vec<Permission> = ["content:*", "users:read", "workloads:read", "api_keys:read"]
        .iter()
        .filter_map(|p| Permission::parse(p).ok())
        .collect();
    let wanted = Permission::parse("workloads:read")?;
    measure("permission match (4 grants, wildcard)", 1_000_000, || {
        black_box(Permission::any_covers(&grants, &wanted));
    });
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
