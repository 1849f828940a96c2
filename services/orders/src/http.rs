//! The REST adapter: translates HTTP to [`OrdersService`] calls and back.

use std::sync::Arc;

use axum::{
    extract::{FromRef, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use ecom_shared::{
    ApiError, AppJson, AppPath, AppQuery, FieldError,
    auth::{CurrentUser, JwtVerifier},
    error::{ErrorBody, doc, positive_id},
    idempotency::IdempotencyKey,
    json::{Lenient, WholeNumber},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domain::{Checkout, LineInput, Order},
    service::{Created, OrdersService},
};

#[derive(Clone)]
pub struct AppState {
    pub orders: Arc<OrdersService>,
    pub verifier: Arc<JwtVerifier>,
}

impl FromRef<AppState> for Arc<JwtVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderList {
    pub items: Vec<Order>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// A checkout. Lines of the same product are merged, and a product may have at most 1000 units
/// in one order. Every bad field is reported at once (a 422 naming each).
// Fields are lenient in the type, so a missing or wrongly typed one is reported with the
// others; the document says what the service requires.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateOrder {
    /// 1..=50 lines.
    #[schema(value_type = Vec<CreateOrderItem>, required = true, min_items = 1, max_items = 50)]
    pub items: Option<Lenient<Vec<Lenient<CreateOrderItem>>>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateOrderItem {
    /// A product of the catalogue (an unknown one is a 404 naming the line).
    #[schema(value_type = i64, required = true, minimum = 1)]
    pub product_id: Option<Lenient<WholeNumber>>,
    /// 1..=1000.
    #[schema(value_type = i64, required = true, minimum = 1, maximum = 1000)]
    pub quantity: Option<Lenient<WholeNumber>>,
}

/// `POST /orders`: the body and the `Idempotency-Key` header.
struct CreateOrderRequest<'a> {
    body: CreateOrder,
    headers: &'a HeaderMap,
}

impl TryFrom<CreateOrderRequest<'_>> for Checkout {
    type Error = Vec<FieldError>;

    fn try_from(r: CreateOrderRequest<'_>) -> Result<Self, Self::Error> {
        let number = |n: Option<Lenient<WholeNumber>>| n.and_then(Lenient::valid).map(|n| n.0);
        let items = r.body.items.and_then(Lenient::valid).map(|items| {
            items
                .into_iter()
                .map(|item| {
                    let item = item.valid().unwrap_or_default();
                    LineInput {
                        product_id: number(item.product_id),
                        quantity: number(item.quantity),
                    }
                })
                .collect()
        });
        Checkout::new(items, IdempotencyKey::from_headers(r.headers))
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1..=100, default 20.
    #[param(minimum = 1, maximum = 100, nullable = false)]
    pub limit: Option<i64>,
    /// 0 or more, default 0.
    #[param(minimum = 0, nullable = false)]
    pub offset: Option<i64>,
    /// Admins only: one user's orders (ignored for others).
    #[param(minimum = 1, nullable = false)]
    pub user_id: Option<i64>,
}

type HttpResult<T> = Result<T, ApiError>;

/// Check out: reserves the stock and creates an order awaiting payment. Send an
/// `Idempotency-Key` to make retries safe: the same key and body return the same order.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, nullable = false, pattern = r"^[ \t]*[!-~]{1,255}[ \t]*$",
            description = "1..255 visible ASCII characters")),
    security(("bearer" = [])),
    responses((status = 201, body = Order), (status = 200, body = Order, description = "replayed by Idempotency-Key"),
              doc::Authenticated,
              (status = 404, body = ErrorBody, description = "`not_found`: a product that is not in the catalogue (`errors` names the line)"),
              (status = 409, body = ErrorBody, description = "`insufficient_stock`, `idempotency_conflict`, or `idempotency_key_in_use` (a request with this key is still running: retry shortly)"),
              doc::JsonBody, doc::Unavailable))]
async fn create_order(
    State(s): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(body): AppJson<Lenient<CreateOrder>>,
) -> HttpResult<impl IntoResponse> {
    // A body that is not an object is one without items (so the answer names `items`).
    let body = body.valid().unwrap_or_default();
    let checkout = Checkout::try_from(CreateOrderRequest {
        body,
        headers: &headers,
    })
    .map_err(ApiError::validation)?;
    Ok(match s.orders.create(user, checkout).await? {
        Created::New(order) => (StatusCode::CREATED, AppJson(order)),
        Created::Replayed(order) => (StatusCode::OK, AppJson(order)),
    })
}

