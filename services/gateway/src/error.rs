//! The Gateway's one error type: what went wrong, as a GraphQL error with the contract's
//! `extensions.code` (plus the services' stable snake_case code as `reason`, and the fields at
//! fault as `errors`). Built from the services' gRPC statuses (which carry that stable code in
//! metadata and field errors as `BadRequest` details) or raised at the edge. Both codes come
//! from the one table, [`ErrorCode`].

use async_graphql::ErrorExtensions;
use ecom_shared::{
    FieldError,
    auth::AuthError,
    error::{ApiError, ErrorCode, GRPC_RETRY_AFTER_METADATA, GraphqlCode, field_errors_of},
};

/// The contract's GraphQL error codes the gateway writes or reads in documents it handles as
/// JSON (its own refusals, the status of an answer), as strings.
pub mod codes {
    use ecom_shared::error::GraphqlCode;

    pub const BAD_USER_INPUT: &str = GraphqlCode::BadUserInput.as_str();
    pub const RATE_LIMITED: &str = GraphqlCode::RateLimited.as_str();
    pub const SERVICE_UNAVAILABLE: &str = GraphqlCode::ServiceUnavailable.as_str();
}

#[derive(Debug, Clone)]
pub struct GatewayError {
    /// The stable code (`insufficient_stock`, `invalid_token`, ...); its GraphQL code is
    /// [`GatewayError::code`].
    pub reason: ErrorCode,
    pub message: String,
    /// The fields at fault, when the service named them.
    pub errors: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
}

impl GatewayError {
    pub fn new(reason: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            errors: Vec::new(),
            retry_after_secs: None,
        }
    }

    /// The GraphQL `extensions.code`.
    pub fn code(&self) -> GraphqlCode {
        self.reason.graphql_code()
    }

    pub fn bad_input(field: &str, message: &str) -> Self {
        Self {
            errors: vec![FieldError::new(field, message)],
            ..Self::new(ErrorCode::ValidationError, format!("{field}: {message}"))
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            ErrorCode::InvalidToken,
            "sign in first: send `Authorization: Bearer <access_token>`",
        )
    }

    /// The services' own 429 (same text and minimum wait).
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        ApiError::rate_limited(retry_after_secs).into()
    }

    /// The services' own 503 (same text and wait).
    pub fn unavailable(what: &str) -> Self {
        ApiError::unavailable(what).into()
    }

    /// An answer the gateway cannot use (the detail is logged where it is known).
    pub fn internal() -> Self {
        Self::new(ErrorCode::InternalError, "internal error")
    }

    pub fn is_not_found(&self) -> bool {
        self.reason == ErrorCode::NotFound
    }

    /// A service's answer. `service` names it in messages about its availability.
    pub fn from_status(service: &str, status: &tonic::Status) -> Self {
        let stated = ErrorCode::of_status(status);
        match stated.or_else(|| ErrorCode::from_grpc(status.code())) {
            Some(ErrorCode::ServiceUnavailable) => {
                if stated.is_none() {
                    tracing::warn!(service, code = ?status.code(), "upstream unavailable");
                }
                Self::unavailable(service)
            }
            // The service's own wait when it says (a registration budget refills in minutes).
            Some(ErrorCode::RateLimited) => Self::rate_limited(
                status
                    .metadata()
                    .get(GRPC_RETRY_AFTER_METADATA)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(5),
            ),
            Some(ErrorCode::InternalError) | None => {
                // Internal detail stays in our log, never in the answer.
                tracing::error!(service, code = ?status.code(), message = status.message(), "upstream failed");
                Self::internal()
            }
            Some(reason) => Self {
                errors: field_errors_of(status),
                ..Self::new(reason, status.message())
            },
        }
    }
}

impl From<ApiError> for GatewayError {
    fn from(e: ApiError) -> Self {
        Self {
            reason: e.code,
            message: e.detail,
            errors: e.errors,
            retry_after_secs: e.retry_after_secs,
        }
    }
}

