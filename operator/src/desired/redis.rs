//! The operator's Redis: a Deployment (in memory) or a StatefulSet (with a volume), and its
//! Service.

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, StatefulSet, StatefulSetSpec},
        core::v1::{
            Container, ContainerPort, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
        },
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};

use super::{
    Desired,
    meta::{Ctx, typed},
    pod,
};

pub const APP: &str = "ecom-redis";
pub const COMPONENT: &str = "redis";
pub const PORT: i32 = 6379;
const IMAGE: &str = "redis:7-alpine";
/// The Alpine image's `redis` user and group.
const REDIS_UID: i64 = 999;
const REDIS_GID: i64 = 1000;

/// The Redis objects' name: `<shop>-redis` (the same whether a Deployment or a StatefulSet).
pub fn name(ctx: &Ctx<'_>) -> String {
    ctx.stateful_child("redis")
}

/// What the services' `ECOM_REDIS_URL` is: the operator's Redis, else `spec.redis.url`.
pub fn url(ctx: &Ctx<'_>) -> Option<String> {
    let redis = &ctx.shop.spec.redis;
    if redis.enabled {
        Some(format!("redis://{}:{PORT}", name(ctx)))
    } else {
        redis.url.clone()
    }
}

pub fn objects(ctx: &Ctx<'_>) -> Vec<Desired> {
    let redis = &ctx.shop.spec.redis;
    if !redis.enabled {
        return Vec::new();
    }
    let mut objects = vec![typed(&service(ctx))];
    match &redis.storage {
        Some(storage) => objects.push(typed(&stateful_set(ctx, storage))),
        None => objects.push(typed(&deployment(ctx))),
    }
    objects
}

fn service(ctx: &Ctx<'_>) -> Service {
    Service {
        metadata: ctx.meta(&name(ctx), APP, COMPONENT),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(ctx.selector(COMPONENT, None)),
            ports: Some(vec![ServicePort {
                name: Some("redis".to_owned()),
                port: PORT,
                protocol: Some("TCP".to_owned()),
                target_port: Some(IntOrString::String("redis".to_owned())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn template(ctx: &Ctx<'_>, persistent: bool) -> PodTemplateSpec {
    // In memory: no snapshots (and Redis' default, no append-only file). With a volume: the
    // append-only file.
    let args: &[&str] = if persistent {
        &["redis-server", "--appendonly", "yes", "--dir", "/data"]
    } else {
        &["redis-server", "--save", "", "--dir", "/data"]
    };
    let container = Container {
        name: "redis".to_owned(),
        image: Some(
            ctx.shop
                .spec
                .redis
                .image
                .clone()
                .unwrap_or_else(|| IMAGE.to_owned()),
        ),
        args: Some(args.iter().map(|&a| a.to_owned()).collect()),
        ports: Some(vec![ContainerPort {
            name: Some("redis".to_owned()),
            container_port: PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(pod::exec_probe(&["redis-cli", "ping"], 0, 5, 3)),
        liveness_probe: Some(pod::exec_probe(&["redis-cli", "ping"], 10, 10, 6)),
        resources: Some(pod::resources(("50m", "64Mi"), ("500m", "512Mi"))),
        security_context: Some(pod::container_security()),
        volume_mounts: Some(vec![pod::mount("data", "/data")]),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(ctx.pod_labels(APP, COMPONENT, false)),
            annotations: ctx.annotations(),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            image_pull_secrets: ctx.image_pull_secrets(),
            security_context: Some(pod::pod_security(
                ctx,
                REDIS_UID,
                REDIS_GID,
                Some(REDIS_GID),
            )),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            // The StatefulSet's claim template provides `data` when persistent.
            volumes: (!persistent).then(|| vec![pod::empty_dir("data")]),
            ..PodSpec::default()
        }),
    }
}

fn deployment(ctx: &Ctx<'_>) -> Deployment {
    Deployment {
        metadata: ctx.meta(&name(ctx), APP, COMPONENT),
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: ctx.label_selector(COMPONENT, None),
            // Never two independent Redis at once (rate limits and locks live there).
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            template: template(ctx, false),
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn stateful_set(ctx: &Ctx<'_>, storage: &ecom_shop_api::StorageSpec) -> StatefulSet {
    let name = name(ctx);
    StatefulSet {
        metadata: ctx.meta(&name, APP, COMPONENT),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: ctx.label_selector(COMPONENT, None),
            template: template(ctx, true),
            volume_claim_templates: Some(vec![super::database::volume_claim(
                ctx, APP, COMPONENT, storage,
            )]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}
