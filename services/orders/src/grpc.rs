//! The gRPC adapter (`ecom.orders.v1.OrderService`).

use std::sync::Arc;

use ecom_proto::orders::v1::{
    self as pb, CancelOrderRequest, CreateOrderRequest, CreateOrderResponse, GetOrderRequest,
    ListOrdersRequest, ListOrdersResponse, MarkPaidRequest, MarkRefundedRequest,
    order_service_server::OrderService,
};
use ecom_shared::{
    FieldError,
    auth::{JwtVerifier, grpc_caller, grpc_user},
    error::positive_id,
    idempotency::IdempotencyKey,
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{Checkout, LineInput, Order, OrderStatus, Settlement},
    error::Error,
    service::{Created, OrdersService},
};

/// The checkout `POST /orders` would make of the same lines and key (so validation is the
/// HTTP one); an empty key is no key.
impl TryFrom<CreateOrderRequest> for Checkout {
    type Error = Vec<FieldError>;

    fn try_from(r: CreateOrderRequest) -> Result<Self, Self::Error> {
        let items = r
            .items
            .iter()
            .map(|l| LineInput {
                product_id: Some(l.product_id),
                quantity: Some(l.quantity),
            })
            .collect();
        let key = Some(r.idempotency_key.as_str()).filter(|k| !k.is_empty());
        Checkout::new(Some(items), IdempotencyKey::parse_optional(key))
    }
}

impl From<MarkPaidRequest> for Settlement {
    fn from(r: MarkPaidRequest) -> Self {
        Self {
            order_id: r.order_id,
            payment_id: r.payment_id,
        }
    }
}

impl From<MarkRefundedRequest> for Settlement {
    fn from(r: MarkRefundedRequest) -> Self {
        Self {
            order_id: r.order_id,
            payment_id: r.payment_id,
        }
    }
}

pub struct OrdersGrpc {
    pub orders: Arc<OrdersService>,
    pub verifier: Arc<JwtVerifier>,
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn order_pb(o: Order) -> pb::Order {
    use pb::OrderStatus as S;
    pb::Order {
        id: o.id,
        user_id: o.user_id,
        status: match o.status {
            OrderStatus::PendingPayment => S::PendingPayment,
            OrderStatus::Paid => S::Paid,
            OrderStatus::Cancelled => S::Cancelled,
            OrderStatus::Refunded => S::Refunded,
        } as i32,
        items: o
            .items
            .into_iter()
            .map(|i| pb::OrderItem {
                product_id: i.product_id,
                name: i.name,
                unit_price: i.unit_price.to_string(),
                quantity: i.quantity,
                line_total: i.line_total.to_string(),
            })
            .collect(),
        total: o.total.to_string(),
        currency: o.currency,
        created_at: Some(timestamp(o.created_at)),
        updated_at: Some(timestamp(o.updated_at)),
        payment_id: o.payment_id.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl OrderService for OrdersGrpc {
    async fn get_order(
        &self,
        request: Request<GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let caller = grpc_caller(&self.verifier, &request).await?;
        let order = self
            .orders
            .get_for(&caller, request.into_inner().id)
            .await?;
        Ok(Response::new(order_pb(order)))
    }

    async fn mark_paid(
        &self,
        request: Request<MarkPaidRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let caller = grpc_caller(&self.verifier, &request).await?;
        let order = self
            .orders
            .mark_paid(&caller, Settlement::from(request.into_inner()))
            .await?;
        Ok(Response::new(order_pb(order)))
    }

    async fn mark_refunded(
        &self,
        request: Request<MarkRefundedRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let caller = grpc_caller(&self.verifier, &request).await?;
        let order = self
            .orders
            .mark_refunded(&caller, Settlement::from(request.into_inner()))
            .await?;
        Ok(Response::new(order_pb(order)))
    }

    async fn create_order(
        &self,
        request: Request<CreateOrderRequest>,
    ) -> Result<Response<CreateOrderResponse>, Status> {
        let user = grpc_user(&self.verifier, &request).await?;
        let checkout = Checkout::try_from(request.into_inner()).map_err(Error::Validation)?;
        let (order, created) = match self.orders.create(user, checkout).await? {
            Created::New(order) => (order, true),
            Created::Replayed(order) => (order, false),
        };
        Ok(Response::new(CreateOrderResponse {
            order: Some(order_pb(order)),
            created,
        }))
    }

    async fn list_orders(
        &self,
        request: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        let user = grpc_user(&self.verifier, &request).await?;
        let r = request.into_inner();
        let (orders, total, limit, offset) =
            self.orders.list(user, r.user_id, r.limit, r.offset).await?;
        Ok(Response::new(ListOrdersResponse {
            orders: orders.into_iter().map(order_pb).collect(),
            total,
            limit,
            offset,
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<CancelOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let user = grpc_user(&self.verifier, &request).await?;
        let id = positive_id("id", request.into_inner().id)?;
        Ok(Response::new(order_pb(self.orders.cancel(user, id).await?)))
    }
}