/// The REST rendering of an error raised at the edge (the REST facade's login throttle).
impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        ApiError {
            status: e.reason.http_status(),
            code: e.reason,
            detail: e.message,
            errors: e.errors,
            retry_after_secs: e.retry_after_secs,
        }
    }
}

impl From<AuthError> for GatewayError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Expired => {
                Self::new(ErrorCode::TokenExpired, "the access token has expired")
            }
            AuthError::KeysUnavailable => Self::unavailable("token verification"),
            AuthError::AccountsUnavailable => Self::unavailable("account check"),
            AuthError::Missing | AuthError::Invalid => {
                Self::new(ErrorCode::InvalidToken, e.to_string())
            }
        }
    }
}

impl From<GatewayError> for async_graphql::Error {
    fn from(e: GatewayError) -> Self {
        async_graphql::Error::new(e.message.clone()).extend_with(|_, ext| {
            ext.set("code", e.code().as_str());
            ext.set("reason", e.reason.as_str());
            if !e.errors.is_empty() {
                let errors = serde_json::to_value(&e.errors).unwrap_or_default();
                ext.set(
                    "errors",
                    async_graphql::Value::from_json(errors).unwrap_or_default(),
                );
            }
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
    use super::*;

    #[test]
    fn a_services_stable_code_picks_the_graphql_code() {
        let status = ApiError::new(ErrorCode::InsufficientStock, "not enough").to_status();
        let e = GatewayError::from_status("orders", &status);
        assert_eq!(e.code(), GraphqlCode::InsufficientStock);
        assert_eq!(e.reason, ErrorCode::InsufficientStock);
        let status = ApiError::new(ErrorCode::InvalidState, "paid").to_status();
        assert_eq!(
            GatewayError::from_status("payments", &status).code(),
            GraphqlCode::Conflict
        );
        // Every code of the table comes back out as itself, with its GraphQL code.
        for &code in ErrorCode::ALL {
            let e = GatewayError::from_status("orders", &ApiError::new(code, "x").to_status());
            assert_eq!(e.code(), code.graphql_code(), "{code}");
        }
    }

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let status = tonic::Status::internal("relation \"orders\" does not exist");
        let e = GatewayError::from_status("orders", &status);
        assert_eq!(e.code(), GraphqlCode::Internal);
        assert!(!e.message.contains("relation"));
    }

    #[test]
    fn a_services_retry_after_reaches_the_client() {
        let e = GatewayError::from_status("users", &ApiError::rate_limited(180).to_status());
        assert_eq!(e.code(), GraphqlCode::RateLimited);
        assert_eq!(e.retry_after_secs, Some(180));
        let e = GatewayError::from_status("users", &ApiError::unavailable("hashing").to_status());
        assert_eq!(e.code(), GraphqlCode::ServiceUnavailable);
        assert!(e.retry_after_secs.is_some());
    }

    #[test]
    fn a_service_down_is_service_unavailable() {
        let e =
            GatewayError::from_status("products", &tonic::Status::unavailable("tcp connect error"));
        assert_eq!(e.code(), GraphqlCode::ServiceUnavailable);
        assert!(!e.message.contains("tcp"));
    }

    #[test]
    fn field_errors_come_back_out_at_the_gateway() {
        let sent = vec![
            FieldError::new("items[0].quantity", "must be between 1 and 1000"),
            FieldError::new("items[1].product_id", "must be a positive integer"),
        ];
        let e =
            GatewayError::from_status("orders", &ApiError::validation(sent.clone()).to_status());
        assert_eq!(e.code(), GraphqlCode::BadUserInput);
        assert_eq!(e.errors, sent);
        let graphql = async_graphql::Error::from(e);
        let ext = serde_json::to_value(graphql.extensions).expect("json");
        assert_eq!(ext["code"], "BAD_USER_INPUT");
        assert_eq!(ext["reason"], "validation_error");
        assert_eq!(ext["errors"][1]["field"], "items[1].product_id");
        assert_eq!(ext["errors"][0]["message"], "must be between 1 and 1000");
    }
}
