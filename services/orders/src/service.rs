//! The Orders domain core: checkout, the order lifecycle, idempotency. Adapters only translate.

use std::{str::FromStr, sync::Arc, time::Duration};

use chrono::{SubsecRound, Utc};
use ecom_shared::{
    FieldError,
    auth::{Caller, CurrentUser},
    cache::{Cache, LoadError},
    idempotency::{Claim, Idempotency, Ran},
    metrics::Metrics,
    page::Page,
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use rust_decimal::Decimal;
use sqlx::PgPool;

use crate::{
    domain::{self, Checkout, Order, OrderItem, OrderLines, OrderStatus, Settlement},
    error::{Error, Result},
    products::{ProductsClient, Quote},
    repo,
};

const NAMESPACE: &str = "orders";

/// A cache load's database error: a database down stays a 503 through the single flight.
fn load_error(e: sqlx::Error) -> LoadError {
    match Error::from(e) {
        Error::Unavailable(what) => LoadError::Unavailable(what),
        other => LoadError::failed(other),
    }
}

/// A cache read's error as ours.
fn cache_error(e: LoadError) -> Error {
    match e {
        LoadError::Unavailable(what) => Error::Unavailable(what),
        LoadError::Failed(cause) => Error::Internal(anyhow::Error::new(cause)),
    }
}

/// How long a checkout may hold its idempotency key before it counts as dead and a duplicate
/// takes the key over: well beyond the longest live checkout (three `ReserveStock` attempts of
/// 3 s each, a `GetProducts` call only from a Products that does not quote, then one statement).
const KEY_LEASE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct TransitionLabels {
    from: &'static str,
    to: &'static str,
}

/// Test-only faults (`ECOM_FAULT`), refused in production by the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Fail every checkout right after its stock is reserved (exercises the compensation).
    FailAfterReserve,
    /// Exit the process right after a reservation (a crash: Products' expiry frees the stock).
    ExitAfterReserve,
}

impl Fault {
    fn parse(name: Option<&str>) -> Self {
        match name {
            Some("orders.after_reserve") => Self::FailAfterReserve,
            Some("orders.exit_after_reserve") => Self::ExitAfterReserve,
            _ => Self::None,
        }
    }

    /// The hook between a checkout's reservation and its order being stored.
    fn after_reserve(self, order_id: i64) -> Result<()> {
        match self {
            Self::None => Ok(()),
            Self::FailAfterReserve => Err(Error::Internal(anyhow::anyhow!(
                "injected fault: orders.after_reserve"
            ))),
            Self::ExitAfterReserve => {
                tracing::error!(
                    order_id,
                    "injected fault: orders.exit_after_reserve, exiting"
                );
                std::process::exit(86);
            }
        }
    }
}

/// A checkout's lines priced from Products' quotes.
struct Priced {
    items: Vec<OrderItem>,
    total: Decimal,
    currency: String,
}

/// Names and prices the lines from `quotes`; every line without one is named as the client
/// sent it.
fn price(lines: &OrderLines, quotes: &[Quote]) -> Result<Priced> {
    let mut errors = Vec::new();
    let mut items = Vec::with_capacity(lines.lines().len());
    let mut currency = None;
    for (i, line) in lines.lines().iter().enumerate() {
        let Some(q) = quotes.iter().find(|q| q.product_id == line.product_id) else {
            errors.push(FieldError::new(
                format!("items[{i}].product_id"),
                "no such product",
            ));
            continue;
        };
        let unit_price = Decimal::from_str(&q.unit_price).map_err(|e| {
            Error::Internal(anyhow::anyhow!(
                "product {} has price {:?}: {e}",
                q.product_id,
                q.unit_price
            ))
        })?;
        currency.get_or_insert_with(|| q.currency.clone());
        items.push(OrderItem {
            product_id: q.product_id,
            name: q.name.clone(),
            unit_price,
            quantity: line.quantity,
            line_total: unit_price * Decimal::from(line.quantity),
        });
    }
    if !errors.is_empty() {
        return Err(Error::UnknownProducts(errors));
    }
    let total: Decimal = items.iter().map(|i| i.line_total).sum();
    if total > domain::max_amount() || items.iter().any(|i| i.line_total > domain::max_amount()) {
        return Err(Error::field("items", "the order total is too large"));
    }
    Ok(Priced {
        items,
        total,
        currency: currency.unwrap_or_else(|| "USD".to_owned()),
    })
}

