//! Privacy, cancellation, expiry, the cache, gRPC, and a Products outage.

use std::time::{Duration, Instant};

use ecom_proto::orders::v1::{
    GetOrderRequest, MarkPaidRequest, MarkRefundedRequest, OrderStatus,
    order_service_client::OrderServiceClient,
};
use ecom_shared::{auth::with_bearer, testing::service_token};
use reqwest::{Method, StatusCode};
use sqlx::PgPool;
use tonic::Code;
use tonic::Request;

use crate::helpers::*;

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn orders_are_private_over_rest_and_grpc(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "1.00", 10).await;
    let (alice, bob) = (token(7, "user"), token(8, "user"));
    let (_, order) = app.order(&alice, &[(mug, 1)], None).await;
    let id = order["id"].as_i64().expect("id");
    app.order(&bob, &[(mug, 1)], None).await;

    assert_error(
        &app.get(&format!("/orders/{id}"), &bob).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.send(
            Method::POST,
            &format!("/orders/{id}/cancel"),
            None,
            &bob,
            None,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        app.get(&format!("/orders/{id}"), &admin()).await.0,
        StatusCode::OK
    );
    let (_, mine) = app.get("/orders", &bob).await;
    assert_eq!(mine["total"], 1, "a user lists only their own orders");
    let (_, all) = app.get("/orders", &admin()).await;
    assert_eq!(all["total"], 2);
    let (_, alices) = app.get("/orders?user_id=7", &admin()).await;
    assert_eq!(alices["total"], 1);
    let (_, ignored) = app.get("/orders?user_id=7", &bob).await;
    assert_eq!(
        ignored["items"][0]["user_id"], 8,
        "user_id is an admin filter only"
    );
    for path in [
        "/orders?limit=0",
        "/orders?limit=101",
        "/orders/abc",
        "/orders/0",
    ] {
        assert_error(
            &app.get(path, &bob).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        );
    }

    let mut grpc = OrderServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect");
    let as_ =
        |t: &str| ecom_shared::auth::with_bearer(tonic::Request::new(GetOrderRequest { id }), t);
    let got = grpc.get_order(as_(&alice)).await.expect("own").into_inner();
    assert_eq!(
        (got.user_id, got.status(), got.total.as_str()),
        (7, OrderStatus::PendingPayment, "1.00")
    );
    assert_eq!(
        grpc.get_order(as_(&bob))
            .await
            .expect_err("not yours")
            .code(),
        Code::NotFound
    );
    assert_eq!(
        grpc.get_order(tonic::Request::new(GetOrderRequest { id }))
            .await
            .expect_err("anonymous")
            .code(),
        Code::Unauthenticated
    );
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn cancelling_releases_the_stock_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "1.00", 10).await;
    let alice = token(7, "user");
    let (_, order) = app.order(&alice, &[(mug, 4)], None).await;
    let id = order["id"].as_i64().expect("id");
    // Warm the order cache, then check the cancel is visible through it.
    app.get(&format!("/orders/{id}"), &alice).await;
    assert_eq!(app.stock(mug).await, 6);
    let (status, cancelled) = app
        .send(
            Method::POST,
            &format!("/orders/{id}/cancel"),
            None,
            &alice,
            None,
        )
        .await;
    assert_eq!(
        (status, cancelled["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{cancelled}"
    );
    assert_eq!(
        app.get(&format!("/orders/{id}"), &alice).await.1["status"],
        "cancelled"
    );
    assert_eq!(app.stock(mug).await, 10);
    let again = app
        .send(
            Method::POST,
            &format!("/orders/{id}/cancel"),
            None,
            &alice,
            None,
        )
        .await;
    assert_error(&again, StatusCode::CONFLICT, "invalid_state");
    assert_eq!(app.stock(mug).await, 10);
    let m = app.metrics().await;
    assert!(
        m.contains(r#"order_transitions_total{from="pending_payment",to="cancelled"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"cache_requests_total{service="orders",cache="order",result="hit"}"#),
        "{m}"
    );
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn unpaid_orders_expire_and_their_stock_comes_back(pool: PgPool) {
    // Products' own expiry sweep is off: the Orders sweeper releases the stock, as itself.
    let app = spawn_app_with(
        pool,
        &[("ECOM_RESERVATION_TTL_SECONDS", "1")],
        &[("ECOM_RESERVATION_SWEEP_MS", "600000")],
    )
    .await;
    let mug = app.product("Mug", "1.00", 3).await;
    let alice = token(7, "user");
    let (_, order) = app.order(&alice, &[(mug, 3)], None).await;
    let id = order["id"].as_i64().expect("id");
    assert_eq!(app.stock(mug).await, 0);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = app.get(&format!("/orders/{id}"), &alice).await.1["status"].clone();
        if status == "cancelled" && app.stock(mug).await == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "order {status}, stock {}",
            app.stock(mug).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn with_products_down_checkout_is_503_and_readiness_says_so(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[("ECOM_PRODUCTS_GRPC_URL", "http://127.0.0.1:1")],
        &[],
    )
    .await;
    let got = app.order(&token(7, "user"), &[(1, 1)], None).await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let (status, ready) = app.get("/health/ready", "").await;
    assert_eq!(
        (status, ready["checks"]["products"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("down"))
    );
    assert_eq!(app.order_count().await, 0);
}

fn paid(order_id: i64, payment_id: i64, token: &str) -> Request<MarkPaidRequest> {
    with_bearer(
        Request::new(MarkPaidRequest {
            order_id,
            payment_id,
        }),
        token,
    )
}

fn refunded(order_id: i64, payment_id: i64, token: &str) -> Request<MarkRefundedRequest> {
    with_bearer(
        Request::new(MarkRefundedRequest {
            order_id,
            payment_id,
        }),
        token,
    )
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn payments_mark_orders_paid_and_refunded_exactly_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "2.50", 5).await;
    let alice = token(7, "user");
    let (_, order) = app.order(&alice, &[(mug, 2)], None).await;
    let id = order["id"].as_i64().expect("id");
    let mut grpc = OrderServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect");
    let payments = service_token("payments");

    // Only the Payments service may say an order is paid.
    for who in [alice.clone(), admin(), service_token("orders")] {
        let denied = grpc
            .mark_paid(paid(id, 77, &who))
            .await
            .expect_err("not payments");
        assert_eq!(denied.code(), Code::PermissionDenied);
    }
    assert_eq!(
        app.get(&format!("/orders/{id}"), &alice).await.1["status"],
        "pending_payment"
    );

    // Delivered twice (a relay retry): one effect.
    for _ in 0..2 {
        let order = grpc
            .mark_paid(paid(id, 77, &payments))
            .await
            .expect("mark paid")
            .into_inner();
        assert_eq!((order.status(), order.payment_id), (OrderStatus::Paid, 77));
    }
    let (_, body) = app.get(&format!("/orders/{id}"), &alice).await;
    assert_eq!(
        (body["status"].as_str(), body["payment_id"].as_i64()),
        (Some("paid"), Some(77))
    );
    assert_eq!(
        app.stock(mug).await,
        3,
        "the reservation is committed, once"
    );
    let m = app.metrics().await;
    assert!(
        m.contains(r#"order_transitions_total{from="pending_payment",to="paid"} 1"#),
        "{m}"
    );
    // A paid order cannot be cancelled, and another payment cannot pay it again.
    let got = app
        .send(
            Method::POST,
            &format!("/orders/{id}/cancel"),
            None,
            &alice,
            None,
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "invalid_state");
    let other = grpc
        .mark_paid(paid(id, 78, &payments))
        .await
        .expect_err("paid by 77");
    assert_eq!(
        other.code(),
        Code::Aborted,
        "the caller must refund payment 78"
    );
    let wrong = grpc
        .mark_refunded(refunded(id, 78, &payments))
        .await
        .expect_err("78 never paid it");
    assert_eq!(wrong.code(), Code::Aborted);

    // Refunded twice: the stock comes back once.
    for _ in 0..2 {
        let order = grpc
            .mark_refunded(refunded(id, 77, &payments))
            .await
            .expect("mark refunded")
            .into_inner();
        assert_eq!(order.status(), OrderStatus::Refunded);
    }
    assert_eq!(app.stock(mug).await, 5);
    assert_eq!(
        app.get(&format!("/orders/{id}"), &alice).await.1["status"],
        "refunded"
    );
    // A late duplicate of the payment changes nothing.
    let late = grpc
        .mark_paid(paid(id, 77, &payments))
        .await
        .expect("idempotent");
    assert_eq!(late.into_inner().status(), OrderStatus::Refunded);
    assert_eq!(app.stock(mug).await, 5);

    // A cancelled order refuses payment: the caller refunds.
    let (_, order) = app.order(&alice, &[(mug, 1)], None).await;
    let id2 = order["id"].as_i64().expect("id");
    app.send(
        Method::POST,
        &format!("/orders/{id2}/cancel"),
        None,
        &alice,
        None,
    )
    .await;
    let refused = grpc
        .mark_paid(paid(id2, 79, &payments))
        .await
        .expect_err("cancelled");
    assert_eq!(refused.code(), Code::Aborted);
    assert_eq!(app.stock(mug).await, 5);
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn a_payment_after_the_reservation_expired_cancels_the_order(pool: PgPool) {
    // The Orders sweeper is slow; Products expires the hold first.
    let app = spawn_app_with(
        pool,
        &[
            ("ECOM_RESERVATION_TTL_SECONDS", "1"),
            ("ECOM_ORDER_SWEEP_MS", "600000"),
        ],
        // The lifetime is Products' own setting (callers cannot choose it).
        &[("ECOM_RESERVATION_TTL_SECONDS", "1")],
    )
    .await;
    let mug = app.product("Mug", "1.00", 2).await;
    let alice = token(7, "user");
    let (_, order) = app.order(&alice, &[(mug, 2)], None).await;
    let id = order["id"].as_i64().expect("id");
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.stock(mug).await != 2 {
        assert!(Instant::now() < deadline, "the reservation did not expire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut grpc = OrderServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect");
    let late = grpc
        .mark_paid(paid(id, 5, &service_token("payments")))
        .await
        .expect_err("too late");
    assert_eq!(late.code(), Code::Aborted);
    assert_eq!(
        app.get(&format!("/orders/{id}"), &alice).await.1["status"],
        "cancelled"
    );
    assert_eq!(app.stock(mug).await, 2, "nothing was sold");
}

/// A new order is written into the cache as it is created, so its first reads (Payments'
/// `GetOrder` comes right after) load nothing, even when its absence was cached before; and a
/// payment is seen through the cache at once: a paid order is never read back as pending.
#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn a_new_order_is_served_from_the_cache_and_its_payment_seen_through_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "2.50", 5).await;
    let alice = token(7, "user");
    let fills = |m: &str| sample(m, r#"cache_fills_total{service="orders",cache="order"}"#);
    let (_, first) = app.order(&alice, &[(mug, 1)], None).await;
    let next = first["id"].as_i64().expect("id") + 1;
    // Asked for before it exists: "not found", and that answer is cached.
    assert_error(
        &app.get(&format!("/orders/{next}"), &alice).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let loads = fills(&app.metrics().await);
    assert!(loads >= 1.0, "the absence was loaded");

    let (status, created) = app.order(&alice, &[(mug, 2)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["id"].as_i64(), Some(next));
    let mut grpc = OrderServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect");
    let (status, read) = app.get(&format!("/orders/{next}"), &alice).await;
    assert_eq!((status, &read), (StatusCode::OK, &created));
    let over_grpc = grpc
        .get_order(with_bearer(
            Request::new(GetOrderRequest { id: next }),
            &alice,
        ))
        .await
        .expect("get order")
        .into_inner();
    assert_eq!(
        (over_grpc.status(), over_grpc.total.as_str()),
        (OrderStatus::PendingPayment, "5.00")
    );
    assert_eq!(
        fills(&app.metrics().await),
        loads,
        "served from the cache, not loaded"
    );

    grpc.mark_paid(paid(next, 77, &service_token("payments")))
        .await
        .expect("mark paid");
    let (_, read) = app.get(&format!("/orders/{next}"), &alice).await;
    assert_eq!(
        (read["status"].as_str(), read["payment_id"].as_i64()),
        (Some("paid"), Some(77))
    );
    let over_grpc = grpc
        .get_order(with_bearer(
            Request::new(GetOrderRequest { id: next }),
            &service_token("payments"),
        ))
        .await
        .expect("get order")
        .into_inner();
    assert_eq!(over_grpc.status(), OrderStatus::Paid);
}

/// A payment and a cancel of the same order at once: exactly one of them wins, and the stock
/// follows it (sold for a paid order, back on sale for a cancelled one); never both, never a
/// paid order whose stock was released.
#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn a_payment_and_a_cancel_at_once_end_in_one_state_with_its_stock(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "1.00", 100).await;
    let alice = token(7, "user");
    let payments = service_token("payments");
    let grpc = OrderServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect");
    let mut paid_orders = 0;
    for n in 0..10 {
        let (_, order) = app.order(&alice, &[(mug, 1)], None).await;
        let id = order["id"].as_i64().expect("id");
        let mut client = grpc.clone();
        let pay = client.mark_paid(paid(id, 1000 + n, &payments));
        let path = format!("/orders/{id}/cancel");
        let cancel = app.send(Method::POST, &path, None, &alice, None);
        let (paid_result, (cancel_status, _)) = tokio::join!(pay, cancel);
        let status = app.get(&format!("/orders/{id}"), &alice).await.1["status"].clone();
        match (paid_result, cancel_status) {
            (Ok(_), StatusCode::CONFLICT) => {
                assert_eq!(status, "paid");
                paid_orders += 1;
            }
            (Err(refused), StatusCode::OK) => {
                assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
                assert_eq!(status, "cancelled");
            }
            other => panic!("order {id}: {other:?}, now {status}"),
        }
    }
    // Every unit is either taken by a paid order or back on sale.
    assert_eq!(app.stock(mug).await, 100 - paid_orders);
}
