//! The deploy files agree with the code:
//! - every copy of the CRD is the one the Rust types generate;
//! - every example Shop fits the CRD's own schema (structure, types, enums, patterns, CEL rules)
//!   and the Rust types;
//! - the ClusterRoles (plain manifests and chart) grant exactly `operator::rbac::RULES`;
//! - the Helm chart, rendered here without a `helm` binary (see `helm.rs`), is the plain manifests
//!   under `manifests/operator/`.

#[path = "deploy_files/helm.rs"]
mod helm;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ecom_shop_api::Shop;
use kube::CustomResourceExt;
use serde::Deserialize;
use serde_json::{Value, json};

const REGENERATE: &str = "regenerate it: `cargo run -q -p operator -- crd > crds/shop.yaml && \
     cp crds/shop.yaml charts/ecom-operator/crds/shop.yaml && cp crds/shop.yaml manifests/operator/crd.yaml`";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every YAML document of `text` (empty ones skipped).
fn docs(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The one document of a YAML file.
fn doc(rel: &str) -> Value {
    let mut all = docs(&read(rel), rel);
    assert_eq!(all.len(), 1, "{rel}: one document expected");
    all.remove(0)
}

fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml"))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    files.sort();
    files
}

fn crd_schema() -> Value {
    let crd = serde_json::to_value(Shop::crd()).expect("crd");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

// ---- (i) the CRD ----

#[test]
fn every_copy_of_the_crd_is_the_generated_one() {
    let fresh = serde_norway::to_string(&Shop::crd()).expect("crd yaml");
    for path in [
        "crds/shop.yaml",
        "charts/ecom-operator/crds/shop.yaml",
        "manifests/operator/crd.yaml",
    ] {
        let committed = read(path);
        if committed != fresh {
            let line = committed
                .lines()
                .zip(fresh.lines())
                .position(|(a, b)| a != b)
                .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()));
            panic!(
                "{path} differs from `operator crd` from line {}: {REGENERATE}",
                line + 1
            );
        }
    }
}

// ---- (ii) the example Shops ----

/// Where `value` does not fit the structural `schema` (an OpenAPI v3 schema of a CRD): fields the
/// schema does not know, wrong types, values outside an enum or pattern, missing required fields.
/// `path` is the value's path (`spec.services.users`).
fn structural_errors(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let at = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{at}: null is not allowed"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{at}: must be an integer or a string, not {value}"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    if let (Some(pattern), Some(s)) = (schema["pattern"].as_str(), value.as_str()) {
        let re =
            regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{at}: pattern {pattern}: {e}"));
        if !re.is_match(s) {
            errors.push(format!("{at}: {s:?} does not match {pattern}"));
        }
    }
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    let type_ok = match schema["type"].as_str() {
        Some("object") => {
            let Some(map) = value.as_object() else {
                errors.push(format!("{at}: must be an object, not {value}"));
                return;
            };
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (
                    schema["properties"].get(key),
                    &schema["additionalProperties"],
                ) {
                    (Some(s), _) => structural_errors(s, child, &child_path, errors),
                    (None, s @ Value::Object(_)) => {
                        structural_errors(s, child, &child_path, errors)
                    }
                    (None, Value::Bool(true)) => {}
                    (None, _) if preserve => {}
                    (None, _) => {
                        errors.push(format!("{child_path}: unknown field (not in the schema)"))
                    }
                }
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(r) = required.as_str()
                    && !map.contains_key(r)
                {
                    errors.push(format!("{at}: the required field {r} is missing"));
                }
            }
            true
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                errors.push(format!("{at}: must be a list, not {value}"));
                return;
            };
            for (i, item) in items.iter().enumerate() {
                structural_errors(&schema["items"], item, &format!("{path}[{i}]"), errors);
            }
            true
        }
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        None if preserve => true,
        other => {
            errors.push(format!(
                "{at}: the schema has an unsupported type {other:?}"
            ));
            true
        }
    };
    if !type_ok {
        errors.push(format!(
            "{at}: must be of type {}, not {value}",
            schema["type"]
        ));
    }
}

/// The structural errors of a whole Shop. `apiVersion`, `kind` and `metadata` (an ObjectMeta) are
/// the API server's, not in the CRD's schema: only their presence (and the name and namespace) is
/// checked here.
fn shop_structural_errors(schema: &Value, shop: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    for key in ["apiVersion", "kind", "metadata.name", "metadata.namespace"] {
        let value = key.split('.').fold(shop, |v, k| &v[k]);
        if !value.is_string() {
            errors.push(format!("{key}: a string is needed"));
        }
    }
    let mut rest = shop.clone();
    if let Some(o) = rest.as_object_mut() {
        for key in ["apiVersion", "kind", "metadata"] {
            o.remove(key);
        }
    }
    structural_errors(schema, &rest, "", &mut errors);
    errors
}

