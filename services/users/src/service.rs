//! The Users domain: every rule lives here, behind plain Rust calls. HTTP handlers and the gRPC
//! servicer only translate to and from these.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use ecom_shared::{
    FieldError,
    auth::{AuthError, CurrentUser},
    config::Secret,
    metrics::Metrics,
    ratelimit::{Decision, RateLimiter},
    redis::Redis,
};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    domain::{Email, FullName, Page, Password, Register, Role, UpdateProfile, User},
    error::{Error, Result},
    hashing::Hasher,
    repo,
    tokens::{self, KeyStore},
};

/// A freshly issued pair of tokens.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
}

/// Changes only an admin may make.
#[derive(Default)]
pub struct AdminChange {
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

pub struct UsersService {
    pool: PgPool,
    hasher: Arc<Hasher>,
    pub keys: Arc<KeyStore>,
    redis: Arc<Redis>,
    login_limiter: RateLimiter,
    register_limiter: RateLimiter,
    metrics: Arc<Metrics>,
    refresh_ttl: Duration,
    service_credentials: Vec<(&'static str, Secret)>,
}

fn collect<T>(errors: &mut Vec<FieldError>, field: &str, r: Result<T, &'static str>) -> Option<T> {
    r.map_err(|m| errors.push(FieldError::new(field, m))).ok()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

impl UsersService {
    #[expect(
        clippy::too_many_arguments,
        reason = "the service's dependencies, wired once in lib.rs"
    )]
    pub fn new(
        pool: PgPool,
        hasher: Arc<Hasher>,
        keys: Arc<KeyStore>,
        redis: Arc<Redis>,
        login_limiter: RateLimiter,
        register_limiter: RateLimiter,
        metrics: Arc<Metrics>,
        refresh_ttl: Duration,
        service_credentials: Vec<(&'static str, Secret)>,
    ) -> Self {
        Self {
            pool,
            hasher,
            keys,
            redis,
            login_limiter,
            register_limiter,
            metrics,
            refresh_ttl,
            service_credentials,
        }
    }

    /// A service token for `service`, given that service's own credential: a credential mints
    /// only its own service's name, and a service with no credential (the gateway, Products,
    /// Users, any other name) gets none. The comparison takes the same time wherever the
    /// secrets differ, and an unknown name costs the same as a wrong secret.
    pub async fn issue_service_token(&self, service: &str, secret: &str) -> Result<(String, u64)> {
        let digest = |s: &str| Sha256::digest(s.as_bytes());
        let given = digest(secret);
        let credential = self
            .service_credentials
            .iter()
            .find(|(name, _)| *name == service);
        // An unknown name is compared with a random value, never equal.
        let expected = match credential {
            Some((_, s)) => digest(s.expose()),
            None => digest(&uuid::Uuid::new_v4().to_string()),
        };
        let same = expected
            .iter()
            .zip(given.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if credential.is_none() || !same {
            tracing::warn!(
                service = service.chars().take(32).collect::<String>(),
                "service token refused: no such service identity or a wrong credential"
            );
            return Err(Error::Auth(AuthError::Invalid));
        }
        Ok(self.keys.issue_service(service).await?)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Creates an account. The role is always `user`, whatever the client sent. Each valid
    /// attempt spends one unit of the client's registration budget before the password is hashed.
    #[tracing::instrument(skip_all, fields(client_ip = %client_ip))]
    pub async fn register(&self, command: Register, client_ip: &str) -> Result<User> {
        let Register {
            email,
            password,
            full_name,
        } = command;
        self.throttle_registration(client_ip).await?;
        let hash = self.hasher.hash(password).await?;
        match repo::insert_user(
            &self.pool,
            email.as_str(),
            &hash,
            full_name.as_str(),
            Role::User,
        )
        .await
        {
            Ok(user) => {
                tracing::info!(user_id = user.id, "user registered");
                Ok(user)
            }
            Err(e) if is_unique_violation(&e) => Err(Error::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// Throttles login attempts per (client IP, e-mail) pair, across replicas. Fails closed: when
    /// the limiter's store is down, logins are refused with 503 rather than left unthrottled.
    async fn throttle_login(&self, ip: &str, email: &str) -> Result<()> {
        match self
            .login_limiter
            .check(&self.redis, &format!("{ip}|{email}"))
            .await
        {
            Ok(Decision::Allowed { .. }) => Ok(()),
            Ok(Decision::Limited { retry_after_ms }) => {
                self.metrics.count_rate_limited("login");
                Err(Error::RateLimited {
                    retry_after_secs: retry_after_ms.div_ceil(1000),
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "login rate limiter unavailable");
                Err(Error::Unavailable("login"))
            }
        }
    }

    /// Throttles registrations per client IP, across replicas: each one costs a password hash,
    /// so an unthrottled client could keep the hasher busy (and create accounts in bulk). Fails
    /// open when Redis is down (logged): registration is not a guessing target, and the
    /// hasher's bounded queue still caps the work.
    async fn throttle_registration(&self, ip: &str) -> Result<()> {
        let check = self.register_limiter.check(&self.redis, ip);
        match tokio::time::timeout(Duration::from_millis(500), check).await {
            Ok(Ok(Decision::Allowed { .. })) => Ok(()),
            Ok(Ok(Decision::Limited { retry_after_ms })) => {
                self.metrics.count_rate_limited("register");
                Err(Error::RateLimited {
                    retry_after_secs: retry_after_ms.div_ceil(1000),
                })
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "registration rate limiter unavailable: not throttled");
                Ok(())
            }
            Err(_) => {
                tracing::warn!("registration rate limiter timed out: not throttled");
                Ok(())
            }
        }
    }

    /// Checks credentials and issues a token pair. Unknown e-mail, wrong password and inactive
    /// account all give the same answer, in about the same time.
    #[tracing::instrument(skip_all, fields(client_ip = %client_ip))]
    pub async fn login(&self, email: &str, password: &str, client_ip: &str) -> Result<TokenPair> {
        let mut errors = Vec::new();
        if email.trim().is_empty() {
            errors.push(FieldError::new("email", "is required"));
        } else if email.len() > 254 {
            // Also bounds the rate limiter's Redis key.
            errors.push(FieldError::new("email", "must be at most 254 characters"));
        }
        let password = collect(&mut errors, "password", Password::parse_any(password));
        let Some(password) = password.filter(|_| errors.is_empty()) else {
            return Err(Error::Validation(errors));
        };
        let normalised = email.trim().to_lowercase();
        self.throttle_login(client_ip, &normalised).await?;
        let found = match Email::parse(&normalised) {
            Ok(e) => repo::credentials_by_email(&self.pool, e.as_str()).await?,
            Err(_) => None,
        };
        let (user, hash) = match found {
            Some((u, h)) => (Some(u), Some(h)),
            None => (None, None),
        };
        let ok = self.hasher.verify(password, hash).await?;
        match user {
            Some(user) if ok && user.is_active => self.issue_pair(&user, Uuid::new_v4()).await,
            _ => Err(Error::InvalidCredentials),
        }
    }

    async fn issue_pair(&self, user: &User, family: Uuid) -> Result<TokenPair> {
        let (refresh_token, hash) = tokens::new_refresh_token();
        let expires_at = Utc::now()
            + chrono::Duration::from_std(self.refresh_ttl).map_err(anyhow::Error::from)?;
        repo::insert_refresh(&self.pool, &hash, user.id, family, expires_at).await?;
        let (access_token, expires_in) = self.keys.issue_access(user.id, user.role).await?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            expires_in,
        })
    }

    /// Rotates a refresh token. Presenting one that was already used revokes its whole family:
    /// either the legitimate client or a thief holds a copy, and we cannot tell which.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        if refresh_token.is_empty() || refresh_token.len() > 512 {
            return Err(Error::field("refresh_token", "is required"));
        }
        let hash = tokens::hash_refresh_token(refresh_token);
        let mut tx = self.pool.begin().await?;
        let row = repo::lock_refresh(&mut tx, &hash)
            .await?
            .ok_or(Error::InvalidRefreshToken)?;
        if row.used_at.is_some() || row.revoked_at.is_some() {
            let revoked = repo::revoke_family(&mut *tx, row.family_id).await?;
            tx.commit().await?;
            tracing::warn!(
                user_id = row.user_id,
                revoked,
                "refresh token reused: family revoked"
            );
            return Err(Error::InvalidRefreshToken);
        }
        if row.expires_at <= Utc::now() {
            return Err(Error::InvalidRefreshToken);
        }
        let user = repo::get_user(&mut *tx, row.user_id)
            .await?
            .filter(|u| u.is_active);
        let Some(user) = user else {
            repo::revoke_family(&mut *tx, row.family_id).await?;
            tx.commit().await?;
            return Err(Error::InvalidRefreshToken);
        };
        repo::mark_refresh_used(&mut *tx, row.id).await?;
        let (new_token, new_hash) = tokens::new_refresh_token();
        repo::insert_refresh(&mut *tx, &new_hash, user.id, row.family_id, row.expires_at).await?;
        tx.commit().await?;
        let (access_token, expires_in) = self.keys.issue_access(user.id, user.role).await?;
        Ok(TokenPair {
            access_token,
            refresh_token: new_token,
            expires_in,
        })
    }

    /// Revokes the token's family. Unknown tokens are accepted silently (no oracle).
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        if refresh_token.is_empty() || refresh_token.len() > 512 {
            return Err(Error::field("refresh_token", "is required"));
        }
        repo::revoke_family_of(&self.pool, &tokens::hash_refresh_token(refresh_token)).await?;
        Ok(())
    }

    /// The caller's own account; a deactivated or deleted account's token no longer works.
    pub async fn me(&self, caller: CurrentUser) -> Result<User> {
        repo::get_user(&self.pool, caller.id)
            .await?
            .filter(|u| u.is_active)
            .ok_or(Error::Auth(ecom_shared::auth::AuthError::Invalid))
    }

    /// Changes one's own name or password. A password change ends every other session.
    #[tracing::instrument(skip_all, fields(user_id = caller.id))]
    pub async fn update_me(&self, caller: CurrentUser, command: UpdateProfile) -> Result<User> {
        self.me(caller).await?;
        let UpdateProfile {
            full_name: name,
            password,
        } = command;
        let hash = match password {
            Some(p) => Some(self.hasher.hash(p).await?),
            None => None,
        };
        let mut tx = self.pool.begin().await?;
        let user = repo::update_profile(
            &mut *tx,
            caller.id,
            name.as_ref().map(FullName::as_str),
            hash.as_deref(),
        )
        .await?
        .ok_or(Error::NotFound)?;
        if hash.is_some() {
            repo::revoke_user_tokens(&mut *tx, caller.id).await?;
        }
        tx.commit().await?;
        Ok(user)
    }

    pub async fn list(
        &self,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<(Vec<User>, i64, Page)> {
        let page = Page::parse(limit, offset).map_err(Error::Validation)?;
        let mut conn = self.pool.acquire().await?;
        let (items, total) = repo::list_users(&mut conn, page.limit, page.offset).await?;
        Ok((items, total, page))
    }

    pub async fn get(&self, id: i64) -> Result<User> {
        repo::get_user(&self.pool, id).await?.ok_or(Error::NotFound)
    }

    /// Users the caller may see among `ids` (themselves; an admin: everyone).
    pub async fn visible_users(&self, caller: CurrentUser, ids: &[i64]) -> Result<Vec<User>> {
        if ids.len() > 100 {
            return Err(Error::field("ids", "at most 100 ids"));
        }
        let ids: Vec<i64> = if caller.is_admin() {
            ids.to_vec()
        } else {
            ids.iter().copied().filter(|i| *i == caller.id).collect()
        };
        Ok(repo::users_by_ids(&self.pool, &ids).await?)
    }

    /// An admin changes someone's role or status. Deactivation ends their sessions. Admins cannot
    /// demote or deactivate themselves, so the platform cannot lose its last admin by accident.
    #[tracing::instrument(skip_all, fields(admin_id = admin.id, user_id = id))]
    pub async fn admin_update(
        &self,
        admin: CurrentUser,
        id: i64,
        change: AdminChange,
    ) -> Result<User> {
        if id == admin.id && (change.role == Some(Role::User) || change.is_active == Some(false)) {
            return Err(Error::InvalidState(
                "you cannot demote or deactivate yourself",
            ));
        }
        let mut tx = self.pool.begin().await?;
        let user = repo::admin_update(&mut *tx, id, change.role, change.is_active)
            .await?
            .ok_or(Error::NotFound)?;
        if change.is_active == Some(false) {
            repo::revoke_user_tokens(&mut *tx, id).await?;
        }
        tx.commit().await?;
        tracing::info!(admin_id = admin.id, user_id = id, "user changed by admin");
        Ok(user)
    }

    #[tracing::instrument(skip_all, fields(admin_id = admin.id, user_id = id))]
    pub async fn delete(&self, admin: CurrentUser, id: i64) -> Result<()> {
        if id == admin.id {
            return Err(Error::InvalidState("you cannot delete yourself"));
        }
        if repo::delete_user(&self.pool, id).await? {
            tracing::info!(admin_id = admin.id, user_id = id, "user deleted");
            Ok(())
        } else {
            Err(Error::NotFound)
        }
    }

    /// Creates the bootstrap admin, or resets it to the configured password and role.
    pub async fn bootstrap_admin(&self, email: &str, password: &str) -> Result<User> {
        let email = Email::parse(email).map_err(|m| Error::field("ECOM_ADMIN_EMAIL", m))?;
        let password =
            Password::parse_new(password).map_err(|m| Error::field("ECOM_ADMIN_PASSWORD", m))?;
        let hash = self.hasher.hash(password).await?;
        let user = repo::upsert_admin(&self.pool, email.as_str(), &hash).await?;
        tracing::info!(user_id = user.id, "bootstrap admin ready");
        Ok(user)
    }

    /// Housekeeping: rotate the signing key when due, drop long-expired refresh tokens.
    pub async fn maintenance(&self) -> anyhow::Result<()> {
        self.keys.rotate_if_due().await?;
        let purged = repo::purge_expired_refresh(&self.pool).await?;
        if purged > 0 {
            tracing::info!(purged, "expired refresh tokens purged");
        }
        Ok(())
    }
}
