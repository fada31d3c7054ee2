//! Revocations: a single token (`jti`), a subject (every token of an
//! application or user issued before an instant), a person's session
//! (every token carrying its `sid`), or a signing key (every token whose
//! header names its `kid`).

use serde::{Deserialize, Serialize};

use super::AccessClaims;

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
    /// Every token whose `sid` claim is `sid`, whenever it was issued: a
    /// session that ended (logout, deleted, user disabled, refresh reuse)
    /// mints nothing more, so no instant is needed.
    Session {
        /// The session id (`ses_…`).
        sid: String,
    },
    /// Every token signed by a withdrawn signing key (docs/api.md, "Signing keys over time"), whenever
    /// it was issued. The key is named in the token's header, not its
    /// claims, so [`Revocation::covers`] never matches it: verifiers check
    /// the header's `kid` with [`Revocation::revokes_key`].
    Key {
        /// The key's `kid`.
        kid: String,
    },
}

/// The claims of a token that revocation looks at, borrowed: what the
/// stores, [`Revocation::covers`] and the verifier's mirror check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRef<'a> {
    /// Its `jti`.
    pub jti: &'a str,
    /// Its `sub`.
    pub sub: &'a str,
    /// Its `sid`, when it belongs to a person's session.
    pub sid: Option<&'a str>,
    /// Its `client_id` when that is not its `sub` (a person's token issued
    /// through an application): a subject entry for that application covers
    /// it too, so revoking or narrowing a client ends what it obtained.
    pub client: Option<&'a str>,
    /// When it was issued, in milliseconds (`iat_ms`, or `iat` × 1000).
    pub issued_ms: i64,
}

impl<'a> From<&'a AccessClaims> for TokenRef<'a> {
    fn from(c: &'a AccessClaims) -> Self {
        Self {
            jti: &c.jti,
            sub: &c.sub,
            sid: c.sid.as_deref(),
            client: (c.client_id != c.sub).then_some(c.client_id.as_str()),
            issued_ms: c.iat_ms.unwrap_or(c.iat.saturating_mul(1000)),
        }
    }
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
    /// Whether this entry revokes `token`.
    pub fn covers(&self, token: &TokenRef<'_>) -> bool {
        match &self.kind {
            RevocationKind::Jti { jti } => jti == token.jti,
            RevocationKind::Subject { sub, not_before_ms } => {
                (sub == token.sub || token.client == Some(sub.as_str()))
                    && token.issued_ms < *not_before_ms
            }
            RevocationKind::Session { sid } => token.sid == Some(sid.as_str()),
            // Judged on the header (`revokes_key`), which claims do not carry.
            RevocationKind::Key { .. } => false,
        }
    }

    /// Whether this entry withdraws the signing key `kid`.
    pub fn revokes_key(&self, kid: &str) -> bool {
        matches!(&self.kind, RevocationKind::Key { kid: k } if k == kid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_entry_for_a_client_covers_what_it_obtained_for_people() {
        let entry = Revocation {
            seq: 1,
            kind: RevocationKind::Subject {
                sub: "app_client".into(),
                not_before_ms: 5_000,
            },
            expires_at: i64::MAX,
        };
        let through = |ms| TokenRef {
            client: Some("app_client"),
            ..token("j", "usr_1", Some("ses_x"), ms)
        };
        assert!(entry.covers(&through(4_999)));
        assert!(!entry.covers(&through(5_000)), "minted after the change");
        assert!(
            !entry.covers(&token("j", "usr_1", Some("ses_x"), 0)),
            "another client"
        );
    }

    fn token<'a>(jti: &'a str, sub: &'a str, sid: Option<&'a str>, ms: i64) -> TokenRef<'a> {
        TokenRef {
            jti,
            sub,
            sid,
            client: None,
            issued_ms: ms,
        }
    }

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
        assert!(subj.covers(&token("any", "app_1", None, 1_999)));
        assert!(!subj.covers(&token("any", "app_1", None, 2_000)));
        assert!(!subj.covers(&token("any", "app_2", None, 0)));
        let v = serde_json::to_value(&subj).unwrap();
        assert_eq!(v["type"], "subject");
        assert_eq!(v["notBeforeMs"], 2000);
        assert_eq!(v["seq"], 7);
        let jti = Revocation {
            seq: 8,
            kind: RevocationKind::Jti { jti: "j".into() },
            expires_at: 10,
        };
        assert!(jti.covers(&token("j", "x", None, 0)) && !jti.covers(&token("k", "x", None, 0)));
        assert_eq!(serde_json::to_value(&jti).unwrap()["type"], "jti");
    }

    #[test]
    fn a_session_entry_covers_exactly_the_tokens_of_its_session() {
        let ses = Revocation {
            seq: 9,
            kind: RevocationKind::Session {
                sid: "ses_abc".into(),
            },
            expires_at: 10,
        };
        // Whenever issued, whatever its jti or subject.
        assert!(ses.covers(&token("j", "usr_1", Some("ses_abc"), i64::MAX)));
        assert!(ses.covers(&token("k", "usr_2", Some("ses_abc"), i64::MIN)));
        assert!(!ses.covers(&token("j", "usr_1", Some("ses_abd"), 0)));
        assert!(!ses.covers(&token("j", "usr_1", Some("ses_ab"), 0)));
        assert!(!ses.covers(&token("j", "usr_1", Some(""), 0)));
        assert!(
            !ses.covers(&token("ses_abc", "ses_abc", None, 0)),
            "a token without a session is never covered"
        );
        // Nor does a jti or subject entry ever match on the sid.
        let jti = Revocation {
            seq: 1,
            kind: RevocationKind::Jti {
                jti: "ses_abc".into(),
            },
            expires_at: 10,
        };
        assert!(!jti.covers(&token("j", "usr_1", Some("ses_abc"), 0)));

        let wire = r#"{"type":"session","sid":"ses_abc","expiresAt":10,"seq":9}"#;
        assert_eq!(serde_json::from_str::<Revocation>(wire).unwrap(), ses);
        let v = serde_json::to_value(&ses).unwrap();
        assert_eq!(v["type"], "session");
        assert_eq!(v["sid"], "ses_abc");
        assert_eq!(v.as_object().map(|o| o.len()), Some(4), "{v}");
    }

    #[test]
    fn a_token_ref_reads_the_claims() {
        let claims: AccessClaims = serde_json::from_value(serde_json::json!({
            "iss": "i", "sub": "usr_1", "aud": "a", "exp": 20, "iat": 3, "nbf": 3,
            "jti": "j", "client_id": "c", "scope": "", "env": "live",
            "key_type": "public", "sid": "ses_x", "amr": ["pwd"]
        }))
        .unwrap();
        assert_eq!(
            TokenRef::from(&claims),
            TokenRef {
                client: Some("c"),
                ..token("j", "usr_1", Some("ses_x"), 3_000)
            },
            "a client that is not the subject is named"
        );
        assert_eq!(claims.amr.as_deref(), Some(&["pwd".to_owned()][..]));
        assert_eq!(claims.idp, None);
        // Application tokens carry none of the three, and serialize none.
        let mut app = claims.clone();
        app.sid = None;
        app.amr = None;
        app.iat_ms = Some(3_500);
        let v = serde_json::to_value(&app).unwrap();
        assert!(v.get("sid").is_none() && v.get("amr").is_none() && v.get("idp").is_none());
        assert_eq!(TokenRef::from(&app).issued_ms, 3_500);
    }
}
