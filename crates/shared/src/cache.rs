//! Cache-aside with versioned keys, two levels (this process's memory, then Redis), and
//! single-flight loading.
//!
//! Every cached value lives under a key that embeds a version: one version per product, one for
//! all listing pages, both kept in Redis. A write bumps the versions it affects (`INCR`, O(1), no
//! SCAN) after its transaction commits. Every read first fetches the current version from Redis
//! (a few bytes), so it can only ever see a value stored under the newest version: no replica
//! serves a stale value after a write returns, and a reader that loaded from the database before
//! a write can only store its result under the old version, which nobody reads any more. Old
//! entries simply expire.
//!
//! A write that creates an entity may instead store it as the entity's first version
//! ([`Cache::store_new`]: version 1 and its value in one script, only while nothing has bumped
//! the version), so its first readers need not load it; any other write only bumps.
//!
//! The value itself comes from this process's memory when it holds that exact versioned key (the
//! hot path: one tiny Redis round trip, no copy of the body), else from Redis, else from the
//! database through a single flight per key (N concurrent misses make one load). Concurrent
//! readers of one version key share a `GET`, but only one sent after all of them arrived (see
//! [`VersionReads`]), so batching never weakens the guarantee above.
//!
//! Redis down: reads fall through to PostgreSQL (counted as misses), writes skip the cache. So
//! Redis is never the reason a read fails: the only error is the loader's own ([`LoadError`]).
//!
//! Switched off ([`Cache::enabled`], from `ECOM_CACHE=off`), every read calls its loader and
//! nothing is read from or kept in memory or Redis (nor counted in `cache_requests_total`);
//! writes still move the versions, so other processes sharing Redis with the cache on stay
//! exact.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, PoisonError, RwLock},
    time::{Duration, Instant},
};

use crate::{metrics::Metrics, redis::Redis};
use axum::body::Bytes;
use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use tokio::sync::oneshot;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct FillLabels {
    service: &'static str,
    cache: &'static str,
}

/// Why a value could be neither read from the cache nor loaded: the loader failed. (Redis
/// failures are never errors: the cache is read through, see the module docs.)
///
/// `Clone` because one load's outcome is handed to every caller waiting on its flight.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LoadError {
    /// The loader's source (e.g. `"database"`) cannot be reached: the caller's 503.
    #[error("{0} unavailable")]
    Unavailable(&'static str),
    /// Any other failure of the loader: the caller's 500.
    #[error(transparent)]
    Failed(Arc<dyn std::error::Error + Send + Sync>),
}

impl LoadError {
    /// Any other failure of the loader (a database error, a value that did not serialise...).
    pub fn failed(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Failed(Arc::from(cause.into()))
    }
}

/// A load in progress, awaited by every caller that missed the same key.
type Flight = Shared<BoxFuture<'static, Result<Option<Bytes>, LoadError>>>;

/// The catalogue's cache namespace and the collection whose version moves on every product
/// write (Products bumps it; the gateway keys its response cache on it).
pub const CATALOGUE_NAMESPACE: &str = "products";
pub const CATALOGUE_COLLECTION: &str = "listing";

/// How many entries this process keeps in memory before starting over.
const LOCAL_CAPACITY: usize = 10_000;

/// [`Cache::store_new`] in one round trip: KEYS[1] the version key, KEYS[2] the data key of
/// version 1, ARGV[1] the value, ARGV[2] its TTL in seconds. The value is stored as version 1
/// only if the version key does not exist (no write has bumped it); otherwise the version is
/// bumped, as an invalidation would. Answers 1 when stored.
const STORE_NEW: &str = r"
if redis.call('SET', KEYS[1], '1', 'NX') then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
  return 1
end
redis.call('INCR', KEYS[1])
return 0
";

/// One cache namespace's key layout.
#[derive(Clone)]
pub struct Slot {
    pub name: &'static str,
    version_key: String,
    data_prefix: String,
    data_suffix: String,
}

impl Slot {
    fn data_key(&self, version: &str) -> String {
        format!("{}{version}{}", self.data_prefix, self.data_suffix)
    }
}

/// Values by versioned key, in this process. A key's value never changes (a new version is a new
/// key), so there is nothing to invalidate here: entries only age out.
struct Local {
    entries: RwLock<HashMap<String, (Bytes, Instant)>>,
    ttl: Duration,
}

impl Local {
    fn get(&self, key: &str) -> Option<Bytes> {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v.clone())
    }

    fn put(&self, key: String, value: Bytes) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= LOCAL_CAPACITY {
            // Superseded versions accumulate: start over rather than track recency.
            entries.clear();
        }
        entries.insert(key, (value, Instant::now()));
    }
}

