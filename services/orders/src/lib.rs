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
    auth::JwtVerifier,
    cache::Cache,
    health::Readiness,
    metrics::Metrics,
    service_tokens::ServiceTokens,
    startup::{self, App},
    tasks::Periodic,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::{products::ProductsClient, service::OrdersService};

/// The embedded migrations (also run by `orders migrate`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const SWEEP_BATCH: i64 = 200;

/// How often idempotency keys past their lifetime are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

pub struct Application {
    app: App,
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
        let metrics = startup::prepare(&config.common, &pool, &MIGRATOR).await?;
        let redis = startup::redis(&config.common)?;
        let channel = ecom_shared::grpc::channel(
            &config.products_grpc_url,
            metrics.clone(),
            Duration::from_secs(3),
            config.common.grpc_resolve_every,
        )?;
        let products = ProductsClient::new(channel, tokens);
        let cache = Cache::new(redis.clone(), metrics.clone(), config.cache_ttl)
            .enabled(config.common.cache);
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
        let readiness = Readiness::database_and_redis(pool, redis).check("products", move || {
            let products = products.clone();
            async move { products.quotes(&[]).await.is_ok() }
        });
        let grpc = OrderServiceServer::new(grpc::OrdersGrpc {
            orders: orders.clone(),
            verifier,
        })
        .max_decoding_message_size(ecom_shared::grpc::MAX_MESSAGE_BYTES);
        // Essential: unpaid orders would keep their stock reserved forever.
        let sweeper = {
            let orders = orders.clone();
            Periodic::essential("order-sweeper", config.sweep_interval, move || {
                let orders = orders.clone();
                async move {
                    while orders.sweep_expired(SWEEP_BATCH).await? as i64 == SWEEP_BATCH {}
                    Ok(())
                }
            })
        };
        let purge = Periodic::housekeeping("idempotency-key-purge", PURGE_EVERY, move || {
            let orders = orders.clone();
            async move { orders.purge_keys().await.map(|_| ()).map_err(Into::into) }
        });
        let app = App::bind(
            &config.common,
            http::router(state),
            readiness,
            grpc,
            metrics,
        )
        .await?
        .with_task(sweeper)
        .with_task(purge);
        Ok(Self { app })
    }

    pub fn http_port(&self) -> u16 {
        self.app.http_port()
    }

    pub fn grpc_port(&self) -> u16 {
        self.app.grpc_port()
    }

    /// Serves HTTP and gRPC and runs the expiry sweeper until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.app.run(shutdown).await
    }
}
