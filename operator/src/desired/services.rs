//! The platform's services: the shared ConfigMap, and per service a Service, a Deployment, a
//! PodDisruptionBudget and (when autoscaled) a HorizontalPodAutoscaler.

use std::collections::{BTreeMap, BTreeSet};

use ecom_platform as platform;
use ecom_shop_api::{DATABASE_SERVICES, WorkloadSpec};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        autoscaling::v2::{
            CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
            MetricSpec, MetricTarget, ResourceMetricSource,
        },
        core::v1::{
            ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar,
            Lifecycle, LifecycleHandler, PodSpec, PodTemplateSpec, Service, ServicePort,
            ServiceSpec, SleepAction, TopologySpreadConstraint,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};

use super::{
    Discovery,
    meta::{CHECKSUM_ANNOTATION, Ctx, sha256_hex},
    pod,
};

/// How long a stopping service pod keeps serving before SIGTERM: the callers' re-resolution
/// interval (10 s) plus CoreDNS's TTL (5 s), plus a margin for the endpoints to propagate. The
/// `sleep` pre-stop action is on by default from Kubernetes 1.30 (the chart's `kubeVersion`).
pub const PRE_STOP_SECONDS: i64 = 20;

/// A service's ports, as Kubernetes objects spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub http: i32,
    pub grpc: Option<i32>,
    /// A port of its own for `/metrics` (the gateway's ops port); else `/metrics` is on `http`.
    pub metrics: Option<i32>,
}

/// The ports of `service` from the platform's table (`ecom_platform`); the gateway's for
/// a name the table does not know (the callers pass names from `ecom_shop_api::SERVICES`).
pub fn ports(service: &str) -> Ports {
    let s = platform::by_name(service).unwrap_or(&platform::GATEWAY);
    Ports {
        http: i32::from(s.http_port),
        grpc: s.grpc_port.map(i32::from),
        metrics: s.ops_port.map(i32::from),
    }
}

impl Ports {
    /// The named port Prometheus scrapes.
    pub fn metrics_port_name(&self) -> &'static str {
        if self.metrics.is_some() {
            "metrics"
        } else {
            "http"
        }
    }

    /// `(name, port)` of every port beyond `http`.
    fn extra(&self) -> impl Iterator<Item = (&'static str, i32)> {
        self.grpc
            .map(|p| ("grpc", p))
            .into_iter()
            .chain(self.metrics.map(|p| ("metrics", p)))
    }
}

/// The default image of a service: `<imageRegistry>/ecom-<service>:<version>`.
pub fn image(ctx: &Ctx<'_>, service: &str, spec: &WorkloadSpec) -> String {
    spec.image.clone().unwrap_or_else(|| {
        let registry = ctx
            .shop
            .spec
            .global
            .image_registry
            .as_deref()
            .unwrap_or("ghcr.io/ecom")
            .trim_end_matches('/');
        format!("{registry}/ecom-{service}:{}", ctx.version)
    })
}

