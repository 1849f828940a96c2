//! Every SQL statement of the Payments service, checked at compile time.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor, PgPool};

use crate::{
    domain::{CardSummary, Payment, PaymentStatus},
    outbox::{Event, EventKind},
};

struct PaymentRow {
    id: i64,
    order_id: i64,
    user_id: i64,
    amount: Decimal,
    currency: String,
    status: String,
    failure_code: Option<String>,
    card_brand: String,
    card_last4: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = sqlx::Error;
    fn try_from(r: PaymentRow) -> sqlx::Result<Self> {
        let status = PaymentStatus::parse(&r.status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown payment status {}", r.status).into())
        })?;
        Ok(Payment {
            id: r.id,
            order_id: r.order_id,
            user_id: r.user_id,
            amount: r.amount,
            currency: r.currency,
            status,
            failure_code: r.failure_code,
            card: CardSummary {
                brand: r.card_brand,
                last4: r.card_last4,
            },
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A new payment for an order, not charged yet.
pub struct NewPayment<'a> {
    pub order_id: i64,
    pub user_id: i64,
    pub amount: Decimal,
    pub currency: &'a str,
    pub brand: &'a str,
    pub last4: &'a str,
}

/// Claims the order with a `processing` payment. A unique violation means another payment of
/// this order is being charged, succeeded or was refunded.
pub async fn insert_processing(e: impl PgExecutor<'_>, p: &NewPayment<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        "INSERT INTO payments (order_id, user_id, amount, currency, card_brand, card_last4)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        p.order_id,
        p.user_id,
        p.amount,
        p.currency,
        p.brand,
        p.last4
    )
    .fetch_one(e)
    .await
}

/// The status of the payment that holds an order (processing, succeeded or refunded).
pub async fn charge_of_order(
    e: impl PgExecutor<'_>,
    order_id: i64,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        "SELECT status FROM payments
          WHERE order_id = $1 AND status IN ('processing', 'succeeded', 'refunded')",
        order_id
    )
    .fetch_optional(e)
    .await
}

/// `processing` → `succeeded` or `failed`, with what must commit with it, in one statement
/// (atomic, one round trip): a succeeded payment's `payment.succeeded` event (leased to the
/// writer for `lease_ms`, see [`insert_event`]) and the idempotency key's answer. The settled
/// payment and its event; `None` if it was not processing any more.
pub async fn settle(
    e: impl PgExecutor<'_>,
    id: i64,
    status: PaymentStatus,
    failure_code: Option<&str>,
    key: Option<(i64, &str)>,
    lease_ms: i64,
) -> sqlx::Result<Option<(Payment, Option<Event>)>> {
    let (key_user, key) = key.unzip();
    let row = sqlx::query!(
        r#"WITH p AS (
               UPDATE payments SET status = $2, failure_code = $3, updated_at = now()
                WHERE id = $1 AND status = 'processing'
               RETURNING id, order_id, user_id, amount, currency, status, failure_code,
                         card_brand, card_last4, created_at, updated_at),
           e AS (
               INSERT INTO outbox (kind, payment_id, order_id, attempts, locked_until)
               SELECT 'payment.succeeded', p.id, p.order_id, 1,
                      now() + make_interval(secs => $6::bigint / 1000.0)
                 FROM p WHERE p.status = 'succeeded'
               RETURNING id, kind, attempts),
           k AS (
               UPDATE idempotency_keys SET payment_id = p.id FROM p
                WHERE idempotency_keys.user_id = $4 AND idempotency_keys.key = $5
               RETURNING 1)
         SELECT p.id, p.order_id, p.user_id, p.amount, p.currency, p.status, p.failure_code,
                p.card_brand, p.card_last4, p.created_at, p.updated_at,
                e.id AS "event_id?", e.kind AS "event_kind?", e.attempts AS "event_attempts?",
                (SELECT count(*) FROM k) AS "keys!"
           FROM p LEFT JOIN e ON true"#,
        id,
        status.as_str(),
        failure_code,
        key_user,
        key,
        lease_ms
    )
    .fetch_optional(e)
    .await?;
    let Some(r) = row else {
        return Ok(None);
    };
    let event = match (r.event_id, r.event_kind, r.event_attempts) {
        (Some(event_id), Some(kind), Some(attempts)) => Some(Event::try_from(EventRow {
            id: event_id,
            kind,
            payment_id: r.id,
            order_id: r.order_id,
            attempts,
        })?),
        _ => None,
    };
    let payment = Payment::try_from(PaymentRow {
        id: r.id,
        order_id: r.order_id,
        user_id: r.user_id,
        amount: r.amount,
        currency: r.currency,
        status: r.status,
        failure_code: r.failure_code,
        card_brand: r.card_brand,
        card_last4: r.card_last4,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })?;
    Ok(Some((payment, event)))
}

