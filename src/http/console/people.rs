//! Users and roles (docs/api.md, "The console", "People", "Applications"): tables, create, edit, disable and
//! enable, password reset, sessions, delete. Every read and change goes
//! through `service::users` and `service::roles` with the person's
//! principal, so the API's permission checks and "nobody widens their own
//! reach" hold here unchanged; a refusal is the API's status as a page.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::Deserialize;

use super::forms::{FieldErrors, FormData, lines};
use super::{Chrome, Ctx, Posted, Refusal, ok, page, see_other};
use crate::domain::permission::builtin::ROLES_MANAGE;
use crate::domain::session::Session;
use crate::domain::{DomainError, Role, User, UserStatus};
use crate::service::people::sessions::valid_sid;
use crate::service::{authz, roles, users};

/// Users shown per page of the table.
const PAGE_SIZE: usize = 50;

/// How times read on these pages.
fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `when` for a time that may never have happened.
fn when_or(t: Option<&DateTime<Utc>>, never: &str) -> String {
    t.map_or_else(|| never.to_owned(), when)
}

/// The notice after a post: a fixed word in the query, fixed text shown
/// (never the query's own text).
fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "created" => "The user was created.",
        "saved" => "Your changes were saved.",
        "disabled" => "The user was disabled: their sessions ended and their tokens were revoked.",
        "enabled" => "The user was enabled: they can sign in again.",
        "password" => "The password was reset: the user's sessions ended.",
        "session" => "The session was ended.",
        "deleted" => "The user was deleted.",
        "role-created" => "The role was created.",
        "role-saved" => "The role was saved.",
        "role-deleted" => "The role was deleted.",
        _ => return None,
    })
}

/// The `?done=` word of a page after a post.
#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

/// Which field a service's validation message is about (the services
/// begin their messages with the field, in their words); `""` is the form
/// as a whole. Only the start is read: the rest may quote the input.
fn field_of(message: &str) -> &'static str {
    const FIELDS: &[(&str, &str)] = &[
        ("invalid permission", "permissions"),
        ("unknown permission", "permissions"),
        ("at most 256 permissions", "permissions"),
        ("unknown role", "roles"),
        ("invalid role name", "name"),
        ("name ", "name"),
        ("password", "password"),
        ("invalid email", "email"),
        ("description", "description"),
    ];
    // "role X is held by public key(s) …": about the role's permissions.
    if message.starts_with("role ") && message.contains(" is held by public key") {
        return "permissions";
    }
    FIELDS
        .iter()
        .find(|(start, _)| message.starts_with(start))
        .map_or("", |(_, field)| field)
}

/// A refused form: the field errors and the status to show them with, or
/// the refusal page (403, 404, …) when the error is not about the input.
/// `taken` is the field a 409 "already exists" is about.
fn form_errors(e: DomainError, taken: &str) -> Result<(StatusCode, FieldErrors), Refusal> {
    let mut errors = FieldErrors::new();
    match e {
        DomainError::Validation(m) => {
            errors.add(field_of(&m), m);
            Ok((StatusCode::UNPROCESSABLE_ENTITY, errors))
        }
        DomainError::Conflict(m) => {
            let field = if m.ends_with("already exists") {
                taken
            } else {
                ""
            };
            errors.add(field, m);
            Ok((StatusCode::CONFLICT, errors))
        }
        other => Err(Refusal::Domain(other)),
    }
}

