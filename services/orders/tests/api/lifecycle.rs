//! Privacy, cancellation, expiry, the cache, gRPC, and a Products outage.

use std::time::{Duration, Instant};

use ecom_proto::orders::v1::{
    GetOrderRequest, OrderStatus, order_service_client::OrderServiceClient,
};
use reqwest::{Method, StatusCode};
use sqlx::PgPool;
use tonic::Code;

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
    let app = spawn_app_with(pool, &[("ECOM_RESERVATION_TTL_SECONDS", "1")], &[]).await;
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
