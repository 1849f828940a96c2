//! Names, labels and metadata every object shares.

use std::collections::BTreeMap;

use ecom_shop_api::Shop;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Desired;

/// The longest object name: a DNS-1123 label (Services need one).
pub const MAX_NAME: usize = 63;
/// The longest StatefulSet (and CloudNativePG `Cluster`) name: their pods carry a
/// `controller-revision-hash` label `<name>-<hash of up to 10 chars>`, itself at most 63.
pub const MAX_STATEFUL_NAME: usize = 50;

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_VERSION: &str = "app.kubernetes.io/version";

/// The pod template annotation whose change rolls the pods when a Secret or ConfigMap they read
/// changes.
pub const CHECKSUM_ANNOTATION: &str = "ecom.dev/config-checksum";

/// `<shop>-<suffix>`, a DNS-1123 label of at most `max` characters: a longer one keeps its
/// beginning and ends with a hash of the whole name, so it stays unique and stable.
pub fn child_name(shop: &str, suffix: &str, max: usize) -> String {
    // A Shop's name is a DNS-1123 subdomain: dots are fine there, not in a Service's name.
    let base: String = shop
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_alphanumeric() { c } else { '-' }
        })
        .collect();
    let full = format!("{base}-{suffix}");
    if full.len() <= max {
        return full;
    }
    let hash = short_hash(&full);
    let keep = max.saturating_sub(hash.len() + 1);
    let prefix = full[..keep].trim_end_matches('-');
    format!("{prefix}-{hash}")
}

/// The first 8 hex digits of the SHA-256 of `s`.
pub fn short_hash(s: &str) -> String {
    let mut hex = sha256_hex(s.as_bytes());
    hex.truncate(8);
    hex
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

/// A valid label value (at most 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends).
pub fn label_value(raw: &str) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(63);
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// What every builder needs to know about the Shop.
pub struct Ctx<'a> {
    pub shop: &'a Shop,
    /// The Shop's name.
    pub name: String,
    pub namespace: Option<String>,
    /// The platform version: `spec.version`, else the operator's.
    pub version: String,
    owner: Option<OwnerReference>,
}

impl<'a> Ctx<'a> {
    pub fn new(shop: &'a Shop) -> Self {
        let owner = shop.controller_owner_ref(&()).map(|o| OwnerReference {
            block_owner_deletion: Some(true),
            ..o
        });
        Self {
            shop,
            name: shop.name_any(),
            namespace: shop.namespace(),
            version: shop
                .spec
                .version
                .clone()
                .unwrap_or_else(|| crate::VERSION.to_owned()),
            owner,
        }
    }

    /// `<shop>-<suffix>` (at most 63 characters).
    pub fn child(&self, suffix: &str) -> String {
        child_name(&self.name, suffix, MAX_NAME)
    }

    /// `<shop>-<suffix>` for a StatefulSet or a CloudNativePG `Cluster` (at most 50 characters).
    pub fn stateful_child(&self, suffix: &str) -> String {
        child_name(&self.name, suffix, MAX_STATEFUL_NAME)
    }

    /// The labels that never change for a component (selectors, volume claim templates).
    pub fn stable_labels(&self, app: &str, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), label_value(app)),
            (LABEL_INSTANCE.to_owned(), label_value(&self.name)),
            (LABEL_COMPONENT.to_owned(), label_value(component)),
            (LABEL_PART_OF.to_owned(), "ecom".to_owned()),
            (LABEL_MANAGED_BY.to_owned(), crate::FIELD_MANAGER.to_owned()),
        ])
    }

    /// The six `app.kubernetes.io` labels.
    pub fn own_labels(&self, app: &str, component: &str) -> BTreeMap<String, String> {
        let mut labels = self.stable_labels(app, component);
        labels.insert(LABEL_VERSION.to_owned(), label_value(&self.version));
        labels
    }

    /// Every object's labels: `spec.global.labels`, then ours (ours win: selectors depend on them).
    pub fn labels(&self, app: &str, component: &str) -> BTreeMap<String, String> {
        let mut labels = self.shop.spec.global.labels.clone();
        labels.extend(self.own_labels(app, component));
        labels
    }

    /// A pod template's labels: like [`Self::labels`]; without the version for stateful
    /// components, so a platform upgrade does not restart a database.
    pub fn pod_labels(
        &self,
        app: &str,
        component: &str,
        versioned: bool,
    ) -> BTreeMap<String, String> {
        let mut labels = self.labels(app, component);
        if !versioned {
            labels.remove(LABEL_VERSION);
        }
        labels
    }

    /// The selector of a component's pods: instance and component (and name, for components
    /// the Shop runs several of, e.g. the databases).
    pub fn selector(&self, component: &str, app: Option<&str>) -> BTreeMap<String, String> {
        let mut selector = BTreeMap::from([
            (LABEL_INSTANCE.to_owned(), label_value(&self.name)),
            (LABEL_COMPONENT.to_owned(), label_value(component)),
        ]);
        if let Some(app) = app {
            selector.insert(LABEL_NAME.to_owned(), label_value(app));
        }
        selector
    }

    pub fn label_selector(&self, component: &str, app: Option<&str>) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector(component, app)),
            match_expressions: None,
        }
    }

    /// `spec.global.annotations` (none when empty).
    pub fn annotations(&self) -> Option<BTreeMap<String, String>> {
        let annotations = &self.shop.spec.global.annotations;
        (!annotations.is_empty()).then(|| annotations.clone())
    }

    /// An owned object's metadata: name, namespace, labels, annotations, the controller owner
    /// reference to the Shop.
    pub fn meta(&self, name: &str, app: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: self.namespace.clone(),
            labels: Some(self.labels(app, component)),
            annotations: self.annotations(),
            owner_references: self.owner.clone().map(|owner| vec![owner]),
            ..ObjectMeta::default()
        }
    }

    /// The image pull secrets of every pod.
    pub fn image_pull_secrets(
        &self,
    ) -> Option<Vec<k8s_openapi::api::core::v1::LocalObjectReference>> {
        let names = &self.shop.spec.global.image_pull_secrets;
        (!names.is_empty()).then(|| {
            names
                .iter()
                .map(|name| k8s_openapi::api::core::v1::LocalObjectReference { name: name.clone() })
                .collect()
        })
    }
}

/// A typed object as a [`Desired`].
pub fn typed<K>(object: &K) -> Desired
where
    K: k8s_openapi::Metadata<Ty = ObjectMeta> + Serialize,
{
    Desired {
        api_version: K::API_VERSION.to_owned(),
        kind: K::KIND.to_owned(),
        name: object.metadata().name.clone().unwrap_or_default(),
        object: to_value(object),
    }
}

/// An object of a kind we have no Rust types for (CRDs of other operators).
pub fn untyped(api_version: &str, kind: &str, meta: &ObjectMeta, spec: Value) -> Desired {
    Desired {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: meta.name.clone().unwrap_or_default(),
        object: serde_json::json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": to_value(meta),
            "spec": spec,
        }),
    }
}

pub fn to_value<T: Serialize>(value: &T) -> Value {
    // Plain structs with string keys: serializing them cannot fail.
    serde_json::to_value(value).expect("Kubernetes objects serialize to JSON")
}
