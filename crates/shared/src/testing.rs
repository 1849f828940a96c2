//! Helpers for the services' black-box tests (feature `testing`): a signing key standing in
//! for the Users service, tokens signed with it, and response assertions.
//!
//! The verifier built here runs the production verification code; only the key source differs.

use std::sync::Arc;

use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{Jwk, JwkSet},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::auth::JwtVerifier;

const KID: &str = "test-key";

fn key() -> (EncodingKey, Jwk) {
    // PKCS#8 v1 Ed25519 prefix followed by a fixed seed.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[42u8; 32]);
    let key = EncodingKey::from_ed_der(&der);
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::EdDSA).expect("test jwk");
    jwk.common.key_id = Some(KID.into());
    (key, jwk)
}

/// A verifier that trusts the test key (as services trust the Users JWKS).
pub fn verifier() -> Arc<JwtVerifier> {
    let (_, jwk) = key();
    Arc::new(JwtVerifier::new(Arc::new(move || {
        let set = JwkSet {
            keys: vec![jwk.clone()],
        };
        Box::pin(async move { Ok(set) })
    })))
}

/// An access token for `user_id` with `role` (`user` or `admin`), valid for 10 minutes.
pub fn token(user_id: i64, role: &str) -> String {
    sign(&user_id.to_string(), role)
}

/// A service token for `service` (as the Users service issues them), valid for 10 minutes.
pub fn service_token(service: &str) -> String {
    sign(&format!("service:{service}"), "service")
}

fn sign(sub: &str, role: &str) -> String {
    let (key, _) = key();
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(KID.into());
    let claims = json!({"sub": sub, "role": role, "iat": now, "exp": now + 600, "jti": "t", "typ": "access", "iss": crate::auth::TOKEN_ISSUER, "aud": crate::auth::DEFAULT_AUDIENCE});
    jsonwebtoken::encode(&header, &claims, &key).expect("test token")
}

/// An admin's token.
pub fn admin() -> String {
    token(1, "admin")
}

/// A response's status and JSON body (`Null` when empty, a string when not JSON).
pub async fn parts(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let text = r.text().await.expect("body");
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        },
    )
}

/// Asserts an error response's status and stable `code` (and that it explains itself).
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "body: {}", got.1);
    assert_eq!(got.1["code"], code, "body: {}", got.1);
    assert!(got.1["detail"].is_string(), "body: {}", got.1);
}

/// The stable error code a gRPC error carries (what HTTP puts in `code`).
pub fn grpc_error_code(status: &tonic::Status) -> Option<&str> {
    status
        .metadata()
        .get(crate::error::GRPC_CODE_METADATA)
        .and_then(|v| v.to_str().ok())
}

/// The value of the first metric sample line starting with `prefix` (0 when absent).
pub fn sample(metrics: &str, prefix: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Sends `req` with an optional JSON body and bearer token; returns status and JSON body.
pub async fn send(
    mut req: reqwest::RequestBuilder,
    body: Option<&Value>,
    token: Option<&str>,
) -> (StatusCode, Value) {
    if let Some(b) = body {
        req = req.json(b);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    parts(req.send().await.expect("request")).await
}

/// A fresh database beside a `#[sqlx::test]` database, for another service of the same test
/// (each service has its own database). Named after the test's own, so parallel tests never
/// share one; dropped and recreated if a previous run left it behind.
pub async fn sibling_database(pool: &sqlx::PgPool, service: &str) -> sqlx::PgPool {
    use sqlx::{
        Connection, PgConnection,
        postgres::{PgConnectOptions, PgPoolOptions},
    };
    let options: PgConnectOptions = (*pool.connect_options()).clone();
    // PostgreSQL truncates names at 63 bytes, and the test database's name is that long
    // already: derive a short, unique one.
    let test_db = options.get_database().expect("database name").to_owned();
    let name = format!(
        "ecom_test_{service}_{}",
        &test_db[test_db.len().saturating_sub(24)..]
    );
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .expect("connect");
    // Siblings of tests that are over (sqlx dropped their databases) go too.
    let orphans: Vec<String> = sqlx::query_scalar(
        r"SELECT s.datname FROM pg_database s
           WHERE s.datname LIKE 'ecom\_test\_%'
             AND NOT EXISTS (SELECT 1 FROM pg_database p
                              WHERE p.datname NOT LIKE 'ecom\_test\_%'
                                AND right(p.datname, 24) = right(s.datname, 24))",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap_or_default();
    for orphan in orphans {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{orphan}\" WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .expect("create");
    PgPoolOptions::new()
        .max_connections(20)
        .connect_with(options.database(&name))
        .await
        .expect("sibling pool")
}

/// The Redis server tests use (`ECOM_TEST_REDIS_URL`, else the local default).
pub fn redis_url() -> String {
    std::env::var("ECOM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A service's environment for a test: `pairs`, then `overrides`, on the test Redis under a
/// key prefix of its own (so parallel tests never see each other's keys).
pub fn service_env(pairs: &[(&str, &str)], overrides: &[(&str, &str)]) -> crate::config::EnvReader {
    let mut vars: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    vars.insert("ECOM_REDIS_URL".into(), redis_url());
    vars.insert(
        "ECOM_REDIS_PREFIX".into(),
        format!("test-{}", uuid::Uuid::new_v4()),
    );
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    crate::config::EnvReader::from_map(vars)
}

/// The statuses an OpenAPI document lists for `method` (lower case) on `path`.
pub fn documented_statuses(spec: &Value, method: &str, path: &str) -> Vec<u16> {
    spec["paths"][path][method]["responses"]
        .as_object()
        .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default()
}

/// Asserts that the document lists `got`'s status for `method` on `path`: what a client
/// generated from the document must expect.
pub fn assert_documented(spec: &Value, method: &str, path: &str, got: &(StatusCode, Value)) {
    let documented = documented_statuses(spec, method, path);
    assert!(
        documented.contains(&got.0.as_u16()),
        "{} {path} answered {} ({}), documented: {documented:?}",
        method.to_uppercase(),
        got.0,
        got.1
    );
}

/// The parameter `name` of `method` on `path`.
pub fn documented_parameter<'a>(
    spec: &'a Value,
    method: &str,
    path: &str,
    name: &str,
) -> &'a Value {
    spec["paths"][path][method]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or(&Value::Null)
}

/// A port for a process a test starts (a child cannot bind port 0 and tell the test which
/// port it got): free now, and outside the kernel's ephemeral range (32768-60999 by default),
/// so a listener that a concurrent test binds to port 0 cannot take it before the child binds
/// it. Spread by process id, time and a counter, so concurrent test processes rarely pick the
/// same one.
pub fn child_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::process::id().wrapping_mul(2_654_435_761)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let offset = seed.wrapping_add(n.wrapping_mul(7919)) % 12_000;
        let port = 20_000 + u16::try_from(offset).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `n` different ports from [`child_port`].
pub fn child_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let port = child_port();
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}
