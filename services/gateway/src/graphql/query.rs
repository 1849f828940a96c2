//! `Query`: the catalogue (public), the viewer, and the viewer's orders.

use std::sync::Arc;

use async_graphql::{Context, ID, Object};
use ecom_proto::{
    orders::v1::{GetOrderRequest, ListOrdersRequest},
    products::v1::ListProductsRequest,
    users::v1::GetMeRequest,
};

use super::{
    ProductById,
    types::{Order, Product, User, parse_id, viewer},
};
use crate::{Gateway, error::GatewayError};

pub struct Query;

fn gateway<'a>(ctx: &'a Context<'_>) -> &'a Arc<Gateway> {
    ctx.data_unchecked::<Arc<Gateway>>()
}

/// The contract's paging defaults (`limit: Int = 20, offset: Int = 0`; an explicit `null` means
/// the default too).
const LIMIT: i32 = 20;

/// `limit` as a list's complexity multiplier (1..=100; out of range is refused later anyway).
pub fn weight(limit: Option<i32>) -> usize {
    usize::try_from(limit.unwrap_or(LIMIT).clamp(1, 100)).unwrap_or(1)
}

/// A page of the contract's shape as the services' request fields.
fn page(limit: Option<i32>, offset: Option<i32>) -> (Option<i64>, Option<i64>) {
    (
        Some(i64::from(limit.unwrap_or(LIMIT))),
        Some(i64::from(offset.unwrap_or(0))),
    )
}

#[Object]
impl Query {
    /// The catalogue: `search` matches names and descriptions, `category` one category.
    #[graphql(complexity = "weight(limit) * child_complexity")]
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] limit: Option<i32>,
        #[graphql(default = 0)] offset: Option<i32>,
        search: Option<String>,
        category: Option<String>,
    ) -> async_graphql::Result<Vec<Product>> {
        let (limit, offset) = page(limit, offset);
        let request = viewer(ctx).request(ListProductsRequest {
            limit,
            offset,
            search,
            category,
            ..Default::default()
        });
        let page = gateway(ctx)
            .clients
            .products()
            .list_products(request)
            .await
            .map_err(|s| GatewayError::from_status("products", &s))?
            .into_inner();
        Ok(page.products.into_iter().map(Product::from).collect())
    }

    /// One product; null when there is none with this id.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Product>> {
        let id = parse_id("id", &id)?;
        Ok(ctx.data_unchecked::<ProductById>().load_one(id).await?)
    }

    /// The signed-in user; null when anonymous.
    async fn me(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<User>> {
        let viewer = viewer(ctx);
        if viewer.token.is_none() {
            return Ok(None);
        }
        viewer.user()?;
        let user = gateway(ctx)
            .clients
            .users()
            .get_me(viewer.request(GetMeRequest {}))
            .await
            .map_err(|s| GatewayError::from_status("users", &s))?
            .into_inner();
        Ok(Some(User::from(user)))
    }

    /// The caller's own orders, newest first.
    #[graphql(complexity = "weight(limit) * child_complexity")]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] limit: Option<i32>,
        #[graphql(default = 0)] offset: Option<i32>,
    ) -> async_graphql::Result<Vec<Order>> {
        let viewer = viewer(ctx);
        let user = viewer.user()?;
        let (limit, offset) = page(limit, offset);
        let request = viewer.request(ListOrdersRequest {
            limit,
            offset,
            // An admin's `orders` is theirs too: the contract says "the caller's own".
            user_id: user.is_admin().then_some(user.id),
        });
        let page = gateway(ctx)
            .clients
            .orders()
            .list_orders(request)
            .await
            .map_err(|s| GatewayError::from_status("orders", &s))?
            .into_inner();
        Ok(page.orders.into_iter().map(Order::from).collect())
    }

    /// One order: the caller's own (an admin: anyone's); null otherwise.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Order>> {
        let viewer = viewer(ctx);
        viewer.user()?;
        let id = parse_id("id", &id)?;
        match gateway(ctx)
            .clients
            .orders()
            .get_order(viewer.request(GetOrderRequest { id }))
            .await
        {
            Ok(order) => Ok(Some(Order::from(order.into_inner()))),
            Err(s) => {
                let e = GatewayError::from_status("orders", &s);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(e.into())
                }
            }
        }
    }
}
