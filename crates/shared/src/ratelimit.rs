//! Rate limits that hold across replicas: GCRA (the generic cell rate algorithm) in one Lua
//! script, so the check-and-update is atomic in Redis and uses Redis's clock, not ours.

use crate::{config::Rate, redis::Redis};

const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, allow_at - now, 0}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, 0, math.floor((now - allow_at) / interval)}
";

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed { remaining: u64 },
    Limited { retry_after_ms: u64 },
}

#[derive(Debug, thiserror::Error)]
#[error("rate limiter unavailable: {0}")]
pub struct Unavailable(#[from] redis::RedisError);

/// A named budget (`login`, `default`, ...) of `rate` per key.
pub struct RateLimiter {
    name: &'static str,
    rate: Rate,
    script: redis::Script,
}

impl RateLimiter {
    pub fn new(name: &'static str, rate: Rate) -> Self {
        Self {
            name,
            rate,
            script: redis::Script::new(GCRA),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Spends one unit of `subject`'s budget.
    pub async fn check(&self, redis: &Redis, subject: &str) -> Result<Decision, Unavailable> {
        let interval_ms = (self.rate.period.as_millis() / u128::from(self.rate.count)).max(1);
        let key = redis.key(&["rl", self.name, subject]);
        let mut conn = redis.conn().await?;
        let (allowed, retry_ms, remaining): (i64, i64, i64) = self
            .script
            .key(key)
            .arg(u64::try_from(interval_ms).unwrap_or(u64::MAX))
            .arg(self.rate.count)
            .invoke_async(&mut conn)
            .await?;
        Ok(if allowed == 1 {
            Decision::Allowed {
                remaining: u64::try_from(remaining).unwrap_or(0),
            }
        } else {
            Decision::Limited {
                retry_after_ms: u64::try_from(retry_ms).unwrap_or(1000),
            }
        })
    }
}
