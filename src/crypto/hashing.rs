//! argon2id hashing and verification on a bounded blocking pool.
//!
//! argon2 is deliberately slow (tens of ms, 19 MiB each). Run on the actix
//! workers it would stall every request; run without a bound it collapses
//! under load. So at most `concurrency` hashes run at once on tokio's blocking
//! threads, at most `max_queue` more wait, and anything beyond that is
//! refused at once as `Busy` instead of queueing without end.
//!
//! Memory: each running hash owns one slot buffer of argon2 blocks, and the
//! buffers are kept and reused rather than allocated per run. Allocating
//! 19 MiB per run on many blocking threads let glibc's dynamic mmap threshold
//! move those buffers into per-thread arenas that are never given back (GiBs
//! after a few hundred cold exchanges). With reuse, resident memory is bounded
//! by `concurrency` x 19 MiB plus the base, whatever the allocator does; a
//! slot's buffer is allocated on its first use.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::random;

/// Blocks in one slot buffer: what `Argon2::default()` (m = 19 MiB) needs.
const SLOT_BLOCKS: usize = Params::DEFAULT.block_count();

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
    queued: Arc<AtomicUsize>,
    max_queue: usize,
    concurrency: usize,
    /// Where the time a job waited for a slot is recorded (metrics on).
    wait: Option<prometheus::Histogram>,
    /// Idle slot buffers. A buffer is taken only while holding a permit, so
    /// at most `concurrency` of them ever exist.
    slots: Arc<Slots>,
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

/// The argon2 block buffers of the hashing slots, kept between runs.
#[derive(Default)]
struct Slots {
    idle: Mutex<Vec<Vec<Block>>>,
}

impl Slots {
    fn take(self: &Arc<Self>) -> Lease {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        Lease {
            slots: self.clone(),
            blocks: idle.unwrap_or_else(|| vec![Block::new(); SLOT_BLOCKS]),
        }
    }
}

/// A slot buffer on loan for one run; goes back to the pool on drop, even
/// when the run panics.
struct Lease {
    slots: Arc<Slots>,
    blocks: Vec<Block>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut blocks = std::mem::take(&mut self.blocks);
        // The blocks are derived from the secret. Left in a long-lived
        // buffer they stay readable (core dump, swap) until the next run, and
        // memory a password hash leaves behind is what garbage-collector
        // attacks feed on; the argon2 reference implementation wipes it too.
        // Cost: a 19 MiB memset, about a tenth of a run. The compiler cannot
        // drop it as a dead store: the buffer lives on in the pool.
        blocks.fill(Block::new());
        self.slots
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(blocks);
    }
}

fn failed(e: impl std::fmt::Display) -> HashError {
    HashError::Failed(e.to_string())
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), exactly what
/// `PasswordHasher::hash_password` of `Argon2::default()` writes for `salt`,
/// computed in the slot's `blocks`.
fn hash_with(blocks: &mut [Block], secret: &[u8], salt: &[u8]) -> Result<String, HashError> {
    let argon2 = Argon2::default();
    let params = argon2.params();
    let salt_b64 = SaltString::encode_b64(salt).map_err(failed)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2
        .hash_password_into_with_memory(secret, salt, &mut out, blocks)
        .map_err(failed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(failed)?,
        salt: Some(salt_b64.as_salt()),
        hash: Some(Output::new(&out).map_err(failed)?),
    };
    Ok(phc.to_string())
}

fn hash_blocking(blocks: &mut [Block], secret: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    random::fill(&mut salt).map_err(failed)?;
    hash_with(blocks, secret.as_bytes(), &salt)
}

/// Recomputes `phc` with its own algorithm, version, params, salt and output
/// length in the slot's `blocks`, and compares in constant time. A string
/// that does not parse is a mismatch, as `PasswordVerifier` treats it; a
/// hash needing more memory than a slot is an error, not a silent mismatch
/// and not an allocation outside the bound.
fn verify_blocking(blocks: &mut [Block], secret: &str, phc: &str) -> Result<bool, HashError> {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return Ok(false);
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return Ok(false);
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return Ok(false),
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return Ok(false);
    };
    if params.block_count() > blocks.len() {
        return Err(HashError::Failed(format!(
            "a stored hash needs {} KiB of argon2 memory, a hashing slot holds {} KiB",
            params.m_cost(),
            blocks.len()
        )));
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return Ok(false);
    };
    let mut out_buf = [0u8; Output::MAX_LENGTH];
    let Some(out) = out_buf.get_mut(..expected.len()) else {
        return Ok(false);
    };
    if Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(secret.as_bytes(), salt, out, blocks)
        .is_err()
    {
        return Ok(false);
    }
    Ok(out.ct_eq(expected.as_bytes()).into())
}

