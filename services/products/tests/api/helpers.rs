use std::{collections::HashMap, time::Duration};

use ecom_proto::products::v1::product_service_client::ProductServiceClient;
use ecom_shared::config::EnvReader;
use products::{Application, Config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use ecom_shared::testing::{admin, assert_error, sample, service_token, token};

pub struct TestApp {
    pub base: String,
    pub grpc_url: String,
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
    spawn_app_with(pool, &[]).await
}

pub async fn spawn_app_with(pool: PgPool, overrides: &[(&str, &str)]) -> TestApp {
    ecom_shared::telemetry::init_for_tests();
    let redis = std::env::var("ECOM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let mut vars: HashMap<String, String> = [
        ("ECOM_ENV", "test"),
        ("ECOM_BIND_ADDRESS", "127.0.0.1"),
        ("ECOM_PRODUCTS_HTTP_PORT", "0"),
        ("ECOM_PRODUCTS_GRPC_PORT", "0"),
        ("ECOM_RESERVATION_SWEEP_MS", "100"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert("ECOM_REDIS_URL".into(), redis);
    vars.insert(
        "ECOM_REDIS_PREFIX".into(),
        format!("test-{}", uuid::Uuid::new_v4()),
    );
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = Config::read(EnvReader::from_map(vars)).expect("config");
    let app = Application::build_with(config, pool.clone(), ecom_shared::testing::verifier())
        .await
        .expect("app");
    let base = format!("http://127.0.0.1:{}", app.http_port());
    let grpc_url = format!("http://127.0.0.1:{}", app.grpc_port());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        base,
        grpc_url,
        client: reqwest::Client::new(),
        pool,
        shutdown,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        ecom_shared::testing::send(self.client.request(method, self.url(path)), body, token).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    /// Creates a product as admin and returns its id.
    pub async fn create(&self, name: &str, price: &str, stock: i64, category: Option<&str>) -> i64 {
        let body = json!({"name": name, "description": format!("About {name}"), "price": price, "stock": stock, "category": category});
        let (status, p) = self
            .send(
                reqwest::Method::POST,
                "/products",
                Some(&body),
                Some(&admin()),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{p}");
        p["id"].as_i64().expect("id")
    }

    pub async fn stock_of(&self, id: i64) -> i64 {
        let (status, p) = self.get(&format!("/products/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{p}");
        p["stock"].as_i64().expect("stock")
    }

    pub async fn count(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM products")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    pub async fn grpc(&self) -> ProductServiceClient<tonic::transport::Channel> {
        let channel = tonic::transport::Channel::from_shared(self.grpc_url.clone())
            .expect("url")
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .expect("connect");
        ProductServiceClient::new(channel)
    }
}

/// A gRPC request carrying a user's token.
pub fn authed<T>(msg: T) -> tonic::Request<T> {
    ecom_shared::auth::with_bearer(tonic::Request::new(msg), &token(7, "user"))
}

/// A gRPC request carrying the Orders service's token: the only identity stock calls accept.
pub fn as_orders<T>(msg: T) -> tonic::Request<T> {
    ecom_shared::auth::with_bearer(tonic::Request::new(msg), &service_token("orders"))
}
