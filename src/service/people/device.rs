//! The device authorization grant (RFC 8628): a device without a browser
//! (the command line on a server) asks for codes, the person enters the
//! user code at `/device` while signed in, names the client and scope they
//! allow, and the device's polls then get tokens as the authorization-code
//! grant would give them (the approving session's `sid` and `amr`).
//!
//! User codes are 8 letters from an alphabet without vowels (no words) and
//! without digits (no 0/O, 1/I look-alikes): 20^8, about 2^34.6. Guessing
//! one needs a signed-in session, and wrong codes are counted per account
//! (not per session: signing in again must not buy new guesses) and per
//! client address, so a search of that space is impractical. Requests for
//! codes are counted per address too: each one is a stored record, and the
//! endpoint takes no secret.

use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::clients::{self, Client};
use super::sessions;
use super::tokens::{self, Issue, PersonTokens, Refresh};
use crate::crypto::{opaque, random};
use crate::domain::DomainError;
use crate::domain::session::Session;
use crate::service::Gateway;
use crate::service::limiter::FailureLimiter;
use crate::store::{DeviceDecision, DevicePoll, DeviceRequest, StoreError};

/// The grant type of the token request (RFC 8628 §3.4).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The user code's letters: no vowels, no digits.
const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
/// Letters in a user code.
const USER_CODE_LEN: usize = 8;
/// Wrong user codes allowed per account per window.
pub const FAILURES_PER_ACCOUNT: u32 = 10;
/// Wrong user codes allowed per client address per window.
pub const FAILURES_PER_IP: u32 = 30;
/// The counting window, seconds.
const FAILURE_WINDOW_SECS: u64 = 900;
/// Device authorization requests allowed per client address per
/// [`START_WINDOW_SECS`]: plenty for people behind one NAT, few enough
/// that one address cannot fill the store.
pub const STARTS_PER_IP: u32 = 30;
/// The window of [`STARTS_PER_IP`], seconds.
const START_WINDOW_SECS: u64 = 60;
/// Longest device code accepted (ours are 43 characters).
const MAX_DEVICE_CODE: usize = 128;

/// Counters of wrong user codes, per account and per client address, and
/// of requests for codes per client address.
pub struct DeviceThrottle {
    per_account: FailureLimiter<String>,
    per_ip: FailureLimiter<IpAddr>,
    starts_per_ip: FailureLimiter<IpAddr>,
}

impl Default for DeviceThrottle {
    fn default() -> Self {
        let w = Duration::from_secs(FAILURE_WINDOW_SECS);
        Self {
            per_account: FailureLimiter::new(w, FAILURES_PER_ACCOUNT),
            per_ip: FailureLimiter::new(w, FAILURES_PER_IP),
            starts_per_ip: FailureLimiter::new(
                Duration::from_secs(START_WINDOW_SECS),
                STARTS_PER_IP,
            ),
        }
    }
}

/// The answer to a device authorization request (RFC 8628 §3.2).
pub struct DeviceAuthorization {
    /// The device's secret, for polling.
    pub device_code: SecretString,
    /// What the person types, `XXXX-XXXX`.
    pub user_code: String,
    /// Where they type it.
    pub verification_uri: String,
    /// The same, with the code filled in.
    pub verification_uri_complete: String,
    /// Seconds until both codes expire.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &"<hidden>")
            .field("user_code", &self.user_code)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// A user code in canonical form (8 capital letters of the alphabet):
/// case-insensitive, hyphens and spaces ignored. `None` when it cannot be
/// one of ours.
pub fn normalise_user_code(input: &str) -> Option<String> {
    if input.len() > 64 {
        return None;
    }
    let code: String = input
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// `ABCDEFGH` as shown: `ABCD-EFGH`.
pub fn display_user_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) if !b.is_empty() => format!("{a}-{b}"),
        _ => code.to_owned(),
    }
}