/// Values of a repeated field (checkboxes) and of its text field, split
/// into items, without repeats, in the order given.
fn chosen(form: &FormData, boxes: &str, text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let items = form
        .all(boxes)
        .into_iter()
        .flat_map(lines)
        .chain(lines(form.one(text)));
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// One catalogue entry as a checkbox.
pub struct PermBox {
    /// The element id (`perm-N`).
    pub id: String,
    /// `resource:action`.
    pub name: String,
    /// What it allows.
    pub description: String,
    /// Whether it is ticked.
    pub checked: bool,
}

/// The catalogue entries of one resource.
pub struct PermGroup {
    /// The resource (`content`, `api_keys`, …).
    pub resource: String,
    /// Its entries.
    pub boxes: Vec<PermBox>,
}

/// The permission picker: the catalogue grouped by resource with `held`
/// ticked, and what `held` has beyond the catalogue's entries (wildcards)
/// as text.
fn picker(ctx: &Ctx, held: &[String]) -> (Vec<PermGroup>, String) {
    let mut groups: Vec<PermGroup> = Vec::new();
    let mut listed = Vec::new();
    // The catalogue is sorted by name, so each resource comes in one run.
    for (n, def) in ctx.gw.catalogue.entries().enumerate() {
        let name = def.name.as_str().to_owned();
        let resource = def.name.resource().unwrap_or("other").to_owned();
        let b = PermBox {
            id: format!("perm-{n}"),
            checked: held.contains(&name),
            description: def.description.clone(),
            name: name.clone(),
        };
        listed.push(name);
        match groups.last_mut() {
            Some(g) if g.resource == resource => g.boxes.push(b),
            _ => groups.push(PermGroup {
                resource,
                boxes: vec![b],
            }),
        }
    }
    let other: Vec<&str> = held
        .iter()
        .filter(|p| !listed.contains(p))
        .map(String::as_str)
        .collect();
    (groups, other.join(", "))
}

/// One role as a checkbox on a user's form.
pub struct RoleBox {
    /// The element id (`role-N`).
    pub id: String,
    /// The role's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Whether it is ticked.
    pub checked: bool,
}

/// The roles a user's form offers as checkboxes, when the person may list
/// roles (`roles:manage`); otherwise `None` and the form has a text field.
async fn role_boxes(ctx: &Ctx, held: &[String]) -> Result<Option<Vec<RoleBox>>, Refusal> {
    if !ctx.may(ROLES_MANAGE) {
        return Ok(None);
    }
    let all = roles::list(&ctx.gw, &ctx.principal).await?;
    let mut boxes: Vec<RoleBox> = all
        .into_iter()
        .map(|r| RoleBox {
            checked: held.contains(&r.name),
            name: r.name,
            description: r.description,
            id: String::new(),
        })
        .collect();
    // Typed names that are not roles stay on the form, ticked, so the
    // error beside the field names what was asked.
    for h in held {
        if !boxes.iter().any(|b| &b.name == h) {
            boxes.push(RoleBox {
                id: String::new(),
                name: h.clone(),
                description: String::new(),
                checked: true,
            });
        }
    }
    for (n, b) in boxes.iter_mut().enumerate() {
        b.id = format!("role-{n}");
    }
    Ok(Some(boxes))
}

/// The grant fields of a user's form, as shown.
pub struct Grants {
    /// Roles as checkboxes, when roles can be listed.
    pub role_boxes: Option<Vec<RoleBox>>,
    /// Roles as text otherwise.
    pub roles_text: String,
    /// The catalogue as checkboxes.
    pub groups: Vec<PermGroup>,
    /// Other grants (wildcards) as text.
    pub perms_other: String,
}

async fn grants(ctx: &Ctx, roles: &[String], perms: &[String]) -> Result<Grants, Refusal> {
    let (groups, perms_other) = picker(ctx, perms);
    Ok(Grants {
        role_boxes: role_boxes(ctx, roles).await?,
        roles_text: roles.join(", "),
        groups,
        perms_other,
    })
}

fn perm_names(u: &User) -> Vec<String> {
    u.permissions
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect()
}

/// Whether the person may change a target holding `held` (docs/api.md, "Applications": nobody
/// widens their reach): what they may not change is not offered, and its
/// confirmation pages are the API's 403, as the post would be.
fn within_reach(ctx: &Ctx, held: &authz::Holdings) -> Result<(), DomainError> {
    authz::guard(&ctx.principal, Some(held), None)
}

/// [`within_reach`] for a user, roles expanded.
async fn user_in_reach(ctx: &Ctx, u: &User) -> Result<(), DomainError> {
    within_reach(ctx, &authz::user_holdings(&ctx.gw, u).await?)
}

// ---------------------------------------------------------------- users

/// One row of the users table.
pub struct UserRow {
    /// Its id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// `active` or `disabled`.
    pub status: &'static str,
    /// Roles, comma-separated.
    pub roles: String,
    /// Last sign-in, or "never".
    pub last_login: String,
}

fn status_word(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Active => "active",
        UserStatus::Disabled => "disabled",
    }
}

