//! The Products domain core: catalogue reads and writes, and stock reservations. Adapters (HTTP,
//! gRPC) only translate to and from these calls.

use std::time::Duration;

use axum::body::Bytes;
use ecom_shared::{
    cache::{Cache, LoadError},
    metrics::Metrics,
};
use prometheus_client::metrics::{counter::Counter, family::Family};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::{
    domain::{Line, Listing, NewProduct, Product, ProductUpdate, Quote, ReserveStock},
    error::{Error, Result},
    repo::{self, Deleted, StockEffect},
};

/// The cache namespace of this service's keys.
const NAMESPACE: &str = ecom_shared::cache::CATALOGUE_NAMESPACE;
/// The collection every listing page belongs to (one version for all of them): every product
/// write bumps its version, which the gateway's response cache keys on too.
const LISTINGS: &str = ecom_shared::cache::CATALOGUE_COLLECTION;

/// A listing page: the response body of `GET /products` (the schema keeps its published name,
/// `Page`; `ecom_shared::page::Page` is the limit/offset a listing asks for).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[schema(as = Page)]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// Reservation states, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Active,
    Committed,
    Released,
    Expired,
    Returned,
}

impl ReservationStatus {
    fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "active" => Self::Active,
            "committed" => Self::Committed,
            "released" => Self::Released,
            "expired" => Self::Expired,
            "returned" => Self::Returned,
            other => {
                return Err(Error::Internal(anyhow::anyhow!(
                    "unknown reservation status {other}"
                )));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Committed => "committed",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Returned => "returned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub order_id: i64,
    pub status: ReservationStatus,
    pub lines: Vec<Line>,
    /// Each line's product as it was when the stock was held, in the order of `lines`; empty for
    /// a reservation made before these were kept.
    pub quotes: Vec<Quote>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Reservation {
    /// From its rows (one per line, by product id); `None` when there are none.
    fn from_rows(order_id: i64, rows: Vec<repo::ReservationLineRow>) -> Result<Option<Self>> {
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let (status, expires_at) = (ReservationStatus::parse(&first.status)?, first.expires_at);
        let lines = rows
            .iter()
            .map(|r| Line {
                product_id: r.product_id,
                quantity: r.quantity,
            })
            .collect();
        // All or none: lines reserved before quotes were kept have none.
        let quotes = rows
            .into_iter()
            .map(|r| {
                Some(Quote {
                    product_id: r.product_id,
                    name: r.name?,
                    unit_price: r.unit_price?,
                    currency: r.currency?,
                })
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        Ok(Some(Self {
            order_id,
            status,
            lines,
            quotes,
            expires_at,
        }))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

pub struct ProductsService {
    pool: PgPool,
    cache: Cache,
    currency: String,
    /// Lifetime of every reservation (ECOM_RESERVATION_TTL_SECONDS); never the caller's choice.
    reservation_ttl: Duration,
    reservations: Family<ResultLabels, Counter>,
    /// Units committed to paid orders.
    units_sold: Counter,
}

fn to_json<T: serde::Serialize>(v: &T) -> std::result::Result<String, LoadError> {
    serde_json::to_string(v).map_err(LoadError::failed)
}

fn shared_error(e: LoadError) -> Error {
    match e {
        LoadError::Unavailable(what) => Error::Unavailable(what),
        LoadError::Failed(cause) => Error::Internal(anyhow::Error::new(cause)),
    }
}

fn load_error(e: sqlx::Error) -> LoadError {
    match Error::from(e) {
        Error::Unavailable(what) => LoadError::Unavailable(what),
        other => LoadError::failed(other),
    }
}

impl ProductsService {
    pub fn new(
        pool: PgPool,
        cache: Cache,
        metrics: &Metrics,
        currency: String,
        reservation_ttl: Duration,
    ) -> Self {
        let reservations = Family::<ResultLabels, Counter>::default();
        metrics.register(
            "stock_reservations",
            "stock reservation calls by result",
            reservations.clone(),
        );
        let units_sold = Counter::default();
        metrics.register(
            "stock_units_sold",
            "units committed to paid orders",
            units_sold.clone(),
        );
        Self {
            pool,
            cache,
            currency,
            reservation_ttl,
            reservations,
            units_sold,
        }
    }

    /// After a committed write: these products and every listing page are stale.
    async fn invalidate(&self, product_ids: &[i64]) {
        let entities: Vec<(&str, i64)> = product_ids.iter().map(|id| ("product", *id)).collect();
        self.cache
            .invalidate(NAMESPACE, &entities, &[LISTINGS])
            .await;
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn currency(&self) -> &str {
        &self.currency
    }

    fn count(&self, result: &'static str) {
        self.reservations
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// One product's JSON, from the cache when it is there. Served as stored: a warm read does
    /// no (de)serialisation at all.
    pub async fn get_json(&self, id: i64) -> Result<Bytes> {
        let pool = self.pool.clone();
        let json = self
            .cache
            .get_or_load(
                self.cache.entity_slot(NAMESPACE, "product", id),
                move || async move {
                    let p = repo::get_product(&pool, id).await.map_err(load_error)?;
                    // Absent products are cached too (as `null`): a flood of 404s stays off the database.
                    to_json(&p).map(Some)
                },
            )
            .await
            .map_err(shared_error)?
            .unwrap_or_else(|| Bytes::from_static(b"null"));
        if json.as_ref() == b"null" {
            Err(Error::NotFound)
        } else {
            Ok(json)
        }
    }

    /// One product, from the cache when it is there.
    pub async fn get(&self, id: i64) -> Result<Product> {
        let json = self.get_json(id).await?;
        serde_json::from_slice(&json).map_err(|e| Error::Internal(e.into()))
    }

    /// A listing page as its response JSON (`{items, total, limit, offset}`), from the cache
    /// when it is there.
    pub async fn list_json(&self, q: Listing) -> Result<Bytes> {
        let fingerprint = {
            let key = format!(
                "{}|{}|{:?}|{:?}|{:?}|{:?}|{}",
                q.limit,
                q.offset,
                q.category,
                q.min_price.map(|m| m.to_string()),
                q.max_price.map(|m| m.to_string()),
                q.search,
                q.sort.as_str()
            );
            let digest = Sha256::digest(key.as_bytes());
            digest
                .iter()
                .take(16)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let pool = self.pool.clone();
        self.cache
            .get_or_load(
                self.cache
                    .collection_slot(NAMESPACE, LISTINGS, &fingerprint),
                move || async move {
                    let mut conn = pool.acquire().await.map_err(load_error)?;
                    let (items, total) = repo::list(&mut conn, &q).await.map_err(load_error)?;
                    to_json(&ProductPage {
                        items,
                        total,
                        limit: q.limit,
                        offset: q.offset,
                    })
                    .map(Some)
                },
            )
            .await
            .map_err(shared_error)?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("listing load returned nothing")))
    }

    /// A listing page, from the cache when it is there.
    pub async fn list(&self, q: Listing) -> Result<ProductPage> {
        let json = self.list_json(q).await?;
        serde_json::from_slice(&json).map_err(|e| Error::Internal(e.into()))
    }

    /// Products by id (batch), fresh from the database, in the order asked.
    pub async fn get_many(&self, ids: &[i64]) -> Result<Vec<Product>> {
        if ids.len() > 100 {
            return Err(Error::Validation(vec![ecom_shared::FieldError::new(
                "ids",
                "at most 100 ids",
            )]));
        }
        let mut products = repo::get_products(&self.pool, ids).await?;
        products.sort_by_key(|p| ids.iter().position(|i| *i == p.id));
        Ok(products)
    }

    #[tracing::instrument(skip_all)]
    pub async fn create(&self, new: NewProduct) -> Result<Product> {
        let product = repo::insert_product(&self.pool, &new, &self.currency).await?;
        self.invalidate(&[product.id]).await;
        tracing::info!(product_id = product.id, "product created");
        Ok(product)
    }

    #[tracing::instrument(skip_all, fields(product_id = update.id))]
    pub async fn update(&self, update: ProductUpdate) -> Result<Product> {
        let ProductUpdate { id, patch } = update;
        let product = repo::update_product(&self.pool, id, &patch)
            .await?
            .ok_or(Error::NotFound)?;
        self.invalidate(&[id]).await;
        Ok(product)
    }

    #[tracing::instrument(skip_all, fields(product_id = id))]
    pub async fn delete(&self, id: i64) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        match repo::delete_product(&mut conn, id).await? {
            Deleted::Yes => {
                self.invalidate(&[id]).await;
                Ok(())
            }
            Deleted::NotFound => Err(Error::NotFound),
            Deleted::Held => Err(Error::InvalidState(
                "units of this product are reserved by open orders",
            )),
        }
    }

    /// Holds stock for an order: every line or none, for the configured reservation lifetime,
    /// answering each line's name and price as read under the hold's row locks. Idempotent per
    /// order id: a retry answers the same reservation, quotes included.
    #[tracing::instrument(skip_all, fields(order_id = command.order_id))]
    pub async fn reserve(&self, command: ReserveStock) -> Result<Reservation> {
        let ReserveStock { order_id, lines } = command;
        let ttl = i64::try_from(self.reservation_ttl.as_secs()).unwrap_or(900);
        // The one statement judges the rows it locked; a concurrent hold committed between its
        // snapshot and its update can still make the row check refuse it (no unit is ever
        // oversold: the statement changed nothing). Judged again on a new snapshot.
        let mut attempt = 0;
        let seen = loop {
            match repo::reserve(&self.pool, order_id, &lines, ttl).await {
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("23514") && attempt < 5 =>
                {
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let Some(expires_at) = seen.first().and_then(|r| r.expires_at) else {
            return self.not_held(order_id, &lines, &seen).await;
        };
        let quotes = seen
            .into_iter()
            .map(|r| match (r.name, r.price, r.currency) {
                (Some(name), Some(unit_price), Some(currency)) => Ok(Quote {
                    product_id: r.product_id,
                    name,
                    unit_price,
                    currency,
                }),
                _ => Err(Error::Internal(anyhow::anyhow!(
                    "product {} was held without being seen",
                    r.product_id
                ))),
            })
            .collect::<Result<Vec<_>>>()?;
        self.count("reserved");
        self.invalidate(&lines.iter().map(|l| l.product_id).collect::<Vec<_>>())
            .await;
        Ok(Reservation {
            order_id,
            status: ReservationStatus::Active,
            lines,
            quotes,
            expires_at,
        })
    }

    /// Nothing was held: the order id has its reservation already (a retry, or a concurrent
    /// duplicate that waited for the first) and that is the answer (a conflict if it holds other
    /// lines); else the refusal: unknown products first, then the short ones, as `seen` under
    /// the locks.
    async fn not_held(
        &self,
        order_id: i64,
        lines: &[Line],
        seen: &[repo::HoldRow],
    ) -> Result<Reservation> {
        let rows = repo::find_reservation(&self.pool, order_id).await?;
        if let Some(existing) = Reservation::from_rows(order_id, rows)? {
            if existing.lines != lines {
                self.count("conflict");
                return Err(Error::ReservationConflict);
            }
            self.count("replayed");
            return Ok(existing);
        }
        let unknown: Vec<i64> = seen
            .iter()
            .filter(|r| r.name.is_none())
            .map(|r| r.product_id)
            .collect();
        if !unknown.is_empty() {
            self.count("unknown_product");
            return Err(Error::UnknownProducts(unknown));
        }
        let short: Vec<i64> = seen
            .iter()
            .filter(|r| r.available.is_some_and(|a| a < r.quantity))
            .map(|r| r.product_id)
            .collect();
        if short.is_empty() {
            return Err(Error::Internal(anyhow::anyhow!(
                "order {order_id}: nothing held, no reservation and nothing short"
            )));
        }
        self.count("insufficient");
        Err(Error::InsufficientStock(short))
    }

    /// Moves a reservation along its state machine ([`next_step`]). The op's usual move
    /// ([`Op::usual`]) is one conditional statement; when it does not apply (a replay, a
    /// refusal, an expiry, no such reservation), the reservation is read under its row lock
    /// and [`next_step`] decides, in one transaction. Returns the reservation as it ends up.
    async fn transition(&self, order_id: i64, op: Op) -> Result<Reservation> {
        let (from, to, unexpired_only) = op.usual();
        let rows = repo::move_reservation(
            &self.pool,
            order_id,
            (from.as_str(), to.as_str()),
            unexpired_only,
            to.effect(),
        )
        .await?;
        if let Some(moved) = Reservation::from_rows(order_id, rows)? {
            return Ok(self.moved(moved).await);
        }
        let mut tx = self.pool.begin().await?;
        let rows = repo::lock_reservation(&mut tx, order_id).await?;
        let expired = rows.first().is_some_and(|r| r.expired);
        let current = Reservation::from_rows(order_id, rows)?.ok_or(Error::ReservationNotFound)?;
        let expired = current.status == ReservationStatus::Active && expired;
        match next_step(op, current.status, expired)? {
            Step::Replay => {
                self.count("replayed");
                Ok(current)
            }
            Step::RefuseCommit => {
                self.count("commit_refused");
                Err(Error::ReservationExpired)
            }
            Step::ExpireAndRefuse => {
                // Too late: give the stock back now and tell the caller to refund.
                let expired = self.apply(tx, current, ReservationStatus::Expired).await?;
                self.invalidate(
                    &expired
                        .lines
                        .iter()
                        .map(|l| l.product_id)
                        .collect::<Vec<_>>(),
                )
                .await;
                self.count("commit_refused");
                Err(Error::ReservationExpired)
            }
            Step::Move(target) => {
                let moved = self.apply(tx, current, target).await?;
                Ok(self.moved(moved).await)
            }
        }
    }

    /// Moves `reservation`, locked in `tx`, to `target`, and commits (the caller invalidates).
    async fn apply(
        &self,
        mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
        reservation: Reservation,
        target: ReservationStatus,
    ) -> Result<Reservation> {
        let rows = repo::move_reservation(
            &mut *tx,
            reservation.order_id,
            (reservation.status.as_str(), target.as_str()),
            false,
            target.effect(),
        )
        .await?;
        let moved = Reservation::from_rows(reservation.order_id, rows)?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("a locked reservation changed")))?;
        tx.commit().await?;
        Ok(moved)
    }

    /// After a reservation moved (committed): counted, and its products' cache entries
    /// invalidated when a client can see the change.
    async fn moved(&self, moved: Reservation) -> Reservation {
        self.count(moved.status.as_str());
        if moved.status == ReservationStatus::Committed {
            let units: i64 = moved.lines.iter().map(|l| l.quantity).sum();
            self.units_sold
                .inc_by(u64::try_from(units).unwrap_or_default());
        }
        if moved.status.effect().visible() {
            self.invalidate(&moved.lines.iter().map(|l| l.product_id).collect::<Vec<_>>())
                .await;
        }
        moved
    }

    pub async fn release(&self, order_id: i64) -> Result<Reservation> {
        self.transition(order_id, Op::Release).await
    }

    pub async fn commit(&self, order_id: i64) -> Result<Reservation> {
        self.transition(order_id, Op::Commit).await
    }

    pub async fn return_stock(&self, order_id: i64) -> Result<Reservation> {
        self.transition(order_id, Op::Return).await
    }

    /// Expires reservations past their TTL and gives their stock back. Safe with several
    /// replicas: each takes rows the others have not locked (`SKIP LOCKED`). Returns how many.
    pub async fn sweep_expired(&self, batch: i64) -> Result<usize> {
        let mut tx = self.pool.begin().await?;
        let orders = repo::lock_expired(&mut tx, batch).await?;
        if orders.is_empty() {
            return Ok(0);
        }
        // Summed per product and applied in ascending id, like every other stock change.
        let lines = repo::summed_lines(&mut *tx, &orders).await?;
        for l in &lines {
            repo::unhold(&mut *tx, *l).await?;
        }
        repo::set_status_many(&mut *tx, &orders, ReservationStatus::Expired.as_str()).await?;
        tx.commit().await?;
        for _ in &orders {
            self.count("expired");
        }
        self.invalidate(&lines.iter().map(|l| l.product_id).collect::<Vec<_>>())
            .await;
        tracing::info!(count = orders.len(), "expired reservations released");
        Ok(orders.len())
    }
}

/// What the Orders service asks of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Release,
    Commit,
    Return,
}

impl Op {
    /// The move this op makes from the state it normally finds, as [`next_step`] decides it:
    /// `(from, to, unexpired_only)`, the last when an expired reservation in `from` is
    /// treated otherwise (checked against [`next_step`] by a test).
    fn usual(self) -> (ReservationStatus, ReservationStatus, bool) {
        use ReservationStatus as S;
        match self {
            Self::Release => (S::Active, S::Released, false),
            Self::Commit => (S::Active, S::Committed, true),
            Self::Return => (S::Committed, S::Returned, false),
        }
    }
}

impl ReservationStatus {
    /// What a reservation moving into this state does to each line's product.
    fn effect(self) -> StockEffect {
        let (on_hand, reserved) = match self {
            // Held units are free again.
            Self::Released | Self::Expired => (0, -1),
            // Held units leave the warehouse: sold.
            Self::Committed => (-1, -1),
            // Sold units come back (a refund); a product deleted since is skipped.
            Self::Returned => (1, 0),
            Self::Active => (0, 0),
        };
        StockEffect { on_hand, reserved }
    }
}

/// What an [`Op`] does to a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Already done: answer the reservation as it is.
    Replay,
    /// A commit of a reservation released or expired before: the caller must refund.
    RefuseCommit,
    /// A commit that came after the expiry the sweeper has not reached yet.
    ExpireAndRefuse,
    Move(ReservationStatus),
}

/// The reservation state machine, in one place.
fn next_step(op: Op, status: ReservationStatus, expired: bool) -> Result<Step> {
    use ReservationStatus as S;
    Ok(match (op, status) {
        (Op::Release, S::Released | S::Expired)
        | (Op::Commit, S::Committed)
        | (Op::Return, S::Returned) => Step::Replay,
        (Op::Commit, S::Active) if expired => Step::ExpireAndRefuse,
        (Op::Commit, S::Released | S::Expired) => Step::RefuseCommit,
        (Op::Release, S::Active) => Step::Move(S::Released),
        (Op::Commit, S::Active) => Step::Move(S::Committed),
        (Op::Return, S::Committed) => Step::Move(S::Returned),
        (Op::Release, S::Committed | S::Returned) => {
            return Err(Error::InvalidState(
                "a committed reservation cannot be released; return it",
            ));
        }
        (Op::Return, _) => {
            return Err(Error::InvalidState(
                "only a committed reservation can be returned",
            ));
        }
        (Op::Commit, S::Returned) => {
            return Err(Error::InvalidState("this reservation was returned"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reservation_state_machine() {
        use ReservationStatus as S;
        let step = |op, status, expired| next_step(op, status, expired).ok();
        assert_eq!(
            step(Op::Commit, S::Active, false),
            Some(Step::Move(S::Committed))
        );
        assert_eq!(
            step(Op::Commit, S::Active, true),
            Some(Step::ExpireAndRefuse)
        );
        assert_eq!(
            step(Op::Commit, S::Expired, false),
            Some(Step::RefuseCommit)
        );
        assert_eq!(step(Op::Commit, S::Committed, false), Some(Step::Replay));
        assert_eq!(
            step(Op::Release, S::Active, true),
            Some(Step::Move(S::Released))
        );
        assert_eq!(step(Op::Release, S::Expired, false), Some(Step::Replay));
        assert_eq!(
            step(Op::Return, S::Committed, false),
            Some(Step::Move(S::Returned))
        );
        assert_eq!(step(Op::Return, S::Returned, false), Some(Step::Replay));
        // The one-statement usual move is exactly the state machine's.
        for op in [Op::Release, Op::Commit, Op::Return] {
            let (from, to, unexpired_only) = op.usual();
            assert_eq!(step(op, from, false), Some(Step::Move(to)), "{op:?}");
            assert_eq!(
                step(op, from, true) == Some(Step::Move(to)),
                !unexpired_only,
                "{op:?} when expired"
            );
        }
        for (op, status) in [
            (Op::Release, S::Committed),
            (Op::Release, S::Returned),
            (Op::Return, S::Active),
            (Op::Return, S::Released),
            (Op::Commit, S::Returned),
        ] {
            assert!(step(op, status, false).is_none(), "{op:?} from {status:?}");
        }
    }
}
