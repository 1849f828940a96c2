//! The served OpenAPI document is what the service does: every status a route answers is
//! documented, every parameter is where the service reads it, and the documented constraints
//! accept exactly what the service accepts (schemathesis checks both directions).

use ecom_shared::testing::{assert_documented, documented_parameter, documented_statuses};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

async fn spec(app: &TestApp) -> Value {
    let (status, spec) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    spec
}

fn schema<'a>(spec: &'a Value, name: &str) -> &'a Value {
    &spec["components"]["schemas"][name]
}

fn regex(pattern: &Value) -> regex::Regex {
    regex::Regex::new(pattern.as_str().expect("a pattern")).expect("the pattern compiles")
}

/// Whether `value` fits a documented string schema (`maxLength` and `pattern`).
fn fits(schema: &Value, value: &str) -> bool {
    let long = schema["maxLength"]
        .as_u64()
        .is_some_and(|max| value.chars().count() as u64 > max);
    !long && regex(&schema["pattern"]).is_match(value)
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn listing_parameters_are_optional_query_parameters(pool: PgPool) {
    // They were documented as required *path* parameters: clients generated from the document
    // put them in the path and could not leave them out.
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    for name in [
        "limit",
        "offset",
        "search",
        "category",
        "min_price",
        "max_price",
        "sort",
    ] {
        let p = documented_parameter(&spec, "get", "/products", name);
        assert_eq!(p["in"], "query", "{name}: {p}");
        assert_eq!(p["required"], false, "{name}: {p}");
    }
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn every_status_a_route_answers_is_documented(pool: PgPool) {
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    let id = app.create("Lamp", "5.00", 3, None).await;
    let user = token(7, "user");
    let one = format!("/products/{id}");
    let body = json!({"name": "Desk", "price": "10.00", "stock": 1});
    let send = |method: Method, path: &str, body: Option<Value>, token: Option<String>| {
        let app = &app;
        let path = path.to_owned();
        async move {
            app.send(method, &path, body.as_ref(), token.as_deref())
                .await
        }
    };
    let checks = [
        // 401 without a token, 403 for a user, on every admin route.
        (
            "post",
            "/products",
            send(Method::POST, "/products", Some(body.clone()), None).await,
        ),
        (
            "post",
            "/products",
            send(
                Method::POST,
                "/products",
                Some(body.clone()),
                Some(user.clone()),
            )
            .await,
        ),
        (
            "patch",
            "/products/{id}",
            send(Method::PATCH, &one, Some(json!({})), None).await,
        ),
        (
            "patch",
            "/products/{id}",
            send(Method::PATCH, &one, Some(json!({})), Some(user.clone())).await,
        ),
        (
            "delete",
            "/products/{id}",
            send(Method::DELETE, &one, None, None).await,
        ),
        (
            "delete",
            "/products/{id}",
            send(Method::DELETE, &one, None, Some(user.clone())).await,
        ),
        // 422 for an id that is not a positive integer, on every route with one.
        (
            "get",
            "/products/{id}",
            send(Method::GET, "/products/0", None, None).await,
        ),
        (
            "get",
            "/products/{id}",
            send(Method::GET, "/products/99999999999999999999", None, None).await,
        ),
        (
            "delete",
            "/products/{id}",
            send(Method::DELETE, "/products/-1", None, Some(admin())).await,
        ),
        (
            "patch",
            "/products/{id}",
            send(Method::PATCH, "/products/x", Some(json!({})), Some(admin())).await,
        ),
        // 404 on every route with an id.
        (
            "delete",
            "/products/{id}",
            send(Method::DELETE, "/products/424242", None, Some(admin())).await,
        ),
        (
            "get",
            "/products/{id}",
            send(Method::GET, "/products/424242", None, None).await,
        ),
        // 422 for a bad listing parameter.
        (
            "get",
            "/products",
            send(Method::GET, "/products?limit=101", None, None).await,
        ),
    ];
    for (method, path, got) in &checks {
        assert!(got.0.is_client_error(), "{method} {path}: {got:?}");
        assert_documented(&spec, method, path, got);
    }
    // 400 (not JSON, no content type) and 413 (too large) on every route with a body.
    let admin = admin();
    for (method, path, url) in [
        (Method::POST, "/products", "/products".to_owned()),
        (Method::PATCH, "/products/{id}", one.clone()),
    ] {
        let lower = method.as_str().to_lowercase();
        let not_json = ecom_shared::testing::parts(
            app.client
                .request(method.clone(), app.url(&url))
                .bearer_auth(&admin)
                .body("name=Desk")
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(not_json.0, StatusCode::BAD_REQUEST, "{not_json:?}");
        assert_documented(&spec, &lower, path, &not_json);
        let huge = json!({"name": "x".repeat(300 * 1024)});
        let too_large = app
            .send(method.clone(), &url, Some(&huge), Some(&admin))
            .await;
        assert_eq!(too_large.0, StatusCode::PAYLOAD_TOO_LARGE, "{too_large:?}");
        assert_documented(&spec, &lower, path, &too_large);
    }
    // What cannot be provoked here (a database or Redis down) is documented too.
    for (method, path) in [
        ("get", "/products"),
        ("post", "/products"),
        ("get", "/products/{id}"),
        ("patch", "/products/{id}"),
        ("delete", "/products/{id}"),
    ] {
        assert!(
            documented_statuses(&spec, method, path).contains(&503),
            "{method} {path}"
        );
    }
    assert!(documented_statuses(&spec, "delete", "/products/{id}").contains(&409));
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn ids_are_documented_as_positive(pool: PgPool) {
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    for method in ["get", "patch", "delete"] {
        let id = documented_parameter(&spec, method, "/products/{id}", "id");
        assert_eq!(id["in"], "path", "{method}");
        assert_eq!(id["schema"]["minimum"], 1, "{method}: {id}");
    }
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn documented_text_rules_accept_exactly_what_the_service_accepts(pool: PgPool) {
    // The document had no constraint on names, so an empty name was "valid" yet refused.
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    let input = schema(&spec, "ProductInput");
    let name = &input["properties"]["name"];
    assert_eq!(name["maxLength"], 200);
    let required: Vec<&str> = input["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(required, ["name", "price", "stock"]);
    let samples = [
        "Desk".to_owned(),
        " Desk lamp\t".to_owned(),
        "\u{2003}Desk\u{85}\r\n".to_owned(),
        "two\nlines".to_owned(),
        "a".repeat(200),
        String::new(),
        "   ".to_owned(),
        "\u{3000}\t".to_owned(),
        "bell\u{7}".to_owned(),
        "nul\u{0}".to_owned(),
        "cr\rinside".to_owned(),
        "a".repeat(201),
        // The limit counts what is sent, surrounding whitespace included.
        format!(" {}", "a".repeat(200)),
    ];
    let admin = admin();
    for sample in &samples {
        let (status, body) = app
            .send(
                Method::POST,
                "/products",
                Some(&json!({"name": sample, "price": "1.00", "stock": 1})),
                Some(&admin),
            )
            .await;
        let accepted = status == StatusCode::CREATED;
        assert!(
            accepted || status == StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
        assert_eq!(
            fits(name, sample),
            accepted,
            "name {sample:?}: the document and the service disagree ({status}: {body})"
        );
    }
    // The patch takes the same names, but never null for them (only `category` may be null).
    let patch = schema(&spec, "ProductUpdateInput");
    assert_eq!(patch["properties"]["name"], *name);
    assert!(patch["required"].as_array().is_none_or(Vec::is_empty));
    let id = app.create("Chair", "3.00", 1, None).await;
    let (status, _) = app
        .send(
            Method::PATCH,
            &format!("/products/{id}"),
            Some(&json!({"name": null})),
            Some(&admin),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_ne!(
        patch["properties"]["name"]["type"],
        json!(["string", "null"])
    );
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn documented_prices_and_stock_are_what_the_service_accepts(pool: PgPool) {
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    let price = &schema(&spec, "ProductInput")["properties"]["price"]["anyOf"];
    let text = &price[0];
    let number = &price[1];
    assert_eq!(number["type"], "number");
    assert_eq!(number["minimum"], 0);
    assert_eq!(number["multipleOf"], 0.01);
    let admin = admin();
    for (sample, ok) in [
        ("19.99", true),
        (" 5 ", true),
        ("0007.1", true),
        ("9999999999.99", true),
        ("10000000000", false),
        ("1.234", false),
        ("-1", false),
        ("1.", false),
        (".5", false),
        ("1e3", false),
        ("", false),
    ] {
        assert_eq!(fits(text, sample), ok, "price {sample:?} in the document");
        let (status, body) = app
            .send(
                Method::POST,
                "/products",
                Some(&json!({"name": "Priced", "price": sample, "stock": 1})),
                Some(&admin),
            )
            .await;
        assert_eq!(
            status == StatusCode::CREATED,
            ok,
            "price {sample:?}: {body}"
        );
    }
    // Stock: a whole number in 0..=1e9, `7.0` included (JSON and `type: integer` agree that
    // it is 7; it used to be refused).
    let stock = &schema(&spec, "ProductInput")["properties"]["stock"];
    assert_eq!(
        (&stock["minimum"], &stock["maximum"]),
        (&json!(0), &json!(1_000_000_000))
    );
    for (stock, ok) in [
        (json!(7), true),
        (json!(7.0), true),
        (json!(1_000_000_000), true),
        (json!(7.5), false),
        (json!(-1), false),
        (json!(1_000_000_001), false),
    ] {
        let (status, body) = app
            .send(
                Method::POST,
                "/products",
                Some(&json!({"name": "Stocked", "price": "1.00", "stock": stock})),
                Some(&admin),
            )
            .await;
        assert_eq!(status == StatusCode::CREATED, ok, "stock {stock}: {body}");
    }
}

#[sqlx::test(migrator = "products::MIGRATOR")]
async fn documented_listing_parameters_accept_exactly_what_the_service_accepts(pool: PgPool) {
    // Blank values are "not given" (the contract's own example sends `search=&category=`), so
    // the document cannot say plain `integer`: an empty `limit` would be "invalid" yet accepted.
    let app = spawn_app(pool).await;
    let spec = spec(&app).await;
    let param =
        |name: &str| documented_parameter(&spec, "get", "/products", name)["schema"].clone();
    let limit = param("limit");
    assert_eq!(
        (&limit["anyOf"][0]["minimum"], &limit["anyOf"][0]["maximum"]),
        (&json!(1), &json!(100))
    );
    let cases: [(&str, &str, Value); 6] = [
        ("limit", "limit", limit["anyOf"][1].clone()),
        ("offset", "offset", param("offset")["anyOf"][1].clone()),
        ("search", "search", param("search")),
        ("category", "category", param("category")),
        ("min_price", "min_price", param("min_price")),
        ("sort", "sort", param("sort")["anyOf"][1].clone()),
    ];
    let samples = [
        "",
        " ",
        "1",
        "+7",
        "007",
        "100",
        "101",
        "0",
        "-0",
        "1000000",
        "1000001",
        "-1",
        "1.5",
        "price",
        " -price ",
        "name",
        "lamp",
        "bell\u{7}",
        "tab\tinside",
    ];
    for (field, name, schema) in &cases {
        for sample in samples {
            let url = format!("/products?{name}={}", url_escape(sample));
            let (status, body) = app.get(&url).await;
            assert!(
                status == StatusCode::OK || status == StatusCode::UNPROCESSABLE_ENTITY,
                "{url}: {body}"
            );
            assert_eq!(
                fits(schema, sample),
                status == StatusCode::OK,
                "{field}={sample:?}: the document and the service disagree ({status}: {body})"
            );
        }
    }
    let long = "a".repeat(201);
    let (status, _) = app.get(&format!("/products?search={long}")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(!fits(&param("search"), &long));
    assert!(fits(&param("search"), &"a".repeat(200)));
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
