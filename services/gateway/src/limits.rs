//! Who is calling, and whether they may: the edge identity (bearer token verified once here),
//! an in-process burst limit per client, and the rate limits that hold across gateway replicas
//! (GCRA budgets in Redis).
//!
//! The burst limit (`ECOM_RATE_LIMIT_BURST`, GCRA in this process's memory with `governor`, the
//! crate tower_governor wraps) runs first, on the same subject as the Redis budget: a flood from
//! one client is refused without a Redis round trip per request. It is per replica, so it only
//! shaves bursts; the Redis budget stays the limit that holds across replicas.
//!
//! Policy when Redis is down: the per-client budget fails open (the request is served and
//! `rate_limiter_unavailable_total{limit="default"}` counts it: an outage of the limiter must
//! not become an outage of the shop); logins fail closed with 503 `service_unavailable` (a
//! password-guessing budget that silently disappears is worse than a short login outage).

use std::{
    fmt,
    net::IpAddr,
    num::NonZeroU32,
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use ecom_shared::{
    auth::{CurrentUser, bearer_token},
    config::Rate,
    error::ApiError,
    http::ClientIp,
    ratelimit::{Decision, RateLimiter},
    tasks::Periodic,
};
use governor::{
    Quota,
    clock::{Clock, DefaultClock},
    nanos::Nanos,
    state::{
        NotKeyed, StateStore,
        keyed::{DashMapStateStore, ShrinkableKeyedStateStore},
    },
};
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};

use crate::{AppState, Gateway, error::GatewayError};

/// The caller as the edge sees it.
#[derive(Clone, Debug)]
pub struct Identity {
    pub ip: IpAddr,
    /// The bearer token as sent (forwarded to the services, which verify it again).
    pub token: Option<String>,
    /// Who the token says they are; `Err` for a bad or expired token.
    pub user: Option<Result<CurrentUser, GatewayError>>,
}

/// Whom a budget belongs to: the user when the token is valid, else the address.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Subject {
    User(i64),
    Ip(IpAddr),
}

/// The Redis key part (`user:42`, `ip:203.0.113.1`).
impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Ip(ip) => write!(f, "ip:{ip}"),
        }
    }
}

impl Identity {
    /// The rate-limit subject: the user when the token is valid, else the address.
    pub fn subject(&self) -> Subject {
        match &self.user {
            Some(Ok(user)) => Subject::User(user.id),
            _ => Subject::Ip(self.ip),
        }
    }
}

/// Most subjects the burst limiter tracks at once (about 100 bytes each, so ~10 MB at most).
pub const BURST_MAX_SUBJECTS: usize = 100_000;

/// How often subjects whose burst state is back to fresh are forgotten.
const BURST_CLEANUP_EVERY: Duration = Duration::from_secs(10);

/// The burst limiter's state: governor's `DashMap` store with a cap on the subjects it holds.
struct BoundedStore {
    map: DashMapStateStore<Subject>,
    /// Approximate size of `map` (recounted at every cleanup): `DashMap::len` locks every shard.
    tracked: AtomicUsize,
    cap: usize,
}

impl StateStore for BoundedStore {
    type Key = Subject;

    fn measure_and_replace<T, F, E>(&self, key: &Subject, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // A tracked subject: one lookup, as in governor's own store.
        if let Some(state) = self.map.get(key) {
            return state.measure_and_replace(&NotKeyed::NonKey, f);
        }
        if self.tracked.load(Ordering::Relaxed) >= self.cap {
            // Full: a subject not yet tracked is decided as if fresh and not stored, so it goes
            // on to its Redis budget. Refusing new subjects instead would let one client spraying
            // addresses lock every new client out until the next cleanup.
            return f(None).map(|(t, _)| t);
        }
        self.tracked.fetch_add(1, Ordering::Relaxed);
        self.map.measure_and_replace(key, f)
    }
}

impl ShrinkableKeyedStateStore<Subject> for BoundedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.map, drop_below);
        self.tracked.store(self.map.len(), Ordering::Relaxed);
    }

    fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The in-process per-client burst limit (`ECOM_RATE_LIMIT_BURST`).
pub struct Burst {
    rate: Rate,
    limiter: governor::RateLimiter<Subject, BoundedStore, DefaultClock>,
}

impl Burst {
    /// `None` when the rate cannot be a quota (a zero count or period).
    pub fn new(rate: Rate, max_subjects: usize) -> Option<Self> {
        let burst = NonZeroU32::new(rate.count)?;
        let quota = Quota::with_period(rate.period / burst.get())?.allow_burst(burst);
        let store = BoundedStore {
            map: DashMapStateStore::default(),
            tracked: AtomicUsize::new(0),
            cap: max_subjects,
        };
        Some(Self {
            rate,
            limiter: governor::RateLimiter::new(quota, store, DefaultClock::default()),
        })
    }

