//! The Pay RPC: the HTTP rules and error codes over a real gRPC socket, with real Products and
//! Orders services behind.

use ecom_proto::payments::v1::{
    Card, PayRequest, PaymentStatus, payment_service_client::PaymentServiceClient,
};
use ecom_shared::auth::with_bearer;
use reqwest::StatusCode;
use sqlx::PgPool;
use tonic::{Code, Request, transport::Channel};

use crate::helpers::*;

async fn client(app: &TestApp) -> PaymentServiceClient<Channel> {
    PaymentServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect")
}

fn pay(order_id: i64, number: &str, key: &str) -> PayRequest {
    PayRequest {
        order_id,
        card: Some(Card {
            number: number.into(),
            exp_month: 12,
            exp_year: 2040,
            cvc: "123".into(),
        }),
        idempotency_key: key.into(),
    }
}

fn as_<T>(msg: T, token: &str) -> Request<T> {
    with_bearer(Request::new(msg), token)
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn paying_over_grpc_charges_the_order_total_once_per_key(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "12.50", 10).await;
    let pen = app.product("Pen", "0.99", 10).await;
    let alice = token(7, "user");
    let order = app.order(&alice, &[(mug, 2), (pen, 3)]).await;
    let mut grpc = client(&app).await;

    let paid = grpc
        .pay(as_(pay(order, "4242 4242 4242 4242", "k1"), &alice))
        .await
        .expect("pay")
        .into_inner();
    assert!(paid.created);
    let p = paid.payment.expect("payment");
    assert_eq!(
        (
            p.order_id,
            p.user_id,
            p.amount.as_str(),
            p.currency.as_str(),
            p.status(),
            p.failure_code.as_str(),
            p.card_brand.as_str(),
            p.card_last4.as_str()
        ),
        (
            order,
            7,
            "27.97",
            "USD",
            PaymentStatus::Succeeded,
            "",
            "visa",
            "4242"
        )
    );
    // The client hears back after the order is paid and its stock committed, as over HTTP.
    let o = app.order_of(&alice, order).await;
    assert_eq!(
        (o["status"].as_str(), o["payment_id"].as_i64()),
        (Some("paid"), Some(p.id)),
        "{o}"
    );
    assert_eq!(app.on_hand(mug).await, 8);

    let replay = grpc
        .pay(as_(pay(order, "4242424242424242", "k1"), &alice))
        .await
        .expect("replay")
        .into_inner();
    assert!(!replay.created, "the key returned the earlier payment");
    assert_eq!(replay.payment.map(|r| r.id), Some(p.id));
    assert_eq!(app.payment_count().await, 1, "charged once");
    // Created over gRPC, the same payment over HTTP.
    let (status, body) = app.get(&format!("/payments/{}", p.id), &alice).await;
    assert_eq!(
        (status, body["amount"].as_str()),
        (StatusCode::OK, Some("27.97"))
    );

    // Paid already: invalid_state, nothing charged.
    let again = grpc
        .pay(as_(pay(order, "4242424242424242", "k2"), &alice))
        .await
        .expect_err("already paid");
    assert_eq!(
        (again.code(), ecom_shared::testing::grpc_error_code(&again)),
        (Code::FailedPrecondition, Some("invalid_state"))
    );
    assert_eq!(app.payment_count().await, 1);
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn a_declined_card_over_grpc_is_a_failed_payment_not_an_error(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "5.00", 10).await;
    let alice = token(7, "user");
    let order = app.order(&alice, &[(mug, 1)]).await;
    let mut grpc = client(&app).await;

    let declined = grpc
        .pay(as_(pay(order, "4000000000000002", ""), &alice))
        .await
        .expect("a declined card is an answer")
        .into_inner();
    assert!(declined.created);
    let p = declined.payment.expect("payment");
    assert_eq!(
        (p.status(), p.failure_code.as_str(), p.amount.as_str()),
        (PaymentStatus::Failed, "card_declined", "5.00")
    );
    assert_eq!(
        app.order_of(&alice, order).await["status"],
        "pending_payment"
    );
    // No key: another attempt is another payment.
    let retried = grpc
        .pay(as_(pay(order, "4242424242424242", ""), &alice))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(
        (retried.created, retried.payment.map(|r| r.status())),
        (true, Some(PaymentStatus::Succeeded))
    );
    assert_eq!(app.payment_count().await, 2);
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn grpc_pay_errors_carry_the_http_codes(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "5.00", 10).await;
    let (alice, bob) = (token(7, "user"), token(8, "user"));
    let order = app.order(&alice, &[(mug, 1)]).await;
    let mut grpc = client(&app).await;

    let anonymous = grpc
        .pay(Request::new(pay(order, GOOD_CARD, "")))
        .await
        .expect_err("no token");
    assert_eq!(
        (
            anonymous.code(),
            ecom_shared::testing::grpc_error_code(&anonymous)
        ),
        (Code::Unauthenticated, Some("invalid_token"))
    );

    let luhn = grpc
        .pay(as_(pay(order, "4242424242424241", "bad"), &alice))
        .await
        .expect_err("fails the Luhn check");
    assert_eq!(
        (luhn.code(), ecom_shared::testing::grpc_error_code(&luhn)),
        (Code::InvalidArgument, Some("invalid_card"))
    );
    assert!(!luhn.message().contains("424242424242"), "no number echoed");
    assert_error(
        &app.pay(&alice, order, &card("4242424242424241"), Some("bad"))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_card",
    );

    for (bad, why) in [
        (
            PayRequest {
                card: None,
                ..pay(order, GOOD_CARD, "")
            },
            "no card",
        ),
        (pay(0, GOOD_CARD, ""), "not an order id"),
        (pay(order, GOOD_CARD, "has space"), "bad key"),
    ] {
        let refused = grpc.pay(as_(bad, &alice)).await.expect_err(why);
        assert_eq!(
            (
                refused.code(),
                ecom_shared::testing::grpc_error_code(&refused)
            ),
            (Code::InvalidArgument, Some("validation_error")),
            "{why}"
        );
    }

    let not_yours = grpc
        .pay(as_(pay(order, GOOD_CARD, ""), &bob))
        .await
        .expect_err("not bob's order");
    assert_eq!(
        (
            not_yours.code(),
            ecom_shared::testing::grpc_error_code(&not_yours)
        ),
        (Code::NotFound, Some("not_found"))
    );
    assert_eq!(app.payment_count().await, 0, "nothing charged");

    grpc.pay(as_(pay(order, "4000000000000002", "k1"), &alice))
        .await
        .expect("declined");
    let conflict = grpc
        .pay(as_(pay(order, GOOD_CARD, "k1"), &alice))
        .await
        .expect_err("same key, other card");
    assert_eq!(
        (
            conflict.code(),
            ecom_shared::testing::grpc_error_code(&conflict)
        ),
        (Code::AlreadyExists, Some("idempotency_conflict"))
    );
    assert_eq!(app.payment_count().await, 1);
}
