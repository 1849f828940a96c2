//! The desired state: a pure function from a `Shop` and what the cluster offers to every object
//! that should exist. No I/O, no clock, no randomness: two runs give byte-identical output.
//!
//! Every object is named `<shop>-<part>` (at most 63 characters, 50 for StatefulSets and
//! CloudNativePG clusters: longer names end in a hash), lives in the Shop's namespace, carries
//! the six `app.kubernetes.io` labels (plus `spec.global.labels`), `spec.global.annotations`
//! and one controller owner reference to the Shop.
//!
//! A disabled service loses its workload (Service, Deployment, PodDisruptionBudget,
//! HorizontalPodAutoscaler, ServiceMonitor) but keeps its database: disabling a service stops
//! it, it does not drop its data (deleting the Shop does, unless `retainOnDelete`).

mod database;
mod meta;
mod monitoring;
mod network;
mod pod;
mod policy;
mod redis;
mod services;

use std::collections::BTreeMap;

use ecom_shop_api::{DATABASE_SERVICES, DatabaseProvider, SERVICES, Shop};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::ResourceExt;
use serde_json::Value;

use self::meta::{Ctx, typed};
pub use self::{
    meta::{CHECKSUM_ANNOTATION, MAX_NAME, MAX_STATEFUL_NAME, child_name, short_hash},
    services::{Ports, ports},
};

/// What the reconciler observed, that the desired state depends on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Discovery {
    /// `postgresql.cnpg.io/v1` `Cluster` is served (CloudNativePG installed).
    pub cnpg: bool,
    /// `monitoring.coreos.com/v1` `ServiceMonitor` is served (Prometheus operator installed).
    pub service_monitors: bool,
    /// `monitoring.coreos.com/v1` `PrometheusRule` is served.
    pub prometheus_rules: bool,
    /// A checksum of each Secret / ConfigMap the pods read, by object name: a change rolls the
    /// pods that use it (pod template annotation).
    pub checksums: BTreeMap<String, String>,
}

/// One object to apply (server-side apply, field manager [`crate::FIELD_MANAGER`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// e.g. `apps/v1`, `v1`, `postgresql.cnpg.io/v1`.
    pub api_version: String,
    /// e.g. `Deployment`.
    pub kind: String,
    pub name: String,
    /// The whole object: apiVersion, kind, metadata (name, namespace, labels, annotations, the
    /// controller owner reference), spec.
    pub object: serde_json::Value,
}

/// The Secret the Users service's bootstrap admin comes from: `spec.auth.jwtSecretRef`, else
/// the generated `<shop>-auth`. (Its `service-secret` key, one secret shared by every service,
/// is no longer read: see [`service_credentials_secret_name`].)
pub fn auth_secret_name(shop: &Shop) -> String {
    shop.spec
        .auth
        .jwt_secret_ref
        .clone()
        .unwrap_or_else(|| child_name(&shop.name_any(), "auth", MAX_NAME))
}

/// The generated Secret of the service credentials: one key per service that calls others as
/// itself (`orders`, `payments`), each given to that service alone (`ECOM_SERVICE_SECRET`) and
/// to Users (`ECOM_SERVICE_SECRET_<SERVICE>`), so a credential mints only its own service's
/// identity and the gateway or Products hold none.
pub fn service_credentials_secret_name(shop: &Shop) -> String {
    child_name(&shop.name_any(), "service-credentials", MAX_NAME)
}

