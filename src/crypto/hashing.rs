//! argon2id hashing and verification on a bounded blocking pool.
//!
//! argon2 is deliberately slow (tens of ms, 19 MiB each). Run on the actix
//! workers it would stall every request; run without a bound it collapses
//! under load. So at most `concurrency` hashes run at once on tokio's blocking
//! threads, at most `max_queue` more wait, and anything beyond that is
//! refused at once as `Busy` instead of queueing without end.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

use super::random;

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The pool and its queue are full.
    #[error("the hashing pool is saturated")]
    Busy,
    /// Hashing itself failed (bad PHC string, RNG failure, task panic).
    #[error("hashing failed: {0}")]
    Failed(String),
}

/// Bounded argon2id hasher. Cheap to share behind an `Arc`.
pub struct SecretHasher {
    permits: Arc<Semaphore>,
    queued: AtomicUsize,
    max_queue: usize,
    /// A real hash of a random secret: unknown ids are verified against it so
    /// they cost the same time as a wrong secret.
    dummy: Arc<str>,
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretHasher")
            .field("available", &self.permits.available_permits())
            .field("max_queue", &self.max_queue)
            .finish()
    }
}

fn hash_blocking(secret: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    random::fill(&mut salt).map_err(|e| HashError::Failed(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError::Failed(e.to_string()))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

fn verify_blocking(secret: &str, phc: &str) -> bool {
    // The comparison inside `verify_password` is constant-time.
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(secret.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

impl SecretHasher {
    /// A hasher running at most `concurrency` argon2 jobs at once with at most
    /// `max_queue` waiting. Computes its dummy hash once, here.
    pub fn new(concurrency: usize, max_queue: usize) -> Result<Self, HashError> {
        let dummy_secret = random::base62(43).map_err(|e| HashError::Failed(e.to_string()))?;
        let dummy = hash_blocking(&dummy_secret)?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queued: AtomicUsize::new(0),
            max_queue,
            dummy: dummy.into(),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let waiting = self.queued.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.max_queue + self.permits.available_permits() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let permit = self.permits.clone().acquire_owned().await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        let permit = permit.map_err(|_| HashError::Failed("hashing pool closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            out
        })
        .await
        .map_err(|e| HashError::Failed(e.to_string()))
    }

    /// Hashes a secret with argon2id and a random salt (PHC string).
    pub async fn hash(&self, secret: &SecretString) -> Result<String, HashError> {
        let owned = SecretString::from(secret.expose_secret().to_owned());
        self.run(move || hash_blocking(owned.expose_secret()))
            .await?
    }

    /// Checks a secret against a stored hash. With `None` (unknown id) it
    /// verifies against the dummy hash and returns false, so both cases take
    /// the same time.
    pub async fn verify(
        &self,
        secret: &SecretString,
        phc: Option<Arc<str>>,
    ) -> Result<bool, HashError> {
        let owned = SecretString::from(secret.expose_secret().to_owned());
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.dummy.clone());
        let ok = self
            .run(move || verify_blocking(owned.expose_secret(), &phc))
            .await?;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_verify_and_refuse() {
        let h = SecretHasher::new(2, 8).unwrap();
        let s = SecretString::from("correct horse");
        let phc: Arc<str> = h.hash(&s).await.unwrap().into();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(h.verify(&s, Some(phc.clone())).await.unwrap());
        assert!(
            !h.verify(&SecretString::from("wrong"), Some(phc))
                .await
                .unwrap()
        );
        assert!(!h.verify(&s, None).await.unwrap());
        assert!(!h.verify(&s, Some("garbage".into())).await.unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_refused_not_queued() {
        let h = Arc::new(SecretHasher::new(1, 0).unwrap());
        let s = SecretString::from("x");
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let h = h.clone();
            let s = SecretString::from(s.expose_secret().to_owned());
            tasks.push(tokio::spawn(async move { h.verify(&s, None).await }));
        }
        let mut busy = 0;
        for t in tasks {
            if matches!(t.await.unwrap(), Err(HashError::Busy)) {
                busy += 1;
            }
        }
        assert!(busy >= 1, "no request was refused");
    }
}
