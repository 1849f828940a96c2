//! Shared by the end-to-end suites: `ecomctl up` as a real subprocess on free ports.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub struct Ports {
    pub http: u16,
    pub grpc: u16,
    pub products_http: u16,
    pub products_grpc: u16,
    pub orders_http: u16,
    pub orders_grpc: u16,
    pub payments_http: u16,
    pub payments_grpc: u16,
    pub pg: u16,
    pub redis: u16,
    pub gateway: u16,
    /// The gateway's `/metrics` (`ECOM_GATEWAY_OPS_PORT`).
    pub gateway_ops: u16,
    /// `ecomctl up` runs Prometheus here when it is installed (`ECOM_PROMETHEUS_PORT`).
    pub prometheus: u16,
}

impl Ports {
    /// Free ports for every listener of the platform, all different, outside the ephemeral range
    /// (see `ecom_shared::testing::child_port`): the processes `ecomctl up` starts take them.
    pub fn free() -> Self {
        let p = ecom_shared::testing::child_ports(13);
        Self {
            http: p[0],
            grpc: p[1],
            products_http: p[2],
            products_grpc: p[3],
            orders_http: p[4],
            orders_grpc: p[5],
            payments_http: p[6],
            payments_grpc: p[7],
            pg: p[8],
            redis: p[9],
            gateway: p[10],
            gateway_ops: p[11],
            prometheus: p[12],
        }
    }

    fn all(&self) -> [u16; 13] {
        [
            self.http,
            self.grpc,
            self.products_http,
            self.products_grpc,
            self.orders_http,
            self.orders_grpc,
            self.payments_http,
            self.payments_grpc,
            self.pg,
            self.redis,
            self.gateway,
            self.gateway_ops,
            self.prometheus,
        ]
    }
}

pub struct Up {
    pub child: Child,
    output: Arc<Mutex<String>>,
}

/// `ecomctl up` on `ports`, with `env` on top.
pub fn start(dir: &Path, ports: &Ports, fresh: bool) -> Up {
    start_with(dir, ports, fresh, &[])
}

pub fn start_with(dir: &Path, ports: &Ports, fresh: bool, env: &[(&str, &str)]) -> Up {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ecomctl"));
    let users = exe.with_file_name("users");
    assert!(
        users.is_file(),
        "{} is not built: run `cargo build --workspace --bins` (make test does)",
        users.display()
    );
    let mut cmd = Command::new(exe);
    cmd.arg("up").arg("--data-dir").arg(dir);
    if fresh {
        cmd.arg("--fresh");
    }
    let mut child = cmd
        .env("ECOM_USERS_HTTP_PORT", ports.http.to_string())
        .env("ECOM_USERS_GRPC_PORT", ports.grpc.to_string())
        .env("ECOM_PRODUCTS_HTTP_PORT", ports.products_http.to_string())
        .env("ECOM_PRODUCTS_GRPC_PORT", ports.products_grpc.to_string())
        .env("ECOM_ORDERS_HTTP_PORT", ports.orders_http.to_string())
        .env("ECOM_ORDERS_GRPC_PORT", ports.orders_grpc.to_string())
        .env("ECOM_PAYMENTS_HTTP_PORT", ports.payments_http.to_string())
        .env("ECOM_PAYMENTS_GRPC_PORT", ports.payments_grpc.to_string())
        .env("ECOM_PG_PORT", ports.pg.to_string())
        .env("ECOM_REDIS_PORT", ports.redis.to_string())
        .env("ECOM_GATEWAY_HTTP_PORT", ports.gateway.to_string())
        .env("ECOM_GATEWAY_OPS_PORT", ports.gateway_ops.to_string())
        .env("ECOM_PROMETHEUS_PORT", ports.prometheus.to_string())
        .env("ECOM_LOG_FORMAT", "json")
        .env_remove("ECOM_DATABASE_URL")
        .env_remove("ECOM_REDIS_URL")
        .env_remove("ECOM_ADMIN_PASSWORD")
        .env_remove("ECOM_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .envs(env.iter().copied())
        .spawn()
        .expect("spawn ecomctl");
    let output = Arc::new(Mutex::new(String::new()));
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let output = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                if let Ok(mut o) = output.lock() {
                    o.push_str(&line);
                    o.push('\n');
                }
            }
        });
    }
    Up { child, output }
}

/// A test that fails half-way still stops the platform (Ctrl-C, then a kill), so no services
/// outlive it.
impl Drop for Up {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST `query` to the gateway's `/graphql` and return its `data`, asserting there were no
/// errors.
pub async fn graphql(
    client: &reqwest::Client,
    gateway: &str,
    token: Option<&str>,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    let mut req = client
        .post(format!("{gateway}/graphql"))
        .json(&serde_json::json!({"query": query, "variables": variables}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.expect("graphql");
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{query}: {body}");
    assert!(body.get("errors").is_none(), "{query}: {body}");
    body["data"].clone()
}

impl Up {
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    pub async fn wait_ready(&mut self, http: u16) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{http}/health/ready"))
                .send()
                .await
                && r.status().is_success()
                && self.output().contains("Press Ctrl-C to stop")
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ecomctl exited early ({status}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "not ready in time:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ctrl-C, then: stopped within 10 s, every port free.
    pub async fn interrupt(mut self, ports: &Ports) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let sent = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "ecomctl exit {status}:\n{}",
                    self.output()
                );
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "still running 10 s after Ctrl-C:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for port in ports.all() {
            let deadline = sent + Duration::from_secs(10);
            while !port_is_free(port) {
                assert!(
                    Instant::now() < deadline,
                    "port {port} still in use after Ctrl-C:\n{}",
                    self.output()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