pub struct Cache {
    redis: Arc<Redis>,
    versions: Arc<VersionReads>,
    metrics: Arc<Metrics>,
    ttl: Duration,
    local: Arc<Local>,
    flights: std::sync::Mutex<HashMap<String, Flight>>,
    /// Database loads made to fill the cache (single-flight makes N concurrent misses one load).
    fills: Family<FillLabels, Counter>,
    store_new: redis::Script,
    /// `false`: every read goes to its loader (`ECOM_CACHE=off`).
    enabled: bool,
}

impl Cache {
    pub fn new(redis: Arc<Redis>, metrics: Arc<Metrics>, ttl: Duration) -> Self {
        let fills = Family::<FillLabels, Counter>::default();
        metrics.register(
            "cache_fills",
            "database loads made on cache misses",
            fills.clone(),
        );
        Self {
            redis,
            versions: Arc::new(VersionReads::default()),
            metrics,
            ttl,
            // Memory only bridges the time between versions; Redis holds the long TTL.
            local: Arc::new(Local {
                entries: RwLock::new(HashMap::new()),
                ttl: ttl.min(Duration::from_secs(60)),
            }),
            flights: std::sync::Mutex::new(HashMap::new()),
            fills,
            store_new: redis::Script::new(STORE_NEW),
            enabled: true,
        }
    }

    /// The cache switched on (the default) or off (`ECOM_CACHE=off`: every read calls its
    /// loader; invalidations are still sent).
    #[must_use]
    pub fn enabled(mut self, on: bool) -> Self {
        self.enabled = on;
        self
    }

