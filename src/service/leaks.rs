//! Leaked keys and tokens reported by secret scanners (docs/api.md, "At the edge").
//!
//! Modelled on GitHub's secret-scanning partner program: a scanner finds
//! strings that look like our credentials in public places and asks which
//! are real. Each genuine one is killed at once:
//! - an application's current secret revokes the application (marked
//!   `leakedAt`; only a rotation brings it back, with a new secret);
//! - its rotated-out secret, still within its grace period, ends the grace;
//! - an access token of this gateway is revoked by its `jti`.
//!
//! The answer labels each entry and says nothing else. Holding a genuine
//! credential is the authority to kill it: the reporter needs only
//! `leaks:report` and gains no reach. Unknown and wrong keys cost the same
//! as at the exchange: no argon2 unless the key carries the stored hint (24
//! bits of the secret itself), so a forged key never reaches the hasher.

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;

use super::Gateway;
use super::apps::{self, LeakEffect};
use super::audit;
use super::auth::Principal;
use super::authz;
use crate::crypto::hashing::HashError;
use crate::crypto::{SecretCheck, secret};
use crate::domain::application::validate_text;
use crate::domain::permission::builtin::LEAKS_REPORT;
use crate::domain::{DomainError, RevocationKind};

/// Entries one report may hold.
pub const MAX_ENTRIES: usize = 100;
/// The longest `token`, in characters (8 KiB of ASCII, which every real
/// key and token is).
pub const MAX_TOKEN_CHARS: usize = 8 * 1024;
/// The longest `url`, in characters.
pub const MAX_URL_CHARS: usize = 2048;
/// The longest `source`, in characters.
pub const MAX_SOURCE_CHARS: usize = 100;

/// One string a scanner found.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeakEntry {
    /// What was found: an application secret, an access token, or anything
    /// else (labelled `false_positive`). Never echoed, logged or audited.
    #[schema(max_length = 8192)]
    pub token: String,
    /// Where it was found (at most 2048 printable characters).
    #[schema(max_length = 2048, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub url: String,
    /// What kind of place it was found in, e.g. `content`, `commit`
    /// (at most 100 printable characters).
    #[schema(max_length = 100, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub source: String,
}

impl std::fmt::Debug for LeakEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeakEntry")
            .field("token", &"<hidden>")
            .field("url", &self.url)
            .field("source", &self.source)
            .finish()
    }
}

/// A report: 0 to [`MAX_ENTRIES`] entries, as a JSON array.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct LeakReport(pub Vec<LeakEntry>);

// Written by hand: the derive cannot put `maxItems` on a newtype, and the
// document must say the 100-entry bound the service enforces.
impl utoipa::PartialSchema for LeakReport {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, Ref};
        ArrayBuilder::new()
            .items(Ref::from_schema_name(
                <LeakEntry as utoipa::ToSchema>::name(),
            ))
            .max_items(Some(MAX_ENTRIES))
            .description(Some("What a secret scanner found, at most 100 entries"))
            .into()
    }
}

impl utoipa::ToSchema for LeakReport {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((
            <LeakEntry as utoipa::ToSchema>::name().into(),
            LeakEntry::schema(),
        ));
        <LeakEntry as utoipa::ToSchema>::schemas(schemas);
    }
}

/// Whether an entry was one of this gateway's live credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeakLabel {
    /// Genuine: it is now revoked (or was already).
    TruePositive,
    /// Not a credential of this gateway, or no longer one.
    FalsePositive,
}

/// The answer for one entry, in the order of the report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeakVerdict {
    /// `true_positive` or `false_positive`; nothing else is revealed.
    pub label: LeakLabel,
}

/// Checks the bounds of a report before anything is looked up: every
/// entry, so one bad entry means a 422 and no change at all.
fn validate(entries: &[LeakEntry]) -> Result<(), DomainError> {
    if entries.len() > MAX_ENTRIES {
        return Err(DomainError::Validation(format!(
            "a report holds at most {MAX_ENTRIES} entries"
        )));
    }
    for (i, e) in entries.iter().enumerate() {
        if e.token.chars().count() > MAX_TOKEN_CHARS {
            return Err(DomainError::Validation(format!(
                "entry {i}: token must be at most {MAX_TOKEN_CHARS} characters"
            )));
        }
        for (field, value, max) in [
            ("url", &e.url, MAX_URL_CHARS),
            ("source", &e.source, MAX_SOURCE_CHARS),
        ] {
            if value.chars().count() > max {
                return Err(DomainError::Validation(format!(
                    "entry {i}: {field} must be at most {max} characters"
                )));
            }
            if value.chars().any(char::is_control) {
                return Err(DomainError::Validation(format!(
                    "entry {i}: {field} must not contain control characters"
                )));
            }
        }
    }
    Ok(())
}

