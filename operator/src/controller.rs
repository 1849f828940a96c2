//! The controller: a `Shop` in, the platform out.
//!
//! `reconcile` is wrapped in kube's `finalizer()`: a new Shop first gets the finalizer; a live one
//! is applied (secrets created once when missing, then every object of [`desired_state`] by
//! server-side apply under one field manager, then one status patch); a deleted one is cleaned up
//! (volumes dropped unless `retainOnDelete`; the owned objects go by garbage collection) and the
//! finalizer removed. `suspend: true` writes nothing but the status. Failures back off per object
//! (exponentially, capped, reset on success) and are counted by kind.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use ecom_shop_api::{DatabaseProvider, SERVICES, Shop, ShopStatus, condition};
use k8s_openapi::{
    api::core::v1::{PersistentVolumeClaim, Secret},
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::{
    Resource, ResourceExt,
    api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    client::Client,
    core::{ApiResource, GroupVersionKind},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder},
        finalizer::{Event as Finalizer, finalizer},
    },
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    FIELD_MANAGER, VERSION,
    desired::{
        Desired, Discovery, MAX_NAME, child_name, desired_state, generated_secrets, owned_selector,
        referenced_secrets,
    },
};

/// The Shop's finalizer: cleanup runs before the Shop goes.
pub const FINALIZER: &str = "shops.ecom.dev/cleanup";

/// How often a healthy Shop is looked at again (drift is also caught by the watches).
const RESYNC: Duration = Duration::from_secs(300);
/// How soon a Shop that is not ready yet is looked at again.
const NOT_READY_RESYNC: Duration = Duration::from_secs(15);
/// The first retry after a failure, and the most a retry waits.
const BACKOFF_BASE: Duration = Duration::from_secs(5);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the Shop has no namespace")]
    NotNamespaced,
    #[error("invalid object {0}: {1}")]
    InvalidObject(String, String),
    #[error("the API server refused {0}")]
    ApplyFailed(String),
    #[error("applying {0} failed for now")]
    ApplyInterrupted(String),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A small, bounded label for the failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(s)) if s.code == 403 => "forbidden",
            Error::Kube(kube::Error::Api(s)) if s.code == 409 => "conflict",
            Error::Kube(kube::Error::Api(s)) if s.code == 422 => "invalid",
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "transport",
            Error::NotNamespaced => "not_namespaced",
            Error::InvalidObject(..) => "invalid_object",
            Error::ApplyFailed(_) => "apply_failed",
            Error::ApplyInterrupted(_) => "apply_interrupted",
            Error::Finalizer(e) => match &**e {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error: &'static str,
}

/// The controller's metrics.
pub struct Metrics {
    pub registry: Registry,
    reconciliations: Counter,
    failures: Family<ErrorLabels, Counter>,
    duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ecom_operator");
        let reconciliations = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        registry.register(
            "reconciliations",
            "reconciliations of Shops",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_failures",
            "failed reconciliations, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "time per reconciliation",
            duration.clone(),
        );
        Self {
            registry,
            reconciliations,
            failures,
            duration,
        }
    }
}

/// A secret string generator (random in production; deterministic in tests).
pub type Random = Arc<dyn Fn() -> String + Send + Sync>;

