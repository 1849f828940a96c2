//! The one rendering of errors: `{detail, code}` JSON with the right status over HTTP, and a
//! `tonic::Status` (with the same stable code in metadata) over gRPC.
//!
//! Each service keeps its own error enum and maps it once into [`ApiError`], naming a code of
//! the one table ([`ErrorCode`], `crate::error_code`); this module only knows how to render. Unexpected causes never reach a client: they become an opaque 500.

use axum::{
    Json,
    body::{Body, Bytes},
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{
    Deserializer, Serialize,
    de::{DeserializeOwned, Visitor},
};

pub use crate::error_code::{ErrorCode, GraphqlCode};

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

/// An error on its way to a client: a code of the one table ([`ErrorCode`]) and what the client
/// is told. The status is the code's, except `validation_error` for a body that is not JSON at
/// all (400, [`ApiError::bad_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    /// An error with `code`, answered with the code's status.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status: code.http_status(),
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
        Self::invalid(ErrorCode::ValidationError, detail, errors)
    }

    /// An error with its own `code` (e.g. `invalid_card`) and the fields at fault.
    pub fn invalid(code: ErrorCode, detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(code, detail)
        }
    }

    pub fn field(field: &str, message: &str) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    /// A request that could not be read at all (not JSON, the wrong content type): 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            ..Self::new(ErrorCode::ValidationError, detail)
        }
    }

    pub fn invalid_token(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidToken, detail)
    }

    pub fn forbidden() -> Self {
        Self::new(ErrorCode::Forbidden, "you are not allowed to do this")
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn payload_too_large() -> Self {
        Self::new(ErrorCode::PayloadTooLarge, "the request body is too large")
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(ErrorCode::RateLimited, "too many requests")
        }
    }

    pub fn unavailable(what: &str) -> Self {
        Self {
            retry_after_secs: Some(5),
            ..Self::new(
                ErrorCode::ServiceUnavailable,
                format!("{what} is unavailable, try again shortly"),
            )
        }
    }

    /// An unexpected failure. The cause is logged here, inside the request's span, and never
    /// sent to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(ErrorCode::InternalError, "internal server error")
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            detail: self.detail.clone(),
            code: self.code.as_str().to_owned(),
            errors: self.errors.clone(),
        }
    }

    /// The gRPC rendering: the code's gRPC status code, the stable code in metadata, the field
    /// errors as `google.rpc.BadRequest` details (read back with [`field_errors_of`]).
    pub fn to_status(&self) -> tonic::Status {
        use tonic_types::{ErrorDetails, FieldViolation, StatusExt};
        let code = self.code.grpc_code();
        let mut status = if self.errors.is_empty() {
            tonic::Status::new(code, self.detail.clone())
        } else {
            let violations: Vec<FieldViolation> = self
                .errors
                .iter()
                .map(|e| FieldViolation::new(e.field.clone(), e.message.clone()))
                .collect();
            tonic::Status::with_error_details(
                code,
                self.detail.clone(),
                ErrorDetails::with_bad_request(violations),
            )
        };
        status.metadata_mut().insert(
            GRPC_CODE_METADATA,
            tonic::metadata::MetadataValue::from_static(self.code.as_str()),
        );
        if let Some(secs) = self.retry_after_secs {
            status
                .metadata_mut()
                .insert(GRPC_RETRY_AFTER_METADATA, secs.into());
        }
        status
    }
}

/// The field errors a service sent with a gRPC status (`google.rpc.BadRequest` details), in
/// order; empty when there are none.
pub fn field_errors_of(status: &tonic::Status) -> Vec<FieldError> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| {
            b.field_violations
                .into_iter()
                .map(|v| FieldError::new(v.field, v.description))
                .collect()
        })
        .unwrap_or_default()
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
/// A struct is read from a JSON object only: serde's derive also takes an array of the fields
/// in order (`[null, null]`), which no client means and no document describes (422).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = match Bytes::from_request(Request::from_parts(parts.clone(), body), state).await
        {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::payload_too_large());
            }
            Err(_) => return Err(ApiError::bad_request("the body could not be read")),
        };
        let req = Request::from_parts(parts, Body::from(bytes.clone()));
        let value = match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => v,
            Err(rejection) => return Err(json_rejection(&rejection)),
        };
        let is_array = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'[');
        if is_array
            && T::deserialize(ObjectOnly(&mut serde_json::Deserializer::from_slice(
                &bytes,
            )))
            .is_err()
        {
            return Err(ApiError::field("body", "must be a JSON object"));
        }
        Ok(Self(value))
    }
}

/// The top level of a JSON document as `serde_json` reads it, except that a struct must be an
/// object (serde_json also reads one from an array of its fields).
struct ObjectOnly<D>(D);