/// The caller's orders, newest first (admins: everyone's, or `user_id`'s).
#[utoipa::path(get, path = "/orders", tag = "orders", params(ListQuery), security(("bearer" = [])),
    responses((status = 200, body = OrderList), doc::Authenticated, doc::Invalid, doc::Unavailable))]
async fn list_orders(
    State(s): State<AppState>,
    user: CurrentUser,
    AppQuery(q): AppQuery<ListQuery>,
) -> HttpResult<AppJson<OrderList>> {
    let (items, total, limit, offset) = s.orders.list(user, q.user_id, q.limit, q.offset).await?;
    Ok(AppJson(OrderList {
        items,
        total,
        limit,
        offset,
    }))
}

/// One order: the owner's or, for an admin, anyone's. Anyone else gets 404.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = i64, Path, minimum = 1)), security(("bearer" = [])),
    responses((status = 200, body = Order), doc::Authenticated, doc::NotFound, doc::Invalid, doc::Unavailable))]
async fn get_order(
    State(s): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<i64>,
) -> HttpResult<AppJson<Order>> {
    Ok(AppJson(s.orders.get(user, positive_id("id", id)?).await?))
}

/// Cancel an order awaiting payment; its stock is released.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 200, body = Order), doc::Authenticated, doc::NotFound,
              (status = 409, body = ErrorBody, description = "`invalid_state`: the order is not awaiting payment"),
              doc::Invalid, doc::Unavailable))]
async fn cancel_order(
    State(s): State<AppState>,
    user: CurrentUser,
    AppPath(id): AppPath<i64>,
) -> HttpResult<AppJson<Order>> {
    Ok(AppJson(
        s.orders.cancel(user, positive_id("id", id)?).await?,
    ))
}

#[derive(OpenApi)]
#[openapi(info(
    title = "ecom Orders",
    description = "Checkout and the order lifecycle."
))]
struct ApiDoc;

pub fn router(state: AppState) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(create_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(cancel_order))
        .with_state(state)
        .split_for_parts();
    ecom_shared::http::add_security(&mut openapi, None);
    doc::register_schemas(&mut openapi);
    (router, openapi)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// The fields each body names, as `POST /orders` reports them (a wrongly typed field is
    /// reported like a bad value, never as a serde rejection).
    fn refused(body: Value, key: Option<&str>) -> Vec<(String, String)> {
        let body: Lenient<CreateOrder> = serde_json::from_value(body).expect("any JSON");
        let mut headers = HeaderMap::new();
        if let Some(k) = key {
            headers.insert(ecom_shared::idempotency::HEADER, k.parse().expect("value"));
        }
        let request = CreateOrderRequest {
            body: body.valid().unwrap_or_default(),
            headers: &headers,
        };
        Checkout::try_from(request)
            .map(|_| Vec::new())
            .unwrap_or_else(|errors| errors.into_iter().map(|e| (e.field, e.message)).collect())
    }

    #[test]
    fn bodies_parse_as_json_schema_reads_them_and_report_every_bad_field() {
        let lines = |items: Value| json!({ "items": items });
        assert!(
            refused(
                lines(json!([{"product_id": 1, "quantity": 2.0}])),
                Some("k")
            )
            .is_empty()
        );
        let list = (
            "items".to_owned(),
            "must be a list of {product_id, quantity}".to_owned(),
        );
        for body in [
            json!({}),
            json!({"items": null}),
            json!({"items": "nope"}),
            json!([]),
            json!(null),
            json!("x"),
        ] {
            assert_eq!(
                refused(body.clone(), None),
                std::slice::from_ref(&list),
                "{body}"
            );
        }
        let id = |i: usize| {
            (
                format!("items[{i}].product_id"),
                "must be a positive integer".to_owned(),
            )
        };
        let qty = |i: usize| {
            (
                format!("items[{i}].quantity"),
                "must be a whole number from 1 to 1000".to_owned(),
            )
        };
        assert_eq!(
            refused(
                lines(
                    json!([{"product_id": "1", "quantity": 1.5}, "x", {"product_id": 2, "quantity": 1}])
                ),
                Some("has space")
            ),
            [
                id(0),
                qty(0),
                id(1),
                qty(1),
                (
                    "Idempotency-Key".to_owned(),
                    "must be 1 to 255 visible ASCII characters".to_owned()
                )
            ]
        );
    }
}
