//! Recording admin actions and reading them back.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use serde::Serialize;
use serde_json::Value;

use super::Gateway;
use super::auth::Principal;
use crate::crypto::random;
use crate::domain::DomainError;
use crate::store::AuditRecord;

/// Records one admin action. The change it describes is already written;
/// a failure to record is logged loudly rather than undoing the change.
pub async fn record(gw: &Gateway, actor: &Principal, action: &str, target: &str, details: Value) {
    let at = Utc::now();
    let suffix = random::base62(8).unwrap_or_default();
    let rec = AuditRecord {
        id: format!("{:020}-{suffix}", at.timestamp_micros().max(0)),
        at,
        actor: actor.subject.clone(),
        action: action.to_owned(),
        target: target.to_owned(),
        source_ip: actor.ip.to_string(),
        details,
    };
    if let Err(e) = gw.audit.append(&rec).await {
        tracing::error!(error = %e, action, target, "audit record not written");
    }
}

/// Fields of an application that say nothing about its configuration.
const NOT_AUDITED: &[&str] = &["updatedAt", "lastUsedAt", "lastUsedIp", "useCount"];

/// Every configuration field of a record, for `*.create` and `*.delete`
/// entries. Records here never hold secrets (hashes live beside them).
pub fn snapshot<T: Serialize>(record: &T) -> Value {
    let mut v = serde_json::to_value(record).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.retain(|k, _| !NOT_AUDITED.contains(&k.as_str()));
    }
    v
}

/// The fields that differ between two versions of a record, each as
/// `{"old": …, "new": …}`, so an audit entry says exactly what changed.
pub fn diff<T: Serialize>(old: &T, new: &T) -> Value {
    let (Value::Object(old), Value::Object(new)) = (snapshot(old), snapshot(new)) else {
        return Value::Null;
    };
    let mut changed = serde_json::Map::new();
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for k in keys {
        let (a, b) = (old.get(k), new.get(k));
        if a != b {
            changed.insert(
                k.clone(),
                serde_json::json!({"old": a.cloned().unwrap_or(Value::Null), "new": b.cloned().unwrap_or(Value::Null)}),
            );
        }
    }
    serde_json::json!({ "changed": changed })
}

/// One page of the audit log, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// The records.
    pub data: Vec<AuditRecord>,
    /// Pass as `cursor` for older records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Reads the audit log.
pub async fn list(
    gw: &Gateway,
    limit: Option<usize>,
    cursor: Option<String>,
) -> Result<AuditPage, DomainError> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(DomainError::Validation(
            "limit must be between 1 and 200".into(),
        ));
    }
    let before = match cursor {
        Some(c) => Some(
            URL_SAFE_NO_PAD
                .decode(c.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| DomainError::InvalidRequest("invalid cursor".into()))?,
        ),
        None => None,
    };
    let (data, next) = gw.audit.list_audit(limit, before).await?;
    Ok(AuditPage {
        data,
        next_cursor: next.map(|n| URL_SAFE_NO_PAD.encode(n.as_bytes())),
    })
}
