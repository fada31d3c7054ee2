//! The in-memory revocation mirror. Checking a token is at most three hash
//! lookups (its `jti`, its subject, its session);
//! entries are dropped when the tokens they cover have expired, so memory is
//! bounded by what was revoked within one token lifetime.
//!
//! Fed by the feed, the mirror is fresh only as of the last time it was
//! caught up: a poll pages through the feed until a page says nothing
//! remains, and a follower that stops with pages left knows it is behind
//! and counts itself stale at once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::RevocationSource;
use crate::domain::{ChangeEvent, Revocation, RevocationKind, TokenRef};

#[derive(Default)]
struct State {
    /// The gateway's `jti`s are 128 random bits: kept as `u128` (16 bytes
    /// instead of a heap string), with their expiry.
    jtis: HashMap<u128, i64>,
    /// Any other `jti` shape.
    other_jtis: HashMap<String, i64>,
    /// Subject → (not-before in ms, expiry).
    subjects: HashMap<String, (i64, i64)>,
    /// The gateway's session ids (`ses_` and up to 32 base62 characters),
    /// packed six bits a character into 24 bytes, with their expiry: the
    /// same 32 bytes a slot as a compact `jti`, instead of a heap string.
    sessions: HashMap<SidKey, i64>,
    /// Any other session id shape.
    other_sessions: HashMap<String, i64>,
    /// Withdrawn signing keys (`kid` → expiry): a handful at most.
    kids: HashMap<String, i64>,
}

impl State {
    fn len(&self) -> usize {
        self.jtis.len()
            + self.other_jtis.len()
            + self.subjects.len()
            + self.sessions.len()
            + self.other_sessions.len()
            + self.kids.len()
    }
}

/// A packed session id (see [`compact_sid`]).
type SidKey = [u8; 24];

/// The base62 digit `b` stands for, plus one (so that 0 is free to mark the
/// unused tail).
fn sid_code(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0' + 1),
        b'A'..=b'Z' => Some(b - b'A' + 11),
        b'a'..=b'z' => Some(b - b'a' + 37),
        _ => None,
    }
}

/// `ses_` and 1 to 32 base62 characters, packed six bits each (codes 1 to
/// 62, big-endian) into 24 bytes. The unused tail stays zero and no
/// character codes to zero, so different ids never share a key.
fn compact_sid(sid: &str) -> Option<SidKey> {
    let rest = sid.strip_prefix("ses_")?;
    if rest.is_empty() || rest.len() > 32 {
        return None;
    }
    let mut key = [0u8; 24];
    // Four characters (24 bits) to each three bytes.
    for (out, chars) in key.chunks_mut(3).zip(rest.as_bytes().chunks(4)) {
        let mut word = 0u32;
        for (j, &c) in chars.iter().enumerate() {
            word |= u32::from(sid_code(c)?) << (18 - 6 * j);
        }
        let [_, hi, mid, lo] = word.to_be_bytes();
        out.copy_from_slice(&[hi, mid, lo]);
    }
    Some(key)
}

