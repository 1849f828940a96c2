//! The reconciler against a mock API server (tower-test, as kube-rs's controller-rs does): every
//! call it makes is recorded and answered by a small in-memory fake, then the exact sequence is
//! asserted.

use std::sync::{Arc, Mutex};

use ecom_shop_api::Shop;
use http::{Request, Response};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    client::{Body, Client},
    runtime::events::{Recorder, Reporter},
};
use serde_json::{Value, json};

use super::{
    secrets::checksum,
    status::{Outcome, observed_status, rolled_out},
    *,
};
use crate::desired::{Discovery, generated_secrets};

/// One recorded API call.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    uri: String,
    content_type: String,
    body: Value,
}

impl Call {
    fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
}

type Calls = Arc<Mutex<Vec<Call>>>;

fn status(code: u16, reason: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": reason, "code": code}),
    )
}

/// A client whose API server is `respond`, recording every call.
fn mock(respond: impl Fn(&Call) -> (u16, Value) + Send + 'static) -> (Client, Calls) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Calls::default();
    let recorded = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let call = Call {
                method: request.method().to_string(),
                uri: request.uri().to_string(),
                content_type,
                body: Value::Null,
            };
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .expect("request body");
            let call = Call {
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                ..call
            };
            let (code, body) = respond(&call);
            recorded.lock().expect("calls").push(call);
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&body).expect("json")))
                    .expect("response"),
            );
        }
    });
    (Client::new(service, "default"), calls)
}

fn context(client: Client) -> Arc<Context> {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "ecom-operator".into(),
            instance: Some("test".into()),
        },
    );
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let random: Random = Arc::new(move || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("generated-secret-number-{n:04}-abcdefghijklmnop")
    });
    Arc::new(Context::new(
        client,
        recorder,
        Arc::new(Metrics::default()),
        random,
    ))
}

/// A Shop `demo` in namespace `shop`.
fn shop(spec: Value, finalized: bool, deleting: bool) -> Shop {
    let mut metadata = json!({"name": "demo", "namespace": "shop", "uid": "c0ffee00-0000-4000-8000-000000000001", "generation": 3});
    if finalized {
        metadata["finalizers"] = json!([FINALIZER]);
    }
    if deleting {
        metadata["deletionTimestamp"] = json!("2026-11-27T12:00:00Z");
    }
    serde_json::from_value(json!({
        "apiVersion": "ecom.dev/v1alpha1", "kind": "Shop", "metadata": metadata, "spec": spec,
    }))
    .expect("shop")
}

fn shop_json(shop: &Shop) -> Value {
    serde_json::to_value(shop).expect("json")
}

/// The fake API server: Secrets from `existing`, no CRDs served unless `served`, applies echoed.
fn cluster(
    shop: &Shop,
    existing: &'static [&'static str],
    served: &'static [&'static str],
) -> impl Fn(&Call) -> (u16, Value) + Send + 'static {
    cluster_with(shop, existing, served, json!([]))
}

