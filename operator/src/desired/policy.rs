//! NetworkPolicies: only the gateway is reachable from outside the Shop; each database only from
//! its own service; Redis only from the services; each gRPC port only from the services that
//! call it (`ecom_shop_api::GRPC_CALLERS`); each HTTP port only from the gateway (its REST
//! facade), plus Users' from every service (the JWKS); `/metrics` from the namespaces named in
//! `spec.networkPolicies.scrapeNamespaces`. Egress is left open (DNS, external databases,
//! Redis URLs). They take effect only where the cluster's network plugin enforces them.

use std::collections::BTreeMap;

use ecom_shop_api::{DatabaseProvider, GRPC_CALLERS};
use k8s_openapi::{
    api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
        NetworkPolicySpec,
    },
    apimachinery::pkg::{
        apis::meta::v1::{LabelSelector, LabelSelectorRequirement},
        util::intstr::IntOrString,
    },
};

use super::{
    database,
    meta::{Ctx, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, label_value},
    redis,
    services::ports,
};

const APP: &str = "ecom-network-policy";

/// Every NetworkPolicy of the Shop, for the enabled services `enabled`.
pub fn network_policies(ctx: &Ctx<'_>, enabled: &[&str]) -> Vec<NetworkPolicy> {
    let spec = &ctx.shop.spec.network_policies;
    if !spec.enabled {
        return Vec::new();
    }
    let mut policies = vec![default_deny(ctx)];
    for &service in enabled {
        policies.push(service_policy(ctx, service, enabled));
    }
    if ctx.shop.spec.database.provider == DatabaseProvider::Builtin {
        for service in ecom_shop_api::DATABASE_SERVICES {
            policies.push(database_policy(ctx, service));
        }
    }
    if ctx.shop.spec.redis.enabled {
        policies.push(redis_policy(ctx, enabled));
    }
    policies
}

fn policy(
    ctx: &Ctx<'_>,
    suffix: &str,
    pods: LabelSelector,
    rules: Vec<NetworkPolicyIngressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ctx.meta(&ctx.child(suffix), APP, "network-policy"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods),
            policy_types: Some(vec!["Ingress".to_owned()]),
            ingress: Some(rules),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// Nothing reaches the Shop's own pods unless a policy below lets it (CloudNativePG's pods are
/// not selected: their operator talks to them).
fn default_deny(ctx: &Ctx<'_>) -> NetworkPolicy {
    let pods = LabelSelector {
        match_labels: Some(BTreeMap::from([
            (LABEL_INSTANCE.to_owned(), label_value(&ctx.name)),
            (LABEL_MANAGED_BY.to_owned(), crate::FIELD_MANAGER.to_owned()),
        ])),
        match_expressions: None,
    };
    policy(ctx, "deny-ingress", pods, Vec::new())
}

fn tcp(port: i32) -> Option<Vec<NetworkPolicyPort>> {
    Some(vec![NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    }])
}

/// The pods of these components of this Shop (same namespace).
fn from_components(ctx: &Ctx<'_>, components: &[&str]) -> Option<Vec<NetworkPolicyPeer>> {
    Some(vec![NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                LABEL_INSTANCE.to_owned(),
                label_value(&ctx.name),
            )])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: LABEL_COMPONENT.to_owned(),
                operator: "In".to_owned(),
                values: Some(components.iter().map(|c| (*c).to_owned()).collect()),
            }]),
        }),
        ..NetworkPolicyPeer::default()
    }])
}

/// Any pod in the namespaces Prometheus may run in.
fn from_scrapers(ctx: &Ctx<'_>) -> Option<Vec<NetworkPolicyPeer>> {
    Some(vec![NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "kubernetes.io/metadata.name".to_owned(),
                operator: "In".to_owned(),
                values: Some(ctx.shop.spec.network_policies.scrape_namespaces.clone()),
            }]),
        }),
        ..NetworkPolicyPeer::default()
    }])
}

fn service_policy(ctx: &Ctx<'_>, service: &str, enabled: &[&str]) -> NetworkPolicy {
    let p = ports(service);
    let mut rules = Vec::new();
    if service == "gateway" {
        // The public entry point: the Ingress controller, wherever it runs.
        rules.push(NetworkPolicyIngressRule {
            ports: tcp(p.http),
            from: None,
        });
    } else {
        // Users' JWKS is read by every service; the rest of each HTTP API by the gateway's REST
        // facade.
        let callers: Vec<&str> = if service == "users" {
            enabled.iter().copied().filter(|s| *s != "users").collect()
        } else {
            vec!["gateway"]
        };
        rules.push(NetworkPolicyIngressRule {
            ports: tcp(p.http),
            from: from_components(ctx, &callers),
        });
    }
    if let (Some(grpc), Some((_, callers))) = (
        p.grpc,
        GRPC_CALLERS.iter().find(|(callee, _)| *callee == service),
    ) {
        rules.push(NetworkPolicyIngressRule {
            ports: tcp(grpc),
            from: from_components(ctx, callers),
        });
    }
    if !ctx.shop.spec.network_policies.scrape_namespaces.is_empty() {
        rules.push(NetworkPolicyIngressRule {
            ports: tcp(p.metrics.unwrap_or(p.http)),
            from: from_scrapers(ctx),
        });
    }
    policy(ctx, service, ctx.label_selector(service, None), rules)
}

/// A Builtin database: from its own service only.
fn database_policy(ctx: &Ctx<'_>, service: &str) -> NetworkPolicy {
    let app = database::app(service);
    policy(
        ctx,
        &format!("{service}-db"),
        ctx.label_selector("database", Some(&app)),
        vec![NetworkPolicyIngressRule {
            ports: tcp(database::PORT),
            from: from_components(ctx, &[service]),
        }],
    )
}

/// The operator's Redis: from the services (caches, rate limits, sessions).
fn redis_policy(ctx: &Ctx<'_>, enabled: &[&str]) -> NetworkPolicy {
    policy(
        ctx,
        redis::COMPONENT,
        ctx.label_selector(redis::COMPONENT, None),
        vec![NetworkPolicyIngressRule {
            ports: tcp(redis::PORT),
            from: from_components(ctx, enabled),
        }],
    )
}