/// Every object the Shop should own, in apply order (config and storage before workloads):
/// the ConfigMap, the databases, Redis, per enabled service its Service (and headless gRPC
/// Service), Deployment, PodDisruptionBudget and HorizontalPodAutoscaler, the Ingress, the
/// ServiceMonitors, the PrometheusRule, the dashboards' ConfigMaps, the NetworkPolicies.
/// Secrets are not here: see [`generated_secrets`].
pub fn desired_state(shop: &Shop, discovery: &Discovery) -> Vec<Desired> {
    let ctx = Ctx::new(shop);
    let spec = &shop.spec;
    let enabled: Vec<_> = SERVICES
        .into_iter()
        .filter_map(|name| Some((name, spec.services.get(name)?)))
        .filter(|(_, service)| service.enabled)
        .collect();

    let config = services::config_map(&ctx);
    let mut objects = vec![typed(&config)];
    for service in DATABASE_SERVICES {
        objects.extend(database::objects(&ctx, service, discovery));
    }
    objects.extend(redis::objects(&ctx));
    for &(name, service) in &enabled {
        objects.push(typed(&services::service(&ctx, name)));
        if let Some(grpc) = services::grpc_service(&ctx, name) {
            objects.push(typed(&grpc));
        }
        objects.push(typed(&services::deployment(
            &ctx, name, service, &config, discovery,
        )));
        objects.push(typed(&services::pod_disruption_budget(&ctx, name)));
        if let Some(autoscaling) = &service.autoscaling {
            objects.push(typed(&services::autoscaler(&ctx, name, autoscaling)));
        }
    }
    if spec.services.gateway.service.enabled
        && let Some(ingress) = network::ingress(&ctx)
    {
        objects.push(typed(&ingress));
    }
    if spec.monitoring.service_monitor.enabled && discovery.service_monitors {
        for &(name, _) in &enabled {
            objects.push(network::service_monitor(&ctx, name));
        }
    }
    if spec.monitoring.service_monitor.enabled
        && spec.monitoring.prometheus_rule.enabled
        && discovery.prometheus_rules
    {
        objects.push(monitoring::prometheus_rule(&ctx));
    }
    if spec.monitoring.dashboards.enabled {
        objects.extend(monitoring::dashboards(&ctx).iter().map(typed));
    }
    let names: Vec<&str> = enabled.iter().map(|(name, _)| *name).collect();
    objects.extend(policy::network_policies(&ctx, &names).iter().map(typed));
    objects
}

/// The Secrets the operator creates once when missing and never regenerates (database
/// credentials of the Builtin provider, the auth Secret). `random` yields a fresh secret string
/// per call (injected: tests pass a deterministic one).
pub fn generated_secrets(shop: &Shop, random: &mut dyn FnMut() -> String) -> Vec<Desired> {
    let ctx = Ctx::new(shop);
    let mut secrets = Vec::new();
    if shop.spec.database.provider == DatabaseProvider::Builtin {
        // Every backend service, enabled or not: its database outlives a disabled service.
        for service in DATABASE_SERVICES {
            let password = at_least(random, 24);
            secrets.push(typed(&database::credentials(&ctx, service, &password)));
        }
    }
    // Separate from the auth Secret, so a Shop created before per-service credentials (or one
    // with its own jwtSecretRef) gets them too; created when missing, never regenerated.
    let credentials = ecom_shop_api::SERVICES_WITH_IDENTITY
        .iter()
        .map(|name| {
            (
                (*name).to_owned(),
                ByteString(at_least(random, 32).into_bytes()),
            )
        })
        .collect();
    secrets.push(typed(&Secret {
        metadata: ctx.meta(
            &service_credentials_secret_name(shop),
            "ecom-auth",
            "service-credentials",
        ),
        type_: Some("Opaque".to_owned()),
        data: Some(credentials),
        ..Secret::default()
    }));
    if shop.spec.auth.jwt_secret_ref.is_none() {
        let data = [
            ("admin-email", format!("admin@{}.local", ctx.name)),
            ("admin-password", at_least(random, 24)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.into_bytes())))
        .collect();
        secrets.push(typed(&Secret {
            metadata: ctx.meta(&auth_secret_name(shop), "ecom-auth", "auth"),
            type_: Some("Opaque".to_owned()),
            data: Some(data),
            ..Secret::default()
        }));
    }
    secrets
}

/// At least `min` characters from `random` (called again while shorter: production refuses a
/// service secret under 32 characters).
fn at_least(random: &mut dyn FnMut() -> String, min: usize) -> String {
    let mut out = String::new();
    while out.chars().count() < min {
        let next = random();
        if next.is_empty() {
            // A generator that yields nothing would never get there.
            break;
        }
        out.push_str(&next);
    }
    out
}

/// The label selector of everything a Shop's operator made (prune and cleanup list by it): the
/// same label values the objects carry, so a long name is cut the same way on both sides.
pub fn owned_selector(shop: &Shop) -> String {
    format!(
        "{}={},{}={}",
        meta::LABEL_INSTANCE,
        meta::label_value(&shop.name_any()),
        meta::LABEL_MANAGED_BY,
        crate::FIELD_MANAGER
    )
}

/// Every Secret name the pods of `objects` read (env `secretKeyRef`).
pub fn referenced_secrets(objects: &[Desired]) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(name) = map
                    .get("secretKeyRef")
                    .and_then(|r| r.get("name"))
                    .and_then(Value::as_str)
                    && !out.iter().any(|n| n == name)
                {
                    out.push(name.to_owned());
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for d in objects {
        walk(&d.object, &mut out);
    }
    out
}
