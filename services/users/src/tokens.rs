//! Signing keys and tokens.
//!
//! Access tokens are EdDSA (Ed25519) JWTs with a `kid`. Keys are generated on first start,
//! persisted, and rotated: the newest key signs, retired keys stay in the JWKS until every token
//! they signed has expired. Refresh tokens are opaque random strings stored only as SHA-256.

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use ecom_shared::auth::{
    ACCESS_TOKEN_TYPE, AccessClaims, ClaimRole, Role, SERVICE_SUBJECT_PREFIX, TOKEN_ISSUER,
};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet, PublicKeyUse},
};
use prometheus_client::metrics::counter::Counter;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::RwLock;

use crate::repo;

/// The fixed PKCS#8 v1 prefix of an Ed25519 private key; the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

struct Signer {
    kid: String,
    key: EncodingKey,
    created_at: chrono::DateTime<Utc>,
}

struct Keys {
    signer: Option<Signer>,
    jwks: JwkSet,
}

/// The signing keys, cached from the database and shared by every replica through it.
pub struct KeyStore {
    pool: PgPool,
    access_ttl: Duration,
    /// The `aud` of every token signed here (`ECOM_JWT_AUDIENCE`).
    audience: String,
    rotation_interval: Duration,
    keys: RwLock<Arc<Keys>>,
    /// When the keys were last read from the database.
    loaded_at: Mutex<Option<Instant>>,
    /// Reads of the keys from the database (`signing_key_reloads_total`).
    pub reloads: Counter,
}

fn new_key() -> anyhow::Result<(String, Vec<u8>, serde_json::Value)> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    let key = EncodingKey::from_ed_der(&der);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA)?;
    let public = serde_json::to_vec(&jwk.algorithm)?;
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(&public)[..12]);
    jwk.common.key_id = Some(kid.clone());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok((kid, der, serde_json::to_value(&jwk)?))
}

impl KeyStore {
    /// Loads the keys, creating the first one when there is none.
    pub async fn open(
        pool: PgPool,
        access_ttl: Duration,
        audience: String,
        rotation_interval: Duration,
    ) -> anyhow::Result<Self> {
        let store = Self {
            pool,
            access_ttl,
            audience,
            rotation_interval,
            keys: RwLock::new(Arc::new(Keys {
                signer: None,
                jwks: JwkSet { keys: Vec::new() },
            })),
            loaded_at: Mutex::new(None),
            reloads: Counter::default(),
        };
        store.reload().await?;
        if store.keys.read().await.signer.is_none() {
            store.create_key(false).await?;
        }
        Ok(store)
    }

