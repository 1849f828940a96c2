//! `operator crd`: print the `Shop` CustomResourceDefinition (YAML).

use kube::CustomResourceExt;

fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("crd") => {
            print!("{}", serde_norway::to_string(&ecom_shop_api::Shop::crd())?);
            Ok(())
        }
        _ => anyhow::bail!("usage: operator crd"),
    }
}