/// The result of a checkout: a new order, or the one an idempotency key already made.
pub enum Created {
    New(Order),
    Replayed(Order),
}

pub struct OrdersService {
    pool: PgPool,
    keys: Idempotency<repo::Keys>,
    /// Products, called as this service (its own token) for every stock operation.
    products: ProductsClient,
    cache: Cache,
    reservation_ttl: Duration,
    fault: Fault,
    created: Counter,
    transitions: Family<TransitionLabels, Counter>,
    replays: Counter,
}

impl OrdersService {
    pub fn new(
        pool: PgPool,
        products: ProductsClient,
        cache: Cache,
        metrics: &Arc<Metrics>,
        reservation_ttl: Duration,
    ) -> Self {
        let created = Counter::default();
        metrics.register("orders_created", "orders created", created.clone());
        let transitions = Family::<TransitionLabels, Counter>::default();
        metrics.register(
            "order_transitions",
            "order state changes",
            transitions.clone(),
        );
        Self {
            keys: Idempotency::new(repo::Keys(pool.clone()), KEY_LEASE),
            pool,
            products,
            cache,
            reservation_ttl,
            fault: Fault::None,
            created,
            transitions,
            replays: metrics.replay_counter("create_order"),
        }
    }

    /// Injects the test-only fault named by `ECOM_FAULT` (see `Config::fault`).
    pub fn with_fault(mut self, fault: Option<&str>) -> Self {
        self.fault = Fault::parse(fault);
        self
    }

    fn count_transition(&self, from: OrderStatus, to: OrderStatus) {
        self.transitions
            .get_or_create(&TransitionLabels {
                from: from.as_str(),
                to: to.as_str(),
            })
            .inc();
    }

    /// Checkout: reserve the stock (keyed by the order id; Products answers each line's name
    /// and price as they were at the hold, read under the same row locks), price the lines from
    /// that, store the order `pending_payment`. If anything fails after the reservation, it is
    /// released. With an idempotency key, a repeat returns the first order; another request
    /// under the same key is refused (`ecom_shared::idempotency`).
    #[tracing::instrument(skip_all, fields(user_id = user.id))]
    pub async fn create(&self, user: CurrentUser, checkout: Checkout) -> Result<Created> {
        let hash = checkout.lines.fingerprint();
        let ran = self
            .keys
            .run(user.id, checkout.idempotency_key.as_ref(), &hash, |claim| {
                self.checkout(user, &checkout.lines, claim)
            })
            .await?;
        match ran {
            Ran::New(order) => Ok(Created::New(order)),
            Ran::Replayed(order_id) => {
                let mut conn = self.pool.acquire().await?;
                let order = repo::get_order(&mut conn, order_id)
                    .await?
                    .ok_or(Error::NotFound)?;
                self.replays.inc();
                Ok(Created::Replayed(order))
            }
        }
    }

    async fn checkout(
        &self,
        user: CurrentUser,
        lines: &OrderLines,
        key: Option<Claim>,
    ) -> Result<Order> {
        let order_id = repo::next_order_id(&self.pool).await?;
        let quotes = match self.products.reserve(order_id, lines.lines()).await {
            Ok(quotes) => quotes,
            Err(Error::UnknownProducts(unnamed)) => {
                return Err(self.name_unknown(lines, unnamed).await);
            }
            Err(e) => return Err(e),
        };
        let order = match self
            .store(user, order_id, lines, quotes, key.as_ref())
            .await
        {
            Ok(order) => order,
            Err(e) => {
                // Nothing may stay held for an order that does not exist.
                if let Err(release) = self.products.release(order_id).await {
                    tracing::error!(order_id, error = %release, "could not release the reservation of a failed order; it expires on its own");
                }
                return Err(e);
            }
        };
        // The next reader (Payments' `GetOrder`, right after) finds it in the cache.
        self.cache_new(&order).await;
        self.created.inc();
        tracing::info!(order_id, total = %order.total, "order created");
        Ok(order)
    }