fn compact(jti: &str) -> Option<u128> {
    let mut buf = [0u8; 16];
    match URL_SAFE_NO_PAD.decode_slice(jti.as_bytes(), &mut buf) {
        Ok(16) if jti.len() == 22 => Some(u128::from_be_bytes(buf)),
        _ => None,
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The mirror, and how fresh it is.
pub struct RevocationMirror {
    state: RwLock<State>,
    /// Milliseconds since the epoch of the last sign of life from the source.
    last_heard_ms: AtomicI64,
    /// For Redis: the subscription is up (fresh as long as it is).
    live: AtomicBool,
    /// For the feed: the follower stopped with entries left to fetch.
    behind: AtomicBool,
    /// The highest feed position applied (for metrics).
    position: AtomicU64,
}

impl Default for RevocationMirror {
    fn default() -> Self {
        Self {
            state: RwLock::new(State::default()),
            last_heard_ms: AtomicI64::new(0),
            live: AtomicBool::new(false),
            behind: AtomicBool::new(false),
            position: AtomicU64::new(0),
        }
    }
}

impl RevocationMirror {
    /// Adds one entry.
    pub fn apply(&self, r: &Revocation) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        Self::insert(&mut s, r);
        self.position.fetch_max(r.seq, Ordering::Relaxed);
    }

    fn insert(s: &mut State, r: &Revocation) {
        match &r.kind {
            RevocationKind::Jti { jti } => match compact(jti) {
                Some(k) => {
                    s.jtis.insert(k, r.expires_at);
                }
                None => {
                    s.other_jtis.insert(jti.clone(), r.expires_at);
                }
            },
            RevocationKind::Subject { sub, not_before_ms } => {
                let e = s
                    .subjects
                    .entry(sub.clone())
                    .or_insert((*not_before_ms, r.expires_at));
                if *not_before_ms >= e.0 {
                    *e = (*not_before_ms, r.expires_at.max(e.1));
                }
            }
            // The longest-lived entry of a session decides (entries may
            // arrive out of order: a snapshot, then the channel).
            RevocationKind::Session { sid } => {
                let exp = match compact_sid(sid) {
                    Some(k) => s.sessions.entry(k).or_insert(r.expires_at),
                    None => s.other_sessions.entry(sid.clone()).or_insert(r.expires_at),
                };
                *exp = (*exp).max(r.expires_at);
            }
            RevocationKind::Key { kid } => {
                let exp = s.kids.entry(kid.clone()).or_insert(r.expires_at);
                *exp = (*exp).max(r.expires_at);
            }
        }
    }

    /// Replaces everything with a full snapshot.
    pub fn replace(&self, entries: &[Revocation]) {
        let mut fresh = State::default();
        for r in entries {
            Self::insert(&mut fresh, r);
        }
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        // Only ever up: a snapshot holds live entries only, and the newest
        // may have expired.
        let top = entries.iter().map(|r| r.seq).max().unwrap_or(0);
        self.position.fetch_max(top, Ordering::Relaxed);
    }

    /// The highest feed position applied (0 before any entry).
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    /// How long the source has been silent: zero while a Redis
    /// subscription is up, `None` before it was ever heard from.
    pub fn silent_for(&self) -> Option<Duration> {
        if self.live.load(Ordering::Relaxed) {
            return Some(Duration::ZERO);
        }
        let last = self.last_heard_ms.load(Ordering::Relaxed);
        (last != 0).then(|| {
            Duration::from_millis(u64::try_from(now_ms().saturating_sub(last)).unwrap_or(0))
        })
    }

    /// Whether `token` is revoked, by its `jti`, its subject or its
    /// session (O(1)).
    pub fn is_revoked(&self, token: &TokenRef<'_>) -> bool {
        let now = chrono::Utc::now().timestamp();
        let live = |exp: &i64| *exp > now;
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        let jti_hit = match compact(token.jti) {
            Some(k) => s.jtis.get(&k).is_some_and(live),
            None => s.other_jtis.get(token.jti).is_some_and(live),
        };
        let session_hit = || {
            token.sid.is_some_and(|sid| match compact_sid(sid) {
                Some(k) => s.sessions.get(&k).is_some_and(live),
                None => s.other_sessions.get(sid).is_some_and(live),
            })
        };
        let subject_hit = |sub: &str| {
            s.subjects
                .get(sub)
                .is_some_and(|(nb, exp)| *exp > now && token.issued_ms < *nb)
        };
        jti_hit || subject_hit(token.sub) || token.client.is_some_and(subject_hit) || session_hit()
    }

    /// Whether the signing key `kid` was withdrawn (docs/api.md, "Signing keys over time"): every token
    /// whose header names it is refused, whatever its claims.
    pub fn is_key_revoked(&self, kid: &str) -> bool {
        let now = chrono::Utc::now().timestamp();
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        s.kids.get(kid).is_some_and(|exp| *exp > now)
    }

    /// Every signing key withdrawn and still held (a handful at most).
    pub fn revoked_kids(&self) -> Vec<String> {
        let now = chrono::Utc::now().timestamp();
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        s.kids
            .iter()
            .filter(|(_, exp)| **exp > now)
            .map(|(kid, _)| kid.clone())
            .collect()
    }

    /// Drops entries whose tokens have all expired; returns how many.
    pub fn purge(&self, now: i64) -> usize {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        let before = s.len();
        s.jtis.retain(|_, exp| *exp > now);
        s.other_jtis.retain(|_, exp| *exp > now);
        s.subjects.retain(|_, (_, exp)| *exp > now);
        s.sessions.retain(|_, exp| *exp > now);
        s.other_sessions.retain(|_, exp| *exp > now);
        s.kids.retain(|_, exp| *exp > now);
        before - s.len()
    }

    /// How many entries are held (one per revoked token, subject or
    /// session).
    pub fn len(&self) -> usize {
        self.state.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a sign of life from the source (the followers call it; a
    /// mirror fed by hand calls it after each update).
    pub fn heard(&self) {
        self.last_heard_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// Whether the follower knows the feed holds entries it has not fetched
    /// yet (a stale mirror, whatever it last heard).
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Relaxed)
    }

    /// The follower read everything the feed held at `asked_ms` (when it
    /// asked for the last page).
    fn caught_up(&self, asked_ms: i64) {
        self.last_heard_ms.fetch_max(asked_ms, Ordering::Relaxed);
        self.behind.store(false, Ordering::Relaxed);
    }

    /// The follower stopped knowing entries remain.
    fn fell_behind(&self) {
        self.behind.store(true, Ordering::Relaxed);
    }

    /// Whether the source has been silent (or away) for longer than `bound`,
    /// or the mirror is known to be behind it.
    pub fn is_stale(&self, bound: Duration) -> bool {
        if self.behind.load(Ordering::Relaxed) {
            return true;
        }
        if self.live.load(Ordering::Relaxed) {
            return false;
        }
        let last = self.last_heard_ms.load(Ordering::Relaxed);
        last == 0 || now_ms() - last > i64::try_from(bound.as_millis()).unwrap_or(i64::MAX)
    }

    /// Starts following `source` in the background.
    pub fn follow(source: RevocationSource) -> Arc<Self> {
        Self::follow_with(source, FeedPaging::default())
    }

    /// Starts following `source` in the background, paging the feed as
    /// `paging` says (it matters only for [`RevocationSource::Feed`]).
    pub fn follow_with(source: RevocationSource, paging: FeedPaging) -> Arc<Self> {
        let me = Arc::new(Self::default());
        let m = me.clone();
        match source {
            RevocationSource::Redis { url, prefix } => {
                tokio::spawn(async move { m.follow_redis(url, prefix).await });
            }
            RevocationSource::Feed {
                gateway_url,
                app_id,
                app_secret,
                every,
            } => {
                tokio::spawn(async move {
                    m.follow_feed(
                        gateway_url,
                        app_id,
                        app_secret.expose_secret().to_owned(),
                        every,
                        paging,
                    )
                    .await;
                });
            }
            RevocationSource::Disabled => {}
        }
        let m = me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                m.purge(chrono::Utc::now().timestamp());
            }
        });
        me
    }

    async fn follow_redis(&self, url: String, prefix: String) {
        let channel = format!("{prefix}events");
        let entries_key = format!("{prefix}rev:entries");
        let mut backoff = Duration::from_millis(100);
        loop {
            let session = async {
                let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
                let mut pubsub =
                    tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub())
                        .await
                        .map_err(|_| "connect timed out".to_owned())?
                        .map_err(|e| e.to_string())?;
                pubsub
                    .subscribe(&channel)
                    .await
                    .map_err(|e| e.to_string())?;
                // Subscribed first, then loaded: nothing falls in between.
                let mut conn = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                let all: Vec<String> = redis::cmd("HVALS")
                    .arg(&entries_key)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let entries: Vec<Revocation> = all
                    .iter()
                    .filter_map(|v| serde_json::from_str(v).ok())
                    .collect();
                Ok::<_, String>((pubsub, entries))
            };
            match session.await {
                Ok((pubsub, entries)) => {
                    self.replace(&entries);
                    self.heard();
                    self.live.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    let mut stream = pubsub.into_on_message();
                    while let Some(msg) = stream.next().await {
                        self.heard();
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        // The gateway's own event type: one format, parsed
                        // in one place (`domain::change`).
                        match ChangeEvent::parse(&payload) {
                            Some(ChangeEvent::Revocation { entry }) => self.apply(&entry),
                            // Cache invalidations concern gateways only;
                            // unknown messages are skipped.
                            Some(
                                ChangeEvent::App { .. }
                                | ChangeEvent::Roles
                                | ChangeEvent::Users
                                | ChangeEvent::Keys,
                            )
                            | None => {}
                        }
                    }
                    self.live.store(false, Ordering::Relaxed);
                    tracing::warn!("revocation channel lost; resyncing");
                }
                Err(e) => tracing::warn!(error = %e, "revocation channel unavailable; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    async fn follow_feed(
        &self,
        gateway: String,
        app_id: String,
        secret: String,
        every: Duration,
        paging: FeedPaging,
    ) {
        let gateway = gateway.trim_end_matches('/').to_owned();
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
        {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "cannot build an HTTP client for the revocation feed");
                return;
            }
        };
        let mut token: Option<(String, std::time::Instant)> = None;
        let mut reader = FeedReader::default();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut hurry = false;
        loop {
            // Behind after a full poll: the next one starts at once.
            if !hurry {
                tick.tick().await;
            }
            hurry = false;
            if token
                .as_ref()
                .is_none_or(|(_, until)| std::time::Instant::now() >= *until)
            {
                let res = http
                    .post(format!("{gateway}/oauth/token"))
                    .form(&[
                        ("grant_type", "client_credentials"),
                        ("client_id", app_id.as_str()),
                        ("client_secret", secret.as_str()),
                    ])
                    .send()
                    .await;
                let body: Option<serde_json::Value> = match res {
                    Ok(r) if r.status().is_success() => r.json().await.ok(),
                    Ok(r) => {
                        tracing::warn!(status = %r.status(), "revocation feed: token refused");
                        None
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "revocation feed: gateway unreachable");
                        None
                    }
                };
                token = body.and_then(|b| {
                    let t = b["access_token"].as_str()?.to_owned();
                    let ttl = b["expires_in"].as_u64().unwrap_or(60);
                    Some((t, std::time::Instant::now() + Duration::from_secs(ttl / 2)))
                });
            }
            let Some((t, _)) = &token else { continue };
            match self
                .poll_feed(&http, &gateway, t, &mut reader, paging)
                .await
            {
                Poll::CaughtUp | Poll::Failed => {}
                Poll::Behind => hurry = true,
                Poll::Unauthorized => token = None,
            }
        }
    }

    /// One poll: pages through the feed until a page says nothing remains,
    /// at most `paging.max_pages_per_poll` pages. Fresh only when caught up;
    /// marked behind when it stops knowing entries remain.
    async fn poll_feed(
        &self,
        http: &reqwest::Client,
        gateway: &str,
        token: &str,
        reader: &mut FeedReader,
        paging: FeedPaging,
    ) -> Poll {
        let limit = paging.page_size.clamp(1, 10_000);
        let mut known_behind = false;
        for _ in 0..paging.max_pages_per_poll.max(1) {
            let asked_ms = now_ms();
            let mut url = format!("{gateway}/api/v1/revocations?limit={limit}");
            if let Some(c) = reader.cursor.as_deref() {
                url.push_str("&since=");
                url.push_str(&query_escape(c));
            }
            let outcome = match http.get(&url).bearer_auth(token).send().await {
                Ok(r) if r.status().is_success() => match r.json::<WirePage>().await {
                    Ok(page) => Ok(page),
                    Err(e) => {
                        // Never skip a page it cannot read: it stays where
                        // it is, and turns stale if this lasts.
                        tracing::warn!(error = %e, "revocation feed: unreadable page");
                        Err(Poll::Failed)
                    }
                },
                Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => Err(Poll::Unauthorized),
                Ok(r) => {
                    tracing::warn!(status = %r.status(), "revocation feed refused");
                    Err(Poll::Failed)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "revocation feed unreachable");
                    Err(Poll::Failed)
                }
            };
            match outcome {
                Ok(page) => {
                    if !reader.absorb(self, page) {
                        self.caught_up(asked_ms);
                        return Poll::CaughtUp;
                    }
                    known_behind = true;
                }
                Err(failed) => {
                    if known_behind {
                        self.fell_behind();
                    }
                    return failed;
                }
            }
        }
        tracing::warn!(
            pages = paging.max_pages_per_poll,
            "revocation feed: still behind after a full poll; stale until caught up"
        );
        self.fell_behind();
        Poll::Behind
    }
}

