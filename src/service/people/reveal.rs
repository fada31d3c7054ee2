//! One-time slots for the console (docs/api.md, "The console"): a new secret, or the outcome
//! of a bulk action, kept in memory for a few minutes so that the page after
//! a post (Post/Redirect/Get) can show it once. A slot is bound to the
//! session that filled it and to the application it is about; taking it
//! empties it. Nothing here is written to a store, a URL or a log: the URL
//! carries only a random ticket.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::SecretString;

/// How long a slot waits to be taken.
pub const TTL: Duration = Duration::from_secs(300);
/// At most this many slots of each kind are held at once (the oldest go
/// first beyond it), so memory stays bounded whatever is posted.
pub const MAX_HELD: usize = 1024;
/// At most this many slots of each kind per session: a session that
/// posts more loses its own oldest, never another session's.
pub const MAX_PER_SESSION: usize = 16;

/// What one application of a bulk action came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The application's id (as the service reported it).
    pub id: String,
    /// Its name when it was read, or "" when unknown.
    pub name: String,
    /// A fixed word: `revoked`, `deleted`, `not_found`, `forbidden`,
    /// `conflict`, `error`.
    pub result: &'static str,
}

/// What a bulk action did, to be shown once on the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkNotice {
    /// `revoke` or `delete`.
    pub action: &'static str,
    /// One line per application asked for.
    pub outcomes: Vec<Outcome>,
}

struct Entry<T> {
    sid: String,
    about: String,
    until: Instant,
    value: T,
}

/// Slots of one kind, by ticket.
pub struct Slots<T> {
    held: Mutex<HashMap<String, Entry<T>>>,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl<T> std::fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Slots(<hidden>)")
    }
}

impl<T> Slots<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry<T>>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `value` for session `sid`, about `about` (an application id,
    /// or `-`); returns the ticket that takes it, or `None` when no random
    /// ticket could be drawn.
    pub fn put(&self, sid: &str, about: &str, value: T) -> Option<String> {
        let ticket = crate::crypto::random::base62(32).ok()?;
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, e| e.until > now);
        // Its own oldest go first; when the whole map is full, the oldest
        // of the session holding the most. One session flooding posts thus
        // never evicts another's unseen secret (dropping a SecretString
        // zeroes it).
        loop {
            let own = map.values().filter(|e| e.sid == sid).count();
            let victim = if own >= MAX_PER_SESSION {
                sid.to_owned()
            } else if map.len() >= MAX_HELD {
                let mut counts: HashMap<&str, usize> = HashMap::new();
                for e in map.values() {
                    *counts.entry(e.sid.as_str()).or_default() += 1;
                }
                match counts.into_iter().max_by_key(|(_, n)| *n) {
                    Some((s, _)) => s.to_owned(),
                    None => break,
                }
            } else {
                break;
            };
            let oldest = map
                .iter()
                .filter(|(_, e)| e.sid == victim)
                .min_by_key(|(_, e)| e.until)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(
            ticket.clone(),
            Entry {
                sid: sid.to_owned(),
                about: about.to_owned(),
                until: now + TTL,
                value,
            },
        );
        Some(ticket)
    }

    /// Takes the slot of `ticket` when it belongs to session `sid` and is
    /// about `about` and still live; afterwards it is gone. A ticket of
    /// another session is left alone (and gives nothing).
    pub fn take(&self, sid: &str, about: &str, ticket: &str) -> Option<T> {
        let mut map = self.lock();
        let fits = map
            .get(ticket)
            .is_some_and(|e| e.sid == sid && e.about == about);
        if !fits {
            return None;
        }
        let e = map.remove(ticket)?;
        (e.until > Instant::now()).then_some(e.value)
    }

    /// How many are held (tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The console's one-time slots.
#[derive(Debug, Default)]
pub struct Reveals {
    /// New secrets (create, rotate), by application.
    pub secrets: Slots<SecretString>,
    /// Outcomes of bulk actions.
    pub notices: Slots<BulkNotice>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn a_slot_is_taken_once_by_its_session_only() {
        let s = Slots::<SecretString>::default();
        let t = s
            .put("ses_a", "app_1", SecretString::from("s3cret"))
            .unwrap();
        assert!(s.take("ses_b", "app_1", &t).is_none(), "another session");
        assert!(
            s.take("ses_a", "app_2", &t).is_none(),
            "another application"
        );
        assert!(s.take("ses_a", "app_1", "nope").is_none());
        let got = s.take("ses_a", "app_1", &t).unwrap();
        assert_eq!(got.expose_secret(), "s3cret");
        assert!(s.take("ses_a", "app_1", &t).is_none(), "only once");
        assert!(s.is_empty());
        assert_eq!(format!("{s:?}"), "Slots(<hidden>)");
    }

    #[test]
    fn slots_are_bounded() {
        let s = Slots::<u32>::default();
        let mut last = String::new();
        for i in 0..(MAX_HELD as u32 + 10) {
            last = s.put(&format!("ses{}", i % 200), "-", i).unwrap();
        }
        assert!(s.len() <= MAX_HELD);
        let n = MAX_HELD as u32 + 9;
        assert_eq!(s.take(&format!("ses{}", n % 200), "-", &last), Some(n));
    }

    #[test]
    fn one_session_flooding_never_evicts_another_sessions_secret() {
        let s = Slots::<SecretString>::default();
        let victim = s
            .put("ses_victim", "app_v", SecretString::from("theirs"))
            .unwrap();
        let mut last = String::new();
        for _ in 0..(MAX_HELD + 50) {
            last = s
                .put("ses_flood", "app_f", SecretString::from("x"))
                .unwrap();
        }
        assert!(s.len() <= MAX_PER_SESSION + 1, "{}", s.len());
        assert!(s.take("ses_flood", "app_f", &last).is_some(), "its newest");
        let got = s.take("ses_victim", "app_v", &victim);
        assert_eq!(
            got.map(|g| g.expose_secret().to_owned()).as_deref(),
            Some("theirs")
        );
        // Many sessions filling the map: the one holding the most pays.
        let s = Slots::<u32>::default();
        let lone = s.put("ses_lone", "-", 7).unwrap();
        for i in 0..(MAX_HELD as u32 * 2) {
            s.put(&format!("ses{}", i % 100), "-", i).unwrap();
        }
        assert!(s.len() <= MAX_HELD);
        assert_eq!(s.take("ses_lone", "-", &lone), Some(7));
    }
}
