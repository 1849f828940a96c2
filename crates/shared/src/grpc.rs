//! The gRPC side every service shares: a server with health, reflection, metrics and request
//! ids; and a client channel factory with timeouts and metrics, balancing over every replica of
//! a peer named by DNS.

mod balance;

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

pub use self::balance::{Dns, Resolve, balanced_host};
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

/// How often a client re-resolves a peer's name by default (`ECOM_GRPC_RESOLVE_SECONDS`).
pub const DEFAULT_RESOLVE_EVERY: Duration = Duration::from_secs(10);

/// A lazily connecting channel to `url` with connect and per-call timeouts.
///
/// When the URL's host is a DNS name (a headless Service in Kubernetes: one address per ready
/// replica), calls are balanced over one connection per address, and the name is resolved
/// again every `resolve_every` so added replicas get calls and removed ones stop getting them.
/// IP literals and `localhost` keep one plain connection.
pub fn channel(
    url: &str,
    metrics: Arc<Metrics>,
    call_timeout: Duration,
    resolve_every: Duration,
) -> anyhow::Result<GrpcChannel> {
    channel_with(url, metrics, call_timeout, Arc::new(Dns), resolve_every)
}

/// [`channel`] with the resolver given (tests resolve names to addresses of their choice).
pub fn channel_with(
    url: &str,
    metrics: Arc<Metrics>,
    call_timeout: Duration,
    resolver: Arc<dyn Resolve>,
    resolve_every: Duration,
) -> anyhow::Result<GrpcChannel> {
    let uri: tonic::transport::Uri = url.parse()?;
    let endpoint = endpoint(uri.clone(), call_timeout);
    let channel = match balanced_host(&uri) {
        None => endpoint.connect_lazy(),
        Some((host, port)) => {
            let scheme = uri.scheme_str().unwrap_or("http").to_owned();
            // One connection per address, each naming the peer as the URL does (`:authority`).
            let for_addr = move |addr: std::net::SocketAddr| -> anyhow::Result<Endpoint> {
                let to = format!("{scheme}://{addr}").parse()?;
                Ok(self::endpoint(to, call_timeout).origin(uri.clone()))
            };
            balance::channel(endpoint, for_addr, host, port, resolver, resolve_every)
        }
    };
    Ok(GrpcMetricsLayer::client(metrics).layer(channel))
}

