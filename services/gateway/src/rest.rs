//! `/api/...`: the services' public REST endpoints behind one origin (and one rate limiter),
//! passed through unchanged: same statuses, bodies and headers (`Idempotency-Key`,
//! `Retry-After`, ...). Pooled keep-alive connections, a deadline per call, and a 503
//! `service_unavailable` with `Retry-After` when a service does not answer.
//!
//! `/openapi.json` is the services' documents merged under `/api`, fetched from the running
//! services (so it always matches what they serve) and kept once all four have answered.

use std::{sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, header},
    response::{IntoResponse, Response},
};
use ecom_shared::error::{ApiError, ErrorBody, FieldError, doc};
use serde_json::{Value, json};
use tokio::sync::RwLock;
use utoipa::{PartialSchema, ToSchema};

use crate::{
    AppState, Gateway,
    config::Upstream,
    limits::{Identity, Limits},
};

/// Which service serves a path under `/api/` (by its first segment).
/// The path under `/api/` when every segment is a plain name: no empty segment (but a trailing
/// slash), no `.` or `..` (literal or percent-encoded: the URL parser of the upstream request
/// would resolve them and reach routes the allow-list below excludes), no encoded slash or
/// backslash. `None`: refused (404).
fn checked_path(path: &str) -> Option<&str> {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let plain = |segment: &str| {
        let lower = segment.to_ascii_lowercase();
        let dots = lower.replace("%2e", ".");
        !segment.is_empty()
            && dots != "."
            && dots != ".."
            && !lower.contains("%2f")
            && !lower.contains("%5c")
            && !segment.contains('\\')
    };
    trimmed.split('/').all(plain).then_some(path)
}

/// The service that serves `path` (under `/api/`, without its leading slash), by its first
/// segment: the allow-list of the facade.
fn service_of(path: &str) -> Option<&'static str> {
    Some(match path.split('/').next().unwrap_or_default() {
        "auth" | "users" | ".well-known" => "users",
        "products" => "products",
        "orders" => "orders",
        "payments" => "payments",
        _ => return None,
    })
}

fn route<'a>(gw: &'a Gateway, path: &str) -> Option<&'a Upstream> {
    let config = &gw.config;
    Some(match service_of(path)? {
        "users" => &config.users,
        "products" => &config.products,
        "orders" => &config.orders,
        _ => &config.payments,
    })
}

/// Headers that belong to one hop, never forwarded.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
            | "x-forwarded-for"
    )
}

pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(64)
        .pool_idle_timeout(Duration::from_secs(60))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?)
}

/// The e-mail a login body names (JSON `email`, or the OAuth2 form's `username`).
fn login_email(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "username")
            .map(|(_, v)| v.into_owned())
    } else {
        serde_json::from_slice::<Value>(body)
            .ok()?
            .get("email")?
            .as_str()
            .map(str::to_owned)
    }
}

/// `ANY /api/{*path}`.
pub async fn proxy(State(state): State<AppState>, req: Request) -> Response {
    let gw = &state.gateway;
    let identity = req.extensions().get::<Identity>().cloned();
    let (parts, body) = req.into_parts();
    let Some(path) =
        checked_path(parts.uri.path().strip_prefix("/api/").unwrap_or_default()).map(str::to_owned)
    else {
        return ApiError::not_found("route").into_response();
    };
    let Some(upstream) = route(gw, &path) else {
        return ApiError::not_found("route").into_response();
    };
    let body = match axum::body::to_bytes(body, ecom_shared::http::MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => return ApiError::payload_too_large().into_response(),
    };
    let ip = identity
        .as_ref()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |i| i.ip);
    if parts.method == Method::POST && path.trim_end_matches('/') == "auth/login" {
        // A body without an e-mail is refused by Users itself; only named logins are budgeted.
        if let Some(email) = login_email(&parts.headers, &body)
            && let Err(e) = Limits::check_login(gw, ip, &email).await
        {
            return ApiError::from(e).into_response();
        }
    }
    let mut url = format!("{}/{path}", upstream.http_url);
    if let Some(q) = parts.uri.query() {
        url.push('?');
        url.push_str(q);
    }
    let mut forward = gw.http.request(parts.method.clone(), &url);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            forward = forward.header(name, value);
        }
    }
    // One hop: the client as this gateway resolved it (a client's own header is not passed on).
    forward = forward.header("x-forwarded-for", ip.to_string());
    let answer = match forward.body(body).send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                service = upstream.name,
                timeout = e.is_timeout(),
                "upstream did not answer"
            );
            return ApiError::unavailable(upstream.name).into_response();
        }
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    let bytes = match answer.bytes().await {
        Ok(b) => b,
        Err(_) => return ApiError::unavailable(upstream.name).into_response(),
    };
    let mut response = (status, bytes).into_response();
    *response.headers_mut() = headers;
    response
}

