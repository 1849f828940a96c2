//! Every SQL statement of the Products service, checked at compile time.
//!
//! Stock changes lock product rows one at a time in ascending id order (callers pass lines
//! sorted by product id), so concurrent reservations can wait for each other but never deadlock.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor};

use crate::domain::{Line, Listing, NewProduct, Product, ProductPatch, Sort};

pub async fn insert_product(
    e: impl PgExecutor<'_>,
    p: &NewProduct,
    currency: &str,
) -> sqlx::Result<Product> {
    sqlx::query_as!(
        Product,
        r#"INSERT INTO products (name, description, price, currency, category, on_hand)
           VALUES ($1, $2, $3, $4, $5, $6)
           RETURNING id, name, description, price, currency, on_hand - reserved AS "stock!",
                     category, created_at, updated_at"#,
        p.name,
        p.description,
        p.price.amount(),
        currency,
        p.category,
        p.stock,
    )
    .fetch_one(e)
    .await
}

pub async fn get_product(e: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<Product>> {
    sqlx::query_as!(
        Product,
        r#"SELECT id, name, description, price, currency, on_hand - reserved AS "stock!",
                  category, created_at, updated_at
           FROM products WHERE id = $1"#,
        id
    )
    .fetch_optional(e)
    .await
}

pub async fn get_products(e: impl PgExecutor<'_>, ids: &[i64]) -> sqlx::Result<Vec<Product>> {
    sqlx::query_as!(
        Product,
        r#"SELECT id, name, description, price, currency, on_hand - reserved AS "stock!",
                  category, created_at, updated_at
           FROM products WHERE id = ANY($1)"#,
        ids
    )
    .fetch_all(e)
    .await
}

pub async fn update_product(
    e: impl PgExecutor<'_>,
    id: i64,
    p: &ProductPatch,
) -> sqlx::Result<Option<Product>> {
    let (set_category, category) = match &p.category {
        Some(c) => (true, c.clone()),
        None => (false, None),
    };
    sqlx::query_as!(
        Product,
        r#"UPDATE products
              SET name = COALESCE($2, name),
                  description = COALESCE($3, description),
                  price = COALESCE($4, price),
                  -- `stock` is what can be bought: units held by reservations stay held.
                  on_hand = CASE WHEN $5::bigint IS NULL THEN on_hand ELSE $5 + reserved END,
                  category = CASE WHEN $6 THEN $7 ELSE category END,
                  updated_at = now()
            WHERE id = $1
        RETURNING id, name, description, price, currency, on_hand - reserved AS "stock!",
                  category, created_at, updated_at"#,
        id,
        p.name,
        p.description,
        p.price.map(|m| m.amount()),
        p.stock,
        set_category,
        category,
    )
    .fetch_optional(e)
    .await
}

/// What happened to a delete.
pub enum Deleted {
    Yes,
    NotFound,
    /// Active reservations hold units of it.
    Held,
}

pub async fn delete_product(conn: &mut PgConnection, id: i64) -> sqlx::Result<Deleted> {
    let done = sqlx::query!("DELETE FROM products WHERE id = $1 AND reserved = 0", id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 1 {
        return Ok(Deleted::Yes);
    }
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM products WHERE id = $1) AS "e!""#,
        id
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(if exists {
        Deleted::Held
    } else {
        Deleted::NotFound
    })
}

pub async fn count_products(e: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM products"#)
        .fetch_one(e)
        .await
}

/// One page of a listing and the number of matches.
pub async fn list(conn: &mut PgConnection, q: &Listing) -> sqlx::Result<(Vec<Product>, i64)> {
    let (min, max) = (
        q.min_price.map(|m| m.amount()),
        q.max_price.map(|m| m.amount()),
    );
    let (cat, search, prefix) = (q.category.as_deref(), q.search.as_deref(), q.prefix_query());
    // Every listing statement: `$select`, the filters ($1 to $5) written once, then `$rest`.
    macro_rules! listing {
        ($query:ident!($($out:ty,)? $select:literal, $rest:literal $(, $arg:expr)*)) => {
            sqlx::$query!(
                $($out,)?
                $select
                    + r#"
               FROM products
               WHERE ($1::text IS NULL OR category = $1)
                 AND ($2::numeric IS NULL OR price >= $2)
                 AND ($3::numeric IS NULL OR price <= $3)
                 AND ($4::text IS NULL OR search @@ websearch_to_tsquery('english', $4)
                      OR search @@ to_tsquery('english', $5::text))"#
                    + $rest,
                cat, min, max, search, prefix $(, $arg)*
            )
        };
    }
    // One static statement per sort, so the planner walks the matching index and stops after
    // the page (an `ORDER BY CASE ...` would sort every match first).
    macro_rules! page {
        ($order:literal) => {
            listing!(query_as!(
                Product,
                r#"SELECT id, name, description, price, currency, on_hand - reserved AS "stock!",
                      category, created_at, updated_at"#,
                $order,
                q.limit,
                q.offset
            ))
            .fetch_all(&mut *conn)
            .await?
        };
    }
    let items = match q.sort {
        Sort::Id => page!(" ORDER BY id LIMIT $6 OFFSET $7"),
        Sort::Price => page!(" ORDER BY price, id LIMIT $6 OFFSET $7"),
        Sort::PriceDesc => page!(" ORDER BY price DESC, id DESC LIMIT $6 OFFSET $7"),
        Sort::Name => page!(" ORDER BY name, id LIMIT $6 OFFSET $7"),
        Sort::Newest => page!(" ORDER BY created_at DESC, id LIMIT $6 OFFSET $7"),
    };
    let total = listing!(query_scalar!(r#"SELECT count(*) AS "n!""#, ""))
        .fetch_one(&mut *conn)
        .await?;
    Ok((items, total))
}

/// One line of a reservation with its reservation's state: every reservation read is one
/// statement answering one row per line, by ascending product id.
pub struct ReservationLineRow {
    pub status: String,
    pub expires_at: DateTime<Utc>,
    /// By the database's clock, as the sweeper judges it.
    pub expired: bool,
    pub product_id: i64,
    pub quantity: i64,
    /// The product as it was when the line was held (`None` on lines reserved before it was kept).
    pub name: Option<String>,
    pub unit_price: Option<Decimal>,
    pub currency: Option<String>,
}

/// What [`reserve`] saw of one requested line, by ascending product id.
pub struct HoldRow {
    pub product_id: i64,
    pub quantity: i64,
    /// The product under its row lock; `None`: there is no such product.
    pub name: Option<String>,
    pub price: Option<Decimal>,
    pub currency: Option<String>,
    /// What could still be bought before this hold.
    pub available: Option<i64>,
    /// The new reservation's expiry (the same on every row); `None` when nothing was held: the
    /// order id has a reservation already, or some line is unknown or short.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Holds every line for `order_id`, or nothing, in one statement (atomic without `BEGIN`, one
/// round trip). The products are locked first, in ascending id like every stock change, so
/// concurrent reservations wait for each other but never deadlock; availability is judged on
/// the locked rows (`FOR UPDATE` in read committed answers the newest version), so nothing is
/// oversold; the reservation is claimed only if every line can be held, and `ON CONFLICT DO
/// NOTHING` leaves an existing reservation for the order id alone. An order id whose
/// reservation is already there locks nothing (a retry holds no product while it could wait
/// on a move of that reservation, which locks the reservation first). Each line keeps its
/// product's name and price as read under the lock.
pub async fn reserve(
    e: impl PgExecutor<'_>,
    order_id: i64,
    lines: &[Line],
    ttl_seconds: i64,
) -> sqlx::Result<Vec<HoldRow>> {
    let ids: Vec<i64> = lines.iter().map(|l| l.product_id).collect();
    let qty: Vec<i64> = lines.iter().map(|l| l.quantity).collect();
    sqlx::query_as!(
        HoldRow,
        r#"WITH want AS (
               SELECT * FROM UNNEST($2::bigint[], $3::bigint[]) AS w(product_id, quantity)),
           locked AS MATERIALIZED (
               SELECT id, name, price, currency, on_hand - reserved AS available
                 FROM products
                WHERE id = ANY($2::bigint[])
                  AND NOT EXISTS (SELECT 1 FROM reservations WHERE order_id = $1)
                ORDER BY id
                  FOR UPDATE),
           claim AS (
               INSERT INTO reservations (order_id, status, expires_at)
               SELECT $1::bigint, 'active', now() + make_interval(secs => $4::bigint)
                WHERE (SELECT count(*) FROM want w JOIN locked l ON l.id = w.product_id
                        WHERE l.available >= w.quantity) = cardinality($2::bigint[])
               ON CONFLICT (order_id) DO NOTHING
               RETURNING expires_at),
           held AS (
               UPDATE products p SET reserved = p.reserved + w.quantity, updated_at = now()
                 FROM want w
                WHERE p.id = w.product_id AND EXISTS (SELECT 1 FROM claim)
               RETURNING p.id),
           kept AS (
               INSERT INTO reservation_lines (order_id, product_id, quantity, name, unit_price, currency)
               SELECT $1::bigint, w.product_id, w.quantity, l.name, l.price, l.currency
                 FROM want w JOIN locked l ON l.id = w.product_id
                WHERE EXISTS (SELECT 1 FROM claim)
               RETURNING product_id)
         SELECT w.product_id AS "product_id!", w.quantity AS "quantity!",
                l.name AS "name?", l.price AS "price?", l.currency AS "currency?",
                l.available AS "available?",
                (SELECT expires_at FROM claim) AS "expires_at?"
           FROM want w LEFT JOIN locked l ON l.id = w.product_id
          ORDER BY w.product_id"#,
        order_id,
        &ids,
        &qty,
        ttl_seconds,
    )
    .fetch_all(e)
    .await
}

/// An order's reservation, one row per line (none: no reservation).
pub async fn find_reservation(
    e: impl PgExecutor<'_>,
    order_id: i64,
) -> sqlx::Result<Vec<ReservationLineRow>> {
    sqlx::query_as!(
        ReservationLineRow,
        r#"SELECT r.status, r.expires_at, r.expires_at <= now() AS "expired!",
                  l.product_id, l.quantity, l.name, l.unit_price, l.currency
             FROM reservations r JOIN reservation_lines l ON l.order_id = r.order_id
            WHERE r.order_id = $1
            ORDER BY l.product_id"#,
        order_id
    )
    .fetch_all(e)
    .await
}

/// [`find_reservation`], with the reservation's row locked until the transaction ends.
pub async fn lock_reservation(
    conn: &mut PgConnection,
    order_id: i64,
) -> sqlx::Result<Vec<ReservationLineRow>> {
    sqlx::query_as!(
        ReservationLineRow,
        r#"SELECT r.status, r.expires_at, r.expires_at <= now() AS "expired!",
                  l.product_id, l.quantity, l.name, l.unit_price, l.currency
             FROM reservations r JOIN reservation_lines l ON l.order_id = r.order_id
            WHERE r.order_id = $1
            ORDER BY l.product_id
              FOR UPDATE OF r"#,
        order_id
    )
    .fetch_all(conn)
    .await
}

/// How a reservation's move changes each line's product: `on_hand` and `reserved` each move by
/// the line's quantity times these (-1, 0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockEffect {
    pub on_hand: i64,
    pub reserved: i64,
}

impl StockEffect {
    /// Whether the move changes what a client sees of the product (`stock`: on hand minus
    /// reserved). Only then does the product's `updated_at` move (and its cache entry go stale):
    /// held units becoming sold change nothing a client sees.
    pub fn visible(self) -> bool {
        self.on_hand != self.reserved
    }
}

/// Moves the reservation `from` → `to` if it is in `from` (and, with `unexpired_only`, not past
/// its expiry by the database's clock), applying `effect` to every line's product: one
/// statement, atomic without `BEGIN`. The reservation's row is locked first, then the products
/// in ascending id, the order of every stock change. The lines as they end up; none when the
/// reservation was not moved.
pub async fn move_reservation(
    e: impl PgExecutor<'_>,
    order_id: i64,
    (from, to): (&str, &str),
    unexpired_only: bool,
    effect: StockEffect,
) -> sqlx::Result<Vec<ReservationLineRow>> {
    sqlx::query_as!(
        ReservationLineRow,
        r#"WITH r AS (
               UPDATE reservations SET status = $3, updated_at = now()
                WHERE order_id = $1 AND status = $2 AND (NOT $4 OR expires_at > now())
               RETURNING order_id, status, expires_at),
           lines AS MATERIALIZED (
               SELECT l.product_id, l.quantity, l.name, l.unit_price, l.currency
                 FROM reservation_lines l JOIN r ON r.order_id = l.order_id),
           locked AS MATERIALIZED (
               SELECT p.id FROM products p
                WHERE p.id IN (SELECT product_id FROM lines)
                ORDER BY p.id
                  FOR UPDATE),
           stock AS (
               UPDATE products p
                  SET on_hand = p.on_hand + $5 * l.quantity,
                      reserved = p.reserved + $6 * l.quantity,
                      updated_at = CASE WHEN $7 THEN now() ELSE p.updated_at END
                 FROM lines l JOIN locked k ON k.id = l.product_id
                WHERE p.id = l.product_id
               RETURNING p.id)
         SELECT r.status, r.expires_at, r.expires_at <= now() AS "expired!",
                l.product_id, l.quantity, l.name, l.unit_price, l.currency
           FROM r JOIN lines l ON true
          ORDER BY l.product_id"#,
        order_id,
        from,
        to,
        unexpired_only,
        effect.on_hand,
        effect.reserved,
        effect.visible(),
    )
    .fetch_all(e)
    .await
}

/// Gives held units back.
pub async fn unhold(e: impl PgExecutor<'_>, line: Line) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE products SET reserved = reserved - $2, updated_at = now() WHERE id = $1",
        line.product_id,
        line.quantity
    )
    .execute(e)
    .await?;
    Ok(())
}

/// Active reservations past their expiry, locked; rows another replica holds are skipped.
pub async fn lock_expired(conn: &mut PgConnection, batch: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        "SELECT order_id FROM reservations
          WHERE status = 'active' AND expires_at <= now()
          ORDER BY expires_at
          LIMIT $1
          FOR UPDATE SKIP LOCKED",
        batch
    )
    .fetch_all(conn)
    .await
}

/// The summed lines of several reservations, by ascending product id.
pub async fn summed_lines(e: impl PgExecutor<'_>, order_ids: &[i64]) -> sqlx::Result<Vec<Line>> {
    sqlx::query_as!(
        Line,
        r#"SELECT product_id, sum(quantity)::bigint AS "quantity!"
             FROM reservation_lines WHERE order_id = ANY($1)
            GROUP BY product_id ORDER BY product_id"#,
        order_ids
    )
    .fetch_all(e)
    .await
}

pub async fn set_status_many(
    e: impl PgExecutor<'_>,
    order_ids: &[i64],
    status: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE reservations SET status = $2, updated_at = now() WHERE order_id = ANY($1)",
        order_ids,
        status
    )
    .execute(e)
    .await?;
    Ok(())
}
