//! The catalogue over REST: listing, filters, search, sorting, admin CRUD, bad input.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_owned())
        .collect()
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn listing_filters_searches_sorts_and_pages(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.create("Laptop Stand", "49.90", 5, Some("electronics"))
        .await;
    app.create("Gaming Laptop", "1299.00", 2, Some("electronics"))
        .await;
    app.create("Rust Programming Book", "39.99", 10, Some("books"))
        .await;
    app.create("Coffee Mug", "9.50", 0, None).await;

    let (status, page) = app.get("/products?limit=2&offset=1").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (
            page["total"].as_i64(),
            page["limit"].as_i64(),
            page["offset"].as_i64()
        ),
        (Some(4), Some(2), Some(1))
    );
    assert_eq!(names(&page), vec!["Gaming Laptop", "Rust Programming Book"]);
    let p = &page["items"][0];
    for field in [
        "id",
        "name",
        "description",
        "price",
        "currency",
        "stock",
        "category",
        "created_at",
        "updated_at",
    ] {
        assert!(p.get(field).is_some(), "{field} missing from {p}");
    }
    assert_eq!(
        (p["price"].as_str(), p["currency"].as_str()),
        (Some("1299.00"), Some("USD"))
    );

    let (_, mug) = app.get("/products?search=mug").await;
    assert_eq!(mug["items"][0]["category"], Value::Null);
    let (_, electronics) = app.get("/products?category=electronics&sort=price").await;
    assert_eq!(names(&electronics), vec!["Laptop Stand", "Gaming Laptop"]);
    let (_, range) = app
        .get("/products?min_price=10&max_price=50&sort=-price")
        .await;
    assert_eq!(names(&range), vec!["Laptop Stand", "Rust Programming Book"]);
    let (_, search) = app.get("/products?search=laptops&sort=name").await;
    assert_eq!(
        names(&search),
        vec!["Gaming Laptop", "Laptop Stand"],
        "stemmed full-text search"
    );
    let (_, prefix) = app.get("/products?search=lap").await;
    assert_eq!(prefix["total"], 2, "short terms match by prefix: {prefix}");
    let (_, phrase) = app.get("/products?search=%22rust%20programming%22").await;
    assert_eq!(names(&phrase), vec!["Rust Programming Book"]);
    let (_, by_name) = app.get("/products?sort=name").await;
    assert_eq!(
        names(&by_name),
        vec![
            "Coffee Mug",
            "Gaming Laptop",
            "Laptop Stand",
            "Rust Programming Book"
        ]
    );
    let (_, newest) = app.get("/products?sort=-created_at").await;
    assert_eq!(names(&newest)[0], "Coffee Mug");
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn admins_create_update_and_delete(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = json!({"name": "Desk", "description": "Oak", "price": 120.5, "stock": 3});
    let (status, created) = app
        .send(Method::POST, "/products", Some(&body), Some(&admin()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (
            created["price"].as_str(),
            created["stock"].as_i64(),
            &created["category"]
        ),
        (Some("120.50"), Some(3), &Value::Null)
    );
    let id = created["id"].as_i64().expect("id");

    let patch = json!({"price": "99.99", "category": "furniture"});
    let (status, updated) = app
        .send(
            Method::PATCH,
            &format!("/products/{id}"),
            Some(&patch),
            Some(&admin()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (
            updated["price"].as_str(),
            updated["name"].as_str(),
            updated["category"].as_str()
        ),
        (Some("99.99"), Some("Desk"), Some("furniture"))
    );
    let (_, cleared) = app
        .send(
            Method::PATCH,
            &format!("/products/{id}"),
            Some(&json!({"category": null})),
            Some(&admin()),
        )
        .await;
    assert_eq!(cleared["category"], Value::Null);

    let (status, _) = app
        .send(
            Method::DELETE,
            &format!("/products/{id}"),
            None,
            Some(&admin()),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_error(
        &app.get(&format!("/products/{id}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.send(
            Method::DELETE,
            &format!("/products/{id}"),
            None,
            Some(&admin()),
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn writes_need_an_admin(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create("Lamp", "10.00", 1, None).await;
    let user = token(5, "user");
    let body = json!({"name": "X", "price": "1.00", "stock": 1});
    assert_error(
        &app.send(Method::POST, "/products", Some(&body), Some(&user))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &app.send(Method::POST, "/products", Some(&body), None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    assert_error(
        &app.send(
            Method::PATCH,
            &format!("/products/{id}"),
            Some(&body),
            Some(&user),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &app.send(
            Method::DELETE,
            &format!("/products/{id}"),
            None,
            Some(&user),
        )
        .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_eq!(app.count().await, 1);
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn bad_input_is_422_and_writes_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create("Chair", "25.00", 4, None).await;
    let bad_prices = [
        json!(-1),
        json!("-0.01"),
        json!("1.234"),
        json!("NaN"),
        json!("Infinity"),
        json!("1e3"),
        json!("99999999999"),
        json!(1e300),
        json!(true),
        json!(""),
    ];
    for price in &bad_prices {
        let body = json!({"name": "Bad", "price": price, "stock": 1});
        let got = app
            .send(Method::POST, "/products", Some(&body), Some(&admin()))
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert_eq!(got.1["errors"][0]["field"], "price", "{price}: {}", got.1);
        let got = app
            .send(
                Method::PATCH,
                &format!("/products/{id}"),
                Some(&json!({"price": price})),
                Some(&admin()),
            )
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    for body in [
        json!({"name": "", "price": "1.00", "stock": 1}),
        json!({"name": "   ", "price": "1.00", "stock": 1}),
        json!({"name": "x".repeat(201), "price": "1.00", "stock": 1}),
        json!({"name": "Ok", "price": "1.00", "stock": -1}),
        json!({"name": "Ok", "price": "1.00", "stock": 1.5}),
        json!({"name": "Ok", "price": "1.00"}),
        json!({"name": "Ok", "price": "1.00", "stock": 1, "description": "d".repeat(10_001)}),
        json!([1, 2]),
    ] {
        let got = app
            .send(Method::POST, "/products", Some(&body), Some(&admin()))
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    }
    for path in [
        "/products?limit=0",
        "/products?limit=101",
        "/products?offset=-1",
        "/products?limit=x",
        "/products?sort=price;drop",
        "/products?min_price=abc",
        "/products?max_price=1.001",
        "/products/abc",
        "/products/0",
        "/products/-1",
        "/products/1.5",
        // A NUL byte was a 500 (PostgreSQL refuses it in text); control characters are 422.
        "/products?search=lamp%00",
        "/products?category=home%00",
        "/products?search=%07",
    ] {
        assert_error(
            &app.get(path).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        );
    }
    assert_eq!(app.count().await, 1, "nothing written");
    let (_, chair) = app.get(&format!("/products/{id}")).await;
    assert_eq!(chair["price"], "25.00", "nothing changed");
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn the_demo_catalogue_is_seeded_once(pool: PgPool) {
    let app = spawn_app_with(pool.clone(), &[("ECOM_SEED_DEMO", "true")]).await;
    let (_, page) = app.get("/products?limit=1").await;
    let total = page["total"].as_i64().expect("total");
    assert!((90..=110).contains(&total), "{total}");
    drop(app);
    let again = spawn_app_with(pool, &[("ECOM_SEED_DEMO", "true")]).await;
    let (_, page) = again.get("/products?limit=1").await;
    assert_eq!(
        page["total"].as_i64(),
        Some(total),
        "a restart does not seed twice"
    );
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn listings_stay_index_scans_at_100k_products(pool: PgPool) {
    sqlx::query(
        "INSERT INTO products (name, description, price, category, on_hand)
         SELECT 'Product ' || g, 'Description of product ' || g, (g % 50000) / 100.0,
                'category-' || (g % 8), g % 100
         FROM generate_series(1, 100000) AS g",
    )
    .execute(&pool)
    .await
    .expect("bulk insert");
    sqlx::query("ANALYZE products")
        .execute(&pool)
        .await
        .expect("analyze");
    // The WHERE clause of `repo::list`, with the parameters a plain page has (no filters).
    let filters = "($1::text IS NULL OR category = $1) AND ($2::numeric IS NULL OR price >= $2)
        AND ($3::numeric IS NULL OR price <= $3)
        AND ($4::text IS NULL OR search @@ websearch_to_tsquery('english', $4) OR search @@ to_tsquery('english', $5::text))";
    for order in [
        "id",
        "price, id",
        "price DESC, id DESC",
        "name, id",
        "created_at DESC, id",
    ] {
        for category in [None, Some("category-3")] {
            let sql = format!(
                "EXPLAIN SELECT id FROM products WHERE {filters} ORDER BY {order} LIMIT 20 OFFSET 0"
            );
            let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(category)
                .bind(None::<rust_decimal::Decimal>)
                .bind(None::<rust_decimal::Decimal>)
                .bind(None::<String>)
                .bind(None::<String>)
                .fetch_all(&pool)
                .await
                .expect("explain");
            let plan = plan.join("\n");
            assert!(
                plan.contains("Index")
                    && plan.contains(" using products_")
                    && !plan.contains("Seq Scan")
                    && !plan.contains("Sort"),
                "ORDER BY {order}, category {category:?}:\n{plan}"
            );
        }
    }
    let search: Vec<String> = sqlx::query_scalar(
        // The listing's `total` for a search: matched through the GIN index, not a scan.
        "EXPLAIN SELECT count(*) FROM products WHERE search @@ websearch_to_tsquery('english', 'product 4242')",
    )
    .fetch_all(&pool)
    .await
    .expect("explain");
    assert!(
        search.join("\n").contains("products_search_idx"),
        "{}",
        search.join("\n")
    );
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn docs_metrics_and_health_are_served(pool: PgPool) {
    let app = spawn_app(pool).await;
    let id = app.create("Metered", "1.00", 1, None).await;
    app.get(&format!("/products/{id}")).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"http_requests_total{service="products",method="GET",route="/products/{id}",status="200"} 1"#),
        "{metrics}"
    );
    let (status, spec) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    for path in ["/products", "/products/{id}"] {
        assert!(spec["paths"].get(path).is_some(), "{path} missing");
    }
    let docs = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    let (status, ready) = app.get("/health/ready").await;
    assert_eq!(status, StatusCode::OK, "{ready}");
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn every_bad_field_is_named_with_its_message(pool: PgPool) {
    // The bodies are typed (`http::body`), yet a wrong JSON type is still a field error in our
    // words, reported with every other bad field, and a body that is not an object is `body`.
    let app = spawn_app(pool).await;
    let id = app.create("Vase", "8.00", 2, None).await;
    let admin = admin();
    let errors = |got: &(StatusCode, Value)| -> Vec<(String, String)> {
        assert_eq!(got.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", got.1);
        got.1["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().expect("field").to_owned(),
                    e["message"].as_str().expect("message").to_owned(),
                )
            })
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(f, m)| ((*f).to_owned(), (*m).to_owned()))
            .collect()
    };
    let create = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move {
            app.send(Method::POST, "/products", Some(&body), Some(admin))
                .await
        }
    };
    let got = create(json!({"name": 5, "description": [1], "stock": "3", "category": false})).await;
    assert_eq!(
        errors(&got),
        pairs(&[
            ("price", "is required"),
            ("name", "must be a string"),
            ("description", "must be a string"),
            ("stock", "must be a whole number between 0 and 1000000000"),
            ("category", "must be a string"),
        ])
    );
    for body in [json!("Vase"), json!(7), json!(null), json!([1])] {
        let got = create(body).await;
        assert_eq!(errors(&got), pairs(&[("body", "must be a JSON object")]));
        assert_eq!(got.1["detail"], "body: must be a JSON object");
    }
    let got = app
        .send(
            Method::PATCH,
            &format!("/products/{id}"),
            Some(&json!({"name": null, "price": {"amount": 1}, "category": null})),
            Some(&admin),
        )
        .await;
    assert_eq!(
        errors(&got),
        pairs(&[
            ("name", "must be a string"),
            ("price", "must be a decimal amount like 19.99"),
        ])
    );
    // A key sent twice keeps its last value, as before the bodies were typed.
    let (status, created) = ecom_shared::testing::parts(
        app.client
            .post(app.url("/products"))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(r#"{"name": "A", "name": "B", "price": "1.00", "stock": 1}"#)
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(
        (status, &created["name"]),
        (StatusCode::CREATED, &json!("B")),
        "{created}"
    );
    assert_eq!(app.count().await, 2, "nothing else written");
}
