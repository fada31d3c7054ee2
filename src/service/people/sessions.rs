//! Server-side sessions: a cookie `{sid}.{secret}` names one; the store
//! keeps the record and the SHA-256 of the secret. Idle and absolute limits
//! apply to the cookie; the record outlives it while refresh tokens issued
//! in it live (`offline_access`). Ending a session deletes the record and
//! revokes every access token carrying its `sid`.

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::net::IpAddr;

use crate::crypto::{opaque, random};
use crate::domain::session::{Session, StoredSession};
use crate::domain::{DomainError, User, UserStatus};
use crate::service::Gateway;
use crate::store::StoredUser;

/// The cookie's name over https: `__Host-` pins it to this host and path /.
pub const COOKIE_SECURE: &str = "__Host-tessera_session";
/// The cookie's name when the issuer is plain `http://` (local use).
pub const COOKIE_PLAIN: &str = "tessera_session";

/// How stale `last_seen_at` may get before a request writes it again (at
/// most a tenth of the idle limit).
const TOUCH_EVERY: Duration = Duration::seconds(15);

/// The session cookie's name for this gateway.
pub fn cookie_name(gw: &Gateway) -> &'static str {
    if secure(gw) {
        COOKIE_SECURE
    } else {
        COOKIE_PLAIN
    }
}

/// Whether cookies are marked `Secure` (the issuer is https).
pub fn secure(gw: &Gateway) -> bool {
    gw.issuer.starts_with("https://")
}

/// A session just started, and the cookie value naming it (shown once).
pub struct NewSession {
    /// The record.
    pub session: Session,
    /// `{sid}.{secret}`.
    pub cookie: SecretString,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("session", &self.session)
            .field("cookie", &"<hidden>")
            .finish()
    }
}

/// `n` seconds as a duration (saturating far beyond any configured value).
pub(super) fn secs(n: u64) -> Duration {
    Duration::seconds(i64::try_from(n).unwrap_or(i64::MAX / 1000))
}

