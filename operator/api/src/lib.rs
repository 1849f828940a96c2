//! The `Shop` custom resource: one object describing a whole ecom platform on Kubernetes.
//!
//! `shops.ecom.dev/v1alpha1`, namespaced. The schema (with its defaults and CEL rules) is
//! generated from these types: `operator crd` prints it, `crds/shop.yaml` is the committed copy.
//! v1alpha1 has no conversion webhook: change it additively only.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{EnvVar, ResourceRequirements},
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The platform's services, in the order they are reconciled and reported.
pub const SERVICES: [&str; 5] = ["users", "products", "orders", "payments", "gateway"];

/// The services that own a database.
pub const DATABASE_SERVICES: [&str; 4] = ["users", "products", "orders", "payments"];

/// The services that call others as themselves, each with its own credential in the generated
/// `<shop>-service-credentials` Secret (the same list as `ecom_shared::config::SERVICES_WITH_IDENTITY`).
pub const SERVICES_WITH_IDENTITY: [&str; 2] = ["orders", "payments"];

/// Who calls whose gRPC API, as (callee, callers): the NetworkPolicies open each gRPC port to
/// these callers only. Users: every service reads accounts (`GetMe`) or gets its service token;
/// Products: Orders reserves stock, the gateway reads the catalogue; Orders: Payments marks
/// orders paid; Payments: the gateway.
pub const GRPC_CALLERS: [(&str, &[&str]); 4] = [
    ("users", &["products", "orders", "payments", "gateway"]),
    ("products", &["orders", "gateway"]),
    ("orders", &["payments", "gateway"]),
    ("payments", &["gateway"]),
];

/// The condition types `status.conditions` carries.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const DATABASES_READY: &str = "DatabasesReady";
    pub const MONITORING_AVAILABLE: &str = "MonitoringAvailable";
    pub const RECONCILE_SUSPENDED: &str = "ReconcileSuspended";
}

/// The rule on a Shop's name: every object is `<shop>-<part>` and carries the name as a label
/// value, and Services need a DNS-1035 label: a lowercase letter first, at most 63 characters
/// (longer child names end in a hash; see the operator's `child_name`).
pub const NAME_RULE: &str =
    "self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')";
pub const NAME_RULE_MESSAGE: &str = "a Shop's name must start with a lowercase letter, hold only lowercase letters, digits and '-', end with a letter or digit, and be at most 63 characters (it names Services and labels)";

/// A Kubernetes quantity as a volume size takes it: a number above zero (`1`, `1.5`, `.5`) and
/// an optional binary (`Ki`..`Ei`) or decimal (`k`..`E`) suffix; `1GB`, `1 Gi` or `0Gi` are
/// refused at the door instead of by the StatefulSet (or its claims) later.
pub const STORAGE_SIZE_PATTERN: &str =
    r"^([0-9]*[1-9][0-9]*(\.[0-9]+)?|[0-9]*\.[0-9]*[1-9][0-9]*)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$";

/// A whole ecom platform: five services, their databases, Redis, ingress and monitoring.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ecom.dev",
    version = "v1alpha1",
    kind = "Shop",
    plural = "shops",
    shortname = "shop",
    namespaced,
    status = "ShopStatus",
    category = "ecom",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.platformVersion"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(NAME_RULE).message(NAME_RULE_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
pub struct ShopSpec {
    /// The platform version: the default image tag of every service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub global: GlobalSpec,
    #[serde(default)]
    pub services: ServicesSpec,
    #[serde(default)]
    pub database: DatabaseSpec,
    #[serde(default)]
    pub redis: RedisSpec,
    #[serde(default)]
    pub auth: AuthSpec,
    #[serde(default)]
    pub monitoring: MonitoringSpec,
    #[serde(default)]
    pub rate_limits: RateLimitsSpec,
    #[serde(default)]
    pub network_policies: NetworkPoliciesSpec,
    /// Stop reconciling: no writes to any child, only a status update.
    #[serde(default)]
    pub suspend: bool,
}

