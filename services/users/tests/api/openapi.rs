//! The OpenAPI document is what the service does (clients generate code from it; `make fuzz`
//! checks it with schemathesis): every status an operation answers is listed, the parameters
//! are where the service reads them, and request bodies say what the service requires. Each
//! test pins the document and the behaviour it describes.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::*;

async fn document(app: &TestApp) -> Value {
    let (status, doc) = app.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    doc
}

fn statuses(doc: &Value, method: &str, path: &str) -> Vec<u16> {
    let responses = doc["paths"][path][method]["responses"]
        .as_object()
        .unwrap_or_else(|| panic!("{method} {path} is not documented"));
    let mut codes: Vec<u16> = responses.keys().filter_map(|k| k.parse().ok()).collect();
    codes.sort_unstable();
    codes
}

/// The previous document listed 401 on `GET /users/me` only, 403 on two admin routes, no 400,
/// 413 or 503 anywhere and no 429 on refresh-less routes: schemathesis saw 401/403/404/409
/// answers the document did not mention.
#[sqlx::test(migrator = "users::MIGRATOR")]
async fn every_status_an_operation_answers_is_documented(pool: PgPool) {
    let app = spawn_app(pool).await;
    let doc = document(&app).await;
    let expected: [(&str, &str, &[u16]); 11] = [
        (
            "post",
            "/auth/register",
            &[201, 400, 409, 413, 422, 429, 503],
        ),
        ("post", "/auth/login", &[200, 400, 401, 413, 422, 429, 503]),
        ("post", "/auth/refresh", &[200, 400, 401, 413, 422, 503]),
        ("post", "/auth/logout", &[204, 400, 413, 422, 503]),
        ("get", "/users/me", &[200, 401, 503]),
        ("patch", "/users/me", &[200, 400, 401, 413, 422, 503]),
        ("get", "/users", &[200, 401, 403, 422, 503]),
        ("get", "/users/{id}", &[200, 401, 403, 404, 422, 503]),
        (
            "patch",
            "/users/{id}",
            &[200, 400, 401, 403, 404, 409, 413, 422, 503],
        ),
        (
            "delete",
            "/users/{id}",
            &[204, 401, 403, 404, 409, 422, 503],
        ),
        ("post", "/admin/keys/rotate", &[200, 401, 403, 503]),
    ];
    for (method, path, codes) in expected {
        assert_eq!(statuses(&doc, method, path), codes, "{method} {path}");
        for code in codes.iter().filter(|c| **c >= 400) {
            let answer = &doc["paths"][path][method]["responses"][code.to_string()];
            assert_eq!(
                answer["content"]["application/json"]["schema"]["$ref"],
                "#/components/schemas/ErrorBody",
                "{method} {path} {code}"
            );
            if matches!(code, 429 | 503) {
                assert!(
                    answer["headers"]["Retry-After"].is_object(),
                    "{method} {path} {code} needs Retry-After"
                );
            }
        }
        for (code, answer) in doc["paths"][path][method]["responses"]
            .as_object()
            .into_iter()
            .flatten()
        {
            assert!(
                answer["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{method} {path} {code}: a response needs a description"
            );
        }
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    // And the service answers them.
    let admin = app.admin_token().await;
    let (_, user_token, _) = app.user("doc-user2@example.com").await;
    assert_error(
        &app.get("/users", None).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    assert_error(
        &app.get("/users", Some(&user_token)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &app.get("/users/999999", Some(&admin)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &app.get("/users/0", Some(&admin)).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    );
    assert_error(
        &app.delete("/users/1", Some(&admin)).await,
        StatusCode::CONFLICT,
        "invalid_state",
    );
    let raw = |body: &'static str| {
        app.client
            .post(app.url("/auth/register"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    assert_error(
        &parts(raw("{not json").await.expect("send")).await,
        StatusCode::BAD_REQUEST,
        "validation_error",
    );
    let huge = app
        .client
        .post(app.url("/auth/register"))
        .header("content-type", "application/json")
        .body(format!("{{\"full_name\": \"{}\"}}", "a".repeat(300 * 1024)))
        .send()
        .await
        .expect("send");
    assert_error(
        &parts(huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
}

/// `limit` and `offset` were documented as required *path* parameters (the `IntoParams`
/// default), so no client could list users as documented and schemathesis' out-of-range
/// offsets were never sent.
#[sqlx::test(migrator = "users::MIGRATOR")]
async fn list_parameters_are_optional_query_parameters_with_their_bounds(pool: PgPool) {
    let app = spawn_app(pool).await;
    let doc = document(&app).await;
    let params = doc["paths"]["/users"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let find = |name: &str| {
        params
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not documented"))
    };
    let limit = find("limit");
    assert_eq!(
        (&limit["in"], &limit["required"]),
        (&json!("query"), &json!(false))
    );
    assert_eq!(limit["schema"]["type"], "integer");
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(100))
    );
    let offset = find("offset");
    assert_eq!(
        (&offset["in"], &offset["required"]),
        (&json!("query"), &json!(false))
    );
    assert_eq!(offset["schema"]["minimum"], 0);
    let id = &doc["paths"]["/users/{id}"]["get"]["parameters"][0];
    assert_eq!(
        (&id["in"], &id["schema"]["minimum"]),
        (&json!("path"), &json!(1))
    );

    let admin = app.admin_token().await;
    for bad in [
        "limit=0",
        "limit=101",
        "offset=-1",
        "offset=9223372036854775808",
    ] {
        assert_error(
            &app.get(&format!("/users?{bad}"), Some(&admin)).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        );
    }
    let (status, page) = app.get("/users?limit=100&offset=0", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        (page["limit"].as_i64(), page["offset"].as_i64()),
        (Some(100), Some(0))
    );
}

/// The request bodies said every field was optional and nullable, while the service requires
/// them (422): schemathesis' schema-valid `{}` was refused.
#[sqlx::test(migrator = "users::MIGRATOR")]
async fn request_bodies_document_what_the_service_requires(pool: PgPool) {
    let app = spawn_app(pool).await;
    let doc = document(&app).await;
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    let register = schema("RegisterRequest");
    assert_eq!(
        register["required"],
        json!(["email", "password", "full_name"])
    );
    assert_eq!(register["properties"]["email"]["type"], "string");
    assert_eq!(register["properties"]["email"]["format"], "email");
    assert_eq!(
        (
            &register["properties"]["password"]["minLength"],
            &register["properties"]["password"]["maxLength"]
        ),
        (&json!(8), &json!(1024))
    );
    assert_eq!(register["properties"]["full_name"]["maxLength"], 200);
    assert!(register["properties"]["full_name"]["pattern"].is_string());
    assert_eq!(
        schema("LoginRequest")["required"],
        json!(["email", "password"])
    );
    assert_eq!(
        schema("LoginForm")["required"],
        json!(["username", "password"])
    );
    assert_eq!(
        schema("RefreshRequest")["required"],
        json!(["refresh_token"])
    );
    // Optional here, and null is taken as "unchanged".
    assert!(schema("UpdateMeRequest")["required"].is_null());

    for body in [
        json!({}),
        json!({"email": null, "password": "password123", "full_name": "A"}),
        json!({"email": "a@example.com", "password": "short", "full_name": "A"}),
        json!({"email": "a@example.com", "password": "password123", "full_name": "   "}),
        json!({"email": "a@example.com", "password": "password123", "full_name": "a\u{7}b"}),
    ] {
        assert_error(
            &app.post("/auth/register", &body, None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        );
    }
    for (path, body) in [
        ("/auth/login", json!({})),
        ("/auth/login", json!({"email": "  ", "password": "x"})),
        ("/auth/refresh", json!({})),
        ("/auth/logout", json!({})),
    ] {
        assert_error(
            &app.post(path, &body, None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        );
    }
    let (status, user) = app
        .post(
            "/auth/register",
            &json!({"email": "Doc@Example.com", "password": "password123", "full_name": " Ada "}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    assert_eq!(user["full_name"], "Ada");
}

/// serde reads a struct from an array of its fields too: `[null, null]` was a valid
/// `PATCH /users/me` and `PATCH /users/{id}` (200) though the document says "object".
#[sqlx::test(migrator = "users::MIGRATOR")]
async fn a_body_that_is_an_array_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin_token().await;
    let (id, token, _) = app.user("array@example.com").await;
    let array = json!([null, null]);
    for (path, token) in [
        ("/users/me".to_owned(), &token),
        (format!("/users/{id}"), &admin),
    ] {
        let got = app.patch(&path, &array, Some(token)).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        assert_eq!(got.1["errors"][0]["field"], "body", "{}", got.1);
    }
    let (status, me) = app.patch("/users/me", &json!({}), Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{me}");
}
