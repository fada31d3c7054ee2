//! The Redis backend: shared state for several gateways. The only part of the
//! gateway's storage that imports `redis`. Split by concern like
//! `store::embedded`: applications (`apps`), roles and users (`identity`),
//! the audit log (`audit`), revocations (`revocations`), people's sessions,
//! codes and refresh tokens (`people`) and the change channel (`changes`);
//! this module holds the connection, the key layout and
//! the helpers they share.
//!
//! Key layout (all under one prefix, default `tessera:`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `app:{id}` | string | a `StoredApp` as JSON |
//! | `apps:order` | sorted set, score 0 | `{created µs, 20 digits}:{id}` (`store::order_key`), for paging by creation |
//! | `app_names` | hash | application name (`store::name_key`) → id: names are unique ignoring case |
//! | `app_names:indexed` | string | set once the names of applications stored before the index existed were indexed |
//! | `usage:{id}` | hash, expires `USAGE_KEPT_SECS` + 1 h after its last write | hour start (unix seconds) → exchanges in that hour; hours older than kept are deleted by the write that opens a new hour |
//! | `role:{name}` | string | a `Role` as JSON |
//! | `roles` | sorted set, score 0 | role names |
//! | `user:{id}` | string | a `StoredUser` as JSON |
//! | `user_email:{email}` | string | the user id owning that email |
//! | `user_identity:{idp}/{subject}` | string | the user id a linked identity belongs to |
//! | `sso:{sha256}` | string, expires with the attempt | a single sign-on attempt (`SsoLogin`) by the hash of its `state` |
//! | `users` | sorted set, score 0 | user ids |
//! | `audit` | hash | record id → `AuditRecord` JSON |
//! | `audit:order` | sorted set, score 0 | record ids |
//! | `rev:seq`, `rev:floor`, `rev:epoch` | strings | feed position, oldest forgotten position, feed epoch |
//! | `rev:entries` | hash | position → `Revocation` JSON (the verifier's mirror loads it too) |
//! | `rev:order` | sorted set, score = position | positions |
//! | `rev:jti:{jti}` | string, expires with the token | position |
//! | `rev:sub:{sub}` | string, expires with the entry | `{not-before ms}:{position}` of the latest subject entry (older data: the instant alone) |
//! | `rev:sid:{sid}`, `rev:kid:{kid}` | string, expires with the entry | position of the latest session or signing-key entry |
//! | `signing:keys` | hash | kid → a `StoredKey` as JSON (private half sealed with the KEK) |
//! | `signing:version` | string | the ring's version, raised by every swap (compare-and-swap) |
//! | `session:{id}` | hash, expires at `retain_until` | `rec` (a `StoredSession` as JSON, as inserted), `user`, and the moving parts: `seen`/`retain` (RFC 3339) with `seen_us`/`retain_us` (µs, compared by scripts) |
//! | `user_sessions:{user}` | sorted set, score = `auth_time` ms, expires with its longest-lived session | session ids (trimmed lazily once their session key is gone) |
//! | `code:{sha256}` | hash, expires `SPENT_CODE_MEMORY_SECS` after the code | `rec` (an `AuthCode` as JSON), `spent`, `exp_us`, `forget_us` |
//! | `rtf:{id}` | hash, expires at the family's `expires_at` | `rec` (a `RefreshFamily` as JSON, as inserted), `last`/`last_us`, `exp_us`, `exp_ms`, `revoked` |
//! | `rt:{sha256}` | hash, expires with its family | `fam` (the family id), `replaced_us` once rotated |
//! | `device:{sha256}`, `device_uc:{sha256}` | hash, string | device authorization requests (see `device`) |
//! | `rl:{bucket}` | string, expires when the budget is whole again | a request budget's theoretical arrival time, µs (see `ratelimit`) |
//! | channel `events` | pub/sub | a [`ChangeEvent`](crate::domain::ChangeEvent) as JSON |
//!
//! Every write that touches several keys is one Lua script or one optimistic
//! transaction ([`transact`]: WATCH, read, MULTI/EXEC, retried a bounded
//! number of times), so a crash or a dropped connection never leaves half an
//! application. Each write publishes its change event inside the same script
//! or transaction, so a revocation is on the channel before the API call
//! that made it answers. Every call is bounded by a timeout: a Redis that
//! does not answer becomes `StoreError::Unavailable`, promptly.