/// `succeeded` → `refunded` (with a reason when the platform refunded on its own).
pub async fn refund(e: impl PgExecutor<'_>, id: i64, reason: Option<&str>) -> sqlx::Result<bool> {
    let done = sqlx::query!(
        "UPDATE payments SET status = 'refunded', failure_code = $2, updated_at = now()
          WHERE id = $1 AND status = 'succeeded'",
        id,
        reason
    )
    .execute(e)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A payment's status, locked until the transaction ends.
pub async fn lock_status(conn: &mut PgConnection, id: i64) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT status FROM payments WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(conn)
        .await
}

/// Payments interrupted while charging (the process died): the emulated processor keeps no
/// state, so an interrupted charge never happened; they are settled as failed.
pub async fn fail_stuck(e: impl PgExecutor<'_>, older_than_secs: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar!(
        "UPDATE payments SET status = 'failed', failure_code = 'processing_error', updated_at = now()
          WHERE status = 'processing' AND updated_at < now() - make_interval(secs => $1::bigint)
        RETURNING id",
        older_than_secs
    )
    .fetch_all(e)
    .await
}

pub async fn get_payment(e: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<Payment>> {
    sqlx::query_as!(
        PaymentRow,
        "SELECT id, order_id, user_id, amount, currency, status, failure_code, card_brand,
                card_last4, created_at, updated_at
           FROM payments WHERE id = $1",
        id
    )
    .fetch_optional(e)
    .await?
    .map(Payment::try_from)
    .transpose()
}

/// A page of payments, newest first: optionally one user's, optionally one order's.
pub async fn list_payments(
    conn: &mut PgConnection,
    user_id: Option<i64>,
    order_id: Option<i64>,
    limit: i64,
    offset: i64,
) -> sqlx::Result<(Vec<Payment>, i64)> {
    let rows = sqlx::query_as!(
        PaymentRow,
        "SELECT id, order_id, user_id, amount, currency, status, failure_code, card_brand,
                card_last4, created_at, updated_at
           FROM payments
          WHERE ($1::bigint IS NULL OR user_id = $1) AND ($2::bigint IS NULL OR order_id = $2)
          ORDER BY id DESC LIMIT $3 OFFSET $4",
        user_id,
        order_id,
        limit,
        offset
    )
    .fetch_all(&mut *conn)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM payments
            WHERE ($1::bigint IS NULL OR user_id = $1) AND ($2::bigint IS NULL OR order_id = $2)"#,
        user_id,
        order_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let payments = rows
        .into_iter()
        .map(Payment::try_from)
        .collect::<sqlx::Result<_>>()?;
    Ok((payments, total))
}

/// Every payment of these orders, newest first.
pub async fn payments_of_orders(
    e: impl PgExecutor<'_>,
    order_ids: &[i64],
) -> sqlx::Result<Vec<Payment>> {
    sqlx::query_as!(
        PaymentRow,
        "SELECT id, order_id, user_id, amount, currency, status, failure_code, card_brand,
                card_last4, created_at, updated_at
           FROM payments WHERE order_id = ANY($1) ORDER BY id DESC",
        order_ids
    )
    .fetch_all(e)
    .await?
    .into_iter()
    .map(Payment::try_from)
    .collect()
}

// ---- idempotency keys ----

/// The idempotency keys of payments; the answer is the payment's id, recorded by [`settle`].
#[derive(Clone)]
pub struct Keys(pub PgPool);

ecom_shared::key_store!(Keys, answer = "payment_id");

/// Records `payment_id` as the key's answer unless it already has one: a charge that finished
/// late never overwrites the answer of a duplicate that took the key over meanwhile.
pub async fn finish_key(
    e: impl PgExecutor<'_>,
    user_id: i64,
    key: &str,
    payment_id: i64,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE idempotency_keys SET payment_id = $3
          WHERE user_id = $1 AND key = $2 AND payment_id IS NULL",
        user_id,
        key,
        payment_id
    )
    .execute(e)
    .await?;
    Ok(())
}

