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

use std::{sync::Arc, time::Duration};

use ecom_proto::products::v1::product_service_server::ProductServiceServer;
use ecom_shared::{
    auth::JwtVerifier, cache::Cache, health::Readiness, metrics::Metrics, redis::Redis,
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
    servers: ecom_shared::grpc::Servers,
    products: Arc<ProductsService>,
    sweep_interval: Duration,
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
        if config.common.run_migrations {
            MIGRATOR.run(&pool).await?;
        }
        if config.seed_demo {
            seed::seed_demo(&pool, &config.currency).await?;
        }
        let metrics = Metrics::new(config::SPEC.name);
        metrics.watch_pool(pool.clone());
        let redis = Arc::new(Redis::new(
            &config.common.redis_url,
            &config.common.redis_prefix,
        )?);
        let cache = Cache::new(redis.clone(), metrics.clone(), config.cache_ttl);
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
        let (api, openapi) = http::router(state);
        // Reads still answer when Redis is down, but the platform is degraded: report it.
        let readiness = Readiness::database_and_redis(pool, redis);
        let router = ecom_shared::http::finish_router(api, openapi, metrics.clone(), readiness);
        let mut routes = tonic::service::Routes::builder();
        routes.add_service(
            ProductServiceServer::new(grpc::ProductsGrpc {
                products: products.clone(),
                verifier,
            })
            .max_decoding_message_size(ecom_shared::grpc::MAX_MESSAGE_BYTES),
        );
        let servers = ecom_shared::grpc::Servers::bind(
            &config.common,
            router,
            routes.routes(),
            &["ecom.products.v1.ProductService"],
            &[ecom_proto::FILE_DESCRIPTOR_SET],
            metrics,
        )
        .await?;
        Ok(Self {
            servers,
            products,
            sweep_interval: config.sweep_interval,
        })
    }

    pub fn http_port(&self) -> u16 {
        self.servers.http_port()
    }

    pub fn grpc_port(&self) -> u16 {
        self.servers.grpc_port()
    }

    pub fn service(&self) -> Arc<ProductsService> {
        self.products.clone()
    }

    /// Serves HTTP and gRPC and runs the reservation sweeper until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            http = self.http_port(),
            grpc = self.grpc_port(),
            "products service listening"
        );
        let products = self.products.clone();
        let sweeper = ecom_shared::tasks::spawn_periodic(
            "reservation-sweeper",
            self.sweep_interval,
            shutdown.clone(),
            move || {
                let products = products.clone();
                // Drain in batches: a backlog is cleared in one tick.
                async move {
                    while products.sweep_expired(SWEEP_BATCH).await? as i64 == SWEEP_BATCH {}
                    Ok(())
                }
            },
        );
        let served = ecom_shared::grpc::serve_all(self.servers, shutdown.clone()).await;
        shutdown.cancel();
        let _ = sweeper.await;
        served?;
        tracing::info!("products service stopped");
        Ok(())
    }
}
