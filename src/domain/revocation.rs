//! Revocations: a single token (`jti`), or a subject (every token of an
//! application or user issued before an instant).

use serde::{Deserialize, Serialize};

/// What is revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum RevocationKind {
    /// One token.
    Jti {
        /// Its `jti`.
        jti: String,
    },
    /// Every token of `sub` issued before `notBeforeMs` (milliseconds since
    /// the epoch, compared with the token's `iat_ms`, or `iat` × 1000).
    Subject {
        /// The subject (`sub`).
        sub: String,
        /// Tokens issued strictly before this instant are revoked.
        #[serde(rename = "notBeforeMs")]
        not_before_ms: i64,
    },
}

/// A stored revocation, as the feed and the channel publish it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "gateway", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// Position in the feed (increasing).
    pub seq: u64,
    /// What is revoked.
    #[serde(flatten)]
    pub kind: RevocationKind,
    /// After this instant (seconds since the epoch) every token it covers has
    /// expired, so the entry may be forgotten.
    pub expires_at: i64,
}

impl Revocation {
    /// Whether this entry revokes a token with these claims.
    pub fn covers(&self, jti: &str, sub: &str, issued_ms: i64) -> bool {
        match &self.kind {
            RevocationKind::Jti { jti: j } => j == jti,
            RevocationKind::Subject {
                sub: s,
                not_before_ms,
            } => s == sub && issued_ms < *not_before_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_and_wire_shape() {
        let subj = Revocation {
            seq: 7,
            kind: RevocationKind::Subject {
                sub: "app_1".into(),
                not_before_ms: 2_000,
            },
            expires_at: 10,
        };
        assert!(subj.covers("any", "app_1", 1_999));
        assert!(!subj.covers("any", "app_1", 2_000));
        assert!(!subj.covers("any", "app_2", 0));
        let v = serde_json::to_value(&subj).unwrap();
        assert_eq!(v["type"], "subject");
        assert_eq!(v["notBeforeMs"], 2000);
        assert_eq!(v["seq"], 7);
        let jti = Revocation {
            seq: 8,
            kind: RevocationKind::Jti { jti: "j".into() },
            expires_at: 10,
        };
        assert!(jti.covers("j", "x", 0) && !jti.covers("k", "x", 0));
        assert_eq!(serde_json::to_value(&jti).unwrap()["type"], "jti");
    }
}
