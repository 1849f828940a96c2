//! The shared idempotency-key mechanism on Payments' own table and statements: wait and
//! replay, conflict, in use, take-over of a dead charge's key, release.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::Utc;
use ecom_shared::{
    idempotency::{Claim, conformance},
    json::Lenient,
};
use payments::{
    domain::{CardFields, Pay, PaymentStatus},
    repo::{self, NewPayment},
};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn payment_keys_behave_as_the_shared_mechanism_documents(pool: PgPool) {
    // A charge's settlement records the payment on the key as it settles the payment.
    let orders = AtomicI64::new(1);
    let finish = |claim: Claim| {
        let (pool, order_id) = (pool.clone(), orders.fetch_add(1, Ordering::Relaxed));
        async move {
            let new = NewPayment {
                order_id,
                user_id: claim.user_id,
                amount: Decimal::ONE,
                currency: "USD",
                brand: "visa",
                last4: "0002",
            };
            let id = repo::insert_processing(&pool, &new).await.expect("claim");
            repo::settle(
                &pool,
                id,
                PaymentStatus::Failed,
                Some("card_declined"),
                Some((claim.user_id, claim.key.as_str())),
                0,
            )
            .await
            .expect("settle")
            .expect("was processing");
            id
        }
    };
    conformance::check(repo::Keys(pool.clone()), finish).await;
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn the_key_of_a_charge_that_died_is_taken_over(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "5.00", 10).await;
    let alice = token(7, "user");
    let order = app.order(&alice, &[(mug, 1)]).await;
    // What a replica that died before charging leaves: the key claimed long ago (beyond
    // ECOM_PAYMENT_STUCK_SECONDS), unanswered.
    let sent = CardFields {
        number: Some(GOOD_CARD.into()),
        exp_month: Some(12),
        exp_year: Some(2040),
        cvc: Some("123".into()),
    };
    let hash = Pay::new(
        Some(Lenient::Valid(order)),
        Some(sent),
        Ok(None),
        Utc::now(),
    )
    .expect("pay")
    .fingerprint();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, locked_at)
         VALUES (7, 'died', $1, now() - interval '1 hour')",
    )
    .bind(&hash)
    .execute(&app.pool)
    .await
    .expect("stale key");
    let (status, payment) = app.pay(&alice, order, &card(GOOD_CARD), Some("died")).await;
    assert_eq!(
        (status, payment["status"].as_str()),
        (StatusCode::CREATED, Some("succeeded")),
        "{payment}"
    );
    let (status, replay) = app.pay(&alice, order, &card(GOOD_CARD), Some("died")).await;
    assert_eq!((status, &replay), (StatusCode::OK, &payment));
    assert_eq!(app.payment_count().await, 1);
}