/// A fresh 40-character alphanumeric secret.
pub fn random_secret() -> String {
    use rand::{Rng, distributions::Alphanumeric};
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

/// What every reconciliation shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub random: Random,
    /// Consecutive failures per Shop (`namespace/name`), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, recorder: Recorder, metrics: Arc<Metrics>, random: Random) -> Self {
        Self {
            client,
            recorder,
            metrics,
            random,
            failures: Mutex::default(),
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(shop: &Shop) -> String {
    format!(
        "{}/{}",
        shop.namespace().unwrap_or_default(),
        shop.name_any()
    )
}

/// The controller's reconcile function.
pub async fn reconcile(shop: Arc<Shop>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciliations.inc();
    let ns = shop.namespace().ok_or(Error::NotNamespaced)?;
    let shops: Api<Shop> = Api::namespaced(ctx.client.clone(), &ns);
    let id = key(&shop);
    let result = finalizer(&shops, FINALIZER, shop, |event| async {
        match event {
            Finalizer::Apply(shop) => apply(&shop, &ctx).await,
            Finalizer::Cleanup(shop) => cleanup(&shop, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.failures().remove(&id);
    }
    result
}

/// The delay before retrying after the `attempt`-th consecutive failure.
pub fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    BACKOFF_BASE.saturating_mul(factor).min(BACKOFF_CAP)
}

/// The controller's error policy: count, log, retry with backoff.
pub fn error_policy(shop: Arc<Shop>, error: &Error, ctx: Arc<Context>) -> Action {
    let label = error.metric_label();
    ctx.metrics
        .failures
        .get_or_create(&ErrorLabels { error: label })
        .inc();
    let attempt = {
        let mut failures = ctx.failures();
        let n = failures.entry(key(&shop)).or_insert(0);
        *n += 1;
        *n
    };
    let delay = backoff(attempt);
    tracing::warn!(shop = %key(&shop), error = %error, attempt, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The dynamic API of a desired object's kind in `ns`.
fn api_for(client: &Client, ns: &str, d: &Desired) -> Api<DynamicObject> {
    let (group, version) = d
        .api_version
        .split_once('/')
        .unwrap_or(("", &d.api_version));
    let gvk = GroupVersionKind::gvk(group, version, &d.kind);
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
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

/// A stable checksum of a Secret's data.
fn checksum(secret: &Secret) -> String {
    let mut hash = Sha256::new();
    for (k, v) in secret.data.iter().flatten() {
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(&v.0);
        hash.update([0]);
    }
    format!("{:x}", hash.finalize())
}

async fn apply(shop: &Shop, ctx: &Context) -> Result<Action> {
    let ns = shop.namespace().ok_or(Error::NotNamespaced)?;
    let name = shop.name_any();
    let shops: Api<Shop> = Api::namespaced(ctx.client.clone(), &ns);
    if shop.spec.suspend {
        let status = suspended_status(shop);
        patch_status(&shops, &name, &status).await?;
        return Ok(Action::requeue(RESYNC));
    }
    let discovery_cnpg = shop.spec.database.provider == DatabaseProvider::CloudNativePG
        && api_served(&ctx.client, "postgresql.cnpg.io/v1", "Cluster").await?;
    // The Prometheus operator's kinds, asked once, always: when monitoring is turned off, what
    // was made for it must still be pruned. The alert rules come with the ServiceMonitors (they
    // select on the `job` those set).
    let monitoring_kinds = served_kinds(&ctx.client, "monitoring.coreos.com/v1").await?;
    let served = Served {
        service_monitors: monitoring_kinds.iter().any(|k| k == "ServiceMonitor"),
        prometheus_rules: monitoring_kinds.iter().any(|k| k == "PrometheusRule"),
    };
    let discovery_monitors =
        shop.spec.monitoring.service_monitor.enabled && served.service_monitors;
    let discovery_rules = shop.spec.monitoring.prometheus_rule.enabled && served.prometheus_rules;
    let mut discovery = Discovery {
        cnpg: discovery_cnpg,
        service_monitors: discovery_monitors,
        prometheus_rules: discovery_rules,
        checksums: BTreeMap::new(),
    };

    // Secrets: created once when missing, never regenerated.
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let random = ctx.random.clone();
    for generated in generated_secrets(shop, &mut || random()) {
        let existing = match secrets.get_opt(&generated.name).await? {
            Some(s) => s,
            None => {
                let secret: Secret = serde_json::from_value(generated.object.clone())
                    .map_err(|e| Error::InvalidObject(generated.name.clone(), e.to_string()))?;
                let pp = PostParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PostParams::default()
                };
                match secrets.create(&pp, &secret).await {
                    Ok(created) => created,
                    // Created meanwhile (another replica, a retry): keep theirs.
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        secrets.get(&generated.name).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        discovery
            .checksums
            .insert(generated.name.clone(), checksum(&existing));
    }
    // Secrets the pods read that someone else provides (External databases, CloudNativePG's
    // app secrets, a given auth Secret): their checksums roll the pods too.
    let mut missing = Vec::new();
    for name in referenced_secrets(&desired_state(shop, &discovery)) {
        if discovery.checksums.contains_key(&name) {
            continue;
        }
        match secrets.get_opt(&name).await? {
            Some(s) => {
                discovery.checksums.insert(name, checksum(&s));
            }
            None => missing.push(name),
        }
    }

    let objects = desired_state(shop, &discovery);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::with_capacity(objects.len());
    // Each object on its own: one the API server refuses (an immutable field changed, a value
    // it cannot parse) must not hold back the others (an image bump) nor the status.
    let mut refused = Vec::new();
    let mut passing = Vec::new();
    for d in &objects {
        let api = api_for(&ctx.client, &ns, d);
        let result = async {
            hand_replicas_over(&api, d).await?;
            api.patch(&d.name, &params, &Patch::Apply(&d.object)).await
        }
        .await;
        match result {
            Ok(object) => applied.push((d.kind.clone(), d.name.clone(), object)),
            Err(kube::Error::Api(s)) if is_refusal(s.code) => {
                tracing::warn!(shop = %key(shop), kind = %d.kind, name = %d.name, code = s.code, error = %s.message, "the API server refused an object");
                refused.push(Refused {
                    kind: d.kind.clone(),
                    name: d.name.clone(),
                    message: s.message,
                });
            }
            // Throttled, timed out, a failing webhook or server: the others still go out, the
            // status says nothing is wrong yet, and the pass is retried with backoff.
            Err(kube::Error::Api(s)) => {
                tracing::warn!(shop = %key(shop), kind = %d.kind, name = %d.name, code = s.code, error = %s.message, "applying an object failed; retrying");
                passing.push(format!("{} {} ({})", d.kind, d.name, s.code));
            }
            // The API server unreachable: retry the whole reconciliation.
            Err(e) => return Err(e.into()),
        }
    }

    prune(shop, ctx, &ns, &objects, &served).await?;

    let status = observed_status(
        shop,
        &discovery,
        &Outcome {
            applied: &applied,
            refused: &refused,
            interrupted: !passing.is_empty(),
        },
        &missing,
    );
    let was_ready = is_true(shop.status.as_ref(), condition::READY);
    let now_ready = is_true(Some(&status), condition::READY);
    patch_status(&shops, &name, &status).await?;
    for r in &refused {
        let note = truncate(&format!("{} {}: {}", r.kind, r.name, r.message), 1000);
        publish(ctx, shop, EventType::Warning, "ApplyFailed", &note).await;
    }
    if !passing.is_empty() {
        return Err(Error::ApplyInterrupted(passing.join(", ")));
    }
    if !refused.is_empty() {
        // Retried with backoff, counted as `apply_failed`; the status already says why.
        return Err(Error::ApplyFailed(
            refused
                .iter()
                .map(|r| format!("{} {}", r.kind, r.name))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    if was_ready != now_ready {
        let (type_, reason, note) = if now_ready {
            (EventType::Normal, "Ready", "every component is ready")
        } else {
            (
                EventType::Normal,
                "Progressing",
                "waiting for components to become ready",
            )
        };
        publish(ctx, shop, type_, reason, note).await;
    }
    Ok(Action::requeue(if now_ready {
        RESYNC
    } else {
        NOT_READY_RESYNC
    }))
}

/// What became of the applies of one pass.
#[derive(Clone, Copy)]
struct Outcome<'a> {
    /// (kind, name, the object as the server returned it).
    applied: &'a [(String, String, DynamicObject)],
    /// Refused by the API server (until the spec changes).
    refused: &'a [Refused],
    /// Some failed for now (throttled, a webhook or the server failing): not Ready yet.
    interrupted: bool,
}

/// Which of the Prometheus operator's kinds the cluster serves (whether or not the Shop wants
/// them: pruning needs to know).
struct Served {
    service_monitors: bool,
    prometheus_rules: bool,
}

/// Whether the API server refused the object itself (it will refuse it again until the spec
/// changes), as opposed to a passing failure (throttled, timed out, a webhook or the server
/// failing) worth a quiet retry.
fn is_refusal(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 408 | 429)
}

/// An object the API server refused to apply (4xx), with its reason.
#[derive(Debug, Clone)]
struct Refused {
    kind: String,
    name: String,
    message: String,
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The field manager that holds a Deployment's `spec.replicas` while it passes from the
/// operator to a HorizontalPodAutoscaler.
pub const HANDOVER_MANAGER: &str = "ecom-operator-handover";

/// Turning autoscaling on, the documented handover ("Transferring ownership" in the server-side
/// apply docs): the desired Deployment no longer sets `spec.replicas`, and were the operator its
/// only owner the field would be removed and the Deployment fall to 1 replica until the
/// autoscaler acts. So while the operator still owns it, a second manager first applies the
/// live value, keeping the field when the operator lets go; the autoscaler's first change then
/// takes it over.
async fn hand_replicas_over(api: &Api<DynamicObject>, d: &Desired) -> kube::Result<()> {
    if d.kind != "Deployment" || d.object.pointer("/spec/replicas").is_some() {
        return Ok(());
    }
    let Some(live) = api.get_opt(&d.name).await? else {
        return Ok(());
    };
    let owned_by_us = live.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:replicas"))
                .is_some()
    });
    let Some(replicas) = live.data.pointer("/spec/replicas").and_then(Value::as_i64) else {
        return Ok(());
    };
    if !owned_by_us {
        return Ok(());
    }
    tracing::info!(name = %d.name, replicas, "handing spec.replicas over to the HorizontalPodAutoscaler");
    let patch = json!({
        "apiVersion": d.api_version,
        "kind": d.kind,
        "metadata": {"name": d.name},
        "spec": {"replicas": replicas},
    });
    match api
        .patch(
            &d.name,
            &PatchParams::apply(HANDOVER_MANAGER),
            &Patch::Apply(&patch),
        )
        .await
    {
        // The autoscaler changed the count meanwhile: it owns the field now, nothing to hand
        // over ("if the apply results in a conflict with the HPA controller, then do nothing").
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}

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

/// Deletes what this Shop owns (controller owner reference, managed-by label) but no longer
/// wants. A database StatefulSet is kept (its volume holds data) even when its service is off.
async fn prune(
    shop: &Shop,
    ctx: &Context,
    ns: &str,
    wanted: &[Desired],
    served: &Served,
) -> Result<()> {
    let uid = shop.uid().unwrap_or_default();
    let selector = owned_selector(shop);
    // The Prometheus operator's kinds only where they are served (a LIST would fail).
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
    let kinds = PRUNABLE.iter().chain(
        monitors
            .iter()
            .filter(|(_, served)| *served)
            .map(|(kind, _)| kind),
    );
    for (api_version, kind) in kinds {
        let probe = Desired {
            api_version: (*api_version).to_owned(),
            kind: (*kind).to_owned(),
            name: String::new(),
            object: Value::Null,
        };
        let api = api_for(&ctx.client, ns, &probe);
        for existing in api.list(&ListParams::default().labels(&selector)).await? {
            let name = existing.name_any();
            let ours = existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && o.uid == uid);
            let still_wanted = wanted.iter().any(|d| d.kind == *kind && d.name == name);
            let data = component_of(&existing) == Some("database");
            if ours && !still_wanted && !data {
                tracing::info!(shop = %key(shop), kind, name, "pruning what the Shop no longer wants");
                match api.delete(&name, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

/// Publishes an Event about the Shop; a failure (e.g. forbidden in a terminating namespace) is
/// logged and never fails the reconciliation.
async fn publish(ctx: &Context, shop: &Shop, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note.to_owned()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &shop.object_ref(&())).await {
        tracing::warn!(shop = %key(shop), error = %e, "could not publish an event");
    }
}

async fn cleanup(shop: &Shop, ctx: &Context) -> Result<Action> {
    let ns = shop.namespace().ok_or(Error::NotNamespaced)?;
    // Owned objects go by garbage collection (owner references); volumes created from
    // StatefulSet claim templates are not owned: drop them unless asked to keep them.
    if shop.spec.database.retain_on_delete {
        // The kept volumes are only usable with their passwords: the generated Secrets are
        // released from the Shop (no owner reference), so garbage collection keeps them and a
        // Shop created again under the same name finds them (never regenerated).
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
        let release = json!({"metadata": {"ownerReferences": null}});
        for generated in generated_secrets(shop, &mut String::new) {
            match secrets
                .patch(
                    &generated.name,
                    &PatchParams::default(),
                    &Patch::Merge(&release),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
        let selector = owned_selector(shop);
        for pvc in pvcs.list(&ListParams::default().labels(&selector)).await? {
            pvcs.delete(&pvc.name_any(), &DeleteParams::default())
                .await
                .map(|_| ())
                .or_else(|e| match e {
                    kube::Error::Api(s) if s.code == 404 => Ok(()),
                    e => Err(e),
                })?;
        }
    }
    publish(
        ctx,
        shop,
        EventType::Normal,
        "Deleted",
        "the platform's objects are being removed",
    )
    .await;
    Ok(Action::await_change())
}

async fn patch_status(shops: &Api<Shop>, name: &str, status: &ShopStatus) -> Result<()> {
    let patch = json!({
        "apiVersion": "ecom.dev/v1alpha1",
        "kind": "Shop",
        "status": status,
    });
    shops
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

fn is_true(status: Option<&ShopStatus>, type_: &str) -> bool {
    status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .is_some_and(|c| c.status == "True")
}

/// A condition, keeping the previous `lastTransitionTime` when the status did not change (so a
/// status patch with nothing new is identical and does not trigger another reconciliation).
fn condition(
    previous: Option<&ShopStatus>,
    generation: Option<i64>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last = previous
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .map_or_else(
            || Time(Timestamp::now()),
            |c| c.last_transition_time.clone(),
        );
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: generation,
        last_transition_time: last,
    }
}

fn base_status(shop: &Shop) -> ShopStatus {
    ShopStatus {
        observed_generation: shop.metadata.generation,
        operator_version: Some(VERSION.to_owned()),
        platform_version: Some(
            shop.spec
                .version
                .clone()
                .unwrap_or_else(|| VERSION.to_owned()),
        ),
        // Components are reported as last seen while suspended.
        components: shop
            .status
            .as_ref()
            .map(|s| s.components.clone())
            .unwrap_or_default(),
        ..ShopStatus::default()
    }
}

fn suspended_status(shop: &Shop) -> ShopStatus {
    let previous = shop.status.as_ref();
    let generation = shop.metadata.generation;
    let mut status = base_status(shop);
    status.phase = Some("Suspended".to_owned());
    // Keep the other conditions as they were; only ReconcileSuspended is (re)stated.
    status.conditions = previous
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.type_ != condition::RECONCILE_SUSPENDED)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    status.conditions.push(condition(
        previous,
        generation,
        condition::RECONCILE_SUSPENDED,
        true,
        "Suspended",
        "spec.suspend is true: no changes are made to the platform",
    ));
    status
}

/// An object's `app.kubernetes.io/component` label.
fn component_of(o: &DynamicObject) -> Option<&str> {
    o.metadata
        .labels
        .as_ref()?
        .get("app.kubernetes.io/component")
        .map(String::as_str)
}

fn int_at(v: &Value, path: &str) -> i64 {
    v.pointer(path).and_then(Value::as_i64).unwrap_or(0)
}

/// The whole object as JSON (`kind`, `metadata` and the rest), as the server sent it.
fn object_json(o: &DynamicObject) -> Value {
    serde_json::to_value(o).unwrap_or_default()
}

/// Whether a Deployment or StatefulSet (as the server returned it) has rolled out its current
/// spec, the way `kubectl rollout status` decides: the controller has seen this generation,
/// every wanted replica runs the new template and is ready, and no old one is left. Ready
/// replicas alone are not enough: during an upgrade to a bad image the old pod stays ready.
fn rolled_out(object: &Value) -> bool {
    let wanted = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let generation = int_at(object, "/metadata/generation");
    let observed = int_at(object, "/status/observedGeneration");
    let updated = int_at(object, "/status/updatedReplicas");
    let ready = int_at(object, "/status/readyReplicas");
    let total = int_at(object, "/status/replicas");
    let seen = observed >= generation;
    let base = seen && updated >= wanted && ready >= wanted && total <= updated.max(wanted);
    match object.pointer("/kind").and_then(Value::as_str) {
        Some("StatefulSet") => {
            let current = object
                .pointer("/status/currentRevision")
                .and_then(Value::as_str);
            let update = object
                .pointer("/status/updateRevision")
                .and_then(Value::as_str);
            base && current.is_some() && current == update
        }
        _ => base,
    }
}

/// Whether every applied CloudNativePG `Cluster` has all its instances ready.
fn cnpg_clusters_ready(applied: &[(String, String, DynamicObject)]) -> bool {
    applied
        .iter()
        .filter(|(kind, _, _)| kind == "Cluster")
        .all(|(_, _, c)| {
            int_at(&c.data, "/status/readyInstances") >= int_at(&c.data, "/spec/instances").max(1)
        })
}

/// The status after an apply: per-component readiness read from the applied Deployments (the
/// server's answer to the apply carries their status), databases, monitoring, and the gateway URL.
fn observed_status(
    shop: &Shop,
    discovery: &Discovery,
    outcome: &Outcome<'_>,
    missing_secrets: &[String],
) -> ShopStatus {
    let Outcome {
        applied,
        refused,
        interrupted,
    } = *outcome;
    let previous = shop.status.as_ref();
    let generation = shop.metadata.generation;
    let shop_name = shop.name_any();
    let mut status = base_status(shop);
    status.components = BTreeMap::new();
    let mut all_ready = true;
    for service in SERVICES {
        if !shop.spec.services.get(service).is_some_and(|s| s.enabled) {
            continue;
        }
        let deployment = applied
            .iter()
            .find(|(kind, _, o)| kind == "Deployment" && component_of(o) == Some(service));
        let (ready_replicas, ready, image) = deployment.map_or((0, false, None), |(_, _, d)| {
            let image = d
                .data
                .pointer("/spec/template/spec/containers/0/image")
                .and_then(Value::as_str)
                .map(str::to_owned);
            (
                int_at(&d.data, "/status/readyReplicas"),
                rolled_out(&object_json(d)),
                image,
            )
        });
        all_ready &= ready;
        let url = (service == "gateway").then(|| {
            let ingress = &shop.spec.services.gateway.ingress;
            match (&ingress.enabled, &ingress.host) {
                (true, Some(host)) if ingress.tls_secret_name.is_some() => {
                    format!("https://{host}")
                }
                (true, Some(host)) => format!("http://{host}"),
                _ => format!(
                    "http://{}.{}.svc:8080",
                    child_name(&shop_name, "gateway", MAX_NAME),
                    shop.namespace().unwrap_or_default()
                ),
            }
        });
        status.components.insert(
            service.to_owned(),
            ecom_shop_api::ComponentStatus {
                ready,
                ready_replicas: i32::try_from(ready_replicas).unwrap_or(i32::MAX),
                image,
                url,
            },
        );
    }

    let (db_ok, db_reason, db_message) = match shop.spec.database.provider {
        DatabaseProvider::CloudNativePG if !discovery.cnpg => (
            false,
            "CloudNativePGMissing",
            "provider CloudNativePG needs the CloudNativePG operator (postgresql.cnpg.io/v1 Cluster)"
                .to_owned(),
        ),
        // CloudNativePG creates each cluster's `<cluster>-app` Secret as it first starts: missing
        // then is a first boot, not a fault.
        DatabaseProvider::CloudNativePG
            if !missing_secrets.is_empty() && !cnpg_clusters_ready(applied) =>
        {
            (
                false,
                "Starting",
                format!(
                    "waiting for the CloudNativePG clusters to start and create {}",
                    missing_secrets.join(", ")
                ),
            )
        }
        _ if !missing_secrets.is_empty() => (
            false,
            "SecretMissing",
            format!("missing Secrets: {}", missing_secrets.join(", ")),
        ),
        DatabaseProvider::Builtin => {
            let ready = applied
                .iter()
                .filter(|(kind, _, o)| kind == "StatefulSet" && component_of(o) == Some("database"))
                .all(|(_, _, s)| rolled_out(&object_json(s)));
            (
                ready,
                if ready { "Ready" } else { "Starting" },
                if ready {
                    "every database answers".to_owned()
                } else {
                    "waiting for the databases".to_owned()
                },
            )
        }
        DatabaseProvider::CloudNativePG => {
            let ready = cnpg_clusters_ready(applied);
            (
                ready,
                if ready { "Ready" } else { "Starting" },
                if ready {
                    "every CloudNativePG cluster is ready".to_owned()
                } else {
                    "waiting for the CloudNativePG clusters".to_owned()
                },
            )
        }
        DatabaseProvider::External => (true, "External", "external databases".to_owned()),
    };

    let monitoring = &shop.spec.monitoring.service_monitor;
    let (mon_ok, mon_reason, mon_message) = match (monitoring.enabled, discovery.service_monitors) {
        (true, true) => (true, "Available", "a ServiceMonitor per service"),
        (true, false) => (
            false,
            "ServiceMonitorCRDMissing",
            "monitoring.coreos.com/v1 ServiceMonitor is not served: install the Prometheus operator",
        ),
        (false, _) => (
            false,
            "Disabled",
            "spec.monitoring.serviceMonitor.enabled is false",
        ),
    };

    let ready = all_ready && db_ok && refused.is_empty() && !interrupted;
    let (degraded, degraded_reason, degraded_message) = if refused.is_empty() {
        (
            !db_ok && db_reason != "Starting",
            db_reason,
            db_message.clone(),
        )
    } else {
        let objects: Vec<String> = refused
            .iter()
            .map(|r| format!("{} {}: {}", r.kind, r.name, r.message))
            .collect();
        (
            true,
            "ApplyFailed",
            truncate(
                &format!("the API server refused {}", objects.join("; ")),
                2000,
            ),
        )
    };
    let c = |type_: &str, ok: bool, reason: &str, message: &str| {
        condition(previous, generation, type_, ok, reason, message)
    };
    status.conditions = vec![
        c(
            condition::READY,
            ready,
            if ready { "Ready" } else { "NotReady" },
            if ready {
                "every component is ready"
            } else {
                "some components are not ready yet"
            },
        ),
        c(
            condition::PROGRESSING,
            !ready && !degraded,
            if ready { "Complete" } else { "Rolling" },
            if ready {
                "the platform matches the spec"
            } else {
                "components are starting or updating"
            },
        ),
        c(
            condition::DEGRADED,
            degraded,
            if degraded {
                degraded_reason
            } else {
                "AsExpected"
            },
            if degraded {
                &degraded_message
            } else {
                "nothing is wrong"
            },
        ),
        c(condition::DATABASES_READY, db_ok, db_reason, &db_message),
        c(
            condition::MONITORING_AVAILABLE,
            mon_ok,
            mon_reason,
            mon_message,
        ),
        c(
            condition::RECONCILE_SUSPENDED,
            false,
            "Active",
            "the operator manages the platform",
        ),
    ];
    status.phase = Some(
        if ready {
            "Ready"
        } else if degraded {
            "Degraded"
        } else {
            "Progressing"
        }
        .to_owned(),
    );
    status
}

#[cfg(test)]
mod tests;
