//! End to end: `ecomctl up` as a real subprocess with private PostgreSQL and Redis, a user's
//! first minutes over real HTTP and gRPC, then Ctrl-C: everything stops within 10 s and every
//! port is free. A second `up` keeps the data; `--fresh` wipes it.

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

struct Ports {
    http: u16,
    grpc: u16,
    products_http: u16,
    products_grpc: u16,
    orders_http: u16,
    orders_grpc: u16,
    payments_http: u16,
    payments_grpc: u16,
    pg: u16,
    redis: u16,
}

struct Up {
    child: Child,
    output: Arc<Mutex<String>>,
}

fn start(dir: &Path, ports: &Ports, fresh: bool) -> Up {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_ecomctl"));
    let users = exe.with_file_name("users");
    assert!(
        users.is_file(),
        "{} is not built: run `cargo build --workspace --bins` (make test does)",
        users.display()
    );
    let mut cmd = Command::new(exe);
    cmd.arg("up").arg("--data-dir").arg(dir);
    if fresh {
        cmd.arg("--fresh");
    }
    let mut child = cmd
        .env("ECOM_USERS_HTTP_PORT", ports.http.to_string())
        .env("ECOM_USERS_GRPC_PORT", ports.grpc.to_string())
        .env("ECOM_PRODUCTS_HTTP_PORT", ports.products_http.to_string())
        .env("ECOM_PRODUCTS_GRPC_PORT", ports.products_grpc.to_string())
        .env("ECOM_ORDERS_HTTP_PORT", ports.orders_http.to_string())
        .env("ECOM_ORDERS_GRPC_PORT", ports.orders_grpc.to_string())
        .env("ECOM_PAYMENTS_HTTP_PORT", ports.payments_http.to_string())
        .env("ECOM_PAYMENTS_GRPC_PORT", ports.payments_grpc.to_string())
        .env("ECOM_PG_PORT", ports.pg.to_string())
        .env("ECOM_REDIS_PORT", ports.redis.to_string())
        .env("ECOM_LOG_FORMAT", "json")
        .env_remove("ECOM_DATABASE_URL")
        .env_remove("ECOM_REDIS_URL")
        .env_remove("ECOM_ADMIN_PASSWORD")
        .env_remove("ECOM_ENV")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ecomctl");
    let output = Arc::new(Mutex::new(String::new()));
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let output = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if std::env::var_os("TEST_LOG").is_some() {
                    eprintln!("{line}");
                }
                if let Ok(mut o) = output.lock() {
                    o.push_str(&line);
                    o.push('\n');
                }
            }
        });
    }
    Up { child, output }
}

