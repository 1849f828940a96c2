//! gRPC clients of the four services, each over a small pool of channels (one channel is one
//! HTTP/2 connection to each replica, and one connection caps throughput), handed out
//! round-robin.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use ecom_proto::{
    orders::v1::order_service_client::OrderServiceClient,
    payments::v1::payment_service_client::PaymentServiceClient,
    products::v1::product_service_client::ProductServiceClient,
    users::v1::user_service_client::UserServiceClient,
};
use ecom_shared::{grpc::GrpcChannel, metrics::Metrics};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::config::{Config, Upstream};

/// A few channels to one service.
#[derive(Clone)]
pub struct Pool {
    name: &'static str,
    channels: Arc<[GrpcChannel]>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    pub fn new(
        upstream: &Upstream,
        size: usize,
        metrics: &Arc<Metrics>,
        timeout: Duration,
        resolve_every: Duration,
    ) -> anyhow::Result<Self> {
        let channels = (0..size.max(1))
            .map(|_| {
                ecom_shared::grpc::channel(
                    &upstream.grpc_url,
                    metrics.clone(),
                    timeout,
                    resolve_every,
                )
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            name: upstream.name,
            channels: channels.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn channel(&self) -> GrpcChannel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }

    /// Whether the service answers its gRPC health check with SERVING (within 2 s).
    pub async fn healthy(&self) -> bool {
        let mut client = HealthClient::new(self.channel());
        let check = client.check(HealthCheckRequest {
            service: String::new(),
        });
        matches!(
            tokio::time::timeout(Duration::from_secs(2), check).await,
            Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32
        )
    }
}

/// The four services.
#[derive(Clone)]
pub struct Clients {
    pub users: Pool,
    pub products: Pool,
    pub orders: Pool,
    pub payments: Pool,
}

impl Clients {
    pub fn new(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Self> {
        let pool = |u: &Upstream| {
            Pool::new(
                u,
                config.grpc_channels,
                metrics,
                config.upstream_timeout,
                config.common.grpc_resolve_every,
            )
        };
        Ok(Self {
            users: pool(&config.users)?,
            products: pool(&config.products)?,
            orders: pool(&config.orders)?,
            payments: pool(&config.payments)?,
        })
    }

    pub fn users(&self) -> UserServiceClient<GrpcChannel> {
        UserServiceClient::new(self.users.channel())
    }

    pub fn products(&self) -> ProductServiceClient<GrpcChannel> {
        ProductServiceClient::new(self.products.channel())
    }

    pub fn orders(&self) -> OrderServiceClient<GrpcChannel> {
        OrderServiceClient::new(self.orders.channel())
    }

    pub fn payments(&self) -> PaymentServiceClient<GrpcChannel> {
        PaymentServiceClient::new(self.payments.channel())
    }

    pub fn all(&self) -> [&Pool; 4] {
        [&self.users, &self.products, &self.orders, &self.payments]
    }
}
