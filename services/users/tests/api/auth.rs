//! Registration, login, refresh rotation and logout.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn register_creates_a_user_whatever_role_the_client_claims(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (status, body) = app
        .post(
            "/auth/register",
            &json!({"email": "  Alice@Example.COM ", "password": "password123", "full_name": " Alice ",
                    "role": "admin", "is_active": false}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email"], "alice@example.com");
    assert_eq!(body["full_name"], "Alice");
    assert_eq!(body["role"], "user");
    assert!(body["id"].as_i64().is_some_and(|id| id > 0));
    assert!(body.get("password_hash").is_none() && body.get("password").is_none());

    let (status, tokens) = app.login("alice@example.com", "password123").await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "bearer");
    assert_eq!(tokens["expires_in"], 900);
    let (status, me) = app.get("/users/me", tokens["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["role"], "user");
    assert_eq!(me["is_active"], true);
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn bad_registrations_are_422_with_field_errors_and_write_nothing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let before = app.user_count().await;
    let cases = [
        (json!({}), vec!["email", "password", "full_name"]),
        (
            json!({"email": "not-an-email", "password": "password123", "full_name": "A"}),
            vec!["email"],
        ),
        (
            json!({"email": "a@example.com", "password": "short", "full_name": "A"}),
            vec!["password"],
        ),
        (
            json!({"email": "a@example.com", "password": "password123", "full_name": "   "}),
            vec!["full_name"],
        ),
        (
            json!({"email": "a@example.com", "password": "password123", "full_name": "x".repeat(201)}),
            vec!["full_name"],
        ),
        (
            json!({"email": 42, "password": "password123", "full_name": "A"}),
            vec!["email"],
        ),
        (
            json!({"email": "a@example.com", "password": "p".repeat(2000), "full_name": "A"}),
            vec!["password"],
        ),
    ];
    for (body, fields) in cases {
        let got = app.post("/auth/register", &body, None).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
        let named: Vec<&str> = got.1["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        for f in fields {
            assert!(named.contains(&f), "{f} not reported for {body}: {}", got.1);
        }
    }
    let raw = app
        .client
        .post(app.url("/auth/register"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    let got = parts(raw).await;
    assert_error(&got, StatusCode::BAD_REQUEST, "validation_error");
    assert_eq!(app.user_count().await, before, "nothing may be written");
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn a_taken_email_is_409_case_insensitively(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.register("bob@example.com", "password123").await;
    let got = app
        .post(
            "/auth/register",
            &json!({"email": "BOB@example.com", "password": "password456", "full_name": "B"}),
            None,
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "email_taken");
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn wrong_password_and_unknown_email_get_the_same_answer(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.register("carol@example.com", "password123").await;
    let wrong = app.login("carol@example.com", "wrong-password").await;
    let unknown = app.login("nobody@example.com", "password123").await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(wrong, unknown, "the two failures must be indistinguishable");
    let got = app
        .post("/auth/login", &json!({"email": "", "password": ""}), None)
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
    let huge = app
        .post(
            "/auth/login",
            &json!({"email": format!("{}@example.com", "a".repeat(5000)), "password": "x"}),
            None,
        )
        .await;
    assert_error(&huge, StatusCode::UNPROCESSABLE_ENTITY, "validation_error");
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn the_oauth2_password_form_logs_in(pool: PgPool) {
    let app = spawn_app(pool).await;
    let res = app
        .client
        .post(app.url("/auth/login"))
        .form(&[
            ("grant_type", "password"),
            ("username", ADMIN_EMAIL),
            ("password", ADMIN_PASSWORD),
        ])
        .send()
        .await
        .expect("request");
    let (status, body) = parts(res).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "bearer");
    let (status, me) = app.get("/users/me", body["access_token"].as_str()).await;
    assert_eq!(
        (status, me["role"].as_str()),
        (StatusCode::OK, Some("admin"))
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn refresh_rotates_and_reuse_revokes_the_whole_family(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, _, first) = app.user("dave@example.com").await;

    let (status, second) = app
        .post("/auth/refresh", &json!({"refresh_token": first}), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let second_refresh = second["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_ne!(second_refresh, first);
    let (status, _) = app.get("/users/me", second["access_token"].as_str()).await;
    assert_eq!(status, StatusCode::OK);

    // The first token was used: presenting it again is theft or a bug, and kills the family.
    let reuse = app
        .post("/auth/refresh", &json!({"refresh_token": first}), None)
        .await;
    assert_error(&reuse, StatusCode::UNAUTHORIZED, "invalid_token");
    let after = app
        .post(
            "/auth/refresh",
            &json!({"refresh_token": second_refresh}),
            None,
        )
        .await;
    assert_error(&after, StatusCode::UNAUTHORIZED, "invalid_token");

    // Another login starts a fresh family that still works.
    let (status, tokens) = app.login("dave@example.com", "password123").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post(
            "/auth/refresh",
            &json!({"refresh_token": tokens["refresh_token"]}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn concurrent_refreshes_of_one_token_yield_at_most_one_pair(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, _, token) = app.user("race@example.com").await;
    let body = json!({"refresh_token": token});
    let attempts = (0..8).map(|_| app.post("/auth/refresh", &body, None));
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    assert!(ok <= 1, "{ok} refreshes succeeded with one token");
    assert!(
        results
            .iter()
            .all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED)
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn logout_revokes_the_refresh_token(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, access, refresh) = app.user("erin@example.com").await;
    let (status, _) = app
        .post(
            "/auth/logout",
            &json!({"refresh_token": refresh}),
            Some(&access),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = app
        .post("/auth/refresh", &json!({"refresh_token": refresh}), None)
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "invalid_token");
    // Unknown tokens are accepted silently, with or without an access token.
    let (status, _) = app
        .post("/auth/logout", &json!({"refresh_token": "unknown"}), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn logins_are_throttled_per_ip_and_email_through_redis(pool: PgPool) {
    let app = spawn_app_with(pool, &[("ECOM_RATE_LIMIT_LOGIN", "3/minute")]).await;
    app.register("frank@example.com", "password123").await;
    for _ in 0..3 {
        let (status, _) = app.login("frank@example.com", "wrong-password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let res = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"email": "FRANK@example.com", "password": "password123"}))
        .send()
        .await
        .expect("request");
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After header");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let got = parts(res).await;
    assert_error(&got, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    // One budget per (IP, e-mail) pair: another account from the same client is not throttled.
    let (status, _) = app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        app.metrics()
            .await
            .contains(r#"rate_limited_total{service="users",limit="login"} 1"#)
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn the_login_budget_is_shared_by_replicas(pool: PgPool) {
    // Two replicas on one Redis key space: attempts on either spend the same budget.
    let a = spawn_app_with(pool.clone(), &[("ECOM_RATE_LIMIT_LOGIN", "2/minute")]).await;
    let prefix = a.redis_prefix.clone();
    let b = spawn_app_with(
        pool,
        &[
            ("ECOM_RATE_LIMIT_LOGIN", "2/minute"),
            ("ECOM_REDIS_PREFIX", &prefix),
        ],
    )
    .await;
    assert_eq!(
        a.login(ADMIN_EMAIL, "wrong-password").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        b.login(ADMIN_EMAIL, "wrong-password").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_error(
        &a.login(ADMIN_EMAIL, ADMIN_PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn with_redis_down_logins_fail_closed_with_503_not_500(pool: PgPool) {
    let app = spawn_app_with(pool, &[("ECOM_REDIS_URL", "redis://127.0.0.1:1")]).await;
    let res = app
        .client
        .post(app.url("/auth/login"))
        .json(&json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("request");
    assert!(res.headers().contains_key("retry-after"));
    assert_error(
        &parts(res).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    );
    // Registration does not need Redis.
    app.register("gina@example.com", "password123").await;
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn deactivated_users_cannot_log_in_or_refresh(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin_token().await;
    let (id, access, refresh) = app.user("hank@example.com").await;
    let (status, body) = app
        .patch(
            &format!("/users/{id}"),
            &json!({"is_active": false}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        (status, &body["is_active"]),
        (StatusCode::OK, &json!(false)),
        "{body}"
    );
    assert_error(
        &app.login("hank@example.com", "password123").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );
    assert_error(
        &app.post("/auth/refresh", &json!({"refresh_token": refresh}), None)
            .await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    );
    assert_eq!(
        app.get("/users/me", Some(&access)).await.0,
        StatusCode::UNAUTHORIZED
    );
}
