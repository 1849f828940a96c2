//! The ecom Gateway: the one origin clients use. GraphQL at `/graphql` (over the services'
//! gRPC APIs), the services' REST APIs under `/api/`, and rate limits that hold across
//! replicas; the storefront page at `/`.
//!
//! Same shape as the services: `config`, `error` (one error type, mapped once), adapters
//! (`graphql`, `rest`), `limits` (edge identity and budgets), `clients` (pooled gRPC).

pub mod clients;
pub mod config;
pub mod error;
pub mod graphql;
pub mod limits;
pub mod rest;

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware,
    response::Html,
    routing::{any, get},
};
use ecom_shared::{
    auth::JwtVerifier, cache::Cache, health::Readiness, http::TrustedProxies, metrics::Metrics,
    redis::Redis, tasks::Tasks,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::Config;
use crate::{clients::Clients, graphql::GatewaySchema, limits::Limits};

/// What every handler shares.
pub struct Gateway {
    pub config: Config,
    pub clients: Clients,
    pub verifier: Arc<JwtVerifier>,
    pub redis: Arc<Redis>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// The response cache of anonymous catalogue queries.
    pub cache: Cache,
    /// The REST facade's pooled HTTP client.
    pub http: reqwest::Client,
    pub openapi: rest::OpenApiCache,
    pub known_queries: graphql::KnownQueries,
    /// `ECOM_TRUSTED_PROXIES`, for the shared client-address extractor.
    pub trusted_proxies: TrustedProxies,
}

impl axum::extract::FromRef<AppState> for TrustedProxies {
    fn from_ref(state: &AppState) -> Self {
        state.gateway.trusted_proxies.clone()
    }
}

/// Router state: the gateway and its schema.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub schema: GatewaySchema,
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    /// `/metrics` and health on the ops port (`ECOM_GATEWAY_OPS_PORT`).
    ops_listener: TcpListener,
    ops_router: Router,
    http_limits: ecom_shared::config::HttpLimits,
    gateway: Arc<Gateway>,
}

async fn storefront() -> Html<&'static str> {
    Html(include_str!("../assets/storefront.html"))
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let verifier = Arc::new(
            JwtVerifier::remote(config.common.jwks_url.clone())
                .with_audience(&config.common.jwt_audience),
        );
        Self::build_with(config, verifier).await
    }

    /// Builds with a given token verifier (tests bring their own).
    pub async fn build_with(config: Config, verifier: Arc<JwtVerifier>) -> anyhow::Result<Self> {
        let metrics = Metrics::new(config.common.service);
        let redis = ecom_shared::startup::redis(&config.common)?;
        let clients = Clients::new(&config, &metrics)?;
        let cache = Cache::new(redis.clone(), metrics.clone(), config.response_cache_ttl);
        let gateway = Arc::new(Gateway {
            limits: Limits::new(
                config.burst_rate,
                config.default_rate,
                config.login_rate,
                &metrics,
            ),
            http: rest::http_client(config.upstream_timeout)?,
            clients,
            verifier,
            redis,
            metrics: metrics.clone(),
            cache,
            openapi: rest::OpenApiCache::default(),
            known_queries: graphql::KnownQueries::default(),
            trusted_proxies: TrustedProxies(Arc::new(config.common.trusted_proxies.clone())),
            config,
        });
        let state = AppState {
            schema: graphql::build_schema(gateway.clone()),
            gateway: gateway.clone(),
        };
        let graphql_limit = gateway.config.graphql_max_body_bytes;
        let api = Router::new()
            .route(
                "/graphql",
                get(graphql::console)
                    .post(graphql::handler)
                    .layer(DefaultBodyLimit::max(graphql_limit)),
            )
            .route("/api/{*path}", any(rest::proxy))
            .route("/openapi.json", get(rest::openapi))
            .route("/", get(storefront))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                limits::middleware,
            ))
            .with_state(state);
        // Ready when Redis and the four services' gRPC health checks answer (the contract's
        // rule for every service). Requests are still served without Redis (see `limits`).
        let redis = gateway.redis.clone();
        let mut readiness = Readiness::new().check("redis", move || {
            let redis = redis.clone();
            async move { redis.ping().await }
        });
        for pool in gateway.clients.all() {
            let pool = pool.clone();
            readiness = readiness.check(pool.name(), move || {
                let pool = pool.clone();
                async move { pool.healthy().await }
            });
        }
        let ops_router = ecom_shared::http::ops_router(metrics.clone(), readiness.clone());
        let router = ecom_shared::http::finish_router_with_own_openapi(api, metrics, readiness);
        let bind = gateway.config.common.bind;
        let listener = ecom_shared::http::bind(bind, gateway.config.common.http_port).await?;
        let ops_listener = ecom_shared::http::bind(bind, gateway.config.ops_port).await?;
        Ok(Self {
            listener,
            router,
            ops_listener,
            ops_router,
            http_limits: gateway.config.common.http_limits,
            gateway,
        })
    }

    pub fn ops_port(&self) -> u16 {
        self.ops_listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    pub fn http_port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or_default()
    }

    /// Serves until `shutdown` is cancelled, then lets in-flight requests finish.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(
            http = self.http_port(),
            ops = self.ops_port(),
            "gateway listening"
        );
        let mut tasks = Tasks::new(shutdown.clone());
        if let Some(cleanup) = Limits::cleanup_task(&self.gateway) {
            tasks.start(cleanup);
        }
        let limits = self.http_limits;
        let ops =
            ecom_shared::http::serve(self.ops_listener, self.ops_router, limits, shutdown.clone());
        let public = ecom_shared::http::serve(self.listener, self.router, limits, shutdown.clone());
        let served = tokio::try_join!(public, ops);
        shutdown.cancel();
        tasks.join().await?;
        served?;
        tracing::info!("gateway stopped");
        Ok(())
    }
}
