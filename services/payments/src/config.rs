//! The Payments service's configuration: the shared settings plus its own.

use std::time::Duration;

use ecom_shared::{
    config::{CommonConfig, EnvReader},
    platform::{self, Service},
};

/// This service's row of the platform's table (its default ports).
pub const SERVICE: &Service = &platform::PAYMENTS;

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// The Orders gRPC server (order amounts, MarkPaid, MarkRefunded).
    pub orders_grpc_url: String,
    /// Simulated processor latency per charge (`ECOM_PAYMENTS_LATENCY_MS`, default 0).
    pub processor_latency: Duration,
    /// How often the outbox relay looks for undelivered events.
    pub relay_interval: Duration,
    /// A fresh event is left to the request that wrote it for this long before the relay
    /// takes over.
    pub relay_grace: Duration,
    /// A payment still `processing` after this long was interrupted (the process died while
    /// charging) and is settled as failed.
    pub stuck_after: Duration,
    /// Test-only fault injection (`ECOM_FAULT=payments.after_commit`: the process exits right
    /// after a succeeded payment's transaction commits, before Orders hears of it). Refused in
    /// production.
    pub fault: Option<String>,
}

impl Config {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::read(EnvReader::from_process())
    }

    pub fn read(mut env: EnvReader) -> anyhow::Result<Self> {
        let common = CommonConfig::read(SERVICE, &mut env);
        let orders_grpc_url = env.string(
            "ECOM_ORDERS_GRPC_URL",
            &platform::ORDERS.local_grpc_url().unwrap_or_default(),
        );
        if url::Url::parse(&orders_grpc_url).is_err() {
            env.error("ECOM_ORDERS_GRPC_URL is not a URL");
        }
        let latency: u64 = env.parse("ECOM_PAYMENTS_LATENCY_MS", 0);
        if latency > 30_000 {
            env.error("ECOM_PAYMENTS_LATENCY_MS must be at most 30000");
        }
        let relay_ms: u64 = env.parse("ECOM_OUTBOX_POLL_MS", 500);
        if !(10..=60_000).contains(&relay_ms) {
            env.error("ECOM_OUTBOX_POLL_MS must be between 10 and 60000");
        }
        let grace_ms: u64 = env.parse("ECOM_OUTBOX_GRACE_MS", 5000);
        if grace_ms > 600_000 {
            env.error("ECOM_OUTBOX_GRACE_MS must be at most 600000");
        }
        let stuck: u64 = env.parse("ECOM_PAYMENT_STUCK_SECONDS", 120);
        if !(1..=86_400).contains(&stuck) || stuck * 1000 <= latency {
            env.error(
                "ECOM_PAYMENT_STUCK_SECONDS must be between 1 and 86400 and longer than the processor latency",
            );
        }
        let fault = env.raw("ECOM_FAULT");
        if fault.is_some() && common.env.is_production() {
            env.error("ECOM_FAULT is for tests and is refused when ECOM_ENV=production");
        }
        env.finish()?;
        Ok(Self {
            common,
            orders_grpc_url,
            processor_latency: Duration::from_millis(latency),
            relay_interval: Duration::from_millis(relay_ms),
            relay_grace: Duration::from_millis(grace_ms),
            stuck_after: Duration::from_secs(stuck),
            fault,
        })
    }
}