/// Settings applied to every workload.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlobalSpec {
    /// Set each pod's `runAsUser`, `runAsGroup` and `fsGroup` to the images' own users. Turn it
    /// off where the platform assigns them: OpenShift's `restricted` SCC refuses fixed ids and
    /// gives each namespace its own range. Pods stay `runAsNonRoot` either way.
    #[serde(default = "enabled")]
    pub fixed_user_ids: bool,
    /// Registry prefix of the default images (e.g. `ghcr.io/acme`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_registry: Option<String>,
    /// Names of Secrets used to pull images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<String>,
    /// Extra labels on every object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations on every object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for GlobalSpec {
    fn default() -> Self {
        Self {
            fixed_user_ids: true,
            image_registry: None,
            image_pull_secrets: Vec::new(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServicesSpec {
    #[serde(default)]
    pub users: WorkloadSpec,
    #[serde(default)]
    pub products: WorkloadSpec,
    #[serde(default)]
    pub orders: WorkloadSpec,
    #[serde(default)]
    pub payments: WorkloadSpec,
    #[serde(default)]
    pub gateway: GatewaySpec,
}

impl ServicesSpec {
    /// One service's settings by name (the gateway's common part for `gateway`).
    pub fn get(&self, name: &str) -> Option<&WorkloadSpec> {
        match name {
            "users" => Some(&self.users),
            "products" => Some(&self.products),
            "orders" => Some(&self.orders),
            "payments" => Some(&self.payments),
            "gateway" => Some(&self.gateway.service),
            _ => None,
        }
    }
}

fn enabled() -> bool {
    true
}

/// One service's workload.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.replicas) || self.replicas >= 0", "message": "replicas must be >= 0"}
]))]
pub struct WorkloadSpec {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Pods to run (default 1). Left to the HorizontalPodAutoscaler when `autoscaling` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The full image reference; default `<imageRegistry>/ecom-<service>:<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Extra environment (e.g. `ECOM_LOG`); the operator's own wiring wins on a clash.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            replicas: None,
            image: None,
            resources: None,
            env: Vec::new(),
            autoscaling: None,
        }
    }
}

/// A HorizontalPodAutoscaler on CPU for one service (it then owns `replicas`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must be <= maxReplicas"}
]))]
pub struct AutoscalingSpec {
    pub min_replicas: i32,
    pub max_replicas: i32,
    #[serde(default = "default_cpu")]
    pub target_cpu_utilization: i32,
}

fn default_cpu() -> i32 {
    70
}

/// The gateway: a service plus its Ingress.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    #[serde(flatten)]
    pub service: WorkloadSpec,
    #[serde(default)]
    pub ingress: IngressSpec,
    /// CIDR ranges whose `X-Forwarded-For` is believed (`ECOM_TRUSTED_PROXIES`): the Ingress
    /// controller's pods in front of the gateway, and the gateway's pods in front of Users. The
    /// default is the private ranges a pod network uses; narrow it to your cluster's pod CIDR.
    /// Without it every anonymous client would share the Ingress pod's rate-limit budget.
    #[serde(default = "default_trusted_proxies")]
    #[schemars(inner(regex(pattern = r"^[0-9A-Fa-f:.]+/[0-9]{1,3}$")))]
    pub trusted_proxies: Vec<String>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        Self {
            service: WorkloadSpec::default(),
            ingress: IngressSpec::default(),
            trusted_proxies: default_trusted_proxies(),
        }
    }
}

/// The private ranges (RFC 1918 and IPv6 unique local): where a cluster's pods live.
pub fn default_trusted_proxies() -> Vec<String> {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
        .map(str::to_owned)
        .to_vec()
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!self.enabled || (has(self.host) && size(self.host) > 0)", "message": "ingress.enabled needs a host"}
]))]
pub struct IngressSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    /// A TLS Secret for `host` (cert-manager or your own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DatabaseProvider {
    /// A PostgreSQL StatefulSet per service, run by the operator.
    #[default]
    Builtin,
    /// A CloudNativePG `Cluster` per service (needs the CNPG operator).
    CloudNativePG,
    /// Databases you run: one Secret per service with `uri`.
    External,
}

/// The services' PostgreSQL databases (one per service).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.provider == oldSelf.provider", "message": "database.provider is immutable"},
    {"rule": "(has(self.provider) ? self.provider : 'Builtin') != 'Builtin' || (has(self.postgresVersion) ? self.postgresVersion : '16') == (has(oldSelf.postgresVersion) ? oldSelf.postgresVersion : '16')", "message": "database.postgresVersion is immutable with the Builtin provider: a new major version cannot read the old data directory (dump and restore: docs/operator.md)"},
    {"rule": "self.provider != 'External' || (has(self.external) && size(self.external.secretRefs) == 4 && ['users', 'products', 'orders', 'payments'].all(s, s in self.external.secretRefs))", "message": "provider External needs external.secretRefs with exactly the keys users, products, orders and payments"}
]))]
pub struct DatabaseSpec {
    #[serde(default)]
    pub provider: DatabaseProvider,
    #[serde(default = "default_postgres")]
    pub postgres_version: String,
    #[serde(default)]
    pub storage: StorageSpec,
    /// Keep the volumes (PVCs) when the Shop is deleted.
    #[serde(default)]
    pub retain_on_delete: bool,
    /// The PostgreSQL image: Builtin's default is `postgres:<postgresVersion>` (Docker Hub),
    /// CloudNativePG's `ghcr.io/cloudnative-pg/postgresql:<postgresVersion>`; name your mirror's
    /// copy where those registries are out of reach. Its major version must be `postgresVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CloudNativePG: instances per cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instances: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDatabases>,
}

