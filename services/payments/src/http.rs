//! The REST adapter: translates HTTP to [`PaymentsService`] calls and back.

use std::sync::Arc;

use axum::{
    extract::{FromRef, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use ecom_shared::{
    ApiError, AppJson, AppPath, AppQuery,
    auth::{AdminUser, CurrentUser, JwtVerifier, bearer_token},
    error::{ErrorBody, positive_id},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domain::Payment,
    service::{Paid, PaymentsService},
};

#[derive(Clone)]
pub struct AppState {
    pub payments: Arc<PaymentsService>,
    pub verifier: Arc<JwtVerifier>,
}

impl FromRef<AppState> for Arc<JwtVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentList {
    pub items: Vec<Payment>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// A payment request (documentation of the body; parsing reports every bad field).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreatePayment {
    pub order_id: i64,
    pub card: CardInputDoc,
}

/// Test cards: 4242424242424242 succeeds, 4000000000000002 is declined, 4000000000009995 has
/// insufficient funds, 4000000000000119 is a processing error (retry with another key).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CardInputDoc {
    #[schema(example = "4242424242424242")]
    pub number: String,
    #[schema(example = 12)]
    pub exp_month: i64,
    #[schema(example = 2030)]
    pub exp_year: i64,
    #[schema(example = "123")]
    pub cvc: String,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListQuery {
    /// Only this order's payments.
    pub order_id: Option<i64>,
    /// 1..=100, default 20.
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

type HttpResult<T> = Result<T, ApiError>;

/// Pay an order awaiting payment with a card. The amount is the order's total. Send an
/// `Idempotency-Key`: the same key and body return the same payment, charged once. A declined
/// card is a `failed` payment (201), not an error.
#[utoipa::path(post, path = "/payments", tag = "payments", request_body = CreatePayment,
    params(("Idempotency-Key" = Option<String>, Header, description = "1..255 visible ASCII characters")),
    security(("bearer" = [])),
    responses((status = 201, body = Payment), (status = 200, body = Payment, description = "replayed by Idempotency-Key"),
              (status = 404, body = ErrorBody, description = "no such order, or not yours"),
              (status = 409, body = ErrorBody, description = "invalid_state, idempotency_conflict or idempotency_key_in_use"),
              (status = 422, body = ErrorBody, description = "invalid_card or validation_error")))]
async fn create_payment(
    State(s): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(body): AppJson<serde_json::Value>,
) -> HttpResult<impl IntoResponse> {
    let key = ecom_shared::idempotency::header(&headers);
    Ok(
        match s
            .payments
            .pay(user, bearer_token(&headers), key, &body)
            .await?
        {
            Paid::New(p) => (StatusCode::CREATED, AppJson(p)),
            Paid::Replayed(p) => (StatusCode::OK, AppJson(p)),
        },
    )
}

/// The caller's payments, newest first (admins: everyone's), optionally of one order.
#[utoipa::path(get, path = "/payments", tag = "payments", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = PaymentList), (status = 401, body = ErrorBody)))]
async fn list_payments(
    State(s): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> HttpResult<AppJson<PaymentList>> {
    let (items, total, limit, offset) =
        s.payments.list(user, q.order_id, q.limit, q.offset).await?;
    Ok(AppJson(PaymentList {
        items,
        total,
        limit,
        offset,
    }))
}

/// One payment: the owner's or, for an admin, anyone's. Anyone else gets 404.
#[utoipa::path(get, path = "/payments/{id}", tag = "payments", params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Payment), (status = 404, body = ErrorBody)))]
async fn get_payment(
    State(s): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<i64>,
) -> HttpResult<AppJson<Payment>> {
    Ok(AppJson(s.payments.get(user, positive_id("id", id)?).await?))
}

/// Admin: refund a succeeded payment. The order becomes `refunded` and its stock returns.
#[utoipa::path(post, path = "/payments/{id}/refund", tag = "payments", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Payment), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "not a succeeded payment")))]
async fn refund_payment(
    State(s): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> HttpResult<AppJson<Payment>> {
    Ok(AppJson(s.payments.refund(positive_id("id", id)?).await?))
}

#[derive(OpenApi)]
#[openapi(info(
    title = "ecom Payments",
    description = "Card payments of orders (an emulated processor with Stripe's test cards) and refunds."
))]
struct ApiDoc;

pub fn router(state: AppState) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_payment, list_payments))
        .routes(routes!(get_payment))
        .routes(routes!(refund_payment))
        .with_state(state)
        .split_for_parts();
    ecom_shared::http::add_security(&mut openapi, None);
    (router, openapi)
}
