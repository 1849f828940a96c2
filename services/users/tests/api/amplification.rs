//! What one client can make the password hasher do: registrations are budgeted per client
//! address (across replicas, in Redis), and a saturated hasher refuses at once with 503 +
//! `Retry-After` instead of queueing without bound.

use ecom_proto::users::v1::{RegisterRequest, user_service_client::UserServiceClient};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tonic::{Code, Request};

use crate::helpers::*;

fn retry_after(res: &reqwest::Response) -> Option<u64> {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

async fn register_from(
    app: &TestApp,
    email: &str,
    forwarded_for: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/auth/register"))
        .json(&json!({"email": email, "password": "password123", "full_name": "Test User"}));
    if let Some(ip) = forwarded_for {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.expect("request")
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn registrations_over_the_budget_are_429_with_retry_after(pool: PgPool) {
    let app = spawn_app_with(pool, &[("ECOM_RATE_LIMIT_REGISTER", "3/hour")]).await;
    let before = app.user_count().await;
    for i in 0..3 {
        let res = register_from(&app, &format!("reg{i}@example.com"), None).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let res = register_from(&app, "reg3@example.com", None).await;
    let wait = retry_after(&res).expect("Retry-After header");
    // 3/hour: the next unit is about 20 minutes away.
    assert!((60..=1200).contains(&wait), "{wait}");
    assert_error(
        &parts(res).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
    assert_eq!(
        app.user_count().await,
        before + 3,
        "nothing created over the budget"
    );
    // A client cannot buy a new budget by claiming another address (the peer is not a trusted
    // proxy).
    let res = register_from(&app, "reg4@example.com", Some("203.0.113.9")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // Invalid input is answered before the budget (it costs no hash).
    let (status, _) = app
        .post(
            "/auth/register",
            &json!({"email": "reg5@example.com", "password": "short", "full_name": "T"}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        app.metrics()
            .await
            .contains(r#"rate_limited_total{service="users",limit="register"} 2"#)
    );
    // Logins are not registrations: their own budget.
    assert_eq!(
        app.login("reg0@example.com", "password123").await.0,
        StatusCode::OK
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn the_registration_budget_is_per_client_behind_a_trusted_proxy_and_over_grpc(pool: PgPool) {
    let app = spawn_app_with(
        pool,
        &[
            ("ECOM_RATE_LIMIT_REGISTER", "2/hour"),
            ("ECOM_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    )
    .await;
    // Over HTTP through the proxy (the gateway's REST facade), for client A.
    for i in 0..2 {
        let res = register_from(&app, &format!("a{i}@example.com"), Some("203.0.113.1")).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    // Over gRPC (the gateway's GraphQL), client A's budget is the same one: spent.
    let mut grpc = UserServiceClient::connect(app.grpc_url.clone())
        .await
        .expect("connect");
    let register = |email: &str, ip: &str| {
        let mut r = Request::new(RegisterRequest {
            email: email.to_owned(),
            password: "password123".to_owned(),
            full_name: "Test User".to_owned(),
        });
        r.metadata_mut()
            .insert("x-forwarded-for", ip.parse().expect("metadata"));
        r
    };
    let limited = grpc
        .register(register("a2@example.com", "203.0.113.1"))
        .await
        .expect_err("client A's budget is spent");
    assert_eq!(
        (
            limited.code(),
            ecom_shared::testing::grpc_error_code(&limited)
        ),
        (Code::ResourceExhausted, Some("rate_limited"))
    );
    let wait: u64 = limited
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("retry-after metadata");
    assert!((60..=1800).contains(&wait), "{wait}");
    // Client B behind the same proxy has its own budget.
    grpc.register(register("b0@example.com", "203.0.113.2"))
        .await
        .expect("another client");
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn a_saturated_hasher_answers_503_at_once_instead_of_queueing(pool: PgPool) {
    // One hash at a time and one waiting: a burst of logins overflows it at once.
    let app = spawn_app_with(
        pool,
        &[("ECOM_HASHER_CONCURRENCY", "1"), ("ECOM_HASHER_QUEUE", "1")],
    )
    .await;
    let burst = (0..24).map(|i| {
        let client = app.client.clone();
        let url = app.url(if i % 2 == 0 { "/auth/login" } else { "/auth/register" });
        let body = if i % 2 == 0 {
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        } else {
            json!({"email": format!("burst{i}@example.com"), "password": "password123", "full_name": "B"})
        };
        async move { client.post(url).json(&body).send().await.expect("request") }
    });
    let responses = futures::future::join_all(burst).await;
    let mut refused = 0;
    for res in responses {
        match res.status() {
            StatusCode::OK | StatusCode::CREATED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                refused += 1;
                assert!(retry_after(&res).is_some_and(|s| s >= 1), "Retry-After");
                assert_error(
                    &parts(res).await,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "service_unavailable",
                );
            }
            other => panic!("unexpected {other}: {:?}", parts(res).await),
        }
    }
    assert!(
        refused > 0,
        "24 concurrent hashes through 1 slot + 1 queued: some must be refused"
    );
    assert!(refused < 24, "the admitted ones are served");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!("password_hashes_rejected_total {refused}")),
        "{metrics}"
    );
    // Once the burst is over, the hasher serves again.
    assert_eq!(
        app.login(ADMIN_EMAIL, ADMIN_PASSWORD).await.0,
        StatusCode::OK
    );
}