fn draw_user_code() -> Result<String, DomainError> {
    let mut out = String::with_capacity(USER_CODE_LEN);
    let mut buf = [0u8; 32];
    while out.len() < USER_CODE_LEN {
        random::fill(&mut buf).map_err(|e| DomainError::Internal(e.to_string()))?;
        for b in buf {
            // 240 = 12 * 20: only bytes that map without bias.
            if b < 240 && out.len() < USER_CODE_LEN {
                out.push(char::from(ALPHABET[usize::from(b % 20)]));
            }
        }
    }
    Ok(out)
}

/// `POST /oauth/device_authorization`: codes for `client` (already
/// authenticated when confidential), for `scope` as `/oauth/authorize`
/// takes it; `RateLimited` once `ip` asked too often.
pub async fn start(
    gw: &Gateway,
    client: &Client,
    scope: Option<&str>,
    ip: IpAddr,
) -> Result<DeviceAuthorization, DomainError> {
    if !client.allows_grant(GRANT_TYPE) {
        return Err(DomainError::UnauthorizedClient(
            "this client may not use the device authorization grant".into(),
        ));
    }
    let scope = scope.unwrap_or("").trim().to_owned();
    tokens::split_scope(&scope)?;
    // Every request counts, answered or not: the limit is on records
    // stored by a caller that proves nothing.
    gw.device_throttle
        .starts_per_ip
        .reserve(ip)
        .map_err(|retry_after| DomainError::RateLimited { retry_after })?
        .fail();
    let p = &gw.policy.people;
    let device_code = opaque::random_value().map_err(|e| DomainError::Internal(e.to_string()))?;
    let device_hash = opaque::digest_hex(device_code.expose_secret());
    // A clash of user codes among live requests is rare (2^34.6 codes):
    // draw again a few times before giving up.
    for _ in 0..5 {
        let user_code = draw_user_code()?;
        let now = Utc::now();
        let request = DeviceRequest {
            client_id: client.id.clone(),
            scope: scope.clone(),
            user_code_hash: opaque::digest_hex(&user_code),
            created_at: now,
            expires_at: now + sessions::secs(p.device_code_lifetime),
            interval_secs: p.device_poll_interval,
        };
        match gw.sessions.insert_device(&device_hash, &request).await {
            Ok(()) => {
                let shown = display_user_code(&user_code);
                let uri = format!("{}/device", gw.issuer);
                return Ok(DeviceAuthorization {
                    device_code,
                    verification_uri_complete: format!("{uri}?user_code={shown}"),
                    verification_uri: uri,
                    user_code: shown,
                    expires_in: p.device_code_lifetime,
                    interval: p.device_poll_interval,
                });
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(DomainError::Unavailable)
}

/// A request waiting for the signed-in person, as the confirmation page
/// shows it.
#[derive(Debug, Clone)]
pub struct PendingRequest {
    /// The user code, `XXXX-XXXX`.
    pub user_code: String,
    /// The client asking.
    pub client: Client,
    /// How the page names it.
    pub client_name: String,
    /// What it asks for: each scope word and what it means.
    pub scope: Vec<(String, String)>,
}

/// How a page names a client: its application's name and id, or what the
/// built-in one is.
pub fn client_name(client: &Client) -> String {
    match &client.app {
        Some(snap) => format!("{} ({})", snap.stored.app.name, client.id),
        None if client.id == clients::CLI => "Tessera command line (tessera-cli)".into(),
        None => format!("Tessera ({})", client.id),
    }
}

fn describe_scope(gw: &Gateway, scope: &str) -> Vec<(String, String)> {
    let (oidc, perms) = tokens::split_scope(scope).unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    for w in &oidc {
        let what = match w.as_str() {
            "openid" => "Know who you are (your user id)",
            "profile" => "Your name",
            "email" => "Your email address",
            "offline_access" => "Stay signed in after this page closes (a refresh token)",
            _ => "",
        };
        out.push((w.clone(), what.to_owned()));
    }
    if perms.is_empty() {
        out.push((
            "all permissions".into(),
            "Act with every permission and role you hold".into(),
        ));
    }
    for w in perms {
        let what = gw
            .catalogue
            .entries()
            .find(|d| d.name.as_str() == w)
            .map(|d| d.description.clone())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "A permission you hold, if you hold it".into());
        out.push((w, what));
    }
    out
}

fn wrong_code() -> DomainError {
    DomainError::InvalidGrant(
        "That code is not valid, or it has expired or already been used. Check the code your device shows."
            .into(),
    )
}

/// Takes a slot from both counters, or says how long to wait.
fn reserve(
    gw: &Gateway,
    session: &Session,
    ip: IpAddr,
) -> Result<
    (
        crate::service::limiter::Reservation<String>,
        crate::service::limiter::Reservation<IpAddr>,
    ),
    DomainError,
> {
    let s = gw
        .device_throttle
        .per_account
        .reserve_key(session.user_id.clone())
        .map_err(|retry_after| DomainError::RateLimited { retry_after })?;
    let i = gw
        .device_throttle
        .per_ip
        .reserve(ip)
        .map_err(|retry_after| DomainError::RateLimited { retry_after })?;
    Ok((s, i))
}

/// Finds the pending request a user code names, for the person signed in
/// with `session`. A wrong code counts against the account and the
/// address (`InvalidGrant`); too many give `RateLimited`.
pub async fn lookup(
    gw: &Gateway,
    input: &str,
    session: &Session,
    ip: IpAddr,
) -> Result<PendingRequest, DomainError> {
    Ok(lookup_hashed(gw, input, session, ip).await?.0)
}

/// [`lookup`], also giving the user code's hash (the store's key for it).
async fn lookup_hashed(
    gw: &Gateway,
    input: &str,
    session: &Session,
    ip: IpAddr,
) -> Result<(PendingRequest, String), DomainError> {
    let (s_slot, ip_slot) = reserve(gw, session, ip)?;
    let found = match normalise_user_code(input) {
        Some(code) => {
            let hash = opaque::digest_hex(&code);
            gw.sessions
                .find_device(&hash, Utc::now())
                .await?
                .map(|r| (code, hash, r))
        }
        None => None,
    };
    let client = match &found {
        Some((_, _, r)) => clients::find(gw, &r.client_id).await?,
        None => None,
    };
    let (Some((code, hash, request)), Some(client)) = (found, client) else {
        s_slot.fail();
        ip_slot.fail();
        // Guessing shows in the log (never the code typed): a wrong code
        // is a failed sign-in step, and the counters bound how many.
        super::signin::audit(
            gw,
            &session.user_id,
            "device.code_rejected",
            ip,
            json!({"session": session.id}),
        )
        .await;
        return Err(wrong_code());
    };
    let pending = PendingRequest {
        user_code: display_user_code(&code),
        client_name: client_name(&client),
        client,
        scope: describe_scope(gw, &request.scope),
    };
    Ok((pending, hash))
}

/// The person's answer: approve (tokens for them, in this session) or
/// deny. Counted like a lookup when the code is wrong. Audited.
pub async fn decide(
    gw: &Gateway,
    input: &str,
    session: &Session,
    approve: bool,
    ip: IpAddr,
) -> Result<PendingRequest, DomainError> {
    let (pending, code_hash) = lookup_hashed(gw, input, session, ip).await?;
    let decision = if approve {
        DeviceDecision::Approve {
            user_id: session.user_id.clone(),
            session_id: session.id.clone(),
        }
    } else {
        DeviceDecision::Deny
    };
    if !gw
        .sessions
        .decide_device(&code_hash, &decision, Utc::now())
        .await?
    {
        // Decided or expired between the lookup and now.
        return Err(wrong_code());
    }
    super::signin::audit(
        gw,
        &session.user_id,
        if approve {
            "device.approve"
        } else {
            "device.deny"
        },
        ip,
        json!({"client": pending.client.id, "session": session.id,
               "scope": pending.scope.iter().map(|(w, _)| w.clone()).collect::<Vec<_>>()}),
    )
    .await;
    Ok(pending)
}

/// Why a device's poll gets no tokens (RFC 8628 §3.5).
#[derive(Debug)]
pub enum PollRefusal {
    /// `authorization_pending`.
    Pending,
    /// `slow_down`: poll no more often than this.
    SlowDown(u64),
    /// `expired_token`.
    Expired,
    /// `access_denied`.
    Denied,
    /// Anything else (`invalid_grant`, `unauthorized_client`, …).
    Failed(DomainError),
}

impl From<DomainError> for PollRefusal {
    fn from(e: DomainError) -> Self {
        Self::Failed(e)
    }
}

fn bad_device_code() -> DomainError {
    DomainError::InvalidGrant("The device code is invalid, expired or already used".into())
}

/// The device-code grant: tokens once the person approved, as the
/// authorization-code grant gives them (a refresh token only with
/// `offline_access`).
pub async fn poll(
    gw: &Gateway,
    client: &Client,
    device_code: &str,
) -> Result<PersonTokens, PollRefusal> {
    if !client.allows_grant(GRANT_TYPE) {
        return Err(DomainError::UnauthorizedClient(
            "this client may not use the device authorization grant".into(),
        )
        .into());
    }
    if device_code.is_empty() || device_code.len() > MAX_DEVICE_CODE {
        return Err(bad_device_code().into());
    }
    let found = gw
        .sessions
        .poll_device(&opaque::digest_hex(device_code), &client.id, Utc::now())
        .await
        .map_err(DomainError::from)?;
    let (request, user_id, session_id) = match found {
        DevicePoll::Unknown => return Err(bad_device_code().into()),
        DevicePoll::Pending => return Err(PollRefusal::Pending),
        DevicePoll::SlowDown { interval_secs } => {
            return Err(PollRefusal::SlowDown(interval_secs));
        }
        DevicePoll::Expired => return Err(PollRefusal::Expired),
        DevicePoll::Denied => return Err(PollRefusal::Denied),
        DevicePoll::Approved {
            request,
            user_id,
            session_id,
        } => (request, user_id, session_id),
    };
    let Some(session) = sessions::get(gw, &session_id).await? else {
        return Err(bad_device_code().into());
    };
    if session.user_id != user_id {
        return Err(bad_device_code().into());
    }
    let offline = tokens::split_scope(&request.scope)
        .is_ok_and(|(oidc, _)| oidc.iter().any(|w| w == "offline_access"))
        && client.allows_grant("refresh_token");
    Ok(tokens::issue(
        gw,
        Issue {
            user_id: &user_id,
            session: &session,
            client,
            scope: &request.scope,
            nonce: None,
            refresh: if offline {
                Refresh::Start
            } else {
                Refresh::Skip
            },
        },
    )
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_forgiving_and_strict() {
        assert_eq!(
            normalise_user_code("bcdf-ghjk").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(
            normalise_user_code(" BCDF GHJK ").as_deref(),
            Some("BCDFGHJK")
        );
        assert_eq!(normalise_user_code("BCDFGHJK").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalise_user_code("BCDF-GHJ"), None);
        assert_eq!(
            normalise_user_code("ABCD-EFGH"),
            None,
            "vowels never appear"
        );
        assert_eq!(normalise_user_code("BCD0-GHJK"), None);
        assert_eq!(normalise_user_code(&"B".repeat(100)), None);
        assert_eq!(display_user_code("BCDFGHJK"), "BCDF-GHJK");
    }

    #[test]
    fn drawn_codes_use_the_whole_alphabet_and_nothing_else() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let c = draw_user_code().unwrap();
            assert_eq!(normalise_user_code(&c).as_deref(), Some(c.as_str()));
            seen.extend(c.bytes());
        }
        assert_eq!(seen.len(), ALPHABET.len());
    }
}