    /// Spends one unit of `subject`'s burst: `Err(wait)` when there is none left.
    pub fn check(&self, subject: Subject) -> Result<(), Duration> {
        self.limiter
            .check_key(&subject)
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// Forgets the subjects whose state is indistinguishable from fresh; returns how many remain.
    pub fn cleanup(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// The gateway's budgets: the in-process burst limit, then the two in Redis.
pub struct Limits {
    /// `None` when `ECOM_RATE_LIMIT_BURST` is `off`.
    pub burst: Option<Burst>,
    pub default: RateLimiter,
    pub login: RateLimiter,
    unavailable: Family<LimitLabels, Counter>,
    burst_subjects: Gauge,
}

/// How long one limiter call may take before Redis counts as down.
const LIMITER_TIMEOUT: Duration = Duration::from_millis(500);

/// A refusal, with the headers that explain it.
pub struct Refusal {
    pub limit: &'static str,
    pub rate: Rate,
    pub retry_after_secs: u64,
}

impl Limits {
    pub fn new(
        burst: Option<Rate>,
        default: Rate,
        login: Rate,
        metrics: &ecom_shared::metrics::Metrics,
    ) -> Self {
        let unavailable = Family::<LimitLabels, Counter>::default();
        metrics.register(
            "rate_limiter_unavailable",
            "rate-limit checks that could not reach Redis (default: served; login: refused)",
            unavailable.clone(),
        );
        let burst_subjects = Gauge::default();
        metrics.register(
            "rate_limit_burst_subjects",
            "clients the in-process burst limiter tracks (after its last cleanup)",
            burst_subjects.clone(),
        );
        Self {
            burst: burst.and_then(|rate| Burst::new(rate, BURST_MAX_SUBJECTS)),
            burst_subjects,
            // Named apart from the Users service's own login budget: one login through the
            // gateway spends one unit of each, not two of one.
            default: RateLimiter::new("gateway-default", default),
            login: RateLimiter::new("gateway-login", login),
            unavailable,
        }
    }

    /// Keeps the burst limiter's memory bounded: subjects back to a fresh state are forgotten
    /// every few seconds (the cap bounds what can pile up in between, so losing the task is not
    /// fatal). `None` when there is no burst limit.
    pub fn cleanup_task(gw: &std::sync::Arc<Gateway>) -> Option<Periodic> {
        gw.limits.burst.as_ref()?;
        let gw = gw.clone();
        Some(Periodic::housekeeping(
            "burst limiter cleanup",
            BURST_CLEANUP_EVERY,
            move || {
                let limits = &gw.limits;
                if let Some(burst) = &limits.burst {
                    let left = burst.cleanup();
                    limits
                        .burst_subjects
                        .set(i64::try_from(left).unwrap_or(i64::MAX));
                }
                async { Ok(()) }
            },
        ))
    }

    async fn check(gw: &Gateway, limiter: &RateLimiter, subject: &str) -> Result<Decision, ()> {
        match tokio::time::timeout(LIMITER_TIMEOUT, limiter.check(&gw.redis, subject)).await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(e)) => {
                tracing::warn!(limit = limiter.name(), error = %e, "rate limiter unavailable");
                Err(())
            }
            Err(_) => {
                tracing::warn!(limit = limiter.name(), "rate limiter timed out");
                Err(())
            }
        }
    }

    /// The per-(IP, e-mail) login budget. Fails closed.
    pub async fn check_login(gw: &Gateway, ip: IpAddr, email: &str) -> Result<(), GatewayError> {
        let limits = &gw.limits;
        let subject = format!("{ip}:{}", email.trim().to_lowercase());
        match Self::check(gw, &limits.login, &subject).await {
            Ok(Decision::Allowed { .. }) => Ok(()),
            Ok(Decision::Limited { retry_after_ms }) => {
                gw.metrics.count_rate_limited("login");
                Err(GatewayError::rate_limited(retry_after_ms.div_ceil(1000)))
            }
            Err(()) => {
                limits
                    .unavailable
                    .get_or_create(&LimitLabels { limit: "login" })
                    .inc();
                Err(GatewayError::unavailable("login throttling"))
            }
        }
    }
}

async fn identify(gw: &Gateway, headers: &HeaderMap, ip: IpAddr) -> Identity {
    let token = Some(bearer_token(headers))
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let user = match &token {
        Some(t) => Some(gw.verifier.verify(t).await.map_err(GatewayError::from)),
        None => None,
    };
    Identity { ip, token, user }
}

fn set_headers(headers: &mut HeaderMap, rate: Rate, remaining: Option<u64>) {
    headers.insert("x-ratelimit-limit", HeaderValue::from(rate.count));
    if let Some(r) = remaining {
        headers.insert("x-ratelimit-remaining", HeaderValue::from(r));
    }
}

/// The 429 answer: REST's `{detail, code}`, or a GraphQL error document on `/graphql`.
pub fn refusal_response(graphql: bool, refusal: &Refusal) -> Response {
    let mut response = if graphql {
        let body = serde_json::json!({
            "data": null,
            "errors": [{
                "message": "too many requests",
                "extensions": {
                    "code": crate::error::codes::RATE_LIMITED,
                    "reason": ecom_shared::ErrorCode::RateLimited.as_str(),
                    "retryAfter": refusal.retry_after_secs,
                },
            }],
        });
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", refusal.retry_after_secs.to_string())],
            axum::Json(body),
        )
            .into_response()
    } else {
        ApiError::rate_limited(refusal.retry_after_secs).into_response()
    };
    let headers = response.headers_mut();
    set_headers(headers, refusal.rate, Some(0));
    headers.insert(
        "x-ratelimit-reset",
        HeaderValue::from(refusal.retry_after_secs),
    );
    headers.insert(
        "x-ratelimit-policy",
        HeaderValue::from_static(refusal.limit),
    );
    response
}

