//! Prometheus metrics with the contract's names, one registry per process, and the HTTP and
//! gRPC middleware that feed them. `route` is always the matched route template.

use std::{
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Metric, Registry},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub service: &'static str,
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpDurationLabels {
    pub service: &'static str,
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub service: &'static str,
    pub grpc_method: String,
    pub grpc_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub service: &'static str,
    pub cache: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RateLimitLabels {
    pub service: &'static str,
    pub limit: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the shared plumbing records, plus the registry services add their own to.
pub struct Metrics {
    pub service: &'static str,
    registry: RwLock<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<HttpDurationLabels, Histogram, fn() -> Histogram>,
    pub grpc_server_handled: Family<GrpcLabels, Counter>,
    pub grpc_client_handled: Family<GrpcLabels, Counter>,
    pub cache_requests: Family<CacheLabels, Counter>,
    pub rate_limited: Family<RateLimitLabels, Counter>,
}

impl Metrics {
    pub fn new(service: &'static str) -> Arc<Self> {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests handled",
            http_requests.clone(),
        );
        let http_duration =
            Family::<HttpDurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            http_duration.clone(),
        );
        let grpc_server_handled = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "grpc_server_handled",
            "gRPC calls completed by this server",
            grpc_server_handled.clone(),
        );
        let grpc_client_handled = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "grpc_client_handled",
            "gRPC calls this process made to other services",
            grpc_client_handled.clone(),
        );
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_requests",
            "cache lookups by result",
            cache_requests.clone(),
        );
        let rate_limited = Family::<RateLimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "requests refused by a rate limit",
            rate_limited.clone(),
        );
        Arc::new(Self {
            service,
            registry: RwLock::new(registry),
            http_requests,
            http_duration,
            grpc_server_handled,
            grpc_client_handled,
            cache_requests,
            rate_limited,
        })
    }

    /// Registers a service's own metric (call at start-up).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        if let Ok(mut r) = self.registry.write() {
            r.register(name, help, metric);
        }
    }

    pub fn count_rate_limited(&self, limit: &'static str) {
        self.rate_limited
            .get_or_create(&RateLimitLabels {
                service: self.service,
                limit,
            })
            .inc();
    }

    pub fn count_cache(&self, cache: &'static str, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.cache_requests
            .get_or_create(&CacheLabels {
                service: self.service,
                cache,
                result,
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.read() {
            let _ = encode(&mut out, &r);
        }
        out
    }
}

/// `GET /metrics`.
pub async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

/// Axum middleware (installed as a route layer, so the matched template is known).
pub async fn track_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let res = next.run(req).await;
    let status = res.status().as_u16();
    metrics
        .http_duration
        .get_or_create(&HttpDurationLabels {
            service: metrics.service,
            method: method.clone(),
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            service: metrics.service,
            method,
            route,
            status,
        })
        .inc();
    res
}

/// The gRPC status of a response whose headers we can see: tonic puts `grpc-status` in the
/// headers of every error ("trailers-only"); a response without one is a success whose status
/// travels in the trailers.
pub fn grpc_code_of<B>(res: &http::Response<B>) -> String {
    let code = res
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32);
    format!("{code:?}")
}

/// The `package.Service/Method` of a gRPC request path.
pub fn grpc_method_of(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

/// Tower layer counting gRPC calls (server or client side) into a family.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
    client: bool,
}

impl GrpcMetricsLayer {
    pub fn server(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            client: false,
        }
    }
    pub fn client(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            client: true,
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            metrics: self.metrics.clone(),
            client: self.client,
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
    client: bool,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // Take the ready service, leave a fresh clone (tower's "clone and swap" idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let client = self.client;
        let grpc_method = grpc_method_of(req.uri().path());
        let request_id = if client {
            // Carry the current request id to the next service.
            let id = crate::telemetry::current_request_id();
            if let Some(v) = id
                .as_deref()
                .and_then(|id| http::HeaderValue::from_str(id).ok())
            {
                req.headers_mut()
                    .insert(crate::telemetry::REQUEST_ID_HEADER, v);
            }
            id
        } else {
            let id = req
                .headers()
                .get(crate::telemetry::REQUEST_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.len() <= 128)
                .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
            Some(id)
        };
        Box::pin(async move {
            let fut = async {
                let res = inner.call(req).await;
                let code = match &res {
                    Ok(r) => grpc_code_of(r),
                    Err(_) => "Unavailable".to_owned(),
                };
                let family = if client {
                    &metrics.grpc_client_handled
                } else {
                    &metrics.grpc_server_handled
                };
                family
                    .get_or_create(&GrpcLabels {
                        service: metrics.service,
                        grpc_method,
                        grpc_code: code,
                    })
                    .inc();
                res
            };
            match (client, request_id) {
                (false, Some(id)) => {
                    let span = tracing::info_span!("grpc", request_id = %id);
                    tracing::Instrument::instrument(
                        crate::telemetry::REQUEST_ID.scope(id, fut),
                        span,
                    )
                    .await
                }
                _ => fut.await,
            }
        })
    }
}
