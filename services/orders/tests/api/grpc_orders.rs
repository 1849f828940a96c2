//! The public order RPCs (CreateOrder, ListOrders, CancelOrder): the HTTP rules and error codes,
//! over a real gRPC socket, with a real Products service behind.

use ecom_proto::orders::v1::{
    CancelOrderRequest, CreateOrderRequest, ListOrdersRequest, OrderLine, OrderStatus,
    order_service_client::OrderServiceClient,
};
use ecom_shared::auth::with_bearer;
use reqwest::StatusCode;
use sqlx::PgPool;
use tonic::{Code, Request, transport::Channel};

use crate::helpers::*;

async fn client(app: &TestApp) -> OrderServiceClient<Channel> {
    OrderServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect")
}

fn checkout(items: &[(i64, i64)], key: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        items: items
            .iter()
            .map(|&(product_id, quantity)| OrderLine {
                product_id,
                quantity,
            })
            .collect(),
        idempotency_key: key.into(),
    }
}

fn as_<T>(msg: T, token: &str) -> Request<T> {
    with_bearer(Request::new(msg), token)
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn checkout_list_and_cancel_over_grpc(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "12.50", 10).await;
    let pen = app.product("Pen", "0.99", 10).await;
    let (alice, bob) = (token(7, "user"), token(8, "user"));
    let mut grpc = client(&app).await;

    let first = grpc
        .create_order(as_(checkout(&[(mug, 2), (pen, 3)], "k1"), &alice))
        .await
        .expect("checkout")
        .into_inner();
    assert!(first.created);
    let order = first.order.expect("order");
    assert_eq!(
        (
            order.user_id,
            order.status(),
            order.total.as_str(),
            order.currency.as_str()
        ),
        (7, OrderStatus::PendingPayment, "27.97", "USD")
    );
    assert_eq!(order.items.len(), 2);
    assert_eq!((app.stock(mug).await, app.stock(pen).await), (8, 7));
    // Created over gRPC, the same order over HTTP.
    let (status, body) = app.get(&format!("/orders/{}", order.id), &alice).await;
    assert_eq!(
        (status, body["total"].as_str()),
        (StatusCode::OK, Some("27.97"))
    );

    let replay = grpc
        .create_order(as_(checkout(&[(mug, 2), (pen, 3)], "k1"), &alice))
        .await
        .expect("replay")
        .into_inner();
    assert!(!replay.created, "the key returned the earlier order");
    assert_eq!(replay.order.map(|o| o.id), Some(order.id));
    assert_eq!(app.stock(mug).await, 8, "reserved once");
    // No key: every call is a new order.
    let unkeyed = grpc
        .create_order(as_(checkout(&[(mug, 1)], ""), &bob))
        .await
        .expect("no key")
        .into_inner();
    assert!(unkeyed.created);
    assert_eq!(app.order_count().await, 2);

    let mine = grpc
        .list_orders(as_(ListOrdersRequest::default(), &alice))
        .await
        .expect("list")
        .into_inner();
    assert_eq!((mine.total, mine.limit, mine.offset), (1, 20, 0));
    assert_eq!(mine.orders[0].id, order.id);
    let all = grpc
        .list_orders(as_(ListOrdersRequest::default(), &admin()))
        .await
        .expect("admin")
        .into_inner();
    assert_eq!(all.total, 2);
    let bobs = grpc
        .list_orders(as_(
            ListOrdersRequest {
                user_id: Some(8),
                limit: Some(5),
                ..Default::default()
            },
            &admin(),
        ))
        .await
        .expect("one user's")
        .into_inner();
    assert_eq!((bobs.total, bobs.limit), (1, 5));
    let ignored = grpc
        .list_orders(as_(
            ListOrdersRequest {
                user_id: Some(8),
                ..Default::default()
            },
            &alice,
        ))
        .await
        .expect("a user's filter is ignored")
        .into_inner();
    assert_eq!(
        ignored.orders.iter().map(|o| o.user_id).collect::<Vec<_>>(),
        vec![7]
    );

    let cancelled = grpc
        .cancel_order(as_(CancelOrderRequest { id: order.id }, &alice))
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(
        (app.stock(mug).await, app.stock(pen).await),
        (9, 10),
        "stock released (bob still holds one mug)"
    );
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn grpc_orders_need_a_user_token(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "1.00", 10).await;
    let mut grpc = client(&app).await;

    let create = grpc
        .create_order(Request::new(checkout(&[(mug, 1)], "")))
        .await
        .expect_err("anonymous");
    assert_eq!(
        (
            create.code(),
            ecom_shared::testing::grpc_error_code(&create)
        ),
        (Code::Unauthenticated, Some("invalid_token"))
    );
    let list = grpc
        .list_orders(Request::new(ListOrdersRequest::default()))
        .await
        .expect_err("anonymous");
    assert_eq!(list.code(), Code::Unauthenticated);
    let cancel = grpc
        .cancel_order(Request::new(CancelOrderRequest { id: 1 }))
        .await
        .expect_err("anonymous");
    assert_eq!(cancel.code(), Code::Unauthenticated);
    let service = grpc
        .create_order(as_(
            checkout(&[(mug, 1)], ""),
            &ecom_shared::testing::service_token("payments"),
        ))
        .await
        .expect_err("a service does not shop");
    assert_eq!(service.code(), Code::Unauthenticated);
    assert_eq!(app.order_count().await, 0);
    assert_eq!(app.stock(mug).await, 10);
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn grpc_checkout_errors_carry_the_http_codes(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mug = app.product("Mug", "1.00", 3).await;
    let (alice, bob) = (token(7, "user"), token(8, "user"));
    let mut grpc = client(&app).await;

    let short = grpc
        .create_order(as_(checkout(&[(mug, 4)], "k-short"), &alice))
        .await
        .expect_err("not enough stock");
    assert_eq!(
        (short.code(), ecom_shared::testing::grpc_error_code(&short)),
        (Code::FailedPrecondition, Some("insufficient_stock"))
    );
    assert_error(
        &app.order(&alice, &[(mug, 4)], None).await,
        StatusCode::CONFLICT,
        "insufficient_stock",
    );
    assert_eq!(app.stock(mug).await, 3, "nothing reserved");

    for (bad, why) in [
        (checkout(&[], ""), "no items"),
        (checkout(&[(mug, 0)], ""), "zero quantity"),
        (checkout(&[(-1, 1)], ""), "not a product id"),
        (checkout(&[(mug, 1)], "has space"), "bad key"),
    ] {
        let refused = grpc.create_order(as_(bad, &alice)).await.expect_err(why);
        assert_eq!(
            (
                refused.code(),
                ecom_shared::testing::grpc_error_code(&refused)
            ),
            (Code::InvalidArgument, Some("validation_error")),
            "{why}"
        );
    }

    let order = grpc
        .create_order(as_(checkout(&[(mug, 1)], "k1"), &alice))
        .await
        .expect("checkout")
        .into_inner()
        .order
        .expect("order");
    let conflict = grpc
        .create_order(as_(checkout(&[(mug, 2)], "k1"), &alice))
        .await
        .expect_err("same key, other body");
    assert_eq!(
        (
            conflict.code(),
            ecom_shared::testing::grpc_error_code(&conflict)
        ),
        (Code::AlreadyExists, Some("idempotency_conflict"))
    );
    assert_error(
        &app.order(&alice, &[(mug, 2)], Some("k1")).await,
        StatusCode::CONFLICT,
        "idempotency_conflict",
    );

    let list = grpc
        .list_orders(as_(
            ListOrdersRequest {
                limit: Some(0),
                ..Default::default()
            },
            &alice,
        ))
        .await
        .expect_err("limit 0");
    assert_eq!(
        ecom_shared::testing::grpc_error_code(&list),
        Some("validation_error")
    );
    let zero = grpc
        .cancel_order(as_(CancelOrderRequest { id: 0 }, &alice))
        .await
        .expect_err("not an id");
    assert_eq!(
        (zero.code(), ecom_shared::testing::grpc_error_code(&zero)),
        (Code::InvalidArgument, Some("validation_error"))
    );
    let not_yours = grpc
        .cancel_order(as_(CancelOrderRequest { id: order.id }, &bob))
        .await
        .expect_err("not bob's");
    assert_eq!(
        (
            not_yours.code(),
            ecom_shared::testing::grpc_error_code(&not_yours)
        ),
        (Code::NotFound, Some("not_found"))
    );
    grpc.cancel_order(as_(CancelOrderRequest { id: order.id }, &alice))
        .await
        .expect("cancel");
    let twice = grpc
        .cancel_order(as_(CancelOrderRequest { id: order.id }, &alice))
        .await
        .expect_err("already cancelled");
    assert_eq!(
        (twice.code(), ecom_shared::testing::grpc_error_code(&twice)),
        (Code::FailedPrecondition, Some("invalid_state"))
    );
    assert_eq!(app.stock(mug).await, 3);
}
