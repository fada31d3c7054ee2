//! Domain errors: what went wrong, with no knowledge of HTTP.

use std::net::IpAddr;

/// Every failure a use case can report. The HTTP layer maps each to a status
/// and a body in exactly one place (`http::error`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// No credentials were presented at all.
    #[error("no API key was provided")]
    MissingCredentials,
    /// Unknown id, wrong secret or revoked application: deliberately one case.
    #[error("the API key provided is invalid or has been revoked")]
    InvalidCredentials,
    /// The secret was right but the application's `expiresAt` has passed.
    #[error("the API key has expired")]
    KeyExpired,
    /// A bearer token that is malformed, badly signed, expired or revoked.
    #[error("the access token is invalid, expired or revoked")]
    InvalidToken,
    /// The caller lacks a permission; the message names what is missing.
    #[error("{0}")]
    InsufficientPermissions(String),
    /// The request asked for a scope the application does not hold.
    #[error("{0}")]
    InvalidScope(String),
    /// The requested audience is not one the application may use.
    #[error("{0}")]
    AudienceNotAllowed(String),
    /// The client IP is outside the application's allow-list.
    #[error("requests from {0} are not allowed for this API key")]
    IpNotAllowed(IpAddr),
    /// The request is malformed (missing or contradictory parameters).
    #[error("{0}")]
    InvalidRequest(String),
    /// The grant type is not one this endpoint knows.
    #[error("unsupported grant type: {0}")]
    UnsupportedGrantType(String),
    /// Well-formed input that breaks a rule; the message names the field.
    #[error("{0}")]
    Validation(String),
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The thing exists already or a concurrent change won.
    #[error("{0}")]
    Conflict(String),
    /// A grant a person's client presented is not (or no longer) good: a
    /// wrong email or password, a spent or unknown code, a refresh token
    /// that ended (RFC 6749 `invalid_grant`).
    #[error("{0}")]
    InvalidGrant(String),
    /// The client may not use this grant (RFC 6749 `unauthorized_client`).
    #[error("{0}")]
    UnauthorizedClient(String),
    /// Too many failed attempts; retry after the given number of seconds.
    #[error("too many failed attempts, retry in {retry_after} s")]
    RateLimited {
        /// Seconds until another attempt may succeed.
        retry_after: u64,
    },
    /// A dependency (store, hashing pool) cannot serve right now.
    #[error("the service is temporarily unavailable")]
    Unavailable,
    /// A bug or an unexpected failure; the detail is logged, never returned.
    #[error("internal error")]
    Internal(String),
}

/// A caller's value fit to repeat in an error message: quoted when
/// [`quotable`], otherwise only its length. Error messages name the field
/// and the rule; they never carry arbitrary input back (docs/errors.md).
pub fn shown(s: &str) -> String {
    if quotable(s) {
        format!("{s:?}")
    } else {
        format!("(a value of {} bytes)", s.len())
    }
}

/// A list of names (permissions, roles, ids) for an error message, joined
/// with `, `: each as written when [`quotable`], otherwise only its length.
/// Permission and role grammar has no spaces or commas, so the list stays
/// unambiguous unquoted; a 128-byte permission that is a pasted secret
/// still never comes back.
pub fn listed<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (i, n) in names.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if quotable(n) {
            out.push_str(n);
        } else {
            let _ = write!(out, "(a value of {} bytes)", n.len());
        }
    }
    out
}

/// Whether a caller's value may be repeated in an error message: short (at
/// most 64 bytes), printable ASCII, and not shaped like a credential (see
/// [`credential_shaped`]). A secret pasted into the wrong field is then
/// never sent back, nor logged with the message.
pub fn quotable(s: &str) -> bool {
    s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') && !credential_shaped(s)
}

/// Whether `s` looks like a secret, key or token: one of the gateway's own
/// (`tsr_` prefix, a JWT's `eyJ` header), a run of at least 20 base64url
/// characters mixing upper case, lower case and digits (random secrets and
/// tokens, JWT segments), a word of 28 mixing two of those kinds, or 32
/// letters and digits in a row (words split at `-` and `_`, so UUIDs and
/// hyphenated names stay quoted). Names, permissions, scopes, e-mail
/// addresses and URIs people write rarely are; the rare one that is shows
/// as its length. A password someone chose cannot be told from a name: no
/// password field's value is quoted at all.
pub fn credential_shaped(s: &str) -> bool {
    if s.contains("eyJ") || s.contains("tsr_") {
        return true;
    }
    let kinds = |run: &str| {
        [
            run.bytes().any(|b| b.is_ascii_uppercase()),
            run.bytes().any(|b| b.is_ascii_lowercase()),
            run.bytes().any(|b| b.is_ascii_digit()),
        ]
        .iter()
        .filter(|k| **k)
        .count()
    };
    s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .any(|run| {
            (run.len() >= 20 && kinds(run) == 3)
                || run
                    .split(['-', '_'])
                    .any(|word| word.len() >= 32 || (word.len() >= 28 && kinds(word) >= 2))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_values_are_quoted_and_credentials_never() {
        for ok in [
            "reader",
            "workloads:read",
            "cluster:c1/project:*",
            "ana@example.com",
            "https://app.example.com/callback",
            "post_logout_redirect_uris_and_more",
            "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
            "CustomerPortalProduction",
            "billing-service-v2-prod",
        ] {
            assert_eq!(shown(ok), format!("{ok:?}"), "{ok}");
        }
        for secret in [
            "tsr_sk_live_Q2x9vP0aZ4mLr7TtYb1cWd3eFg5hJk8nMp6sRu0vXy",
            "xK3mP9qL2vN8rT5wY7zB4cD6", // a bare random string
            "eyJhbGciOiJFUzI1NiJ9",     // a JWT header
            "tsr_rt_QxvPaZmLrTtYbcWdeFghJknMpsRuvXyQxvPaZmLrTtYbc",
            "k3mp9ql2vn8rt5wy7zb4cd6xq2v8n3",
            "qxvpazmlrttybcwdefghjknmpsruvxyq",
            "a\nb",
        ] {
            assert!(shown(secret).starts_with("(a value of"), "{secret}");
        }
        assert!(shown(&"a".repeat(65)).starts_with("(a value of"));
    }

    #[test]
    fn lists_keep_names_and_hide_credentials() {
        let long = format!("x:{}", "q".repeat(40));
        assert_eq!(
            listed(["content:read", long.as_str(), "*"]),
            "content:read, (a value of 42 bytes), *"
        );
        assert_eq!(listed([]), "");
    }
}
