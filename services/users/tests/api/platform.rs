//! What every service serves: health, metrics, docs, JSON errors for unknown routes.

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::helpers::*;

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn health_reports_each_dependency(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let (status, live) = app.get("/health/live", None).await;
    assert_eq!(
        (status, live["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, ready) = app.get("/health/ready", None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(
        (
            ready["checks"]["database"].as_str(),
            ready["checks"]["redis"].as_str()
        ),
        (Some("ok"), Some("ok"))
    );

    let no_redis = spawn_app_with(pool, &[("ECOM_REDIS_URL", "redis://127.0.0.1:1")]).await;
    let (status, ready) = no_redis.get("/health/ready", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["checks"]["redis"], "down");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(ready["code"], "service_unavailable");
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn metrics_use_route_templates_never_raw_ids(pool: PgPool) {
    let app = spawn_app(pool).await;
    let admin = app.admin_token().await;
    app.get("/users/12345", Some(&admin)).await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"http_requests_total{service="users",method="GET",route="/users/{id}",status="404"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("http_request_duration_seconds_bucket{"),
        "{metrics}"
    );
    assert!(!metrics.contains("/users/12345"));
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn swagger_ui_and_openapi_are_served_from_the_binary(pool: PgPool) {
    let app = spawn_app(pool).await;
    let html = app
        .client
        .get(app.url("/docs/"))
        .send()
        .await
        .expect("docs");
    assert_eq!(html.status(), StatusCode::OK);
    let page = html.text().await.expect("html");
    assert!(page.contains("swagger-ui"), "{page}");
    assert!(
        !page.contains("https://"),
        "no CDN: every asset comes from the binary"
    );
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
        .get(app.url("/docs"))
        .send()
        .await
        .expect("docs");
    assert!(redirect.status().is_success() || redirect.status().is_redirection());
    let (status, spec) = app.get("/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/auth/register",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/users/me",
        "/users",
        "/users/{id}",
        "/.well-known/jwks.json",
    ] {
        assert!(
            spec["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(
        spec["components"]["securitySchemes"]["password"].is_object(),
        "Swagger's Authorize needs the password flow"
    );
}

#[sqlx::test(migrator = "users::MIGRATOR")]
async fn unknown_routes_get_a_json_404_and_a_request_id(pool: PgPool) {
    let app = spawn_app(pool).await;
    let res = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .expect("req");
    assert_eq!(
        res.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some("req-123")
    );
    assert_error(&parts(res).await, StatusCode::NOT_FOUND, "not_found");
}

/// The binary as a container runs it: `--version`, `healthcheck` (the image has no curl), and a
/// bad setting reported in one line on stderr with exit code 1.
#[sqlx::test(migrator = "users::MIGRATOR")]
async fn the_binary_answers_version_healthcheck_and_bad_settings(pool: PgPool) {
    // Asynchronously: the service answering the healthcheck runs on this test's runtime.
    async fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_users"));
        cmd.args(args)
            .env_remove("ECOM_USERS_HTTP_PORT")
            .env("ECOM_LOG", "off");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().await.expect("run the users binary")
    }
    let port = |app: &TestApp| app.base.rsplit(':').next().unwrap_or_default().to_owned();

    let version = run(&["--version"], &[]).await;
    assert!(version.status.success());
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("users {}", env!("CARGO_PKG_VERSION"))
    );

    let app = spawn_app(pool.clone()).await;
    let healthy = run(&["healthcheck"], &[("ECOM_USERS_HTTP_PORT", &port(&app))]).await;
    assert!(healthy.status.success(), "{healthy:?}");
    let no_redis = spawn_app_with(pool, &[("ECOM_REDIS_URL", "redis://127.0.0.1:1")]).await;
    let unready = run(
        &["healthcheck"],
        &[("ECOM_USERS_HTTP_PORT", &port(&no_redis))],
    )
    .await;
    assert_eq!(unready.status.code(), Some(1), "{unready:?}");
    assert!(String::from_utf8_lossy(&unready.stderr).contains("503"));

    let bad = run(
        &[],
        &[("ECOM_USERS_HTTP_PORT", "http"), ("ECOM_ENV", "nonsense")],
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("users: invalid configuration: ")
            && stderr.contains("ECOM_USERS_HTTP_PORT")
            && stderr.contains("ECOM_ENV"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// gRPC metrics label calls by method, and a path the server does not have as `unknown`: random
/// paths from a client cannot create new series.
#[sqlx::test(migrator = "users::MIGRATOR")]
async fn grpc_metrics_label_unknown_methods_as_one_value(pool: PgPool) {
    let app = spawn_app(pool).await;
    let channel = tonic::transport::Endpoint::from_shared(app.grpc_url.clone())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    for path in [
        "/ecom.users.v1.UserService/NoSuchMethod",
        "/random.Service/Abc123",
        "/random.Service/Def456",
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.expect("ready");
        let status = grpc
            .unary::<(), (), _>(
                tonic::Request::new(()),
                tonic::codegen::http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::default(),
            )
            .await
            .expect_err("no such method");
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{path}");
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"grpc_server_handled_total{service="users",grpc_method="unknown",grpc_code="Unimplemented"} 3"#
        ),
        "{metrics}"
    );
    for raw in ["NoSuchMethod", "random.Service"] {
        assert!(!metrics.contains(raw), "{raw} became a label:\n{metrics}");
    }
}

/// A slow client cannot hold a connection: headers that do not arrive in time, or a body that
/// stops, end the connection (without these limits both waited forever).
#[sqlx::test(migrator = "users::MIGRATOR")]
async fn slow_clients_are_cut_off(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with(
        pool,
        &[
            ("ECOM_HTTP_HEADER_TIMEOUT_MS", "300"),
            ("ECOM_HTTP_BODY_TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    // What the server sends before it closes, within a deadline far above the limits.
    let answer = |mut stream: tokio::net::TcpStream| async move {
        let mut got = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut got),
        )
        .await
        .expect("the server must close a stalled connection")
        .ok();
        String::from_utf8_lossy(&got).into_owned()
    };

    // Slowloris: a request line and one header, then nothing.
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    let got = answer(stream).await;
    assert!(!got.contains("200 OK"), "{got}");

    // A body that stops after 5 of its 100 bytes: refused with a 4xx, then closed.
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
              content-length: 100\r\n\r\n{\"ema",
        )
        .await
        .expect("write");
    let got = answer(stream).await;
    let status: u16 = got
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_default();
    assert!(
        got.is_empty() || (400..500).contains(&status),
        "a stalled body is not a {status}: {got}"
    );

    // The service still answers everyone else.
    let (status, _) = app.get("/health/live", None).await;
    assert_eq!(status, StatusCode::OK);
}

/// Outside production the process says so at start, naming the development secret it accepts.
#[tokio::test]
async fn development_mode_is_announced_at_start() {
    use tokio::io::AsyncBufReadExt;
    async fn first_lines(env: &[(&str, &str)]) -> String {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_users"));
        cmd.env_remove("ECOM_ENV")
            .env_remove("ECOM_SERVICE_SECRET")
            .env("ECOM_LOG", "warn")
            .env("ECOM_LOG_FORMAT", "json")
            // Unreachable: the announcement comes before the database is tried.
            .env(
                "ECOM_USERS_DATABASE_URL",
                "postgres://postgres@127.0.0.1:1/x",
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn users");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut seen = String::new();
        // Until the first warning about the database: everything said before it.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let database = line.contains("database");
                seen.push_str(&line);
                seen.push('\n');
                if database {
                    break;
                }
            }
        })
        .await;
        let _ = child.kill().await;
        seen
    }
    let dev = first_lines(&[]).await;
    assert!(
        dev.contains("users IS RUNNING IN DEVELOPMENT MODE")
            && dev.contains("development defaults are accepted"),
        "{dev}"
    );
    let prod = first_lines(&[
        ("ECOM_ENV", "production"),
        (
            "ECOM_SERVICE_SECRET_ORDERS",
            "a-production-secret-of-orders-32-chars",
        ),
        (
            "ECOM_SERVICE_SECRET_PAYMENTS",
            "a-production-secret-of-payments-32-chars",
        ),
        ("ECOM_ADMIN_PASSWORD", "a-strong-admin-password-here"),
    ])
    .await;
    assert!(
        prod.contains("database") && !prod.contains("MODE"),
        "production starts quietly: {prod}"
    );
}

/// Tokens with made-up `kid`s: each used to cost a database read of the signing keys. Now the
/// keys are re-read at most once per refetch interval, however many arrive.
#[sqlx::test(migrator = "users::MIGRATOR")]
async fn made_up_key_ids_do_not_each_cost_a_key_read(pool: PgPool) {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let app = spawn_app(pool).await;
    let reloads = |m: &str| ecom_shared::testing::sample(m, "signing_key_reloads_total");
    let before = reloads(&app.metrics().await);
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    for i in 0..40 {
        let forged = format!(
            "{}.{}.{}",
            b64(serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": format!("made-up-{i}")})),
            b64(serde_json::json!({"sub": "1", "role": "admin", "exp": 4_000_000_000u64})),
            URL_SAFE_NO_PAD.encode([7u8; 64])
        );
        let (status, _) = app.get("/users/me", Some(&forged)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let after = reloads(&app.metrics().await);
    // 40 requests in well under a few seconds: at most a couple of reads, not 40.
    assert!(after - before <= 3.0, "{before} -> {after} key reads");
}
