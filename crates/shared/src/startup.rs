//! The startup every service with a database shares, written once (zero-to-production's
//! `startup.rs`): migrate and watch the pool, bind the HTTP and gRPC listeners (port 0 in tests),
//! then serve both and run the background tasks until shutdown.
//!
//! A service's `Application::build` keeps only what is its own: its clients, its core, its
//! routes and readiness checks, and its background tasks.

use std::{convert::Infallible, sync::Arc};

use sqlx::{PgPool, migrate::Migrator};
use tokio_util::sync::CancellationToken;
use tonic::{body::Body, server::NamedService};

use crate::{
    config::CommonConfig,
    grpc::Servers,
    health::Readiness,
    metrics::Metrics,
    redis::Redis,
    tasks::{Periodic, Tasks},
};

/// The protobuf descriptors every server reflects: the platform's `proto/`.
const DESCRIPTORS: &[&[u8]] = &[ecom_proto::FILE_DESCRIPTOR_SET];

/// Migrates the database (unless `ECOM_MIGRATE=false`) and starts the service's metrics, which
/// watch the pool.
pub async fn prepare(
    common: &CommonConfig,
    pool: &PgPool,
    migrator: &Migrator,
) -> anyhow::Result<Arc<Metrics>> {
    if common.run_migrations {
        migrator.run(pool).await?;
    }
    let metrics = Metrics::new(common.service);
    metrics.watch_pool(pool.clone());
    Ok(metrics)
}

/// The service's Redis (`ECOM_REDIS_URL`, its keys under `ECOM_REDIS_PREFIX`).
pub fn redis(common: &CommonConfig) -> anyhow::Result<Arc<Redis>> {
    Ok(Arc::new(Redis::new(
        &common.redis_url,
        &common.redis_prefix,
    )?))
}

/// A built service: listeners bound, ready to serve; its background tasks start with `run`.
pub struct App {
    name: &'static str,
    servers: Servers,
    tasks: Vec<Periodic>,
}

impl App {
    /// Binds the HTTP listener to `api` (with `/docs`, `/openapi.json`, health on `readiness`
    /// and `/metrics` added) and the gRPC listener to `grpc` (with health and reflection), where
    /// the configuration says. `grpc` must be the service the platform's table names.
    pub async fn bind<S>(
        common: &CommonConfig,
        (api, openapi): (axum::Router, utoipa::openapi::OpenApi),
        readiness: Readiness,
        grpc: S,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self>
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let health_names = common.platform.grpc_service.as_slice();
        anyhow::ensure!(
            health_names == [S::NAME],
            "{} serves {}, not what the platform table names ({health_names:?})",
            common.service,
            S::NAME
        );
        let router = crate::http::finish_router(api, openapi, metrics.clone(), readiness);
        let routes = tonic::service::Routes::new(grpc);
        let servers =
            Servers::bind(common, router, routes, health_names, DESCRIPTORS, metrics).await?;
        Ok(Self {
            name: common.service,
            servers,
            tasks: Vec::new(),
        })
    }

    /// Adds a background task, started by [`App::run`].
    #[must_use]
    pub fn with_task(mut self, task: Periodic) -> Self {
        self.tasks.push(task);
        self
    }

    pub fn http_port(&self) -> u16 {
        self.servers.http_port()
    }

    pub fn grpc_port(&self) -> u16 {
        self.servers.grpc_port()
    }

    /// The HTTP router alone, for in-process tests (`Router::oneshot`).
    pub fn router(&self) -> axum::Router {
        self.servers.router.clone()
    }

    /// Serves HTTP and gRPC and runs the background tasks until `shutdown` is cancelled (or a
    /// server fails, or an essential task ends: both stop everything), then waits for in-flight
    /// requests and task runs to finish. An error when anything ended early.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let name = self.name;
        tracing::info!(
            http = self.http_port(),
            grpc = self.grpc_port(),
            "{name} service listening"
        );
        let mut tasks = Tasks::new(shutdown.clone());
        for task in self.tasks {
            tasks.start(task);
        }
        let served = crate::grpc::serve_all(self.servers, shutdown.clone()).await;
        shutdown.cancel();
        let background = tasks.join().await;
        served?;
        background?;
        tracing::info!("{name} service stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, time::Duration};

    use super::*;
    use crate::config::EnvReader;

    /// An application on free ports of 127.0.0.1, with the given task.
    async fn app(task: Periodic) -> App {
        let vars = [
            ("ECOM_BIND_ADDRESS", "127.0.0.1"),
            ("ECOM_PRODUCTS_HTTP_PORT", "0"),
            ("ECOM_PRODUCTS_GRPC_PORT", "0"),
        ];
        let mut env = EnvReader::from_map(HashMap::from(
            vars.map(|(k, v)| (k.to_owned(), v.to_owned())),
        ));
        let common = CommonConfig::read(&crate::platform::PRODUCTS, &mut env);
        env.finish().expect("valid");
        let metrics = Metrics::new("products");
        let servers = Servers::bind(
            &common,
            axum::Router::new(),
            tonic::service::Routes::default(),
            &[],
            &[],
            metrics,
        )
        .await
        .expect("bind");
        App {
            name: "products",
            servers,
            tasks: Vec::new(),
        }
        .with_task(task)
    }

    /// Every gRPC service the platform's table names (what `App::bind` reports healthy) is one
    /// `proto/` defines.
    #[test]
    fn grpc_services_exist_in_the_protos() {
        let known = crate::grpc::known_methods(&[ecom_proto::FILE_DESCRIPTOR_SET]);
        for s in &crate::platform::SERVICES {
            if let Some(service) = s.grpc_service {
                let prefix = format!("{service}/");
                assert!(
                    known.iter().any(|m| m.starts_with(&prefix)),
                    "{service} is not in proto/"
                );
            }
        }
    }

    /// An essential task that panics stops both servers and the process with an error, instead
    /// of a replica serving on without it.
    #[tokio::test]
    async fn a_panicking_essential_task_stops_the_application_with_an_error() {
        let app = app(Periodic::essential(
            "outbox-relay",
            Duration::from_millis(10),
            || async { panic!("a bug in the relay") },
        ))
        .await;
        let port = app.http_port();
        let shutdown = CancellationToken::new();
        let err = tokio::time::timeout(Duration::from_secs(10), app.run(shutdown.clone()))
            .await
            .expect("the application stops by itself")
            .expect_err("with an error");
        assert!(err.to_string().contains("`outbox-relay` panicked"), "{err}");
        assert!(shutdown.is_cancelled());
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err(),
            "the HTTP server is stopped"
        );
    }

    /// Housekeeping that panics is logged; the application serves on until shutdown.
    #[tokio::test]
    async fn a_panicking_housekeeping_task_is_only_logged() {
        let app = app(Periodic::housekeeping(
            "purge",
            Duration::from_millis(10),
            || async { panic!("a bug in the purge") },
        ))
        .await;
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(app.run(shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!running.is_finished(), "still serving");
        shutdown.cancel();
        running.await.expect("join").expect("a clean stop");
    }
}
