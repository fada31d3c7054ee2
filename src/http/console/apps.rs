//! Applications (docs/api.md, "The console"): the table with search, filters, paging and
//! bulk actions; create; details with edit, effective permissions and
//! usage; rotate, revoke, delete. Every read and change goes through
//! `service::apps` with the signed-in person as the caller.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::{DateTime, NaiveDateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use super::forms::{FieldErrors, FormData, lines};
use super::{Chrome, Ctx, Posted, Refusal, ok, page, see_other};
use crate::domain::application::{GATEWAY_OWNER, validate_text};
use crate::domain::permission::builtin::{API_KEYS_MANAGE, ROLES_MANAGE};
use crate::domain::ratelimit::Window;
use crate::domain::{
    AppStatus, Application, DomainError, Environment, IpNet, KeyType, Permission, RateLimit,
};
use crate::service::apps::{
    self, AccessRuleInput, AppView, CreateApp, ListParams, MAX_GRACE_SECONDS, MAX_SEARCH_CHARS,
    PatchApp, RateLimitInput,
};
use crate::service::people::reveal::{BulkNotice, Outcome};
use crate::service::{authz, grants, roles};

const SECTION: &str = "/console/apps";
const PAGE_SIZE: usize = 50;
/// A bulk action takes at most this many applications (as the API's).
const MAX_BULK: usize = 100;

// ---------------------------------------------------------------- helpers

