//! The one list of platform services `ecomctl` runs. A new service is one entry here.

/// A service process of the platform.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDef {
    /// Also the binary's name and the `ECOM_<NAME>_*` prefix.
    pub name: &'static str,
    pub http_port: u16,
    pub grpc_port: Option<u16>,
    /// A port of its own for `/metrics` (`ECOM_<NAME>_OPS_PORT`), when not on the HTTP port.
    pub ops_port: Option<u16>,
    /// Whether it owns a PostgreSQL database (`ecom_<name>`).
    pub database: bool,
    /// Settings `ecomctl up` gives it (unless the environment already sets them).
    pub env: &'static [(&'static str, &'static str)],
}

pub const SERVICES: &[ServiceDef] = &[
    // The gateway (on this host) forwards the client's address on logins: Users believes it
    // from there only.
    ServiceDef {
        name: "users",
        http_port: 8001,
        grpc_port: Some(50051),
        ops_port: None,
        database: true,
        env: &[("ECOM_TRUSTED_PROXIES", "127.0.0.1")],
    },
    // The demo catalogue is seeded into an empty catalogue only (idempotent).
    ServiceDef {
        name: "products",
        http_port: 8002,
        grpc_port: Some(50052),
        ops_port: None,
        database: true,
        env: &[("ECOM_SEED_DEMO", "true")],
    },
    ServiceDef {
        name: "orders",
        http_port: 8003,
        grpc_port: Some(50053),
        ops_port: None,
        database: true,
        env: &[],
    },
    ServiceDef {
        name: "payments",
        http_port: 8004,
        grpc_port: Some(50054),
        ops_port: None,
        database: true,
        env: &[],
    },
    // Last: it is ready only once the four services answer.
    ServiceDef {
        name: "gateway",
        http_port: 8080,
        grpc_port: None,
        // Public: its metrics are on an ops port that is never published.
        ops_port: Some(9080),
        database: false,
        env: &[],
    },
];

impl ServiceDef {
    fn env_port(&self, kind: &str, default: u16) -> u16 {
        std::env::var(format!(
            "ECOM_{}_{kind}_PORT",
            self.name.to_ascii_uppercase()
        ))
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
    }

    /// The HTTP port, honouring `ECOM_<NAME>_HTTP_PORT`.
    pub fn http(&self) -> u16 {
        self.env_port("HTTP", self.http_port)
    }

    /// The gRPC port, honouring `ECOM_<NAME>_GRPC_PORT`.
    pub fn grpc(&self) -> Option<u16> {
        self.grpc_port.map(|p| self.env_port("GRPC", p))
    }

    /// Where Prometheus scrapes `/metrics`: the ops port (honouring `ECOM_<NAME>_OPS_PORT`)
    /// or the HTTP port.
    pub fn metrics_port(&self) -> u16 {
        self.ops_port
            .map_or_else(|| self.http(), |p| self.env_port("OPS", p))
    }

    pub fn database_name(&self) -> String {
        format!("ecom_{}", self.name)
    }
}
