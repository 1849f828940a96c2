//! Crashes, with real processes: Users, Products and Orders run in this process (Users is
//! real, so user tokens and service tokens are real), and the service that dies runs as a
//! child process from its own binary.

use std::{
    collections::HashMap,
    path::PathBuf,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use ecom_shared::auth::JwtVerifier;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::helpers::{parts, redis_url, start_orders, start_products, vars};

fn free_port() -> u16 {
    ecom_shared::testing::child_port()
}

/// The URL of a database on the test server (for a child process).
fn database_url(pool: &PgPool) -> String {
    let server = std::env::var("DATABASE_URL").expect("DATABASE_URL (set by sqlx::test)");
    let name = pool
        .connect_options()
        .get_database()
        .expect("name")
        .to_owned();
    ecom_shared::config::with_database(&server, &name).expect("url")
}

struct Platform {
    users_http: String,
    users_grpc: String,
    products_http: String,
    products_grpc: String,
    orders_pool: PgPool,
    products_pool: PgPool,
    client: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Platform {
    /// Users and Products (with `products_env`), and Orders unless it is the one to crash;
    /// Orders' HTTP and gRPC addresses when it runs here.
    async fn start(
        pool: &PgPool,
        with_orders: bool,
        products_env: &[(&str, &str)],
    ) -> (Self, Option<(String, String)>) {
        ecom_shared::telemetry::init_for_tests();
        let shutdown = CancellationToken::new();
        let users_pool = ecom_shared::testing::sibling_database(pool, "users").await;
        let products_pool = ecom_shared::testing::sibling_database(pool, "products").await;
        let orders_pool = ecom_shared::testing::sibling_database(pool, "orders").await;

        let config = users::Config::read(vars(
            &[
                ("ECOM_ENV", "test"),
                ("ECOM_BIND_ADDRESS", "127.0.0.1"),
                ("ECOM_USERS_HTTP_PORT", "0"),
                ("ECOM_USERS_GRPC_PORT", "0"),
                ("ECOM_RATE_LIMIT_LOGIN", "1000/minute"),
            ],
            &[],
        ))
        .expect("users config");
        let users = users::Application::build_with(config, users_pool)
            .await
            .expect("users");
        let users_http = format!("http://127.0.0.1:{}", users.http_port());
        let users_grpc = format!("http://127.0.0.1:{}", users.grpc_port());
        tokio::spawn(users.run(shutdown.clone()));
        let jwks = format!("{users_http}/.well-known/jwks.json");
        let verifier = || Arc::new(JwtVerifier::remote(jwks.clone()));

        let products =
            start_products(products_pool.clone(), verifier(), products_env, &shutdown).await;
        let orders = if with_orders {
            let orders = start_orders(
                orders_pool.clone(),
                verifier(),
                None,
                &[
                    ("ECOM_PRODUCTS_GRPC_URL", &products.grpc),
                    ("ECOM_USERS_GRPC_URL", &users_grpc),
                ],
                &shutdown,
            )
            .await;
            Some((orders.http, orders.grpc))
        } else {
            None
        };
        let (products_http, products_grpc) = (products.http, products.grpc);
        (
            Self {
                users_http,
                users_grpc,
                products_http,
                products_grpc,
                orders_pool,
                products_pool,
                client: reqwest::Client::new(),
                shutdown,
            },
            orders,
        )
    }

    /// A real account's access token.
    async fn login(&self, email: &str) -> String {
        let password = "password123";
        let _ = self
            .client
            .post(format!("{}/auth/register", self.users_http))
            .json(&json!({"email": email, "password": password, "full_name": "Test"}))
            .send()
            .await
            .expect("register");
        let (status, body) = parts(
            self.client
                .post(format!("{}/auth/login", self.users_http))
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .expect("login"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().expect("token").to_owned()
    }

    async fn product(&self, stock: i64) -> i64 {
        let admin = {
            let (_, body) = parts(
                self.client
                    .post(format!("{}/auth/login", self.users_http))
                    .json(&json!({"email": "admin@example.com", "password": "admin12345"}))
                    .send()
                    .await
                    .expect("login"),
            )
            .await;
            body["access_token"]
                .as_str()
                .expect("admin token")
                .to_owned()
        };
        let (status, body) = parts(
            self.client
                .post(format!("{}/products", self.products_http))
                .bearer_auth(admin)
                .json(&json!({"name": "Crash mug", "price": "3.00", "stock": stock}))
                .send()
                .await
                .expect("product"),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().expect("id")
    }

    async fn stock_and_on_hand(&self, product: i64) -> (i64, i64) {
        sqlx::query_as("SELECT on_hand - reserved, on_hand FROM products WHERE id = $1")
            .bind(product)
            .fetch_one(&self.products_pool)
            .await
            .expect("stock")
    }

    fn common_env(&self) -> HashMap<&'static str, String> {
        HashMap::from([
            ("ECOM_ENV", "test".to_owned()),
            ("ECOM_BIND_ADDRESS", "127.0.0.1".to_owned()),
            ("ECOM_REDIS_URL", redis_url()),
            (
                "ECOM_REDIS_PREFIX",
                format!("test-{}", uuid::Uuid::new_v4()),
            ),
            (
                "ECOM_JWKS_URL",
                format!("{}/.well-known/jwks.json", self.users_http),
            ),
            ("ECOM_USERS_GRPC_URL", self.users_grpc.clone()),
            ("ECOM_LOG_FORMAT", "json".to_owned()),
        ])
    }
}

fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_payments")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

fn spawn(name: &str, env: &HashMap<&'static str, String>) -> Child {
    Command::new(binary(name))
        .env_remove("ECOM_FAULT")
        .env_remove("ECOM_DATABASE_URL")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn")
}

fn spawn_faulty(name: &str, env: &HashMap<&'static str, String>, fault: &str) -> Child {
    let mut env = env.clone();
    env.insert("ECOM_FAULT", fault.to_owned());
    spawn(name, &env)
}

async fn wait_live(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/health/live"))
            .send()
            .await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "no answer on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_exit(child: &mut Child) -> i32 {
    tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the process did not exit")
        .expect("wait")
        .code()
        .unwrap_or(-1)
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn payments_dying_between_charge_and_notify_still_pays_the_order_once(pool: PgPool) {
    let (platform, orders) = Platform::start(&pool, true, &[]).await;
    let orders = orders.expect("orders");
    let alice = platform.login("alice@example.com").await;
    let mug = platform.product(10).await;

    let (orders_http, orders_grpc) = orders;
    let (status, order) = parts(
        platform
            .client
            .post(format!("{orders_http}/orders"))
            .bearer_auth(&alice)
            .json(&json!({"items": [{"product_id": mug, "quantity": 2}]}))
            .send()
            .await
            .expect("order"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{order}");
    let order_id = order["id"].as_i64().expect("id");

    let http = free_port();
    let mut env = platform.common_env();
    env.insert("ECOM_PAYMENTS_DATABASE_URL", database_url(&pool));
    env.insert("ECOM_PAYMENTS_HTTP_PORT", http.to_string());
    env.insert("ECOM_PAYMENTS_GRPC_PORT", free_port().to_string());
    env.insert("ECOM_ORDERS_GRPC_URL", orders_grpc.clone());
    env.insert("ECOM_OUTBOX_POLL_MS", "50".to_owned());
    env.insert("ECOM_OUTBOX_GRACE_MS", "100".to_owned());

    let mut payments = spawn_faulty("payments", &env, "payments.after_commit");
    wait_live(&platform.client, http).await;
    let pay = |key: &'static str| {
        platform
            .client
            .post(format!("http://127.0.0.1:{http}/payments"))
            .bearer_auth(&alice)
            .header("Idempotency-Key", key)
            .json(&json!({"order_id": order_id, "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}}))
            .send()
    };
    assert!(
        pay("crash-1").await.is_err(),
        "the process died mid-request"
    );
    assert_eq!(wait_exit(&mut payments).await, 86);

    // Charged and recorded, but Orders never heard of it.
    let (status, undelivered): (String, i64) = sqlx::query_as(
        "SELECT p.status, (SELECT count(*) FROM outbox WHERE delivered_at IS NULL) FROM payments p",
    )
    .fetch_one(&pool)
    .await
    .expect("payment");
    assert_eq!((status.as_str(), undelivered), ("succeeded", 1));
    let order_status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&platform.orders_pool)
        .await
        .expect("order");
    assert_eq!(order_status, "pending_payment");
    assert_eq!(
        platform.stock_and_on_hand(mug).await,
        (8, 10),
        "still only held"
    );

    // Restarted, the relay finishes the job: paid once, stock committed once.
    let mut payments = spawn("payments", &env);
    wait_live(&platform.client, http).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let order_status: String = sqlx::query_scalar("SELECT status FROM orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&platform.orders_pool)
            .await
            .expect("order");
        if order_status == "paid" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the order was not paid after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(platform.stock_and_on_hand(mug).await, (8, 8));
    // The client's retry with its key gets the payment it made: charged once.
    let (status, replay) = parts(pay("crash-1").await.expect("retry")).await;
    assert_eq!(
        (status, replay["status"].as_str()),
        (StatusCode::OK, Some("succeeded")),
        "{replay}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM payments")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
    payments.kill().await.expect("kill");
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn orders_dying_after_a_reservation_gets_the_stock_back_within_the_ttl(pool: PgPool) {
    // The lifetime is Products' own setting: Orders (which dies) cannot choose it.
    let (platform, _) =
        Platform::start(&pool, false, &[("ECOM_RESERVATION_TTL_SECONDS", "2")]).await;
    let alice = platform.login("alice@example.com").await;
    let mug = platform.product(10).await;

    let http = free_port();
    let mut env = platform.common_env();
    env.insert(
        "ECOM_ORDERS_DATABASE_URL",
        database_url(&platform.orders_pool),
    );
    env.insert("ECOM_ORDERS_HTTP_PORT", http.to_string());
    env.insert("ECOM_ORDERS_GRPC_PORT", free_port().to_string());
    env.insert("ECOM_PRODUCTS_GRPC_URL", platform.products_grpc.clone());
    env.insert("ECOM_RESERVATION_TTL_SECONDS", "2".to_owned());
    let mut orders = spawn_faulty("orders", &env, "orders.exit_after_reserve");
    wait_live(&platform.client, http).await;
    let died = platform
        .client
        .post(format!("http://127.0.0.1:{http}/orders"))
        .bearer_auth(&alice)
        .json(&json!({"items": [{"product_id": mug, "quantity": 4}]}))
        .send()
        .await;
    if let Ok(r) = died {
        panic!(
            "the process should have died mid-request: {:?}",
            parts(r).await
        );
    }
    assert_eq!(wait_exit(&mut orders).await, 86);
    assert_eq!(
        platform.stock_and_on_hand(mug).await,
        (6, 10),
        "held for a dead order"
    );

    let started = Instant::now();
    while platform.stock_and_on_hand(mug).await != (10, 10) {
        assert!(
            started.elapsed() < Duration::from_secs(2 + 10),
            "the stock did not come back within TTL + 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let orders_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&platform.orders_pool)
        .await
        .expect("count");
    assert_eq!(orders_rows, 0, "no order was stored");
}
