//! The gRPC side every service shares: a server with health, reflection, metrics and request
//! ids; and a client channel factory with timeouts and metrics.

use std::{collections::HashSet, sync::Arc, time::Duration};

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::{
    service::Routes,
    transport::{Channel, Endpoint, Server},
};
use tonic_health::ServingStatus;
use tower::Layer;

use crate::metrics::{GrpcMetrics, GrpcMetricsLayer, Metrics};

/// Largest gRPC message accepted or sent by our services (bounded on purpose).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Serves `routes` (the service's own gRPC services) plus `grpc.health.v1.Health` (SERVING for
/// each name in `service_names`) and, when `reflection` is on, server reflection over
/// `descriptors` (`ECOM_GRPC_REFLECTION`: on by default, off by default in production, where
/// clients use the published protos).
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    service_names: &[&str],
    descriptors: &[&[u8]],
    reflection: bool,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in service_names {
        reporter
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }
    let reflection = if reflection {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        for d in descriptors {
            builder = builder.register_encoded_file_descriptor_set(d);
        }
        Some(builder.build_v1()?)
    } else {
        None
    };
    let shutdown_health = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            // Tell load balancers first, then stop.
            reporter
                .set_service_status("", ServingStatus::NotServing)
                .await;
        }
    };
    tokio::spawn(shutdown_health);
    let known = known_methods(descriptors);
    Server::builder()
        .timeout(Duration::from_secs(30))
        .layer(GrpcMetricsLayer::server(metrics, known))
        .add_routes(routes)
        .add_service(health)
        .add_optional_service(reflection)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Every `package.Service/Method` the server answers: the methods of the services in
/// `descriptors`, plus health and reflection. Metrics label any other path `unknown`, so a
/// client sending random paths cannot create new series.
pub fn known_methods(descriptors: &[&[u8]]) -> Arc<HashSet<String>> {
    use prost::Message;
    let mut known: HashSet<String> = [
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let sets = descriptors
        .iter()
        .copied()
        .chain([tonic_health::pb::FILE_DESCRIPTOR_SET]);
    for bytes in sets {
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                for method in &service.method {
                    let qualified = if package.is_empty() {
                        service.name().to_owned()
                    } else {
                        format!("{package}.{}", service.name())
                    };
                    known.insert(format!("{qualified}/{}", method.name()));
                }
            }
        }
    }
    Arc::new(known)
}

/// A client channel with metrics: generated clients take it as their transport.
pub type GrpcChannel = GrpcMetrics<Channel>;

/// A lazily connecting channel to `url` with connect and per-call timeouts.
pub fn channel(
    url: &str,
    metrics: Arc<Metrics>,
    call_timeout: Duration,
) -> anyhow::Result<GrpcChannel> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(call_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    Ok(GrpcMetricsLayer::client(metrics).layer(endpoint.connect_lazy()))
}

/// Everything a service serves: its HTTP router and its gRPC services.
pub struct Servers {
    pub http: TcpListener,
    pub router: axum::Router,
    pub grpc: TcpListener,
    pub routes: Routes,
    /// Fully qualified gRPC service names reported SERVING by the health service.
    pub service_names: &'static [&'static str],
    pub descriptors: &'static [&'static [u8]],
    /// Whether server reflection is served (`ECOM_GRPC_REFLECTION`).
    pub reflection: bool,
    pub metrics: Arc<Metrics>,
    pub http_limits: crate::config::HttpLimits,
}

/// Serves HTTP and gRPC until `shutdown` is cancelled (or one of them fails, which stops the
/// other), then waits for in-flight requests to finish.
pub async fn serve_all(s: Servers, shutdown: CancellationToken) -> anyhow::Result<()> {
    let http = crate::http::serve(s.http, s.router, s.http_limits, shutdown.clone());
    let grpc = serve(
        s.grpc,
        s.routes,
        s.service_names,
        s.descriptors,
        s.reflection,
        s.metrics,
        shutdown.clone(),
    );
    let (h, g) = tokio::join!(
        async {
            let r = http.await;
            shutdown.cancel();
            r
        },
        async {
            let r = grpc.await;
            shutdown.cancel();
            r
        }
    );
    h?;
    g
}

impl Servers {
    /// Binds both listeners where the configuration says (port 0 picks free ports: tests).
    pub async fn bind(
        common: &crate::config::CommonConfig,
        router: axum::Router,
        routes: Routes,
        service_names: &'static [&'static str],
        descriptors: &'static [&'static [u8]],
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let http = crate::http::bind(common.bind, common.http_port).await?;
        let grpc = crate::http::bind(common.bind, common.grpc_port).await?;
        Ok(Self {
            http,
            router,
            grpc,
            routes,
            service_names,
            descriptors,
            reflection: common.grpc_reflection,
            metrics,
            http_limits: common.http_limits,
        })
    }

    pub fn http_port(&self) -> u16 {
        self.http.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc.local_addr().map(|a| a.port()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_methods_come_from_the_descriptors() {
        let known = known_methods(&[ecom_proto::FILE_DESCRIPTOR_SET]);
        for method in [
            "ecom.orders.v1.OrderService/CreateOrder",
            "ecom.products.v1.ProductService/ReserveStock",
            "grpc.health.v1.Health/Check",
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(known.contains(method), "{method}");
        }
        assert!(!known.contains("ecom.orders.v1.OrderService/NoSuchMethod"));
    }

    /// Reflection lists every service and message of the server: served where it is turned on
    /// (development, by default), absent where it is off (production, by default).
    #[tokio::test]
    async fn reflection_is_served_only_when_turned_on() {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest,
        };
        for on in [true, false] {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = listener.local_addr().expect("addr").port();
            let shutdown = CancellationToken::new();
            let server = tokio::spawn(serve(
                listener,
                Routes::default(),
                &["test"],
                &[ecom_proto::FILE_DESCRIPTOR_SET],
                on,
                Metrics::new("test"),
                shutdown.clone(),
            ));
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                    .expect("endpoint")
                    .connect_lazy();
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let reply = ServerReflectionClient::new(channel)
                .server_reflection_info(tokio_stream::iter([request]))
                .await;
            if on {
                let mut stream = reply.expect("reflection").into_inner();
                assert!(stream.message().await.expect("answer").is_some());
            } else {
                assert_eq!(
                    reply.expect_err("no reflection").code(),
                    tonic::Code::Unimplemented
                );
            }
            shutdown.cancel();
            server.await.expect("join").expect("served");
        }
    }
}
