//! The outbox relay: delivers what Orders must hear of a payment (`MarkPaid`, `MarkRefunded`)
//! until Orders acknowledges it.
//!
//! An event is written in the same transaction as the payment change it announces, leased to
//! its writer, which delivers it at once ([`Outbox::deliver_now`]); when that fails or the
//! process dies, the lease runs out and the periodic relay ([`Outbox::relay`]) delivers it,
//! retrying with backoff. Orders' handlers are idempotent per payment, so a repeated delivery
//! has no second effect: at-least-once delivery, exactly-once effect. When Orders refuses a
//! succeeded payment (the order was cancelled or its reservation expired), the payment is
//! refunded in the transaction that settles the event: money is never kept without goods.

use std::sync::Arc;

use ecom_shared::{metrics::Metrics, service_tokens::ServiceTokens};
use futures::StreamExt;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use sqlx::PgPool;

use crate::{
    error::Result,
    orders::{Ack, OrdersClient},
    repo,
};

/// How long a relay delivery attempt holds its event.
const LEASE_SECS: i64 = 30;
/// Events delivered concurrently by one relay pass.
const RELAY_CONCURRENCY: usize = 16;

/// What an event tells Orders (stored as its `kind` text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `payment.succeeded`: the order is paid (`MarkPaid`).
    PaymentSucceeded,
    /// `payment.refunded`: the order is refunded and its stock returned (`MarkRefunded`).
    PaymentRefunded,
}

impl EventKind {
    /// Every kind this build delivers. The relay leases only these, so during a rollout an
    /// older replica leaves a newer kind to a replica that knows it instead of failing on it.
    pub const ALL: [EventKind; 2] = [Self::PaymentSucceeded, Self::PaymentRefunded];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentSucceeded => "payment.succeeded",
            Self::PaymentRefunded => "payment.refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "payment.succeeded" => Self::PaymentSucceeded,
            "payment.refunded" => Self::PaymentRefunded,
            _ => return None,
        })
    }
}

/// An event to deliver to Orders.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub kind: EventKind,
    pub payment_id: i64,
    pub order_id: i64,
    pub attempts: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct RelayLabels {
    kind: &'static str,
}

/// Retry delay after `attempts` failed deliveries: 1 s doubling, capped at one minute.
pub fn backoff_ms(attempts: i32) -> i64 {
    let exp = u32::try_from(attempts.clamp(1, 7) - 1).unwrap_or(0);
    (1000_i64 << exp).min(60_000)
}

pub struct Outbox {
    pool: PgPool,
    orders: OrdersClient,
    tokens: Arc<ServiceTokens>,
    /// `payments_total{status="refunded"}`: the automatic refunds counted with the others.
    refunded: Counter,
    pending: Gauge,
    attempts: Family<RelayLabels, Counter>,
    failures: Family<RelayLabels, Counter>,
}

impl Outbox {
    pub fn new(
        pool: PgPool,
        orders: OrdersClient,
        tokens: Arc<ServiceTokens>,
        metrics: &Arc<Metrics>,
        refunded: Counter,
    ) -> Self {
        let pending = Gauge::default();
        metrics.register(
            "outbox_pending",
            "outbox events not yet acknowledged by Orders",
            pending.clone(),
        );
        let attempts = Family::<RelayLabels, Counter>::default();
        metrics.register(
            "outbox_relay_attempts",
            "outbox delivery attempts",
            attempts.clone(),
        );
        let failures = Family::<RelayLabels, Counter>::default();
        metrics.register(
            "outbox_relay_failures",
            "outbox delivery attempts that must be retried",
            failures.clone(),
        );
        Self {
            pool,
            orders,
            tokens,
            refunded,
            pending,
            attempts,
            failures,
        }
    }

    /// Delivers an event its writer holds the lease of. True when the payment changed (it
    /// was refunded because the order refused it).
    pub async fn deliver_now(&self, event: Event) -> bool {
        let id = event.id;
        match self.deliver(event).await {
            Ok(changed) => changed,
            Err(e) => {
                tracing::warn!(event_id = id, error = %e, "delivery failed; the relay retries");
                false
            }
        }
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
        self.pending.set(repo::pending_events(&self.pool).await?);
        Ok(n)
    }

    /// One delivery attempt of a leased event; the outcome is recorded on the event. True
    /// when the payment was refunded because its order refused it.
    async fn deliver(&self, event: Event) -> Result<bool> {
        let labels = RelayLabels {
            kind: event.kind.as_str(),
        };
        self.attempts.get_or_create(&labels).inc();
        let ack = match event.kind {
            EventKind::PaymentSucceeded => {
                self.orders
                    .mark_paid(&self.tokens, event.order_id, event.payment_id)
                    .await
            }
            EventKind::PaymentRefunded => {
                self.orders
                    .mark_refunded(&self.tokens, event.order_id, event.payment_id)
                    .await
            }
        };
        match ack {
            Ack::Done => repo::mark_delivered(&self.pool, event.id).await?,
            Ack::Refused(why) if event.kind == EventKind::PaymentSucceeded => {
                return self.refund_refused(&event, &why).await;
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
                self.failures.get_or_create(&labels).inc();
                let delay = backoff_ms(event.attempts);
                tracing::warn!(
                    event_id = event.id,
                    kind = labels.kind,
                    attempts = event.attempts,
                    retry_in_ms = delay,
                    error = why,
                    "outbox delivery failed"
                );
                repo::reschedule(&self.pool, event.id, delay, &why).await?;
            }
        }
        Ok(false)
    }

    /// The order cannot take this payment: give the money back, in the same transaction that
    /// settles the event. True when it was refunded now.
    async fn refund_refused(&self, event: &Event, why: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let refunded = repo::refund(&mut *tx, event.payment_id, Some("order_cancelled")).await?;
        repo::mark_delivered(&mut *tx, event.id).await?;
        tx.commit().await?;
        if refunded {
            self.refunded.inc();
        }
        tracing::warn!(
            payment_id = event.payment_id,
            order_id = event.order_id,
            reason = why,
            "the order refused the payment; refunded automatically"
        );
        Ok(refunded)
    }
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

    #[test]
    fn event_kinds_are_the_stored_text() {
        for kind in [EventKind::PaymentSucceeded, EventKind::PaymentRefunded] {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(EventKind::parse("payment.lost"), None);
    }
}
