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

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn listing_parameters_are_optional_query_parameters_with_their_bounds(pool: PgPool) {
    // They were documented as required, nullable *path* parameters.
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    for (name, min, max) in [
        ("order_id", json!(1), Value::Null),
        ("limit", json!(1), json!(100)),
        ("offset", json!(0), Value::Null),
    ] {
        let p = documented_parameter(&spec, "get", "/payments", name);
        assert_eq!(p["in"], "query", "{name}: {p}");
        assert_eq!(p["required"], false, "{name}: {p}");
        assert_eq!(p["schema"]["type"], "integer", "{name}: not nullable: {p}");
        assert_eq!(
            (&p["schema"]["minimum"], &p["schema"]["maximum"]),
            (&min, &max),
            "{name}"
        );
    }
    let alice = token(7, "user");
    for (query, ok) in [
        ("order_id=1", true),
        ("order_id=0", false),
        ("limit=100", true),
        ("limit=101", false),
        ("offset=-1", false),
    ] {
        let got = app.get(&format!("/payments?{query}"), &alice).await;
        assert_eq!(got.0 == StatusCode::OK, ok, "{query}: {got:?}");
        assert_documented(&spec, "get", "/payments", &got);
    }
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn every_status_a_route_answers_is_documented(pool: PgPool) {
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    let alice = token(7, "user");
    let mug = app.product("Mug", "3.00", 5).await;
    let order = app.order(&alice, &[(mug, 1)]).await;
    let anonymous = |method: Method, path: &str| {
        let req = app.client.request(method, format!("{}{path}", app.base));
        async move { parts(req.send().await.expect("request")).await }
    };
    let checks = [
        // 401 on every route without a token; 403 for a user refunding.
        (
            "post",
            "/payments",
            anonymous(Method::POST, "/payments").await,
        ),
        (
            "get",
            "/payments",
            anonymous(Method::GET, "/payments").await,
        ),
        (
            "get",
            "/payments/{id}",
            anonymous(Method::GET, "/payments/1").await,
        ),
        (
            "post",
            "/payments/{id}/refund",
            anonymous(Method::POST, "/payments/1/refund").await,
        ),
        (
            "post",
            "/payments/{id}/refund",
            app.send(Method::POST, "/payments/1/refund", None, &alice, None)
                .await,
        ),
        // 422 for an id that is not a positive integer.
        (
            "get",
            "/payments/{id}",
            app.get("/payments/0", &alice).await,
        ),
        (
            "post",
            "/payments/{id}/refund",
            app.send(Method::POST, "/payments/-1/refund", None, &admin(), None)
                .await,
        ),
        // 404.
        (
            "get",
            "/payments/{id}",
            app.get("/payments/4242", &alice).await,
        ),
        (
            "post",
            "/payments/{id}/refund",
            app.send(Method::POST, "/payments/4242/refund", None, &admin(), None)
                .await,
        ),
        // Paying: 422 a bad body or card, 404 an order that is not there.
        (
            "post",
            "/payments",
            app.pay(&alice, 0, &card("4242424242424242"), None).await,
        ),
        (
            "post",
            "/payments",
            app.pay(&alice, order, &card("4242424242424241"), None)
                .await,
        ),
        (
            "post",
            "/payments",
            app.pay(&alice, 4242, &card("4242424242424242"), None).await,
        ),
    ];
    for (method, path, got) in &checks {
        assert!(got.0.is_client_error(), "{method} {path}: {got:?}");
        assert_documented(&spec, method, path, got);
    }
    // 409: an order that is no longer awaiting payment.
    let (status, _) = app
        .pay(&alice, order, &card("4242424242424242"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let again = app
        .pay(&alice, order, &card("4242424242424242"), None)
        .await;
    assert_eq!(again.0, StatusCode::CONFLICT, "{again:?}");
    assert_documented(&spec, "post", "/payments", &again);
    // 400 (no JSON content type) and 413 (too large).
    let not_json = parts(
        app.client
            .post(format!("{}/payments", app.base))
            .bearer_auth(&alice)
            .body("order_id=1")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(not_json.0, StatusCode::BAD_REQUEST);
    assert_documented(&spec, "post", "/payments", &not_json);
    let huge = json!({"order_id": 1, "pad": "x".repeat(300 * 1024)});
    let too_large = app
        .send(Method::POST, "/payments", Some(&huge), &alice, None)
        .await;
    assert_eq!(too_large.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_documented(&spec, "post", "/payments", &too_large);
    for (method, path) in [
        ("post", "/payments"),
        ("get", "/payments"),
        ("get", "/payments/{id}"),
        ("post", "/payments/{id}/refund"),
    ] {
        assert!(
            documented_statuses(&spec, method, path).contains(&503),
            "{method} {path}"
        );
    }
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn documented_payment_constraints_are_what_the_service_enforces(pool: PgPool) {
    // `order_id: 0` was "valid" to the document, and refused.
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    let body = &spec["components"]["schemas"]["CreatePayment"];
    assert_eq!(body["properties"]["order_id"]["minimum"], 1);
    let card_schema = &spec["components"]["schemas"]["CardInputDoc"]["properties"];
    assert_eq!(card_schema["exp_month"]["minimum"], 1);
    assert_eq!(card_schema["exp_month"]["maximum"], 12);
    assert_eq!(card_schema["cvc"]["pattern"], "^[0-9]{3,4}$");
    let number = regex::Regex::new(card_schema["number"]["pattern"].as_str().expect("pattern"))
        .expect("compiles");
    for (n, ok) in [
        ("4242424242424242", true),
        ("4242 4242 4242 4242", true),
        ("4242-4242-4242-4242", true),
        ("42424242424", false),
        ("42424242424242424242", false),
        ("4242x4242424242424", false),
    ] {
        assert_eq!(number.is_match(n), ok, "{n}");
    }
    let key = documented_parameter(&spec, "post", "/payments", "Idempotency-Key");
    assert_eq!(key["schema"]["type"], "string", "not nullable: {key}");

    let alice = token(7, "user");
    let mug = app.product("Mug", "3.00", 5).await;
    // Whole numbers however written: `order_id: 7.0` is the integer 7 (it used to be refused).
    let order = app.order(&alice, &[(mug, 1)]).await;
    let as_float = f64::from(i32::try_from(order).expect("small id"));
    let got = app
        .send(
            Method::POST,
            "/payments",
            Some(&json!({"order_id": as_float, "card": {"number": "4242424242424242", "exp_month": 12.0, "exp_year": 2040.0, "cvc": "123"}})),
            &alice,
            None,
        )
        .await;
    assert_eq!(got.0, StatusCode::CREATED, "{got:?}");
    let got = app
        .send(
            Method::POST,
            "/payments",
            Some(&json!({"order_id": 1.5, "card": card("4242424242424242")})),
            &alice,
            None,
        )
        .await;
    assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{got:?}");
}
