//! `payments`: run the Payments service, or `payments migrate` to apply its migrations and exit.

use payments::{Application, Config, MIGRATOR};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ecom_shared::telemetry::init("payments");
    let config = Config::from_env().inspect_err(|e| tracing::error!("{e:#}"))?;
    if std::env::args().nth(1).as_deref() == Some("migrate") {
        return ecom_shared::db::migrate(&config.common.database_url, &MIGRATOR).await;
    }
    let shutdown = ecom_shared::shutdown::token_on_signal();
    let app = Application::build(config)
        .await
        .inspect_err(|e| tracing::error!("{e:#}"))?;
    app.run(shutdown).await
}
