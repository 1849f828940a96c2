use std::collections::HashMap;

use ecom_shared::config::EnvReader;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use users::{Application, Config};

pub use ecom_shared::testing::{assert_error, parts};

pub struct TestApp {
    pub base: String,
    pub grpc_url: String,
    pub client: reqwest::Client,
    pub pool: PgPool,
    pub redis_prefix: String,
    shutdown: CancellationToken,
    handle: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub fn redis_url() -> String {
    std::env::var("ECOM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "admin12345";

pub async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, &[]).await
}

/// Starts the service on free ports with `overrides` on top of test defaults.
pub async fn spawn_app_with(pool: PgPool, overrides: &[(&str, &str)]) -> TestApp {
    ecom_shared::telemetry::init_for_tests();
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let mut vars: HashMap<String, String> = [
        ("ECOM_ENV", "test"),
        ("ECOM_BIND_ADDRESS", "127.0.0.1"),
        ("ECOM_USERS_HTTP_PORT", "0"),
        ("ECOM_USERS_GRPC_PORT", "0"),
        ("ECOM_RATE_LIMIT_LOGIN", "1000/minute"),
        // Tests register many accounts from one address; the budget has its own tests.
        ("ECOM_RATE_LIMIT_REGISTER", "1000/minute"),
        ("ECOM_ADMIN_EMAIL", ADMIN_EMAIL),
        ("ECOM_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert("ECOM_REDIS_URL".into(), redis_url());
    vars.insert("ECOM_REDIS_PREFIX".into(), prefix.clone());
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = Config::read(EnvReader::from_map(vars)).expect("test config");
    let app = Application::build_with(config, pool.clone())
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.http_port());
    let grpc_url = format!("http://127.0.0.1:{}", app.grpc_port());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(app.run(shutdown.clone()));
    TestApp {
        base,
        grpc_url,
        client: reqwest::Client::new(),
        pool,
        redis_prefix: prefix,
        shutdown,
        handle: Some(handle),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional JSON body and bearer token.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        ecom_shared::testing::send(self.client.request(method, self.url(path)), body, token).await
    }

    pub async fn post(&self, path: &str, body: &Value, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body), token)
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None, token).await
    }

    pub async fn patch(
        &self,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body), token)
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, None, token).await
    }

    pub async fn register(&self, email: &str, password: &str) -> Value {
        let (status, body) = self
            .post(
                "/auth/register",
                &json!({"email": email, "password": password, "full_name": "Test User"}),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/auth/login",
            &json!({"email": email, "password": password}),
            None,
        )
        .await
    }

    /// Registers and logs in: (user id, access token, refresh token).
    pub async fn user(&self, email: &str) -> (i64, String, String) {
        let user = self.register(email, "password123").await;
        let (status, tokens) = self.login(email, "password123").await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        (
            user["id"].as_i64().expect("id"),
            tokens["access_token"].as_str().expect("access").to_owned(),
            tokens["refresh_token"]
                .as_str()
                .expect("refresh")
                .to_owned(),
        )
    }

    pub async fn admin_token(&self) -> String {
        let (status, tokens) = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        tokens["access_token"].as_str().expect("access").to_owned()
    }

    pub async fn user_count(&self) -> i64 {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM users")
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
}

impl TestApp {
    pub async fn admin_token_with(&self, password: &str) -> String {
        let (status, tokens) = self.login(ADMIN_EMAIL, password).await;
        assert_eq!(status, StatusCode::OK, "{tokens}");
        tokens["access_token"].as_str().expect("access").to_owned()
    }
}
