//! A request budget: `{"requests": 100, "per": "1m"}` (docs/api.md, "At the edge").
//!
//! The window is written as a whole number and one unit (`s`, `m`, `h`,
//! `d`) so that what an operator types is what the API shows back.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::DomainError;

/// The most requests a budget may name (a higher rate is no limit at all).
pub const MAX_REQUESTS: u32 = 1_000_000;
/// The longest window: one day.
pub const MAX_WINDOW_SECS: u32 = 86_400;

/// How many requests, per how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed in one window (1 to 1,000,000).
    pub requests: u32,
    /// The window: a whole number and a unit, `30s`, `1m`, `1h`, `1d` (at
    /// most one day).
    #[cfg_attr(feature = "gateway", schema(value_type = String, example = "1m"))]
    pub per: Window,
}

impl RateLimit {
    /// Checks the bounds; the message names the field.
    pub fn validate(&self) -> Result<(), DomainError> {
        if self.requests == 0 || self.requests > MAX_REQUESTS {
            return Err(DomainError::Validation(format!(
                "rateLimit.requests must be between 1 and {MAX_REQUESTS}"
            )));
        }
        Ok(())
    }

    /// The window in seconds.
    pub fn window_secs(&self) -> u32 {
        self.per.secs
    }
}

/// A window length, kept with the unit it was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    secs: u32,
    unit: char,
}

impl Window {
    /// Parses `30s`, `1m`, `1h`, `1d`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let bad = || {
            DomainError::Validation(
                "rateLimit.per must be a whole number and a unit (s, m, h or d), at most 1d, like \"1m\"".into(),
            )
        };
        let unit = s.chars().last().ok_or_else(bad)?;
        let scale: u32 = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let digits = &s[..s.len() - 1];
        if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: u32 = digits.parse().map_err(|_| bad())?;
        let secs = n.checked_mul(scale).ok_or_else(bad)?;
        if secs == 0 || secs > MAX_WINDOW_SECS {
            return Err(bad());
        }
        Ok(Self { secs, unit })
    }

    /// A window of `secs` seconds, written in the largest unit that divides
    /// it.
    pub fn from_secs(secs: u32) -> Result<Self, DomainError> {
        let unit = if secs % 86_400 == 0 {
            'd'
        } else if secs % 3_600 == 0 {
            'h'
        } else if secs % 60 == 0 {
            'm'
        } else {
            's'
        };
        Self::parse(&format!("{}{unit}", secs / unit_secs(unit)))
    }

    /// The length in seconds.
    pub fn secs(&self) -> u32 {
        self.secs
    }
}

fn unit_secs(unit: char) -> u32 {
    match unit {
        'd' => 86_400,
        'h' => 3_600,
        'm' => 60,
        _ => 1,
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.secs / unit_secs(self.unit), self.unit)
    }
}

impl Serialize for Window {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_and_print_as_written() {
        for (s, secs) in [
            ("30s", 30),
            ("1m", 60),
            ("90m", 5400),
            ("1h", 3600),
            ("1d", 86400),
        ] {
            let w = Window::parse(s).unwrap();
            assert_eq!(w.secs(), secs);
            assert_eq!(w.to_string(), s);
        }
        assert_eq!(Window::from_secs(3600).unwrap().to_string(), "1h");
        assert_eq!(Window::from_secs(45).unwrap().to_string(), "45s");
    }

    #[test]
    fn bad_windows_are_refused() {
        for s in [
            "", "m", "0m", "2d", "1w", "-1m", "1.5m", "1 m", "١m", "9999999s",
        ] {
            assert!(Window::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn budgets_are_bounded() {
        let ok: RateLimit = serde_json::from_str(r#"{"requests": 100, "per": "1m"}"#).unwrap();
        assert!(ok.validate().is_ok());
        assert_eq!(ok.window_secs(), 60);
        let zero: RateLimit = serde_json::from_str(r#"{"requests": 0, "per": "1m"}"#).unwrap();
        assert!(zero.validate().is_err());
        assert!(
            serde_json::from_str::<RateLimit>(r#"{"requests": 1, "per": "1m", "x": 1}"#).is_err()
        );
    }
}