    /// Whether reads are served from the cache at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    fn version_key(&self, namespace: &str, entity: &str, id: &str) -> String {
        self.redis.key(&[namespace, "ver", entity, id])
    }

    /// One entity (`namespace`/`entity`/`id`, e.g. `products`/`product`/`42`), with its own
    /// version: invalidated by [`Cache::invalidate`] naming it.
    pub fn entity_slot(&self, namespace: &str, entity: &'static str, id: i64) -> Slot {
        let id = id.to_string();
        Slot {
            name: entity,
            version_key: self.version_key(namespace, entity, &id),
            data_prefix: self.redis.key(&[namespace, entity, &id, ""]),
            data_suffix: String::new(),
        }
    }

    /// One member (e.g. a listing page, by `fingerprint`) of a collection sharing one version:
    /// invalidated all at once by [`Cache::invalidate`] naming the collection.
    pub fn collection_slot(
        &self,
        namespace: &str,
        collection: &'static str,
        fingerprint: &str,
    ) -> Slot {
        Slot {
            name: collection,
            version_key: self.version_key(namespace, collection, "all"),
            data_prefix: self.redis.key(&[namespace, collection, ""]),
            data_suffix: format!(":{fingerprint}"),
        }
    }

    /// The cached value of `slot`, or `load`'s result (stored for the next reader).
    pub async fn get_or_load<F, Fut>(&self, slot: Slot, load: F) -> Result<Option<Bytes>, LoadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<String>, LoadError>> + Send + 'static,
    {
        if !self.enabled {
            return Ok(load().await?.map(Bytes::from));
        }
        let data_key = self.current_key(&slot).await;
        if let Some(key) = &data_key
            && let Some(hit) = self.lookup(key).await
        {
            self.metrics.count_cache(slot.name, true);
            return Ok(Some(hit));
        }
        self.metrics.count_cache(slot.name, false);
        let flight_key = data_key
            .clone()
            .unwrap_or_else(|| format!("nocache:{}{}", slot.data_prefix, slot.data_suffix));
        let flight = self.join_flight(&flight_key, || self.fill(slot.name, data_key, load()));
        let result = flight.clone().await;
        self.land(&flight_key, &flight);
        result
    }

    /// The data key of `slot`'s current version; `None` when Redis cannot tell (read through).
    async fn current_key(&self, slot: &Slot) -> Option<String> {
        match self.versions.read(&self.redis, &slot.version_key).await {
            Ok(v) => Some(slot.data_key(&v)),
            Err(e) => {
                tracing::debug!(error = %e, "cache unavailable, reading through");
                None
            }
        }
    }

    /// The value under `key`: from this process's memory, else from Redis (then kept here).
    async fn lookup(&self, key: &str) -> Option<Bytes> {
        if let Some(hit) = self.local.get(key) {
            return Some(hit);
        }
        let hit = fetch(&self.redis, key).await.ok().flatten()?;
        self.local.put(key.to_owned(), hit.clone());
        Some(hit)
    }

    /// The flight in progress under `flight_key`, else a new one from `start` (called with the
    /// flights locked, so two callers never both start one).
    fn join_flight(&self, flight_key: &str, start: impl FnOnce() -> Flight) -> Flight {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        flights
            .entry(flight_key.to_owned())
            .or_insert_with(start)
            .clone()
    }

    /// One load after a miss of `cache`, its value stored under `data_key` (when Redis told the
    /// version) for the next readers.
    fn fill(
        &self,
        cache: &'static str,
        data_key: Option<String>,
        load: impl Future<Output = Result<Option<String>, LoadError>> + Send + 'static,
    ) -> Flight {
        let fills = self
            .fills
            .get_or_create(&FillLabels {
                service: self.metrics.service,
                cache,
            })
            .clone();
        let (redis, local, ttl) = (self.redis.clone(), self.local.clone(), self.ttl);
        async move {
            // A caller that missed just before the previous flight stored its
            // value must not load again: look once more inside the flight.
            if let Some(key) = &data_key
                && let Ok(Some(hit)) = fetch(&redis, key).await
            {
                return Ok(Some(hit));
            }
            fills.inc();
            let loaded = load.await?.map(Bytes::from);
            if let (Some(key), Some(value)) = (&data_key, &loaded) {
                store(&redis, key, value, ttl).await;
                local.put(key.clone(), value.clone());
            }
            Ok(loaded)
        }
        .boxed()
        .shared()
    }

    /// Forgets a finished flight, unless a newer one already took its key.
    fn land(&self, flight_key: &str, flight: &Flight) {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(flight_key).is_some_and(|f| f.ptr_eq(flight)) {
            flights.remove(flight_key);
        }
    }

    /// After a committed write that created the entity of `slot`: `value` (what a load would
    /// answer now) stored as the slot's first version, here and in Redis, so the first readers
    /// need not load it. Only if no write has moved the slot's version yet, checked and done in
    /// one script: else the version is bumped as [`Cache::invalidate`] would, and the next
    /// reader loads. So a reader never gets `value` after a later write: a later write either
    /// bumped the version before the script (which then stores nothing) or bumps it after. (A
    /// read before the entity existed, which may have cached its absence, used version 0.)
    pub async fn store_new(&self, slot: Slot, value: Bytes) {
        let data_key = slot.data_key("1");
        if !self.enabled {
            // Switched off here, maybe not on another replica: do what an invalidation does (an
            // absence read and cached there before the entity existed must not be served).
            let bump = async {
                let mut conn = self.redis.conn().await?;
                redis::cmd("INCR")
                    .arg(&slot.version_key)
                    .query_async::<()>(&mut conn)
                    .await
            };
            if !matches!(
                tokio::time::timeout(Duration::from_secs(2), bump).await,
                Ok(Ok(()))
            ) {
                tracing::warn!("cache invalidation of a new entry failed");
            }
            return;
        }
        let mut invocation = self.store_new.key(&slot.version_key);
        invocation
            .key(&data_key)
            .arg(value.as_ref())
            .arg(self.ttl.as_secs().max(1));
        let result = async {
            let mut conn = self.redis.conn().await?;
            invocation.invoke_async::<i64>(&mut conn).await
        };
        match tokio::time::timeout(Duration::from_secs(2), result).await {
            Ok(Ok(1)) => self.local.put(data_key, value),
            Ok(Ok(_)) => {}
            // As a failed invalidation: entries written before the outage expire within the TTL.
            Ok(Err(e)) => tracing::warn!(error = %e, "cache store of a new entry failed"),
            Err(_) => tracing::warn!("cache store of a new entry timed out"),
        }
    }

    /// After a committed write: these entities' cached values, and every member of these
    /// collections, are stale. O(1) per name: one `INCR` each, in one round trip.
    pub async fn invalidate(
        &self,
        namespace: &str,
        entities: &[(&str, i64)],
        collections: &[&str],
    ) {
        let mut pipe = redis::pipe();
        for (entity, id) in entities {
            pipe.cmd("INCR")
                .arg(self.version_key(namespace, entity, &id.to_string()))
                .ignore();
        }
        for collection in collections {
            pipe.cmd("INCR")
                .arg(self.version_key(namespace, collection, "all"))
                .ignore();
        }
        let result = async {
            let mut conn = self.redis.conn().await?;
            pipe.query_async::<()>(&mut conn).await
        };
        match tokio::time::timeout(Duration::from_secs(2), result).await {
            Ok(Ok(())) => {}
            // Entries written before the outage expire within the TTL.
            Ok(Err(e)) => tracing::warn!(error = %e, "cache invalidation failed"),
            Err(_) => tracing::warn!("cache invalidation timed out"),
        }
    }
}

