//! Rate limits that hold across replicas: GCRA (the generic cell rate algorithm) in one Lua
//! script, so the check-and-update is atomic in Redis and uses Redis's clock, not ours.
//!
//! Concurrent checks of one subject in one process are coalesced: while a call for a subject
//! is in flight, later checks of that subject wait and go together in the next call, which
//! spends up to `n` units at once and admits as many as the budget holds (in arrival order).
//! Under load from one client that is one Redis round trip per batch instead of per request,
//! with exactly the budget a one-by-one check would give; an idle subject pays one round trip.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::oneshot;

use crate::{config::Rate, redis::Redis};

const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local k = math.floor((now + burst * interval - tat) / interval)
if k > n then k = n end
if k < 0 then k = 0 end
local new_tat = tat + k * interval
if k > 0 then
  redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
end
local retry = new_tat + interval - burst * interval - now
if retry < 0 then retry = 0 end
return {k, retry, math.floor((now + burst * interval - new_tat) / interval)}
";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u64 },
    Limited { retry_after_ms: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct Unavailable(String);

type Waiter = oneshot::Sender<Result<Decision, String>>;

#[derive(Default)]
struct Queue {
    in_flight: bool,
    waiting: Vec<Waiter>,
}

/// A named budget (`login`, `default`, ...) of `rate` per key.
pub struct RateLimiter {
    name: &'static str,
    rate: Rate,
    script: redis::Script,
    queues: Arc<Mutex<HashMap<String, Queue>>>,
}

impl RateLimiter {
    pub fn new(name: &'static str, rate: Rate) -> Self {
        Self {
            name,
            rate,
            script: redis::Script::new(GCRA),
            queues: Arc::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Spends one unit of `subject`'s budget.
    pub async fn check(&self, redis: &Arc<Redis>, subject: &str) -> Result<Decision, Unavailable> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            let queue = queues.entry(subject.to_owned()).or_default();
            queue.waiting.push(tx);
            !std::mem::replace(&mut queue.in_flight, true)
        };
        if lead {
            // Driven by its own task: a caller that goes away must not strand the others.
            let interval_ms = (self.rate.period.as_millis() / u128::from(self.rate.count)).max(1);
            let drive = Drive {
                key: redis.key(&["rl", self.name, subject]),
                subject: subject.to_owned(),
                interval_ms: u64::try_from(interval_ms).unwrap_or(u64::MAX),
                burst: self.rate.count,
                script: self.script.clone(),
                queues: self.queues.clone(),
                redis: redis.clone(),
            };
            tokio::spawn(drive.run());
        }
        match rx.await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => Err(Unavailable(e)),
            Err(_) => Err(Unavailable("the check was abandoned".into())),
        }
    }
}

/// Sends one subject's queued checks, a batch per round trip, until none are left.
struct Drive {
    key: String,
    subject: String,
    interval_ms: u64,
    burst: u32,
    script: redis::Script,
    queues: Arc<Mutex<HashMap<String, Queue>>>,
    redis: Arc<Redis>,
}

impl Drive {
    async fn run(self) {
        loop {
            let batch = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(queue) = queues.get_mut(&self.subject) else {
                    return;
                };
                if queue.waiting.is_empty() {
                    queues.remove(&self.subject);
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            match self.spend(batch.len()).await {
                Ok((admitted, retry_ms, remaining)) => {
                    for (i, waiter) in batch.into_iter().enumerate() {
                        let decision = if (i as u64) < admitted {
                            Decision::Allowed {
                                remaining: remaining + (admitted - 1 - i as u64),
                            }
                        } else {
                            Decision::Limited {
                                retry_after_ms: retry_ms.max(1),
                            }
                        };
                        let _ = waiter.send(Ok(decision));
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    for waiter in batch {
                        let _ = waiter.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Spends up to `n` units: (admitted, ms until the next unit, remaining after).
    async fn spend(&self, n: usize) -> redis::RedisResult<(u64, u64, u64)> {
        let mut conn = self.redis.conn().await?;
        let (admitted, retry, remaining): (i64, i64, i64) = self
            .script
            .key(&self.key)
            .arg(self.interval_ms)
            .arg(self.burst)
            .arg(n)
            .invoke_async(&mut conn)
            .await?;
        let non_negative = |v: i64| u64::try_from(v).unwrap_or(0);
        Ok((
            non_negative(admitted),
            non_negative(retry),
            non_negative(remaining),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn redis() -> Arc<Redis> {
        Redis::for_test()
    }

    #[tokio::test]
    async fn one_by_one_the_budget_is_exact() {
        let redis = redis();
        let limiter = RateLimiter::new("t", Rate::per_minute(3));
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(limiter.check(&redis, "a").await.expect("redis"));
        }
        assert_eq!(
            &seen[..3],
            &[
                Decision::Allowed { remaining: 2 },
                Decision::Allowed { remaining: 1 },
                Decision::Allowed { remaining: 0 }
            ]
        );
        assert!(
            matches!(seen[3], Decision::Limited { retry_after_ms } if (1..=20_000).contains(&retry_after_ms)),
            "{:?}",
            seen[3]
        );
        // Another subject has its own budget.
        assert!(matches!(
            limiter.check(&redis, "b").await.expect("redis"),
            Decision::Allowed { .. }
        ));
    }

    #[tokio::test]
    async fn concurrent_checks_are_batched_and_admit_exactly_the_budget() {
        let redis = redis();
        let limiter = Arc::new(RateLimiter::new("t", Rate::per_minute(50)));
        let checks = (0..200).map(|_| {
            let (limiter, redis) = (limiter.clone(), redis.clone());
            tokio::spawn(async move { limiter.check(&redis, "hot").await })
        });
        let results = futures::future::join_all(checks).await;
        let allowed = results
            .iter()
            .filter(|r| matches!(r.as_ref().expect("task"), Ok(Decision::Allowed { .. })))
            .count();
        assert_eq!(allowed, 50);
    }

    #[tokio::test]
    async fn redis_down_is_an_error_not_a_hang() {
        let redis = Arc::new(Redis::new("redis://127.0.0.1:1", "t").expect("client"));
        let limiter = RateLimiter::new("t", Rate::per_minute(5));
        let r = tokio::time::timeout(Duration::from_secs(10), limiter.check(&redis, "x"))
            .await
            .expect("no hang");
        assert!(r.is_err());
        // The queue is not left stuck: the next check is tried again.
        let r = tokio::time::timeout(Duration::from_secs(10), limiter.check(&redis, "x"))
            .await
            .expect("no hang");
        assert!(r.is_err());
    }
}
