//! Every SQL statement of the Products service, checked at compile time.
//!
//! Stock changes lock product rows one at a time in ascending id order (callers pass lines
//! sorted by product id), so concurrent reservations can wait for each other but never deadlock.

use chrono::{DateTime, Utc};
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

/// A reservation's state, locked for the rest of the transaction.
pub struct ReservationRow {
    pub status: String,
    pub expires_at: DateTime<Utc>,
}

/// Claims the order id; its expiry. `None`: a reservation for it exists already (idempotent
/// replay).
pub async fn claim_reservation(
    e: impl PgExecutor<'_>,
    order_id: i64,
    ttl_seconds: i64,
) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar!(
        "INSERT INTO reservations (order_id, status, expires_at)
         VALUES ($1, 'active', now() + make_interval(secs => $2::bigint))
         ON CONFLICT (order_id) DO NOTHING
         RETURNING expires_at",
        order_id,
        ttl_seconds,
    )
    .fetch_optional(e)
    .await
}

pub async fn lock_reservation(
    conn: &mut PgConnection,
    order_id: i64,
) -> sqlx::Result<Option<ReservationRow>> {
    sqlx::query_as!(
        ReservationRow,
        "SELECT status, expires_at FROM reservations WHERE order_id = $1 FOR UPDATE",
        order_id
    )
    .fetch_optional(conn)
    .await
}

pub async fn reservation_lines(e: impl PgExecutor<'_>, order_id: i64) -> sqlx::Result<Vec<Line>> {
    sqlx::query_as!(
        Line,
        "SELECT product_id, quantity FROM reservation_lines WHERE order_id = $1 ORDER BY product_id",
        order_id
    )
    .fetch_all(e)
    .await
}

pub async fn insert_lines(
    e: impl PgExecutor<'_>,
    order_id: i64,
    lines: &[Line],
) -> sqlx::Result<()> {
    let ids: Vec<i64> = lines.iter().map(|l| l.product_id).collect();
    let qty: Vec<i64> = lines.iter().map(|l| l.quantity).collect();
    sqlx::query!(
        "INSERT INTO reservation_lines (order_id, product_id, quantity)
         SELECT $1, t.product_id, t.quantity FROM UNNEST($2::bigint[], $3::bigint[]) AS t(product_id, quantity)",
        order_id,
        &ids,
        &qty
    )
    .execute(e)
    .await?;
    Ok(())
}

pub async fn set_status(e: impl PgExecutor<'_>, order_id: i64, status: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE reservations SET status = $2, updated_at = now() WHERE order_id = $1",
        order_id,
        status
    )
    .execute(e)
    .await?;
    Ok(())
}

/// Holds `quantity` units if that many can still be bought. `false`: not enough (or no product).
pub async fn hold(e: impl PgExecutor<'_>, line: Line) -> sqlx::Result<bool> {
    let row = sqlx::query_scalar!(
        "UPDATE products SET reserved = reserved + $2, updated_at = now()
          WHERE id = $1 AND on_hand - reserved >= $2
          RETURNING id",
        line.product_id,
        line.quantity
    )
    .fetch_optional(e)
    .await?;
    Ok(row.is_some())
}

/// Ids among `ids` that exist.
pub async fn existing_ids(e: impl PgExecutor<'_>, ids: &[i64]) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        "SELECT id FROM products WHERE id = ANY($1) ORDER BY id",
        ids
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

/// Held units leave the warehouse: sold.
pub async fn sell(e: impl PgExecutor<'_>, line: Line) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE products SET on_hand = on_hand - $2, reserved = reserved - $2, updated_at = now() WHERE id = $1",
        line.product_id,
        line.quantity
    )
    .execute(e)
    .await?;
    Ok(())
}

/// Sold units come back (a refund). A product deleted since is skipped.
pub async fn restock(e: impl PgExecutor<'_>, line: Line) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE products SET on_hand = on_hand + $2, updated_at = now() WHERE id = $1",
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
