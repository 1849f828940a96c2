//! The gateway on its own (no services behind it): what it refuses before calling anyone, its
//! rate limits (in real Redis, across two real gateway processes), its Redis-down policy, and
//! its answers when the services are down. The whole platform behind it is exercised by
//! `ecomctl`'s end-to-end suite.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ecom_shared::testing;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A port nothing listens on (bound, then released).
/// A port nothing listens on now (a dead upstream, or one a gateway process will take).
fn closed_port() -> u16 {
    testing::child_port()
}

fn dead_upstreams() -> Vec<(String, String)> {
    ["USERS", "PRODUCTS", "ORDERS", "PAYMENTS"]
        .iter()
        .flat_map(|s| {
            [
                (
                    format!("ECOM_{s}_GRPC_URL"),
                    format!("http://127.0.0.1:{}", closed_port()),
                ),
                (
                    format!("ECOM_{s}_HTTP_URL"),
                    format!("http://127.0.0.1:{}", closed_port()),
                ),
            ]
        })
        .collect()
}

struct App {
    base: String,
    /// The ops port: `/metrics`.
    ops: String,
    client: reqwest::Client,
}

async fn spawn(overrides: &[(&str, &str)]) -> App {
    let dead = dead_upstreams();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("ECOM_GATEWAY_HTTP_PORT", "0"),
        ("ECOM_GATEWAY_OPS_PORT", "0"),
        ("ECOM_BIND_ADDRESS", "127.0.0.1"),
        ("ECOM_UPSTREAM_TIMEOUT_MS", "2000"),
    ];
    pairs.extend(dead.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let config = gateway::Config::read(testing::service_env(&pairs, overrides)).expect("config");
    let app = gateway::Application::build_with(config, testing::verifier())
        .await
        .expect("build");
    let base = format!("http://127.0.0.1:{}", app.http_port());
    let ops = format!("http://127.0.0.1:{}", app.ops_port());
    tokio::spawn(app.run(tokio_util::sync::CancellationToken::new()));
    App {
        base,
        ops,
        client: reqwest::Client::new(),
    }
}

impl App {
    async fn graphql(
        &self,
        body: &Value,
        token: Option<&str>,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = req.send().await.expect("send");
        let headers = r.headers().clone();
        let (status, body) = testing::parts(r).await;
        (status, body, headers)
    }

