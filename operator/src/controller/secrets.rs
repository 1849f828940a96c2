//! The Secrets the pods read: the generated ones created once (never regenerated), and a
//! checksum of each in the `Discovery`, so a changed Secret rolls the pods that use it.

use ecom_shop_api::Shop;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sha2::{Digest, Sha256};

use super::{Context, Error, Result};
use crate::{
    FIELD_MANAGER,
    desired::{Desired, Discovery, desired_state, generated_secrets, referenced_secrets},
};

/// Creates the generated Secrets that are missing, then records the checksum of every Secret
/// the desired state reads; returns the referenced Secrets nobody provides (yet).
pub(super) async fn checksum_all(
    shop: &Shop,
    ctx: &Context,
    ns: &str,
    discovery: &mut Discovery,
) -> Result<Vec<String>> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let random = ctx.random.clone();
    for generated in generated_secrets(shop, &mut || random()) {
        let existing = get_or_create(&secrets, &generated).await?;
        discovery
            .checksums
            .insert(generated.name.clone(), checksum(&existing));
    }
    checksum_referenced(shop, &secrets, discovery).await
}

/// The generated Secret as it is, created when missing.
async fn get_or_create(secrets: &Api<Secret>, generated: &Desired) -> Result<Secret> {
    if let Some(existing) = secrets.get_opt(&generated.name).await? {
        return Ok(existing);
    }
    let secret: Secret = serde_json::from_value(generated.object.clone())
        .map_err(|e| Error::InvalidObject(generated.name.clone(), e.to_string()))?;
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match secrets.create(&pp, &secret).await {
        Ok(created) => Ok(created),
        // Created meanwhile (another replica, a retry): keep theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(secrets.get(&generated.name).await?),
        Err(e) => Err(e.into()),
    }
}

/// Secrets the pods read that someone else provides (External databases, CloudNativePG's app
/// secrets, a given auth Secret): their checksums roll the pods too. Returns the missing ones.
async fn checksum_referenced(
    shop: &Shop,
    secrets: &Api<Secret>,
    discovery: &mut Discovery,
) -> Result<Vec<String>> {
    let mut missing = Vec::new();
    for name in referenced_secrets(&desired_state(shop, discovery)) {
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
    Ok(missing)
}

/// A stable checksum of a Secret's data.
pub(super) fn checksum(secret: &Secret) -> String {
    let mut hash = Sha256::new();
    for (k, v) in secret.data.iter().flatten() {
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(&v.0);
        hash.update([0]);
    }
    format!("{:x}", hash.finalize())
}