use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use redis::AsyncCommands;
use std::future::Future;
use std::time::Duration;

use super::StoreError;
use super::common::{Record, decode};

mod apps;
mod audit;
mod changes;
mod device;
mod identity;
mod keys;
mod observed;
mod people;
mod ratelimit;
mod revocations;
// One launcher for a real `redis-server`, shared with the integration tests.
#[cfg(test)]
#[path = "../../../tests/api/redis_server.rs"]
pub(crate) mod test_server;

pub use changes::Change;
use observed::Connection;
pub use observed::RedisMetrics;

/// How long one Redis call may take before the store reports it unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Optimistic transactions are tried this often before giving up.
const RETRIES: usize = 16;

/// The Redis-backed store.
#[derive(Clone)]
pub struct RedisStore {
    pool: Pool,
    prefix: String,
    /// Command metrics, once attached (`observe`).
    observer: observed::Observer,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Bounds a whole store call (pool wait included) by [`CALL_TIMEOUT`].
async fn bounded<T>(f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| StoreError::Unavailable("redis did not answer in time".into()))?
}

/// Stores ARGV[1] at KEYS[1] and adds ARGV[2] to the index KEYS[2], unless
/// KEYS[1] exists; publishes ARGV[3] on KEYS[3]. Returns 1, or 0 if it existed.
const INSERT_IF_ABSENT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('PUBLISH', KEYS[3], ARGV[3])
return 1";

impl RedisStore {
    /// Connects to `url` (a bounded pool) and checks Redis answers.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let mut cfg = Config::from_url(url);
        cfg.pool = Some(PoolConfig {
            max_size: 32,
            timeouts: Timeouts {
                wait: Some(CALL_TIMEOUT),
                create: Some(CALL_TIMEOUT),
                recycle: Some(CALL_TIMEOUT),
            },
            ..PoolConfig::default()
        });
        let pool = cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| StoreError::Unavailable(format!("redis: {e}")))?;
        let store = Self {
            pool,
            prefix: prefix.to_owned(),
            observer: observed::Observer::default(),
        };
        super::AppStore::ping(&store).await?;
        store.init_feed_epoch().await?;
        // Not bounded per call: indexing a large store takes longer than one
        // call may, yet a Redis that stops answering must not hang startup.
        tokio::time::timeout(Duration::from_secs(120), store.index_names())
            .await
            .map_err(|_| {
                StoreError::Unavailable("indexing application names timed out".into())
            })??;
        Ok(store)
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    fn app_key(&self, id: &str) -> String {
        self.key(&format!("app:{id}"))
    }

    /// An application's exchanges per hour.
    fn usage_key(&self, id: &str) -> String {
        self.key(&format!("usage:{id}"))
    }

    fn role_key(&self, name: &str) -> String {
        self.key(&format!("role:{name}"))
    }

    fn user_key(&self, id: &str) -> String {
        self.key(&format!("user:{id}"))
    }

    fn email_key(&self, email: &str) -> String {
        self.key(&format!("user_email:{email}"))
    }

    /// The owner of a linked identity (`identity` is `store::identity_key`).
    fn linked_key(&self, identity: &str) -> String {
        self.key(&format!("user_identity:{identity}"))
    }

    fn session_key(&self, id: &str) -> String {
        self.key(&format!("session:{id}"))
    }

    fn user_sessions_key(&self, user_id: &str) -> String {
        self.key(&format!("user_sessions:{user_id}"))
    }

    fn code_key(&self, hash: &str) -> String {
        self.key(&format!("code:{hash}"))
    }

    fn family_key(&self, id: &str) -> String {
        self.key(&format!("rtf:{id}"))
    }

    fn refresh_token_key(&self, hash: &str) -> String {
        self.key(&format!("rt:{hash}"))
    }

    /// The change channel.
    fn channel(&self) -> String {
        self.key("events")
    }

    /// Records every later command's latency and errors in `registry`
    /// (every clone of this store shares it). Once only: later calls are
    /// ignored.
    pub fn observe(&self, registry: &prometheus::Registry) -> Result<(), prometheus::Error> {
        if self.observer.get().is_none() {
            let _ = self
                .observer
                .set(std::sync::Arc::new(RedisMetrics::register(registry)?));
        }
        Ok(())
    }

    async fn conn(&self) -> Result<Connection, StoreError> {
        let Some(m) = self.observer.get() else {
            return Ok(Connection::new(
                self.pool.get().await.map_err(unavailable)?,
                None,
            ));
        };
        let started = std::time::Instant::now();
        let got = self.pool.get().await;
        m.record("pool_get", started, got.is_err());
        Ok(Connection::new(got.map_err(unavailable)?, Some(m.clone())))
    }

    /// Stores `body` at `key` and adds `member` to the `index` set, unless
    /// `key` exists; publishes `event` in the same script. False if it existed.
    async fn insert_indexed(
        &self,
        key: &str,
        index: &str,
        member: &str,
        body: &str,
        event: &str,
    ) -> Result<bool, StoreError> {
        let channel = self.channel();
        bounded(async {
            let mut c = self.conn().await?;
            let done: i64 = redis::Script::new(INSERT_IF_ABSENT)
                .key(key)
                .key(index)
                .key(&channel)
                .arg(body)
                .arg(member)
                .arg(event)
                .invoke_async(&mut c)
                .await
                .map_err(unavailable)?;
            Ok(done == 1)
        })
        .await
    }

    /// Reads one record.
    async fn read<T: Record>(&self, key: &str) -> Result<Option<T>, StoreError> {
        bounded(async {
            let mut c = self.conn().await?;
            get(&mut c, key).await
        })
        .await
    }
}

