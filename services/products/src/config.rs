//! The Products service's configuration: the shared settings plus its own.

use std::time::Duration;

use ecom_shared::{
    config::{CommonConfig, EnvReader},
    platform::{self, Service},
};

/// This service's row of the platform's table (its default ports).
pub const SERVICE: &Service = &platform::PRODUCTS;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// One currency per deployment.
    pub currency: String,
    /// Lifetime of every stock reservation (callers cannot choose another).
    pub reservation_ttl: Duration,
    /// How often the sweeper looks for expired reservations.
    pub sweep_interval: Duration,
    /// Lifetime of cached products and listing pages.
    pub cache_ttl: Duration,
    /// Seed the demo catalogue when the catalogue is empty (`ecomctl up` turns this on).
    pub seed_demo: bool,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(EnvReader::from_process())
    }

    pub fn read(mut env: EnvReader) -> anyhow::Result<Self> {
        let common = CommonConfig::read(SERVICE, &mut env);
        let currency = env.string("ECOM_CURRENCY", "USD").to_ascii_uppercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            env.error("ECOM_CURRENCY must be a three-letter ISO 4217 code");
        }
        let ttl: u64 = env.parse("ECOM_RESERVATION_TTL_SECONDS", 900);
        if !(1..=86_400).contains(&ttl) {
            env.error("ECOM_RESERVATION_TTL_SECONDS must be between 1 and 86400");
        }
        let sweep_ms: u64 = env.parse("ECOM_RESERVATION_SWEEP_MS", 1000);
        if !(50..=600_000).contains(&sweep_ms) {
            env.error("ECOM_RESERVATION_SWEEP_MS must be between 50 and 600000");
        }
        let cache_ttl: u64 = env.parse("ECOM_CACHE_TTL_SECONDS", 300);
        if !(1..=86_400).contains(&cache_ttl) {
            env.error("ECOM_CACHE_TTL_SECONDS must be between 1 and 86400");
        }
        let seed_demo = env.parse("ECOM_SEED_DEMO", false);
        env.finish()?;
        Ok(Self {
            common,
            currency,
            reservation_ttl: Duration::from_secs(ttl),
            sweep_interval: Duration::from_millis(sweep_ms),
            cache_ttl: Duration::from_secs(cache_ttl),
            seed_demo,
        })
    }
}