/// The settings every service shares (none of them secret): the ConfigMap `<shop>-config`,
/// read by every service's pods (`envFrom`).
pub fn config_map(ctx: &Ctx<'_>) -> ConfigMap {
    let spec = &ctx.shop.spec;
    let mut data = BTreeMap::from([
        ("ECOM_ENV".to_owned(), "production".to_owned()),
        ("ECOM_BIND_ADDRESS".to_owned(), "0.0.0.0".to_owned()),
        ("ECOM_LOG_FORMAT".to_owned(), "json".to_owned()),
        ("ECOM_REDIS_PREFIX".to_owned(), ctx.name.clone()),
        (
            "ECOM_JWKS_URL".to_owned(),
            format!(
                "http://{}:{}/.well-known/jwks.json",
                ctx.child("users"),
                ports("users").http
            ),
        ),
    ]);
    if let Some(url) = super::redis::url(ctx) {
        data.insert("ECOM_REDIS_URL".to_owned(), url);
    }
    for peer in DATABASE_SERVICES {
        let upper = peer.to_ascii_uppercase();
        let host = ctx.child(peer);
        let p = ports(peer);
        if let Some(grpc) = p.grpc {
            // The headless Service: callers balance over every pod.
            data.insert(
                format!("ECOM_{upper}_GRPC_URL"),
                format!("http://{}:{grpc}", grpc_service_name(ctx, peer)),
            );
        }
        data.insert(
            format!("ECOM_{upper}_HTTP_URL"),
            format!("http://{host}:{}", p.http),
        );
    }
    // The client address behind the Ingress (gateway) and behind the gateway (Users).
    if !spec.services.gateway.trusted_proxies.is_empty() {
        data.insert(
            "ECOM_TRUSTED_PROXIES".to_owned(),
            spec.services.gateway.trusted_proxies.join(","),
        );
    }
    if let Some(rate) = &spec.rate_limits.default {
        data.insert("ECOM_RATE_LIMIT_DEFAULT".to_owned(), rate.clone());
    }
    if let Some(rate) = &spec.rate_limits.login {
        data.insert("ECOM_RATE_LIMIT_LOGIN".to_owned(), rate.clone());
    }
    ConfigMap {
        metadata: ctx.meta(&ctx.child("config"), "ecom-config", "config"),
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// The env a service's container gets besides the ConfigMap: its database and the Secrets.
fn wiring(ctx: &Ctx<'_>, service: &str) -> Vec<EnvVar> {
    let upper = service.to_ascii_uppercase();
    let auth = super::auth_secret_name(ctx.shop);
    let mut env = Vec::new();
    if DATABASE_SERVICES.contains(&service) {
        env.push(pod::secret_env(
            &format!("ECOM_{upper}_DATABASE_URL"),
            &super::database::url_secret(ctx, service),
            "uri",
        ));
    }
    // Each service that calls others as itself gets its own credential; Users gets them all to
    // check them; the gateway and Products get none.
    let credentials = super::service_credentials_secret_name(ctx.shop);
    if ecom_shop_api::SERVICES_WITH_IDENTITY.contains(&service) {
        env.push(pod::secret_env(
            "ECOM_SERVICE_SECRET",
            &credentials,
            service,
        ));
    }
    if service == "users" {
        for caller in ecom_shop_api::SERVICES_WITH_IDENTITY {
            env.push(pod::secret_env(
                &format!("ECOM_SERVICE_SECRET_{}", caller.to_ascii_uppercase()),
                &credentials,
                caller,
            ));
        }
        env.push(pod::secret_env("ECOM_ADMIN_EMAIL", &auth, "admin-email"));
        env.push(pod::secret_env(
            "ECOM_ADMIN_PASSWORD",
            &auth,
            "admin-password",
        ));
    }
    env
}

/// The pods' checksum: the ConfigMap's data and the checksum (as discovered) of every Secret
/// the container's env reads. A change of either rolls the pods.
fn checksum(config: &ConfigMap, env: &[EnvVar], discovery: &Discovery) -> String {
    let secrets: BTreeSet<&str> = env
        .iter()
        .filter_map(|e| e.value_from.as_ref()?.secret_key_ref.as_ref())
        .map(|r| r.name.as_str())
        .collect();
    let data = serde_json::to_string(&config.data).unwrap_or_default();
    let mut input = format!(
        "configmap {} {}\n",
        config.metadata.name.as_deref().unwrap_or_default(),
        sha256_hex(data.as_bytes())
    );
    for name in secrets {
        let sum = discovery.checksums.get(name).map_or("", String::as_str);
        input.push_str(&format!("secret {name} {sum}\n"));
    }
    sha256_hex(input.as_bytes())
}

fn default_resources() -> k8s_openapi::api::core::v1::ResourceRequirements {
    pod::resources(("50m", "64Mi"), ("500m", "256Mi"))
}

pub fn deployment(
    ctx: &Ctx<'_>,
    service: &str,
    spec: &WorkloadSpec,
    config: &ConfigMap,
    discovery: &Discovery,
) -> Deployment {
    let name = ctx.child(service);
    let app = format!("ecom-{service}");
    let p = ports(service);

    let mut env = wiring(ctx, service);
    // The operator's wiring wins: a user variable of the same name (or one the ConfigMap sets)
    // would silently override it (`env` beats `envFrom`).
    let taken: BTreeSet<String> = env
        .iter()
        .map(|e| e.name.clone())
        .chain(config.data.iter().flatten().map(|(k, _)| k.clone()))
        .collect();
    env.extend(
        spec.env
            .iter()
            .filter(|e| !taken.contains(&e.name))
            .cloned(),
    );

    let mut container_ports = vec![ContainerPort {
        name: Some("http".to_owned()),
        container_port: p.http,
        protocol: Some("TCP".to_owned()),
        ..ContainerPort::default()
    }];
    for (name, port) in p.extra() {
        container_ports.push(ContainerPort {
            name: Some(name.to_owned()),
            container_port: port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        });
    }

    let mut annotations = ctx.annotations().unwrap_or_default();
    annotations.insert(
        CHECKSUM_ANNOTATION.to_owned(),
        checksum(config, &env, discovery),
    );

    let container = Container {
        name: service.to_owned(),
        image: Some(image(ctx, service, spec)),
        ports: Some(container_ports),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: config.metadata.name.clone().unwrap_or_default(),
                optional: None,
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(env),
        // The servers listen once PostgreSQL answered (a service waits for it up to
        // ECOM_DATABASE_WAIT_SECONDS, 120 s by default, then exits) and migrations ran: three
        // minutes before liveness counts, so a first boot beside a starting database is waited
        // out instead of killed into a crash loop.
        startup_probe: Some(pod::http_probe("/health/live", 5, 36)),
        readiness_probe: Some(pod::http_probe("/health/ready", 5, 3)),
        liveness_probe: Some(pod::http_probe("/health/live", 10, 3)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(pod::container_security()),
        volume_mounts: Some(vec![pod::mount("tmp", "/tmp")]),
        // A stopping pod keeps serving while it leaves the Services' endpoints and its callers'
        // next DNS resolution (ECOM_GRPC_RESOLVE_SECONDS, 10 s, plus the DNS TTL): only then
        // SIGTERM, and the service drains. Without it a replica still listed got calls that
        // failed with Unavailable.
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SECONDS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        ..Container::default()
    };

    Deployment {
        metadata: ctx.meta(&name, &app, service),
        spec: Some(DeploymentSpec {
            // The HorizontalPodAutoscaler owns the replica count when there is one.
            replicas: match spec.autoscaling {
                Some(_) => None,
                None => Some(spec.replicas.unwrap_or(1)),
            },
            selector: ctx.label_selector(service, None),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.pod_labels(&app, service, true)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    image_pull_secrets: ctx.image_pull_secrets(),
                    security_context: Some(pod::pod_security(ctx, 65532, 65532, None)),
                    // The services never call the Kubernetes API, and service links would
                    // put `<SERVICE>_PORT`-style variables next to the `ECOM_*` ones.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        label_selector: Some(ctx.label_selector(service, None)),
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".to_owned(),
                        when_unsatisfiable: "ScheduleAnyway".to_owned(),
                        ..TopologySpreadConstraint::default()
                    }]),
                    volumes: Some(vec![pod::empty_dir("tmp")]),
                    // The pre-stop wait, then the drain.
                    termination_grace_period_seconds: Some(PRE_STOP_SECONDS + 30),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

pub fn service(ctx: &Ctx<'_>, service: &str) -> Service {
    let p = ports(service);
    let mut service_ports = vec![ServicePort {
        name: Some("http".to_owned()),
        port: p.http,
        protocol: Some("TCP".to_owned()),
        target_port: Some(IntOrString::String("http".to_owned())),
        ..ServicePort::default()
    }];
    for (name, port) in p.extra() {
        service_ports.push(ServicePort {
            name: Some(name.to_owned()),
            port,
            protocol: Some("TCP".to_owned()),
            target_port: Some(IntOrString::String(name.to_owned())),
            ..ServicePort::default()
        });
    }
    Service {
        metadata: ctx.meta(&ctx.child(service), &format!("ecom-{service}"), service),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(ctx.selector(service, None)),
            ports: Some(service_ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The name of a service's headless gRPC Service: `<shop>-<service>-grpc`.
pub fn grpc_service_name(ctx: &Ctx<'_>, service: &str) -> String {
    ctx.child(&format!("{service}-grpc"))
}

/// A headless Service for a service's gRPC port (`clusterIP: None`): its DNS name answers one
/// address per ready pod, and the callers balance over them (`ecom_shared::grpc::channel`
/// resolves it again every few seconds). Through the ClusterIP Service one HTTP/2 connection
/// pinned every call to one pod, so replicas an autoscaler added got no gRPC traffic.
pub fn grpc_service(ctx: &Ctx<'_>, service: &str) -> Option<Service> {
    let port = ports(service).grpc?;
    Some(Service {
        metadata: ctx.meta(
            &grpc_service_name(ctx, service),
            &format!("ecom-{service}"),
            service,
        ),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: Some("None".to_owned()),
            selector: Some(ctx.selector(service, None)),
            ports: Some(vec![ServicePort {
                name: Some("grpc".to_owned()),
                port,
                protocol: Some("TCP".to_owned()),
                target_port: Some(IntOrString::String("grpc".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

pub fn pod_disruption_budget(ctx: &Ctx<'_>, service: &str) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ctx.meta(&ctx.child(service), &format!("ecom-{service}"), service),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(ctx.label_selector(service, None)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

pub fn autoscaler(
    ctx: &Ctx<'_>,
    service: &str,
    autoscaling: &ecom_shop_api::AutoscalingSpec,
) -> HorizontalPodAutoscaler {
    let name = ctx.child(service);
    HorizontalPodAutoscaler {
        metadata: ctx.meta(&name, &format!("ecom-{service}"), service),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_owned()),
                kind: "Deployment".to_owned(),
                name,
            },
            min_replicas: Some(autoscaling.min_replicas),
            max_replicas: autoscaling.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".to_owned(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".to_owned(),
                    target: MetricTarget {
                        type_: "Utilization".to_owned(),
                        average_utilization: Some(autoscaling.target_cpu_utilization),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        ..HorizontalPodAutoscaler::default()
    }
}