/// `s` made safe for a query string (the gateway's cursors need no escaping,
/// but they are the gateway's to define).
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How a feed follower pages through `GET /api/v1/revocations`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedPaging {
    /// Entries asked for per page (the gateway takes 1 to 10000).
    /// Default 1000.
    pub page_size: usize,
    /// Pages fetched at most in one poll. When entries remain after them the
    /// mirror is stale (it fails closed) until a later poll, started at
    /// once, catches up. Default 50: 50 000 entries per poll.
    pub max_pages_per_poll: usize,
}

impl Default for FeedPaging {
    fn default() -> Self {
        Self {
            page_size: 1000,
            max_pages_per_poll: 50,
        }
    }
}

/// How one poll of the feed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Poll {
    /// A page said nothing remains.
    CaughtUp,
    /// Entries remain after the last page allowed.
    Behind,
    /// A page could not be fetched or read.
    Failed,
    /// The token was refused: fetch another.
    Unauthorized,
}

/// A feed page as the gateway sends it (`http::revocation::FeedPageBody`).
#[derive(Debug, serde::Deserialize)]
struct WirePage {
    entries: Vec<Revocation>,
    cursor: String,
    #[serde(default)]
    snapshot: bool,
    /// Absent from gateways whose snapshots were one page: each started anew.
    #[serde(default)]
    reset: Option<bool>,
    /// Absent from gateways that answered everything at once.
    #[serde(default)]
    more: bool,
}

