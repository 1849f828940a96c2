//! Stock reservations over gRPC: all or nothing, idempotent, race-free, swept when expired.

use std::time::{Duration, Instant};

use ecom_proto::products::v1::{
    GetProductsRequest, Line, Reservation, ReservationRef, ReservationStatus, ReserveStockRequest,
};
use sqlx::PgPool;
use tonic::{Code, Request};

use crate::helpers::*;

fn reserve_request(order_id: i64, lines: &[(i64, i64)], ttl_seconds: u32) -> ReserveStockRequest {
    ReserveStockRequest {
        order_id,
        lines: lines
            .iter()
            .map(|(p, q)| Line {
                product_id: *p,
                quantity: *q,
            })
            .collect(),
        ttl_seconds,
    }
}

/// A reservation as the Orders service makes it (its own service token).
fn reserve(order_id: i64, lines: &[(i64, i64)], ttl_seconds: u32) -> Request<ReserveStockRequest> {
    as_orders(reserve_request(order_id, lines, ttl_seconds))
}

/// A reference to an order's reservation, as the Orders service (every stock call is its alone).
fn order(order_id: i64) -> Request<ReservationRef> {
    as_orders(ReservationRef { order_id })
}

fn with_token<T>(msg: T, token: &str) -> Request<T> {
    ecom_shared::auth::with_bearer(Request::new(msg), token)
}

