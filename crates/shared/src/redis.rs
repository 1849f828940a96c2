//! A lazily connected, self-healing Redis handle. The service starts (and reports itself not
//! ready) when Redis is down, and reconnects when it comes back.

use std::time::Duration;

use redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::OnceCell;

pub struct Redis {
    client: Client,
    conn: OnceCell<ConnectionManager>,
    prefix: String,
}

impl Redis {
    pub fn new(url: &str, prefix: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: Client::open(url)?,
            conn: OnceCell::new(),
            prefix: prefix.to_owned(),
        })
    }

    /// A connection (a cheap clone of the shared multiplexed one).
    pub async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        self.conn
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(1)))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await
            .cloned()
    }

    /// The test server (`ECOM_TEST_REDIS_URL`, else the local default) under a fresh prefix.
    #[cfg(test)]
    pub(crate) fn for_test() -> std::sync::Arc<Self> {
        let url = std::env::var("ECOM_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        std::sync::Arc::new(
            Self::new(&url, &format!("test-{}", uuid::Uuid::new_v4())).expect("redis"),
        )
    }

    /// `<prefix>:<part>:<part>...`: every key this process writes.
    pub fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push(':');
            k.push_str(p);
        }
        k
    }

    /// PING with a timeout: the readiness probe's Redis check.
    pub async fn ping(&self) -> bool {
        let probe = async {
            let mut c = self.conn().await?;
            redis::cmd("PING").query_async::<String>(&mut c).await
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), probe).await,
            Ok(Ok(_))
        )
    }
}
