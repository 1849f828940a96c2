use std::sync::Arc;

use ecom_shared::{auth::JwtVerifier, service_tokens::ServiceTokens};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use ecom_shared::testing::{
    admin, assert_error, parts, redis_url, sample, service_env as vars, token, verifier,
};

pub const GOOD_CARD: &str = "4242424242424242";

pub struct TestApp {
    pub base: String,
    pub grpc_url: String,
    pub orders_base: String,
    pub products_base: String,
    pub client: reqwest::Client,
    /// Payments' database.
    pub pool: PgPool,
    pub orders_pool: PgPool,
    pub products_pool: PgPool,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn tokens(service: &str) -> Arc<ServiceTokens> {
    Arc::new(ServiceTokens::fixed(ecom_shared::testing::service_token(
        service,
    )))
}

/// The environment of each service of a test platform.
#[derive(Default)]
pub struct Env<'a> {
    pub payments: &'a [(&'a str, &'a str)],
    pub orders: &'a [(&'a str, &'a str)],
    pub products: &'a [(&'a str, &'a str)],
}

pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, Env::default()).await
}

/// Products, Orders, then Payments, each on its own database and wired over gRPC.
pub async fn spawn_app_with(pool: PgPool, env: Env<'_>) -> TestApp {
    ecom_shared::telemetry::init_for_tests();
    let shutdown = CancellationToken::new();
    let products_pool = ecom_shared::testing::sibling_database(&pool, "products").await;
    let orders_pool = ecom_shared::testing::sibling_database(&pool, "orders").await;

    let products = start_products(products_pool.clone(), verifier(), env.products, &shutdown).await;
    let orders = start_orders(
        orders_pool.clone(),
        verifier(),
        Some(tokens("orders")),
        &[
            &[("ECOM_PRODUCTS_GRPC_URL", products.grpc.as_str())],
            env.orders,
        ]
        .concat(),
        &shutdown,
    )
    .await;
    let (products_base, orders_base, orders_grpc) = (products.http, orders.http, orders.grpc);

    let config = payments::Config::read(vars(
        &[
            ("ECOM_ENV", "test"),
            ("ECOM_BIND_ADDRESS", "127.0.0.1"),
            ("ECOM_PAYMENTS_HTTP_PORT", "0"),
            ("ECOM_PAYMENTS_GRPC_PORT", "0"),
            ("ECOM_OUTBOX_POLL_MS", "50"),
            ("ECOM_OUTBOX_GRACE_MS", "200"),
            ("ECOM_ORDERS_GRPC_URL", &orders_grpc),
        ],
        env.payments,
    ))
    .expect("payments config");
    let app =
        payments::Application::build_with(config, pool.clone(), verifier(), tokens("payments"))
            .await
            .expect("payments");
    let base = format!("http://127.0.0.1:{}", app.http_port());
    let grpc_url = format!("http://127.0.0.1:{}", app.grpc_port());
    tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        base,
        grpc_url,
        orders_base,
        products_base,
        client: reqwest::Client::new(),
        pool,
        orders_pool,
        products_pool,
        shutdown,
    }
}

/// Where a service started in this process listens.
pub struct Started {
    pub http: String,
    pub grpc: String,
}

fn started(http: u16, grpc: u16) -> Started {
    Started {
        http: format!("http://127.0.0.1:{http}"),
        grpc: format!("http://127.0.0.1:{grpc}"),
    }
}

/// A Products service on its own database, verifying tokens with `verifier`.
pub async fn start_products(
    pool: PgPool,
    verifier: Arc<JwtVerifier>,
    env: &[(&str, &str)],
    shutdown: &CancellationToken,
) -> Started {
    let config = products::Config::read(vars(
        &[
            ("ECOM_ENV", "test"),
            ("ECOM_BIND_ADDRESS", "127.0.0.1"),
            ("ECOM_PRODUCTS_HTTP_PORT", "0"),
            ("ECOM_PRODUCTS_GRPC_PORT", "0"),
            ("ECOM_RESERVATION_SWEEP_MS", "100"),
        ],
        env,
    ))
    .expect("products config");
    let app = products::Application::build_with(config, pool, verifier)
        .await
        .expect("products");
    let addresses = started(app.http_port(), app.grpc_port());
    tokio::spawn(app.run(shutdown.clone()));
    addresses
}

