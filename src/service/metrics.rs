//! What `/metrics` exposes, in the Prometheus text format, with the
//! `prometheus` crate (no protobuf, no global registry: the registry lives
//! on the gateway).
//!
//! Metrics can be switched off (`metrics = false`, `TESSERA_METRICS=off`):
//! then nothing is created and every recording method below is one branch
//! on an `Option`, with no clock read and no atomic touched; `/metrics`
//! answers 404.
//!
//! Labelled children on the hot paths (exchange outcomes, caches, the edge,
//! response classes) are created once here and kept, so recording them costs
//! an atomic add, not a label lookup. The request histogram's labels (route,
//! method, status) are looked up per request.

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, PullingGauge,
    Registry, TextEncoder,
};
use std::time::{Duration, Instant};

/// Buckets for request and exchange durations, seconds: a warm exchange is
/// well under a millisecond, a cold one (argon2) tens of milliseconds, a
/// saturated pool seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How an exchange ended, for `tessera_exchange_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeOutcome {
    /// A token was minted.
    Issued,
    /// Refused for the credentials, the policy or the request.
    Refused,
    /// Refused by the failure limiter.
    RateLimited,
    /// The gateway could not answer (store, hashing pool, internal).
    Error,
}

impl ExchangeOutcome {
    const ALL: [Self; 4] = [Self::Issued, Self::Refused, Self::RateLimited, Self::Error];

    fn label(self) -> &'static str {
        match self {
            Self::Issued => "issued",
            Self::Refused => "refused",
            Self::RateLimited => "rate_limited",
            Self::Error => "error",
        }
    }

    /// The outcome of an exchange that answered `result`.
    pub fn of<T>(result: &Result<T, crate::domain::DomainError>) -> Self {
        use crate::domain::DomainError as E;
        match result {
            Ok(_) => Self::Issued,
            Err(E::RateLimited { .. }) => Self::RateLimited,
            Err(E::Unavailable | E::Internal(_)) => Self::Error,
            Err(
                E::MissingCredentials
                | E::InvalidCredentials
                | E::KeyExpired
                | E::InvalidToken
                | E::InsufficientPermissions(_)
                | E::InvalidScope(_)
                | E::AudienceNotAllowed(_)
                | E::IpNotAllowed(_)
                | E::InvalidRequest(_)
                | E::UnsupportedGrantType(_)
                | E::Validation(_)
                | E::NotFound(_)
                | E::Conflict(_)
                | E::InvalidGrant(_)
                | E::UnauthorizedClient(_),
            ) => Self::Refused,
        }
    }
}

/// Which exchange, for `tessera_exchange_duration_seconds{grant}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// An application's secret for a token: `app_token` at `/api/v1/token`,
    /// `client_credentials` at `/oauth/token`.
    ClientCredentials,
    /// RFC 8693 token exchange at `/oauth/token`.
    TokenExchange,
}

impl Grant {
    const ALL: [Self; 2] = [Self::ClientCredentials, Self::TokenExchange];

    fn label(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "token_exchange",
        }
    }
}

/// The in-process caches whose hits and misses are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cache {
    /// Recently verified secrets (skips argon2).
    Secret,
    /// Application snapshots.
    App,
    /// Effective grants.
    Grants,
    /// Tokens minted at the edge for raw keys.
    ForwardMinted,
    /// Tokens verified at the edge.
    ForwardVerified,
}

impl Cache {
    const ALL: [Self; 5] = [
        Self::Secret,
        Self::App,
        Self::Grants,
        Self::ForwardMinted,
        Self::ForwardVerified,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::App => "app",
            Self::Grants => "grants",
            Self::ForwardMinted => "forward_minted",
            Self::ForwardVerified => "forward_verified",
        }
    }
}

/// How `/auth/forward` answered, for `tessera_edge_decisions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeOutcome {
    /// Admitted.
    Admitted,
    /// Refused for the credential or the route's needs (401, 403, 400).
    Refused,
    /// Refused by an application's budget.
    RateLimited,
    /// A query the gateway cannot read (the proxy's configuration), or the
    /// store unavailable.
    Error,
}