/// The merged OpenAPI document, once every service has contributed.
#[derive(Default)]
pub struct OpenApiCache(RwLock<Option<Bytes>>);

const OPS_PATHS: [&str; 5] = [
    "/health",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/.well-known",
];

async fn fetch_openapi(gw: &Gateway, upstream: &Upstream) -> Option<Value> {
    let r = gw
        .http
        .get(format!("{}/openapi.json", upstream.http_url))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// What the gateway itself can answer on any `/api/...` operation, whatever the service does:
/// 413 (a body over its limit), 429 (the per-client budget, the burst limit, the login budget),
/// 503 (the service does not answer), and 404 where a path parameter could make a refused path
/// (a dot segment, an encoded slash).
fn gateway_answers(path: &str) -> Vec<u16> {
    let mut statuses = vec![413, 429, 503];
    if path.contains('{') {
        statuses.push(404);
    }
    statuses
}

/// Documents the gateway's own answers on one path item of the facade (a service's own
/// description of the same status is kept).
fn add_gateway_answers(path: &str, item: &mut Value) {
    let statuses = gateway_answers(path);
    for method in METHODS {
        let Some(responses) = item
            .get_mut(method)
            .and_then(|op| op.get_mut("responses"))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for status in &statuses {
            if let Some(answer) = doc::standard(*status)
                && let Ok(answer) = serde_json::to_value(answer)
            {
                responses.entry(status.to_string()).or_insert(answer);
            }
        }
    }
}

/// `/graphql`: the console (GET) and the endpoint (POST). Every answer is a GraphQL response
/// document; a request refused before it ran (malformed, over a limit, rate limited, a service
/// down) has `data: null` and the reason in `errors[].extensions.code`.
fn graphql_path() -> Value {
    let document =
        json!({"application/json": {"schema": {"$ref": "#/components/schemas/GraphQLResponse"}}});
    let retry_after =
        json!({"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}});
    json!({
        "get": {
            "tags": ["graphql"],
            "summary": "The GraphQL console (GraphiQL, served from inside the binary)",
            "responses": {
                "200": {"description": "an HTML page", "content": {"text/html": {"schema": {"type": "string"}}}},
                "429": {"description": "rate limited (`RATE_LIMITED`)", "content": document, "headers": retry_after}
            }
        },
        "post": {
            "tags": ["graphql"],
            "summary": "GraphQL: the contract's schema (see GET /graphql for the console)",
            "requestBody": {"required": true, "content": {"application/json": {"schema": {
                "type": "object", "required": ["query"],
                "properties": {"query": {"type": "string"}, "variables": {"type": "object"}, "operationName": {"type": "string"}}
            }}}},
            "responses": {
                "200": {"description": "`data` and, for domain errors, `errors[].extensions.code`", "content": document},
                "400": {"description": "malformed JSON or GraphQL, or over the depth / complexity / field limits (`BAD_USER_INPUT`)", "content": document},
                "413": {"description": "body over the limit (`BAD_USER_INPUT`)", "content": document},
                "429": {"description": "rate limited (`RATE_LIMITED`, with `Retry-After`)", "content": document, "headers": retry_after},
                "503": {"description": "a service it needs is down (`SERVICE_UNAVAILABLE`, with `Retry-After`)", "content": document, "headers": retry_after}
            }
        }
    })
}

/// A GraphQL response document.
fn graphql_response_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "data": {"type": ["object", "null"]},
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["message"],
                "properties": {
                    "message": {"type": "string"},
                    "locations": {"type": "array"},
                    "path": {"type": "array"},
                    "extensions": {"type": "object", "properties": {
                        "code": {"type": "string"}, "reason": {"type": "string"}
                    }}
                }
            }}
        }
    })
}

