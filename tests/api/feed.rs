//! The revocation feed followed by a verifier when it holds many pages: the
//! verifier counts itself fresh only once caught up, knows when it is behind
//! (and then fails closed), and refuses exactly the revoked tokens.
//!
//! The feed is filled straight through a second handle on the gateway's
//! Redis store, so thousands of entries cost a fraction of a second.

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tessera::domain::RevocationKind;
use tessera::store::RevocationStore;
use tessera::store::redis::RedisStore;
use tessera::verifier::mirror::{FeedPaging, RevocationMirror};
use tessera::verifier::{RevocationSource, Verifier, VerifierConfig, VerifyError};

use crate::helpers::*;
use crate::redis_server::RedisServer;

struct Setup {
    gw: TestApp,
    store: RedisStore,
    /// The feed reader's credentials (an application holding
    /// `tokens:introspect`).
    reader: (String, String),
    /// An application whose tokens the verifier checks.
    app: (String, String),
    _redis: RedisServer,
}

async fn setup() -> Setup {
    let redis = RedisServer::start();
    let prefix = format!("f{}:", tessera::crypto::random::base62(8).unwrap());
    let gw = spawn_with(|s| {
        s.redis_url = Some(redis.url());
        s.redis_prefix = prefix.clone();
    })
    .await;
    let store = RedisStore::connect(&redis.url(), &prefix).await.unwrap();
    let (reader, reader_secret) = gw
        .create_app(json!({"name": "feed-reader", "permissions": ["tokens:introspect"]}))
        .await;
    let (app, secret) = gw
        .create_app(json!({"name": "ci", "audiences": ["cluster-api"],
            "accessRules": [{"scope": "cluster:c1", "permissions": ["workloads:read"]}]}))
        .await;
    Setup {
        store,
        reader: (reader["id"].as_str().unwrap().to_owned(), reader_secret),
        app: (app["id"].as_str().unwrap().to_owned(), secret),
        gw,
        _redis: redis,
    }
}

impl Setup {
    fn source(&self, every: Duration) -> RevocationSource {
        RevocationSource::Feed {
            gateway_url: self.gw.address.clone(),
            app_id: self.reader.0.clone(),
            app_secret: self.reader.1.clone().into(),
            every,
        }
    }

    fn config(&self, source: RevocationSource) -> VerifierConfig {
        VerifierConfig::new(
            &self.gw.address,
            &self.gw.issuer_hint(),
            "cluster-api",
            source,
        )
    }

    async fn token(&self) -> String {
        let res = self
            .gw
            .post_json(
                "/api/v1/token",
                &json!({"AppSecret": self.app.1, "audience": "cluster-api"}),
            )
            .await;
        assert_eq!(res.status(), 200);
        res.json::<Value>().await.unwrap()["accessToken"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Revokes `token` through the API, as its own client.
    async fn revoke(&self, token: &str) {
        let res = self
            .gw
            .client
            .post(self.gw.url("/oauth/revoke"))
            .basic_auth(&self.app.0, Some(&self.app.1))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    /// `n` entries for tokens nobody holds.
    async fn flood(&self, tag: &str, n: usize) {
        let exp = chrono::Utc::now().timestamp() + 300;
        for i in 0..n {
            let kind = RevocationKind::Jti {
                jti: format!("flood-{tag}-{i}"),
            };
            // On a loaded machine a call can outlast the store's deadline
            // (503 to a caller); the test retries, as a caller would, and a
            // retry may find the entry its slow first attempt wrote
            // (appended false): what matters is that the entry is there.
            let stored = loop {
                match self.store.revoke(kind.clone(), exp).await {
                    Ok(s) => break s,
                    Err(tessera::store::StoreError::Unavailable(_)) => {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("revoke: {e}"),
                }
            };
            assert_eq!(stored.entry.kind, kind);
        }
    }
}

fn refused_as_revoked(r: &Result<tessera::verifier::VerifiedToken, VerifyError>) -> bool {
    matches!(r, Err(VerifyError::Revoked))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_catches_up_over_many_pages_and_refuses_what_it_should() {
    let s = setup().await;
    let keep = s.token().await;
    let gone = s.token().await;
    // Two and a half default pages, the revoked token on the last one.
    s.flood("a", 2_500).await;
    s.revoke(&gone).await;

    let verifier = Verifier::start(s.config(s.source(Duration::from_millis(200))))
        .await
        .unwrap();
    // Until it has read every page it is stale: the revoked token is never
    // accepted, not even while the first pages are in.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = verifier.verify(&gone).await;
        assert!(r.is_err(), "accepted a revoked token before catching up");
        if verifier.verify(&keep).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "never caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused_as_revoked(&verifier.verify(&gone).await));
    let mirror = verifier.mirror().unwrap();
    assert!(mirror.len() >= 2_501, "{}", mirror.len());
    assert!(!mirror.is_behind());

    // A flood of more than a page while it follows: it catches up, and the
    // token revoked after the flood is refused.
    let gone_later = s.token().await;
    s.flood("b", 2_500).await;
    s.revoke(&gone_later).await;
    let start = Instant::now();
    while !refused_as_revoked(&verifier.verify(&gone_later).await) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the later revocation never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(mirror.len() >= 5_002, "{}", mirror.len());
    assert!(refused_as_revoked(&verifier.verify(&gone).await));
    let deadline = Instant::now() + Duration::from_secs(5);
    while verifier.verify(&keep).await.is_err() {
        assert!(Instant::now() < deadline, "the live token stays refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_that_falls_behind_knows_it_and_fails_closed_until_caught_up() {
    let s = setup().await;
    let keep = s.token().await;
    let gone = s.token().await;
    let jwks =
        s.gw.client
            .get(s.gw.url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    // One entry a page, one page a poll: any backlog leaves it behind.
    let mirror = RevocationMirror::follow_with(
        s.source(Duration::from_millis(100)),
        FeedPaging {
            page_size: 1,
            max_pages_per_poll: 1,
        },
    );
    let verifier = Verifier::with_fixed_keys(
        s.config(RevocationSource::Disabled),
        &jwks,
        Some(Arc::clone(&mirror)),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while verifier.verify(&keep).await.is_err() {
        assert!(Instant::now() < deadline, "never fresh");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    s.flood("c", 200).await;
    s.revoke(&gone).await;
    let mut saw_behind = false;
    let mut saw_stale = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if mirror.is_behind() {
            saw_behind = true;
            // Behind means stale, however recently it heard from the feed.
            match verifier.verify(&keep).await {
                Err(VerifyError::Stale) => saw_stale = true,
                // It may have caught up between the two looks.
                other => assert!(!mirror.is_behind(), "{other:?}"),
            }
        }
        if saw_behind && refused_as_revoked(&verifier.verify(&gone).await) {
            break;
        }
        assert!(Instant::now() < deadline, "never caught up");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(saw_stale, "a mirror behind its feed must fail closed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while verifier.verify(&keep).await.is_err() {
        assert!(Instant::now() < deadline, "fresh again once caught up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!mirror.is_behind());
    assert!(mirror.len() >= 201, "{}", mirror.len());
}
