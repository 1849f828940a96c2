//! End to end: `ecomctl up` as a real subprocess with private PostgreSQL and Redis, a user's
//! first minutes over real HTTP and gRPC, then Ctrl-C: everything stops within 10 s and every
//! port is free. A second `up` keeps the data; `--fresh` wipes it.

mod common;

use common::{Ports, start};

use serde_json::{Value, json};

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = client.post(url).json(&body).send().await.expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn up_runs_the_platform_and_ctrl_c_stops_everything() {
    let dir = std::env::temp_dir().join(format!("ecomctl-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ports = Ports::free();
    let base = format!("http://127.0.0.1:{}", ports.http);
    let client = reqwest::Client::new();

    let mut up = start(&dir, &ports, false);
    up.wait_ready(ports.http).await;
    let table = up.output();
    assert!(
        table.contains(&format!("{base}/docs")),
        "the URL table names Swagger:\n{table}"
    );
    assert!(
        table.contains("admin@example.com / admin12345"),
        "the demo admin is printed:\n{table}"
    );
    assert!(
        table.contains(&format!(
            "  Prometheus http://127.0.0.1:{} ",
            ports.prometheus
        )) || table.contains("  Prometheus not installed"),
        "Prometheus runs on its port (stopped by Ctrl-C with the rest), or the table says how to install it:\n{table}"
    );
    assert!(
        table.contains("   users | "),
        "service logs are streamed with a prefix:\n{table}"
    );

    let (status, user) = post(
        &client,
        format!("{base}/auth/register"),
        json!({"email": "e2e@example.com", "password": "password123", "full_name": "E2E"}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let (status, tokens) = post(
        &client,
        format!("{base}/auth/login"),
        json!({"email": "e2e@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let me: Value = client
        .get(format!("{base}/users/me"))
        .bearer_auth(tokens["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["email"], "e2e@example.com");

    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", ports.grpc))
            .expect("url")
            .connect()
            .await
            .expect("gRPC connect");
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ecom.users.v1.UserService".into(),
        })
        .await
        .expect("gRPC health")
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    // Products: the demo catalogue is there, and an admin token issued by Users (verified by
    // Products through the Users JWKS) can change it; a user's token cannot.
    let shop = format!("http://127.0.0.1:{}", ports.products_http);
    let page: Value = client
        .get(format!("{shop}/products?limit=5"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(
        page["total"].as_i64().is_some_and(|t| t >= 90),
        "the demo catalogue is seeded: {page}"
    );
    let (status, admin) = post(
        &client,
        format!("{base}/auth/login"),
        json!({"email": "admin@example.com", "password": "admin12345"}),
    )
    .await;
    assert_eq!(status, 200, "{admin}");
    let create = |token: String, name: &str| {
        client
            .post(format!("{shop}/products"))
            .bearer_auth(token)
            .json(&json!({"name": name, "price": "12.34", "stock": 3}))
            .send()
    };
    let created = create(
        admin["access_token"].as_str().expect("token").to_owned(),
        "E2E Widget",
    )
    .await
    .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let refused = create(
        tokens["access_token"].as_str().expect("token").to_owned(),
        "Nope",
    )
    .await
    .expect("create");
    assert_eq!(refused.status().as_u16(), 403);

    // Orders: a checkout through the real services reserves stock in Products over gRPC.
    let widget: Value = created.json().await.expect("json");
    let orders = format!("http://127.0.0.1:{}", ports.orders_http);
    let order = client
        .post(format!("{orders}/orders"))
        .bearer_auth(tokens["access_token"].as_str().expect("token"))
        .header("Idempotency-Key", "e2e-1")
        .json(&json!({"items": [{"product_id": widget["id"], "quantity": 2}]}))
        .send()
        .await
        .expect("order");
    assert_eq!(order.status().as_u16(), 201);
    let order: Value = order.json().await.expect("json");
    assert_eq!(
        (order["status"].as_str(), order["total"].as_str()),
        (Some("pending_payment"), Some("24.68"))
    );
    let after: Value = client
        .get(format!("{shop}/products/{}", widget["id"]))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(after["stock"], 1, "3 in stock, 2 reserved");

    // Payments: a charge over real processes; Payments tells Orders as itself (a service
    // token from Users), Orders commits the stock in Products as itself.
    let payments = format!("http://127.0.0.1:{}", ports.payments_http);
    let paid = client
        .post(format!("{payments}/payments"))
        .bearer_auth(tokens["access_token"].as_str().expect("token"))
        .header("Idempotency-Key", "e2e-pay-1")
        .json(&json!({"order_id": order["id"], "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}}))
        .send()
        .await
        .expect("pay");
    assert_eq!(paid.status().as_u16(), 201);
    let paid: Value = paid.json().await.expect("json");
    assert_eq!(
        (paid["status"].as_str(), paid["amount"].as_str()),
        (Some("succeeded"), Some("24.68"))
    );
    let order_now: Value = client
        .get(format!("{orders}/orders/{}", order["id"]))
        .bearer_auth(tokens["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("order")
        .json()
        .await
        .expect("json");
    assert_eq!(order_now["status"], "paid", "{order_now}");
    let ready = client
        .get(format!("{payments}/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status().as_u16(), 200);
    up.interrupt(&ports).await;

    // A second `up` reuses the data.
    let mut again = start(&dir, &ports, false);
    again.wait_ready(ports.http).await;
    let (status, _) = post(
        &client,
        format!("{base}/auth/login"),
        json!({"email": "e2e@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 200, "the account survived a restart");
    again.interrupt(&ports).await;

    // `--fresh` wipes it.
    let mut fresh = start(&dir, &ports, true);
    fresh.wait_ready(ports.http).await;
    let (status, body) = post(
        &client,
        format!("{base}/auth/login"),
        json!({"email": "e2e@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    fresh.interrupt(&ports).await;
    let _ = std::fs::remove_dir_all(&dir);
}