/// The query string's pairs (never fails: bad escapes are read lossily).
fn query(req: &HttpRequest) -> FormData {
    FormData::new(
        url::form_urlencoded::parse(req.query_string().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

/// The message a service error carries, as the API would show it.
fn message(e: &DomainError) -> String {
    super::super::error::parts_of(e).2
}

/// The status the API answers `e` with.
fn status_of(e: &DomainError) -> StatusCode {
    super::super::error::parts_of(e).0
}

/// Refuses (through the service's audited check) a caller without
/// `api_keys:manage`, before any form is read: a forged post from a
/// read-only person is the API's 403 whatever it holds.
async fn need_manage(ctx: &Ctx, action: &str, target: &str) -> Result<(), Refusal> {
    if !ctx.may(API_KEYS_MANAGE) {
        authz::require(&ctx.gw, &ctx.principal, API_KEYS_MANAGE, action, target).await?;
    }
    Ok(())
}

/// Whether the person may change `app`: `api_keys:manage`, and everything
/// the application holds is within what they hold (docs/api.md, "Applications"), and it is not
/// the operator-configured admin. What is out of reach is shown, never
/// offered for change; the services refuse it anyway.
async fn in_reach(ctx: &Ctx, app: &Application) -> Result<bool, Refusal> {
    if !ctx.may(API_KEYS_MANAGE) || authz::refuse_operator_admin(&ctx.gw, &app.id).is_err() {
        return Ok(false);
    }
    Ok(authz::app_holdings(&ctx.gw, app)
        .await?
        .within(&ctx.principal.permissions))
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A time as a `datetime-local` value (UTC, to the minute).
fn local_value(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M").to_string()
}

fn type_word(t: KeyType) -> &'static str {
    match t {
        KeyType::Secret => "secret",
        KeyType::Public => "public",
    }
}

fn status_word(s: AppStatus) -> &'static str {
    match s {
        AppStatus::Active => "active",
        AppStatus::Revoked => "revoked",
        AppStatus::Expired => "expired",
    }
}

fn parse_type(s: &str) -> Option<KeyType> {
    match s {
        "secret" => Some(KeyType::Secret),
        "public" => Some(KeyType::Public),
        _ => None,
    }
}

fn parse_status(s: &str) -> Option<AppStatus> {
    match s {
        "active" => Some(AppStatus::Active),
        "revoked" => Some(AppStatus::Revoked),
        "expired" => Some(AppStatus::Expired),
        _ => None,
    }
}

/// Words separated by spaces, commas or line breaks.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

// ------------------------------------------------------------------ table

/// One row of the table.
struct Row {
    id: String,
    name: String,
    prefix: String,
    key_type: &'static str,
    environment: &'static str,
    status: &'static str,
    owner: String,
    last_used: String,
    uses: u64,
    /// Whether the person may change it (a bulk checkbox is offered).
    in_reach: bool,
}

impl Row {
    fn of(v: &AppView) -> Self {
        let a = &v.app;
        Self {
            id: a.id.clone(),
            name: a.name.clone(),
            prefix: a.prefix.clone(),
            key_type: type_word(a.key_type),
            environment: a.environment.as_str(),
            status: status_word(v.status),
            owner: a.owner.clone(),
            last_used: a.last_used_at.map_or_else(|| "never".to_owned(), when),
            uses: a.use_count,
            in_reach: false,
        }
    }
}

/// One line of a bulk outcome, in words.
struct OutcomeLine {
    id: String,
    name: String,
    done: bool,
    text: &'static str,
}

fn outcome_text(result: &str) -> &'static str {
    match result {
        "revoked" => "revoked",
        "deleted" => "deleted",
        "not_found" => "not done: no such application",
        "forbidden" => {
            "not done (403): it holds permissions you do not hold, or you may not manage applications"
        }
        "conflict" => {
            "not done (409): the operator-configured administrator cannot be changed here"
        }
        _ => "not done: something went wrong, try again",
    }
}

#[derive(Template)]
#[template(path = "apps_list.html")]
struct ListPage {
    chrome: Chrome,
    rows: Vec<Row>,
    q: String,
    environment: &'static str,
    key_type: &'static str,
    status: &'static str,
    owner: String,
    manage: bool,
    next: Option<String>,
    first: Option<String>,
    notice: Option<&'static str>,
    bulk_title: Option<&'static str>,
    bulk: Vec<OutcomeLine>,
    errors: FieldErrors,
}

/// The query string of the table with these filters (and a cursor).
fn list_href(filters: &[(&str, &str)], cursor: Option<&str>) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in filters {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    if let Some(c) = cursor {
        s.append_pair("cursor", c);
    }
    let qs = s.finish();
    if qs.is_empty() {
        SECTION.to_owned()
    } else {
        format!("{SECTION}?{qs}")
    }
}

/// `GET /console/apps`.
async fn list(ctx: Ctx, req: HttpRequest) -> Result<HttpResponse, Refusal> {
    let qs = query(&req);
    let q = qs.one("q").trim().to_owned();
    let environment = Environment::parse(qs.one("environment"));
    let key_type = parse_type(qs.one("type"));
    let status = parse_status(qs.one("status"));
    let owner = qs.one("owner").trim().to_owned();
    let cursor = Some(qs.one("cursor")).filter(|c| !c.is_empty());
    let mut errors = FieldErrors::new();
    if q.chars().count() > MAX_SEARCH_CHARS {
        errors.add(
            "q",
            format!("Search for at most {MAX_SEARCH_CHARS} characters."),
        );
    }
    // A value the form never offers is refused, not read as "any": a
    // mistyped filter must not quietly show every application.
    for (field, raw, known) in [
        ("environment", qs.one("environment"), environment.is_some()),
        ("type", qs.one("type"), key_type.is_some()),
        ("status", qs.one("status"), status.is_some()),
    ] {
        if !raw.is_empty() && !known {
            errors.add(field, "Choose one of the listed values, or Any.");
        }
    }
    if owner.chars().count() > 128 {
        errors.add("owner", "An owner is a user id of at most 128 characters.");
    }
    let (rows, next_cursor) = if errors.is_empty() {
        let page = apps::list(
            &ctx.gw,
            &ctx.principal,
            ListParams {
                limit: Some(PAGE_SIZE),
                cursor: cursor.map(str::to_owned),
                environment,
                key_type,
                status,
                owner: Some(owner.clone()).filter(|o| !o.is_empty()),
                q: Some(q.clone()).filter(|q| !q.is_empty()),
            },
        )
        .await?;
        let mut rows = Vec::with_capacity(page.data.len());
        for v in &page.data {
            let mut row = Row::of(v);
            row.in_reach = in_reach(&ctx, &v.app).await?;
            rows.push(row);
        }
        (rows, page.next_cursor)
    } else {
        (Vec::new(), None)
    };
    let env_word = environment.map_or("", Environment::as_str);
    let type_w = key_type.map_or("", type_word);
    let status_w = status.map_or("", status_word);
    let filters = [
        ("q", q.as_str()),
        ("environment", env_word),
        ("type", type_w),
        ("status", status_w),
        ("owner", owner.as_str()),
    ];
    let notice = match qs.one("done") {
        "revoked" => Some("The application was revoked: its secret and its tokens stop working."),
        "deleted" => Some("The application was deleted: its secret and its tokens stop working."),
        _ => None,
    };
    let (bulk_title, bulk) = match Some(qs.one("notice"))
        .filter(|t| !t.is_empty())
        .and_then(|t| ctx.gw.console_reveals.notices.take(&ctx.session.id, "-", t))
    {
        Some(n) => {
            let title = if n.action == "revoke" {
                "Revoke selected: the outcome"
            } else {
                "Delete selected: the outcome"
            };
            let lines = n
                .outcomes
                .into_iter()
                .map(|o| OutcomeLine {
                    done: matches!(o.result, "revoked" | "deleted"),
                    text: outcome_text(o.result),
                    id: o.id,
                    name: o.name,
                })
                .collect();
            (Some(title), lines)
        }
        None => (None, Vec::new()),
    };
    let status_code = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(page(
        status_code,
        &ListPage {
            chrome: ctx.chrome(SECTION),
            rows,
            next: next_cursor.as_deref().map(|c| list_href(&filters, Some(c))),
            first: cursor.map(|_| list_href(&filters, None)),
            q,
            environment: env_word,
            key_type: type_w,
            status: status_w,
            owner,
            manage: ctx.may(API_KEYS_MANAGE),
            notice,
            bulk_title,
            bulk,
            errors,
        },
    ))
}

// ------------------------------------------------------------------- bulk

/// An application chosen for a bulk action, as the confirmation lists it.
struct Chosen {
    id: String,
    name: String,
    prefix: String,
    status: &'static str,
}

#[derive(Template)]
#[template(path = "apps_bulk_confirm.html")]
struct BulkConfirm {
    chrome: Chrome,
    action: &'static str,
    chosen: Vec<Chosen>,
    missing: usize,
}

fn bulk_action(s: &str) -> Result<&'static str, Refusal> {
    match s {
        "revoke" => Ok("revoke"),
        "delete" => Ok("delete"),
        _ => {
            Err(DomainError::Validation("choose Revoke selected or Delete selected".into()).into())
        }
    }
}

/// The chosen ids: 1 to 100 of them, duplicates dropped.
fn chosen_ids(form: &FormData) -> Result<Vec<String>, Refusal> {
    let mut ids: Vec<String> = Vec::new();
    for id in form.all("ids") {
        if !ids.iter().any(|i| i == id) {
            ids.push(id.to_owned());
        }
    }
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(DomainError::Validation(format!(
            "choose 1 to {MAX_BULK} applications (tick their boxes in the table)"
        ))
        .into());
    }
    Ok(ids)
}

