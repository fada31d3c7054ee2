//! The change channel, read side: following `{prefix}events` for as long as
//! the gateway runs. What is published is a [`ChangeEvent`]; each write
//! publishes its own inside the script or transaction that makes it.

use futures_util::StreamExt;
use std::time::Duration;

use super::{CALL_TIMEOUT, RedisStore, unavailable};
use crate::domain::ChangeEvent;
use crate::store::StoreError;

/// What following the channel reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A change another gateway (or this one) made.
    Event(ChangeEvent),
    /// The subscription was (re)established: anything may have been missed.
    /// Never on the wire: the follower says it after each subscription.
    Resynced,
    /// The subscription ended: changes are missed until `Resynced`.
    /// Never on the wire: the follower says it the moment it notices.
    Lost,
}

impl RedisStore {
    /// Follows the change channel for as long as the process lives,
    /// reconnecting with a short back-off; `apply` gets every change event,
    /// `Lost` when a subscription ends, and `Resynced` after each
    /// (re)subscription, when changes may have been missed. Messages that are not change events this version knows are
    /// skipped.
    pub fn follow_changes(
        url: String,
        prefix: String,
        apply: impl Fn(Change) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let channel = format!("{prefix}events");
            let mut backoff = Duration::from_millis(100);
            loop {
                let attempt = async {
                    let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
                    let mut pubsub = tokio::time::timeout(CALL_TIMEOUT, client.get_async_pubsub())
                        .await
                        .map_err(|_| StoreError::Unavailable("pubsub connect timed out".into()))?
                        .map_err(unavailable)?;
                    pubsub.subscribe(&channel).await.map_err(unavailable)?;
                    Ok::<_, StoreError>(pubsub)
                };
                match attempt.await {
                    Ok(mut pubsub) => {
                        backoff = Duration::from_millis(100);
                        apply(Change::Resynced);
                        let mut stream = pubsub.on_message();
                        while let Some(msg) = stream.next().await {
                            let Ok(payload) = msg.get_payload::<String>() else {
                                continue;
                            };
                            if let Some(e) = ChangeEvent::parse(&payload) {
                                apply(Change::Event(e));
                            }
                        }
                        apply(Change::Lost);
                        tracing::warn!("redis change subscription lost; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "redis change subscription failed; retrying");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        })
    }
}