/// The facade's document: each service's paths under `/api` (with the answers the gateway
/// itself can give added), their schemas merged, plus `/graphql`.
pub fn merge(documents: &[(&str, Option<Value>)]) -> Value {
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut security = serde_json::Map::new();
    let mut tags = Vec::new();
    for (name, doc) in documents {
        let Some(doc) = doc else { continue };
        tags.push(json!({"name": name, "description": format!("The {name} service, through the gateway")}));
        if let Some(p) = doc.get("paths").and_then(Value::as_object) {
            for (path, item) in p {
                // Only what the facade forwards: the operational routes and anything outside
                // the allow-list (`/admin/...` stays on the service's own port) are not served.
                if OPS_PATHS.iter().any(|ops| path.starts_with(ops))
                    || service_of(path.trim_start_matches('/')) != Some(*name)
                {
                    continue;
                }
                let mut item = item.clone();
                add_gateway_answers(path, &mut item);
                paths.insert(format!("/api{path}"), item);
            }
        }
        if let Some(c) = doc
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        {
            schemas.extend(c.clone());
        }
        if let Some(c) = doc
            .pointer("/components/securitySchemes")
            .and_then(Value::as_object)
        {
            for (k, v) in c {
                let mut v = v.clone();
                // Swagger's Authorize button logs in through the facade too.
                if let Some(url) = v.pointer_mut("/flows/password/tokenUrl")
                    && let Some(s) = url.as_str()
                    && !s.starts_with("/api")
                {
                    *url = Value::String(format!("/api{s}"));
                }
                security.insert(k.clone(), v);
            }
        }
    }
    paths.insert("/graphql".to_owned(), graphql_path());
    // The error answers added above refer to these.
    for (name, schema) in [
        (ErrorBody::name(), ErrorBody::schema()),
        (FieldError::name(), FieldError::schema()),
    ] {
        if let Ok(schema) = serde_json::to_value(schema) {
            schemas.entry(name.into_owned()).or_insert(schema);
        }
    }
    schemas.insert("GraphQLResponse".to_owned(), graphql_response_schema());
    tags.push(json!({"name": "graphql"}));
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "ecom gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The platform behind one origin: GraphQL at /graphql and the services' REST APIs under /api."
        },
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": security},
        "tags": tags,
    })
}

/// `GET /openapi.json`.
pub async fn openapi(State(state): State<AppState>) -> Response {
    let gw: &Arc<Gateway> = &state.gateway;
    if let Some(doc) = gw.openapi.0.read().await.clone() {
        return (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            doc,
        )
            .into_response();
    }
    let fetched = futures::future::join_all(
        gw.config
            .upstreams()
            .map(|u| async move { (u.name, fetch_openapi(gw, u).await) }),
    )
    .await;
    let complete = fetched.iter().all(|(_, d)| d.is_some());
    let doc = merge(&fetched);
    let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
    if complete {
        *gw.openapi.0.write().await = Some(bytes.clone());
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        Body::from(bytes),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_encoded_slashes_and_empty_segments_are_refused() {
        for ok in [
            "products",
            "products/12",
            "auth/login",
            "auth/login/",
            ".well-known/jwks.json",
        ] {
            assert_eq!(checked_path(ok), Some(ok), "{ok}");
        }
        for bad in [
            "users/../admin/x",
            "payments/%2e%2e/metrics",
            "payments/%2E%2e/metrics",
            "payments/.%2e/metrics",
            "auth/./login",
            "auth/%2e/login",
            "products//1",
            "",
            "products/%2f..%2fx",
            "products/a%5cb",
            "products/a\\b",
        ] {
            assert_eq!(checked_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn merged_paths_live_under_api_without_ops_routes() {
        let users = json!({
            "paths": {
                "/auth/login": {"post": {"responses": {}}},
                "/health/ready": {"get": {}},
                "/admin/keys/rotate": {"post": {}}
            },
            "components": {"schemas": {"User": {}}, "securitySchemes": {
                "password": {"type": "oauth2", "flows": {"password": {"tokenUrl": "/auth/login", "scopes": {}}}}
            }}
        });
        let products = json!({"paths": {"/products/{id}": {"get": {}}}, "components": {"schemas": {"Product": {}}}});
        let doc = merge(&[
            ("users", Some(users)),
            ("products", Some(products)),
            ("orders", None),
        ]);
        let paths = doc["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/api/auth/login"));
        assert!(paths.contains_key("/api/products/{id}"));
        assert!(paths.contains_key("/graphql"));
        assert!(!paths.keys().any(|p| p.contains("health")));
        // Outside the facade's allow-list: not forwarded, so not documented.
        assert!(!paths.contains_key("/api/admin/keys/rotate"));
        // The gateway's own answers are added to each operation.
        let login = &doc["paths"]["/api/auth/login"]["post"]["responses"];
        for code in ["413", "429", "503"] {
            assert!(login[code].is_object(), "{code}: {login}");
        }
        assert!(login["429"]["headers"]["Retry-After"].is_object());
        assert_eq!(
            doc.pointer("/components/securitySchemes/password/flows/password/tokenUrl"),
            Some(&json!("/api/auth/login"))
        );
        assert!(doc.pointer("/components/schemas/Product").is_some());
    }

    #[test]
    fn the_login_email_comes_from_json_or_the_oauth2_form() {
        let mut h = HeaderMap::new();
        assert_eq!(
            login_email(&h, br#"{"email":"a@b.co","password":"x"}"#).as_deref(),
            Some("a@b.co")
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(
            login_email(&h, b"username=c%40d.co&password=x").as_deref(),
            Some("c@d.co")
        );
    }
}
