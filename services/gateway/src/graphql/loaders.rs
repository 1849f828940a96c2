//! Per-request DataLoaders: every `OrderItem.product` of a request in one `GetProducts` call,
//! every `Order.payment` in one `ListPayments` call.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::{DataLoader, Loader};
use ecom_proto::{payments::v1::ListPaymentsRequest, products::v1::GetProductsRequest};

use super::{
    authorized,
    types::{Payment, Product},
};
use crate::{Gateway, error::GatewayError};

pub type ProductById = DataLoader<ProductLoader>;
pub type PaymentsOfOrder = DataLoader<PaymentLoader>;

/// The most ids one call asks for (the services' own bound).
const BATCH: usize = 100;

pub struct ProductLoader {
    gw: Arc<Gateway>,
    token: Option<String>,
}

impl ProductLoader {
    pub fn new(gw: Arc<Gateway>, token: Option<String>) -> Self {
        Self { gw, token }
    }
}

impl Loader<i64> for ProductLoader {
    type Value = Product;
    type Error = GatewayError;

    async fn load(&self, ids: &[i64]) -> Result<HashMap<i64, Product>, GatewayError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH) {
            let request = authorized(
                GetProductsRequest {
                    ids: chunk.to_vec(),
                },
                self.token.as_deref(),
            );
            let products = self
                .gw
                .clients
                .products()
                .get_products(request)
                .await
                .map_err(|s| GatewayError::from_status("products", &s))?
                .into_inner()
                .products;
            found.extend(products.into_iter().map(|p| (p.id, Product::from(p))));
        }
        Ok(found)
    }
}

pub struct PaymentLoader {
    gw: Arc<Gateway>,
    token: Option<String>,
}

impl PaymentLoader {
    pub fn new(gw: Arc<Gateway>, token: Option<String>) -> Self {
        Self { gw, token }
    }
}

impl Loader<i64> for PaymentLoader {
    type Value = Vec<Payment>;
    type Error = GatewayError;

    async fn load(&self, order_ids: &[i64]) -> Result<HashMap<i64, Vec<Payment>>, GatewayError> {
        let mut found: HashMap<i64, Vec<Payment>> = HashMap::with_capacity(order_ids.len());
        for chunk in order_ids.chunks(BATCH) {
            let request = authorized(
                ListPaymentsRequest {
                    order_ids: chunk.to_vec(),
                },
                self.token.as_deref(),
            );
            let payments = self
                .gw
                .clients
                .payments()
                .list_payments(request)
                .await
                .map_err(|s| GatewayError::from_status("payments", &s))?
                .into_inner()
                .payments;
            for p in payments {
                found.entry(p.order_id).or_default().push(Payment::from(p));
            }
        }
        Ok(found)
    }
}
