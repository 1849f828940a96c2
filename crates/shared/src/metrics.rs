//! Prometheus metrics with the contract's names, one registry per process, and the HTTP and
//! gRPC middleware that feed them. `route` is always the matched route template.

use std::{
    collections::HashSet,
    sync::{Arc, OnceLock, RwLock},
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
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, text::encode},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Metric, Registry},
};

use crate::health::Readiness;

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
pub struct GrpcDurationLabels {
    pub service: &'static str,
    pub grpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplayLabels {
    pub service: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DependencyLabels {
    pub service: &'static str,
    pub dependency: &'static str,
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
    pub grpc_server_duration: Family<GrpcDurationLabels, Histogram, fn() -> Histogram>,
    pub cache_requests: Family<CacheLabels, Counter>,
    pub rate_limited: Family<RateLimitLabels, Counter>,
    idempotent_replays: Family<ReplayLabels, Counter>,
    /// 1 when a readiness check passed at the last scrape, 0 when it failed.
    dependency_up: Family<DependencyLabels, Gauge>,
    readiness: OnceLock<Readiness>,
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
        let grpc_server_duration =
            Family::<GrpcDurationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "grpc_server_handling_seconds",
            "gRPC call latency, server side",
            grpc_server_duration.clone(),
        );
        let idempotent_replays = Family::<ReplayLabels, Counter>::default();
        registry.register(
            "idempotent_replays",
            "requests answered from an idempotency key's stored result",
            idempotent_replays.clone(),
        );
        let dependency_up = Family::<DependencyLabels, Gauge>::default();
        registry.register(
            "dependency_up",
            "whether each dependency of the readiness probe answered at this scrape (1) or not (0)",
            dependency_up.clone(),
        );
        registry.register_collector(Box::new(ProcessCollector { service }));
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
            grpc_server_duration,
            cache_requests,
            rate_limited,
            idempotent_replays,
            dependency_up,
            readiness: OnceLock::new(),
        })
    }

    /// The counter of `operation`'s idempotent replays (created at 0, so it shows from the start).
    pub fn replay_counter(&self, operation: &'static str) -> Counter {
        self.idempotent_replays
            .get_or_create(&ReplayLabels {
                service: self.service,
                operation,
            })
            .clone()
    }

    /// Reports the readiness checks as `dependency_up` at every scrape (once per process).
    pub fn watch_readiness(&self, readiness: Readiness) {
        let _ = self.readiness.set(readiness);
    }

    /// Reports the pool's connections (`db_pool_connections{state}`, `db_pool_max_connections`).
    pub fn watch_pool(&self, pool: sqlx::PgPool) {
        if let Ok(mut r) = self.registry.write() {
            r.register_collector(Box::new(PoolCollector {
                service: self.service,
                pool,
            }));
        }
    }

    async fn refresh_dependencies(&self) {
        if let Some(readiness) = self.readiness.get() {
            for (dependency, up) in readiness.run().await {
                self.dependency_up
                    .get_or_create(&DependencyLabels {
                        service: self.service,
                        dependency,
                    })
                    .set(i64::from(up));
            }
        }
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
    metrics.refresh_dependencies().await;
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

/// The label of a call to a method the server does not have: one value, however many paths.
pub const UNKNOWN_GRPC_METHOD: &str = "unknown";

/// Tower layer counting gRPC calls (server or client side) into a family.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
    client: bool,
    /// Server side: the methods it answers (see `grpc::known_methods`); others are `unknown`.
    known: Arc<HashSet<String>>,
}