/// Like [`cluster`], with `listed` as the Deployments a list finds.
fn cluster_with(
    shop: &Shop,
    existing: &'static [&'static str],
    served: &'static [&'static str],
    listed: Value,
) -> impl Fn(&Call) -> (u16, Value) + Send + 'static {
    let shop = shop_json(shop);
    move |call: &Call| {
        let path = call.path();
        match call.method.as_str() {
            "GET" if path.starts_with("/apis/") && !path.contains("/namespaces/") => {
                let gv = path.trim_start_matches("/apis/");
                if served.contains(&gv) {
                    let kinds: &[&str] = if gv.starts_with("monitoring") {
                        &["ServiceMonitor", "PrometheusRule"]
                    } else {
                        &["Cluster"]
                    };
                    let resources: Vec<Value> = kinds.iter().map(|kind| json!(
                        {"name": format!("{}s", kind.to_lowercase()), "singularName": kind.to_lowercase(), "namespaced": true, "kind": kind, "verbs": ["get", "list", "watch", "patch", "create", "delete"]}
                    )).collect();
                    (
                        200,
                        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
                    )
                } else {
                    status(404, "NotFound")
                }
            }
            "GET" if path.starts_with("/api/v1/namespaces/shop/secrets/") => {
                let name = path.rsplit('/').next().unwrap_or_default();
                if existing.contains(&name) {
                    (
                        200,
                        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "shop"},
                                 "data": {"password": "ZXhpc3Rpbmc=", "service-secret": "ZXhpc3Rpbmc="}}),
                    )
                } else {
                    status(404, "NotFound")
                }
            }
            "POST" if path == "/api/v1/namespaces/shop/secrets" => (201, call.body.clone()),
            "PATCH" if path == "/apis/ecom.dev/v1alpha1/namespaces/shop/shops/demo/status" => {
                (200, shop.clone())
            }
            "PATCH" if path == "/apis/ecom.dev/v1alpha1/namespaces/shop/shops/demo" => {
                let mut s = shop.clone();
                s["metadata"]["finalizers"] = json!([FINALIZER]);
                (200, s)
            }
            "PATCH" => (200, call.body.clone()),
            "GET" if path == "/api/v1/namespaces/shop/persistentvolumeclaims" => (
                200,
                json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {},
                    "items": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-demo-users-db-0", "namespace": "shop"}}]
                }),
            ),
            "GET"
                if path.starts_with("/api")
                    && path.contains("/namespaces/shop/")
                    && path.matches('/').count()
                        == if path.starts_with("/api/") { 5 } else { 6 } =>
            {
                let items = if path.ends_with("/deployments") {
                    listed.clone()
                } else {
                    json!([])
                };
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}),
                )
            }
            "DELETE" => (
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
            ),
            "POST" if path.contains("/events") => status(403, "Forbidden"),
            _ => status(500, "unexpected"),
        }
    }
}

/// A pass where `applied` went through and nothing failed.
fn outcome(applied: &[(String, String, DynamicObject)]) -> Outcome<'_> {
    Outcome {
        applied,
        refused: &[],
        interrupted: false,
    }
}

fn calls(c: &Calls) -> Vec<Call> {
    c.lock().expect("calls").clone()
}

