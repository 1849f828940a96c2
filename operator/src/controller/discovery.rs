//! What the cluster serves: CloudNativePG's `Cluster` and the Prometheus operator's kinds.

use std::collections::BTreeMap;

use ecom_shop_api::{DatabaseProvider, Shop};
use kube::client::Client;

use super::Result;
use crate::desired::Discovery;

/// Which of the Prometheus operator's kinds the cluster serves (whether or not the Shop wants
/// them: pruning needs to know).
pub(super) struct Served {
    pub service_monitors: bool,
    pub prometheus_rules: bool,
}

/// What the desired state may use (no Secret checksums yet), and what pruning must look at.
pub(super) async fn discover(shop: &Shop, client: &Client) -> Result<(Discovery, Served)> {
    let cnpg = shop.spec.database.provider == DatabaseProvider::CloudNativePG
        && api_served(client, "postgresql.cnpg.io/v1", "Cluster").await?;
    // The Prometheus operator's kinds, asked once, always: when monitoring is turned off, what
    // was made for it must still be pruned. The alert rules come with the ServiceMonitors (they
    // select on the `job` those set).
    let monitoring_kinds = served_kinds(client, "monitoring.coreos.com/v1").await?;
    let served = Served {
        service_monitors: monitoring_kinds.iter().any(|k| k == "ServiceMonitor"),
        prometheus_rules: monitoring_kinds.iter().any(|k| k == "PrometheusRule"),
    };
    let monitoring = &shop.spec.monitoring;
    let discovery = Discovery {
        cnpg,
        service_monitors: monitoring.service_monitor.enabled && served.service_monitors,
        prometheus_rules: monitoring.prometheus_rule.enabled && served.prometheus_rules,
        checksums: BTreeMap::new(),
    };
    Ok((discovery, served))
}

/// Whether the cluster serves `kind` in `group_version` (e.g. a CRD is installed).
async fn api_served(client: &Client, group_version: &str, kind: &str) -> Result<bool> {
    Ok(served_kinds(client, group_version)
        .await?
        .iter()
        .any(|k| k == kind))
}

/// The kinds the cluster serves in `group_version` (none when the group is not installed).
async fn served_kinds(client: &Client, group_version: &str) -> Result<Vec<String>> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.into_iter().map(|r| r.kind).collect()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}
