//! The audit log (docs/api.md, "The console"): filters by actor, action, target and time,
//! paging with the service's cursor, and CSV or JSON downloads of what the
//! filters select. Every read is `service::audit::list`, as for
//! `GET /api/v1/audit`, behind the same `audit:read` check.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use askama::Template;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

use super::forms::FieldErrors;
use super::{Chrome, Ctx, Refusal, headers, page};
use crate::domain::DomainError;
use crate::domain::permission::builtin::AUDIT_READ;
use crate::service::audit::{self, AuditFilter, AuditPage};
use crate::store::AuditRecord;

/// Records on one page of the table: the API's default page.
const PAGE_SIZE: usize = 50;
/// Records asked for per service call while exporting: the API's largest
/// page.
const EXPORT_BATCH: usize = 200;
/// Most records one download holds.
pub const EXPORT_MAX: usize = 10_000;
/// [`EXPORT_MAX`] in words.
const EXPORT_MAX_SHOWN: &str = "10,000";
/// Most service calls one download makes: each looks at no more than
/// [`audit::SCAN_BUDGET`] records, so a filter that matches little cannot
/// make one download walk an endless log.
const EXPORT_CALLS: usize = 60;
/// Longest details text shown in a table cell before it is cut.
const DETAILS_SHOWN: usize = 120;

/// The filter fields, in form order.
const FIELDS: [&str; 5] = ["actor", "action", "target", "since", "until"];

/// What the query string asked for, as typed (shown again in the form).
#[derive(Debug, Default)]
struct Query {
    actor: String,
    action: String,
    target: String,
    since: String,
    until: String,
    cursor: String,
    format: String,
}

impl Query {
    /// Reads the query string; unknown or repeated names are ignored (the
    /// first value counts), and nothing here can fail.
    fn of(req: &HttpRequest) -> Self {
        let mut q = Self::default();
        for (k, v) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
            let slot = match k.as_ref() {
                "actor" => &mut q.actor,
                "action" => &mut q.action,
                "target" => &mut q.target,
                "since" => &mut q.since,
                "until" => &mut q.until,
                "cursor" => &mut q.cursor,
                "format" => &mut q.format,
                _ => continue,
            };
            if slot.is_empty() {
                *slot = v.trim().to_owned();
            }
        }
        q
    }

    /// The filter, or the errors of the fields that cannot be read. Empty
    /// fields filter nothing (the form sends every field); everything else
    /// is left to the service to judge, as for the API.
    fn filter(&self) -> Result<AuditFilter, FieldErrors> {
        let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let mut errors = FieldErrors::new();
        let mut time = |name: &str, s: &str| {
            if s.is_empty() {
                return None;
            }
            let t = parse_time(s);
            if t.is_none() {
                errors.add(
                    name,
                    format!("Enter {name} as a date and time in UTC, like 2026-01-31T09:30."),
                );
            }
            t
        };
        let since = time("since", &self.since);
        let until = time("until", &self.until);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(AuditFilter {
            actor: text(&self.actor),
            action: text(&self.action),
            target: text(&self.target),
            since,
            until,
        })
    }

    /// The filters as a query string (for the paging and download links);
    /// empty fields left out.
    fn filters_query(&self) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !v.is_empty() {
                s.append_pair(k, v);
            }
        }
        s.finish()
    }
}

/// A time from a `datetime-local` field (`2026-01-31T09:30`, seconds
/// optional), read as UTC, or an RFC 3339 instant as the API takes.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    [
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
    .map(|t| t.and_utc())
}

/// Puts a service's refusal of a filter beside the field it names (its
/// messages begin with the field's name), or at the top.
fn place(e: DomainError) -> Result<FieldErrors, Refusal> {
    let message = match e {
        DomainError::Validation(m) | DomainError::InvalidRequest(m) => m,
        other => return Err(other.into()),
    };
    let field = FIELDS
        .iter()
        .find(|f| message.starts_with(&format!("{f} ")))
        .copied()
        // "invalid cursor": the paging link, not a field.
        .unwrap_or("");
    let mut errors = FieldErrors::new();
    errors.add(field, capitalised(&message));
    Ok(errors)
}