    /// Prices a reserved order from its quotes (the catalogue's when Products did not quote
    /// at the hold) and stores it with its key's answer.
    async fn store(
        &self,
        user: CurrentUser,
        order_id: i64,
        lines: &OrderLines,
        quotes: Option<Vec<Quote>>,
        key: Option<&Claim>,
    ) -> Result<Order> {
        self.fault.after_reserve(order_id)?;
        let quotes = match quotes {
            Some(quotes) => quotes,
            None => self.products.quotes(&lines.product_ids()).await?,
        };
        let priced = price(lines, &quotes)?;
        // Microseconds, as PostgreSQL stores them: a replay shows the very same timestamps.
        let now = Utc::now().trunc_subsecs(6);
        let order = Order {
            id: order_id,
            user_id: user.id,
            status: OrderStatus::PendingPayment,
            items: priced.items,
            total: priced.total,
            currency: priced.currency,
            created_at: now,
            updated_at: now,
            payment_id: None,
        };
        let claim = key.map(|k| (k.key.as_str(), k.locked_at));
        if repo::insert_order(&self.pool, &order, claim).await? {
            Ok(order)
        } else {
            // Outlived its lease: a duplicate took the key over and answers it.
            Err(Error::KeyInUse)
        }
    }

    /// Products refused unknown products by id: each line naming one, as the client sent it
    /// (`items[i].product_id`), from the catalogue (Products' own words if that cannot tell).
    async fn name_unknown(&self, lines: &OrderLines, unnamed: Vec<FieldError>) -> Error {
        match self.products.quotes(&lines.product_ids()).await {
            Ok(catalogue) => match price(lines, &catalogue) {
                Err(named @ Error::UnknownProducts(_)) => named,
                _ => Error::UnknownProducts(unnamed),
            },
            Err(_) => Error::UnknownProducts(unnamed),
        }
    }

    /// Writes a just-created order into the cache as its first version, unless a write
    /// touched it already (then the next reader loads it).
    async fn cache_new(&self, order: &Order) {
        match serde_json::to_vec(&Some(order)) {
            Ok(json) => {
                let slot = self.cache.entity_slot(NAMESPACE, "order", order.id);
                self.cache.store_new(slot, json.into()).await;
            }
            Err(e) => {
                tracing::warn!(order_id = order.id, error = %e, "order not cacheable");
                self.invalidate(order.id).await;
            }
        }
    }

    /// One order for a gRPC caller: a user sees their own (an admin all), a service all.
    pub async fn get_for(&self, caller: &Caller, id: i64) -> Result<Order> {
        match caller {
            Caller::User(user) => self.get(*user, id).await,
            Caller::Service(_) => self.load(id).await?.ok_or(Error::NotFound),
        }
    }

    /// One order, from the cache when it is there; another user's order is "not found".
    pub async fn get(&self, caller: CurrentUser, id: i64) -> Result<Order> {
        self.load(id)
            .await?
            .filter(|o| caller.is_admin() || o.user_id == caller.id)
            .ok_or(Error::NotFound)
    }

