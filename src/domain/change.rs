//! Change events: what a gateway publishes on its Redis channel
//! (`{prefix}events`) when stored state changes, so that other gateways drop
//! what they cached and verifiers update their revocation mirrors.
//!
//! One type for both ends: the store publishes a [`ChangeEvent`] and every
//! reader parses it with [`ChangeEvent::parse`]. It lives in `domain` so the
//! verifier build (`verifier` without `gateway`) has it too.
//!
//! The wire format is JSON tagged by `kind`, unchanged from the hand-written
//! format it replaces:
//!
//! | event | message |
//! |---|---|
//! | an application changed or vanished | `{"kind":"app","id":"app_…"}` |
//! | roles changed | `{"kind":"roles"}` |
//! | users changed | `{"kind":"users"}` |
//! | a revocation was stored | `{"kind":"revocation","entry":{…a Revocation…}}` |
//! | the signing-key ring changed | `{"kind":"keys"}` |
//!
//! A `Revocation` is of type `jti`, `subject`, `session` (`sid`) or `key`
//! (`kid`).
//!
//! Readers ignore fields they do not know and skip kinds they do not know, so
//! a newer gateway may add either without breaking older readers.

use serde::{Deserialize, Serialize};

use super::Revocation;

/// A change other gateways and verifiers must apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ChangeEvent {
    /// An application changed or vanished: drop what is cached about it.
    App {
        /// Its id.
        id: String,
    },
    /// Roles changed: every application's grants may have.
    Roles,
    /// Users changed: owners' bounds may have.
    Users,
    /// A revocation was stored.
    Revocation {
        /// The stored entry, with its feed position.
        entry: Revocation,
    },
    /// The signing-key ring changed (a key added, revoked or forgotten):
    /// gateways read it again (docs/api.md, "Signing keys over time").
    Keys,
}

impl ChangeEvent {
    /// Parses one message of the channel; `None` for a message that is not
    /// a change event this version knows (skipped, never fatal).
    pub fn parse(payload: &str) -> Option<Self> {
        serde_json::from_str(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RevocationKind;

    #[test]
    fn the_wire_format_is_the_documented_one() {
        let app = ChangeEvent::App { id: "app_1".into() };
        assert_eq!(
            serde_json::to_string(&app).unwrap(),
            r#"{"kind":"app","id":"app_1"}"#
        );
        assert_eq!(
            serde_json::to_string(&ChangeEvent::Roles).unwrap(),
            r#"{"kind":"roles"}"#
        );
        assert_eq!(
            serde_json::to_string(&ChangeEvent::Users).unwrap(),
            r#"{"kind":"users"}"#
        );
        // As the Redis store's revocation script writes it, by concatenation.
        let rev = ChangeEvent::parse(
            r#"{"kind":"revocation","entry":{"type":"jti","jti":"j1","expiresAt":9,"seq":3}}"#,
        );
        assert_eq!(
            rev,
            Some(ChangeEvent::Revocation {
                entry: Revocation {
                    seq: 3,
                    kind: RevocationKind::Jti { jti: "j1".into() },
                    expires_at: 9,
                }
            })
        );
        for event in [app, ChangeEvent::Roles, ChangeEvent::Users, rev.unwrap()] {
            let s = serde_json::to_string(&event).unwrap();
            assert_eq!(ChangeEvent::parse(&s), Some(event));
        }
    }

    #[test]
    fn a_session_revocation_travels_as_the_others_do() {
        // As the Redis store's script writes it: the kind's JSON, the expiry,
        // then the position.
        let wire = r#"{"kind":"revocation","entry":{"sid":"ses_Ab3","type":"session","expiresAt":9,"seq":4}}"#;
        let event = ChangeEvent::Revocation {
            entry: Revocation {
                seq: 4,
                kind: RevocationKind::Session {
                    sid: "ses_Ab3".into(),
                },
                expires_at: 9,
            },
        };
        assert_eq!(ChangeEvent::parse(wire), Some(event.clone()));
        let s = serde_json::to_string(&event).unwrap();
        assert!(s.contains(r#""type":"session""#), "{s}");
        assert_eq!(ChangeEvent::parse(&s), Some(event));
    }

    #[test]
    fn unknown_kinds_and_fields_are_tolerated() {
        assert_eq!(ChangeEvent::parse(r#"{"kind":"later"}"#), None);
        assert_eq!(
            ChangeEvent::parse(r#"{"kind":"keys"}"#),
            Some(ChangeEvent::Keys)
        );
        assert_eq!(ChangeEvent::parse("not json"), None);
        assert_eq!(ChangeEvent::parse(r#"{"kind":"app"}"#), None);
        assert_eq!(
            ChangeEvent::parse(r#"{"kind":"roles","by":"gw2"}"#),
            Some(ChangeEvent::Roles)
        );
    }
}