#[derive(Template)]
#[template(path = "users_list.html")]
struct UsersList {
    chrome: Chrome,
    notice: Option<&'static str>,
    rows: Vec<UserRow>,
    next: Option<String>,
    first: bool,
}

/// `?cursor=` of the users table, and the notice word.
#[derive(Deserialize)]
struct UsersQuery {
    cursor: Option<String>,
    done: Option<String>,
}

/// `GET /console/users`: the table, a page at a time.
async fn users_list(ctx: Ctx, q: web::Query<UsersQuery>) -> Result<HttpResponse, Refusal> {
    let q = q.into_inner();
    let first = q.cursor.is_none();
    let found = users::list(&ctx.gw, &ctx.principal, Some(PAGE_SIZE), q.cursor).await?;
    let rows = found
        .data
        .into_iter()
        .map(|u| UserRow {
            status: status_word(u.status),
            roles: u.roles.join(", "),
            last_login: when_or(u.last_login_at.as_ref(), "never"),
            id: u.id,
            email: u.email,
            name: u.name,
        })
        .collect();
    let next = found.next_cursor.map(|c| {
        let enc: String = url::form_urlencoded::byte_serialize(c.as_bytes()).collect();
        format!("/console/users?cursor={enc}")
    });
    Ok(ok(&UsersList {
        chrome: ctx.chrome("/console/users"),
        notice: notice(q.done.as_deref()),
        rows,
        next,
        first,
    }))
}

#[derive(Template)]
#[template(path = "users_new.html")]
struct UsersNew {
    chrome: Chrome,
    errors: FieldErrors,
    email: String,
    name: String,
    grants: Grants,
}

/// `GET /console/users/new`.
async fn users_new(ctx: Ctx) -> Result<HttpResponse, Refusal> {
    // Not offered without users:manage: the API's 403, as the post would.
    users::list(&ctx.gw, &ctx.principal, Some(1), None).await?;
    Ok(ok(&UsersNew {
        grants: grants(&ctx, &[], &[]).await?,
        chrome: ctx.chrome("/console/users"),
        errors: FieldErrors::new(),
        email: String::new(),
        name: String::new(),
    }))
}

/// `POST /console/users/new`.
async fn users_create(posted: Posted) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    let email = form.one("email").to_owned();
    let name = form.one("name").to_owned();
    let roles = chosen(&form, "roles", "roles_text");
    let permissions = chosen(&form, "permissions", "permissions_other");
    let password = form.one("password");
    let req = users::CreateUser {
        email: email.clone(),
        name: name.clone(),
        roles: roles.clone(),
        permissions: permissions.clone(),
        password: (!password.is_empty()).then(|| SecretString::from(password.to_owned())),
    };
    match users::create(&ctx.gw, &ctx.principal, req).await {
        Ok(u) => Ok(see_other(&format!("/console/users/{}?done=created", u.id))),
        Err(e) => {
            let (status, errors) = form_errors(e, "email")?;
            Ok(page(
                status,
                &UsersNew {
                    grants: grants(&ctx, &roles, &permissions).await?,
                    chrome: ctx.chrome("/console/users"),
                    errors,
                    email,
                    name,
                },
            ))
        }
    }
}

/// A session as a row of the user's page.
pub struct SessionRow {
    /// Its id.
    pub id: String,
    /// Started.
    pub created: String,
    /// Last request.
    pub last_seen: String,
    /// Address at sign-in.
    pub ip: String,
    /// Browser at sign-in.
    pub user_agent: String,
    /// The client it was started through.
    pub client: String,
    /// Whether it is the session this page is seen in.
    pub current: bool,
}

fn session_row(s: Session, current: &str) -> SessionRow {
    SessionRow {
        created: when(&s.auth_time),
        last_seen: when(&s.last_seen_at),
        current: s.id == current,
        id: s.id,
        ip: s.ip,
        user_agent: s.user_agent,
        client: s.client_id,
    }
}

