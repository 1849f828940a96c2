use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use ecom_shared::testing::{
    admin, assert_error, parts, sample, service_env as vars, token, verifier,
};

pub struct TestApp {
    pub base: String,
    pub grpc_url: String,
    pub products_base: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, &[], &[]).await
}

/// Products first (with `products_env`), then Orders pointed at it (with `orders_env`).
pub async fn spawn_app_with(
    pool: PgPool,
    orders_env: &[(&str, &str)],
    products_env: &[(&str, &str)],
) -> TestApp {
    ecom_shared::telemetry::init_for_tests();
    let shutdown = CancellationToken::new();
    let products_pool = ecom_shared::testing::sibling_database(&pool, "products").await;
    let products_config = products::Config::read(vars(
        &[
            ("ECOM_ENV", "test"),
            ("ECOM_BIND_ADDRESS", "127.0.0.1"),
            ("ECOM_PRODUCTS_HTTP_PORT", "0"),
            ("ECOM_PRODUCTS_GRPC_PORT", "0"),
            ("ECOM_RESERVATION_SWEEP_MS", "100"),
        ],
        products_env,
    ))
    .expect("products config");
    let products_app =
        products::Application::build_with(products_config, products_pool, verifier())
            .await
            .expect("products");
    let products_base = format!("http://127.0.0.1:{}", products_app.http_port());
    let products_grpc = format!("http://127.0.0.1:{}", products_app.grpc_port());
    tokio::spawn(products_app.run(shutdown.clone()));

    let mut orders_vars = vec![
        ("ECOM_ENV", "test"),
        ("ECOM_BIND_ADDRESS", "127.0.0.1"),
        ("ECOM_ORDERS_HTTP_PORT", "0"),
        ("ECOM_ORDERS_GRPC_PORT", "0"),
        ("ECOM_ORDER_SWEEP_MS", "100"),
    ];
    orders_vars.push(("ECOM_PRODUCTS_GRPC_URL", &products_grpc));
    let config = orders::Config::read(vars(&orders_vars, orders_env)).expect("orders config");
    let app = orders::Application::build_with(
        config,
        pool.clone(),
        verifier(),
        std::sync::Arc::new(ecom_shared::service_tokens::ServiceTokens::fixed(
            ecom_shared::testing::service_token("orders"),
        )),
    )
    .await
    .expect("orders");
    let base = format!("http://127.0.0.1:{}", app.http_port());
    let grpc_url = format!("http://127.0.0.1:{}", app.grpc_port());
    tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        base,
        grpc_url,
        products_base,
        client: reqwest::Client::new(),
        pool,

        shutdown,
    }
}

impl TestApp {
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        token: &str,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        ecom_shared::testing::send(req, body, Some(token)).await
    }

    /// `POST /orders` as `token` with `items` [(product, quantity)].
    pub async fn order(
        &self,
        token: &str,
        items: &[(i64, i64)],
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let items: Vec<Value> = items
            .iter()
            .map(|(p, q)| json!({"product_id": p, "quantity": q}))
            .collect();
        self.send(
            Method::POST,
            "/orders",
            Some(&json!({"items": items})),
            token,
            key,
        )
        .await
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None, token, None).await
    }

    /// Creates a product in the Products service and returns its id.
    pub async fn product(&self, name: &str, price: &str, stock: i64) -> i64 {
        let res = self
            .client
            .post(format!("{}/products", self.products_base))
            .bearer_auth(admin())
            .json(&json!({"name": name, "price": price, "stock": stock}))
            .send()
            .await
            .expect("create product");
        let (status, body) = parts(res).await;
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

    pub async fn order_count(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM orders")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}