/// The applies of the desired state, in order: (path, body) of every child.
fn expected_applies(shop: &Shop, discovery: &Discovery) -> Vec<(String, Value)> {
    desired_state(shop, discovery)
        .into_iter()
        .map(|d| {
            let (group, version) = d
                .api_version
                .split_once('/')
                .unwrap_or(("", &d.api_version));
            let gvk = GroupVersionKind::gvk(group, version, &d.kind);
            let ar = ApiResource::from_gvk(&gvk);
            let prefix = if group.is_empty() {
                format!("/api/{version}")
            } else {
                format!("/apis/{group}/{version}")
            };
            (
                format!("{prefix}/namespaces/shop/{}/{}", ar.plural, d.name),
                d.object,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_new_shop_gets_its_finalizer_first_and_nothing_else() {
    let s = shop(json!({}), false, false);
    let (client, recorded) = mock(cluster(&s, &[], &[]));
    let action = reconcile(Arc::new(s), context(client))
        .await
        .expect("reconcile");
    assert_eq!(action, Action::await_change());
    let calls = calls(&recorded);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(calls[0].method, "PATCH");
    assert_eq!(
        calls[0].path(),
        "/apis/ecom.dev/v1alpha1/namespaces/shop/shops/demo"
    );
    assert_eq!(calls[0].content_type, "application/json-patch+json");
    assert!(
        calls[0].body.to_string().contains(FINALIZER),
        "{}",
        calls[0].body
    );
}

#[tokio::test]
async fn a_finalized_shop_gets_its_secrets_once_then_one_apply_per_child_then_one_status_patch() {
    let s = shop(json!({}), true, false);
    let (client, recorded) = mock(cluster(&s, &[], &[]));
    reconcile(Arc::new(s.clone()), context(client))
        .await
        .expect("reconcile");
    let calls = calls(&recorded);
    let secrets = generated_secrets(&s, &mut || "x".repeat(40));
    // Discovery first: which of the Prometheus operator's kinds are served (pruning needs to
    // know even when the Shop wants none).
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path()),
        ("GET", "/apis/monitoring.coreos.com/v1")
    );
    // Each generated Secret: looked up, absent, created.
    let mut i = 1;
    for secret in &secrets {
        assert_eq!(
            (calls[i].method.as_str(), calls[i].path()),
            (
                "GET",
                format!("/api/v1/namespaces/shop/secrets/{}", secret.name).as_str()
            )
        );
        assert_eq!(
            (calls[i + 1].method.as_str(), calls[i + 1].path()),
            ("POST", "/api/v1/namespaces/shop/secrets")
        );
        assert_eq!(calls[i + 1].body["metadata"]["name"], secret.name.as_str());
        i += 2;
    }
    // Then one server-side apply per child, under the operator's field manager, forced.
    let mut discovery = Discovery::default();
    for c in &calls[1..i] {
        if c.method == "POST" {
            let secret: Secret = serde_json::from_value(c.body.clone()).expect("secret");
            let name = secret.metadata.name.clone().expect("name");
            discovery.checksums.insert(name, checksum(&secret));
        }
    }
    let applies = expected_applies(&s, &discovery);
    assert!(!applies.is_empty(), "the desired state has objects");
    for (path, body) in &applies {
        let c = &calls[i];
        assert_eq!(
            (c.method.as_str(), c.path()),
            ("PATCH", path.as_str()),
            "{c:#?}"
        );
        assert_eq!(c.content_type, "application/apply-patch+yaml");
        assert!(
            c.uri.contains("fieldManager=ecom-operator") && c.uri.contains("force=true"),
            "{}",
            c.uri
        );
        assert_eq!(&c.body, body, "the applied object is the desired one");
        i += 1;
    }
    // Then the owned kinds are listed (to prune what left the desired state): reads only.
    while calls[i].method == "GET" {
        assert!(calls[i].uri.contains("labelSelector="), "{:#?}", calls[i]);
        i += 1;
    }
    // Then exactly one status patch, by apply, with apiVersion and kind.
    let c = &calls[i];
    assert_eq!(
        (c.method.as_str(), c.path()),
        (
            "PATCH",
            "/apis/ecom.dev/v1alpha1/namespaces/shop/shops/demo/status"
        )
    );
    assert_eq!(c.content_type, "application/apply-patch+yaml");
    assert_eq!(c.body["apiVersion"], "ecom.dev/v1alpha1");
    assert_eq!(c.body["kind"], "Shop");
    assert_eq!(c.body["status"]["observedGeneration"], 3);
    assert_eq!(
        calls.len(),
        i + 1,
        "nothing after the status patch: {:#?}",
        &calls[i + 1..]
    );
}

#[tokio::test]
async fn an_existing_secret_is_never_regenerated() {
    let s = shop(json!({}), true, false);
    let names: Vec<String> = generated_secrets(&s, &mut || "x".repeat(40))
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert!(!names.is_empty());
    let existing: &'static [&'static str] = Box::leak(
        names
            .iter()
            .map(|n| &*Box::leak(n.clone().into_boxed_str()))
            .collect::<Vec<&'static str>>()
            .into_boxed_slice(),
    );
    let (client, recorded) = mock(cluster(&s, existing, &[]));
    reconcile(Arc::new(s), context(client))
        .await
        .expect("reconcile");
    let calls = calls(&recorded);
    assert!(
        !calls
            .iter()
            .any(|c| c.method == "POST" && c.path().ends_with("/secrets")),
        "no Secret is created when it exists: {calls:#?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.path().contains("/secrets/") && c.method != "GET"),
        "an existing Secret is never written"
    );
}

#[tokio::test]
async fn suspend_writes_only_the_status() {
    let s = shop(json!({"suspend": true}), true, false);
    let (client, recorded) = mock(cluster(&s, &[], &[]));
    reconcile(Arc::new(s), context(client))
        .await
        .expect("reconcile");
    let calls = calls(&recorded);
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        calls[0].path(),
        "/apis/ecom.dev/v1alpha1/namespaces/shop/shops/demo/status"
    );
    let conditions = calls[0].body["status"]["conditions"]
        .as_array()
        .expect("conditions");
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "ReconcileSuspended" && c["status"] == "True")
    );
    assert_eq!(calls[0].body["status"]["phase"], "Suspended");
}

