//! `gateway`: run the ecom Gateway (GraphQL, the REST facade, rate limits) on 8080.

use gateway::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ecom_shared::telemetry::init("gateway");
    let config = Config::from_env().inspect_err(|e| tracing::error!("{e:#}"))?;
    let shutdown = ecom_shared::shutdown::token_on_signal();
    let app = Application::build(config)
        .await
        .inspect_err(|e| tracing::error!("{e:#}"))?;
    app.run(shutdown).await
}
