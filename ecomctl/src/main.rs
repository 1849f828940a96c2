//! `ecomctl`: the platform on a laptop.
//!
//! - `ecomctl up [--fresh]`: PostgreSQL and Redis (given or private), a database per service,
//!   every service as its own process, Prometheus scraping them when it is installed, a table
//!   of URLs, prefixed logs, and a clean stop on Ctrl-C / SIGTERM.
//! - `ecomctl with-infra -- CMD...`: runs CMD with `ECOM_TEST_DATABASE_URL`, `DATABASE_URL` and
//!   `ECOM_TEST_REDIS_URL` pointing at servers provided the same way (what `make test` uses).

mod infra;
mod procs;
mod prometheus;
mod services;

use std::{
    path::{Path, PathBuf},
    process::{ExitCode, ExitStatus},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use ecom_shared::platform;
use nix::sys::signal::Signal;
use tokio::process::Child;

use crate::{procs::Prefixed, services::services};

#[derive(Parser)]
#[command(name = "ecomctl", version, about = "Run the ecom platform on a laptop")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything in the foreground; Ctrl-C stops it all.
    Up {
        /// Wipe the private servers' data first.
        #[arg(long)]
        fresh: bool,
        /// Where private PostgreSQL and Redis keep their data.
        #[arg(long, env = "ECOM_DATA_DIR", default_value = ".ecom")]
        data_dir: PathBuf,
        /// Where the service binaries are (default: next to ecomctl).
        #[arg(long, env = "ECOM_BIN_DIR")]
        bin_dir: Option<PathBuf>,
    },
    /// Run a command with PostgreSQL and Redis provided (for `make test`).
    WithInfra {
        #[arg(long, env = "ECOM_DATA_DIR", default_value = ".ecom/test")]
        data_dir: PathBuf,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up {
            fresh,
            data_dir,
            bin_dir,
        } => up(fresh, &data_dir, bin_dir).await,
        Command::WithInfra { data_dir, command } => with_infra(&data_dir, &command).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ecomctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bin_dir(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    match explicit {
        Some(d) => Ok(d),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("ecomctl has no directory")?
            .to_path_buf()),
    }
}

/// Resolves when Ctrl-C or SIGTERM arrives.
async fn stop_signal() {
    ecom_shared::shutdown::signal().await;
}

async fn with_infra(data_dir: &Path, command: &[String]) -> anyhow::Result<ExitCode> {
    let log = Prefixed::new(8);
    let sources = infra::Sources::from_env(
        &["ECOM_TEST_DATABASE_URL", "ECOM_DATABASE_URL"],
        &["ECOM_TEST_REDIS_URL", "ECOM_REDIS_URL"],
    );
    let mut infra = infra::provide(data_dir, true, sources, &log).await?;
    let (program, args) = command.split_first().context("no command given")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("ECOM_TEST_DATABASE_URL", &infra.postgres_url)
        .env("DATABASE_URL", &infra.postgres_url)
        .env("ECOM_TEST_REDIS_URL", &infra.redis_url);
    let status = tokio::select! {
        s = async { cmd.status().await } => Some(s),
        () = stop_signal() => None,
    };
    infra::stop(&mut infra).await;
    match status {
        Some(Ok(s)) if s.success() => Ok(ExitCode::SUCCESS),
        Some(Ok(s)) => Ok(ExitCode::from(
            u8::try_from(s.code().unwrap_or(1)).unwrap_or(1),
        )),
        Some(Err(e)) => bail!("cannot run {program}: {e}"),
        None => Ok(ExitCode::from(130)),
    }
}

async fn up(
    fresh: bool,
    data_dir: &Path,
    bin_dir_arg: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let bins = bin_dir(bin_dir_arg)?;
    for s in services() {
        if !bins.join(s.name).is_file() {
            bail!(
                "{} is not built in {} (run `make up`, which builds first)",
                s.name,
                bins.display()
            );
        }
    }
    let prometheus = prometheus::Plan::from_env()?;
    if fresh && data_dir.exists() {
        std::fs::remove_dir_all(data_dir)
            .with_context(|| format!("cannot wipe {}", data_dir.display()))?;
        println!("wiped {}", data_dir.display());
    }
    let log = Prefixed::new(8);
    let mut infra = tokio::select! {
        i = infra::provide(data_dir, false, infra::Sources::from_env(&["ECOM_DATABASE_URL"], &["ECOM_REDIS_URL"]), &log) => i?,
        () = stop_signal() => return Ok(ExitCode::from(130)),
    };
    let outcome = run_services(&bins, &infra, &prometheus, data_dir, &log).await;
    infra::stop(&mut infra).await;
    println!("ecom stopped");
    outcome
}

async fn run_services(
    bins: &Path,
    infra: &infra::Infra,
    prometheus: &prometheus::Plan,
    data_dir: &Path,
    log: &Prefixed,
) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = services()
        .filter(|s| s.database)
        .map(|s| s.database_name())
        .collect();
    let databases = infra::create_databases(&infra.postgres_url, &names).await?;
    let users_http = services()
        .find(|s| s.name == platform::USERS.name)
        .map_or(platform::USERS.http_port, |s| s.http());

    let mut children: Vec<(&'static str, Child)> = Vec::new();
    let mut monitor: Option<Child> = None;
    let started = start_all(bins, infra, &databases, users_http, log, &mut children).await;
    let code = match started {
        Err(e) => {
            eprintln!("ecomctl: {e:#}");
            ExitCode::FAILURE
        }
        Ok(()) => match start_prometheus(prometheus, data_dir, log, &mut monitor).await {
            None => {
                println!("stopping...");
                ExitCode::SUCCESS
            }
            Some(line) => {
                print_table(infra, &line);
                supervise(&mut children, &mut monitor).await
            }
        },
    };
    let stops = children
        .into_iter()
        .chain(monitor.map(|child| ("prometheus", child)))
        .map(|(name, child)| procs::stop(name, child, Signal::SIGTERM, Duration::from_secs(6)));
    futures::future::join_all(stops).await;
    Ok(code)
}

/// Starts Prometheus (into `child`) when the plan says so; the table's line about it, or `None`
/// when a signal came first.
async fn start_prometheus(
    plan: &prometheus::Plan,
    data_dir: &Path,
    log: &Prefixed,
    child: &mut Option<Child>,
) -> Option<String> {
    let settings = match plan {
        prometheus::Plan::Disabled => return Some("off (ECOM_PROMETHEUS=false)".to_owned()),
        prometheus::Plan::NotInstalled => {
            return Some(
                "not installed (sudo apt-get install prometheus; brew install prometheus)"
                    .to_owned(),
            );
        }
        prometheus::Plan::Run(settings) => settings,
    };
    let started = match prometheus::spawn(settings, data_dir, log) {
        Ok(c) => child.insert(c),
        Err(e) => return Some(format!("not started: {e:#}")),
    };
    let ready = tokio::select! {
        r = prometheus::wait_ready(started, settings) => r,
        () = stop_signal() => return None,
    };
    match ready {
        Ok(()) => Some(settings.describe(data_dir)),
        // Optional: the platform runs without it.
        Err(e) => Some(format!("not running: {e:#}")),
    }
}

/// Runs until a signal (success), or until a service dies on its own (failure). Prometheus
/// dying is reported and the services keep running.
async fn supervise(
    children: &mut [(&'static str, Child)],
    monitor: &mut Option<Child>,
) -> ExitCode {
    let signal = stop_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => {
                println!("stopping...");
                return ExitCode::SUCCESS;
            }
            name = first_exit(children) => {
                eprintln!("ecomctl: {name} exited unexpectedly; stopping everything");
                return ExitCode::FAILURE;
            }
            status = exited(monitor) => {
                let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                eprintln!("ecomctl: prometheus exited ({status}); the services keep running");
                *monitor = None;
            }
        }
    }
}

/// Resolves when `child` exits; never when there is none.
async fn exited(child: &mut Option<Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn start_all(
    bins: &Path,
    infra: &infra::Infra,
    databases: &[(String, String)],
    users_http: u16,
    log: &Prefixed,
    children: &mut Vec<(&'static str, Child)>,
) -> anyhow::Result<()> {
    for s in services() {
        let mut cmd = std::process::Command::new(bins.join(s.name));
        let upper = s.name.to_ascii_uppercase();
        if let Some((_, url)) = databases.iter().find(|(n, _)| *n == s.database_name()) {
            cmd.env(format!("ECOM_{upper}_DATABASE_URL"), url);
        }
        cmd.env("ECOM_REDIS_URL", &infra.redis_url).env(
            "ECOM_JWKS_URL",
            format!("http://127.0.0.1:{users_http}/.well-known/jwks.json"),
        );
        let color = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            "1"
        } else {
            "0"
        };
        let defaults = [
            ("ECOM_BIND_ADDRESS", "127.0.0.1"),
            ("ECOM_LOG_FORMAT", "pretty"),
            ("ECOM_LOG_COLOR", color),
        ];
        for (key, default) in defaults.iter().chain(s.env) {
            if std::env::var_os(key).is_none() {
                cmd.env(key, default);
            }
        }
        for other in services() {
            let upper = other.name.to_ascii_uppercase();
            if let Some(port) = other.grpc() {
                cmd.env(
                    format!("ECOM_{upper}_GRPC_URL"),
                    format!("http://127.0.0.1:{port}"),
                );
            }
            cmd.env(
                format!("ECOM_{upper}_HTTP_URL"),
                format!("http://127.0.0.1:{}", other.http()),
            );
        }
        children.push((s.name, procs::spawn(s.name, cmd, log)?));
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for s in services() {
        let url = format!("http://127.0.0.1:{}/health/ready", s.http());
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status().is_success()
            {
                break;
            }
            for (name, child) in children.iter_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("{name} exited during start-up ({status}); see its log above");
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} did not become ready at {url}", s.name);
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                () = stop_signal() => bail!("interrupted during start-up"),
            }
        }
    }
    Ok(())
}

