//! The Orders gRPC client: the order to charge (as the paying user), and the payment's
//! effects on the order (as this service).

use std::str::FromStr;

use ecom_proto::orders::v1::{
    GetOrderRequest, MarkPaidRequest, MarkRefundedRequest, OrderStatus,
    order_service_client::OrderServiceClient,
};
use ecom_shared::{auth::with_bearer, grpc::GrpcChannel, service_tokens::ServiceTokens};
use rust_decimal::Decimal;
use tonic::{Code, Request, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::error::Error;

/// What a payment needs to know of its order.
#[derive(Debug, Clone)]
pub struct OrderInfo {
    pub user_id: i64,
    pub status: OrderStatus,
    pub total: Decimal,
    pub currency: String,
}

/// How Orders took a payment's effect.
#[derive(Debug)]
pub enum Ack {
    /// Applied (now or before: the calls are idempotent).
    Done,
    /// Can never apply (the order was cancelled, its reservation expired, or it was paid
    /// otherwise): the payment must be refunded, or there is nothing to undo.
    Refused(String),
    /// Try again later.
    Retry(String),
}

#[derive(Clone)]
pub struct OrdersClient {
    client: OrderServiceClient<GrpcChannel>,
    health: HealthClient<GrpcChannel>,
}

impl OrdersClient {
    pub fn new(channel: GrpcChannel) -> Self {
        Self {
            client: OrderServiceClient::new(channel.clone()),
            health: HealthClient::new(channel),
        }
    }

    /// The order, as the user whose token is given (someone else's order is `NotFound`).
    pub async fn get(&self, token: &str, order_id: i64) -> Result<OrderInfo, Error> {
        let req = with_bearer(Request::new(GetOrderRequest { id: order_id }), token);
        let order = self
            .client
            .clone()
            .get_order(req)
            .await
            .map_err(|s| match s.code() {
                Code::NotFound | Code::InvalidArgument => Error::NotFound("order"),
                Code::Unauthenticated => Error::Auth(ecom_shared::auth::AuthError::Invalid),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                    tracing::warn!(code = ?s.code(), message = s.message(), "orders unavailable");
                    Error::Unavailable("orders")
                }
                _ => Error::Internal(anyhow::anyhow!("orders: {:?} {}", s.code(), s.message())),
            })?
            .into_inner();
        let total = Decimal::from_str(&order.total)
            .map_err(|e| Error::Internal(anyhow::anyhow!("order total {:?}: {e}", order.total)))?;
        Ok(OrderInfo {
            user_id: order.user_id,
            status: order.status(),
            total,
            currency: order.currency,
        })
    }

    /// Tells Orders a payment succeeded (commit the stock, mark the order paid).
    pub async fn mark_paid(&self, tokens: &ServiceTokens, order_id: i64, payment_id: i64) -> Ack {
        let req = match tokens
            .request(MarkPaidRequest {
                order_id,
                payment_id,
            })
            .await
        {
            Ok(r) => r,
            Err(s) => return Ack::Retry(format!("no service token: {}", s.message())),
        };
        ack(self.client.clone().mark_paid(req).await.map(|_| ()), tokens).await
    }

    /// Tells Orders a payment was refunded (return the stock, mark the order refunded).
    pub async fn mark_refunded(
        &self,
        tokens: &ServiceTokens,
        order_id: i64,
        payment_id: i64,
    ) -> Ack {
        let req = match tokens
            .request(MarkRefundedRequest {
                order_id,
                payment_id,
            })
            .await
        {
            Ok(r) => r,
            Err(s) => return Ack::Retry(format!("no service token: {}", s.message())),
        };
        ack(
            self.client.clone().mark_refunded(req).await.map(|_| ()),
            tokens,
        )
        .await
    }

    /// Whether the Orders gRPC server answers its health check.
    pub async fn ping(&self) -> bool {
        self.health
            .clone()
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .is_ok()
    }
}

async fn ack(result: Result<(), Status>, tokens: &ServiceTokens) -> Ack {
    match result {
        Ok(()) => Ack::Done,
        Err(s) if s.code() == Code::Aborted => Ack::Refused(s.message().to_owned()),
        Err(s) => {
            if s.code() == Code::Unauthenticated {
                // The key that signed it may have been retired: fetch a new one next time.
                tokens.invalidate().await;
            }
            Ack::Retry(format!("{:?}: {}", s.code(), s.message()))
        }
    }
}