/// Where the follower is in the feed, and the snapshot it is collecting.
#[derive(Debug, Default)]
struct FeedReader {
    cursor: Option<String>,
    /// Entries of a snapshot not yet complete.
    staging: Option<Vec<Revocation>>,
}

impl FeedReader {
    /// Takes one page into `mirror`; returns whether entries remain.
    fn absorb(&mut self, mirror: &RevocationMirror, page: WirePage) -> bool {
        if page.snapshot {
            let staging = if page.reset.unwrap_or(true) {
                self.staging.insert(Vec::new())
            } else {
                self.staging.get_or_insert_with(Vec::new)
            };
            // Added at once as well: a revocation known is enforced now, not
            // when the snapshot is complete.
            for e in &page.entries {
                mirror.apply(e);
            }
            staging.extend(page.entries);
            if !page.more
                && let Some(all) = self.staging.take()
            {
                mirror.replace(&all);
            }
        } else {
            // The snapshot ended with the previous page.
            if let Some(all) = self.staging.take() {
                mirror.replace(&all);
            }
            for e in &page.entries {
                mirror.apply(e);
            }
        }
        self.cursor = Some(page.cursor);
        page.more
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jti(n: u8) -> String {
        URL_SAFE_NO_PAD.encode([n; 16])
    }

    /// Whether a token without a session is revoked.
    fn revoked(m: &RevocationMirror, jti: &str, sub: &str, issued_ms: i64) -> bool {
        m.is_revoked(&TokenRef {
            jti,
            sub,
            sid: None,
            client: None,
            issued_ms,
        })
    }

    #[test]
    fn lookups_expiry_and_snapshots() {
        let m = RevocationMirror::default();
        let later = chrono::Utc::now().timestamp() + 60;
        m.apply(&Revocation {
            seq: 1,
            kind: RevocationKind::Jti { jti: jti(1) },
            expires_at: later,
        });
        m.apply(&Revocation {
            seq: 2,
            kind: RevocationKind::Jti { jti: "odd".into() },
            expires_at: later,
        });
        m.apply(&Revocation {
            seq: 3,
            kind: RevocationKind::Subject {
                sub: "app_a".into(),
                not_before_ms: 5_000,
            },
            expires_at: later,
        });
        assert!(revoked(&m, &jti(1), "x", 0));
        assert!(!revoked(&m, &jti(2), "x", 0));
        assert!(revoked(&m, "odd", "x", 0));
        assert!(revoked(&m, "j", "app_a", 4_999));
        assert!(!revoked(&m, "j", "app_a", 5_000));
        assert_eq!(m.len(), 3);
        assert_eq!(m.purge(later + 1), 3);
        assert!(m.is_empty());
        m.replace(&[Revocation {
            seq: 9,
            kind: RevocationKind::Jti { jti: jti(7) },
            expires_at: later,
        }]);
        assert!(revoked(&m, &jti(7), "x", 0) && !revoked(&m, &jti(1), "x", 0));
        assert!(
            m.is_stale(Duration::from_secs(10)),
            "never heard from its source"
        );
        m.heard();
        assert!(!m.is_stale(Duration::from_secs(10)));
    }

    fn jti_entry(n: u8, seq: u64) -> Revocation {
        Revocation {
            seq,
            kind: RevocationKind::Jti { jti: jti(n) },
            expires_at: chrono::Utc::now().timestamp() + 60,
        }
    }

    fn page(entries: Vec<Revocation>, snapshot: bool, reset: bool, more: bool) -> WirePage {
        WirePage {
            entries,
            cursor: format!("c{snapshot}{reset}{more}"),
            snapshot,
            reset: Some(reset),
            more,
        }
    }

    #[test]
    fn a_snapshot_over_several_pages_replaces_the_mirror_only_when_complete() {
        let m = RevocationMirror::default();
        m.apply(&jti_entry(9, 1)); // held before, absent from the snapshot
        let mut r = FeedReader::default();
        assert!(r.absorb(&m, page(vec![jti_entry(1, 2)], true, true, true)));
        assert!(revoked(&m, &jti(1), "x", 0), "known entries apply at once");
        assert!(revoked(&m, &jti(9), "x", 0), "nothing dropped mid-snapshot");
        assert!(r.absorb(&m, page(vec![jti_entry(2, 3)], true, false, true)));
        assert!(revoked(&m, &jti(9), "x", 0));
        // Increments after the snapshot: it was complete with the last page.
        assert!(!r.absorb(&m, page(vec![jti_entry(3, 4)], false, false, false)));
        for n in [1, 2, 3] {
            assert!(revoked(&m, &jti(n), "x", 0), "{n}");
        }
        assert!(!revoked(&m, &jti(9), "x", 0), "replaced by the snapshot");
        assert_eq!(r.cursor.as_deref(), Some("cfalsefalsefalse"));

        // A snapshot restarted midway forgets what the first one collected.
        assert!(r.absorb(&m, page(vec![jti_entry(4, 5)], true, true, true)));
        assert!(!r.absorb(&m, page(vec![jti_entry(5, 6)], true, true, false)));
        assert!(revoked(&m, &jti(5), "x", 0));
        assert!(!revoked(&m, &jti(4), "x", 0) && !revoked(&m, &jti(1), "x", 0));

        // An older gateway: one-page snapshots without `reset` or `more`.
        let old = WirePage {
            entries: vec![jti_entry(6, 1)],
            cursor: "e.1".into(),
            snapshot: true,
            reset: None,
            more: false,
        };
        assert!(!r.absorb(&m, old));
        assert!(revoked(&m, &jti(6), "x", 0) && !revoked(&m, &jti(5), "x", 0));
    }

    #[test]
    fn a_mirror_known_to_be_behind_is_stale_until_caught_up() {
        let m = RevocationMirror::default();
        let bound = Duration::from_secs(10);
        m.caught_up(now_ms());
        assert!(!m.is_stale(bound) && !m.is_behind());
        m.fell_behind();
        assert!(
            m.is_stale(bound) && m.is_behind(),
            "heard just now, yet behind"
        );
        m.caught_up(now_ms());
        assert!(!m.is_stale(bound));
        // Caught up as of long ago is stale, whatever came since.
        let old = RevocationMirror::default();
        old.caught_up(now_ms() - 11_000);
        assert!(old.is_stale(bound));
    }

    fn session(sid: &str, expires_at: i64) -> Revocation {
        Revocation {
            seq: 1,
            kind: RevocationKind::Session { sid: sid.into() },
            expires_at,
        }
    }

    fn of_session<'a>(sid: Option<&'a str>) -> TokenRef<'a> {
        TokenRef {
            jti: "AAAAAAAAAAAAAAAAAAAAAA",
            sub: "usr_1",
            sid,
            client: None,
            issued_ms: 0,
        }
    }

    const SID: &str = "ses_4fGh7Kq2LmN9pQrStUvWx0";

    #[test]
    fn session_ids_pack_into_distinct_keys() {
        assert!(compact_sid(SID).is_some());
        assert!(compact_sid(&format!("ses_{}", "z".repeat(32))).is_some());
        for other in [
            "ses_",
            "sess_abc",
            "abc",
            "ses_abc-def",
            "ses_abc_def",
            "ses_é",
            "SES_abc",
            &format!("ses_{}", "z".repeat(33)),
        ] {
            assert_eq!(compact_sid(other), None, "{other:?}");
        }
        // The tail is not confused with the digit 0, nor is any
        // character with another.
        let keys = [
            "ses_a", "ses_a0", "ses_0a", "ses_00", "ses_0", "ses_b", "ses_A", "ses_z", "ses_Z",
            "ses_9",
        ]
        .map(|s| compact_sid(s).unwrap());
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn different_session_ids_never_share_a_key(
            a in "[0-9A-Za-z]{1,32}",
            b in "[0-9A-Za-z]{1,32}",
        ) {
            let (ka, kb) = (compact_sid(&format!("ses_{a}")), compact_sid(&format!("ses_{b}")));
            proptest::prop_assert!(ka.is_some() && kb.is_some());
            proptest::prop_assert_eq!(ka == kb, a == b);
        }
    }

    #[test]
    fn a_session_entry_revokes_exactly_the_tokens_of_its_session() {
        let m = RevocationMirror::default();
        let now = chrono::Utc::now().timestamp();
        let later = now + 60;
        m.apply(&session(SID, later));
        m.apply(&session("legacy-session-7", later));
        assert_eq!(m.len(), 2);
        assert!(m.is_revoked(&of_session(Some(SID))));
        assert!(m.is_revoked(&TokenRef {
            issued_ms: i64::MAX,
            ..of_session(Some(SID))
        }));
        assert!(
            m.is_revoked(&of_session(Some("legacy-session-7"))),
            "general path"
        );
        assert!(!m.is_revoked(&of_session(None)), "no session");
        assert!(!m.is_revoked(&of_session(Some("ses_4fGh7Kq2LmN9pQrStUvWx"))));
        assert!(!m.is_revoked(&of_session(Some("ses_4fGh7Kq2LmN9pQrStUvWx00"))));
        assert!(!m.is_revoked(&of_session(Some("legacy-session-8"))));
        // A jti or subject spelled like the session is another thing.
        assert!(!revoked(&m, SID, SID, 0));

        // Out of order (a snapshot, then an older increment): the longest
        // lifetime holds.
        m.apply(&session(SID, now + 10));
        assert_eq!(m.purge(now + 30), 0);
        assert!(m.is_revoked(&of_session(Some(SID))));
        // An entry already expired revokes nothing, even before a purge.
        m.apply(&session("ses_gone", now - 1));
        assert!(!m.is_revoked(&of_session(Some("ses_gone"))));
        assert_eq!(m.purge(now), 1);
        assert_eq!(m.purge(later), 2);
        assert!(m.is_empty() && !m.is_revoked(&of_session(Some(SID))));

        // A snapshot replaces sessions like everything else.
        m.apply(&session("ses_old", later));
        m.replace(&[session(SID, later)]);
        assert!(m.is_revoked(&of_session(Some(SID))));
        assert!(!m.is_revoked(&of_session(Some("ses_old"))));
    }

    #[test]
    fn the_feed_carries_session_entries_into_the_mirror() {
        let later = chrono::Utc::now().timestamp() + 60;
        let page: WirePage = serde_json::from_value(serde_json::json!({
            "entries": [
                {"type": "session", "sid": SID, "expiresAt": later, "seq": 1},
                {"type": "jti", "jti": jti(3), "expiresAt": later, "seq": 2}
            ],
            "cursor": "e.2", "snapshot": true, "reset": true, "more": false
        }))
        .unwrap();
        let m = RevocationMirror::default();
        assert!(!FeedReader::default().absorb(&m, page));
        assert!(m.is_revoked(&of_session(Some(SID))));
        assert!(revoked(&m, &jti(3), "x", 0));
        assert_eq!(m.len(), 2);
    }

    #[cfg(feature = "gateway")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mirror_following_redis_learns_session_entries_at_start_and_live() {
        use crate::store::RevocationStore;
        use crate::store::redis::RedisStore;

        let redis = crate::store::redis::test_server::RedisServer::start();
        let store = RedisStore::connect(&redis.url(), "mir:").await.unwrap();
        let later = chrono::Utc::now().timestamp() + 60;
        let before = "ses_loadedAtStart0000000";
        store
            .revoke(RevocationKind::Session { sid: before.into() }, later)
            .await
            .unwrap();
        let m = RevocationMirror::follow(RevocationSource::Redis {
            url: redis.url(),
            prefix: "mir:".into(),
        });
        let until = |what: &'static str, sid: &'static str| {
            let m = m.clone();
            async move {
                for _ in 0..200 {
                    if m.is_revoked(&of_session(Some(sid))) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                panic!("{what}: {sid} never revoked");
            }
        };
        until("loaded at start", before).await;
        // Subscribed before loading: what is revoked now comes by the channel.
        for _ in 0..200 {
            if !m.is_stale(Duration::from_secs(10)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        for sid in ["ses_publishedLive000000", "legacy-live-session"] {
            store
                .revoke(RevocationKind::Session { sid: sid.into() }, later)
                .await
                .unwrap();
        }
        until("published", "ses_publishedLive000000").await;
        until("published", "legacy-live-session").await;
        assert!(!m.is_revoked(&of_session(Some("ses_neverRevoked"))));
        assert!(!m.is_revoked(&of_session(None)));
        assert_eq!(m.len(), 3);
    }
}
