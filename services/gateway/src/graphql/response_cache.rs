//! The response cache of anonymous catalogue queries, shared by every replica.
//!
//! Answers live in the catalogue's versioned collection of the shared cache (`ecom_shared::cache`):
//! every product write moves its version, so no answer outlives the catalogue it was computed
//! from. Concurrent misses of one query run it once (single flight), and only clean answers (200,
//! no errors) are kept. Request bodies already analysed are remembered by fingerprint
//! ([`KnownQueries`]), so a query seen before is answered without being parsed again.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError, RwLock},
};

use axum::{body::Bytes, http::StatusCode};
use ecom_shared::cache::{CATALOGUE_COLLECTION, CATALOGUE_NAMESPACE, Cache, LoadError};

use super::analysis::{BodyFingerprint, CacheKey};

/// One executed request, ready to send.
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<u64>,
    pub body: Bytes,
    /// No errors at all: safe to keep in the response cache.
    pub clean: bool,
}

impl Answer {
    /// An answer from the cache: only clean 200s are kept.
    fn kept(body: Bytes) -> Self {
        Self {
            status: StatusCode::OK,
            retry_after: None,
            body,
            clean: true,
        }
    }

    fn is_for_keeping(&self) -> bool {
        self.clean && self.status == StatusCode::OK
    }
}

/// Fingerprints of request bodies known to be anonymous-cacheable catalogue queries (already
/// parsed and checked once), each with its [`CacheKey`]: their cache hits skip parsing
/// altogether.
#[derive(Default)]
pub struct KnownQueries(RwLock<HashMap<BodyFingerprint, CacheKey>>);

/// How many fingerprints are remembered before starting over.
const KNOWN_QUERIES: usize = 10_000;

impl KnownQueries {
    pub fn get(&self, fingerprint: &BodyFingerprint) -> Option<CacheKey> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(fingerprint)
            .copied()
    }

    pub fn insert(&self, fingerprint: BodyFingerprint, key: CacheKey) {
        let mut known = self.0.write().unwrap_or_else(PoisonError::into_inner);
        if known.len() >= KNOWN_QUERIES {
            known.clear();
        }
        known.insert(fingerprint, key);
    }
}

/// The answer to the query cached under `key`; on a miss, `run`'s answer, computed once for
/// every concurrent caller of `key` (single flight) and kept when clean. A caller that waited on
/// a flight whose answer was not kept (an error) runs `run` itself.
pub async fn get_or_run<F, Fut>(cache: &Cache, key: &CacheKey, run: F) -> Answer
where
    F: Fn() -> Fut,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let slot = cache.collection_slot(
        CATALOGUE_NAMESPACE,
        CATALOGUE_COLLECTION,
        &format!("gql-{key}"),
    );
    // The answer this caller computed itself, leading the flight, when it was not for keeping:
    // sent as is, never computed twice.
    let unkept: Arc<Mutex<Option<Answer>>> = Arc::default();
    let loaded = cache
        .get_or_load(slot, || {
            let (answer, unkept) = (run(), unkept.clone());
            async move {
                let answer = answer.await;
                if answer.is_for_keeping() {
                    return Ok(Some(String::from_utf8_lossy(&answer.body).into_owned()));
                }
                *unkept.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
                Ok::<_, LoadError>(None)
            }
        })
        .await;
    if let Ok(Some(body)) = loaded {
        return Answer::kept(body);
    }
    let own = unkept.lock().unwrap_or_else(PoisonError::into_inner).take();
    match own {
        Some(answer) => answer,
        // Another caller led the flight and its answer was not kept: compute ours.
        None => run().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn known_queries_start_over_when_full() {
        let known = KnownQueries::default();
        let fingerprint = |i: usize| BodyFingerprint::of(&i.to_le_bytes());
        let key = CacheKey::of(&async_graphql::Request::new("{ products { id } }"));
        for i in 0..KNOWN_QUERIES {
            known.insert(fingerprint(i), key);
        }
        assert_eq!(known.get(&fingerprint(0)), Some(key));
        known.insert(fingerprint(KNOWN_QUERIES), key);
        assert_eq!(known.get(&fingerprint(0)), None);
        assert_eq!(known.get(&fingerprint(KNOWN_QUERIES)), Some(key));
    }

    fn answer(status: StatusCode, clean: bool) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: Bytes::from_static(b"{}"),
            clean,
        }
    }

    #[test]
    fn only_clean_successes_are_kept() {
        assert!(answer(StatusCode::OK, true).is_for_keeping());
        assert!(!answer(StatusCode::OK, false).is_for_keeping());
        assert!(!answer(StatusCode::SERVICE_UNAVAILABLE, true).is_for_keeping());
    }

    /// Without Redis nothing is kept, and each caller's answer is computed once: the leader's
    /// own answer is sent, not computed again.
    #[tokio::test]
    async fn an_answer_not_kept_is_computed_once_per_caller() {
        let redis =
            Arc::new(ecom_shared::redis::Redis::new("redis://127.0.0.1:1", "test").expect("url"));
        let cache = Cache::new(
            redis,
            ecom_shared::metrics::Metrics::new("test"),
            std::time::Duration::from_secs(60),
        );
        let key = CacheKey::of(&async_graphql::Request::new("{ products { id } }"));
        let runs = Arc::new(AtomicUsize::new(0));
        let run = || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                answer(StatusCode::SERVICE_UNAVAILABLE, false)
            }
        };
        let got = get_or_run(&cache, &key, run).await;
        assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }
}