/// Why a version could not be read (the caller then reads through, uncached).
#[derive(Clone, Debug, thiserror::Error)]
enum VersionError {
    /// Shared by the whole batch (`RedisError` is not `Clone`).
    #[error(transparent)]
    Redis(Arc<redis::RedisError>),
    /// The task reading the batch's version ended without answering.
    #[error("version read abandoned")]
    Abandoned,
}

/// Someone waiting for a version.
type Waiter = oneshot::Sender<Result<String, VersionError>>;

/// Version reads, batched per key without ever serving a stale version.
///
/// Under load many requests want the same version key at once. Each request joins the *next*
/// `GET` of its key, never one already in flight: a batch's `GET` is sent only after every member
/// arrived, so it sees every write that completed before any member's request began, exactly as
/// one `GET` per request would. While a `GET` runs, new arrivals gather for the following one.
#[derive(Default)]
struct VersionReads {
    batches: std::sync::Mutex<HashMap<String, Vec<Waiter>>>,
}

impl VersionReads {
    /// The key's current version ("0" before the first write).
    async fn read(self: &Arc<Self>, redis: &Arc<Redis>, key: &str) -> Result<String, VersionError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
            match batches.get_mut(key) {
                // A reader is running for this key: wait for the next round.
                Some(waiting) => {
                    waiting.push(tx);
                    false
                }
                None => {
                    batches.insert(key.to_owned(), vec![tx]);
                    true
                }
            }
        };
        if start {
            tokio::spawn(self.clone().drive(redis.clone(), key.to_owned()));
        }
        rx.await.unwrap_or(Err(VersionError::Abandoned))
    }

    /// Serves rounds of waiters for `key` until a round finds nobody waiting.
    async fn drive(self: Arc<Self>, redis: Arc<Redis>, key: String) {
        loop {
            let round = {
                let mut batches = self.batches.lock().unwrap_or_else(PoisonError::into_inner);
                match batches.get_mut(&key) {
                    Some(waiting) if !waiting.is_empty() => std::mem::take(waiting),
                    _ => {
                        batches.remove(&key);
                        return;
                    }
                }
            };
            // Every member of `round` arrived before this GET is sent.
            let result = version(&redis, &key)
                .await
                .map_err(|e| VersionError::Redis(Arc::new(e)));
            for waiter in round {
                let _ = waiter.send(result.clone());
            }
        }
    }
}

async fn version(redis: &Redis, key: &str) -> redis::RedisResult<String> {
    let mut conn = redis.conn().await?;
    let v: Option<String> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
    Ok(v.unwrap_or_else(|| "0".to_owned()))
}

async fn fetch(redis: &Redis, key: &str) -> redis::RedisResult<Option<Bytes>> {
    let mut conn = redis.conn().await?;
    let v: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
    Ok(v.map(Bytes::from))
}