    async fn load(&self, id: i64) -> Result<Option<Order>> {
        let pool = self.pool.clone();
        let json = self
            .cache
            .get_or_load(
                self.cache.entity_slot(NAMESPACE, "order", id),
                move || async move {
                    let mut conn = pool.acquire().await.map_err(load_error)?;
                    let order = repo::get_order(&mut conn, id).await.map_err(load_error)?;
                    serde_json::to_string(&order)
                        .map(Some)
                        .map_err(LoadError::failed)
                },
            )
            .await
            .map_err(cache_error)?;
        match json {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Internal(e.into())),
            None => Ok(None),
        }
    }

    /// The caller's orders (an admin: everyone's, or one user's with `user_id`).
    pub async fn list(
        &self,
        caller: CurrentUser,
        user_id: Option<i64>,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<(Vec<Order>, i64, i64, i64)> {
        let (page, mut errors) = match Page::parse(limit, offset) {
            Ok(page) => (Some(page), Vec::new()),
            Err(errors) => (None, errors),
        };
        if user_id.is_some_and(|id| id <= 0) {
            errors.push(FieldError::new("user_id", "must be a positive integer"));
        }
        let (Some(Page { limit, offset }), true) = (page, errors.is_empty()) else {
            return Err(Error::Validation(errors));
        };
        let owner = if caller.is_admin() {
            user_id
        } else {
            Some(caller.id)
        };
        let mut conn = self.pool.acquire().await?;
        let (orders, total) = repo::list_orders(&mut conn, owner, limit, offset).await?;
        Ok((orders, total, limit, offset))
    }

    /// Cancels an unpaid order and gives its stock back.
    #[tracing::instrument(skip_all, fields(order_id = id))]
    pub async fn cancel(&self, caller: CurrentUser, id: i64) -> Result<Order> {
        let order = self.get(caller, id).await?;
        // The state change first: if the order was paid meanwhile, this fails and the stock
        // stays committed to it.
        if repo::transition(
            &self.pool,
            id,
            OrderStatus::PendingPayment,
            OrderStatus::Cancelled,
        )
        .await?
        .is_none()
        {
            let mut conn = self.pool.acquire().await?;
            let now = repo::get_order(&mut conn, id)
                .await?
                .ok_or(Error::NotFound)?;
            self.invalidate(id).await;
            return Err(Error::InvalidState(format!(
                "an order that is {} cannot be cancelled",
                now.status.as_str()
            )));
        }
        self.count_transition(order.status, OrderStatus::Cancelled);
        self.invalidate(id).await;
        if let Err(e) = self.products.release(id).await {
            tracing::warn!(order_id = id, error = %e, "release failed; the reservation expires on its own");
        }
        self.get(caller, id).await
    }

    /// A succeeded payment (the Payments service only): commits the order's reservation and
    /// marks it paid, once. The order is set paid first, in a transaction that keeps its row
    /// locked while Products commits the stock and becomes visible only if that succeeds: a
    /// cancel or the sweeper cannot slip in between the commit and the state change.
    #[tracing::instrument(skip(self, caller))]
    pub async fn mark_paid(&self, caller: &Caller, settled: Settlement) -> Result<Order> {
        let Settlement {
            order_id,
            payment_id,
        } = settled;
        if !caller.is_service("payments") {
            return Err(Error::Forbidden);
        }
        let mut tx = self.pool.begin().await?;
        // Only from `pending_payment` (the state machine's guard, in the statement).
        let Some(order) = repo::pay(&mut *tx, order_id, payment_id).await? else {
            tx.rollback().await?;
            return self.paid_already(order_id, payment_id).await;
        };
        match self.products.commit(order_id).await {
            Ok(()) => {
                tx.commit().await?;
                self.count_transition(OrderStatus::PendingPayment, OrderStatus::Paid);
                self.invalidate(order_id).await;
                tracing::info!(order_id, payment_id, "order paid");
                Ok(order)
            }
            Err(Error::Gone(why)) => {
                // The reservation expired before the payment landed: the order cannot be
                // fulfilled, so it ends cancelled (unless a cancel got there first) and the
                // caller refunds.
                tx.rollback().await?;
                let cancelled = repo::transition(
                    &self.pool,
                    order_id,
                    OrderStatus::PendingPayment,
                    OrderStatus::Cancelled,
                )
                .await?;
                if cancelled.is_some() {
                    self.count_transition(OrderStatus::PendingPayment, OrderStatus::Cancelled);
                    self.invalidate(order_id).await;
                }
                tracing::warn!(
                    order_id,
                    payment_id,
                    "payment landed after the reservation expired; order cancelled"
                );
                Err(Error::Gone(why))
            }
            // Not paid (the transaction rolls back as it is dropped): the caller retries.
            Err(e) => Err(e),
        }
    }

    /// `MarkPaid` for an order that was not awaiting payment: a repeat of this payment's is
    /// answered with the order as it is; any other is refused.
    async fn paid_already(&self, order_id: i64, payment_id: i64) -> Result<Order> {
        let mut conn = self.pool.acquire().await?;
        let order = repo::get_order(&mut conn, order_id)
            .await?
            .ok_or(Error::NotFound)?;
        match order.status {
            OrderStatus::Paid | OrderStatus::Refunded if order.payment_id == Some(payment_id) => {
                Ok(order)
            }
            OrderStatus::Paid | OrderStatus::Refunded => {
                Err(Error::Gone("the order was paid by another payment".into()))
            }
            OrderStatus::Cancelled => Err(Error::Gone("the order was cancelled".into())),
            // No state leads back to `pending_payment`.
            OrderStatus::PendingPayment => Err(Error::Internal(anyhow::anyhow!(
                "order {order_id} is pending but could not be paid"
            ))),
        }
    }

    /// A refunded payment (the Payments service only): returns the stock and marks the order
    /// refunded, once.
    #[tracing::instrument(skip(self, caller))]
    pub async fn mark_refunded(&self, caller: &Caller, settled: Settlement) -> Result<Order> {
        let Settlement {
            order_id,
            payment_id,
        } = settled;
        let (mut tx, order) = self.lock_for_payments(caller, order_id).await?;
        if order.payment_id != Some(payment_id) {
            return Err(Error::Gone("the order was not paid by this payment".into()));
        }
        if order.status == OrderStatus::Refunded {
            return Ok(order);
        }
        self.products.return_stock(order_id).await?;
        let updated_at =
            repo::transition(&mut *tx, order_id, OrderStatus::Paid, OrderStatus::Refunded)
                .await?
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("a locked order changed")))?;
        tx.commit().await?;
        self.count_transition(OrderStatus::Paid, OrderStatus::Refunded);
        self.invalidate(order_id).await;
        tracing::info!(order_id, payment_id, "order refunded");
        Ok(Order {
            status: OrderStatus::Refunded,
            updated_at,
            ..order
        })
    }

    /// The order, locked for a payment transition; only the Payments service may ask.
    async fn lock_for_payments(
        &self,
        caller: &Caller,
        order_id: i64,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Postgres>, Order)> {
        if !caller.is_service("payments") {
            return Err(Error::Forbidden);
        }
        let mut tx = self.pool.begin().await?;
        let order = repo::lock_order(&mut tx, order_id)
            .await?
            .ok_or(Error::NotFound)?;
        Ok((tx, order))
    }

    async fn invalidate(&self, id: i64) {
        self.cache
            .invalidate(NAMESPACE, &[("order", id)], &[])
            .await;
    }

    /// Cancels unpaid orders older than the reservation lifetime and releases their stock as
    /// this service. Products expires the reservations on its own too (the safety net when
    /// this release fails).
    pub async fn sweep_expired(&self, batch: i64) -> Result<usize> {
        let ttl = i64::try_from(self.reservation_ttl.as_secs()).unwrap_or(i64::MAX);
        let cancelled = repo::cancel_expired(&self.pool, ttl, batch).await?;
        for id in &cancelled {
            self.count_transition(OrderStatus::PendingPayment, OrderStatus::Cancelled);
            self.invalidate(*id).await;
            if let Err(e) = self.products.release(*id).await {
                tracing::warn!(order_id = id, error = %e, "release failed; the reservation expires on its own");
            }
        }
        if !cancelled.is_empty() {
            tracing::info!(count = cancelled.len(), "unpaid orders cancelled");
        }
        Ok(cancelled.len())
    }

    /// Housekeeping: idempotency keys live 24 hours.
    pub async fn purge_keys(&self) -> Result<u64> {
        Ok(repo::purge_keys(&self.pool).await?)
    }
}
