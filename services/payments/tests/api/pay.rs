//! Paying orders: the contract, the test-card matrix, bad input, idempotency and races.

use ecom_proto::payments::v1::{
    GetPaymentRequest, ListPaymentsRequest, PaymentStatus,
    payment_service_client::PaymentServiceClient,
};
use ecom_shared::auth::with_bearer;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use tonic::Request;

use crate::helpers::*;

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn a_good_card_pays_the_order_total_and_the_order_becomes_paid(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "12.50", 10).await;
    let pen = app.product("Pen", "0.99", 10).await;
    let (alice, bob) = (token(7, "user"), token(8, "user"));
    let order = app.order(&alice, &[(mug, 2), (pen, 3)]).await;

    let (status, p) = app
        .pay(&alice, order, &card("4242 4242 4242 4242"), Some("k1"))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{p}");
    assert_eq!(p["order_id"], order);
    assert_eq!(p["amount"], "27.97", "the order's own total, exact");
    assert_eq!(p["currency"], "USD");
    assert_eq!(p["status"], "succeeded");
    assert!(p["failure_code"].is_null());
    assert_eq!(p["card"], json!({"brand": "visa", "last4": "4242"}));
    assert!(p["created_at"].is_string() && p["id"].as_i64().is_some());
    assert!(
        !p.to_string().contains("4242424242424242") && !p.to_string().contains("\"123\""),
        "no card number or CVC in a response"
    );
    // The client hears back after the order is paid and its stock committed.
    let o = app.order_of(&alice, order).await;
    assert_eq!(o["status"], "paid", "{o}");
    assert_eq!(o["payment_id"], p["id"]);
    assert_eq!((app.on_hand(mug).await, app.stock(mug).await), (8, 8));

    // Nothing of the card but brand and last four is stored.
    let stored: String = sqlx::query_scalar("SELECT row_to_json(p)::text FROM payments p")
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert!(
        !stored.contains("424242424242") && !stored.contains("123\""),
        "{stored}"
    );

    let id = p["id"].as_i64().expect("id");
    assert_eq!(app.get(&format!("/payments/{id}"), &alice).await.1, p);
    assert_error(
        &app.get(&format!("/payments/{id}"), &bob).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        app.get(&format!("/payments/{id}"), &admin()).await.0,
        StatusCode::OK
    );
    let (status, list) = app
        .get(&format!("/payments?order_id={order}"), &alice)
        .await;
    assert_eq!((status, list["total"].as_i64()), (StatusCode::OK, Some(1)));
    assert_eq!(list["items"][0]["id"], id);
    assert_eq!(
        app.get(&format!("/payments?order_id={order}"), &bob)
            .await
            .1["total"],
        0
    );
    assert_eq!(app.get("/payments", &admin()).await.1["total"], 1);

    // Over gRPC: the same privacy.
    let mut grpc = PaymentServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect");
    let got = grpc
        .get_payment(with_bearer(Request::new(GetPaymentRequest { id }), &alice))
        .await
        .expect("own payment")
        .into_inner();
    assert_eq!(
        (got.amount.as_str(), got.status()),
        ("27.97", PaymentStatus::Succeeded)
    );
    let hidden = grpc
        .get_payment(with_bearer(Request::new(GetPaymentRequest { id }), &bob))
        .await
        .expect_err("not bob's");
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let batch = |who: &str| {
        with_bearer(
            Request::new(ListPaymentsRequest {
                order_ids: vec![order, 999],
            }),
            who,
        )
    };
    assert_eq!(
        grpc.list_payments(batch(&alice))
            .await
            .expect("list")
            .into_inner()
            .payments
            .len(),
        1
    );
    assert!(
        grpc.list_payments(batch(&bob))
            .await
            .expect("list")
            .into_inner()
            .payments
            .is_empty()
    );

    // Paid already: 409, nothing charged.
    let again = app
        .pay(&alice, order, &card("4242424242424242"), Some("k2"))
        .await;
    assert_error(&again, StatusCode::CONFLICT, "invalid_state");
    assert_eq!(app.payment_count().await, 1);
    let m = app.metrics().await;
    assert_eq!(
        sample(&m, r#"payments_total{status="succeeded"}"#),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            r#"payments_amount_total{status="succeeded",currency="USD"}"#
        ),
        27.97,
        "revenue: {m}"
    );
    assert!(m.contains("outbox_pending"), "{m}");
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn the_test_cards_fail_as_stripe_does_and_the_order_stays_payable(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "5.00", 10).await;
    let alice = token(7, "user");
    let order = app.order(&alice, &[(mug, 1)]).await;
    for (i, (number, code)) in [
        ("4000000000000002", "card_declined"),
        ("4000000000009995", "insufficient_funds"),
        ("4000000000009987", "lost_card"),
        ("4000000000009979", "stolen_card"),
        ("4000000000000069", "expired_card"),
        ("4000000000000127", "incorrect_cvc"),
        ("4000000000000119", "processing_error"),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, p) = app
            .pay(&alice, order, &card(number), Some(&format!("try-{i}")))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{number}: {p}");
        assert_eq!(
            (p["status"].as_str(), p["failure_code"].as_str()),
            (Some("failed"), Some(code))
        );
        assert_eq!(
            app.order_of(&alice, order).await["status"],
            "pending_payment"
        );
    }
    // A failed payment replays as it was under its key.
    let (status, replay) = app
        .pay(&alice, order, &card("4000000000000119"), Some("try-6"))
        .await;
    assert_eq!(
        (status, replay["failure_code"].as_str()),
        (StatusCode::OK, Some("processing_error"))
    );
    // Another key and a good card: paid.
    for (number, brand) in [("5555555555554444", "mastercard")] {
        let (status, p) = app.pay(&alice, order, &card(number), Some("good")).await;
        assert_eq!(
            (status, p["status"].as_str()),
            (StatusCode::CREATED, Some("succeeded")),
            "{p}"
        );
        assert_eq!(p["card"]["brand"], brand);
    }
    assert_eq!(app.order_of(&alice, order).await["status"], "paid");
    let m = app.metrics().await;
    assert_eq!(sample(&m, r#"payments_total{status="failed"}"#), 7.0, "{m}");
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn bad_input_is_4xx_and_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "5.00", 10).await;
    let (alice, bob) = (token(7, "user"), token(8, "user"));
    let order = app.order(&alice, &[(mug, 1)]).await;

    let exp =
        |m: i64, y: i64| json!({"number": GOOD_CARD, "exp_month": m, "exp_year": y, "cvc": "123"});
    for bad_card in [
        card("4242424242424241"),    // Luhn
        card("4242"),                // too short
        card("4242-4242-4242-424x"), // not digits
        exp(12, 2020),               // expired
        exp(13, 2040),               // no such month
        json!({"number": GOOD_CARD, "exp_month": 1, "exp_year": 2040, "cvc": "12"}),
        json!({"number": GOOD_CARD, "exp_month": 1, "exp_year": 2040, "cvc": "1234"}),
        json!({"number": "378282246310005", "exp_month": 1, "exp_year": 2040, "cvc": "123"}),
    ] {
        let got = app.pay(&alice, order, &bad_card, Some("bad")).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_card");
        assert!(
            got.1["errors"][0]["field"]
                .as_str()
                .is_some_and(|f| f.starts_with("card.")),
            "{}",
            got.1
        );
        assert!(
            !got.1.to_string().contains("424242424242"),
            "no number echoed"
        );
    }
    for bad_body in [
        json!({}),
        json!({"order_id": order}),
        json!({"order_id": -1, "card": card(GOOD_CARD)}),
        json!({"order_id": 1.5, "card": card(GOOD_CARD)}),
        json!({"order_id": order, "card": {"number": 4242424242424242_i64, "exp_month": 12, "exp_year": 2040, "cvc": "123"}}),
        json!({"order_id": order, "card": {"number": GOOD_CARD, "exp_month": "12", "exp_year": 2040, "cvc": "123"}}),
        json!([1, 2]),
    ] {
        let got = app
            .send(Method::POST, "/payments", Some(&bad_body), &alice, None)
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    let raw = app
        .client
        .post(format!("{}/payments", app.base))
        .bearer_auth(&alice)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert!(parts(raw).await.0.is_client_error());
    let bad_key = app
        .pay(&alice, order, &card(GOOD_CARD), Some(&"k".repeat(256)))
        .await;
    assert_error(
        &bad_key,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    );
    // Someone else's order and a missing one look the same.
    assert_error(
        &app.pay(&bob, order, &card(GOOD_CARD), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.pay(&admin(), order, &card(GOOD_CARD), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.pay(&alice, 999_999, &card(GOOD_CARD), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let anonymous = app
        .client
        .post(format!("{}/payments", app.base))
        .json(&json!({"order_id": order, "card": card(GOOD_CARD)}))
        .send()
        .await
        .expect("send");
    assert_error(
        &parts(anonymous).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    assert_error(
        &app.get("/payments?limit=0", &alice).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    );
    assert_error(
        &app.get("/payments/0", &alice).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    );
    assert_error(
        &app.get("/payments/abc", &alice).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    );

    // A cancelled order cannot be paid.
    app.cancel(&alice, order).await;
    assert_error(
        &app.pay(&alice, order, &card(GOOD_CARD), None).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );

    assert_eq!(app.payment_count().await, 0, "nothing was written");
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .expect("keys");
    assert_eq!(keys, 0);
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn idempotency_keys_replay_conflict_and_are_scoped_per_user(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "5.00", 10).await;
    let (alice, bob) = (token(7, "user"), token(8, "user"));
    let order = app.order(&alice, &[(mug, 1)]).await;
    let (status, first) = app.pay(&alice, order, &card(GOOD_CARD), Some("same")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, replay) = app.pay(&alice, order, &card(GOOD_CARD), Some("same")).await;
    assert_eq!(
        (status, &replay),
        (StatusCode::OK, &first),
        "the same payment"
    );
    let other = app
        .pay(&alice, order, &card("5555555555554444"), Some("same"))
        .await;
    assert_error(&other, StatusCode::CONFLICT, "idempotency_conflict");
    // Bob's key of the same name is his own (and the order is not his).
    assert_error(
        &app.pay(&bob, order, &card(GOOD_CARD), Some("same")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(app.payment_count().await, 1);
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn concurrent_requests_charge_an_order_once(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        Env {
            payments: &[("ECOM_PAYMENTS_LATENCY_MS", "100")],
            ..Env::default()
        },
    )
    .await;
    let mug = app.product("Mug", "5.00", 10).await;
    let alice = token(7, "user");

    // 8 concurrent requests with one key: one charge; the others get it or are told to wait.
    let order = app.order(&alice, &[(mug, 1)]).await;
    let results = futures::future::join_all((0..8).map(|_| {
        let good = card(GOOD_CARD);
        let (app, alice) = (&app, &alice);
        async move { app.pay(alice, order, &good, Some("one-key")).await }
    }))
    .await;
    let ids: std::collections::HashSet<i64> = results
        .iter()
        .filter(|(s, _)| s.is_success())
        .map(|(_, p)| p["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    for (status, body) in &results {
        assert!(
            status.is_success()
                || (*status == StatusCode::CONFLICT && body["code"] == "idempotency_key_in_use"),
            "{status} {body}"
        );
    }
    assert_eq!(app.payment_count().await, 1);

    // Two different keys paying one order at once: one succeeded payment.
    let order = app.order(&alice, &[(mug, 1)]).await;
    let results = futures::future::join_all((0..4).map(|i| {
        let key = format!("key-{i}");
        let alice = alice.clone();
        let app = &app;
        async move { app.pay(&alice, order, &card(GOOD_CARD), Some(&key)).await }
    }))
    .await;
    let succeeded = results
        .iter()
        .filter(|(s, p)| s.is_success() && p["status"] == "succeeded")
        .count();
    assert_eq!(succeeded, 1, "{results:?}");
    for (status, body) in &results {
        assert!(
            status.is_success() || body["code"] == "invalid_state",
            "{status} {body}"
        );
    }
    let charged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payments WHERE order_id = $1 AND status = 'succeeded'",
    )
    .bind(order)
    .fetch_one(&app.pool)
    .await
    .expect("count");
    assert_eq!(charged, 1);
    assert_eq!(app.order_of(&alice, order).await["status"], "paid");
    assert_eq!(app.on_hand(mug).await, 8, "two orders, each committed once");
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn docs_health_and_metrics_are_served(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (status, ready) = app.get("/health/ready", "").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["orders"], "ok");
    let (status, openapi) = app.get("/openapi.json", "").await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/payments", "/payments/{id}", "/payments/{id}/refund"] {
        assert!(openapi["paths"][path].is_object(), "{path} documented");
    }
    let docs = app
        .client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(app.metrics().await.contains("outbox_pending"));
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn with_orders_down_paying_is_503_and_charges_nothing(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        Env {
            payments: &[("ECOM_ORDERS_GRPC_URL", "http://127.0.0.1:1")],
            ..Env::default()
        },
    )
    .await;
    let got = app
        .pay(&token(7, "user"), 1, &card(GOOD_CARD), Some("k"))
        .await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable");
    let (status, ready) = app.get("/health/ready", "").await;
    assert_eq!(
        (status, ready["checks"]["orders"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("down"))
    );
    assert_eq!(app.payment_count().await, 0);
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
        .fetch_one(&app.pool)
        .await
        .expect("keys");
    assert_eq!(keys, 0, "the key is free for the retry");
}
