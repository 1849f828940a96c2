//! The one rendering of errors: `{detail, code}` JSON with the right status over HTTP, and a
//! `tonic::Status` (with the same stable code in metadata) over gRPC.
//!
//! Each service keeps its own error enum and maps it once into [`ApiError`]; this module only
//! knows how to render. Unexpected causes never reach a client: they become an opaque 500.

use axum::{
    Json,
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

/// Metadata key carrying the stable error code on gRPC errors.
pub const GRPC_CODE_METADATA: &str = "ecom-error-code";

/// gRPC metadata carrying a refusal's `Retry-After` (seconds), so a caller such as the gateway
/// can tell its own client how long to wait.
pub const GRPC_RETRY_AFTER_METADATA: &str = "retry-after";

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Human-readable explanation; never contains internal details.
    pub detail: String,
    /// Stable snake_case code clients can branch on.
    pub code: String,
    /// Present on 422 validation errors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error on its way to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => "the request has invalid fields".to_owned(),
        };
        Self::invalid("validation_error", detail, errors)
    }

    /// A 422 with its own `code` (e.g. `invalid_card`) and the fields at fault.
    pub fn invalid(code: &'static str, detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
        }
    }

    pub fn field(field: &str, message: &str) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "validation_error", detail)
    }

    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", detail)
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "you are not allowed to do this",
        )
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        )
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many requests",
            )
        }
    }

    pub fn unavailable(what: &str) -> Self {
        Self {
            retry_after_secs: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                format!("{what} is unavailable, try again shortly"),
            )
        }
    }

    /// An unexpected failure. The cause is logged here, inside the request's span, and never
    /// sent to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        )
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            errors: self.errors.clone(),
        }
    }

    /// The gRPC rendering: a status code chosen by meaning, the stable code in metadata.
    pub fn to_status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match (self.status.as_u16(), self.code) {
            (400 | 422, _) => Code::InvalidArgument,
            (401, _) => Code::Unauthenticated,
            (403, _) => Code::PermissionDenied,
            (404, _) => Code::NotFound,
            (409, "email_taken" | "idempotency_conflict") => Code::AlreadyExists,
            (409, _) => Code::FailedPrecondition,
            // Gone: what the call needed no longer exists (an expired reservation).
            (410, _) => Code::Aborted,
            (429, _) => Code::ResourceExhausted,
            (503, _) => Code::Unavailable,
            _ => Code::Internal,
        };
        let mut status = tonic::Status::new(code, self.detail.clone());
        if let Ok(v) = self.code.parse() {
            status.metadata_mut().insert(GRPC_CODE_METADATA, v);
        }
        if let Some(secs) = self.retry_after_secs {
            status
                .metadata_mut()
                .insert(GRPC_RETRY_AFTER_METADATA, secs.into());
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        e.to_status()
    }
}

/// Turns a serde message like "email: invalid type: ..." or "missing field `email`" into a
/// field error, best effort.
fn field_error_from_serde(msg: &str) -> FieldError {
    let msg = msg.split(" at line ").next().unwrap_or(msg);
    if let Some(rest) = msg.strip_prefix("missing field `")
        && let Some((field, _)) = rest.split_once('`')
    {
        return FieldError::new(field, "is required");
    }
    match msg.split_once(": ") {
        Some((path, reason)) if !path.contains(' ') && path != "." => FieldError::new(path, reason),
        _ => FieldError::new("body", msg),
    }
}

/// `Json` whose rejection is our error shape (400 for malformed JSON, 422 for wrong fields).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

pub fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            let msg = text.split("target type: ").nth(1).unwrap_or(&text);
            ApiError::validation(vec![field_error_from_serde(msg)])
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("the body is not valid JSON"),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::bad_request("expected `Content-Type: application/json`")
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(),
        _ => ApiError::bad_request("the body could not be read"),
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// `Path` whose rejection is a 422 naming the parameter (e.g. a non-numeric id).
pub struct AppPath<T>(pub T);

impl<S, T> FromRequestParts<S> for AppPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let field = match e.kind() {
                    axum::extract::path::ErrorKind::ParseErrorAtKey { key, .. }
                    | axum::extract::path::ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                    _ => "path".to_owned(),
                };
                Err(ApiError::field(&field, "must be a positive integer"))
            }
            Err(_) => Err(ApiError::bad_request("invalid path")),
        }
    }
}

/// `Query` whose rejection is a 422 naming the parameter.
pub struct AppQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for AppQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                let msg = text.split("Query string: ").nth(1).unwrap_or(&text);
                Err(ApiError::validation(vec![field_error_from_serde(msg)]))
            }
            Err(_) => Err(ApiError::bad_request("invalid query string")),
        }
    }
}

/// Validated positive id from a path, for routes like `/users/{id}`.
pub fn positive_id(field: &str, id: i64) -> Result<i64, ApiError> {
    if id > 0 {
        Ok(id)
    } else {
        Err(ApiError::field(field, "must be a positive integer"))
    }
}

/// The adapters every service's error enum needs, written once: database errors become
/// `Unavailable("database")` (cannot reach it: 503) or `Internal` (a bug: opaque 500), and the
/// enum renders over HTTP through its `From<Error> for ApiError` mapping. The enum must have
/// `Unavailable(&'static str)` and `Internal(anyhow::Error)` variants.
#[macro_export]
macro_rules! service_error {
    ($error:ty) => {
        impl From<$crate::reexports::sqlx::Error> for $error {
            fn from(e: $crate::reexports::sqlx::Error) -> Self {
                if $crate::db::is_unavailable(&e) {
                    Self::Unavailable("database")
                } else {
                    Self::Internal(e.into())
                }
            }
        }

        impl $crate::reexports::axum::response::IntoResponse for $error {
            fn into_response(self) -> $crate::reexports::axum::response::Response {
                $crate::reexports::axum::response::IntoResponse::into_response(
                    $crate::ApiError::from(self),
                )
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_the_field() {
        assert_eq!(
            field_error_from_serde("missing field `email` at line 1 column 2"),
            FieldError::new("email", "is required")
        );
        assert_eq!(
            field_error_from_serde("limit: invalid digit found in string"),
            FieldError::new("limit", "invalid digit found in string")
        );
        assert_eq!(field_error_from_serde("expected value").field, "body");
    }

    #[test]
    fn grpc_status_keeps_the_stable_code() {
        let s = ApiError::conflict("email_taken", "taken").to_status();
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        assert_eq!(
            s.metadata()
                .get(GRPC_CODE_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some("email_taken")
        );
        assert_eq!(
            ApiError::not_found("user").to_status().code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            ApiError::rate_limited(3).to_status().code(),
            tonic::Code::ResourceExhausted
        );
    }
}
