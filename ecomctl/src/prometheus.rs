//! Prometheus for a laptop: when a `prometheus` binary is installed, `ecomctl up` runs it after
//! the services, with a config of its own in the data directory: one scrape job per service
//! (the job names of the compose stack's `monitoring/prometheus/prometheus.yml`, which the
//! dashboards and alert rules select on) and the repository's alert rules.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use tokio::process::Child;

use crate::{
    infra,
    procs::{self, Prefixed},
    services::services,
};

pub const DEFAULT_PORT: u16 = 9090;
const DEFAULT_SCRAPE_INTERVAL: &str = "5s";
/// Where the alert rules live, relative to the repository root.
const RULES_DIR: &str = "monitoring/prometheus/rules";

/// What `ecomctl up` does about Prometheus, decided from the environment before anything starts
/// (so a bad setting stops `up` at once, like a bad port of the private servers).
pub enum Plan {
    /// `ECOM_PROMETHEUS=false`.
    Disabled,
    /// No binary on PATH (nor `ECOM_PROMETHEUS_BIN`).
    NotInstalled,
    Run(Settings),
}

pub struct Settings {
    bin: PathBuf,
    port: u16,
    scrape_interval: String,
    /// The repository's `monitoring/prometheus/rules`, absolute, when there is one.
    rules: Option<PathBuf>,
}

impl Plan {
    pub fn from_env() -> anyhow::Result<Self> {
        if let Ok(v) = std::env::var("ECOM_PROMETHEUS") {
            match v.trim().to_ascii_lowercase().as_str() {
                "" | "1" | "true" | "yes" | "on" => {}
                "0" | "false" | "no" | "off" => return Ok(Self::Disabled),
                _ => bail!("ECOM_PROMETHEUS={v} is not a boolean (true|false)"),
            }
        }
        let port = infra::port_from_env("ECOM_PROMETHEUS_PORT", DEFAULT_PORT)?;
        let scrape_interval = std::env::var("ECOM_PROMETHEUS_SCRAPE_INTERVAL")
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| DEFAULT_SCRAPE_INTERVAL.to_owned());
        if !is_duration(&scrape_interval) {
            bail!(
                "ECOM_PROMETHEUS_SCRAPE_INTERVAL={scrape_interval} is not a Prometheus duration (e.g. 5s, 1m)"
            );
        }
        let bin = match std::env::var_os("ECOM_PROMETHEUS_BIN").filter(|v| !v.is_empty()) {
            Some(b) => {
                let b = PathBuf::from(b);
                if !b.is_file() {
                    bail!("ECOM_PROMETHEUS_BIN={} is not a file", b.display());
                }
                b
            }
            None => match infra::find_binary("prometheus") {
                Some(b) => b,
                None => return Ok(Self::NotInstalled),
            },
        };
        Ok(Self::Run(Settings {
            bin,
            port,
            scrape_interval,
            rules: rules_dir(),
        }))
    }
}

/// A Prometheus duration: one or more `<digits><unit>` with a unit of y, w, d, h, m, s or ms,
/// not zero in all.
fn is_duration(s: &str) -> bool {
    let mut rest = s;
    let mut nonzero = false;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return false;
        }
        nonzero |= rest[..digits].chars().any(|c| c != '0');
        rest = &rest[digits..];
        let unit = ["ms", "y", "w", "d", "h", "m", "s"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    nonzero
}

/// The repository's rules directory: found above the current directory, above the `ecomctl`
/// binary, or in the checkout `ecomctl` was built from (its target directory is usually outside
/// the clone).
fn rules_dir() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok();
    let exe = std::env::current_exe().ok();
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).parent();
    let starts = [cwd.as_deref(), exe.as_deref(), built_from];
    starts
        .into_iter()
        .flatten()
        .flat_map(Path::ancestors)
        .map(|dir| dir.join(RULES_DIR))
        .find(|dir| dir.is_dir())
        .and_then(|dir| std::fs::canonicalize(dir).ok())
}

/// Where each service serves `/metrics`: its HTTP port, or the gateway's ops port.
fn targets() -> Vec<(&'static str, u16)> {
    services().map(|s| (s.name, s.metrics_port())).collect()
}

