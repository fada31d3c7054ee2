//! The console as a backend-for-frontend (docs/api.md, "The console"): it signs people in
//! through `/oauth/authorize` as the `tessera-console` client and keeps the
//! access tokens it obtains here, on the server. The browser holds only the
//! session cookie of docs/api.md, "People".
//!
//! Every console request acts as the person through one of those tokens,
//! checked by the same [`authenticate_bearer`] as the API: revocation,
//! the user's current grants, a disabled user. When the held token is
//! near its end (or another gateway served the sign-in), a fresh one is
//! minted for the same live session, exactly as a refresh would. A token
//! only ever narrows the person's grants, so one minted before a grant
//! was added would hide it: each held token remembers the grants it was
//! minted under, and a change to them mints afresh.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

use chrono::Utc;

use super::clients::{self, CONSOLE};
use super::tokens::{self, Issue, Refresh};
use crate::domain::session::Session;
use crate::domain::{AccessClaims, DomainError, User};
use crate::service::Gateway;
use crate::service::auth::{Principal, authenticate_bearer};
use crate::service::authz;

/// The scope the console's tokens are minted with after sign-in: no
/// `openid` (no ID token is needed once signed in), every permission the
/// person holds (no permission words: nothing narrowed).
const RENEW_SCOPE: &str = "profile email";
/// A held token this close to its end is replaced rather than used.
const RENEW_BEFORE_SECS: i64 = 30;
/// At most this many sessions' tokens are held per gateway; beyond it
/// the expired are dropped, then the whole map (tokens are re-minted).
const MAX_HELD: usize = 20_000;

/// A token held for one session.
struct Held {
    token: String,
    exp: i64,
    /// [`grants_digest`] of the person's grants when it was minted.
    grants: u64,
}

/// The console's access tokens, by session id. Never serialized, never
/// logged.
#[derive(Default)]
pub struct ConsoleTokens {
    held: Mutex<HashMap<String, Held>>,
    /// Digests of the authorization codes this gateway began to redeem,
    /// with when they may be forgotten (unix seconds).
    redeemed: Mutex<HashMap<String, i64>>,
}

/// How long a code's redemption is remembered: longer than a code lives.
const REDEEMED_TTL_SECS: i64 = 600;

impl std::fmt::Debug for ConsoleTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConsoleTokens(<hidden>)")
    }
}

