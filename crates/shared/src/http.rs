//! The HTTP side every service shares: the operational routes (`/health/*`, `/metrics`,
//! `/docs`, `/openapi.json`), request ids, tracing, metrics, panics → JSON 500, body limits,
//! and the client-IP extractor.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, DefaultBodyLimit, FromRef, FromRequestParts, Request},
    http::{HeaderName, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::{RequestBodyTimeout, TimeoutBody},
    trace::{DefaultOnResponse, TraceLayer},
};
use utoipa::openapi::{
    OpenApi,
    security::{Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityScheme},
};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    config::HttpLimits,
    error::ApiError,
    health::{self, Readiness},
    metrics::{Metrics, metrics_handler, track_http},
    telemetry::{REQUEST_ID, REQUEST_ID_HEADER},
};

/// Largest request body accepted (JSON APIs need far less).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Adds the bearer scheme (and, when the service issues tokens, the OAuth2 password flow that
/// makes Swagger's Authorize button log in) to a service's OpenAPI document.
pub fn add_security(openapi: &mut OpenApi, password_token_url: Option<&str>) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .build(),
        ),
    );
    if let Some(url) = password_token_url {
        components.add_security_scheme(
            "password",
            SecurityScheme::OAuth2(OAuth2::new([Flow::Password(Password::new(
                url,
                Scopes::new(),
            ))])),
        );
    }
}

/// Wraps a service's API router with the operational routes and the shared middleware.
pub fn finish_router(
    api: Router,
    openapi: OpenApi,
    metrics: Arc<Metrics>,
    readiness: Readiness,
) -> Router {
    let docs = SwaggerUi::new("/docs").url("/openapi.json", openapi);
    let ops = health_routes(&metrics, readiness).merge(metrics_route(&metrics));
    finish(api.merge(ops).merge(docs), metrics)
}

/// Like [`finish_router`], for a router that serves its own `/openapi.json` (the gateway's,
/// assembled from the services' documents at run time). Its `/metrics` is not on this router:
/// the gateway is public, so it serves metrics on an ops port ([`ops_router`]).
pub fn finish_router_with_own_openapi(
    api: Router,
    metrics: Arc<Metrics>,
    readiness: Readiness,
) -> Router {
    let docs = SwaggerUi::new("/docs").config(utoipa_swagger_ui::Config::from("/openapi.json"));
    let ops = health_routes(&metrics, readiness);
    finish(api.merge(ops).merge(docs), metrics)
}

/// `/metrics` and the health routes on a port of their own (the gateway's ops port), for
/// Prometheus and probes, never published to clients.
pub fn ops_router(metrics: Arc<Metrics>, readiness: Readiness) -> Router {
    let ops = health_routes(&metrics, readiness).merge(metrics_route(&metrics));
    finish(ops, metrics)
}

/// `/health/live` and `/health/ready`; every scrape of `/metrics` reports the same checks as
/// `dependency_up`.
fn health_routes(metrics: &Arc<Metrics>, readiness: Readiness) -> Router {
    metrics.watch_readiness(readiness.clone());
    Router::new()
        .route("/health/live", get(health::live))
        .merge(
            Router::new()
                .route("/health/ready", get(health::ready))
                .with_state(readiness),
        )
}

fn metrics_route(metrics: &Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(metrics.clone())
}

fn finish(routes: Router, metrics: Arc<Metrics>) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    routes
        .route_layer(middleware::from_fn_with_state(metrics, track_http))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    // Only method, path and request id: never headers or query strings, which
                    // can carry tokens.
                    TraceLayer::new_for_http()
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get(REQUEST_ID_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default();
                            tracing::info_span!(
                                "http",
                                method = %req.method(),
                                path = %req.uri().path(),
                                request_id = %id,
                            )
                        }),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(CatchPanicLayer::custom(
                    |_: Box<dyn std::any::Any + Send>| {
                        ApiError::internal(&"handler panicked").into_response()
                    },
                ))
                .layer(middleware::from_fn(scope_request_id))
                .layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
}

/// Makes the request id visible to outgoing gRPC calls made while serving this request.
async fn scope_request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    REQUEST_ID.scope(id, next.run(req)).await
}

