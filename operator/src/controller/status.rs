//! The Shop's status: per-component readiness read from the applied objects (the server's answer
//! to an apply carries their status), one function per condition, the phase, and the status
//! patch (server-side apply under the operator's field manager).

use std::collections::BTreeMap;

use ecom_shop_api::{ComponentStatus, DatabaseProvider, SERVICES, Shop, ShopStatus, condition};
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    ResourceExt,
    api::{Api, DynamicObject, Patch, PatchParams},
};
use serde_json::{Value, json};

use super::{
    Result,
    apply::{Applied, Refused},
    component_of, truncate,
};
use crate::{
    FIELD_MANAGER, VERSION,
    desired::{Discovery, MAX_NAME, child_name},
};

/// What became of the applies of one pass.
#[derive(Clone, Copy)]
pub(super) struct Outcome<'a> {
    /// (kind, name, the object as the server returned it).
    pub applied: &'a [Applied],
    /// Refused by the API server (until the spec changes).
    pub refused: &'a [Refused],
    /// Some failed for now (throttled, a webhook or the server failing): not Ready yet.
    pub interrupted: bool,
}

/// One condition's verdict: whether it holds, why in a word, and in a sentence.
struct Verdict {
    ok: bool,
    reason: &'static str,
    message: String,
}

impl Verdict {
    fn new(ok: bool, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok,
            reason,
            message: message.into(),
        }
    }

    /// `Ready` with `ready`, else `Starting` with `waiting`.
    fn started(ready: bool, done: &str, waiting: &str) -> Self {
        if ready {
            Self::new(true, "Ready", done)
        } else {
            Self::new(false, "Starting", waiting)
        }
    }
}

/// Writes the status (server-side apply of the status subresource, forced).
pub(super) async fn patch(shops: &Api<Shop>, name: &str, status: &ShopStatus) -> Result<()> {
    let patch = json!({
        "apiVersion": "ecom.dev/v1alpha1",
        "kind": "Shop",
        "status": status,
    });
    shops
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Whether the status says `Ready=True`.
pub(super) fn is_ready(status: Option<&ShopStatus>) -> bool {
    status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == condition::READY))
        .is_some_and(|c| c.status == "True")
}

/// The status after an apply: per-component readiness read from the applied Deployments,
/// databases, monitoring, and the gateway URL.
pub(super) fn observed_status(
    shop: &Shop,
    discovery: &Discovery,
    outcome: &Outcome<'_>,
    missing_secrets: &[String],
) -> ShopStatus {
    let Outcome {
        applied,
        refused,
        interrupted,
    } = *outcome;
    let mut status = base_status(shop);
    status.components = components(shop, applied);
    let all_ready = status.components.values().all(|c| c.ready);
    let provider = shop.spec.database.provider;
    let databases = databases(provider, discovery.cnpg, missing_secrets, applied);
    let monitoring = monitoring(
        shop.spec.monitoring.service_monitor.enabled,
        discovery.service_monitors,
    );
    let ready = all_ready && databases.ok && refused.is_empty() && !interrupted;
    let degraded = degraded(&databases, refused);
    status.phase = Some(phase(ready, degraded.ok).to_owned());
    let verdicts = [
        (condition::READY, readiness(ready)),
        (condition::PROGRESSING, progressing(ready, degraded.ok)),
        (condition::DEGRADED, degraded),
        (condition::DATABASES_READY, databases),
        (condition::MONITORING_AVAILABLE, monitoring),
        (
            condition::RECONCILE_SUSPENDED,
            Verdict::new(false, "Active", "the operator manages the platform"),
        ),
    ];
    let (previous, generation) = (shop.status.as_ref(), shop.metadata.generation);
    status.conditions = verdicts
        .into_iter()
        .map(|(type_, v)| condition(previous, generation, type_, v.ok, v.reason, &v.message))
        .collect();
    status
}

/// The status of a suspended Shop: the other conditions as they were, `ReconcileSuspended`.
pub(super) fn suspended(shop: &Shop) -> ShopStatus {
    let previous = shop.status.as_ref();
    let generation = shop.metadata.generation;
    let mut status = base_status(shop);
    status.phase = Some("Suspended".to_owned());
    // Keep the other conditions as they were; only ReconcileSuspended is (re)stated.
    status.conditions = previous
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.type_ != condition::RECONCILE_SUSPENDED)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    status.conditions.push(condition(
        previous,
        generation,
        condition::RECONCILE_SUSPENDED,
        true,
        "Suspended",
        "spec.suspend is true: no changes are made to the platform",
    ));
    status
}

/// A condition, keeping the previous `lastTransitionTime` when the status did not change (so a
/// status patch with nothing new is identical and does not trigger another reconciliation).
fn condition(
    previous: Option<&ShopStatus>,
    generation: Option<i64>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last = previous
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map_or_else(
            || Time(Timestamp::now()),
            |c| c.last_transition_time.clone(),
        );
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: last,
    }
}