macro_rules! forward_to_inner {
    ($($method:ident),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
    type Error = D::Error;

    forward_to_inner!(
        deserialize_any,
        deserialize_bool,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_f32,
        deserialize_f64,
        deserialize_char,
        deserialize_str,
        deserialize_string,
        deserialize_bytes,
        deserialize_byte_buf,
        deserialize_option,
        deserialize_unit,
        deserialize_seq,
        deserialize_map,
        deserialize_identifier,
        deserialize_ignored_any,
    );

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
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

/// OpenAPI documentation of the error answers, written once for every service's document: each
/// is an [`ErrorBody`] in JSON (`#/components/schemas/ErrorBody`), with the headers the answer
/// carries (`WWW-Authenticate` on 401, `Retry-After` on 429 and 503).
///
/// Use the types in `#[utoipa::path(responses(...))]` beside the success tuples, e.g.
/// `responses((status = 200, body = User), doc::Authenticated, doc::JsonBody, doc::Unavailable)`,
/// and [`doc::add_to_every_operation`] for an answer a middleware can give to any route (the
/// gateway's rate limiter). A document that uses them must contain the `ErrorBody` schema:
/// [`doc::register_schemas`] makes sure of it.
pub mod doc {
    use std::collections::BTreeMap;

    use utoipa::{
        IntoResponses, PartialSchema, ToSchema,
        openapi::{
            Content, Object, OpenApi, RefOr, Type, header::Header, path::Operation,
            response::Response, schema::Ref,
        },
    };

    use super::{ErrorBody, FieldError};

    /// An error answer: an [`ErrorBody`] with `description`.
    pub fn error_response(description: &str) -> Response {
        let mut response = Response::new(description);
        response.content.insert(
            "application/json".to_owned(),
            RefOr::T(Content::new(Some(Ref::from_schema_name(ErrorBody::name())))),
        );
        response
    }

    fn with_header(
        mut response: Response,
        name: &str,
        schema: Type,
        description: &str,
    ) -> Response {
        let mut header = Header::new(Object::with_type(schema));
        header.description = Some(description.to_owned());
        response.headers.insert(name.to_owned(), RefOr::T(header));
        response
    }

    /// The answer for `status` as every service gives it (400, 401, 403, 404, 409, 413, 422, 429,
    /// 503); `None` for any other status.
    pub fn standard(status: u16) -> Option<Response> {
        let retry_after = "seconds to wait before trying again";
        let response = match status {
            400 => error_response(
                "`validation_error`: the body is not valid JSON, or not of the documented content type",
            ),
            401 => with_header(
                error_response(
                    "`invalid_token` or `token_expired`: no bearer token, or a bad or expired one",
                ),
                "WWW-Authenticate",
                Type::String,
                "`Bearer`",
            ),
            403 => error_response("`forbidden`: authenticated, but not allowed to do this"),
            404 => error_response("`not_found`: no such resource, or not yours"),
            409 => error_response("a conflict with the current state (see `code`)"),
            413 => error_response("`payload_too_large`: the body is over the limit"),
            422 => error_response(
                "`validation_error` (or a more specific code): invalid input; `errors` names each field",
            ),
            429 => with_header(
                error_response("`rate_limited`: over a rate limit; wait `Retry-After` seconds"),
                "Retry-After",
                Type::Integer,
                retry_after,
            ),
            503 => with_header(
                error_response(
                    "`service_unavailable`: a dependency is down or saturated; try again after `Retry-After` seconds",
                ),
                "Retry-After",
                Type::Integer,
                retry_after,
            ),
            _ => return None,
        };
        Some(response)
    }

    fn responses(statuses: &[u16]) -> BTreeMap<String, RefOr<Response>> {
        statuses
            .iter()
            .filter_map(|&s| standard(s).map(|r| (s.to_string(), RefOr::T(r))))
            .collect()
    }

    macro_rules! error_responses {
        ($($(#[$doc:meta])* $name:ident = [$($status:literal),+];)*) => {$(
            $(#[$doc])*
            pub struct $name;

            impl IntoResponses for $name {
                fn responses() -> BTreeMap<String, RefOr<Response>> {
                    responses(&[$($status),+])
                }
            }
        )*};
    }

    error_responses! {
        /// 400: malformed JSON or the wrong content type.
        BadRequest = [400];
        /// 401: no, a bad or an expired bearer token.
        Unauthorized = [401];
        /// 403: authenticated but not allowed.
        Forbidden = [403];
        /// 404: not found, or not the caller's.
        NotFound = [404];
        /// 409: a conflict with the current state.
        Conflict = [409];
        /// 413: the body is over the limit.
        PayloadTooLarge = [413];
        /// 422: invalid fields, parameters or path segments.
        Invalid = [422];
        /// 429: rate limited (with `Retry-After`).
        RateLimited = [429];
        /// 503: a dependency down (with `Retry-After`).
        Unavailable = [503];
        /// What a route behind `CurrentUser` can answer before its handler runs: 401.
        Authenticated = [401];
        /// What a route behind `AdminUser` can answer before its handler runs: 401, 403.
        AdminOnly = [401, 403];
        /// What an `AppJson` body can answer: 400 (not JSON), 413 (too large), 422 (wrong fields).
        JsonBody = [400, 413, 422];
    }

    /// Adds the `ErrorBody` and `FieldError` schemas the responses above refer to.
    pub fn register_schemas(openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, schema) in [
            (ErrorBody::name(), ErrorBody::schema()),
            (FieldError::name(), FieldError::schema()),
        ] {
            components
                .schemas
                .entry(name.into_owned())
                .or_insert(schema);
        }
    }

    /// Every operation of `openapi`, with its path.
    pub fn operations_mut(
        openapi: &mut OpenApi,
    ) -> impl Iterator<Item = (&String, &mut Operation)> {
        openapi.paths.paths.iter_mut().flat_map(|(path, item)| {
            [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ]
            .into_iter()
            .filter_map(move |op| op.as_mut().map(|op| (path, op)))
        })
    }

    /// Documents the standard answer for each of `statuses` on every operation (those that
    /// already document a status keep their own description), and registers the schemas.
    pub fn add_to_every_operation(openapi: &mut OpenApi, statuses: &[u16]) {
        for (_, op) in operations_mut(openapi) {
            for (status, response) in responses(statuses) {
                op.responses.responses.entry(status).or_insert(response);
            }
        }
        register_schemas(openapi);
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

    async fn app_json<T: DeserializeOwned>(body: &'static str) -> Result<T, ApiError> {
        let req = Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap_or_default();
        AppJson::<T>::from_request(req, &())
            .await
            .map(|AppJson(v)| v)
    }

    /// serde's derive reads a struct from an array of its fields too: `[null, null]` was a
    /// valid `PATCH /users/me` (200) though every document says "object" (schemathesis).
    #[tokio::test]
    async fn a_struct_body_must_be_an_object() {
        #[derive(Debug, serde::Deserialize)]
        struct Change {
            #[allow(dead_code)]
            full_name: Option<String>,
            #[allow(dead_code)]
            password: Option<String>,
        }
        let refused = app_json::<Change>(" [null, null]").await.err();
        assert_eq!(
            refused.map(|e| (e.status, e.code, e.errors)),
            Some((
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ValidationError,
                vec![FieldError::new("body", "must be a JSON object")]
            ))
        );
        assert!(app_json::<Change>(r#"{"full_name": null}"#).await.is_ok());
        assert_eq!(app_json::<Vec<i64>>("[1, 2]").await.ok(), Some(vec![1, 2]));
        assert_eq!(
            app_json::<Change>("[").await.err().map(|e| e.status),
            Some(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn every_operation_can_document_the_standard_errors() {
        use utoipa::IntoResponses;
        use utoipa::openapi::{
            HttpMethod, OpenApi, PathItem, Paths, RefOr, path::Operation, response::Responses,
        };
        let mut op = Operation::new();
        op.responses = Responses::new();
        let mut openapi = OpenApi::new(utoipa::openapi::Info::new("t", "1"), Paths::new());
        openapi
            .paths
            .paths
            .insert("/x".into(), PathItem::new(HttpMethod::Get, op));
        doc::add_to_every_operation(&mut openapi, &[429, 503]);
        let json = serde_json::to_value(&openapi).unwrap_or_default();
        let answer = &json["paths"]["/x"]["get"]["responses"]["429"];
        assert_eq!(
            answer["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
        assert_eq!(
            answer["headers"]["Retry-After"]["schema"]["type"],
            "integer"
        );
        assert!(json["paths"]["/x"]["get"]["responses"]["503"].is_object());
        assert!(json["components"]["schemas"]["ErrorBody"].is_object());
        let admin = doc::AdminOnly::responses();
        assert_eq!(admin.keys().collect::<Vec<_>>(), ["401", "403"]);
        assert!(
            matches!(admin.get("401"), Some(RefOr::T(r)) if r.headers.contains_key("WWW-Authenticate"))
        );
        assert_eq!(
            doc::JsonBody::responses().keys().collect::<Vec<_>>(),
            ["400", "413", "422"]
        );
    }

    #[test]
    fn grpc_status_keeps_the_stable_code() {
        let s = ApiError::new(ErrorCode::EmailTaken, "taken").to_status();
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

    #[test]
    fn field_errors_travel_over_grpc_as_bad_request_details() {
        let errors = vec![
            FieldError::new("items[0].quantity", "must be between 1 and 1000"),
            FieldError::new("card.cvc", "must be 3 or 4 digits"),
        ];
        let s = ApiError::validation(errors.clone()).to_status();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(ErrorCode::of_status(&s), Some(ErrorCode::ValidationError));
        assert_eq!(field_errors_of(&s), errors);
        assert!(field_errors_of(&ApiError::not_found("order").to_status()).is_empty());
        // A status of a foreign server, without our details, has none.
        assert!(field_errors_of(&tonic::Status::invalid_argument("bad")).is_empty());
    }
}