/// Reads and decodes one record.
async fn get<T: Record>(c: &mut Connection, key: &str) -> Result<Option<T>, StoreError> {
    let v: Option<String> = c.get(key).await.map_err(unavailable)?;
    v.map(|v| decode(v.as_bytes())).transpose()
}

/// Reads many records at once, each in its place (`None` where missing).
async fn mget_each<T: Record>(
    c: &mut Connection,
    keys: &[String],
) -> Result<Vec<Option<T>>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg(keys)
        .query_async(c)
        .await
        .map_err(unavailable)?;
    values
        .into_iter()
        .map(|v| v.map(|v| decode(v.as_bytes())).transpose())
        .collect()
}

/// Reads many records at once; missing ones are skipped.
async fn mget<T: Record>(c: &mut Connection, keys: &[String]) -> Result<Vec<T>, StoreError> {
    Ok(mget_each(c, keys).await?.into_iter().flatten().collect())
}

/// Reads many records of one hash at once; missing fields are skipped.
async fn hmget<T: Record>(
    c: &mut Connection,
    hash: &str,
    fields: impl redis::ToRedisArgs + Send + Sync,
) -> Result<Vec<T>, StoreError> {
    let values: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(hash)
        .arg(fields)
        .query_async(c)
        .await
        .map_err(unavailable)?;
    values
        .into_iter()
        .flatten()
        .map(|v| decode(v.as_bytes()))
        .collect()
}

/// Which way a [`members_after`] read goes.
#[derive(Clone, Copy)]
enum Lex {
    /// Ascending.
    Up,
    /// Descending.
    Down,
}

/// Up to `count` members of the score-0 sorted set `set` strictly after
/// `after` in `direction` (from the first member when `None`): how every
/// list of this backend pages by its cursor.
async fn members_after(
    c: &mut Connection,
    set: &str,
    after: Option<&str>,
    direction: Lex,
    count: usize,
) -> Result<Vec<String>, StoreError> {
    let (first, last) = match direction {
        Lex::Up => ("-", "+"),
        Lex::Down => ("+", "-"),
    };
    let from = after.map_or_else(|| first.to_owned(), |a| format!("({a}"));
    let mut cmd = redis::cmd("ZRANGE");
    cmd.arg(set).arg(from).arg(last).arg("BYLEX");
    if let Lex::Down = direction {
        cmd.arg("REV");
    }
    cmd.arg("LIMIT")
        .arg(0)
        .arg(count)
        .query_async(c)
        .await
        .map_err(unavailable)
}

