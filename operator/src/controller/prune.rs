//! Pruning: deletes what a Shop owns (controller owner reference, managed-by label) but no longer
//! wants. A database StatefulSet is kept (its volume holds data) even when its service is off.

use ecom_shop_api::Shop;
use kube::{
    ResourceExt,
    api::{Api, DeleteParams, DynamicObject, ListParams},
    client::Client,
};
use serde_json::Value;

use super::{Result, api_for, component_of, discovery::Served, gone_is_done, key};
use crate::desired::{Desired, owned_selector};

/// The kinds whose objects can leave the desired state (a service disabled, autoscaling or the
/// Ingress turned off, Redis storage toggled): (apiVersion, kind). Secrets and databases are
/// never pruned: they hold data.
const PRUNABLE: [(&str, &str); 8] = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
];

/// Deletes, kind by kind, what the Shop owns but no longer wants.
pub(super) async fn prune(
    shop: &Shop,
    client: &Client,
    ns: &str,
    wanted: &[Desired],
    served: &Served,
) -> Result<()> {
    let selector = owned_selector(shop);
    for (api_version, kind) in prunable(served) {
        let probe = Desired {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            name: String::new(),
            object: Value::Null,
        };
        let api = api_for(client, ns, &probe);
        for existing in api.list(&ListParams::default().labels(&selector)).await? {
            if unwanted(shop, &existing, kind, wanted) {
                delete(shop, &api, kind, &existing.name_any()).await?;
            }
        }
    }
    Ok(())
}

/// The prunable kinds, with the Prometheus operator's only where they are served (a LIST would
/// fail).
fn prunable(served: &Served) -> impl Iterator<Item = (&'static str, &'static str)> {
    let monitors = [
        (
            ("monitoring.coreos.com/v1", "ServiceMonitor"),
            served.service_monitors,
        ),
        (
            ("monitoring.coreos.com/v1", "PrometheusRule"),
            served.prometheus_rules,
        ),
    ];
    PRUNABLE.into_iter().chain(
        monitors
            .into_iter()
            .filter(|(_, served)| *served)
            .map(|(kind, _)| kind),
    )
}

/// Whether an existing object of `kind` is the Shop's own (controller owner reference), no
/// longer wanted, and holds no data.
fn unwanted(shop: &Shop, existing: &DynamicObject, kind: &str, wanted: &[Desired]) -> bool {
    let uid = shop.uid().unwrap_or_default();
    let name = existing.name_any();
    let ours = existing
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid);
    let still_wanted = wanted.iter().any(|d| d.kind == kind && d.name == name);
    let data = component_of(existing) == Some("database");
    ours && !still_wanted && !data
}

async fn delete(shop: &Shop, api: &Api<DynamicObject>, kind: &str, name: &str) -> Result<()> {
    tracing::info!(shop = %key(shop), kind, name, "pruning what the Shop no longer wants");
    gone_is_done(api.delete(name, &DeleteParams::background()).await)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_operators_kinds_are_listed_only_where_served() {
        let kinds = |service_monitors, prometheus_rules| -> Vec<&str> {
            prunable(&Served {
                service_monitors,
                prometheus_rules,
            })
            .map(|(_, kind)| kind)
            .collect()
        };
        assert_eq!(kinds(false, false).len(), PRUNABLE.len());
        assert_eq!(kinds(true, false).last(), Some(&"ServiceMonitor"));
        assert_eq!(
            kinds(true, true)[PRUNABLE.len()..],
            ["ServiceMonitor", "PrometheusRule"]
        );
        assert_eq!(kinds(false, true).last(), Some(&"PrometheusRule"));
    }
}
