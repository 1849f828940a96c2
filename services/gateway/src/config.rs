//! The Gateway's configuration: the shared settings plus where the services are, the rate
//! limits and the GraphQL limits.

use std::time::Duration;

use ecom_shared::{
    config::{CommonConfig, EnvReader, Rate},
    platform::{self, Service},
};

/// This service's row of the platform's table (its default ports).
pub const SERVICE: &Service = &platform::GATEWAY;

/// `ECOM_RATE_LIMIT_BURST` by default: far above what a person or a page does (the storefront
/// makes a handful of requests per view), far below a flood.
pub const DEFAULT_BURST: Rate = Rate {
    count: 50,
    period: Duration::from_secs(1),
};

/// One upstream service: its gRPC server (GraphQL) and its HTTP server (the REST facade).
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: &'static str,
    pub grpc_url: String,
    pub http_url: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `/metrics` and the health routes, never the public API (`ECOM_GATEWAY_OPS_PORT`).
    pub ops_port: u16,
    pub users: Upstream,
    pub products: Upstream,
    pub orders: Upstream,
    pub payments: Upstream,
    /// Per client in this process's memory, checked before the Redis budget
    /// (`ECOM_RATE_LIMIT_BURST`; `None` when `off`).
    pub burst_rate: Option<Rate>,
    /// Per client (user id, else IP) on every route (`ECOM_RATE_LIMIT_DEFAULT`).
    pub default_rate: Rate,
    /// Per (IP, e-mail) on logins (`ECOM_RATE_LIMIT_LOGIN`).
    pub login_rate: Rate,
    /// gRPC channels (HTTP/2 connections) per service: one caps throughput.
    pub grpc_channels: usize,
    /// Deadline of one upstream call (gRPC or HTTP).
    pub upstream_timeout: Duration,
    /// Deepest GraphQL selection accepted.
    pub graphql_max_depth: usize,
    /// Largest GraphQL complexity accepted (list fields count `limit` times their children).
    pub graphql_max_complexity: usize,
    /// Most fields (aliases included) in one GraphQL document.
    pub graphql_max_fields: usize,
    /// Largest GraphQL request body.
    pub graphql_max_body_bytes: usize,
    /// Anonymous catalogue queries answered from a cache keyed by the catalogue's version
    /// (`ECOM_GATEWAY_RESPONSE_CACHE`, and off with `ECOM_CACHE=off`).
    pub response_cache: bool,
    pub response_cache_ttl: Duration,
}