/// WATCHes more keys: EXEC then fails if any of them changed meanwhile.
async fn watch(c: &mut Connection, keys: &[String]) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    redis::cmd("WATCH")
        .arg(keys)
        .query_async::<()>(c)
        .await
        .map_err(unavailable)
}

/// What the body of an optimistic transaction decided, having read under
/// WATCH.
enum Tx<T> {
    /// Write nothing and answer this.
    Done(T),
    /// Run these commands in one MULTI/EXEC and answer this once they ran.
    Write(redis::Pipeline, T),
}

/// The one optimistic transaction of this backend, for every multi-key write
/// that is not a Lua script (a script cannot decode and re-encode records the
/// way serde does). WATCHes `keys`, then runs `body`, which reads (WATCHing
/// more keys with [`watch`] before reading them, when what to read depends
/// on what it read) and decides. Its writes run in MULTI/EXEC, which Redis
/// refuses when a watched key changed meanwhile; then it all starts again
/// from fresh reads, at most [`RETRIES`] times, after which the write is
/// reported unavailable (`what` names the contended thing). Nothing is
/// written by a failed attempt, and an error from `body` writes nothing.
async fn transact<T, F, Fut>(
    mut c: Connection,
    keys: &[String],
    what: &str,
    mut body: F,
) -> Result<T, StoreError>
where
    // The body owns the connection while it runs and hands it back: a
    // closure lending `&mut Connection` to its future cannot be proven
    // `Send` (which `async_trait` needs) by today's compiler.
    F: FnMut(Connection) -> Fut,
    Fut: Future<Output = (Connection, Result<Tx<T>, StoreError>)>,
{
    for attempt in 0..RETRIES {
        if attempt > 0 {
            backoff(attempt).await;
        }
        watch(&mut c, keys).await?;
        let (back, step) = body(c).await;
        c = back;
        let step = match step {
            Ok(step) => step,
            Err(e) => {
                // The connection goes back to the pool: leave it unwatched.
                // Should that fail too, the first error is the one to report.
                if let Err(u) = unwatch(&mut c).await {
                    tracing::debug!(error = %u, "UNWATCH failed after an error");
                }
                return Err(e);
            }
        };
        match step {
            Tx::Done(v) => {
                unwatch(&mut c).await?;
                return Ok(v);
            }
            Tx::Write(mut p, v) => {
                // EXEC answers nil (`None`) when a watched key changed.
                let done: Option<()> = p.atomic().query_async(&mut c).await.map_err(unavailable)?;
                if done.is_some() {
                    return Ok(v);
                }
            }
        }
    }
    Err(StoreError::Unavailable(format!(
        "too much contention on {what}"
    )))
}

/// A short random pause before retrying a transaction that lost a race:
/// writers that collided once would otherwise collide again at once. Up to
/// 0.25 ms × 2^attempt (capped at 8 ms), so all the retries together stay far
/// below [`CALL_TIMEOUT`].
async fn backoff(attempt: usize) {
    let mut b = [0u8; 2];
    // Without randomness the pause is the longest: still bounded.
    let r = crate::crypto::random::fill(&mut b).map_or(u16::MAX, |()| u16::from_le_bytes(b));
    let ceiling = Duration::from_micros(250u64 << attempt.min(5));
    tokio::time::sleep(ceiling.mul_f64(f64::from(r) / f64::from(u16::MAX))).await;
}

