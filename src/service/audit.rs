//! Recording admin actions and reading them back.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use super::Gateway;
use super::auth::Principal;
use crate::crypto::random;
use crate::domain::DomainError;
use crate::store::{AuditRecord, AuditStore, StoreError};

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

/// How many records one read of the log looks at, at most, when filtering:
/// a filter that matches little then answers quickly with a `nextCursor`
/// instead of walking the whole log.
pub const SCAN_BUDGET: usize = 5_000;

/// The store is asked for this many records at a time while scanning.
const SCAN_BATCH: usize = 200;

/// What a read of the audit log keeps. Every field given must match.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// The actor, exactly.
    pub actor: Option<String>,
    /// The action: exactly, or every action starting with the text before a
    /// final `*` (or with the whole text when it ends with `.`).
    pub action: Option<String>,
    /// The target, exactly.
    pub target: Option<String>,
    /// Records at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Records strictly before this instant.
    pub until: Option<DateTime<Utc>>,
}

impl AuditFilter {
    /// Whether anything is filtered at all.
    pub fn is_empty(&self) -> bool {
        self.actor.is_none()
            && self.action.is_none()
            && self.target.is_none()
            && self.since.is_none()
            && self.until.is_none()
    }

    /// Refuses filters that cannot match anything sensible.
    fn validate(&self) -> Result<(), DomainError> {
        for (name, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
        ] {
            if let Some(v) = v
                && (v.is_empty() || v.chars().count() > 256)
            {
                return Err(DomainError::Validation(format!(
                    "{name} must be 1 to 256 characters"
                )));
            }
        }
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s >= u
        {
            return Err(DomainError::Validation("since must be before until".into()));
        }
        Ok(())
    }

    /// Whether a record passes the filter.
    pub fn matches(&self, r: &AuditRecord) -> bool {
        let action_ok = match self.action.as_deref() {
            None => true,
            Some(a) => match a.strip_suffix('*') {
                Some(prefix) => r.action.starts_with(prefix),
                None if a.ends_with('.') => r.action.starts_with(a),
                None => r.action == a,
            },
        };
        action_ok
            && self.actor.as_deref().is_none_or(|a| r.actor == a)
            && self.target.as_deref().is_none_or(|t| r.target == t)
            && self.since.is_none_or(|s| r.at >= s)
            && self.until.is_none_or(|u| r.at < u)
    }
}

/// Reads the audit log, newest first: up to `limit` records that pass
/// `filter`, looking at no more than [`SCAN_BUDGET`] records. A page may so
/// hold fewer than `limit` records (even none) and still carry a
/// `nextCursor`; the log is exhausted only when `nextCursor` is absent.
pub async fn list(
    gw: &Gateway,
    limit: Option<usize>,
    cursor: Option<String>,
    filter: &AuditFilter,
) -> Result<AuditPage, DomainError> {
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(DomainError::Validation(
            "limit must be between 1 and 200".into(),
        ));
    }
    filter.validate()?;
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
    let (data, next) = if filter.is_empty() {
        gw.audit.list_audit(limit, before).await?
    } else {
        scan(gw.audit.as_ref(), limit, before, filter, SCAN_BUDGET).await?
    };
    Ok(AuditPage {
        data,
        next_cursor: next.map(|n| URL_SAFE_NO_PAD.encode(n.as_bytes())),
    })
}

/// Walks the log newest first from `before`, keeping what `filter` passes,
/// until `limit` records are kept, `budget` records are looked at, the
/// records get older than `filter.since`, or the log ends. Gives the kept
/// records and, when more may remain, the id to continue before.
pub async fn scan(
    store: &dyn AuditStore,
    limit: usize,
    mut before: Option<String>,
    filter: &AuditFilter,
    budget: usize,
) -> Result<(Vec<AuditRecord>, Option<String>), StoreError> {
    // Ids begin with the time in microseconds, zero-padded, so every record
    // at or after `until` sorts after this key: start the walk there.
    if let Some(u) = filter.until {
        let key = format!("{:020}", u.timestamp_micros().max(0));
        if before.as_ref().is_none_or(|b| key < *b) {
            before = Some(key);
        }
    }
    let mut kept = Vec::new();
    let mut scanned = 0usize;
    loop {
        let want = SCAN_BATCH.min(budget.saturating_sub(scanned)).max(1);
        let (batch, more) = store.list_audit(want, before.clone()).await?;
        let last = batch.len();
        for (i, r) in batch.into_iter().enumerate() {
            scanned += 1;
            before = Some(r.id.clone());
            if filter.since.is_some_and(|s| r.at < s) {
                // Newest first: everything further is older still.
                return Ok((kept, None));
            }
            if filter.matches(&r) {
                kept.push(r);
            }
            if kept.len() >= limit || scanned >= budget {
                let ended = i + 1 == last && more.is_none();
                return Ok((kept, if ended { None } else { before }));
            }
        }
        if more.is_none() {
            return Ok((kept, None));
        }
    }
}

