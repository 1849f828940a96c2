//! `/health/live` and `/health/ready`: ready only when every dependency answers; otherwise 503
//! with a body naming what is down.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc};

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde_json::json;

type Check = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// The dependencies a service needs to answer requests.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, Check)>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check<F, Fut>(mut self, name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        self.checks.push((name, Arc::new(move || Box::pin(f()))));
        self
    }

    /// Runs every check concurrently: name → up.
    pub async fn run(&self) -> BTreeMap<&'static str, bool> {
        let results = futures::future::join_all(
            self.checks
                .iter()
                .map(|(name, c)| async move { (*name, c().await) }),
        )
        .await;
        results.into_iter().collect()
    }
}

pub async fn live() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    let results = readiness.run().await;
    let down: Vec<&str> = results
        .iter()
        .filter(|(_, up)| !**up)
        .map(|(n, _)| *n)
        .collect();
    let checks: BTreeMap<_, _> = results
        .iter()
        .map(|(n, up)| (*n, if *up { "ok" } else { "down" }))
        .collect();
    if down.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": checks})),
        )
            .into_response()
    } else {
        let mut res = (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unavailable",
                "code": "service_unavailable",
                "detail": format!("not ready: {} down", down.join(", ")),
                "checks": checks,
            })),
        )
            .into_response();
        res.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, 5.into());
        res
    }
}

impl Readiness {
    /// The usual pair: the service's database and Redis.
    pub fn database_and_redis(
        pool: sqlx::PgPool,
        redis: std::sync::Arc<crate::redis::Redis>,
    ) -> Self {
        Self::new()
            .check("database", move || {
                let pool = pool.clone();
                async move { crate::db::ping(&pool).await }
            })
            .check("redis", move || {
                let redis = redis.clone();
                async move { redis.ping().await }
            })
    }
}
