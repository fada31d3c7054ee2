//! Concurrent verifications of one presented secret share one argon2 run.
//!
//! Without this, N connections presenting a secret that is not yet in the
//! verified-secret cache each run argon2 (measured: 64 connections at start
//! queued for up to 1.3 s on two cores). Keyed by the secret's peppered HMAC
//! and the stored hash it is checked against, so only identical work is
//! shared; the outcome is the same for every sharer.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// What a shared verification concluded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The secret matches (`true`) or not (`false`).
    Checked(bool),
    /// The hashing pool was saturated.
    Busy,
    /// Hashing failed; the detail is for the log.
    Failed(String),
}

type Slot = (Arc<str>, Arc<OnceCell<Outcome>>);

/// Verifications in progress.
#[derive(Default)]
pub struct Inflight {
    running: Mutex<HashMap<[u8; 32], Slot>>,
}

impl Inflight {
    /// Runs `work` once for every concurrent caller with the same `digest`
    /// and `hash`; the others wait for its outcome.
    pub async fn share<F, Fut>(&self, digest: [u8; 32], hash: Arc<str>, work: F) -> Outcome
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Outcome>,
    {
        let cell = {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            match running.get(&digest) {
                Some((h, cell)) if **h == *hash => cell.clone(),
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    running.insert(digest, (hash, cell.clone()));
                    cell
                }
            }
        };
        let outcome = cell.get_or_init(work).await.clone();
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running
            .get(&digest)
            .is_some_and(|(_, c)| Arc::ptr_eq(c, &cell))
        {
            running.remove(&digest);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_run() {
        let inflight = Arc::new(Inflight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (inflight, runs) = (inflight.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                inflight
                    .share([1; 32], Arc::from("hash"), || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        Outcome::Checked(true)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Outcome::Checked(true));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Another hash is other work.
        let other = inflight
            .share([1; 32], Arc::from("other"), || async {
                Outcome::Checked(false)
            })
            .await;
        assert_eq!(other, Outcome::Checked(false));
        assert!(
            inflight.running.lock().unwrap().is_empty(),
            "finished work is forgotten"
        );
    }
}
