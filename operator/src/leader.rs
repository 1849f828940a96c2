//! Leader election with a `coordination.k8s.io/v1` Lease: one replica reconciles, the others
//! wait. The holder renews every `renew`; a Lease not renewed within its duration may be taken.
//! A leader that fails to renew before its own lease would expire stops (the process exits and
//! is restarted), so two replicas never reconcile at once.

use std::time::Duration;

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
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
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
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        tokio::spawn(async move {
            let mut lease = lease;
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().to_string();
                let path = request.uri().path().to_owned();
                let body = request.into_body().collect_bytes().await.expect("body");
                recorded.lock().expect("calls").push((method.clone(), path));
                let (code, answer) = match (method.as_str(), &lease) {
                    ("GET", Some(l)) => (200, l.clone()),
                    ("GET", None) => (
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
                    ),
                    ("POST" | "PUT", _) => {
                        let written: Value = serde_json::from_slice(&body).expect("lease");
                        lease = Some(written.clone());
                        (if method == "POST" { 201 } else { 200 }, written)
                    }
                    _ => (500, json!({})),
                };
                send.send_response(
                    Response::builder()
                        .status(code)
                        .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                        .expect("response"),
                );
            }
        });
        (Client::new(service, "ecom-system"), calls)
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
}
