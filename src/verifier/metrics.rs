//! The verifier's own metrics, in a registry of its own: JWKS refreshes,
//! refusals by reason, and how fresh the revocation mirror is.
//!
//! Render them with [`Verifier::metrics_text`](super::Verifier::metrics_text)
//! (serve it at your service's `/metrics`), or gather
//! [`Verifier::metrics_registry`](super::Verifier::metrics_registry) with
//! your own.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `tessera_verifier_jwks_refreshes_total{result="ok"\|"failed"}` | counter | JWKS fetches (start-up included) |
//! | `tessera_verifier_refusals_total{reason}` | counter | tokens refused, by [`refusal_reason`] |
//! | `tessera_verifier_mirror_staleness_seconds` | gauge | seconds since the revocation source was last heard from (0 while a Redis subscription is up; -1 before it was ever heard) |
//! | `tessera_verifier_mirror_behind` | gauge | 1 while the feed follower knows entries remain unfetched |
//! | `tessera_verifier_mirror_stale` | gauge | 1 while the mirror is staler than `max_staleness` (tokens are refused unless `fail_open_when_stale`) |
//! | `tessera_verifier_mirror_position` | gauge | highest feed position applied: the gateway's `tessera_revocation_feed_position` minus this is how far behind the mirror is |
//! | `tessera_verifier_mirror_entries` | gauge | revocations held |

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::VerifyError;
use crate::crypto::jose::JoseError;

/// Every reason label, in the order of the counters.
const REASONS: [&str; 11] = [
    "missing",
    "malformed",
    "unknown_key",
    "wrong_algorithm",
    "invalid",
    "revoked",
    "stale",
    "ip_not_allowed",
    "forbidden",
    "unavailable",
    "invalid_request",
];

/// The `reason` label a refusal is counted under: `missing`, `malformed`
/// (unparsable, too large, wrong `typ`), `unknown_key`, `wrong_algorithm`,
/// `invalid` (signature, expiry, issuer, audience), `revoked`, `stale`,
/// `ip_not_allowed`, `forbidden`, `unavailable`, `invalid_request`.
pub fn refusal_reason(e: &VerifyError) -> &'static str {
    match e {
        VerifyError::Missing => "missing",
        VerifyError::Invalid(j) => match j {
            JoseError::UnknownKey(_) => "unknown_key",
            JoseError::WrongAlgorithm(_) => "wrong_algorithm",
            JoseError::Invalid(_) => "invalid",
            JoseError::BadJwks(_)
            | JoseError::Malformed(_)
            | JoseError::TooLarge(_)
            | JoseError::WrongType
            | JoseError::NotAnIdToken => "malformed",
        },
        VerifyError::Revoked => "revoked",
        VerifyError::Stale => "stale",
        VerifyError::IpNotAllowed(_) => "ip_not_allowed",
        VerifyError::Forbidden(_) => "forbidden",
        VerifyError::Unavailable(_) => "unavailable",
        VerifyError::InvalidRequest(_) => "invalid_request",
    }
}

/// The verifier's registry and its refusal counters.
pub(super) struct VerifierMetrics {
    pub(super) registry: Registry,
    refusals: Vec<IntCounter>,
}

impl VerifierMetrics {
    /// A registry holding the refusal counters and `jwks_refreshes`.
    pub(super) fn new(jwks_refreshes: &IntCounterVec) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let vec = IntCounterVec::new(
            Opts::new(
                "tessera_verifier_refusals_total",
                "Tokens and requests refused by the verifier, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(vec.clone()))?;
        registry.register(Box::new(jwks_refreshes.clone()))?;
        let refusals = REASONS
            .iter()
            .map(|r| vec.with_label_values(&[r]))
            .collect();
        Ok(Self { registry, refusals })
    }

    /// Gauges of `mirror`'s freshness, read at each scrape; `bound` is the
    /// verifier's `max_staleness`.
    pub(super) fn watch_mirror(
        &self,
        mirror: &std::sync::Arc<super::mirror::RevocationMirror>,
        bound: std::time::Duration,
    ) -> Result<(), prometheus::Error> {
        type Read = fn(&super::mirror::RevocationMirror, std::time::Duration) -> f64;
        let gauges: [(&str, &str, Read); 5] = [
            (
                "tessera_verifier_mirror_staleness_seconds",
                "Seconds since the revocation source was last heard from (0 while subscribed, -1 before it was heard).",
                |m, _| m.silent_for().map_or(-1.0, |d| d.as_secs_f64()),
            ),
            (
                "tessera_verifier_mirror_behind",
                "1 while the feed follower knows entries remain unfetched.",
                |m, _| f64::from(u8::from(m.is_behind())),
            ),
            (
                "tessera_verifier_mirror_stale",
                "1 while the mirror is staler than max_staleness.",
                |m, bound| f64::from(u8::from(m.is_stale(bound))),
            ),
            (
                "tessera_verifier_mirror_position",
                "Highest revocation feed position applied.",
                |m, _| m.position() as f64,
            ),
            (
                "tessera_verifier_mirror_entries",
                "Revocations held by the mirror.",
                |m, _| m.len() as f64,
            ),
        ];
        for (name, help, read) in gauges {
            let m = mirror.clone();
            let g = prometheus::PullingGauge::new(name, help, Box::new(move || read(&m, bound)))?;
            self.registry.register(Box::new(g))?;
        }
        Ok(())
    }

    /// Counts one refusal.
    pub(super) fn refused(&self, e: &VerifyError) {
        let reason = refusal_reason(e);
        if let Some(c) = REASONS
            .iter()
            .position(|r| *r == reason)
            .and_then(|i| self.refusals.get(i))
        {
            c.inc();
        }
    }
}