/// `GET /console/apps/confirm?action=…&ids=…`: what a bulk action would
/// touch, and the button that does it.
async fn bulk_confirm(ctx: Ctx, req: HttpRequest) -> Result<HttpResponse, Refusal> {
    let qs = query(&req);
    let action = bulk_action(qs.one("action"))?;
    need_manage(&ctx, &format!("app.bulk_{action}"), "-").await?;
    let ids = chosen_ids(&qs)?;
    let mut chosen = Vec::with_capacity(ids.len());
    let mut missing = 0;
    for id in &ids {
        match apps::get(&ctx.gw, &ctx.principal, id).await {
            Ok(v) => chosen.push(Chosen {
                id: v.app.id.clone(),
                name: v.app.name.clone(),
                prefix: v.app.prefix.clone(),
                status: status_word(v.status),
            }),
            Err(DomainError::NotFound(_)) => missing += 1,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(ok(&BulkConfirm {
        chrome: ctx.chrome(SECTION),
        action,
        chosen,
        missing,
    }))
}

/// `POST /console/apps/bulk`: revokes or deletes the confirmed ids, then
/// the table shows what each came to.
async fn bulk_do(posted: Posted) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    let action = bulk_action(form.one("action"))?;
    need_manage(&ctx, &format!("app.bulk_{action}"), "-").await?;
    let ids = chosen_ids(&form)?;
    let mut names = Vec::with_capacity(ids.len());
    for id in &ids {
        let name = apps::get(&ctx.gw, &ctx.principal, id)
            .await
            .map(|v| v.app.name)
            .unwrap_or_default();
        names.push(name);
    }
    let outcomes: Vec<Outcome> = if action == "delete" {
        apps::bulk_delete(&ctx.gw, &ctx.principal, ids)
            .await?
            .into_iter()
            .zip(names)
            .map(|(r, name)| Outcome {
                id: r.id,
                name,
                result: r.result,
            })
            .collect()
    } else {
        let mut out = Vec::with_capacity(ids.len());
        for (id, name) in ids.into_iter().zip(names) {
            let result = match apps::revoke(&ctx.gw, &ctx.principal, &id).await {
                Ok(_) => "revoked",
                Err(DomainError::NotFound(_)) => "not_found",
                Err(DomainError::InsufficientPermissions(_)) => "forbidden",
                Err(DomainError::Conflict(_)) => "conflict",
                Err(e) => {
                    tracing::warn!(app_id = %id, error = %e, "console bulk revoke: one id failed");
                    "error"
                }
            };
            let id = if crate::domain::application::validate_app_id(&id).is_ok() {
                id
            } else {
                "(invalid id)".to_owned()
            };
            out.push(Outcome { id, name, result });
        }
        out
    };
    let notice = BulkNotice { action, outcomes };
    match ctx
        .gw
        .console_reveals
        .notices
        .put(&ctx.session.id, "-", notice)
    {
        Some(ticket) => Ok(see_other(&format!("{SECTION}?notice={ticket}"))),
        None => Ok(see_other(SECTION)),
    }
}

// ------------------------------------------------------------ the form

/// A catalogue entry as a checkbox.
struct PermBox {
    name: String,
    description: String,
    public: bool,
    checked: bool,
    /// The input's id (`perm-…`, safe characters only).
    field: String,
}

/// The catalogue entries of one resource.
struct PermGroup {
    resource: String,
    perms: Vec<PermBox>,
}

/// An existing role as a checkbox.
struct RoleBox {
    name: String,
    description: String,
    checked: bool,
    field: String,
}

/// What the create and edit forms show, as typed.
#[derive(Default)]
struct AppForm {
    name: String,
    description: String,
    key_type: String,
    environment: String,
    owner: String,
    /// Ticked catalogue entries.
    permissions: Vec<String>,
    /// Other grants (wildcards), one per line.
    extra_permissions: String,
    /// Ticked roles.
    roles: Vec<String>,
    /// Roles typed (when the roles cannot be listed).
    roles_text: String,
    access_rules: String,
    allowed_ips: String,
    expires_at: String,
    token_ttl: String,
    /// The own request budget: how many requests (empty: none of its own).
    rate_requests: String,
    /// ... per how long (`30s`, `1m`, `1h`, `1d`).
    rate_per: String,
}

/// A field id from a name: letters and digits kept, the rest `-`.
fn field_id(prefix: &str, name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{prefix}-{safe}")
}

/// The access rules as the text area writes them.
fn rules_text(app: &Application) -> String {
    app.access_rules
        .iter()
        .map(|r| {
            let mut parts = vec![r.scope.clone()];
            parts.extend(r.permissions.iter().map(|p| p.as_str().to_owned()));
            parts.extend(r.roles.iter().map(|n| format!("@{n}")));
            parts.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl AppForm {
    fn blank() -> Self {
        Self {
            key_type: "secret".into(),
            environment: "live".into(),
            ..Self::default()
        }
    }

    /// The form filled from an application; catalogue entries become ticked
    /// boxes, other grants (wildcards) go to the text field.
    fn of(gw: &crate::service::Gateway, app: &Application, roles_listed: bool) -> Self {
        let (boxed, extra): (Vec<&Permission>, Vec<&Permission>) = app
            .permissions
            .iter()
            .partition(|p| !p.is_wildcard() && gw.catalogue.knows(p));
        Self {
            name: app.name.clone(),
            description: app.description.clone(),
            key_type: type_word(app.key_type).into(),
            environment: app.environment.as_str().into(),
            owner: app.owner.clone(),
            permissions: boxed.iter().map(|p| p.as_str().to_owned()).collect(),
            extra_permissions: extra
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            roles: if roles_listed {
                app.roles.clone()
            } else {
                Vec::new()
            },
            roles_text: if roles_listed {
                String::new()
            } else {
                app.roles.join("\n")
            },
            access_rules: rules_text(app),
            allowed_ips: app
                .allowed_ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            expires_at: app.expires_at.map(local_value).unwrap_or_default(),
            token_ttl: app.token_ttl.map(|t| t.to_string()).unwrap_or_default(),
            rate_requests: app
                .rate_limit
                .map(|r| r.requests.to_string())
                .unwrap_or_default(),
            rate_per: app
                .rate_limit
                .map(|r| r.per.to_string())
                .unwrap_or_default(),
        }
    }

    /// The form as posted.
    fn posted(f: &FormData) -> Self {
        Self {
            name: f.one("name").to_owned(),
            description: f.one("description").to_owned(),
            key_type: f.one("type").to_owned(),
            environment: f.one("environment").to_owned(),
            owner: f.one("owner").trim().to_owned(),
            permissions: f
                .all("permissions")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            extra_permissions: f.one("extra_permissions").to_owned(),
            roles: f.all("roles").into_iter().map(str::to_owned).collect(),
            roles_text: f.one("roles_text").to_owned(),
            access_rules: f.one("access_rules").to_owned(),
            allowed_ips: f.one("allowed_ips").to_owned(),
            expires_at: f.one("expires_at").trim().to_owned(),
            token_ttl: f.one("token_ttl").trim().to_owned(),
            rate_requests: f.one("rate_requests").trim().to_owned(),
            rate_per: f.one("rate_per").trim().to_owned(),
        }
    }
}

/// Everything the form's choices need.
struct Choices {
    groups: Vec<PermGroup>,
    /// `None`: the person may not list roles, so they type them.
    roles: Option<Vec<RoleBox>>,
    max_ttl: u64,
    graces: Vec<(u64, &'static str)>,
    /// The gateway's default budget, as a sentence.
    default_rate: Option<String>,
}

async fn choices(ctx: &Ctx, form: &AppForm) -> Result<Choices, Refusal> {
    let mut groups: Vec<PermGroup> = Vec::new();
    for def in ctx.gw.catalogue.entries() {
        let name = def.name.as_str().to_owned();
        // Only what the person may grant (docs/api.md, "Applications"), and what the form
        // already holds (so nothing is silently dropped on a save).
        if !Permission::any_covers(&ctx.principal.permissions, &def.name)
            && !form.permissions.contains(&name)
        {
            continue;
        }
        let resource = def.name.resource().unwrap_or("other").to_owned();
        let b = PermBox {
            checked: form.permissions.contains(&name),
            field: field_id("perm", &name),
            description: def.description.clone(),
            public: def.public,
            name,
        };
        match groups.iter_mut().find(|g| g.resource == resource) {
            Some(g) => g.perms.push(b),
            None => groups.push(PermGroup {
                resource,
                perms: vec![b],
            }),
        }
    }
    groups.sort_by(|a, b| a.resource.cmp(&b.resource));
    let roles = if ctx.may(ROLES_MANAGE) {
        let all = roles::list(&ctx.gw, &ctx.principal).await?;
        Some(
            all.into_iter()
                .map(|r| RoleBox {
                    checked: form.roles.contains(&r.name),
                    field: field_id("role", &r.name),
                    description: r.description,
                    name: r.name,
                })
                .collect(),
        )
    } else {
        None
    };
    let graces = [
        (0, "None: the old secret stops at once"),
        (3_600, "1 hour"),
        (86_400, "24 hours"),
        (604_800, "7 days"),
    ]
    .into_iter()
    .filter(|(s, _)| *s <= MAX_GRACE_SECONDS)
    .collect();
    Ok(Choices {
        groups,
        roles,
        max_ttl: ctx.gw.policy.token_ttl,
        graces,
        default_rate: ctx
            .gw
            .policy
            .rate_limit
            .map(|d| format!("{} requests per {}", d.requests, d.per)),
    })
}

/// The form's fields checked one by one, each error on its field; what
/// the service needs, when all are well-formed.
struct Parsed {
    name: String,
    description: String,
    key_type: KeyType,
    environment: Environment,
    permissions: Vec<String>,
    roles: Vec<String>,
    access_rules: Vec<AccessRuleInput>,
    allowed_ips: Vec<String>,
    expires_at: Option<DateTime<Utc>>,
    token_ttl: Option<u64>,
    rate_limit: Option<RateLimitInput>,
}

/// Parses one access-rule line: `SCOPE grant grant @role …`.
fn parse_rule(line: &str) -> Result<AccessRuleInput, String> {
    let mut parts = line.split_whitespace();
    let scope = parts.next().unwrap_or_default().to_owned();
    crate::domain::access::validate_path(&scope, false).map_err(|e| message(&e))?;
    let mut roles = Vec::new();
    let mut permissions = Vec::new();
    for p in parts {
        match p.strip_prefix('@') {
            Some(r) => roles.push(r.to_owned()),
            None => permissions.push(p.to_owned()),
        }
    }
    if roles.is_empty() && permissions.is_empty() {
        return Err("a rule names its scope, then what it grants there".into());
    }
    Ok(AccessRuleInput {
        scope,
        roles,
        permissions,
    })
}

fn check_grants(gw: &crate::service::Gateway, grants: &[String]) -> Result<(), String> {
    let parsed = apps::parse_permissions(grants).map_err(|e| message(&e))?;
    gw.catalogue.check_all(&parsed).map_err(|e| message(&e))
}

/// `current`: the application being edited; a value it already holds and
/// the form leaves as shown (an expiry now past, a lifetime above a since
/// lowered maximum) is not refused, since it is not sent: otherwise an
/// expired key could not be narrowed without first being revived.
fn parse_form(
    gw: &crate::service::Gateway,
    form: &AppForm,
    roles_listed: bool,
    current: Option<&Application>,
    errors: &mut FieldErrors,
) -> Option<Parsed> {
    let now = Utc::now();
    let kept_expiry = current.is_some_and(|a| {
        a.expires_at.map(local_value).as_deref() == Some(form.expires_at.as_str())
    });
    if let Err(e) = validate_text("name", &form.name, 100, true) {
        errors.add("name", message(&e));
    }
    if let Err(e) = validate_text("description", &form.description, 1000, false) {
        errors.add("description", message(&e));
    }
    let key_type = parse_type(&form.key_type);
    if key_type.is_none() {
        errors.add("type", "Choose secret or public.");
    }
    let environment = Environment::parse(&form.environment);
    if environment.is_none() {
        errors.add("environment", "Choose live or test.");
    }
    if let Err(e) = check_grants(gw, &form.permissions) {
        errors.add("permissions", e);
    }
    let extra = words(&form.extra_permissions);
    if let Err(e) = check_grants(gw, &extra) {
        errors.add("extra_permissions", e);
    }
    let mut permissions = form.permissions.clone();
    permissions.extend(extra);
    let roles = if roles_listed {
        form.roles.clone()
    } else {
        words(&form.roles_text)
    };
    let mut access_rules = Vec::new();
    for (n, line) in lines_only(&form.access_rules).iter().enumerate() {
        match parse_rule(line).and_then(|r| {
            check_grants(gw, &r.permissions)?;
            Ok(r)
        }) {
            Ok(r) => access_rules.push(r),
            Err(e) => {
                errors.add("access_rules", format!("Line {}: {e}", n + 1));
                break;
            }
        }
    }
    let allowed_ips = lines(&form.allowed_ips);
    for ip in &allowed_ips {
        if let Err(e) = IpNet::parse(ip) {
            errors.add("allowed_ips", message(&e));
            break;
        }
    }
    let expires_at = if form.expires_at.is_empty() {
        None
    } else {
        match NaiveDateTime::parse_from_str(&form.expires_at, "%Y-%m-%dT%H:%M")
            .or_else(|_| NaiveDateTime::parse_from_str(&form.expires_at, "%Y-%m-%dT%H:%M:%S"))
        {
            Ok(t) if kept_expiry || t.and_utc() > now => Some(t.and_utc()),
            Ok(_) => {
                errors.add("expires_at", "The expiry must be in the future.");
                None
            }
            Err(_) => {
                errors.add(
                    "expires_at",
                    "Write the expiry as a date and time, e.g. 2030-01-31T18:00 (UTC).",
                );
                None
            }
        }
    };
    let max_ttl = gw.policy.token_ttl;
    let token_ttl = if form.token_ttl.is_empty() {
        None
    } else {
        match form.token_ttl.parse::<u64>() {
            Ok(t)
                if (10..=max_ttl).contains(&t)
                    || current.is_some_and(|a| a.token_ttl == Some(t)) =>
            {
                Some(t)
            }
            _ => {
                errors.add(
                    "token_ttl",
                    format!("A whole number of seconds from 10 to {max_ttl}, or empty."),
                );
                None
            }
        }
    };
    let rate_limit = parse_rate(form, errors);
    if !errors.is_empty() {
        return None;
    }
    Some(Parsed {
        name: form.name.clone(),
        description: form.description.clone(),
        key_type: key_type?,
        environment: environment?,
        permissions,
        roles,
        access_rules,
        allowed_ips,
        expires_at,
        token_ttl,
        rate_limit,
    })
}

/// The two budget fields: both empty for none of its own, else both
/// filled and checked as the API checks them.
fn parse_rate(form: &AppForm, errors: &mut FieldErrors) -> Option<RateLimitInput> {
    if form.rate_requests.is_empty() && form.rate_per.is_empty() {
        return None;
    }
    let requests = match form.rate_requests.parse::<u32>() {
        Ok(n) if (1..=crate::domain::ratelimit::MAX_REQUESTS).contains(&n) => Some(n),
        _ => {
            errors.add(
                "rate_requests",
                format!(
                    "A whole number of requests from 1 to {}, or empty for none of its own.",
                    crate::domain::ratelimit::MAX_REQUESTS
                ),
            );
            None
        }
    };
    if Window::parse(&form.rate_per).is_err() {
        errors.add(
            "rate_per",
            "A whole number and a unit (s, m, h or d), at most 1d, like 1m.",
        );
    }
    Some(RateLimitInput {
        requests: requests?,
        per: form.rate_per.clone(),
    })
}

/// Non-empty trimmed lines (a rule holds spaces: only line breaks
/// separate rules).
fn lines_only(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Puts a service's refusal next to the field it is most likely about;
/// returns false when it is not a form error (then it is shown as a page).
fn place_error(e: &DomainError, errors: &mut FieldErrors) -> bool {
    let msg = message(e);
    match e {
        DomainError::Validation(_) => {
            let lower = msg.to_lowercase();
            let field = if lower.contains("ratelimit.per") {
                "rate_per"
            } else if lower.contains("ratelimit") {
                "rate_requests"
            } else if lower.contains("public key") {
                "permissions"
            } else if lower.contains("access rule") {
                "access_rules"
            } else if lower.contains("role") {
                "roles"
            } else if lower.contains("owner") {
                "owner"
            } else if lower.contains("permission") {
                "extra_permissions"
            } else {
                ""
            };
            errors.add(field, msg);
            true
        }
        DomainError::InsufficientPermissions(_) | DomainError::Conflict(_) => {
            errors.add("", msg);
            true
        }
        _ => false,
    }
}

// ------------------------------------------------------------------ create

#[derive(Template)]
#[template(path = "apps_new.html")]
struct NewPage {
    chrome: Chrome,
    form: AppForm,
    errors: FieldErrors,
    choices: Choices,
}

/// `GET /console/apps/new`.
async fn new_form(ctx: Ctx) -> Result<HttpResponse, Refusal> {
    need_manage(&ctx, "app.create", "-").await?;
    let form = AppForm::blank();
    let choices = choices(&ctx, &form).await?;
    Ok(ok(&NewPage {
        chrome: ctx.chrome(SECTION),
        form,
        errors: FieldErrors::new(),
        choices,
    }))
}

/// Keeps a new secret for the next page of this session; the address of
/// that page.
fn reveal(ctx: &Ctx, id: &str, secret: SecretString) -> String {
    match ctx
        .gw
        .console_reveals
        .secrets
        .put(&ctx.session.id, id, secret)
    {
        Some(t) => format!("{SECTION}/{id}/secret?ticket={t}"),
        None => format!("{SECTION}/{id}/secret"),
    }
}

/// `POST /console/apps`.
async fn create(posted: Posted) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    need_manage(&ctx, "app.create", "-").await?;
    let form = AppForm::posted(&form);
    let roles_listed = ctx.may(ROLES_MANAGE);
    let mut errors = FieldErrors::new();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if let Some(p) = parse_form(&ctx.gw, &form, roles_listed, None, &mut errors) {
        let req = CreateApp {
            name: p.name,
            description: p.description,
            key_type: p.key_type,
            environment: p.environment,
            permissions: p.permissions,
            roles: p.roles,
            access_rules: p.access_rules,
            owner: None,
            audiences: Vec::new(),
            allowed_ips: p.allowed_ips,
            expires_at: p.expires_at,
            token_ttl: p.token_ttl,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            grant_types: Vec::new(),
            rate_limit: p.rate_limit,
        };
        match apps::create(&ctx.gw, &ctx.principal, req).await {
            Ok(created) => {
                let to = reveal(&ctx, &created.view.app.id, created.secret);
                return Ok(see_other(&to));
            }
            Err(e) => {
                status = status_of(&e);
                if !place_error(&e, &mut errors) {
                    return Err(e.into());
                }
            }
        }
    }
    let choices = choices(&ctx, &form).await?;
    Ok(page(
        status,
        &NewPage {
            chrome: ctx.chrome(SECTION),
            form,
            errors,
            choices,
        },
    ))
}

// ------------------------------------------------------------------ secret

#[derive(Template)]
#[template(path = "apps_secret.html")]
struct SecretPage {
    chrome: Chrome,
    id: String,
    name: String,
    secret: Option<SecretString>,
    manage: bool,
}

impl SecretPage {
    /// The secret, for the one page that shows it.
    fn secret_text(&self) -> &str {
        self.secret.as_ref().map_or("", |s| s.expose_secret())
    }
}

/// `GET /console/apps/{id}/secret?ticket=…`: the new secret, once.
async fn secret(
    ctx: Ctx,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, Refusal> {
    let view = apps::get(&ctx.gw, &ctx.principal, &id).await?;
    let qs = query(&req);
    let ticket = qs.one("ticket");
    let secret = if ticket.is_empty() {
        None
    } else {
        ctx.gw
            .console_reveals
            .secrets
            .take(&ctx.session.id, &view.app.id, ticket)
    };
    Ok(ok(&SecretPage {
        chrome: ctx.chrome(SECTION),
        id: view.app.id,
        name: view.app.name,
        secret,
        manage: ctx.may(API_KEYS_MANAGE),
    }))
}

// ----------------------------------------------------------------- details

/// One fact of the details list.
struct Fact {
    label: &'static str,
    value: String,
}

/// One granted permission and what of it the application holds now.
struct Held {
    permission: String,
    /// Where it comes from: "granted directly", "role editor", …
    source: String,
    /// `held`, `partly` or `cut`.
    state: &'static str,
    /// Why, in words.
    why: String,
}

/// The grants of one access rule, with the owner bound applied.
struct ScopedHeld {
    scope: String,
    rows: Vec<Held>,
}

fn judge(p: &Permission, source: String, effective: &[Permission], owner: &str) -> Held {
    let (state, why) = if Permission::any_covers(effective, p) {
        ("held", "held".to_owned())
    } else {
        let part: Vec<&str> = effective
            .iter()
            .filter(|e| p.covers(e))
            .map(Permission::as_str)
            .collect();
        if part.is_empty() {
            ("cut", format!("cut: not held by its owner ({owner})"))
        } else {
            (
                "partly",
                format!(
                    "only {}: its owner ({owner}) holds no more of it",
                    part.join(", ")
                ),
            )
        }
    };
    Held {
        permission: p.as_str().to_owned(),
        source,
        state,
        why,
    }
}

async fn holdings(
    gw: &crate::service::Gateway,
    app: &Application,
) -> Result<(Vec<Held>, Vec<ScopedHeld>), DomainError> {
    let expanded = grants::expand(gw, app).await?;
    let eff = grants::effective(gw, app).await?;
    let source_of = |p: &Permission| {
        let mut from: Vec<String> = Vec::new();
        if app.permissions.contains(p) {
            from.push("granted directly".into());
        }
        for (role, perms) in &expanded.role_grants {
            if perms.contains(p) {
                from.push(format!("role {role}"));
            }
        }
        from.join(", ")
    };
    let top = expanded
        .permissions
        .iter()
        .map(|p| judge(p, source_of(p), &eff.permissions, &app.owner))
        .collect();
    let scoped = expanded
        .access
        .iter()
        .map(|a| {
            let held: Vec<Permission> = eff
                .access
                .iter()
                .filter(|e| e.scope == a.scope)
                .flat_map(|e| e.permissions.iter().cloned())
                .collect();
            ScopedHeld {
                scope: a.scope.clone(),
                rows: a
                    .permissions
                    .iter()
                    .map(|p| judge(p, String::new(), &held, &app.owner))
                    .collect(),
            }
        })
        .collect();
    Ok((top, scoped))
}

#[derive(Template)]
#[template(path = "apps_details.html")]
struct DetailsPage {
    chrome: Chrome,
    id: String,
    name: String,
    status: &'static str,
    facts: Vec<Fact>,
    held: Vec<Held>,
    scoped: Vec<ScopedHeld>,
    owner_is_gateway: bool,
    last_used: String,
    last_ip: String,
    uses: u64,
    /// Exchanges per hour over 7 days: SVG the server built from numbers
    /// (every text in it escaped), the only markup a template takes as is.
    chart: Option<String>,
    manage: bool,
    /// The person manages applications but holds less than this one.
    beyond_reach: bool,
    revoked: bool,
    /// Revoked because a secret scanner reported its secret: a rotation
    /// brings it back.
    leaked: bool,
    notice: Option<&'static str>,
    form: AppForm,
    errors: FieldErrors,
    choices: Choices,
}

/// The budget as a sentence: its own, the gateway's default, or none.
fn rate_text(own: Option<&RateLimit>, default: Option<&RateLimit>) -> String {
    let says = |r: &RateLimit| format!("{} requests per {}", r.requests, r.per);
    match (own, default) {
        (Some(r), _) => says(r),
        (None, Some(d)) => format!("gateway default: {}", says(d)),
        (None, None) => "none".into(),
    }
}

fn facts(v: &AppView, default_rate: Option<&RateLimit>) -> Vec<Fact> {
    let a = &v.app;
    let list = |items: Vec<String>| {
        if items.is_empty() {
            "none".to_owned()
        } else {
            items.join(", ")
        }
    };
    vec![
        Fact {
            label: "Id",
            value: a.id.clone(),
        },
        Fact {
            label: "Name",
            value: a.name.clone(),
        },
        Fact {
            label: "Description",
            value: if a.description.is_empty() {
                "none".into()
            } else {
                a.description.clone()
            },
        },
        Fact {
            label: "Owner",
            value: a.owner.clone(),
        },
        Fact {
            label: "Type",
            value: type_word(a.key_type).into(),
        },
        Fact {
            label: "Environment",
            value: a.environment.as_str().into(),
        },
        Fact {
            label: "Prefix",
            value: a.prefix.clone(),
        },
        Fact {
            label: "Status",
            value: status_word(v.status).into(),
        },
        Fact {
            label: "Roles",
            value: list(a.roles.clone()),
        },
        Fact {
            label: "Permissions",
            value: list(
                a.permissions
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect(),
            ),
        },
        Fact {
            label: "Access rules",
            value: {
                let t = rules_text(a);
                if t.is_empty() {
                    "none".into()
                } else {
                    t.replace('\n', "; ")
                }
            },
        },
        Fact {
            label: "Audiences",
            value: list(a.audiences.clone()),
        },
        Fact {
            label: "Allowed IPs",
            value: if a.allowed_ips.is_empty() {
                "anywhere".into()
            } else {
                list(a.allowed_ips.iter().map(ToString::to_string).collect())
            },
        },
        Fact {
            label: "Expires",
            value: a.expires_at.map_or_else(|| "never".into(), when),
        },
        Fact {
            label: "Token lifetime",
            value: a.token_ttl.map_or_else(
                || "the gateway's default".into(),
                |t| format!("{t} seconds"),
            ),
        },
        Fact {
            label: "Rate limit",
            value: rate_text(a.rate_limit.as_ref(), default_rate),
        },
        Fact {
            label: "Redirect URIs",
            value: list(a.redirect_uris.clone()),
        },
        Fact {
            label: "Created",
            value: when(a.created_at),
        },
        Fact {
            label: "Updated",
            value: when(a.updated_at),
        },
        Fact {
            label: "Revoked",
            value: match (a.revoked_at, a.leaked_at) {
                (Some(at), Some(_)) => format!("{}: leaked", when(at)),
                (at, _) => at.map_or_else(|| "no".into(), when),
            },
        },
    ]
}

async fn details_page(
    ctx: &Ctx,
    view: AppView,
    form: Option<AppForm>,
    errors: FieldErrors,
    notice: Option<&'static str>,
) -> Result<DetailsPage, Refusal> {
    let roles_listed = ctx.may(ROLES_MANAGE);
    let form = form.unwrap_or_else(|| AppForm::of(&ctx.gw, &view.app, roles_listed));
    let choices = choices(ctx, &form).await?;
    let (held, scoped) = holdings(&ctx.gw, &view.app).await?;
    let a = &view.app;
    let now = chrono::Utc::now();
    let counts = crate::service::usage::hourly(&ctx.gw, &a.id, now).await?;
    let reach = in_reach(ctx, a).await?;
    Ok(DetailsPage {
        chrome: ctx.chrome(SECTION),
        id: a.id.clone(),
        name: a.name.clone(),
        status: status_word(view.status),
        facts: facts(&view, ctx.gw.policy.rate_limit.as_ref()),
        held,
        scoped,
        owner_is_gateway: a.owner == GATEWAY_OWNER,
        last_used: a.last_used_at.map_or_else(|| "never".into(), when),
        last_ip: a.last_used_ip.clone().unwrap_or_default(),
        uses: a.use_count,
        chart: Some(crate::service::usage_chart::svg(&counts, now)),
        manage: reach,
        beyond_reach: ctx.may(API_KEYS_MANAGE) && !reach,
        revoked: a.revoked_at.is_some(),
        leaked: a.leaked_at.is_some(),
        notice,
        form,
        errors,
        choices,
    })
}

/// `GET /console/apps/{id}`.
async fn details(
    ctx: Ctx,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, Refusal> {
    let view = apps::get(&ctx.gw, &ctx.principal, &id).await?;
    let notice = match query(&req).one("done") {
        "saved" => Some("Your changes were saved."),
        "revoked" => Some("The application was revoked: its secret and its tokens stop working."),
        _ => None,
    };
    let p = details_page(&ctx, view, None, FieldErrors::new(), notice).await?;
    Ok(ok(&p))
}

/// Only the fields that changed: an unchanged field is not sent, so saving
/// one field never touches (or narrows) another.
fn changes(app: &Application, form: &AppForm, p: Parsed) -> PatchApp {
    let mut patch = PatchApp::default();
    if p.name.trim() != app.name {
        patch.name = Some(p.name);
    }
    if p.description != app.description {
        patch.description = Some(p.description);
    }
    if form.owner != app.owner {
        patch.owner = Some(form.owner.clone());
    }
    let mut perms = p.permissions.clone();
    perms.sort();
    perms.dedup();
    let current: Vec<String> = app
        .permissions
        .iter()
        .map(|x| x.as_str().to_owned())
        .collect();
    if perms != current {
        patch.permissions = Some(p.permissions);
    }
    let mut roles = p.roles.clone();
    roles.sort();
    roles.dedup();
    if roles != app.roles {
        patch.roles = Some(p.roles);
    }
    if lines_only(&form.access_rules) != lines_only(&rules_text(app)) {
        patch.access_rules = Some(p.access_rules);
    }
    let ips_now: Vec<String> = app.allowed_ips.iter().map(ToString::to_string).collect();
    if p.allowed_ips != ips_now {
        patch.allowed_ips = Some(p.allowed_ips);
    }
    if form.expires_at != app.expires_at.map(local_value).unwrap_or_default() {
        patch.expires_at = Some(p.expires_at);
    }
    if p.token_ttl != app.token_ttl {
        patch.token_ttl = Some(p.token_ttl);
    }
    let rate_now = (
        app.rate_limit
            .map(|r| r.requests.to_string())
            .unwrap_or_default(),
        app.rate_limit
            .map(|r| r.per.to_string())
            .unwrap_or_default(),
    );
    if (form.rate_requests.clone(), form.rate_per.clone()) != rate_now {
        patch.rate_limit = Some(p.rate_limit);
    }
    patch
}

/// `POST /console/apps/{id}`: saves the edit form.
async fn save(posted: Posted, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    need_manage(&ctx, "app.update", &id).await?;
    let view = apps::get(&ctx.gw, &ctx.principal, &id).await?;
    let mut form = AppForm::posted(&form);
    // The type and environment are fixed at creation.
    form.key_type = type_word(view.app.key_type).into();
    form.environment = view.app.environment.as_str().into();
    let roles_listed = ctx.may(ROLES_MANAGE);
    let mut errors = FieldErrors::new();
    if form.owner.is_empty() {
        errors.add("owner", "Give the owner: a user id, or gateway.");
    }
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let parsed = parse_form(&ctx.gw, &form, roles_listed, Some(&view.app), &mut errors);
    if let Some(p) = parsed.filter(|_| errors.is_empty()) {
        let patch = changes(&view.app, &form, p);
        match apps::patch(&ctx.gw, &ctx.principal, &view.app.id, patch).await {
            Ok(v) => return Ok(see_other(&format!("{SECTION}/{}?done=saved", v.app.id))),
            Err(e) => {
                status = status_of(&e);
                if !place_error(&e, &mut errors) {
                    return Err(e.into());
                }
            }
        }
    }
    let p = details_page(&ctx, view, Some(form), errors, None).await?;
    Ok(page(status, &p))
}

/// `POST /console/apps/{id}/rotate`.
async fn rotate(posted: Posted, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    need_manage(&ctx, "app.rotate", &id).await?;
    let grace: u64 = form.one("grace").parse().map_err(|_| {
        Refusal::Domain(DomainError::Validation(
            "choose a grace period from the list".into(),
        ))
    })?;
    let rotated = apps::rotate(&ctx.gw, &ctx.principal, &id, grace).await?;
    let to = reveal(&ctx, &rotated.view.app.id, rotated.secret);
    Ok(see_other(&to))
}

// ------------------------------------------------------ revoke and delete

#[derive(Template)]
#[template(path = "apps_confirm.html")]
struct ConfirmPage {
    chrome: Chrome,
    id: String,
    name: String,
    prefix: String,
    /// `revoke` or `delete`.
    action: &'static str,
}

async fn confirm(ctx: Ctx, id: &str, action: &'static str) -> Result<HttpResponse, Refusal> {
    need_manage(&ctx, &format!("app.{action}"), id).await?;
    let view = apps::get(&ctx.gw, &ctx.principal, id).await?;
    if !in_reach(&ctx, &view.app).await? {
        return Err(DomainError::InsufficientPermissions(
            "this application holds more than you do, or is the operator's: you may not change it"
                .into(),
        )
        .into());
    }
    Ok(ok(&ConfirmPage {
        chrome: ctx.chrome(SECTION),
        id: view.app.id,
        name: view.app.name,
        prefix: view.app.prefix,
        action,
    }))
}

/// `GET /console/apps/{id}/revoke`: asks first.
async fn revoke_confirm(ctx: Ctx, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    confirm(ctx, &id, "revoke").await
}

/// `GET /console/apps/{id}/delete`: asks first.
async fn delete_confirm(ctx: Ctx, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    confirm(ctx, &id, "delete").await
}

/// `POST /console/apps/{id}/revoke`.
async fn revoke(posted: Posted, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let v = apps::revoke(&posted.ctx.gw, &posted.ctx.principal, &id).await?;
    Ok(see_other(&format!("{SECTION}/{}?done=revoked", v.app.id)))
}

/// `POST /console/apps/{id}/delete`.
async fn delete(posted: Posted, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    apps::delete(&posted.ctx.gw, &posted.ctx.principal, &id).await?;
    Ok(see_other(&format!("{SECTION}?done=deleted")))
}

/// Registers this section's routes (fixed paths before `{id}`).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/apps", web::get().to(list))
        .route("/console/apps", web::post().to(create))
        .route("/console/apps/new", web::get().to(new_form))
        .route("/console/apps/confirm", web::get().to(bulk_confirm))
        .route("/console/apps/bulk", web::post().to(bulk_do))
        .route("/console/apps/{id}", web::get().to(details))
        .route("/console/apps/{id}", web::post().to(save))
        .route("/console/apps/{id}/secret", web::get().to(secret))
        .route("/console/apps/{id}/rotate", web::post().to(rotate))
        .route("/console/apps/{id}/revoke", web::get().to(revoke_confirm))
        .route("/console/apps/{id}/revoke", web::post().to(revoke))
        .route("/console/apps/{id}/delete", web::get().to(delete_confirm))
        .route("/console/apps/{id}/delete", web::post().to(delete));
}