impl EdgeOutcome {
    const ALL: [Self; 4] = [
        Self::Admitted,
        Self::Refused,
        Self::RateLimited,
        Self::Error,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Admitted => "admitted",
            Self::Refused => "refused",
            Self::RateLimited => "rate_limited",
            Self::Error => "error",
        }
    }
}

/// A start instant, taken only when metrics are on.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(Option<Instant>);

impl Stopwatch {
    /// A stopwatch that records nothing.
    pub const OFF: Self = Self(None);
}

/// The recorders, present only when metrics are on.
struct Recorders {
    tokens_issued: IntCounter,
    exchange_failures: IntCounter,
    rate_limited: IntCounter,
    secret_verifications: IntCounter,
    secret_cache_hits: IntCounter,
    edge: [IntCounter; 4],
    /// 2xx, 4xx, 5xx.
    http_class: [IntCounter; 3],
    http_duration: HistogramVec,
    /// By grant, then outcome (the order of `Grant::ALL`, `ExchangeOutcome::ALL`).
    exchange_duration: [[Histogram; 4]; 2],
    cache_hits: [IntCounter; 5],
    cache_misses: [IntCounter; 5],
    argon2_wait: Histogram,
    revocations: IntCounterVec,
}

/// The gateway's metrics: a registry of its own, and typed recording
/// methods that do nothing when metrics are off.
pub struct Metrics {
    registry: Registry,
    on: Option<Box<Recorders>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.on.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// Metrics on.
    fn default() -> Self {
        Self::new(true)
    }
}

/// Why a metric could not be registered: a programming error (a name used
/// twice), reported once at start-up rather than panicking.
fn registered<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
    if let Err(e) = registry.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "a metric could not be registered");
    }
    c
}

fn counter(registry: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    Ok(registered(registry, IntCounter::new(name, help)?))
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    Ok(registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels)?,
    ))
}

/// One child per label value, created now so the series exist (at 0) from
/// the start and recording needs no lookup.
fn children<const N: usize>(vec: &IntCounterVec, values: [&str; N]) -> [IntCounter; N] {
    values.map(|v| vec.with_label_values(&[v]))
}

impl Recorders {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let edge = counter_vec(
            registry,
            "tessera_edge_decisions_total",
            "/auth/forward answers by outcome.",
            &["outcome"],
        )?;
        let http_class = counter_vec(
            registry,
            "tessera_http_responses_total",
            "HTTP responses by status class.",
            &["class"],
        )?;
        let latency = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };
        let http_duration = registered(
            registry,
            HistogramVec::new(
                latency(
                    "tessera_http_request_duration_seconds",
                    "HTTP request duration by route pattern, method and status.",
                ),
                &["route", "method", "status"],
            )?,
        );
        let exchange = registered(
            registry,
            HistogramVec::new(
                latency(
                    "tessera_exchange_duration_seconds",
                    "Token exchange duration (/api/v1/token, /oauth/token) by grant and outcome.",
                ),
                &["grant", "outcome"],
            )?,
        );
        let exchange_duration = Grant::ALL.map(|g| {
            ExchangeOutcome::ALL.map(|o| exchange.with_label_values(&[g.label(), o.label()]))
        });
        let hits = counter_vec(
            registry,
            "tessera_cache_hits_total",
            "In-process cache lookups that found a usable entry, by cache.",
            &["cache"],
        )?;
        let misses = counter_vec(
            registry,
            "tessera_cache_misses_total",
            "In-process cache lookups that did not, by cache.",
            &["cache"],
        )?;
        let caches = Cache::ALL.map(Cache::label);
        let argon2_wait = registered(
            registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "tessera_argon2_queue_wait_seconds",
                    "Time an argon2 job waited for a hashing slot.",
                )
                .buckets(vec![
                    0.0001, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )?,
        );
        Ok(Self {
            tokens_issued: counter(
                registry,
                "tessera_tokens_issued_total",
                "Access tokens minted.",
            )?,
            exchange_failures: counter(
                registry,
                "tessera_exchange_failures_total",
                "Token exchanges refused for bad credentials.",
            )?,
            rate_limited: counter(
                registry,
                "tessera_rate_limited_total",
                "Token exchanges refused by the failure limiter.",
            )?,
            secret_verifications: counter(
                registry,
                "tessera_secret_verifications_total",
                "argon2id verifications run.",
            )?,
            secret_cache_hits: counter(
                registry,
                "tessera_secret_cache_hits_total",
                "Exchanges served from the verified-secret cache.",
            )?,
            edge: children(&edge, EdgeOutcome::ALL.map(EdgeOutcome::label)),
            http_class: children(&http_class, ["2xx", "4xx", "5xx"]),
            http_duration,
            exchange_duration,
            cache_hits: children(&hits, caches),
            cache_misses: children(&misses, caches),
            argon2_wait,
            revocations: counter_vec(
                registry,
                "tessera_revocations_published_total",
                "Revocations written and published by this gateway, by kind.",
                &["kind"],
            )?,
        })
    }
}

