//! The finalizer's cleanup of a deleted Shop. Owned objects go by garbage collection (owner
//! references); volumes created from StatefulSet claim templates are not owned: they are dropped
//! unless `retainOnDelete` asks to keep them.

use ecom_shop_api::Shop;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::{
    ResourceExt,
    api::{Api, DeleteParams, ListParams, Patch, PatchParams},
    client::Client,
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;

use super::{Context, Error, Result, events, gone_is_done};
use crate::desired::{generated_secrets, owned_selector};

pub(super) async fn cleanup(shop: &Shop, ctx: &Context) -> Result<Action> {
    let ns = shop.namespace().ok_or(Error::NotNamespaced)?;
    if shop.spec.database.retain_on_delete {
        release_secrets(shop, &ctx.client, &ns).await?;
    } else {
        delete_volumes(shop, &ctx.client, &ns).await?;
    }
    events::publish(
        ctx,
        shop,
        EventType::Normal,
        "Deleted",
        "the platform's objects are being removed",
    )
    .await;
    Ok(Action::await_change())
}

/// The kept volumes are only usable with their passwords: the generated Secrets are released
/// from the Shop (no owner reference), so garbage collection keeps them and a Shop created again
/// under the same name finds them (never regenerated).
async fn release_secrets(shop: &Shop, client: &Client, ns: &str) -> kube::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let release = json!({"metadata": {"ownerReferences": null}});
    for generated in generated_secrets(shop, &mut String::new) {
        let patched = secrets
            .patch(
                &generated.name,
                &PatchParams::default(),
                &Patch::Merge(&release),
            )
            .await;
        gone_is_done(patched)?;
    }
    Ok(())
}

/// Deletes the volumes of the Shop's StatefulSets (found by the Shop's labels).
async fn delete_volumes(shop: &Shop, client: &Client, ns: &str) -> kube::Result<()> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let selector = owned_selector(shop);
    for pvc in pvcs.list(&ListParams::default().labels(&selector)).await? {
        gone_is_done(pvcs.delete(&pvc.name_any(), &DeleteParams::default()).await)?;
    }
    Ok(())
}