#[tokio::test]
async fn deletion_cleans_up_and_removes_the_finalizer_even_when_events_are_forbidden() {
    let s = shop(json!({}), true, true);
    let (client, recorded) = mock(cluster(&s, &[], &[]));
    reconcile(Arc::new(s), context(client))
        .await
        .expect("cleanup finishes although the Event is refused (403)");
    let calls = calls(&recorded);
    let seen: Vec<(&str, &str)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path()))
        .collect();
    assert_eq!(
        seen,
        [
            ("GET", "/api/v1/namespaces/shop/persistentvolumeclaims"),
            (
                "DELETE",
                "/api/v1/namespaces/shop/persistentvolumeclaims/data-demo-users-db-0"
            ),
            ("POST", "/apis/events.k8s.io/v1/namespaces/shop/events"),
            (
                "PATCH",
                "/apis/ecom.dev/v1alpha1/namespaces/shop/shops/demo"
            ),
        ],
        "{calls:#?}"
    );
    assert!(calls[0].uri.contains("labelSelector="), "{}", calls[0].uri);
    assert!(
        calls[3].body.to_string().contains("remove"),
        "{}",
        calls[3].body
    );
}

#[tokio::test]
async fn retain_on_delete_keeps_the_volumes_and_their_passwords() {
    let s = shop(json!({"database": {"retainOnDelete": true}}), true, true);
    let (client, recorded) = mock(cluster(&s, &[], &[]));
    reconcile(Arc::new(s.clone()), context(client))
        .await
        .expect("cleanup");
    let calls = calls(&recorded);
    assert!(
        !calls
            .iter()
            .any(|c| c.path().contains("persistentvolumeclaims")),
        "{calls:#?}"
    );
    // Every generated Secret is released from the Shop (merge patch dropping owner references).
    let released: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.path().contains("/secrets/"))
        .map(|c| {
            assert_eq!(c.content_type, "application/merge-patch+json");
            assert_eq!(c.body, json!({"metadata": {"ownerReferences": null}}));
            c.path().rsplit('/').next().unwrap_or_default()
        })
        .collect();
    let generated: Vec<String> = generated_secrets(&s, &mut String::new)
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(released, generated);
    assert_eq!(
        calls.last().map(|c| c.path()),
        Some("/apis/ecom.dev/v1alpha1/namespaces/shop/shops/demo"),
        "the finalizer is removed last"
    );
}

#[tokio::test]
async fn a_missing_service_monitor_crd_is_reported_not_an_error() {
    let s = shop(
        json!({"monitoring": {"serviceMonitor": {"enabled": true}}}),
        true,
        false,
    );
    let (client, recorded) = mock(cluster(&s, &[], &[]));
    reconcile(Arc::new(s), context(client))
        .await
        .expect("no error");
    let calls = calls(&recorded);
    assert_eq!(calls[0].path(), "/apis/monitoring.coreos.com/v1");
    assert!(
        !calls.iter().any(|c| c.path().contains("servicemonitors")),
        "no ServiceMonitor is applied"
    );
    let status = &calls.last().expect("status patch").body["status"];
    let monitoring = status["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "MonitoringAvailable")
        .cloned()
        .expect("MonitoringAvailable");
    assert_eq!(monitoring["status"], "False");
    assert_eq!(monitoring["reason"], "ServiceMonitorCRDMissing");
}

#[tokio::test]
async fn a_served_service_monitor_crd_gets_service_monitors() {
    let s = shop(
        json!({"monitoring": {"serviceMonitor": {"enabled": true}}}),
        true,
        false,
    );
    let (client, recorded) = mock(cluster(&s, &[], &["monitoring.coreos.com/v1"]));
    reconcile(Arc::new(s), context(client))
        .await
        .expect("reconcile");
    let calls = calls(&recorded);
    assert!(
        calls.iter().any(|c| c.method == "PATCH"
            && c.path()
                .contains("/apis/monitoring.coreos.com/v1/namespaces/shop/servicemonitors/")),
        "{calls:#?}"
    );
    // The alert rules come with them, and the API group is asked once.
    assert!(
        calls.iter().any(|c| c.method == "PATCH"
            && c.path()
                == "/apis/monitoring.coreos.com/v1/namespaces/shop/prometheusrules/demo-alerts"),
        "{calls:#?}"
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.path() == "/apis/monitoring.coreos.com/v1")
            .count(),
        1
    );
}

/// The condition `type_` of the last status patch.
fn status_condition(calls: &[Call], type_: &str) -> Value {
    let patch = calls
        .iter()
        .rev()
        .find(|c| c.path().ends_with("/shops/demo/status"))
        .expect("a status patch");
    patch.body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
        .expect(type_)
}

