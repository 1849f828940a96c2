//! Events about a Shop (`kubectl describe shop`): published through the controller's
//! `Recorder`, never failing the reconciliation.

use ecom_shop_api::Shop;
use kube::{
    Resource,
    runtime::events::{Event, EventType},
};

use super::{Context, apply::Refused, key, truncate};

/// Publishes an Event about the Shop; a failure (e.g. forbidden in a terminating namespace) is
/// logged and never fails the reconciliation.
pub(super) async fn publish(
    ctx: &Context,
    shop: &Shop,
    type_: EventType,
    reason: &str,
    note: &str,
) {
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

/// A Warning `ApplyFailed` per object the API server refused.
pub(super) async fn refused(ctx: &Context, shop: &Shop, refused: &[Refused]) {
    for r in refused {
        let note = truncate(&format!("{} {}: {}", r.kind, r.name, r.message), 1000);
        publish(ctx, shop, EventType::Warning, "ApplyFailed", &note).await;
    }
}

/// `Ready` or `Progressing` when the Shop's readiness changed.
pub(super) async fn readiness_changed(ctx: &Context, shop: &Shop, now_ready: bool) {
    let (reason, note) = if now_ready {
        ("Ready", "every component is ready")
    } else {
        ("Progressing", "waiting for components to become ready")
    };
    publish(ctx, shop, EventType::Normal, reason, note).await;
}