/// The CSV header row of [`to_csv`].
pub const CSV_HEADER: &str = "id,at,actor,action,target,sourceIp,details";

/// One CSV cell: quoted per RFC 4180 when it holds a comma, quote or line
/// break, and prefixed with `'` when a spreadsheet would read it as a
/// formula (it starts with `=`, `+`, `-`, `@`, a tab or a CR).
fn csv_cell(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        s.push('\'');
    }
    s.push_str(v);
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Records as CSV: [`CSV_HEADER`], then one CRLF-ended row per record with
/// `details` as compact JSON.
pub fn to_csv(records: &[AuditRecord]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str("\r\n");
    for r in records {
        let details = if r.details.is_null() {
            String::new()
        } else {
            r.details.to_string()
        };
        let at = r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let cells = [
            r.id.as_str(),
            at.as_str(),
            r.actor.as_str(),
            r.action.as_str(),
            r.target.as_str(),
            r.source_ip.as_str(),
            details.as_str(),
        ];
        let row: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use chrono::TimeZone;

    fn rec(i: i64, action: &str, target: &str) -> AuditRecord {
        let at = Utc.timestamp_opt(1_700_000_000 + i, 0).single().unwrap();
        AuditRecord {
            id: format!("{:020}-{i:08}", at.timestamp_micros()),
            at,
            actor: if i % 2 == 0 { "even" } else { "odd" }.into(),
            action: action.into(),
            target: target.into(),
            source_ip: "127.0.0.1".into(),
            details: Value::Null,
        }
    }

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("=1+1"), "'=1+1");
        assert_eq!(csv_cell("-2"), "'-2");
        assert_eq!(csv_cell("@x"), "'@x");
        assert_eq!(csv_cell("+x"), "'+x");
        assert_eq!(csv_cell("\tx"), "'\tx");
        assert_eq!(csv_cell("\rx"), "\"'\rx\"");
        assert_eq!(csv_cell("=a,\"b\""), "\"'=a,\"\"b\"\"\"");
    }

    #[test]
    fn action_prefixes_match_by_their_text() {
        let f = |a: &str| AuditFilter {
            action: Some(a.into()),
            ..AuditFilter::default()
        };
        let r = rec(1, "app.create", "x");
        assert!(f("app.create").matches(&r));
        assert!(f("app.").matches(&r));
        assert!(f("app.*").matches(&r));
        assert!(f("ap*").matches(&r));
        assert!(!f("app").matches(&r), "exact unless it ends with . or *");
        assert!(!f("role.*").matches(&r));
        assert!(!f("app.create.").matches(&r));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scan_stops_at_its_budget_and_resumes_from_its_cursor() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        // 300 records; every tenth one is a `role.*` action.
        for i in 0..300 {
            let action = if i % 10 == 0 {
                "role.create"
            } else {
                "app.update"
            };
            store
                .append(&rec(i, action, &format!("t{i}")))
                .await
                .unwrap();
        }
        let filter = AuditFilter {
            action: Some("role.*".into()),
            ..AuditFilter::default()
        };
        // A budget of 45: each call sees at most 45 records, so 4 or 5
        // matches, and always a cursor until the log is done.
        let (mut seen, mut before, mut calls) = (Vec::new(), None, 0);
        loop {
            let (page, next) = scan(&store, 200, before, &filter, 45).await.unwrap();
            calls += 1;
            assert!(page.len() <= 5, "{}", page.len());
            seen.extend(page.into_iter().map(|r| r.target));
            match next {
                Some(n) => before = Some(n),
                None => break,
            }
        }
        assert_eq!(calls, 7, "300 records in 45s");
        let want: Vec<String> = (0..30).rev().map(|i| format!("t{}", i * 10)).collect();
        assert_eq!(seen, want, "every match once, newest first");

        // `since` ends the scan without a cursor; `until` starts it late.
        let window = AuditFilter {
            since: Some(rec(100, "", "").at),
            until: Some(rec(110, "", "").at),
            ..AuditFilter::default()
        };
        let (page, next) = scan(&store, 200, None, &window, 45).await.unwrap();
        assert_eq!(next, None);
        let got: Vec<&str> = page.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(
            got,
            [
                "t109", "t108", "t107", "t106", "t105", "t104", "t103", "t102", "t101", "t100"
            ]
        );
        // The limit reached on the very last record of the log: no cursor.
        let (page, next) = scan(
            &store,
            1,
            None,
            &AuditFilter {
                target: Some("t0".into()),
                ..AuditFilter::default()
            },
            1000,
        )
        .await
        .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(next, None);
    }
}
