//! The Products gRPC client: prices and stock, with deadlines and retries of what is idempotent.

use std::{sync::Arc, time::Duration};

use ecom_proto::products::v1::{
    GetProductsRequest, Line as PbLine, Product, Quote as PbQuote, ReservationRef,
    ReserveStockRequest, product_service_client::ProductServiceClient,
};
use ecom_shared::{ErrorCode, auth::with_bearer, grpc::GrpcChannel, service_tokens::ServiceTokens};
use tonic::{Code, Request, Status};

use crate::{domain::Line, error::Error};

/// Attempts for a call that is safe to repeat (every call here is idempotent per order id).
const ATTEMPTS: u32 = 3;

/// A product's name and price as Products gave them: when its stock was held (`ReserveStock`'s
/// quotes), or from the catalogue (`GetProducts`). The price is Products' decimal text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub product_id: i64,
    pub name: String,
    pub unit_price: String,
    pub currency: String,
}

impl From<PbQuote> for Quote {
    fn from(q: PbQuote) -> Self {
        Self {
            product_id: q.product_id,
            name: q.name,
            unit_price: q.unit_price,
            currency: q.currency,
        }
    }
}

impl From<Product> for Quote {
    fn from(p: Product) -> Self {
        Self {
            product_id: p.id,
            name: p.name,
            unit_price: p.price,
            currency: p.currency,
        }
    }
}

/// Products' client. Every stock call carries this service's own token, never a user's:
/// Products accepts stock calls from the Orders service only (a user could otherwise hold,
/// release or claim any order id's stock directly).
#[derive(Clone)]
pub struct ProductsClient {
    client: ProductServiceClient<GrpcChannel>,
    tokens: Arc<ServiceTokens>,
}

