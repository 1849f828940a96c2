//! Checkout: prices, reservations, bad input, idempotency, and the race for the last units.

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn checkout_reserves_stock_and_snapshots_prices(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "9.99", 10).await;
    let pen = app.product("Pen", "1.10", 100).await;
    let alice = token(7, "user");
    let (status, order) = app
        .order(&alice, &[(mug, 2), (pen, 3), (mug, 1)], None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "pending_payment");
    assert_eq!(order["user_id"], 7);
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["total"], "33.27", "3 x 9.99 + 3 x 1.10, exact");
    assert_eq!(
        order["items"][0],
        json!({"product_id": mug, "name": "Mug", "unit_price": "9.99", "quantity": 3, "line_total": "29.97"})
    );
    assert_eq!((app.stock(mug).await, app.stock(pen).await), (7, 97));

    // A later price change does not touch the order.
    app.client
        .patch(format!("{}/products/{mug}", app.products_base))
        .bearer_auth(admin())
        .json(&json!({"price": "50.00"}))
        .send()
        .await
        .expect("patch");
    let id = order["id"].as_i64().expect("id");
    let (status, again) = app.get(&format!("/orders/{id}"), &alice).await;
    assert_eq!(
        (status, again["total"].as_str()),
        (StatusCode::OK, Some("33.27"))
    );
    let (_, page) = app.get("/orders", &alice).await;
    assert_eq!(
        (page["total"].as_i64(), page["items"][0]["id"].as_i64()),
        (Some(1), Some(id))
    );
    let m = app.metrics().await;
    assert!(m.contains("orders_created_total 1"), "{m}");
    // What the runtime dashboard shows: the pool and the dependencies seen at this scrape.
    for line in [
        r#"db_pool_max_connections{service="orders"} "#,
        r#"db_pool_connections{service="orders",state="idle"} "#,
        r#"dependency_up{service="orders",dependency="database"} 1"#,
        r#"dependency_up{service="orders",dependency="products"} 1"#,
        r#"idempotent_replays_total{service="orders",operation="create_order"} 0"#,
    ] {
        assert!(m.contains(line), "{line} missing:\n{m}");
    }
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn bad_orders_are_4xx_and_hold_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "9.99", 5).await;
    let alice = token(7, "user");
    for items in [
        json!([]),
        json!([{"product_id": mug, "quantity": 0}]),
        json!([{"product_id": mug, "quantity": -1}]),
        json!([{"product_id": mug, "quantity": 1_000_000}]),
        json!([{"product_id": mug, "quantity": 1.5}]),
        json!([{"product_id": "abc", "quantity": 1}]),
        json!("nope"),
        json!(null),
    ] {
        let got = app
            .send(
                reqwest::Method::POST,
                "/orders",
                Some(&json!({"items": items})),
                &alice,
                None,
            )
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    // A product that does not exist is a reference to nothing: 404, naming the line.
    let unknown = app.order(&alice, &[(mug, 1), (999_999, 1)], None).await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    assert!(
        unknown.1["errors"][0]["field"]
            .as_str()
            .is_some_and(|f| f.ends_with("product_id")),
        "{}",
        unknown.1
    );
    let short = app.order(&alice, &[(mug, 6)], None).await;
    assert_error(&short, StatusCode::CONFLICT, "insufficient_stock");
    let bad_key = app
        .order(&alice, &[(mug, 1)], Some("has spaces in it"))
        .await;
    assert_error(
        &bad_key,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    );
    let anonymous = parts(
        app.client
            .post(format!("{}/orders", app.base))
            .json(&json!({"items": [{"product_id": mug, "quantity": 1}]}))
            .send()
            .await
            .expect("req"),
    )
    .await;
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "invalid_token");
    assert_eq!(app.order_count().await, 0, "nothing written");
    assert_eq!(app.stock(mug).await, 5, "nothing held");
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn idempotency_keys_replay_conflict_and_are_scoped_per_user(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "2.50", 10).await;
    let (alice, bob) = (token(7, "user"), token(8, "user"));
    let (status, first) = app.order(&alice, &[(mug, 2)], Some("checkout-1")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, replay) = app.order(&alice, &[(mug, 2)], Some("checkout-1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        replay, first,
        "same key, same body: the same order, byte for byte"
    );
    let m = app.metrics().await;
    assert!(
        m.contains(r#"idempotent_replays_total{service="orders",operation="create_order"} 1"#),
        "{m}"
    );
    assert_error(
        &app.order(&alice, &[(mug, 3)], Some("checkout-1")).await,
        StatusCode::CONFLICT,
        "idempotency_conflict",
    );
    let (status, other) = app.order(&bob, &[(mug, 2)], Some("checkout-1")).await;
    assert_eq!(status, StatusCode::CREATED, "keys are per user");
    assert_ne!(other["id"], first["id"]);
    assert_eq!(
        app.stock(mug).await,
        6,
        "charged stock twice, not three times"
    );

    // A failed request does not burn its key: the retry can succeed.
    assert_error(
        &app.order(&alice, &[(mug, 7)], Some("checkout-2")).await,
        StatusCode::CONFLICT,
        "insufficient_stock",
    );
    let (status, retried) = app.order(&alice, &[(mug, 6)], Some("checkout-2")).await;
    assert_eq!(status, StatusCode::CREATED, "{retried}");
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn concurrent_duplicates_with_one_key_make_one_order(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "2.50", 100).await;
    let alice = token(7, "user");
    let items = [(mug, 1)];
    let attempts = (0..8).map(|_| app.order(&alice, &items, Some("double-click")));
    let results = futures::future::join_all(attempts).await;
    assert!(results.iter().all(|(s, _)| s.is_success()), "{results:?}");
    let ids: std::collections::HashSet<_> = results.iter().map(|(_, o)| o["id"].as_i64()).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(app.order_count().await, 1);
    assert_eq!(app.stock(mug).await, 99);
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn a_hundred_buyers_for_the_last_ten_units(pool: PgPool) {
    let app = spawn_app(pool).await;
    let last = app.product("Last ones", "5.00", 10).await;
    let buyers: Vec<String> = (100..200).map(|u| token(u, "user")).collect();
    let items = [(last, 1)];
    let attempts = buyers.iter().map(|t| app.order(t, &items, None));
    let results = futures::future::join_all(attempts).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == "insufficient_stock")
        .count();
    assert_eq!(
        (created, refused),
        (10, 90),
        "{:?}",
        results
            .iter()
            .find(|(s, _)| *s != StatusCode::CREATED && *s != StatusCode::CONFLICT)
    );
    assert_eq!(app.stock(last).await, 0);
    assert_eq!(app.order_count().await, 10);
    let total: Decimal = sqlx::query_scalar("SELECT sum(total) FROM orders")
        .fetch_one(&app.pool)
        .await
        .expect("sum");
    assert_eq!(total, Decimal::new(5000, 2));
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn a_failure_after_the_reservation_releases_it(pool: PgPool) {
    let app = spawn_app_with(pool, &[("ECOM_FAULT", "orders.after_reserve")], &[]).await;
    let mug = app.product("Mug", "1.00", 5).await;
    let alice = token(7, "user");
    let got = app.order(&alice, &[(mug, 5)], Some("will-fail")).await;
    assert_error(&got, StatusCode::INTERNAL_SERVER_ERROR, "internal_error");
    assert!(
        !got.1.to_string().contains("injected"),
        "no internal detail reaches the client: {}",
        got.1
    );
    assert_eq!(
        app.stock(mug).await,
        5,
        "the compensation released the reservation"
    );
    assert_eq!(app.order_count().await, 0);
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .expect("keys");
    assert_eq!(keys, 0, "the key is free for a retry");
}

/// The order is priced from its reservation: Products answers each line's name and price as
/// they were at the hold, so checkout does not ask for the catalogue. Unknown products are
/// still named line by line as the client's (merged, sorted) lines, before any short line, and
/// nothing is held.
#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn checkout_is_priced_from_the_reservation_and_names_unknown_lines(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "9.99", 2).await;
    let pen = app.product("Pen", "1.10", 100).await;
    let alice = token(7, "user");
    let calls = |m: &str, method: &str| {
        sample(
            m,
            &format!(
                r#"grpc_client_handled_total{{service="orders",grpc_method="ecom.products.v1.ProductService/{method}",grpc_code="Ok"}}"#
            ),
        )
    };
    let before = app.metrics().await;
    let (status, order) = app.order(&alice, &[(pen, 2), (mug, 1)], None).await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    assert_eq!(
        (order["total"].as_str(), order["items"][1]["name"].as_str()),
        (Some("12.19"), Some("Pen"))
    );
    let after = app.metrics().await;
    // Each scrape checks readiness with one `GetProducts` of its own; the checkout made none.
    assert_eq!(
        (
            calls(&after, "ReserveStock") - calls(&before, "ReserveStock"),
            calls(&after, "GetProducts") - calls(&before, "GetProducts"),
        ),
        (1.0, 1.0),
        "{after}"
    );

    let unknown = app
        .order(&alice, &[(888_888, 1), (mug, 5), (999_999, 2)], None)
        .await;
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        unknown.1["errors"],
        json!([
            {"field": "items[1].product_id", "message": "no such product"},
            {"field": "items[2].product_id", "message": "no such product"},
        ]),
        "{}",
        unknown.1
    );
    assert_eq!((app.stock(mug).await, app.stock(pen).await), (1, 98));
    assert_eq!(app.order_count().await, 1);
}
