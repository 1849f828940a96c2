//! The ecom Products service: the catalogue (CRUD, filters, full-text search) behind a Redis
//! cache, and the gRPC stock server with reservations; REST on 8002 and gRPC on 50052.
//!
//! Same layout as every service: `domain/`, `service` (the core), `repo` (SQL), `cache`,
//! `http` and `grpc` adapters, `Application` the wiring.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod http;
pub mod openapi;
pub mod repo;
pub mod seed;
pub mod service;

use std::sync::Arc;

use ecom_proto::products::v1::product_service_server::ProductServiceServer;
use ecom_shared::{
    auth::JwtVerifier,
    cache::Cache,
    health::Readiness,
    metrics::Metrics,
    startup::{self, App},
    tasks::Periodic,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::service::ProductsService;

/// The embedded migrations (also run by `products migrate`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How many expired reservations one sweep transaction handles.
const SWEEP_BATCH: i64 = 200;

pub struct Application {
    app: App,
    products: Arc<ProductsService>,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool =
            ecom_shared::db::connect(&config.common.database_url, 20, config.common.database_wait)
                .await?;
        // Each user request is confirmed with Users: a demoted or deactivated admin loses admin
        // rights at once (docs/security.md).
        let verifier =
            ecom_shared::accounts::verifier(&config.common, Metrics::new(config.common.service))?;
        Self::build_with(config, pool, verifier).await
    }

    /// Builds on an existing pool and token verifier (tests bring their own of both).
    pub async fn build_with(
        config: Config,
        pool: PgPool,
        verifier: Arc<JwtVerifier>,
    ) -> anyhow::Result<Self> {
        let metrics = startup::prepare(&config.common, &pool, &MIGRATOR).await?;
        if config.seed_demo {
            seed::seed_demo(&pool, &config.currency).await?;
        }
        let redis = startup::redis(&config.common)?;
        let cache = Cache::new(redis.clone(), metrics.clone(), config.cache_ttl)
            .enabled(config.common.cache);
        let products = Arc::new(ProductsService::new(
            pool.clone(),
            cache,
            &metrics,
            config.currency.clone(),
            config.reservation_ttl,
        ));
        let state = http::AppState {
            products: products.clone(),
            verifier: verifier.clone(),
        };
        // Reads still answer when Redis is down, but the platform is degraded: report it.
        let readiness = Readiness::database_and_redis(pool, redis);
        let grpc = ProductServiceServer::new(grpc::ProductsGrpc {
            products: products.clone(),
            verifier,
        })
        .max_decoding_message_size(ecom_shared::grpc::MAX_MESSAGE_BYTES);
        // Essential: expired reservations would hold their stock forever.
        let sweeper = {
            let products = products.clone();
            Periodic::essential("reservation-sweeper", config.sweep_interval, move || {
                let products = products.clone();
                // Drain in batches: a backlog is cleared in one tick.
                async move {
                    while products.sweep_expired(SWEEP_BATCH).await? as i64 == SWEEP_BATCH {}
                    Ok(())
                }
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
        .with_task(sweeper);
        Ok(Self { app, products })
    }

    pub fn http_port(&self) -> u16 {
        self.app.http_port()
    }

    pub fn grpc_port(&self) -> u16 {
        self.app.grpc_port()
    }

    pub fn service(&self) -> Arc<ProductsService> {
        self.products.clone()
    }

    /// Serves HTTP and gRPC and runs the reservation sweeper until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.app.run(shutdown).await
    }
}