async fn first_exit(children: &mut [(&'static str, Child)]) -> &'static str {
    loop {
        for (name, child) in children.iter_mut() {
            if let Ok(Some(_)) = child.try_wait() {
                return name;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn print_table(infra: &infra::Infra, prometheus: &str) {
    let mut out = String::from("\n  ecom is up\n\n");
    out.push_str(&format!(
        "  {:<10} {:<24} {:<18} {}\n",
        "service", "HTTP", "gRPC", "Swagger UI"
    ));
    for s in services() {
        let http = format!("http://127.0.0.1:{}", s.http());
        let grpc = s
            .grpc()
            .map_or_else(|| "-".to_owned(), |p| format!("127.0.0.1:{p}"));
        out.push_str(&format!(
            "  {:<10} {:<24} {:<18} {http}/docs\n",
            s.name, http, grpc
        ));
    }
    if let Some(gw) = services().find(|s| s.name == platform::GATEWAY.name) {
        let base = format!("http://127.0.0.1:{}", gw.http());
        out.push_str(&format!("\n  {:<10} {base}/graphql\n", "GraphQL"));
        out.push_str(&format!("  {:<10} {base}/api/... ({base}/docs)\n", "REST"));
        out.push_str(&format!("  {:<10} {base}/\n", "storefront"));
    }
    out.push('\n');
    for (what, desc) in &infra.description {
        out.push_str(&format!("  {what:<10} {desc}\n"));
    }
    out.push_str(&format!("  {:<10} {prometheus}\n", "Prometheus"));
    let env = std::env::var("ECOM_ENV").unwrap_or_else(|_| "development".to_owned());
    if !env.eq_ignore_ascii_case("production") {
        let email =
            std::env::var("ECOM_ADMIN_EMAIL").unwrap_or_else(|_| "admin@example.com".to_owned());
        let password =
            std::env::var("ECOM_ADMIN_PASSWORD").unwrap_or_else(|_| "admin12345".to_owned());
        out.push_str(&format!("  {:<10} {email} / {password}\n", "admin"));
    }
    out.push_str("\n  Press Ctrl-C to stop.\n");
    println!("{out}");
}