impl SecretHasher {
    /// A hasher running at most `concurrency` argon2 jobs at once with at most
    /// `max_queue` waiting. Computes its dummy hash once, here, in what then
    /// becomes the first slot buffer.
    pub fn new(concurrency: usize, max_queue: usize) -> Result<Self, HashError> {
        let dummy_secret = random::base62(43).map_err(failed)?;
        let slots = Arc::new(Slots::default());
        let dummy = {
            let mut lease = slots.take();
            hash_blocking(&mut lease.blocks, &dummy_secret)?
        };
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queued: Arc::new(AtomicUsize::new(0)),
            max_queue,
            concurrency: concurrency.max(1),
            wait: None,
            slots,
            dummy: dummy.into(),
        })
    }

    /// Records in `wait` how long each job waits for a slot (`None`: not
    /// recorded, and no clock is read).
    pub fn with_wait_histogram(mut self, wait: Option<prometheus::Histogram>) -> Self {
        self.wait = wait;
        self
    }

    /// A handle that reads the pool's load, for gauges.
    pub fn load(&self) -> HashLoad {
        HashLoad {
            permits: self.permits.clone(),
            queued: self.queued.clone(),
            concurrency: self.concurrency,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let waiting = self.queued.fetch_add(1, Ordering::AcqRel);
        if waiting >= self.max_queue + self.permits.available_permits() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let asked = self.wait.as_ref().map(|_| std::time::Instant::now());
        let permit = self.permits.clone().acquire_owned().await;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        if let (Some(h), Some(t)) = (&self.wait, asked) {
            h.observe(t.elapsed().as_secs_f64());
        }
        let permit = permit.map_err(|_| HashError::Failed("hashing pool closed".into()))?;
        let slots = self.slots.clone();
        tokio::task::spawn_blocking(move || {
            let mut lease = slots.take();
            let out = job(&mut lease.blocks);
            // The buffer goes back before the permit, so the next permit
            // holder finds it instead of allocating another one.
            drop(lease);
            drop(permit);
            out
        })
        .await
        .map_err(failed)
    }

    /// Hashes a secret with argon2id and a random salt (PHC string).
    pub async fn hash(&self, secret: &SecretString) -> Result<String, HashError> {
        let owned = SecretString::from(secret.expose_secret().to_owned());
        self.run(move |blocks| hash_blocking(blocks, owned.expose_secret()))
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
            .run(move |blocks| verify_blocking(blocks, owned.expose_secret(), &phc))
            .await??;
        Ok(ok && known)
    }
}

/// The load of a [`SecretHasher`], read without locking.
#[derive(Clone)]
pub struct HashLoad {
    permits: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    concurrency: usize,
}

impl std::fmt::Debug for HashLoad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashLoad")
            .field("running", &self.running())
            .field("queued", &self.queued())
            .finish()
    }
}

impl HashLoad {
    /// Jobs holding a slot now.
    pub fn running(&self) -> usize {
        self.concurrency
            .saturating_sub(self.permits.available_permits())
    }

    /// Jobs waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
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

    fn buffer() -> Vec<Block> {
        vec![Block::new(); SLOT_BLOCKS]
    }

    #[test]
    fn the_phc_string_is_the_one_password_hasher_writes() {
        use argon2::password_hash::PasswordHasher;
        let salt = [7u8; 16];
        let old = Argon2::default()
            .hash_password(b"s3cret", &SaltString::encode_b64(&salt).unwrap())
            .unwrap()
            .to_string();
        let new = hash_with(&mut buffer(), b"s3cret", &salt).unwrap();
        assert_eq!(old, new);
        assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{new}");
    }

    #[test]
    fn old_hashes_verify_with_the_new_code_and_back() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut blocks = buffer();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let old = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(verify_blocking(&mut blocks, "correct horse", &old).unwrap());
        assert!(!verify_blocking(&mut blocks, "correct horsf", &old).unwrap());

        let new = hash_blocking(&mut blocks, "battery staple").unwrap();
        let parsed = PasswordHash::new(&new).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"battery staple", &parsed)
                .is_ok()
        );
        assert!(Argon2::default().verify_password(b"x", &parsed).is_err());
    }

    #[test]
    fn smaller_params_use_part_of_the_slot_and_larger_ones_are_refused() {
        use argon2::password_hash::PasswordHasher;
        let mut blocks = buffer();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        // Several lanes, other costs, a 64-byte output, argon2i.
        let small = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(4096, 3, 2, Some(64)).unwrap(),
        )
        .hash_password(b"pw", &salt)
        .unwrap()
        .to_string();
        assert!(verify_blocking(&mut blocks, "pw", &small).unwrap());
        assert!(!verify_blocking(&mut blocks, "pv", &small).unwrap());

        let big = small.replace("m=4096", "m=65536");
        assert!(matches!(
            verify_blocking(&mut blocks, "pw", &big),
            Err(HashError::Failed(_))
        ));
        assert!(!verify_blocking(&mut blocks, "pw", "$argon2id$v=19$garbage").unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffers_are_bounded_by_concurrency_reused_and_wiped() {
        let h = Arc::new(SecretHasher::new(2, 64).unwrap());
        let s = SecretString::from("s");
        let phc: Arc<str> = h.hash(&s).await.unwrap().into();
        let mut tasks = Vec::new();
        for i in 0..12 {
            let (h, phc) = (h.clone(), phc.clone());
            let s = SecretString::from(if i % 2 == 0 { "s" } else { "t" });
            tasks.push(tokio::spawn(async move {
                if i % 3 == 0 {
                    h.hash(&s).await.map(|_| true)
                } else {
                    h.verify(&s, Some(phc)).await
                }
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(h.verify(&s, Some(phc)).await.unwrap());
        let idle = h.slots.idle.lock().unwrap();
        assert!(
            !idle.is_empty() && idle.len() <= 2,
            "{} buffers",
            idle.len()
        );
        for blocks in idle.iter() {
            assert_eq!(blocks.len(), SLOT_BLOCKS);
            assert!(blocks.iter().all(|b| b.as_ref().iter().all(|w| *w == 0)));
        }
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