impl ConsoleTokens {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `token` (expiring at `exp`, unix seconds, minted under
    /// `grants`) for session `sid`.
    fn hold(&self, sid: &str, token: String, exp: i64, grants: u64) {
        let mut map = self.lock();
        if map.len() >= MAX_HELD && !map.contains_key(sid) {
            let now = Utc::now().timestamp();
            map.retain(|_, h| h.exp > now);
            if map.len() >= MAX_HELD {
                map.clear();
            }
        }
        map.insert(sid.to_owned(), Held { token, exp, grants });
    }

    /// The token held for `sid`, unless it is about to end or the
    /// person's grants (`grants`, their digest now) changed since.
    fn usable(&self, sid: &str, grants: u64) -> Option<String> {
        let now = Utc::now().timestamp();
        self.lock()
            .get(sid)
            .filter(|h| h.exp - RENEW_BEFORE_SECS > now && h.grants == grants)
            .map(|h| h.token.clone())
    }

    /// Whether this is the first time this gateway redeems `code`. The
    /// same answer loaded twice at once (a double click, a restored tab)
    /// must not redeem it twice: a second redemption is a replay, and a
    /// replay ends the session (docs/api.md, "People").
    pub fn first_redemption(&self, code: &str) -> bool {
        let now = Utc::now().timestamp();
        let mut map = self.redeemed.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_HELD {
            map.retain(|_, until| *until > now);
            if map.len() >= MAX_HELD {
                map.clear();
            }
        }
        let key = crate::crypto::opaque::digest_hex(code);
        if map.get(&key).is_some_and(|until| *until > now) {
            return false;
        }
        map.insert(key, now + REDEEMED_TTL_SECS);
        true
    }

    /// Whether a token was ever held (and not forgotten) for `sid` here.
    fn holds(&self, sid: &str) -> bool {
        self.lock().contains_key(sid)
    }

    /// Forgets every token held: a signing key left the ring, and they may
    /// be signed with it.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Forgets the token of a session that ended.
    pub fn forget(&self, sid: &str) {
        self.lock().remove(sid);
    }
}

/// A digest of what `user` holds now (roles expanded), to notice a change.
async fn grants_digest(gw: &Gateway, user: &User) -> Result<u64, DomainError> {
    let held = authz::user_holdings(gw, user).await?;
    let mut h = DefaultHasher::new();
    for p in &held.0 {
        p.as_str().hash(&mut h);
    }
    Ok(h.finish())
}

/// The `exp` of a token this gateway just minted, read without checking
/// (it is checked by [`authenticate_bearer`] at every use).
fn exp_of(gw: &Gateway, token: &str) -> Result<i64, DomainError> {
    let claims: AccessClaims = crate::crypto::jwt::verify(
        &gw.keys.current(),
        token,
        &gw.issuer,
        &gw.policy.audience,
        gw.policy.leeway,
    )
    .map_err(|_| DomainError::InvalidToken)?;
    Ok(claims.exp)
}

/// Completes a console sign-in: redeems the authorization code (PKCE
/// `verifier`) as `tessera-console` and keeps the access token for the
/// session it was issued in. `session` is the session the browser's
/// cookie names now: a code issued in another session is refused, so a
/// code fixed into this browser by someone else never acts for them.
pub async fn complete_sign_in(
    gw: &Gateway,
    session: &Session,
    code: &str,
    verifier: &str,
    ip: IpAddr,
) -> Result<Principal, DomainError> {
    // Read before the code is redeemed: a change in between leaves a
    // digest that no longer matches, so the next request mints afresh.
    let user = gw
        .users
        .get_user(&session.user_id)
        .await?
        .ok_or(DomainError::InvalidToken)?;
    let grants = grants_digest(gw, &user.user).await?;
    let client = clients::find(gw, CONSOLE)
        .await?
        .ok_or_else(|| DomainError::Internal("the console client is missing".into()))?;
    let redirect_uri = client.redirect_uris.first().cloned();
    let issued =
        super::oauth::exchange_code(gw, &client, code, redirect_uri.as_deref(), Some(verifier))
            .await?;
    let principal = authenticate_bearer(gw, &issued.access_token, ip).await?;
    if principal.session.as_deref() != Some(session.id.as_str()) {
        return Err(DomainError::InvalidGrant(
            "this sign-in belongs to another browser session".into(),
        ));
    }
    let exp = exp_of(gw, &issued.access_token)?;
    gw.console_tokens
        .hold(&session.id, issued.access_token, exp, grants);
    Ok(principal)
}

/// The caller a console request acts as: the person of the live
/// `session`, through the token held for it (minted afresh when there is
/// none or it is about to end, or when it no longer passes, e.g. after a
/// demotion revoked it, or when `user`'s grants changed since it was
/// minted, e.g. a permission added; the new one carries the grants as they
/// are now). `user` is the session's person as read for this request.
///
/// A session this gateway never completed the console's sign-in for gets
/// `InvalidToken` when `sign_in_first` (a page load): the browser goes
/// through `/oauth/authorize` as `tessera-console` (at once, since the
/// session exists) and the code is redeemed here. A form post is served
/// by minting instead, so what was typed is not lost (another gateway
/// signed it in).
pub async fn principal(
    gw: &Gateway,
    session: &Session,
    user: &User,
    ip: IpAddr,
    sign_in_first: bool,
) -> Result<Principal, DomainError> {
    let grants = grants_digest(gw, user).await?;
    if let Some(token) = gw.console_tokens.usable(&session.id, grants) {
        match authenticate_bearer(gw, &token, ip).await {
            Ok(p) => return Ok(p),
            Err(DomainError::InvalidToken) => gw.console_tokens.forget(&session.id),
            Err(e) => return Err(e),
        }
    } else if sign_in_first && !gw.console_tokens.holds(&session.id) {
        return Err(DomainError::InvalidToken);
    }
    let client = clients::find(gw, CONSOLE)
        .await?
        .ok_or_else(|| DomainError::Internal("the console client is missing".into()))?;
    let issued = tokens::issue(
        gw,
        Issue {
            user_id: &session.user_id,
            session,
            client: &client,
            scope: RENEW_SCOPE,
            nonce: None,
            refresh: Refresh::Skip,
        },
    )
    .await?;
    let principal = authenticate_bearer(gw, &issued.access_token, ip).await?;
    let exp = exp_of(gw, &issued.access_token)?;
    gw.console_tokens
        .hold(&session.id, issued.access_token, exp, grants);
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_tokens_renew_before_their_end_and_stay_bounded() {
        let t = ConsoleTokens::default();
        let now = Utc::now().timestamp();
        t.hold("ses_a", "tok-a".into(), now + 600, 7);
        t.hold("ses_b", "tok-b".into(), now + 10, 7);
        assert_eq!(t.usable("ses_a", 7).as_deref(), Some("tok-a"));
        assert_eq!(t.usable("ses_a", 8), None, "the grants changed since");
        assert_eq!(t.usable("ses_b", 7), None, "too close to its end");
        t.forget("ses_a");
        assert_eq!(t.usable("ses_a", 7), None);
        for i in 0..MAX_HELD + 5 {
            t.hold(&format!("ses_{i}"), "x".into(), now + 600, 7);
        }
        assert!(t.lock().len() <= MAX_HELD);
        assert!(t.first_redemption("code-1"));
        assert!(!t.first_redemption("code-1"), "the second load");
        assert!(t.first_redemption("code-2"));
        assert_eq!(format!("{t:?}"), "ConsoleTokens(<hidden>)");
    }
}