impl GrpcMetricsLayer {
    pub fn server(metrics: Arc<Metrics>, known: Arc<HashSet<String>>) -> Self {
        Self {
            metrics,
            client: false,
            known,
        }
    }
    /// Client side: the paths are our own code's.
    pub fn client(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            client: true,
            known: Arc::default(),
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
            known: self.known.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
    client: bool,
    known: Arc<HashSet<String>>,
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
        let mut grpc_method = grpc_method_of(req.uri().path());
        if !client && !self.known.contains(&grpc_method) {
            UNKNOWN_GRPC_METHOD.clone_into(&mut grpc_method);
        }
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
                let start = Instant::now();
                let res = inner.call(req).await;
                let code = match &res {
                    Ok(r) => grpc_code_of(r),
                    Err(_) => "Unavailable".to_owned(),
                };
                let family = if client {
                    &metrics.grpc_client_handled
                } else {
                    metrics
                        .grpc_server_duration
                        .get_or_create(&GrpcDurationLabels {
                            service: metrics.service,
                            grpc_method: grpc_method.clone(),
                        })
                        .observe(start.elapsed().as_secs_f64());
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabel {
    service: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    service: &'static str,
    state: &'static str,
}

/// Encodes one sample of a metric computed at scrape time.
fn encode_one(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &impl EncodeLabelSet,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(family.encode_family(labels)?)
}

/// The process's memory, CPU, threads and open files, read from `/proc` at each scrape (the
/// names Prometheus' client libraries use, so the usual dashboards work).
#[derive(Debug)]
struct ProcessCollector {
    service: &'static str,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = ProcessStats::read() else {
            return Ok(());
        };
        let labels = ServiceLabel {
            service: self.service,
        };
        let e = &mut encoder;
        encode_one(
            e,
            "process_cpu_seconds",
            "user and system CPU time",
            &labels,
            &ConstCounter::new(p.cpu_seconds),
        )?;
        encode_one(
            e,
            "process_resident_memory_bytes",
            "resident memory",
            &labels,
            &ConstGauge::new(p.resident_bytes),
        )?;
        encode_one(
            e,
            "process_virtual_memory_bytes",
            "virtual memory",
            &labels,
            &ConstGauge::new(p.virtual_bytes),
        )?;
        encode_one(
            e,
            "process_threads",
            "OS threads",
            &labels,
            &ConstGauge::new(p.threads),
        )?;
        encode_one(
            e,
            "process_open_fds",
            "open file descriptors",
            &labels,
            &ConstGauge::new(p.open_fds),
        )?;
        encode_one(
            e,
            "process_start_time_seconds",
            "start time, seconds since the Unix epoch",
            &labels,
            &ConstGauge::new(p.start_time_seconds),
        )?;
        Ok(())
    }
}

#[derive(Debug, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    open_fds: i64,
    start_time_seconds: f64,
}

/// Linux's clock tick (`sysconf(_SC_CLK_TCK)` is 100 on every Linux platform we build for).
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;
const PAGE_BYTES: i64 = 4096;

impl ProcessStats {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat").ok()?;
        let mut stats = Self::parse(&stat, &boot_time)?;
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .map(|d| i64::try_from(d.count()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        Some(stats)
    }

    /// `stat` is `/proc/self/stat`, `boot` is `/proc/stat` (for `btime`).
    fn parse(stat: &str, boot: &str) -> Option<Self> {
        // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // `rest` starts at field 3 (state): field N is f[N - 3].
        let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let btime: f64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())?;
        Some(Self {
            cpu_seconds: (field(14)? + field(15)?) / CLOCK_TICKS_PER_SECOND,
            threads: field(20)? as i64,
            start_time_seconds: btime + field(22)? / CLOCK_TICKS_PER_SECOND,
            virtual_bytes: field(23)? as i64,
            resident_bytes: field(24)? as i64 * PAGE_BYTES,
            open_fds: 0,
        })
    }
}

/// A PostgreSQL pool's connections at each scrape.
#[derive(Debug)]
struct PoolCollector {
    service: &'static str,
    pool: sqlx::PgPool,
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let size = i64::from(self.pool.size());
        let idle = i64::try_from(self.pool.num_idle()).unwrap_or(i64::MAX);
        let max = i64::from(self.pool.options().get_max_connections());
        let mut family = encoder.encode_descriptor(
            "db_pool_connections",
            "connections of the PostgreSQL pool, by state",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (state, value) in [("idle", idle), ("in_use", (size - idle).max(0))] {
            ConstGauge::new(value).encode(family.encode_family(&PoolLabels {
                service: self.service,
                state,
            })?)?;
        }
        encode_one(
            &mut encoder,
            "db_pool_max_connections",
            "the PostgreSQL pool's size limit",
            &ServiceLabel {
                service: self.service,
            },
            &ConstGauge::new(max),
        )
    }
}

#[cfg(test)]
mod process_tests {
    use super::*;

    #[test]
    fn proc_stat_is_parsed_past_a_command_with_spaces() {
        let stat = "4242 (tokio (worker) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    250 50 0 0 20 0 7 0 1000 123456789 300 18446744073709551615";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n";
        let p = ProcessStats::parse(stat, boot).expect("parsed");
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.start_time_seconds, 1_700_000_010.0);
        assert_eq!(p.virtual_bytes, 123_456_789);
        assert_eq!(p.resident_bytes, 300 * 4096);
    }

    #[tokio::test]
    async fn a_scrape_reports_the_process_and_the_dependencies() {
        let metrics = Metrics::new("test");
        metrics.watch_readiness(
            Readiness::new()
                .check("database", || async { true })
                .check("redis", || async { false }),
        );
        metrics.refresh_dependencies().await;
        let text = metrics.encode();
        for line in [
            r#"dependency_up{service="test",dependency="database"} 1"#,
            r#"dependency_up{service="test",dependency="redis"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        for name in [
            "process_cpu_seconds_total{service=\"test\"}",
            "process_resident_memory_bytes{service=\"test\"}",
            "process_open_fds{service=\"test\"}",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
