//! The REST adapter: translates HTTP to [`ProductsService`] calls and back.

use std::sync::Arc;

use axum::{
    extract::{FromRef, State},
    http::{StatusCode, header},
    response::IntoResponse,
};
use ecom_shared::{
    ApiError, AppJson, AppPath, AppQuery,
    auth::{AdminUser, JwtVerifier},
    error::{ErrorBody, positive_id},
};
use serde::Deserialize;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    domain::{Listing, ListingParams, Product},
    error::Error,
    service::{Page, ProductsService},
};

#[derive(Clone)]
pub struct AppState {
    pub products: Arc<ProductsService>,
    pub verifier: Arc<JwtVerifier>,
}

impl FromRef<AppState> for Arc<JwtVerifier> {
    fn from_ref(s: &AppState) -> Self {
        s.verifier.clone()
    }
}

/// A new product (documentation of the body; parsing reports every bad field).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProductInput {
    /// 1..=200 characters.
    pub name: String,
    /// Up to 10 000 characters.
    pub description: Option<String>,
    /// Decimal string (or plain number) with at most two places, >= 0.
    #[schema(value_type = String, example = "19.99")]
    pub price: String,
    /// Units available, >= 0.
    pub stock: i64,
    pub category: Option<String>,
}

/// A partial update; absent fields stay. `stock` sets what can be bought; `category: null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ProductUpdateInput {
    pub name: Option<String>,
    pub description: Option<String>,
    #[schema(value_type = Option<String>, example = "17.50")]
    pub price: Option<String>,
    pub stock: Option<i64>,
    pub category: Option<String>,
}

type HttpResult<T> = Result<T, ApiError>;

/// Browse the catalogue: filters, full-text search, sorting, pages.
#[utoipa::path(get, path = "/products", tag = "products", params(ListingParams),
    responses((status = 200, body = Page), (status = 422, body = ErrorBody)))]
async fn list_products(
    State(s): State<AppState>,
    AppQuery(params): AppQuery<ListingParams>,
) -> HttpResult<impl IntoResponse> {
    let listing = Listing::parse(&params).map_err(Error::Validation)?;
    Ok(json(s.products.list_json(listing).await?))
}

/// A JSON body that is already encoded (cached bytes are served as they are).
fn json(body: axum::body::Bytes) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// One product.
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(("id" = i64, Path)),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn get_product(
    State(s): State<AppState>,
    AppPath(id): AppPath<i64>,
) -> HttpResult<impl IntoResponse> {
    Ok(json(s.products.get_json(positive_id("id", id)?).await?))
}

/// Create a product (admin).
#[utoipa::path(post, path = "/products", tag = "admin", request_body = ProductInput,
    security(("bearer" = [])),
    responses((status = 201, body = Product), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_product(
    State(s): State<AppState>,
    _admin: AdminUser,
    AppJson(body): AppJson<serde_json::Value>,
) -> HttpResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        AppJson(s.products.create(&body).await?),
    ))
}

/// Change a product (admin). Visible on the next read, cache included.
#[utoipa::path(patch, path = "/products/{id}", tag = "admin", params(("id" = i64, Path)),
    request_body = ProductUpdateInput, security(("bearer" = [])),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn update_product(
    State(s): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(body): AppJson<serde_json::Value>,
) -> HttpResult<AppJson<Product>> {
    Ok(AppJson(
        s.products.update(positive_id("id", id)?, &body).await?,
    ))
}

/// Delete a product (admin). Refused (409) while open orders hold units of it.
#[utoipa::path(delete, path = "/products/{id}", tag = "admin", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_product(
    State(s): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
) -> HttpResult<StatusCode> {
    s.products.delete(positive_id("id", id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(OpenApi)]
#[openapi(info(
    title = "ecom Products",
    description = "The catalogue: browse, search, and admin CRUD."
))]
struct ApiDoc;

pub fn router(state: AppState) -> (axum::Router, utoipa::openapi::OpenApi) {
    let (router, mut openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, update_product, delete_product))
        .with_state(state)
        .split_for_parts();
    ecom_shared::http::add_security(&mut openapi, None);
    (router, openapi)
}
