//! `bench-checkout [direct|rest|graphql]`: the checkout benchmark. Distinct users, each buying
//! distinct products in a loop: create an order, then pay it with a good card, both with
//! idempotency keys, over one pooled HTTP client, one user per connection. The mode says which
//! way, as clients do it:
//!
//! - `direct`: the services' own REST APIs (`POST /orders` at Orders, `POST /payments` at
//!   Payments; tokens from Users' `/auth/login`);
//! - `rest`: the gateway's REST facade (`/api/orders`, `/api/payments`; tokens from
//!   `/api/auth/login`), same bodies and headers;
//! - `graphql`: the gateway's `createOrder` then `payOrder` mutations with `idempotencyKey`
//!   (tokens from the `login` mutation).
//!
//! Set-up (products with plenty of stock, one account per connection) goes to the services
//! directly in every mode. Prints one line:
//! `checkouts/s checkout-p50 checkout-p99 request-p50 request-p99 errors` (latencies in
//! milliseconds: of the whole order + pay, and of each request on its own).
//!
//! Settings (environment): `BENCH_MODE` [direct] (or the first argument), `BENCH_USERS_URL`,
//! `BENCH_PRODUCTS_URL`, `BENCH_ORDERS_URL`, `BENCH_PAYMENTS_URL`, `BENCH_GATEWAY_URL`,
//! `BENCH_SECONDS` [10], `BENCH_CONNECTIONS` [64], `BENCH_PRODUCTS` [100], `BENCH_STOCK`
//! [1000000] (each product's stock at creation), `BENCH_RUN` [the process id] (in product names
//! `Bench <run> <i>`, e-mails and idempotency keys, so a script can find this run's products),
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

/// Which way a checkout goes (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Direct,
    Rest,
    Graphql,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        match s {
            "direct" => Ok(Self::Direct),
            "rest" => Ok(Self::Rest),
            "graphql" => Ok(Self::Graphql),
            other => bail!("unknown mode `{other}` (direct|rest|graphql)"),
        }
    }
}

