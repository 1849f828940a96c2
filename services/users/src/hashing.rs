//! Password hashing with Argon2id at OWASP's minimum (m = 19 MiB, t = 2, p = 1), off the async
//! runtime and bounded twice: in how many hashes run at once (each holds 19 MiB and a core) and
//! in how many may wait for a slot. A request beyond both is refused at once
//! ([`HashError::Saturated`], answered 503 with `Retry-After`): an unbounded queue would let a
//! burst of registrations or logins delay every other login without limit.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, PasswordVerifier},
};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

use crate::domain::Password;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every slot is running and the queue is full.
    #[error("the password hasher is saturated")]
    Saturated,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

pub struct Hasher {
    argon: Argon2<'static>,
    /// Verified against when the e-mail is unknown, so both failures take the same time.
    dummy_hash: String,
    /// Hashes allowed to run at once.
    running: Arc<Semaphore>,
    /// Hashes running or waiting to run: `concurrency + queue` permits, taken without waiting.
    admitted: Arc<Semaphore>,
    /// `password_hashes_rejected_total`: requests refused because the hasher was saturated.
    rejected: Counter,
}

impl Hasher {
    /// A hasher running at most `concurrency` hashes, with at most `queue` more waiting.
    pub fn new(concurrency: usize, queue: usize, rejected: Counter) -> anyhow::Result<Arc<Self>> {
        let params =
            Params::new(19_456, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon
            .hash_password(b"a password nobody has: it only spends time")
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string();
        let concurrency = concurrency.max(1);
        Ok(Arc::new(Self {
            argon,
            dummy_hash,
            running: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(concurrency.saturating_add(queue))),
            rejected,
        }))
    }

    /// Runs `work` on the blocking pool once a slot is free, or refuses at once when every slot
    /// is taken and the queue is full.
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Self) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let Ok(admitted) = self.admitted.clone().try_acquire_owned() else {
            self.rejected.inc();
            return Err(HashError::Saturated);
        };
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(anyhow::Error::from)?;
        let this = self.clone();
        // The permits travel with the work: a caller that goes away while its hash runs does
        // not free a slot the CPU is still busy with.
        tokio::task::spawn_blocking(move || {
            let _permits = (admitted, running);
            work(&this)
        })
        .await
        .map_err(|e| HashError::Failed(e.into()))
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(self: &Arc<Self>, password: Password) -> Result<String, HashError> {
        self.run(move |this| {
            this.argon
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
        .map_err(HashError::Failed)
    }

    /// Verifies a password against a stored hash, or against the dummy hash when there is none
    /// (an unknown e-mail), so the two failures cannot be told apart by timing.
    pub async fn verify(
        self: &Arc<Self>,
        password: Password,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        self.run(move |this| {
            let known = stored.is_some();
            let hash = stored.as_deref().unwrap_or(&this.dummy_hash);
            let ok = this
                .argon
                .verify_password(password.expose().as_bytes(), hash)
                .is_ok();
            ok && known
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_use_owasp_parameters() {
        let hasher = Hasher::new(2, 4, Counter::default()).expect("hasher");
        let pw = Password::parse_new("correct horse").expect("pw");
        let hash = hasher.hash(pw.clone()).await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify(pw, Some(hash.clone())).await.expect("verify"));
        let wrong = Password::parse_any("wrong horse").expect("pw");
        assert!(
            !hasher
                .verify(wrong.clone(), Some(hash))
                .await
                .expect("verify")
        );
        assert!(!hasher.verify(wrong, None).await.expect("dummy verify"));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_and_counts_it() {
        let rejected = Counter::default();
        let hasher = Hasher::new(1, 1, rejected.clone()).expect("hasher");
        // Occupy the one slot, so the next hashes wait.
        let slot = hasher.running.clone().try_acquire_owned().expect("slot");
        let pw = Password::parse_new("correct horse").expect("pw");
        let waiting: Vec<_> = (0..2)
            .map(|_| {
                let (hasher, pw) = (hasher.clone(), pw.clone());
                tokio::spawn(async move { hasher.hash(pw).await })
            })
            .collect();
        while hasher.admitted.available_permits() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Slot taken, queue full: refused without waiting.
        let refused = tokio::time::timeout(Duration::from_millis(100), hasher.hash(pw.clone()))
            .await
            .expect("refused at once, not queued");
        assert!(matches!(refused, Err(HashError::Saturated)), "{refused:?}");
        assert!(matches!(
            hasher.verify(pw.clone(), None).await,
            Err(HashError::Saturated)
        ));
        assert_eq!(rejected.get(), 2);
        // The waiting ones complete once the slot frees, and the hasher admits again.
        drop(slot);
        for w in waiting {
            w.await.expect("task").expect("hashed");
        }
        hasher.hash(pw).await.expect("admitted again");
        assert_eq!(rejected.get(), 2);
    }
}