/// The message with its first letter upper-cased, ending with a full stop.
fn capitalised(m: &str) -> String {
    let mut chars = m.chars();
    let mut s: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

/// One table row.
struct Row {
    /// RFC 3339, for `<time datetime>`.
    at: String,
    /// As shown: `2026-01-31 09:30:12 UTC`.
    at_shown: String,
    actor: String,
    action: String,
    target: String,
    ip: String,
    /// Compact JSON, cut to [`DETAILS_SHOWN`] characters.
    details: String,
    /// The whole of it, indented, when the cell had to be cut.
    details_full: Option<String>,
}

impl Row {
    fn of(r: &AuditRecord) -> Self {
        let compact = if r.details.is_null() {
            String::new()
        } else {
            r.details.to_string()
        };
        let (details, details_full) = if compact.chars().count() > DETAILS_SHOWN {
            let cut: String = compact.chars().take(DETAILS_SHOWN).collect();
            let full = serde_json::to_string_pretty(&r.details).unwrap_or(compact);
            (format!("{cut}…"), Some(full))
        } else {
            (compact, None)
        };
        Self {
            at: r.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            at_shown: r.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            actor: r.actor.clone(),
            action: r.action.clone(),
            target: r.target.clone(),
            ip: r.source_ip.clone(),
            details,
            details_full,
        }
    }
}

/// `audit.html`.
#[derive(Template)]
#[template(path = "audit.html")]
struct AuditLog {
    chrome: Chrome,
    actor: String,
    action: String,
    target: String,
    since: String,
    until: String,
    errors: FieldErrors,
    /// Whether the log was read (false when the filters were refused).
    shown: bool,
    /// Whether this page continues from a cursor.
    paged: bool,
    rows: Vec<Row>,
    /// The filters as a query string, for the links.
    filters: String,
    /// `?…` of the next (older) page, when more may remain.
    older: Option<String>,
    /// [`EXPORT_MAX`] as shown.
    export_max: &'static str,
}

impl AuditLog {
    /// Whether a filter field was refused (the summary at the top).
    fn field_errors(&self) -> bool {
        FIELDS.iter().any(|f| self.errors.on(f))
    }

    /// The link to the newest entries with the same filters.
    fn newest(&self) -> String {
        if self.filters.is_empty() {
            "/console/audit".to_owned()
        } else {
            format!("/console/audit?{}", self.filters)
        }
    }

    /// A download link with the same filters.
    fn export(&self, format: &str) -> String {
        if self.filters.is_empty() {
            format!("/console/audit/export?format={format}")
        } else {
            format!("/console/audit/export?format={format}&{}", self.filters)
        }
    }
}

/// `GET /console/audit`: the table, filtered and paged.
async fn log(ctx: Ctx, req: HttpRequest) -> Result<HttpResponse, Refusal> {
    ctx.principal.require(AUDIT_READ)?;
    let q = Query::of(&req);
    let filters = q.filters_query();
    let cursor = (!q.cursor.is_empty()).then(|| q.cursor.clone());
    let listed = match q.filter() {
        Ok(f) => match audit::list(&ctx.gw, Some(PAGE_SIZE), cursor, &f).await {
            Ok(p) => Ok(p),
            Err(e) => Err(place(e)?),
        },
        Err(errors) => Err(errors),
    };
    let (status, errors, page_read) = match listed {
        Ok(p) => (StatusCode::OK, FieldErrors::new(), Some(p)),
        Err(errors) => (StatusCode::UNPROCESSABLE_ENTITY, errors, None),
    };
    let shown = page_read.is_some();
    let (rows, next) = match page_read {
        Some(AuditPage { data, next_cursor }) => (data.iter().map(Row::of).collect(), next_cursor),
        None => (Vec::new(), None),
    };
    let older = next.map(|c| {
        let mut s = url::form_urlencoded::Serializer::new(filters.clone());
        s.append_pair("cursor", &c);
        format!("/console/audit?{}", s.finish())
    });
    let view = AuditLog {
        chrome: ctx.chrome("/console/audit"),
        actor: q.actor,
        action: q.action,
        target: q.target,
        since: q.since,
        until: q.until,
        errors,
        shown,
        paged: !q.cursor.is_empty(),
        rows,
        filters,
        older,
        export_max: EXPORT_MAX_SHOWN,
    };
    Ok(page(status, &view))
}

/// `GET /console/audit/export?format=csv|json&…`: what the filters select,
/// newest first, as a download (at most [`EXPORT_MAX`] records; when more
/// may remain, `X-Next-Cursor` says where to continue, as in the API).
async fn export(ctx: Ctx, req: HttpRequest) -> Result<HttpResponse, Refusal> {
    ctx.principal.require(AUDIT_READ)?;
    let q = Query::of(&req);
    let csv = match q.format.as_str() {
        "csv" => true,
        "json" => false,
        _ => {
            return Err(DomainError::InvalidRequest("format must be csv or json".into()).into());
        }
    };
    let filter = q.filter().map_err(|e| {
        let m = FIELDS
            .iter()
            .find_map(|f| e.get(f))
            .unwrap_or("the filters cannot be read");
        Refusal::Domain(DomainError::Validation(m.to_owned()))
    })?;
    let mut cursor = (!q.cursor.is_empty()).then(|| q.cursor.clone());
    let mut data: Vec<AuditRecord> = Vec::new();
    let mut calls = 0;
    loop {
        let want = EXPORT_BATCH
            .min(EXPORT_MAX.saturating_sub(data.len()))
            .max(1);
        let p = audit::list(&ctx.gw, Some(want), cursor, &filter).await?;
        data.extend(p.data);
        calls += 1;
        cursor = p.next_cursor;
        if cursor.is_none() || data.len() >= EXPORT_MAX || calls >= EXPORT_CALLS {
            break;
        }
    }
    let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
    let (kind, file, body) = if csv {
        (
            "text/csv; charset=utf-8",
            format!("tessera-audit-{stamp}.csv"),
            audit::to_csv(&data),
        )
    } else {
        let page = AuditPage {
            data,
            next_cursor: cursor.clone(),
        };
        let body = serde_json::to_string(&page)
            .map_err(|e| DomainError::Internal(format!("audit export: {e}")))?;
        (
            "application/json",
            format!("tessera-audit-{stamp}.json"),
            body,
        )
    };
    let mut res = HttpResponseBuilder::new(StatusCode::OK);
    headers(&mut res);
    res.content_type(kind).insert_header((
        header::CONTENT_DISPOSITION,
        format!("attachment; filename=\"{file}\""),
    ));
    if let Some(next) = &cursor {
        res.insert_header(("X-Next-Cursor", next.as_str()));
    }
    Ok(res.body(body))
}

/// Registers this section's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/audit", web::get().to(log))
        .route("/console/audit/export", web::get().to(export));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_the_form_and_the_api() {
        let want = "2026-01-31T09:30:00Z";
        for s in [
            "2026-01-31T09:30",
            "2026-01-31T09:30:00",
            "2026-01-31T10:30:00+01:00",
        ] {
            let t = parse_time(s).unwrap();
            assert_eq!(t.to_rfc3339_opts(SecondsFormat::Secs, true), want, "{s}");
        }
        for s in [
            "yesterday",
            "2026-13-01T00:00",
            "2026-01-31",
            "",
            "2026-01-31T25:00",
        ] {
            assert!(parse_time(s).is_none(), "{s}");
        }
    }

    #[test]
    fn refusals_go_beside_their_field() {
        let e = place(DomainError::Validation(
            "action must be 1 to 256 characters".into(),
        ))
        .unwrap();
        assert_eq!(e.get("action"), Some("Action must be 1 to 256 characters."));
        let e = place(DomainError::Validation("since must be before until".into())).unwrap();
        assert!(e.on("since") && !e.on("until"));
        let e = place(DomainError::InvalidRequest("invalid cursor".into())).unwrap();
        assert_eq!(e.get(""), Some("Invalid cursor."));
        assert!(place(DomainError::InsufficientPermissions("audit:read".into())).is_err());
    }
}
