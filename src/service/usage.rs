//! Usage figures (`useCount`, `lastUsedAt`, `lastUsedIp`), counted in memory
//! on the exchange path and written to the store in one batch about every
//! second, so a warm exchange never waits for a write.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::Gateway;
use crate::store::UsageDelta;

/// How often pending figures are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Exchanges counted, and the time and client of the latest.
type Pending = (u64, DateTime<Utc>, IpAddr);

/// Pending usage, per application.
#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<String, Pending>>,
}

impl UsageRecorder {
    /// Counts one successful exchange.
    pub fn record(&self, app_id: &str, at: DateTime<Utc>, ip: IpAddr) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(app_id) {
            Some(e) => {
                e.0 = e.0.saturating_add(1);
                if at >= e.1 {
                    e.1 = at;
                    e.2 = ip;
                }
            }
            None => {
                map.insert(app_id.to_owned(), (1, at, ip));
            }
        }
    }

    /// Takes everything pending.
    fn take(&self) -> Vec<UsageDelta> {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *map)
            .into_iter()
            .map(|(app_id, (count, last_at, ip))| UsageDelta {
                app_id,
                count,
                last_at,
                last_ip: ip.to_string(),
            })
            .collect()
    }

    /// Puts back a batch that could not be written, to retry next time.
    fn restore(&self, batch: Vec<UsageDelta>) {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for d in batch {
            let ip = d.last_ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let e = map.entry(d.app_id).or_insert((0, d.last_at, ip));
            e.0 = e.0.saturating_add(d.count);
            if d.last_at >= e.1 {
                e.1 = d.last_at;
                e.2 = ip;
            }
        }
    }
}

/// Writes pending figures; on a store failure they are kept for the next try.
pub async fn flush(gw: &Gateway) {
    let batch = gw.usage.take();
    if batch.is_empty() {
        return;
    }
    if let Err(e) = gw.apps.record_usage(&batch).await {
        tracing::warn!(error = %e, apps = batch.len(), "usage figures not written; will retry");
        gw.usage.restore(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_survive_a_failed_write() {
        let r = UsageRecorder::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t = Utc::now();
        r.record("a", t, ip);
        r.record("a", t, "192.0.2.2".parse().unwrap());
        r.record("b", t, ip);
        let mut batch = r.take();
        batch.sort_by(|x, y| x.app_id.cmp(&y.app_id));
        assert_eq!(batch.len(), 2);
        assert_eq!(
            (batch[0].count, batch[0].last_ip.as_str()),
            (2, "192.0.2.2")
        );
        assert!(r.take().is_empty());
        r.restore(batch);
        r.record("a", t, ip);
        let total: u64 = r.take().iter().map(|d| d.count).sum();
        assert_eq!(total, 4);
    }
}
