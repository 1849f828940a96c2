//! The Gateway's one error type: what went wrong, as a GraphQL error with the contract's
//! `extensions.code` (plus the services' stable snake_case `reason`). Built from the services'
//! gRPC statuses (which carry that stable code in metadata) or raised at the edge.

use async_graphql::ErrorExtensions;
use ecom_shared::{
    auth::AuthError,
    error::{GRPC_CODE_METADATA, GRPC_RETRY_AFTER_METADATA},
};

/// The contract's GraphQL error codes.
pub mod codes {
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    pub const FORBIDDEN: &str = "FORBIDDEN";
    pub const NOT_FOUND: &str = "NOT_FOUND";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const INSUFFICIENT_STOCK: &str = "INSUFFICIENT_STOCK";
    pub const PAYMENT_DECLINED: &str = "PAYMENT_DECLINED";
    pub const CONFLICT: &str = "CONFLICT";
    pub const RATE_LIMITED: &str = "RATE_LIMITED";
    pub const SERVICE_UNAVAILABLE: &str = "SERVICE_UNAVAILABLE";
    pub const INTERNAL: &str = "INTERNAL_SERVER_ERROR";
}

#[derive(Debug, Clone)]
pub struct GatewayError {
    /// One of [`codes`].
    pub code: &'static str,
    /// The services' stable snake_case code (`insufficient_stock`, `invalid_token`, ...).
    pub reason: String,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl GatewayError {
    pub fn new(code: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn bad_input(field: &str, message: &str) -> Self {
        Self::new(
            codes::BAD_USER_INPUT,
            "validation_error",
            format!("{field}: {message}"),
        )
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            codes::UNAUTHENTICATED,
            "invalid_token",
            "sign in first: send `Authorization: Bearer <access_token>`",
        )
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(codes::RATE_LIMITED, "rate_limited", "too many requests")
        }
    }

    pub fn unavailable(what: &str) -> Self {
        Self {
            retry_after_secs: Some(5),
            ..Self::new(
                codes::SERVICE_UNAVAILABLE,
                "service_unavailable",
                format!("{what} is unavailable, try again shortly"),
            )
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code == codes::NOT_FOUND
    }

    /// The GraphQL code of a service's stable code.
    fn code_of_reason(reason: &str) -> Option<&'static str> {
        Some(match reason {
            "validation_error" | "invalid_card" => codes::BAD_USER_INPUT,
            "invalid_credentials" | "invalid_token" | "token_expired" => codes::UNAUTHENTICATED,
            "forbidden" => codes::FORBIDDEN,
            "not_found" => codes::NOT_FOUND,
            "insufficient_stock" => codes::INSUFFICIENT_STOCK,
            "card_declined" | "insufficient_funds" => codes::PAYMENT_DECLINED,
            "email_taken" | "idempotency_conflict" | "idempotency_key_in_use" | "invalid_state" => {
                codes::CONFLICT
            }
            "rate_limited" => codes::RATE_LIMITED,
            "service_unavailable" => codes::SERVICE_UNAVAILABLE,
            _ => return None,
        })
    }

    /// A service's answer. `service` names it in messages about its availability.
    pub fn from_status(service: &str, status: &tonic::Status) -> Self {
        use tonic::Code;
        let reason = status
            .metadata()
            .get(GRPC_CODE_METADATA)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let by_code = match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => {
                Some(codes::SERVICE_UNAVAILABLE)
            }
            Code::Unauthenticated => Some(codes::UNAUTHENTICATED),
            Code::PermissionDenied => Some(codes::FORBIDDEN),
            Code::NotFound => Some(codes::NOT_FOUND),
            Code::InvalidArgument => Some(codes::BAD_USER_INPUT),
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => Some(codes::CONFLICT),
            Code::ResourceExhausted => Some(codes::RATE_LIMITED),
            _ => None,
        };
        let code = reason.as_deref().and_then(Self::code_of_reason).or(by_code);
        match code {
            Some(codes::SERVICE_UNAVAILABLE) => {
                if reason.is_none() {
                    tracing::warn!(service, code = ?status.code(), "upstream unavailable");
                }
                Self::unavailable(service)
            }
            // The service's own wait when it says (a registration budget refills in minutes).
            Some(codes::RATE_LIMITED) => Self::rate_limited(
                status
                    .metadata()
                    .get(GRPC_RETRY_AFTER_METADATA)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(5),
            ),
            Some(code) => Self::new(
                code,
                reason.as_deref().unwrap_or(match code {
                    codes::UNAUTHENTICATED => "invalid_token",
                    codes::FORBIDDEN => "forbidden",
                    codes::NOT_FOUND => "not_found",
                    codes::BAD_USER_INPUT => "validation_error",
                    _ => "conflict",
                }),
                status.message(),
            ),
            None => {
                // Internal detail stays in our log, never in the answer.
                tracing::error!(service, code = ?status.code(), message = status.message(), "upstream failed");
                Self::new(codes::INTERNAL, "internal_error", "internal error")
            }
        }
    }
}

impl From<AuthError> for GatewayError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Expired => Self::new(
                codes::UNAUTHENTICATED,
                "token_expired",
                "the access token has expired",
            ),
            AuthError::KeysUnavailable => Self::unavailable("token verification"),
            AuthError::AccountsUnavailable => Self::unavailable("account check"),
            AuthError::Missing | AuthError::Invalid => {
                Self::new(codes::UNAUTHENTICATED, "invalid_token", e.to_string())
            }
        }
    }
}

impl From<GatewayError> for async_graphql::Error {
    fn from(e: GatewayError) -> Self {
        async_graphql::Error::new(e.message.clone()).extend_with(|_, ext| {
            ext.set("code", e.code);
            ext.set("reason", e.reason.as_str());
            if let Some(secs) = e.retry_after_secs {
                ext.set("retryAfter", secs);
            }
        })
    }
}

/// `Result` of a resolver step.
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use ecom_shared::error::ApiError;

    use super::*;

    #[test]
    fn a_services_stable_code_picks_the_graphql_code() {
        let status = ApiError::conflict("insufficient_stock", "not enough").to_status();
        let e = GatewayError::from_status("orders", &status);
        assert_eq!(e.code, codes::INSUFFICIENT_STOCK);
        assert_eq!(e.reason, "insufficient_stock");
        let status = ApiError::conflict("invalid_state", "paid").to_status();
        assert_eq!(
            GatewayError::from_status("payments", &status).code,
            codes::CONFLICT
        );
    }

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let status = tonic::Status::internal("relation \"orders\" does not exist");
        let e = GatewayError::from_status("orders", &status);
        assert_eq!(e.code, codes::INTERNAL);
        assert!(!e.message.contains("relation"));
    }

    #[test]
    fn a_services_retry_after_reaches_the_client() {
        let e = GatewayError::from_status("users", &ApiError::rate_limited(180).to_status());
        assert_eq!(e.code, codes::RATE_LIMITED);
        assert_eq!(e.retry_after_secs, Some(180));
        let e = GatewayError::from_status("users", &ApiError::unavailable("hashing").to_status());
        assert_eq!(e.code, codes::SERVICE_UNAVAILABLE);
        assert!(e.retry_after_secs.is_some());
    }

    #[test]
    fn a_service_down_is_service_unavailable() {
        let e =
            GatewayError::from_status("products", &tonic::Status::unavailable("tcp connect error"));
        assert_eq!(e.code, codes::SERVICE_UNAVAILABLE);
        assert!(!e.message.contains("tcp"));
    }
}