/// One object the API server refuses (a StatefulSet's volume claim template changed, say) must
/// not stop the others (an image bump) nor hide behind a normal-looking status.
#[tokio::test]
async fn a_refused_object_is_reported_and_does_not_stop_the_others() {
    let s = shop(
        json!({"services": {"gateway": {"image": "registry.example/ecom-gateway:2.0"}}}),
        true,
        false,
    );
    let base = cluster(&s, &[], &[]);
    let refused = "/apis/apps/v1/namespaces/shop/statefulsets/demo-users-db";
    let (client, recorded) = mock(move |call: &Call| {
        if call.method == "PATCH" && call.path() == refused {
            status(
                422,
                "StatefulSet.apps \"demo-users-db\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas' are forbidden",
            )
        } else {
            base(call)
        }
    });
    let ctx = context(client);
    let err = reconcile(Arc::new(s.clone()), ctx.clone())
        .await
        .expect_err("the refusal is a failure (retried with backoff)");
    assert_eq!(err.metric_label(), "apply_failed");
    let calls = calls(&recorded);
    // Every other object was still applied, the gateway's new image among them.
    let patched: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "PATCH")
        .map(Call::path)
        .collect();
    let desired = desired_state(&s, &Discovery::default());
    for d in &desired {
        assert!(
            patched.iter().any(|p| p.ends_with(&format!("/{}", d.name))),
            "{} {} was not applied",
            d.kind,
            d.name
        );
    }
    let gateway = calls
        .iter()
        .find(|c| c.method == "PATCH" && c.path().ends_with("/deployments/demo-gateway"))
        .expect("gateway applied");
    assert_eq!(
        gateway.body["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/ecom-gateway:2.0"
    );
    // The status says what and why.
    let degraded = status_condition(&calls, "Degraded");
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ApplyFailed");
    let message = degraded["message"].as_str().expect("message");
    assert!(
        message.contains("StatefulSet demo-users-db") && message.contains("Forbidden"),
        "{message}"
    );
    assert_eq!(status_condition(&calls, "Ready")["status"], "False");
    let patch = calls
        .iter()
        .rev()
        .find(|c| c.path().ends_with("/shops/demo/status"))
        .expect("status");
    assert_eq!(patch.body["status"]["phase"], "Degraded");
    // And a Warning Event names the object.
    let event = calls
        .iter()
        .find(|c| c.method == "POST" && c.path().contains("/events"))
        .expect("an event");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "ApplyFailed");
    let note = event.body["note"].as_str().expect("note");
    assert!(note.starts_with("StatefulSet demo-users-db: "), "{note}");
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &ctx.metrics.registry).expect("encode");
    let _ = error_policy(Arc::new(s), &err, ctx.clone());
    text.clear();
    prometheus_client::encoding::text::encode(&mut text, &ctx.metrics.registry).expect("encode");
    assert!(
        text.contains("ecom_operator_reconcile_failures_total{error=\"apply_failed\"} 1"),
        "{text}"
    );
}

/// CloudNativePG writes each cluster's `-app` Secret as it first starts: until then the Shop is
/// starting, not degraded.
#[tokio::test]
async fn a_first_cloudnativepg_boot_is_starting_not_degraded() {
    let s = shop(
        json!({"database": {"provider": "CloudNativePG"}}),
        true,
        false,
    );
    let (client, recorded) = mock(cluster(&s, &[], &["postgresql.cnpg.io/v1"]));
    reconcile(Arc::new(s), context(client))
        .await
        .expect("reconcile");
    let calls = calls(&recorded);
    let databases = status_condition(&calls, "DatabasesReady");
    assert_eq!(databases["status"], "False");
    assert_eq!(databases["reason"], "Starting", "{databases}");
    assert!(
        databases["message"]
            .as_str()
            .is_some_and(|m| m.contains("demo-users-db-app")),
        "{databases}"
    );
    assert_eq!(status_condition(&calls, "Degraded")["status"], "False");
    assert_eq!(status_condition(&calls, "Progressing")["status"], "True");
}