fn base_status(shop: &Shop) -> ShopStatus {
    ShopStatus {
        observed_generation: shop.metadata.generation,
        operator_version: Some(VERSION.to_owned()),
        platform_version: Some(
            shop.spec
                .version
                .clone()
                .unwrap_or_else(|| VERSION.to_owned()),
        ),
        // Components are reported as last seen while suspended.
        components: shop
            .status
            .as_ref()
            .map(|s| s.components.clone())
            .unwrap_or_default(),
        ..ShopStatus::default()
    }
}

/// Each enabled service's readiness, from its applied Deployment.
fn components(shop: &Shop, applied: &[Applied]) -> BTreeMap<String, ComponentStatus> {
    SERVICES
        .into_iter()
        .filter(|service| shop.spec.services.get(service).is_some_and(|s| s.enabled))
        .map(|service| (service.to_owned(), component(shop, service, applied)))
        .collect()
}

fn component(shop: &Shop, service: &str, applied: &[Applied]) -> ComponentStatus {
    let url = (service == "gateway").then(|| gateway_url(shop));
    let deployment = applied
        .iter()
        .find(|(kind, _, o)| kind == "Deployment" && component_of(o) == Some(service));
    let Some((_, _, d)) = deployment else {
        return ComponentStatus {
            ready: false,
            ready_replicas: 0,
            image: None,
            url,
        };
    };
    let image = d
        .data
        .pointer("/spec/template/spec/containers/0/image")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let ready_replicas = int_at(&d.data, "/status/readyReplicas");
    ComponentStatus {
        ready: rolled_out(&object_json(d)),
        ready_replicas: i32::try_from(ready_replicas).unwrap_or(i32::MAX),
        image,
        url,
    }
}

/// The gateway's URL: the Ingress host when there is one, else its in-cluster Service.
fn gateway_url(shop: &Shop) -> String {
    let ingress = &shop.spec.services.gateway.ingress;
    match (&ingress.enabled, &ingress.host) {
        (true, Some(host)) if ingress.tls_secret_name.is_some() => format!("https://{host}"),
        (true, Some(host)) => format!("http://{host}"),
        _ => format!(
            "http://{}.{}.svc:{}",
            child_name(&shop.name_any(), "gateway", MAX_NAME),
            shop.namespace().unwrap_or_default(),
            ecom_platform::GATEWAY.http_port
        ),
    }
}

/// `DatabasesReady`: the provider available, the Secrets there, the databases rolled out.
fn databases(
    provider: DatabaseProvider,
    cnpg_served: bool,
    missing_secrets: &[String],
    applied: &[Applied],
) -> Verdict {
    let missing = missing_secrets.join(", ");
    match provider {
        DatabaseProvider::CloudNativePG if !cnpg_served => Verdict::new(
            false,
            "CloudNativePGMissing",
            "provider CloudNativePG needs the CloudNativePG operator (postgresql.cnpg.io/v1 Cluster)",
        ),
        // CloudNativePG creates each cluster's `<cluster>-app` Secret as it first starts: missing
        // then is a first boot, not a fault.
        DatabaseProvider::CloudNativePG
            if !missing_secrets.is_empty() && !cnpg_clusters_ready(applied) =>
        {
            Verdict::new(
                false,
                "Starting",
                format!("waiting for the CloudNativePG clusters to start and create {missing}"),
            )
        }
        _ if !missing_secrets.is_empty() => Verdict::new(
            false,
            "SecretMissing",
            format!("missing Secrets: {missing}"),
        ),
        DatabaseProvider::Builtin => Verdict::started(
            builtin_databases_ready(applied),
            "every database answers",
            "waiting for the databases",
        ),
        DatabaseProvider::CloudNativePG => Verdict::started(
            cnpg_clusters_ready(applied),
            "every CloudNativePG cluster is ready",
            "waiting for the CloudNativePG clusters",
        ),
        DatabaseProvider::External => Verdict::new(true, "External", "external databases"),
    }
}

/// `MonitoringAvailable`: ServiceMonitors wanted and served.
fn monitoring(enabled: bool, served: bool) -> Verdict {
    match (enabled, served) {
        (true, true) => Verdict::new(true, "Available", "a ServiceMonitor per service"),
        (true, false) => Verdict::new(
            false,
            "ServiceMonitorCRDMissing",
            "monitoring.coreos.com/v1 ServiceMonitor is not served: install the Prometheus operator",
        ),
        (false, _) => Verdict::new(
            false,
            "Disabled",
            "spec.monitoring.serviceMonitor.enabled is false",
        ),
    }
}

/// `Degraded`: an object refused, or the databases failing (starting is not a fault).
fn degraded(databases: &Verdict, refused: &[Refused]) -> Verdict {
    if !refused.is_empty() {
        let objects: Vec<String> = refused
            .iter()
            .map(|r| format!("{} {}: {}", r.kind, r.name, r.message))
            .collect();
        let message = format!("the API server refused {}", objects.join("; "));
        return Verdict::new(true, "ApplyFailed", truncate(&message, 2000));
    }
    if !databases.ok && databases.reason != "Starting" {
        return Verdict::new(true, databases.reason, databases.message.clone());
    }
    Verdict::new(false, "AsExpected", "nothing is wrong")
}