/// The settings of every client connection.
fn endpoint(uri: tonic::transport::Uri, call_timeout: Duration) -> Endpoint {
    Endpoint::from(uri)
        .connect_timeout(Duration::from_secs(2))
        .timeout(call_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
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
    /// The test's stand-in for DNS: answers with the addresses the test sets, or fails.
    #[derive(Default)]
    struct Fixed {
        addrs: std::sync::Mutex<Option<Vec<std::net::SocketAddr>>>,
        asked: std::sync::atomic::AtomicUsize,
    }

    impl Fixed {
        fn set(&self, addrs: Option<&[std::net::SocketAddr]>) {
            *self.addrs.lock().expect("lock") = addrs.map(<[_]>::to_vec);
        }

        fn asked(&self) -> usize {
            self.asked.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl Resolve for Fixed {
        fn resolve<'a>(
            &'a self,
            _host: &'a str,
            _port: u16,
        ) -> futures::future::BoxFuture<'a, std::io::Result<Vec<std::net::SocketAddr>>> {
            let addrs = self.addrs.lock().expect("lock").clone();
            self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Box::pin(async move {
                addrs.ok_or_else(|| std::io::Error::other("failed to lookup address information"))
            })
        }
    }

    /// Real gRPC servers (ours: health, metrics) on one port of 127.0.0.1, .2, .3 and .4 (Linux
    /// routes all of 127/8 to loopback), as the replicas behind a headless Service would be.
    struct Replicas {
        addrs: Vec<std::net::SocketAddr>,
        metrics: Vec<Arc<Metrics>>,
        shutdown: CancellationToken,
    }

    impl Replicas {
        async fn start() -> Self {
            const NAMES: [&str; 4] = ["replica-1", "replica-2", "replica-3", "replica-4"];
            let shutdown = CancellationToken::new();
            'attempt: for _ in 0..20 {
                let first = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let port = first.local_addr().expect("addr").port();
                let mut listeners = vec![first];
                for i in 2..=4u8 {
                    match TcpListener::bind((std::net::Ipv4Addr::new(127, 0, 0, i), port)).await {
                        Ok(l) => listeners.push(l),
                        Err(_) => continue 'attempt, // the port is taken there: another one
                    }
                }
                let mut addrs = Vec::new();
                let mut metrics = Vec::new();
                for (listener, name) in listeners.into_iter().zip(NAMES) {
                    addrs.push(listener.local_addr().expect("addr"));
                    let m = Metrics::new(name);
                    metrics.push(m.clone());
                    tokio::spawn(serve(
                        listener,
                        Routes::default(),
                        &[],
                        &[],
                        false,
                        m,
                        shutdown.clone(),
                    ));
                }
                return Self {
                    addrs,
                    metrics,
                    shutdown,
                };
            }
            panic!("no port free on 127.0.0.1 to 127.0.0.4");
        }

        /// Health checks each replica has answered.
        fn handled(&self) -> Vec<u64> {
            self.metrics
                .iter()
                .map(|m| {
                    m.grpc_server_handled
                        .get_or_create(&crate::metrics::GrpcLabels {
                            service: m.service,
                            grpc_method: "grpc.health.v1.Health/Check".to_owned(),
                            grpc_code: "Ok".to_owned(),
                        })
                        .get()
                })
                .collect()
        }

        /// Makes `n` calls, every one of which must succeed; returns what each replica got.
        async fn calls(&self, channel: &GrpcChannel, n: u64) -> Vec<u64> {
            use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
            let before = self.handled();
            let mut client = HealthClient::new(channel.clone());
            for _ in 0..n {
                client
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .expect("every call succeeds");
            }
            let got: Vec<u64> = self
                .handled()
                .iter()
                .zip(before)
                .map(|(after, before)| after - before)
                .collect();
            assert_eq!(got.iter().sum::<u64>(), n, "{got:?}");
            got
        }
    }

    /// A peer named by DNS gets its calls spread over every address the name resolves to; an
    /// address that vanishes stops getting calls without a call failing; one that appears
    /// starts getting them; a failing resolution keeps the last good set.
    #[tokio::test]
    async fn calls_are_spread_over_every_resolved_replica() {
        crate::telemetry::init_for_tests();
        let replicas = Replicas::start().await;
        let [r1, r2, r3, r4] =
            <[std::net::SocketAddr; 4]>::try_from(replicas.addrs.clone()).expect("four replicas");
        let dns = Arc::new(Fixed::default());
        dns.set(Some(&[r1, r2, r3]));
        let url = format!("http://replicas.ecom.invalid:{}", r1.port());
        let client = Metrics::new("client");
        let channel = channel_with(
            &url,
            client.clone(),
            Duration::from_secs(5),
            dns.clone(),
            Duration::from_millis(50),
        )
        .expect("channel");

        let got = replicas.calls(&channel, 300).await;
        for (i, n) in got.iter().take(3).enumerate() {
            assert!(*n > 30, "replica {} got {n} of 300: {got:?}", i + 1);
        }
        assert_eq!(got[3], 0, "{got:?}");

        // Replica 3 leaves the name: once the resolver has seen it, no call goes there.
        dns.set(Some(&[r1, r2]));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while replicas.calls(&channel, 30).await[2] > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica 3 still gets calls"
            );
        }
        let got = replicas.calls(&channel, 150).await;
        assert_eq!(got[2], 0, "{got:?}");
        assert!(got[0] > 15 && got[1] > 15, "{got:?}");

        // Replica 4 joins: it gets calls too.
        dns.set(Some(&[r1, r2, r4]));
        while replicas.calls(&channel, 30).await[3] == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica 4 gets no call"
            );
        }
        let got = replicas.calls(&channel, 300).await;
        for i in [0, 1, 3] {
            assert!(
                got[i] > 30,
                "replica {} got {} of 300: {got:?}",
                i + 1,
                got[i]
            );
        }
        assert_eq!(got[2], 0, "{got:?}");

        // The name stops resolving: the last good set keeps serving.
        dns.set(None);
        let asked = dns.asked();
        while dns.asked() < asked + 2 {
            assert!(tokio::time::Instant::now() < deadline, "no resolution");
            replicas.calls(&channel, 10).await;
        }
        let got = replicas.calls(&channel, 150).await;
        for i in [0, 1, 3] {
            assert!(
                got[i] > 15,
                "replica {} got {} of 150: {got:?}",
                i + 1,
                got[i]
            );
        }

        // The client's metrics count every call, as with one connection.
        let counted = client
            .grpc_client_handled
            .get_or_create(&crate::metrics::GrpcLabels {
                service: "client",
                grpc_method: "grpc.health.v1.Health/Check".to_owned(),
                grpc_code: "Ok".to_owned(),
            })
            .get();
        assert_eq!(counted, replicas.handled().iter().sum::<u64>());

        // The resolver task lives as long as the channel, not longer.
        drop(channel);
        while Arc::strong_count(&dns) > 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the resolver task outlives its channel"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        replicas.shutdown.cancel();
    }

    /// IP literals and `localhost` keep one plain connection: nothing is resolved (`ecomctl up`
    /// runs everything on 127.0.0.1, and `localhost` may resolve to `::1` where nothing listens).
    #[tokio::test]
    async fn ip_literals_and_localhost_take_the_plain_path() {
        for url in [
            "http://127.0.0.1:50051",
            "http://[::1]:50051",
            "http://localhost:50051",
        ] {
            let dns: Arc<dyn Resolve> = Arc::new(Fixed::default());
            let _channel = channel_with(
                url,
                Metrics::new("client"),
                Duration::from_secs(5),
                dns.clone(),
                Duration::from_millis(50),
            )
            .expect("channel");
            // A balanced channel's resolver task would hold a second reference.
            assert_eq!(Arc::strong_count(&dns), 1, "{url} was balanced");
        }
        let dns: Arc<dyn Resolve> = Arc::new(Fixed::default());
        let _channel = channel_with(
            "http://demo-products-grpc:50052",
            Metrics::new("client"),
            Duration::from_secs(5),
            dns.clone(),
            Duration::from_millis(50),
        )
        .expect("channel");
        assert_eq!(Arc::strong_count(&dns), 2, "a DNS name is balanced");
    }
}
