//! The platform's services as `ecomctl` runs them: the shared table (`ecom_shared::platform`:
//! names, ports, databases) plus the settings `ecomctl up` gives some of them. A new service
//! needs nothing here unless it wants such settings.

use std::ops::Deref;

use ecom_shared::platform::{self, Service};

/// A service process of the platform, with what `ecomctl up` gives it.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDef {
    pub service: &'static Service,
    /// Settings `ecomctl up` gives it (unless the environment already sets them).
    pub env: &'static [(&'static str, &'static str)],
}

/// The table's fields (`name`, `database`, ...) read through.
impl Deref for ServiceDef {
    type Target = Service;

    fn deref(&self) -> &Service {
        self.service
    }
}

/// Every service, in the order `ecomctl up` starts them (the gateway last: it is ready only once
/// the others answer).
pub fn services() -> impl Iterator<Item = ServiceDef> {
    platform::SERVICES.iter().map(|service| ServiceDef {
        service,
        env: up_env(service.name),
    })
}

/// The settings `ecomctl up` gives `service` beyond the common ones.
fn up_env(service: &str) -> &'static [(&'static str, &'static str)] {
    match service {
        // The gateway (on this host) forwards the client's address on logins: Users believes it
        // from there only.
        "users" => &[("ECOM_TRUSTED_PROXIES", "127.0.0.1")],
        // The demo catalogue is seeded into an empty catalogue only (idempotent).
        "products" => &[("ECOM_SEED_DEMO", "true")],
        _ => &[],
    }
}

impl ServiceDef {
    fn env_port(&self, kind: &str, default: u16) -> u16 {
        std::env::var(format!("{}_{kind}_PORT", self.env_prefix()))
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
}