/// `Ready`: every component, the databases and every apply.
fn readiness(ready: bool) -> Verdict {
    if ready {
        Verdict::new(true, "Ready", "every component is ready")
    } else {
        Verdict::new(false, "NotReady", "some components are not ready yet")
    }
}

/// `Progressing`: not ready yet, and not stuck.
fn progressing(ready: bool, degraded: bool) -> Verdict {
    if ready {
        Verdict::new(false, "Complete", "the platform matches the spec")
    } else {
        Verdict::new(!degraded, "Rolling", "components are starting or updating")
    }
}

fn phase(ready: bool, degraded: bool) -> &'static str {
    if ready {
        "Ready"
    } else if degraded {
        "Degraded"
    } else {
        "Progressing"
    }
}

fn int_at(v: &Value, path: &str) -> i64 {
    v.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

/// The whole object as JSON (`kind`, `metadata` and the rest), as the server sent it.
fn object_json(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or_default()
}

/// Whether a Deployment or StatefulSet (as the server returned it) has rolled out its current
/// spec, the way `kubectl rollout status` decides: the controller has seen this generation,
/// every wanted replica runs the new template and is ready, and no old one is left. Ready
/// replicas alone are not enough: during an upgrade to a bad image the old pod stays ready.
pub(super) fn rolled_out(object: &Value) -> bool {
    let wanted = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = int_at(object, "/metadata/generation");
    let observed = int_at(object, "/status/observedGeneration");
    let updated = int_at(object, "/status/updatedReplicas");
    let ready = int_at(object, "/status/readyReplicas");
    let total = int_at(object, "/status/replicas");
    let seen = observed >= generation;
    let base = seen && updated >= wanted && ready >= wanted && total <= updated.max(wanted);
    match object.pointer("/kind").and_then(Value::as_str) {
        Some("StatefulSet") => {
            let current = object
                .pointer("/status/currentRevision")
                .and_then(Value::as_str);
            let update = object
                .pointer("/status/updateRevision")
                .and_then(Value::as_str);
            base && current.is_some() && current == update
        }
        _ => base,
    }
}

/// Whether every applied database StatefulSet (Builtin provider) has rolled out.
fn builtin_databases_ready(applied: &[Applied]) -> bool {
    applied
        .iter()
        .filter(|(kind, _, o)| kind == "StatefulSet" && component_of(o) == Some("database"))
        .all(|(_, _, s)| rolled_out(&object_json(s)))
}

/// Whether every applied CloudNativePG `Cluster` has all its instances ready.
fn cnpg_clusters_ready(applied: &[Applied]) -> bool {
    applied
        .iter()
        .filter(|(kind, _, _)| kind == "Cluster")
        .all(|(_, _, c)| {
            int_at(&c.data, "/status/readyInstances") >= int_at(&c.data, "/spec/instances").max(1)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_names_refused_objects_first_and_never_a_database_that_is_starting() {
        let starting = Verdict::started(false, "every database answers", "waiting");
        assert!(!degraded(&starting, &[]).ok);
        assert_eq!(degraded(&starting, &[]).reason, "AsExpected");
        let missing = Verdict::new(false, "SecretMissing", "missing Secrets: x");
        let verdict = degraded(&missing, &[]);
        assert_eq!(
            (verdict.ok, verdict.reason, verdict.message.as_str()),
            (true, "SecretMissing", "missing Secrets: x")
        );
        let refused = Refused {
            kind: "Service".to_owned(),
            name: "demo-users".to_owned(),
            message: "x".repeat(3000),
        };
        let verdict = degraded(&missing, &[refused]);
        assert_eq!((verdict.ok, verdict.reason), (true, "ApplyFailed"));
        assert_eq!(verdict.message.len(), 2000);
    }

    #[test]
    fn the_phase_and_progressing_follow_ready_then_degraded() {
        assert_eq!(phase(true, false), "Ready");
        assert_eq!(phase(false, true), "Degraded");
        assert_eq!(phase(false, false), "Progressing");
        assert!(!progressing(true, false).ok);
        assert!(!progressing(false, true).ok, "stuck is not progressing");
        assert_eq!(progressing(false, false).reason, "Rolling");
    }

    #[test]
    fn monitoring_is_available_only_when_wanted_and_served() {
        assert!(monitoring(true, true).ok);
        assert_eq!(monitoring(true, false).reason, "ServiceMonitorCRDMissing");
        assert_eq!(monitoring(false, true).reason, "Disabled");
    }

    #[test]
    fn a_missing_cloudnativepg_operator_comes_before_missing_secrets() {
        let missing = ["demo-users-db-app".to_owned()];
        let provider = DatabaseProvider::CloudNativePG;
        assert_eq!(
            databases(provider, false, &missing, &[]).reason,
            "CloudNativePGMissing"
        );
        // No cluster applied yet counts as started (nothing to wait for): the Secret is missing.
        assert_eq!(
            databases(provider, true, &missing, &[]).reason,
            "SecretMissing"
        );
        assert!(databases(DatabaseProvider::External, false, &[], &[]).ok);
    }
}
