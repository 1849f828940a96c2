//! The gRPC adapter (`ecom.products.v1.ProductService`).

use std::sync::Arc;

use ecom_proto::products::v1::{
    self as pb, CreateProductRequest, DeleteProductRequest, DeleteProductResponse,
    GetProductsRequest, GetProductsResponse, ListProductsRequest, ListProductsResponse,
    ReservationRef, ReserveStockRequest, UpdateProductRequest,
    product_service_server::ProductService,
};
use ecom_shared::{
    FieldError,
    auth::{JwtVerifier, grpc_caller, grpc_user},
    error::positive_id,
};
use tonic::{Request, Response, Status};

use crate::{
    domain::{
        self, FieldErrors, Listing, ListingParams, Money, NewProduct, Product, ProductPatch,
        ProductUpdate, ReserveStock,
    },
    error::Error,
    service::{ProductsService, Reservation, ReservationStatus},
};

/// Every stock call (reserve, release, commit, return) is the Orders service's alone, acting as
/// itself: Products cannot tell who owns an order id, so a user's token (or another service's)
/// could otherwise hold every unit, release other people's holds or claim future order ids.
/// No token or a bad one → UNAUTHENTICATED; any other identity → PERMISSION_DENIED.
async fn orders_service<T>(verifier: &JwtVerifier, request: &Request<T>) -> Result<(), Status> {
    if grpc_caller(verifier, request).await?.is_service("orders") {
        Ok(())
    } else {
        Err(Error::Forbidden.into())
    }
}

/// Catalogue writes: an admin's token, as over HTTP (none or a bad one → UNAUTHENTICATED, a
/// user's → PERMISSION_DENIED).
async fn admin<T>(verifier: &JwtVerifier, request: &Request<T>) -> Result<(), Status> {
    if grpc_user(verifier, request).await?.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden.into())
    }
}

impl TryFrom<CreateProductRequest> for NewProduct {
    type Error = Vec<FieldError>;

    /// The rules of `POST /products`; every field is there (proto3), `category` is optional.
    fn try_from(r: CreateProductRequest) -> Result<Self, Self::Error> {
        let mut errors = FieldErrors::default();
        // A refused part is a placeholder that `finish` never lets out.
        let new = Self {
            name: errors
                .check("name", domain::name(&r.name))
                .unwrap_or_default(),
            description: errors
                .check("description", domain::description(&r.description))
                .unwrap_or_default(),
            price: errors
                .check("price", Money::parse(&r.price))
                .unwrap_or_default(),
            stock: errors
                .check("stock", domain::stock(r.stock))
                .unwrap_or_default(),
            category: r
                .category
                .and_then(|c| errors.check("category", domain::category(&c))),
        };
        errors.finish(new)
    }
}

impl TryFrom<UpdateProductRequest> for ProductUpdate {
    type Error = Vec<FieldError>;

    /// The rules of `PATCH /products/{id}`: unset fields stay, `clear_category` is
    /// `category: null`.
    fn try_from(r: UpdateProductRequest) -> Result<Self, Self::Error> {
        let mut errors = FieldErrors::default();
        if r.id <= 0 {
            errors.push("id", "must be a positive integer");
        }
        let patch = ProductPatch {
            name: r.name.and_then(|s| errors.check("name", domain::name(&s))),
            description: r
                .description
                .and_then(|s| errors.check("description", domain::description(&s))),
            price: r
                .price
                .and_then(|s| errors.check("price", Money::parse(&s))),
            stock: r
                .stock
                .and_then(|n| errors.check("stock", domain::stock(n))),
            category: match (r.category, r.clear_category) {
                (Some(_), true) => {
                    errors.push("category", "cannot be set together with clear_category");
                    None
                }
                (Some(c), false) => errors.check("category", domain::category(&c)).map(Some),
                (None, true) => Some(None),
                (None, false) => None,
            },
        };
        errors.finish(Self { id: r.id, patch })
    }
}

impl TryFrom<ReserveStockRequest> for ReserveStock {
    type Error = Vec<FieldError>;

    /// `ttl_seconds` is deprecated and ignored: the lifetime is ours to set
    /// (ECOM_RESERVATION_TTL_SECONDS), so no caller can hold stock for longer.
    fn try_from(r: ReserveStockRequest) -> Result<Self, Self::Error> {
        let lines: Vec<(i64, i64)> = r.lines.iter().map(|l| (l.product_id, l.quantity)).collect();
        Self::new(r.order_id, &lines)
    }
}

