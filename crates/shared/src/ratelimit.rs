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

/// GCRA in microseconds (a limit above 60 000/minute keeps its meaning). The stored theoretical
/// arrival time is clamped to the window of the limit in force (`now + burst * interval`): after
/// a limit is lowered, a state written under the old limit never holds a client longer than the
/// new limit's window. Returns `{admitted, ms until the next unit, remaining}`.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local window = burst * interval
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if tat > now + window then tat = now + window end
local k = math.floor((now + window - tat) / interval)
if k > n then k = n end
if k < 0 then k = 0 end
local new_tat = tat + k * interval
if k > 0 then
  redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end
local retry = new_tat + interval - window - now
if retry < 0 then retry = 0 end
return {k, math.ceil(retry / 1000), math.floor((now + window - new_tat) / interval)}
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
            let drive = Drive {
                key: redis.key(&["rl", self.name, subject]),
                subject: subject.to_owned(),
                interval_us: interval_us(self.rate),
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

/// The time one unit takes to come back, in microseconds (at least one).
fn interval_us(rate: Rate) -> u64 {
    let us = rate.period.as_micros() / u128::from(rate.count.max(1));
    u64::try_from(us.max(1)).unwrap_or(u64::MAX)
}

/// Sends one subject's queued checks, a batch per round trip, until none are left.
struct Drive {
    key: String,
    subject: String,
    interval_us: u64,
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
            .arg(self.interval_us)
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

    /// Running with a high limit, then restarting with a low one: the old state must not hold
    /// the client beyond the low limit's window (it held one for minutes).
    #[tokio::test]
    async fn a_lowered_limit_never_holds_a_client_beyond_its_window() {
        let redis = redis();
        let subject = format!("lowered-{}", uuid::Uuid::new_v4());
        let high = RateLimiter::new("t", Rate::per_minute(1_000_000));
        for _ in 0..5_000 {
            assert!(matches!(
                high.check(&redis, &subject).await.expect("redis"),
                Decision::Allowed { .. }
            ));
        }
        let low = RateLimiter::new(
            "t",
            Rate {
                count: 2,
                period: Duration::from_secs(1),
            },
        );
        match low.check(&redis, &subject).await.expect("redis") {
            Decision::Allowed { .. } => {}
            Decision::Limited { retry_after_ms } => assert!(
                retry_after_ms <= 1_000,
                "held {retry_after_ms} ms by a limit of 2/second"
            ),
        }
    }

    /// 120 000/minute is one every 500 µs (milliseconds made it one a millisecond: 60 000/minute).
    #[test]
    fn intervals_keep_sub_millisecond_precision() {
        assert_eq!(interval_us(Rate::per_minute(120_000)), 500);
        assert_eq!(interval_us(Rate::per_minute(1_200)), 50_000);
        assert_eq!(interval_us(Rate::per_minute(600_000_000)), 1);
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
