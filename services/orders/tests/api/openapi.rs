//! The served OpenAPI document is what the service does: every status a route answers is
//! documented, every parameter is where the service reads it, with the constraints it enforces.

use ecom_shared::testing::{assert_documented, documented_parameter, documented_statuses, parts};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

async fn spec(app: &TestApp) -> Value {
    let res = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .expect("openapi");
    let (status, spec) = parts(res).await;
    assert_eq!(status, StatusCode::OK);
    spec
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn listing_parameters_are_optional_query_parameters_with_their_bounds(pool: PgPool) {
    // They were documented as required, nullable *path* parameters.
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    for (name, min, max) in [
        ("limit", json!(1), json!(100)),
        ("offset", json!(0), Value::Null),
        ("user_id", json!(1), Value::Null),
    ] {
        let p = documented_parameter(&spec, "get", "/orders", name);
        assert_eq!(p["in"], "query", "{name}: {p}");
        assert_eq!(p["required"], false, "{name}: {p}");
        assert_eq!(p["schema"]["type"], "integer", "{name}: not nullable: {p}");
        assert_eq!(
            (&p["schema"]["minimum"], &p["schema"]["maximum"]),
            (&min, &max),
            "{name}"
        );
    }
    // What the bounds say, the service does: a user id below 1 used to be accepted.
    let admin = admin();
    for (query, ok) in [
        ("limit=1", true),
        ("limit=100", true),
        ("limit=0", false),
        ("limit=101", false),
        ("offset=0", true),
        ("offset=-1", false),
        ("user_id=1", true),
        ("user_id=0", false),
        ("user_id=-5", false),
    ] {
        let got = app.get(&format!("/orders?{query}"), &admin).await;
        assert_eq!(got.0 == StatusCode::OK, ok, "{query}: {got:?}");
        assert_documented(&spec, "get", "/orders", &got);
    }
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn every_status_a_route_answers_is_documented(pool: PgPool) {
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    let mug = app.product("Mug", "2.00", 1).await;
    let alice = token(7, "user");
    let anonymous = |method: Method, path: &str| {
        let req = app.client.request(method, format!("{}{path}", app.base));
        async move { parts(req.send().await.expect("request")).await }
    };
    let checks = [
        // 401 on every route without a token.
        ("post", "/orders", anonymous(Method::POST, "/orders").await),
        ("get", "/orders", anonymous(Method::GET, "/orders").await),
        (
            "get",
            "/orders/{id}",
            anonymous(Method::GET, "/orders/1").await,
        ),
        (
            "post",
            "/orders/{id}/cancel",
            anonymous(Method::POST, "/orders/1/cancel").await,
        ),
        // 422 for an id that is not a positive integer.
        ("get", "/orders/{id}", app.get("/orders/0", &alice).await),
        (
            "get",
            "/orders/{id}",
            app.get("/orders/99999999999999999999", &alice).await,
        ),
        (
            "post",
            "/orders/{id}/cancel",
            app.send(Method::POST, "/orders/-3/cancel", None, &alice, None)
                .await,
        ),
        // 404.
        ("get", "/orders/{id}", app.get("/orders/4242", &alice).await),
        (
            "post",
            "/orders/{id}/cancel",
            app.send(Method::POST, "/orders/4242/cancel", None, &alice, None)
                .await,
        ),
        // Checkout: 422 bad lines, 404 an unknown product, 409 not enough stock, 422 a bad key.
        ("post", "/orders", app.order(&alice, &[], None).await),
        (
            "post",
            "/orders",
            app.order(&alice, &[(4242, 1)], None).await,
        ),
        (
            "post",
            "/orders",
            app.order(&alice, &[(mug, 2)], None).await,
        ),
        (
            "post",
            "/orders",
            app.order(&alice, &[(mug, 1)], Some("has spaces")).await,
        ),
    ];
    for (method, path, got) in &checks {
        assert!(got.0.is_client_error(), "{method} {path}: {got:?}");
        assert_documented(&spec, method, path, got);
    }
    // 400 (no JSON content type) and 413 (too large).
    let not_json = parts(
        app.client
            .post(format!("{}/orders", app.base))
            .bearer_auth(&alice)
            .body("items")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(not_json.0, StatusCode::BAD_REQUEST);
    assert_documented(&spec, "post", "/orders", &not_json);
    let huge = json!({"items": [], "pad": "x".repeat(300 * 1024)});
    let too_large = app
        .send(Method::POST, "/orders", Some(&huge), &alice, None)
        .await;
    assert_eq!(too_large.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_documented(&spec, "post", "/orders", &too_large);
    for (method, path) in [
        ("post", "/orders"),
        ("get", "/orders"),
        ("get", "/orders/{id}"),
        ("post", "/orders/{id}/cancel"),
    ] {
        assert!(
            documented_statuses(&spec, method, path).contains(&503),
            "{method} {path}"
        );
    }
}

#[sqlx::test(migrator = "orders::MIGRATOR")]
async fn documented_checkout_constraints_are_what_the_service_enforces(pool: PgPool) {
    // An empty list of items was "valid" to the document, and refused.
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    let items = &spec["components"]["schemas"]["CreateOrder"]["properties"]["items"];
    assert_eq!(
        (&items["minItems"], &items["maxItems"]),
        (&json!(1), &json!(50))
    );
    let item = &spec["components"]["schemas"]["CreateOrderItem"];
    assert_eq!(item["properties"]["product_id"]["minimum"], 1);
    let quantity = &item["properties"]["quantity"];
    assert_eq!(
        (&quantity["minimum"], &quantity["maximum"]),
        (&json!(1), &json!(1000))
    );
    let key = documented_parameter(&spec, "post", "/orders", "Idempotency-Key");
    assert_eq!(key["in"], "header");
    assert_eq!(key["required"], false);
    assert_eq!(key["schema"]["type"], "string", "not nullable: {key}");
    let pattern =
        regex::Regex::new(key["schema"]["pattern"].as_str().expect("pattern")).expect("compiles");
    for (k, ok) in [
        ("k-1", true),
        (&*"k".repeat(255), true),
        (&*"k".repeat(256), false),
        ("has spaces", false),
    ] {
        assert_eq!(pattern.is_match(k), ok, "{k}");
    }

    let pen = app.product("Pen", "1.00", 5000).await;
    let alice = token(7, "user");
    let lines = |n: usize| -> Value {
        json!({"items": (0..n).map(|_| json!({"product_id": pen, "quantity": 1})).collect::<Vec<_>>()})
    };
    for (body, ok) in [
        (lines(1), true),
        (lines(50), true),
        (lines(0), false),
        (lines(51), false),
        (
            json!({"items": [{"product_id": pen, "quantity": 1000}]}),
            true,
        ),
        (
            json!({"items": [{"product_id": pen, "quantity": 1001}]}),
            false,
        ),
        (
            json!({"items": [{"product_id": pen, "quantity": 0}]}),
            false,
        ),
        // `2.0` is the integer 2 to JSON and to `type: integer`: it used to be refused.
        (
            json!({"items": [{"product_id": pen, "quantity": 2.0}]}),
            true,
        ),
        (
            json!({"items": [{"product_id": f64::from(i32::try_from(pen).expect("small id")), "quantity": 1}]}),
            true,
        ),
        (
            json!({"items": [{"product_id": pen, "quantity": 1.5}]}),
            false,
        ),
    ] {
        let got = app
            .send(Method::POST, "/orders", Some(&body), &alice, None)
            .await;
        assert_eq!(got.0 == StatusCode::CREATED, ok, "{body}: {got:?}");
        assert_documented(&spec, "post", "/orders", &got);
    }
}
