//! The Redis cache: every write is visible on the next read; misses are single-flight; Redis
//! down never breaks reads.

use ecom_proto::products::v1::{Line, ReserveStockRequest};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn cached_reads_show_every_write_at_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create("Kettle", "30.00", 10, Some("kitchen")).await;
    let product = format!("/products/{id}");
    let listing = "/products?category=kitchen";
    // Warm both caches, and check that the second reads are hits.
    for _ in 0..2 {
        app.get(&product).await;
        app.get(listing).await;
    }
    let m = app.metrics().await;
    assert!(
        sample(
            &m,
            r#"cache_requests_total{service="products",cache="product",result="hit"}"#
        ) >= 1.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            r#"cache_requests_total{service="products",cache="listing",result="hit"}"#
        ) >= 1.0,
        "{m}"
    );

    let (status, _) = app
        .send(
            Method::PATCH,
            &product,
            Some(&json!({"price": "27.50"})),
            Some(&admin()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.get(&product).await.1["price"], "27.50");
    assert_eq!(app.get(listing).await.1["items"][0]["price"], "27.50");

    let mut grpc = app.grpc().await;
    grpc.reserve_stock(as_orders(ReserveStockRequest {
        order_id: 1,
        lines: vec![Line {
            product_id: id,
            quantity: 3,
        }],
        ttl_seconds: 0,
    }))
    .await
    .expect("reserve");
    assert_eq!(
        app.get(&product).await.1["stock"],
        7,
        "the reservation shows on the cached product"
    );
    assert_eq!(
        app.get(listing).await.1["items"][0]["stock"],
        7,
        "and on the cached listing"
    );

    let (status, _) = app
        .send(Method::DELETE, &product, None, Some(&admin()))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "reserved units block deletion"
    );
    grpc.release_reservation(as_orders(ecom_proto::products::v1::ReservationRef {
        order_id: 1,
    }))
    .await
    .expect("release");
    assert_eq!(app.get(&product).await.1["stock"], 10);
    let (status, _) = app
        .send(Method::DELETE, &product, None, Some(&admin()))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&product).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get(listing).await.1["total"], 0);
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn concurrent_misses_on_one_key_make_one_database_load(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create("Popular", "5.00", 100, None).await;
    let path = format!("/products/{id}");
    let before = sample(
        &app.metrics().await,
        r#"cache_fills_total{service="products",cache="product"}"#,
    );
    let reads = (0..50).map(|_| app.get(&path));
    let results = futures::future::join_all(reads).await;
    assert!(
        results
            .iter()
            .all(|(s, p)| *s == StatusCode::OK && p["name"] == "Popular")
    );
    let after = sample(
        &app.metrics().await,
        r#"cache_fills_total{service="products",cache="product"}"#,
    );
    assert_eq!(
        after - before,
        1.0,
        "50 concurrent cold reads, one database load"
    );
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn unknown_products_are_cached_as_absent_and_appear_when_created(pool: PgPool) {
    let app = spawn_app(pool).await;
    assert_eq!(app.get("/products/1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/products/1").await.0, StatusCode::NOT_FOUND);
    let id = app.create("Late", "1.00", 1, None).await;
    assert_eq!(id, 1);
    assert_eq!(
        app.get("/products/1").await.0,
        StatusCode::OK,
        "creation invalidates the cached 404"
    );
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn with_redis_unreachable_reads_and_writes_still_work(pool: PgPool) {
    let app = spawn_app_with(pool, &[("ECOM_REDIS_URL", "redis://127.0.0.1:1")]).await;
    let id = app.create("Offline", "3.00", 2, None).await;
    for _ in 0..2 {
        let (status, p) = app.get(&format!("/products/{id}")).await;
        assert_eq!(
            (status, p["name"].as_str()),
            (StatusCode::OK, Some("Offline"))
        );
        let (status, page) = app.get("/products").await;
        assert_eq!((status, page["total"].as_i64()), (StatusCode::OK, Some(1)));
    }
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(
        (status, ready["checks"]["redis"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("down"))
    );
}

/// `ECOM_CACHE=off`: every read goes to the database. A change made behind the service's back
/// (straight in PostgreSQL, no invalidation) shows on the very next read, and no read is a
/// cache hit; the same change under the default setting stays hidden behind the cache, which
/// is what proves the switch changes anything.
#[sqlx::test(migrator = "products::MIGRATOR")]
async fn with_the_cache_off_every_read_is_from_the_database(pool: PgPool) {
    let behind_the_back = |pool: PgPool, id: i64, price: &'static str| async move {
        sqlx::query("UPDATE products SET price = $2::numeric WHERE id = $1")
            .bind(id)
            .bind(price)
            .execute(&pool)
            .await
            .expect("update");
    };
    let hits = |m: &str| {
        sample(
            m,
            r#"cache_requests_total{service="products",cache="product",result="hit"}"#,
        ) + sample(
            m,
            r#"cache_requests_total{service="products",cache="listing",result="hit"}"#,
        )
    };

    let off = spawn_app_with(pool.clone(), &[("ECOM_CACHE", "off")]).await;
    let id = off.create("Lamp", "10.00", 5, Some("lighting")).await;
    let product = format!("/products/{id}");
    let listing = "/products?category=lighting";
    for _ in 0..2 {
        assert_eq!(off.get(&product).await.1["price"], "10.00");
        assert_eq!(off.get(listing).await.1["items"][0]["price"], "10.00");
    }
    behind_the_back(pool.clone(), id, "12.00").await;
    assert_eq!(off.get(&product).await.1["price"], "12.00");
    assert_eq!(off.get(listing).await.1["items"][0]["price"], "12.00");
    let m = off.metrics().await;
    assert_eq!(hits(&m), 0.0, "{m}");

    // The same with the cache on (its own Redis prefix, so nothing is shared with the above).
    let on = spawn_app(pool.clone()).await;
    for _ in 0..2 {
        assert_eq!(on.get(&product).await.1["price"], "12.00");
        assert_eq!(on.get(listing).await.1["items"][0]["price"], "12.00");
    }
    behind_the_back(pool, id, "14.00").await;
    assert_eq!(
        on.get(&product).await.1["price"],
        "12.00",
        "cached: a change that bypassed the service is not seen"
    );
    assert_eq!(on.get(listing).await.1["items"][0]["price"], "12.00");
    assert!(hits(&on.metrics().await) >= 2.0);
    assert_eq!(
        off.get(&product).await.1["price"],
        "14.00",
        "uncached: it is"
    );
}