/// An Orders service on its own database (`env` names its Products). Its service identity is
/// `tokens`, or else real tokens from the Users service its configuration names.
pub async fn start_orders(
    pool: PgPool,
    verifier: Arc<JwtVerifier>,
    tokens: Option<Arc<ServiceTokens>>,
    env: &[(&str, &str)],
    shutdown: &CancellationToken,
) -> Started {
    let config = orders::Config::read(vars(
        &[
            ("ECOM_ENV", "test"),
            ("ECOM_BIND_ADDRESS", "127.0.0.1"),
            ("ECOM_ORDERS_HTTP_PORT", "0"),
            ("ECOM_ORDERS_GRPC_PORT", "0"),
            ("ECOM_ORDER_SWEEP_MS", "100"),
        ],
        env,
    ))
    .expect("orders config");
    let tokens = tokens.unwrap_or_else(|| {
        Arc::new(ServiceTokens::for_service(&config.common).expect("service tokens"))
    });
    let app = orders::Application::build_with(config, pool, verifier, tokens)
        .await
        .expect("orders");
    let addresses = started(app.http_port(), app.grpc_port());
    tokio::spawn(app.run(shutdown.clone()));
    addresses
}

pub fn card(number: &str) -> Value {
    json!({"number": number, "exp_month": 12, "exp_year": 2040, "cvc": "123"})
}

impl TestApp {
    async fn call(
        &self,
        method: Method,
        url: String,
        body: Option<&Value>,
        token: &str,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, url);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        ecom_shared::testing::send(req, body, Some(token)).await
    }

    /// A request to the Payments service.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: &str,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        self.call(method, format!("{}{path}", self.base), body, token, key)
            .await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None, token, None).await
    }

    /// `POST /payments` for `order_id` with `card`.
    pub async fn pay(
        &self,
        token: &str,
        order_id: i64,
        card: &Value,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        self.send(
            Method::POST,
            "/payments",
            Some(&json!({"order_id": order_id, "card": card})),
            token,
            key,
        )
        .await
    }

    /// An order of `items` [(product, quantity)] as `token`; returns its id.
    pub async fn order(&self, token: &str, items: &[(i64, i64)]) -> i64 {
        let items: Vec<Value> = items
            .iter()
            .map(|(p, q)| json!({"product_id": p, "quantity": q}))
            .collect();
        let (status, body) = self
            .call(
                Method::POST,
                format!("{}/orders", self.orders_base),
                Some(&json!({"items": items})),
                token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().expect("id")
    }

    /// The order as its owner sees it over REST.
    pub async fn order_of(&self, token: &str, id: i64) -> Value {
        self.call(
            Method::GET,
            format!("{}/orders/{id}", self.orders_base),
            None,
            token,
            None,
        )
        .await
        .1
    }

    pub async fn cancel(&self, token: &str, id: i64) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            format!("{}/orders/{id}/cancel", self.orders_base),
            None,
            token,
            None,
        )
        .await
    }

    /// Creates a product in the Products service and returns its id.
    pub async fn product(&self, name: &str, price: &str, stock: i64) -> i64 {
        let (status, body) = self
            .call(
                Method::POST,
                format!("{}/products", self.products_base),
                Some(&json!({"name": name, "price": price, "stock": stock})),
                &admin(),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().expect("id")
    }

    /// What Products says can still be bought.
    pub async fn stock(&self, product_id: i64) -> i64 {
        let res = self
            .client
            .get(format!("{}/products/{product_id}", self.products_base))
            .send()
            .await
            .expect("get");
        parts(res).await.1["stock"].as_i64().expect("stock")
    }

    /// Units physically in the warehouse (sold units are gone from it).
    pub async fn on_hand(&self, product_id: i64) -> i64 {
        sqlx::query_scalar("SELECT on_hand FROM products WHERE id = $1")
            .bind(product_id)
            .fetch_one(&self.products_pool)
            .await
            .expect("on hand")
    }

    pub async fn payment_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM payments")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    pub async fn metrics(&self) -> String {
        self.metrics_of(&self.base).await
    }

    /// The Orders service's metrics.
    pub async fn orders_metrics(&self) -> String {
        self.metrics_of(&self.orders_base).await
    }

    async fn metrics_of(&self, base: &str) -> String {
        self.client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// Waits until the order has `status` (the outbox delivers asynchronously).
    pub async fn wait_for_order(&self, token: &str, id: i64, status: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let now = self.order_of(token, id).await;
            if now["status"] == status {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "order {id} is {}, expected {status}",
                now["status"]
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
