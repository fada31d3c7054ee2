//! Measures what people's records cost in each store: bytes per session and
//! per refresh family (with its first token, and after four rotations: five
//! tokens), written through the `SessionStore` API.
//!
//! Redis: `INFO memory` `used_memory` before and after 10,000 records, on a
//! `redis-server` of its own (started here, in a temporary directory).
//! Embedded: the same 10,000 records, each its own committed write as in
//! service, in a fresh file; the file compacted, against an empty one.
//!
//! `cargo run --example session_memory [N] [redis|embedded|both]` (default
//! 10000, both). Sizes do not depend on the build profile.

#[path = "../tests/api/redis_server.rs"]
mod redis_server;

use chrono::{DateTime, Duration, Utc};
use std::path::Path;
use tessera::domain::session::{RefreshFamily, RefreshUse, Session, StoredSession};
use tessera::store::SessionStore;
use tessera::store::embedded::EmbeddedStore;
use tessera::store::redis::RedisStore;

type Error = Box<dyn std::error::Error>;

/// A random id with a prefix, as the gateway makes them.
fn id(prefix: &str) -> Result<String, Error> {
    Ok(format!("{prefix}{}", tessera::crypto::random::base62(22)?))
}

/// The hex SHA-256 of a secret: 64 random hex digits are the same size.
fn hash() -> Result<String, Error> {
    let mut b = [0u8; 32];
    tessera::crypto::random::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A session of its own user, sized as a browser's: a typical `User-Agent`.
fn session(now: DateTime<Utc>) -> Result<StoredSession, Error> {
    Ok(StoredSession {
        session: Session {
            id: id("ses_")?,
            user_id: id("usr_")?,
            client_id: "tessera-console".into(),
            auth_time: now,
            amr: vec!["pwd".into()],
            idp: None,
            last_seen_at: now,
            expires_at: now + Duration::hours(12),
            retain_until: now + Duration::hours(12),
            ip: "203.0.113.54".into(),
            user_agent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                         Chrome/131.0.0.0 Safari/537.36"
                .into(),
        },
        secret_hash: hash()?,
    })
}

fn family(now: DateTime<Utc>) -> Result<RefreshFamily, Error> {
    Ok(RefreshFamily {
        id: id("rtf_")?,
        user_id: id("usr_")?,
        client_id: "tessera-cli".into(),
        session_id: id("ses_")?,
        scope: "openid profile email offline_access".into(),
        created_at: now,
        last_used_at: now,
        expires_at: now + Duration::days(30),
        revoked: false,
    })
}

/// What to write `n` times.
#[derive(Clone, Copy)]
enum Load {
    Sessions,
    Families { tokens: usize },
}

impl Load {
    fn name(self) -> String {
        match self {
            Self::Sessions => "session".into(),
            Self::Families { tokens } => format!("refresh family with {tokens} token(s)"),
        }
    }
}

async fn write<S: SessionStore>(store: &S, load: Load, n: usize) -> Result<(), Error> {
    let now = Utc::now();
    let (grace, idle) = (
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(14 * 86_400),
    );
    for _ in 0..n {
        match load {
            Load::Sessions => store.insert_session(&session(now)?).await?,
            Load::Families { tokens } => {
                let mut current = hash()?;
                store.insert_refresh(&family(now)?, &current).await?;
                for k in 1..tokens {
                    let next = hash()?;
                    let at = now + Duration::seconds(i64::try_from(k)?);
                    match store.use_refresh(&current, &next, at, grace, idle).await? {
                        RefreshUse::Rotated(_) => current = next,
                        other => return Err(format!("rotation refused: {other:?}").into()),
                    }
                }
            }
        }
    }
    Ok(())
}

async fn used_memory(c: &mut redis::aio::MultiplexedConnection) -> Result<i64, Error> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(c).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| "no used_memory in INFO".into())
}

fn file_size(path: &Path) -> Result<i64, Error> {
    Ok(i64::try_from(std::fs::metadata(path)?.len())?)
}

const LOADS: [Load; 3] = [
    Load::Sessions,
    Load::Families { tokens: 1 },
    Load::Families { tokens: 5 },
];

/// Stored bytes of a closed redb file: its size once compacted, and what
/// redb counts as stored (records and their keys, without tree pages).
fn compacted(file: &Path) -> Result<(i64, i64), Error> {
    let mut db = redb::Database::open(file)?;
    while db.compact()? {}
    let stored = db.begin_write()?.stats()?.stored_bytes();
    Ok((file_size(file)?, i64::try_from(stored)?))
}

async fn redis_figures(n: usize) -> Result<(), Error> {
    let per = |delta: i64| delta as f64 / n as f64;
    let server = redis_server::RedisServer::start();
    let store = RedisStore::connect(&server.url(), "tessera:").await?;
    let mut c = redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    for load in LOADS {
        let before = used_memory(&mut c).await?;
        write(&store, load, n).await?;
        let after = used_memory(&mut c).await?;
        println!(
            "redis: {:.0} bytes per {} ({n} written, used_memory {before} -> {after})",
            per(after - before),
            load.name()
        );
    }
    Ok(())
}

/// Each load in a store of its own: the file's growth while running (redb
/// grows it in steps), then compacted against an empty compacted store.
async fn embedded_figures(n: usize) -> Result<(), Error> {
    let per = |delta: i64| delta as f64 / n as f64;
    let empty = tempfile::tempdir()?;
    drop(EmbeddedStore::open(empty.path())?);
    let (empty_size, empty_stored) = compacted(&empty.path().join("tessera.redb"))?;
    for load in LOADS {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("tessera.redb");
        let store = EmbeddedStore::open(dir.path())?;
        let before = file_size(&file)?;
        write(&store, load, n).await?;
        let running = file_size(&file)?;
        drop(store);
        let (size, stored) = compacted(&file)?;
        println!(
            "embedded: {:.0} bytes per {} compacted ({:.0} stored by redb; file while running \
             {before} -> {running} bytes: {:.0} per record)",
            per(size - empty_size),
            load.name(),
            per(stored - empty_stored),
            per(running - before)
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let which = args.get(2).map_or("both", String::as_str);
    if matches!(which, "both" | "redis") {
        redis_figures(n).await?;
    }
    if matches!(which, "both" | "embedded") {
        embedded_figures(n).await?;
    }
    Ok(())
}
