//! Device authorization requests (RFC 8628) in the embedded store.
//!
//! Tables: `device_requests` (device-code hash → [`DeviceRecord`]),
//! `device_user_codes` (user-code hash → device-code hash) and
//! `device_forget` (`{forget ms, 20 digits}\0{device-code hash}` → "", in
//! the order records may be forgotten). Each call that decides is one write
//! transaction: redb runs one at a time, so racing polls see one order.
//! Lapsed records are forgotten by the next insert, a bounded range scan of
//! the `device_forget` index.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::{EmbeddedStore, backend};
use crate::store::common::{Record, decode, encode};
use crate::store::{
    DEVICE_MEMORY_SECS, DEVICE_SLOW_DOWN_SECS, DeviceDecision, DevicePoll, DeviceRequest,
    DeviceStore, StoreError,
};

const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("device_requests");
const USER_CODES: TableDefinition<&str, &str> = TableDefinition::new("device_user_codes");
const FORGET: TableDefinition<&str, &str> = TableDefinition::new("device_forget");

/// Where a request stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum State {
    Pending,
    Approved { user_id: String, session_id: String },
    Denied,
    Consumed,
}

/// A request and what happened to it since.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct DeviceRecord {
    request: DeviceRequest,
    state: State,
    last_poll: Option<DateTime<Utc>>,
    interval_secs: u64,
}

impl Record for DeviceRecord {
    const KIND: &'static str = "device request";
}

/// Creates the tables, so read transactions never meet a missing one.
pub(super) fn init(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(DEVICES).map_err(backend)?;
    txn.open_table(USER_CODES).map_err(backend)?;
    txn.open_table(FORGET).map_err(backend)?;
    Ok(())
}

/// When a request may be forgotten, in ms (saturating: never overflows).
fn forget_ms(r: &DeviceRequest) -> i64 {
    r.expires_at
        .timestamp_millis()
        .saturating_add(DEVICE_MEMORY_SECS.saturating_mul(1000))
}

/// The `device_forget` row of a request: sortable by time as text.
fn forget_key(r: &DeviceRequest, device_hash: &str) -> String {
    format!("{:020}\0{device_hash}", forget_ms(r).max(0))
}

fn read(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<DeviceRecord>, StoreError> {
    match table.get(key).map_err(backend)? {
        Some(v) => decode(v.value()).map(Some),
        None => Ok(None),
    }
}

/// Whether `now` is less than `secs` after `last`.
fn too_soon(last: DateTime<Utc>, now: DateTime<Utc>, secs: u64) -> bool {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX / 1000);
    TimeDelta::try_seconds(secs).is_some_and(|d| now.signed_duration_since(last) < d)
}

/// Forgets every request whose memory ended before `now`.
fn purge_lapsed(txn: &redb::WriteTransaction, now: DateTime<Utc>) -> Result<(), StoreError> {
    let mut forget = txn.open_table(FORGET).map_err(backend)?;
    let mut devices = txn.open_table(DEVICES).map_err(backend)?;
    let mut codes = txn.open_table(USER_CODES).map_err(backend)?;
    let upto = format!("{:020}", now.timestamp_millis().max(0));
    let mut gone: Vec<(String, String)> = Vec::new();
    for row in forget.range::<&str>(..upto.as_str()).map_err(backend)? {
        let (k, _) = row.map_err(backend)?;
        let key = k.value().to_owned();
        let hash = key.split_once('\0').map(|(_, h)| h.to_owned());
        if let Some(h) = hash {
            gone.push((key, h));
        }
    }
    for (key, hash) in gone {
        forget.remove(key.as_str()).map_err(backend)?;
        if let Some(old) = devices.remove(hash.as_str()).map_err(backend)? {
            let rec: DeviceRecord = decode(old.value())?;
            drop(old);
            let uc = rec.request.user_code_hash;
            let points_here = codes
                .get(uc.as_str())
                .map_err(backend)?
                .is_some_and(|v| v.value() == hash);
            if points_here {
                codes.remove(uc.as_str()).map_err(backend)?;
            }
        }
    }
    Ok(())
}

#[async_trait]
impl DeviceStore for EmbeddedStore {
    async fn insert_device(
        &self,
        device_hash: &str,
        request: &DeviceRequest,
    ) -> Result<(), StoreError> {
        let hash = device_hash.to_owned();
        let rec = DeviceRecord {
            request: request.clone(),
            state: State::Pending,
            last_poll: None,
            interval_secs: request.interval_secs,
        };
        self.blocking(move |db| {
            let bytes = encode(&rec)?;
            let now = Utc::now();
            let txn = db.begin_write().map_err(backend)?;
            purge_lapsed(&txn, now)?;
            {
                let mut devices = txn.open_table(DEVICES).map_err(backend)?;
                let mut codes = txn.open_table(USER_CODES).map_err(backend)?;
                let uc = rec.request.user_code_hash.as_str();
                let holder = codes
                    .get(uc)
                    .map_err(backend)?
                    .map(|v| v.value().to_owned());
                if let Some(h) = holder
                    && let Some(other) = read(&devices, &h)?
                    && other.request.expires_at > now
                {
                    // Never shown: the service draws another user code.
                    return Err(StoreError::Conflict {
                        what: crate::store::Entity::Session,
                        id: "device user code".into(),
                    });
                }
                if devices.get(hash.as_str()).map_err(backend)?.is_some() {
                    return Err(StoreError::Conflict {
                        what: crate::store::Entity::Session,
                        id: "device code".into(),
                    });
                }
                devices
                    .insert(hash.as_str(), bytes.as_bytes())
                    .map_err(backend)?;
                codes.insert(uc, hash.as_str()).map_err(backend)?;
                let mut forget = txn.open_table(FORGET).map_err(backend)?;
                forget
                    .insert(forget_key(&rec.request, &hash).as_str(), "")
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)
        })
        .await
    }

