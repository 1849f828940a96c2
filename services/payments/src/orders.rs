//! The Orders gRPC client: the order to charge (as the paying user), and the payment's
//! effects on the order (as this service).

use std::str::FromStr;

use ecom_proto::orders::v1::{
    GetOrderRequest, MarkPaidRequest, MarkRefundedRequest, OrderStatus,
    order_service_client::OrderServiceClient,
};
use ecom_shared::{ErrorCode, auth::with_bearer, grpc::GrpcChannel, service_tokens::ServiceTokens};
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

/// Orders' refusal of `GetOrder` as this service's error, by the stable code Orders put on it
/// (the closest one by gRPC code for a status without it), matched exhaustively.
fn get_error(s: Status) -> Error {
    use ErrorCode as C;
    match ErrorCode::of_status(&s).or_else(|| ErrorCode::from_grpc(s.code())) {
        Some(C::NotFound | C::ValidationError) => Error::NotFound("order"),
        Some(C::InvalidToken | C::TokenExpired | C::InvalidCredentials) => {
            Error::Auth(ecom_shared::auth::AuthError::Invalid)
        }
        Some(C::ServiceUnavailable) => {
            tracing::warn!(code = ?s.code(), message = s.message(), "orders unavailable");
            Error::Unavailable("orders")
        }
        None if s.code() == Code::Unknown => {
            tracing::warn!(code = ?s.code(), message = s.message(), "orders unavailable");
            Error::Unavailable("orders")
        }
        // A read of one's own order cannot earn these: a bug or a misconfiguration.
        Some(
            C::PayloadTooLarge
            | C::InvalidCard
            | C::Forbidden
            | C::EmailTaken
            | C::IdempotencyConflict
            | C::IdempotencyKeyInUse
            | C::InvalidState
            | C::InsufficientStock
            | C::ReservationExpired
            | C::OrderCancelled
            | C::CardDeclined
            | C::InsufficientFunds
            | C::RateLimited
            | C::InternalError,
        )
        | None => Error::Internal(anyhow::anyhow!("orders: {:?} {}", s.code(), s.message())),
    }
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
            .map_err(get_error)?
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
        // What the call needed is gone (the order cancelled, its reservation expired).
        Err(s)
            if matches!(
                ErrorCode::of_status(&s),
                Some(ErrorCode::OrderCancelled | ErrorCode::ReservationExpired)
            ) || (ErrorCode::of_status(&s).is_none() && s.code() == Code::Aborted) =>
        {
            Ack::Refused(s.message().to_owned())
        }
        Err(s) => {
            if s.code() == Code::Unauthenticated {
                // The key that signed it may have been retired: fetch a new one next time.
                tokens.invalidate().await;
            }
            Ack::Retry(format!("{:?}: {}", s.code(), s.message()))
        }
    }
}

#[cfg(test)]
mod tests {
    use ecom_shared::ApiError;

    use super::*;

    #[test]
    fn an_orders_refusal_of_get_order_keeps_its_meaning() {
        let refused = |code| get_error(ApiError::new(code, "why").to_status());
        assert!(matches!(
            refused(ErrorCode::NotFound),
            Error::NotFound("order")
        ));
        assert!(matches!(refused(ErrorCode::InvalidToken), Error::Auth(_)));
        assert!(matches!(
            refused(ErrorCode::ServiceUnavailable),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            refused(ErrorCode::InvalidState),
            Error::Internal(_)
        ));
        assert!(matches!(
            get_error(Status::unknown("?")),
            Error::Unavailable(_)
        ));
    }
}