/// A linked identity, read-only.
pub struct IdentityRow {
    /// The provider.
    pub idp: String,
    /// Its `sub`.
    pub subject: String,
    /// The email it gave.
    pub email: String,
}

/// What the user's page shows besides the form.
pub struct UserFacts {
    /// Id.
    pub id: String,
    /// Email as stored.
    pub email: String,
    /// `active` or `disabled`.
    pub status: &'static str,
    /// Whether active.
    pub active: bool,
    /// Whether a password is set.
    pub has_password: bool,
    /// Created.
    pub created: String,
    /// Last change.
    pub updated: String,
    /// Last sign-in.
    pub last_login: String,
    /// Linked identities.
    pub identities: Vec<IdentityRow>,
}

fn facts(u: &User) -> UserFacts {
    UserFacts {
        id: u.id.clone(),
        email: u.email.clone(),
        status: status_word(u.status),
        active: u.status == UserStatus::Active,
        has_password: u.has_password,
        created: when(&u.created_at),
        updated: when(&u.updated_at),
        last_login: when_or(u.last_login_at.as_ref(), "never"),
        identities: u
            .identities
            .iter()
            .map(|i| IdentityRow {
                idp: i.idp.clone(),
                subject: i.subject.clone(),
                email: i.email.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

#[derive(Template)]
#[template(path = "users_show.html")]
struct UsersShow {
    chrome: Chrome,
    notice: Option<&'static str>,
    user: UserFacts,
    errors: FieldErrors,
    email: String,
    name: String,
    grants: Grants,
    sessions: Vec<SessionRow>,
    /// Why the user cannot be changed by this person (they hold more), or
    /// `None` when every control is offered.
    locked: Option<String>,
    /// The user's permissions as text (shown when locked).
    perms_text: String,
}

/// The user's page, with the form as given.
async fn show_user(
    ctx: &Ctx,
    u: &User,
    status: StatusCode,
    errors: FieldErrors,
    form: Option<(String, String, Vec<String>, Vec<String>)>,
    done: Option<&str>,
) -> Result<HttpResponse, Refusal> {
    let (email, name, roles, perms) = form.unwrap_or_else(|| {
        (
            u.email.clone(),
            u.name.clone(),
            u.roles.clone(),
            perm_names(u),
        )
    });
    let sessions = users::sessions_of(&ctx.gw, &ctx.principal, &u.id)
        .await?
        .into_iter()
        .map(|s| session_row(s, &ctx.session.id))
        .collect();
    let locked = user_in_reach(ctx, u).await.err().map(|e| e.to_string());
    let perms_text = perms.join(", ");
    Ok(page(
        status,
        &UsersShow {
            chrome: ctx.chrome("/console/users"),
            notice: notice(done),
            user: facts(u),
            errors,
            email,
            name,
            grants: grants(ctx, &roles, &perms).await?,
            sessions,
            locked,
            perms_text,
        },
    ))
}

/// `GET /console/users/{id}`.
async fn user_show(
    ctx: Ctx,
    id: web::Path<String>,
    q: web::Query<Done>,
) -> Result<HttpResponse, Refusal> {
    let u = users::get(&ctx.gw, &ctx.principal, &id).await?;
    show_user(
        &ctx,
        &u,
        StatusCode::OK,
        FieldErrors::new(),
        None,
        q.done.as_deref(),
    )
    .await
}

/// `POST /console/users/{id}`: email, name, roles, permissions.
async fn user_update(posted: Posted, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    let email = form.one("email").to_owned();
    let name = form.one("name").to_owned();
    let roles = chosen(&form, "roles", "roles_text");
    let perms = chosen(&form, "permissions", "permissions_other");
    let req = users::PatchUser {
        email: Some(email.clone()),
        name: Some(name.clone()),
        roles: Some(roles.clone()),
        permissions: Some(perms.clone()),
        ..users::PatchUser::default()
    };
    match users::patch(&ctx.gw, &ctx.principal, &id, req).await {
        Ok(u) => Ok(see_other(&format!("/console/users/{}?done=saved", u.id))),
        Err(e) => {
            let (status, errors) = form_errors(e, "email")?;
            let u = users::get(&ctx.gw, &ctx.principal, &id).await?;
            show_user(
                &ctx,
                &u,
                status,
                errors,
                Some((email, name, roles, perms)),
                None,
            )
            .await
        }
    }
}

/// A page asking to confirm a destructive action.
#[derive(Template)]
#[template(path = "users_confirm.html")]
struct Confirm {
    chrome: Chrome,
    heading: String,
    message: String,
    problem: Option<String>,
    action: String,
    button: &'static str,
    cancel: String,
    detach: bool,
}

/// `GET /console/users/{id}/disable`: the confirmation.
async fn user_disable_confirm(ctx: Ctx, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let u = users::get(&ctx.gw, &ctx.principal, &id).await?;
    user_in_reach(&ctx, &u).await?;
    Ok(ok(&Confirm {
        chrome: ctx.chrome("/console/users"),
        heading: format!("Disable {}?", u.email),
        message: "They will not be able to sign in, every session of theirs ends now, and every token they or their applications hold is revoked. You can enable them again later.".into(),
        problem: None,
        action: format!("/console/users/{}/disable", u.id),
        button: "Disable user",
        cancel: format!("/console/users/{}", u.id),
        detach: false,
    }))
}

async fn set_status(
    posted: Posted,
    id: &str,
    status: UserStatus,
    done: &str,
) -> Result<HttpResponse, Refusal> {
    let req = users::PatchUser {
        status: Some(status),
        ..users::PatchUser::default()
    };
    let u = users::patch(&posted.ctx.gw, &posted.ctx.principal, id, req).await?;
    Ok(see_other(&format!("/console/users/{}?done={done}", u.id)))
}

/// `POST /console/users/{id}/disable`.
async fn user_disable(posted: Posted, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    set_status(posted, &id, UserStatus::Disabled, "disabled").await
}

/// `POST /console/users/{id}/enable`.
async fn user_enable(posted: Posted, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    set_status(posted, &id, UserStatus::Active, "enabled").await
}

#[derive(Template)]
#[template(path = "users_password.html")]
struct UsersPassword {
    chrome: Chrome,
    id: String,
    email: String,
    errors: FieldErrors,
}

/// `GET /console/users/{id}/password`: an administrator sets a new one.
async fn user_password_form(ctx: Ctx, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let u = users::get(&ctx.gw, &ctx.principal, &id).await?;
    user_in_reach(&ctx, &u).await?;
    Ok(ok(&UsersPassword {
        chrome: ctx.chrome("/console/users"),
        id: u.id,
        email: u.email,
        errors: FieldErrors::new(),
    }))
}

/// `POST /console/users/{id}/password`: both fields must match; neither is
/// ever shown again.
async fn user_password(posted: Posted, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    let password = form.one("password");
    let mut errors = FieldErrors::new();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if password != form.one("password_confirm") {
        errors.add("password_confirm", "The two passwords do not match.");
    } else {
        let req = users::PatchUser {
            password: Some(SecretString::from(password.to_owned())),
            ..users::PatchUser::default()
        };
        match users::patch(&ctx.gw, &ctx.principal, &id, req).await {
            Ok(u) => return Ok(see_other(&format!("/console/users/{}?done=password", u.id))),
            Err(e) => {
                let (s, found) = form_errors(e, "")?;
                status = s;
                // On this form, whatever is wrong is wrong with the password.
                if let Some(m) = found.get("password").or_else(|| found.get("")) {
                    errors.add("password", m);
                }
            }
        }
    }
    let u = users::get(&ctx.gw, &ctx.principal, &id).await?;
    Ok(page(
        status,
        &UsersPassword {
            chrome: ctx.chrome("/console/users"),
            id: u.id,
            email: u.email,
            errors,
        },
    ))
}

/// Path of one session of one user.
#[derive(Deserialize)]
struct SessionPath {
    id: String,
    sid: String,
}

/// `GET /console/users/{id}/sessions/{sid}/end`: the confirmation.
async fn session_end_confirm(ctx: Ctx, p: web::Path<SessionPath>) -> Result<HttpResponse, Refusal> {
    let u = users::get(&ctx.gw, &ctx.principal, &p.id).await?;
    user_in_reach(&ctx, &u).await?;
    let found = if valid_sid(&p.sid) {
        users::sessions_of(&ctx.gw, &ctx.principal, &u.id)
            .await?
            .into_iter()
            .find(|s| s.id == p.sid)
    } else {
        None
    };
    let Some(s) = found else {
        return Err(
            DomainError::NotFound(format!("session (no such session of user {})", u.id)).into(),
        );
    };
    let own = if s.id == ctx.session.id {
        " This is the session you are using: you will be signed out."
    } else {
        ""
    };
    Ok(ok(&Confirm {
        chrome: ctx.chrome("/console/users"),
        heading: format!("End this session of {}?", u.email),
        message: format!(
            "The session started {} from {} ends now, and every token issued in it is revoked.{own}",
            when(&s.auth_time),
            s.ip
        ),
        problem: None,
        action: format!("/console/users/{}/sessions/{}/end", u.id, s.id),
        button: "End session",
        cancel: format!("/console/users/{}", u.id),
        detach: false,
    }))
}

/// `POST /console/users/{id}/sessions/{sid}/end`.
async fn session_end(posted: Posted, p: web::Path<SessionPath>) -> Result<HttpResponse, Refusal> {
    let ctx = posted.ctx;
    // Ended: the id named a real user, so it is safe in the address.
    users::end_session(&ctx.gw, &ctx.principal, &p.id, &p.sid).await?;
    Ok(see_other(&format!("/console/users/{}?done=session", p.id)))
}

/// `GET /console/users/{id}/delete`: the confirmation.
async fn user_delete_confirm(ctx: Ctx, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let u = users::get(&ctx.gw, &ctx.principal, &id).await?;
    user_in_reach(&ctx, &u).await?;
    Ok(ok(&Confirm {
        chrome: ctx.chrome("/console/users"),
        heading: format!("Delete {}?", u.email),
        message: "The user is removed for good: their sessions end and their tokens are revoked. A user who owns applications cannot be deleted until those have another owner or are deleted.".into(),
        problem: None,
        action: format!("/console/users/{}/delete", u.id),
        button: "Delete user",
        cancel: format!("/console/users/{}", u.id),
        detach: false,
    }))
}

/// `POST /console/users/{id}/delete`.
async fn user_delete(posted: Posted, id: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let ctx = posted.ctx;
    users::delete(&ctx.gw, &ctx.principal, &id).await?;
    Ok(see_other("/console/users?done=deleted"))
}

// ---------------------------------------------------------------- roles

/// One row of the roles table.
pub struct RoleRow {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Permissions, comma-separated.
    pub permissions: String,
}

#[derive(Template)]
#[template(path = "roles_list.html")]
struct RolesList {
    chrome: Chrome,
    notice: Option<&'static str>,
    rows: Vec<RoleRow>,
}

/// `GET /console/roles`.
async fn roles_list(ctx: Ctx, q: web::Query<Done>) -> Result<HttpResponse, Refusal> {
    let rows = roles::list(&ctx.gw, &ctx.principal)
        .await?
        .into_iter()
        .map(|r| RoleRow {
            permissions: r
                .permissions
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            name: r.name,
            description: r.description,
        })
        .collect();
    Ok(ok(&RolesList {
        chrome: ctx.chrome("/console/roles"),
        notice: notice(q.done.as_deref()),
        rows,
    }))
}

#[derive(Template)]
#[template(path = "roles_form.html")]
struct RolesForm {
    chrome: Chrome,
    notice: Option<&'static str>,
    /// The role edited, or `None` when creating one.
    editing: Option<String>,
    errors: FieldErrors,
    name: String,
    description: String,
    grants: Grants,
    /// Why the role cannot be changed by this person (it grants more than
    /// they hold), or `None`.
    locked: Option<String>,
}

/// Why `r` is beyond the person's reach, if it is.
fn role_locked(ctx: &Ctx, r: &Role) -> Option<String> {
    within_reach(ctx, &authz::role_holdings(r))
        .err()
        .map(|e| e.to_string())
}

fn role_form(
    ctx: &Ctx,
    editing: Option<String>,
    locked: Option<String>,
    errors: FieldErrors,
    (name, description, perms): (String, String, Vec<String>),
    done: Option<&str>,
) -> RolesForm {
    let (groups, perms_other) = picker(ctx, &perms);
    RolesForm {
        chrome: ctx.chrome("/console/roles"),
        notice: notice(done),
        editing,
        errors,
        name,
        description,
        grants: Grants {
            role_boxes: None,
            roles_text: String::new(),
            groups,
            perms_other,
        },
        locked,
    }
}

/// `GET /console/roles/new`.
async fn roles_new(ctx: Ctx) -> Result<HttpResponse, Refusal> {
    // Not offered without roles:manage: the API's 403, as the post would.
    roles::list(&ctx.gw, &ctx.principal).await?;
    Ok(ok(&role_form(
        &ctx,
        None,
        None,
        FieldErrors::new(),
        (String::new(), String::new(), Vec::new()),
        None,
    )))
}

/// `POST /console/roles/new`.
async fn roles_create(posted: Posted) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    let name = form.one("name").to_owned();
    let description = form.one("description").to_owned();
    let perms = chosen(&form, "permissions", "permissions_other");
    let req = roles::CreateRole {
        name: name.clone(),
        description: description.clone(),
        permissions: perms.clone(),
    };
    match roles::create(&ctx.gw, &ctx.principal, req).await {
        Ok(r) => Ok(see_other(&format!(
            "/console/roles/{}/edit?done=role-created",
            r.name
        ))),
        Err(e) => {
            let (status, errors) = form_errors(e, "name")?;
            Ok(page(
                status,
                &role_form(&ctx, None, None, errors, (name, description, perms), None),
            ))
        }
    }
}

fn role_fields(r: &Role) -> (String, String, Vec<String>) {
    (
        r.name.clone(),
        r.description.clone(),
        r.permissions
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
    )
}

/// `GET /console/roles/{name}/edit`.
async fn role_edit(
    ctx: Ctx,
    name: web::Path<String>,
    q: web::Query<Done>,
) -> Result<HttpResponse, Refusal> {
    let r = roles::read(&ctx.gw, &ctx.principal, &name).await?;
    Ok(ok(&role_form(
        &ctx,
        Some(r.name.clone()),
        role_locked(&ctx, &r),
        FieldErrors::new(),
        role_fields(&r),
        q.done.as_deref(),
    )))
}

/// `POST /console/roles/{name}/edit`: description and permissions.
async fn role_update(posted: Posted, name: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    let description = form.one("description").to_owned();
    let perms = chosen(&form, "permissions", "permissions_other");
    let req = roles::PatchRole {
        description: Some(description.clone()),
        permissions: Some(perms.clone()),
    };
    match roles::patch(&ctx.gw, &ctx.principal, &name, req).await {
        Ok(r) => Ok(see_other(&format!(
            "/console/roles/{}/edit?done=role-saved",
            r.name
        ))),
        Err(e) => {
            let (status, errors) = form_errors(e, "")?;
            let r = roles::read(&ctx.gw, &ctx.principal, &name).await?;
            Ok(page(
                status,
                &role_form(
                    &ctx,
                    Some(r.name.clone()),
                    role_locked(&ctx, &r),
                    errors,
                    (r.name, description, perms),
                    None,
                ),
            ))
        }
    }
}

fn role_delete_page(ctx: &Ctx, r: &Role, problem: Option<String>) -> Confirm {
    Confirm {
        chrome: ctx.chrome("/console/roles"),
        heading: format!("Delete the role {}?", r.name),
        message: "The role is removed for good. While applications or users hold it, it is deleted only if you also remove it from them (their tokens are revoked).".into(),
        problem,
        action: format!("/console/roles/{}/delete", r.name),
        button: "Delete role",
        cancel: format!("/console/roles/{}/edit", r.name),
        detach: true,
    }
}

/// `GET /console/roles/{name}/delete`: the confirmation.
async fn role_delete_confirm(ctx: Ctx, name: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let r = roles::read(&ctx.gw, &ctx.principal, &name).await?;
    within_reach(&ctx, &authz::role_holdings(&r))?;
    Ok(ok(&role_delete_page(&ctx, &r, None)))
}

/// `POST /console/roles/{name}/delete` (`detach` ticked: also from its
/// holders).
async fn role_delete(posted: Posted, name: web::Path<String>) -> Result<HttpResponse, Refusal> {
    let Posted { ctx, form } = posted;
    match roles::delete(&ctx.gw, &ctx.principal, &name, form.has("detach")).await {
        Ok(()) => Ok(see_other("/console/roles?done=role-deleted")),
        // Still held: the same question again, with why and the choice.
        Err(DomainError::Conflict(m)) => {
            let r = roles::read(&ctx.gw, &ctx.principal, &name).await?;
            let m = m.replace(" (API: ?detach=true)", "");
            Ok(page(
                StatusCode::CONFLICT,
                &role_delete_page(&ctx, &r, Some(m)),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Registers this section's routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/console/users", web::get().to(users_list))
        .route("/console/users/new", web::get().to(users_new))
        .route("/console/users/new", web::post().to(users_create))
        .route("/console/users/{id}", web::get().to(user_show))
        .route("/console/users/{id}", web::post().to(user_update))
        .route(
            "/console/users/{id}/disable",
            web::get().to(user_disable_confirm),
        )
        .route("/console/users/{id}/disable", web::post().to(user_disable))
        .route("/console/users/{id}/enable", web::post().to(user_enable))
        .route(
            "/console/users/{id}/password",
            web::get().to(user_password_form),
        )
        .route(
            "/console/users/{id}/password",
            web::post().to(user_password),
        )
        .route(
            "/console/users/{id}/sessions/{sid}/end",
            web::get().to(session_end_confirm),
        )
        .route(
            "/console/users/{id}/sessions/{sid}/end",
            web::post().to(session_end),
        )
        .route(
            "/console/users/{id}/delete",
            web::get().to(user_delete_confirm),
        )
        .route("/console/users/{id}/delete", web::post().to(user_delete))
        .route("/console/roles", web::get().to(roles_list))
        .route("/console/roles/new", web::get().to(roles_new))
        .route("/console/roles/new", web::post().to(roles_create))
        .route("/console/roles/{name}/edit", web::get().to(role_edit))
        .route("/console/roles/{name}/edit", web::post().to(role_update))
        .route(
            "/console/roles/{name}/delete",
            web::get().to(role_delete_confirm),
        )
        .route("/console/roles/{name}/delete", web::post().to(role_delete));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_messages_land_beside_their_fields() {
        for (message, field) in [
            (
                "unknown permission(s), not in the catalogue: x:y",
                "permissions",
            ),
            ("invalid permission(s) \"a\": expected …", "permissions"),
            ("at most 256 permissions", "permissions"),
            (
                "role reader is held by public key(s) app_1, which may hold only permissions marked public",
                "permissions",
            ),
            ("unknown role(s): admin", "roles"),
            ("invalid role name \"A\": 1 to 64 of a-z", "name"),
            ("name must be at most 100 characters", "name"),
            ("password must be 12 to 128 characters", "password"),
            ("password must not be the email address", "password"),
            ("invalid email address \"permission@x\"", "email"),
            (
                "description must not contain control characters",
                "description",
            ),
            ("something else entirely", ""),
        ] {
            assert_eq!(field_of(message), field, "{message}");
        }
    }

    #[test]
    fn ticked_boxes_and_typed_text_join_without_repeats() {
        let form = FormData::new(
            [
                ("permissions", "content:read"),
                ("permissions", "content:write"),
                ("permissions_other", " workloads:*, content:read\n*"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        );
        assert_eq!(
            chosen(&form, "permissions", "permissions_other"),
            vec!["content:read", "content:write", "workloads:*", "*"]
        );
        assert!(chosen(&form, "roles", "roles_text").is_empty());
    }

    #[test]
    fn notices_are_fixed_words_only() {
        assert!(notice(Some("created")).is_some());
        assert_eq!(notice(Some("<b>hi</b>")), None);
        assert_eq!(notice(None), None);
    }
}
