//! The platform's alert rules and Grafana dashboards, from the very files the compose stack
//! uses (`monitoring/prometheus/rules/`, `monitoring/grafana/dashboards/`), embedded in the
//! operator at build time.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::Value;

use super::{
    Desired,
    meta::{Ctx, short_hash, untyped},
};

/// The alert rule files, by file name.
pub const RULE_FILES: [(&str, &str); 1] = [(
    "ecom.rules.yml",
    include_str!("../../../monitoring/prometheus/rules/ecom.rules.yml"),
)];

/// The dashboards, by file name.
pub const DASHBOARD_FILES: [(&str, &str); 4] = [
    (
        "caches-limits.json",
        include_str!("../../../monitoring/grafana/dashboards/caches-limits.json"),
    ),
    (
        "overview.json",
        include_str!("../../../monitoring/grafana/dashboards/overview.json"),
    ),
    (
        "runtime.json",
        include_str!("../../../monitoring/grafana/dashboards/runtime.json"),
    ),
    (
        "shop.json",
        include_str!("../../../monitoring/grafana/dashboards/shop.json"),
    ),
];

/// The compose stack's Grafana datasource uid, which the dashboard files name.
const COMPOSE_DATASOURCE_UID: &str = "ecom-prometheus";

/// A `PrometheusRule` `<shop>-alerts` holding every rule group of [`RULE_FILES`].
pub fn prometheus_rule(ctx: &Ctx<'_>) -> Desired {
    let spec = &ctx.shop.spec.monitoring.prometheus_rule;
    let app = "ecom-monitoring";
    let mut meta = ctx.meta(&ctx.child("alerts"), app, "alerts");
    let mut labels = ctx.shop.spec.global.labels.clone();
    labels.extend(spec.labels.clone());
    labels.extend(ctx.own_labels(app, "alerts"));
    meta.labels = Some(labels);
    let namespace = ctx.namespace.clone().unwrap_or_default();
    let groups: Vec<Value> = RULE_FILES
        .iter()
        .flat_map(|(_, text)| {
            // Committed files, checked by promtool in `make lint` and parsed by a test here.
            let file: Value = serde_norway::from_str(text).unwrap_or(Value::Null);
            file.get("groups")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|mut group| {
            // One Prometheus often watches several Shops: each Shop's rules look at its own
            // namespace, and its alerts say which Shop they are about.
            for rule in group["rules"].as_array_mut().into_iter().flatten() {
                if let Some(expr) = rule["expr"].as_str() {
                    rule["expr"] = Value::String(scoped(expr, &namespace));
                }
                if let Some(labels) = rule["labels"].as_object_mut() {
                    labels.insert("namespace".to_owned(), Value::String(namespace.clone()));
                    labels.insert("shop".to_owned(), Value::String(ctx.name.clone()));
                }
            }
            group["name"] = Value::String(format!(
                "{}/{}: {}",
                namespace,
                ctx.name,
                group["name"].as_str().unwrap_or_default()
            ));
            group
        })
        .collect();
    untyped(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        &meta,
        serde_json::json!({ "groups": groups }),
    )
}

/// Every series selector of a rule file's expression (each names its `job`: a test checks it)
/// narrowed to the Shop's namespace.
pub fn scoped(expr: &str, namespace: &str) -> String {
    expr.replace("{job=", &format!("{{namespace=\"{namespace}\",job="))
}

/// One ConfigMap per dashboard, `<shop>-dashboard-<name>`, labelled for the Grafana sidecar,
/// its datasource pointed at `spec.monitoring.dashboards.datasourceUid`. The sidecar writes every
/// dashboard it finds into one folder under its data key, and Grafana keys them by uid: both,
/// and the title, name the Shop, so two Shops do not overwrite (or delete) each other's.
pub fn dashboards(ctx: &Ctx<'_>) -> Vec<ConfigMap> {
    let spec = &ctx.shop.spec.monitoring.dashboards;
    let app = "ecom-monitoring";
    DASHBOARD_FILES
        .iter()
        .map(|(file, text)| {
            let stem = file.trim_end_matches(".json");
            let mut meta = ctx.meta(&ctx.child(&format!("dashboard-{stem}")), app, "dashboards");
            let mut labels = ctx.shop.spec.global.labels.clone();
            labels.extend(spec.labels.clone());
            labels.extend(ctx.own_labels(app, "dashboards"));
            meta.labels = Some(labels);
            let mut dashboard: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            retarget_datasource(&mut dashboard, &spec.datasource_uid);
            let namespace = ctx.namespace.as_deref().unwrap_or_default();
            let shop = format!("{namespace}/{}", ctx.name);
            if let Some(uid) = dashboard["uid"].as_str() {
                // Grafana's uids are at most 40 characters.
                dashboard["uid"] = Value::String(format!("{uid:.31}-{}", short_hash(&shop)));
            }
            if let Some(title) = dashboard["title"].as_str() {
                dashboard["title"] = Value::String(format!("{title} ({shop})"));
            }
            ConfigMap {
                metadata: meta,
                data: Some(BTreeMap::from([(
                    format!("{namespace}-{}-{file}", ctx.name),
                    serde_json::to_string(&dashboard).unwrap_or_default(),
                )])),
                ..ConfigMap::default()
            }
        })
        .collect()
}

/// Every `"uid": "ecom-prometheus"` datasource reference becomes `uid`.
fn retarget_datasource(v: &mut Value, uid: &str) {
    match v {
        Value::Object(map) => {
            if map.get("type").and_then(Value::as_str) == Some("prometheus")
                && map.get("uid").and_then(Value::as_str) == Some(COMPOSE_DATASOURCE_UID)
            {
                map.insert("uid".to_owned(), Value::String(uid.to_owned()));
            }
            map.values_mut().for_each(|v| retarget_datasource(v, uid));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| retarget_datasource(v, uid)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file the compose stack uses is embedded, and each parses: a new dashboard or rule
    /// file would otherwise never reach a cluster.
    #[test]
    fn every_compose_rule_and_dashboard_file_is_embedded_and_parses() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitoring");
        let names = |dir: &str, ext: &str| {
            let mut names: Vec<String> = std::fs::read_dir(format!("{root}/{dir}"))
                .expect("dir")
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.ends_with(ext))
                .collect();
            names.sort();
            names
        };
        let rules: Vec<&str> = RULE_FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names("prometheus/rules", ".yml"), rules);
        let dashboards: Vec<&str> = DASHBOARD_FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names("grafana/dashboards", ".json"), dashboards);
        for (name, text) in RULE_FILES {
            let v: Value = serde_norway::from_str(text).expect(name);
            assert!(
                v["groups"].as_array().is_some_and(|g| !g.is_empty()),
                "{name}"
            );
            // Every series selector names its job, so `scoped` narrows each to the Shop's
            // namespace: count selectors (a metric name followed by `{`) against `{job=`.
            for group in v["groups"].as_array().into_iter().flatten() {
                for rule in group["rules"].as_array().into_iter().flatten() {
                    let expr = rule["expr"].as_str().expect("expr");
                    let selectors = expr.matches('{').count();
                    assert!(selectors > 0, "{name}: {expr}");
                    assert_eq!(expr.matches("{job=").count(), selectors, "{name}: {expr}");
                }
            }
        }
        for (name, text) in DASHBOARD_FILES {
            let v: Value = serde_json::from_str(text).expect(name);
            assert!(v["panels"].is_array(), "{name}");
        }
    }
}