fn cel_errors(schema: &Value, shop: &Value) -> Vec<String> {
    let validator = kube_cel::validation::Validator::new();
    // As written, and as the API server sees it (schema defaults applied first).
    let mut errors: Vec<String> = validator
        .validate(schema, shop, None)
        .iter()
        .map(|e| e.to_string())
        .collect();
    errors.extend(
        validator
            .validate_with_defaults(schema, shop, None)
            .iter()
            .map(|e| format!("(defaulted) {e}")),
    );
    errors
}

#[test]
fn every_example_shop_fits_the_crd_schema_and_the_rust_types() {
    let schema = crd_schema();
    let mut names = BTreeMap::new();
    for file in yaml_files("manifests/examples") {
        for shop in docs(&read(&file), &file) {
            assert_eq!(
                (shop["apiVersion"].as_str(), shop["kind"].as_str()),
                (Some("ecom.dev/v1alpha1"), Some("Shop")),
                "{file}: only Shops belong in manifests/examples"
            );
            let structural = shop_structural_errors(&schema, &shop);
            assert!(
                structural.is_empty(),
                "{file}: not in the CRD's schema: {structural:#?}"
            );
            let cel = cel_errors(&schema, &shop);
            assert!(cel.is_empty(), "{file}: the CRD's CEL rules fail: {cel:#?}");
            let typed: Shop =
                serde_json::from_value(shop.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
            names.insert(file.clone(), typed);
        }
    }
    let get = |f: &str| names.get(f).unwrap_or_else(|| panic!("{f} is missing"));

    let demo = get("manifests/examples/shop.yaml");
    assert_eq!(
        (
            demo.metadata.name.as_deref(),
            demo.metadata.namespace.as_deref()
        ),
        (Some("demo"), Some("shop"))
    );

    let production = get("manifests/examples/shop-production.yaml");
    let spec = &production.spec;
    assert_eq!(
        spec.database.provider,
        ecom_shop_api::DatabaseProvider::CloudNativePG
    );
    assert_eq!(spec.database.instances, Some(3));
    let ingress = &spec.services.gateway.ingress;
    assert!(ingress.enabled && ingress.host.is_some() && ingress.tls_secret_name.is_some());
    assert_eq!(ingress.class_name.as_deref(), Some("nginx"));
    let monitor = &spec.monitoring.service_monitor;
    assert!(monitor.enabled);
    assert_eq!(
        monitor.labels.get("release").map(String::as_str),
        Some("prometheus")
    );
    assert!(spec.services.products.autoscaling.is_some());
    assert!(spec.rate_limits.default.is_some() && spec.global.image_registry.is_some());

    let external = get("manifests/examples/shop-external-db.yaml");
    assert_eq!(
        external.spec.database.provider,
        ecom_shop_api::DatabaseProvider::External
    );
    let refs = &external
        .spec
        .database
        .external
        .as_ref()
        .expect("external")
        .secret_refs;
    assert_eq!(
        refs.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        ecom_shop_api::DATABASE_SERVICES.into_iter().collect()
    );
}

/// `1GB` passed the CRD and was refused later by the StatefulSet, blocking every other change:
/// a volume size is a quantity at the door.
#[test]
fn a_storage_size_must_be_a_quantity() {
    let schema = crd_schema();
    let shop = |spec: Value| {
        json!({"apiVersion": "ecom.dev/v1alpha1", "kind": "Shop",
               "metadata": {"name": "s", "namespace": "shop"}, "spec": spec})
    };
    for ok in [
        "1Gi", "500Mi", "10G", "1.5Ti", "1024", ".5Gi", "0.5Gi", "10Gi",
    ] {
        for s in [
            shop(json!({"database": {"storage": {"size": ok}}})),
            shop(json!({"redis": {"storage": {"size": ok}}})),
        ] {
            assert_eq!(
                shop_structural_errors(&schema, &s),
                Vec::<String>::new(),
                "{ok}"
            );
        }
    }
    for bad in [
        "1GB", "1 Gi", "-1Gi", "Gi", "1gi", "", "0", "0Gi", "0.0Gi", "1.Gi",
    ] {
        for s in [
            shop(json!({"database": {"storage": {"size": bad}}})),
            shop(json!({"redis": {"storage": {"size": bad}}})),
        ] {
            let errors = shop_structural_errors(&schema, &s);
            assert!(
                errors
                    .iter()
                    .any(|e| e.contains("storage.size") && e.contains("does not match")),
                "{bad}: {errors:?}"
            );
        }
    }
}

#[test]
fn the_schema_checks_reject_what_the_api_server_would() {
    let schema = crd_schema();
    let shop = |spec: Value| {
        json!({"apiVersion": "ecom.dev/v1alpha1", "kind": "Shop",
                                    "metadata": {"name": "s", "namespace": "shop"}, "spec": spec})
    };

    let good = shop(json!({
        "services": {"users": {"replicas": 2, "resources": {"requests": {"cpu": "100m", "memory": 1024}}},
                     "gateway": {"ingress": {"enabled": true, "host": "shop.example.com"}}},
        "rateLimits": {"login": "10/minute"}
    }));
    assert_eq!(shop_structural_errors(&schema, &good), Vec::<String>::new());
    assert_eq!(cel_errors(&schema, &good), Vec::<String>::new());

    let bad = shop(json!({
        "services": {"users": {"replicas": "two", "resources": {"limits": {"cpu": true}}},
                     "gateway": {"ingres": {"enabled": true}}},
        "database": {"provider": "Oracle"},
        "rateLimits": {"default": "fast"},
        "suspend": "yes"
    }));
    let errors = shop_structural_errors(&schema, &bad);
    for (path, what) in [
        (
            "spec.services.users.replicas",
            "must be of type \"integer\"",
        ),
        (
            "spec.services.users.resources.limits.cpu",
            "an integer or a string",
        ),
        ("spec.services.gateway.ingres", "unknown field"),
        ("spec.database.provider", "is not one of"),
        ("spec.rateLimits.default", "does not match"),
        ("spec.suspend", "must be of type \"boolean\""),
    ] {
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("{path}:")) && e.contains(what)),
            "no error `{what}` at {path} in {errors:#?}"
        );
    }
    assert_eq!(errors.len(), 6, "{errors:#?}");

    let no_host = shop(json!({"services": {"gateway": {"ingress": {"enabled": true}}}}));
    let cel = cel_errors(&schema, &no_host);
    assert!(cel.iter().any(|e| e.contains("needs a host")), "{cel:#?}");
}

