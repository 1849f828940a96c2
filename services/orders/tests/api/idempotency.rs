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
            let stored =
                repo::insert_order(&pool, &order, Some((claim.key.as_str(), claim.locked_at)))
                    .await
                    .expect("insert");
            assert!(stored, "the key is this claim's");
            id
        }
    };
    conformance::check(repo::Keys(pool.clone()), finish).await;
}

/// A checkout that outlived its lease and was taken over stores nothing when it finally
/// finishes: one key never makes two orders, and the taker's answer stands.
#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn a_checkout_that_outlived_its_lease_stores_no_second_order(pool: PgPool) {
    use ecom_shared::idempotency::{IdempotencyKey, KeyStore};

    let store = repo::Keys(pool.clone());
    let key = IdempotencyKey::parse("slow-checkout").expect("key");
    let first = store
        .insert(7, &key, b"hash")
        .await
        .expect("insert")
        .expect("claimed");
    // The lease ran out: a duplicate takes the key over.
    sqlx::query("UPDATE idempotency_keys SET locked_at = locked_at - interval '1 hour'")
        .execute(&pool)
        .await
        .expect("age the claim");
    let seen: chrono::DateTime<Utc> = sqlx::query_scalar("SELECT locked_at FROM idempotency_keys")
        .fetch_one(&pool)
        .await
        .expect("locked_at");
    let taken = store
        .take_over(7, &key, seen)
        .await
        .expect("take over")
        .expect("taken");
    let order = |id| Order {
        id,
        user_id: 7,
        status: OrderStatus::PendingPayment,
        items: Vec::new(),
        total: Decimal::ZERO,
        currency: "USD".into(),
        created_at: Utc::now().trunc_subsecs(6),
        updated_at: Utc::now().trunc_subsecs(6),
        payment_id: None,
    };
    let taker = repo::next_order_id(&pool).await.expect("id");
    assert!(
        repo::insert_order(&pool, &order(taker), Some((key.as_str(), taken)))
            .await
            .expect("insert")
    );
    // The first holder wakes up and finishes: nothing is stored, the answer is the taker's.
    let late = repo::next_order_id(&pool).await.expect("id");
    assert!(
        !repo::insert_order(&pool, &order(late), Some((key.as_str(), first)))
            .await
            .expect("insert")
    );
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(orders, 1);
    let answer: Option<i64> = sqlx::query_scalar("SELECT order_id FROM idempotency_keys")
        .fetch_one(&pool)
        .await
        .expect("answer");
    assert_eq!(answer, Some(taker));
}

/// Claims `key` for alice's checkout of `lines` as another request would, `ago` ago.
async fn claimed_elsewhere(app: &TestApp, key: &str, lines: &[(i64, i64)], ago: &str) {
    let lines = lines
        .iter()
        .map(|&(product_id, quantity)| LineInput {
            product_id: Some(product_id),
            quantity: Some(quantity),
        })
        .collect();
    let hash = OrderLines::parse(Some(lines)).expect("lines").fingerprint();
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, locked_at)
         VALUES (7, $1, $2, now() - $3::interval)",
    )
    .bind(key)
    .bind(&hash)
    .bind(ago)
    .execute(&app.pool)
    .await
    .expect("claimed key");
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn a_key_still_running_after_the_wait_is_in_use(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "2.00", 10).await;
    let alice = token(7, "user");
    // Another replica's checkout holding the key right now, and not answering.
    claimed_elsewhere(&app, "running", &[(mug, 1)], "0 seconds").await;
    let started = std::time::Instant::now();
    let got = app.order(&alice, &[(mug, 1)], Some("running")).await;
    assert_error(&got, StatusCode::CONFLICT, "idempotency_key_in_use");
    assert!(
        started.elapsed() >= ecom_shared::idempotency::WAIT,
        "it waited first"
    );
    assert_eq!(app.stock(mug).await, 10, "nothing reserved");
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn the_key_of_a_checkout_that_died_is_taken_over(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "2.00", 10).await;
    let alice = token(7, "user");
    // What a replica that died mid-checkout leaves: the key claimed long ago, unanswered.
    claimed_elsewhere(&app, "died", &[(mug, 2)], "10 minutes").await;
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
