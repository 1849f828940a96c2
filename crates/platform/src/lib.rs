//! The platform's services and their default ports: the contract's port table, written once.
//!
//! Every service's configuration (through `ecom_shared::platform`), the gateway's upstreams,
//! `ecomctl` and the operator read it; a new service is one entry here (docs/development.md,
//! "Adding a service"). A crate of its own, without dependencies, so that the operator reads
//! it without linking the services' plumbing.

/// One process of the platform, as the contract's port table describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Also the binary's and the image's name, the `ECOM_<NAME>_*` prefix and the metrics label.
    pub name: &'static str,
    /// The default HTTP port (`ECOM_<NAME>_HTTP_PORT`).
    pub http_port: u16,
    /// The default gRPC port (`ECOM_<NAME>_GRPC_PORT`); the gateway serves no gRPC API.
    pub grpc_port: Option<u16>,
    /// A port of its own for `/metrics` (`ECOM_<NAME>_OPS_PORT`), when not on the HTTP port.
    pub ops_port: Option<u16>,
    /// Whether it owns a PostgreSQL database (`ecom_<name>`).
    pub database: bool,
    /// The fully qualified gRPC service it serves (`<package>.<Service>`, from `proto/`): the
    /// name its gRPC health service reports.
    pub grpc_service: Option<&'static str>,
}

pub const USERS: Service = Service {
    name: "users",
    http_port: 8001,
    grpc_port: Some(50051),
    ops_port: None,
    database: true,
    grpc_service: Some("ecom.users.v1.UserService"),
};

pub const PRODUCTS: Service = Service {
    name: "products",
    http_port: 8002,
    grpc_port: Some(50052),
    ops_port: None,
    database: true,
    grpc_service: Some("ecom.products.v1.ProductService"),
};

pub const ORDERS: Service = Service {
    name: "orders",
    http_port: 8003,
    grpc_port: Some(50053),
    ops_port: None,
    database: true,
    grpc_service: Some("ecom.orders.v1.OrderService"),
};

pub const PAYMENTS: Service = Service {
    name: "payments",
    http_port: 8004,
    grpc_port: Some(50054),
    ops_port: None,
    database: true,
    grpc_service: Some("ecom.payments.v1.PaymentService"),
};

/// Public: its `/metrics` are on an ops port that is never published.
pub const GATEWAY: Service = Service {
    name: "gateway",
    http_port: 8080,
    grpc_port: None,
    ops_port: Some(9080),
    database: false,
    grpc_service: None,
};

/// Every service, in the order they start (the gateway last: it is ready only once the others
/// answer).
pub static SERVICES: [Service; 5] = [USERS, PRODUCTS, ORDERS, PAYMENTS, GATEWAY];

/// The services behind the gateway (those with a gRPC API), in the table's order.
pub fn upstreams() -> impl Iterator<Item = &'static Service> {
    SERVICES.iter().filter(|s| s.grpc_port.is_some())
}

/// The service called `name`.
pub fn by_name(name: &str) -> Option<&'static Service> {
    SERVICES.iter().find(|s| s.name == name)
}

impl Service {
    /// `ECOM_<NAME>`, the prefix of its own settings.
    pub fn env_prefix(&self) -> String {
        format!("ECOM_{}", self.name.to_ascii_uppercase())
    }

    /// `ecom_<name>`, its database.
    pub fn database_name(&self) -> String {
        format!("ecom_{}", self.name)
    }

    /// Its HTTP server on this host at the default port.
    pub fn local_http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// Its gRPC server on this host at the default port (`None`: it serves no gRPC API).
    pub fn local_grpc_url(&self) -> Option<String> {
        self.grpc_port.map(|p| format!("http://127.0.0.1:{p}"))
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashSet, path::Path};

    use super::*;

    /// Names, ports and gRPC services are unique.
    #[test]
    fn the_table_has_no_clash() {
        let mut ports = HashSet::new();
        let mut names = HashSet::new();
        for s in &SERVICES {
            assert!(names.insert(s.name), "{} twice", s.name);
            for port in [Some(s.http_port), s.grpc_port, s.ops_port]
                .into_iter()
                .flatten()
            {
                assert!(ports.insert(port), "port {port} twice");
            }
            assert_eq!(
                s.grpc_port.is_some(),
                s.grpc_service.is_some(),
                "{}",
                s.name
            );
        }
        assert_eq!(by_name("orders"), Some(&ORDERS));
        assert_eq!(by_name("shipping"), None);
        assert_eq!(
            upstreams().map(|s| s.name).collect::<Vec<_>>(),
            ["users", "products", "orders", "payments"]
        );
    }

    /// The table is the contract's (`../shared/CONTRACT.md` next to the workspace, when it is
    /// there) and the README's: a port changed in one place only fails here.
    #[test]
    fn the_table_matches_the_contract_and_the_readme() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        if let Ok(contract) = std::fs::read_to_string(root.join("../shared/CONTRACT.md")) {
            let rows: Vec<Vec<String>> = contract
                .split("## Ports")
                .nth(1)
                .expect("a Ports section")
                .lines()
                .skip_while(|l| !l.starts_with('|'))
                .take_while(|l| l.starts_with('|'))
                .skip(2)
                .map(|l| {
                    l.trim_matches('|')
                        .split('|')
                        .map(|c| c.trim().to_owned())
                        .collect()
                })
                .collect();
            assert_eq!(rows.len(), SERVICES.len(), "{rows:?}");
            for s in &SERVICES {
                let row = rows.iter().find(|r| r[0] == s.name).expect(s.name);
                assert_eq!(row[1], s.http_port.to_string(), "{}", s.name);
                let grpc = s.grpc_port.map_or("—".to_owned(), |p| p.to_string());
                assert_eq!(row[2], grpc, "{}", s.name);
            }
            let ops = GATEWAY.ops_port.expect("the gateway's ops port");
            assert!(contract.contains(&format!("`ECOM_GATEWAY_OPS_PORT` [{ops}]")));
        }
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        let urls = readme.split("## URLs").nth(1).expect("a URLs section");
        let urls = urls.split("\n## ").next().unwrap_or_default();
        for s in &SERVICES {
            let http = format!("<http://127.0.0.1:{}", s.http_port);
            let line = urls
                .lines()
                .find(|l| l.contains(&http))
                .unwrap_or_else(|| panic!("README has no URL for {}", s.name));
            if let (Some(port), Some(service)) = (s.grpc_port, s.grpc_service) {
                assert!(line.contains(&format!("127.0.0.1:{port}`")), "{line}");
                assert!(line.contains(service), "{line}");
            }
            if let Some(ops) = s.ops_port {
                assert!(urls.contains(&format!("<http://127.0.0.1:{ops}/metrics>")));
            }
        }
    }
}
