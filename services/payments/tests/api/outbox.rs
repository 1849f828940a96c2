//! The outbox relay's lease on Payments' own table.

use payments::{outbox::EventKind, repo};
use sqlx::PgPool;

/// A kind this build does not know (a newer replica's, during a rollout) is left to a replica
/// that knows it: never leased, never counted as an attempt, and it does not hold back the
/// events behind it.
#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn the_relay_leases_only_the_kinds_it_delivers(pool: PgPool) {
    // What a newer migration would allow.
    sqlx::query("ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check")
        .execute(&pool)
        .await
        .expect("drop the kind check");
    let payment: i64 = sqlx::query_scalar(
        "INSERT INTO payments (order_id, user_id, amount, currency, status, card_brand, card_last4)
         VALUES (1, 1, 10, 'USD', 'succeeded', 'visa', '4242') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .expect("payment");
    for kind in ["payment.disputed", EventKind::PaymentSucceeded.as_str()] {
        sqlx::query("INSERT INTO outbox (kind, payment_id, order_id) VALUES ($1, $2, 1)")
            .bind(kind)
            .bind(payment)
            .execute(&pool)
            .await
            .expect("event");
    }
    let leased = repo::lease_due_events(&pool, 1, 30).await.expect("lease");
    assert_eq!(leased.len(), 1, "the known event behind the unknown one");
    assert_eq!(leased[0].kind, EventKind::PaymentSucceeded);
    let unknown: (i32, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT attempts, locked_until FROM outbox WHERE kind = 'payment.disputed'")
            .fetch_one(&pool)
            .await
            .expect("unknown event");
    assert_eq!(unknown, (0, None), "untouched");
}