/// Once the clusters are up, a Secret still missing is a fault.
#[test]
fn a_secret_missing_after_the_clusters_started_is_degraded() {
    let s = shop(
        json!({"database": {"provider": "CloudNativePG"}}),
        true,
        false,
    );
    let discovery = Discovery {
        cnpg: true,
        ..Discovery::default()
    };
    let ready_cluster: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster",
        "metadata": {"name": "demo-users-db"},
        "spec": {"instances": 1}, "status": {"readyInstances": 1}
    }))
    .expect("cluster");
    let applied = [(
        "Cluster".to_owned(),
        "demo-users-db".to_owned(),
        ready_cluster,
    )];
    let status = observed_status(
        &s,
        &discovery,
        &outcome(&applied),
        &["demo-users-db-app".to_owned()],
    );
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .expect("Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "SecretMissing")
    );
}

/// The autoscaled Deployment of the handover tests.
const LIVE_PRODUCTS: &str = "/apis/apps/v1/namespaces/shop/deployments/demo-products";

/// A Shop whose products service is autoscaled (plus `replicas` when given).
fn autoscaled_products(replicas: Option<i32>) -> Shop {
    let mut products = json!({"autoscaling": {"minReplicas": 2, "maxReplicas": 8}});
    if let Some(n) = replicas {
        products["replicas"] = json!(n);
    }
    shop(json!({"services": {"products": products}}), true, false)
}

/// The live products Deployment with `replicas`, its `managedFields` entries given as
/// (manager, operation, fieldsV1).
fn live_products(replicas: i64, managers: &[(&str, &str, Value)]) -> (u16, Value) {
    let managed: Vec<Value> = managers
        .iter()
        .map(|(manager, operation, fields)| {
            json!({"manager": manager, "operation": operation, "apiVersion": "apps/v1",
                   "fieldsType": "FieldsV1", "fieldsV1": fields})
        })
        .collect();
    (
        200,
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "demo-products", "namespace": "shop", "managedFields": managed},
               "spec": {"replicas": replicas}}),
    )
}

/// The live products Deployment at `replicas`, the operator's apply owning `fields`.
fn applied_by_operator(replicas: i64, fields: Value) -> (u16, Value) {
    live_products(replicas, &[("ecom-operator", "Apply", fields)])
}

/// Turning autoscaling on must not drop the running replica count to 1 until the autoscaler
/// acts: the documented server-side apply handover keeps the live value.
#[tokio::test]
async fn turning_autoscaling_on_hands_the_replica_count_over() {
    let s = autoscaled_products(Some(4));
    let base = cluster(&s, &[], &[]);
    let live = LIVE_PRODUCTS;
    let (client, recorded) = mock(move |call: &Call| {
        if call.method == "GET" && call.path() == live {
            applied_by_operator(4, json!({"f:spec": {"f:replicas": {}, "f:template": {}}}))
        } else if call.method == "GET"
            && call
                .path()
                .starts_with("/apis/apps/v1/namespaces/shop/deployments/")
        {
            status(404, "NotFound")
        } else {
            base(call)
        }
    });
    reconcile(Arc::new(s), context(client))
        .await
        .expect("reconcile");
    let calls = calls(&recorded);
    let handover = calls
        .iter()
        .position(|c| c.method == "PATCH" && c.uri.contains("fieldManager=ecom-operator-handover"))
        .expect("a handover apply");
    assert_eq!(calls[handover].path(), live);
    assert_eq!(calls[handover].body["spec"], json!({"replicas": 4}));
    assert!(
        !calls[handover].uri.contains("force=true"),
        "{}",
        calls[handover].uri
    );
    let apply = calls
        .iter()
        .position(|c| {
            c.method == "PATCH"
                && c.path() == live
                && c.uri.contains("fieldManager=ecom-operator")
                && !c.uri.contains("handover")
        })
        .expect("the operator's apply");
    assert!(handover < apply, "the handover comes first");
    assert!(calls[apply].body["spec"].get("replicas").is_none());
    // Only the autoscaled Deployment is looked up.
    let looked_up: Vec<&str> = calls
        .iter()
        .filter(|c| c.method == "GET" && c.path().contains("/deployments/"))
        .map(Call::path)
        .collect();
    assert_eq!(looked_up, [live]);
}

