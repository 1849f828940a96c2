//! The desired state of a Shop: golden files of two Shops, and the invariants every Shop's
//! objects keep.
//!
//! The golden files (`tests/golden/*.yaml`) are regenerated with
//! `UPDATE_GOLDEN=1 cargo test -p operator --test desired`.

use std::{collections::BTreeMap, path::PathBuf};

use ecom_shop_api::{DATABASE_SERVICES, SERVICES, SERVICES_WITH_IDENTITY, Shop};
use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    autoscaling::v2::HorizontalPodAutoscaler,
    core::v1::{ConfigMap, Secret, Service},
    networking::v1::{Ingress, NetworkPolicy},
    policy::v1::PodDisruptionBudget,
};
use operator::desired::{
    CHECKSUM_ANNOTATION, Desired, Discovery, auth_secret_name, desired_state, generated_secrets,
};
use serde_json::{Value, json};

const UID: &str = "6a0c1f3e-9b7d-4d2a-8f51-3c2e7b9d0a14";
const LABELS: [&str; 6] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
];

fn shop(name: &str, namespace: &str, spec: Value) -> Shop {
    serde_json::from_value(json!({
        "apiVersion": "ecom.dev/v1alpha1",
        "kind": "Shop",
        "metadata": { "name": name, "namespace": namespace, "uid": UID, "generation": 1 },
        "spec": spec,
    }))
    .expect("a valid Shop")
}

/// `manifests/examples/shop.yaml`'s kind of Shop: everything defaulted.
fn small() -> Shop {
    shop("demo", "shop", json!({}))
}

/// A production-like Shop: CloudNativePG, ServiceMonitors, an Ingress with TLS, autoscaling.
fn production() -> Shop {
    shop(
        "prod",
        "ecom-prod",
        json!({
            "version": "1.4.2",
            "global": {
                "imageRegistry": "registry.example.com/acme/",
                "imagePullSecrets": ["regcred"],
                "labels": { "team": "commerce", "environment": "production" },
                "annotations": { "example.com/owner": "commerce@example.com" },
            },
            "services": {
                "users": {
                    "replicas": 2,
                    "env": [
                        { "name": "ECOM_LOG", "value": "info,users=debug" },
                        { "name": "ECOM_ENV", "value": "development" },
                        { "name": "ECOM_SERVICE_SECRET_ORDERS", "value": "not-from-here" },
                    ],
                },
                "products": {
                    "autoscaling": { "minReplicas": 2, "maxReplicas": 6 },
                    "resources": {
                        "requests": { "cpu": "250m", "memory": "256Mi" },
                        "limits": { "cpu": "2", "memory": "1Gi" },
                    },
                },
                "orders": { "replicas": 2 },
                "payments": { "replicas": 2, "image": "registry.example.com/acme/payments:1.4.2-hotfix1" },
                "gateway": {
                    "replicas": 3,
                    "resources": {
                        "requests": { "cpu": "500m", "memory": "256Mi" },
                        "limits": { "cpu": "2", "memory": "512Mi" },
                    },
                    "ingress": {
                        "enabled": true,
                        "host": "shop.example.com",
                        "className": "nginx",
                        "tlsSecretName": "shop-example-com-tls",
                        "annotations": { "cert-manager.io/cluster-issuer": "letsencrypt" },
                    },
                },
            },
            "database": {
                "provider": "CloudNativePG",
                "instances": 3,
                "postgresVersion": "17",
                "storage": { "size": "20Gi", "storageClassName": "fast-ssd" },
            },
            "redis": { "enabled": true, "storage": { "size": "2Gi", "storageClassName": "fast-ssd" } },
            "monitoring": {
                "serviceMonitor": {
                    "enabled": true,
                    "interval": "15s",
                    "labels": { "release": "kube-prometheus-stack" },
                },
            },
            "rateLimits": { "default": "600/minute", "login": "5/minute" },
        }),
    )
}

fn everything() -> Discovery {
    Discovery {
        cnpg: true,
        service_monitors: true,
        prometheus_rules: true,
        checksums: BTreeMap::new(),
    }
}

/// `random-01`, `random-02`, ...
fn counter() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("random-{n:02}")
    }
}

/// The Discovery the controller would have: a checksum per Secret the pods read.
fn discovered(shop: &Shop, base: Discovery) -> Discovery {
    let mut discovery = base;
    let objects = desired_state(shop, &discovery);
    for name in operator::desired::referenced_secrets(&objects) {
        let sum = format!("sum-of-{name}");
        discovery.checksums.insert(name, sum);
    }
    discovery
}

/// One object as YAML that YAML 1.1 readers (kubectl, PyYAML) read back the same: the YAML 1.2
/// emitter leaves strings such as `yes` unquoted, which they would take for booleans.
fn document(object: &Value) -> String {
    const WORDS: [&str; 16] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF",
    ];
    let yaml = serde_norway::to_string(object).expect("yaml");
    let mut out = String::with_capacity(yaml.len());
    for line in yaml.lines() {
        let quoted = WORDS.iter().find_map(|word| {
            let prefix = line.strip_suffix(word)?;
            (prefix.ends_with("- ") || prefix.ends_with(": ")).then(|| format!("{prefix}'{word}'"))
        });
        out.push_str(quoted.as_deref().unwrap_or(line));
        out.push('\n');
    }
    let back: Value = serde_norway::from_str(&out).expect("the YAML parses");
    assert_eq!(&back, object, "the YAML reads back as the object");
    out
}

fn yaml(secrets: &[Desired], objects: &[Desired]) -> String {
    let mut out =
        String::from("# generated_secrets (created once when missing, never regenerated)\n");
    for d in secrets {
        out.push_str("---\n");
        out.push_str(&document(&d.object));
    }
    out.push_str("# desired_state (server-side applied, in this order)\n");
    for d in objects {
        out.push_str("---\n");
        out.push_str(&document(&summarised(&d.object)));
    }
    out
}

/// The object, with a dashboard's JSON (tens of kilobytes, the committed file's content: the
/// dashboards test checks it) shown as its size and hash.
fn summarised(object: &Value) -> Value {
    let mut object = object.clone();
    if object["metadata"]["labels"]["app.kubernetes.io/component"] == "dashboards"
        && let Some(data) = object["data"].as_object_mut()
    {
        for value in data.values_mut() {
            let text = value.as_str().unwrap_or_default();
            let hash = operator::desired::short_hash(text);
            *value = json!(format!(
                "<dashboard JSON: {} bytes, sha256 {hash}...>",
                text.len()
            ));
        }
    }
    object
}

fn golden(name: &str, shop: &Shop, discovery: &Discovery) {
    let actual = yaml(
        &generated_secrets(shop, &mut counter()),
        &desired_state(shop, discovery),
    );
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).expect("write the golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_owned(), |i| format!("line {}", i + 1));
        panic!(
            "{} differs from the desired state (first difference at {line}).\n\
             If the change is intended, regenerate it: \
             UPDATE_GOLDEN=1 cargo test -p operator --test desired\n\
             --- actual ---\n{actual}",
            path.display()
        );
    }
}

#[test]
fn the_small_shop_matches_its_golden_file() {
    let shop = small();
    golden("small", &shop, &discovered(&shop, Discovery::default()));
}

#[test]
fn the_production_shop_matches_its_golden_file() {
    let shop = production();
    golden("production", &shop, &discovered(&shop, everything()));
}

