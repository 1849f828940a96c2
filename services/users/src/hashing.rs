//! Password hashing with Argon2id at OWASP's minimum (m = 19 MiB, t = 2, p = 1), off the async
//! runtime and bounded in concurrency (each hash holds 19 MiB).

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher, PasswordVerifier},
};
use tokio::sync::Semaphore;

use crate::domain::Password;

pub struct Hasher {
    argon: Argon2<'static>,
    /// Verified against when the e-mail is unknown, so both failures take the same time.
    dummy_hash: String,
    permits: Semaphore,
}

impl Hasher {
    pub fn new() -> anyhow::Result<Arc<Self>> {
        let params =
            Params::new(19_456, 2, 1, None).map_err(|e| anyhow::anyhow!("argon2 params: {e}"))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy_hash = argon
            .hash_password(b"a password nobody has: it only spends time")
            .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
            .to_string();
        let permits = std::thread::available_parallelism().map_or(2, |n| n.get() * 2);
        Ok(Arc::new(Self {
            argon,
            dummy_hash,
            permits: Semaphore::new(permits),
        }))
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(self: &Arc<Self>, password: Password) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            this.argon
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        })
        .await?
    }

    /// Verifies a password against a stored hash, or against the dummy hash when there is none
    /// (an unknown e-mail), so the two failures cannot be told apart by timing.
    pub async fn verify(
        self: &Arc<Self>,
        password: Password,
        stored: Option<String>,
    ) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let known = stored.is_some();
            let hash = stored.unwrap_or_else(|| this.dummy_hash.clone());
            let ok = this
                .argon
                .verify_password(password.expose().as_bytes(), hash.as_str())
                .is_ok();
            ok && known
        })
        .await
        .map_err(Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_use_owasp_parameters() {
        let hasher = Hasher::new().expect("hasher");
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
}