/// Once the autoscaler (or anyone) owns the field, there is nothing to hand over.
#[tokio::test]
async fn no_handover_once_the_operator_no_longer_owns_replicas() {
    let s = autoscaled_products(None);
    let base = cluster(&s, &[], &[]);
    let (client, recorded) = mock(move |call: &Call| {
        if call.method == "GET" && call.path() == LIVE_PRODUCTS {
            live_products(
                6,
                &[
                    (
                        "ecom-operator",
                        "Apply",
                        json!({"f:spec": {"f:template": {}}}),
                    ),
                    (
                        "kube-controller-manager",
                        "Update",
                        json!({"f:spec": {"f:replicas": {}}}),
                    ),
                ],
            )
        } else {
            base(call)
        }
    });
    reconcile(Arc::new(s), context(client))
        .await
        .expect("reconcile");
    assert!(
        !calls(&recorded)
            .iter()
            .any(|c| c.uri.contains("fieldManager=ecom-operator-handover"))
    );
}

#[test]
fn backoff_doubles_up_to_a_cap() {
    assert_eq!(backoff(1), Duration::from_secs(5));
    assert_eq!(backoff(2), Duration::from_secs(10));
    assert_eq!(backoff(4), Duration::from_secs(40));
    assert_eq!(backoff(30), Duration::from_secs(300));
}

#[tokio::test]
async fn failures_back_off_per_shop_and_reset_on_success() {
    let s = shop(json!({}), true, false);
    let (client, _) = mock(|_: &Call| status(500, "InternalError"));
    let ctx = context(client);
    let shop = Arc::new(s);
    let err = reconcile(shop.clone(), ctx.clone())
        .await
        .expect_err("fails");
    assert_eq!(err.metric_label(), "api");
    assert_eq!(
        error_policy(shop.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    assert_eq!(
        error_policy(shop.clone(), &err, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &ctx.metrics.registry).expect("encode");
    assert!(
        text.contains("ecom_operator_reconcile_failures_total{error=\"api\"} 2"),
        "{text}"
    );
    // Another Shop starts from the first step.
    let other = Arc::new(shop_with_name("other"));
    assert_eq!(
        error_policy(other, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
}

fn shop_with_name(name: &str) -> Shop {
    let mut s = shop(json!({}), true, false);
    s.metadata.name = Some(name.to_owned());
    s
}

#[test]
fn a_condition_keeps_its_transition_time_while_its_status_holds() {
    let s = shop(json!({}), true, false);
    let first = observed_status(&s, &Discovery::default(), &outcome(&[]), &[]);
    let mut again = s.clone();
    again.status = Some(first.clone());
    let second = observed_status(&again, &Discovery::default(), &outcome(&[]), &[]);
    assert_eq!(
        first.conditions, second.conditions,
        "no change, no new timestamps: no hot loop"
    );
}

#[tokio::test]
async fn what_left_the_desired_state_is_pruned_and_nothing_else() {
    let s = shop(
        json!({"services": {"orders": {"enabled": false}}}),
        true,
        false,
    );
    let owner = json!([{"apiVersion": "ecom.dev/v1alpha1", "kind": "Shop", "name": "demo",
                        "uid": "c0ffee00-0000-4000-8000-000000000001", "controller": true}]);
    let listed = json!([
        // The disabled service's Deployment: ours, no longer wanted.
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "demo-orders", "namespace": "shop", "ownerReferences": owner}},
        // Still wanted.
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "demo-users", "namespace": "shop", "ownerReferences": owner}},
        // Not ours (no owner reference to this Shop): left alone.
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "demo-orders-copy", "namespace": "shop"}},
    ]);
    let (client, recorded) = mock(cluster_with(&s, &[], &[], listed));
    reconcile(Arc::new(s), context(client))
        .await
        .expect("reconcile");
    let deletes: Vec<String> = calls(&recorded)
        .into_iter()
        .filter(|c| c.method == "DELETE")
        .map(|c| c.path().to_owned())
        .collect();
    assert_eq!(
        deletes,
        ["/apis/apps/v1/namespaces/shop/deployments/demo-orders"]
    );
}