async fn store(redis: &Redis, key: &str, value: &Bytes, ttl: Duration) {
    let Ok(mut conn) = redis.conn().await else {
        return;
    };
    let mut set = redis::cmd("SET");
    set.arg(key)
        .arg(value.as_ref())
        .arg("EX")
        .arg(ttl.as_secs().max(1));
    if let Err(e) = set.query_async::<()>(&mut conn).await {
        tracing::debug!(error = %e, "cache store failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn redis() -> Arc<Redis> {
        Redis::for_test()
    }

    fn cache(redis: Arc<Redis>) -> Cache {
        Cache::new(redis, Metrics::new("test"), Duration::from_secs(60))
    }

    /// A loader's error reaches its caller as the loader typed it, and is not cached.
    #[tokio::test]
    async fn a_loaders_error_reaches_the_caller_typed() {
        let cache = cache(redis());
        let slot = cache.entity_slot("test", "thing", 1);
        let down = cache
            .get_or_load(slot.clone(), || async {
                Err(LoadError::Unavailable("database"))
            })
            .await;
        assert!(
            matches!(down, Err(LoadError::Unavailable("database"))),
            "{down:?}"
        );
        let failed = cache
            .get_or_load(slot.clone(), || async {
                Err(LoadError::failed("no such row"))
            })
            .await;
        assert!(
            matches!(&failed, Err(LoadError::Failed(cause)) if cause.to_string() == "no such row"),
            "{failed:?}"
        );
        let loaded = cache
            .get_or_load(slot, || async { Ok(Some("1".to_owned())) })
            .await;
        assert_eq!(loaded.expect("loads"), Some(Bytes::from_static(b"1")));
    }

    /// Redis down is no error: the value is loaded through (and not stored).
    #[tokio::test]
    async fn without_redis_values_are_loaded_through() {
        let nowhere = Arc::new(Redis::new("redis://127.0.0.1:1", "test").expect("url"));
        let cache = cache(nowhere);
        for _ in 0..2 {
            let loaded = cache
                .get_or_load(cache.entity_slot("test", "thing", 1), || async {
                    Ok(Some("fresh".to_owned()))
                })
                .await;
            assert_eq!(loaded.expect("loads"), Some(Bytes::from_static(b"fresh")));
        }
    }

    /// A new entity's value is served without a load, unless a write bumped its version first;
    /// a write after it is never hidden by it.
    #[tokio::test]
    async fn a_new_entry_is_served_until_a_write_and_never_over_one() {
        let cache = cache(redis());
        let fresh = || async { Ok(Some("loaded".to_owned())) };
        let unused = || async { Err(LoadError::failed("the stored value was not served")) };
        // Read before it existed: its absence cached under version 0.
        let absent = cache.entity_slot("test", "thing", 1);
        cache
            .get_or_load(absent.clone(), || async { Ok(Some("null".to_owned())) })
            .await
            .expect("absent");
        cache
            .store_new(absent.clone(), Bytes::from_static(b"new"))
            .await;
        let got = cache.get_or_load(absent.clone(), unused).await;
        assert_eq!(got.expect("stored"), Some(Bytes::from_static(b"new")));
        cache.invalidate("test", &[("thing", 1)], &[]).await;
        let got = cache.get_or_load(absent, fresh).await;
        assert_eq!(got.expect("reloaded"), Some(Bytes::from_static(b"loaded")));

        // A write between the creation and its store: nothing stored, the next reader loads.
        let raced = cache.entity_slot("test", "thing", 2);
        cache.invalidate("test", &[("thing", 2)], &[]).await;
        cache
            .store_new(raced.clone(), Bytes::from_static(b"stale"))
            .await;
        let got = cache.get_or_load(raced.clone(), fresh).await;
        assert_eq!(got.expect("loaded"), Some(Bytes::from_static(b"loaded")));
        // ...and what was loaded is what another process (nothing in its memory) reads too.
        let other = Cache::new(
            cache.redis.clone(),
            Metrics::new("test"),
            Duration::from_secs(60),
        );
        let got = other.get_or_load(raced, unused).await;
        assert_eq!(got.expect("cached"), Some(Bytes::from_static(b"loaded")));
    }

    /// Switched off, every read is its loader's answer: nothing kept, nothing counted, even
    /// with Redis up.
    #[tokio::test]
    async fn switched_off_every_read_calls_the_loader() {
        let metrics = Metrics::new("test");
        let cache = Cache::new(redis(), metrics.clone(), Duration::from_secs(60)).enabled(false);
        assert!(!cache.is_enabled());
        for round in 0..3 {
            let value = format!("v{round}");
            let loaded = cache
                .get_or_load(cache.entity_slot("test", "thing", 1), || async move {
                    Ok(Some(value))
                })
                .await;
            assert_eq!(
                loaded.expect("loads"),
                Some(Bytes::from(format!("v{round}")))
            );
        }
        let text = metrics.encode();
        assert!(!text.contains("cache_requests_total{"), "{text}");
    }

    /// The batching must never hand a reader a version read that began before the reader did:
    /// under a constant load of concurrent reads, every read that starts after a write returned
    /// sees that write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batched_version_reads_never_miss_a_completed_write() {
        let redis = redis();
        let reads = Arc::new(VersionReads::default());
        let key = redis.key(&["ver", "hot"]);
        let stop = Arc::new(AtomicBool::new(false));
        let load: Vec<_> = (0..32)
            .map(|_| {
                let (redis, reads, key, stop) =
                    (redis.clone(), reads.clone(), key.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        reads.read(&redis, &key).await.expect("read");
                    }
                })
            })
            .collect();
        let mut conn = redis.conn().await.expect("conn");
        for _ in 0..300 {
            let written: i64 = redis::cmd("INCR")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("incr");
            let seen: i64 = reads
                .read(&redis, &key)
                .await
                .expect("read")
                .parse()
                .expect("number");
            assert!(
                seen >= written,
                "read {seen} after write {written} returned"
            );
        }
        stop.store(true, Ordering::Relaxed);
        for task in load {
            task.await.expect("load task");
        }
    }
}
