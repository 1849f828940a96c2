//! No Grafana panel is empty: the platform started by `ecomctl up` with its Prometheus (on free
//! ports, scraping every second), a shopper's journey over the gateway, then every target of
//! every dashboard in `monitoring/grafana/dashboards/` evaluated by that Prometheus as Grafana
//! would ask it (template variables as "All"). A query that errors or returns no series is a
//! blank panel on the laptop and in the compose stack alike. Every alert rule's expression must
//! evaluate too (no series is fine for an alert), and Prometheus must have loaded the rules
//! through the config `ecomctl` wrote.
//!
//! Every failing panel is listed at once.

mod common;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use common::{Ports, graphql, start_with};
use serde_json::{Value, json};

const JOBS: [&str; 5] = ["users", "products", "orders", "payments", "gateway"];
/// How long Prometheus gets to scrape everything the journey produced.
const DEADLINE: Duration = Duration::from_secs(60);
/// Panels that show no data by design.
const NO_DATA_PANELS: [&str; 8] = [
    "row",
    "text",
    "news",
    "dashlist",
    "alertlist",
    "annolist",
    "welcome",
    "gettingstarted",
];

fn monitoring_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .join("monitoring")
}

/// One Prometheus query target of a dashboard panel.
struct Target {
    /// `dashboard / [row / ]panel`.
    panel: String,
    expr: String,
}

/// Every `*.json` under `dir` (sorted, recursively).
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Walks `panels` (and the panels of rows, collapsed or not), collecting query targets; a
/// panel that should show data but has no query, or a target with an empty `expr`, is a
/// failure.
fn walk_panels(
    dashboard: &str,
    row: Option<&str>,
    panels: &[Value],
    targets: &mut Vec<Target>,
    failures: &mut Vec<String>,
) {
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        let kind = panel["type"].as_str().unwrap_or_default();
        let name = match row {
            Some(r) => format!("{dashboard} / {r} / {title}"),
            None => format!("{dashboard} / {title}"),
        };
        let queries: Vec<&Value> = panel["targets"]
            .as_array()
            .map(|t| t.iter().filter(|t| t.get("expr").is_some()).collect())
            .unwrap_or_default();
        for t in &queries {
            match t["expr"].as_str().map(str::trim) {
                Some(expr) if !expr.is_empty() => targets.push(Target {
                    panel: name.clone(),
                    expr: expr.to_owned(),
                }),
                _ => failures.push(format!("{name} / {}: empty expr", t["expr"])),
            }
        }
        let borrowed = panel["targets"].as_array().is_some_and(|t| !t.is_empty())
            || panel.get("libraryPanel").is_some();
        if queries.is_empty() && !borrowed && !NO_DATA_PANELS.contains(&kind) {
            failures.push(format!("{name} ({kind}): no query"));
        }
        if let Some(nested) = panel["panels"].as_array() {
            let row = if kind == "row" { Some(title) } else { row };
            walk_panels(dashboard, row, nested, targets, failures);
        }
    }
}

