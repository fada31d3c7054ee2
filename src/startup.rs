//! Assembling and running the gateway: the backend is chosen here, once.

use crate::domain::RevocationKind;
use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use std::net::TcpListener;

use crate::config::Settings;
use crate::crypto::kek::Kek;
use crate::domain::ChangeEvent;
use crate::http;
use crate::service::Gateway;
use crate::service::Stores;
use crate::service::bootstrap::{self, Bootstrap};
use crate::service::keyring::{KeyPolicy, KeyRingCell};
use crate::service::usage;
use crate::store::embedded::EmbeddedStore;
use crate::store::redis::{Change, RedisStore};
use secrecy::ExposeSecret;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartupError(pub String);

/// A built gateway, bound to its port, not yet serving.
pub struct Application {
    port: u16,
    server: Server,
    gateway: web::Data<Gateway>,
    bootstrap: Option<Bootstrap>,
    /// The address bound (`IP:port`).
    listen: String,
    /// `/metrics` without a token on `metrics_listen`, when configured.
    metrics_server: Option<Server>,
    flusher: tokio::task::JoinHandle<()>,
    stop_flusher: tokio::sync::oneshot::Sender<()>,
    listener: Option<tokio::task::JoinHandle<()>>,
    /// Keeps the signing-key ring in step with the store.
    key_follower: tokio::task::JoinHandle<()>,
    /// Requests in flight, and whether the gateway is stopping.
    drain: Drain,
    /// SIGTERM and SIGINT, registered before serving.
    signals: Signals,
}

/// How long in-flight requests may take to finish once the gateway is
/// asked to stop; past it, they are cut.
const SHUTDOWN_CAP: std::time::Duration = std::time::Duration::from_secs(30);

/// Requests in flight and whether the gateway is stopping.
///
/// actix-web's own graceful stop waits for every connection to close, and a
/// client that keeps a connection alive (the verifiers polling the
/// revocation feed) holds it open up to the 30 s cap. Here the stop waits
/// for requests instead: once none is in flight, the remaining connections
/// are idle and are closed at once; responses given while stopping say
/// `Connection: close`.
#[derive(Clone, Default)]
struct Drain {
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
    in_flight: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// One request counted in flight until dropped.
struct InFlight(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

impl Drain {
    fn enter(&self) -> InFlight {
        self.in_flight
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        InFlight(self.in_flight.clone())
    }

    fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::Acquire)
    }

    fn idle(&self) -> bool {
        self.in_flight.load(std::sync::atomic::Ordering::Acquire) == 0
    }

    /// Stops the server: no new connections, requests in flight finish
    /// (up to [`SHUTDOWN_CAP`]), then idle connections are closed.
    async fn stop(&self, server: actix_web::dev::ServerHandle) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Release);
        server.pause().await;
        let deadline = tokio::time::Instant::now() + SHUTDOWN_CAP;
        let step = std::time::Duration::from_millis(20);
        loop {
            // Idle twice, a moment apart: the last answers are written out
            // (they close their connections themselves).
            if self.idle() {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if self.idle() {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("requests still in flight after 30 s; stopping anyway");
                break;
            }
            tokio::time::sleep(step).await;
        }
        server.stop(false).await;
    }
}

