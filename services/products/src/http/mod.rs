//! The REST adapter: translates HTTP to [`ProductsService`] calls and back.

pub mod body;

use std::sync::Arc;

use axum::{
    extract::{FromRef, State},
    http::{StatusCode, header},
    response::IntoResponse,
};
use ecom_shared::{
    ApiError, AppJson, AppPath, AppQuery,
    auth::{AdminUser, JwtVerifier},
    error::{ErrorBody, doc, positive_id},
};
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use self::body::{Object, ProductInput, ProductUpdateInput};
use crate::{
    domain::{Listing, ListingParams, NewProduct, Product, ProductPatch, ProductUpdate},
    error::Error,
    service::{ProductPage, ProductsService},
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

type HttpResult<T> = Result<T, ApiError>;

/// Browse the catalogue: filters, full-text search, sorting, pages.
#[utoipa::path(get, path = "/products", tag = "products", params(ListingParams),
    responses((status = 200, body = ProductPage), doc::Invalid, doc::Unavailable))]
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
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(("id" = i64, Path, minimum = 1)),
    responses((status = 200, body = Product), doc::NotFound, doc::Invalid, doc::Unavailable))]
async fn get_product(
    State(s): State<AppState>,
    AppPath(id): AppPath<i64>,
) -> HttpResult<impl IntoResponse> {
    Ok(json(s.products.get_json(positive_id("id", id)?).await?))
}

/// Create a product (admin).
#[utoipa::path(post, path = "/products", tag = "admin", request_body = ProductInput,
    security(("bearer" = [])),
    responses((status = 201, body = Product), doc::AdminOnly, doc::JsonBody, doc::Unavailable))]
async fn create_product(
    State(s): State<AppState>,
    _admin: AdminUser,
    AppJson(Object(body)): AppJson<Object<ProductInput>>,
) -> HttpResult<impl IntoResponse> {
    let new = NewProduct::try_from(body).map_err(Error::Validation)?;
    Ok((StatusCode::CREATED, AppJson(s.products.create(new).await?)))
}

/// Change a product (admin). Visible on the next read, cache included.
#[utoipa::path(patch, path = "/products/{id}", tag = "admin", params(("id" = i64, Path, minimum = 1)),
    request_body = ProductUpdateInput, security(("bearer" = [])),
    responses((status = 200, body = Product), doc::AdminOnly, doc::NotFound, doc::JsonBody, doc::Unavailable))]
async fn update_product(
    State(s): State<AppState>,
    _admin: AdminUser,
    AppPath(id): AppPath<i64>,
    AppJson(Object(body)): AppJson<Object<ProductUpdateInput>>,
) -> HttpResult<AppJson<Product>> {
    let update = ProductUpdate {
        id: positive_id("id", id)?,
        patch: ProductPatch::try_from(body).map_err(Error::Validation)?,
    };
    Ok(AppJson(s.products.update(update).await?))
}

/// Delete a product (admin). Refused (409) while open orders hold units of it.
#[utoipa::path(delete, path = "/products/{id}", tag = "admin", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses((status = 204, description = "deleted"), doc::AdminOnly, doc::NotFound,
              (status = 409, body = ErrorBody, description = "`invalid_state`: open orders hold units of it"),
              doc::Invalid, doc::Unavailable))]
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
    doc::register_schemas(&mut openapi);
    (router, openapi)
}