impl Up {
    fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    async fn wait_ready(&mut self, http: u16) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(r) = client
                .get(format!("http://127.0.0.1:{http}/health/ready"))
                .send()
                .await
                && r.status().is_success()
                && self.output().contains("Press Ctrl-C to stop")
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ecomctl exited early ({status}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "not ready in time:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ctrl-C, then: stopped within 10 s, every port free.
    async fn interrupt(mut self, ports: &Ports) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        let sent = Instant::now();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(
                    status.success(),
                    "ecomctl exit {status}:\n{}",
                    self.output()
                );
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(10),
                "still running 10 s after Ctrl-C:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for port in [
            ports.http,
            ports.grpc,
            ports.products_http,
            ports.products_grpc,
            ports.orders_http,
            ports.orders_grpc,
            ports.payments_http,
            ports.payments_grpc,
            ports.pg,
            ports.redis,
        ] {
            let deadline = sent + Duration::from_secs(10);
            while !port_is_free(port) {
                assert!(
                    Instant::now() < deadline,
                    "port {port} still in use after Ctrl-C:\n{}",
                    self.output()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let r = client.post(url).json(&body).send().await.expect("request");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn up_runs_the_platform_and_ctrl_c_stops_everything() {
    let dir = std::env::temp_dir().join(format!("ecomctl-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ports = Ports {
        http: free_port(),
        grpc: free_port(),
        products_http: free_port(),
        products_grpc: free_port(),
        orders_http: free_port(),
        orders_grpc: free_port(),
        payments_http: free_port(),
        payments_grpc: free_port(),
        pg: free_port(),
        redis: free_port(),
    };
    let base = format!("http://127.0.0.1:{}", ports.http);
    let client = reqwest::Client::new();

    let mut up = start(&dir, &ports, false);
    up.wait_ready(ports.http).await;
    let table = up.output();
    assert!(
        table.contains(&format!("{base}/docs")),
        "the URL table names Swagger:\n{table}"
    );
    assert!(
        table.contains("admin@example.com / admin12345"),
        "the demo admin is printed:\n{table}"
    );
    assert!(
        table.contains("   users | "),
        "service logs are streamed with a prefix:\n{table}"
    );

    let (status, user) = post(
        &client,
        format!("{base}/auth/register"),
        json!({"email": "e2e@example.com", "password": "password123", "full_name": "E2E"}),
    )
    .await;
    assert_eq!(status, 201, "{user}");
    let (status, tokens) = post(
        &client,
        format!("{base}/auth/login"),
        json!({"email": "e2e@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let me: Value = client
        .get(format!("{base}/users/me"))
        .bearer_auth(tokens["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["email"], "e2e@example.com");

    let channel =
        tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{}", ports.grpc))
            .expect("url")
            .connect()
            .await
            .expect("gRPC connect");
    let status = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ecom.users.v1.UserService".into(),
        })
        .await
        .expect("gRPC health")
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );

    // Products: the demo catalogue is there, and an admin token issued by Users (verified by
    // Products through the Users JWKS) can change it; a user's token cannot.
    let shop = format!("http://127.0.0.1:{}", ports.products_http);
    let page: Value = client
        .get(format!("{shop}/products?limit=5"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(
        page["total"].as_i64().is_some_and(|t| t >= 90),
        "the demo catalogue is seeded: {page}"
    );
    let (status, admin) = post(
        &client,
        format!("{base}/auth/login"),
        json!({"email": "admin@example.com", "password": "admin12345"}),
    )
    .await;
    assert_eq!(status, 200, "{admin}");
    let create = |token: String, name: &str| {
        client
            .post(format!("{shop}/products"))
            .bearer_auth(token)
            .json(&json!({"name": name, "price": "12.34", "stock": 3}))
            .send()
    };
    let created = create(
        admin["access_token"].as_str().expect("token").to_owned(),
        "E2E Widget",
    )
    .await
    .expect("create");
    assert_eq!(created.status().as_u16(), 201);
    let refused = create(
        tokens["access_token"].as_str().expect("token").to_owned(),
        "Nope",
    )
    .await
    .expect("create");
    assert_eq!(refused.status().as_u16(), 403);

    // Orders: a checkout through the real services reserves stock in Products over gRPC.
    let widget: Value = created.json().await.expect("json");
    let orders = format!("http://127.0.0.1:{}", ports.orders_http);
    let order = client
        .post(format!("{orders}/orders"))
        .bearer_auth(tokens["access_token"].as_str().expect("token"))
        .header("Idempotency-Key", "e2e-1")
        .json(&json!({"items": [{"product_id": widget["id"], "quantity": 2}]}))
        .send()
        .await
        .expect("order");
    assert_eq!(order.status().as_u16(), 201);
    let order: Value = order.json().await.expect("json");
    assert_eq!(
        (order["status"].as_str(), order["total"].as_str()),
        (Some("pending_payment"), Some("24.68"))
    );
    let after: Value = client
        .get(format!("{shop}/products/{}", widget["id"]))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(after["stock"], 1, "3 in stock, 2 reserved");

    // Payments: a charge over real processes; Payments tells Orders as itself (a service
    // token from Users), Orders commits the stock in Products as itself.
    let payments = format!("http://127.0.0.1:{}", ports.payments_http);
    let paid = client
        .post(format!("{payments}/payments"))
        .bearer_auth(tokens["access_token"].as_str().expect("token"))
        .header("Idempotency-Key", "e2e-pay-1")
        .json(&json!({"order_id": order["id"], "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2040, "cvc": "123"}}))
        .send()
        .await
        .expect("pay");
    assert_eq!(paid.status().as_u16(), 201);
    let paid: Value = paid.json().await.expect("json");
    assert_eq!(
        (paid["status"].as_str(), paid["amount"].as_str()),
        (Some("succeeded"), Some("24.68"))
    );
    let order_now: Value = client
        .get(format!("{orders}/orders/{}", order["id"]))
        .bearer_auth(tokens["access_token"].as_str().expect("token"))
        .send()
        .await
        .expect("order")
        .json()
        .await
        .expect("json");
    assert_eq!(order_now["status"], "paid", "{order_now}");
    let ready = client
        .get(format!("{payments}/health/ready"))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status().as_u16(), 200);
    up.interrupt(&ports).await;

    // A second `up` reuses the data.
    let mut again = start(&dir, &ports, false);
    again.wait_ready(ports.http).await;
    let (status, _) = post(
        &client,
        format!("{base}/auth/login"),
        json!({"email": "e2e@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 200, "the account survived a restart");
    again.interrupt(&ports).await;

    // `--fresh` wipes it.
    let mut fresh = start(&dir, &ports, true);
    fresh.wait_ready(ports.http).await;
    let (status, body) = post(
        &client,
        format!("{base}/auth/login"),
        json!({"email": "e2e@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    fresh.interrupt(&ports).await;
    let _ = std::fs::remove_dir_all(&dir);
}