/// Serves `router` until `shutdown` is cancelled, with peer addresses for [`ClientIp`], then lets
/// in-flight requests finish (for up to [`DRAIN`]). Slow clients are bounded by `limits`: headers
/// must arrive within `header_timeout`, each piece of a body within `body_timeout`, and at most
/// `max_connections` are open at once (further clients wait in the listen queue).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = RequestBodyTimeout::new(
            router
                .clone()
                .map_request(move |mut req: Request<TimeoutBody<Incoming>>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    req.map(Body::new)
                }),
            limits.body_timeout,
        );
        let watcher = graceful.watcher();
        let builder = builder.clone();
        tokio::spawn(async move {
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(service),
            );
            // A client that goes away or times out ends its connection: nothing to report.
            let _ = watcher.watch(connection).await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}: closed");
    }
    Ok(())
}

/// How long a stopping server waits for in-flight requests.
pub const DRAIN: Duration = Duration::from_secs(10);

/// Binds `addr:port` (port 0 picks a free one: tests use that).
pub async fn bind(addr: IpAddr, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((addr, port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}:{port}: {e}"))
}

/// An address or a CIDR range (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`): how proxies are named in
/// `ECOM_TRUSTED_PROXIES` (on Kubernetes the ingress pods' addresses change; their range does not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    base: IpAddr,
    prefix: u8,
}

impl IpRange {
    pub fn contains(&self, ip: IpAddr) -> bool {
        // A dual-stack socket reports IPv4 peers as `::ffff:a.b.c.d`.
        match (self.base, ip.to_canonical()) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(base) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::str::FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, prefix)) => (ip, Some(prefix)),
            None => (s, None),
        };
        let base: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR range"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { base, prefix })
    }
}

/// Proxies whose `X-Forwarded-For` is believed. Empty (the default): the header is ignored.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Arc<Vec<IpRange>>);

/// The client's IP: the socket peer, or the forwarded address when the peer is a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    pub fn resolve(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpRange]) -> IpAddr {
        let is_trusted = |ip: IpAddr| trusted.iter().any(|r| r.contains(ip));
        if !is_trusted(peer) {
            return peer;
        }
        // Walk right to left past our own proxies; the first other hop is the client.
        let hops = forwarded_for.unwrap_or_default().split(',').rev();
        for hop in hops {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if is_trusted(ip) => {}
                Ok(ip) => return ip,
                Err(_) => break,
            }
        }
        peer
    }
}

impl<S> FromRequestParts<S> for ClientIp
where
    S: Send + Sync,
    TrustedProxies: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
        let trusted = TrustedProxies::from_ref(state);
        // Every X-Forwarded-For line, in order: a proxy may append its own line rather than
        // extend the first, and the client is found from the right.
        let xff = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        Ok(Self(Self::resolve(peer, Some(&xff), &trusted.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    fn range(s: &str) -> IpRange {
        s.parse().unwrap_or(IpRange {
            base: ip("255.255.255.255"),
            prefix: 32,
        })
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_proxies() {
        let proxy = ip("10.0.0.1");
        let client = ip("203.0.113.7");
        let trusted = [range("10.0.0.1")];
        let spoofed = "198.51.100.1, 203.0.113.7";
        assert_eq!(ClientIp::resolve(client, Some(spoofed), &[]), client);
        assert_eq!(ClientIp::resolve(proxy, Some(spoofed), &trusted), client);
        assert_eq!(ClientIp::resolve(proxy, None, &trusted), proxy);
        assert_eq!(ClientIp::resolve(proxy, Some("garbage"), &trusted), proxy);
    }

    #[test]
    fn trusted_proxies_may_be_ranges() {
        let pods = [range("10.244.0.0/16"), range("fd00::/8")];
        let client = ip("203.0.113.7");
        // Two hops inside the cluster's range, then the client.
        let xff = "203.0.113.7, 10.244.3.9";
        assert_eq!(
            ClientIp::resolve(ip("10.244.1.2"), Some(xff), &pods),
            client
        );
        assert_eq!(
            ClientIp::resolve(ip("::ffff:10.244.1.2"), Some(xff), &pods),
            client
        );
        assert_eq!(ClientIp::resolve(ip("fd12::1"), Some(xff), &pods), client);
        // Outside the range: the header is not believed.
        assert_eq!(
            ClientIp::resolve(ip("10.245.0.1"), Some(xff), &pods),
            ip("10.245.0.1")
        );
        assert!(range("0.0.0.0/0").contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0/8", "x", "10.0.0.0/"] {
            assert!(bad.parse::<IpRange>().is_err(), "{bad}");
        }
    }
}