/// `Ready` means rolled out, not merely "enough pods ready": during an upgrade to a bad image
/// the old pod stays ready while the new one crash-loops.
#[test]
fn a_component_is_ready_only_when_its_current_spec_has_rolled_out() {
    let deployment = |generation: i64, status: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "demo-users", "generation": generation},
               "spec": {"replicas": 2}, "status": status})
    };
    let done = json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2});
    assert!(rolled_out(&deployment(3, done.clone())));
    // The controller has not seen the new spec yet: the counts describe the old one.
    assert!(!rolled_out(&deployment(4, done)));
    // A bad image: both old pods still ready, one new pod not, old ones not yet replaced.
    assert!(!rolled_out(&deployment(
        4,
        json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2})
    )));
    // New pods ready, an old one still terminating.
    assert!(!rolled_out(&deployment(
        4,
        json!({"observedGeneration": 4, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 3})
    )));
    assert!(!rolled_out(&deployment(1, json!({}))), "no status yet");

    let statefulset = |current: &str, update: &str| {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
               "metadata": {"name": "demo-users-db", "generation": 2},
               "spec": {"replicas": 1},
               "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                          "currentRevision": current, "updateRevision": update}})
    };
    assert!(rolled_out(&statefulset("db-7d9", "db-7d9")));
    // The old revision's pod is still the ready one.
    assert!(!rolled_out(&statefulset("db-7d9", "db-5c2")));
}

/// A passing failure (throttled, a failing webhook or server) is not the object's fault: the
/// others still go out, the Shop is not called degraded, the pass is retried.
#[tokio::test]
async fn a_passing_failure_is_retried_without_calling_the_shop_degraded() {
    for code in [429, 500, 503] {
        let s = shop(json!({}), true, false);
        let base = cluster(&s, &[], &[]);
        let failing = "/apis/apps/v1/namespaces/shop/deployments/demo-orders";
        let (client, recorded) = mock(move |call: &Call| {
            if call.method == "PATCH" && call.path() == failing {
                status(code, "failed calling webhook")
            } else {
                base(call)
            }
        });
        let err = reconcile(Arc::new(s.clone()), context(client))
            .await
            .expect_err("retried");
        assert_eq!(err.metric_label(), "apply_interrupted", "{code}");
        let calls = calls(&recorded);
        assert!(
            calls
                .iter()
                .any(|c| c.method == "PATCH" && c.path().ends_with("/deployments/demo-gateway")),
            "{code}: the objects after it were still applied"
        );
        assert_eq!(
            status_condition(&calls, "Degraded")["status"],
            "False",
            "{code}"
        );
        assert_eq!(
            status_condition(&calls, "Ready")["status"],
            "False",
            "{code}"
        );
        assert!(
            !calls
                .iter()
                .any(|c| c.method == "POST" && c.path().contains("/events")),
            "{code}: no Warning Event for a passing failure"
        );
    }
}

/// Monitoring turned off (or alert rules off): what was made for it goes, which needs the
/// served kinds even when the Shop wants none.
#[tokio::test]
async fn monitoring_objects_are_pruned_when_turned_off() {
    let s = shop(json!({}), true, false);
    let (client, recorded) = mock(cluster(&s, &[], &["monitoring.coreos.com/v1"]));
    reconcile(Arc::new(s), context(client))
        .await
        .expect("reconcile");
    let listed: Vec<String> = calls(&recorded)
        .into_iter()
        .filter(|c| c.method == "GET" && c.uri.contains("labelSelector="))
        .map(|c| c.path().to_owned())
        .collect();
    for kind in ["servicemonitors", "prometheusrules"] {
        assert!(
            listed.contains(&format!(
                "/apis/monitoring.coreos.com/v1/namespaces/shop/{kind}"
            )),
            "{kind} not listed for pruning: {listed:#?}"
        );
    }
}

/// The autoscaler scaling between the look and the handover: it owns the field, nothing to do.
#[tokio::test]
async fn a_conflicting_handover_leaves_the_field_to_the_autoscaler() {
    let s = autoscaled_products(None);
    let base = cluster(&s, &[], &[]);
    let live = LIVE_PRODUCTS;
    let (client, recorded) = mock(move |call: &Call| {
        if call.method == "GET" && call.path() == live {
            applied_by_operator(3, json!({"f:spec": {"f:replicas": {}}}))
        } else if call.method == "PATCH" && call.uri.contains("handover") {
            status(409, "Conflict")
        } else {
            base(call)
        }
    });
    reconcile(Arc::new(s), context(client))
        .await
        .expect("no failure");
    assert!(
        calls(&recorded)
            .iter()
            .any(|c| c.method == "PATCH" && c.path() == live && !c.uri.contains("handover"))
    );
}
