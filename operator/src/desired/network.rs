//! The gateway's Ingress and the services' ServiceMonitors.

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use serde_json::json;

use super::{
    Desired,
    meta::{Ctx, untyped},
};

/// The gateway's Ingress (when `services.gateway.ingress.enabled`).
pub fn ingress(ctx: &Ctx<'_>) -> Option<Ingress> {
    let spec = &ctx.shop.spec.services.gateway.ingress;
    if !spec.enabled {
        return None;
    }
    let name = ctx.child("gateway");
    let mut meta = ctx.meta(&name, "ecom-gateway", "gateway");
    if !spec.annotations.is_empty() {
        // The Ingress' own annotations (e.g. cert-manager's) win over the global ones.
        let mut annotations = meta.annotations.take().unwrap_or_default();
        annotations.extend(spec.annotations.clone());
        meta.annotations = Some(annotations);
    }
    let host = spec.host.clone().filter(|h| !h.is_empty());
    Some(Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name,
                                port: Some(ServiceBackendPort {
                                    name: Some("http".to_owned()),
                                    number: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            tls: spec.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: host.map(|h| vec![h]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

/// A ServiceMonitor (`monitoring.coreos.com/v1`) scraping a service's `/metrics`.
pub fn service_monitor(ctx: &Ctx<'_>, service: &str) -> Desired {
    let monitoring = &ctx.shop.spec.monitoring.service_monitor;
    let app = format!("ecom-{service}");
    let mut meta = ctx.meta(&ctx.child(service), &app, service);
    // The labels Prometheus selects by win over the global ones; ours still win over both.
    let mut labels = ctx.shop.spec.global.labels.clone();
    labels.extend(monitoring.labels.clone());
    labels.extend(ctx.own_labels(&app, service));
    meta.labels = Some(labels);
    untyped(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        &meta,
        json!({
            // `job` is the service's name (users, products, ...), as the alert rules and the
            // dashboards select on it; the Service's component label holds it.
            "jobLabel": super::meta::LABEL_COMPONENT,
            "selector": { "matchLabels": ctx.selector(service, None) },
            "namespaceSelector": { "matchNames": ctx.namespace.iter().collect::<Vec<_>>() },
            "endpoints": [{
                "port": super::services::ports(service).metrics_port_name(),
                "path": "/metrics",
                "interval": monitoring.interval,
            }],
        }),
    )
}
