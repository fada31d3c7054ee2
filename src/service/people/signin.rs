//! Checking a person's email and password, with throttling that cannot be
//! turned into a lockout.
//!
//! Failures are counted per client address and per (account, address),
//! never per account alone: a flood of wrong passwords for one email from
//! other addresses uses up those addresses' budgets and never stops the
//! owner signing in from theirs. Each attempt reserves its slot before
//! argon2 runs (as the exchange limiter does), and an unknown email pays a
//! dummy verification, so timing does not tell which emails exist.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;

use crate::domain::user::{PASSWORD_MAX_CHARS, normalize_email};
use crate::domain::{DomainError, UserStatus};
use crate::service::Gateway;
use crate::service::limiter::{FailureLimiter, client_key};
use crate::store::StoredUser;

/// The two sign-in failure counters.
pub struct SignInThrottle {
    per_ip: FailureLimiter<IpAddr>,
    per_account: FailureLimiter<(String, IpAddr)>,
}

impl SignInThrottle {
    /// From the people settings.
    pub fn new(s: &crate::config::PeopleSettings) -> Self {
        let window = Duration::from_secs(s.signin_window);
        Self {
            per_ip: FailureLimiter::new(window, s.signin_failures_per_ip),
            per_account: FailureLimiter::new(window, s.signin_failures_per_account),
        }
    }
}

/// Why a sign-in failed, as the sign-in page tells it.
pub const WRONG: &str = "The email or password is incorrect";

/// Checks an email and password. Wrong email, wrong password and a user
/// without a password are one answer (`InvalidGrant`); a disabled user is
/// told so only after a correct password. Every attempt is audited, never
/// with the password.
pub async fn check_password(
    gw: &Gateway,
    email: &str,
    password: &SecretString,
    ip: IpAddr,
) -> Result<StoredUser, DomainError> {
    let normalized = normalize_email(email).ok();
    let account = normalized.clone().unwrap_or_default();
    let key = client_key(ip);
    let ip_slot = gw
        .signin
        .per_ip
        .reserve_key(key)
        .map_err(|retry_after| DomainError::RateLimited { retry_after })?;
    let account_slot = gw
        .signin
        .per_account
        .reserve_key((account.clone(), key))
        .map_err(|retry_after| DomainError::RateLimited { retry_after })?;
    let too_long = secrecy::ExposeSecret::expose_secret(password)
        .chars()
        .count()
        > PASSWORD_MAX_CHARS;
    let user = match &normalized {
        Some(e) => gw.users.find_user_by_email(e).await?,
        None => None,
    };
    let hash: Option<Arc<str>> = user
        .as_ref()
        .and_then(|u| u.password_hash.as_deref())
        .filter(|_| !too_long)
        .map(Arc::from);
    // A password longer than any we accept is never hashed at its length:
    // the dummy check runs on a bounded prefix.
    let bounded = if too_long {
        SecretString::from(
            secrecy::ExposeSecret::expose_secret(password)
                .chars()
                .take(PASSWORD_MAX_CHARS)
                .collect::<String>(),
        )
    } else {
        password.clone()
    };
    let ok = gw.hasher.verify(&bounded, hash).await?;
    let shown = crate::domain::error::shown(email);
    match user {
        Some(u) if ok => {
            drop((ip_slot, account_slot));
            if u.user.status != UserStatus::Active {
                audit(
                    gw,
                    &u.user.id,
                    "signin.refused",
                    ip,
                    json!({"reason": "disabled"}),
                )
                .await;
                return Err(DomainError::InvalidGrant("This account is disabled".into()));
            }
            Ok(u)
        }
        other => {
            ip_slot.fail();
            account_slot.fail();
            // The typed email is kept only when it names an account: what
            // matches nobody may be a password typed into the wrong field,
            // and the audit log never holds a secret.
            let (target, details) = match other {
                Some(u) => (u.user.id, json!({"email": shown})),
                None => ("-".to_owned(), json!({"account": "unknown"})),
            };
            audit(gw, &target, "signin.failed", ip, details).await;
            Err(DomainError::InvalidGrant(WRONG.into()))
        }
    }
}

/// Records a sign-in event in the audit log; the actor is the person (or
/// `-` when the email matched nobody).
pub async fn audit(
    gw: &Gateway,
    user_id: &str,
    action: &str,
    ip: IpAddr,
    details: serde_json::Value,
) {
    let actor = crate::service::auth::Principal {
        subject: user_id.to_owned(),
        permissions: Vec::new(),
        owner: user_id.to_owned(),
        ip,
        session: None,
    };
    crate::service::audit::record(gw, &actor, action, user_id, details).await;
}
