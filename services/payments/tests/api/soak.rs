//! A short soak: mixed order / pay / cancel / refund traffic from 20 clients, then the
//! invariants that must hold whatever happened:
//! - for every product, initial = available + reserved + sold, and sold = what paid orders hold;
//! - every paid order has exactly one succeeded payment, and it is the one the order names;
//! - no succeeded payment belongs to an order that is not paid (a late one was refunded);
//! - the sum of succeeded payments = the sum of paid orders' totals.
//!
//! `ECOM_SOAK_SECONDS` sets the length (default 60).

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::*;

const CLIENTS: i64 = 20;
const PRODUCTS: i64 = 12;
const INITIAL_STOCK: i64 = 300;

/// A small deterministic generator per client (xorshift): reproducible traffic.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[derive(Default)]
struct Counts {
    orders: AtomicU64,
    out_of_stock: AtomicU64,
    paid: AtomicU64,
    declined: AtomicU64,
    cancelled: AtomicU64,
    refunded: AtomicU64,
    late: AtomicU64,
    unexpected: AtomicU64,
}

async fn client_loop(
    app: &TestApp,
    client: i64,
    products: &[i64],
    until: Instant,
    counts: &Counts,
) {
    let user = token(1000 + client, "user");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (u64::try_from(client).unwrap_or(1) * 0x1000_0001));
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let lines: Vec<(i64, i64)> = {
            let mut picked: Vec<i64> = (0..=rng.next(2))
                .map(|_| products[usize::try_from(rng.next(products.len() as u64)).unwrap_or(0)])
                .collect();
            picked.sort_unstable();
            picked.dedup();
            picked
                .into_iter()
                .map(|p| (p, 1 + i64::try_from(rng.next(3)).unwrap_or(0)))
                .collect()
        };
        let items: Vec<Value> = lines
            .iter()
            .map(|(p, q)| serde_json::json!({"product_id": p, "quantity": q}))
            .collect();
        let (status, order) = ecom_shared::testing::send(
            app.client
                .post(format!("{}/orders", app.orders_base))
                .header("Idempotency-Key", format!("o-{client}-{n}")),
            Some(&serde_json::json!({"items": items})),
            Some(&user),
        )
        .await;
        if status == StatusCode::CONFLICT {
            counts.out_of_stock.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        if status != StatusCode::CREATED {
            eprintln!("unexpected order answer: {status} {order}");
            counts.unexpected.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counts.orders.fetch_add(1, Ordering::Relaxed);
        let Some(order_id) = order["id"].as_i64() else {
            counts.unexpected.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match rng.next(20) {
            // Pay (sometimes twice at once with one key).
            0..=11 => {
                let key = format!("p-{client}-{n}");
                let good = card(GOOD_CARD);
                let duplicate = rng.next(4) == 0;
                let (a, b) = tokio::join!(app.pay(&user, order_id, &good, Some(&key)), async {
                    if duplicate {
                        Some(app.pay(&user, order_id, &good, Some(&key)).await)
                    } else {
                        None
                    }
                });
                match (a.0, a.1["status"].as_str()) {
                    (StatusCode::CREATED | StatusCode::OK, Some("succeeded")) => {
                        counts.paid.fetch_add(1, Ordering::Relaxed);
                        // Now and then an admin refunds it.
                        if rng.next(8) == 0 {
                            let (s, _) = app
                                .send(
                                    Method::POST,
                                    &format!("/payments/{}/refund", a.1["id"]),
                                    None,
                                    &admin(),
                                    None,
                                )
                                .await;
                            if s == StatusCode::OK {
                                counts.refunded.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    // Too late under load (the 3 s reservation ran out first): the order was
                    // cancelled before the charge (409), or after it (refunded at once).
                    (StatusCode::CREATED | StatusCode::OK, Some("refunded")) => {
                        counts.late.fetch_add(1, Ordering::Relaxed);
                    }
                    (StatusCode::CONFLICT, None) if a.1["code"] == "invalid_state" => {
                        counts.late.fetch_add(1, Ordering::Relaxed);
                    }
                    (StatusCode::CONFLICT, None) if a.1["code"] == "idempotency_key_in_use" => {}
                    _ => {
                        eprintln!("unexpected payment answer: {} {}", a.0, a.1);
                        counts.unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Some((s, body)) = b
                    && !(s.is_success() || body["code"] == "idempotency_key_in_use")
                {
                    eprintln!("unexpected duplicate answer: {s} {body}");
                    counts.unexpected.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Declined, then paid with another key.
            12..=13 => {
                let (_, p) = app
                    .pay(
                        &user,
                        order_id,
                        &card("4000000000000002"),
                        Some(&format!("d-{client}-{n}")),
                    )
                    .await;
                if p["status"] == "failed" {
                    counts.declined.fetch_add(1, Ordering::Relaxed);
                }
                let (_, p) = app
                    .pay(
                        &user,
                        order_id,
                        &card(GOOD_CARD),
                        Some(&format!("p-{client}-{n}")),
                    )
                    .await;
                if p["status"] == "succeeded" {
                    counts.paid.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Cancel; and a payment racing the cancel.
            14..=16 => {
                let racing = rng.next(3) == 0;
                let good = card(GOOD_CARD);
                let race_key = format!("r-{client}-{n}");
                let ((s, _), _) = tokio::join!(app.cancel(&user, order_id), async {
                    if racing {
                        app.pay(&user, order_id, &good, Some(&race_key)).await;
                    }
                });
                if s == StatusCode::OK {
                    counts.cancelled.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Abandoned: the sweepers expire it.
            _ => {}
        }
    }
}

#[sqlx::test(migrator = "payments::MIGRATOR")]
async fn a_minute_of_mixed_traffic_keeps_every_invariant(pool: PgPool) {
    let seconds: u64 = std::env::var("ECOM_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    // Short reservations, so expiry and late payments happen during the run.
    let app = spawn_app_with(
        pool,
        Env {
            orders: &[
                ("ECOM_RESERVATION_TTL_SECONDS", "3"),
                ("ECOM_ORDER_SWEEP_MS", "500"),
            ],
            products: &[("ECOM_RESERVATION_TTL_SECONDS", "3")],
            ..Env::default()
        },
    )
    .await;
    let mut products = Vec::new();
    for i in 0..PRODUCTS {
        products.push(
            app.product(
                &format!("Soak {i}"),
                &format!("{}.{:02}", 1 + i, (i * 7) % 100),
                INITIAL_STOCK,
            )
            .await,
        );
    }
    let counts = Counts::default();
    let until = Instant::now() + Duration::from_secs(seconds);
    futures::future::join_all(
        (0..CLIENTS).map(|c| client_loop(&app, c, &products, until, &counts)),
    )
    .await;

    // Let everything settle: unpaid orders expire, the outbox drains.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'pending_payment'")
                .fetch_one(&app.orders_pool)
                .await
                .expect("pending");
        let active: i64 =
            sqlx::query_scalar("SELECT count(*) FROM reservations WHERE status = 'active'")
                .fetch_one(&app.products_pool)
                .await
                .expect("active");
        let outbox: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
                .fetch_one(&app.pool)
                .await
                .expect("outbox");
        let processing: i64 =
            sqlx::query_scalar("SELECT count(*) FROM payments WHERE status = 'processing'")
                .fetch_one(&app.pool)
                .await
                .expect("processing");
        if pending + active + outbox + processing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled: {pending} pending, {active} active, {outbox} undelivered, {processing} processing"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stock: initial = available + reserved + sold, and sold = what paid orders hold.
    let stock: Vec<(i64, i64, i64)> =
        sqlx::query_as("SELECT id, on_hand, reserved FROM products ORDER BY id")
            .fetch_all(&app.products_pool)
            .await
            .expect("stock");
    let sold: HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
        "SELECT l.product_id, sum(l.quantity)::bigint FROM reservation_lines l
           JOIN reservations r USING (order_id) WHERE r.status = 'committed' GROUP BY 1",
    )
    .fetch_all(&app.products_pool)
    .await
    .expect("sold")
    .into_iter()
    .collect();
    let bought: HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
        "SELECT i.product_id, sum(i.quantity)::bigint FROM order_items i
           JOIN orders o ON o.id = i.order_id WHERE o.status = 'paid' GROUP BY 1",
    )
    .fetch_all(&app.orders_pool)
    .await
    .expect("bought")
    .into_iter()
    .collect();
    for (id, on_hand, reserved) in &stock {
        let sold = sold.get(id).copied().unwrap_or(0);
        let available = on_hand - reserved;
        assert_eq!(
            available + reserved + sold,
            INITIAL_STOCK,
            "product {id}: {available} + {reserved} + {sold}"
        );
        assert_eq!(
            sold,
            bought.get(id).copied().unwrap_or(0),
            "product {id}: sold units = paid orders' units"
        );
    }

    // Payments against orders.
    let orders: HashMap<i64, (String, Option<i64>, Decimal)> =
        sqlx::query_as::<_, (i64, String, Option<i64>, Decimal)>(
            "SELECT id, status, payment_id, total FROM orders",
        )
        .fetch_all(&app.orders_pool)
        .await
        .expect("orders")
        .into_iter()
        .map(|(id, s, p, t)| (id, (s, p, t)))
        .collect();
    let payments: Vec<(i64, i64, String, Decimal)> =
        sqlx::query_as("SELECT id, order_id, status, amount FROM payments")
            .fetch_all(&app.pool)
            .await
            .expect("payments");
    let mut succeeded_per_order: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut succeeded_sum = Decimal::ZERO;
    for (id, order_id, status, amount) in &payments {
        let (order_status, paid_by, total) = &orders[order_id];
        assert_eq!(amount, total, "payment {id} charged the order's total");
        match status.as_str() {
            "succeeded" => {
                assert_eq!(
                    order_status, "paid",
                    "succeeded payment {id} of a {order_status} order"
                );
                succeeded_per_order.entry(*order_id).or_default().push(*id);
                succeeded_sum += amount;
            }
            "refunded" => assert!(
                order_status == "refunded" || order_status == "cancelled",
                "refunded payment {id} of a {order_status} order"
            ),
            _ => {}
        }
        if order_status == "refunded" && status == "refunded" {
            assert_eq!(*paid_by, Some(*id));
        }
    }
    let mut paid_sum = Decimal::ZERO;
    for (order_id, (status, paid_by, total)) in &orders {
        if status == "paid" {
            assert_eq!(
                succeeded_per_order.get(order_id).map(Vec::as_slice),
                Some(&[paid_by.expect("payment id")][..]),
                "order {order_id}"
            );
            paid_sum += total;
        }
    }
    assert_eq!(succeeded_sum, paid_sum);

    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "soak {seconds}s: {} orders, {} out of stock, {} paid, {} declined, {} cancelled, {} refunded, {} too late (expired first), {} payments rows",
        c(&counts.orders),
        c(&counts.out_of_stock),
        c(&counts.paid),
        c(&counts.declined),
        c(&counts.cancelled),
        c(&counts.refunded),
        c(&counts.late),
        payments.len()
    );
    assert!(c(&counts.paid) >= seconds, "the soak did real work");
    assert_eq!(
        c(&counts.unexpected),
        0,
        "every answer was one a client expects"
    );
}