fn find<'a>(objects: &'a [Desired], kind: &str, name: &str) -> &'a Value {
    &objects
        .iter()
        .find(|d| d.kind == kind && d.name == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", kinds(objects)))
        .object
}

fn kinds(objects: &[Desired]) -> Vec<String> {
    objects
        .iter()
        .map(|d| format!("{}/{}", d.kind, d.name))
        .collect()
}

fn env_of(deployment: &Value) -> BTreeMap<String, Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_owned();
            let value = if e["value"].is_string() {
                e["value"].clone()
            } else {
                e["valueFrom"].clone()
            };
            (name, value)
        })
        .collect()
}

fn secret_ref(name: &str, key: &str) -> Value {
    json!({ "secretKeyRef": { "name": name, "key": key } })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Shops and what the cluster offers, covering every provider and option.
fn variants() -> Vec<(&'static str, Shop, Discovery)> {
    let external = json!({
        "database": {
            "provider": "External",
            "external": { "secretRefs": {
                "users": "pg-users", "products": "pg-products", "orders": "pg-orders", "payments": "pg-payments",
            } },
        },
        "redis": { "enabled": false, "url": "redis://redis.infra:6379/2" },
        "auth": { "jwtSecretRef": "my-auth" },
    });
    let cnpg = json!({ "database": { "provider": "CloudNativePG" } });
    vec![
        ("small", small(), Discovery::default()),
        ("small, everything installed", small(), everything()),
        ("production", production(), everything()),
        (
            "production, nothing installed",
            production(),
            Discovery::default(),
        ),
        ("cnpg", shop("c", "ns", cnpg.clone()), everything()),
        ("cnpg missing", shop("c", "ns", cnpg), Discovery::default()),
        ("external", shop("e", "ns", external), everything()),
        (
            "long name",
            shop(
                &format!("{}.example", "a".repeat(60)),
                "ns",
                json!({"redis": {"storage": {}}}),
            ),
            everything(),
        ),
    ]
}

fn check_metadata(what: &str, shop: &Shop, d: &Desired) {
    let meta = &d.object["metadata"];
    let id = format!("{what}: {} {}", d.kind, d.name);
    assert_eq!(d.object["apiVersion"], d.api_version, "{id}");
    assert_eq!(d.object["kind"], d.kind, "{id}");
    assert_eq!(meta["name"], d.name, "{id}");
    assert!(
        is_dns_label(&d.name),
        "{id}: not a DNS-1123 label of at most 63 characters"
    );
    if matches!(d.kind.as_str(), "StatefulSet" | "Cluster") {
        assert!(
            d.name.len() <= 50,
            "{id}: its pods' revision label would be too long"
        );
    }
    assert_eq!(meta["namespace"], json!(shop.metadata.namespace), "{id}");
    let owners = meta["ownerReferences"].as_array().expect("ownerReferences");
    assert_eq!(owners.len(), 1, "{id}");
    assert_eq!(
        owners[0],
        json!({
            "apiVersion": "ecom.dev/v1alpha1",
            "kind": "Shop",
            "name": shop.metadata.name,
            "uid": UID,
            "controller": true,
            "blockOwnerDeletion": true,
        }),
        "{id}"
    );
    for label in LABELS {
        let value = meta["labels"][label].as_str().unwrap_or_default();
        assert!(
            !value.is_empty() && value.len() <= 63,
            "{id}: label {label} = {value:?}"
        );
    }
    assert_eq!(meta["labels"]["app.kubernetes.io/part-of"], "ecom", "{id}");
    assert_eq!(
        meta["labels"]["app.kubernetes.io/managed-by"], "ecom-operator",
        "{id}"
    );
    for (k, v) in &shop.spec.global.labels {
        assert_eq!(meta["labels"][k], json!(v), "{id}: global label {k}");
    }
    for (k, v) in &shop.spec.global.annotations {
        assert_eq!(
            meta["annotations"][k],
            json!(v),
            "{id}: global annotation {k}"
        );
    }
}

#[test]
fn every_object_is_named_labelled_and_owned_by_the_shop() {
    for (what, shop, discovery) in variants() {
        let objects = desired_state(&shop, &discovery);
        let secrets = generated_secrets(&shop, &mut counter());
        for d in objects.iter().chain(&secrets) {
            check_metadata(what, &shop, d);
        }
        let mut names: Vec<_> = objects.iter().map(|d| (&d.kind, &d.name)).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "{what}: duplicate objects");
    }
}

/// Typed kinds survive a round trip through k8s-openapi's structs: no misspelt or misplaced
/// field (they would be dropped) and every value of the right type.
#[test]
fn typed_objects_are_valid_kubernetes_objects() {
    fn round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(d: &Desired) {
        let typed: K = serde_json::from_value(d.object.clone())
            .unwrap_or_else(|e| panic!("{} {}: {e}", d.kind, d.name));
        let back = serde_json::to_value(&typed).expect("serialize");
        assert_eq!(
            back, d.object,
            "{} {} changed in a round trip",
            d.kind, d.name
        );
    }
    for (_, shop, discovery) in variants() {
        let secrets = generated_secrets(&shop, &mut counter());
        for d in desired_state(&shop, &discovery).iter().chain(&secrets) {
            match d.kind.as_str() {
                "ConfigMap" => round_trip::<ConfigMap>(d),
                "Secret" => round_trip::<Secret>(d),
                "Service" => round_trip::<Service>(d),
                "Deployment" => round_trip::<Deployment>(d),
                "StatefulSet" => round_trip::<StatefulSet>(d),
                "PodDisruptionBudget" => round_trip::<PodDisruptionBudget>(d),
                "HorizontalPodAutoscaler" => round_trip::<HorizontalPodAutoscaler>(d),
                "Ingress" => round_trip::<Ingress>(d),
                "NetworkPolicy" => round_trip::<NetworkPolicy>(d),
                "Cluster" => assert_eq!(d.api_version, "postgresql.cnpg.io/v1"),
                "ServiceMonitor" | "PrometheusRule" => {
                    assert_eq!(d.api_version, "monitoring.coreos.com/v1")
                }
                other => panic!("unexpected kind {other}"),
            }
        }
    }
}

#[test]
fn two_runs_are_byte_identical() {
    for (what, shop, discovery) in variants() {
        let discovery = discovered(&shop, discovery);
        let first = yaml(
            &generated_secrets(&shop, &mut counter()),
            &desired_state(&shop, &discovery),
        );
        let second = yaml(
            &generated_secrets(&shop, &mut counter()),
            &desired_state(&shop, &discovery),
        );
        assert_eq!(first, second, "{what}");
        assert_eq!(
            desired_state(&shop, &discovery),
            desired_state(&shop, &discovery),
            "{what}"
        );
    }
}

