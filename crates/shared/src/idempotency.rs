//! Stripe-style `Idempotency-Key`s: the header, its syntax, and the one mechanism every service
//! that takes keys uses (Orders' checkout, Payments' charge).
//!
//! A client sends the same key again with a retried request, and the service answers what the
//! first request answered instead of doing the work twice. Each service keeps its keys in its own
//! table, scoped per user: `(user_id, key)` under a unique constraint, a hash of the request, the
//! id of what the request made (its *answer*: an order, a payment), when the current holder
//! claimed the key (`locked_at`) and when the key was created. The SQL is the service's (its
//! repository implements [`KeyStore`]); the behaviour is this module's ([`Idempotency::claim`]):
//!
//! 1. **Claim**: the key is inserted with the request hash. The unique constraint lets exactly
//!    one of any number of concurrent requests win; the winner runs the request holding the key,
//!    and records its answer on the key in the same unit of work as the effect.
//! 2. **Replay**: a key that has its answer, under the same hash, answers it again (the same
//!    resource, 200 instead of 201).
//! 3. **Conflict**: the same key with another hash is `idempotency_conflict` (409), whatever the
//!    key's state.
//! 4. **Wait**: the same hash while the first request still runs waits for its answer, polling
//!    every 25 ms for up to [`WAIT`], then replays it. Still running after that:
//!    `idempotency_key_in_use` (409, retry shortly). [`WAIT`] is below the gateway's upstream
//!    timeout (10 s), so a waiting duplicate gets that answer rather than a gateway timeout.
//! 5. **Take-over**: a key claimed but unanswered for longer than the service's *lease* (longer
//!    than any live request holds a key, so its holder died) is taken over by the next duplicate,
//!    which runs the request itself. The take-over is a compare-and-set on `locked_at`, so of
//!    several duplicates one wins and the others wait for it.
//! 6. **Release**: a request that fails gives its key back (deletes it while it is still its own
//!    claim and unanswered), so the client's retry runs again.
//! 7. Keys live 24 hours ([`LIFETIME_HOURS`]): an older key met again is deleted and claimed
//!    afresh, and each service's housekeeping purges them.

use std::{future::Future, time::Duration};

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};

use crate::FieldError;

/// The request header carrying the key.
pub const HEADER: &str = "idempotency-key";

/// How long a duplicate waits for the request holding its key to answer.
pub const WAIT: Duration = Duration::from_secs(5);
/// How often a waiting duplicate looks again.
const POLL: Duration = Duration::from_millis(25);
/// How long a key is kept (each service's housekeeping deletes older ones).
pub const LIFETIME_HOURS: i64 = 24;

/// The raw header value, if sent. A value that is not visible ASCII comes back as one that
/// [`IdempotencyKey::parse`] refuses, so it is a 422 and never silently ignored.
pub fn header(headers: &HeaderMap) -> Option<&str> {
    headers.get(HEADER).map(|v| v.to_str().unwrap_or("\u{0}"))
}

