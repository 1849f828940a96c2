//! The REST adapter: translates HTTP to [`OrdersService`] calls and back.

use std::sync::Arc;

use axum::{
    extract::{FromRef, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
};
use ecom_shared::{
    ApiError, AppJson, AppPath, AppQuery,
    auth::{CurrentUser, JwtVerifier},
    error::{ErrorBody, doc, positive_id},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domain::Order,
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

/// A checkout (documentation of the body; parsing reports every bad field). Lines of the same
/// product are merged, and a product may have at most 1000 units in one order.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrder {
    /// 1..=50 lines.
    #[schema(min_items = 1, max_items = 50)]
    pub items: Vec<CreateOrderItem>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateOrderItem {
    /// A product of the catalogue (an unknown one is a 404 naming the line).
    #[schema(minimum = 1)]
    pub product_id: i64,
    /// 1..=1000.
    #[schema(minimum = 1, maximum = 1000)]
    pub quantity: i64,
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
              (status = 409, body = ErrorBody, description = "`insufficient_stock`, `idempotency_conflict`, or `invalid_state` (a request with this key is still running)"),
              doc::JsonBody, doc::Unavailable))]
async fn create_order(
    State(s): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
    AppJson(body): AppJson<serde_json::Value>,
) -> HttpResult<impl IntoResponse> {
    let key = ecom_shared::idempotency::header(&headers);
    Ok(match s.orders.create(user, key, &body).await? {
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
