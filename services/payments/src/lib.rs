//! The ecom Payments service: an emulated card processor, charges that happen once per order,
//! a transactional outbox with a relay that tells Orders, refunds; REST on 8004 and gRPC on
//! 50054.
//!
//! Same layout as every service: `domain` and `card` (pure), `service` (the core), `outbox`
//! (the relay to Orders), `repo` (SQL), `orders` (the gRPC client it depends on), `http` and
//! `grpc` adapters, `Application` the wiring.

pub mod card;
pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod http;
pub mod orders;
pub mod outbox;
pub mod repo;
pub mod service;

use std::{sync::Arc, time::Duration};

use ecom_proto::payments::v1::payment_service_server::PaymentServiceServer;
use ecom_shared::{
    auth::JwtVerifier,
    health::Readiness,
    metrics::Metrics,
    service_tokens::ServiceTokens,
    startup::{self, App},
    tasks::Periodic,
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::{orders::OrdersClient, service::PaymentsService};

/// The embedded migrations (also run by `payments migrate`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

const RELAY_BATCH: i64 = 200;

/// How often idempotency keys and delivered events past their lifetime are deleted.
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
        let channel = ecom_shared::grpc::channel(
            &config.orders_grpc_url,
            metrics.clone(),
            Duration::from_secs(5),
            config.common.grpc_resolve_every,
        )?;
        let payments = Arc::new(PaymentsService::new(
            pool.clone(),
            OrdersClient::new(channel),
            tokens,
            &metrics,
            service::Settings {
                latency: config.processor_latency,
                grace: config.relay_grace,
                stuck_after: config.stuck_after,
                fault: config.fault.clone(),
            },
        ));
        let state = http::AppState {
            payments: payments.clone(),
            verifier: verifier.clone(),
        };
        // Payments keeps nothing in Redis: its readiness is its database and Orders.
        let readiness = {
            let payments = payments.clone();
            Readiness::new()
                .check("database", move || {
                    let pool = pool.clone();
                    async move { ecom_shared::db::ping(&pool).await }
                })
                .check("orders", move || {
                    let payments = payments.clone();
                    async move { payments.orders_up().await }
                })
        };
        let grpc = PaymentServiceServer::new(grpc::PaymentsGrpc {
            payments: payments.clone(),
            verifier,
        })
        .max_decoding_message_size(ecom_shared::grpc::MAX_MESSAGE_BYTES);
        // Essential: without the relay Orders never hears of a payment; without the stuck
        // check an interrupted payment stays `processing`.
        let relay = {
            let payments = payments.clone();
            Periodic::essential("outbox-relay", config.relay_interval, move || {
                let payments = payments.clone();
                async move {
                    while payments.relay(RELAY_BATCH).await? as i64 == RELAY_BATCH {}
                    Ok(())
                }
            })
        };
        let stuck = {
            let payments = payments.clone();
            let every = (config.stuck_after / 4).max(Duration::from_millis(250));
            Periodic::essential("stuck-payments", every, move || {
                let payments = payments.clone();
                async move { payments.fail_stuck().await.map(|_| ()).map_err(Into::into) }
            })
        };
        let purge = Periodic::housekeeping("purge", PURGE_EVERY, move || {
            let payments = payments.clone();
            async move { payments.purge().await.map(|_| ()).map_err(Into::into) }
        });
        let app = App::bind(
            &config.common,
            http::router(state),
            readiness,
            grpc,
            metrics,
        )
        .await?
        .with_task(relay)
        .with_task(stuck)
        .with_task(purge);
        Ok(Self { app })
    }

    pub fn http_port(&self) -> u16 {
        self.app.http_port()
    }

    pub fn grpc_port(&self) -> u16 {
        self.app.grpc_port()
    }

    /// Serves HTTP and gRPC and runs the outbox relay and the housekeeping until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.app.run(shutdown).await
    }
}