/// Where `service` is: `ECOM_<SERVICE>_GRPC_URL` and `_HTTP_URL`, by default on this host at
/// its ports in the platform's table.
fn upstream(env: &mut EnvReader, service: &'static Service) -> Upstream {
    let prefix = service.env_prefix();
    let grpc_url = env.string(
        &format!("{prefix}_GRPC_URL"),
        &service.local_grpc_url().unwrap_or_default(),
    );
    let http_url = env.string(&format!("{prefix}_HTTP_URL"), &service.local_http_url());
    for (key, url) in [("GRPC", &grpc_url), ("HTTP", &http_url)] {
        if url::Url::parse(url).is_err() {
            env.error(format!("{prefix}_{key}_URL is not a URL"));
        }
    }
    Upstream {
        name: service.name,
        grpc_url,
        http_url: http_url.trim_end_matches('/').to_owned(),
    }
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(EnvReader::from_process())
    }

    pub fn read(mut env: EnvReader) -> anyhow::Result<Self> {
        let common = CommonConfig::read(SERVICE, &mut env);
        let ops_port = env.parse(
            "ECOM_GATEWAY_OPS_PORT",
            SERVICE.ops_port.unwrap_or_default(),
        );
        let users = upstream(&mut env, &platform::USERS);
        let products = upstream(&mut env, &platform::PRODUCTS);
        let orders = upstream(&mut env, &platform::ORDERS);
        let payments = upstream(&mut env, &platform::PAYMENTS);
        let burst_rate = match env.raw("ECOM_RATE_LIMIT_BURST") {
            Some(v) if matches!(v.to_ascii_lowercase().as_str(), "0" | "off") => None,
            _ => Some(env.parse("ECOM_RATE_LIMIT_BURST", DEFAULT_BURST)),
        };
        if burst_rate.is_some_and(|r| r.period.as_nanos() < u128::from(r.count)) {
            env.error("ECOM_RATE_LIMIT_BURST is above one per nanosecond (write `off` for none)");
        }
        let default_rate = env.parse("ECOM_RATE_LIMIT_DEFAULT", Rate::per_minute(1200));
        let login_rate = env.parse("ECOM_RATE_LIMIT_LOGIN", Rate::per_minute(10));
        let grpc_channels: usize = env.parse("ECOM_GATEWAY_GRPC_CHANNELS", 4);
        if !(1..=64).contains(&grpc_channels) {
            env.error("ECOM_GATEWAY_GRPC_CHANNELS must be between 1 and 64");
        }
        let timeout_ms: u64 = env.parse("ECOM_UPSTREAM_TIMEOUT_MS", 10_000);
        if !(100..=120_000).contains(&timeout_ms) {
            env.error("ECOM_UPSTREAM_TIMEOUT_MS must be between 100 and 120000");
        }
        let graphql_max_depth = env.parse("ECOM_GRAPHQL_MAX_DEPTH", 8);
        let graphql_max_complexity = env.parse("ECOM_GRAPHQL_MAX_COMPLEXITY", 2000);
        let graphql_max_fields = env.parse("ECOM_GRAPHQL_MAX_FIELDS", 100);
        let graphql_max_body_bytes = env.parse("ECOM_GRAPHQL_MAX_BODY_BYTES", 32 * 1024);
        // `ECOM_CACHE=off` switches every cache off, this one included.
        let response_cache = env.parse("ECOM_GATEWAY_RESPONSE_CACHE", true) && common.cache;
        let cache_ttl: u64 = env.parse("ECOM_CACHE_TTL_SECONDS", 300);
        env.finish()?;
        Ok(Self {
            common,
            ops_port,
            users,
            products,
            orders,
            payments,
            burst_rate,
            default_rate,
            login_rate,
            grpc_channels,
            upstream_timeout: Duration::from_millis(timeout_ms),
            graphql_max_depth,
            graphql_max_complexity,
            graphql_max_fields,
            graphql_max_body_bytes,
            response_cache,
            response_cache_ttl: Duration::from_secs(cache_ttl),
        })
    }

    pub fn upstreams(&self) -> [&Upstream; 4] {
        [&self.users, &self.products, &self.orders, &self.payments]
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::read(EnvReader::from_map(map))
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = read(&[]).expect("defaults are valid");
        assert_eq!((c.common.http_port, c.ops_port), (8080, 9080));
        assert_eq!(c.default_rate, Rate::per_minute(1200));
        assert_eq!(c.burst_rate, Some(DEFAULT_BURST));
        assert_eq!(c.login_rate, Rate::per_minute(10));
        assert_eq!(c.products.grpc_url, "http://127.0.0.1:50052");
        assert_eq!(c.orders.http_url, "http://127.0.0.1:8003");
        assert_eq!(c.users.grpc_url, "http://127.0.0.1:50051");
        assert_eq!(c.payments.http_url, "http://127.0.0.1:8004");
    }

    #[test]
    fn the_burst_limit_takes_a_rate_or_off() {
        let rate = |v: &str| read(&[("ECOM_RATE_LIMIT_BURST", v)]).map(|c| c.burst_rate);
        assert_eq!(
            rate("5/second").expect("valid"),
            Some(Rate {
                count: 5,
                period: Duration::from_secs(1)
            })
        );
        assert_eq!(
            rate("300/minute").expect("valid"),
            Some(Rate::per_minute(300))
        );
        assert_eq!(rate("off").expect("valid"), None);
        assert_eq!(rate("OFF").expect("valid"), None);
        assert_eq!(rate("0").expect("valid"), None);
        for bad in ["0/second", "4000000000/second", "lots"] {
            let err = rate(bad).expect_err(bad);
            assert!(
                format!("{err:#}").contains("ECOM_RATE_LIMIT_BURST"),
                "{err:#}"
            );
        }
    }

    #[test]
    fn the_response_cache_is_off_with_every_cache() {
        let on = |vars: &[(&str, &str)]| read(vars).expect("valid").response_cache;
        assert!(on(&[]));
        assert!(!on(&[("ECOM_GATEWAY_RESPONSE_CACHE", "false")]));
        assert!(!on(&[("ECOM_CACHE", "off")]));
        assert!(!on(&[
            ("ECOM_CACHE", "off"),
            ("ECOM_GATEWAY_RESPONSE_CACHE", "true")
        ]));
    }

    #[test]
    fn bad_settings_are_all_reported() {
        let err = read(&[
            ("ECOM_RATE_LIMIT_DEFAULT", "lots"),
            ("ECOM_ORDERS_HTTP_URL", "not a url"),
            ("ECOM_GATEWAY_GRPC_CHANNELS", "0"),
        ])
        .expect_err("invalid");
        let text = format!("{err:#}");
        assert!(text.contains("ECOM_RATE_LIMIT_DEFAULT"), "{text}");
        assert!(text.contains("ECOM_ORDERS_HTTP_URL"), "{text}");
        assert!(text.contains("ECOM_GATEWAY_GRPC_CHANNELS"), "{text}");
    }
}
