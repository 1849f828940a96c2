//! The ecom Users service: accounts, login, JWT access tokens (EdDSA, rotating keys) and rotating
//! refresh tokens, admin user management; REST on 8001 and gRPC on 50051.
//!
//! Layout (the same in every service): `domain/` types and rules, `service` the domain core,
//! `repo` every SQL statement, `http` and `grpc` thin adapters, `Application` the wiring.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod hashing;
pub mod http;
pub mod repo;
pub mod service;
pub mod tokens;

use std::{sync::Arc, time::Duration};

use ecom_proto::users::v1::user_service_server::UserServiceServer;
use ecom_shared::{
    auth::JwtVerifier,
    health::Readiness,
    http::TrustedProxies,
    metrics::Metrics,
    ratelimit::RateLimiter,
    redis::Redis,
    startup::{self, App},
    tasks::Periodic,
};
use prometheus_client::metrics::counter::Counter;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::{hashing::Hasher, service::UsersService, tokens::KeyStore};

/// The embedded migrations (also run by `users migrate`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How often replicas re-read signing keys and check whether rotation is due.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// Accounts as this service's database holds them now.
struct AccountsInDatabase(PgPool);

impl ecom_shared::auth::AccountSource for AccountsInDatabase {
    fn current_role(
        &self,
        user: ecom_shared::auth::CurrentUser,
        _token: String,
    ) -> std::pin::Pin<
        Box<
            dyn Future<Output = Result<ecom_shared::auth::Role, ecom_shared::auth::AuthError>>
                + Send,
        >,
    > {
        let pool = self.0.clone();
        Box::pin(async move {
            use ecom_shared::auth::AuthError;
            match repo::get_user(&pool, user.id).await {
                Ok(Some(u)) if u.is_active => Ok(u.role),
                Ok(_) => Err(AuthError::Invalid),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the account");
                    Err(AuthError::AccountsUnavailable)
                }
            }
        })
    }
}

/// A built service: listeners bound, dependencies connected, ready to run.
pub struct Application {
    app: App,
    users: Arc<UsersService>,
}

impl Application {
    /// Connects to the database (waiting for it briefly), migrates, and builds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool =
            ecom_shared::db::connect(&config.common.database_url, 10, config.common.database_wait)
                .await?;
        Self::build_with(config, pool).await
    }

    /// Builds on an existing pool (tests hand in a fresh database per test).
    pub async fn build_with(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        let metrics = startup::prepare(&config.common, &pool, &MIGRATOR).await?;
        let redis = startup::redis(&config.common)?;
        let keys = Arc::new(
            KeyStore::open(
                pool.clone(),
                config.common.access_token_ttl,
                config.common.jwt_audience.clone(),
                config.key_rotation_interval,
            )
            .await?,
        );
        metrics.register(
            "signing_key_reloads",
            "reads of the signing keys from the database",
            keys.reloads.clone(),
        );
        let users = Self::core(&config, &pool, &redis, &keys, &metrics).await?;
        let verifier = Self::verifier(&config, &pool, keys);
        let trusted_proxies = TrustedProxies(Arc::new(config.common.trusted_proxies.clone()));
        let state = http::AppState {
            users: users.clone(),
            verifier: verifier.clone(),
            trusted_proxies: trusted_proxies.clone(),
        };
        let grpc = UserServiceServer::new(grpc::UsersGrpc {
            users: users.clone(),
            verifier,
            trusted_proxies,
        })
        .max_decoding_message_size(ecom_shared::grpc::MAX_MESSAGE_BYTES);
        let readiness = Readiness::database_and_redis(pool, redis);
        // Key rotation and refresh-token housekeeping, on every replica (each step is safe to
        // run concurrently: rotation takes an advisory lock). Essential: without it the signing
        // key is never rotated.
        let maintenance = {
            let users = users.clone();
            Periodic::essential("maintenance", MAINTENANCE_EVERY, move || {
                let users = users.clone();
                async move { users.maintenance().await }
            })
        };
        let app = App::bind(
            &config.common,
            http::router(state),
            readiness,
            grpc,
            metrics,
        )
        .await?
        .with_task(maintenance);
        Ok(Self { app, users })
    }

    /// The domain core: the password hasher (its refusals counted), the throttles, and the
    /// bootstrap admin made sure of.
    async fn core(
        config: &Config,
        pool: &PgPool,
        redis: &Arc<Redis>,
        keys: &Arc<KeyStore>,
        metrics: &Arc<Metrics>,
    ) -> anyhow::Result<Arc<UsersService>> {
        let hashes_rejected = Counter::default();
        metrics.register(
            "password_hashes_rejected",
            "password hashes refused at once (503) because the hasher's queue was full",
            hashes_rejected.clone(),
        );
        let hasher = Hasher::new(
            config.hasher_concurrency,
            config.hasher_queue,
            hashes_rejected,
        )?;
        let users = Arc::new(UsersService::new(
            pool.clone(),
            hasher,
            keys.clone(),
            redis.clone(),
            RateLimiter::new("login", config.login_rate),
            RateLimiter::new("register", config.register_rate),
            metrics.clone(),
            config.refresh_token_ttl,
            config.service_credentials.clone(),
        ));
        users
            .bootstrap_admin(&config.admin_email, &config.admin_password)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the bootstrap admin: {e}"))?;
        Ok(users)
    }

    /// This service verifies its own tokens from its key store instead of fetching its own
    /// JWKS. An unknown kid asks the store, which has a key rotated here in memory at once and
    /// re-reads the database (a key rotated by another replica) at most once per
    /// MIN_REFETCH_INTERVAL, as the other services refetch the JWKS: made-up kids cannot turn
    /// into a database read of the private keys each.
    fn verifier(config: &Config, pool: &PgPool, keys: Arc<KeyStore>) -> Arc<JwtVerifier> {
        Arc::new(
            JwtVerifier::new(Arc::new(move || {
                let keys = keys.clone();
                Box::pin(async move {
                    keys.reload_unless_recent(ecom_shared::auth::MIN_REFETCH_INTERVAL)
                        .await?;
                    Ok(keys.jwks().await)
                })
            }))
            .with_min_refetch_interval(Duration::ZERO)
            .with_audience(&config.common.jwt_audience)
            // The role and status behind every user request come from the database, not the
            // token: a demoted or deactivated admin loses admin rights here at once.
            .with_account_source(Arc::new(AccountsInDatabase(pool.clone()))),
        )
    }

    pub fn http_port(&self) -> u16 {
        self.app.http_port()
    }

    pub fn grpc_port(&self) -> u16 {
        self.app.grpc_port()
    }

    /// The router alone, for in-process tests (`Router::oneshot`).
    pub fn router(&self) -> axum::Router {
        self.app.router()
    }

    pub fn service(&self) -> Arc<UsersService> {
        self.users.clone()
    }

    /// Serves HTTP and gRPC and runs the key maintenance until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.app.run(shutdown).await
    }
}
