//! Who is calling, and whether they may: the edge identity (bearer token verified once here)
//! and the rate limits that hold across gateway replicas (GCRA budgets in Redis).
//!
//! Policy when Redis is down: the per-client budget fails open (the request is served and
//! `rate_limiter_unavailable_total{limit="default"}` counts it: an outage of the limiter must
//! not become an outage of the shop); logins fail closed with 503 `service_unavailable` (a
//! password-guessing budget that silently disappears is worse than a short login outage).

use std::{net::IpAddr, time::Duration};

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
};
use prometheus_client::metrics::{counter::Counter, family::Family};

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

impl Identity {
    /// The rate-limit subject: the user when the token is valid, else the address.
    fn subject(&self) -> String {
        match &self.user {
            Some(Ok(user)) => format!("user:{}", user.id),
            _ => format!("ip:{}", self.ip),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

/// The gateway's two budgets.
pub struct Limits {
    pub default: RateLimiter,
    pub login: RateLimiter,
    unavailable: Family<LimitLabels, Counter>,
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
    pub fn new(default: Rate, login: Rate, metrics: &ecom_shared::metrics::Metrics) -> Self {
        let unavailable = Family::<LimitLabels, Counter>::default();
        metrics.register(
            "rate_limiter_unavailable",
            "rate-limit checks that could not reach Redis (default: served; login: refused)",
            unavailable.clone(),
        );
        Self {
            // Named apart from the Users service's own login budget: one login through the
            // gateway spends one unit of each, not two of one.
            default: RateLimiter::new("gateway-default", default),
            login: RateLimiter::new("gateway-login", login),
            unavailable,
        }
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
                    "reason": "rate_limited",
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
    let rate = gw.limits.default.rate();
    let remaining = match Limits::check(gw, &gw.limits.default, &identity.subject()).await {
        Ok(Decision::Allowed { remaining }) => Some(remaining),
        Ok(Decision::Limited { retry_after_ms }) => {
            gw.metrics.count_rate_limited("default");
            let graphql = req.uri().path().starts_with("/graphql");
            return refusal_response(
                graphql,
                &Refusal {
                    limit: "default",
                    rate,
                    retry_after_secs: retry_after_ms.div_ceil(1000).max(1),
                },
            );
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