// ---- (iii) RBAC ----

type Grants = BTreeMap<(String, String), Vec<String>>;

/// A ClusterRole's rules as (apiGroup, resource) → verbs; panics on wildcards, duplicates,
/// unsorted verbs, resourceNames and nonResourceURLs.
fn grants(role: &Value, what: &str) -> Grants {
    assert_eq!(role["kind"], "ClusterRole", "{what}");
    let mut grants = Grants::new();
    for rule in role["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no rules"))
    {
        let list = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: a rule without {key}: {rule}"))
                .iter()
                .map(|v| {
                    v.as_str()
                        .unwrap_or_else(|| panic!("{what}: {v}"))
                        .to_owned()
                })
                .collect()
        };
        for key in ["resourceNames", "nonResourceURLs"] {
            assert!(
                rule.get(key).is_none(),
                "{what}: unexpected {key} in {rule}"
            );
        }
        let verbs = list("verbs");
        let mut sorted = verbs.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(verbs, sorted, "{what}: verbs sorted and unique in {rule}");
        for group in list("apiGroups") {
            for resource in list("resources") {
                for word in [&group, &resource].into_iter().chain(&verbs) {
                    assert!(!word.contains('*'), "{what}: a wildcard in {rule}");
                }
                let key = (group.clone(), resource.clone());
                assert!(
                    grants.insert(key, verbs.clone()).is_none(),
                    "{what}: {group}/{resource} is granted twice"
                );
            }
        }
    }
    grants
}

fn expected_grants() -> Grants {
    operator::rbac::RULES
        .iter()
        .map(|(g, r, v)| {
            (
                (g.to_string(), r.to_string()),
                v.iter().map(|s| s.to_string()).collect(),
            )
        })
        .collect()
}