    /// Creates a signing key (retiring the current ones when `rotate`), under a lock so that
    /// replicas starting together create one key, not one each.
    async fn create_key(&self, rotate: bool) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        repo::lock_keys(&mut tx).await?;
        let active = repo::usable_keys(&mut *tx, Utc::now()).await?;
        let has_active = active.iter().any(|k| k.retired_at.is_none());
        if rotate || !has_active {
            if rotate {
                repo::retire_active_keys(&mut *tx).await?;
            }
            let (kid, der, jwk) = new_key()?;
            repo::insert_key(&mut *tx, &kid, &der, &jwk).await?;
            tracing::info!(kid, "created a signing key");
        }
        tx.commit().await?;
        self.reload().await
    }

    /// Re-reads the keys unless they were read less than `min` ago: what an unknown `kid` costs,
    /// so that tokens with made-up `kid`s cannot turn into a database read each. A key rotated
    /// here is in memory at once; one rotated by another replica is seen within `min`.
    pub async fn reload_unless_recent(&self, min: Duration) -> anyhow::Result<()> {
        let recent = self
            .loaded_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < min);
        if recent { Ok(()) } else { self.reload().await }
    }

    /// Re-reads the keys (another replica may have rotated).
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.reloads.inc();
        *self
            .loaded_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let grace = chrono::Duration::from_std(self.access_ttl + Duration::from_secs(300))?;
        let rows = repo::usable_keys(&self.pool, Utc::now() - grace).await?;
        let mut jwks = Vec::with_capacity(rows.len());
        let mut signer = None;
        for row in rows {
            match serde_json::from_value::<Jwk>(row.public_jwk) {
                Ok(jwk) => jwks.push(jwk),
                Err(e) => {
                    tracing::error!(kid = row.kid, error = %e, "stored public key is unreadable")
                }
            }
            // Rows come newest first: the first unretired key signs.
            if signer.is_none() && row.retired_at.is_none() {
                signer = Some(Signer {
                    kid: row.kid,
                    key: EncodingKey::from_ed_der(&row.private_key),
                    created_at: row.created_at,
                });
            }
        }
        *self.keys.write().await = Arc::new(Keys {
            signer,
            jwks: JwkSet { keys: jwks },
        });
        Ok(())
    }

    /// Replaces the signing key now. Tokens signed by the old key keep verifying until they expire.
    pub async fn rotate(&self) -> anyhow::Result<String> {
        self.create_key(true).await?;
        self.active_kid()
            .await
            .ok_or_else(|| anyhow::anyhow!("no signing key after rotation"))
    }

    /// Rotates when the signing key is older than the rotation interval.
    pub async fn rotate_if_due(&self) -> anyhow::Result<()> {
        self.reload().await?;
        let due = match &self.keys.read().await.signer {
            Some(s) => {
                (Utc::now() - s.created_at).to_std().unwrap_or_default() > self.rotation_interval
            }
            None => true,
        };
        if due {
            self.rotate().await?;
        }
        Ok(())
    }

    pub async fn active_kid(&self) -> Option<String> {
        self.keys
            .read()
            .await
            .signer
            .as_ref()
            .map(|s| s.kid.clone())
    }

    /// The public keys (JWKS document).
    pub async fn jwks(&self) -> JwkSet {
        self.keys.read().await.jwks.clone()
    }

    /// Signs an access token for a user; returns the token and its lifetime in seconds.
    pub async fn issue_access(&self, user_id: i64, role: Role) -> anyhow::Result<(String, u64)> {
        self.sign(user_id.to_string(), role.into()).await
    }

    /// Signs a service token (`role: service`, `sub: service:<name>`).
    pub async fn issue_service(&self, service: &str) -> anyhow::Result<(String, u64)> {
        self.sign(
            format!("{SERVICE_SUBJECT_PREFIX}{service}"),
            ClaimRole::Service,
        )
        .await
    }

    async fn sign(&self, sub: String, role: ClaimRole) -> anyhow::Result<(String, u64)> {
        let keys = self.keys.read().await.clone();
        let signer = keys
            .signer
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no signing key"))?;
        let now = Utc::now().timestamp();
        let ttl = self.access_ttl.as_secs();
        let claims = AccessClaims {
            sub,
            role,
            iat: now,
            exp: now + i64::try_from(ttl)?,
            jti: uuid::Uuid::new_v4().to_string(),
            typ: ACCESS_TOKEN_TYPE.to_owned(),
            iss: TOKEN_ISSUER.to_owned(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.kid.clone());
        header.typ = Some("at+jwt".to_owned());
        Ok((jsonwebtoken::encode(&header, &claims, &signer.key)?, ttl))
    }
}

/// A new opaque refresh token and the hash under which it is stored.
pub fn new_refresh_token() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

pub fn hash_refresh_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_a_stable_kid_and_public_jwk() {
        let (kid, der, jwk) = new_key().expect("key");
        assert_eq!(der.len(), 48);
        assert_eq!(jwk["kid"], kid);
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["crv"], "Ed25519");
        assert!(
            jwk.get("d").is_none(),
            "the private part must never be in the JWK"
        );
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, ha) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(ha, hash_refresh_token(&a));
        assert_eq!(ha.len(), 32);
    }
}