#[test]
fn the_small_shop_runs_everything_with_defaults() {
    let objects = desired_state(&small(), &Discovery::default());
    let expected = [
        "ConfigMap/demo-config",
        "Service/demo-users-db",
        "StatefulSet/demo-users-db",
        "Service/demo-products-db",
        "StatefulSet/demo-products-db",
        "Service/demo-orders-db",
        "StatefulSet/demo-orders-db",
        "Service/demo-payments-db",
        "StatefulSet/demo-payments-db",
        "Service/demo-redis",
        "Deployment/demo-redis",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain(SERVICES.iter().flat_map(|s| {
        let mut objects = vec![format!("Service/demo-{s}")];
        if *s != "gateway" {
            // The headless Service callers balance gRPC over.
            objects.push(format!("Service/demo-{s}-grpc"));
        }
        objects.extend([
            format!("Deployment/demo-{s}"),
            format!("PodDisruptionBudget/demo-{s}"),
        ]);
        objects
    }))
    .chain(
        ["caches-limits", "overview", "runtime", "shop"]
            .iter()
            .map(|d| format!("ConfigMap/demo-dashboard-{d}")),
    )
    .chain(std::iter::once(
        "NetworkPolicy/demo-deny-ingress".to_owned(),
    ))
    .chain(SERVICES.iter().map(|s| format!("NetworkPolicy/demo-{s}")))
    .chain(
        DATABASE_SERVICES
            .iter()
            .map(|s| format!("NetworkPolicy/demo-{s}-db")),
    )
    .chain(std::iter::once("NetworkPolicy/demo-redis".to_owned()))
    .collect::<Vec<_>>();
    assert_eq!(kinds(&objects), expected);

    let users = find(&objects, "Deployment", "demo-users");
    assert_eq!(users["spec"]["replicas"], 1);
    assert_eq!(
        users["spec"]["selector"]["matchLabels"],
        json!({ "app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": "users" })
    );
    let container = &users["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["name"], "users");
    assert_eq!(
        container["image"],
        format!("ghcr.io/ecom/ecom-users:{}", operator::VERSION)
    );
    assert_eq!(
        container["ports"],
        json!([
            { "name": "http", "containerPort": 8001, "protocol": "TCP" },
            { "name": "grpc", "containerPort": 50051, "protocol": "TCP" },
        ])
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({ "path": "/health/ready", "port": "http" })
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({ "path": "/health/live", "port": "http" })
    );
    assert_eq!(
        container["resources"],
        json!({ "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "cpu": "500m", "memory": "256Mi" } })
    );
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(
        container["envFrom"],
        json!([{ "configMapRef": { "name": "demo-config" } }])
    );
    let env = env_of(users);
    assert_eq!(
        env["ECOM_USERS_DATABASE_URL"],
        secret_ref("demo-users-db", "uri")
    );
    // Users checks each calling service's own credential; it has none of its own.
    assert_eq!(
        env["ECOM_SERVICE_SECRET_ORDERS"],
        secret_ref("demo-service-credentials", "orders")
    );
    assert_eq!(
        env["ECOM_SERVICE_SECRET_PAYMENTS"],
        secret_ref("demo-service-credentials", "payments")
    );
    assert!(!env.contains_key("ECOM_SERVICE_SECRET"));
    assert_eq!(
        env["ECOM_ADMIN_EMAIL"],
        secret_ref("demo-auth", "admin-email")
    );
    assert_eq!(
        env["ECOM_ADMIN_PASSWORD"],
        secret_ref("demo-auth", "admin-password")
    );

    let gateway = find(&objects, "Deployment", "demo-gateway");
    let env = env_of(gateway);
    assert!(
        env.is_empty(),
        "the gateway has no database, no admin and no service credential: {env:?}"
    );
    let service = find(&objects, "Service", "demo-gateway");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    // `/metrics` is on the gateway's ops port, which only Prometheus reaches (the Ingress
    // routes `http`).
    assert_eq!(
        service["spec"]["ports"],
        json!([
            { "name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http" },
            { "name": "metrics", "port": 9080, "protocol": "TCP", "targetPort": "metrics" },
        ])
    );
    let service = find(&objects, "Service", "demo-orders");
    let names: Vec<_> = service["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (p["name"].clone(), p["port"].clone()))
        .collect();
    assert_eq!(
        names,
        [(json!("http"), json!(8003)), (json!("grpc"), json!(50053))]
    );
    let pdb = find(&objects, "PodDisruptionBudget", "demo-orders");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    let config = &find(&objects, "ConfigMap", "demo-config")["data"];
    assert_eq!(config["ECOM_ENV"], "production");
    assert_eq!(config["ECOM_BIND_ADDRESS"], "0.0.0.0");
    assert_eq!(config["ECOM_LOG_FORMAT"], "json");
    assert_eq!(config["ECOM_REDIS_URL"], "redis://demo-redis:6379");
    assert_eq!(config["ECOM_REDIS_PREFIX"], "demo");
    assert_eq!(
        config["ECOM_JWKS_URL"],
        "http://demo-users:8001/.well-known/jwks.json"
    );
    // The headless Service: one address per pod, balanced by the caller.
    assert_eq!(
        config["ECOM_PRODUCTS_GRPC_URL"],
        "http://demo-products-grpc:50052"
    );
    assert_eq!(
        config["ECOM_PAYMENTS_HTTP_URL"],
        "http://demo-payments:8004"
    );
    assert!(config.get("ECOM_RATE_LIMIT_DEFAULT").is_none());
}

#[test]
fn builtin_databases_are_statefulsets_with_their_credentials() {
    let objects = desired_state(&small(), &Discovery::default());
    for service in DATABASE_SERVICES {
        let name = format!("demo-{service}-db");
        let sts = find(&objects, "StatefulSet", &name);
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["spec"]["serviceName"], name);
        let pod = &sts["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["image"], "postgres:16");
        let env = env_of(sts);
        assert_eq!(env["POSTGRES_USER"], secret_ref(&name, "username"));
        assert_eq!(env["POSTGRES_PASSWORD"], secret_ref(&name, "password"));
        assert_eq!(env["POSTGRES_DB"], secret_ref(&name, "dbname"));
        assert_eq!(env["PGDATA"], "/var/lib/postgresql/data/pgdata");
        assert!(
            container["readinessProbe"]["exec"]["command"][2]
                .as_str()
                .is_some_and(|c| c.starts_with("pg_isready"))
        );
        let claim = &sts["spec"]["volumeClaimTemplates"][0];
        assert_eq!(claim["metadata"]["name"], "data");
        assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
        // The controller finds the claims by these labels; the version is not there (claim
        // templates are immutable).
        assert_eq!(
            claim["metadata"]["labels"]["app.kubernetes.io/instance"],
            "demo"
        );
        assert_eq!(
            claim["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "ecom-operator"
        );
        assert!(
            claim["metadata"]["labels"]
                .get("app.kubernetes.io/version")
                .is_none()
        );
        let headless = find(&objects, "Service", &name);
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(headless["spec"]["ports"][0]["port"], 5432);
        assert_eq!(
            headless["spec"]["selector"],
            sts["spec"]["selector"]["matchLabels"]
        );
        let deployment = find(&objects, "Deployment", &format!("demo-{service}"));
        let upper = service.to_ascii_uppercase();
        assert_eq!(
            env_of(deployment)[&format!("ECOM_{upper}_DATABASE_URL")],
            secret_ref(&name, "uri")
        );
    }

    let secrets = generated_secrets(&small(), &mut counter());
    let names: Vec<_> = secrets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "demo-users-db",
            "demo-products-db",
            "demo-orders-db",
            "demo-payments-db",
            "demo-service-credentials",
            "demo-auth"
        ]
    );
    let users: Secret = serde_json::from_value(secrets[0].object.clone()).expect("a Secret");
    assert_eq!(users.type_.as_deref(), Some("Opaque"));
    assert!(users.string_data.is_none());
    let data: BTreeMap<_, _> = users
        .data
        .expect("data")
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf-8")))
        .collect();
    let password = "random-01random-02random-03";
    assert_eq!(
        data,
        BTreeMap::from(
            [
                ("username", "ecom_users"),
                ("password", password),
                ("host", "demo-users-db"),
                ("port", "5432"),
                ("dbname", "ecom_users"),
                (
                    "uri",
                    &format!("postgres://ecom_users:{password}@demo-users-db:5432/ecom_users")
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        )
    );
}

#[test]
fn cloudnativepg_clusters_exist_only_when_cloudnativepg_is_installed() {
    let shop = production();
    let objects = desired_state(&shop, &everything());
    for service in DATABASE_SERVICES {
        let name = format!("prod-{service}-db");
        let cluster = find(&objects, "Cluster", &name);
        assert_eq!(cluster["apiVersion"], "postgresql.cnpg.io/v1");
        assert_eq!(cluster["spec"]["instances"], 3);
        assert_eq!(
            cluster["spec"]["imageName"],
            "ghcr.io/cloudnative-pg/postgresql:17"
        );
        assert_eq!(
            cluster["spec"]["storage"],
            json!({ "size": "20Gi", "storageClass": "fast-ssd" })
        );
        let db = format!("ecom_{service}");
        assert_eq!(
            cluster["spec"]["bootstrap"]["initdb"],
            json!({ "database": db, "owner": db })
        );
        let upper = service.to_ascii_uppercase();
        let deployment = find(&objects, "Deployment", &format!("prod-{service}"));
        assert_eq!(
            env_of(deployment)[&format!("ECOM_{upper}_DATABASE_URL")],
            secret_ref(&format!("{name}-app"), "uri")
        );
    }
    assert!(
        !objects
            .iter()
            .any(|d| d.kind == "StatefulSet" && d.name.ends_with("-db"))
    );

    let missing = desired_state(&shop, &Discovery::default());
    assert!(!missing.iter().any(|d| d.kind == "Cluster"));
    assert!(
        !missing
            .iter()
            .any(|d| d.kind == "StatefulSet" && d.name.ends_with("-db"))
    );
    // The services are still there, waiting for the databases.
    let users = find(&missing, "Deployment", "prod-users");
    assert_eq!(
        env_of(users)["ECOM_USERS_DATABASE_URL"],
        secret_ref("prod-users-db-app", "uri")
    );

    // CloudNativePG makes its own credentials.
    let secrets = generated_secrets(&shop, &mut counter());
    assert_eq!(
        secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["prod-service-credentials", "prod-auth"]
    );
    // Defaults: one instance.
    let cnpg = shop_with("c", json!({ "database": { "provider": "CloudNativePG" } }));
    let objects = desired_state(&cnpg, &everything());
    assert_eq!(
        find(&objects, "Cluster", "c-users-db")["spec"]["instances"],
        1
    );
}

fn shop_with(name: &str, spec: Value) -> Shop {
    shop(name, "ns", spec)
}

#[test]
fn external_databases_and_a_given_auth_secret_create_nothing() {
    let shop = shop_with(
        "e",
        json!({
            "database": { "provider": "External", "external": { "secretRefs": {
                "users": "pg-users", "products": "pg-products", "orders": "pg-orders", "payments": "pg-payments",
            } } },
            "redis": { "enabled": false, "url": "redis://redis.infra:6379/2" },
            "auth": { "jwtSecretRef": "my-auth" },
        }),
    );
    assert_eq!(auth_secret_name(&shop), "my-auth");
    let objects = desired_state(&shop, &everything());
    assert!(
        !objects
            .iter()
            .any(|d| matches!(d.kind.as_str(), "StatefulSet" | "Cluster")
                || d.name.contains("redis")),
        "{:?}",
        kinds(&objects)
    );
    for service in DATABASE_SERVICES {
        let upper = service.to_ascii_uppercase();
        let deployment = find(&objects, "Deployment", &format!("e-{service}"));
        let env = env_of(deployment);
        assert_eq!(
            env[&format!("ECOM_{upper}_DATABASE_URL")],
            secret_ref(&format!("pg-{service}"), "uri")
        );
        // Only the services that call others as themselves hold a credential, each its own.
        if SERVICES_WITH_IDENTITY.contains(&service) {
            assert_eq!(
                env["ECOM_SERVICE_SECRET"],
                secret_ref("e-service-credentials", service)
            );
        } else {
            assert!(!env.contains_key("ECOM_SERVICE_SECRET"), "{service}");
        }
    }
    let users = env_of(find(&objects, "Deployment", "e-users"));
    assert_eq!(
        users["ECOM_ADMIN_PASSWORD"],
        secret_ref("my-auth", "admin-password")
    );
    let config = &find(&objects, "ConfigMap", "e-config")["data"];
    assert_eq!(config["ECOM_REDIS_URL"], "redis://redis.infra:6379/2");
    // The service credentials are always the operator's own (a Shop that brings its auth
    // Secret gets them too).
    let secrets = generated_secrets(&shop, &mut counter());
    assert_eq!(
        secrets.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        ["e-service-credentials"]
    );
}

/// The CRD crate keeps its own lists of services (it does not depend on the shared crate):
/// they must be the platform's table (`ecom_shared::platform`), in its order.
#[test]
fn the_shop_api_lists_are_the_platform_table() {
    use ecom_shared::platform;
    let names = |f: fn(&platform::Service) -> bool| -> Vec<&str> {
        platform::SERVICES
            .iter()
            .filter(|s| f(s))
            .map(|s| s.name)
            .collect()
    };
    assert_eq!(SERVICES.to_vec(), names(|_| true));
    assert_eq!(DATABASE_SERVICES.to_vec(), names(|s| s.database));
    for (callee, callers) in ecom_shop_api::GRPC_CALLERS {
        let callee = platform::by_name(callee).expect("a service of the table");
        assert!(
            callee.grpc_port.is_some(),
            "{} has no gRPC port",
            callee.name
        );
        for caller in callers {
            assert!(platform::by_name(caller).is_some(), "{caller}");
        }
    }
}

/// One credential per service that calls others as itself, each only in that service's
/// Deployment and in Users' (which checks it): a compromised gateway or Products holds none,
/// and Orders cannot mint Payments' identity.
#[test]
fn each_calling_service_gets_its_own_credential_and_no_other_service_any() {
    assert_eq!(
        SERVICES_WITH_IDENTITY,
        ecom_shared::config::SERVICES_WITH_IDENTITY,
        "the operator and the services agree on who has an identity"
    );
    let shop = small();
    let secrets = generated_secrets(&shop, &mut counter());
    let credentials: Secret = serde_json::from_value(
        secrets
            .iter()
            .find(|s| s.name == "demo-service-credentials")
            .expect("the credentials Secret")
            .object
            .clone(),
    )
    .expect("a Secret");
    let data = credentials.data.expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["orders", "payments"]);
    assert_ne!(data["orders"], data["payments"]);
    assert!(
        data.values().all(|v| v.0.len() >= 32),
        "production needs 32+"
    );

    let objects = desired_state(&shop, &everything());
    for service in SERVICES {
        let env = env_of(find(&objects, "Deployment", &format!("demo-{service}")));
        let credentials: Vec<_> = env
            .iter()
            .filter(|(name, _)| name.starts_with("ECOM_SERVICE_SECRET"))
            .map(|(name, value)| (name.as_str(), value.clone()))
            .collect();
        let expected: Vec<(&str, Value)> = match service {
            "orders" | "payments" => vec![(
                "ECOM_SERVICE_SECRET",
                secret_ref("demo-service-credentials", service),
            )],
            "users" => vec![
                (
                    "ECOM_SERVICE_SECRET_ORDERS",
                    secret_ref("demo-service-credentials", "orders"),
                ),
                (
                    "ECOM_SERVICE_SECRET_PAYMENTS",
                    secret_ref("demo-service-credentials", "payments"),
                ),
            ],
            _ => vec![],
        };
        assert_eq!(credentials, expected, "{service}");
    }
}

#[test]
fn service_monitors_need_both_the_setting_and_the_crd() {
    let enabled = production();
    let mut disabled = production();
    disabled.spec.monitoring.service_monitor.enabled = false;
    for (shop, discovery, expected) in [
        (&enabled, everything(), 5),
        (
            &enabled,
            Discovery {
                service_monitors: false,
                ..everything()
            },
            0,
        ),
        (&disabled, everything(), 0),
        (
            &disabled,
            Discovery {
                service_monitors: false,
                ..everything()
            },
            0,
        ),
    ] {
        let objects = desired_state(shop, &discovery);
        let monitors: Vec<_> = objects
            .iter()
            .filter(|d| d.kind == "ServiceMonitor")
            .collect();
        assert_eq!(monitors.len(), expected);
    }
    let objects = desired_state(&enabled, &everything());
    let monitor = find(&objects, "ServiceMonitor", "prod-orders");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        monitor["spec"],
        json!({
            "jobLabel": "app.kubernetes.io/component",
            "selector": { "matchLabels": { "app.kubernetes.io/instance": "prod", "app.kubernetes.io/component": "orders" } },
            "namespaceSelector": { "matchNames": ["ecom-prod"] },
            "endpoints": [{ "port": "http", "path": "/metrics", "interval": "15s" }],
        })
    );
    // The gateway's metrics are on its ops port, named on its Service.
    let gateway = find(&objects, "ServiceMonitor", "prod-gateway");
    assert_eq!(gateway["spec"]["endpoints"][0]["port"], "metrics");
    // The ServiceMonitor selects the Service, which carries the selected labels.
    let service = find(&objects, "Service", "prod-orders");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("labels")
    {
        assert_eq!(&service["metadata"]["labels"][k], v);
    }
}

#[test]
fn an_autoscaled_deployment_leaves_its_replicas_to_the_autoscaler() {
    for (what, shop, discovery) in variants() {
        let objects = desired_state(&shop, &discovery);
        for d in objects.iter().filter(|d| d.kind == "Deployment") {
            let has_hpa = objects
                .iter()
                .any(|h| h.kind == "HorizontalPodAutoscaler" && h.name == d.name);
            assert_eq!(
                d.object["spec"].get("replicas").is_none(),
                has_hpa,
                "{what}: {}",
                d.name
            );
        }
    }
    let objects = desired_state(&production(), &everything());
    let hpa = find(&objects, "HorizontalPodAutoscaler", "prod-products");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(
        hpa["spec"],
        json!({
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "prod-products" },
            "minReplicas": 2,
            "maxReplicas": 6,
            "metrics": [{ "type": "Resource", "resource": { "name": "cpu", "target": { "type": "Utilization", "averageUtilization": 70 } } }],
        })
    );
    assert_eq!(
        find(&objects, "Deployment", "prod-gateway")["spec"]["replicas"],
        3
    );
    assert_eq!(
        find(&objects, "Deployment", "prod-users")["spec"]["replicas"],
        2
    );
}

#[test]
fn a_disabled_service_has_no_workload_but_keeps_its_database() {
    for service in SERVICES {
        let shop = shop_with(
            "d",
            json!({ "services": { service: { "enabled": false } } }),
        );
        let objects = desired_state(&shop, &everything());
        let own: Vec<_> = objects
            .iter()
            .filter(|d| d.object["metadata"]["labels"]["app.kubernetes.io/component"] == service)
            .map(|d| format!("{}/{}", d.kind, d.name))
            .collect();
        assert_eq!(own, Vec::<String>::new(), "{service}");
        let enabled = SERVICES.iter().filter(|s| **s != service).count();
        assert_eq!(
            objects
                .iter()
                .filter(|d| d.kind == "Deployment" && d.name != "d-redis")
                .count(),
            enabled
        );
        if service != "gateway" {
            find(&objects, "StatefulSet", &format!("d-{service}-db"));
        }
    }
    // No Ingress without the gateway.
    let mut shop = production();
    assert!(
        desired_state(&shop, &everything())
            .iter()
            .any(|d| d.kind == "Ingress")
    );
    shop.spec.services.gateway.service.enabled = false;
    assert!(
        !desired_state(&shop, &everything())
            .iter()
            .any(|d| d.kind == "Ingress")
    );
}

#[test]
fn a_changed_secret_rolls_only_the_pods_that_read_it() {
    let shop = small();
    let base = discovered(&shop, Discovery::default());
    let before = desired_state(&shop, &base);
    let checksum = |objects: &[Desired], name: &str| {
        find(objects, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
            [CHECKSUM_ANNOTATION]
            .as_str()
            .expect("checksum")
            .to_owned()
    };
    // The checksum is a hex SHA-256.
    let sum = checksum(&before, "demo-users");
    assert!(
        sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sum}"
    );

    for (secret, readers) in [
        ("demo-users-db", vec!["demo-users".to_owned()]),
        ("demo-orders-db", vec!["demo-orders".to_owned()]),
        ("demo-auth", vec!["demo-users".to_owned()]),
        (
            "demo-service-credentials",
            ["demo-users", "demo-orders", "demo-payments"]
                .map(str::to_owned)
                .to_vec(),
        ),
    ] {
        let mut changed = base.clone();
        changed
            .checksums
            .insert(secret.to_owned(), "something else".to_owned());
        let after = desired_state(&shop, &changed);
        assert_eq!(after.len(), before.len());
        for (b, a) in before.iter().zip(&after) {
            if readers.contains(&b.name) && b.kind == "Deployment" {
                assert_ne!(
                    checksum(&before, &b.name),
                    checksum(&after, &a.name),
                    "{secret}: {}",
                    b.name
                );
                let mut a = a.object.clone();
                a["spec"]["template"]["metadata"]["annotations"][CHECKSUM_ANNOTATION] =
                    json!(checksum(&before, &b.name));
                assert_eq!(
                    a, b.object,
                    "{secret}: only the checksum changes in {}",
                    b.name
                );
            } else {
                assert_eq!(a, b, "{secret}: {} {} does not read it", b.kind, b.name);
            }
        }
    }

    // A changed shared setting (the ConfigMap) rolls every service.
    let mut limited = shop.clone();
    limited.spec.rate_limits.login = Some("5/minute".to_owned());
    let after = desired_state(&limited, &base);
    for service in SERVICES {
        let name = format!("demo-{service}");
        assert_ne!(checksum(&before, &name), checksum(&after, &name), "{name}");
    }
}

#[test]
fn generated_secrets_are_stable_for_a_given_random() {
    let shop = small();
    let first = generated_secrets(&shop, &mut counter());
    let second = generated_secrets(&shop, &mut counter());
    assert_eq!(first, second);
    // Fresh randomness, fresh secrets.
    let mut n = 100;
    let other = generated_secrets(&shop, &mut || {
        n += 1;
        format!("other-{n}")
    });
    assert_ne!(first, other);

    let auth: Secret =
        serde_json::from_value(first.last().expect("auth").object.clone()).expect("a Secret");
    assert_eq!(auth.metadata.name.as_deref(), Some("demo-auth"));
    let data: BTreeMap<_, _> = auth
        .data
        .expect("data")
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf-8")))
        .collect();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["admin-email", "admin-password"]
    );
    assert!(
        data["admin-password"].len() >= 12,
        "production needs 12+ characters"
    );
    assert_eq!(data["admin-email"], "admin@demo.local");

    // A generator of short strings is called until the secret is long enough.
    let secrets = generated_secrets(&shop, &mut || "x".to_owned());
    let credentials: Secret = serde_json::from_value(secrets[4].object.clone()).expect("a Secret");
    assert_eq!(credentials.data.expect("data")["orders"].0.len(), 32);
    // ... and one that yields nothing does not hang.
    assert_eq!(generated_secrets(&shop, &mut String::new).len(), 6);

    // A given auth Secret: not generated.
    let mut given = small();
    given.spec.auth.jwt_secret_ref = Some("company-auth".to_owned());
    let secrets = generated_secrets(&given, &mut counter());
    assert!(
        secrets
            .iter()
            .all(|s| s.name.ends_with("-db") || s.name == "demo-service-credentials"),
        "{secrets:?}"
    );
    let objects = desired_state(&given, &Discovery::default());
    assert_eq!(
        operator::desired::referenced_secrets(&objects)
            .iter()
            .filter(|n| n.contains("auth"))
            .collect::<Vec<_>>(),
        ["company-auth"]
    );
}

#[test]
fn the_operators_wiring_wins_over_the_users_env() {
    let objects = desired_state(&production(), &everything());
    let users = find(&objects, "Deployment", "prod-users");
    let env = users["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env");
    let names: Vec<_> = env
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    // ECOM_ENV (set by the ConfigMap) and ECOM_SERVICE_SECRET_ORDERS (ours) are dropped from
    // the spec's.
    assert_eq!(
        names,
        [
            "ECOM_USERS_DATABASE_URL",
            "ECOM_SERVICE_SECRET_ORDERS",
            "ECOM_SERVICE_SECRET_PAYMENTS",
            "ECOM_ADMIN_EMAIL",
            "ECOM_ADMIN_PASSWORD",
            "ECOM_LOG"
        ]
    );
    assert_eq!(
        env_of(users)["ECOM_SERVICE_SECRET_ORDERS"],
        secret_ref("prod-service-credentials", "orders")
    );
    assert_eq!(env_of(users)["ECOM_LOG"], "info,users=debug");
}

#[test]
fn the_production_shop_uses_its_registry_resources_ingress_and_limits() {
    let objects = desired_state(&production(), &everything());
    let image = |name: &str| {
        find(&objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]["image"]
            .clone()
    };
    assert_eq!(
        image("prod-users"),
        "registry.example.com/acme/ecom-users:1.4.2"
    );
    assert_eq!(
        image("prod-payments"),
        "registry.example.com/acme/payments:1.4.2-hotfix1"
    );
    let products = find(&objects, "Deployment", "prod-products");
    let pod = &products["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["resources"]["limits"],
        json!({ "cpu": "2", "memory": "1Gi" })
    );
    assert_eq!(pod["imagePullSecrets"], json!([{ "name": "regcred" }]));
    assert_eq!(
        products["metadata"]["labels"]["app.kubernetes.io/version"],
        "1.4.2"
    );
    assert_eq!(products["metadata"]["labels"]["team"], "commerce");

    let ingress = find(&objects, "Ingress", "prod-gateway");
    assert_eq!(ingress["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(
        ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
        "letsencrypt"
    );
    assert_eq!(
        ingress["metadata"]["annotations"]["example.com/owner"],
        "commerce@example.com"
    );
    assert_eq!(
        ingress["spec"],
        json!({
            "ingressClassName": "nginx",
            "rules": [{ "host": "shop.example.com", "http": { "paths": [{
                "path": "/",
                "pathType": "Prefix",
                "backend": { "service": { "name": "prod-gateway", "port": { "name": "http" } } },
            }] } }],
            "tls": [{ "hosts": ["shop.example.com"], "secretName": "shop-example-com-tls" }],
        })
    );

    let config = &find(&objects, "ConfigMap", "prod-config")["data"];
    assert_eq!(config["ECOM_RATE_LIMIT_DEFAULT"], "600/minute");
    assert_eq!(config["ECOM_RATE_LIMIT_LOGIN"], "5/minute");

    // Redis with a volume: a StatefulSet.
    let redis = find(&objects, "StatefulSet", "prod-redis");
    assert_eq!(
        redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
        "2Gi"
    );
    assert!(
        !objects
            .iter()
            .any(|d| d.kind == "Deployment" && d.name == "prod-redis")
    );
}

#[test]
fn the_apply_order_puts_config_and_storage_before_workloads() {
    let objects = desired_state(&production(), &everything());
    let rank = |d: &Desired| match d.kind.as_str() {
        "NetworkPolicy" => 6,
        "ConfigMap" if d.name.ends_with("-config") => 0,
        "Cluster" => 1,
        _ if d.name.ends_with("-db") => 1,
        _ if d.name.ends_with("-redis") => 2,
        "Ingress" => 4,
        "ServiceMonitor" | "PrometheusRule" => 5,
        "ConfigMap" if d.name.contains("-dashboard-") => 5,
        _ => 3,
    };
    let ranks: Vec<_> = objects.iter().map(rank).collect();
    let mut sorted = ranks.clone();
    sorted.sort();
    assert_eq!(ranks, sorted, "{:?}", kinds(&objects));
}

#[test]
fn long_names_are_truncated_with_a_stable_hash() {
    let long = format!("{}.example", "a".repeat(60));
    let shop = shop_with(&long, json!({}));
    let objects = desired_state(&shop, &everything());
    let users = objects
        .iter()
        .find(|d| {
            d.kind == "Deployment"
                && d.object["metadata"]["labels"]["app.kubernetes.io/component"] == "users"
        })
        .expect("users");
    assert_eq!(users.name.len(), 63);
    assert!(users.name.starts_with("aaaa"));
    let again = desired_state(&shop, &everything());
    assert_eq!(kinds(&objects), kinds(&again));
    // Two services of one long-named Shop still differ.
    let mut names: Vec<_> = objects
        .iter()
        .filter(|d| d.kind == "Deployment")
        .map(|d| &d.name)
        .collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count);
    // A dotted (DNS subdomain) Shop name becomes a valid label.
    let dotted = shop_with("my.shop", json!({}));
    let objects = desired_state(&dotted, &Discovery::default());
    find(&objects, "Deployment", "my-shop-users");
    assert_eq!(
        find(&objects, "ConfigMap", "my-shop-config")["data"]["ECOM_USERS_GRPC_URL"],
        "http://my-shop-users-grpc:50051"
    );
}

/// A service waits for its database up to ECOM_DATABASE_WAIT_SECONDS (120 s by default) before
/// it listens: the startup probe must allow longer, or a first boot beside a starting database
/// is killed into a crash loop.
#[test]
fn the_startup_probe_outlasts_the_services_wait_for_their_database() {
    let objects = desired_state(&small(), &everything());
    for service in DATABASE_SERVICES {
        let deployment = find(&objects, "Deployment", &format!("demo-{service}"));
        let probe = &deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"];
        let window = probe["periodSeconds"].as_i64().expect("period")
            * probe["failureThreshold"].as_i64().expect("failures");
        assert!(window >= 150, "{service}: {window} s");
    }
}

/// The client address behind the Ingress is the client's, not the Ingress pod's: the services
/// believe `X-Forwarded-For` from the pod network (by default the private ranges; the Shop can
/// narrow them), in a form every service parses.
#[test]
fn the_services_trust_the_pod_network_for_the_client_address() {
    let trusted = |shop: &Shop| {
        let objects = desired_state(shop, &everything());
        let name = shop.metadata.name.clone().expect("name");
        let config = find(&objects, "ConfigMap", &format!("{name}-config"));
        config["data"]["ECOM_TRUSTED_PROXIES"]
            .as_str()
            .expect("ECOM_TRUSTED_PROXIES")
            .to_owned()
    };
    let default = trusted(&small());
    assert_eq!(default, "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7");
    for range in default.split(',') {
        range
            .parse::<ecom_shared::http::IpRange>()
            .unwrap_or_else(|e| panic!("{range}: {e}"));
    }
    let narrowed = shop_with(
        "n",
        json!({ "services": { "gateway": { "trustedProxies": ["10.244.0.0/16"] } } }),
    );
    assert_eq!(trusted(&narrowed), "10.244.0.0/16");
}

/// The ports a NetworkPolicy opens, as (port, the components or namespaces allowed; `*` = any).
fn openings(policy: &Value) -> Vec<(i64, Vec<String>)> {
    policy["spec"]["ingress"]
        .as_array()
        .expect("ingress rules")
        .iter()
        .map(|rule| {
            let port = rule["ports"][0]["port"].as_i64().expect("port");
            let from = match rule["from"].as_array() {
                None => vec!["*".to_owned()],
                Some(peers) => peers
                    .iter()
                    .flat_map(|p| {
                        let pods = p["podSelector"]["matchExpressions"][0]["values"].clone();
                        let namespaces =
                            p["namespaceSelector"]["matchExpressions"][0]["values"].clone();
                        let values = if pods.is_array() { pods } else { namespaces };
                        values
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect::<Vec<_>>()
                    })
                    .collect(),
            };
            (port, from)
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Only the gateway is reachable from outside the Shop; databases only from their own service;
/// each gRPC port only from its callers; /metrics from Prometheus's namespace.
#[test]
fn network_policies_let_in_only_who_needs_each_port() {
    let objects = desired_state(&small(), &Discovery::default());
    let deny = find(&objects, "NetworkPolicy", "demo-deny-ingress");
    assert_eq!(
        deny["spec"]["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/instance": "demo", "app.kubernetes.io/managed-by": "ecom-operator"})
    );
    assert_eq!(deny["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(deny["spec"]["ingress"], json!([]));

    let monitoring = strings(&["monitoring"]);
    let gateway = find(&objects, "NetworkPolicy", "demo-gateway");
    assert_eq!(
        openings(gateway),
        [(8080, strings(&["*"])), (9080, monitoring.clone())]
    );
    let users = find(&objects, "NetworkPolicy", "demo-users");
    assert_eq!(
        users["spec"]["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": "users"})
    );
    assert_eq!(
        openings(users),
        [
            // The JWKS, for every service; the REST facade.
            (
                8001,
                strings(&["products", "orders", "payments", "gateway"])
            ),
            (
                50051,
                strings(&["products", "orders", "payments", "gateway"])
            ),
            (8001, monitoring.clone()),
        ]
    );
    assert_eq!(
        openings(find(&objects, "NetworkPolicy", "demo-products")),
        [
            (8002, strings(&["gateway"])),
            (50052, strings(&["orders", "gateway"])),
            (8002, monitoring.clone()),
        ]
    );
    assert_eq!(
        openings(find(&objects, "NetworkPolicy", "demo-orders")),
        [
            (8003, strings(&["gateway"])),
            (50053, strings(&["payments", "gateway"])),
            (8003, monitoring.clone()),
        ]
    );
    assert_eq!(
        openings(find(&objects, "NetworkPolicy", "demo-payments")),
        [
            (8004, strings(&["gateway"])),
            (50054, strings(&["gateway"])),
            (8004, monitoring),
        ]
    );
    for service in DATABASE_SERVICES {
        let db = find(&objects, "NetworkPolicy", &format!("demo-{service}-db"));
        assert_eq!(openings(db), [(5432, strings(&[service]))]);
        // It selects exactly the database's pods.
        let statefulset = find(&objects, "StatefulSet", &format!("demo-{service}-db"));
        assert_eq!(
            db["spec"]["podSelector"], statefulset["spec"]["selector"],
            "{service}"
        );
    }
    let redis = find(&objects, "NetworkPolicy", "demo-redis");
    assert_eq!(openings(redis), [(6379, strings(&SERVICES))]);
    assert_eq!(
        redis["spec"]["podSelector"],
        find(&objects, "Deployment", "demo-redis")["spec"]["selector"]
    );
    // Every policy is owned by the Shop and labelled like everything else (prune, cleanup).
    for d in objects.iter().filter(|d| d.kind == "NetworkPolicy") {
        assert_eq!(d.object["metadata"]["ownerReferences"][0]["kind"], "Shop");
        assert_eq!(
            d.object["metadata"]["labels"]["app.kubernetes.io/instance"],
            "demo"
        );
    }

    // A disabled service is let in nowhere; CloudNativePG's pods are its operator's business;
    // and the whole set can be turned off (a network plugin that does not enforce them).
    let shop = shop_with(
        "demo",
        json!({"services": {"payments": {"enabled": false}}, "database": {"provider": "CloudNativePG"},
               "networkPolicies": {"scrapeNamespaces": []}}),
    );
    let objects = desired_state(
        &shop,
        &Discovery {
            cnpg: true,
            ..Discovery::default()
        },
    );
    let names: Vec<&str> = objects
        .iter()
        .filter(|d| d.kind == "NetworkPolicy")
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "demo-deny-ingress",
            "demo-users",
            "demo-products",
            "demo-orders",
            "demo-gateway",
            "demo-redis"
        ]
    );
    assert_eq!(
        openings(find(&objects, "NetworkPolicy", "demo-orders")),
        [
            (8003, strings(&["gateway"])),
            (50053, strings(&["payments", "gateway"]))
        ]
    );
    let off = shop_with("demo", json!({"networkPolicies": {"enabled": false}}));
    assert!(
        !desired_state(&off, &Discovery::default())
            .iter()
            .any(|d| d.kind == "NetworkPolicy")
    );
}

/// gRPC callers reach every pod of a service: a headless Service (one DNS address per ready
/// pod) with only the gRPC port, selecting the same pods as the ClusterIP Service.
#[test]
fn each_grpc_service_has_a_headless_service_the_callers_use() {
    let objects = desired_state(&small(), &Discovery::default());
    let config = find(&objects, "ConfigMap", "demo-config");
    for (service, port) in [
        ("users", 50051),
        ("products", 50052),
        ("orders", 50053),
        ("payments", 50054),
    ] {
        let headless = find(&objects, "Service", &format!("demo-{service}-grpc"));
        assert_eq!(headless["spec"]["clusterIP"], "None");
        assert_eq!(
            headless["spec"]["ports"],
            json!([{"name": "grpc", "port": port, "protocol": "TCP", "targetPort": "grpc"}])
        );
        let plain = find(&objects, "Service", &format!("demo-{service}"));
        assert_eq!(headless["spec"]["selector"], plain["spec"]["selector"]);
        let upper = service.to_ascii_uppercase();
        assert_eq!(
            config["data"][format!("ECOM_{upper}_GRPC_URL")],
            format!("http://demo-{service}-grpc:{port}")
        );
    }
    assert!(
        !objects
            .iter()
            .any(|d| d.kind == "Service" && d.name == "demo-gateway-grpc")
    );
    // A stopping pod keeps serving until its callers' next resolution has dropped it.
    for service in SERVICES {
        let pod =
            &find(&objects, "Deployment", &format!("demo-{service}"))["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["lifecycle"]["preStop"],
            json!({"sleep": {"seconds": 20}})
        );
        assert_eq!(pod["terminationGracePeriodSeconds"], 50);
    }
}

/// The Shop brings the compose stack's alert rules and dashboards: the same files.
#[test]
fn alert_rules_and_dashboards_come_from_the_compose_files() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let objects = desired_state(&production(), &everything());
    let rule = find(&objects, "PrometheusRule", "prod-alerts");
    let file: Value = serde_norway::from_str(
        &std::fs::read_to_string(root.join("monitoring/prometheus/rules/ecom.rules.yml"))
            .expect("rules"),
    )
    .expect("yaml");
    // The same rules, each narrowed to the Shop's namespace and labelled with the Shop.
    let mut expected = file["groups"].clone();
    for group in expected.as_array_mut().expect("groups") {
        group["name"] = json!(format!(
            "ecom-prod/prod: {}",
            group["name"].as_str().expect("name")
        ));
        for rule in group["rules"].as_array_mut().expect("rules") {
            let expr = rule["expr"]
                .as_str()
                .expect("expr")
                .replace("{job=", "{namespace=\"ecom-prod\",job=");
            rule["expr"] = json!(expr);
            rule["labels"]["namespace"] = json!("ecom-prod");
            rule["labels"]["shop"] = json!("prod");
        }
    }
    assert_eq!(rule["spec"]["groups"], expected);
    assert_eq!(
        rule["spec"]["groups"][0]["rules"][0]["expr"],
        "up{namespace=\"ecom-prod\",job=~\"users|products|orders|payments|gateway\"} == 0"
    );
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        Value::Null,
        "the ServiceMonitor labels are not the rule's"
    );
    // Not without the CRD, nor without the ServiceMonitors that set the `job` the rules use.
    let no_crd = Discovery {
        prometheus_rules: false,
        ..everything()
    };
    assert!(
        !desired_state(&production(), &no_crd)
            .iter()
            .any(|d| d.kind == "PrometheusRule")
    );
    assert!(
        !desired_state(&small(), &everything())
            .iter()
            .any(|d| d.kind == "PrometheusRule")
    );

    for name in ["caches-limits", "overview", "runtime", "shop"] {
        let map = find(&objects, "ConfigMap", &format!("prod-dashboard-{name}"));
        assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
        // The sidecar's folder is flat and Grafana keys dashboards by uid: both name the Shop.
        let key = format!("ecom-prod-prod-{name}.json");
        let dashboard: Value =
            serde_json::from_str(map["data"][&key].as_str().expect("data")).expect("json");
        let text = std::fs::read_to_string(
            root.join(format!("monitoring/grafana/dashboards/{name}.json")),
        )
        .expect("dashboard");
        // The same dashboard, its datasource your Grafana's (kube-prometheus-stack: `prometheus`).
        let mut expected: Value = serde_json::from_str(
            &text.replace("\"uid\": \"ecom-prometheus\"", "\"uid\": \"prometheus\""),
        )
        .expect("json");
        let uid = dashboard["uid"].as_str().expect("uid").to_owned();
        let file_uid = expected["uid"].as_str().expect("uid").to_owned();
        assert!(uid.starts_with(&file_uid) && uid.len() <= 40, "{uid}");
        assert_eq!(
            dashboard["title"],
            format!(
                "{} (ecom-prod/prod)",
                expected["title"].as_str().expect("title")
            )
        );
        expected["uid"] = json!(uid);
        expected["title"] = dashboard["title"].clone();
        assert_eq!(dashboard, expected, "{name}");
        assert!(
            !map["data"][&key]
                .as_str()
                .unwrap_or_default()
                .contains("ecom-prometheus")
        );
    }
    let custom = shop_with(
        "demo",
        json!({"monitoring": {"dashboards": {"labels": {"team": "shop"}, "datasourceUid": "mimir"}}}),
    );
    let objects = desired_state(&custom, &Discovery::default());
    let map = find(&objects, "ConfigMap", "demo-dashboard-shop");
    assert_eq!(map["metadata"]["labels"]["team"], "shop");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], Value::Null);
    assert!(
        map["data"]["ns-demo-shop.json"]
            .as_str()
            .unwrap_or_default()
            .contains("\"uid\":\"mimir\"")
    );
}