    async fn find_device(
        &self,
        user_code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DeviceRequest>, StoreError> {
        let uc = user_code_hash.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let codes = txn.open_table(USER_CODES).map_err(backend)?;
            let Some(hash) = codes
                .get(uc.as_str())
                .map_err(backend)?
                .map(|v| v.value().to_owned())
            else {
                return Ok(None);
            };
            let devices = txn.open_table(DEVICES).map_err(backend)?;
            Ok(read(&devices, &hash)?
                .filter(|r| r.state == State::Pending && now < r.request.expires_at)
                .map(|r| r.request))
        })
        .await
    }

    async fn decide_device(
        &self,
        user_code_hash: &str,
        decision: &DeviceDecision,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let uc = user_code_hash.to_owned();
        let next = match decision {
            DeviceDecision::Approve {
                user_id,
                session_id,
            } => State::Approved {
                user_id: user_id.clone(),
                session_id: session_id.clone(),
            },
            DeviceDecision::Deny => State::Denied,
        };
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            {
                let codes = txn.open_table(USER_CODES).map_err(backend)?;
                let Some(hash) = codes
                    .get(uc.as_str())
                    .map_err(backend)?
                    .map(|v| v.value().to_owned())
                else {
                    return Ok(false);
                };
                let mut devices = txn.open_table(DEVICES).map_err(backend)?;
                let Some(mut rec) = read(&devices, &hash)? else {
                    return Ok(false);
                };
                if rec.state != State::Pending || now >= rec.request.expires_at {
                    return Ok(false);
                }
                rec.state = next;
                devices
                    .insert(hash.as_str(), encode(&rec)?.as_bytes())
                    .map_err(backend)?;
            }
            txn.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn poll_device(
        &self,
        device_hash: &str,
        client_id: &str,
        now: DateTime<Utc>,
    ) -> Result<DevicePoll, StoreError> {
        let hash = device_hash.to_owned();
        let client_id = client_id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_write().map_err(backend)?;
            let answer = {
                let mut devices = txn.open_table(DEVICES).map_err(backend)?;
                let Some(mut rec) = read(&devices, &hash)? else {
                    return Ok(DevicePoll::Unknown);
                };
                if rec.request.client_id != client_id
                    || rec.state == State::Consumed
                    || now.timestamp_millis() >= forget_ms(&rec.request)
                {
                    return Ok(DevicePoll::Unknown);
                }
                if now >= rec.request.expires_at {
                    return Ok(DevicePoll::Expired);
                }
                let answer = match rec.state.clone() {
                    State::Denied => return Ok(DevicePoll::Denied),
                    State::Consumed => return Ok(DevicePoll::Unknown),
                    State::Approved {
                        user_id,
                        session_id,
                    } => {
                        rec.state = State::Consumed;
                        DevicePoll::Approved {
                            request: rec.request.clone(),
                            user_id,
                            session_id,
                        }
                    }
                    State::Pending => {
                        let fast = rec
                            .last_poll
                            .is_some_and(|last| too_soon(last, now, rec.interval_secs));
                        rec.last_poll = Some(now);
                        if fast {
                            rec.interval_secs =
                                rec.interval_secs.saturating_add(DEVICE_SLOW_DOWN_SECS);
                            DevicePoll::SlowDown {
                                interval_secs: rec.interval_secs,
                            }
                        } else {
                            DevicePoll::Pending
                        }
                    }
                };
                devices
                    .insert(hash.as_str(), encode(&rec)?.as_bytes())
                    .map_err(backend)?;
                answer
            };
            txn.commit().map_err(backend)?;
            Ok(answer)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded_device_requests_pass_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        crate::store::conformance::devices(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lapsed_requests_are_forgotten_by_the_next_insert() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let long_ago = Utc::now() - TimeDelta::hours(2);
        let old = DeviceRequest {
            client_id: "tessera-cli".into(),
            scope: String::new(),
            user_code_hash: "uc_old".into(),
            created_at: long_ago,
            expires_at: long_ago + TimeDelta::minutes(10),
            interval_secs: 5,
        };
        store.insert_device("dc_old", &old).await.unwrap();
        let fresh = DeviceRequest {
            user_code_hash: "uc_new".into(),
            created_at: Utc::now(),
            expires_at: Utc::now() + TimeDelta::minutes(10),
            ..old.clone()
        };
        store.insert_device("dc_new", &fresh).await.unwrap();
        let rows = store
            .blocking(|db| {
                let txn = db.begin_read().map_err(backend)?;
                let d = txn.open_table(DEVICES).map_err(backend)?;
                let c = txn.open_table(USER_CODES).map_err(backend)?;
                let f = txn.open_table(FORGET).map_err(backend)?;
                use redb::ReadableTableMetadata;
                Ok((
                    d.len().map_err(backend)?,
                    c.len().map_err(backend)?,
                    f.len().map_err(backend)?,
                ))
            })
            .await
            .unwrap();
        assert_eq!(rows, (1, 1, 1));
    }
}
