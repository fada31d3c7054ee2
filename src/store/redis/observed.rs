//! Redis command latency and errors, recorded in one place: every command
//! this backend sends goes through [`Connection`], a pooled connection that
//! times each command (and each pipeline or transaction) by its name.
//!
//! Until [`RedisStore::observe`](super::RedisStore::observe) is called, and
//! always when metrics are off, a connection records nothing and reads no
//! clock.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use redis::aio::ConnectionLike;
use redis::{Arg, Cmd, Pipeline, RedisFuture, Value};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Where a store's connections record, once metrics are attached.
pub(super) type Observer = Arc<OnceLock<Arc<RedisMetrics>>>;

/// The recorders of Redis calls.
pub struct RedisMetrics {
    latency: HistogramVec,
    errors: IntCounterVec,
}

impl RedisMetrics {
    /// Creates the recorders and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "tessera_redis_command_duration_seconds",
                "Redis command latency by operation (command name, `pipeline`, \
                 `transaction`, or `pool_get` for taking a pooled connection).",
            )
            .buckets(vec![
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                0.25, 0.5, 1.0, 2.0,
            ]),
            &["op"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "tessera_redis_errors_total",
                "Redis calls that failed or were abandoned (timeout), by operation.",
            ),
            &["op"],
        )?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        Ok(Self { latency, errors })
    }

    /// Records one call of `op` that started at `started`.
    pub(super) fn record(&self, op: &str, started: Instant, failed: bool) {
        self.latency
            .with_label_values(&[op])
            .observe(started.elapsed().as_secs_f64());
        if failed {
            self.errors.with_label_values(&[op]).inc();
        }
    }
}

/// Counts a call abandoned before it answered (its future dropped by the
/// call timeout) as an error.
struct Pending<'a> {
    metrics: &'a RedisMetrics,
    op: &'a str,
    started: Instant,
    done: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.record(self.op, self.started, true);
        }
    }
}

/// A command's name as a label: its first argument, upper-cased, when it is
/// a short word (always so for the commands this backend sends).
fn op_of(cmd: &Cmd) -> String {
    match cmd.args_iter().next() {
        Some(Arg::Simple(name))
            if !name.is_empty()
                && name.len() <= 24
                && name.iter().all(|b| b.is_ascii_alphabetic() || *b == b'_') =>
        {
            name.iter()
                .map(|b| char::from(b.to_ascii_uppercase()))
                .collect()
        }
        _ => "other".to_owned(),
    }
}

/// A pooled connection that records each command it sends.
pub struct Connection {
    inner: deadpool_redis::Connection,
    metrics: Option<Arc<RedisMetrics>>,
}

impl Connection {
    /// Wraps `inner`, recording in `metrics` when set.
    pub(super) fn new(
        inner: deadpool_redis::Connection,
        metrics: Option<Arc<RedisMetrics>>,
    ) -> Self {
        Self { inner, metrics }
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let Some(metrics) = self.metrics.clone() else {
            return self.inner.req_packed_command(cmd);
        };
        let op = op_of(cmd);
        let inner = &mut self.inner;
        Box::pin(async move {
            let mut pending = Pending {
                metrics: &metrics,
                op: &op,
                started: Instant::now(),
                done: false,
            };
            let res = inner.req_packed_command(cmd).await;
            pending.done = true;
            metrics.record(&op, pending.started, res.is_err());
            res
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let Some(metrics) = self.metrics.clone() else {
            return self.inner.req_packed_commands(pipeline, offset, count);
        };
        let op = if pipeline.is_transaction() {
            "transaction"
        } else {
            "pipeline"
        };
        let inner = &mut self.inner;
        Box::pin(async move {
            let mut pending = Pending {
                metrics: &metrics,
                op,
                started: Instant::now(),
                done: false,
            };
            let res = inner.req_packed_commands(pipeline, offset, count).await;
            pending.done = true;
            metrics.record(op, pending.started, res.is_err());
            res
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_named_by_their_first_word() {
        assert_eq!(op_of(redis::cmd("get").arg("k")), "GET");
        assert_eq!(op_of(&redis::cmd("EVALSHA")), "EVALSHA");
        assert_eq!(op_of(&redis::cmd("a b")), "other");
        assert_eq!(op_of(&Cmd::new()), "other");
    }
}