    async fn raw(&self, body: &'static str) -> (StatusCode, Value) {
        let r = self
            .client
            .post(format!("{}/graphql", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        testing::parts(r).await
    }

    /// `GET /api/products` is refused as the contract says: 429 `rate_limited` with Retry-After.
    async fn assert_rest_rate_limited(&self) {
        let r = self
            .client
            .get(format!("{}/api/products", self.base))
            .send()
            .await
            .expect("send");
        assert!(r.headers().contains_key("retry-after"));
        testing::assert_error(
            &testing::parts(r).await,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
        );
    }

    async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.ops))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

fn first_code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn malformed_requests_are_400_not_500() {
    let app = spawn(&[]).await;
    let (status, body) = app.raw("{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(first_code(&body), "BAD_USER_INPUT");

    let (status, body, _) = app
        .graphql(&json!({"query": "{ products { id "}), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(first_code(&body), "BAD_USER_INPUT");

    let (status, body, _) = app.graphql(&json!({"query": "{ nope }"}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(first_code(&body), "BAD_USER_INPUT");

    let (status, body, _) = app
        .graphql(&json!({"query": "query($id: ID!) { product(id: $id) { id } }", "variables": {"id": {"x": 1}}}), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // What does run still answers.
    let (status, body, _) = app.graphql(&json!({"query": "{ __typename }"}), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["__typename"], "Query");
}

#[tokio::test]
async fn abusive_queries_are_refused_before_they_run() {
    let app = spawn(&[]).await;
    // 500 aliased list fields: refused by the field cap (no service is ever called: they are down).
    let aliases: String = (0..500)
        .map(|i| format!("a{i}: products(limit: 100) {{ id }} "))
        .collect();
    let (status, body, _) = app
        .graphql(&json!({"query": format!("{{ {aliases} }}")}), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("fields"),
        "{body}"
    );

    // A few big lists: under the field cap, over the complexity limit.
    let lists: String = (0..30)
        .map(|i| format!("a{i}: products(limit: 100) {{ id name }} "))
        .collect();
    let (status, body, _) = app
        .graphql(&json!({"query": format!("{{ {lists} }}")}), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("complex"),
        "{body}"
    );

    // Deeper than the schema needs.
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } } } } } } } }";
    let (status, body, _) = app.graphql(&json!({"query": deep}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("deep"),
        "{body}"
    );

    // A body over the limit.
    let huge = format!("{{ __typename }} #{}", "x".repeat(64 * 1024));
    let (status, body, _) = app.graphql(&json!({"query": huge}), None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(first_code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn one_operation_runs_at_most_one_account_mutation() {
    // Each register or login costs the Users service an Argon2 hash: fifty aliases in one
    // request must not cost fifty. Refused before anything runs (the services are down here,
    // so anything that ran would be SERVICE_UNAVAILABLE instead).
    let app = spawn(&[("ECOM_RATE_LIMIT_LOGIN", "1/minute")]).await;
    let refused = |status: StatusCode, body: &Value| {
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(first_code(body), "BAD_USER_INPUT", "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains("at most one"), "{body}");
        assert_eq!(body["data"], Value::Null, "{body}");
    };
    let registers: String = (0..50)
        .map(|i| {
            format!(
                "r{i}: register(email: \"u{i}@example.com\", password: \"password123\", fullName: \"U\") {{ id }} "
            )
        })
        .collect();
    let (status, body, _) = app
        .graphql(
            &json!({"query": format!("mutation {{ {registers} }}")}),
            None,
        )
        .await;
    refused(status, &body);

    // Through fragments, and mixed with refreshToken.
    let login =
        |e: &str| format!("login(email: \"{e}\", password: \"password123\") {{ accessToken }}");
    let spread = format!(
        "mutation {{ ...L b: {} }} fragment L on Mutation {{ a: {} }}",
        login("same@example.com"),
        login("same@example.com")
    );
    let (status, body, _) = app.graphql(&json!({"query": spread}), None).await;
    refused(status, &body);
    let mixed = format!(
        "mutation {{ {} ... on Mutation {{ refreshToken(refreshToken: \"t\") {{ accessToken }} }} }}",
        login("same@example.com")
    );
    let (status, body, _) = app.graphql(&json!({"query": mixed}), None).await;
    refused(status, &body);

    // Refused requests spent nothing: the one-per-minute login budget of that pair is intact,
    // and a single login runs (reaching the Users service, which is down).
    let (status, body, _) = app
        .graphql(
            &json!({"query": format!("mutation {{ {} }}", login("same@example.com"))}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(first_code(&body), "SERVICE_UNAVAILABLE", "{body}");

    // Several operations in one document: only the one named runs, so only it counts.
    let two = format!(
        "mutation A {{ {} }} mutation B {{ {} }}",
        login("a@example.com"),
        login("b@example.com")
    );
    let (_, body, _) = app
        .graphql(&json!({"query": two, "operationName": "A"}), None)
        .await;
    assert_eq!(first_code(&body), "SERVICE_UNAVAILABLE", "{body}");

    // A batch (a JSON array of operations) is not accepted at all, so it cannot multiply them.
    let batch: Vec<Value> = (0..2)
        .map(|i| json!({"query": format!("mutation {{ {} }}", login(&format!("batch{i}@example.com")))}))
        .collect();
    let (status, body, _) = app.graphql(&Value::Array(batch), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(first_code(&body), "BAD_USER_INPUT", "{body}");
}

#[tokio::test]
async fn introspection_is_off_in_production_only() {
    let query = json!({"query": "{ __schema { queryType { name } } }"});
    let dev = spawn(&[]).await;
    let (_, body, _) = dev.graphql(&query, None).await;
    assert_eq!(
        body["data"]["__schema"]["queryType"]["name"], "Query",
        "{body}"
    );

    // The gateway holds no service credential: production needs none from it.
    let prod = spawn(&[("ECOM_ENV", "production")]).await;
    let (_, body, _) = prod.graphql(&query, None).await;
    // Disabled introspection answers nothing about the schema.
    assert!(body["data"]["__schema"].is_null(), "{body}");
    assert!(!body.to_string().contains("queryType\":{"), "{body}");
}

#[tokio::test]
async fn the_default_budget_is_per_client_with_headers_and_a_metric() {
    let app = spawn(&[("ECOM_RATE_LIMIT_DEFAULT", "3/minute")]).await;
    let q = json!({"query": "{ __typename }"});
    for _ in 0..3 {
        let (status, body, headers) = app.graphql(&q, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(headers["x-ratelimit-limit"], "3");
    }
    let (status, body, headers) = app.graphql(&q, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(first_code(&body), "RATE_LIMITED");
    let retry: u64 = headers["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("secs");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(headers["x-ratelimit-remaining"], "0");

    // REST through the same budget: the contract's error body.
    app.assert_rest_rate_limited().await;

    // A signed-in client has a budget of its own (keyed by user, not address).
    let token = testing::token(42, "user");
    let (status, body, _) = app.graphql(&q, Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let metrics = app.metrics().await;
    assert!(
        testing::sample(
            &metrics,
            "rate_limited_total{service=\"gateway\",limit=\"default\"}"
        ) >= 2.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn logins_are_budgeted_per_address_and_email() {
    let app = spawn(&[("ECOM_RATE_LIMIT_LOGIN", "2/minute")]).await;
    let login = |email: &str| json!({"query": "mutation($e: String!) { login(email: $e, password: \"password123\") { accessToken } }", "variables": {"e": email}});
    // Users is down: the first two are SERVICE_UNAVAILABLE, the third is over the budget.
    for _ in 0..2 {
        let (_, body, _) = app.graphql(&login("victim@example.com"), None).await;
        assert_eq!(first_code(&body), "SERVICE_UNAVAILABLE", "{body}");
    }
    let (status, body, headers) = app.graphql(&login("Victim@Example.com"), None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(first_code(&body), "RATE_LIMITED");
    assert!(headers.contains_key("retry-after"));

    // The REST login shares the budget of that (address, e-mail) pair...
    let r = app
        .client
        .post(format!("{}/api/auth/login", app.base))
        .json(&json!({"email": "victim@example.com", "password": "password123"}))
        .send()
        .await
        .expect("send");
    testing::assert_error(
        &testing::parts(r).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
    );
    // ...and another e-mail from the same address is not throttled by it.
    let (_, body, _) = app.graphql(&login("someone@example.com"), None).await;
    assert_eq!(first_code(&body), "SERVICE_UNAVAILABLE", "{body}");
}

#[tokio::test]
async fn redis_down_serves_requests_but_refuses_logins() {
    let redis = format!("redis://127.0.0.1:{}", closed_port());
    let app = spawn(&[("ECOM_REDIS_URL", &redis)]).await;
    let (status, body, _) = app.graphql(&json!({"query": "{ __typename }"}), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let r = app
        .client
        .post(format!("{}/api/auth/login", app.base))
        .json(&json!({"email": "a@example.com", "password": "password123"}))
        .send()
        .await
        .expect("send");
    assert!(r.headers().contains_key("retry-after"));
    testing::assert_error(
        &testing::parts(r).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    );

    let (status, body, _) = app
        .graphql(&json!({"query": "mutation { login(email: \"a@example.com\", password: \"password123\") { accessToken } }"}), None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(first_code(&body), "SERVICE_UNAVAILABLE");

    // Served, but not ready: the contract's readiness includes Redis.
    let r = app
        .client
        .get(format!("{}/health/ready", app.base))
        .send()
        .await
        .expect("send");
    let (status, body) = testing::parts(r).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["checks"]["redis"], "down", "{body}");

    let metrics = app.metrics().await;
    assert!(
        testing::sample(
            &metrics,
            "rate_limiter_unavailable_total{limit=\"default\"}"
        ) >= 1.0,
        "{metrics}"
    );
    assert!(
        testing::sample(&metrics, "rate_limiter_unavailable_total{limit=\"login\"}") >= 1.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn services_down_are_503_with_retry_after_and_not_ready() {
    let app = spawn(&[]).await;
    let r = app
        .client
        .get(format!("{}/api/products?limit=5", app.base))
        .send()
        .await
        .expect("send");
    assert!(r.headers().contains_key("retry-after"));
    testing::assert_error(
        &testing::parts(r).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    );

    let (status, body, _) = app
        .graphql(&json!({"query": "{ products(limit: 5) { id } }"}), None)
        .await;
    assert_eq!(first_code(&body), "SERVICE_UNAVAILABLE", "{status} {body}");
    assert!(
        !body.to_string().contains("tcp"),
        "no transport detail: {body}"
    );

    let r = app
        .client
        .get(format!("{}/api/nothing-here", app.base))
        .send()
        .await
        .expect("send");
    testing::assert_error(&testing::parts(r).await, StatusCode::NOT_FOUND, "not_found");

    let r = app
        .client
        .get(format!("{}/health/ready", app.base))
        .send()
        .await
        .expect("send");
    let (status, body) = testing::parts(r).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    for s in ["users", "products", "orders", "payments"] {
        assert!(body.to_string().contains(s), "{body}");
    }
}

/// The status line of a request written byte for byte (an HTTP client would resolve `..`).
async fn raw_status(base: &str, request_line: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("{request_line}\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut head = vec![0u8; 64];
    let n = stream.read(&mut head).await.expect("read");
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default()
}

/// The REST facade routes on the first segment: a dot segment, an encoded one, an encoded slash
/// or an empty segment would let the upstream URL resolve to a route outside the allow-list (or
/// past the login budget). They are 404 here, never forwarded (forwarded, the dead upstreams of
/// this test would answer 503).
#[tokio::test]
async fn rest_paths_with_dot_segments_are_refused_not_forwarded() {
    let app = spawn(&[]).await;
    assert_eq!(
        raw_status(&app.base, "GET /api/products?limit=5 HTTP/1.1").await,
        503
    );
    for line in [
        "GET /api/users/../admin/metrics HTTP/1.1",
        "GET /api/payments/%2e%2e/metrics HTTP/1.1",
        "GET /api/payments/%2E%2E/health/ready HTTP/1.1",
        "POST /api/auth/./login HTTP/1.1",
        "POST /api/auth/%2e/login HTTP/1.1",
        "GET /api/products//1 HTTP/1.1",
        "GET /api/products/1%2f..%2f..%2fmetrics HTTP/1.1",
    ] {
        assert_eq!(raw_status(&app.base, line).await, 404, "{line}");
    }
}

/// The gateway is public: its metrics are on the ops port only, and they report what is down.
#[tokio::test]
async fn metrics_are_on_the_ops_port_only_and_name_what_is_down() {
    let app = spawn(&[]).await;
    let public = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .expect("send");
    testing::assert_error(
        &testing::parts(public).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let metrics = app.metrics().await;
    // The upstreams are dead in this test, Redis is up.
    for line in [
        r#"dependency_up{service="gateway",dependency="redis"} 1"#,
        r#"dependency_up{service="gateway",dependency="products"} 0"#,
        r#"dependency_up{service="gateway",dependency="payments"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"process_resident_memory_bytes{service="gateway"}"#),
        "{metrics}"
    );
    let ready = app
        .client
        .get(format!("{}/health/live", app.ops))
        .send()
        .await
        .expect("send");
    assert_eq!(ready.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_console_and_the_storefront_are_served_from_the_binary() {
    let app = spawn(&[]).await;
    for path in ["/graphql", "/"] {
        let r = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.expect("text");
        assert!(html.contains("/graphql"), "{path}");
        assert!(
            !html.contains("https://"),
            "{path} must load nothing from the internet"
        );
    }
    let r = app
        .client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
}

/// A real gateway process.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gateway_process(port: u16, prefix: &str, dead: &[(String, String)]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gateway"));
    cmd.env("ECOM_GATEWAY_HTTP_PORT", port.to_string())
        .env("ECOM_GATEWAY_OPS_PORT", "0")
        .env("ECOM_BIND_ADDRESS", "127.0.0.1")
        .env("ECOM_REDIS_URL", testing::redis_url())
        .env("ECOM_REDIS_PREFIX", prefix)
        .env("ECOM_RATE_LIMIT_DEFAULT", "6/minute")
        .env("ECOM_LOG_FORMAT", "json")
        .env_remove("ECOM_ENV")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in dead {
        cmd.env(k, v);
    }
    Proc(cmd.spawn().expect("spawn gateway"))
}

#[tokio::test]
async fn two_gateway_processes_share_one_budget() {
    let prefix = format!("test-{}", uuid::Uuid::new_v4());
    let dead = dead_upstreams();
    let ports = [closed_port(), closed_port()];
    let _procs: Vec<Proc> = ports
        .iter()
        .map(|p| gateway_process(*p, &prefix, &dead))
        .collect();
    let client = reqwest::Client::new();
    // Both up (live; not ready: no services behind them). Polls, never sleeps blindly.
    let deadline = Instant::now() + Duration::from_secs(30);
    for port in ports {
        loop {
            let url = format!("http://127.0.0.1:{port}/health/live");
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(Instant::now() < deadline, "gateway on {port} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut allowed = 0;
    for i in 0..12 {
        let port = ports[i % 2];
        let r = client
            .post(format!("http://127.0.0.1:{port}/graphql"))
            .json(&json!({"query": "{ __typename }"}))
            .send()
            .await
            .expect("send");
        match r.status() {
            StatusCode::OK => allowed += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(allowed, 6, "6/minute in total across both replicas");
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let q = json!({"query": "{ __typename }"});
    let send = |app: &App, xff: &'static str| {
        app.client
            .post(format!("{}/graphql", app.base))
            .header("x-forwarded-for", xff)
            .json(&q)
            .send()
    };
    // By default the header is ignored: a spoofed address is still this client's budget.
    let app = spawn(&[("ECOM_RATE_LIMIT_DEFAULT", "2/minute")]).await;
    for (xff, want) in [
        ("203.0.113.1", StatusCode::OK),
        ("203.0.113.2", StatusCode::OK),
        ("203.0.113.3", StatusCode::TOO_MANY_REQUESTS),
    ] {
        assert_eq!(send(&app, xff).await.expect("send").status(), want, "{xff}");
    }
    // Behind a trusted proxy (here: this host), each forwarded client has its own budget.
    let app = spawn(&[
        ("ECOM_RATE_LIMIT_DEFAULT", "2/minute"),
        ("ECOM_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    for xff in ["203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.2"] {
        assert_eq!(
            send(&app, xff).await.expect("send").status(),
            StatusCode::OK,
            "{xff}"
        );
    }
    assert_eq!(
        send(&app, "203.0.113.1").await.expect("send").status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Proxies named by range (a cluster's pod network), and a proxy that appends its own
    // header line: the client is the first untrusted hop from the right over every line.
    let app = spawn(&[
        ("ECOM_RATE_LIMIT_DEFAULT", "2/minute"),
        ("ECOM_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.0/8"),
    ])
    .await;
    let two_lines = |client: &'static str| {
        app.client
            .post(format!("{}/graphql", app.base))
            .header("x-forwarded-for", client)
            .header("x-forwarded-for", "10.1.2.3")
            .json(&q)
            .send()
    };
    let mut statuses = Vec::new();
    for client in [
        "198.51.100.7",
        "198.51.100.7",
        "198.51.100.7",
        "198.51.100.8",
    ] {
        statuses.push(two_lines(client).await.expect("send").status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::OK
        ]
    );
}

/// Sends `n` anonymous `{ __typename }` queries at once; returns each answer's status, the
/// `Retry-After` and `X-RateLimit-Policy` it carried, and its body.
async fn flood(app: &App, n: usize) -> Vec<(StatusCode, Option<String>, Option<String>, Value)> {
    let q = json!({"query": "{ __typename }"});
    let sends = (0..n).map(|_| async {
        let (status, body, headers) = app.graphql(&q, None).await;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (
            status,
            header("retry-after"),
            header("x-ratelimit-policy"),
            body,
        )
    });
    futures::future::join_all(sends).await
}

/// A client over its in-process burst is refused exactly as by the Redis budget (429, the
/// contract's bodies, `Retry-After`), while the Redis budget itself is far from spent, and
/// another client is still served. (A burst of 5 refilled one per 12 s: no refill during the
/// test however slow the machine.)
#[tokio::test]
async fn the_burst_limit_refuses_a_flood_per_client_like_the_budget() {
    let app = spawn(&[
        ("ECOM_RATE_LIMIT_BURST", "5/minute"),
        ("ECOM_RATE_LIMIT_DEFAULT", "100000/minute"),
    ])
    .await;
    // A fresh client has its whole burst.
    for _ in 0..5 {
        let (status, body, _) = app.graphql(&json!({"query": "{ __typename }"}), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let answers = flood(&app, 30).await;
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(refused.len() >= 29, "{} of 30 refused", refused.len());
    for (status, retry, policy, body) in &answers {
        if *status == StatusCode::OK {
            continue;
        }
        assert_eq!(first_code(body), "RATE_LIMITED", "{body}");
        assert_eq!(body["errors"][0]["extensions"]["reason"], "rate_limited");
        let retry: u64 = retry.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0);
        assert!((1..=12).contains(&retry), "Retry-After {retry}: {body}");
        assert_eq!(policy.as_deref(), Some("burst"), "{body}");
    }

    // REST on the same subject: the contract's error body, with Retry-After.
    app.assert_rest_rate_limited().await;

    // Another client (a signed-in user from the same address) has a burst of its own.
    let token = testing::token(4242, "user");
    let (status, body, _) = app
        .graphql(&json!({"query": "{ __typename }"}), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let metrics = app.metrics().await;
    let burst = testing::sample(
        &metrics,
        "rate_limited_total{service=\"gateway\",limit=\"burst\"}",
    );
    assert!(burst >= 30.0, "{metrics}");
    assert_eq!(
        testing::sample(
            &metrics,
            "rate_limited_total{service=\"gateway\",limit=\"default\"}"
        ),
        0.0,
        "{metrics}"
    );
}

/// The proof that a refused request never reaches Redis: with Redis unreachable, every check
/// that reaches it is counted in `rate_limiter_unavailable_total{limit="default"}` (and served:
/// the budget fails open). A flood beyond the burst is refused in process, so that counter grows
/// by the requests the burst let through, not by the flood.
#[tokio::test]
async fn requests_over_the_burst_never_reach_redis() {
    let redis = format!("redis://127.0.0.1:{}", closed_port());
    let app = spawn(&[
        ("ECOM_REDIS_URL", &redis),
        ("ECOM_RATE_LIMIT_BURST", "5/minute"),
    ])
    .await;
    let unavailable = |metrics: &str| {
        testing::sample(metrics, "rate_limiter_unavailable_total{limit=\"default\"}")
    };
    let before = unavailable(&app.metrics().await);
    let answers = flood(&app, 60).await;
    let served = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|(status, _, policy, _)| {
            *status == StatusCode::TOO_MANY_REQUESTS && policy.as_deref() == Some("burst")
        })
        .count();
    assert_eq!(
        served + refused,
        answers.len(),
        "only served or burst-refused"
    );
    assert!((5..=6).contains(&served), "the burst lets {served} through");

    let metrics = app.metrics().await;
    assert_eq!(
        unavailable(&metrics) - before,
        served as f64,
        "Redis was tried once per served request and never for a refused one:\n{metrics}"
    );
    assert_eq!(
        testing::sample(
            &metrics,
            "rate_limited_total{service=\"gateway\",limit=\"burst\"}"
        ),
        refused as f64,
        "{metrics}"
    );
}

/// A stand-in service that serves only its OpenAPI document.
async fn document_server(doc: Value) -> String {
    let router = axum::Router::new().route(
        "/openapi.json",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn operation(responses: Value) -> Value {
    json!({"responses": responses})
}

/// The facade's document is what the facade does (schemathesis, `make fuzz`): it listed
/// `/api/admin/keys/rotate`, which the gateway never forwards (404); it left out the answers
/// the gateway gives on any `/api` route whatever the service documents (413, 429 with
/// `Retry-After`, 503 with `Retry-After`, 404 for a refused path); and `GET /graphql` (the
/// console, 200) was not in it, so an "undeclared" GET got 200 rather than 405.
#[tokio::test]
async fn the_facade_document_lists_what_the_gateway_answers() {
    let ok = json!({"200": {"description": "ok"}});
    let users = document_server(json!({
        "paths": {
            "/auth/login": {"post": operation(ok.clone())},
            "/users/{id}": {"get": operation(json!({
                "200": {"description": "ok"},
                "404": {"description": "the service's own words"}
            }))},
            "/admin/keys/rotate": {"post": operation(ok.clone())},
            "/health/ready": {"get": operation(ok.clone())},
        },
        "components": {"schemas": {}}
    }))
    .await;
    let products =
        document_server(json!({"paths": {"/products": {"get": operation(ok.clone())}}})).await;
    let orders =
        document_server(json!({"paths": {"/orders": {"post": operation(ok.clone())}}})).await;
    let payments = document_server(json!({"paths": {"/payments": {"post": operation(ok)}}})).await;
    let app = spawn(&[
        ("ECOM_USERS_HTTP_URL", &users),
        ("ECOM_PRODUCTS_HTTP_URL", &products),
        ("ECOM_ORDERS_HTTP_URL", &orders),
        ("ECOM_PAYMENTS_HTTP_URL", &payments),
    ])
    .await;
    let r = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .expect("send");
    let (status, doc) = testing::parts(r).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let paths = doc["paths"].as_object().expect("paths");
    for path in [
        "/api/auth/login",
        "/api/users/{id}",
        "/api/products",
        "/api/orders",
        "/api/payments",
        "/graphql",
    ] {
        assert!(
            paths.contains_key(path),
            "{path} missing: {:?}",
            paths.keys()
        );
    }
    for path in ["/api/admin/keys/rotate", "/api/health/ready"] {
        assert!(
            !paths.contains_key(path),
            "{path} is not forwarded, so not documented"
        );
    }
    let statuses = |path: &str, method: &str| {
        let mut s: Vec<String> = doc["paths"][path][method]["responses"]
            .as_object()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        s.sort();
        s
    };
    assert_eq!(
        statuses("/api/auth/login", "post"),
        ["200", "413", "429", "503"]
    );
    assert_eq!(
        statuses("/api/users/{id}", "get"),
        ["200", "404", "413", "429", "503"]
    );
    assert_eq!(
        doc["paths"]["/api/users/{id}"]["get"]["responses"]["404"]["description"],
        "the service's own words"
    );
    for code in ["429", "503"] {
        let answer = &doc["paths"]["/api/auth/login"]["post"]["responses"][code];
        assert!(
            answer["headers"]["Retry-After"].is_object(),
            "{code}: {answer}"
        );
        assert_eq!(
            answer["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorBody"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    assert_eq!(statuses("/graphql", "get"), ["200", "429"]);
    assert_eq!(
        statuses("/graphql", "post"),
        ["200", "400", "413", "429", "503"]
    );
    assert!(doc["components"]["schemas"]["GraphQLResponse"].is_object());

    // What the document says, the gateway does.
    let r = app
        .client
        .post(format!("{}/api/admin/keys/rotate", app.base))
        .send()
        .await
        .expect("send");
    testing::assert_error(&testing::parts(r).await, StatusCode::NOT_FOUND, "not_found");
    let console = app
        .client
        .get(format!("{}/graphql", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(console.status(), StatusCode::OK);
    assert!(
        console.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("text/html")
    );
    let put = app
        .client
        .put(format!("{}/graphql", app.base))
        .send()
        .await
        .expect("send");
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
    let allow = put.headers()["allow"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    for method in ["GET", "POST"] {
        assert!(allow.contains(method), "Allow: {allow}");
    }
    let (status, body, _) = app.graphql(&json!({"query": "{"}), None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["data"].is_null() && body["errors"][0]["message"].is_string(),
        "{body}"
    );
}