/// Grafana's substitutions for a query asked over the last 5 minutes with every template
/// variable at "All": `$__rate_interval` / `$__interval` → `1m`, `$__range` → `5m`, any other
/// `$var`, `${var}`, `${var:format}` or `[[var]]` → `.*`.
fn substitute(expr: &str) -> String {
    fn value(name: &str) -> &'static str {
        match name {
            "__rate_interval" | "__interval" => "1m",
            "__interval_ms" => "60000",
            "__range" => "5m",
            "__range_s" => "300",
            "__range_ms" => "300000",
            _ => ".*",
        }
    }
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find(['$', '[']) {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(braced) = rest.strip_prefix("${")
            && let Some(end) = braced.find('}')
        {
            let name = braced[..end].split(':').next().unwrap_or_default();
            out.push_str(value(name));
            rest = &braced[end + 1..];
        } else if let Some(old) = rest.strip_prefix("[[")
            && let Some(end) = old.find("]]")
            && !old[..end].is_empty()
            && old[..end]
                .split(':')
                .next()
                .unwrap_or_default()
                .chars()
                .all(is_word)
        {
            out.push_str(value(old[..end].split(':').next().unwrap_or_default()));
            rest = &old[end + 2..];
        } else if let Some(plain) = rest.strip_prefix('$')
            && plain.starts_with(is_word)
        {
            let end = plain.find(|c: char| !is_word(c)).unwrap_or(plain.len());
            out.push_str(value(&plain[..end]));
            rest = &plain[end..];
        } else {
            out.push_str(&rest[..1]);
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// What Prometheus answered to an instant query.
enum Answer {
    Series(Vec<Value>),
    Scalar,
    Error(String),
}

struct Prometheus {
    base: String,
    client: reqwest::Client,
}

impl Prometheus {
    async fn query(&self, expr: &str) -> Answer {
        let r = match self
            .client
            .post(format!("{}/api/v1/query", self.base))
            .form(&[("query", expr)])
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return Answer::Error(format!("request failed: {e}")),
        };
        let status = r.status();
        let body: Value = match r.json().await {
            Ok(b) => b,
            Err(e) => return Answer::Error(format!("HTTP {status}, not JSON: {e}")),
        };
        if body["status"] != "success" {
            return Answer::Error(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("HTTP error"),
                body["error"].as_str().unwrap_or(&body.to_string())
            ));
        }
        match body["data"]["resultType"].as_str() {
            Some("vector" | "matrix") => Answer::Series(
                body["data"]["result"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => Answer::Scalar,
        }
    }

    /// The vector `expr` returns, each series' `job` label with its value.
    async fn by_job(&self, expr: &str) -> Vec<(String, f64)> {
        match self.query(expr).await {
            Answer::Series(series) => series
                .iter()
                .filter_map(|s| {
                    let job = s["metric"]["job"].as_str()?.to_owned();
                    let value = s["value"][1].as_str()?.parse().ok()?;
                    Some((job, value))
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The jobs that are not yet up with a scrape later than `after` (Unix seconds).
    async fn jobs_not_scraped_since(&self, after: f64) -> Vec<String> {
        let selector = format!("{{job=~\"{}\"}}", JOBS.join("|"));
        let up = self.by_job(&format!("up{selector}")).await;
        let at = self.by_job(&format!("timestamp(up{selector})")).await;
        JOBS.iter()
            .filter(|job| {
                let up = up.iter().any(|(j, v)| j == *job && *v == 1.0);
                let fresh = at.iter().any(|(j, t)| j == *job && *t > after);
                !(up && fresh)
            })
            .map(|j| (*j).to_owned())
            .collect()
    }
}

fn panel_failure(t: &Target, why: &str) -> String {
    let hint = if why == "no series" && t.expr.contains("=\"$") {
        " (a template variable in an `=` matcher matches nothing at \"All\": use `=~`)"
    } else {
        ""
    };
    format!("{} / {}: {why}{hint}", t.panel, t.expr)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A shopper over the gateway: register, log in, search, look at a product, order it (the
/// client retries the order with the same key), pay with a good card, read the order back paid.
async fn shopper_journey(gateway: &str) {
    let client = reqwest::Client::new();
    let email = "monitoring@example.com";
    let d = graphql(
        &client,
        gateway,
        None,
        "mutation($e: String!) { register(email: $e, password: \"password123\", fullName: \"Monitored Shopper\") { id role } }",
        json!({"e": email}),
    )
    .await;
    assert_eq!(d["register"]["role"], "USER", "{d}");
    let d = graphql(
        &client,
        gateway,
        None,
        "mutation($e: String!) { login(email: $e, password: \"password123\") { accessToken } }",
        json!({"e": email}),
    )
    .await;
    let token = d["login"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let token = Some(token.as_str());

    let d = graphql(
        &client,
        gateway,
        token,
        "{ products(limit: 5, search: \"rust\") { id name price stock } }",
        json!({}),
    )
    .await;
    let found = d["products"].as_array().expect("products");
    let product = found
        .iter()
        .find(|p| p["stock"].as_i64().is_some_and(|s| s > 0))
        .unwrap_or_else(|| panic!("the search finds a product in stock: {d}"))["id"]
        .clone();
    for _ in 0..2 {
        let d = graphql(
            &client,
            gateway,
            token,
            "query($id: ID!) { product(id: $id) { id name price stock } }",
            json!({"id": product}),
        )
        .await;
        assert_eq!(d["product"]["id"], product, "{d}");
    }

    let create = "mutation($items: [OrderItemInput!]!, $k: String) { createOrder(items: $items, idempotencyKey: $k) { id status total } }";
    let vars = json!({"items": [{"productId": product, "quantity": 1}], "k": "monitoring-order-1"});
    let order = graphql(&client, gateway, token, create, vars.clone()).await["createOrder"].clone();
    assert_eq!(order["status"], "PENDING_PAYMENT", "{order}");
    let retried = graphql(&client, gateway, token, create, vars).await["createOrder"].clone();
    assert_eq!(retried["id"], order["id"], "the same key is the same order");

    let d = graphql(
        &client,
        gateway,
        token,
        "mutation($o: ID!, $k: String) { payOrder(orderId: $o, card: {number: \"4242424242424242\", expMonth: 12, expYear: 2030, cvc: \"123\"}, idempotencyKey: $k) { status amount } }",
        json!({"o": order["id"], "k": "monitoring-pay-1"}),
    )
    .await;
    assert_eq!(d["payOrder"]["status"], "SUCCEEDED", "{d}");
    assert_eq!(d["payOrder"]["amount"], order["total"], "{d}");
    let d = graphql(
        &client,
        gateway,
        token,
        "query($id: ID!) { order(id: $id) { status payment { status } } }",
        json!({"id": order["id"]}),
    )
    .await;
    assert_eq!(d["order"]["status"], "PAID", "{d}");
}

/// The dashboards' query targets, and what is wrong with the dashboards themselves.
fn dashboard_targets(dir: &Path) -> (usize, Vec<Target>, Vec<String>) {
    let files = json_files(dir);
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for file in &files {
        let name = file.strip_prefix(dir).unwrap_or(file).display().to_string();
        let json: Value = match std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: not a dashboard: {e}"));
                continue;
            }
        };
        // Either the dashboard itself or the API's `{"dashboard": {...}}` envelope.
        let dashboard = json.get("dashboard").unwrap_or(&json);
        let title = dashboard["title"].as_str().unwrap_or(&name);
        let panels = dashboard["panels"].as_array().cloned().unwrap_or_default();
        if panels.is_empty() {
            failures.push(format!("{title}: no panels"));
        }
        walk_panels(title, None, &panels, &mut targets, &mut failures);
    }
    (files.len(), targets, failures)
}

/// Every rule of every `rules/*.yml`: (group / name, expr).
fn alert_rules(dir: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut rules = Vec::new();
    let mut failures = Vec::new();
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let doc: serde_norway::Value = match std::fs::read_to_string(&file)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_norway::from_str(&t).map_err(|e| e.to_string()))
        {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{name}: not YAML: {e}"));
                continue;
            }
        };
        let groups = doc["groups"].as_sequence().cloned().unwrap_or_default();
        for group in &groups {
            let gname = group["name"].as_str().unwrap_or("(unnamed group)");
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                let rname = rule["alert"]
                    .as_str()
                    .or_else(|| rule["record"].as_str())
                    .unwrap_or("(unnamed rule)");
                let expr = match &rule["expr"] {
                    serde_norway::Value::String(s) => s.trim().to_owned(),
                    serde_norway::Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                rules.push((format!("{name} / {gname} / {rname}"), expr));
            }
        }
    }
    (rules, failures)
}

#[tokio::test]
async fn every_dashboard_panel_has_data_after_a_shopper_journey() {
    let monitoring = monitoring_dir();
    let (dashboards, targets, mut failures) =
        dashboard_targets(&monitoring.join("grafana/dashboards"));
    assert!(
        dashboards >= 4,
        "expected at least 4 dashboards in {}, found {dashboards}",
        monitoring.join("grafana/dashboards").display()
    );
    let (rules, rule_failures) = alert_rules(&monitoring.join("prometheus/rules"));
    failures.extend(rule_failures);

    let dir = std::env::temp_dir().join(format!("ecomctl-monitoring-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ports = Ports::free();
    let mut up = start_with(
        &dir,
        &ports,
        true,
        &[
            ("ECOM_PROMETHEUS", "true"),
            ("ECOM_PROMETHEUS_SCRAPE_INTERVAL", "1s"),
            ("ECOM_RATE_LIMIT_DEFAULT", "100000/minute"),
            ("ECOM_RATE_LIMIT_BURST", "10000/second"),
        ],
    );
    up.wait_ready(ports.gateway).await;
    let prometheus = Prometheus {
        base: format!("http://127.0.0.1:{}", ports.prometheus),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
    };
    assert!(
        up.output()
            .contains(&format!("  Prometheus {} ", prometheus.base)),
        "ecomctl up runs Prometheus (is it installed? apt-get install prometheus):\n{}",
        up.output()
    );

    let started = Instant::now();
    shopper_journey(&format!("http://127.0.0.1:{}", ports.gateway)).await;
    let journey_done = unix_now();
    let journey = started.elapsed();

    // Every service scraped (up) after the journey ended.
    let deadline = Instant::now() + DEADLINE;
    let mut late = prometheus.jobs_not_scraped_since(journey_done).await;
    while !late.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        late = prometheus.jobs_not_scraped_since(journey_done).await;
    }
    let scraped = started.elapsed();
    for job in &late {
        failures.push(format!(
            "job {job}: not up with a scrape after the journey within {DEADLINE:?}"
        ));
    }

    // Panels: errors are final; empty ones are asked again until the deadline (rate() needs
    // two scrapes of a series).
    let mut panel_failures = Vec::new();
    let mut pending: Vec<&Target> = targets.iter().collect();
    loop {
        let mut empty = Vec::new();
        for t in pending {
            match prometheus.query(&substitute(&t.expr)).await {
                Answer::Series(s) if s.is_empty() => empty.push(t),
                Answer::Series(_) | Answer::Scalar => {}
                Answer::Error(e) => panel_failures.push(panel_failure(t, &format!("error: {e}"))),
            }
        }
        if empty.is_empty() || Instant::now() >= deadline {
            panel_failures.extend(empty.into_iter().map(|t| panel_failure(t, "no series")));
            break;
        }
        pending = empty;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Grouped by dashboard and panel.
    panel_failures.sort();
    failures.extend(panel_failures);

    // Alert rules: the expression must evaluate (no series is a quiet alert), and Prometheus
    // must have loaded every rule from the config ecomctl wrote, without evaluation errors.
    for (name, expr) in &rules {
        if expr.is_empty() {
            failures.push(format!("alert rule {name}: no expr"));
        } else if let Answer::Error(e) = prometheus.query(expr).await {
            failures.push(format!("alert rule {name} / {expr}: error: {e}"));
        }
    }
    let loaded: Value = prometheus
        .client
        .get(format!("{}/api/v1/rules", prometheus.base))
        .send()
        .await
        .expect("rules")
        .json()
        .await
        .expect("json");
    let loaded_rules: Vec<&Value> = loaded["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    if loaded_rules.len() != rules.len() {
        failures.push(format!(
            "Prometheus loaded {} rules, the rule files have {}",
            loaded_rules.len(),
            rules.len()
        ));
    }
    for r in loaded_rules.iter().filter(|r| r["health"] == "err") {
        failures.push(format!(
            "alert rule {}: Prometheus reports {}",
            r["name"].as_str().unwrap_or_default(),
            r["lastError"]
        ));
    }

    let checked = started.elapsed();
    eprintln!(
        "{dashboards} dashboards, {} panel queries, {} rules; journey {journey:.1?}, scraped after {scraped:.1?}, checked after {checked:.1?}",
        targets.len(),
        rules.len()
    );
    if !failures.is_empty() {
        let mut report = format!("{} problems:\n", failures.len());
        for f in &failures {
            let _ = writeln!(report, "  - {f}");
        }
        panic!("{report}");
    }
    up.interrupt(&ports).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn grafana_variables_are_substituted_as_for_all() {
    assert_eq!(
        substitute("rate(x{job=~\"$job\"}[$__rate_interval])"),
        "rate(x{job=~\".*\"}[1m])"
    );
    assert_eq!(
        substitute("increase(x{a=~\"${job}\",b=~\"${service:regex}\"}[${__range}]) / $__interval"),
        "increase(x{a=~\".*\",b=~\".*\"}[5m]) / 1m"
    );
    assert_eq!(
        substitute("x{a=~\"[[job]]\"}[$__range] offset $__interval_ms"),
        "x{a=~\".*\"}[5m] offset 60000"
    );
    assert_eq!(
        substitute("sum(x{le=~\"[0-9]+\"}) or vector(0) $"),
        "sum(x{le=~\"[0-9]+\"}) or vector(0) $"
    );
}
