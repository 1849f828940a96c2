//! Every SQL statement of the Orders service, checked at compile time.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor, PgPool, types::Json};

use crate::domain::{Order, OrderItem, OrderStatus};

struct OrderRow {
    id: i64,
    user_id: i64,
    status: String,
    total: Decimal,
    currency: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    payment_id: Option<i64>,
}

fn assemble(row: OrderRow, items: Vec<OrderItem>) -> sqlx::Result<Order> {
    let status = OrderStatus::parse(&row.status).ok_or_else(|| {
        sqlx::Error::Decode(format!("unknown order status {}", row.status).into())
    })?;
    Ok(Order {
        id: row.id,
        user_id: row.user_id,
        status,
        items,
        total: row.total,
        currency: row.currency,
        created_at: row.created_at,
        updated_at: row.updated_at,
        payment_id: row.payment_id,
    })
}

/// Takes the next order id (the reservation is keyed by it before the row exists).
pub async fn next_order_id(e: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT nextval(pg_get_serial_sequence('orders', 'id')) AS "id!""#)
        .fetch_one(e)
        .await
}

/// Stores a new order, its items and (with a key) the idempotency key's answer: one statement,
/// so one round trip and atomic without an explicit transaction. With a key, the order is
/// stored only if the key is still this request's claim (`locked_at` unchanged, no answer yet):
/// a request that outlived its lease and was taken over stores nothing (`false`), so one key
/// never makes two orders.
pub async fn insert_order(
    e: impl PgExecutor<'_>,
    order: &Order,
    key: Option<(&str, DateTime<Utc>)>,
) -> sqlx::Result<bool> {
    let ids: Vec<i64> = order.items.iter().map(|i| i.product_id).collect();
    let names: Vec<String> = order.items.iter().map(|i| i.name.clone()).collect();
    let prices: Vec<Decimal> = order.items.iter().map(|i| i.unit_price).collect();
    let qty: Vec<i64> = order.items.iter().map(|i| i.quantity).collect();
    let totals: Vec<Decimal> = order.items.iter().map(|i| i.line_total).collect();
    let (key, locked_at) = key.unzip();
    let stored = sqlx::query_scalar!(
        r#"WITH k AS (
               UPDATE idempotency_keys SET order_id = $1
                WHERE user_id = $2 AND key = $12 AND locked_at = $13 AND order_id IS NULL
               RETURNING 1),
           o AS (
               INSERT INTO orders (id, user_id, status, total, currency, created_at, updated_at)
               SELECT $1::bigint, $2::bigint, $3::text, $4::numeric, $5::text, $6::timestamptz, $6::timestamptz
                WHERE $12::text IS NULL OR EXISTS (SELECT 1 FROM k)
               RETURNING id),
           i AS (
               INSERT INTO order_items (order_id, product_id, name, unit_price, quantity, line_total)
               SELECT o.id, t.* FROM o,
                      UNNEST($7::bigint[], $8::text[], $9::numeric[], $10::bigint[], $11::numeric[]) AS t
               RETURNING 1)
         SELECT (SELECT count(*) FROM o) AS "orders!""#,
        order.id,
        order.user_id,
        order.status.as_str(),
        order.total,
        order.currency,
        order.created_at,
        &ids,
        &names,
        &prices,
        &qty,
        &totals,
        key,
        locked_at,
    )
    .fetch_one(e)
    .await?;
    Ok(stored == 1)
}

/// The columns of an order with its items as one JSON array: one round trip per order.
struct FullOrderRow {
    id: i64,
    user_id: i64,
    status: String,
    total: Decimal,
    currency: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    payment_id: Option<i64>,
    items: Json<Vec<OrderItem>>,
}

impl FullOrderRow {
    fn into_order(self) -> sqlx::Result<Order> {
        assemble(
            OrderRow {
                id: self.id,
                user_id: self.user_id,
                status: self.status,
                total: self.total,
                currency: self.currency,
                created_at: self.created_at,
                updated_at: self.updated_at,
                payment_id: self.payment_id,
            },
            self.items.0,
        )
    }
}

