//! The GraphQL types of the contract's schema, built from the services' protobuf messages.

use std::str::FromStr;

use async_graphql::{ComplexObject, Context, Enum, ID, InputObject, MaybeUndefined, SimpleObject};
use chrono::{DateTime, Utc};
use ecom_proto::{
    orders::v1 as orders, payments::v1 as payments, products::v1 as products, users::v1 as users,
};
use rust_decimal::Decimal;

use super::{PaymentsOfOrder, ProductById, Viewer};
use crate::error::{GatewayError, Result};

/// Money as the contract writes it: exact, two places.
pub fn money(s: &str) -> Decimal {
    let mut d = Decimal::from_str(s).unwrap_or_default();
    d.rescale(2);
    d
}

fn time(t: Option<prost_types::Timestamp>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .unwrap_or_default()
}

fn clamp_i32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX })
}

/// A positive id from a GraphQL `ID` (`1` or `"1"`).
pub fn parse_id(field: &str, id: &ID) -> Result<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| GatewayError::bad_input(field, "must be a positive integer id"))
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Product {
    pub id: ID,
    pub name: String,
    pub description: String,
    pub price: Decimal,
    pub currency: String,
    /// What can still be bought: on hand minus active reservations.
    pub stock: i32,
    pub category: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<products::Product> for Product {
    fn from(p: products::Product) -> Self {
        Self {
            id: ID(p.id.to_string()),
            name: p.name,
            description: p.description,
            price: money(&p.price),
            currency: p.currency,
            stock: clamp_i32(p.stock),
            category: p.category,
            created_at: time(p.created_at),
            updated_at: time(p.updated_at),
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct User {
    pub id: ID,
    pub email: String,
    pub full_name: String,
    pub role: Role,
}

impl From<users::User> for User {
    fn from(u: users::User) -> Self {
        Self {
            id: ID(u.id.to_string()),
            email: u.email,
            full_name: u.full_name,
            role: if u.role == users::Role::Admin as i32 {
                Role::Admin
            } else {
                Role::User
            },
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct AuthPayload {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: i32,
}

impl From<users::TokenPair> for AuthPayload {
    fn from(t: users::TokenPair) -> Self {
        Self {
            access_token: t.access_token,
            refresh_token: t.refresh_token,
            token_type: t.token_type,
            expires_in: i32::try_from(t.expires_in).unwrap_or(i32::MAX),
        }
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum OrderStatus {
    PendingPayment,
    Paid,
    Cancelled,
    Refunded,
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct Order {
    pub id: ID,
    pub user_id: ID,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    pub total: Decimal,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[graphql(skip)]
    pub raw_id: i64,
    #[graphql(skip)]
    pub payment_id: i64,
}

impl From<orders::Order> for Order {
    fn from(o: orders::Order) -> Self {
        use orders::OrderStatus as S;
        Self {
            id: ID(o.id.to_string()),
            user_id: ID(o.user_id.to_string()),
            status: match S::try_from(o.status) {
                Ok(S::Paid) => OrderStatus::Paid,
                Ok(S::Cancelled) => OrderStatus::Cancelled,
                Ok(S::Refunded) => OrderStatus::Refunded,
                _ => OrderStatus::PendingPayment,
            },
            items: o.items.into_iter().map(OrderItem::from).collect(),
            total: money(&o.total),
            currency: o.currency,
            created_at: time(o.created_at),
            updated_at: time(o.updated_at),
            raw_id: o.id,
            payment_id: o.payment_id,
        }
    }
}

#[ComplexObject]
impl Order {
    /// The payment that settled the order, else its latest attempt; null when none was made.
    async fn payment(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Payment>> {
        let loader = ctx.data_unchecked::<PaymentsOfOrder>();
        let payments = loader.load_one(self.raw_id).await?.unwrap_or_default();
        let settled = payments.iter().find(|p| p.raw_id == self.payment_id);
        Ok(settled
            .or_else(|| payments.iter().max_by_key(|p| p.raw_id))
            .cloned())
    }
}

#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct OrderItem {
    pub product_id: ID,
    pub name: String,
    pub quantity: i32,
    pub unit_price: Decimal,
    pub line_total: Decimal,
    #[graphql(skip)]
    pub raw_product_id: i64,
}

impl From<orders::OrderItem> for OrderItem {
    fn from(i: orders::OrderItem) -> Self {
        Self {
            product_id: ID(i.product_id.to_string()),
            name: i.name,
            quantity: clamp_i32(i.quantity),
            unit_price: money(&i.unit_price),
            line_total: money(&i.line_total),
            raw_product_id: i.product_id,
        }
    }
}

#[ComplexObject]
impl OrderItem {
    /// The product as it is now (null once deleted). One batched call per request.
    async fn product(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Product>> {
        let loader = ctx.data_unchecked::<ProductById>();
        Ok(loader.load_one(self.raw_product_id).await?)
    }
}

#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Succeeded,
    Failed,
    Refunded,
    /// Being charged right now (rare: a concurrent attempt).
    Processing,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Payment {
    pub id: ID,
    pub order_id: ID,
    pub status: PaymentStatus,
    pub amount: Decimal,
    pub currency: String,
    /// Why a payment failed (`card_declined`, `insufficient_funds`, `processing_error`, ...).
    pub failure_code: Option<String>,
    pub card_brand: String,
    pub card_last4: String,
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    pub raw_id: i64,
}

impl From<payments::Payment> for Payment {
    fn from(p: payments::Payment) -> Self {
        use payments::PaymentStatus as S;
        Self {
            id: ID(p.id.to_string()),
            order_id: ID(p.order_id.to_string()),
            status: match S::try_from(p.status) {
                Ok(S::Succeeded) => PaymentStatus::Succeeded,
                Ok(S::Refunded) => PaymentStatus::Refunded,
                Ok(S::Processing) => PaymentStatus::Processing,
                _ => PaymentStatus::Failed,
            },
            amount: money(&p.amount),
            currency: p.currency,
            failure_code: Some(p.failure_code).filter(|c| !c.is_empty()),
            card_brand: p.card_brand,
            card_last4: p.card_last4,
            created_at: time(p.created_at),
            raw_id: p.id,
        }
    }
}

#[derive(InputObject, Debug)]
pub struct ProductInput {
    pub name: String,
    pub description: String,
    pub price: Decimal,
    pub stock: i32,
    pub category: Option<String>,
}

#[derive(InputObject, Debug)]
pub struct ProductUpdateInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Decimal>,
    pub stock: Option<i32>,
    /// `null` clears the category; leaving it out keeps it.
    pub category: MaybeUndefined<String>,
}

#[derive(InputObject, Debug)]
pub struct OrderItemInput {
    pub product_id: ID,
    pub quantity: i32,
}

/// A card: sent on to Payments, never logged, never stored whole.
#[derive(InputObject)]
pub struct CardInput {
    pub number: String,
    pub exp_month: i32,
    pub exp_year: i32,
    pub cvc: String,
}

impl std::fmt::Debug for CardInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardInput(***)")
    }
}

/// The viewer of a request, for resolvers: their token (forwarded) and who they are.
pub fn viewer<'a>(ctx: &'a Context<'_>) -> &'a Viewer {
    ctx.data_unchecked::<Viewer>()
}
