//! The shared idempotency-key mechanism on Orders' own table and statements: wait and replay,
//! conflict, in use, take-over of a dead checkout's key, release.

use chrono::{SubsecRound, Utc};
use ecom_shared::idempotency::{Claim, conformance};
use orders::{
    domain::{LineInput, Order, OrderLines, OrderStatus},
    repo,
};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn checkout_keys_behave_as_the_shared_mechanism_documents(pool: PgPool) {
    // A checkout's unit of work records the order on the key as it stores the order.
    let finish = |claim: Claim| {
        let pool = pool.clone();
        async move {
            let id = repo::next_order_id(&pool).await.expect("id");
            let now = Utc::now().trunc_subsecs(6);
            let order = Order {
                id,
                user_id: claim.user_id,
                status: OrderStatus::PendingPayment,
                items: Vec::new(),
                total: Decimal::ZERO,
                currency: "USD".into(),
                created_at: now,
                updated_at: now,
                payment_id: None,
            };
            repo::insert_order(&pool, &order, Some(claim.key.as_str()))
                .await
                .expect("insert");
            id
        }
    };
    conformance::check(repo::Keys(pool.clone()), finish).await;
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn the_key_of_a_checkout_that_died_is_taken_over(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "2.00", 10).await;
    let alice = token(7, "user");
    // What a replica that died mid-checkout leaves: the key claimed long ago, unanswered.
    let hash = OrderLines::parse(Some(vec![LineInput {
        product_id: Some(mug),
        quantity: Some(2),
    }]))
    .expect("lines")
    .fingerprint();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, locked_at)
         VALUES (7, 'died', $1, now() - interval '10 minutes')",
    )
    .bind(&hash)
    .execute(&app.pool)
    .await
    .expect("stale key");
    // Another request under it is still a conflict.
    assert_error(
        &app.order(&alice, &[(mug, 3)], Some("died")).await,
        StatusCode::CONFLICT,
        "idempotency_conflict",
    );
    let (status, order) = app.order(&alice, &[(mug, 2)], Some("died")).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let (status, replay) = app.order(&alice, &[(mug, 2)], Some("died")).await;
    assert_eq!((status, &replay), (StatusCode::OK, &order));
    assert_eq!(app.stock(mug).await, 8);
}