pub async fn get_order(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<Order>> {
    sqlx::query_as!(
        FullOrderRow,
        r#"SELECT o.id, o.user_id, o.status, o.total, o.currency, o.created_at, o.updated_at,
                  o.payment_id,
                  COALESCE((SELECT json_agg(json_build_object(
                               'product_id', i.product_id, 'name', i.name,
                               'unit_price', i.unit_price::text, 'quantity', i.quantity,
                               'line_total', i.line_total::text) ORDER BY i.product_id)
                              FROM order_items i WHERE i.order_id = o.id), '[]')
                    AS "items!: Json<Vec<OrderItem>>"
             FROM orders o WHERE o.id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .map(FullOrderRow::into_order)
    .transpose()
}

/// The order, locked until the transaction ends (one statement): payment and refund
/// transitions hold it while they talk to Products, so a cancel or the sweeper waits for them.
pub async fn lock_order(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<Order>> {
    sqlx::query_as!(
        FullOrderRow,
        r#"SELECT o.id, o.user_id, o.status, o.total, o.currency, o.created_at, o.updated_at,
                  o.payment_id,
                  COALESCE((SELECT json_agg(json_build_object(
                               'product_id', i.product_id, 'name', i.name,
                               'unit_price', i.unit_price::text, 'quantity', i.quantity,
                               'line_total', i.line_total::text) ORDER BY i.product_id)
                              FROM order_items i WHERE i.order_id = o.id), '[]')
                    AS "items!: Json<Vec<OrderItem>>"
             FROM orders o WHERE o.id = $1
              FOR UPDATE OF o"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .map(FullOrderRow::into_order)
    .transpose()
}

/// A page of orders (one user's, or everyone's) and the count.
pub async fn list_orders(
    conn: &mut PgConnection,
    user_id: Option<i64>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<Order>, i64)> {
    let rows = sqlx::query_as!(
        OrderRow,
        "SELECT id, user_id, status, total, currency, created_at, updated_at, payment_id FROM orders
          WHERE ($1::bigint IS NULL OR user_id = $1)
          ORDER BY id DESC LIMIT $2 OFFSET $3",
        user_id,
        limit,
        offset
    )
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM orders WHERE ($1::bigint IS NULL OR user_id = $1)"#,
        user_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let all_items = sqlx::query!(
        "SELECT order_id, product_id, name, unit_price, quantity, line_total
           FROM order_items WHERE order_id = ANY($1) ORDER BY order_id, product_id",
        &ids
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut orders = Vec::with_capacity(rows.len());
    for row in rows {
        let items = all_items
            .iter()
            .filter(|i| i.order_id == row.id)
            .map(|i| OrderItem {
                product_id: i.product_id,
                name: i.name.clone(),
                unit_price: i.unit_price,
                quantity: i.quantity,
                line_total: i.line_total,
            })
            .collect();
        orders.push(assemble(row, items)?);
    }
    Ok((orders, total))
}

/// Moves an order from `from` to `to` if it is still in `from` (the state machine's guard,
/// enforced by the database: two concurrent transitions cannot both succeed); the new
/// `updated_at`, or `None` when it was not in `from`.
pub async fn transition(
    e: impl PgExecutor<'_>,
    id: i64,
    from: OrderStatus,
    to: OrderStatus,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "UPDATE orders SET status = $3, updated_at = now() WHERE id = $1 AND status = $2
         RETURNING updated_at",
        id,
        from.as_str(),
        to.as_str()
    )
    .fetch_optional(e)
    .await
}

/// `pending_payment` → `paid` by `payment_id`: the order as it is now, or `None` when it was not
/// awaiting payment. The row stays locked until the transaction ends.
pub async fn pay(e: impl PgExecutor<'_>, id: i64, payment_id: i64) -> sqlx::Result<Option<Order>> {
    sqlx::query_as!(
        FullOrderRow,
        r#"UPDATE orders o SET status = 'paid', payment_id = $2, updated_at = now()
            WHERE o.id = $1 AND o.status = 'pending_payment'
        RETURNING o.id, o.user_id, o.status, o.total, o.currency, o.created_at, o.updated_at,
                  o.payment_id,
                  COALESCE((SELECT json_agg(json_build_object(
                               'product_id', i.product_id, 'name', i.name,
                               'unit_price', i.unit_price::text, 'quantity', i.quantity,
                               'line_total', i.line_total::text) ORDER BY i.product_id)
                              FROM order_items i WHERE i.order_id = o.id), '[]')
                    AS "items!: Json<Vec<OrderItem>>""#,
        id,
        payment_id
    )
    .fetch_optional(e)
    .await?
    .map(FullOrderRow::into_order)
    .transpose()
}

/// Cancels unpaid orders older than `ttl_seconds`; replicas skip each other's rows.
pub async fn cancel_expired(
    e: impl PgExecutor<'_>,
    ttl_seconds: i64,
    batch: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        "UPDATE orders SET status = 'cancelled', updated_at = now()
          WHERE id IN (SELECT id FROM orders
                        WHERE status = 'pending_payment'
                          AND created_at < now() - make_interval(secs => $1::bigint)
                        ORDER BY created_at LIMIT $2
                        FOR UPDATE SKIP LOCKED)
        RETURNING id",
        ttl_seconds,
        batch
    )
    .fetch_all(e)
    .await
}

/// The idempotency keys of checkouts; the answer is the order's id.
#[derive(Clone)]
pub struct Keys(pub PgPool);

ecom_shared::key_store!(Keys, answer = "order_id");

pub async fn purge_keys(e: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let done =
        sqlx::query!("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'")
            .execute(e)
            .await?;
    Ok(done.rows_affected())
}