/// A YAML double-quoted scalar (JSON-style escapes, which YAML shares).
fn quoted(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The config file: one job per service named after it (as in the compose stack's config),
/// plus Prometheus itself, and the alert rules by absolute path. Alerts are evaluated as often
/// as targets are scraped.
fn config(
    port: u16,
    scrape_interval: &str,
    rules: Option<&Path>,
    targets: &[(&str, u16)],
) -> String {
    let mut out = String::from(
        "# Written by `ecomctl up` at every start (see ecomctl/src/prometheus.rs); edits are lost.\n",
    );
    out.push_str(&format!(
        "global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n"
    ));
    if let Some(dir) = rules {
        out.push_str(&format!(
            "rule_files:\n  - {}\n",
            quoted(&dir.join("*.yml").to_string_lossy())
        ));
    }
    out.push_str("scrape_configs:\n");
    let jobs = targets
        .iter()
        .copied()
        .chain(std::iter::once(("prometheus", port)));
    for (job, port) in jobs {
        out.push_str(&format!(
            "  - job_name: {job}\n    metrics_path: /metrics\n    static_configs:\n      - targets: [\"127.0.0.1:{port}\"]\n"
        ));
    }
    out
}

/// Writes the config into `data_dir` and starts Prometheus on 127.0.0.1 with its storage in
/// `<data_dir>/prometheus`.
pub fn spawn(settings: &Settings, data_dir: &Path, log: &Prefixed) -> anyhow::Result<Child> {
    if !infra::port_is_free(settings.port) {
        bail!(
            "port {} is taken (set ECOM_PROMETHEUS_PORT, or ECOM_PROMETHEUS=false)",
            settings.port
        );
    }
    let data_dir = std::fs::canonicalize(data_dir)
        .with_context(|| format!("cannot find {}", data_dir.display()))?;
    let storage = data_dir.join("prometheus");
    std::fs::create_dir_all(&storage)
        .with_context(|| format!("cannot create {}", storage.display()))?;
    let file = data_dir.join("prometheus.yml");
    let text = config(
        settings.port,
        &settings.scrape_interval,
        settings.rules.as_deref(),
        &targets(),
    );
    std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    let mut cmd = std::process::Command::new(&settings.bin);
    cmd.arg(format!("--config.file={}", file.display()))
        .arg(format!("--storage.tsdb.path={}", storage.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{}", settings.port))
        // Start-up chatter would drown the services' logs; problems are still printed.
        .arg("--log.level=warn");
    procs::spawn("prometheus", cmd, log)
}

/// Waits until Prometheus answers `/-/ready` (it has loaded its config and rules).
pub async fn wait_ready(child: &mut Child, settings: &Settings) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let url = format!("{}/-/ready", settings.url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("it exited during start-up ({status}); see its log above");
        }
        if tokio::time::Instant::now() > deadline {
            bail!("it did not become ready at {url}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Settings {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The table's line for a running Prometheus.
    pub fn describe(&self, data_dir: &Path) -> String {
        let rules = match &self.rules {
            Some(dir) => format!("rules from {}", dir.display()),
            None => format!("no {RULES_DIR} found"),
        };
        format!(
            "{} (scrapes every {}; {rules}; data in {})",
            self.url(),
            self.scrape_interval,
            data_dir.join("prometheus").display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_checked() {
        for ok in ["5s", "1s", "500ms", "1m30s", "2h", "1d"] {
            assert!(is_duration(ok), "{ok}");
        }
        for bad in ["", "5", "s", "0s", "5 s", "5sec", "-1s", "1.5s", "5s\nx: y"] {
            assert!(!is_duration(bad), "{bad}");
        }
    }

    #[test]
    fn one_job_per_service_and_the_rules_by_absolute_path() {
        let text = config(
            9191,
            "1s",
            Some(Path::new("/repo/monitoring/prometheus/rules")),
            &[("users", 8001), ("gateway", 9080)],
        );
        let expected = r#"# Written by `ecomctl up` at every start (see ecomctl/src/prometheus.rs); edits are lost.
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - "/repo/monitoring/prometheus/rules/*.yml"
scrape_configs:
  - job_name: users
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:8001"]
  - job_name: gateway
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:9080"]
  - job_name: prometheus
    metrics_path: /metrics
    static_configs:
      - targets: ["127.0.0.1:9191"]
"#;
        assert_eq!(text, expected);
        assert!(!config(9090, "5s", None, &[]).contains("rule_files"));
    }

    #[test]
    fn every_service_is_a_job_and_the_gateway_is_scraped_on_its_ops_port() {
        let names: Vec<&str> = services().map(|s| s.name).collect();
        assert_eq!(
            names,
            ["users", "products", "orders", "payments", "gateway"]
        );
        let ops: Vec<Option<u16>> = services().map(|s| s.ops_port).collect();
        assert_eq!(ops, [None, None, None, None, Some(9080)]);
    }

    #[test]
    fn paths_are_quoted() {
        assert_eq!(quoted(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
    }
}
