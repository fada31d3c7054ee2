//! What a signed-in person may do about themselves: read their record,
//! list and end their sessions, change their password.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::json;

use super::sessions;
use crate::domain::session::Session;
use crate::domain::user::validate_password;
use crate::domain::{DomainError, User};
use crate::service::Gateway;
use crate::service::auth::Principal;
use crate::store::StoredUser;

fn person_only(actor: &Principal) -> Result<&str, DomainError> {
    match &actor.session {
        Some(sid) => Ok(sid),
        None => Err(DomainError::InsufficientPermissions(
            "this call is for people: use a token from signing in, not an application's".into(),
        )),
    }
}

async fn load(gw: &Gateway, actor: &Principal) -> Result<StoredUser, DomainError> {
    gw.users
        .get_user(&actor.subject)
        .await?
        .ok_or(DomainError::InvalidToken)
}

/// `GET /api/v1/me`: the caller's own record.
pub async fn me(gw: &Gateway, actor: &Principal) -> Result<User, DomainError> {
    person_only(actor)?;
    Ok(load(gw, actor).await?.user)
}

/// One of the caller's sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    /// The session.
    #[serde(flatten)]
    pub session: Session,
    /// Whether the calling token belongs to it.
    pub current: bool,
}

/// `GET /api/v1/me/sessions`.
pub async fn my_sessions(gw: &Gateway, actor: &Principal) -> Result<Vec<SessionView>, DomainError> {
    let sid = person_only(actor)?.to_owned();
    Ok(sessions::list(gw, &actor.subject)
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: s.id == sid,
            session: s,
        })
        .collect())
}

/// `DELETE /api/v1/me/sessions/{id}`: ends one of the caller's sessions
/// (their tokens die at once, here and at every verifier). Another
/// person's session is "not found", never "forbidden": ids are not probed.
pub async fn end_my_session(gw: &Gateway, actor: &Principal, sid: &str) -> Result<(), DomainError> {
    person_only(actor)?;
    match sessions::get(gw, sid).await? {
        Some(s) if s.user_id == actor.subject => {
            sessions::end(gw, sid).await?;
            crate::service::audit::record(
                gw,
                actor,
                "session.end",
                sid,
                json!({"user": actor.subject}),
            )
            .await;
            Ok(())
        }
        _ => Err(DomainError::NotFound(
            "session (no such session of yours)".into(),
        )),
    }
}

/// `POST /api/v1/me/password`: the current password, then the new one.
/// Every other session of the person ends (a password change is how people
/// throw out someone who learned the old one).
pub async fn change_password(
    gw: &Gateway,
    actor: &Principal,
    current: &SecretString,
    new: &SecretString,
) -> Result<(), DomainError> {
    let sid = person_only(actor)?.to_owned();
    let user = load(gw, actor).await?;
    super::signin::check_password(gw, &user.user.email, current, actor.ip)
        .await
        .map_err(|e| match e {
            DomainError::InvalidGrant(_) => {
                DomainError::Validation("currentPassword is incorrect".into())
            }
            other => other,
        })?;
    set_password(gw, &user.user.id, new).await?;
    for s in sessions::list(gw, &actor.subject).await? {
        if s.id != sid {
            sessions::end(gw, &s.id).await?;
        }
    }
    crate::service::audit::record(
        gw,
        actor,
        "user.password",
        &actor.subject,
        json!({"by": "self"}),
    )
    .await;
    Ok(())
}

/// Hashes and stores a new password for a user (rules checked first).
/// Retries once when the record changed under it.
pub async fn set_password(
    gw: &Gateway,
    user_id: &str,
    new: &SecretString,
) -> Result<(), DomainError> {
    let mut tries = 0;
    loop {
        let mut stored = gw
            .users
            .get_user(user_id)
            .await?
            .ok_or_else(|| DomainError::NotFound("user (no such id)".into()))?;
        validate_password(new.expose_secret(), &stored.user.email)?;
        let read_at = stored.user.updated_at;
        stored.password_hash = Some(gw.hasher.hash(new).await?);
        stored.user.has_password = true;
        stored.user.updated_at = chrono::Utc::now();
        match gw.users.update_user(&stored, read_at).await {
            Ok(()) => return Ok(()),
            Err(crate::store::StoreError::Stale { .. }) if tries == 0 => tries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}
