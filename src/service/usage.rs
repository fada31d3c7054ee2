//! Usage figures (`useCount`, `lastUsedAt`, `lastUsedIp`), counted in memory
//! on the exchange path and written to the store in one batch about every
//! second, so a warm exchange never waits for a write.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use super::Gateway;
use crate::domain::DomainError;
use crate::store::{UsageDelta, hour_start, oldest_kept_hour};

/// How often pending figures are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// How many hours [`hourly`] reports: 7 days.
pub const HOURS_SHOWN: usize = 7 * 24;

/// Exchanges pending for one application.
struct Pending {
    /// How many.
    count: u64,
    /// The latest.
    last_at: DateTime<Utc>,
    /// Its client.
    ip: IpAddr,
    /// The same exchanges by hour start (unix seconds); nearly always one
    /// entry, two when a flush spans the turn of an hour.
    hours: Vec<(i64, u64)>,
}

impl Pending {
    /// Adds `n` exchanges in the hour starting at `hour`.
    fn add_hour(&mut self, hour: i64, n: u64) {
        // The current hour is the last entry (or absent): one comparison.
        match self.hours.iter_mut().rev().find(|(h, _)| *h == hour) {
            Some(e) => e.1 = e.1.saturating_add(n),
            None => self.hours.push((hour, n)),
        }
    }
}

/// Pending usage, per application.
#[derive(Default)]
pub struct UsageRecorder {
    pending: Mutex<HashMap<String, Pending>>,
}

impl UsageRecorder {
    /// Counts one successful exchange.
    pub fn record(&self, app_id: &str, at: DateTime<Utc>, ip: IpAddr) {
        let hour = hour_start(at);
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(app_id) {
            Some(e) => {
                e.count = e.count.saturating_add(1);
                if at >= e.last_at {
                    e.last_at = at;
                    e.ip = ip;
                }
                e.add_hour(hour, 1);
            }
            None => {
                map.insert(
                    app_id.to_owned(),
                    Pending {
                        count: 1,
                        last_at: at,
                        ip,
                        hours: vec![(hour, 1)],
                    },
                );
            }
        }
    }

    /// Takes everything pending.
    fn take(&self) -> Vec<UsageDelta> {
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *map)
            .into_iter()
            .map(|(app_id, p)| UsageDelta {
                app_id,
                count: p.count,
                last_at: p.last_at,
                last_ip: p.ip.to_string(),
                hours: p.hours,
            })
            .collect()
    }

    /// Puts back a batch that could not be written, to retry next time.
    /// Hours too old to be kept are dropped (the totals keep them), so a
    /// long store outage cannot grow what is pending without bound.
    fn restore(&self, batch: Vec<UsageDelta>, now: DateTime<Utc>) {
        let oldest = oldest_kept_hour(now);
        let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for d in batch {
            let ip = d.last_ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let e = map.entry(d.app_id).or_insert(Pending {
                count: 0,
                last_at: d.last_at,
                ip,
                hours: Vec::new(),
            });
            e.count = e.count.saturating_add(d.count);
            if d.last_at >= e.last_at {
                e.last_at = d.last_at;
                e.ip = ip;
            }
            for (hour, n) in d.hours {
                if hour >= oldest {
                    e.add_hour(hour, n);
                }
            }
            e.hours.sort_unstable_by_key(|&(h, _)| h);
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
        gw.usage.restore(batch, Utc::now());
    }
}

/// An application's exchanges per hour over the last 7 days: [`HOURS_SHOWN`]
/// counts, oldest first, the last one for the hour `now` falls in (figures
/// still pending in this gateway, at most [`FLUSH_EVERY`] old, are not in
/// it). Hours without exchanges, and an unknown id, give zeros.
///
/// No permission check here: the caller has checked `api_keys:read` first
/// (the console's application page does, as it read the application).
pub async fn hourly(
    gw: &Gateway,
    app_id: &str,
    now: DateTime<Utc>,
) -> Result<[u64; HOURS_SHOWN], DomainError> {
    let first = first_hour(now);
    let stored = gw.apps.hourly_usage(app_id, first).await?;
    Ok(fill_hours(first, &stored))
}

/// The start of the oldest hour [`hourly`] reports at `now`.
fn first_hour(now: DateTime<Utc>) -> i64 {
    const SHOWN_SECS: i64 = 3600 * (HOURS_SHOWN as i64 - 1);
    hour_start(now) - SHOWN_SECS
}

/// Places stored (hour, count) buckets in the window starting at `first`;
/// hours outside it are left out.
fn fill_hours(first: i64, stored: &[(i64, u64)]) -> [u64; HOURS_SHOWN] {
    let mut out = [0u64; HOURS_SHOWN];
    for &(hour, n) in stored {
        let Some(offset) = hour.checked_sub(first) else {
            continue;
        };
        if offset < 0 || offset % 3600 != 0 {
            continue;
        }
        if let Some(slot) = usize::try_from(offset / 3600)
            .ok()
            .and_then(|i| out.get_mut(i))
        {
            *slot = slot.saturating_add(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
        assert_eq!(batch[0].hours, [(hour_start(t), 2)]);
        assert!(r.take().is_empty());
        r.restore(batch, t);
        r.record("a", t, ip);
        let batch = r.take();
        let total: u64 = batch.iter().map(|d| d.count).sum();
        assert_eq!(total, 4);
        let hourly: u64 = batch.iter().flat_map(|d| &d.hours).map(|h| h.1).sum();
        assert_eq!(hourly, 4);
    }

    #[test]
    fn a_batch_spanning_the_hour_is_split() {
        let r = UsageRecorder::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let turn = Utc.with_ymd_and_hms(2026, 11, 20, 14, 0, 0).unwrap();
        let before = turn - chrono::Duration::milliseconds(300);
        r.record("a", before, ip);
        r.record("a", turn, ip);
        r.record("a", turn + chrono::Duration::milliseconds(1), ip);
        // A late record from before the turn still lands in its own hour.
        r.record("a", before, ip);
        let batch = r.take();
        assert_eq!(batch[0].count, 4);
        let h = hour_start(turn);
        assert_eq!(batch[0].hours, [(h - 3600, 2), (h, 2)]);
        assert_eq!(batch[0].last_at, turn + chrono::Duration::milliseconds(1));
    }

    #[test]
    fn a_restored_batch_drops_hours_no_longer_kept_but_keeps_the_total() {
        let r = UsageRecorder::default();
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 14, 30, 0).unwrap();
        let h = hour_start(now);
        r.restore(
            vec![UsageDelta {
                app_id: "a".into(),
                count: 5,
                last_at: now,
                last_ip: "192.0.2.1".into(),
                hours: vec![(h, 2), (h - 9 * 24 * 3600, 3)],
            }],
            now,
        );
        let batch = r.take();
        assert_eq!(
            (batch[0].count, batch[0].hours.as_slice()),
            (5, &[(h, 2)][..])
        );
    }

    #[test]
    fn the_window_ends_with_the_current_hour_and_fills_zeros() {
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 14, 59, 59).unwrap();
        let first = first_hour(now);
        let last = hour_start(now);
        assert_eq!(last - first, 167 * 3600);
        let got = fill_hours(
            first,
            &[
                (first - 3600, 9),
                (first, 1),
                (first + 5 * 3600, 2),
                (last, 3),
                (last + 3600, 9),
                (first + 17, 9),
            ],
        );
        assert_eq!((got[0], got[5], got[167]), (1, 2, 3));
        assert_eq!(got.iter().sum::<u64>(), 6);
    }
}
