//! The public catalogue RPCs (ListProducts, CreateProduct, UpdateProduct, DeleteProduct): the
//! HTTP rules and error codes, over a real gRPC socket.

use ecom_proto::products::v1::{
    CreateProductRequest, DeleteProductRequest, Line, ListProductsRequest, ReserveStockRequest,
    UpdateProductRequest,
};
use ecom_shared::auth::with_bearer;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use tonic::{Code, Request};

use crate::helpers::*;

fn as_admin<T>(msg: T) -> Request<T> {
    with_bearer(Request::new(msg), &admin())
}

fn new_product(name: &str, price: &str, category: Option<&str>) -> CreateProductRequest {
    CreateProductRequest {
        name: name.into(),
        description: format!("About {name}"),
        price: price.into(),
        stock: 5,
        category: category.map(Into::into),
    }
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn admins_create_list_update_and_delete_products_over_grpc(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut grpc = app.grpc().await;

    let lamp = grpc
        .create_product(as_admin(new_product("Desk Lamp", "19.99", Some("home"))))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        (
            lamp.name.as_str(),
            lamp.price.as_str(),
            lamp.currency.as_str(),
            lamp.stock,
            lamp.category.as_deref()
        ),
        ("Desk Lamp", "19.99", "USD", 5, Some("home"))
    );
    let mug = grpc
        .create_product(as_admin(new_product("Mug", "4.50", None)))
        .await
        .expect("create without category")
        .into_inner();
    assert_eq!(mug.category, None);
    // Created over gRPC, visible over HTTP.
    let (status, body) = app.get(&format!("/products/{}", lamp.id)).await;
    assert_eq!(
        (status, body["price"].as_str()),
        (StatusCode::OK, Some("19.99"))
    );

    // Unset fields: the HTTP defaults.
    let page = grpc
        .list_products(ListProductsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!((page.total, page.limit, page.offset), (2, 20, 0));
    assert_eq!(
        page.products.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![lamp.id, mug.id]
    );
    let filtered = grpc
        .list_products(ListProductsRequest {
            limit: Some(1),
            sort: Some("-price".into()),
            max_price: Some("10".into()),
            ..Default::default()
        })
        .await
        .expect("filtered")
        .into_inner();
    assert_eq!((filtered.total, filtered.limit), (1, 1));
    assert_eq!(filtered.products[0].id, mug.id);
    let home = grpc
        .list_products(ListProductsRequest {
            category: Some("home".into()),
            ..Default::default()
        })
        .await
        .expect("by category")
        .into_inner();
    assert_eq!(
        home.products.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![lamp.id]
    );

    // Unset fields stay as they are.
    let renamed = grpc
        .update_product(as_admin(UpdateProductRequest {
            id: lamp.id,
            name: Some("Reading Lamp".into()),
            stock: Some(9),
            ..Default::default()
        }))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(
        (
            renamed.name.as_str(),
            renamed.price.as_str(),
            renamed.stock,
            renamed.category.as_deref(),
            renamed.description.as_str()
        ),
        ("Reading Lamp", "19.99", 9, Some("home"), "About Desk Lamp")
    );
    let cleared = grpc
        .update_product(as_admin(UpdateProductRequest {
            id: lamp.id,
            price: Some("17.50".into()),
            clear_category: true,
            ..Default::default()
        }))
        .await
        .expect("clear the category")
        .into_inner();
    assert_eq!((cleared.price.as_str(), cleared.category), ("17.50", None));
    // Every write is visible on the next read, cache included.
    assert_eq!(
        app.get(&format!("/products/{}", lamp.id)).await.1["price"],
        "17.50"
    );

    grpc.delete_product(as_admin(DeleteProductRequest { id: lamp.id }))
        .await
        .expect("delete");
    assert_error(
        &app.get(&format!("/products/{}", lamp.id)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let gone = grpc
        .delete_product(as_admin(DeleteProductRequest { id: lamp.id }))
        .await
        .expect_err("already gone");
    assert_eq!(
        (gone.code(), ecom_shared::testing::grpc_error_code(&gone)),
        (Code::NotFound, Some("not_found"))
    );
    assert_eq!(app.count().await, 1);
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn grpc_catalogue_writes_need_an_admin(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create("Mug", "4.50", 5, None).await;
    let mut grpc = app.grpc().await;

    let anonymous = grpc
        .create_product(Request::new(new_product("Pen", "1.00", None)))
        .await
        .expect_err("no token");
    assert_eq!(
        (
            anonymous.code(),
            ecom_shared::testing::grpc_error_code(&anonymous)
        ),
        (Code::Unauthenticated, Some("invalid_token"))
    );
    let user = grpc
        .create_product(authed(new_product("Pen", "1.00", None)))
        .await
        .expect_err("a user");
    assert_eq!(
        (user.code(), ecom_shared::testing::grpc_error_code(&user)),
        (Code::PermissionDenied, Some("forbidden"))
    );
    let over_http = app
        .send(
            Method::POST,
            "/products",
            Some(&json!({"name": "Pen", "price": "1.00", "stock": 1})),
            Some(&token(7, "user")),
        )
        .await;
    assert_error(&over_http, StatusCode::FORBIDDEN, "forbidden");

    let update = grpc
        .update_product(authed(UpdateProductRequest {
            id,
            name: Some("Stolen".into()),
            ..Default::default()
        }))
        .await
        .expect_err("a user");
    assert_eq!(update.code(), Code::PermissionDenied);
    let delete = grpc
        .delete_product(authed(DeleteProductRequest { id }))
        .await
        .expect_err("a user");
    assert_eq!(delete.code(), Code::PermissionDenied);
    let service = grpc
        .delete_product(with_bearer(
            Request::new(DeleteProductRequest { id }),
            &service_token("orders"),
        ))
        .await
        .expect_err("a service is not an admin");
    assert_eq!(service.code(), Code::Unauthenticated);
    assert_eq!(app.count().await, 1, "nothing written");
    assert_eq!(app.get(&format!("/products/{id}")).await.1["name"], "Mug");
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn grpc_catalogue_validation_matches_http(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create("Mug", "4.50", 5, Some("kitchen")).await;
    let mut grpc = app.grpc().await;

    let bad_price = grpc
        .create_product(as_admin(new_product("Pen", "1.999", None)))
        .await
        .expect_err("three decimal places");
    assert_eq!(
        (
            bad_price.code(),
            ecom_shared::testing::grpc_error_code(&bad_price)
        ),
        (Code::InvalidArgument, Some("validation_error"))
    );
    let over_http = app
        .send(
            Method::POST,
            "/products",
            Some(&json!({"name": "Pen", "description": "About Pen", "price": "1.999", "stock": 5})),
            Some(&admin()),
        )
        .await;
    assert_error(
        &over_http,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    );
    let negative = grpc
        .create_product(as_admin(CreateProductRequest {
            stock: -1,
            ..new_product("Pen", "1.00", None)
        }))
        .await
        .expect_err("negative stock");
    assert_eq!(
        ecom_shared::testing::grpc_error_code(&negative),
        Some("validation_error")
    );

    for listing in [
        ListProductsRequest {
            limit: Some(0),
            ..Default::default()
        },
        ListProductsRequest {
            limit: Some(101),
            ..Default::default()
        },
        ListProductsRequest {
            sort: Some("random".into()),
            ..Default::default()
        },
        ListProductsRequest {
            min_price: Some("cheap".into()),
            ..Default::default()
        },
    ] {
        let refused = grpc
            .list_products(listing.clone())
            .await
            .expect_err("bad listing");
        assert_eq!(
            (
                refused.code(),
                ecom_shared::testing::grpc_error_code(&refused)
            ),
            (Code::InvalidArgument, Some("validation_error")),
            "{listing:?}"
        );
    }

    for bad in [
        UpdateProductRequest {
            id: 0,
            name: Some("Cup".into()),
            ..Default::default()
        },
        UpdateProductRequest {
            id,
            name: Some(String::new()),
            ..Default::default()
        },
        UpdateProductRequest {
            id,
            category: Some("cups".into()),
            clear_category: true,
            ..Default::default()
        },
    ] {
        let refused = grpc
            .update_product(as_admin(bad.clone()))
            .await
            .expect_err("bad update");
        assert_eq!(
            (
                refused.code(),
                ecom_shared::testing::grpc_error_code(&refused)
            ),
            (Code::InvalidArgument, Some("validation_error")),
            "{bad:?}"
        );
    }
    let missing = grpc
        .update_product(as_admin(UpdateProductRequest {
            id: 999_999,
            name: Some("Cup".into()),
            ..Default::default()
        }))
        .await
        .expect_err("no such product");
    assert_eq!(
        (
            missing.code(),
            ecom_shared::testing::grpc_error_code(&missing)
        ),
        (Code::NotFound, Some("not_found"))
    );
    let zero = grpc
        .delete_product(as_admin(DeleteProductRequest { id: -1 }))
        .await
        .expect_err("not an id");
    assert_eq!(
        ecom_shared::testing::grpc_error_code(&zero),
        Some("validation_error")
    );

    // Units held by an open order: the product stays, as over HTTP (409 → FAILED_PRECONDITION).
    grpc.reserve_stock(as_orders(ReserveStockRequest {
        order_id: 1,
        lines: vec![Line {
            product_id: id,
            quantity: 1,
        }],
        ttl_seconds: 0,
    }))
    .await
    .expect("reserve");
    let held = grpc
        .delete_product(as_admin(DeleteProductRequest { id }))
        .await
        .expect_err("held by an order");
    assert_eq!(
        (held.code(), ecom_shared::testing::grpc_error_code(&held)),
        (Code::FailedPrecondition, Some("invalid_state"))
    );
    let (_, mug) = app.get(&format!("/products/{id}")).await;
    assert_eq!(
        (mug["name"].as_str(), mug["category"].as_str()),
        (Some("Mug"), Some("kitchen")),
        "nothing changed"
    );
}