/// Housekeeping: delivered events are kept a week for inspection, then dropped.
pub async fn purge_delivered_events(e: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let done = sqlx::query!("DELETE FROM outbox WHERE delivered_at < now() - interval '7 days'")
        .execute(e)
        .await?;
    Ok(done.rows_affected())
}

pub async fn purge_keys(e: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let done =
        sqlx::query!("DELETE FROM idempotency_keys WHERE created_at < now() - interval '24 hours'")
            .execute(e)
            .await?;
    Ok(done.rows_affected())
}

// ---- the outbox ----

/// An outbox row as stored (its kind as text).
struct EventRow {
    id: i64,
    kind: String,
    payment_id: i64,
    order_id: i64,
    attempts: i32,
}

impl TryFrom<EventRow> for Event {
    type Error = sqlx::Error;
    fn try_from(r: EventRow) -> sqlx::Result<Self> {
        let kind = EventKind::parse(&r.kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown event kind {}", r.kind).into()))?;
        Ok(Event {
            id: r.id,
            kind,
            payment_id: r.payment_id,
            order_id: r.order_id,
            attempts: r.attempts,
        })
    }
}

/// Writes an event (in the caller's transaction), leased to the writer for `lease_ms`: the
/// request that wrote it delivers it at once, and the relay takes over if that lease runs out
/// (the request failed to deliver, or the process died).
pub async fn insert_event(
    e: impl PgExecutor<'_>,
    kind: EventKind,
    payment_id: i64,
    order_id: i64,
    lease_ms: i64,
) -> sqlx::Result<Event> {
    sqlx::query_as!(
        EventRow,
        "INSERT INTO outbox (kind, payment_id, order_id, attempts, locked_until)
         VALUES ($1, $2, $3, 1, now() + make_interval(secs => $4::bigint / 1000.0))
         RETURNING id, kind, payment_id, order_id, attempts",
        kind.as_str(),
        payment_id,
        order_id,
        lease_ms
    )
    .fetch_one(e)
    .await?
    .try_into()
}

/// Leases the due events, oldest first; replicas skip each other's.
pub async fn lease_due_events(
    e: impl PgExecutor<'_>,
    batch: i64,
    lease_secs: i64,
) -> sqlx::Result<Vec<Event>> {
    sqlx::query_as!(
        EventRow,
        "UPDATE outbox SET locked_until = now() + make_interval(secs => $2::bigint),
                           attempts = attempts + 1
          WHERE id IN (SELECT id FROM outbox
                        WHERE delivered_at IS NULL AND next_attempt_at <= now()
                          AND (locked_until IS NULL OR locked_until < now())
                          AND kind = ANY($3::text[])
                        ORDER BY id LIMIT $1
                        FOR UPDATE SKIP LOCKED)
        RETURNING id, kind, payment_id, order_id, attempts",
        batch,
        lease_secs,
        &EventKind::ALL.map(|k| k.as_str().to_owned())
    )
    .fetch_all(e)
    .await?
    .into_iter()
    .map(Event::try_from)
    .collect()
}

pub async fn mark_delivered(e: impl PgExecutor<'_>, id: i64) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE outbox SET delivered_at = now(), locked_until = NULL, last_error = NULL
          WHERE id = $1",
        id
    )
    .execute(e)
    .await?;
    Ok(())
}

/// A failed attempt: try again after `delay_ms`.
pub async fn reschedule(
    e: impl PgExecutor<'_>,
    id: i64,
    delay_ms: i64,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE outbox SET next_attempt_at = now() + make_interval(secs => $2::bigint / 1000.0),
                           locked_until = NULL, last_error = left($3, 500)
          WHERE id = $1",
        id,
        delay_ms,
        error
    )
    .execute(e)
    .await?;
    Ok(())
}

/// Whether the payment's success has not reached Orders yet.
pub async fn success_undelivered(e: impl PgExecutor<'_>, payment_id: i64) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM outbox WHERE payment_id = $1
                    AND kind = 'payment.succeeded' AND delivered_at IS NULL) AS "x!""#,
        payment_id
    )
    .fetch_one(e)
    .await
}

pub async fn pending_events(e: impl PgExecutor<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM outbox WHERE delivered_at IS NULL"#)
        .fetch_one(e)
        .await
}
