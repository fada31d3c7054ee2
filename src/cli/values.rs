//! Client-side checks of option values, so that a mistyped value is named
//! by its flag with the values it could take, before anything is sent:
//! the gateway would otherwise answer about a JSON body the user never
//! wrote.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::domain::IpNet;
use crate::domain::access::validate_path;
use crate::domain::application::{CLIENT_GRANT_TYPES, validate_audience};
use crate::domain::permission::Permission;
use crate::domain::ratelimit::Window;
use crate::domain::role::validate_role_name;

/// `flag value: expected`, quoting the value only when it is short and
/// plain (a long or odd value is not worth repeating, and may be pasted
/// by mistake from somewhere it should not be shown).
pub fn bad(flag: &str, value: &str, expected: &str) -> String {
    if !value.is_empty()
        && value.len() <= 40
        && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        format!("{flag} {value}: {expected}")
    } else {
        format!("{flag}: {expected}")
    }
}

/// One of a fixed set of words.
pub fn one_of(flag: &str, value: &str, allowed: &[&str]) -> Result<String, String> {
    if allowed.contains(&value) {
        Ok(value.to_owned())
    } else {
        Err(bad(
            flag,
            value,
            &format!("expected one of {}", allowed.join(", ")),
        ))
    }
}

/// A duration written as a whole number and a unit: `90s`, `15m`, `12h`,
/// `30d`, `2w`.
pub fn duration(value: &str) -> Option<Duration> {
    let v = value.trim();
    let unit = v.chars().last()?;
    let n: i64 = v[..v.len() - unit.len_utf8()].parse().ok()?;
    if !(0..=1_000_000).contains(&n) {
        return None;
    }
    match unit {
        's' => Some(Duration::seconds(n)),
        'm' => Some(Duration::minutes(n)),
        'h' => Some(Duration::hours(n)),
        'd' => Some(Duration::days(n)),
        'w' => Some(Duration::weeks(n)),
        _ => None,
    }
}

/// An instant as the API writes it.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `--expires-at`: an RFC 3339 instant, or a duration from now; in the
/// future either way.
pub fn expires_at(flag: &str, value: &str) -> Result<String, String> {
    let expected = "expected an RFC 3339 instant like 2027-01-31T00:00:00Z or a duration like 30d (s, m, h, d or w)";
    let at = match DateTime::parse_from_rfc3339(value.trim()) {
        Ok(t) => t.with_timezone(&Utc),
        Err(_) => Utc::now() + duration(value).ok_or_else(|| bad(flag, value, expected))?,
    };
    if at <= Utc::now() {
        return Err(bad(flag, value, "must be in the future"));
    }
    Ok(rfc3339(at))
}

/// `--since`/`--until`: an RFC 3339 instant, or a duration ago.
pub fn instant_or_ago(flag: &str, value: &str) -> Result<String, String> {
    match DateTime::parse_from_rfc3339(value.trim()) {
        Ok(t) => Ok(rfc3339(t.with_timezone(&Utc))),
        Err(_) => duration(value)
            .map(|d| rfc3339(Utc::now() - d))
            .ok_or_else(|| {
                bad(
                    flag,
                    value,
                    "expected an RFC 3339 instant like 2027-01-31T00:00:00Z or a duration ago like 1h or 7d",
                )
            }),
    }
}

/// `--token-ttl`: whole seconds (or a duration) from 10 s to one day.
pub fn token_ttl(flag: &str, value: &str) -> Result<u64, String> {
    let secs = match value.trim().parse::<i64>() {
        Ok(n) => Some(n),
        Err(_) => duration(value).map(|d| d.num_seconds()),
    };
    match secs {
        Some(n) if (10..=86_400).contains(&n) => Ok(n.unsigned_abs()),
        _ => Err(bad(
            flag,
            value,
            "expected seconds from 10 to 86400, like 900 or 15m (at most the gateway's token_ttl)",
        )),
    }
}

/// `--rate-limit`: `requests/window`, as the API's `rateLimit` object.
pub fn rate_limit(flag: &str, value: &str) -> Result<Value, String> {
    let expected = "expected requests/window like 100/1m: 1 to 1000000 requests per a whole number of s, m, h or d, at most 1d";
    let err = || bad(flag, value, expected);
    let (n, per) = value.trim().split_once('/').ok_or_else(err)?;
    let requests: u32 = n.trim().parse().map_err(|_| err())?;
    if !(1..=1_000_000).contains(&requests) {
        return Err(err());
    }
    let per = per.trim();
    let window = Window::parse(per).map_err(|_| err())?;
    let limit = crate::domain::RateLimit {
        requests,
        per: window,
    };
    limit.validate().map_err(|_| err())?;
    Ok(json!({"requests": requests, "per": per}))
}

/// A permission: `resource:action`, `resource:*` or `*`.
pub fn permission(flag: &str, value: &str) -> Result<String, String> {
    Permission::parse(value).map(|_| value.to_owned()).map_err(|_| {
        bad(
            flag,
            value,
            "expected resource:action, resource:* or * (letters, digits, _ - .), like content:read",
        )
    })
}

/// A role name.
pub fn role(flag: &str, value: &str) -> Result<String, String> {
    validate_role_name(value)
        .map(|_| value.to_owned())
        .map_err(|_| {
            bad(
                flag,
                value,
                "expected a role name: 1 to 64 of a-z, 0-9, _ - .",
            )
        })
}

/// An audience.
pub fn audience(flag: &str, value: &str) -> Result<String, String> {
    validate_audience(value)
        .map(|_| value.to_owned())
        .map_err(|_| {
            bad(
                flag,
                value,
                "expected 1 to 256 printable ASCII characters without spaces, like billing-api",
            )
        })
}