/// Fails with the (group, resource) entries that differ from `operator::rbac::RULES`.
fn assert_grants_rules(actual: &Grants, what: &str) {
    let expected = expected_grants();
    let keys: BTreeSet<_> = actual.keys().chain(expected.keys()).collect();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| actual.get(*k) != expected.get(*k))
        .map(|(g, r)| {
            let show =
                |v: Option<&Vec<String>>| v.map_or("nothing".to_owned(), |v| format!("{v:?}"));
            format!(
                "{g:?}/{r}: {what} grants {}, RULES {}",
                show(actual.get(&(g.clone(), r.clone()))),
                show(expected.get(&(g.clone(), r.clone())))
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{what} must grant exactly operator::rbac::RULES:\n{}",
        differences.join("\n")
    );
}

#[test]
fn the_cluster_roles_grant_exactly_the_operators_api_calls() {
    let manifest = "manifests/operator/clusterrole.yaml";
    assert_grants_rules(&grants(&doc(manifest), manifest), manifest);

    // The chart's template as written (its rules are literal YAML; the `{{ }}` lines dropped)...
    let template: String = read("charts/ecom-operator/templates/clusterrole.yaml")
        .lines()
        .filter(|l| !l.contains("{{"))
        .map(|l| format!("{l}\n"))
        .collect();
    let literal = docs(&template, "the clusterrole template").remove(0);
    let what = "the chart's templates/clusterrole.yaml";
    assert_grants_rules(&grants(&literal, what), what);

    // ...and rendered.
    let rendered = render_default();
    let role = docs(&rendered["clusterrole.yaml"], "rendered clusterrole.yaml").remove(0);
    let what = "the chart's clusterrole.yaml rendered";
    assert_grants_rules(&grants(&role, what), what);
}

// ---- the chart and the plain manifests ----

fn chart() -> helm::Chart {
    helm::Chart::load(&repo().join("charts/ecom-operator"))
        .unwrap_or_else(|e| panic!("the chart: {e}"))
}

fn render(values: Value, api_versions: &[&str]) -> BTreeMap<String, String> {
    let release = helm::Release {
        name: "ecom-operator",
        namespace: "ecom-system",
        values,
        api_versions,
    };
    chart()
        .render(&release)
        .unwrap_or_else(|e| panic!("rendering the chart: {e}"))
}

fn render_default() -> BTreeMap<String, String> {
    render(json!({}), &[])
}

/// Without the labels that differ by tool (`helm.sh/chart`, `app.kubernetes.io/managed-by`:
/// Helm in the chart, kubectl in the plain manifests).
fn without_tool_labels(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Object(labels)) = o.get_mut("labels") {
                    labels.remove("helm.sh/chart");
                    labels.remove("app.kubernetes.io/managed-by");
                }
                o.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

#[test]
fn the_chart_rendered_with_its_defaults_is_the_plain_manifests() {
    let rendered = render_default();
    let mut compared = BTreeSet::new();
    for (template, text) in &rendered {
        if template == "NOTES.txt" {
            assert!(
                text.contains("kubectl apply --server-side -f crds/shop.yaml"),
                "{text}"
            );
            continue;
        }
        let objects = docs(text, template);
        if template == "servicemonitor.yaml" {
            assert!(objects.is_empty(), "no ServiceMonitor by default: {text}");
            continue;
        }
        let manifest = format!("manifests/operator/{template}");
        assert!(
            repo().join(&manifest).exists(),
            "{template} has no {manifest}"
        );
        assert_eq!(objects.len(), 1, "{template}: {text}");
        let chart = without_tool_labels(objects[0].clone());
        let plain = without_tool_labels(doc(&manifest));
        assert!(
            chart == plain,
            "{manifest} is not the chart's {template} rendered with the default values:\n--- chart\n{}\n--- {manifest}\n{}",
            serde_norway::to_string(&chart).unwrap_or_default(),
            serde_norway::to_string(&plain).unwrap_or_default()
        );
        compared.insert(manifest);
    }
    // Every plain manifest has its template, but for those Helm provides otherwise (the
    // namespace: --create-namespace; the CRD: crds/).
    let kustomization = doc("manifests/operator/kustomization.yaml");
    let mut resources: Vec<String> = kustomization["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| format!("manifests/operator/{}", r.as_str().expect("a file")))
        .collect();
    resources.sort();
    let mut files = yaml_files("manifests/operator");
    files.retain(|f| !f.ends_with("/kustomization.yaml"));
    assert_eq!(resources, files, "kustomization.yaml lists every manifest");
    files.retain(|f| !f.ends_with("/namespace.yaml") && !f.ends_with("/crd.yaml"));
    assert_eq!(files, compared.into_iter().collect::<Vec<_>>());
    // Plain-manifest labels say kubectl, not Helm.
    assert_eq!(
        doc("manifests/operator/deployment.yaml")["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "kubectl"
    );
}

#[test]
fn the_chart_renders_its_options() {
    let values = json!({
        "fullnameOverride": "ops",
        "replicaCount": 1,
        "leaderElection": {"enabled": false},
        "image": {"tag": "9.9.9"},
        "imagePullSecrets": [{"name": "regcred"}],
        "serviceAccount": {"annotations": {"iam.example.com/role": "ecom"}},
        "env": [{"name": "ECOM_LOG_FORMAT", "value": "json"}],
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "commerce"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {}},
        "serviceMonitor": {"enabled": true, "interval": "15s", "labels": {"release": "prometheus"}},
    });
    let rendered = render(
        values.clone(),
        &[
            "monitoring.coreos.com/v1",
            "monitoring.coreos.com/v1/ServiceMonitor",
        ],
    );
    let one = |t: &str| docs(&rendered[t], t).remove(0);

    let deployment = one("deployment.yaml");
    assert_eq!(deployment["metadata"]["name"], "ops");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["metadata"]["annotations"],
        json!({"example.com/a": "b"})
    );
    assert_eq!(pod["metadata"]["labels"]["team"], "commerce");
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/version"],
        "9.9.9"
    );
    assert_eq!(pod["spec"]["imagePullSecrets"], values["imagePullSecrets"]);
    assert_eq!(pod["spec"]["nodeSelector"], values["nodeSelector"]);
    assert_eq!(pod["spec"]["tolerations"], values["tolerations"]);
    assert_eq!(pod["spec"]["affinity"], values["affinity"]);
    assert_eq!(pod["spec"]["serviceAccountName"], "ops");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], "ghcr.io/ecom/ecom-operator:9.9.9");
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect();
    assert_eq!(env["ECOM_OPERATOR_LEADER_ELECTION"]["value"], "false");
    assert_eq!(env["ECOM_LOG_FORMAT"]["value"], "json");

    assert_eq!(
        one("serviceaccount.yaml")["metadata"]["annotations"],
        values["serviceAccount"]["annotations"]
    );
    let binding = one("clusterrolebinding.yaml");
    assert_eq!(binding["subjects"][0]["name"], "ops");
    assert_eq!(binding["roleRef"]["name"], "ops");

    let monitor = one("servicemonitor.yaml");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{"port": "http", "path": "/metrics", "interval": "15s"}])
    );
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        one("service.yaml")["spec"]["selector"]
    );

    // Asked for, but the cluster has no Prometheus operator: no ServiceMonitor, a warning.
    let without = render(values, &[]);
    assert!(docs(&without["servicemonitor.yaml"], "servicemonitor").is_empty());
    assert!(
        without["NOTES.txt"].contains("no ServiceMonitor was created"),
        "{}",
        without["NOTES.txt"]
    );
    let two_without_election = render(json!({"leaderElection": {"enabled": false}}), &[]);
    assert!(two_without_election["NOTES.txt"].contains("every replica reconciles"));
    assert!(!render_default()["NOTES.txt"].contains("WARNING"));
}

