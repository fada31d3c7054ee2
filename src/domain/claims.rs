//! The access-token claims (RFC 9068 profile plus Tessera's own).

use serde::{Deserialize, Serialize};

use super::AccessGrant;

/// What every access token from this gateway carries.
///
/// The field order matters to [`ClaimsTemplate`]: the per-token fields
/// (`exp`, `iat`, `iat_ms`, `nbf`, `jti`) sit together between `aud` and
/// `client_id`. A new per-token claim belongs in that run and in the
/// template's gap; its test compares the template with serde byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer: the gateway's configured issuer URL.
    pub iss: String,
    /// Subject: the application (or user) id.
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// The instant, in milliseconds, of the application state this token was
    /// minted from (never later than `iat`). Subject revocations compare
    /// against it: a revocation written after a change covers every token
    /// minted from state read before the change, however late it was
    /// minted, and a token minted in the same second after it survives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat_ms: Option<i64>,
    /// Not before.
    pub nbf: i64,
    /// Unique token id, for revocation.
    pub jti: String,
    /// The application that asked for the token.
    pub client_id: String,
    /// Space-separated granted permissions.
    pub scope: String,
    /// Role names.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Granted permissions (may contain wildcards).
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Grants limited to resources, roles expanded (`domain::access`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessGrant>,
    /// `live` or `test`.
    pub env: String,
    /// `secret` or `public`.
    pub key_type: String,
    /// The application's IP allow-list, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_cidrs: Option<Vec<String>>,
    /// The person's session (`ses_…`), on tokens minted for a signed-in
    /// user (docs/api.md, "People"): ending the session revokes every token carrying it
    /// (`RevocationKind::Session`). Absent on application tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// How the person authenticated (RFC 8176 values: `pwd`, or `fed` when
    /// through an upstream provider). Absent on application tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    /// The upstream identity provider's configured name, when the person
    /// signed in through one (docs/api.md, "Single sign-on").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
    /// The party acting for the subject (RFC 8693 §4.1), on tokens from a
    /// delegating token exchange; a prior chain is nested inside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// Who may exchange this token to act for its subject (RFC 8693 §4.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<MayAct>,
}

/// Where the per-token fields sit in serialized claims whose other fields
/// are fixed: `exp`, `iat`, `iat_ms`, `nbf` and `jti` follow `aud` and
/// precede `client_id`, in the order of [`AccessClaims`]. Inside a JSON
/// string every quote is escaped, so this text can only be the fields
/// themselves.
const TEMPLATE_GAP: &str = r#","exp":0,"iat":0,"iat_ms":0,"nbf":0,"jti":"","#;

/// Claims serialized once with everything fixed but the instants and the
/// token id: what an application's tokens share while its state does not
/// change. [`ClaimsTemplate::render`] writes, byte for byte, what serde
/// writes for the same [`AccessClaims`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsTemplate {
    /// The serialized claims without the gap's fields: the text up to `aud`
    /// included, then from `client_id` on.
    text: Box<str>,
    /// Where the gap was.
    split: usize,
}

impl ClaimsTemplate {
    /// The template of `claims`, whose `exp`, `iat`, `iat_ms`, `nbf` and
    /// `jti` are ignored (each token gets its own). `None` only if serde
    /// fails, which a caller treats as "serialize in full".
    pub fn new(mut claims: AccessClaims) -> Option<Self> {
        claims.exp = 0;
        claims.iat = 0;
        claims.iat_ms = Some(0);
        claims.nbf = 0;
        claims.jti = String::new();
        let mut json = serde_json::to_string(&claims).ok()?;
        let split = json.find(TEMPLATE_GAP)?;
        json.replace_range(split..split + TEMPLATE_GAP.len(), "");
        Some(Self {
            text: json.into_boxed_str(),
            split,
        })
    }

    /// Appends the claims with these per-token values to `out` (`iat_ms`
    /// is always written: every application token carries it).
    pub fn render(
        &self,
        exp: i64,
        iat: i64,
        iat_ms: i64,
        nbf: i64,
        jti: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), serde_json::Error> {
        let (head, tail) = self.text.split_at(self.split);
        out.extend_from_slice(head.as_bytes());
        for (name, value) in [
            (",\"exp\":", exp),
            (",\"iat\":", iat),
            (",\"iat_ms\":", iat_ms),
            (",\"nbf\":", nbf),
        ] {
            out.extend_from_slice(name.as_bytes());
            serde_json::to_writer(&mut *out, &value)?;
        }
        out.extend_from_slice(b",\"jti\":");
        serde_json::to_writer(&mut *out, jti)?;
        out.push(b',');
        out.extend_from_slice(tail.as_bytes());
        Ok(())
    }
}

/// The `act` claim: the current actor, and inside it the actor before.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The actor's subject (application or user id).
    pub sub: String,
    /// The client the actor's token was issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The prior actor in the chain, when the subject token was itself
    /// delegated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// How many actors the chain holds, this one included.
    pub fn depth(&self) -> usize {
        1 + self.act.as_ref().map_or(0, |a| a.depth())
    }
}

/// The `may_act` claim: the party allowed to act for the token's subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MayAct {
    /// The subject the actor's token must carry.
    pub sub: String,
    /// When present, the client the actor's token must have been issued to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl MayAct {
    /// Whether an actor token with this `sub` and `client_id` is named.
    pub fn names(&self, sub: &str, client_id: &str) -> bool {
        self.sub == sub && self.client_id.as_deref().is_none_or(|c| c == client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AccessGrant, Permission};

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://gw.example/\"odd\",\"exp\":0,\"iat\":0,".into(),
            sub: "app_1".into(),
            aud: "api é \u{1}".into(),
            exp: 0,
            iat: 0,
            iat_ms: None,
            nbf: 0,
            jti: "x".into(),
            client_id: "app_1".into(),
            scope: "a:b c:*".into(),
            roles: vec!["reader".into()],
            permissions: vec!["a:b".into(), "c:*".into()],
            access: vec![AccessGrant {
                scope: "cluster:c1".into(),
                permissions: vec![Permission::parse("workloads:write").unwrap()],
            }],
            env: "live".into(),
            key_type: "secret".into(),
            allowed_cidrs: Some(vec!["10.0.0.0/8".into()]),
            sid: None,
            amr: None,
            idp: None,
            act: Some(Actor {
                sub: "app_2".into(),
                client_id: None,
                act: None,
            }),
            may_act: None,
        }
    }

    #[test]
    fn a_rendered_template_is_what_serde_writes() {
        for base in [
            claims(),
            AccessClaims {
                access: vec![],
                allowed_cidrs: None,
                act: None,
                ..claims()
            },
        ] {
            let template = ClaimsTemplate::new(base.clone()).unwrap();
            for (exp, iat, ms, jti) in [
                (
                    1_700_000_600,
                    1_700_000_000,
                    1_699_999_999_123,
                    "AbC-_0123456789abcdefgh",
                ),
                (-5, i64::MIN, i64::MAX, "with \"quote\" and \\"),
            ] {
                let mut full = base.clone();
                (full.exp, full.iat, full.iat_ms, full.nbf, full.jti) =
                    (exp, iat, Some(ms), iat, jti.into());
                let mut out = Vec::new();
                template.render(exp, iat, ms, iat, jti, &mut out).unwrap();
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&full).unwrap()
                );
            }
        }
    }
}
