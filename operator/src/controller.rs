//! The controller: a `Shop` in, the platform out.
//!
//! `reconcile` is wrapped in kube's `finalizer()`: a new Shop first gets the finalizer; a live one
//! is applied (secrets created once when missing, then every object of [`desired_state`] by
//! server-side apply under one field manager, then one status patch); a deleted one is cleaned up
//! (volumes dropped unless `retainOnDelete`; the owned objects go by garbage collection) and the
//! finalizer removed. `suspend: true` writes nothing but the status. Failures back off per object
//! (exponentially, capped, reset on success) and are counted by kind.
//!
//! This file is the reconcile loop; each step lives in its own module:
//! - `discovery`: what the cluster serves (CloudNativePG, the Prometheus operator's kinds);
//! - `secrets`: generated Secrets created once, the checksums of every Secret the pods read;
//! - `apply`: server-side apply of each desired object, its failures classified, and the
//!   autoscaling replica handover;
//! - `prune`: what the Shop owns but no longer wants;
//! - `status`: the observed status (components, conditions, phase) and its patch;
//! - `cleanup`: the finalizer's cleanup of a deleted Shop;
//! - `events` and `metrics`: Events about the Shop, the reconcile metrics.

mod apply;
mod cleanup;
mod discovery;
mod events;
mod metrics;
mod prune;
mod secrets;
mod status;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use ecom_shop_api::Shop;
use kube::{
    ResourceExt,
    api::{Api, DynamicObject},
    client::Client,
    core::{ApiResource, GroupVersionKind},
    runtime::{
        controller::Action,
        events::Recorder,
        finalizer::{Event as Finalizer, finalizer},
    },
};

pub use self::{apply::HANDOVER_MANAGER, metrics::Metrics};
use crate::desired::{Desired, desired_state};

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

/// A Shop's `namespace/name`, for logs and the backoff.
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
    ctx.metrics.reconciliation_started();
    let ns = shop.namespace().ok_or(Error::NotNamespaced)?;
    let shops: Api<Shop> = Api::namespaced(ctx.client.clone(), &ns);
    let id = key(&shop);
    let result = finalizer(&shops, FINALIZER, shop, |event| async {
        match event {
            Finalizer::Apply(shop) => apply_shop(&shop, &ctx).await,
            Finalizer::Cleanup(shop) => cleanup::cleanup(&shop, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics.reconciliation_took(started.elapsed());
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
    ctx.metrics.count_failure(error.metric_label());
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

/// A live Shop: what the cluster serves, the Secrets, every desired object applied, what it no
/// longer wants pruned, then one status patch and the Events; refusals and passing failures
/// come back as errors (retried with backoff) once the status says why.
async fn apply_shop(shop: &Shop, ctx: &Context) -> Result<Action> {
    let ns = shop.namespace().ok_or(Error::NotNamespaced)?;
    let name = shop.name_any();
    let shops: Api<Shop> = Api::namespaced(ctx.client.clone(), &ns);
    if shop.spec.suspend {
        status::patch(&shops, &name, &status::suspended(shop)).await?;
        return Ok(Action::requeue(RESYNC));
    }
    let (mut discovery, served) = discovery::discover(shop, &ctx.client).await?;
    let missing = secrets::checksum_all(shop, ctx, &ns, &mut discovery).await?;
    let objects = desired_state(shop, &discovery);
    let pass = apply::apply_all(shop, &ctx.client, &ns, &objects).await?;
    prune::prune(shop, &ctx.client, &ns, &objects, &served).await?;

    let status = status::observed_status(shop, &discovery, &pass.outcome(), &missing);
    let was_ready = status::is_ready(shop.status.as_ref());
    let now_ready = status::is_ready(Some(&status));
    status::patch(&shops, &name, &status).await?;
    events::refused(ctx, shop, &pass.refused).await;
    if let Some(error) = pass.error() {
        return Err(error);
    }
    if was_ready != now_ready {
        events::readiness_changed(ctx, shop, now_ready).await;
    }
    Ok(Action::requeue(if now_ready {
        RESYNC
    } else {
        NOT_READY_RESYNC
    }))
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

/// An object's `app.kubernetes.io/component` label.
fn component_of(o: &DynamicObject) -> Option<&str> {
    o.metadata
        .labels
        .as_ref()?
        .get("app.kubernetes.io/component")
        .map(String::as_str)
}

/// A call's result with "not found" (already gone) counted as done.
fn gone_is_done<T>(result: kube::Result<T>) -> kube::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests;