/// `text` for the audit log: printable (as [`validate`] made it), with the
/// token cut out should the scanner have put it there (a URL with the key
/// in its query, say): the audit log never holds a secret.
fn scrubbed(text: &str, token: &str) -> String {
    let text = if token.len() >= 8 && text.contains(token) {
        text.replace(token, "<redacted>")
    } else {
        text.to_owned()
    };
    // Formatting characters a reader could be misled by are shown escaped.
    if validate_text("text", &text, usize::MAX, false).is_ok() {
        text
    } else {
        text.escape_unicode().to_string()
    }
}

/// What one genuine entry was, for the audit log.
enum Found {
    /// An application's secret; the effect of the report on it.
    Key { app_id: String, effect: LeakEffect },
    /// The operator-configured admin's secret, which the API cannot revoke.
    OperatorAdmin { app_id: String },
    /// An access token, now revoked by its `jti`.
    Token {
        sub: String,
        client_id: String,
        jti: String,
    },
}

/// Reports leaked credentials: each genuine one is killed at once and the
/// answer labels every entry, in order.
///
/// # Errors
/// `InsufficientPermissions` without `leaks:report`; `Validation` for more
/// than [`MAX_ENTRIES`] entries or an entry out of bounds (nothing
/// changed); `Unavailable` when the hashing pool is saturated or a write
/// keeps racing, `RateLimited` when the access tokens reported take the
/// reporter past its revocation allowance (entries before it may have been
/// revoked: reporting them again is harmless).
pub async fn report(
    gw: &Gateway,
    actor: &Principal,
    LeakReport(entries): LeakReport,
) -> Result<Vec<LeakVerdict>, DomainError> {
    authz::require(gw, actor, LEAKS_REPORT, "leak.report", "-").await?;
    validate(&entries)?;
    let mut verdicts = Vec::with_capacity(entries.len());
    let mut sources: Vec<String> = Vec::new();
    let mut genuine = 0usize;
    // Labels already given in this report, by HMAC of the string: a key
    // repeated 100 times is verified once (a public leaked key stays
    // genuine, and 100 argon2 runs per request on the pool the exchange
    // shares would let any reporter starve it).
    let mut seen: Vec<([u8; 32], LeakLabel)> = Vec::new();
    // (application id, hint) pairs verified in this report, and how: see
    // `examine_key`.
    let mut hashed: Vec<Tried> = Vec::new();
    for entry in entries {
        let token = SecretString::from(entry.token);
        let source = scrubbed(&entry.source, token.expose_secret());
        if !sources.contains(&source) {
            sources.push(source.clone());
        }
        let digest = gw.pepper.digest(&token);
        if let Some((_, label)) = seen.iter().find(|(d, _)| *d == digest) {
            verdicts.push(LeakVerdict { label: *label });
            continue;
        }
        let found = examine(gw, actor, &token, &mut hashed).await?;
        let label = match found {
            None => LeakLabel::FalsePositive,
            Some(found) => {
                genuine += 1;
                let url = scrubbed(&entry.url, token.expose_secret());
                record_found(gw, actor, found, &source, &url).await;
                LeakLabel::TruePositive
            }
        };
        seen.push((digest, label));
        verdicts.push(LeakVerdict { label });
    }
    tracing::info!(
        actor = %actor.subject,
        entries = verdicts.len(),
        genuine,
        "leak report"
    );
    audit::record(
        gw,
        actor,
        "leak.report",
        "-",
        json!({"sources": sources, "entries": verdicts.len(), "truePositives": genuine}),
    )
    .await;
    Ok(verdicts)
}

/// One audit entry per genuine credential, on what it belonged to.
async fn record_found(gw: &Gateway, actor: &Principal, found: Found, source: &str, url: &str) {
    match found {
        Found::Key { app_id, effect } => {
            audit::record(
                gw,
                actor,
                "app.leaked",
                &app_id,
                json!({"source": source, "url": url, "effect": effect.as_str()}),
            )
            .await;
        }
        Found::OperatorAdmin { app_id } => {
            tracing::error!(
                app_id = %app_id,
                "the operator-configured admin's secret was reported leaked: change TESSERA_ADMIN_APP_SECRET now"
            );
            audit::record(
                gw,
                actor,
                "app.leaked",
                &app_id,
                json!({"source": source, "url": url, "effect": "operatorAdminNotRevoked"}),
            )
            .await;
        }
        Found::Token {
            sub,
            client_id,
            jti,
        } => {
            audit::record(
                gw,
                actor,
                "token.leaked",
                &sub,
                json!({"source": source, "url": url, "jti": jti, "clientId": client_id}),
            )
            .await;
        }
    }
}

