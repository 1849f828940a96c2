//! Refunds, automatic refunds, and the outbox: delivered once, redelivered harmlessly.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use sqlx::PgPool;

use crate::helpers::*;

async fn undelivered(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

async fn wait_delivered(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while undelivered(app).await > 0 {
        assert!(Instant::now() < deadline, "the outbox was not drained");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn an_admin_refund_refunds_the_order_and_returns_the_stock(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "5.00", 10).await;
    let alice = token(7, "user");
    let order = app.order(&alice, &[(mug, 3)]).await;
    let (_, p) = app.pay(&alice, order, &card(GOOD_CARD), None).await;
    let id = p["id"].as_i64().expect("id");
    assert_eq!(app.on_hand(mug).await, 7);

    let path = format!("/payments/{id}/refund");
    assert_error(
        &app.send(Method::POST, &path, None, &alice, None).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let (status, refunded) = app.send(Method::POST, &path, None, &admin(), None).await;
    assert_eq!(
        (status, refunded["status"].as_str()),
        (StatusCode::OK, Some("refunded")),
        "{refunded}"
    );
    assert_eq!(refunded["amount"], "15.00");
    app.wait_for_order(&alice, order, "refunded").await;
    assert_eq!((app.on_hand(mug).await, app.stock(mug).await), (10, 10));
    assert_error(
        &app.send(Method::POST, &path, None, &admin(), None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
    assert_error(
        &app.send(
            Method::POST,
            "/payments/999999/refund",
            None,
            &admin(),
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    // A failed payment has nothing to refund.
    let order2 = app.order(&alice, &[(mug, 1)]).await;
    let (_, failed) = app
        .pay(&alice, order2, &card("4000000000000002"), None)
        .await;
    assert_error(
        &app.send(
            Method::POST,
            &format!("/payments/{}/refund", failed["id"]),
            None,
            &admin(),
            None,
        )
        .await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
    let m = app.metrics().await;
    assert_eq!(
        sample(&m, r#"payments_total{status="refunded"}"#),
        1.0,
        "{m}"
    );
    // Money in and money back out; the declined payment moved none.
    for status in ["succeeded", "refunded"] {
        let name = format!(r#"payments_amount_total{{status="{status}",currency="USD"}}"#);
        assert_eq!(sample(&m, &name), 15.0, "{m}");
    }
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn a_payment_landing_after_the_reservation_expired_is_refunded(pool: PgPool) {
    // Products expires the hold after a second; the Orders sweeper is slow to notice.
    let app = spawn_app_with(
        pool,
        Env {
            orders: &[
                ("ECOM_RESERVATION_TTL_SECONDS", "1"),
                ("ECOM_ORDER_SWEEP_MS", "600000"),
            ],
            // The lifetime is Products' own setting (callers cannot choose it).
            products: &[("ECOM_RESERVATION_TTL_SECONDS", "1")],
            ..Env::default()
        },
    )
    .await;
    let mug = app.product("Mug", "5.00", 2).await;
    let alice = token(7, "user");
    let order = app.order(&alice, &[(mug, 2)]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.stock(mug).await != 2 {
        assert!(Instant::now() < deadline, "the reservation did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, p) = app.pay(&alice, order, &card(GOOD_CARD), None).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        (p["status"].as_str(), p["failure_code"].as_str()),
        (Some("refunded"), Some("order_cancelled")),
        "money is never kept without goods: {p}"
    );
    assert_eq!(app.order_of(&alice, order).await["status"], "cancelled");
    assert_eq!((app.on_hand(mug).await, app.stock(mug).await), (2, 2));
    assert_eq!(undelivered(&app).await, 0);
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn a_redelivered_event_has_no_second_effect(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "5.00", 10).await;
    let alice = token(7, "user");
    let order = app.order(&alice, &[(mug, 2)]).await;
    let (_, p) = app.pay(&alice, order, &card(GOOD_CARD), None).await;
    assert_eq!(app.order_of(&alice, order).await["status"], "paid");

    // The relay sees the event again (a lost acknowledgement) and delivers it again.
    sqlx::query("UPDATE outbox SET delivered_at = NULL, next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .expect("redeliver");
    wait_delivered(&app).await;
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM outbox")
        .fetch_one(&app.pool)
        .await
        .expect("attempts");
    assert_eq!(attempts, 2, "delivered twice");
    assert_eq!(app.on_hand(mug).await, 8, "committed once");
    let m = app.orders_metrics().await;
    assert!(
        m.contains(r#"order_transitions_total{from="pending_payment",to="paid"} 1"#),
        "{m}"
    );

    // Same for a refund.
    let id = p["id"].as_i64().expect("id");
    app.send(
        Method::POST,
        &format!("/payments/{id}/refund"),
        None,
        &admin(),
        None,
    )
    .await;
    app.wait_for_order(&alice, order, "refunded").await;
    sqlx::query("UPDATE outbox SET delivered_at = NULL, next_attempt_at = now()")
        .execute(&app.pool)
        .await
        .expect("redeliver");
    wait_delivered(&app).await;
    assert_eq!(app.on_hand(mug).await, 10, "returned once");
    let m = app.orders_metrics().await;
    assert!(
        m.contains(r#"order_transitions_total{from="paid",to="refunded"} 1"#),
        "{m}"
    );
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn when_orders_cannot_take_the_payment_now_the_relay_finishes_the_job(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "5.00", 10).await;
    let alice = token(7, "user");
    let order = app.order(&alice, &[(mug, 1)]).await;

    // Hold the order row: Orders cannot mark it paid before the synchronous call times out.
    let mut blocker = app.orders_pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM orders WHERE id = $1 FOR UPDATE")
        .bind(order)
        .execute(&mut *blocker)
        .await
        .expect("lock");
    let (status, p) = app.pay(&alice, order, &card(GOOD_CARD), None).await;
    assert_eq!(
        (status, p["status"].as_str()),
        (StatusCode::CREATED, Some("succeeded")),
        "{p}"
    );
    assert_eq!(
        app.order_of(&alice, order).await["status"],
        "pending_payment"
    );
    assert_eq!(undelivered(&app).await, 1);
    blocker.rollback().await.expect("release");

    app.wait_for_order(&alice, order, "paid").await;
    wait_delivered(&app).await;
    assert_eq!(app.on_hand(mug).await, 9);
    let m = app.metrics().await;
    assert!(
        sample(
            &m,
            r#"outbox_relay_failures_total{kind="payment.succeeded"}"#
        ) >= 1.0,
        "{m}"
    );
    // The refund waits for the success to reach the order first; then it goes through.
    let (status, _) = app
        .send(
            Method::POST,
            &format!("/payments/{}/refund", p["id"]),
            None,
            &admin(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.wait_for_order(&alice, order, "refunded").await;
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn a_charge_interrupted_by_a_crash_is_settled_and_the_order_can_be_paid(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        Env {
            payments: &[("ECOM_PAYMENT_STUCK_SECONDS", "1")],
            ..Env::default()
        },
    )
    .await;
    let mug = app.product("Mug", "5.00", 10).await;
    let alice = token(7, "user");
    let order = app.order(&alice, &[(mug, 1)]).await;
    // What a process that died while charging leaves behind: a processing payment holding the
    // order, and its request's idempotency key still in flight.
    sqlx::query(
        "INSERT INTO payments (order_id, user_id, amount, currency, card_brand, card_last4)
         VALUES ($1, 7, 5.00, 'USD', 'visa', '4242')",
    )
    .bind(order)
    .execute(&app.pool)
    .await
    .expect("processing");
    let claimed = app
        .pay(&alice, order, &card(GOOD_CARD), Some("other"))
        .await;
    assert_error(&claimed, StatusCode::CONFLICT, "invalid_state");
    assert!(
        claimed.1["detail"]
            .as_str()
            .is_some_and(|d| d.contains("in progress"))
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: String = sqlx::query_scalar("SELECT status FROM payments ORDER BY id LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .expect("status");
        if status == "failed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the interrupted charge was not settled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, p) = app
        .pay(&alice, order, &card(GOOD_CARD), Some("again"))
        .await;
    assert_eq!(
        (status, p["status"].as_str()),
        (StatusCode::CREATED, Some("succeeded")),
        "{p}"
    );
    assert_eq!(app.order_of(&alice, order).await["status"], "paid");
}