impl Default for DatabaseSpec {
    fn default() -> Self {
        Self {
            provider: DatabaseProvider::Builtin,
            postgres_version: default_postgres(),
            storage: StorageSpec::default(),
            retain_on_delete: false,
            image: None,
            instances: None,
            external: None,
        }
    }
}

fn default_postgres() -> String {
    "16".to_owned()
}

/// Secrets holding each service's connection (`uri` key), by service name.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDatabases {
    pub secret_refs: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The volume size, a Kubernetes quantity (`1Gi`, `500Mi`). Volume claim templates are
    /// immutable: changing it later is refused by the StatefulSet (the Shop turns `Degraded`,
    /// reason `ApplyFailed`; resize the claims themselves, docs/operator.md).
    #[serde(default = "default_size")]
    #[schemars(regex(pattern = STORAGE_SIZE_PATTERN))]
    pub size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self {
            size: default_size(),
            storage_class_name: None,
        }
    }
}

fn default_size() -> String {
    "1Gi".to_owned()
}

/// Redis: run by the operator (`enabled`), or yours (`url`).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.enabled || has(self.url)", "message": "redis needs enabled: true or a url"}
]))]
pub struct RedisSpec {
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// A volume for the operator's Redis (none: in memory only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// An external Redis (used when `enabled` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The operator's Redis image (default `redis:7-alpine` from Docker Hub); name your
    /// mirror's copy where Docker Hub is out of reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            storage: None,
            url: None,
            image: None,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// The name of a Secret you provide with the bootstrap admin's `admin-email` and
    /// `admin-password` (the first admin account Users creates). When absent the operator
    /// generates `<shop>-auth` once and never regenerates it. Despite the name it holds no JWT
    /// key material: Users generates its signing keys and rotates them itself, and the services'
    /// own credentials are always generated, in `<shop>-service-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_ref: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringSpec {
    #[serde(default)]
    pub service_monitor: ServiceMonitorSpec,
    /// The platform's alert rules (the compose stack's `monitoring/prometheus/rules/`) as a
    /// `PrometheusRule`, when the Prometheus operator's CRD is served.
    #[serde(default)]
    pub prometheus_rule: PrometheusRuleSpec,
    /// The platform's Grafana dashboards (the compose stack's `monitoring/grafana/dashboards/`)
    /// as ConfigMaps labelled for the Grafana sidecar.
    #[serde(default)]
    pub dashboards: DashboardsSpec,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusRuleSpec {
    /// A `PrometheusRule` `<shop>-alerts`, with the ServiceMonitors (`serviceMonitor.enabled`),
    /// when `monitoring.coreos.com/v1` `PrometheusRule` is served. The rules select on `job`
    /// (users, products, ...): the ServiceMonitors set it.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Labels your Prometheus selects rules by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for PrometheusRuleSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            labels: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardsSpec {
    /// One ConfigMap per dashboard, `<shop>-dashboard-<name>`.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The labels the Grafana sidecar looks for (kube-prometheus-stack: `grafana_dashboard: "1"`).
    #[serde(default = "default_dashboard_labels")]
    pub labels: BTreeMap<String, String>,
    /// The uid of your Grafana's Prometheus datasource (kube-prometheus-stack: `prometheus`).
    #[serde(default = "default_datasource_uid")]
    pub datasource_uid: String,
}

impl Default for DashboardsSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            labels: default_dashboard_labels(),
            datasource_uid: default_datasource_uid(),
        }
    }
}