/// The stop signals the gateway answers: SIGTERM and SIGINT (Ctrl-C).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Applies a change made by another gateway to this one's caches.
fn apply_change(gw: &Gateway, change: Change) {
    match change {
        Change::Event(ChangeEvent::App { id }) => {
            gw.app_cache.invalidate(&id);
            gw.secret_cache.invalidate_app(&id);
            gw.grants_cache.invalidate(&id);
        }
        Change::Event(ChangeEvent::Roles | ChangeEvent::Users) => gw.grants_cache.clear(),
        // Read again by the key-ring follower, which owns the ring.
        Change::Event(ChangeEvent::Keys) => gw.keys.changed(),
        // Revocations themselves are read from the store on every check
        // here; but a subject entry makes every cached snapshot of that
        // subject too old to mint from (its tokens would be born revoked).
        Change::Event(ChangeEvent::Revocation { entry }) => {
            gw.revocation_mirror.apply(&entry);
            // A withdrawn signing key leaves this gateway's ring at once,
            // whether or not the ring's own write reaches it.
            if let RevocationKind::Key { kid } = &entry.kind {
                gw.keys.withdraw(kid);
            }
            if let RevocationKind::Subject { sub, .. } = entry.kind {
                gw.app_cache.invalidate(&sub);
                gw.grants_cache.invalidate(&sub);
            }
        }
        // Revocations made elsewhere are missed from now on: the edge asks
        // the store until the subscription is back. The caches are kept
        // (they serve through a Redis outage); a snapshot read before a
        // missed revocation only mints tokens born revoked.
        Change::Lost => gw.revocation_mirror.unsubscribed(),
        // Messages may have been missed while disconnected: start afresh.
        Change::Resynced => {
            gw.keys.changed();
            // Reloaded by the next tick; the store answers until then.
            gw.revocation_mirror.lost_track();
            gw.app_cache.clear();
            gw.secret_cache.clear();
            gw.grants_cache.clear();
        }
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// The backend, chosen here once: Redis when `TESSERA_REDIS_URL` is set,
/// else the embedded store.
/// The Redis store is returned too, so its commands can be timed once the
/// gateway's metrics exist.
async fn open_store(settings: &Settings) -> Result<(Stores, Option<RedisStore>), StartupError> {
    if let Some(url) = &settings.redis_url {
        let store = RedisStore::connect(url, &settings.redis_prefix)
            .await
            .map_err(|e| StartupError(format!("redis_url (TESSERA_REDIS_URL): {e}")))?;
        tracing::info!(prefix = %settings.redis_prefix, "using the Redis backend");
        return Ok((Stores::all(store.clone()), Some(store)));
    }
    let store = EmbeddedStore::open(&settings.data_dir)
        .map_err(|e| StartupError(format!("data_dir (TESSERA_DATA_DIR): {e}")))?;
    Ok((Stores::all(store), None))
}

/// Refuses to start when `keys_dir` does not exist and signing keys would
/// be generated afresh on a store that already holds data.
///
/// Keys live in the store; `keys_dir` is read only while the store holds no
/// key, to import the files in it. A store with keys never reads it (and the
/// files may be deleted once imported), and an empty store (a first start)
/// gets fresh keys when there is nothing to import. But a store holding
/// applications and no key (one kept before keys moved into the store) with
/// a mistyped directory would silently get a new key ring, and every token
/// and verifier cache would break: that needs `--init-keys`.
async fn check_keys_dir(settings: &Settings, store: &Stores) -> Result<(), StartupError> {
    if settings.init_keys || settings.keys_dir.exists() {
        return Ok(());
    }
    let unavailable = |e: crate::store::StoreError| StartupError(format!("signing keys: {e}"));
    if !store
        .keys
        .load_keys()
        .await
        .map_err(unavailable)?
        .keys
        .is_empty()
    {
        return Ok(());
    }
    if store.apps.count().await.map_err(unavailable)? == 0 {
        return Ok(());
    }
    Err(StartupError(format!(
        "keys_dir (TESSERA_KEYS_DIR): {} does not exist, and the store holds applications but no \
         signing key: name the directory holding the keys to import, or start once with \
         `tessera serve --init-keys` to generate new ones (tokens signed before will no longer verify)",
        settings.keys_dir.display()
    )))
}

/// Settings that work but expose more than an operator likely meant: said
/// at start, once, so that nobody runs them unknowingly.
fn warn_if_exposed(settings: &Settings) {
    for net in settings.trusted_proxies.iter().filter(|n| !n.is_private()) {
        tracing::warn!(
            network = %net,
            "trusted_proxies holds a network that is not private: any client inside it can name any address in its forwarding header, past IP allow-lists and the per-address failure limit"
        );
    }
    if let Some(addr) = settings.metrics_listen.as_deref().filter(|a| reachable(a)) {
        tracing::warn!(
            metrics_listen = addr,
            "metrics_listen serves /metrics without a token on an address that is not loopback or private: whoever reaches it reads the gateway's traffic counts"
        );
    }
}

/// Whether a listening address may be reached from outside private
/// networks: a wildcard or a public address (a name is taken as reachable).
fn reachable(listen: &str) -> bool {
    let Ok(addr) = listen.parse::<std::net::SocketAddr>() else {
        return true;
    };
    !crate::domain::IpNet::host(addr.ip()).is_private()
}

impl Application {
    /// Loads keys, opens the store, bootstraps the admin, and binds the
    /// listener (`port 0` picks a free port: tests rely on it).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Settings built in code (an embedding program, the tests) pass the
        // same rules as loaded ones: `workers = Some(0)` would otherwise
        // panic inside actix rather than be refused with its name.
        settings
            .validate()
            .map_err(|e| StartupError(e.to_string()))?;
        let kek = match (&settings.kek, &settings.kek_file) {
            (Some(text), _) => Some(
                Kek::parse(text.expose_secret())
                    .map_err(|e| StartupError(format!("kek (TESSERA_KEK): {e}")))?,
            ),
            (None, Some(path)) => {
                #[cfg(unix)]
                if let Ok(meta) = std::fs::metadata(path) {
                    use std::os::unix::fs::PermissionsExt;
                    if meta.permissions().mode() & 0o007 != 0 {
                        tracing::warn!(file = %path.display(), "the key-encryption key file is readable by every user of this machine; make it 0600 or 0640");
                    }
                }
                Some(
                    Kek::from_file(path)
                        .map_err(|e| StartupError(format!("kek_file (TESSERA_KEK_FILE): {e}")))?,
                )
            }
            // With Redis, `validate` above has required one of the two.
            (None, None) => None,
        };
        if settings.key_publish_ahead < 300 {
            tracing::warn!(
                seconds = settings.key_publish_ahead,
                "key_publish_ahead is shorter than the JWKS cache lifetime (300 s): a verifier may meet a new key's token before it has fetched the key"
            );
        }
        warn_if_exposed(&settings);
        let (store, redis) = open_store(&settings).await?;
        check_keys_dir(&settings, &store).await?;
        let keys = KeyRingCell::open(KeyPolicy::from(&settings), store.keys.clone(), kek)
            .await
            .map_err(|e| StartupError(e.to_string()))?;
        {
            let ring = keys.current();
            tracing::info!(kid = %ring.active().kid(), alg = %ring.active().alg(), "signing key loaded");
        }
        let listener = TcpListener::bind(&settings.listen).map_err(|e| {
            StartupError(format!("listen (TESSERA_LISTEN) {}: {e}", settings.listen))
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| StartupError(e.to_string()))?
            .port();
        let mut settings = settings;
        if settings.listen.ends_with(":0") {
            // The default issuer names the address actually bound.
            if let Ok(addr) = listener.local_addr() {
                settings.listen = addr.to_string();
            }
        }
        let workers = settings
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let max_body = settings.max_body_bytes;
        let listen = settings.listen.clone();
        let follow = settings
            .redis_url
            .clone()
            .map(|url| (url, settings.redis_prefix.clone()));
        let request_timeout = std::time::Duration::from_secs(settings.request_timeout);
        let max_connections = settings.max_connections;
        let metrics_listener = match &settings.metrics_listen {
            Some(addr) => Some(
                std::net::TcpListener::bind(addr)
                    .map_err(|e| StartupError(format!("metrics_listen {addr}: {e}")))?,
            ),
            None => None,
        };
        let gateway = Gateway::new(settings, keys, store).map_err(|e| StartupError(e.0))?;
        if let Some(r) = redis.filter(|_| gateway.metrics.enabled()) {
            r.observe(gateway.metrics.registry())
                .map_err(|e| StartupError(format!("metrics: {e}")))?;
        }
        let boot = bootstrap::run(&gateway)
            .await
            .map_err(|e| StartupError(format!("bootstrap: {e}")))?;
        if follow.is_some() {
            // Not trusted before the subscription is up: a revocation made
            // elsewhere between this load and the subscription would be missed.
            gateway.revocation_mirror.unsubscribed();
        }
        if let Err(e) = crate::service::mirror::load(&gateway).await {
            // Not fatal: checks read the store until a later tick loads it.
            tracing::warn!(error = %e, "loading the revocation list failed; retrying");
        }
        // Keys revoked earlier stay out, whatever their records say now.
        for kid in gateway.revocation_mirror.revoked_kids() {
            gateway.keys.withdraw(&kid);
        }
        gateway
            .keys
            .refresh()
            .await
            .map_err(|e| StartupError(format!("signing keys: {e}")))?;
        let gateway = web::Data::new(gateway);
        crate::service::mirror::watch(&gateway);
        gateway.keys.register_metrics(&gateway.metrics);
        let (stop_flusher, mut stop) = tokio::sync::oneshot::channel::<()>();
        let flusher = {
            let gw = gateway.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(usage::FLUSH_EVERY);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut ticks: u64 = 0;
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            usage::flush(&gw).await;
                            if !gw.revocation_mirror.is_fresh()
                                && let Err(e) = crate::service::mirror::load(&gw).await
                            {
                                tracing::warn!(error = %e, "loading the revocation list failed");
                            }
                            ticks += 1;
                            // Expired revocations are forgotten about once a minute.
                            if ticks % 60 == 0 {
                                crate::service::revocation::purge_expired(&gw).await;
                                gw.revocation_mirror.purge(chrono::Utc::now().timestamp());
                                gw.forward_tokens.purge();
                                crate::service::users::purge_lapsed_sessions(&gw).await;
                            }
                        }
                        _ = &mut stop => break,
                    }
                }
                // What was counted since the last tick is written before closing.
                usage::flush(&gw).await;
            })
        };
        let key_follower = crate::service::keyring::follow(gateway.clone());
        let changes = follow.map(|(url, prefix)| {
            let gw = gateway.clone();
            RedisStore::follow_changes(url, prefix, move |e| {
                apply_change(&gw, e);
            })
        });
        let data = gateway.clone();
        let drain = Drain::default();
        let counted = drain.clone();
        let server = HttpServer::new(move || {
            let counted = counted.clone();
            App::new()
                .app_data(data.clone())
                // Request id, span, deadline, metrics and access log.
                .wrap(http::access::Observe::new(request_timeout))
                // Outermost: counts every request in flight for the stop,
                // and closes each connection after its answer once stopping.
                .wrap_fn(move |req, srv| {
                    let guard = counted.enter();
                    let counted = counted.clone();
                    let fut = actix_web::dev::Service::call(srv, req);
                    async move {
                        let mut res = fut.await?;
                        if counted.stopping() {
                            res.response_mut()
                                .head_mut()
                                .set_connection_type(actix_web::http::ConnectionType::Close);
                        }
                        drop(guard);
                        Ok(res)
                    }
                })
                .configure(http::routes(max_body))
        })
        // Stopping is ours (see `Drain`): actix's waits on idle connections.
        .disable_signals()
        .workers(workers)
        .max_connections(max_connections)
        .client_request_timeout(std::time::Duration::from_secs(5))
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
        .shutdown_timeout(30)
        .listen(listener)
        .map_err(|e| StartupError(e.to_string()))?
        .run();
        let metrics_server = match metrics_listener {
            Some(l) => {
                let data = gateway.clone();
                Some(
                    HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .route("/metrics", web::get().to(http::health::metrics_open))
                    })
                    .workers(1)
                    .disable_signals()
                    .max_connections(64)
                    .shutdown_timeout(1)
                    .listen(l)
                    .map_err(|e| StartupError(e.to_string()))?
                    .run(),
                )
            }
            None => None,
        };
        // Registered now, so that a failure stops start-up rather than
        // leaving a gateway that a signal cannot stop.
        let signals = Signals::register().map_err(|e| StartupError(format!("signals: {e}")))?;
        Ok(Self {
            port,
            server,
            gateway,
            bootstrap: Some(boot),
            listen,
            metrics_server,
            flusher,
            stop_flusher,
            listener: changes,
            key_follower,
            drain,
            signals,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address bound (`IP:port`).
    pub fn listen(&self) -> &str {
        &self.listen
    }

    /// The shared state.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// Prints on standard output what the operator must read at start-up:
    /// the admin created on first start (its secret, shown only this once),
    /// or the configured admin ensured, then the address served. Plain lines
    /// for `pretty`; for `json`, one JSON object per line and nothing else,
    /// each with an `event` (`admin_created`, `admin_ensured`, `listening`)
    /// and a `message`. Never logged: the secret goes to standard output only.
    pub fn announce(&mut self, format: crate::config::LogFormat) {
        let url = format!("http://{}", self.listen);
        let lines: Vec<(serde_json::Value, Vec<String>)> = match self.take_bootstrap() {
            Bootstrap::Created { app_id, secret } => vec![(
                serde_json::json!({
                    "event": "admin_created",
                    "appId": app_id,
                    "appSecret": secret.expose_secret(),
                    "message": "Tessera created an admin application on first start. The secret is shown only this once and is stored only as a hash.",
                }),
                vec![
                    "Tessera created an admin application on first start.".into(),
                    format!("  AppId:     {app_id}"),
                    format!("  AppSecret: {}", secret.expose_secret()),
                    "The secret is shown only this once and is stored only as a hash.".into(),
                ],
            )],
            Bootstrap::Ensured { app_id } => {
                let message =
                    format!("Admin application {app_id} ensured from TESSERA_ADMIN_APP_ID.");
                vec![(
                    serde_json::json!({"event": "admin_ensured", "appId": app_id, "message": message}),
                    vec![message],
                )]
            }
            Bootstrap::Existing => vec![],
        };
        let listening = format!("tessera listening on {url}");
        let lines = lines.into_iter().chain([(
            serde_json::json!({"event": "listening", "url": url, "message": listening}),
            vec![listening.clone()],
        )]);
        for (json, plain) in lines {
            match format {
                crate::config::LogFormat::Json => println!("{json}"),
                crate::config::LogFormat::Pretty => plain.iter().for_each(|l| println!("{l}")),
            }
        }
    }

    /// What bootstrap did (once; later calls return `Existing`).
    pub fn take_bootstrap(&mut self) -> Bootstrap {
        self.bootstrap.take().unwrap_or(Bootstrap::Existing)
    }

    /// A handle to stop the server gracefully.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or a handle stops it); in-flight requests
    /// finish first, then the store is closed as the state is dropped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Self {
            server,
            gateway,
            metrics_server,
            flusher,
            stop_flusher,
            listener,
            key_follower,
            drain,
            signals,
            ..
        } = self;
        let stop_on_signal = {
            let handle = server.handle();
            let mut signals = signals;
            tokio::spawn(async move {
                signals.recv().await;
                tracing::info!("stopping: finishing the requests in flight");
                drain.stop(handle).await;
            })
        };
        let metrics = metrics_server.map(|m| {
            let handle = m.handle();
            (tokio::spawn(m), handle)
        });
        let res = server.await;
        stop_on_signal.abort();
        if let Some((task, handle)) = metrics {
            handle.stop(false).await;
            let _ = task.await;
        }
        if let Some(l) = listener {
            l.abort();
        }
        key_follower.abort();
        // Its hold on the state (and the embedded store's lock) ends here.
        let _ = key_follower.await;
        let _ = stop_flusher.send(());
        let _ = flusher.await;
        drop(gateway);
        tracing::info!("gateway stopped");
        res
    }
}

/// Reports why the gateway could not start or stopped with an error, on
/// standard error: `error: …`, or in JSON mode a JSON line like the logs'
/// (a log collector then reads every line). Returns the failure exit code.
pub fn failed(format: crate::config::LogFormat, message: &str) -> std::process::ExitCode {
    match format {
        crate::config::LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "ERROR",
                "fields": {"message": message},
                "target": "tessera",
            })
        ),
        crate::config::LogFormat::Pretty => eprintln!("error: {message}"),
    }
    std::process::ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_addresses_reachable_from_outside_are_told() {
        for outside in [
            "0.0.0.0:9100",
            "[::]:9100",
            "203.0.113.7:9100",
            "metrics.example.com:9100",
        ] {
            assert!(super::reachable(outside), "{outside}");
        }
        for inside in [
            "127.0.0.1:9100",
            "10.0.0.5:9100",
            "[::1]:9100",
            "[fd00::5]:9100",
        ] {
            assert!(!super::reachable(inside), "{inside}");
        }
    }
}