fn transient(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

/// Products' refusal as this service's error, by the stable code Products put on it (the
/// closest one by gRPC code for a status without it), matched exhaustively.
fn to_error(s: Status) -> Error {
    use ErrorCode as C;
    match ErrorCode::of_status(&s).or_else(|| ErrorCode::from_grpc(s.code())) {
        Some(C::InsufficientStock) => Error::InsufficientStock(s.message().to_owned()),
        // Named as the client named them (`items`): Products' own field names are its API's.
        Some(C::NotFound) => {
            Error::UnknownProducts(vec![ecom_shared::FieldError::new("items", s.message())])
        }
        Some(C::ValidationError | C::PayloadTooLarge) => Error::field("items", s.message()),
        Some(C::InvalidState) => Error::InvalidState(s.message().to_owned()),
        Some(C::ReservationExpired | C::OrderCancelled) => Error::Gone(s.message().to_owned()),
        // Our own service token was refused (after one renewal): not the client's doing.
        Some(C::InvalidToken | C::TokenExpired | C::InvalidCredentials) => {
            tracing::warn!(
                message = s.message(),
                "products refused this service's token"
            );
            Error::Unavailable("products (service token refused)")
        }
        Some(C::ServiceUnavailable) => {
            tracing::warn!(code = ?s.code(), message = s.message(), "products unavailable");
            Error::Unavailable("products")
        }
        None if transient(&s) => {
            tracing::warn!(code = ?s.code(), message = s.message(), "products unavailable");
            Error::Unavailable("products")
        }
        // Nothing Orders sends can earn these: a bug or a misconfiguration, not the client's.
        Some(
            C::InvalidCard
            | C::Forbidden
            | C::EmailTaken
            | C::IdempotencyConflict
            | C::IdempotencyKeyInUse
            | C::CardDeclined
            | C::InsufficientFunds
            | C::RateLimited
            | C::InternalError,
        )
        | None => Error::Internal(anyhow::anyhow!("products: {:?} {}", s.code(), s.message())),
    }
}

impl ProductsClient {
    pub fn new(channel: GrpcChannel, tokens: Arc<ServiceTokens>) -> Self {
        Self {
            client: ProductServiceClient::new(channel),
            tokens,
        }
    }

    /// A stock call as this service, retried like [`Self::retry`]; a refused token is renewed
    /// once (the Users keys may have rotated).
    async fn as_orders<M, T, F, Fut>(&self, message: M, mut call: F) -> Result<T, Error>
    where
        M: Clone,
        F: FnMut(ProductServiceClient<GrpcChannel>, Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut renewed = false;
        loop {
            let token = self.tokens.token().await.map_err(|e| {
                tracing::warn!(error = %e, "no service token");
                Error::Unavailable("users (service token)")
            })?;
            let result = self
                .retry_raw(|c| call(c, with_bearer(Request::new(message.clone()), &token)))
                .await;
            match result {
                Err(s) if s.code() == Code::Unauthenticated && !renewed => {
                    renewed = true;
                    self.tokens.invalidate().await;
                }
                other => return other.map_err(to_error),
            }
        }
    }

    async fn retry<T, F, Fut>(&self, call: F) -> Result<T, Error>
    where
        F: FnMut(ProductServiceClient<GrpcChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        self.retry_raw(call).await.map_err(to_error)
    }

    /// Up to [`ATTEMPTS`] tries while the error is transient; the last status otherwise.
    async fn retry_raw<T, F, Fut>(&self, mut call: F) -> Result<T, Status>
    where
        F: FnMut(ProductServiceClient<GrpcChannel>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut delay = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match call(self.client.clone()).await {
                Err(s) if transient(&s) && attempt < ATTEMPTS => {
                    tokio::time::sleep(delay).await;
                    delay *= 3;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// The catalogue's names and prices of these products, in the order asked; unknown ids are
    /// left out.
    pub async fn quotes(&self, ids: &[i64]) -> Result<Vec<Quote>, Error> {
        self.retry(|mut c| {
            let req = GetProductsRequest { ids: ids.to_vec() };
            async move { c.get_products(req).await.map(|r| r.into_inner().products) }
        })
        .await
        .map(|products| products.into_iter().map(Quote::from).collect())
    }

    /// Holds stock for the order (all lines or none), for as long as Products is configured to:
    /// each line's name and price as they were at the hold (a retry answers the same ones), or
    /// `None` from a Products that does not quote them.
    pub async fn reserve(
        &self,
        order_id: i64,
        lines: &[Line],
    ) -> Result<Option<Vec<Quote>>, Error> {
        let message = ReserveStockRequest {
            order_id,
            lines: lines
                .iter()
                .map(|l| PbLine {
                    product_id: l.product_id,
                    quantity: l.quantity,
                })
                .collect(),
            // Ignored by Products (its own ECOM_RESERVATION_TTL_SECONDS applies).
            ttl_seconds: 0,
        };
        let reservation = self
            .as_orders(message, |mut c, req| async move {
                c.reserve_stock(req).await.map(|r| r.into_inner())
            })
            .await?;
        // One quote per line, or none at all (a reservation from before Products kept them).
        Ok((reservation.quotes.len() == lines.len())
            .then(|| reservation.quotes.into_iter().map(Quote::from).collect()))
    }

    /// Turns the order's held stock into sold stock. `Error::Gone` when the reservation expired
    /// or was released.
    pub async fn commit(&self, order_id: i64) -> Result<(), Error> {
        self.as_orders(ReservationRef { order_id }, |mut c, req| async move {
            c.commit_reservation(req).await.map(|_| ())
        })
        .await
    }

    /// Puts the order's sold stock back on hand (a refund).
    pub async fn return_stock(&self, order_id: i64) -> Result<(), Error> {
        self.as_orders(ReservationRef { order_id }, |mut c, req| async move {
            c.return_stock(req).await.map(|_| ())
        })
        .await
    }

    /// Gives the order's held stock back.
    pub async fn release(&self, order_id: i64) -> Result<(), Error> {
        self.as_orders(ReservationRef { order_id }, |mut c, req| async move {
            c.release_reservation(req).await.map(|_| ())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use ecom_shared::ApiError;

    use super::*;

    fn refused(code: ErrorCode) -> Error {
        to_error(ApiError::new(code, "why").to_status())
    }

    #[test]
    fn a_products_refusal_keeps_its_meaning() {
        assert!(matches!(
            refused(ErrorCode::InsufficientStock),
            Error::InsufficientStock(_)
        ));
        assert!(matches!(
            refused(ErrorCode::InvalidState),
            Error::InvalidState(_)
        ));
        assert!(matches!(
            refused(ErrorCode::ReservationExpired),
            Error::Gone(_)
        ));
        assert!(matches!(
            refused(ErrorCode::ServiceUnavailable),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            refused(ErrorCode::InternalError),
            Error::Internal(_)
        ));
        // Fields are named as the client named them, never as Products' API does.
        let products_fields = ApiError::validation(vec![ecom_shared::FieldError::new(
            "lines[0].quantity",
            "must be positive",
        )]);
        match to_error(products_fields.to_status()) {
            Error::Validation(errors) => assert_eq!(errors[0].field, "items"),
            other => panic!("{other:?}"),
        }
        // Without our code: by the gRPC code, transport failures being unavailability.
        assert!(matches!(
            to_error(Status::unavailable("connect")),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            to_error(Status::unknown("?")),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            to_error(Status::internal("?")),
            Error::Internal(_)
        ));
    }
}
