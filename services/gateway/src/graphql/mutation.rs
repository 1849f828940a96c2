//! `Mutation`: accounts, the catalogue (admin), checkout and payment.

use std::sync::Arc;

use async_graphql::{Context, ID, MaybeUndefined, Object};
use ecom_proto::{
    orders::v1::{CancelOrderRequest, CreateOrderRequest, OrderLine},
    payments::v1::{Card, PayRequest},
    products::v1::{CreateProductRequest, DeleteProductRequest, UpdateProductRequest},
    users::v1::{LoginRequest, RefreshTokenRequest, RegisterRequest},
};

use super::types::{
    AuthPayload, CardInput, Order, OrderItemInput, Payment, Product, ProductInput,
    ProductUpdateInput, User, parse_id, viewer,
};
use crate::{Gateway, error::GatewayError, limits::Limits};

pub struct Mutation;

fn gateway<'a>(ctx: &'a Context<'_>) -> &'a Arc<Gateway> {
    ctx.data_unchecked::<Arc<Gateway>>()
}

fn upstream(service: &'static str) -> impl Fn(tonic::Status) -> GatewayError {
    move |s| GatewayError::from_status(service, &s)
}

/// A request to Users naming the client's address, which Users' login and registration
/// throttles believe from the gateway when it is one of its trusted proxies.
fn forwarded_for<T>(ctx: &Context<'_>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(v) = viewer(ctx).ip.to_string().parse() {
        request.metadata_mut().insert("x-forwarded-for", v);
    }
    request
}

/// The signed-in caller's token, or UNAUTHENTICATED before any service is called.
fn signed_in(ctx: &Context<'_>) -> Result<(), GatewayError> {
    viewer(ctx).user().map(|_| ())
}

#[Object]
impl Mutation {
    /// A new account (role `user`); throttled per client IP by Users.
    async fn register(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        full_name: String,
    ) -> async_graphql::Result<User> {
        let request = forwarded_for(
            ctx,
            RegisterRequest {
                email,
                password,
                full_name,
            },
        );
        let user = gateway(ctx)
            .clients
            .users()
            .register(request)
            .await
            .map_err(upstream("users"))?
            .into_inner();
        Ok(User::from(user))
    }

    /// Tokens for an e-mail and password; throttled per (IP, e-mail) across replicas.
    async fn login(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
    ) -> async_graphql::Result<AuthPayload> {
        let gw = gateway(ctx);
        let ip = viewer(ctx).ip;
        Limits::check_login(gw, ip, &email).await?;
        // Users throttles per client address too.
        let request = forwarded_for(ctx, LoginRequest { email, password });
        let pair = gw
            .clients
            .users()
            .login(request)
            .await
            .map_err(upstream("users"))?
            .into_inner();
        Ok(AuthPayload::from(pair))
    }

    /// A new token pair for a refresh token (which dies: reuse revokes the family).
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
    ) -> async_graphql::Result<AuthPayload> {
        let pair = gateway(ctx)
            .clients
            .users()
            .refresh_token(RefreshTokenRequest { refresh_token })
            .await
            .map_err(upstream("users"))?
            .into_inner();
        Ok(AuthPayload::from(pair))
    }

    /// Admin: a new product.
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: ProductInput,
    ) -> async_graphql::Result<Product> {
        signed_in(ctx)?;
        let request = viewer(ctx).request(CreateProductRequest {
            name: input.name,
            description: input.description,
            price: input.price.to_string(),
            stock: i64::from(input.stock),
            category: input.category,
        });
        let product = gateway(ctx)
            .clients
            .products()
            .create_product(request)
            .await
            .map_err(upstream("products"))?
            .into_inner();
        Ok(Product::from(product))
    }

    /// Admin: change some of a product's fields (`category: null` clears it).
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: ProductUpdateInput,
    ) -> async_graphql::Result<Product> {
        signed_in(ctx)?;
        let id = parse_id("id", &id)?;
        let (category, clear_category) = match input.category {
            MaybeUndefined::Undefined => (None, false),
            MaybeUndefined::Null => (None, true),
            MaybeUndefined::Value(c) => (Some(c), false),
        };
        let request = viewer(ctx).request(UpdateProductRequest {
            id,
            name: input.name,
            description: input.description,
            price: input.price.map(|p| p.to_string()),
            stock: input.stock.map(i64::from),
            category,
            clear_category,
        });
        let product = gateway(ctx)
            .clients
            .products()
            .update_product(request)
            .await
            .map_err(upstream("products"))?
            .into_inner();
        Ok(Product::from(product))
    }

    /// Admin: remove a product.
    async fn delete_product(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        signed_in(ctx)?;
        let id = parse_id("id", &id)?;
        gateway(ctx)
            .clients
            .products()
            .delete_product(viewer(ctx).request(DeleteProductRequest { id }))
            .await
            .map_err(upstream("products"))?;
        Ok(true)
    }

    /// Checkout: reserves the stock and prices the order from the catalogue. The same
    /// `idempotencyKey` with the same items returns the same order.
    async fn create_order(
        &self,
        ctx: &Context<'_>,
        items: Vec<OrderItemInput>,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Order> {
        signed_in(ctx)?;
        let items = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                Ok(OrderLine {
                    product_id: parse_id(&format!("items[{i}].productId"), &item.product_id)?,
                    quantity: i64::from(item.quantity),
                })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let request = viewer(ctx).request(CreateOrderRequest {
            items,
            idempotency_key: idempotency_key.unwrap_or_default(),
        });
        let created = gateway(ctx)
            .clients
            .orders()
            .create_order(request)
            .await
            .map_err(upstream("orders"))?
            .into_inner();
        let order = created.order.ok_or_else(GatewayError::internal)?;
        Ok(Order::from(order))
    }

    /// Cancels an unpaid order and gives its stock back.
    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Order> {
        signed_in(ctx)?;
        let id = parse_id("id", &id)?;
        let order = gateway(ctx)
            .clients
            .orders()
            .cancel_order(viewer(ctx).request(CancelOrderRequest { id }))
            .await
            .map_err(upstream("orders"))?
            .into_inner();
        Ok(Order::from(order))
    }

    /// Charges the order's total to a card, once per `idempotencyKey`. A declined card is
    /// not an error: the answer is the `FAILED` payment with its `failureCode`.
    async fn pay_order(
        &self,
        ctx: &Context<'_>,
        order_id: ID,
        card: CardInput,
        idempotency_key: Option<String>,
    ) -> async_graphql::Result<Payment> {
        signed_in(ctx)?;
        let order_id = parse_id("orderId", &order_id)?;
        let request = viewer(ctx).request(PayRequest {
            order_id,
            card: Some(Card {
                number: card.number,
                exp_month: card.exp_month,
                exp_year: card.exp_year,
                cvc: card.cvc,
            }),
            idempotency_key: idempotency_key.unwrap_or_default(),
        });
        let paid = gateway(ctx)
            .clients
            .payments()
            .pay(request)
            .await
            .map_err(upstream("payments"))?
            .into_inner();
        let payment = paid.payment.ok_or_else(GatewayError::internal)?;
        Ok(Payment::from(payment))
    }
}