/// Whether `token` is a genuine credential of this gateway; a genuine one
/// is killed before this returns.
async fn examine(
    gw: &Gateway,
    actor: &Principal,
    token: &SecretString,
    hashed: &mut Vec<Tried>,
) -> Result<Option<Found>, DomainError> {
    match secret::check(&gw.policy.key_prefix, token) {
        SecretCheck::Generated(parsed) => examine_key(gw, token, parsed, hashed).await,
        // A mistyped key: refused without a lookup, as at the exchange.
        SecretCheck::Corrupt => Ok(None),
        SecretCheck::Opaque => {
            if let Some(id) = operator_admin_secret(gw, token) {
                return Ok(Some(Found::OperatorAdmin { app_id: id }));
            }
            examine_access_token(gw, actor, token.expose_secret()).await
        }
    }
}

/// The operator admin's id when `token` is its configured secret (an HMAC
/// comparison, as at the exchange: no argon2, no lookup).
fn operator_admin_secret(gw: &Gateway, token: &SecretString) -> Option<String> {
    let (admin_id, admin_digest) = gw.operator_admin.as_ref()?;
    let digest = gw.pepper.digest(token);
    bool::from(subtle::ConstantTimeEq::ct_eq(
        &digest[..],
        &admin_digest[..],
    ))
    .then(|| admin_id.clone())
}

/// Hints are part of the stored secrets: compared in constant time.
fn same_hint(stored: Option<&str>, presented: &str) -> bool {
    stored.is_some_and(|s| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            s.as_bytes(),
            presented.as_bytes(),
        ))
    })
}

/// An (application id, hint) pair verified in this report, and whether a
/// string carrying it was genuine.
pub(crate) struct Tried {
    id: String,
    hint: String,
    found: bool,
}

/// `hashed`: the (id, hint) pairs this report has verified. Once a string
/// carrying a pair was genuine, later strings carrying it are not verified
/// (the format is public, so one leaked key yields any number of
/// checksum-valid variants with its hint; only a hint collision, 1 in
/// 2^24, could make a second one genuine, and the first already killed the
/// key). Strings before the genuine one are all verified: skipping after a
/// miss would let forged variants placed first keep a real leaked key
/// alive. The cost stays bounded by the report's 100 entries and the
/// hashing pool's own queue.
async fn examine_key(
    gw: &Gateway,
    token: &SecretString,
    parsed: secret::ParsedSecret,
    hashed: &mut Vec<Tried>,
) -> Result<Option<Found>, DomainError> {
    let id = parsed.app_id;
    // Read afresh, not from the cache: this decides a revocation.
    let Some(stored) = gw.apps.get(&id).await? else {
        return Ok(None);
    };
    // The operator's admin: its secret is configuration, checked by HMAC as
    // at the exchange, and the API cannot revoke it.
    if gw.operator_admin.as_ref().is_some_and(|(a, _)| *a == id) {
        return Ok(operator_admin_secret(gw, token).map(|app_id| Found::OperatorAdmin { app_id }));
    }
    let now = Utc::now();
    // The hash the key can match: the current secret's, or the rotated-out
    // one's within its grace period; a key with neither hint is wrong and
    // costs no argon2, like an unknown id.
    let hash: Arc<str> = if same_hint(stored.secret_hint.as_deref(), &parsed.hint) {
        Arc::from(stored.secret_hash.as_str())
    } else {
        match &stored.previous_secret {
            Some(prev) if prev.until > now && same_hint(prev.hint.as_deref(), &parsed.hint) => {
                Arc::from(prev.hash.as_str())
            }
            _ => return Ok(None),
        }
    };
    let slot = match hashed
        .iter()
        .position(|t| t.id == id && t.hint == parsed.hint)
    {
        Some(i) => i,
        None => {
            hashed.push(Tried {
                id: id.clone(),
                hint: parsed.hint.clone(),
                found: false,
            });
            hashed.len() - 1
        }
    };
    if hashed[slot].found {
        return Ok(None);
    }
    match gw.hasher.verify(token, Some(hash.clone())).await {
        Ok(true) => hashed[slot].found = true,
        Ok(false) => return Ok(None),
        Err(HashError::Busy) => return Err(DomainError::Unavailable),
        Err(HashError::Failed(e)) => return Err(DomainError::Internal(e)),
    }
    let effect = apps::kill_leaked_secret(gw, &id, &hash).await?;
    Ok(Some(Found::Key { app_id: id, effect }))
}