impl Metrics {
    /// Metrics on (`enabled`) or off. A metric that cannot be created (a
    /// programming error) turns metrics off with an error logged, rather
    /// than stopping the gateway.
    pub fn new(enabled: bool) -> Self {
        let registry = Registry::new();
        let on = if enabled {
            match Recorders::new(&registry) {
                Ok(r) => Some(Box::new(r)),
                Err(e) => {
                    tracing::error!(error = %e, "metrics could not be created; they are off");
                    None
                }
            }
        } else {
            None
        };
        Self { registry, on }
    }

    /// Whether metrics are recorded.
    pub fn enabled(&self) -> bool {
        self.on.is_some()
    }

    /// The registry `/metrics` renders: register further collectors here
    /// (a gauge of signing keys by state, say). Rendered only when metrics
    /// are on.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Registers a gauge read at each scrape (`f` must be cheap and never
    /// block). Does nothing when metrics are off.
    pub fn gauge_fn(&self, name: &str, help: &str, f: impl Fn() -> f64 + Send + Sync + 'static) {
        if self.on.is_none() {
            return;
        }
        match PullingGauge::new(name, help, Box::new(f)) {
            Ok(g) => {
                registered(&self.registry, g);
            }
            Err(e) => tracing::error!(error = %e, name, "a gauge could not be created"),
        }
    }

    /// Gauges of the hashing pool's load, read at each scrape.
    pub fn watch_hasher(&self, load: &crate::crypto::hashing::HashLoad) {
        let running = load.clone();
        self.gauge_fn(
            "tessera_argon2_in_flight",
            "argon2 jobs holding a hashing slot.",
            move || running.running() as f64,
        );
        let queued = load.clone();
        self.gauge_fn(
            "tessera_argon2_queued",
            "argon2 jobs waiting for a hashing slot.",
            move || queued.queued() as f64,
        );
    }