#[test]
fn the_operator_deployment_is_wired_as_the_operator_expects() {
    let version = env!("CARGO_PKG_VERSION");
    let chart = doc("charts/ecom-operator/Chart.yaml");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(
        chart["appVersion"], version,
        "the chart's appVersion is the operator's version"
    );

    let deployment = doc("manifests/operator/deployment.yaml");
    let service_account = doc("manifests/operator/serviceaccount.yaml");
    let binding = doc("manifests/operator/clusterrolebinding.yaml");
    let role = doc("manifests/operator/clusterrole.yaml");
    let service = doc("manifests/operator/service.yaml");
    let namespace = doc("manifests/operator/namespace.yaml");
    let ns = namespace["metadata"]["name"].clone();
    assert_eq!(ns, "ecom-system");

    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["serviceAccountName"],
        service_account["metadata"]["name"]
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": service_account["metadata"]["name"], "namespace": ns}])
    );
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    for object in [&deployment, &service_account, &service] {
        assert_eq!(object["metadata"]["namespace"], ns);
    }

    let container = &pod["containers"][0];
    assert_eq!(
        container["image"],
        format!("ghcr.io/ecom/ecom-operator:{version}")
    );
    assert_eq!(container["args"], json!(["run"]));
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect();
    assert_eq!(
        env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(env["ECOM_OPERATOR_LEADER_ELECTION"]["value"], "true");
    assert_eq!(env["ECOM_OPERATOR_PORT"]["value"], "8080");
    assert_eq!(
        container["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(
            container[probe]["httpGet"],
            json!({"path": "/health", "port": "http"}),
            "{probe}"
        );
    }
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // The restricted Pod Security Standard.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));

    // The contract's labels.
    for key in [
        "name",
        "instance",
        "component",
        "part-of",
        "managed-by",
        "version",
    ] {
        let key = format!("app.kubernetes.io/{key}");
        for object in [&deployment, &service_account, &binding, &role, &service] {
            assert!(
                object["metadata"]["labels"][&key].is_string(),
                "{key} on {}",
                object["kind"]
            );
        }
    }
}