/// Whether `sid` has the shape of a session id.
pub fn valid_sid(sid: &str) -> bool {
    sid.len() == 26
        && sid
            .strip_prefix("ses_")
            .is_some_and(|r| r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// How a person signed in.
#[derive(Debug, Clone)]
pub struct SignedIn<'a> {
    /// The client they signed in through.
    pub client_id: &'a str,
    /// `pwd` or `fed`.
    pub amr: &'a str,
    /// The upstream provider, when federated.
    pub idp: Option<String>,
    /// Their address.
    pub ip: IpAddr,
    /// Their `User-Agent`.
    pub user_agent: &'a str,
}

/// Starts a session for `user` (a new id every time: an id planted before
/// sign-in never becomes a signed-in one). `replaces`, the cookie the
/// browser held before, is ended if it named a session.
pub async fn start(
    gw: &Gateway,
    user: &User,
    how: SignedIn<'_>,
    replaces: Option<&str>,
) -> Result<NewSession, DomainError> {
    if let Some(old) = replaces
        && let Some(sid) = old.split_once('.').map(|(s, _)| s)
        && valid_sid(sid)
        && let Some((old_session, _)) = current(gw, old).await?
    {
        end(gw, &old_session.id).await?;
    }
    let internal = |e: random::RandomError| DomainError::Internal(e.to_string());
    let id = format!("ses_{}", random::base62(22).map_err(internal)?);
    let secret = opaque::random_value().map_err(internal)?;
    let now = Utc::now();
    let expires_at = now + secs(gw.policy.people.session_absolute);
    let session = Session {
        id: id.clone(),
        user_id: user.id.clone(),
        client_id: how.client_id.to_owned(),
        auth_time: now,
        amr: vec![how.amr.to_owned()],
        idp: how.idp,
        last_seen_at: now,
        expires_at,
        retain_until: expires_at,
        ip: crate::domain::cidr::canonical(how.ip).to_string(),
        user_agent: how.user_agent.chars().take(200).collect(),
    };
    gw.sessions
        .insert_session(&StoredSession {
            session: session.clone(),
            secret_hash: opaque::digest_hex(secret.expose_secret()),
        })
        .await?;
    // A disable that ended the user's sessions while this one was being
    // made must end it too: it writes the status before ending sessions,
    // so a session inserted after that sweep sees the status here.
    let still_active = gw
        .users
        .get_user(&user.id)
        .await?
        .is_some_and(|u| u.user.status == UserStatus::Active);
    if !still_active {
        end(gw, &id).await?;
        return Err(DomainError::InvalidGrant("This account is disabled".into()));
    }
    record_login(gw, &user.id, now).await;
    Ok(NewSession {
        session,
        cookie: SecretString::from(format!("{id}.{}", secret.expose_secret())),
    })
}

/// Notes the sign-in on the user record. Best effort: a concurrent change
/// to the user wins, and sign-in does not fail over a timestamp.
async fn record_login(gw: &Gateway, user_id: &str, at: DateTime<Utc>) {
    let Ok(Some(mut stored)) = gw.users.get_user(user_id).await else {
        return;
    };
    let read_at = stored.user.updated_at;
    stored.user.last_login_at = Some(at);
    if let Err(e) = gw.users.update_user(&stored, read_at).await {
        tracing::debug!(error = %e, "last sign-in time not recorded");
    }
}

/// The session a cookie names when its secret is right, whatever its
/// limits say (for logging out), with the stored record.
pub async fn current_any(
    gw: &Gateway,
    cookie: &str,
) -> Result<Option<(Session, String)>, DomainError> {
    let Some((sid, secret)) = cookie.split_once('.') else {
        return Ok(None);
    };
    if !valid_sid(sid) || secret.len() > 128 {
        return Ok(None);
    }
    let Some(stored) = gw.sessions.get_session(sid).await? else {
        return Ok(None);
    };
    if !opaque::matches_digest(&SecretString::from(secret.to_owned()), &stored.secret_hash) {
        return Ok(None);
    }
    Ok(Some((stored.session, sid.to_owned())))
}

/// The live session a cookie names, with its user, or `None`: unknown,
/// wrong secret, past its idle or absolute limit, or its user gone or
/// disabled. A live session's `last_seen_at` moves to now.
pub async fn current(
    gw: &Gateway,
    cookie: &str,
) -> Result<Option<(Session, StoredUser)>, DomainError> {
    let Some((s, _)) = current_any(gw, cookie).await? else {
        return Ok(None);
    };
    let now = Utc::now();
    if now >= s.expires_at || now >= s.last_seen_at + secs(gw.policy.people.session_idle) {
        return Ok(None);
    }
    let Some(user) = gw.users.get_user(&s.user_id).await? else {
        return Ok(None);
    };
    if user.user.status != UserStatus::Active {
        return Ok(None);
    }
    // The idle limit is minutes long: a session seen in the last few
    // seconds need not be written again (a console page makes several
    // requests, each would otherwise cost a durable write).
    let every = TOUCH_EVERY.min(secs(gw.policy.people.session_idle) / 10);
    if now - s.last_seen_at >= every {
        gw.sessions
            .touch_session(&s.id, now, s.retain_until)
            .await?;
    }
    Ok(Some((s, user)))
}

/// Keeps a session's record (not its cookie) while refresh tokens issued
/// in it may still be used.
pub async fn retain(gw: &Gateway, sid: &str, until: DateTime<Utc>) -> Result<bool, DomainError> {
    Ok(gw.sessions.touch_session(sid, Utc::now(), until).await?)
}

/// Ends a session: the record goes (so its refresh tokens stop working)
/// and every access token carrying its `sid` is revoked, here and at every
/// verifier. Returns the session if it existed.
pub async fn end(gw: &Gateway, sid: &str) -> Result<Option<Session>, DomainError> {
    let gone = gw.sessions.delete_session(sid).await?;
    // Revoke even when the record is already gone: a repeat is idempotent,
    // and a crash between the two writes must not leave tokens alive.
    crate::service::revocation::revoke_session(gw, sid).await?;
    Ok(gone)
}

/// Ends every session of a user; returns how many there were.
pub async fn end_all(gw: &Gateway, user_id: &str) -> Result<usize, DomainError> {
    let gone = gw.sessions.delete_user_sessions(user_id).await?;
    for s in &gone {
        crate::service::revocation::revoke_session(gw, &s.id).await?;
    }
    Ok(gone.len())
}

/// A user's sessions.
pub async fn list(gw: &Gateway, user_id: &str) -> Result<Vec<Session>, DomainError> {
    Ok(gw.sessions.list_sessions(user_id).await?)
}

/// Reads a session by id (no secret needed: for its owner or an admin).
pub async fn get(gw: &Gateway, sid: &str) -> Result<Option<Session>, DomainError> {
    if !valid_sid(sid) {
        return Ok(None);
    }
    Ok(gw.sessions.get_session(sid).await?.map(|s| s.session))
}