    /// The Prometheus text exposition, or `None` when metrics are off.
    pub fn render(&self) -> Option<String> {
        self.on.as_ref()?;
        let mut out = String::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics could not be rendered");
        }
        Some(out)
    }

    /// Now, when metrics are on; nothing otherwise.
    pub fn start(&self) -> Stopwatch {
        Stopwatch(self.on.as_ref().map(|_| Instant::now()))
    }

    /// An access token was minted.
    pub fn token_issued(&self) {
        if let Some(r) = &self.on {
            r.tokens_issued.inc();
        }
    }

    /// An exchange was refused for bad credentials.
    pub fn exchange_failure(&self) {
        if let Some(r) = &self.on {
            r.exchange_failures.inc();
        }
    }

    /// An exchange was refused by the failure limiter.
    pub fn rate_limited(&self) {
        if let Some(r) = &self.on {
            r.rate_limited.inc();
        }
    }

    /// An argon2 verification was run.
    pub fn secret_verification(&self) {
        if let Some(r) = &self.on {
            r.secret_verifications.inc();
        }
    }

    /// A lookup in `cache` found a usable entry (`hit`) or not. A hit on the
    /// secret cache also counts `tessera_secret_cache_hits_total`.
    pub fn cache(&self, cache: Cache, hit: bool) {
        if let Some(r) = &self.on {
            let i = cache as usize;
            if hit {
                if let Some(c) = r.cache_hits.get(i) {
                    c.inc();
                }
                if cache == Cache::Secret {
                    r.secret_cache_hits.inc();
                }
            } else if let Some(c) = r.cache_misses.get(i) {
                c.inc();
            }
        }
    }

    /// How `/auth/forward` answered.
    pub fn edge(&self, outcome: EdgeOutcome) {
        if let Some(r) = &self.on
            && let Some(c) = r.edge.get(outcome as usize)
        {
            c.inc();
        }
    }

    /// An exchange started at `started` ended with `outcome`.
    pub fn exchange(&self, started: Stopwatch, grant: Grant, outcome: ExchangeOutcome) {
        if let (Some(r), Some(t)) = (&self.on, started.0)
            && let Some(h) = r
                .exchange_duration
                .get(grant as usize)
                .and_then(|g| g.get(outcome as usize))
        {
            h.observe(t.elapsed().as_secs_f64());
        }
    }

    /// A response with `status` to a request for `route` (the matched
    /// pattern, or `unmatched`), taking `elapsed`.
    pub fn http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        if let Some(r) = &self.on {
            let class = match status / 100 {
                2 => r.http_class.first(),
                4 => r.http_class.get(1),
                5 => r.http_class.get(2),
                _ => None,
            };
            if let Some(c) = class {
                c.inc();
            }
            let code = status_digits(status);
            let code = std::str::from_utf8(&code).unwrap_or("000");
            r.http_duration
                .with_label_values(&[route, method, code])
                .observe(elapsed.as_secs_f64());
        }
    }

    /// A revocation of `kind` (`jti`, `subject`, `session`, …) was written
    /// and published.
    pub fn revocation_published(&self, kind: &str) {
        if let Some(r) = &self.on {
            r.revocations.with_label_values(&[kind]).inc();
        }
    }

    /// The histogram the hashing pool records its queue wait in (`None`
    /// when metrics are off).
    pub fn argon2_wait(&self) -> Option<Histogram> {
        self.on.as_ref().map(|r| r.argon2_wait.clone())
    }
}

/// A status code's three digits, without allocating per request.
fn status_digits(status: u16) -> [u8; 3] {
    [status / 100 % 10, status / 10 % 10, status % 10].map(|d| b'0' + (d as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_renders_nothing_and_records_nothing() {
        let m = Metrics::new(false);
        m.token_issued();
        m.http("/x", "GET", 200, Duration::from_millis(1));
        assert!(m.render().is_none());
        assert!(m.registry().gather().is_empty());
        assert!(m.start().0.is_none());
    }

    #[test]
    fn on_keeps_the_old_names_and_adds_histograms() {
        let m = Metrics::new(true);
        m.token_issued();
        m.edge(EdgeOutcome::RateLimited);
        m.cache(Cache::Secret, true);
        m.cache(Cache::Grants, false);
        m.http("/api/v1/apps/{id}", "GET", 404, Duration::from_millis(2));
        m.exchange(m.start(), Grant::ClientCredentials, ExchangeOutcome::Issued);
        m.revocation_published("jti");
        let text = m.render().unwrap();
        for line in [
            "tessera_tokens_issued_total 1",
            "tessera_edge_decisions_total{outcome=\"rate_limited\"} 1",
            "tessera_edge_decisions_total{outcome=\"admitted\"} 0",
            "tessera_http_responses_total{class=\"4xx\"} 1",
            "tessera_secret_cache_hits_total 1",
            "tessera_cache_hits_total{cache=\"secret\"} 1",
            "tessera_cache_misses_total{cache=\"grants\"} 1",
            "tessera_http_request_duration_seconds_count{method=\"GET\",route=\"/api/v1/apps/{id}\",status=\"404\"} 1",
            "tessera_exchange_duration_seconds_count{grant=\"client_credentials\",outcome=\"issued\"} 1",
            "tessera_revocations_published_total{kind=\"jti\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn status_codes_print_as_three_digits() {
        assert_eq!(&status_digits(200), b"200");
        assert_eq!(&status_digits(503), b"503");
        assert_eq!(&status_digits(101), b"101");
    }
}