/// OpenShift's restricted SCC refuses fixed user ids: without them the pods still run as
/// non-root with the default seccomp profile.
#[test]
fn fixed_user_ids_can_be_left_to_the_platform() {
    let shop = shop_with("demo", json!({"global": {"fixedUserIds": false}}));
    let objects = desired_state(&shop, &Discovery::default());
    for (kind, name) in [
        ("Deployment", "demo-users"),
        ("StatefulSet", "demo-users-db"),
        ("Deployment", "demo-redis"),
    ] {
        let pod = &find(&objects, kind, name)["spec"]["template"]["spec"]["securityContext"];
        assert_eq!(
            pod,
            &json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}),
            "{kind} {name}"
        );
    }
    let objects = desired_state(&small(), &Discovery::default());
    let pod =
        &find(&objects, "Deployment", "demo-users")["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(pod["runAsUser"], 65532);
}

/// Prune and cleanup list by the same label value the objects carry, cut to 63 characters.
#[test]
fn the_owned_selector_uses_the_label_values_the_objects_carry() {
    let long = format!("s{}", "x".repeat(70));
    let shop = shop_with(&long, json!({}));
    let selector = operator::desired::owned_selector(&shop);
    let objects = desired_state(&shop, &Discovery::default());
    let instance = objects[0].object["metadata"]["labels"]["app.kubernetes.io/instance"]
        .as_str()
        .expect("label")
        .to_owned();
    assert!(instance.len() <= 63);
    assert_eq!(
        selector,
        format!("app.kubernetes.io/instance={instance},app.kubernetes.io/managed-by=ecom-operator")
    );
}

/// Where Docker Hub is out of reach (an air-gapped cluster, a private mirror), the database and
/// Redis images can be named like the services'.
#[test]
fn the_database_and_redis_images_can_come_from_a_mirror() {
    let image = |objects: &[Desired], kind: &str, name: &str| {
        find(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]["image"].clone()
    };
    let objects = desired_state(&small(), &Discovery::default());
    assert_eq!(
        image(&objects, "StatefulSet", "demo-users-db"),
        "postgres:16"
    );
    assert_eq!(
        image(&objects, "Deployment", "demo-redis"),
        "redis:7-alpine"
    );
    let mirrored = shop_with(
        "demo",
        json!({"database": {"image": "mirror.example/postgres:16.4"},
               "redis": {"image": "mirror.example/redis:7.4-alpine"}}),
    );
    let objects = desired_state(&mirrored, &Discovery::default());
    assert_eq!(
        image(&objects, "StatefulSet", "demo-orders-db"),
        "mirror.example/postgres:16.4"
    );
    assert_eq!(
        image(&objects, "Deployment", "demo-redis"),
        "mirror.example/redis:7.4-alpine"
    );
}
