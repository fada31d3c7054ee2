//! What the verifier's revocation mirror costs: resident memory per entry
//! and time per check, for 1,000,000 entries of one kind at a time.
//!
//! `cargo run --release --example mirror_memory [-- N]`
//!
//! Each kind is measured in a child process of its own (this program run
//! again with the kind's name), so memory freed by one measurement cannot
//! be reused by the next and hide its growth. Growth is read from
//! `/proc/self/statm` (resident pages, 4 KiB each) before and after filling.
//! A check is `RevocationMirror::is_revoked` on a token of that kind: the
//! median over batches of 10,000 checks, for tokens that are revoked (hit)
//! and tokens that are not (miss).

use std::hint::black_box;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tessera::domain::{Revocation, RevocationKind, TokenRef};
use tessera::verifier::mirror::RevocationMirror;

/// What each child measures.
const KINDS: [&str; 4] = ["session", "session-general", "jti", "subject"];
const PAGE: u64 = 4096;
const BATCH: usize = 10_000;
const BATCHES: usize = 101;

/// Resident bytes of this process (Linux).
fn resident() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * PAGE)
}

/// splitmix64: cheap, deterministic ids (randomness is not the point here).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 22 base62 characters drawn from `n` (what the gateway's ids look like).
fn base62_22(n: u64) -> String {
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let (mut a, mut b) = (mix(n), mix(n ^ 0xA5A5_A5A5));
    (0..22)
        .map(|i| {
            let v = if i < 11 { &mut a } else { &mut b };
            let c = ALPHABET[(*v % 62) as usize];
            *v /= 62;
            char::from(c)
        })
        .collect()
}

/// The revoked thing number `n` of `kind`, and a token it covers.
fn key(kind: &str, n: u64) -> String {
    match kind {
        "session" => format!("ses_{}", base62_22(n)),
        // Not the gateway's shape: kept as a string.
        "session-general" => format!("sess-{}", base62_22(n)),
        "jti" => {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&mix(n).to_be_bytes());
            b[8..].copy_from_slice(&mix(!n).to_be_bytes());
            URL_SAFE_NO_PAD.encode(b)
        }
        _ => format!("usr_{}", base62_22(n)),
    }
}

fn entry(kind: &str, n: u64, expires_at: i64) -> Revocation {
    let k = key(kind, n);
    let kind = match kind {
        "session" | "session-general" => RevocationKind::Session { sid: k },
        "jti" => RevocationKind::Jti { jti: k },
        _ => RevocationKind::Subject {
            sub: k,
            not_before_ms: i64::MAX,
        },
    };
    Revocation {
        seq: n + 1,
        kind,
        expires_at,
    }
}

/// Median nanoseconds per check of the tokens built from `keys`.
fn check_ns(mirror: &RevocationMirror, kind: &str, keys: &[String]) -> f64 {
    let jti = "AAAAAAAAAAAAAAAAAAAAAA";
    let mut per_check: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let start = Instant::now();
            for k in keys {
                let token = match kind {
                    "session" | "session-general" => TokenRef {
                        jti,
                        sub: "usr_x",
                        sid: Some(k),
                        client: None,
                        issued_ms: 0,
                    },
                    "jti" => TokenRef {
                        jti: k,
                        sub: "app_x",
                        sid: None,
                        client: None,
                        issued_ms: 0,
                    },
                    _ => TokenRef {
                        jti,
                        sub: k,
                        sid: None,
                        client: None,
                        issued_ms: 0,
                    },
                };
                black_box(mirror.is_revoked(black_box(&token)));
            }
            start.elapsed().as_nanos() as f64 / keys.len() as f64
        })
        .collect();
    per_check.sort_by(f64::total_cmp);
    per_check[per_check.len() / 2]
}

/// One measurement, in this (child) process; prints one table row.
fn measure(kind: &str, n: u64) {
    let expires_at = chrono::Utc::now().timestamp() + 3600;
    let mirror = RevocationMirror::default();
    let before = resident();
    for i in 0..n {
        mirror.apply(&entry(kind, i, expires_at));
    }
    let grown = resident().saturating_sub(before);
    assert_eq!(mirror.len() as u64, n, "{kind}: every entry is distinct");

    let step = (n / BATCH as u64).max(1);
    let hits: Vec<String> = (0..BATCH as u64).map(|i| key(kind, i * step % n)).collect();
    let misses: Vec<String> = (0..BATCH as u64).map(|i| key(kind, n + i)).collect();
    for k in hits.iter().take(10) {
        let t = TokenRef {
            jti: k,
            sub: k,
            sid: Some(k),
            client: None,
            issued_ms: 0,
        };
        assert!(mirror.is_revoked(&t), "{kind}: {k} is revoked");
    }
    let (hit, miss) = (
        check_ns(&mirror, kind, &hits),
        check_ns(&mirror, kind, &misses),
    );
    println!(
        "{kind:<16} {n:>9} {:>10.1} {:>11.1} {hit:>10.0} {miss:>10.0}",
        grown as f64 / 1_048_576.0,
        grown as f64 / n as f64,
    );
    black_box(&mirror);
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, flag, kind, n] if flag == "--child" => {
            measure(kind, n.parse()?);
            Ok(())
        }
        [_, rest @ ..] => {
            let n: u64 = rest.first().map_or(Ok(1_000_000), |s| s.parse())?;
            println!(
                "{:<16} {:>9} {:>10} {:>11} {:>10} {:>10}",
                "kind", "entries", "RSS MiB", "bytes/entry", "hit ns", "miss ns"
            );
            let me = std::env::current_exe()?;
            for kind in KINDS {
                let status = std::process::Command::new(&me)
                    .args(["--child", kind, &n.to_string()])
                    .status()?;
                if !status.success() {
                    return Err(format!("{kind}: the measurement failed").into());
                }
            }
            println!(
                "session: `ses_` + 22 base62 (packed); session-general: any other shape (a string)"
            );
            Ok(())
        }
        [] => Err("no program name".into()),
    }
}
