//! The Products service's one error type, mapped once to HTTP and once to gRPC.

use ecom_shared::{ApiError, ErrorCode, FieldError, auth::AuthError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("product not found")]
    NotFound,
    #[error("unknown products: {0:?}")]
    UnknownProducts(Vec<i64>),
    #[error("not enough stock for products {0:?}")]
    InsufficientStock(Vec<i64>),
    #[error("reservation not found")]
    ReservationNotFound,
    /// The order id was reserved before with other lines.
    #[error("this order was reserved with other lines")]
    ReservationConflict,
    /// Committing a reservation that expired or was released: the caller must refund.
    #[error("the reservation expired or was released")]
    ReservationExpired,
    #[error("{0}")]
    InvalidState(&'static str),
    /// Authenticated, but not an identity this operation accepts.
    #[error("not allowed")]
    Forbidden,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn ids(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Validation(errors) => ApiError::validation(errors),
            Error::NotFound => ApiError::not_found("product"),
            Error::UnknownProducts(v) => ApiError::new(
                ErrorCode::NotFound,
                format!("unknown products: {}", ids(&v)),
            ),
            Error::InsufficientStock(v) => ApiError::new(
                ErrorCode::InsufficientStock,
                format!("not enough stock for products: {}", ids(&v)),
            ),
            Error::ReservationNotFound => ApiError::not_found("reservation"),
            Error::ReservationConflict => ApiError::new(
                ErrorCode::IdempotencyConflict,
                "this order was reserved with other lines",
            ),
            Error::ReservationExpired => ApiError::new(
                ErrorCode::ReservationExpired,
                "the reservation expired or was released; nothing was committed",
            ),
            Error::InvalidState(why) => ApiError::new(ErrorCode::InvalidState, why),
            Error::Forbidden => ApiError::forbidden(),
            Error::Auth(a) => a.into(),
            Error::Unavailable(what) => ApiError::unavailable(what),
            Error::Internal(cause) => ApiError::internal(&format!("{cause:#}")),
        }
    }
}

ecom_shared::service_error!(Error);

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let short = match &e {
            Error::InsufficientStock(v) => Some(ids(v).replace(' ', "")),
            _ => None,
        };
        let mut status = ApiError::from(e).to_status();
        if let Some(v) = short.and_then(|s| s.parse().ok()) {
            status
                .metadata_mut()
                .insert("ecom-insufficient-products", v);
        }
        status
    }
}