/// An idempotency key: 1..=255 visible ASCII characters (surrounding spaces trimmed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let k = raw.trim();
        if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(FieldError::new(
                "Idempotency-Key",
                "must be 1 to 255 visible ASCII characters",
            ));
        }
        Ok(Self(k.to_owned()))
    }

    /// The key of a request that may carry one (`None`: it carries none).
    pub fn parse_optional(raw: Option<&str>) -> Result<Option<Self>, FieldError> {
        raw.map(Self::parse).transpose()
    }

    /// The `Idempotency-Key` header's key, if the header was sent.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, FieldError> {
        Self::parse_optional(header(headers))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A key as its table holds it (see [`KeyStore::lookup`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredKey {
    pub request_hash: Vec<u8>,
    /// The id of what the request made, once it has answered.
    pub answer: Option<i64>,
    /// When the current holder claimed the key.
    pub locked_at: DateTime<Utc>,
    /// Unanswered and claimed longer ago than the lease: its holder died.
    pub abandoned: bool,
    /// Older than [`LIFETIME_HOURS`].
    pub expired: bool,
}

/// A service's key table, as the mechanism needs it. Each statement is one of the repository's,
/// so it is checked at compile time against that service's own table. Timestamps are the
/// database's (`now()`), never a replica's clock.
pub trait KeyStore: Send + Sync {
    /// Inserts `(user_id, key)` with `hash` unless the key exists (`ON CONFLICT DO NOTHING`):
    /// the new claim's `locked_at`, or `None` when the key was there.
    fn insert(
        &self,
        user_id: i64,
        key: &IdempotencyKey,
        hash: &[u8],
    ) -> impl Future<Output = sqlx::Result<Option<DateTime<Utc>>>> + Send;

    /// The key, with `abandoned` meaning "unanswered and `locked_at` older than `lease`".
    fn lookup(
        &self,
        user_id: i64,
        key: &IdempotencyKey,
        lease: Duration,
    ) -> impl Future<Output = sqlx::Result<Option<StoredKey>>> + Send;

    /// Moves an unanswered claim whose `locked_at` is still `seen` to the caller (`locked_at =
    /// now()`): the new `locked_at`, or `None` when someone else moved it first.
    fn take_over(
        &self,
        user_id: i64,
        key: &IdempotencyKey,
        seen: DateTime<Utc>,
    ) -> impl Future<Output = sqlx::Result<Option<DateTime<Utc>>>> + Send;

    /// Deletes the key if it is unanswered and its `locked_at` is still `locked_at` (a failed
    /// request gives back its own claim, never one that was taken over from it).
    fn release(
        &self,
        user_id: i64,
        key: &IdempotencyKey,
        locked_at: DateTime<Utc>,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;

    /// Deletes the key if it is older than [`LIFETIME_HOURS`].
    fn delete_expired(
        &self,
        user_id: i64,
        key: &IdempotencyKey,
    ) -> impl Future<Output = sqlx::Result<()>> + Send;
}

/// Implements [`KeyStore`] for `$store` (a tuple struct around a `PgPool`) over the service's
/// `idempotency_keys` table, whose `$answer` column holds the id of what the request made.
/// The statements are the service's own `sqlx::query!`s, checked at compile time against its
/// database and kept in its `.sqlx/`; only the answer column's name differs between services.
#[macro_export]
macro_rules! key_store {
    ($store:ty, answer = $answer:tt) => {
        impl $crate::idempotency::KeyStore for $store {
            async fn insert(
                &self,
                user_id: i64,
                key: &$crate::idempotency::IdempotencyKey,
                hash: &[u8],
            ) -> $crate::reexports::sqlx::Result<Option<::chrono::DateTime<::chrono::Utc>>> {
                $crate::reexports::sqlx::query_scalar!(
                    "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ($1, $2, $3)
                     ON CONFLICT (user_id, key) DO NOTHING RETURNING locked_at",
                    user_id,
                    key.as_str(),
                    hash
                )
                .fetch_optional(&self.0)
                .await
            }

            async fn lookup(
                &self,
                user_id: i64,
                key: &$crate::idempotency::IdempotencyKey,
                lease: ::std::time::Duration,
            ) -> $crate::reexports::sqlx::Result<Option<$crate::idempotency::StoredKey>> {
                $crate::reexports::sqlx::query_as!(
                    $crate::idempotency::StoredKey,
                    "SELECT request_hash, " + $answer + " AS answer, locked_at, "
                        + $answer + r#" IS NULL
                               AND locked_at < now() - make_interval(secs => $3) AS "abandoned!",
                           created_at < now() - interval '24 hours' AS "expired!"
                      FROM idempotency_keys WHERE user_id = $1 AND key = $2"#,
                    user_id,
                    key.as_str(),
                    lease.as_secs_f64()
                )
                .fetch_optional(&self.0)
                .await
            }

            async fn take_over(
                &self,
                user_id: i64,
                key: &$crate::idempotency::IdempotencyKey,
                seen: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::reexports::sqlx::Result<Option<::chrono::DateTime<::chrono::Utc>>> {
                $crate::reexports::sqlx::query_scalar!(
                    "UPDATE idempotency_keys SET locked_at = now()
                      WHERE user_id = $1 AND key = $2 AND " + $answer + " IS NULL
                        AND locked_at = $3
                     RETURNING locked_at",
                    user_id,
                    key.as_str(),
                    seen
                )
                .fetch_optional(&self.0)
                .await
            }

            async fn release(
                &self,
                user_id: i64,
                key: &$crate::idempotency::IdempotencyKey,
                locked_at: ::chrono::DateTime<::chrono::Utc>,
            ) -> $crate::reexports::sqlx::Result<()> {
                $crate::reexports::sqlx::query!(
                    "DELETE FROM idempotency_keys
                      WHERE user_id = $1 AND key = $2 AND " + $answer + " IS NULL
                        AND locked_at = $3",
                    user_id,
                    key.as_str(),
                    locked_at
                )
                .execute(&self.0)
                .await
                .map(drop)
            }

            async fn delete_expired(
                &self,
                user_id: i64,
                key: &$crate::idempotency::IdempotencyKey,
            ) -> $crate::reexports::sqlx::Result<()> {
                $crate::reexports::sqlx::query!(
                    "DELETE FROM idempotency_keys
                      WHERE user_id = $1 AND key = $2 AND created_at < now() - interval '24 hours'",
                    user_id,
                    key.as_str()
                )
                .execute(&self.0)
                .await
                .map(drop)
            }
        }
    };
}

/// A key held by the request that claimed it; the request records its answer on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub user_id: i64,
    pub key: IdempotencyKey,
    /// The claim's `locked_at`: which claim of the key this is.
    pub locked_at: DateTime<Utc>,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The key is the caller's: run the request.
    New(Claim),
    /// The key already answered: the id of what its first request made.
    Replay(i64),
}

/// The client's answer to [`KeyError::Conflict`], the same in every service.
pub fn conflict_error() -> crate::ApiError {
    crate::ApiError::new(
        crate::ErrorCode::IdempotencyConflict,
        "this Idempotency-Key was already used with a different request",
    )
}

/// The client's answer to [`KeyError::InUse`], the same in every service.
pub fn in_use_error() -> crate::ApiError {
    crate::ApiError::new(
        crate::ErrorCode::IdempotencyKeyInUse,
        "a request with this Idempotency-Key is still in progress; retry shortly",
    )
}

/// Why a request may not run under its key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `idempotency_conflict`: the key was used with another request.
    #[error("this idempotency key was used with another request")]
    Conflict,
    /// `idempotency_key_in_use`: the first request with the key is still running.
    #[error("a request with this Idempotency-Key is still in progress")]
    InUse,
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

/// A request's outcome under [`Idempotency::run`].
#[derive(Debug)]
pub enum Ran<T> {
    /// The request ran now.
    New(T),
    /// An earlier request with the key answered: the id of what it made.
    Replayed(i64),
}

/// The mechanism over one service's [`KeyStore`].
#[derive(Debug, Clone)]
pub struct Idempotency<S> {
    store: S,
    lease: Duration,
    wait: Duration,
}

impl<S: KeyStore> Idempotency<S> {
    /// `lease`: how long a claim may go unanswered before its holder counts as dead; longer than
    /// any live request holds its key.
    pub fn new(store: S, lease: Duration) -> Self {
        Self {
            store,
            lease,
            wait: WAIT,
        }
    }

    /// Another bound on the wait for a running duplicate (tests).
    #[must_use]
    pub fn with_wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }

    /// Claims `key` for a request of `user_id` with fingerprint `hash` (the module doc says how).
    pub async fn claim(
        &self,
        user_id: i64,
        key: &IdempotencyKey,
        hash: &[u8],
    ) -> Result<Claimed, KeyError> {
        let deadline = tokio::time::Instant::now() + self.wait;
        let claimed = |locked_at| {
            Ok(Claimed::New(Claim {
                user_id,
                key: key.clone(),
                locked_at,
            }))
        };
        loop {
            if let Some(locked_at) = self.store.insert(user_id, key, hash).await? {
                return claimed(locked_at);
            }
            // `None`: released or expired between the two statements; claim again.
            if let Some(stored) = self.store.lookup(user_id, key, self.lease).await? {
                if stored.expired {
                    self.store.delete_expired(user_id, key).await?;
                    continue;
                }
                if stored.request_hash != hash {
                    return Err(KeyError::Conflict);
                }
                if let Some(answer) = stored.answer {
                    return Ok(Claimed::Replay(answer));
                }
                if stored.abandoned
                    && let Some(locked_at) =
                        self.store.take_over(user_id, key, stored.locked_at).await?
                {
                    tracing::warn!(
                        user_id,
                        claimed_at = %stored.locked_at,
                        "took over an idempotency key whose request died"
                    );
                    return claimed(locked_at);
                }
                // The first request with this key is still running: wait for its answer.
                if tokio::time::Instant::now() >= deadline {
                    return Err(KeyError::InUse);
                }
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Gives a failed request's key back, so a retry runs again (a failure to do so is logged:
    /// the key then waits for its lease to run out).
    pub async fn release(&self, claim: &Claim) {
        if let Err(e) = self
            .store
            .release(claim.user_id, &claim.key, claim.locked_at)
            .await
        {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
    }

    /// Runs `work` once per key: with a key, claims it (replaying an answered one), gives `work`
    /// the claim to record its answer on, and releases the key when `work` fails. Without a key,
    /// just runs `work`.
    pub async fn run<T, E, Fut>(
        &self,
        user_id: i64,
        key: Option<&IdempotencyKey>,
        hash: &[u8],
        work: impl FnOnce(Option<Claim>) -> Fut,
    ) -> Result<Ran<T>, E>
    where
        E: From<KeyError>,
        Fut: Future<Output = Result<T, E>>,
    {
        let Some(key) = key else {
            return work(None).await.map(Ran::New);
        };
        let claim = match self.claim(user_id, key, hash).await? {
            Claimed::Replay(answer) => return Ok(Ran::Replayed(answer)),
            Claimed::New(claim) => claim,
        };
        let result = work(Some(claim.clone())).await;
        if result.is_err() {
            self.release(&claim).await;
        }
        result.map(Ran::New)
    }
}

/// Proves that a service's [`KeyStore`] gives the documented behaviour against its real table
/// (feature `testing`; each service runs it, and so do this module's tests).
#[cfg(any(test, feature = "testing"))]
pub mod conformance {
    use std::time::Instant;

    use super::*;

    /// Runs every case of the module doc but expiry. `finish` completes a claim the way the
    /// service does (its unit of work recording the answer on the key) and returns the answer.
    pub async fn check<S, F, Fut>(store: S, finish: F)
    where
        S: KeyStore + Clone,
        F: Fn(Claim) -> Fut,
        Fut: Future<Output = i64>,
    {
        let long = Duration::from_secs(60);
        let keys = Idempotency::new(store.clone(), long);
        let impatient = Idempotency::new(store.clone(), long).with_wait(Duration::from_millis(100));
        let key = |k: &str| IdempotencyKey::parse(k).expect("key");
        let new = |claimed: Result<Claimed, KeyError>| match claimed {
            Ok(Claimed::New(claim)) => claim,
            other => panic!("expected a new claim, got {other:?}"),
        };
        let (a, b) = (b"request a".as_slice(), b"request b".as_slice());

        // A duplicate waits for the first request and replays its answer.
        let wait = key("wait");
        let first = new(keys.claim(7, &wait, a).await);
        let started = Instant::now();
        let (duplicate, answer) = tokio::join!(keys.claim(7, &wait, a), async {
            tokio::time::sleep(Duration::from_millis(150)).await;
            finish(first).await
        });
        assert_eq!(
            duplicate.ok(),
            Some(Claimed::Replay(answer)),
            "wait + replay"
        );
        assert!(started.elapsed() >= Duration::from_millis(150), "it waited");
        assert_eq!(
            keys.claim(7, &key("wait"), a).await.ok(),
            Some(Claimed::Replay(answer)),
            "replay"
        );

        // Another request under the key: a conflict, answered or not.
        assert!(matches!(
            keys.claim(7, &key("wait"), b).await,
            Err(KeyError::Conflict)
        ));
        let busy = new(keys.claim(7, &key("busy"), a).await);
        assert!(matches!(
            keys.claim(7, &key("busy"), b).await,
            Err(KeyError::Conflict)
        ));

        // Still running after the wait: in use.
        let started = Instant::now();
        assert!(matches!(
            impatient.claim(7, &key("busy"), a).await,
            Err(KeyError::InUse)
        ));
        assert!(started.elapsed() >= Duration::from_millis(100), "it waited");

        // Unanswered beyond the lease: taken over, by one duplicate of two (the other waits less
        // than a lease, so it sees the new claim alive and is told the key is in use).
        tokio::time::sleep(Duration::from_millis(250)).await;
        let short = Idempotency::new(store.clone(), Duration::from_millis(200))
            .with_wait(Duration::from_millis(100));
        let busy_key = key("busy");
        let (one, two) = tokio::join!(short.claim(7, &busy_key, a), short.claim(7, &busy_key, a));
        let taker = match (one, two) {
            (Ok(Claimed::New(c)), Err(KeyError::InUse))
            | (Err(KeyError::InUse), Ok(Claimed::New(c))) => c,
            other => panic!("one take-over and one in-use expected: {other:?}"),
        };
        assert!(taker.locked_at > busy.locked_at, "{taker:?} after {busy:?}");
        // The dead holder's release no longer touches the key; the taker's answer stands.
        keys.release(&busy).await;
        assert!(matches!(
            impatient.claim(7, &key("busy"), a).await,
            Err(KeyError::InUse)
        ));
        let answer = finish(taker).await;
        assert_eq!(
            keys.claim(7, &key("busy"), a).await.ok(),
            Some(Claimed::Replay(answer))
        );

        // A failed request gives its key back: the retry claims it again.
        let failed = new(keys.claim(7, &key("fails"), a).await);
        keys.release(&failed).await;
        let retry = new(keys.claim(7, &key("fails"), b).await);
        // An answered key is never released.
        let answer = finish(retry.clone()).await;
        keys.release(&retry).await;
        assert_eq!(
            keys.claim(7, &key("fails"), b).await.ok(),
            Some(Claimed::Replay(answer))
        );

        // Keys are per user.
        new(keys.claim(8, &key("wait"), b).await);

        // `run`: the work runs once per key, and a failure releases the key.
        let finish = &finish;
        let ran: Result<Ran<i64>, KeyError> = keys
            .run(9, Some(&key("run")), a, |claim| async move {
                Ok(finish(claim.expect("a claim")).await)
            })
            .await;
        let Ok(Ran::New(answer)) = ran else {
            panic!("{ran:?}")
        };
        // (Had it run again, this work's error would fail the assertion.)
        let again: Result<Ran<i64>, KeyError> = keys
            .run(9, Some(&key("run")), a, |_| async {
                Err(KeyError::Conflict)
            })
            .await;
        assert!(matches!(again, Ok(Ran::Replayed(n)) if n == answer));
        let failed: Result<Ran<i64>, KeyError> = keys
            .run(9, Some(&key("run-fails")), a, |_| async {
                Err(KeyError::InUse)
            })
            .await;
        assert!(failed.is_err());
        new(keys.claim(9, &key("run-fails"), a).await);
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{PgPool, postgres::PgPoolOptions};

    use super::*;

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        let parse = |k: &str| IdempotencyKey::parse(k).map(|k| k.as_str().to_owned());
        assert_eq!(parse(" order-1 ").as_deref(), Ok("order-1"));
        assert!(parse("").is_err());
        assert!(parse("has space").is_err());
        assert!(parse("é").is_err());
        assert!(parse(&"k".repeat(256)).is_err());
        assert!(parse(&"k".repeat(255)).is_ok());
        let mut headers = HeaderMap::new();
        assert_eq!(header(&headers), None);
        assert_eq!(IdempotencyKey::from_headers(&headers), Ok(None));
        headers.insert(HEADER, "abc".parse().expect("value"));
        assert_eq!(header(&headers), Some("abc"));
        assert_eq!(
            IdempotencyKey::from_headers(&headers).map(|k| k.map(|k| k.0)),
            Ok(Some("abc".to_owned()))
        );
        headers.insert(HEADER, "a b".parse().expect("value"));
        assert!(IdempotencyKey::from_headers(&headers).is_err());
    }

    /// The smallest table a service could keep its keys in (the services run the same check
    /// against their own tables and statements).
    #[derive(Clone)]
    struct TestTable {
        pool: PgPool,
        table: String,
    }

    impl TestTable {
        /// The statement on this test's table (a name of ours, never input).
        fn sql(&self, statement: &str) -> sqlx::AssertSqlSafe<String> {
            sqlx::AssertSqlSafe(statement.replace("$table", &self.table))
        }
    }

    impl KeyStore for TestTable {
        async fn insert(
            &self,
            user_id: i64,
            key: &IdempotencyKey,
            hash: &[u8],
        ) -> sqlx::Result<Option<DateTime<Utc>>> {
            sqlx::query_scalar(self.sql(
                "INSERT INTO $table (user_id, key, request_hash) VALUES ($1, $2, $3)
                 ON CONFLICT (user_id, key) DO NOTHING RETURNING locked_at",
            ))
            .bind(user_id)
            .bind(key.as_str())
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
        }

        async fn lookup(
            &self,
            user_id: i64,
            key: &IdempotencyKey,
            lease: Duration,
        ) -> sqlx::Result<Option<StoredKey>> {
            sqlx::query_as(self.sql(
                "SELECT request_hash, answer, locked_at,
                        answer IS NULL AND locked_at < now() - make_interval(secs => $3)
                          AS abandoned,
                        created_at < now() - interval '24 hours' AS expired
                   FROM $table WHERE user_id = $1 AND key = $2",
            ))
            .bind(user_id)
            .bind(key.as_str())
            .bind(lease.as_secs_f64())
            .fetch_optional(&self.pool)
            .await
        }

        async fn take_over(
            &self,
            user_id: i64,
            key: &IdempotencyKey,
            seen: DateTime<Utc>,
        ) -> sqlx::Result<Option<DateTime<Utc>>> {
            sqlx::query_scalar(self.sql(
                "UPDATE $table SET locked_at = now()
                  WHERE user_id = $1 AND key = $2 AND answer IS NULL AND locked_at = $3
                 RETURNING locked_at",
            ))
            .bind(user_id)
            .bind(key.as_str())
            .bind(seen)
            .fetch_optional(&self.pool)
            .await
        }

        async fn release(
            &self,
            user_id: i64,
            key: &IdempotencyKey,
            locked_at: DateTime<Utc>,
        ) -> sqlx::Result<()> {
            sqlx::query(self.sql(
                "DELETE FROM $table
                  WHERE user_id = $1 AND key = $2 AND answer IS NULL AND locked_at = $3",
            ))
            .bind(user_id)
            .bind(key.as_str())
            .bind(locked_at)
            .execute(&self.pool)
            .await
            .map(drop)
        }

        async fn delete_expired(&self, user_id: i64, key: &IdempotencyKey) -> sqlx::Result<()> {
            sqlx::query(self.sql(
                "DELETE FROM $table WHERE user_id = $1 AND key = $2
                    AND created_at < now() - interval '24 hours'",
            ))
            .bind(user_id)
            .bind(key.as_str())
            .execute(&self.pool)
            .await
            .map(drop)
        }
    }

    #[tokio::test]
    async fn the_mechanism_does_what_the_module_doc_says_against_postgresql() {
        let url = std::env::var("ECOM_TEST_DATABASE_URL").expect(
            "ECOM_TEST_DATABASE_URL is not set: run through `ecomctl with-infra` (make test)",
        );
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .expect("connect");
        // A temporary table of this connection pool's own would vanish between connections: a
        // uniquely named one, dropped at the end.
        let table = format!("idempotency_test_{}", uuid::Uuid::new_v4().simple());
        let store = TestTable { pool, table };
        sqlx::query(store.sql(
            "CREATE TABLE $table (
                 user_id BIGINT NOT NULL, key TEXT NOT NULL, request_hash BYTEA NOT NULL,
                 answer BIGINT, locked_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
                 created_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (user_id, key))",
        ))
        .execute(&store.pool)
        .await
        .expect("create");
        let next = std::sync::atomic::AtomicI64::new(1);
        let finish = |claim: Claim| {
            let (store, next) = (store.clone(), &next);
            async move {
                let answer = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                sqlx::query(
                    store.sql("UPDATE $table SET answer = $3 WHERE user_id = $1 AND key = $2"),
                )
                .bind(claim.user_id)
                .bind(claim.key.as_str())
                .bind(answer)
                .execute(&store.pool)
                .await
                .expect("finish");
                answer
            }
        };
        conformance::check(store.clone(), finish).await;
        sqlx::query(store.sql("DROP TABLE $table"))
            .execute(&store.pool)
            .await
            .expect("drop");
    }
}