pub struct ProductsGrpc {
    pub products: Arc<ProductsService>,
    pub verifier: Arc<JwtVerifier>,
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn product_pb(p: Product) -> pb::Product {
    pb::Product {
        id: p.id,
        name: p.name,
        description: p.description,
        price: p.price.to_string(),
        currency: p.currency,
        stock: p.stock,
        category: p.category,
        created_at: Some(timestamp(p.created_at)),
        updated_at: Some(timestamp(p.updated_at)),
    }
}

fn reservation_pb(r: Reservation) -> pb::Reservation {
    use pb::ReservationStatus as S;
    pb::Reservation {
        order_id: r.order_id,
        status: match r.status {
            ReservationStatus::Active => S::Active,
            ReservationStatus::Committed => S::Committed,
            ReservationStatus::Released => S::Released,
            ReservationStatus::Expired => S::Expired,
            ReservationStatus::Returned => S::Returned,
        } as i32,
        lines: r
            .lines
            .into_iter()
            .map(|l| pb::Line {
                product_id: l.product_id,
                quantity: l.quantity,
            })
            .collect(),
        expires_at: Some(timestamp(r.expires_at)),
        quotes: r
            .quotes
            .into_iter()
            .map(|q| pb::Quote {
                product_id: q.product_id,
                name: q.name,
                unit_price: q.unit_price.to_string(),
                currency: q.currency,
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl ProductService for ProductsGrpc {
    async fn get_products(
        &self,
        request: Request<GetProductsRequest>,
    ) -> Result<Response<GetProductsResponse>, Status> {
        let ids = request.into_inner().ids;
        let products = self.products.get_many(&ids).await?;
        Ok(Response::new(GetProductsResponse {
            products: products.into_iter().map(product_pb).collect(),
        }))
    }

    async fn reserve_stock(
        &self,
        request: Request<ReserveStockRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        orders_service(&self.verifier, &request).await?;
        let command = ReserveStock::try_from(request.into_inner()).map_err(Error::Validation)?;
        let reservation = self.products.reserve(command).await?;
        Ok(Response::new(reservation_pb(reservation)))
    }

    async fn release_reservation(
        &self,
        request: Request<ReservationRef>,
    ) -> Result<Response<pb::Reservation>, Status> {
        orders_service(&self.verifier, &request).await?;
        Ok(Response::new(reservation_pb(
            self.products.release(request.into_inner().order_id).await?,
        )))
    }

    async fn commit_reservation(
        &self,
        request: Request<ReservationRef>,
    ) -> Result<Response<pb::Reservation>, Status> {
        orders_service(&self.verifier, &request).await?;
        Ok(Response::new(reservation_pb(
            self.products.commit(request.into_inner().order_id).await?,
        )))
    }

    async fn return_stock(
        &self,
        request: Request<ReservationRef>,
    ) -> Result<Response<pb::Reservation>, Status> {
        orders_service(&self.verifier, &request).await?;
        Ok(Response::new(reservation_pb(
            self.products
                .return_stock(request.into_inner().order_id)
                .await?,
        )))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let r = request.into_inner();
        // Through the query-string parser, so defaults and limits are the HTTP ones.
        let params = ListingParams {
            limit: r.limit.map(|n| n.to_string()),
            offset: r.offset.map(|n| n.to_string()),
            category: r.category,
            min_price: r.min_price,
            max_price: r.max_price,
            search: r.search,
            sort: r.sort,
        };
        let listing = Listing::parse(&params).map_err(Error::Validation)?;
        let page = self.products.list(listing).await?;
        Ok(Response::new(ListProductsResponse {
            products: page.items.into_iter().map(product_pb).collect(),
            total: page.total,
            limit: page.limit,
            offset: page.offset,
        }))
    }

    async fn create_product(
        &self,
        request: Request<CreateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        admin(&self.verifier, &request).await?;
        let new = NewProduct::try_from(request.into_inner()).map_err(Error::Validation)?;
        Ok(Response::new(product_pb(self.products.create(new).await?)))
    }

    async fn update_product(
        &self,
        request: Request<UpdateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        admin(&self.verifier, &request).await?;
        let update = ProductUpdate::try_from(request.into_inner()).map_err(Error::Validation)?;
        Ok(Response::new(product_pb(
            self.products.update(update).await?,
        )))
    }

    async fn delete_product(
        &self,
        request: Request<DeleteProductRequest>,
    ) -> Result<Response<DeleteProductResponse>, Status> {
        admin(&self.verifier, &request).await?;
        let id = positive_id("id", request.into_inner().id)?;
        self.products.delete(id).await?;
        Ok(Response::new(DeleteProductResponse {}))
    }
}
