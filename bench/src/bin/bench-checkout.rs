//! `bench-checkout`: the checkout benchmark. Distinct users, each buying distinct products in a
//! loop: `POST /orders` then `POST /payments` with a good card, both with idempotency keys, over
//! one pooled HTTP client. Prints one line: `checkouts/s p50 p99 errors` (latency of the whole
//! order + pay, in milliseconds).
//!
//! Settings (environment): `BENCH_USERS_URL`, `BENCH_PRODUCTS_URL`, `BENCH_ORDERS_URL`,
//! `BENCH_PAYMENTS_URL`, `BENCH_SECONDS` [10], `BENCH_CONNECTIONS` [64], `BENCH_PRODUCTS` [100],
//! `BENCH_ADMIN_EMAIL` / `BENCH_ADMIN_PASSWORD` [the development admin].

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::{Value, json};

fn setting(name: &str, default: Option<&str>) -> anyhow::Result<String> {
    match std::env::var(name) {
        Ok(v) => Ok(v),
        Err(_) => default
            .map(str::to_owned)
            .with_context(|| format!("{name} is required")),
    }
}

async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    key: Option<String>,
    body: &Value,
) -> anyhow::Result<(u16, Value)> {
    let mut req = client.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    Ok((status, res.json().await.unwrap_or(Value::Null)))
}

async fn login(
    client: &reqwest::Client,
    users: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    let (status, body) = post(
        client,
        format!("{users}/auth/login"),
        None,
        None,
        &json!({"email": email, "password": password}),
    )
    .await?;
    if status != 200 {
        bail!("login of {email}: {status} {body}");
    }
    Ok(body["access_token"].as_str().context("token")?.to_owned())
}

#[derive(Default)]
struct Tally {
    done: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let users = setting("BENCH_USERS_URL", Some("http://127.0.0.1:8001"))?;
    let products = setting("BENCH_PRODUCTS_URL", Some("http://127.0.0.1:8002"))?;
    let orders = setting("BENCH_ORDERS_URL", Some("http://127.0.0.1:8003"))?;
    let payments = setting("BENCH_PAYMENTS_URL", Some("http://127.0.0.1:8004"))?;
    let seconds: u64 = setting("BENCH_SECONDS", Some("10"))?.parse()?;
    let connections: usize = setting("BENCH_CONNECTIONS", Some("64"))?.parse()?;
    let product_count: usize = setting("BENCH_PRODUCTS", Some("100"))?.parse()?;
    let admin_email = setting("BENCH_ADMIN_EMAIL", Some("admin@example.com"))?;
    let admin_password = setting("BENCH_ADMIN_PASSWORD", Some("admin12345"))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections * 2)
        .timeout(Duration::from_secs(10))
        .build()?;
    let run = std::process::id();

    // Set-up: products with plenty of stock, one account per connection.
    let admin = login(&client, &users, &admin_email, &admin_password).await?;
    let mut product_ids = Vec::with_capacity(product_count);
    for i in 0..product_count {
        let (status, body) = post(
            &client,
            format!("{products}/products"),
            Some(&admin),
            None,
            &json!({"name": format!("Bench {run} {i}"), "description": "bench", "price": format!("{}.99", 1 + i % 50), "stock": 1_000_000}),
        )
        .await?;
        if status != 201 {
            bail!("create product: {status} {body}");
        }
        product_ids.push(body["id"].as_i64().context("id")?);
    }
    let mut tokens = Vec::with_capacity(connections);
    for i in 0..connections {
        let email = format!("bench-{run}-{i}@example.com");
        let (status, body) = post(
            &client,
            format!("{users}/auth/register"),
            None,
            None,
            &json!({"email": email, "password": "password123", "full_name": "Bench"}),
        )
        .await?;
        if status != 201 {
            bail!("register: {status} {body}");
        }
        tokens.push(login(&client, &users, &email, "password123").await?);
    }

    let product_ids = Arc::new(product_ids);
    let tally = Arc::new(Tally::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let warmup = Duration::from_secs(2);
    let start = Instant::now();
    let end = start + warmup + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for (w, token) in tokens.into_iter().enumerate() {
        let (client, orders, payments) = (client.clone(), orders.clone(), payments.clone());
        let (product_ids, tally, measuring) =
            (product_ids.clone(), tally.clone(), measuring.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut n = 0usize;
            while Instant::now() < end {
                n += 1;
                // Each worker walks its own products, so buyers rarely share a row.
                let product = product_ids[(w * 7 + n) % product_ids.len()];
                let began = Instant::now();
                let ok = async {
                    let (status, order) = post(
                        &client,
                        format!("{orders}/orders"),
                        Some(&token),
                        Some(format!("o-{run}-{w}-{n}")),
                        &json!({"items": [{"product_id": product, "quantity": 1}]}),
                    )
                    .await?;
                    if status != 201 {
                        bail!("order: {status} {order}");
                    }
                    let (status, payment) = post(
                        &client,
                        format!("{payments}/payments"),
                        Some(&token),
                        Some(format!("p-{run}-{w}-{n}")),
                        &json!({"order_id": order["id"], "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}}),
                    )
                    .await?;
                    if status != 201 || payment["status"] != "succeeded" {
                        bail!("payment: {status} {payment}");
                    }
                    Ok(())
                }
                .await;
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                match ok {
                    Ok(()) => {
                        tally.done.fetch_add(1, Ordering::Relaxed);
                        latencies.push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX));
                    }
                    Err(e) => {
                        if tally.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("bench-checkout: {e:#}");
                        }
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let measured_from = Instant::now();
    let mut latencies = Vec::new();
    for w in workers {
        latencies.extend(w.await?);
    }
    let elapsed = measured_from.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    let done = tally.done.load(Ordering::Relaxed);
    println!(
        "{:.1} {:.2}ms {:.2}ms {}",
        done as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        tally.errors.load(Ordering::Relaxed)
    );
    Ok(())
}
