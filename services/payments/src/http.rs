//! The REST adapter: translates HTTP to [`PaymentsService`] calls and back.

use std::sync::Arc;

use axum::{
    extract::{FromRef, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use chrono::{DateTime, Utc};
use ecom_shared::{
    ApiError, AppJson, AppPath, AppQuery,
    auth::{AdminUser, CurrentUser, JwtVerifier, bearer_token},
    error::{ErrorBody, doc, positive_id},
    idempotency::IdempotencyKey,
    json::{Lenient, WholeNumber},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domain::{CardFields, Pay, PayError, Payment},
    error::Error,
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

/// A payment request. Every bad field is reported at once (a 422 naming each).
// Fields are lenient in the type, so a missing or wrongly typed one is reported with the
// others; the document says what the service requires.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreatePayment {
    /// An order of the caller's awaiting payment.
    #[schema(value_type = i64, required = true, minimum = 1)]
    pub order_id: Option<Lenient<WholeNumber>>,
    #[schema(value_type = CardInputDoc, required = true)]
    pub card: Option<Lenient<CardInputDoc>>,
}

/// Test cards: 4242424242424242 succeeds, 4000000000000002 is declined, 4000000000009995 has
/// insufficient funds, 4000000000000119 is a processing error (retry with another key).
///
/// Beyond this shape, a card the processor could never charge is a 422 `invalid_card` (no
/// payment is created): a number failing the Luhn check, an expiry in the past or more than 50
/// years ahead, or a CVC of the wrong length for the brand (4 digits for American Express, 3 for
/// the others).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CardInputDoc {
    /// 12..=19 digits; spaces and dashes between them are ignored.
    #[schema(value_type = String, required = true, example = "4242424242424242", pattern = r"^[ -]*([0-9][ -]*){12,19}$")]
    pub number: Option<Lenient<String>>,
    /// 1..=12.
    #[schema(value_type = i64, required = true, example = 12, minimum = 1, maximum = 12)]
    pub exp_month: Option<Lenient<WholeNumber>>,
    /// A 4-digit year (2000..=2100) or a 2-digit one (0..=99, meaning 20YY).
    #[schema(required = true, example = 2030, schema_with = exp_year_schema)]
    pub exp_year: Option<Lenient<WholeNumber>>,
    /// 3 or 4 digits.
    #[schema(value_type = String, required = true, example = "123", pattern = r"^[0-9]{3,4}$")]
    pub cvc: Option<Lenient<String>>,
}

/// `POST /payments`: the body and the `Idempotency-Key` header, on a given day (for expiry).
struct CreatePaymentRequest<'a> {
    body: CreatePayment,
    headers: &'a HeaderMap,
    today: DateTime<Utc>,
}

impl TryFrom<CreatePaymentRequest<'_>> for Pay {
    type Error = PayError;

    fn try_from(r: CreatePaymentRequest<'_>) -> Result<Self, PayError> {
        let number = |n: Option<Lenient<WholeNumber>>| n.and_then(Lenient::valid).map(|n| n.0);
        let text = |t: Option<Lenient<String>>| t.and_then(Lenient::valid);
        let card = r.body.card.and_then(Lenient::valid).map(|c| CardFields {
            number: text(c.number),
            exp_month: number(c.exp_month),
            exp_year: number(c.exp_year),
            cvc: text(c.cvc),
        });
        Pay::new(
            r.body.order_id.map(|id| id.map(|n| n.0)),
            card,
            IdempotencyKey::from_headers(r.headers),
            r.today,
        )
    }
}

fn exp_year_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
    let years = |min: i64, max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(min))
            .maximum(Some(max))
    };
    AnyOfBuilder::new()
        .item(years(2000, 2100))
        .item(years(0, 99))
        .description(Some(
            "A 4-digit year (2000..=2100) or a 2-digit one (0..=99, meaning 20YY); with `exp_month` not in the past and at most 50 years ahead.",
        ))
        .examples([2030])
        .into()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this order's payments.
    #[param(minimum = 1, nullable = false)]
    pub order_id: Option<i64>,
    /// 1..=100, default 20.
    #[param(minimum = 1, maximum = 100, nullable = false)]
    pub limit: Option<i64>,
    /// 0 or more, default 0.
    #[param(minimum = 0, nullable = false)]
    pub offset: Option<i64>,
}

type HttpResult<T> = Result<T, ApiError>;

/// Pay an order awaiting payment with a card. The amount is the order's total. Send an
/// `Idempotency-Key`: the same key and body return the same payment, charged once. A declined
/// card is a `failed` payment (201), not an error.
#[utoipa::path(post, path = "/payments", tag = "payments", request_body = CreatePayment,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = r"^[ \t]*[!-~]{1,255}[ \t]*$",
            description = "1..255 visible ASCII characters")),
    security(("bearer" = [])),
    responses((status = 201, body = Payment), (status = 200, body = Payment, description = "replayed by Idempotency-Key"),
              doc::Authenticated, (status = 400, body = ErrorBody, description = "`validation_error`: the body is not JSON"),
              (status = 404, body = ErrorBody, description = "no such order, or not yours"),
              (status = 409, body = ErrorBody, description = "invalid_state, idempotency_conflict or idempotency_key_in_use"),
              doc::PayloadTooLarge,
              (status = 422, body = ErrorBody, description = "invalid_card or validation_error"),
              doc::Unavailable))]
async fn create_payment(
    State(s): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(body): AppJson<Lenient<CreatePayment>>,
) -> HttpResult<impl IntoResponse> {
    // A body that is not an object is one without fields (so the answer names them).
    let pay = Pay::try_from(CreatePaymentRequest {
        body: body.valid().unwrap_or_default(),
        headers: &headers,
        today: Utc::now(),
    })
    .map_err(Error::from)?;
    Ok(
        match s.payments.pay(user, bearer_token(&headers), pay).await? {
            Paid::New(p) => (StatusCode::CREATED, AppJson(p)),
            Paid::Replayed(p) => (StatusCode::OK, AppJson(p)),
        },
    )
}

/// The caller's payments, newest first (admins: everyone's), optionally of one order.
#[utoipa::path(get, path = "/payments", tag = "payments", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = PaymentList), doc::Authenticated, doc::Invalid, doc::Unavailable))]
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
#[utoipa::path(get, path = "/payments/{id}", tag = "payments", params(("id" = i64, Path, minimum = 1)), security(("bearer" = [])),
    responses((status = 200, body = Payment), doc::Authenticated, doc::NotFound, doc::Invalid, doc::Unavailable))]
async fn get_payment(
    State(s): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<i64>,
) -> HttpResult<AppJson<Payment>> {
    Ok(AppJson(s.payments.get(user, positive_id("id", id)?).await?))
}

/// Admin: refund a succeeded payment. The order becomes `refunded` and its stock returns.
#[utoipa::path(post, path = "/payments/{id}/refund", tag = "payments", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 200, body = Payment), doc::AdminOnly, doc::NotFound,
              (status = 409, body = ErrorBody, description = "not a succeeded payment"),
              doc::Invalid, doc::Unavailable))]
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
    doc::register_schemas(&mut openapi);
    (router, openapi)
}
