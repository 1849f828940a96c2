//! The Payments domain core: charging an order once, the outbox that tells Orders, refunds.
//! Adapters only translate.
//!
//! The guarantees and how they are kept:
//! - an order is charged at most once: a `processing` payment claims the order under a partial
//!   unique index before the card is charged, whatever the concurrency and the keys;
//! - a succeeded payment always reaches Orders: its outbox event is written in the payment's own
//!   transaction and delivered (by the request, else by the relay) until Orders acknowledges it;
//!   Orders' handlers are idempotent per payment, so a repeat has no second effect;
//! - money is never kept without goods: when Orders refuses the payment (the order was
//!   cancelled or its reservation expired), the payment is refunded in the same transaction
//!   that settles the event.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use chrono::Utc;
use ecom_proto::orders::v1::OrderStatus;
use ecom_shared::{
    FieldError,
    auth::{Caller, CurrentUser},
    metrics::Metrics,
    page::Page,
    service_tokens::ServiceTokens,
};
use futures::StreamExt;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use rust_decimal::prelude::ToPrimitive;
use sqlx::PgPool;

use crate::{
    card::{self, Outcome},
    domain::{PayRequest, PayRequestError, Payment, PaymentStatus},
    error::{Error, Result},
    orders::{Ack, OrdersClient},
    repo::{self, Event, NewPayment},
};