/// Gives up an optimistic transaction without writing.
async fn unwatch(c: &mut Connection) -> Result<(), StoreError> {
    redis::cmd("UNWATCH")
        .query_async::<()>(c)
        .await
        .map_err(unavailable)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::test_server::RedisServer;
    use super::*;
    use crate::domain::{ChangeEvent, RevocationKind};
    use crate::store::conformance::sample_app;
    use crate::store::{AppStore, RevocationStore, RoleStore, UsageDelta};

    async fn store(redis: &RedisServer, prefix: &str) -> RedisStore {
        RedisStore::connect(&redis.url(), prefix).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_redis_store_passes_the_conformance_suite() {
        let redis = RedisServer::start();
        crate::store::conformance::run_all(&store(&redis, "conf:").await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_published_message_is_a_change_event() {
        let redis = RedisServer::start();
        let s = store(&redis, "ev:").await;
        let client = redis::Client::open(redis.url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("ev:events").await.unwrap();

        let mut app = sample_app("app_ev", 1);
        s.insert(&app).await.unwrap();
        app.app.name = "renamed".into();
        s.update(&app, app.app.updated_at).await.unwrap();
        let role = crate::domain::Role {
            name: "ev".into(),
            description: String::new(),
            permissions: vec![],
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        s.insert_role(&role).await.unwrap();
        s.delete_role("ev", true).await.unwrap();
        let revoked = s
            .revoke(
                RevocationKind::Jti { jti: "j_ev".into() },
                chrono::Utc::now().timestamp() + 60,
            )
            .await
            .unwrap();
        s.delete("app_ev").await.unwrap();

        let app_ev = || ChangeEvent::App {
            id: "app_ev".into(),
        };
        let expected = [
            app_ev(),
            app_ev(),
            ChangeEvent::Roles,
            ChangeEvent::Roles,
            ChangeEvent::Revocation {
                entry: revoked.entry,
            },
            app_ev(),
        ];
        let mut stream = pubsub.on_message();
        for want in expected {
            let msg = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap()
                .unwrap();
            let payload: String = msg.get_payload().unwrap();
            assert_eq!(ChangeEvent::parse(&payload), Some(want), "{payload}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_from_before_the_name_index_is_indexed_once() {
        let redis = RedisServer::start();
        let client = redis::Client::open(redis.url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        // Written as an older gateway did: two "Billing"s, no index.
        let mut apps = vec![sample_app("app_new", 3), sample_app("app_old", 1)];
        apps[0].app.name = "billing".into();
        apps[1].app.name = "Billing".into();
        apps.push(sample_app("app_solo", 2));
        for a in &apps {
            let body = crate::store::common::encode(a).unwrap();
            let _: () = c.set(format!("old:app:{}", a.app.id), body).await.unwrap();
            let _: () = c
                .zadd("old:apps:order", crate::store::order_key(&a.app), 0)
                .await
                .unwrap();
        }
        let s = store(&redis, "old:").await;
        assert_eq!(
            s.find_by_name("BILLING").await.unwrap().as_deref(),
            Some("app_old"),
            "the oldest holder keeps the name"
        );
        assert_eq!(
            s.find_by_name("sample app_solo").await.unwrap().as_deref(),
            Some("app_solo")
        );
        assert!(s.get("app_new").await.unwrap().is_some(), "kept, by id");
        // Once: an entry removed by hand stays removed on the next start.
        let _: () = c.hdel("old:app_names", "sample app_solo").await.unwrap();
        let s = store(&redis, "old:").await;
        assert_eq!(s.find_by_name("sample app_solo").await.unwrap(), None);
        assert!(s.delete("app_new").await.unwrap());
        assert_eq!(
            s.find_by_name("billing").await.unwrap().as_deref(),
            Some("app_old"),
            "a duplicate's delete frees nothing it did not hold"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_swap_is_announced_and_a_refused_one_is_not() {
        use crate::store::{KeyStore, SealedKey, StoredKey};
        let redis = RedisServer::start();
        let s = store(&redis, "keys:").await;
        let client = redis::Client::open(redis.url()).unwrap();
        let mut pubsub = client.get_async_pubsub().await.unwrap();
        pubsub.subscribe("keys:events").await.unwrap();
        let t = chrono::Utc::now();
        let key = StoredKey {
            kid: "kid_ch".into(),
            alg: "ES256".into(),
            created_at: t,
            activates_at: t,
            revoked_at: None,
            private: SealedKey::Plain { pem: "pem".into() },
        };

        let v = s
            .swap_keys(0, std::slice::from_ref(&key), &[])
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            s.swap_keys(0, std::slice::from_ref(&key), &["kid_ch".into()])
                .await
                .unwrap(),
            None
        );
        // A marker after the refused swap: had the refusal published
        // anything, it would arrive before the marker.
        let marker = s
            .revoke(
                RevocationKind::Jti {
                    jti: "j_mark".into(),
                },
                chrono::Utc::now().timestamp() + 60,
            )
            .await
            .unwrap();
        let mut stream = pubsub.on_message();
        let mut next = async || -> String {
            let msg = tokio::time::timeout(Duration::from_secs(5), stream.next())
                .await
                .unwrap()
                .unwrap();
            msg.get_payload().unwrap()
        };
        let first = next().await;
        assert_eq!(first, r#"{"kind":"keys"}"#);
        assert_eq!(ChangeEvent::parse(&first), Some(ChangeEvent::Keys));
        assert_eq!(
            ChangeEvent::parse(&next().await),
            Some(ChangeEvent::Revocation {
                entry: marker.entry
            }),
            "nothing between the swap and the marker"
        );
        assert_eq!(s.load_keys().await.unwrap().version, v);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn usage_batches_are_atomic_under_contention() {
        let redis = RedisServer::start();
        let s = store(&redis, "use:").await;
        for id in ["app_u1", "app_u2"] {
            s.insert(&sample_app(id, 1)).await.unwrap();
        }
        let hour = crate::store::hour_start(chrono::Utc::now());
        let mut tasks = Vec::new();
        for n in 0..6 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let batch: Vec<UsageDelta> = ["app_u1", "app_u2", "app_gone"]
                        .iter()
                        .map(|id| UsageDelta {
                            app_id: (*id).into(),
                            count: 1,
                            last_at: chrono::Utc::now(),
                            last_ip: format!("192.0.2.{n}"),
                            hours: vec![(hour, 1)],
                        })
                        .collect();
                    // As the usage flusher does: a batch that was not
                    // written is written again, so it must not be half-written.
                    while s.record_usage(&batch).await.is_err() {}
                    let mut a = sample_app("app_u1", 1);
                    a.app.name = format!("writer {n}");
                    // Updates race with the usage writes; one that loses
                    // every retry is refused whole, as a 503 would be.
                    loop {
                        match s.update(&a, a.app.updated_at).await {
                            Ok(()) => break,
                            Err(StoreError::Unavailable(_)) => {}
                            Err(e) => panic!("update under contention: {e}"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for id in ["app_u1", "app_u2"] {
            assert_eq!(s.get(id).await.unwrap().unwrap().app.use_count, 60, "{id}");
            // The hourly buckets were written with the totals, never apart.
            assert_eq!(s.hourly_usage(id, 0).await.unwrap(), [(hour, 60)], "{id}");
        }
        assert!(s.get("app_gone").await.unwrap().is_none());
        let mut c = s.conn().await.unwrap();
        let gone: bool = c.exists("use:usage:app_gone").await.unwrap();
        assert!(!gone, "no buckets for an absent application");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lapsed_hours_are_deleted_and_the_buckets_expire() {
        let redis = RedisServer::start();
        let s = store(&redis, "lapse:").await;
        s.insert(&sample_app("app_l", 1)).await.unwrap();
        let now = chrono::Utc::now();
        let (hour, oldest) = (
            crate::store::hour_start(now),
            crate::store::oldest_kept_hour(now),
        );
        let key = "lapse:usage:app_l";
        let mut c = s.conn().await.unwrap();
        // Left by an earlier write: one hour past keeping, one just kept.
        let _: () = c
            .hset_multiple(key, &[(oldest - 3600, 4), (oldest, 5)])
            .await
            .unwrap();
        assert_eq!(
            s.hourly_usage("app_l", 0).await.unwrap(),
            [(oldest, 5)],
            "a lapsed hour is never returned"
        );
        let delta = UsageDelta {
            app_id: "app_l".into(),
            count: 1,
            last_at: now,
            last_ip: "192.0.2.1".into(),
            hours: vec![(hour, 1)],
        };
        s.record_usage(std::slice::from_ref(&delta)).await.unwrap();
        let mut fields: Vec<i64> = c.hkeys(key).await.unwrap();
        fields.sort_unstable();
        assert_eq!(fields, [oldest, hour], "the lapsed hour is deleted");
        let ttl: i64 = c.ttl(key).await.unwrap();
        assert!(
            ttl > crate::store::USAGE_KEPT_SECS - 60 && ttl <= crate::store::USAGE_KEPT_SECS + 3600,
            "{ttl}"
        );
        s.record_usage(&[delta]).await.unwrap();
        assert_eq!(
            s.hourly_usage("app_l", 0).await.unwrap(),
            [(oldest, 5), (hour, 2)]
        );
    }
}
