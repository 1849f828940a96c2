//! The Orders service's configuration: the shared settings plus its own.

use std::time::Duration;

use ecom_shared::{
    config::{CommonConfig, EnvReader},
    platform::{self, Service},
};

/// This service's row of the platform's table (its default ports).
pub const SERVICE: &Service = &platform::ORDERS;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// The Products gRPC server (stock and prices).
    pub products_grpc_url: String,
    /// An unpaid order older than this is cancelled (its reservation has the same lifetime).
    pub reservation_ttl: Duration,
    /// How often the sweeper looks for expired unpaid orders.
    pub sweep_interval: Duration,
    pub cache_ttl: Duration,
    /// Test-only fault injection (`ECOM_FAULT=orders.after_reserve`: fail every checkout right
    /// after its stock is reserved; `orders.exit_after_reserve`: exit the process there).
    /// Refused in production.
    pub fault: Option<String>,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(EnvReader::from_process())
    }

    pub fn read(mut env: EnvReader) -> anyhow::Result<Self> {
        let common = CommonConfig::read(SERVICE, &mut env);
        let products_grpc_url = env.string(
            "ECOM_PRODUCTS_GRPC_URL",
            &platform::PRODUCTS.local_grpc_url().unwrap_or_default(),
        );
        if url::Url::parse(&products_grpc_url).is_err() {
            env.error("ECOM_PRODUCTS_GRPC_URL is not a URL");
        }
        let ttl: u64 = env.parse("ECOM_RESERVATION_TTL_SECONDS", 900);
        if !(1..=86_400).contains(&ttl) {
            env.error("ECOM_RESERVATION_TTL_SECONDS must be between 1 and 86400");
        }
        let sweep_ms: u64 = env.parse("ECOM_ORDER_SWEEP_MS", 5000);
        if !(50..=600_000).contains(&sweep_ms) {
            env.error("ECOM_ORDER_SWEEP_MS must be between 50 and 600000");
        }
        let cache_ttl: u64 = env.parse("ECOM_CACHE_TTL_SECONDS", 300);
        if !(1..=86_400).contains(&cache_ttl) {
            env.error("ECOM_CACHE_TTL_SECONDS must be between 1 and 86400");
        }
        let fault = env.raw("ECOM_FAULT");
        if fault.is_some() && common.env.is_production() {
            env.error("ECOM_FAULT is for tests and is refused when ECOM_ENV=production");
        }
        env.finish()?;
        Ok(Self {
            common,
            products_grpc_url,
            reservation_ttl: Duration::from_secs(ttl),
            sweep_interval: Duration::from_millis(sweep_ms),
            cache_ttl: Duration::from_secs(cache_ttl),
            fault,
        })
    }
}
