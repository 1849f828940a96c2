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

use ecom_proto::orders::v1::OrderStatus;
use ecom_shared::{
    FieldError,
    auth::{Caller, CurrentUser},
    idempotency::{Claim, Idempotency, Ran},
    metrics::Metrics,
    page::Page,
    service_tokens::ServiceTokens,
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use rust_decimal::prelude::ToPrimitive;
use sqlx::PgPool;

use crate::{
    card::{self, Outcome},
    domain::{Pay, Payment, PaymentStatus},
    error::{Error, Result},
    orders::OrdersClient,
    outbox::{EventKind, Outbox},
    repo::{self, NewPayment},
};

/// Test-only faults (`ECOM_FAULT`), refused in production by the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Exit the process right after a succeeded payment's transaction commits, before Orders
    /// hears of it (the relay must finish the job after a restart).
    ExitAfterCommit,
}

impl Fault {
    fn parse(name: Option<&str>) -> Self {
        match name {
            Some("payments.after_commit") => Self::ExitAfterCommit,
            _ => Self::None,
        }
    }

    /// The hook between a succeeded payment's commit and its delivery to Orders.
    fn after_commit(self, payment_id: i64) {
        if self == Self::ExitAfterCommit {
            tracing::error!(payment_id, "injected fault: payments.after_commit, exiting");
            std::process::exit(86);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct AmountLabels {
    status: &'static str,
    currency: String,
}

/// The result of `POST /payments`: a new payment, or the one an idempotency key already made.
pub enum Paid {
    New(Payment),
    Replayed(Payment),
}

pub struct PaymentsService {
    pool: PgPool,
    orders: OrdersClient,
    keys: Idempotency<repo::Keys>,
    outbox: Outbox,
    latency: Duration,
    grace: Duration,
    stuck_after: Duration,
    fault: Fault,
    payments: Family<StatusLabels, Counter>,
    amounts: Family<AmountLabels, Counter<f64, AtomicU64>>,
    replays: Counter,
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
        let refunded = payments
            .get_or_create(&StatusLabels {
                status: PaymentStatus::Refunded.as_str(),
            })
            .clone();
        Self {
            keys: Idempotency::new(repo::Keys(pool.clone()), settings.stuck_after),
            outbox: Outbox::new(pool.clone(), orders.clone(), tokens, metrics, refunded),
            pool,
            orders,
            latency: settings.latency,
            grace: settings.grace,
            stuck_after: settings.stuck_after,
            fault: Fault::parse(settings.fault.as_deref()),
            payments,
            amounts,
            replays: metrics.replay_counter("pay"),
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

    /// `POST /payments`: charge an order's total to a card, once per idempotency key
    /// (`ecom_shared::idempotency`; a key whose charge died is taken over after
    /// `ECOM_PAYMENT_STUCK_SECONDS`, when its payment is settled as interrupted too).
    #[tracing::instrument(skip_all, fields(user_id = user.id))]
    pub async fn pay(&self, user: CurrentUser, token: &str, pay: Pay) -> Result<Paid> {
        let hash = pay.fingerprint();
        let ran = self
            .keys
            .run(user.id, pay.idempotency_key.as_ref(), &hash, |claim| {
                self.charge(user, token, &pay, claim)
            })
            .await?;
        match ran {
            Ran::New(payment) => Ok(Paid::New(payment)),
            Ran::Replayed(payment_id) => {
                let payment = self.payment(payment_id).await?;
                self.replays.inc();
                Ok(Paid::Replayed(payment))
            }
        }
    }

    /// Charges `pay` (holding its key, if any): claim the order, charge the card, settle the
    /// payment with its event and key, tell Orders.
    async fn charge(
        &self,
        user: CurrentUser,
        token: &str,
        pay: &Pay,
        key: Option<Claim>,
    ) -> Result<Payment> {
        let payment_id = self.claim_order(user, token, pay).await?;
        // The emulated processor (a network call in real life).
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let (status, failure) = match card::charge(&pay.card) {
            Outcome::Succeeded => (PaymentStatus::Succeeded, None),
            Outcome::Failed(decline) => (PaymentStatus::Failed, Some(decline.code())),
        };
        // The payment, its event and its idempotency key's answer: one atomic statement.
        let key = key.as_ref().map(|k| (k.user_id, k.key.as_str()));
        let settled = repo::settle(
            &self.pool,
            payment_id,
            status,
            failure,
            key,
            millis(self.grace),
        )
        .await?;
        let Some((payment, event)) = settled else {
            return self.settled_as_interrupted(payment_id, key).await;
        };
        self.count(status);
        if status == PaymentStatus::Succeeded {
            self.count_amount(status, &payment);
        }
        tracing::info!(
            payment_id,
            order_id = pay.order_id,
            status = status.as_str(),
            failure_code = failure,
            brand = pay.card.brand().as_str(),
            last4 = pay.card.last4(),
            "card charged"
        );
        let Some(event) = event else {
            return Ok(payment);
        };
        self.fault.after_commit(payment_id);
        // Normally the order is paid before the client hears back; if this fails, the relay
        // finishes the job.
        if self.outbox.deliver_now(event).await {
            // Refunded on the spot: the order could not take it.
            return self.payment(payment_id).await;
        }
        Ok(payment)
    }

    /// A charge that finished after the sweeper settled it as interrupted (it was slower than
    /// ECOM_PAYMENT_STUCK_SECONDS): that verdict stands, this outcome is dropped, and the key
    /// answers the settled payment.
    async fn settled_as_interrupted(
        &self,
        payment_id: i64,
        key: Option<(i64, &str)>,
    ) -> Result<Payment> {
        tracing::error!(
            payment_id,
            "charge finished after it was settled as interrupted"
        );
        if let Some((user_id, key)) = key {
            repo::finish_key(&self.pool, user_id, key, payment_id).await?;
        }
        self.payment(payment_id).await
    }

    /// Checks the order (the caller's, awaiting payment; the amount is the order's, never the
    /// client's) and claims it with a `processing` payment: the payment's id.
    async fn claim_order(&self, user: CurrentUser, token: &str, pay: &Pay) -> Result<i64> {
        // Someone else's order is "not found", for an admin too: one pays one's own orders.
        let order = self.orders.get(token, pay.order_id).await?;
        if order.user_id != user.id {
            return Err(Error::NotFound("order"));
        }
        if order.status != OrderStatus::PendingPayment {
            return Err(Error::InvalidState(format!(
                "an order that is {} cannot be paid",
                order_status(order.status)
            )));
        }
        let new = NewPayment {
            order_id: pay.order_id,
            user_id: order.user_id,
            amount: order.total,
            currency: &order.currency,
            brand: pay.card.brand().as_str(),
            last4: pay.card.last4(),
        };
        match repo::insert_processing(&self.pool, &new).await {
            Ok(id) => Ok(id),
            Err(e) if is_unique_violation(&e) => {
                let held = repo::charge_of_order(&self.pool, pay.order_id).await?;
                Err(Error::InvalidState(match held.as_deref() {
                    Some("processing") => "a payment for this order is in progress".to_owned(),
                    _ => "this order is already paid".to_owned(),
                }))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn payment(&self, id: i64) -> Result<Payment> {
        repo::get_payment(&self.pool, id)
            .await?
            .ok_or(Error::NotFound("payment"))
    }

    /// One relay pass of the outbox (see [`Outbox::relay`]).
    pub async fn relay(&self, batch: i64) -> Result<usize> {
        self.outbox.relay(batch).await
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
            EventKind::PaymentRefunded,
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
        self.outbox.deliver_now(event).await;
        self.payment(id).await
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