/// Where each request of a checkout goes.
#[derive(Clone)]
struct Targets {
    mode: Mode,
    users: String,
    orders: String,
    payments: String,
    gateway: String,
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

/// A GraphQL operation's `data.<field>`; any error (HTTP or GraphQL) is an error.
async fn graphql(
    client: &reqwest::Client,
    gateway: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
    field: &str,
) -> anyhow::Result<Value> {
    let (status, body) = post(
        client,
        format!("{gateway}/graphql"),
        token,
        None,
        &json!({"query": query, "variables": variables}),
    )
    .await?;
    if status != 200 || body.get("errors").is_some() {
        bail!("{field}: {status} {body}");
    }
    Ok(body["data"][field].clone())
}

const LOGIN: &str = "mutation($email: String!, $password: String!) { login(email: $email, password: $password) { accessToken } }";
const CREATE_ORDER: &str = "mutation($items: [OrderItemInput!]!, $key: String) { createOrder(items: $items, idempotencyKey: $key) { id status total } }";
const PAY_ORDER: &str = "mutation($order: ID!, $card: CardInput!, $key: String) { payOrder(orderId: $order, card: $card, idempotencyKey: $key) { id status } }";

/// An access token for `email`, the way the mode's clients get one.
async fn login(
    client: &reqwest::Client,
    to: &Targets,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    if to.mode == Mode::Graphql {
        let payload = graphql(
            client,
            &to.gateway,
            None,
            LOGIN,
            json!({"email": email, "password": password}),
            "login",
        )
        .await?;
        return Ok(payload["accessToken"]
            .as_str()
            .context("accessToken")?
            .to_owned());
    }
    let url = match to.mode {
        Mode::Rest => format!("{}/api/auth/login", to.gateway),
        _ => format!("{}/auth/login", to.users),
    };
    let (status, body) = post(
        client,
        url,
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

/// A microsecond count that fits the latency vectors.
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// One checkout: the order, then its payment. Each request's latency goes to `requests`.
async fn checkout(
    client: &reqwest::Client,
    to: &Targets,
    token: &str,
    product: i64,
    keys: (String, String),
    requests: &mut Vec<u32>,
) -> anyhow::Result<()> {
    let (order_key, pay_key) = keys;
    if to.mode == Mode::Graphql {
        let began = Instant::now();
        let order = graphql(
            client,
            &to.gateway,
            Some(token),
            CREATE_ORDER,
            json!({"items": [{"productId": product, "quantity": 1}], "key": order_key}),
            "createOrder",
        )
        .await;
        requests.push(micros(began.elapsed()));
        let order = order?;
        let card =
            json!({"number": "4242424242424242", "expMonth": 12, "expYear": 2040, "cvc": "123"});
        let began = Instant::now();
        let payment = graphql(
            client,
            &to.gateway,
            Some(token),
            PAY_ORDER,
            json!({"order": order["id"], "card": card, "key": pay_key}),
            "payOrder",
        )
        .await;
        requests.push(micros(began.elapsed()));
        let payment = payment?;
        if payment["status"] != "SUCCEEDED" {
            bail!("payment: {payment}");
        }
        return Ok(());
    }
    let (orders, payments) = match to.mode {
        Mode::Rest => (
            format!("{}/api/orders", to.gateway),
            format!("{}/api/payments", to.gateway),
        ),
        _ => (
            format!("{}/orders", to.orders),
            format!("{}/payments", to.payments),
        ),
    };
    let began = Instant::now();
    let order = post(
        client,
        orders,
        Some(token),
        Some(order_key),
        &json!({"items": [{"product_id": product, "quantity": 1}]}),
    )
    .await;
    requests.push(micros(began.elapsed()));
    let (status, order) = order?;
    if status != 201 {
        bail!("order: {status} {order}");
    }
    let card =
        json!({"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"});
    let began = Instant::now();
    let payment = post(
        client,
        payments,
        Some(token),
        Some(pay_key),
        &json!({"order_id": order["id"], "card": card}),
    )
    .await;
    requests.push(micros(began.elapsed()));
    let (status, payment) = payment?;
    if status != 201 || payment["status"] != "succeeded" {
        bail!("payment: {status} {payment}");
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    done: AtomicU64,
    errors: AtomicU64,
}

/// The `p` quantile of sorted microseconds, in milliseconds.
fn percentile(sorted: &[u32], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).map_or(0.0, |us| f64::from(*us) / 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mode: Mode = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => setting("BENCH_MODE", Some("direct"))?.parse()?,
    };
    let to = Targets {
        mode,
        users: setting("BENCH_USERS_URL", Some("http://127.0.0.1:8001"))?,
        orders: setting("BENCH_ORDERS_URL", Some("http://127.0.0.1:8003"))?,
        payments: setting("BENCH_PAYMENTS_URL", Some("http://127.0.0.1:8004"))?,
        gateway: setting("BENCH_GATEWAY_URL", Some("http://127.0.0.1:8080"))?,
    };
    let products = setting("BENCH_PRODUCTS_URL", Some("http://127.0.0.1:8002"))?;
    let seconds: u64 = setting("BENCH_SECONDS", Some("10"))?.parse()?;
    let connections: usize = setting("BENCH_CONNECTIONS", Some("64"))?.parse()?;
    let product_count: usize = setting("BENCH_PRODUCTS", Some("100"))?.parse()?;
    let stock: u64 = setting("BENCH_STOCK", Some("1000000"))?.parse()?;
    let run = setting("BENCH_RUN", Some(&std::process::id().to_string()))?;
    let admin_email = setting("BENCH_ADMIN_EMAIL", Some("admin@example.com"))?;
    let admin_password = setting("BENCH_ADMIN_PASSWORD", Some("admin12345"))?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections * 2)
        .timeout(Duration::from_secs(10))
        .build()?;

    // Set-up, at the services: products with plenty of stock, one account per connection.
    let direct = Targets {
        mode: Mode::Direct,
        ..to.clone()
    };
    let admin = login(&client, &direct, &admin_email, &admin_password).await?;
    let mut product_ids = Vec::with_capacity(product_count);
    for i in 0..product_count {
        let (status, body) = post(
            &client,
            format!("{products}/products"),
            Some(&admin),
            None,
            &json!({"name": format!("Bench {run} {i}"), "description": "bench", "price": format!("{}.99", 1 + i % 50), "stock": stock}),
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
            format!("{}/auth/register", to.users),
            None,
            None,
            &json!({"email": email, "password": "password123", "full_name": "Bench"}),
        )
        .await?;
        if status != 201 {
            bail!("register: {status} {body}");
        }
        tokens.push(login(&client, &to, &email, "password123").await?);
    }

    let product_ids = Arc::new(product_ids);
    let tally = Arc::new(Tally::default());
    let measuring = Arc::new(AtomicBool::new(false));
    let warmup = Duration::from_secs(2);
    let start = Instant::now();
    let end = start + warmup + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for (w, token) in tokens.into_iter().enumerate() {
        let (client, to, run) = (client.clone(), to.clone(), run.clone());
        let (product_ids, tally, measuring) =
            (product_ids.clone(), tally.clone(), measuring.clone());
        workers.push(tokio::spawn(async move {
            let mut checkouts: Vec<u32> = Vec::new();
            let mut requests: Vec<u32> = Vec::new();
            let mut n = 0usize;
            while Instant::now() < end {
                n += 1;
                // Each worker walks its own products, so buyers rarely share a row.
                let product = product_ids[(w * 7 + n) % product_ids.len()];
                let keys = (format!("o-{run}-{w}-{n}"), format!("p-{run}-{w}-{n}"));
                let counted = measuring.load(Ordering::Relaxed);
                let mut spent = Vec::with_capacity(2);
                let began = Instant::now();
                let ok = checkout(&client, &to, &token, product, keys, &mut spent).await;
                // Only checkouts begun within the measured window count.
                if !counted {
                    continue;
                }
                requests.extend(spent);
                match ok {
                    Ok(()) => {
                        tally.done.fetch_add(1, Ordering::Relaxed);
                        checkouts.push(micros(began.elapsed()));
                    }
                    Err(e) => {
                        if tally.errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("bench-checkout: {e:#}");
                        }
                    }
                }
            }
            (checkouts, requests)
        }));
    }
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let measured_from = Instant::now();
    let (mut checkouts, mut requests) = (Vec::new(), Vec::new());
    for w in workers {
        let (c, r) = w.await?;
        checkouts.extend(c);
        requests.extend(r);
    }
    let elapsed = measured_from.elapsed().as_secs_f64();
    checkouts.sort_unstable();
    requests.sort_unstable();
    let done = tally.done.load(Ordering::Relaxed);
    println!(
        "{:.1} {:.2}ms {:.2}ms {:.2}ms {:.2}ms {}",
        done as f64 / elapsed,
        percentile(&checkouts, 0.50),
        percentile(&checkouts, 0.99),
        percentile(&requests, 0.50),
        percentile(&requests, 0.99),
        tally.errors.load(Ordering::Relaxed)
    );
    Ok(())
}
