//! The Payments service's one error type, mapped once to HTTP and once to gRPC.

use ecom_shared::{
    ApiError, ErrorCode, FieldError,
    auth::AuthError,
    idempotency::{self, KeyError},
};

use crate::domain::PayError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    /// The card itself is unusable (Luhn, expiry, CVC): nothing was stored.
    #[error("invalid card")]
    InvalidCard(Vec<FieldError>),
    /// Missing, or not the caller's: the same answer, so ids cannot be probed.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("this idempotency key was used with another request")]
    IdempotencyConflict,
    #[error("a request with this Idempotency-Key is still in progress")]
    KeyInUse,
    #[error("{0}")]
    InvalidState(String),
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

impl From<PayError> for Error {
    fn from(e: PayError) -> Self {
        match e {
            PayError::Validation(errors) => Self::Validation(errors),
            PayError::Card(errors) => Self::InvalidCard(errors),
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
            Error::InvalidCard(errors) => ApiError::invalid(
                ErrorCode::InvalidCard,
                "the card was refused before any charge: check number, expiry and CVC",
                errors,
            ),
            Error::NotFound(what) => ApiError::not_found(what),
            Error::IdempotencyConflict => idempotency::conflict_error(),
            Error::KeyInUse => idempotency::in_use_error(),
            Error::InvalidState(why) => ApiError::new(ErrorCode::InvalidState, why),
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
