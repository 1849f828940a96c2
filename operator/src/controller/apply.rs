//! Server-side apply of the desired objects, one by one under the operator's field manager
//! (forced), each failure classified: a refusal (the object's fault, until the spec changes), a
//! passing failure (retried quietly), or the API server unreachable (the pass stops). Before a
//! Deployment leaves `spec.replicas` to an autoscaler, the replica count is handed over.

use ecom_shop_api::Shop;
use kube::{
    api::{Api, DynamicObject, Patch, PatchParams},
    client::Client,
    core::Status,
};
use serde_json::{Value, json};

use super::{Error, api_for, key, status::Outcome};
use crate::{FIELD_MANAGER, desired::Desired};

/// The field manager that holds a Deployment's `spec.replicas` while it passes from the
/// operator to a HorizontalPodAutoscaler.
pub const HANDOVER_MANAGER: &str = "ecom-operator-handover";

/// An applied object: (kind, name, the object as the server returned it).
pub(super) type Applied = (String, String, DynamicObject);

/// An object the API server refused to apply (4xx), with its reason.
#[derive(Debug, Clone)]
pub(super) struct Refused {
    pub kind: String,
    pub name: String,
    pub message: String,
}

/// What became of the applies of one pass.
#[derive(Default)]
pub(super) struct Pass {
    pub applied: Vec<Applied>,
    /// Refused by the API server (until the spec changes).
    pub refused: Vec<Refused>,
    /// Failed for now (throttled, a webhook or the server failing): `kind name (code)`.
    pub passing: Vec<String>,
}

impl Pass {
    /// The pass as the status sees it.
    pub fn outcome(&self) -> Outcome<'_> {
        Outcome {
            applied: &self.applied,
            refused: &self.refused,
            interrupted: !self.passing.is_empty(),
        }
    }

    /// Why the pass must be retried (with backoff), if it must: passing failures first, then
    /// refusals (counted as `apply_failed`; the status already says why).
    pub fn error(&self) -> Option<Error> {
        if !self.passing.is_empty() {
            return Some(Error::ApplyInterrupted(self.passing.join(", ")));
        }
        if self.refused.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .refused
            .iter()
            .map(|r| format!("{} {}", r.kind, r.name))
            .collect();
        Some(Error::ApplyFailed(names.join(", ")))
    }

    /// Records a failure the API server answered: the object refused, or failed for now.
    fn failed(&mut self, shop: &Shop, d: &Desired, s: Status) {
        if is_refusal(s.code) {
            tracing::warn!(shop = %key(shop), kind = %d.kind, name = %d.name, code = s.code, error = %s.message, "the API server refused an object");
            self.refused.push(Refused {
                kind: d.kind.clone(),
                name: d.name.clone(),
                message: s.message,
            });
        } else {
            // Throttled, timed out, a failing webhook or server: the others still go out, the
            // status says nothing is wrong yet, and the pass is retried with backoff.
            tracing::warn!(shop = %key(shop), kind = %d.kind, name = %d.name, code = s.code, error = %s.message, "applying an object failed; retrying");
            self.passing
                .push(format!("{} {} ({})", d.kind, d.name, s.code));
        }
    }
}

/// Applies every object on its own: one the API server refuses (an immutable field changed, a
/// value it cannot parse) must not hold back the others (an image bump) nor the status. Only the
/// API server being unreachable stops the pass (the whole reconciliation is retried).
pub(super) async fn apply_all(
    shop: &Shop,
    client: &Client,
    ns: &str,
    objects: &[Desired],
) -> kube::Result<Pass> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut pass = Pass {
        applied: Vec::with_capacity(objects.len()),
        ..Pass::default()
    };
    for d in objects {
        let api = api_for(client, ns, d);
        match apply_one(&api, d, &params).await {
            Ok(object) => pass.applied.push((d.kind.clone(), d.name.clone(), object)),
            Err(kube::Error::Api(s)) => pass.failed(shop, d, *s),
            Err(e) => return Err(e),
        }
    }
    Ok(pass)
}

/// One object: its replica count handed over first when needed, then applied.
async fn apply_one(
    api: &Api<DynamicObject>,
    d: &Desired,
    params: &PatchParams,
) -> kube::Result<DynamicObject> {
    hand_replicas_over(api, d).await?;
    api.patch(&d.name, params, &Patch::Apply(&d.object)).await
}

/// Whether the API server refused the object itself (it will refuse it again until the spec
/// changes), as opposed to a passing failure (throttled, timed out, a webhook or the server
/// failing) worth a quiet retry.
fn is_refusal(code: u16) -> bool {
    (400..500).contains(&code) && !matches!(code, 408 | 429)
}

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
    let Some(replicas) = replicas_owned_by_operator(&live) else {
        return Ok(());
    };
    tracing::info!(name = %d.name, replicas, "handing spec.replicas over to the HorizontalPodAutoscaler");
    let patch = json!({
        "apiVersion": d.api_version,
        "kind": d.kind,
        "metadata": {"name": d.name},
        "spec": {"replicas": replicas},
    });
    let handed = api
        .patch(
            &d.name,
            &PatchParams::apply(HANDOVER_MANAGER),
            &Patch::Apply(&patch),
        )
        .await;
    match handed {
        // The autoscaler changed the count meanwhile: it owns the field now, nothing to hand
        // over ("if the apply results in a conflict with the HPA controller, then do nothing").
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}

/// The live Deployment's `spec.replicas`, when the operator's field manager owns it.
fn replicas_owned_by_operator(live: &DynamicObject) -> Option<i64> {
    let owned_by_us = live.metadata.managed_fields.iter().flatten().any(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.fields_v1
                .as_ref()
                .and_then(|f| f.0.pointer("/f:spec/f:replicas"))
                .is_some()
    });
    let replicas = live
        .data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)?;
    owned_by_us.then_some(replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_client_error_other_than_a_timeout_or_throttling_is_a_refusal() {
        for code in [400, 403, 404, 409, 422] {
            assert!(is_refusal(code), "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(!is_refusal(code), "{code}");
        }
    }

    fn refused(name: &str) -> Refused {
        Refused {
            kind: "Deployment".to_owned(),
            name: name.to_owned(),
            message: "field is immutable".to_owned(),
        }
    }

    #[test]
    fn a_pass_fails_as_interrupted_before_refused_and_not_at_all_when_clean() {
        assert!(Pass::default().error().is_none());
        let pass = Pass {
            refused: vec![refused("demo-users"), refused("demo-orders")],
            ..Pass::default()
        };
        let error = pass.error().expect("refused");
        assert_eq!(error.metric_label(), "apply_failed");
        assert_eq!(
            error.to_string(),
            "the API server refused Deployment demo-users, Deployment demo-orders"
        );
        let pass = Pass {
            passing: vec!["Deployment demo-gateway (503)".to_owned()],
            ..pass
        };
        assert!(pass.outcome().interrupted);
        assert_eq!(
            pass.error().expect("interrupted").metric_label(),
            "apply_interrupted"
        );
    }
}