/// An access token of this gateway that verifies and has not expired is
/// genuine: its `jti` is revoked (already revoked ones are labelled genuine
/// too, and nothing is added).
///
/// A new entry takes one unit of the reporter's allowance, the one
/// `/oauth/revoke` takes from: otherwise any reporter could mint tokens of
/// its own and report them, 100 per request, growing the revocation feed
/// (and every verifier's work) at will.
async fn examine_access_token(
    gw: &Gateway,
    actor: &Principal,
    token: &str,
) -> Result<Option<Found>, DomainError> {
    let Some(claims) = super::revocation::read_own_token(gw, token) else {
        return Ok(None);
    };
    let found = Found::Token {
        sub: claims.sub.clone(),
        client_id: claims.client_id.clone(),
        jti: claims.jti.clone(),
    };
    if super::revocation::is_revoked(gw, &claims).await? {
        return Ok(Some(found));
    }
    let allowance = format!("{}\n{}", gw.issuer, actor.subject);
    gw.revocation_limiter
        .try_take(&allowance)
        .map_err(|retry_after| DomainError::RateLimited { retry_after })?;
    // Verifiers accept a token until `exp` plus their leeway: the entry
    // must last as long, and no longer than any token of ours can live.
    let leeway = i64::try_from(gw.policy.leeway).unwrap_or(i64::MAX / 4);
    let longest = i64::try_from(gw.policy.token_ttl)
        .unwrap_or(i64::MAX / 4)
        .saturating_add(leeway)
        .saturating_add(super::revocation::MAX_STATE_AGE_SECS);
    let expires_at = claims
        .exp
        .saturating_add(leeway)
        .min(Utc::now().timestamp().saturating_add(longest));
    let stored = match gw
        .revocations
        .revoke(
            RevocationKind::Jti {
                jti: claims.jti.clone(),
            },
            expires_at,
        )
        .await
    {
        Ok(s) => s,
        Err(e) => {
            gw.revocation_limiter.give_back(&allowance);
            return Err(e.into());
        }
    };
    gw.revocation_mirror.apply(&stored.entry);
    if stored.appended {
        gw.metrics.revocation_published("jti");
        tracing::warn!(jti = %claims.jti, sub = %claims.sub, seq = stored.entry.seq, "leaked token revoked");
    } else {
        gw.revocation_limiter.give_back(&allowance);
    }
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(token: &str, url: &str, source: &str) -> LeakEntry {
        LeakEntry {
            token: token.into(),
            url: url.into(),
            source: source.into(),
        }
    }

    #[test]
    fn bounds_are_checked_on_every_entry() {
        assert!(validate(&[]).is_ok());
        let many: Vec<LeakEntry> = (0..=MAX_ENTRIES).map(|_| entry("x", "u", "s")).collect();
        assert!(validate(&many).is_err());
        assert!(validate(&many[..MAX_ENTRIES]).is_ok());
        let long = "é".repeat(MAX_TOKEN_CHARS);
        assert!(
            validate(&[entry(&long, "", "")]).is_ok(),
            "characters, not bytes"
        );
        assert!(validate(&[entry(&format!("{long}x"), "", "")]).is_err());
        assert!(validate(&[entry("t", &"u".repeat(MAX_URL_CHARS + 1), "")]).is_err());
        assert!(validate(&[entry("t", "", &"s".repeat(MAX_SOURCE_CHARS + 1))]).is_err());
        assert!(validate(&[entry("t", "a\nb", "")]).is_err());
        assert!(validate(&[entry("t", "", "a\u{85}b")]).is_err());
    }

    #[test]
    fn audited_text_never_holds_the_token() {
        let t = "tsr_sk_live_abcdefgh";
        assert_eq!(
            scrubbed(&format!("https://x.test/?k={t}"), t),
            "https://x.test/?k=<redacted>"
        );
        assert_eq!(scrubbed("content", t), "content");
        assert!(!scrubbed("a\u{202e}b", t).contains('\u{202e}'));
    }

    #[test]
    fn an_entry_debugs_without_its_token() {
        let e = entry("tsr_sk_live_secret", "u", "s");
        assert!(!format!("{e:?}").contains("secret"));
    }
}