/// Event kinds.
pub const PAYMENT_SUCCEEDED: &str = "payment.succeeded";
pub const PAYMENT_REFUNDED: &str = "payment.refunded";
/// How long a delivery attempt holds its event.
const LEASE_SECS: i64 = 30;
/// How long a duplicate request waits for the first one holding its idempotency key.
const KEY_WAIT: Duration = Duration::from_secs(3);
/// Events delivered concurrently by one relay pass.
const RELAY_CONCURRENCY: usize = 16;

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct AmountLabels {
    status: &'static str,
    currency: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RelayLabels {
    kind: String,
}

/// The result of `POST /payments`: a new payment, or the one an idempotency key already made.
pub enum Paid {
    New(Payment),
    Replayed(Payment),
}

/// Retry delay after `attempts` failed deliveries: 1 s doubling, capped at one minute.
pub fn backoff_ms(attempts: i32) -> i64 {
    let exp = u32::try_from(attempts.clamp(1, 7) - 1).unwrap_or(0);
    (1000_i64 << exp).min(60_000)
}

pub struct PaymentsService {
    pool: PgPool,
    orders: OrdersClient,
    tokens: Arc<ServiceTokens>,
    latency: Duration,
    grace: Duration,
    stuck_after: Duration,
    fault_after_commit: bool,
    payments: Family<StatusLabels, Counter>,
    amounts: Family<AmountLabels, Counter<f64, AtomicU64>>,
    replays: Counter,
    outbox_pending: Gauge,
    relay_attempts: Family<RelayLabels, Counter>,
    relay_failures: Family<RelayLabels, Counter>,
}

pub struct Settings {
    pub latency: Duration,
    pub grace: Duration,
    pub stuck_after: Duration,
    pub fault: Option<String>,
}

impl PaymentsService {
    pub fn new(
        pool: PgPool,
        orders: OrdersClient,
        tokens: Arc<ServiceTokens>,
        metrics: &Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        let payments = Family::<StatusLabels, Counter>::default();
        metrics.register("payments", "payments by resulting status", payments.clone());
        let amounts = Family::<AmountLabels, Counter<f64, AtomicU64>>::default();
        metrics.register(
            "payments_amount",
            "money charged (succeeded) and given back (refunded), in currency units",
            amounts.clone(),
        );
        let outbox_pending = Gauge::default();
        metrics.register(
            "outbox_pending",
            "outbox events not yet acknowledged by Orders",
            outbox_pending.clone(),
        );
        let relay_attempts = Family::<RelayLabels, Counter>::default();
        metrics.register(
            "outbox_relay_attempts",
            "outbox delivery attempts",
            relay_attempts.clone(),
        );
        let relay_failures = Family::<RelayLabels, Counter>::default();
        metrics.register(
            "outbox_relay_failures",
            "outbox delivery attempts that must be retried",
            relay_failures.clone(),
        );
        Self {
            pool,
            orders,
            tokens,
            latency: settings.latency,
            grace: settings.grace,
            stuck_after: settings.stuck_after,
            fault_after_commit: settings.fault.as_deref() == Some("payments.after_commit"),
            payments,
            amounts,
            replays: metrics.replay_counter("pay"),
            outbox_pending,
            relay_attempts,
            relay_failures,
        }
    }

    /// Money moved, in the currency's units (a float is fine for a dashboard; never for money
    /// that is kept).
    fn count_amount(&self, status: PaymentStatus, payment: &Payment) {
        self.amounts
            .get_or_create(&AmountLabels {
                status: status.as_str(),
                currency: payment.currency.clone(),
            })
            .inc_by(payment.amount.to_f64().unwrap_or_default());
    }

    fn count(&self, status: PaymentStatus) {
        self.payments
            .get_or_create(&StatusLabels {
                status: status.as_str(),
            })
            .inc();
    }

    fn stuck_secs(&self) -> i64 {
        i64::try_from(self.stuck_after.as_secs()).unwrap_or(i64::MAX)
    }

    /// `POST /payments`: charge an order's total to a card, once.
    #[tracing::instrument(skip_all, fields(user_id = user.id))]
    pub async fn pay(
        &self,
        user: CurrentUser,
        token: &str,
        key: Option<&str>,
        body: &serde_json::Value,
    ) -> Result<Paid> {
        let request = PayRequest::parse(body, Utc::now()).map_err(|e| match e {
            PayRequestError::Validation(errors) => Error::Validation(errors),
            PayRequestError::Card(errors) => Error::InvalidCard(errors),
        })?;
        let key = key
            .map(ecom_shared::idempotency::parse_key)
            .transpose()
            .map_err(|e| Error::Validation(vec![e]))?;
        if let Some(key) = &key
            && let Some(payment_id) = self.claim_key(user.id, key, &request.fingerprint()).await?
        {
            let payment = repo::get_payment(&self.pool, payment_id)
                .await?
                .ok_or(Error::NotFound("payment"))?;
            self.replays.inc();
            return Ok(Paid::Replayed(payment));
        }
        let result = self.charge(user, token, &request, key.as_deref()).await;
        if result.is_err()
            && let Some(key) = &key
        {
            // Nothing was charged: let a retry with the same key run again.
            if let Err(e) = repo::drop_key(&self.pool, user.id, key, true).await {
                tracing::warn!(error = %e, "could not release an idempotency key");
            }
        }
        result.map(Paid::New)
    }

    /// `Some(payment)`: the key already produced it. `None`: the key is ours now.
    async fn claim_key(&self, user_id: i64, key: &str, hash: &[u8]) -> Result<Option<i64>> {
        let deadline = tokio::time::Instant::now() + KEY_WAIT;
        loop {
            let mut conn = self.pool.acquire().await?;
            let Some(existing) =
                repo::claim_key(&mut conn, user_id, key, hash, self.stuck_secs()).await?
            else {
                return Ok(None);
            };
            if existing.expired {
                repo::drop_key(&mut *conn, user_id, key, false).await?;
                continue;
            }
            if existing.request_hash != hash {
                return Err(Error::IdempotencyConflict);
            }
            if let Some(id) = existing.payment_id {
                return Ok(Some(id));
            }
            if existing.abandoned
                && repo::take_over_key(&mut *conn, user_id, key, existing.locked_at).await?
            {
                tracing::warn!("taking over an idempotency key whose request died");
                return Ok(None);
            }
            // The first request with this key is still running: wait briefly for its answer.
            drop(conn);
            if tokio::time::Instant::now() > deadline {
                return Err(Error::KeyInUse);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn charge(
        &self,
        user: CurrentUser,
        token: &str,
        request: &PayRequest,
        key: Option<&str>,
    ) -> Result<Payment> {
        // The amount is the order's, never the client's. Someone else's order is "not found",
        // for an admin too: one pays one's own orders.
        let order = self.orders.get(token, request.order_id).await?;
        if order.user_id != user.id {
            return Err(Error::NotFound("order"));
        }
        if order.status != OrderStatus::PendingPayment {
            return Err(Error::InvalidState(format!(
                "an order that is {} cannot be paid",
                order_status(order.status)
            )));
        }
        let brand = request.card.brand().as_str();
        let new = NewPayment {
            order_id: request.order_id,
            user_id: order.user_id,
            amount: order.total,
            currency: &order.currency,
            brand,
            last4: request.card.last4(),
        };
        let payment_id = match repo::insert_processing(&self.pool, &new).await {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => {
                let held = repo::charge_of_order(&self.pool, request.order_id).await?;
                return Err(Error::InvalidState(match held.as_deref() {
                    Some("processing") => "a payment for this order is in progress".to_owned(),
                    _ => "this order is already paid".to_owned(),
                }));
            }
            Err(e) => return Err(e.into()),
        };

        // The emulated processor (a network call in real life).
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let outcome = card::charge(&request.card);
        let (status, failure) = match outcome {
            Outcome::Succeeded => (PaymentStatus::Succeeded, None),
            Outcome::Failed(decline) => (PaymentStatus::Failed, Some(decline.code())),
        };

        // The payment, its event and its idempotency key's answer: one atomic statement.
        let settled = repo::settle(
            &self.pool,
            payment_id,
            status,
            failure,
            key.map(|k| (user.id, k)),
            millis(self.grace),
        )
        .await?;
        let Some((payment, event)) = settled else {
            // Settled as interrupted meanwhile (a charge slower than ECOM_PAYMENT_STUCK_SECONDS):
            // that verdict stands, and this outcome is dropped.
            tracing::error!(
                payment_id,
                "charge finished after it was settled as interrupted"
            );
            if let Some(key) = key {
                repo::finish_key(&self.pool, user.id, key, payment_id).await?;
            }
            return repo::get_payment(&self.pool, payment_id)
                .await?
                .ok_or(Error::NotFound("payment"));
        };
        self.count(status);
        if status == PaymentStatus::Succeeded {
            self.count_amount(status, &payment);
        }
        tracing::info!(
            payment_id,
            order_id = request.order_id,
            status = status.as_str(),
            failure_code = failure,
            brand,
            last4 = request.card.last4(),
            "card charged"
        );

        if let Some(event) = event {
            if self.fault_after_commit {
                tracing::error!(payment_id, "injected fault: payments.after_commit, exiting");
                std::process::exit(86);
            }
            // Normally the order is paid before the client hears back; if this fails, the
            // relay finishes the job.
            if self.deliver_now(event).await {
                // Refunded on the spot: the order could not take it.
                return repo::get_payment(&self.pool, payment_id)
                    .await?
                    .ok_or(Error::NotFound("payment"));
            }
        }
        Ok(payment)
    }

    /// Delivers an event its writer holds the lease of. True when the payment changed (it
    /// was refunded because the order refused it).
    async fn deliver_now(&self, event: Event) -> bool {
        let id = event.id;
        match self.deliver(event).await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(event_id = id, error = %e, "delivery failed; the relay retries");
                false
            }
        }
    }

    /// One delivery attempt of a leased event; the outcome is recorded on the event. True
    /// when the payment was refunded because its order refused it.
    async fn deliver(&self, event: Event) -> Result<bool> {
        let labels = RelayLabels {
            kind: event.kind.clone(),
        };
        self.relay_attempts.get_or_create(&labels).inc();
        let ack = match event.kind.as_str() {
            PAYMENT_SUCCEEDED => {
                self.orders
                    .mark_paid(&self.tokens, event.order_id, event.payment_id)
                    .await
            }
            PAYMENT_REFUNDED => {
                self.orders
                    .mark_refunded(&self.tokens, event.order_id, event.payment_id)
                    .await
            }
            other => Ack::Retry(format!("unknown event kind {other}")),
        };
        let mut refunded = false;
        match ack {
            Ack::Done => repo::mark_delivered(&self.pool, event.id).await?,
            Ack::Refused(why) if event.kind == PAYMENT_SUCCEEDED => {
                // The order cannot take this payment: give the money back, in the same
                // transaction that settles the event.
                let mut tx = self.pool.begin().await?;
                refunded =
                    repo::refund(&mut *tx, event.payment_id, Some("order_cancelled")).await?;
                repo::mark_delivered(&mut *tx, event.id).await?;
                tx.commit().await?;
                if refunded {
                    self.count(PaymentStatus::Refunded);
                }
                tracing::warn!(
                    payment_id = event.payment_id,
                    order_id = event.order_id,
                    reason = why,
                    "the order refused the payment; refunded automatically"
                );
            }
            Ack::Refused(why) => {
                tracing::warn!(
                    payment_id = event.payment_id,
                    order_id = event.order_id,
                    reason = why,
                    "nothing to undo on the order"
                );
                repo::mark_delivered(&self.pool, event.id).await?;
            }
            Ack::Retry(why) => {
                self.relay_failures.get_or_create(&labels).inc();
                let delay = backoff_ms(event.attempts);
                tracing::warn!(
                    event_id = event.id,
                    kind = event.kind,
                    attempts = event.attempts,
                    retry_in_ms = delay,
                    error = why,
                    "outbox delivery failed"
                );
                repo::reschedule(&self.pool, event.id, delay, &why).await?;
            }
        }
        Ok(refunded)
    }

    /// One relay pass: delivers every due event (leased, so replicas share the work).
    /// Returns how many were attempted.
    pub async fn relay(&self, batch: i64) -> Result<usize> {
        let events = repo::lease_due_events(&self.pool, batch, LEASE_SECS).await?;
        let n = events.len();
        futures::stream::iter(events)
            .for_each_concurrent(RELAY_CONCURRENCY, |event| async move {
                let id = event.id;
                if let Err(e) = self.deliver(event).await {
                    tracing::warn!(event_id = id, error = %e, "delivery bookkeeping failed; the lease expires and it is retried");
                }
            })
            .await;
        self.outbox_pending
            .set(repo::pending_events(&self.pool).await?);
        Ok(n)
    }

    /// Settles payments whose charge was interrupted (see [`repo::fail_stuck`]).
    pub async fn fail_stuck(&self) -> Result<usize> {
        let failed = repo::fail_stuck(&self.pool, self.stuck_secs()).await?;
        for id in &failed {
            self.count(PaymentStatus::Failed);
            tracing::warn!(payment_id = id, "interrupted charge settled as failed");
        }
        Ok(failed.len())
    }

    /// Admin refund: the payment `refunded` now; the order `refunded` and its stock returned
    /// through the outbox.
    #[tracing::instrument(skip_all, fields(payment_id = id))]
    pub async fn refund(&self, id: i64) -> Result<Payment> {
        let mut tx = self.pool.begin().await?;
        let status = repo::lock_status(&mut tx, id)
            .await?
            .ok_or(Error::NotFound("payment"))?;
        if status != PaymentStatus::Succeeded.as_str() {
            return Err(Error::InvalidState(format!(
                "a {status} payment cannot be refunded"
            )));
        }
        if repo::success_undelivered(&mut *tx, id).await? {
            return Err(Error::InvalidState(
                "the payment is still being settled with its order; retry shortly".into(),
            ));
        }
        let payment = repo::get_payment(&mut *tx, id)
            .await?
            .ok_or(Error::NotFound("payment"))?;
        repo::refund(&mut *tx, id, None).await?;
        let event = repo::insert_event(
            &mut *tx,
            PAYMENT_REFUNDED,
            id,
            payment.order_id,
            millis(self.grace),
        )
        .await?;
        tx.commit().await?;
        self.count(PaymentStatus::Refunded);
        self.count_amount(PaymentStatus::Refunded, &payment);
        tracing::info!(
            payment_id = id,
            order_id = payment.order_id,
            "payment refunded"
        );
        self.deliver_now(event).await;
        repo::get_payment(&self.pool, id)
            .await?
            .ok_or(Error::NotFound("payment"))
    }

    /// One payment: the owner's or, for an admin, anyone's.
    pub async fn get(&self, caller: CurrentUser, id: i64) -> Result<Payment> {
        repo::get_payment(&self.pool, id)
            .await?
            .filter(|p| caller.is_admin() || p.user_id == caller.id)
            .ok_or(Error::NotFound("payment"))
    }

    /// The caller's payments (an admin: everyone's), optionally of one order.
    pub async fn list(
        &self,
        caller: CurrentUser,
        order_id: Option<i64>,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<(Vec<Payment>, i64, i64, i64)> {
        let (page, mut errors) = match Page::parse(limit, offset) {
            Ok(page) => (Some(page), Vec::new()),
            Err(errors) => (None, errors),
        };
        if order_id.is_some_and(|id| id <= 0) {
            errors.push(FieldError::new("order_id", "must be a positive integer"));
        }
        let (Some(Page { limit, offset }), true) = (page, errors.is_empty()) else {
            return Err(Error::Validation(errors));
        };
        let owner = (!caller.is_admin()).then_some(caller.id);
        let mut conn = self.pool.acquire().await?;
        let (items, total) = repo::list_payments(&mut conn, owner, order_id, limit, offset).await?;
        Ok((items, total, limit, offset))
    }

    /// The payments of these orders that the caller may see (gRPC, for the gateway).
    pub async fn of_orders(&self, caller: &Caller, order_ids: &[i64]) -> Result<Vec<Payment>> {
        if order_ids.len() > 100 {
            return Err(Error::field("order_ids", "at most 100"));
        }
        let all = repo::payments_of_orders(&self.pool, order_ids).await?;
        Ok(match caller {
            Caller::Service(_) => all,
            Caller::User(u) => all
                .into_iter()
                .filter(|p| u.is_admin() || p.user_id == u.id)
                .collect(),
        })
    }

    /// One payment for a gRPC caller.
    pub async fn get_for(&self, caller: &Caller, id: i64) -> Result<Payment> {
        match caller {
            Caller::User(u) => self.get(*u, id).await,
            Caller::Service(_) => repo::get_payment(&self.pool, id)
                .await?
                .ok_or(Error::NotFound("payment")),
        }
    }

    /// Housekeeping: idempotency keys live 24 hours, delivered events a week.
    pub async fn purge(&self) -> Result<u64> {
        let keys = repo::purge_keys(&self.pool).await?;
        let events = repo::purge_delivered_events(&self.pool).await?;
        Ok(keys + events)
    }

    /// Whether Orders answers (readiness).
    pub async fn orders_up(&self) -> bool {
        self.orders.ping().await
    }
}

fn order_status(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::PendingPayment => "pending_payment",
        OrderStatus::Paid => "paid",
        OrderStatus::Cancelled => "cancelled",
        OrderStatus::Refunded => "refunded",
        OrderStatus::Unspecified => "unknown",
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_a_minute() {
        let delays: Vec<i64> = (1..=9).map(backoff_ms).collect();
        assert_eq!(
            delays,
            [
                1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
        assert_eq!(backoff_ms(0), 1000);
    }
}
