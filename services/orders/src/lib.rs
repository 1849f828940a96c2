//! The ecom Orders service: checkout that reserves stock over gRPC, Stripe-style idempotency
//! keys, the order lifecycle and an order cache; REST on 8003 and gRPC on 50053.
//!
//! Same layout as every service: `domain`, `service` (the core), `repo` (SQL), `products` (the
//! gRPC client it depends on), `http` and `grpc` adapters, `Application` the wiring.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod http;
pub mod products;
pub mod repo;
pub mod service;

use std::{sync::Arc, time::Duration};

use ecom_proto::orders::v1::order_service_server::OrderServiceServer;
use ecom_shared::{
    auth::JwtVerifier, cache::Cache, health::Readiness, metrics::Metrics, redis::Redis,
    service_tokens::ServiceTokens,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::{products::ProductsClient, service::OrdersService};

/// The embedded migrations (also run by `orders migrate`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const SWEEP_BATCH: i64 = 200;

pub struct Application {
    servers: ecom_shared::grpc::Servers,
    orders: Arc<OrdersService>,
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
        let tokens = Arc::new(ServiceTokens::for_service(&config.common)?);
        Self::build_with(config, pool, verifier, tokens).await
    }

    /// Builds on an existing pool, token verifier and service identity (tests bring their own).
    pub async fn build_with(
        config: Config,
        pool: PgPool,
        verifier: Arc<JwtVerifier>,
        tokens: Arc<ServiceTokens>,
    ) -> anyhow::Result<Self> {
        if config.common.run_migrations {
            MIGRATOR.run(&pool).await?;
        }
        let metrics = Metrics::new(config::SPEC.name);
        metrics.watch_pool(pool.clone());
        let redis = Arc::new(Redis::new(
            &config.common.redis_url,
            &config.common.redis_prefix,
        )?);
        let channel = ecom_shared::grpc::channel(
            &config.products_grpc_url,
            metrics.clone(),
            Duration::from_secs(3),
            config.common.grpc_resolve_every,
        )?;
        let products = ProductsClient::new(channel, tokens);
        let cache = Cache::new(redis.clone(), metrics.clone(), config.cache_ttl);
        let orders = Arc::new(
            OrdersService::new(
                pool.clone(),
                products.clone(),
                cache,
                &metrics,
                config.reservation_ttl,
            )
            .with_fault(config.fault.as_deref()),
        );
        let state = http::AppState {
            orders: orders.clone(),
            verifier: verifier.clone(),
        };
        let (api, openapi) = http::router(state);
        let readiness = {
            let products = products.clone();
            Readiness::database_and_redis(pool, redis).check("products", move || {
                let products = products.clone();
                async move { products.get(&[]).await.is_ok() }
            })
        };
        let router = ecom_shared::http::finish_router(api, openapi, metrics.clone(), readiness);
        let mut routes = tonic::service::Routes::builder();
        routes.add_service(
            OrderServiceServer::new(grpc::OrdersGrpc {
                orders: orders.clone(),
                verifier,
            })
            .max_decoding_message_size(ecom_shared::grpc::MAX_MESSAGE_BYTES),
        );
        let servers = ecom_shared::grpc::Servers::bind(
            &config.common,
            router,
            routes.routes(),
            &["ecom.orders.v1.OrderService"],
            &[ecom_proto::FILE_DESCRIPTOR_SET],
            metrics,
        )
        .await?;
        Ok(Self {
            servers,
            orders,
            sweep_interval: config.sweep_interval,
        })
    }

    pub fn http_port(&self) -> u16 {
        self.servers.http_port()
    }

    pub fn grpc_port(&self) -> u16 {
        self.servers.grpc_port()
    }

    /// Serves HTTP and gRPC and runs the expiry sweeper until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            http = self.http_port(),
            grpc = self.grpc_port(),
            "orders service listening"
        );
        let orders = self.orders.clone();
        let sweeper = ecom_shared::tasks::spawn_periodic(
            "order-sweeper",
            self.sweep_interval,
            shutdown.clone(),
            move || {
                let orders = orders.clone();
                async move {
                    while orders.sweep_expired(SWEEP_BATCH).await? as i64 == SWEEP_BATCH {}
                    Ok(())
                }
            },
        );
        let orders = self.orders.clone();
        let purge = ecom_shared::tasks::spawn_periodic(
            "idempotency-key-purge",
            Duration::from_secs(3600),
            shutdown.clone(),
            move || {
                let orders = orders.clone();
                async move { orders.purge_keys().await.map(|_| ()).map_err(Into::into) }
            },
        );
        let served = ecom_shared::grpc::serve_all(self.servers, shutdown.clone()).await;
        shutdown.cancel();
        let _ = tokio::join!(sweeper, purge);
        served?;
        tracing::info!("orders service stopped");
        Ok(())
    }
}