/// Middleware on every API route: identify the caller, spend one unit of their default
/// budget, and hand the identity to the handler.
pub async fn middleware(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    mut req: Request,
    next: Next,
) -> Response {
    let gw = &state.gateway;
    let identity = identify(gw, req.headers(), ip).await;
    let subject = identity.subject();
    let graphql = req.uri().path().starts_with("/graphql");
    let refuse = |limit: &'static str, rate: Rate, wait: Duration| {
        gw.metrics.count_rate_limited(limit);
        let retry_after_secs = u64::try_from(wait.as_millis().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1);
        refusal_response(
            graphql,
            &Refusal {
                limit,
                rate,
                retry_after_secs,
            },
        )
    };
    // In memory first: a client over its burst never costs a Redis round trip.
    if let Some(burst) = &gw.limits.burst
        && let Err(wait) = burst.check(subject)
    {
        return refuse("burst", burst.rate, wait);
    }
    let rate = gw.limits.default.rate();
    let remaining = match Limits::check(gw, &gw.limits.default, &subject.to_string()).await {
        Ok(Decision::Allowed { remaining }) => Some(remaining),
        Ok(Decision::Limited { retry_after_ms }) => {
            return refuse("default", rate, Duration::from_millis(retry_after_ms));
        }
        Err(()) => {
            gw.limits
                .unavailable
                .get_or_create(&LimitLabels { limit: "default" })
                .inc();
            None
        }
    };
    req.extensions_mut().insert(identity);
    let mut response = next.run(req).await;
    set_headers(response.headers_mut(), rate, remaining);
    response
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> Subject {
        Subject::Ip(IpAddr::V4(Ipv4Addr::new(203, 0, 113, last)))
    }

    #[test]
    fn the_burst_is_per_subject_and_says_how_long_to_wait() {
        let burst = Burst::new(Rate::per_minute(2), 10).expect("quota");
        assert!(burst.check(ip(1)).is_ok());
        assert!(burst.check(ip(1)).is_ok());
        let wait = burst.check(ip(1)).expect_err("over the burst");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert!(burst.check(ip(2)).is_ok());
        assert!(burst.check(Subject::User(1)).is_ok());
    }

    /// At the cap a new subject is not tracked (its Redis budget still applies); the subjects
    /// already tracked keep their state.
    #[test]
    fn at_most_the_cap_of_subjects_is_tracked() {
        let burst = Burst::new(Rate::per_hour(1), 2).expect("quota");
        assert!(burst.check(ip(1)).is_ok());
        assert!(burst.check(ip(2)).is_ok());
        for _ in 0..3 {
            assert!(burst.check(ip(3)).is_ok(), "untracked beyond the cap");
        }
        assert!(
            burst.check(ip(1)).is_err(),
            "tracked subjects keep their state"
        );
        assert_eq!(burst.cleanup(), 2);
    }

    #[test]
    fn cleanup_forgets_subjects_back_to_a_fresh_state() {
        let burst = Burst::new(
            Rate {
                count: 1000,
                period: Duration::from_secs(1),
            },
            100,
        )
        .expect("quota");
        for i in 0..50 {
            assert!(burst.check(ip(i)).is_ok());
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(burst.cleanup(), 0);
        // Room again for new subjects.
        assert!(burst.check(ip(200)).is_ok());
        assert_eq!(burst.limiter.len(), 1);
    }

    #[test]
    fn the_redis_key_of_a_subject_is_unchanged() {
        assert_eq!(Subject::User(42).to_string(), "user:42");
        assert_eq!(ip(7).to_string(), "ip:203.0.113.7");
    }
}