fn default_dashboard_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("grafana_dashboard".to_owned(), "1".to_owned())])
}

fn default_datasource_uid() -> String {
    "prometheus".to_owned()
}

/// NetworkPolicies around the platform's pods.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPoliciesSpec {
    /// Only the gateway is reachable from outside the Shop; each database only from its own
    /// service; Redis only from the services; each gRPC port only from the services that call
    /// it ([`GRPC_CALLERS`]); HTTP ports from the gateway (and Users' JWKS from every service).
    /// Enforced only by a network plugin that implements NetworkPolicies.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Namespaces whose pods may scrape `/metrics` (where Prometheus runs).
    #[serde(default = "default_scrape_namespaces")]
    pub scrape_namespaces: Vec<String>,
}

impl Default for NetworkPoliciesSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            scrape_namespaces: default_scrape_namespaces(),
        }
    }
}

fn default_scrape_namespaces() -> Vec<String> {
    vec!["monitoring".to_owned()]
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// A ServiceMonitor per service when the Prometheus operator's CRD exists.
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_interval")]
    pub interval: String,
    /// Labels your Prometheus selects ServiceMonitors by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Default for ServiceMonitorSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: default_interval(),
            labels: BTreeMap::new(),
        }
    }
}

fn default_interval() -> String {
    "30s".to_owned()
}

/// The gateway's and Users' budgets (`N/second|minute|hour`).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*/(second|minute|hour)$"))]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]*/(second|minute|hour)$"))]
    pub login: Option<String>,
}

