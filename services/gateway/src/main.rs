//! `gateway`: run the ecom Gateway (GraphQL, the REST facade, rate limits) on 8080, with
//! `/metrics` on its ops port 9080; `gateway healthcheck` asks the running gateway's
//! `/health/ready` (container and Kubernetes probes); `gateway --version`.

use std::process::ExitCode;

use ecom_shared::cli::{self, Command, Probe};
use gateway::{Application, Config, config::SERVICE};

fn main() -> ExitCode {
    if let Command::Exit(code) = cli::parse("gateway", &Probe::ready(SERVICE), false) {
        return code;
    }
    cli::run("gateway", async {
        ecom_shared::telemetry::init("gateway");
        let config = Config::from_env()?;
        config.common.announce_environment();
        let shutdown = ecom_shared::shutdown::token_on_signal();
        Application::build(config).await?.run(shutdown).await
    })
}
