//! The Users service's one error type, mapped once to HTTP (status + code) and once to gRPC.

use ecom_shared::{ApiError, ErrorCode, FieldError, auth::AuthError};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("invalid e-mail or password")]
    InvalidCredentials,
    #[error("this e-mail is already registered")]
    EmailTaken,
    /// A refresh token that is unknown, expired, used or revoked.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("user not found")]
    NotFound,
    #[error("{0}")]
    InvalidState(&'static str),
    #[error("too many attempts")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn field(field: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<crate::hashing::HashError> for Error {
    fn from(e: crate::hashing::HashError) -> Self {
        match e {
            // Refused at once rather than queued without bound: the client retries shortly.
            crate::hashing::HashError::Saturated => Self::Unavailable("password hashing"),
            crate::hashing::HashError::Failed(cause) => Self::Internal(cause),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Validation(errors) => ApiError::validation(errors),
            Error::InvalidCredentials => {
                ApiError::new(ErrorCode::InvalidCredentials, "invalid e-mail or password")
            }
            Error::EmailTaken => {
                ApiError::new(ErrorCode::EmailTaken, "this e-mail is already registered")
            }
            Error::InvalidRefreshToken => {
                ApiError::invalid_token("the refresh token is invalid or has expired")
            }
            Error::Auth(a) => a.into(),
            Error::NotFound => ApiError::not_found("user"),
            Error::InvalidState(why) => ApiError::new(ErrorCode::InvalidState, why),
            Error::RateLimited { retry_after_secs } => ApiError::rate_limited(retry_after_secs),
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
