//! Cache-aside in Redis with versioned keys, and single-flight loading.
//!
//! Each cached value lives under a key that embeds a version: one version per product, one for
//! all listing pages. A write bumps the versions it affects (`INCR`, O(1), no SCAN) after its
//! transaction commits. A reader fetches the version and the value in one round trip (a Lua
//! script), so a reader that loaded from the database before a write can only store its result
//! under the old version, which nobody reads any more: no stale value is served after a write
//! returns. Old entries simply expire.
//!
//! Redis down: reads fall through to PostgreSQL (counted as misses), writes skip the cache.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, PoisonError},
    time::Duration,
};

use ecom_shared::{metrics::Metrics, redis::Redis};
use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use prometheus_client::metrics::{counter::Counter, family::Family};

/// Returns the current version (or "0") and the value stored under `ARGV[1] .. version .. ARGV[2]`.
const GET_VERSIONED: &str = r"
local v = redis.call('GET', KEYS[1]) or '0'
return {v, redis.call('GET', ARGV[1] .. v .. ARGV[2])}
";

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct FillLabels {
    cache: &'static str,
}

/// A load in progress, awaited by every caller that missed the same key.
type Flight = Shared<BoxFuture<'static, Result<Option<String>, String>>>;

/// One cache namespace's key layout.
#[derive(Clone)]
pub struct Slot {
    pub name: &'static str,
    version_key: String,
    data_prefix: String,
    data_suffix: String,
}

pub struct Cache {
    redis: Arc<Redis>,
    metrics: Arc<Metrics>,
    ttl: Duration,
    script: redis::Script,
    flights: std::sync::Mutex<HashMap<String, Flight>>,
    /// Database loads made to fill the cache (single-flight makes N concurrent misses one load).
    fills: Family<FillLabels, Counter>,
}

impl Cache {
    pub fn new(redis: Arc<Redis>, metrics: Arc<Metrics>, ttl: Duration) -> Self {
        let fills = Family::<FillLabels, Counter>::default();
        metrics.register(
            "products_cache_fills",
            "database loads made on cache misses",
            fills.clone(),
        );
        Self {
            redis,
            metrics,
            ttl,
            script: redis::Script::new(GET_VERSIONED),
            flights: std::sync::Mutex::new(HashMap::new()),
            fills,
        }
    }

    pub fn product_slot(&self, id: i64) -> Slot {
        let id = id.to_string();
        Slot {
            name: "product",
            version_key: self.redis.key(&["products", "ver", "product", &id]),
            data_prefix: self.redis.key(&["products", "product", &id, ""]),
            data_suffix: String::new(),
        }
    }

    /// `fingerprint` identifies the page (its normalised query).
    pub fn listing_slot(&self, fingerprint: &str) -> Slot {
        Slot {
            name: "listing",
            version_key: self.redis.key(&["products", "ver", "listings"]),
            data_prefix: self.redis.key(&["products", "listing", ""]),
            data_suffix: format!(":{fingerprint}"),
        }
    }

    /// The cached JSON of `slot`, or `load`'s result (stored for the next reader). `load` returns
    /// `None` when there is nothing to cache (a 404 is cached as `null` by the caller instead).
    pub async fn get_or_load<F, Fut>(&self, slot: Slot, load: F) -> Result<Option<String>, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<String>, String>> + Send + 'static,
    {
        let version = match lookup(&self.redis, &self.script, &slot).await {
            Ok((_, Some(hit))) => {
                self.metrics.count_cache(slot.name, true);
                return Ok(Some(hit));
            }
            Ok((version, None)) => Some(version),
            Err(e) => {
                tracing::debug!(error = %e, "cache unavailable, reading through");
                None
            }
        };
        self.metrics.count_cache(slot.name, false);
        let data_key = version.map(|v| format!("{}{v}{}", slot.data_prefix, slot.data_suffix));
        let flight_key = data_key
            .clone()
            .unwrap_or_else(|| format!("nocache:{}{}", slot.data_prefix, slot.data_suffix));
        let shared = {
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            flights
                .entry(flight_key.clone())
                .or_insert_with(|| {
                    let fut = load();
                    let fills = self
                        .fills
                        .get_or_create(&FillLabels { cache: slot.name })
                        .clone();
                    let (redis, script, ttl) = (self.redis.clone(), self.script.clone(), self.ttl);
                    async move {
                        // A caller that missed just before the previous flight stored its
                        // value must not load again: look once more inside the flight.
                        if data_key.is_some()
                            && let Ok((_, Some(hit))) = lookup(&redis, &script, &slot).await
                        {
                            return Ok(Some(hit));
                        }
                        fills.inc();
                        let result = fut.await;
                        if let (Some(key), Ok(Some(json))) = (&data_key, &result) {
                            store(&redis, key, json, ttl).await;
                        }
                        result
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        let result = shared.clone().await;
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(&flight_key).is_some_and(|f| f.ptr_eq(&shared)) {
            flights.remove(&flight_key);
        }
        result
    }

    /// After a committed write: the products' cached values and every listing page are stale.
    pub async fn invalidate(&self, product_ids: &[i64]) {
        let mut pipe = redis::pipe();
        for id in product_ids {
            pipe.cmd("INCR")
                .arg(self.product_slot(*id).version_key)
                .ignore();
        }
        pipe.cmd("INCR")
            .arg(self.redis.key(&["products", "ver", "listings"]))
            .ignore();
        let result = async {
            let mut conn = self.redis.conn().await?;
            pipe.query_async::<()>(&mut conn).await
        };
        if let Err(e) = tokio::time::timeout(Duration::from_secs(2), result)
            .await
            .unwrap_or_else(|_| Err(redis::RedisError::from((redis::ErrorKind::Io, "timeout"))))
        {
            // Entries written before the outage expire within the TTL.
            tracing::warn!(error = %e, "cache invalidation failed");
        }
    }
}

async fn lookup(
    redis: &Redis,
    script: &redis::Script,
    slot: &Slot,
) -> redis::RedisResult<(String, Option<String>)> {
    let mut conn = redis.conn().await?;
    script
        .key(&slot.version_key)
        .arg(&slot.data_prefix)
        .arg(&slot.data_suffix)
        .invoke_async(&mut conn)
        .await
}

async fn store(redis: &Redis, key: &str, json: &str, ttl: Duration) {
    let Ok(mut conn) = redis.conn().await else {
        return;
    };
    let ttl = ttl.as_secs().max(1);
    let mut set = redis::cmd("SET");
    set.arg(key).arg(json).arg("EX").arg(ttl);
    if let Err(e) = set.query_async::<()>(&mut conn).await {
        tracing::debug!(error = %e, "cache store failed");
    }
}
