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
    auth::JwtVerifier, health::Readiness, http::TrustedProxies, metrics::Metrics,
    ratelimit::RateLimiter, redis::Redis,
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
    servers: ecom_shared::grpc::Servers,
    users: Arc<UsersService>,
}

impl Application {
    /// Connects to the database (waiting for it briefly), migrates, and builds.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool =
            ecom_shared::db::connect(&config.common.database_url, 10, config.common.database_wait)
                .await?;
        Self::build_with_pool(config, pool).await
    }

    /// Builds on an existing pool (tests hand in a fresh database per test).
    pub async fn build_with_pool(config: Config, pool: PgPool) -> anyhow::Result<Self> {
        if config.common.run_migrations {
            MIGRATOR.run(&pool).await?;
        }
        let metrics = Metrics::new(config::SPEC.name);
        metrics.watch_pool(pool.clone());
        let redis = Arc::new(Redis::new(
            &config.common.redis_url,
            &config.common.redis_prefix,
        )?);
        let keys = Arc::new(
            KeyStore::open(
                pool.clone(),
                config.common.access_token_ttl,
                config.common.jwt_audience.clone(),
                config.key_rotation_interval,
            )
            .await?,
        );
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

        // This service verifies its own tokens from its key store instead of fetching its own
        // JWKS. An unknown kid asks the store, which has a key rotated here in memory at once and
        // re-reads the database (a key rotated by another replica) at most once per
        // MIN_REFETCH_INTERVAL, as the other services refetch the JWKS: made-up kids cannot
        // turn into a database read of the private keys each.
        let loader_keys = keys.clone();
        let verifier = Arc::new(
            JwtVerifier::new(Arc::new(move || {
                let keys = loader_keys.clone();
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
        );
        metrics.register(
            "signing_key_reloads",
            "reads of the signing keys from the database",
            keys.reloads.clone(),
        );

        let trusted_proxies = TrustedProxies(Arc::new(config.common.trusted_proxies.clone()));
        let state = http::AppState {
            users: users.clone(),
            verifier: verifier.clone(),
            trusted_proxies: trusted_proxies.clone(),
        };
        let (api, openapi) = http::router(state);
        let readiness = Readiness::database_and_redis(pool.clone(), redis.clone());
        let router = ecom_shared::http::finish_router(api, openapi, metrics.clone(), readiness);

        let mut routes = tonic::service::Routes::builder();
        routes.add_service(
            UserServiceServer::new(grpc::UsersGrpc {
                users: users.clone(),
                verifier,
                trusted_proxies,
            })
            .max_decoding_message_size(ecom_shared::grpc::MAX_MESSAGE_BYTES),
        );
        let servers = ecom_shared::grpc::Servers::bind(
            &config.common,
            router,
            routes.routes(),
            &["ecom.users.v1.UserService"],
            &[ecom_proto::FILE_DESCRIPTOR_SET],
            metrics,
        )
        .await?;
        Ok(Self { servers, users })
    }

    pub fn http_port(&self) -> u16 {
        self.servers.http_port()
    }

    pub fn grpc_port(&self) -> u16 {
        self.servers.grpc_port()
    }

    /// The router alone, for in-process tests (`Router::oneshot`).
    pub fn router(&self) -> axum::Router {
        self.servers.router.clone()
    }

    pub fn service(&self) -> Arc<UsersService> {
        self.users.clone()
    }

    /// Serves HTTP and gRPC and runs housekeeping until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            http = self.http_port(),
            grpc = self.grpc_port(),
            "users service listening"
        );
        // Key rotation and refresh-token housekeeping, on every replica (each step is safe to
        // run concurrently: rotation takes an advisory lock).
        let users = self.users.clone();
        let housekeeping = ecom_shared::tasks::spawn_periodic(
            "maintenance",
            MAINTENANCE_EVERY,
            shutdown.clone(),
            move || {
                let users = users.clone();
                async move { users.maintenance().await }
            },
        );
        let served = ecom_shared::grpc::serve_all(self.servers, shutdown.clone()).await;
        shutdown.cancel();
        let _ = housekeeping.await;
        served?;
        tracing::info!("users service stopped");
        Ok(())
    }
}
