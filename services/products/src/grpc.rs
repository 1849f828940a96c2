//! The gRPC adapter (`ecom.products.v1.ProductService`).

use std::sync::Arc;

use ecom_proto::products::v1::{
    self as pb, GetProductsRequest, GetProductsResponse, ReservationRef, ReserveStockRequest,
    product_service_server::ProductService,
};
use ecom_shared::{
    ApiError,
    auth::{JwtVerifier, grpc_caller},
};
use tonic::{Request, Response, Status};

/// Committing and returning stock move money's counterpart: only the Orders service, acting as
/// itself after a payment, may do it; a user's token is refused.
async fn orders_service<T>(verifier: &JwtVerifier, request: &Request<T>) -> Result<(), Status> {
    if grpc_caller(verifier, request).await?.is_service("orders") {
        Ok(())
    } else {
        Err(ApiError::forbidden().to_status())
    }
}

use crate::{
    domain::Product,
    service::{ProductsService, Reservation, ReservationStatus},
};

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
        grpc_caller(&self.verifier, &request).await?;
        let r = request.into_inner();
        let lines: Vec<(i64, i64)> = r.lines.iter().map(|l| (l.product_id, l.quantity)).collect();
        let reservation = self
            .products
            .reserve(r.order_id, &lines, r.ttl_seconds)
            .await?;
        Ok(Response::new(reservation_pb(reservation)))
    }

    async fn release_reservation(
        &self,
        request: Request<ReservationRef>,
    ) -> Result<Response<pb::Reservation>, Status> {
        grpc_caller(&self.verifier, &request).await?;
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
}
