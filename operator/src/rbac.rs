//! Every API call the operator makes, as (API group, resource, verbs). The chart's and the plain
//! manifests' ClusterRole must grant exactly these (a test compares them): least privilege, no
//! wildcards.

/// (apiGroup, resource, verbs), sorted by group then resource.
#[rustfmt::skip]
pub const RULES: &[(&str, &str, &[&str])] = &[
    ("", "configmaps", &["create", "delete", "get", "list", "patch", "watch"]),
    ("", "events", &["create", "patch"]),
    ("", "persistentvolumeclaims", &["delete", "list"]),
    ("", "secrets", &["create", "delete", "get", "list", "patch", "watch"]),
    ("", "services", &["create", "delete", "get", "list", "patch", "watch"]),
    ("apps", "deployments", &["create", "delete", "get", "list", "patch", "watch"]),
    ("apps", "statefulsets", &["create", "delete", "get", "list", "patch", "watch"]),
    ("autoscaling", "horizontalpodautoscalers", &["create", "delete", "get", "list", "patch", "watch"]),
    ("coordination.k8s.io", "leases", &["create", "get", "patch", "update"]),
    ("ecom.dev", "shops", &["get", "list", "patch", "update", "watch"]),
    ("ecom.dev", "shops/finalizers", &["update"]),
    ("ecom.dev", "shops/status", &["get", "patch", "update"]),
    ("events.k8s.io", "events", &["create", "patch"]),
    ("monitoring.coreos.com", "prometheusrules", &["create", "delete", "get", "list", "patch", "watch"]),
    ("monitoring.coreos.com", "servicemonitors", &["create", "delete", "get", "list", "patch", "watch"]),
    ("networking.k8s.io", "ingresses", &["create", "delete", "get", "list", "patch", "watch"]),
    ("networking.k8s.io", "networkpolicies", &["create", "delete", "get", "list", "patch", "watch"]),
    ("policy", "poddisruptionbudgets", &["create", "delete", "get", "list", "patch", "watch"]),
    ("postgresql.cnpg.io", "clusters", &["create", "delete", "get", "list", "patch", "watch"]),
];