/// What the operator last saw and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShopStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// For display: `Pending`, `Progressing`, `Ready`, `Degraded`, `Suspended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, ComponentStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    pub ready: bool,
    pub ready_replicas: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The gateway's public URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    use super::*;

    fn schema() -> Value {
        let crd = serde_json::to_value(Shop::crd()).expect("crd");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
    }

    fn errors(object: &Value, old: Option<&Value>) -> Vec<String> {
        kube_cel::validation::Validator::new()
            .validate(&schema(), object, old)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn shop(spec: Value) -> Value {
        json!({"apiVersion": "ecom.dev/v1alpha1", "kind": "Shop", "metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn the_crd_is_named_and_shaped_as_the_contract_says() {
        let crd = serde_json::to_value(Shop::crd()).expect("crd");
        assert_eq!(crd["metadata"]["name"], "shops.ecom.dev");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["shop"]));
        let v = &crd["spec"]["versions"][0];
        assert_eq!(v["name"], "v1alpha1");
        assert_eq!(v["subresources"]["status"], json!({}));
        let columns: Vec<&str> = v["additionalPrinterColumns"]
            .as_array()
            .expect("columns")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(columns, ["Ready", "Phase", "Version", "Age"]);
        let conditions =
            &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
        assert_eq!(conditions["x-kubernetes-list-type"], "map");
        assert_eq!(conditions["x-kubernetes-list-map-keys"], json!(["type"]));
    }

    #[test]
    fn ingress_enabled_needs_a_host() {
        let ok = shop(
            json!({"services": {"gateway": {"ingress": {"enabled": true, "host": "shop.example.com"}}}}),
        );
        assert_eq!(errors(&ok, None), Vec::<String>::new());
        let bad = shop(json!({"services": {"gateway": {"ingress": {"enabled": true}}}}));
        let e = errors(&bad, None);
        assert!(e.iter().any(|e| e.contains("needs a host")), "{e:?}");
    }

    #[test]
    fn the_database_provider_is_immutable() {
        let old = shop(json!({"database": {"provider": "Builtin"}}));
        let same = shop(json!({"database": {"provider": "Builtin", "storage": {"size": "5Gi"}}}));
        assert_eq!(errors(&same, Some(&old)), Vec::<String>::new());
        let changed = shop(json!({"database": {"provider": "CloudNativePG"}}));
        let e = errors(&changed, Some(&old));
        assert!(e.iter().any(|e| e.contains("immutable")), "{e:?}");
        // On create there is no old object: any provider is fine.
        assert_eq!(errors(&changed, None), Vec::<String>::new());
    }

    #[test]
    fn the_builtin_postgres_major_version_cannot_change() {
        // As the API server sees them: with the provider defaulted.
        let builtin = |db: Value| {
            let mut db = db;
            db["provider"] = json!("Builtin");
            shop(json!({ "database": db }))
        };
        let old = builtin(json!({"postgresVersion": "16"}));
        let same = builtin(json!({"postgresVersion": "16", "storage": {"size": "5Gi"}}));
        assert_eq!(errors(&same, Some(&old)), Vec::<String>::new());
        let upgraded = builtin(json!({"postgresVersion": "17"}));
        let e = errors(&upgraded, Some(&old));
        assert!(
            e.iter().any(|e| e.contains("postgresVersion is immutable")),
            "{e:?}"
        );
        // The default (16) counts as 16.
        let e = errors(&upgraded, Some(&builtin(json!({}))));
        assert!(
            e.iter().any(|e| e.contains("postgresVersion is immutable")),
            "{e:?}"
        );
        // On create, and for CloudNativePG (which runs its own major upgrades), it may be chosen.
        assert_eq!(errors(&upgraded, None), Vec::<String>::new());
        let cnpg = |v: &str| {
            shop(json!({"database": {"provider": "CloudNativePG", "postgresVersion": v}}))
        };
        assert_eq!(errors(&cnpg("17"), Some(&cnpg("16"))), Vec::<String>::new());
    }

    #[test]
    fn replicas_cannot_be_negative() {
        let ok = shop(json!({"services": {"users": {"replicas": 0}, "gateway": {"replicas": 3}}}));
        assert_eq!(errors(&ok, None), Vec::<String>::new());
        for bad in [
            shop(json!({"services": {"users": {"replicas": -1}}})),
            shop(json!({"services": {"gateway": {"replicas": -2}}})),
        ] {
            let e = errors(&bad, None);
            assert!(
                e.iter().any(|e| e.contains("replicas must be >= 0")),
                "{e:?}"
            );
        }
    }

    fn named(name: &str) -> Value {
        json!({"apiVersion": "ecom.dev/v1alpha1", "kind": "Shop", "metadata": {"name": name}, "spec": {}})
    }

    /// A name over 63 characters made the operator's label selectors invalid (prune and cleanup
    /// failed, the finalizer stayed); one starting with a digit made invalid Service names.
    #[test]
    fn a_shop_name_must_make_valid_service_names_and_label_values() {
        for ok in ["demo", "shop-1", "a", &format!("s{}", "x".repeat(62))] {
            assert_eq!(errors(&named(ok), None), Vec::<String>::new(), "{ok}");
        }
        for bad in [
            "1shop",
            "shop.example",
            "-shop",
            "shop-",
            &format!("s{}", "x".repeat(63)),
        ] {
            let e = errors(&named(bad), None);
            assert!(
                e.iter()
                    .any(|e| e.contains("must start with a lowercase letter")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn external_databases_need_exactly_the_four_services_secrets() {
        let external = |refs: Value| {
            shop(json!({"database": {"provider": "External", "external": {"secretRefs": refs}}}))
        };
        let good =
            external(json!({"users": "u", "products": "p", "orders": "o", "payments": "pay"}));
        assert_eq!(errors(&good, None), Vec::<String>::new());
        for bad in [
            // Four keys, wrong ones: this passed a count-only rule.
            external(json!({"user": "u", "product": "p", "order": "o", "payment": "pay"})),
            external(json!({"users": "u", "products": "p", "orders": "o"})),
            external(
                json!({"users": "u", "products": "p", "orders": "o", "payments": "pay", "gateway": "g"}),
            ),
            shop(json!({"database": {"provider": "External"}})),
        ] {
            let e = errors(&bad, None);
            assert!(e.iter().any(|e| e.contains("exactly the keys")), "{e:?}");
        }
    }

    #[test]
    fn a_minimal_spec_takes_the_defaults() {
        let spec: ShopSpec = serde_json::from_value(json!({})).expect("empty spec");
        assert!(spec.services.gateway.service.enabled);
        assert_eq!(spec.database.provider, DatabaseProvider::Builtin);
        assert_eq!(spec.database.postgres_version, "16");
        assert!(spec.redis.enabled);
        assert!(!spec.suspend);
    }
}
