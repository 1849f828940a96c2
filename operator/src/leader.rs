//! Leader election with a `coordination.k8s.io/v1` Lease: one replica reconciles, the others
//! wait. The holder renews every [`RETRY`]; a Lease not renewed within its duration may be
//! taken by another replica. As client-go's elector does:
//! - a failed renew is retried; the leader steps down only when no renew has succeeded for
//!   [`Elector::renew_deadline`] (two thirds of the lease), before anyone else may take it, so
//!   two replicas never reconcile at once and one API hiccup does not restart the operator;
//! - every error is logged (a 403 from missing RBAC is visible, not an endless silent wait);
//! - on shutdown the holder releases the Lease, so a rolling update hands over at once instead
//!   of after a lease duration.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often a waiting replica tries to take the lease and the leader renews it.
pub const RETRY: Duration = Duration::from_secs(2);

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};

pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

impl Elector {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, lease_duration: Duration) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
        }
    }

    fn spec(&self, transitions: i32) -> LeaseSpec {
        let now = MicroTime(Timestamp::now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: i32::try_from(self.lease_duration.as_secs()).ok(),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Without a successful renew for this long, the leader steps down (before the lease
    /// duration, after which another replica may take it).
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration.mul_f64(2.0 / 3.0)
    }

    /// Waits until this replica holds the lease (`true`), or until `shutdown` (`false`). Each
    /// failed attempt is logged.
    pub async fn acquire(&self, retry: Duration, shutdown: &CancellationToken) -> bool {
        loop {
            match self.try_acquire().await {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, lease = %self.name, "cannot take the lease"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(retry) => {}
            }
        }
    }

    /// Renews the lease every `retry` until `shutdown` (`Ok`) or until leadership is lost
    /// (`Err` with why): another replica holds the lease, or no renew has succeeded for
    /// [`Self::renew_deadline`]. Failed renews in between are logged and retried.
    pub async fn keep(&self, retry: Duration, shutdown: &CancellationToken) -> Result<(), String> {
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(retry) => {}
            }
            match self.try_acquire().await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => return Err("another replica holds the lease".to_owned()),
                Err(e) => {
                    let since = renewed.elapsed();
                    tracing::warn!(error = %e, since_ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX), "cannot renew the lease");
                    if since >= self.renew_deadline() {
                        return Err(format!("no renew succeeded for {} s: {e}", since.as_secs()));
                    }
                }
            }
        }
    }

    /// Gives the lease up when this replica holds it (holder cleared, as client-go's
    /// `ReleaseOnCancel`): the next replica takes it at its next attempt.
    pub async fn release(&self) -> kube::Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }

    /// Takes or renews the lease: `Ok(true)` when this replica holds it now.
    pub async fn try_acquire(&self) -> kube::Result<bool> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        // Released (no holder) or not renewed within its duration: free to take.
        let expired = spec.holder_identity.is_none()
            || spec.renew_time.as_ref().is_none_or(|t| {
                let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
                t.0.as_second() + secs < Timestamp::now().as_second()
            });
        if !mine && !expired {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let mut new_spec = self.spec(transitions);
        if mine {
            new_spec.acquire_time = spec.acquire_time;
        }
        lease.spec = Some(new_spec);
        // `replace` carries the resourceVersion we read: a concurrent taker makes it fail (409).
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http::{Request, Response};
    use kube::client::{Body, Client};
    use serde_json::{Value, json};

    use super::*;

    /// (method, path) of every call the mock API server saw.
    type Calls = Arc<Mutex<Vec<(String, String)>>>;

    /// A mock API server holding one Lease (or none); records every call.
    fn server(lease: Option<Value>) -> (Client, Calls) {
        let (client, calls, _) = server_with_faults(lease);
        (client, calls)
    }

    /// The same, answering 500 to writes while the flag is set, and sharing the Lease it holds.
    /// The flag that makes writes fail, and the Lease the mock server holds.
    type Faults = (
        Arc<std::sync::atomic::AtomicBool>,
        Arc<Mutex<Option<Value>>>,
    );

    fn server_with_faults(lease: Option<Value>) -> (Client, Calls, Faults) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = Arc::new(Mutex::new(lease));
        let (fail, stored) = (failing.clone(), held.clone());
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().path().to_owned();
                let body = request.into_body().collect_bytes().await.expect("body");
                recorded.lock().expect("calls").push((method.clone(), path));
                let mut lease = stored.lock().expect("lease");
                let writes_fail = fail.load(std::sync::atomic::Ordering::SeqCst);
                let (code, answer) = match (method.as_str(), &*lease) {
                    ("POST" | "PUT", _) if writes_fail => (
                        500,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500}),
                    ),
                    ("GET", Some(l)) => (200, l.clone()),
                    ("GET", None) => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    ),
                    ("POST" | "PUT", _) => {
                        let written: Value = serde_json::from_slice(&body).expect("lease");
                        *lease = Some(written.clone());
                        (if method == "POST" { 201 } else { 200 }, written)
                    }
                    _ => (500, json!({})),
                };
                drop(lease);
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                        .expect("response"),
                );
            }
        });
        (Client::new(service, "ecom-system"), calls, (failing, held))
    }

    fn elector(client: Client, identity: &str) -> Elector {
        Elector::new(
            Api::namespaced(client, "ecom-system"),
            "ecom-operator",
            identity,
            Duration::from_secs(15),
        )
    }

    fn lease(holder: &str, renewed: Timestamp) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "ecom-operator", "namespace": "ecom-system", "resourceVersion": "7"},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                        "renewTime": MicroTime(renewed), "leaseTransitions": 2}})
    }

    #[tokio::test]
    async fn the_first_replica_creates_the_lease_and_leads() {
        let (client, calls) = server(None);
        assert!(elector(client, "a").try_acquire().await.expect("acquire"));
        let calls = calls.lock().expect("calls").clone();
        assert_eq!(calls[1].0, "POST");
    }

    #[tokio::test]
    async fn a_fresh_lease_of_another_replica_is_respected() {
        let (client, calls) = server(Some(lease("b", Timestamp::now())));
        assert!(!elector(client, "a").try_acquire().await.expect("acquire"));
        assert_eq!(calls.lock().expect("calls").len(), 1, "only a read");
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_and_a_held_one_renewed() {
        let stale = Timestamp::now() - std::time::Duration::from_secs(60);
        let (client, calls) = server(Some(lease("b", stale)));
        let a = elector(client, "a");
        assert!(a.try_acquire().await.expect("take over"));
        assert!(a.try_acquire().await.expect("renew"));
        let methods: Vec<String> = calls
            .lock()
            .expect("calls")
            .iter()
            .map(|c| c.0.clone())
            .collect();
        assert_eq!(methods, ["GET", "PUT", "GET", "PUT"]);
    }

    #[tokio::test]
    async fn a_failed_renew_is_retried_and_only_a_deadline_without_one_steps_down() {
        use std::sync::atomic::Ordering;
        let (client, _, (failing, _)) = server_with_faults(None);
        let a = Elector::new(
            Api::namespaced(client, "ecom-system"),
            "ecom-operator",
            "a",
            Duration::from_millis(900),
        );
        let shutdown = CancellationToken::new();
        assert!(a.acquire(Duration::from_millis(10), &shutdown).await);
        // Renews fail for a while shorter than the deadline (600 ms), then succeed again: still
        // leading.
        failing.store(true, Ordering::SeqCst);
        let keep = a.keep(Duration::from_millis(50), &shutdown);
        tokio::pin!(keep);
        let outage = tokio::time::sleep(Duration::from_millis(300));
        tokio::select! {
            lost = &mut keep => panic!("stepped down after one outage shorter than the deadline: {lost:?}"),
            () = outage => {}
        }
        failing.store(false, Ordering::SeqCst);
        let calm = tokio::time::sleep(Duration::from_millis(700));
        tokio::select! {
            lost = &mut keep => panic!("stepped down although renews succeed again: {lost:?}"),
            () = calm => {}
        }
        // Then no renew succeeds at all: it steps down within the deadline, before the lease
        // (900 ms) could be taken by anyone else.
        failing.store(true, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let lost = keep.await.expect_err("steps down");
        assert!(lost.contains("no renew succeeded"), "{lost}");
        assert!(
            started.elapsed() < Duration::from_millis(900),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn the_leader_releases_the_lease_on_shutdown_and_the_next_takes_it_at_once() {
        let (client, _, (_, held)) = server_with_faults(None);
        let api = || Api::namespaced(client.clone(), "ecom-system");
        let a = Elector::new(api(), "ecom-operator", "a", Duration::from_secs(15));
        let b = Elector::new(api(), "ecom-operator", "b", Duration::from_secs(15));
        assert!(a.try_acquire().await.expect("a leads"));
        assert!(
            !b.try_acquire().await.expect("b waits"),
            "a fresh lease is respected"
        );
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert_eq!(
            a.keep(RETRY, &shutdown).await,
            Ok(()),
            "shutdown is not a loss"
        );
        a.release().await.expect("release");
        let lease = held.lock().expect("lease").clone().expect("a lease");
        assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
        assert!(
            b.try_acquire().await.expect("b takes it"),
            "no wait for the lease duration"
        );
        // A release by a replica that does not hold it changes nothing.
        a.release().await.expect("noop");
        let lease = held.lock().expect("lease").clone().expect("a lease");
        assert_eq!(lease["spec"]["holderIdentity"], "b");
    }
}
