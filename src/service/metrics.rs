//! Counters exposed at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Process-wide counters; all relaxed atomics (exact ordering is irrelevant).
#[derive(Default, Debug)]
pub struct Metrics {
    /// Access tokens minted.
    pub tokens_issued: AtomicU64,
    /// Exchanges refused for bad credentials.
    pub exchange_failures: AtomicU64,
    /// Exchanges refused by the failure limiter.
    pub rate_limited: AtomicU64,
    /// argon2 verifications run (cache misses).
    pub secret_verifications: AtomicU64,
    /// Exchanges answered from the verified-secret cache.
    pub secret_cache_hits: AtomicU64,
    /// `/auth/forward` answers: admitted.
    pub edge_admitted: AtomicU64,
    /// `/auth/forward` answers: refused for the credential or the route's
    /// needs (401, 403, 400).
    pub edge_refused: AtomicU64,
    /// `/auth/forward` answers: refused by an application's budget.
    pub edge_rate_limited: AtomicU64,
    /// `/auth/forward` answers: a query the gateway cannot read (the
    /// proxy's configuration), or the store unavailable.
    pub edge_errors: AtomicU64,
    /// HTTP responses by class: 2xx, 4xx, 5xx.
    pub http_2xx: AtomicU64,
    /// See `http_2xx`.
    pub http_4xx: AtomicU64,
    /// See `http_2xx`.
    pub http_5xx: AtomicU64,
}

/// Adds one to a counter.
pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Renders the Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(1024);
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        };
        counter(
            "tessera_tokens_issued_total",
            "Access tokens minted.",
            &self.tokens_issued,
        );
        counter(
            "tessera_exchange_failures_total",
            "Token exchanges refused for bad credentials.",
            &self.exchange_failures,
        );
        counter(
            "tessera_rate_limited_total",
            "Token exchanges refused by the failure limiter.",
            &self.rate_limited,
        );
        counter(
            "tessera_secret_verifications_total",
            "argon2id verifications run.",
            &self.secret_verifications,
        );
        counter(
            "tessera_secret_cache_hits_total",
            "Exchanges served from the verified-secret cache.",
            &self.secret_cache_hits,
        );
        let _ = writeln!(
            out,
            "# HELP tessera_edge_decisions_total /auth/forward answers by outcome.\n# TYPE tessera_edge_decisions_total counter"
        );
        for (outcome, v) in [
            ("admitted", &self.edge_admitted),
            ("refused", &self.edge_refused),
            ("rate_limited", &self.edge_rate_limited),
            ("error", &self.edge_errors),
        ] {
            let _ = writeln!(
                out,
                "tessera_edge_decisions_total{{outcome=\"{outcome}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tessera_http_responses_total HTTP responses by status class.\n# TYPE tessera_http_responses_total counter"
        );
        for (class, v) in [
            ("2xx", &self.http_2xx),
            ("4xx", &self.http_4xx),
            ("5xx", &self.http_5xx),
        ] {
            let _ = writeln!(
                out,
                "tessera_http_responses_total{{class=\"{class}\"}} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}