/// (status, expires_at) of an order's reservation, straight from the database.
async fn reservation_row(
    app: &TestApp,
    order_id: i64,
) -> Option<(String, chrono::DateTime<chrono::Utc>)> {
    sqlx::query_as("SELECT status, expires_at FROM reservations WHERE order_id = $1")
        .bind(order_id)
        .fetch_optional(&app.pool)
        .await
        .expect("reservation row")
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn get_products_answers_in_the_order_asked(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("A", "1.10", 1, None).await;
    let b = app.create("B", "2.20", 2, Some("c")).await;
    let mut grpc = app.grpc().await;
    let got = grpc
        .get_products(GetProductsRequest {
            ids: vec![b, 999, a],
        })
        .await
        .expect("get")
        .into_inner();
    let ids: Vec<i64> = got.products.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![b, a]);
    assert_eq!(
        (
            got.products[0].price.as_str(),
            got.products[0].stock,
            got.products[0].category.as_deref()
        ),
        ("2.20", 2, Some("c"))
    );
    let too_many = grpc
        .get_products(GetProductsRequest {
            ids: (1..=101).collect(),
        })
        .await
        .expect_err("limit");
    assert_eq!(too_many.code(), Code::InvalidArgument);
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn reservations_are_all_or_nothing_and_idempotent(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("A", "1.00", 5, None).await;
    let b = app.create("B", "1.00", 1, None).await;
    let mut grpc = app.grpc().await;

    let short = grpc
        .reserve_stock(reserve(10, &[(a, 2), (b, 2)], 0))
        .await
        .expect_err("b is short");
    assert_eq!(short.code(), Code::FailedPrecondition);
    assert_eq!(
        short
            .metadata()
            .get("ecom-error-code")
            .and_then(|v| v.to_str().ok()),
        Some("insufficient_stock")
    );
    assert_eq!(
        short
            .metadata()
            .get("ecom-insufficient-products")
            .and_then(|v| v.to_str().ok()),
        Some(b.to_string().as_str())
    );
    assert!(
        short.message().contains(&b.to_string()),
        "{}",
        short.message()
    );
    assert_eq!(
        (app.stock_of(a).await, app.stock_of(b).await),
        (5, 1),
        "nothing held"
    );

    let first = grpc
        .reserve_stock(reserve(11, &[(b, 1), (a, 2)], 0))
        .await
        .expect("reserve")
        .into_inner();
    assert_eq!(first.status(), ReservationStatus::Active);
    assert_eq!((app.stock_of(a).await, app.stock_of(b).await), (3, 0));
    let again = grpc
        .reserve_stock(reserve(11, &[(a, 2), (b, 1)], 0))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(again, first, "a retry returns the same reservation");
    assert_eq!(
        (app.stock_of(a).await, app.stock_of(b).await),
        (3, 0),
        "and holds nothing more"
    );
    let other = grpc
        .reserve_stock(reserve(11, &[(a, 1)], 0))
        .await
        .expect_err("other lines");
    assert_eq!(other.code(), Code::AlreadyExists);

    let unknown = grpc
        .reserve_stock(reserve(12, &[(a, 1), (424_242, 1)], 0))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    for bad in [
        reserve(13, &[], 0),
        reserve(13, &[(a, 0)], 0),
        reserve(13, &[(a, -1)], 0),
        reserve(0, &[(a, 1)], 0),
    ] {
        assert_eq!(
            grpc.reserve_stock(bad).await.expect_err("bad").code(),
            Code::InvalidArgument
        );
    }
    let anonymous = grpc
        .reserve_stock(Request::new(reserve_request(14, &[(a, 1)], 0)))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert_eq!(app.stock_of(a).await, 3);
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn release_commit_and_return_follow_the_state_machine(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("A", "1.00", 10, None).await;
    let mut grpc = app.grpc().await;

    grpc.reserve_stock(reserve(1, &[(a, 4)], 0))
        .await
        .expect("reserve");
    let committed = grpc
        .commit_reservation(order(1))
        .await
        .expect("commit")
        .into_inner();
    assert_eq!(committed.status(), ReservationStatus::Committed);
    // A user (or another service) cannot commit or return stock.
    for token in [token(7, "user"), admin(), service_token("payments")] {
        let req =
            ecom_shared::auth::with_bearer(Request::new(ReservationRef { order_id: 1 }), &token);
        assert_eq!(
            grpc.commit_reservation(req)
                .await
                .expect_err("not orders")
                .code(),
            Code::PermissionDenied
        );
        let req =
            ecom_shared::auth::with_bearer(Request::new(ReservationRef { order_id: 1 }), &token);
        assert_eq!(
            grpc.return_stock(req).await.expect_err("not orders").code(),
            Code::PermissionDenied
        );
    }
    assert_eq!(
        grpc.commit_reservation(order(1))
            .await
            .expect("idempotent")
            .into_inner()
            .status(),
        ReservationStatus::Committed
    );
    assert_eq!(app.stock_of(a).await, 6, "sold units stay gone");
    let on_hand: i64 = sqlx::query_scalar("SELECT on_hand FROM products WHERE id = $1")
        .bind(a)
        .fetch_one(&app.pool)
        .await
        .expect("on hand");
    assert_eq!(on_hand, 6);
    assert_eq!(
        grpc.release_reservation(order(1))
            .await
            .expect_err("committed")
            .code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        grpc.return_stock(order(1))
            .await
            .expect("return")
            .into_inner()
            .status(),
        ReservationStatus::Returned
    );
    assert_eq!(
        grpc.return_stock(order(1))
            .await
            .expect("idempotent")
            .into_inner()
            .status(),
        ReservationStatus::Returned
    );
    assert_eq!(
        app.stock_of(a).await,
        10,
        "a refund puts the units back once"
    );

    grpc.reserve_stock(reserve(2, &[(a, 3)], 0))
        .await
        .expect("reserve");
    grpc.release_reservation(order(2)).await.expect("release");
    grpc.release_reservation(order(2))
        .await
        .expect("idempotent");
    assert_eq!(app.stock_of(a).await, 10);
    let late = grpc
        .commit_reservation(order(2))
        .await
        .expect_err("released");
    assert_eq!(
        late.code(),
        Code::Aborted,
        "a distinct status: the caller must refund"
    );
    assert_eq!(
        late.metadata()
            .get("ecom-error-code")
            .and_then(|v| v.to_str().ok()),
        Some("reservation_expired")
    );
    assert_eq!(
        grpc.commit_reservation(order(99))
            .await
            .expect_err("none")
            .code(),
        Code::NotFound
    );

    let m = app.metrics().await;
    assert!(
        sample(&m, r#"stock_reservations_total{result="reserved"}"#) >= 2.0,
        "{m}"
    );
    assert!(
        sample(&m, r#"stock_reservations_total{result="commit_refused"}"#) >= 1.0,
        "{m}"
    );
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn a_hundred_buyers_for_ten_units_exactly_ten_win(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("Scarce", "1.00", 10, None).await;
    let grpc = app.grpc().await;
    let attempts = (1..=100).map(|order_id| {
        let mut client = grpc.clone();
        async move { client.reserve_stock(reserve(order_id, &[(a, 1)], 0)).await }
    });
    let results = futures::future::join_all(attempts).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    let short = results
        .iter()
        .filter(|r| {
            r.as_ref()
                .is_err_and(|e| e.code() == Code::FailedPrecondition)
        })
        .count();
    assert_eq!(
        (won, short),
        (10, 90),
        "{:?}",
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .find(|e| e.code() != Code::FailedPrecondition)
    );
    assert_eq!(app.stock_of(a).await, 0);
    let (on_hand, reserved): (i64, i64) =
        sqlx::query_as("SELECT on_hand, reserved FROM products WHERE id = $1")
            .bind(a)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!((on_hand, reserved), (10, 10));
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn opposite_line_orders_never_deadlock(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("A", "1.00", 1000, None).await;
    let b = app.create("B", "1.00", 1000, None).await;
    let grpc = app.grpc().await;
    let attempts = (1..=60).map(|order_id| {
        let mut client = grpc.clone();
        let lines = if order_id % 2 == 0 {
            vec![(a, 1), (b, 1)]
        } else {
            vec![(b, 1), (a, 1)]
        };
        async move { client.reserve_stock(reserve(order_id, &lines, 0)).await }
    });
    let results = futures::future::join_all(attempts).await;
    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!((app.stock_of(a).await, app.stock_of(b).await), (940, 940));
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn the_same_order_reserved_twice_at_once_holds_stock_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("A", "1.00", 10, None).await;
    let grpc = app.grpc().await;
    let attempts = (0..10).map(|_| {
        let mut client = grpc.clone();
        async move { client.reserve_stock(reserve(77, &[(a, 3)], 0)).await }
    });
    let results = futures::future::join_all(attempts).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(app.stock_of(a).await, 7);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn expired_reservations_are_swept_and_cannot_be_committed(pool: PgPool) {
    let app = spawn_app_with(pool, &[("ECOM_RESERVATION_TTL_SECONDS", "1")]).await;
    let a = app.create("A", "1.00", 5, None).await;
    let mut grpc = app.grpc().await;
    grpc.reserve_stock(reserve(1, &[(a, 5)], 0))
        .await
        .expect("reserve");
    assert_eq!(app.stock_of(a).await, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.stock_of(a).await != 5 {
        assert!(
            Instant::now() < deadline,
            "the sweeper did not release the expired reservation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let late = grpc
        .commit_reservation(order(1))
        .await
        .expect_err("expired");
    assert_eq!(late.code(), Code::Aborted);
    assert!(
        sample(
            &app.metrics().await,
            r#"stock_reservations_total{result="expired"}"#
        ) >= 1.0
    );
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn committing_after_expiry_but_before_the_sweep_refuses_and_frees_the_stock(pool: PgPool) {
    // A long sweep interval: only the commit itself can notice the expiry.
    let app = spawn_app_with(pool, &[("ECOM_RESERVATION_SWEEP_MS", "600000")]).await;
    let a = app.create("A", "1.00", 2, None).await;
    let mut grpc = app.grpc().await;
    grpc.reserve_stock(reserve(5, &[(a, 2)], 0))
        .await
        .expect("reserve");
    sqlx::query("UPDATE reservations SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("age it");
    assert_eq!(
        grpc.commit_reservation(order(5))
            .await
            .expect_err("expired")
            .code(),
        Code::Aborted
    );
    assert_eq!(app.stock_of(a).await, 2);
}

/// Every stock call is the Orders service's alone: a user's token (or an admin's, or another
/// service's) is PERMISSION_DENIED and changes nothing, so no user can hold every unit, release
/// someone else's reservation or claim a future order id; no token is UNAUTHENTICATED.
#[sqlx::test(migrator = "products::MIGRATOR")]
async fn stock_calls_take_only_the_orders_service_identity(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("A", "1.00", 5, None).await;
    let mut grpc = app.grpc().await;
    // Someone's order 1 holds two units; order 2 is still to come.
    grpc.reserve_stock(reserve(1, &[(a, 2)], 0))
        .await
        .expect("orders reserves");
    let held = reservation_row(&app, 1).await.expect("held");

    let intruders = [
        token(7, "user"),
        admin(),
        service_token("payments"),
        service_token("users"),
        service_token("gateway"),
    ];
    for intruder in &intruders {
        let refusals = [
            grpc.reserve_stock(with_token(reserve_request(2, &[(a, 3)], 86_400), intruder))
                .await
                .map(drop),
            grpc.release_reservation(with_token(ReservationRef { order_id: 1 }, intruder))
                .await
                .map(drop),
            grpc.commit_reservation(with_token(ReservationRef { order_id: 1 }, intruder))
                .await
                .map(drop),
            grpc.return_stock(with_token(ReservationRef { order_id: 1 }, intruder))
                .await
                .map(drop),
        ];
        for refused in refusals {
            let status = refused.expect_err("not the orders service");
            assert_eq!(
                (
                    status.code(),
                    ecom_shared::testing::grpc_error_code(&status)
                ),
                (Code::PermissionDenied, Some("forbidden")),
                "{status:?}"
            );
        }
    }
    for (token, why) in [(None, "no token"), (Some("not-a-jwt"), "a bad token")] {
        let request = |msg: ReservationRef| match token {
            Some(t) => with_token(msg, t),
            None => Request::new(msg),
        };
        let reserve_req = match token {
            Some(t) => with_token(reserve_request(2, &[(a, 3)], 0), t),
            None => Request::new(reserve_request(2, &[(a, 3)], 0)),
        };
        let refusals = [
            grpc.reserve_stock(reserve_req).await.map(drop),
            grpc.release_reservation(request(ReservationRef { order_id: 1 }))
                .await
                .map(drop),
            grpc.commit_reservation(request(ReservationRef { order_id: 1 }))
                .await
                .map(drop),
            grpc.return_stock(request(ReservationRef { order_id: 1 }))
                .await
                .map(drop),
        ];
        for refused in refusals {
            assert_eq!(
                refused.expect_err(why).code(),
                Code::Unauthenticated,
                "{why}"
            );
        }
    }

    assert_eq!(
        app.stock_of(a).await,
        3,
        "nothing more held, nothing given back"
    );
    assert_eq!(
        reservation_row(&app, 1).await,
        Some(held),
        "order 1's reservation is untouched"
    );
    assert_eq!(
        reservation_row(&app, 2).await,
        None,
        "order 2's id was not claimed"
    );

    // The Orders service itself: order 2 is still free to reserve, and order 1 to release.
    let second = grpc
        .reserve_stock(reserve(2, &[(a, 1)], 0))
        .await
        .expect("orders reserves order 2")
        .into_inner();
    assert_eq!(second.status(), ReservationStatus::Active);
    assert_eq!(
        grpc.release_reservation(order(1))
            .await
            .expect("orders releases")
            .into_inner()
            .status(),
        ReservationStatus::Released
    );
    assert_eq!(
        grpc.commit_reservation(order(2))
            .await
            .expect("orders commits")
            .into_inner()
            .status(),
        ReservationStatus::Committed
    );
    assert_eq!(app.stock_of(a).await, 4);
}

/// A reservation lives as long as Products is configured to (ECOM_RESERVATION_TTL_SECONDS),
/// whatever `ttl_seconds` the caller sends: a day asked for is a second given, and the sweeper
/// gives the stock back on that schedule.
#[sqlx::test(migrator = "products::MIGRATOR")]
async fn the_reservation_lifetime_is_the_configured_one_not_the_callers(pool: PgPool) {
    let app = spawn_app_with(pool, &[("ECOM_RESERVATION_TTL_SECONDS", "1")]).await;
    let a = app.create("A", "1.00", 5, None).await;
    let mut grpc = app.grpc().await;
    let before = chrono::Utc::now();
    for (order_id, ttl_seconds) in [(1, 86_400), (2, u32::MAX)] {
        let reservation = grpc
            .reserve_stock(reserve(order_id, &[(a, 2)], ttl_seconds))
            .await
            .expect("reserve (the requested lifetime is ignored, not refused)")
            .into_inner();
        let expires = reservation.expires_at.expect("expires_at").seconds;
        assert!(
            expires <= chrono::Utc::now().timestamp() + 2,
            "asked for {ttl_seconds} s, got a hold until {expires} (reserved at {before})"
        );
        let (_, stored) = reservation_row(&app, order_id).await.expect("row");
        assert!(
            stored <= chrono::Utc::now() + chrono::Duration::seconds(2),
            "stored expiry {stored}"
        );
    }
    assert_eq!(app.stock_of(a).await, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.stock_of(a).await != 5 {
        assert!(
            Instant::now() < deadline,
            "the configured one-second lifetime did not end the holds"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        reservation_row(&app, 1).await.map(|(s, _)| s).as_deref(),
        Some("expired")
    );

    // The default lifetime (900 s) holds for callers asking for a day too.
    let app = spawn_app(app.pool.clone()).await;
    let mut grpc = app.grpc().await;
    let reservation = grpc
        .reserve_stock(reserve(3, &[(a, 1)], 86_400))
        .await
        .expect("reserve")
        .into_inner();
    let lifetime =
        reservation.expires_at.expect("expires_at").seconds - chrono::Utc::now().timestamp();
    assert!((890..=905).contains(&lifetime), "lifetime {lifetime} s");
}

/// ReserveStock answers each line's name and price as they were at the hold, and a retry for
/// the same order answers the same ones even after the catalogue changed: Orders prices the
/// order from its reservation. Every later answer for the reservation repeats them.
#[sqlx::test(migrator = "products::MIGRATOR")]
async fn a_reservation_quotes_the_prices_of_its_hold_and_a_retry_the_same(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("Lamp", "1.10", 5, None).await;
    let b = app.create("Desk", "20.00", 5, None).await;
    let mut grpc = app.grpc().await;
    let quotes = |r: &Reservation| -> Vec<(i64, String, String, String)> {
        r.quotes
            .iter()
            .map(|q| {
                (
                    q.product_id,
                    q.name.clone(),
                    q.unit_price.clone(),
                    q.currency.clone(),
                )
            })
            .collect()
    };
    let quoted = |id: i64, name: &str, price: &str| {
        (id, name.to_owned(), price.to_owned(), "USD".to_owned())
    };
    let first = grpc
        .reserve_stock(reserve(21, &[(b, 1), (a, 2)], 0))
        .await
        .expect("reserve")
        .into_inner();
    assert_eq!(
        quotes(&first),
        [quoted(a, "Lamp", "1.10"), quoted(b, "Desk", "20.00")],
        "one per line, by product id like the lines"
    );

    let (status, body) = app
        .send(
            reqwest::Method::PATCH,
            &format!("/products/{a}"),
            Some(&serde_json::json!({"name": "Lamp II", "price": "9.99"})),
            Some(&admin()),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let again = grpc
        .reserve_stock(reserve(21, &[(a, 2), (b, 1)], 0))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again, first, "a retry answers the prices of the hold");
    let later = grpc
        .reserve_stock(reserve(22, &[(a, 1)], 0))
        .await
        .expect("another order")
        .into_inner();
    assert_eq!(quotes(&later), [quoted(a, "Lamp II", "9.99")]);

    let committed = grpc
        .commit_reservation(order(21))
        .await
        .expect("commit")
        .into_inner();
    assert_eq!(
        (committed.status(), quotes(&committed)),
        (ReservationStatus::Committed, quotes(&first))
    );
    let released = grpc
        .release_reservation(order(22))
        .await
        .expect("release")
        .into_inner();
    assert_eq!(quotes(&released), quotes(&later));
    assert_eq!((app.stock_of(a).await, app.stock_of(b).await), (3, 4));
}

/// Unknown products are refused before short ones, and both name the products; nothing is held.
#[sqlx::test(migrator = "products::MIGRATOR")]
async fn a_refusal_names_unknown_products_before_short_ones(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("A", "1.00", 1, None).await;
    let mut grpc = app.grpc().await;
    let unknown = grpc
        .reserve_stock(reserve(31, &[(a, 2), (424_242, 1), (434_343, 1)], 0))
        .await
        .expect_err("unknown and short");
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown.message().contains("424242") && unknown.message().contains("434343"),
        "{}",
        unknown.message()
    );
    assert_eq!(app.stock_of(a).await, 1, "nothing held");
    assert_eq!(
        reservation_row(&app, 31).await,
        None,
        "the order id is not claimed"
    );
    // The order id stays free: the same order can be reserved once it asks for what exists.
    grpc.reserve_stock(reserve(31, &[(a, 1)], 0))
        .await
        .expect("reserve");
    assert_eq!(app.stock_of(a).await, 0);
}

/// A retried ReserveStock answers its reservation without waiting for its products' row locks
/// (so it can never wait on them while a move of the same reservation, which locks the
/// reservation first, waits on it).
#[sqlx::test(migrator = "products::MIGRATOR")]
async fn a_retry_answers_without_waiting_for_its_products(pool: PgPool) {
    let app = spawn_app(pool).await;
    let a = app.create("A", "1.00", 5, None).await;
    let mut grpc = app.grpc().await;
    let first = grpc
        .reserve_stock(reserve(41, &[(a, 2)], 0))
        .await
        .expect("reserve")
        .into_inner();
    let mut holder = app.pool.begin().await.expect("begin");
    sqlx::query("SELECT id FROM products WHERE id = $1 FOR UPDATE")
        .bind(a)
        .execute(&mut *holder)
        .await
        .expect("lock the product");
    let again = tokio::time::timeout(
        Duration::from_secs(5),
        grpc.reserve_stock(reserve(41, &[(a, 2)], 0)),
    )
    .await
    .expect("answered while the product is locked")
    .expect("replay")
    .into_inner();
    assert_eq!(again, first);
    holder.rollback().await.expect("rollback");
}
