//! The Products gRPC client: prices and stock, with deadlines and retries of what is idempotent.

use std::time::Duration;

use ecom_proto::products::v1::{
    GetProductsRequest, Line as PbLine, Product, ReservationRef, ReserveStockRequest,
    product_service_client::ProductServiceClient,
};
use ecom_shared::{auth::with_bearer, grpc::GrpcChannel};
use tonic::{Code, Request, Status};

use crate::{domain::Line, error::Error};

/// Attempts for a call that is safe to repeat (every call here is idempotent per order id).
const ATTEMPTS: u32 = 3;

#[derive(Clone)]
pub struct ProductsClient {
    client: ProductServiceClient<GrpcChannel>,
}

fn transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

fn to_error(s: Status) -> Error {
    match s.code() {
        Code::FailedPrecondition => Error::InsufficientStock(s.message().to_owned()),
        Code::NotFound => Error::field("items", s.message()),
        Code::InvalidArgument => Error::field("items", s.message()),
        Code::Unauthenticated => Error::Auth(ecom_shared::auth::AuthError::Invalid),
        Code::Aborted => Error::Gone(s.message().to_owned()),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
            tracing::warn!(code = ?s.code(), message = s.message(), "products unavailable");
            Error::Unavailable("products")
        }
        _ => Error::Internal(anyhow::anyhow!("products: {:?} {}", s.code(), s.message())),
    }
}

impl ProductsClient {
    pub fn new(channel: GrpcChannel) -> Self {
        Self {
            client: ProductServiceClient::new(channel),
        }
    }

    async fn retry<T, F, Fut>(&self, mut call: F) -> Result<T, Error>
    where
        F: FnMut(ProductServiceClient<GrpcChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=ATTEMPTS {
            match call(self.client.clone()).await {
                Ok(v) => return Ok(v),
                Err(s) if transient(&s) && attempt < ATTEMPTS => {
                    tokio::time::sleep(delay).await;
                    delay *= 3;
                }
                Err(s) => return Err(to_error(s)),
            }
        }
        Err(Error::Unavailable("products"))
    }

    /// The products, in the order asked; unknown ids are left out.
    pub async fn get(&self, ids: &[i64]) -> Result<Vec<Product>, Error> {
        self.retry(|mut c| {
            let req = GetProductsRequest { ids: ids.to_vec() };
            async move { c.get_products(req).await.map(|r| r.into_inner().products) }
        })
        .await
    }

    /// Holds stock for the order (all lines or none), as the user whose token is given.
    pub async fn reserve(
        &self,
        token: &str,
        order_id: i64,
        lines: &[Line],
        ttl: Duration,
    ) -> Result<(), Error> {
        let ttl_seconds = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        self.retry(|mut c| {
            let req = ReserveStockRequest {
                order_id,
                lines: lines
                    .iter()
                    .map(|l| PbLine {
                        product_id: l.product_id,
                        quantity: l.quantity,
                    })
                    .collect(),
                ttl_seconds,
            };
            let req = with_bearer(Request::new(req), token);
            async move { c.reserve_stock(req).await.map(|_| ()) }
        })
        .await
    }

    /// Turns the order's held stock into sold stock (as this service). `Error::Gone` when the
    /// reservation expired or was released.
    pub async fn commit(&self, token: &str, order_id: i64) -> Result<(), Error> {
        self.retry(|mut c| {
            let req = with_bearer(Request::new(ReservationRef { order_id }), token);
            async move { c.commit_reservation(req).await.map(|_| ()) }
        })
        .await
    }

    /// Puts the order's sold stock back on hand (a refund; as this service).
    pub async fn return_stock(&self, token: &str, order_id: i64) -> Result<(), Error> {
        self.retry(|mut c| {
            let req = with_bearer(Request::new(ReservationRef { order_id }), token);
            async move { c.return_stock(req).await.map(|_| ()) }
        })
        .await
    }

    /// Gives the order's held stock back.
    pub async fn release(&self, token: &str, order_id: i64) -> Result<(), Error> {
        self.retry(|mut c| {
            let req = with_bearer(Request::new(ReservationRef { order_id }), token);
            async move { c.release_reservation(req).await.map(|_| ()) }
        })
        .await
    }
}