/// An IP address or CIDR.
pub fn ip(flag: &str, value: &str) -> Result<String, String> {
    IpNet::parse(value).map(|_| value.to_owned()).map_err(|_| {
        bad(
            flag,
            value,
            "expected an IP address or CIDR like 203.0.113.7, 10.0.0.0/8 or 2001:db8::/32",
        )
    })
}

/// A redirect URI: absolute, `https` (or `http` on loopback).
pub fn redirect_uri(flag: &str, value: &str) -> Result<String, String> {
    let expected = "expected an absolute https URL (http only on 127.0.0.1, [::1] or localhost), like https://app.example.com/callback";
    let url = reqwest::Url::parse(value).map_err(|_| bad(flag, value, expected))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    match url.scheme() {
        "https" => Ok(value.to_owned()),
        "http" if loopback => Ok(value.to_owned()),
        _ => Err(bad(flag, value, expected)),
    }
}

/// A grant type an application may register.
pub fn grant_type(flag: &str, value: &str) -> Result<String, String> {
    one_of(flag, value, CLIENT_GRANT_TYPES)
}

/// `--access-rule SCOPE=ITEM[,ITEM…]`: an item with `:` (or `*`) is a
/// permission, any other a role. Gives the API's access-rule object.
pub fn access_rule(flag: &str, value: &str) -> Result<Value, String> {
    let expected = "expected SCOPE=GRANT[,GRANT…] like cluster:c1/project:*=content:read,reader (a scope of type:name, type:* or * segments joined by /; grants are permissions, with a colon, or role names)";
    let (scope, grants) = value
        .split_once('=')
        .ok_or_else(|| bad(flag, value, expected))?;
    validate_path(scope, false).map_err(|_| bad(flag, value, expected))?;
    let mut permissions = Vec::new();
    let mut roles = Vec::new();
    for g in grants.split(',').map(str::trim) {
        if g.is_empty() {
            return Err(bad(flag, value, expected));
        }
        if g == "*" || g.contains(':') {
            permissions.push(permission(flag, g)?);
        } else {
            roles.push(role(flag, g)?);
        }
    }
    Ok(json!({"scope": scope, "permissions": permissions, "roles": roles}))
}

/// Free text: a name (required, at most 100 characters) or a description
/// (at most 1000); no control characters or invisible formatting.
pub fn text(flag: &str, value: &str, max: usize, required: bool) -> Result<String, String> {
    crate::domain::application::validate_text(flag, value, max, required)
        .map(|_| value.to_owned())
        .map_err(|e| match e {
            crate::domain::DomainError::Validation(m) => m,
            other => format!("{flag}: {other}"),
        })
}

/// Checks each value of a repeated option with `check`.
pub fn each<T>(
    flag: &str,
    values: &[String],
    check: impl Fn(&str, &str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    values.iter().map(|v| check(flag, v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_flag_and_the_allowed_values() {
        assert_eq!(
            one_of("--env", "staging", &["live", "test"]).unwrap_err(),
            "--env staging: expected one of live, test"
        );
        let e = expires_at("--expires-at", "tomorrow").unwrap_err();
        assert!(
            e.starts_with("--expires-at tomorrow: expected an RFC 3339"),
            "{e}"
        );
        // A long value is not repeated.
        let long = "x".repeat(200);
        let e = audience("--audience", &format!("{long} y")).unwrap_err();
        assert!(e.starts_with("--audience: expected"), "{e}");
    }

    #[test]
    fn durations_and_instants() {
        assert!(expires_at("--expires-at", "30d").is_ok());
        assert!(expires_at("--expires-at", "2099-01-01T00:00:00Z").is_ok());
        assert!(expires_at("--expires-at", "2001-01-01T00:00:00Z").is_err());
        assert!(expires_at("--expires-at", "-3d").is_err());
        assert_eq!(token_ttl("--token-ttl", "15m").unwrap(), 900);
        assert_eq!(token_ttl("--token-ttl", "60").unwrap(), 60);
        for bad in ["5", "2d", "x", "", "-20"] {
            assert!(token_ttl("--token-ttl", bad).is_err(), "{bad}");
        }
        assert!(instant_or_ago("--since", "1h").is_ok());
        assert!(instant_or_ago("--since", "yesterday").is_err());
    }

    #[test]
    fn rules_and_limits() {
        assert_eq!(
            access_rule("--access-rule", "cluster:c1/project:*=content:read,reader").unwrap(),
            json!({"scope": "cluster:c1/project:*", "permissions": ["content:read"], "roles": ["reader"]})
        );
        for bad in [
            "cluster:c1",
            "=content:read",
            "cluster:c1=",
            "a b=x:y",
            "c:1=Bad Role",
        ] {
            assert!(access_rule("--access-rule", bad).is_err(), "{bad}");
        }
        assert_eq!(
            rate_limit("--rate-limit", "100/1m").unwrap(),
            json!({"requests": 100, "per": "1m"})
        );
        for bad in ["100", "x/1m", "100/", "-1/1m", "", "0/1m", "1/2d", "1/1y"] {
            assert!(rate_limit("--rate-limit", bad).is_err(), "{bad:?}");
        }
        assert!(redirect_uri("--redirect-uri", "http://127.0.0.1:9/cb").is_ok());
        assert!(redirect_uri("--redirect-uri", "http://example.com/cb").is_err());
        assert!(grant_type("--grant-type", "password").is_err());
    }
}
