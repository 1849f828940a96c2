//! The Orders service's one error type, mapped once to HTTP and once to gRPC.

use ecom_shared::{
    ApiError, ErrorCode, FieldError,
    auth::AuthError,
    idempotency::{self, KeyError},
};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    /// Missing, or not the caller's: the same answer, so ids cannot be probed.
    #[error("order not found")]
    NotFound,
    /// Lines naming products the catalogue does not have (a 404 naming each line, like any
    /// reference to something that does not exist).
    #[error("unknown products")]
    UnknownProducts(Vec<FieldError>),
    #[error("not enough stock: {0}")]
    InsufficientStock(String),
    #[error("this idempotency key was used with another request")]
    IdempotencyConflict,
    #[error("a request with this Idempotency-Key is still in progress")]
    KeyInUse,
    #[error("{0}")]
    InvalidState(String),
    /// What the call needed no longer exists (a cancelled order, an expired reservation).
    #[error("{0}")]
    Gone(String),
    #[error("not allowed")]
    Forbidden,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Conflict => Self::IdempotencyConflict,
            KeyError::InUse => Self::KeyInUse,
            KeyError::Store(e) => e.into(),
        }
    }
}

impl Error {
    pub fn field(field: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Validation(errors) => ApiError::validation(errors),
            Error::NotFound => ApiError::not_found("order"),
            Error::UnknownProducts(errors) => ApiError {
                errors,
                ..ApiError::not_found("product")
            },
            Error::InsufficientStock(detail) => ApiError::new(ErrorCode::InsufficientStock, detail),
            Error::IdempotencyConflict => idempotency::conflict_error(),
            Error::KeyInUse => idempotency::in_use_error(),
            Error::InvalidState(why) => ApiError::new(ErrorCode::InvalidState, why),
            Error::Gone(why) => ApiError::new(ErrorCode::OrderCancelled, why),
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
        ApiError::from(e).to_status()
    }
}
